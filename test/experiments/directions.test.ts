/**
 * emlens directions: planted sets whose mean difference is known exactly are recovered exactly
 * (rows and token weighting, pca), directions through the real pipeline (tiny checkpoint ->
 * extract) equal means of activations computed independently (one forward per row, pooled by
 * hand), the three output formats carry the same vectors (the GGUF parsed by @huggingface/gguf),
 * and bad input is one line with a non-zero exit.
 */
import { writePlanted } from '../helpers/planted.js';
import { spawnSync } from 'node:child_process';
import { existsSync, mkdtempSync, readFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join, resolve } from 'node:path';
import { gguf, GGMLQuantizationType } from '@huggingface/gguf';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { LoadedModel } from '../../src/backend/model.js';
import { extractActivations } from '../../src/activations/extract.js';
import { readJsonl } from '../../src/data/rows.js';
import { pcaDiff } from '../../src/directions/pca.js';
import { readDirectionFile } from '../../src/io/directions.js';
import { readDirectionsNpy } from '../../src/io/npy.js';
import { hookName } from '../../src/hooks/names.js';
import { computeDirections } from '../../src/experiments/directions.js';
import { writeTinyCheckpoint } from '../helpers/tiny-checkpoints.js';
import { addTokenizer, writeChatDataset } from '../helpers/datasets.js';
import { maxRelErr } from '../helpers/compare.js';

const ROOT = resolve(__dirname, '../..');
const BIN = join(ROOT, 'dist/cli/main.js');
const dir = mkdtempSync(join(tmpdir(), 'emlens-dirs-'));
afterAll(() => rmSync(dir, { recursive: true, force: true }));

function emlens(...args: string[]) {
  const r = spawnSync(process.execPath, [BIN, ...args], { encoding: 'utf8', env: { ...process.env, HF_HUB_OFFLINE: '1' } });
  return { code: r.status, stdout: r.stdout, stderr: r.stderr };
}

function expectOneLineError(r: ReturnType<typeof emlens>, pattern: RegExp) {
  expect(r.code, r.stdout).not.toBe(0);
  const lines = r.stderr.trim().split('\n');
  expect(lines, r.stderr).toHaveLength(1);
  expect(lines[0]).toMatch(pattern);
}


/** Dyadic pseudo-random values k/8, |k| <= 64: sums and power-of-two means are exact in float32. */
function dyadic(n: number, seed: number): Float32Array {
  let s = seed >>> 0;
  return Float32Array.from({ length: n }, () => {
    s = (Math.imul(s, 1664525) + 1013904223) >>> 0;
    return ((s >>> 8) % 129) / 8 - 8;
  });
}

const add = (a: Float32Array, delta: Float32Array, d: number) => a.map((x, i) => x + delta[i % d]!);

describe('planted: known mean differences are recovered exactly', () => {
  const d = 16;
  const n = 8;
  const layers = [0, 2, 5];
  const base = new Map(layers.map((l) => [l, dyadic(n * d, 10 + l)]));
  const delta = new Map(layers.map((l) => [l, dyadic(d, 100 + l)]));
  let pos: string;
  let neg: string;
  beforeAll(() => {
    neg = writePlanted(join(dir, 'p-neg'), { layers: base, d, tokens: [1, 2, 3, 4, 5, 6, 7, 8] });
    pos = writePlanted(join(dir, 'p-pos'), { layers: new Map(layers.map((l) => [l, add(base.get(l)!, delta.get(l)!, d)])), d, tokens: [3, 1, 4, 1, 5, 9, 2, 6] });
  });

  it('pos = base + delta, neg = base: the CLI writes delta bit for bit, in every format, norms in the metadata', async () => {
    const st = join(dir, 'planted.safetensors');
    const r = emlens('directions', '--pos', pos, '--neg', neg, '--out', st);
    expect(r.code, r.stderr).toBe(0);
    expect(r.stderr).toBe('');
    expect(r.stdout).toMatch(/mean-diff \(rows-weighted\) at resid_post: pos 8 rows, neg 8 rows, 3 layers/);
    expect(r.stdout).toContain(`wrote ${st}`);
    const f = readDirectionFile(st);
    expect([...f.layers.keys()].sort()).toEqual(layers);
    for (const l of layers) expect([...f.layers.get(l)!]).toEqual([...delta.get(l)!]);
    const norms = JSON.parse(f.metadata.norms!);
    for (const l of layers) expect(norms[String(l)]).toBeCloseTo(Math.hypot(...delta.get(l)!), 12);
    expect(f.metadata).toMatchObject({ method: 'mean-diff', weight: 'rows', model: 'planted-model', weights_sha256: 'a'.repeat(64), hook: 'resid_post', pos, neg, pos_rows: '8', neg_rows: '8', pos_dataset_sha256: 'b'.repeat(64) });

    const npy = join(dir, 'planted.npy');
    expect(emlens('directions', '--pos', pos, '--neg', neg, '--out', npy).code).toBe(0);
    const a = readDirectionsNpy(npy);
    expect(a.metadata.method).toBe('mean-diff');
    for (const l of layers) expect([...a.layers.get(l)!]).toEqual([...delta.get(l)!]);

    // GGUF: layer 0 cannot be a llama.cpp control vector; it is dropped with one warning line.
    const gf = join(dir, 'planted.gguf');
    const g = emlens('directions', '--pos', pos, '--neg', neg, '--out', gf);
    expect(g.code, g.stderr).toBe(0);
    expect(g.stderr.trim().split('\n')).toHaveLength(1);
    expect(g.stderr).toMatch(/^emlens: warning: layer 0 left out of the GGUF: llama\.cpp control vectors cannot steer block 0/);
    const { metadata, tensorInfos, tensorDataOffset } = await gguf(gf, { allowLocalFile: true, typedMetadata: true });
    expect(tensorInfos.map((t) => t.name)).toEqual(['direction.2', 'direction.5']);
    const bytes = readFileSync(gf);
    for (const t of tensorInfos) {
      const start = Number(tensorDataOffset + t.offset);
      const got = new Float32Array(new Uint8Array(bytes.subarray(start, start + 4 * d)).buffer);
      expect([...got]).toEqual([...delta.get(Number(t.name.split('.')[1]))!]);
    }
    expect((metadata as unknown as Record<string, unknown>)['controlvector.layer_count']).toBe(2);
  });

  it('--weight tokens is the mean over every pooled token; --weight rows the mean over rows', () => {
    // Token level: row i of pos pools n_i token vectors t_ik (response-mean); the reference
    // pools all tokens of all rows at once. Build the tokens, pool them per row, store the rows.
    const counts = [1, 2, 4, 1, 2, 4, 1, 4];
    const negCounts = [2, 2, 1, 1, 4, 4, 2, 1];
    const tokensOf = (c: number[], seed: number) => c.map((k, i) => Array.from({ length: k }, (_, j) => dyadic(d, seed + 31 * i + j)));
    const posTok = tokensOf(counts, 500);
    const negTok = tokensOf(negCounts, 900);
    const pooled = (toks: Float32Array[][]) => {
      const out = new Float32Array(toks.length * d);
      toks.forEach((ts, i) => {
        for (let j = 0; j < d; j++) out[i * d + j] = ts.reduce((s, t) => s + t[j]!, 0) / ts.length;
      });
      return out;
    };
    const pDir = writePlanted(join(dir, 't-pos'), { layers: new Map([[3, pooled(posTok)]]), d, tokens: counts });
    const nDir = writePlanted(join(dir, 't-neg'), { layers: new Map([[3, pooled(negTok)]]), d, tokens: negCounts });
    const allMean = (toks: Float32Array[][]) => {
      const flat = toks.flat();
      return Array.from({ length: d }, (_, j) => flat.reduce((s, t) => s + t[j]!, 0) / flat.length);
    };
    const rowMean = (toks: Float32Array[][]) => Array.from({ length: d }, (_, j) => toks.reduce((s, ts) => s + ts.reduce((a, t) => a + t[j]!, 0) / ts.length, 0) / toks.length);
    const wantTokens = allMean(posTok).map((x, j) => x - allMean(negTok)[j]!);
    const wantRows = rowMean(posTok).map((x, j) => x - rowMean(negTok)[j]!);
    const tok = computeDirections({ pos: pDir, neg: nDir, weight: 'tokens' }).layers.get(3)!;
    const rows = computeDirections({ pos: pDir, neg: nDir, weight: 'rows' }).layers.get(3)!;
    expect(maxRelErr(tok, wantTokens)).toBeLessThan(1e-6);
    expect(maxRelErr(rows, wantRows)).toBeLessThan(1e-6);
    expect(maxRelErr(tok, wantRows)).toBeGreaterThan(1e-2); // the two weightings differ here

    const out = join(dir, 'tok.safetensors');
    const r = emlens('directions', '--pos', pDir, '--neg', nDir, '--out', out, '--weight', 'tokens');
    expect(r.code, r.stderr).toBe(0);
    const f = readDirectionFile(out);
    expect([...f.layers.get(3)!]).toEqual([...tok]);
    expect(f.metadata.weight).toBe('tokens');
  });

  it('pca: paired differences s_i * u recover u (unit norm, sign so that pos projects higher)', () => {
    const u = Float32Array.from({ length: d }, (_, j) => (j === 2 ? 0.6 : j === 7 ? -0.8 : 0));
    const s = [1, 2, 3, 5, 8, 13, 21, 34];
    const b = base.get(5)!;
    const p = b.map((x, k) => x + s[Math.floor(k / d)]! * u[k % d]!);
    const pDir = writePlanted(join(dir, 'pca-pos'), { layers: new Map([[5, p]]), d });
    const nDir = writePlanted(join(dir, 'pca-neg'), { layers: new Map([[5, b]]), d });
    const out = join(dir, 'pca.safetensors');
    const r = emlens('directions', '--pos', pDir, '--neg', nDir, '--out', out, '--method', 'pca');
    expect(r.code, r.stderr).toBe(0);
    expect(r.stdout).toMatch(/explained variance ratio: 5:1\b/);
    const v = readDirectionFile(out).layers.get(5)!;
    expect(maxRelErr(v, u)).toBeLessThan(1e-6);
    expect(readDirectionFile(out).metadata.method).toBe('pca');
  });
});

describe('refused: inputs that cannot give a direction, and --out names emlens does not write', () => {
  const d = 8;
  const n = 4;
  let a: string;
  let copy: string;
  let permuted: string;
  let nan: string;
  let shifted: string;
  beforeAll(() => {
    const acts = new Map([[1, dyadic(n * d, 1)], [2, dyadic(n * d, 2)]]);
    a = writePlanted(join(dir, 'same-a'), { layers: acts, d });
    copy = writePlanted(join(dir, 'same-copy'), { layers: acts, d }); // the same rows, another folder
    // The same rows in reverse order: equal means (mean-diff zero), but pairs that differ (pca fine).
    const rev = (x: Float32Array) => Float32Array.from({ length: n * d }, (_, k) => x[(n - 1 - Math.floor(k / d)) * d + (k % d)]!);
    permuted = writePlanted(join(dir, 'same-permuted'), { layers: new Map([...acts].map(([l, x]) => [l, rev(x)])), d });
    const bad = dyadic(n * d, 2);
    bad[2 * d + 5] = NaN;
    nan = writePlanted(join(dir, 'nan-acts'), { layers: new Map([[1, dyadic(n * d, 7)], [2, bad]]), d });
    // Every pair differs by the same vector: mean-diff is fine, pca has nothing to fit.
    shifted = writePlanted(join(dir, 'shifted'), { layers: new Map([...acts].map(([l, x]) => [l, add(x, dyadic(d, 40 + l), d)])), d });
  });

  it('--pos and --neg the same folder, or holding identical activations: an error, nothing written', () => {
    const out = join(dir, 'same.safetensors');
    expectOneLineError(emlens('directions', '--pos', a, '--neg', a, '--out', out), /--pos and --neg are the same folder \(.*same-a\)/);
    expectOneLineError(emlens('directions', '--pos', a, '--neg', join(dir, '.', 'same-a'), '--out', out), /--pos and --neg are the same folder/);
    for (const method of ['mean-diff', 'pca']) {
      expectOneLineError(
        emlens('directions', '--pos', a, '--neg', copy, '--out', out, '--method', method),
        new RegExp(`--pos ${a} and --neg ${copy} hold identical activations at layer 1; the direction would be zero`),
      );
    }
    expectOneLineError(
      emlens('directions', '--pos', a, '--neg', permuted, '--out', out),
      new RegExp(`--pos ${a} and --neg ${permuted} have equal means at layer 1; the mean-diff direction would be zero`),
    );
    expect(existsSync(out)).toBe(false);
    expect(emlens('directions', '--pos', a, '--neg', permuted, '--out', out, '--method', 'pca').code).toBe(0);
  });

  it('NaN activations: an error naming the folder, layer and row', () => {
    const out = join(dir, 'nan.safetensors');
    expectOneLineError(emlens('directions', '--pos', nan, '--neg', a, '--out', out), new RegExp(`--pos ${nan}: layer 2, row 2 holds NaN \\(column 5\\)`));
    expectOneLineError(emlens('directions', '--pos', a, '--neg', nan, '--out', out, '--method', 'pca'), new RegExp(`--neg ${nan}: layer 2, row 2 holds NaN \\(column 5\\)`));
    expect(existsSync(out)).toBe(false);
  });

  it('pca without variance names the layer and both folders', () => {
    expectOneLineError(
      emlens('directions', '--pos', shifted, '--neg', a, '--out', join(dir, 'novar.safetensors'), '--method', 'pca'),
      new RegExp(`pca at layer 1 \\(--pos ${shifted}, --neg ${a}\\): the paired differences have no variance`),
    );    expectOneLineError(
      emlens('stability', '--pos', shifted, '--neg', a, '--out', join(dir, 'novar.html'), '--method', 'pca', '--bootstrap', '4'),
      new RegExp(`pca at layer 1 \\(--pos ${shifted}, --neg ${a}\\): the paired differences have no variance`),
    );
  });

  it('--out extension: must be .safetensors, .gguf or .npy, and agree with --format', () => {
    const run = (out: string, ...more: string[]) => emlens('directions', '--pos', shifted, '--neg', a, '--out', join(dir, out), ...more);
    expectOneLineError(run('d.pt'), /--out .*d\.pt: emlens writes direction files as \.safetensors, \.gguf or \.npy, not \.pt/);
    expectOneLineError(run('dirs'), /--out .*dirs: emlens writes direction files as \.safetensors, \.gguf or \.npy; the name has no extension/);
    expectOneLineError(run('x.gguf', '--format', 'npy'), /--out .*x\.gguf is a \.gguf name but --format is npy; use x\.npy or drop --format/);
    expectOneLineError(run('x.safetensors', '--format', 'gguf'), /--format is gguf/);
    for (const out of ['d.pt', 'dirs', 'x.gguf', 'x.npy', 'x.safetensors']) expect(existsSync(join(dir, out)), out).toBe(false);
    const ok = run('X.GGUF', '--format', 'gguf');
    expect(ok.code, ok.stderr).toBe(0);
    expect(readDirectionFile(join(dir, 'X.GGUF')).format).toBe('gguf');
  });
});

describe('real pipeline: tiny checkpoint -> extract -> directions', () => {
  let model: LoadedModel;
  let mdir: string;
  const acts: Record<'pos' | 'neg', string> = { pos: '', neg: '' };
  /** per set: per row, per layer, the response tokens' activations from a single-row forward */
  const hand: Record<'pos' | 'neg', Float64Array[][][]> = { pos: [], neg: [] };
  const L = 3;

  beforeAll(async () => {
    mdir = join(dir, 'model');
    writeTinyCheckpoint(mdir, 'llama', { layers: L });
    addTokenizer(mdir);
    model = await LoadedModel.load(mdir);
    const D = model.spec.dModel;
    const hooks = Array.from({ length: L }, (_, l) => hookName(l, 'resid_post'));
    for (const [side, seed] of [['pos', 1], ['neg', 2]] as const) {
      const file = writeChatDataset(dir, `${side}.jsonl`, 12, seed);
      const ds = readJsonl(file);
      acts[side] = join(dir, `acts-${side}`);
      await extractActivations(model, ds.rows, { outDir: acts[side], layers: 'all', hook: 'resid_post', batchTokens: 64, dataset: { file, sha256: ds.sha256, selection: {} } });
      for (const row of ds.rows) {
        if (row.kind !== 'chat') throw new Error('chat rows expected');
        const enc = model.tokenizer!.encodeChat(row.messages);
        const resp = [...enc.kinds.keys()].filter((t) => enc.kinds[t] === 2);
        const f = await model.engine.forward({ ids: [enc.ids], capture: hooks });
        hand[side].push(hooks.map((h) => resp.map((t) => Float64Array.from(f.captures.get(h)!.subarray(t * D, (t + 1) * D)))));
      }
    }
  });

  const D = () => model.spec.dModel;
  /** mean over rows of each row's token mean (rows), or over every token of every row (tokens) */
  function handMean(side: 'pos' | 'neg', l: number, weight: 'rows' | 'tokens'): Float64Array {
    const out = new Float64Array(D());
    let total = 0;
    for (const row of hand[side]) {
      const toks = row[l]!;
      const w = weight === 'rows' ? 1 / toks.length : 1;
      for (const t of toks) for (let j = 0; j < D(); j++) out[j]! += w * t[j]!;
      total += weight === 'rows' ? 1 : toks.length;
    }
    return out.map((x) => x / total);
  }
  function handRows(side: 'pos' | 'neg', l: number): Float64Array {
    const out = new Float64Array(hand[side].length * D());
    hand[side].forEach((row, i) => {
      const toks = row[l]!;
      for (const t of toks) for (let j = 0; j < D(); j++) out[i * D() + j]! += t[j]! / toks.length;
    });
    return out;
  }

  it('mean-diff (rows and tokens) equals the hand means; pca equals pcaDiff of the hand rows', () => {
    for (const weight of ['rows', 'tokens'] as const) {
      const r = computeDirections({ pos: acts.pos, neg: acts.neg, weight });
      expect(r.pair.layers).toEqual([0, 1, 2]);
      for (let l = 0; l < L; l++) {
        const want = handMean('pos', l, weight).map((x, j) => x - handMean('neg', l, weight)[j]!);
        expect(maxRelErr(r.layers.get(l)!, want), `${weight} layer ${l}`).toBeLessThan(1e-5);
      }
    }
    const pca = computeDirections({ pos: acts.pos, neg: acts.neg, method: 'pca' });
    for (let l = 0; l < L; l++) {
      const want = pcaDiff(handRows('pos', l), handRows('neg', l), D());
      expect(maxRelErr(pca.layers.get(l)!, want), `pca layer ${l}`).toBeLessThan(1e-4);
    }
  });

  it('CLI: safetensors, gguf and npy carry the same vectors; the GGUF parses with @huggingface/gguf', async () => {
    const st = join(dir, 'real.safetensors');
    const r = emlens('directions', '--pos', acts.pos, '--neg', acts.neg, '--out', st, '--weight', 'tokens');
    expect(r.code, r.stderr).toBe(0);
    expect(r.stdout).toMatch(/^norms: 0:\S+ 1:\S+ 2:\S+ \(largest at layer \d\)$/m);
    const f = readDirectionFile(st);
    expect(f.metadata).toMatchObject({ model: mdir, weight: 'tokens', pos_rows: '12', neg_rows: '12', hook: 'resid_post' });
    expect(f.metadata.weights_sha256).toMatch(/^[0-9a-f]{64}$/);

    // --format may repeat what the extension says.
    const gf = join(dir, 'real-cv.gguf');
    const g = emlens('directions', '--pos', acts.pos, '--neg', acts.neg, '--out', gf, '--weight', 'tokens', '--format', 'gguf');
    expect(g.code, g.stderr).toBe(0);
    expect(g.stderr).toMatch(/warning: layer 0 left out/);
    const { metadata, typedMetadata, tensorInfos, tensorDataOffset } = await gguf(gf, { allowLocalFile: true, typedMetadata: true });
    const md = metadata as unknown as Record<string, unknown>;
    expect(md['general.architecture']).toBe('controlvector');
    expect(md['controlvector.model_hint']).toBe(mdir);
    expect(md['controlvector.layer_count']).toBe(2);
    expect(md['emlens.method']).toBe('mean-diff');
    expect(md['emlens.norms']).toBe(f.metadata.norms);
    expect((typedMetadata as unknown as Record<string, { type: number }>)['controlvector.layer_count']!.type).toBe(4); // UINT32
    expect(tensorInfos.map((t) => t.name)).toEqual(['direction.1', 'direction.2']);
    const bytes = readFileSync(gf);
    for (const t of tensorInfos) {
      expect(t.dtype).toBe(GGMLQuantizationType.F32);
      expect(t.shape).toEqual([BigInt(D())]);
      const start = Number(tensorDataOffset + t.offset);
      const got = new Float32Array(new Uint8Array(bytes.subarray(start, start + 4 * D())).buffer);
      expect([...got]).toEqual([...f.layers.get(Number(t.name.slice('direction.'.length)))!]);
    }

    const npy = join(dir, 'real.npy');
    expect(emlens('directions', '--pos', acts.pos, '--neg', acts.neg, '--out', npy, '--weight', 'tokens').code).toBe(0);
    const a = readDirectionsNpy(npy);
    expect([...a.layers.keys()]).toEqual([0, 1, 2]);
    for (const l of [0, 1, 2]) expect([...a.layers.get(l)!]).toEqual([...f.layers.get(l)!]);
  });

  it('bad input: one line naming it, non-zero exit', async () => {
    const out = join(dir, 'bad.safetensors');
    // Other layers only.
    const file = writeChatDataset(dir, 'other.jsonl', 5, 9);
    const ds = readJsonl(file);
    const l0 = join(dir, 'acts-l0');
    await extractActivations(model, ds.rows, { outDir: l0, layers: [0], hook: 'resid_post', dataset: { file, sha256: ds.sha256, selection: {} } });
    const l12 = join(dir, 'acts-l12');
    await extractActivations(model, ds.rows, { outDir: l12, layers: [1, 2], hook: 'resid_post', dataset: { file, sha256: ds.sha256, selection: {} } });
    expectOneLineError(emlens('directions', '--pos', l0, '--neg', l12, '--out', out), new RegExp(`--pos ${l0} \\(layers 0\\) and --neg ${l12} \\(layers 1,2\\) share no layer`));
    // Different models.
    const other = writePlanted(join(dir, 'other-model'), { layers: new Map([[0, new Float32Array(5 * D())]]), d: D(), sha: 'c'.repeat(64) });
    expectOneLineError(emlens('directions', '--pos', l0, '--neg', other, '--out', out), new RegExp(`--pos ${l0} and --neg ${other} come from different models`));
    // pca needs pairs.
    expectOneLineError(emlens('directions', '--pos', acts.pos, '--neg', l0, '--out', out, '--method', 'pca'), /pca pairs rows by index .* has 12, .* has 5; extract one with --balance-with the other/);
    expectOneLineError(emlens('directions', '--pos', acts.pos, '--neg', acts.neg, '--out', out, '--method', 'pca', '--weight', 'tokens'), /--weight tokens applies to --method mean-diff only/);
    // Missing or wrong folders, bad flags.
    expectOneLineError(emlens('directions', '--pos', join(dir, 'nope'), '--neg', acts.neg, '--out', out), /--pos .*nope: no such folder/);
    expectOneLineError(emlens('directions', '--pos', acts.pos, '--neg', dir, '--out', out), /not an extraction folder \(no meta\.json\)/);
    expectOneLineError(emlens('directions', '--pos', acts.pos, '--neg', acts.neg, '--out', out, '--method', 'lda'), /--method must be one of mean-diff, pca, got "lda"/);
    expectOneLineError(emlens('directions', '--pos', acts.pos, '--neg', acts.neg, '--out', out, '--format', 'pt'), /--format must be one of safetensors, gguf, npy/);
    expectOneLineError(emlens('directions', '--pos', acts.pos, '--neg', acts.neg), /required option '--out <file>' not specified/);
    // A GGUF of layer 0 alone cannot exist.
    const file2 = writeChatDataset(dir, 'other2.jsonl', 5, 11);
    const ds2 = readJsonl(file2);
    const l0b = join(dir, 'acts-l0b');
    await extractActivations(model, ds2.rows, { outDir: l0b, layers: [0], hook: 'resid_post', dataset: { file: file2, sha256: ds2.sha256, selection: {} } });
    expectOneLineError(emlens('directions', '--pos', l0, '--neg', l0b, '--out', join(dir, 'l0.gguf')), /the only layer is 0, and llama\.cpp control vectors cannot steer block 0/);
    expect(existsSync(out)).toBe(false);
  });
});
