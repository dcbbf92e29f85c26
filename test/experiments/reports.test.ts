/**
 * emlens compare / stability / project end to end: the binary as a user runs it on real files (a
 * tiny checkpoint, extracted sets, direction files of all three formats, planted sets), each
 * report opened in a real headless Chromium (no console errors, every figure drawn, nothing
 * fetched), and the numbers in its tables checked against computations done here.
 */
import { writePlanted } from '../helpers/planted.js';
import { cos64, randomRows, referenceAgreement, referenceBootstrap, referenceSplitHalf } from '../directions/data.js';
import { spawnSync } from 'node:child_process';
import { createHash } from 'node:crypto';
import { copyFileSync, mkdirSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join, resolve } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { LoadedModel } from '../../src/backend/model.js';
import { extractActivations } from '../../src/activations/extract.js';
import { openActivations } from '../../src/activations/read.js';
import { readJsonl } from '../../src/data/rows.js';
import { readDirectionFile, writeDirectionFile } from '../../src/io/directions.js';
import { rng } from '../../src/runtime/random.js';
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

/** A drawn trace as Plotly holds it in the page (gd.data). */
interface Trace {
  name: string;
  type: string;
  x: (number | string)[];
  y: (number | string | null)[];
  error_y?: { array?: (number | null)[]; arrayminus?: (number | null)[]; symmetric?: boolean; visible?: boolean };
  line?: { dash?: string; color?: string };
  marker?: { symbol?: string };
  z?: (number | null)[][];
  showlegend?: boolean;
  customdata?: unknown[];
}

/** Opens the report in Chromium; asserts it is clean and fully drawn; returns its tables and provenance text. */
async function openReport(file: string, screenshot?: string): Promise<{ check: BrowserCheck; tables: Table[]; provenance: string; text: string; figures: Record<string, Trace[]> }> {
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
      figures: Object.fromEntries(
        Array.from(document.querySelectorAll<HTMLElement>('[data-emlens-figure]')).map((el) => [
          el.dataset.emlensFigure,
          JSON.parse(JSON.stringify((el as unknown as { data: unknown[] }).data ?? [])),
        ]),
      ),
    }),
    ...(screenshot ? { screenshot: 'full' as const } : {}),
  });
  if (screenshot && check.screenshot) {
    writeFileSync(screenshot, check.screenshot);
    copyFileSync(file, screenshot.replace(/\.png$/, '.html'));
  }
  expect(check.consoleErrors).toEqual([]);
  expect(check.blockedRequests).toEqual([]);
  expect(check.figures).toBeGreaterThan(0);
  expect(check.rendered, JSON.stringify(check.perFigure)).toBe(check.figures);
  expect(check.plotsRendered).toBe(check.figures);
  const p = check.probed as { tables: Table[]; provenance: string; text: string; figures: Record<string, Trace[]> };
  return { check, ...p };
}

/** The layout a figure was drawn with (gd.layout, after Plotly's defaults). */
async function layoutOf(file: string, id: string): Promise<{ legend: { orientation: string } }> {
  const check = await checkReportInBrowser(file, {
    probe: () =>
      Object.fromEntries(
        Array.from(document.querySelectorAll<HTMLElement>('[data-emlens-figure]')).map((el) => [
          el.dataset.emlensFigure,
          JSON.parse(JSON.stringify((el as unknown as { _fullLayout: { legend: unknown } })._fullLayout.legend ?? null)),
        ]),
      ),
  });
  return { legend: (check.probed as Record<string, { orientation: string }>)[id]! };
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

  it('ten files: per-layer cosines as a pair x layer heatmap equal to cosines computed here; norms stay distinct; every plot draws', async () => {
    const d = 12;
    const base = uniform(4 * d, 90);
    const names: string[] = [];
    const vecs: Map<number, Float32Array>[] = [];
    for (let f = 0; f < 10; f++) {
      const noise = uniform(4 * d, 100 + f);
      // file 9 lacks layer 0: its pairs get blank cells there
      const ls = f === 9 ? [1, 2, 3] : [0, 1, 2, 3];
      const m = new Map(ls.map((l) => [l, Float32Array.from({ length: d }, (_, j) => base[l * d + j]! + (f / 6) * noise[l * d + j]!)]));
      const name = `dir${f}.safetensors`;
      writeDirectionFile(join(dir, name), m, { method: 'planted' });
      names.push(join(dir, name));
      vecs.push(m);
    }
    const out = join(dir, 'compare-10.html');
    ok(emlens('compare', ...names, '--out', out));
    const { tables, figures, check } = await openReport(out, shot('compare-10.png'));
    expect(check.figures).toBe(2 + 1 + 1 + 10); // signed + abs heatmaps, norms, files matrix, 10 within-file
    const pairs: [number, number][] = [];
    for (let a = 0; a < 10; a++) for (let b = a + 1; b < 10; b++) pairs.push([a, b]);
    for (const [id, abs] of [['cosine-signed', false], ['cosine-abs', true]] as const) {
      const h = figures[id]![0]!;
      expect(h.type).toBe('heatmap');
      expect(h.y).toEqual(pairs.map(([a, b]) => `dir${a}.safetensors vs dir${b}.safetensors`));
      expect(h.x).toEqual(['0', '1', '2', '3']);
      pairs.forEach(([a, b], k) => {
        for (let l = 0; l < 4; l++) {
          const z = h.z![k]![l]!;
          if (!vecs[a]!.has(l) || !vecs[b]!.has(l)) expect(z, `${id} ${a},${b} layer ${l}`).toBeNull();
          else {
            const c = cos64(vecs[a]!.get(l)!, vecs[b]!.get(l)!);
            expect(Math.abs(z - (abs ? Math.abs(c) : c)), `${id} ${a},${b} layer ${l}`).toBeLessThan(1e-6);
          }
        }
      });
    }
    const per = table(tables, 'Signed cosine per pair');
    expect(per.head).toEqual(['pair', '0', '1', '2', '3']);
    expect(per.rows).toHaveLength(45);
    expectCell(per.rows[0]![2]!, cos64(vecs[0]!.get(1)!, vecs[1]!.get(1)!), 'dir0 vs dir1 layer 1');
    expect(per.rows[8]![1]).toBe('—'); // dir0 vs dir9 at layer 0
    // Ten norm lines: no two share colour and dash; the legend is a column beside the plot.
    const norms = figures.norms!;
    expect(norms).toHaveLength(10);
    expect(new Set(norms.map((t) => `${t.line?.color} ${t.line?.dash}`)).size).toBe(10);
    const layout = await layoutOf(out, 'norms');
    expect(layout.legend.orientation).toBe('v');
  });

  it('bad input: one line, non-zero exit', () => {
    const out = join(dir, 'bad.html');
    expectOneLineError(emlens('compare', files.md, '--out', out), /compare needs at least two direction files, got 1/);
    expectOneLineError(emlens('compare', files.md, join(dir, 'missing.safetensors'), '--out', out), /missing\.safetensors: no such direction file/);
    expectOneLineError(emlens('compare', files.md, files.narrow, '--out', out), /has width \d+, .*narrow\.safetensors has 3: directions of different models cannot be compared/);
    expectOneLineError(emlens('compare', files.md, acts.pos, '--out', out), /: is a folder, not a direction file/);
  });
});

/** Screenshots for a person to look at: EMLENS_SHOTS=/some/dir npx vitest run ... */
const SHOTS = process.env.EMLENS_SHOTS;
if (SHOTS) mkdirSync(SHOTS, { recursive: true });
const shot = (name: string) => (SHOTS ? join(SHOTS, name) : undefined);

/** The trace of a figure with this name (the visible line, not a band edge). */
function trace(figs: Record<string, Trace[]>, id: string, name: string): Trace {
  const t = figs[id]?.find((x) => x.name === name);
  if (!t) throw new Error(`figure ${id} has no trace "${name}" (has ${(figs[id] ?? []).map((x) => x.name).join(', ')})`);
  return t;
}

/** Error bars drawn from value - arrayminus to value + array equal [lo, hi]. */
function expectBars(t: Trace, k: number, lo: number, hi: number, what: string) {
  const y = Number(t.y[k]);
  expect(t.error_y?.visible, what).toBe(true);
  expect(Math.abs(y - t.error_y!.arrayminus![k]! - lo), `${what} lower`).toBeLessThan(1e-9);
  expect(Math.abs(y + t.error_y!.array![k]! - hi), `${what} upper`).toBeLessThan(1e-9);
}

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
    expect(r.stdout).toMatch(/rows per side for two disjoint subsamples to agree at 0\.9: 1:1, 2:1$/m);
    const { tables } = await openReport(out);
    const t = table(tables, 'Per layer');
    for (const x of t.rows) expect(x.slice(2, 10)).toEqual(['1', '1', '1', '1', '1', '1', '1', '1']);
    const curve = table(tables, /^Mean cosine between the directions of two disjoint subsamples/);
    expect(curve.head).toEqual(['layer', '1', '2', '4', '8']); // up to half the rows
  });

  it('pure noise, 3 + 3 rows or 60 + 60: does not settle (a subsample against the whole set always did)', async () => {
    const d = 16;
    for (const n of [6, 60]) {
      const pos = writePlanted(join(dir, `noise-pos-${n}`), { layers: new Map([[0, randomRows(n, d, 50 + n)]]), d });
      const neg = writePlanted(join(dir, `noise-neg-${n}`), { layers: new Map([[0, randomRows(n, d, 60 + n)]]), d });
      const out = join(dir, `stability-noise-${n}.html`);
      const r = ok(emlens('stability', '--pos', pos, '--neg', neg, '--out', out, '--bootstrap', '40'));
      expect(r.stdout).toMatch(/rows per side for two disjoint subsamples to agree at 0\.9: 0:does not settle$/m);
      const { tables } = await openReport(out);
      expect(table(tables, 'Per layer').rows[0]!.slice(8)).toEqual(['does not settle', 'does not settle']);
      const means = table(tables, /^Mean cosine between/).rows[0]!.slice(1).map(Number);
      for (const m of means) expect(Math.abs(m)).toBeLessThan(0.5);
    }
  });

  it('one row per side: no subsamples to compare, "too few rows", and no empty figure', async () => {
    const d = 4;
    const pos = writePlanted(join(dir, 'one-pos'), { layers: new Map([[0, uniform(d, 1)]]), d });
    const neg = writePlanted(join(dir, 'one-neg'), { layers: new Map([[0, uniform(d, 2)]]), d });
    const out = join(dir, 'stability-one.html');
    const r = emlens('stability', '--pos', pos, '--neg', neg, '--out', out, '--bootstrap', '5');
    expect(r.code, r.stderr).toBe(0);
    expect(r.stderr).toMatch(/warning: too few rows for split-half and settling/);
    expect(r.stdout).toMatch(/to agree at 0\.9: 0:too few rows$/m);
    const { tables, text, check } = await openReport(out);
    expect(check.figures).toBe(1);
    expect(table(tables, 'Per layer').rows[0]!.slice(8)).toEqual(['too few rows', 'too few rows']);
    expect(text).toContain('Too few rows for two disjoint subsamples; settling is not measured.');
  });

  it('real sets: norms, intervals, settling and the figures equal computations written here; every plot draws', async () => {
    const out = join(dir, 'stability.html');
    const r = ok(emlens('stability', '--pos', acts.pos, '--neg', acts.neg, '--out', out, '--bootstrap', '25', '--seed', '3'));
    expect(r.stdout).toMatch(/^mean-diff at resid_post, 3 layers, 25 bootstrap resamples, seed 3$/m);
    const { tables, provenance, check, figures } = await openReport(out, shot('stability.png'));
    const t = table(tables, 'Per layer');
    const curveT = table(tables, /^Mean cosine between the directions of two disjoint subsamples/);
    const sizes = [1, 2, 4, 8, 10]; // 20 rows per side: halves of 10
    expect(curveT.head).toEqual(['layer', ...sizes.map(String)]);
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
      // Seeds as documented: bootstrap seed, split-half seed + 1, subsamples seed + 2.
      const boot = referenceBootstrap(p, q, D, 25, 3);
      expectCell(x[2]!, boot.mean, 'bootstrap mean');
      expectCell(x[3]!, boot.lo, 'bootstrap lo');
      expectCell(x[4]!, boot.hi, 'bootstrap hi');
      const sh = referenceSplitHalf(p, q, D, 25, 4);
      expectCell(x[5]!, sh.mean, 'split-half');
      expectCell(x[6]!, sh.lo, 'split-half lo');
      expectCell(x[7]!, sh.hi, 'split-half hi');
      const agree = referenceAgreement(p, q, D, sizes, 25, 5);
      agree.forEach((a, k) => expectCell(curveT.rows[i]![k + 1]!, a.mean, `agreement layer ${l} size ${sizes[k]}`));
      const from = sizes.findIndex((_, k) => agree.slice(k).every((a) => a.mean >= 0.9));
      expect(x[8]).toBe(from < 0 ? 'does not settle' : String(sizes[from]));
      const fromLo = sizes.findIndex((_, k) => agree.slice(k).every((a) => a.lo >= 0.9));
      expect(x[9]).toBe(fromLo < 0 ? 'does not settle' : String(sizes[fromLo]));
      // The figures carry the same intervals as error bars.
      const bt = trace(figures, 'stability-bands', 'bootstrap vs full');
      expect((bt.customdata![i] as number[])[2]).toBe(l); // drawn a little to the side of layer l
      expect(Math.abs(Number(bt.x[i]) - l)).toBeLessThan(0.5);
      expect(Math.abs(Number(bt.y[i]) - boot.mean)).toBeLessThan(1e-9);
      expectBars(bt, i, boot.lo, boot.hi, `bootstrap bars layer ${l}`);
      expectBars(trace(figures, 'stability-bands', 'half vs half'), i, sh.lo, sh.hi, `split-half bars layer ${l}`);
      const ct = trace(figures, 'subsample-curve', `layer ${l}`);
      expect(ct.customdata).toEqual(sizes);
      ct.x.forEach((x, k) => expect(Math.abs(Math.log(Number(x) / sizes[k]!))).toBeLessThan(0.1));
      agree.forEach((a, k) => expectBars(ct, k, a.lo, a.hi, `agreement bars layer ${l} size ${sizes[k]}`));
    }
    const settles = t.rows.some((x) => x[8] !== 'does not settle' || x[9] !== 'does not settle');
    expect(check.figures).toBe(settles ? 3 : 2); // the settle-by-layer figure only when something settles
    // Lines that could coincide stay apart: each series its own dash.
    const dashes = (id: string) => figures[id]!.filter((x) => x.showlegend !== false).map((x) => x.line?.dash);
    for (const id of ['stability-bands', 'subsample-curve']) expect(new Set(dashes(id)).size, id).toBe(dashes(id).length);
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
    expect(r.stdout).toMatch(/AUROC \(label = misaligned vs label = aligned\) on all rows 0\.000\.\.1\.000; best layer 1: AUROC 1\.000/);

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

    const { tables, text, provenance, check } = await openReport(out, shot('project.png'));
    expect(check.figures).toBe(5); // AUROC, d', means, histograms at layers 1 (best) and 3
    expect(text).toContain('Positive group: label = misaligned (the value that sorts last), against label = aligned.');
    const t = table(tables, 'Mean projection per group');
    expect(t.head).toEqual(['layer', 'mean (label = aligned)', 'mean (label = misaligned)', 'AUROC (all rows)', 'd′ (all rows)']);
    expect(text).toContain('measured on the rows the direction may have been computed from (in-sample)');
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
    expect(flipped.stdout).toMatch(/AUROC \(label = aligned vs label = misaligned\) on all rows 0\.000\.\.1\.000; best layer 3: AUROC 1\.000/);
  });

  // 40 planted rows: a weak shift along u for "misaligned" (so AUROC < 1), a numeric score and a text label.
  const split = (() => {
    const d = 8;
    const n = 40;
    const u = Float32Array.from([0.5, -0.5, 0.5, 0.5, 0, 0, 0, 0]);
    const g = (() => {
      const x = uniform(n * d * 2, 77);
      return (k: number) => x[k]! + x[n * d + k]!; // triangular noise
    })();
    const labels = Array.from({ length: n }, (_, i) => ({ label: i % 3 === 0 ? 'misaligned' : 'aligned', score: (i * 37) % 100, domain: i % 2 ? 'medical' : 'finance' }));
    const data = Float32Array.from({ length: n * d }, (_, k) => g(k) + (labels[Math.floor(k / d)]!.label === 'misaligned' ? 0.8 * u[k % d]! : 0));
    return { d, n, u, labels, data };
  })();
  const proj = (i: number) => {
    let s = 0;
    for (let j = 0; j < split.d; j++) s += split.data[i * split.d + j]! * split.u[j]!;
    return s;
  };
  /** P(pos > neg) + P(tie) / 2 over all pairs, by brute force. */
  const aurocHere = (p: number[], q: number[]) => {
    let s = 0;
    for (const a of p) for (const b of q) s += a > b ? 1 : a === b ? 0.5 : 0;
    return s / (p.length * q.length);
  };
  const dprimeHere = (p: number[], q: number[]) => {
    const mv = (x: number[]) => {
      const m = x.reduce((s, v) => s + v, 0) / x.length;
      return [m, x.reduce((s, v) => s + (v - m) ** 2, 0) / (x.length - 1)] as const;
    };
    const [mp, vp] = mv(p);
    const [mq, vq] = mv(q);
    return (mp - mq) / Math.sqrt((vp + vq) / 2);
  };
  /** The documented split: groups in sorted order, each shuffled from the back by one seeded stream, the first round(f n) to test. */
  const testRows = (groupOf: (i: number) => string, groups: string[], f: number, seed: number) => {
    const r = rng(seed);
    const test = new Set<number>();
    for (const gv of groups) {
      const idx = Array.from({ length: split.n }, (_, i) => i).filter((i) => groupOf(i) === gv);
      for (let i = idx.length - 1; i > 0; i--) {
        const j = Math.floor(r() * (i + 1));
        [idx[i], idx[j]] = [idx[j]!, idx[i]!];
      }
      idx.slice(0, Math.round(f * idx.length)).forEach((i) => test.add(i));
    }
    return test;
  };

  it('--test-fraction: AUROC and d′ on a stratified held-out split and on all rows, both as computed here; the CSV names the split', async () => {
    const a = writePlanted(join(dir, 'split-acts'), { layers: new Map([[2, split.data]]), d: split.d, labels: split.labels });
    const df = join(dir, 'split-dir.safetensors');
    writeDirectionFile(df, new Map([[2, split.u.map((x) => 5 * x)]]), { method: 'planted' });
    const out = join(dir, 'project-split.html');
    const csv = join(dir, 'split.csv');
    const r = ok(emlens('project', '--acts', a, '--direction', df, '--out', out, '--test-fraction', '0.25', '--seed', '7', '--write-csv', csv));
    const test = testRows((i) => split.labels[i]!.label, ['aligned', 'misaligned'], 0.25, 7);
    const isMis = (i: number) => split.labels[i]!.label === 'misaligned';
    const all = Array.from({ length: split.n }, (_, i) => i);
    const side = (rows: number[], mis: boolean) => rows.filter((i) => isMis(i) === mis).map(proj);
    const tst = all.filter((i) => test.has(i));
    expect(side(tst, true)).toHaveLength(Math.round(0.25 * 14)); // 14 misaligned rows, 26 aligned
    expect(side(tst, false)).toHaveLength(Math.round(0.25 * 26));
    const aAll = aurocHere(side(all, true), side(all, false));
    const aTest = aurocHere(side(tst, true), side(tst, false));
    expect(aAll).toBeGreaterThan(0.6);
    expect(aAll).toBeLessThan(1);
    expect(aTest).not.toBeCloseTo(aAll, 3); // the two columns measure different rows
    expect(r.stdout).toMatch(new RegExp(`AUROC on the test split \\(0\\.25 of each group, seed 7: 4 \\+ 7 rows\\) ${aTest.toFixed(3)}\\.\\.${aTest.toFixed(3)}; at layer 2`));

    const { tables, text } = await openReport(out, shot('project-split.png'));
    const t = table(tables, 'Mean projection per group');
    expect(t.head).toEqual(['layer', 'mean (label = aligned)', 'mean (label = misaligned)', 'AUROC (all rows)', 'd′ (all rows)', 'AUROC (test)', 'd′ (test)']);
    expectCell(t.rows[0]![3]!, aAll, 'AUROC all');
    expectCell(t.rows[0]![4]!, dprimeHere(side(all, true), side(all, false)), 'd′ all');
    expectCell(t.rows[0]![5]!, aTest, 'AUROC test');
    expectCell(t.rows[0]![6]!, dprimeHere(side(tst, true), side(tst, false)), 'd′ test');
    expect(text).toContain('Held-out split: 0.25 of each group (stratified, seed 7), 4 positive and 7 negative rows');
    const lines = readFileSync(csv, 'utf8').trim().split('\n');
    expect(lines[0]).toBe('row,line,label,split,layer_2');
    lines.slice(1).forEach((ln, i) => expect(ln.split(',')[3]).toBe(test.has(i) ? 'test' : 'train'));
    // another seed, another split
    const other = ok(emlens('project', '--acts', a, '--direction', df, '--out', out, '--test-fraction', '0.25', '--seed', '8'));
    const t8 = all.filter((i) => testRows((k) => split.labels[k]!.label, ['aligned', 'misaligned'], 0.25, 8).has(i));
    expect(other.stdout).toContain(`seed 8: 4 + 7 rows) ${aurocHere(side(t8, true), side(t8, false)).toFixed(3)}`);
  });

  it('--threshold: a numeric label split into < T and >= T, named in the report; bad values are one line', async () => {
    const a = join(dir, 'split-acts');
    const df = join(dir, 'split-dir.safetensors');
    const out = join(dir, 'project-threshold.html');
    const r = ok(emlens('project', '--acts', a, '--direction', df, '--out', out, '--label', 'score', '--threshold', '30', '--positive', '<30'));
    const low = (i: number) => split.labels[i]!.score < 30;
    const all = Array.from({ length: split.n }, (_, i) => i);
    const nLow = all.filter(low).length;
    expect(r.stdout).toMatch(new RegExp(`^1 layers, score < 30: ${nLow}, score >= 30: ${split.n - nLow}$`, 'm'));
    const want = aurocHere(all.filter(low).map(proj), all.filter((i) => !low(i)).map(proj));
    expect(r.stdout).toContain(`AUROC (score < 30 vs score >= 30) on all rows ${want.toFixed(3)}..${want.toFixed(3)}`);
    const { tables, text } = await openReport(out);
    const t = table(tables, 'Mean projection per group');
    expect(t.head).toEqual(['layer', 'mean (score < 30)', 'mean (score >= 30)', 'AUROC (all rows)', 'd′ (all rows)']);
    expectCell(t.rows[0]![1]!, all.filter(low).map(proj).reduce((s, v) => s + v, 0) / nLow, 'mean below');
    expectCell(t.rows[0]![3]!, want, 'AUROC');
    expect(text).toContain('Positive group: score < 30 (given by --positive), against score >= 30.');
    expect(text).toContain('rows grouped by "score" split at 30');
    // with a split too, stratified by the two threshold groups
    const both = ok(emlens('project', '--acts', a, '--direction', df, '--out', out, '--label', 'score', '--threshold', '30', '--test-fraction', '0.5'));
    const test = testRows((i) => (low(i) ? '< 30' : '>= 30'), ['< 30', '>= 30'], 0.5, 0);
    const tst = all.filter((i) => test.has(i));
    const aTest = aurocHere(tst.filter((i) => !low(i)).map(proj), tst.filter(low).map(proj));
    expect(both.stdout).toContain(`seed 0: ${Math.round((split.n - nLow) / 2)} + ${Math.round(nLow / 2)} rows) ${aTest.toFixed(3)}`);

    expectOneLineError(emlens('project', '--acts', a, '--direction', df, '--out', out, '--label', 'domain', '--threshold', '30'), /--threshold 30: "domain" is not numeric \(row 0 of .*split-acts, from line 1, has "finance"\)/);
    expectOneLineError(emlens('project', '--acts', a, '--direction', df, '--out', out, '--label', 'score', '--threshold', '1000'), /--threshold 1000: no row of .* has score >= 1000; nothing to separate/);
    expectOneLineError(emlens('project', '--acts', a, '--direction', df, '--out', out, '--label', 'score', '--threshold', 'x'), /--threshold must be a number, got "x"/);
    expectOneLineError(emlens('project', '--acts', a, '--direction', df, '--out', out, '--label', 'score', '--threshold', '30', '--positive', '30'), /--positive 30: "score" takes the values "< 30", ">= 30"/);
    expectOneLineError(emlens('project', '--acts', a, '--direction', df, '--out', out, '--label', 'score'), /--label score has \d+ distinct values; .* or give --threshold T to split it at T/);
    for (const f of ['0', '1', '1.5', '-0.2']) {
      expectOneLineError(emlens('project', '--acts', a, '--direction', df, '--out', out, `--test-fraction=${f}`), /--test-fraction must be in \(0, 1\)/);
    }
    expectOneLineError(emlens('project', '--acts', a, '--direction', df, '--out', out, '--test-fraction', '0.01'), /--test-fraction 0\.01 leaves the test split without rows where label = misaligned \(14 such rows in all\)/);
    expectOneLineError(emlens('project', '--acts', a, '--direction', df, '--out', out, '--test-fraction', '0.99'), /--test-fraction 0\.99 puts every row where label = misaligned in the test split/);
    expectOneLineError(emlens('project', '--acts', a, '--direction', df, '--out', out, '--seed', '3'), /--seed applies to --test-fraction only/);
  });

  it('real extraction with a direction from the CLI (.npy), grouped by --label; bad input is one line', () => {
    const out = join(dir, 'project-real.html');
    const r = ok(emlens('project', '--acts', acts.pos, '--direction', files.npy, '--out', out, '--label', 'domain'));
    expect(r.stdout).toMatch(/^3 layers, domain = finance: 10, medical: 10$/m);
    expect(r.stdout).toMatch(/AUROC \(domain = medical vs domain = finance\) on all rows \d\.\d{3}\.\.\d\.\d{3}; best layer \d/);

    expectOneLineError(emlens('project', '--acts', acts.pos, '--direction', files.md, '--out', out), /--label is required: the rows of .* have no "label" field \(their labels: aligned, coherent, domain\)/);
    expectOneLineError(emlens('project', '--acts', acts.pos, '--direction', files.md, '--out', out, '--label', 'aligned'), /--label aligned has \d+ distinct values; project groups rows by a categorical label \(at most 12 values\)/);
    expectOneLineError(emlens('project', '--acts', acts.pos, '--direction', files.md, '--out', out, '--label', 'domain', '--positive', 'legal'), /--positive legal: "domain" takes the values finance, medical/);
    expectOneLineError(emlens('project', '--acts', acts.pos, '--direction', files.narrow, '--out', out, '--label', 'domain'), /narrow\.safetensors has width 3, the activations in .* have d_model \d+/);
    expectOneLineError(emlens('project', '--acts', join(dir, 'gone'), '--direction', files.md, '--out', out), /--acts .*gone: no such folder/);
  });
});
