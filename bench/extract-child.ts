/**
 * Extraction measurements in a fresh process: `node dist-bench/bench/extract-child.js <mode> '<json>'`.
 *
 * - write: writes the random Qwen2.5-0.5B-shaped model as a model folder (config.json, a
 *   word-level tokenizer, model.safetensors in F32: BF16 would take seconds more to convert
 *   here, and the engine computes in fp32 either way) and hashes it once,
 *   so that the extractions below find the weights fingerprint in the (bench's own) cache.
 * - time: loads it with LoadedModel.load and times, interleaved, one forward of 4 x 128 tokens
 *   (the forward section's call: every resid_post, no LM head) and a whole extractActivations
 *   run (all layers, pool mean, batch-tokens 512 = 4 rows of 128).
 * - rss: one extraction of N rows, nothing else: the process's peak RSS.
 *
 * Prints one JSON line on stdout (progress on stderr).
 */
import { writeFileSync } from 'node:fs';
import { ensureDir } from '../src/io/paths.js';
import { join } from 'node:path';
import { LoadedModel } from '../src/backend/model.js';
import { extractActivations } from '../src/activations/extract.js';
import { hookName } from '../src/hooks/names.js';
import { type StWriteTensor, writeSafetensors } from '../src/io/safetensors/write.js';
import { weightsFingerprint } from '../src/model/fingerprint.js';
import type { ForwardRequest, ForwardResult } from '../src/runtime/engine.js';
import { benchSpec, log, peakRss, QWEN25_05B_CONFIG, benchWeights, stats, type Stats, childMain } from './util.js';
import { ROW_TOKENS, textRows, writeBenchTokenizer } from './text-rows.js';

export const BATCH_TOKENS = 512;

export interface WriteArgs {
  dir: string;
}
export interface WriteResult {
  fileBytes: number;
  weightBytes: number;
  writeMs: number;
  hashMs: number;
}

export interface TimeArgs {
  dir: string;
  out: string;
  /** Rows per timed extraction. */
  rows: number;
  warmup: number;
  runs: number;
}
export interface TimeResult {
  rows: number;
  rowTokens: number;
  batchTokens: number;
  loadMs: number;
  /** First forward: compiles the graph variant. */
  firstCallMs: number;
  /** Per round: one forward of 4 x 128 tokens. */
  forwardMs: number[];
  /** Per round: the whole extractActivations call. */
  extractMs: number[];
  /** Per round: time spent inside engine.forward during the extraction. */
  extractForwardMs: number[];
  forward: Stats;
  extract: Stats;
  peakRss: number;
}

export interface RssArgs {
  dir: string;
  out: string;
  rows: number;
}
export interface RssResult {
  rows: number;
  tokens: number;
  rssBaseline: number;
  rssLoaded: number;
  extractMs: number;
  peakRss: number;
}

const rss = () => process.memoryUsage().rss;


function write(a: WriteArgs): WriteResult {
  const spec = benchSpec();
  ensureDir(a.dir);
  const t0 = performance.now();
  const { weights, bytes } = benchWeights(spec);
  writeFileSync(join(a.dir, 'config.json'), JSON.stringify(QWEN25_05B_CONFIG, null, 2));
  writeBenchTokenizer(a.dir);
  const tensors = new Map<string, StWriteTensor>();
  let fileBytes = 0;
  for (const [name, w] of weights) {
    tensors.set(name, { shape: w.shape, data: w.data });
    fileBytes += w.data.byteLength;
  }
  const file = join(a.dir, 'model.safetensors');
  writeSafetensors(file, tensors);
  const writeMs = performance.now() - t0;
  const t1 = performance.now();
  weightsFingerprint([file]);
  const hashMs = performance.now() - t1;
  log(`extract: wrote ${(fileBytes / 2 ** 30).toFixed(2)} GiB model in ${(writeMs / 1000).toFixed(1)} s, hashed in ${(hashMs / 1000).toFixed(1)} s`);
  return { fileBytes, weightBytes: bytes, writeMs, hashMs };
}

const dataset = (n: number) => ({ file: 'bench-rows.jsonl', sha256: '0'.repeat(64), selection: { rows: n } });

async function time(a: TimeArgs): Promise<TimeResult> {
  const t0 = performance.now();
  const model = await LoadedModel.load(a.dir);
  const loadMs = performance.now() - t0;
  const spec = model.spec;
  const rows = textRows(a.rows);
  const tok = model.tokenizer!;
  const ids = rows.slice(0, BATCH_TOKENS / ROW_TOKENS).map((r) => tok.encode((r as { text: string }).text));
  if (ids.some((r) => r.length !== ROW_TOKENS)) throw new Error(`bench rows do not tokenize to ${ROW_TOKENS} tokens`);
  const capture = Array.from({ length: spec.nLayers }, (_, l) => hookName(l, 'resid_post'));

  // Time spent in engine.forward, whoever calls it.
  const engine = model.engine;
  const forward = engine.forward.bind(engine);
  let inForward = 0;
  engine.forward = async (req: ForwardRequest): Promise<ForwardResult> => {
    const s = performance.now();
    try {
      return await forward(req);
    } finally {
      inForward += performance.now() - s;
    }
  };
  const fwd = async () => {
    const r = await engine.forward({ ids, capture, logits: 'none' });
    if (r.captures.size !== capture.length) throw new Error('missing captures');
  };
  const extract = (n: number) =>
    extractActivations(model, rows.slice(0, n), {
      outDir: a.out,
      layers: 'all',
      hook: 'resid_post',
      pool: 'mean',
      overwrite: true,
      batchTokens: BATCH_TOKENS,
      dataset: dataset(n),
    });

  const t1 = performance.now();
  await fwd();
  const firstCallMs = performance.now() - t1;
  log(`extract: model loaded in ${(loadMs / 1000).toFixed(1)} s, first forward ${(firstCallMs / 1000).toFixed(1)} s`);
  for (let i = 1; i < a.warmup; i++) await fwd();
  await extract(BATCH_TOKENS / ROW_TOKENS); // warms the extraction path (one batch)

  const forwardMs: number[] = [];
  const extractMs: number[] = [];
  const extractForwardMs: number[] = [];
  for (let r = 0; r < a.runs; r++) {
    let s = performance.now();
    await fwd();
    forwardMs.push(performance.now() - s);
    inForward = 0;
    s = performance.now();
    const meta = await extract(a.rows);
    extractMs.push(performance.now() - s);
    extractForwardMs.push(inForward);
    if (meta.rows !== a.rows || meta.tokens_per_row.some((t) => t !== ROW_TOKENS)) throw new Error('extraction wrote unexpected rows');
    log(`extract: round ${r + 1}/${a.runs}: forward ${forwardMs[r]!.toFixed(0)} ms, extraction of ${a.rows} rows ${extractMs[r]!.toFixed(0)} ms`);
  }
  return {
    rows: a.rows,
    rowTokens: ROW_TOKENS,
    batchTokens: BATCH_TOKENS,
    loadMs,
    firstCallMs,
    forwardMs,
    extractMs,
    extractForwardMs,
    forward: stats(forwardMs),
    extract: stats(extractMs),
    peakRss: peakRss(),
  };
}

async function memory(a: RssArgs): Promise<RssResult> {
  const rssBaseline = rss();
  const model = await LoadedModel.load(a.dir);
  const rssLoaded = rss();
  const rows = textRows(a.rows);
  const t0 = performance.now();
  const meta = await extractActivations(model, rows, {
    outDir: a.out,
    layers: 'all',
    hook: 'resid_post',
    pool: 'mean',
    overwrite: true,
    batchTokens: BATCH_TOKENS,
    dataset: dataset(a.rows),
  });
  const extractMs = performance.now() - t0;
  const tokens = meta.tokens_per_row.reduce((s, t) => s + t, 0);
  log(`extract: ${a.rows} rows in ${(extractMs / 1000).toFixed(1)} s, peak RSS ${(peakRss() / 2 ** 30).toFixed(2)} GiB`);
  return { rows: a.rows, tokens, rssBaseline, rssLoaded, extractMs, peakRss: peakRss() };
}

await childMain('extract child', {
  write: (a: WriteArgs) => write(a),
  time: (a: TimeArgs) => time(a),
  rss: (a: RssArgs) => memory(a),
});
