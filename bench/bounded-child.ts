/**
 * Memory-bounded extraction measurements in a fresh process: `node dist-bench/bench/bounded-child.js <mode> '<json>'`.
 *
 * - write: the random Qwen2.5-0.5B-shaped model as a model folder with BF16 weights (as the real
 *   checkpoint ships) and a word-level tokenizer, hashed once (the fingerprint cache is the bench's).
 * - time: the same extraction (text rows, all layers, resid_post, pool mean), interleaved, on the
 *   model loaded whole (LoadedModel.load) and opened memory-bounded (LoadedModel.openBounded,
 *   forced to `layersPerGroup` layers per group, so every layer is read from disk in each run).
 * - big: one memory-bounded extraction on a model folder (the 7B-shaped one), nothing else
 *   before it but hashing: the process's peak RSS, wall time, time spent reading weights.
 *
 * Prints one JSON line on stdout (progress on stderr).
 */
import { writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { LoadedModel } from '../src/backend/model.js';
import { extractActivations, type ExtractOptions } from '../src/activations/extract.js';
import type { DataRow } from '../src/data/rows.js';
import { ensureDir } from '../src/io/paths.js';
import { type StWriteTensor, writeSafetensors } from '../src/io/safetensors/write.js';
import { weightsFingerprint } from '../src/model/fingerprint.js';
import { LayerWeightReader } from '../src/model/layer-weights.js';
import { ROW_TOKENS, textRows, writeBenchTokenizer } from './text-rows.js';
import type { LayerwisePlan } from '../src/runtime/layerwise.js';
import { benchSpec, benchWeights, childMain, log, peakRss, QWEN25_05B_CONFIG } from './util.js';


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
  peakRss: number;
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
  const rssStart = process.memoryUsage().rss;
  const model = await LoadedModel.openBounded(a.dir, { maxMemory: a.maxMemory });
  const h = performance.now();
  model.weightsSha256();
  const hashMs = performance.now() - h;
  log(`bounded: 7B-shaped weights fingerprinted in ${(hashMs / 1000).toFixed(1)} s`);
  const rows = textRows(a.rows);
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
  return { extractMs, readMs, hashMs, tokens: meta.tokens_per_row.reduce((x, y) => x + y, 0), plan: plan!, rssStart, peakRss: peakRss() };
}

await childMain('bounded child', {
  write: (a: { dir: string }) => write(a),
  time: (a: TimeArgs) => time(a),
  big: (a: BigArgs) => big(a),
});
