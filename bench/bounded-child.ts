/**
 * Memory-bounded extraction measurements in a fresh process: `node dist-bench/bench/bounded-child.js <mode> '<json>'`.
 *
 * - write: the random Qwen2.5-0.5B-shaped model as a model folder with BF16 weights (as the real
 *   checkpoint ships) and a word-level tokenizer, hashed once (the fingerprint cache is the bench's).
 * - time: the same extraction (text rows, all layers, resid_post, pool mean), interleaved, on the
 *   model loaded whole (LoadedModel.load) and opened memory-bounded (LoadedModel.openBounded,
 *   forced to `layersPerGroup` layers per group, so every layer is read from disk in each run).
 * - big: one memory-bounded extraction on a model folder (the 7B-shaped one): its peak RSS, wall
 *   time, time spent reading weights, and the Gemm roofline on the model's projection shapes at
 *   the extraction's rows per call, timed in this process with the runner's session options right
 *   before and right after it (the same machine load, threads and allocator as the extraction).
 *   The roofline's memory is collected and the peak-RSS mark reset before the extraction, so the
 *   peak is the extraction's own.
 *
 * Prints one JSON line on stdout (progress on stderr).
 */
import { readFileSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { setFlagsFromString } from 'node:v8';
import { runInNewContext } from 'node:vm';
import { LoadedModel } from '../src/backend/model.js';
import { extractActivations, type ExtractOptions } from '../src/activations/extract.js';
import type { DataRow } from '../src/data/rows.js';
import { ensureDir } from '../src/io/paths.js';
import { type StWriteTensor, writeSafetensors } from '../src/io/safetensors/write.js';
import { weightsFingerprint } from '../src/model/fingerprint.js';
import { LayerWeightReader } from '../src/model/layer-weights.js';
import { LayerwiseRunner } from '../src/runtime/layerwise.js';
import { gemmRoofline, type Roofline } from './roofline.js';
import { ROW_TOKENS, textRows, writeBenchTokenizer } from './text-rows.js';
import type { LayerwisePlan } from '../src/runtime/layerwise.js';
import { benchSpec, benchWeights, childMain, log, projections, QWEN25_05B_CONFIG } from './util.js';


export interface TimeArgs {
  dir: string;
  out: string;
  rows: number;
  runs: number;
  layersPerGroup: number;
  batchTokens: number;
}
export interface TimeResult {
  inMemoryMs: number[];
  boundedMs: number[];
  /** Per bounded run: time reading and converting weights. */
  boundedReadMs: number[];
  plan: LayerwisePlan;
  tokens: number;
}
export interface BigArgs {
  dir: string;
  out: string;
  rows: number;
  maxMemory: number;
  batchTokens: number;
}
export interface BigResult {
  extractMs: number;
  readMs: number;
  hashMs: number;
  tokens: number;
  plan: LayerwisePlan;
  rssStart: number;
  /** The extraction's peak RSS (the mark reset after the first roofline). */
  peakRss: number;
  /** Tokens (rows x padded length) of each batch the runner ran, as every Gemm of a block sees them. */
  callTokens: number[];
  /** The Gemm roofline at those tokens, right before and right after the extraction. */
  rooflineBefore: Roofline;
  rooflineAfter: Roofline;
}

/** Tokens (rows x padded length) of every batch LayerwiseRunner.run is given, one entry per batch of each call. */
const callTokens: number[] = [];
const runnerRun = LayerwiseRunner.prototype.run;
LayerwiseRunner.prototype.run = function (this: LayerwiseRunner, ...a: Parameters<typeof runnerRun>) {
  for (const rows of a[0]) callTokens.push(rows.length * Math.max(...rows.map((r) => r.length)));
  return runnerRun.apply(this, a);
};

/** V8's full collection, exposed at run time (the child runs without --expose-gc). */
function collect(): void {
  setFlagsFromString('--expose-gc');
  (runInNewContext('gc') as () => void)();
}

/** Linux: resets the peak RSS mark to the current RSS (clear_refs 5), read back as VmHWM. */
function resetPeak(): void {
  writeFileSync('/proc/self/clear_refs', '5');
}
function hwm(): number {
  const m = /VmHWM:\s+(\d+) kB/.exec(readFileSync('/proc/self/status', 'utf8'));
  if (!m) throw new Error('bounded child: no VmHWM in /proc/self/status');
  return Number(m[1]) * 1024;
}

/** Time spent in LayerWeightReader.readLayer, whoever calls it. */
let readMs = 0;
const readLayer = LayerWeightReader.prototype.readLayer;
LayerWeightReader.prototype.readLayer = function (this: LayerWeightReader, ...a: Parameters<typeof readLayer>) {
  const s = performance.now();
  try {
    return readLayer.apply(this, a);
  } finally {
    readMs += performance.now() - s;
  }
};

const dataset = (n: number) => ({ file: 'bench-rows.jsonl', sha256: '0'.repeat(64), selection: { rows: n } });

function write(a: { dir: string }): { fileBytes: number } {
  const spec = benchSpec();
  ensureDir(a.dir);
  const { weights } = benchWeights(spec);
  writeFileSync(join(a.dir, 'config.json'), JSON.stringify(QWEN25_05B_CONFIG, null, 2));
  writeBenchTokenizer(a.dir);
  const tensors = new Map<string, StWriteTensor>();
  let fileBytes = 0;
  for (const [name, w] of weights) {
    tensors.set(name, { shape: w.shape, data: w.data, dtype: 'BF16' });
    fileBytes += w.data.length * 2;
  }
  const file = join(a.dir, 'model.safetensors');
  writeSafetensors(file, tensors);
  weightsFingerprint([file]);
  log(`bounded: wrote the 0.5B-shaped model, ${(fileBytes / 2 ** 30).toFixed(2)} GiB BF16`);
  return { fileBytes };
}

async function time(a: TimeArgs): Promise<TimeResult> {
  const mem = await LoadedModel.load(a.dir);
  const disk = await LoadedModel.openBounded(a.dir, { maxMemory: 2 ** 40, layersPerGroup: a.layersPerGroup });
  const rows = textRows(a.rows);
  let plan: LayerwisePlan | undefined;
  const extract = (model: LoadedModel, n: number) => extractAll(model, rows.slice(0, n), a, { onPlan: (p) => (plan = p) });
  // Warm both paths (graph compiles) on one batch.
  const warm = Math.max(1, Math.floor(a.batchTokens / ROW_TOKENS));
  await extract(mem, warm);
  await extract(disk, warm);
  const inMemoryMs: number[] = [];
  const boundedMs: number[] = [];
  const boundedReadMs: number[] = [];
  for (let r = 0; r < a.runs; r++) {
    let s = performance.now();
    await extract(mem, a.rows);
    inMemoryMs.push(performance.now() - s);
    readMs = 0;
    s = performance.now();
    await extract(disk, a.rows);
    boundedMs.push(performance.now() - s);
    boundedReadMs.push(readMs);
    log(`bounded: round ${r + 1}/${a.runs}: in memory ${(inMemoryMs[r]! / 1000).toFixed(1)} s, bounded ${(boundedMs[r]! / 1000).toFixed(1)} s (reading weights ${(readMs / 1000).toFixed(1)} s)`);
  }
  return { inMemoryMs, boundedMs, boundedReadMs, plan: plan!, tokens: a.rows * ROW_TOKENS };
}

/** Both measurements' extraction: every layer's resid_post, mean-pooled, as `emlens extract` does. */
function extractAll(model: LoadedModel, rows: DataRow[], a: { out: string; batchTokens: number }, more: Partial<ExtractOptions>) {
  return extractActivations(model, rows, { outDir: a.out, layers: 'all', hook: 'resid_post', pool: 'mean', overwrite: true, batchTokens: a.batchTokens, dataset: dataset(rows.length), ...more });
}

async function big(a: BigArgs): Promise<BigResult> {
  const model = await LoadedModel.openBounded(a.dir, { maxMemory: a.maxMemory });
  const h = performance.now();
  model.weightsSha256();
  const hashMs = performance.now() - h;
  log(`bounded: 7B-shaped weights fingerprinted in ${(hashMs / 1000).toFixed(1)} s`);
  const rows = textRows(a.rows);
  // Text rows are exactly ROW_TOKENS tokens, so each batch is as many rows as batchTokens holds
  // (checked against what the runner ran, below).
  const perBatch = Math.max(1, Math.floor(a.batchTokens / ROW_TOKENS));
  const tokens = Math.min(a.rows, perBatch) * ROW_TOKENS;
  // The runner's graphs run without ORT's arena; so do the roofline's.
  const roofline = () => gemmRoofline(projections(model.spec), tokens, { warmup: 1, runs: 2, passes: 1, session: { cpuMemArena: false } });
  log(`bounded: Gemm roofline at ${tokens} tokens before the extraction (this process)`);
  const rooflineBefore = await roofline();
  collect();
  resetPeak();
  const rssStart = process.memoryUsage().rss;
  let plan: LayerwisePlan | undefined;
  readMs = 0;
  const s = performance.now();
  const meta = await extractAll(model, rows, a, {
    onPlan: (p) => {
      plan = p;
      log(`bounded: plan ${p.groups} groups of ${p.layersPerGroup}, spool ${p.spool}, estimated peak ${(p.peakBytes / 2 ** 30).toFixed(2)} GiB`);
    },
    onProgress: (p) => log(`bounded: ${p.rowsDone}/${p.rowsTotal} rows, ${(p.elapsedMs / 1000).toFixed(0)} s, RSS ${(process.memoryUsage().rss / 2 ** 30).toFixed(2)} GiB`),
  });
  const extractMs = performance.now() - s;
  const peak = Math.max(hwm(), process.memoryUsage().rss);
  const calls = [...callTokens];
  const other = calls.filter((t) => t !== tokens);
  if (other.length) throw new Error(`bounded child: the runner ran batches of ${[...new Set(other)].join(', ')} tokens, the roofline timed ${tokens}`);
  log(`bounded: Gemm roofline at ${tokens} tokens after the extraction (this process)`);
  const rooflineAfter = await roofline();
  return { extractMs, readMs, hashMs, tokens: meta.tokens_per_row.reduce((x, y) => x + y, 0), plan: plan!, rssStart, peakRss: peak, callTokens: calls, rooflineBefore, rooflineAfter };
}

await childMain('bounded child', {
  write: (a: { dir: string }) => write(a),
  time: (a: TimeArgs) => time(a),
  big: (a: BigArgs) => big(a),
});
