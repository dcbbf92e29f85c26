/**
 * emlens compare / stability / project end to end: the binary as a user runs it on real files (a
 * tiny checkpoint, extracted sets, direction files of all three formats, planted sets), each
 * report opened in a real headless Chromium (no console errors, every figure drawn, nothing
 * fetched), and the numbers in its tables checked against computations done here.
 */
import { writePlanted } from '../helpers/planted.js';
import { cos64 } from '../directions/data.js';
import { spawnSync } from 'node:child_process';
import { createHash } from 'node:crypto';
import { mkdtempSync, readFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join, resolve } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { LoadedModel } from '../../src/backend/model.js';
import { extractActivations } from '../../src/activations/extract.js';
import { openActivations } from '../../src/activations/read.js';
import { readJsonl } from '../../src/data/rows.js';
import { bootstrapStability, splitHalf } from '../../src/directions/stability.js';
import { readDirectionFile, writeDirectionFile } from '../../src/io/directions.js';
import { writeTinyCheckpoint } from '../helpers/tiny-checkpoints.js';
import { addTokenizer, writeChatDataset } from '../helpers/datasets.js';
import { checkReportInBrowser, haveChromium, type BrowserCheck } from '../helpers/browser.js';

const ROOT = resolve(__dirname, '../..');
const BIN = join(ROOT, 'dist/cli/main.js');
const dir = mkdtempSync(join(tmpdir(), 'emlens-reports-'));
afterAll(() => rmSync(dir, { recursive: true, force: true }));

function emlens(...args: string[]) {
  const r = spawnSync(process.execPath, [BIN, ...args], { encoding: 'utf8', env: { ...process.env, HF_HUB_OFFLINE: '1' } });
  return { code: r.status, stdout: r.stdout, stderr: r.stderr };
}

function ok(r: ReturnType<typeof emlens>) {
  expect(r.code, r.stderr).toBe(0);
  return r;
}

function expectOneLineError(r: ReturnType<typeof emlens>, pattern: RegExp) {
  expect(r.code, r.stdout).not.toBe(0);
  const lines = r.stderr.trim().split('\n');
  expect(lines, r.stderr).toHaveLength(1);
  expect(lines[0]).toMatch(pattern);
}

interface Table {
  caption: string;
  head: string[];
  rows: string[][];
}

/** Opens the report in Chromium; asserts it is clean and fully drawn; returns its tables and provenance text. */
async function openReport(file: string): Promise<{ check: BrowserCheck; tables: Table[]; provenance: string; text: string }> {
  expect(haveChromium(), 'Chromium is needed (CHROMIUM_PATH or /usr/bin/chromium)').toBe(true);
  const check = await checkReportInBrowser(file, {
    probe: () => ({
      tables: Array.from(document.querySelectorAll('table.data')).map((t) => ({
        caption: (t as HTMLTableElement).caption?.textContent ?? '',
        head: Array.from((t as HTMLTableElement).tHead!.rows[0]!.cells).map((c) => c.textContent ?? ''),
        rows: Array.from((t as HTMLTableElement).tBodies[0]!.rows).map((r) => Array.from(r.cells).map((c) => c.textContent ?? '')),
      })),
      provenance: document.getElementById('provenance')?.textContent ?? '',
      text: document.querySelector('main')?.textContent ?? '',
    }),
  });
  expect(check.consoleErrors).toEqual([]);
  expect(check.blockedRequests).toEqual([]);
  expect(check.figures).toBeGreaterThan(0);
  expect(check.rendered, JSON.stringify(check.perFigure)).toBe(check.figures);
  expect(check.plotsRendered).toBe(check.figures);
  const p = check.probed as { tables: Table[]; provenance: string; text: string };
  return { check, ...p };
}

function table(tables: Table[], caption: string | RegExp): Table {
  const t = tables.find((x) => (typeof caption === 'string' ? x.caption.startsWith(caption) : caption.test(x.caption)));
  if (!t) throw new Error(`no table "${caption}" among ${tables.map((x) => x.caption).join(' | ')}`);
  return t;
}

/** A table cell (as formatNumber printed it) equals `want` to its printed precision. */
function expectCell(cell: string, want: number, what: string) {
  const got = Number(cell.replace('−', '-'));
  expect(Number.isFinite(got), `${what}: "${cell}"`).toBe(true);
  expect(Math.abs(got - want), `${what}: "${cell}" vs ${want}`).toBeLessThanOrEqual(1e-4 * Math.max(1, Math.abs(want)));
}


const sha256 = (f: string) => createHash('sha256').update(readFileSync(f)).digest('hex');


/** Deterministic values in [-1, 1). */
function uniform(n: number, seed: number): Float32Array {
  let s = seed >>> 0;
  return Float32Array.from({ length: n }, () => {
    s = (Math.imul(s, 1664525) + 1013904223) >>> 0;
    return (s / 2 ** 32) * 2 - 1;
  });
}

// The real pipeline, shared by the three commands: tiny checkpoint, two extracted chat sets,
// directions from the CLI in all three formats.
const acts = { pos: '', neg: '' };
const files = { md: '', pca: '', gguf: '', npy: '', narrow: '' };
let D = 0;
beforeAll(async () => {
  const mdir = join(dir, 'model');
  writeTinyCheckpoint(mdir, 'qwen2', { layers: 3 });
  addTokenizer(mdir);
  const model = await LoadedModel.load(mdir);
  D = model.spec.dModel;
  for (const [side, seed] of [['pos', 5], ['neg', 6]] as const) {
    const file = writeChatDataset(dir, `${side}.jsonl`, 20, seed);
    const ds = readJsonl(file);
    acts[side] = join(dir, `acts-${side}`);
    await extractActivations(model, ds.rows, { outDir: acts[side], layers: 'all', hook: 'resid_post', batchTokens: 128, dataset: { file, sha256: ds.sha256, selection: {} } });
  }
  files.md = join(dir, 'md.safetensors');
  files.pca = join(dir, 'pca.safetensors');
  files.gguf = join(dir, 'md.gguf');
  files.npy = join(dir, 'md.npy');
  ok(emlens('directions', '--pos', acts.pos, '--neg', acts.neg, '--out', files.md));
  ok(emlens('directions', '--pos', acts.pos, '--neg', acts.neg, '--out', files.pca, '--method', 'pca'));
  ok(emlens('directions', '--pos', acts.pos, '--neg', acts.neg, '--out', files.gguf));
  ok(emlens('directions', '--pos', acts.pos, '--neg', acts.neg, '--out', files.npy));
  files.narrow = join(dir, 'narrow.safetensors');
  writeDirectionFile(files.narrow, new Map([[1, new Float32Array([1, 2, 3])]]), {});
});

describe('emlens compare', () => {
  it('per-layer cosines (signed, absolute) and the summary equal cosines computed here; every plot draws', async () => {
    const out = join(dir, 'compare.html');
    const r = ok(emlens('compare', files.md, files.pca, files.gguf, '--out', out));
    expect(r.stdout).toMatch(/^md\.safetensors vs pca\.safetensors: 3 shared layers, mean cosine -?\d\.\d{3}, mean \|cosine\| \d\.\d{3}, best layer \d/m);
    expect(r.stdout).toMatch(/^md\.safetensors vs md\.gguf: 2 shared layers, mean cosine 1\.000/m);
    expect(r.stdout.trim().split('\n').pop()).toBe(`wrote ${out}`);

    const md = readDirectionFile(files.md).layers;
    const pca = readDirectionFile(files.pca).layers;
    const cos = [0, 1, 2].map((l) => cos64(md.get(l)!, pca.get(l)!));
    const { tables, provenance, check } = await openReport(out);
    // signed + abs lines, norms, files matrix (3 files), 3 within-file heatmaps (the GGUF has 2 layers)
    expect(check.figures).toBe(7);

    const sum = table(tables, 'Pairs of files');
    expect(sum.head).toEqual(['A', 'B', 'shared layers', 'mean cos', 'mean |cos|', 'min cos', 'max cos', 'best layer', 'cos at best']);
    const row = sum.rows.find((x) => x[0] === 'md.safetensors' && x[1] === 'pca.safetensors')!;
    expect(row[2]).toBe('3');
    expectCell(row[3]!, cos.reduce((a, b) => a + b) / 3, 'mean cosine');
    expectCell(row[4]!, cos.reduce((a, b) => a + Math.abs(b), 0) / 3, 'mean |cosine|');
    expectCell(row[5]!, Math.min(...cos), 'min');
    expectCell(row[6]!, Math.max(...cos), 'max');
    const best = [0, 1, 2].reduce((a, b) => (Math.abs(cos[b]!) > Math.abs(cos[a]!) ? b : a));
    expect(row[7]).toBe(String(best));
    expectCell(row[8]!, cos[best]!, 'cosine at best');
    // The GGUF holds the same vectors as md.safetensors minus layer 0.
    const same = sum.rows.find((x) => x[0] === 'md.safetensors' && x[1] === 'md.gguf')!;
    expect(same.slice(2, 7)).toEqual(['2', '1', '1', '1', '1']);

    const per = table(tables, 'Signed cosine per layer');
    expect(per.head).toEqual(['layer', 'md.safetensors vs pca.safetensors', 'md.safetensors vs md.gguf', 'pca.safetensors vs md.gguf']);
    per.rows.forEach((x, l) => {
      expect(x[0]).toBe(String(l));
      expectCell(x[1]!, cos[l]!, `layer ${l}`);
      if (l === 0) expect(x[2]).toBe('—');
      else expectCell(x[3]!, cos64(pca.get(l)!, md.get(l)!), `pca vs gguf layer ${l}`);
    });
    // Provenance: every file by path and the sha256 of its bytes, with its metadata.
    for (const f of [files.md, files.pca, files.gguf]) {
      expect(provenance).toContain(f);
      expect(provenance).toContain(sha256(f));
    }
    expect(provenance).toContain(readDirectionFile(files.md).metadata.weights_sha256);
    expect(provenance).toContain(`emlens compare ${files.md} ${files.pca} ${files.gguf} --out ${out}`);
  });

  it('bad input: one line, non-zero exit', () => {
    const out = join(dir, 'bad.html');
    expectOneLineError(emlens('compare', files.md, '--out', out), /compare needs at least two direction files, got 1/);
    expectOneLineError(emlens('compare', files.md, join(dir, 'missing.safetensors'), '--out', out), /missing\.safetensors: no such direction file/);
    expectOneLineError(emlens('compare', files.md, files.narrow, '--out', out), /has width \d+, .*narrow\.safetensors has 3: directions of different models cannot be compared/);
    expectOneLineError(emlens('compare', files.md, acts.pos, '--out', out), /: is a folder, not a direction file/);
  });
});

describe('emlens stability', () => {
  it('planted identical rows: every resampled direction is the full one (cosine 1, interval [1, 1]), settled at the smallest size', async () => {
    const d = 8;
    const n = 16;
    const row = (seed: number) => uniform(d, seed).map((x) => Math.round(x * 64) / 8);
    const rep = (v: Float32Array) => Float32Array.from({ length: n * d }, (_, k) => v[k % d]!);
    const pos = writePlanted(join(dir, 'same-pos'), { layers: new Map([[1, rep(row(1))], [2, rep(row(3))]]), d });
    const neg = writePlanted(join(dir, 'same-neg'), { layers: new Map([[1, rep(row(2))], [2, rep(row(4))]]), d });
    const out = join(dir, 'stability-planted.html');
    const r = ok(emlens('stability', '--pos', pos, '--neg', neg, '--out', out, '--bootstrap', '20'));
    expect(r.stdout).toMatch(/bootstrap cosine to full: 1\.000 .* to 1\.000/);
    expect(r.stdout).toMatch(/rows per side to settle at 0\.9: 1:8 2:8/);
    const { tables } = await openReport(out);
    const t = table(tables, 'Per layer');
    for (const x of t.rows) expect(x.slice(2, 10)).toEqual(['1', '1', '1', '1', '1', '1', '8', '8']);
    const curve = table(tables, /^Mean cosine to the full-data direction/);
    expect(curve.head).toEqual(['layer', '8', '16']);
  });

  it('real sets: norms equal the hand mean difference, intervals equal the library run with the same seed; every plot draws', async () => {
    const out = join(dir, 'stability.html');
    const r = ok(emlens('stability', '--pos', acts.pos, '--neg', acts.neg, '--out', out, '--bootstrap', '25', '--seed', '3'));
    expect(r.stdout).toMatch(/^mean-diff at resid_post, 3 layers, 25 bootstrap resamples, seed 3$/m);
    const { tables, provenance, check } = await openReport(out);
    expect(check.figures).toBe(3);
    const t = table(tables, 'Per layer');
    const P = openActivations(acts.pos);
    const N = openActivations(acts.neg);
    for (const [i, x] of t.rows.entries()) {
      const l = Number(x[0]);
      expect(l).toBe(i);
      const p = P.layer(l);
      const q = N.layer(l);
      const diff = Array.from({ length: D }, (_, j) => {
        let a = 0;
        let b = 0;
        for (let k = 0; k < 20; k++) a += p[k * D + j]!;
        for (let k = 0; k < 20; k++) b += q[k * D + j]!;
        return a / 20 - b / 20;
      });
      expectCell(x[1]!, Math.hypot(...diff), `norm layer ${l}`);
      const boot = bootstrapStability(p, q, D, { seed: 3, n: 25 });
      expectCell(x[2]!, boot.mean, 'bootstrap mean');
      expectCell(x[3]!, boot.lo, 'bootstrap lo');
      expectCell(x[4]!, boot.hi, 'bootstrap hi');
      const sh = splitHalf(p, q, D, { seed: 4, repeats: 25 });
      expectCell(x[5]!, sh.halves.mean, 'split-half');
      expect(boot.lo).toBeLessThanOrEqual(boot.mean);
      expect(boot.mean).toBeLessThanOrEqual(boot.hi);
    }
    expect(table(tables, /^Mean cosine to the full-data direction/).head).toEqual(['layer', '8', '16', '20']);
    for (const a of [acts.pos, acts.neg]) expect(provenance).toContain(a);
    expect(provenance).toContain(P.meta.model.weights_sha256);
    expect(provenance).toContain(P.meta.dataset.sha256);

    // pca resamples pairs; runs on the paired sets.
    ok(emlens('stability', '--pos', acts.pos, '--neg', acts.neg, '--out', join(dir, 'stability-pca.html'), '--bootstrap', '5', '--method', 'pca'));
  });

  it('bad input: one line, non-zero exit', () => {
    const out = join(dir, 'bad.html');
    const few = writePlanted(join(dir, 'few'), { layers: new Map([[0, uniform(5 * D, 9)]]), d: D, sha: openActivations(acts.pos).meta.model.weights_sha256 });
    expectOneLineError(emlens('stability', '--pos', acts.pos, '--neg', few, '--out', out, '--method', 'pca'), /pca pairs rows by index .* has 20, .* has 5; extract one with --balance-with the other/);
    expectOneLineError(emlens('stability', '--pos', acts.pos, '--neg', join(dir, 'none'), '--out', out), /--neg .*none: no such folder/);
    expectOneLineError(emlens('stability', '--pos', acts.pos, '--neg', acts.neg, '--out', out, '--bootstrap', '1'), /--bootstrap must be an integer >= 2/);
    expectOneLineError(emlens('stability', '--pos', acts.pos, '--neg', acts.neg, '--out', out, '--threshold', '2'), /--threshold must be in \(-1, 1\]/);
  });
});

describe('emlens project', () => {
  it('planted: perfectly separated groups give AUROC 1 (and 0 against a flipped direction), d′ as computed here, CSV projections', async () => {
    const d = 8;
    const n = 10;
    const u = Float32Array.from([0.5, -0.5, 0.5, 0.5, 0, 0, 0, 0]);
    const labels = Array.from({ length: n }, (_, i) => ({ label: i % 2 ? 'misaligned' : 'aligned', idx: i }));
    const layerData = (seed: number) => {
      const base = uniform(n * d, seed);
      return base.map((x, k) => x + (labels[Math.floor(k / d)]!.label === 'misaligned' ? 10 * u[k % d]! : 0));
    };
    const data = new Map([[1, layerData(11)], [3, layerData(12)]]);
    const a = writePlanted(join(dir, 'proj-acts'), { layers: data, d, labels });
    const df = join(dir, 'proj-dir.safetensors');
    writeDirectionFile(df, new Map([[1, u.map((x) => 3 * x)], [3, u.map((x) => -2 * x)], [5, u]]), { method: 'planted' });
    const out = join(dir, 'project.html');
    const csv = join(dir, 'proj.csv');
    const r = ok(emlens('project', '--acts', a, '--direction', df, '--out', out, '--write-csv', csv));
    expect(r.stdout).toMatch(/^2 layers, label = aligned: 5, misaligned: 5$/m);
    expect(r.stdout).toMatch(/AUROC \(label = misaligned vs aligned\) 0\.000\.\.1\.000; best layer 1: AUROC 1\.000/);

    // Projections computed here: h . v / |v|.
    const proj = (l: number, sign: number) =>
      Array.from({ length: n }, (_, i) => {
        let s = 0;
        for (let j = 0; j < d; j++) s += data.get(l)![i * d + j]! * sign * u[j]!;
        return s; // |u| = 1
      });
    const dprime = (p: number[], q: number[]) => {
      const mv = (x: number[]) => {
        const m = x.reduce((s, v) => s + v, 0) / x.length;
        return [m, x.reduce((s, v) => s + (v - m) ** 2, 0) / (x.length - 1)] as const;
      };
      const [mp, vp] = mv(p);
      const [mq, vq] = mv(q);
      return (mp - mq) / Math.sqrt((vp + vq) / 2);
    };
    const want = new Map(
      [1, 3].map((l) => {
        const x = proj(l, l === 1 ? 1 : -1);
        const mis = x.filter((_, i) => i % 2 === 1);
        const al = x.filter((_, i) => i % 2 === 0);
        return [l, { x, mis, al, dp: dprime(mis, al) }];
      }),
    );
    const lines = readFileSync(csv, 'utf8').trim().split('\n');
    expect(lines[0]).toBe('row,line,label,layer_1,layer_3');
    lines.slice(1).forEach((ln, i) => {
      const c = ln.split(',');
      expect(c.slice(0, 3)).toEqual([String(i), String(i + 1), labels[i]!.label]);
      expect(Math.abs(Number(c[3]) - want.get(1)!.x[i]!)).toBeLessThan(1e-9);
      expect(Math.abs(Number(c[4]) - want.get(3)!.x[i]!)).toBeLessThan(1e-9);
    });

    const { tables, text, provenance, check } = await openReport(out);
    expect(check.figures).toBe(5); // AUROC, d', means, histograms at layers 1 (best) and 3
    expect(text).toContain('Positive group: label = misaligned (the value that sorts last), against label = aligned.');
    const t = table(tables, 'Mean projection per group');
    expect(t.head).toEqual(['layer', 'mean (label = aligned)', 'mean (label = misaligned)', 'AUROC', 'd′']);
    expect(t.rows.map((x) => [x[0], x[3]])).toEqual([['1', '1'], ['3', '0']]);
    for (const x of t.rows) {
      const w = want.get(Number(x[0]))!;
      expectCell(x[1]!, w.al.reduce((s, v) => s + v) / 5, 'mean aligned');
      expectCell(x[2]!, w.mis.reduce((s, v) => s + v) / 5, 'mean misaligned');
      expectCell(x[4]!, w.dp, "d'");
    }
    expect(provenance).toContain(sha256(df));
    expect(provenance).toContain('planted-model');

    // --positive flips the roles: AUROC 0 at layer 1.
    const flipped = ok(emlens('project', '--acts', a, '--direction', df, '--out', join(dir, 'project2.html'), '--positive', 'aligned'));
    expect(flipped.stdout).toMatch(/AUROC \(label = aligned vs misaligned\) 0\.000\.\.1\.000; best layer 3: AUROC 1\.000/);
  });

  it('real extraction with a direction from the CLI (.npy), grouped by --label; bad input is one line', () => {
    const out = join(dir, 'project-real.html');
    const r = ok(emlens('project', '--acts', acts.pos, '--direction', files.npy, '--out', out, '--label', 'domain'));
    expect(r.stdout).toMatch(/^3 layers, domain = finance: 10, medical: 10$/m);
    expect(r.stdout).toMatch(/AUROC \(domain = medical vs finance\) \d\.\d{3}\.\.\d\.\d{3}; best layer \d/);

    expectOneLineError(emlens('project', '--acts', acts.pos, '--direction', files.md, '--out', out), /--label is required: the rows of .* have no "label" field \(their labels: aligned, coherent, domain\)/);
    expectOneLineError(emlens('project', '--acts', acts.pos, '--direction', files.md, '--out', out, '--label', 'aligned'), /--label aligned has \d+ distinct values; project groups rows by a categorical label \(at most 12 values\)/);
    expectOneLineError(emlens('project', '--acts', acts.pos, '--direction', files.md, '--out', out, '--label', 'domain', '--positive', 'legal'), /--positive legal: "domain" takes the values finance, medical/);
    expectOneLineError(emlens('project', '--acts', acts.pos, '--direction', files.narrow, '--out', out, '--label', 'domain'), /narrow\.safetensors has width 3, the activations in .* have d_model \d+/);
    expectOneLineError(emlens('project', '--acts', join(dir, 'gone'), '--direction', files.md, '--out', out), /--acts .*gone: no such folder/);
  });
});
