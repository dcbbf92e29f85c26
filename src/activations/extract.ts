/**
 * Extraction: pooled residual-stream activations of every selected row at the requested layers,
 * streamed to disk in chunks (see store.ts) so memory stays flat and a killed run resumes.
 *
 * Every row is tokenized and checked first (its ids are kept: 4 bytes a token, less than the rows'
 * text), then the output folder is locked (lock.ts) for the rest of the run. Within a chunk, rows
 * are sorted by length and batched under a token budget, so padding stays small; the forward stops
 * at the deepest requested layer and never computes the LM head. A model opened memory-bounded
 * (LoadedModel.openBounded) runs each chunk layer group by layer group (runtime/layerwise.ts),
 * planned before anything is written so that a budget too small fails first.
 */
import { existsSync, readFileSync } from 'node:fs';
import { join, resolve } from 'node:path';
import { EmlensError } from '../errors.js';
import { writeFileAtomic } from '../io/atomic.js';
import type { LoadedModel } from '../backend/model.js';
import type { DataRow } from '../data/rows.js';
import { hookName, type HookKind } from '../hooks/names.js';
import { VERSION } from '../version.js';
import type { LayerwiseRunner, LayerwisePlan } from '../runtime/layerwise.js';
import type { BatchLayout } from '../runtime/masks.js';
import { DEFAULT_BATCH_TOKENS, defaultChunkRows } from '../runtime/memory.js';
import { wordLevelUnknowns } from '../model/wordlevel.js';
import { lockFolder } from './lock.js';
import { poolInto, resolvePool, tokenizeRow, type Pool, type TokenizedRow } from './pool.js';
import { assemble, chunkCount, chunkRange, clearOutput, doneChunks, PARTIAL_DIR, readChunkTokens, removePartial, writeChunk, type StoreLayout } from './store.js';

export interface ExtractOptions {
  outDir: string;
  layers: number[] | 'all';
  hook: HookKind;
  /** Default: response-mean for chat rows, mean for text rows (rows of both kinds need one). */
  pool?: Pool;
  resume?: boolean;
  overwrite?: boolean;
  /** Padded tokens per forward call (default 4096). */
  batchTokens?: number;
  /** Rows per on-disk chunk (default: about 64 MB of activations, at most 1024 rows). */
  chunkRows?: number;
  maxTokens?: number;
  shardLimit?: number;
  /** Provenance: the dataset and how rows were selected. */
  dataset: { file: string; sha256: string; selection: Record<string, unknown> };
  onProgress?: (p: ExtractProgress) => void;
  /** Called (once, before the forward passes) e.g. with the words a word-level tokenizer maps to its unknown token. */
  onWarning?: (message: string) => void;
  /** A memory-bounded model: called once with the plan (layers per group, spooling, peak estimate). */
  onPlan?: (plan: LayerwisePlan) => void;
}

export interface ExtractProgress {
  rowsDone: number;
  rowsTotal: number;
  tokens: number;
  elapsedMs: number;
  /** rows skipped because their chunk was already on disk (resume) */
  resumedRows: number;
}

export interface ExtractMeta {
  emlens_version: string;
  created: string;
  model: { source: string; folder: string; adapter: string | null; family: string; weights_sha256: string; n_layers: number; d_model: number };
  /** `file` is absolute. */
  dataset: { file: string; sha256: string; selection: Record<string, unknown> };
  hook: HookKind;
  /** The pool every row used (the rows' default resolved when --pool was not given). */
  pool: Pool;
  layers: number[];
  tensors: string[];
  rows: number;
  tokens_per_row: number[];
  files: string[];
}

/** The parameters a resumed run must share with the interrupted one. */
function runKey(model: LoadedModel, weightsSha: string, rows: DataRow[], o: ExtractOptions, pool: Pool, layers: number[]) {
  return {
    model_weights_sha256: weightsSha,
    dataset_sha256: o.dataset.sha256,
    selection: o.dataset.selection,
    rows: rows.length,
    lines: rows.map((r) => r.line),
    hook: o.hook,
    pool,
    layers,
    d_model: model.spec.dModel,
  };
}

export async function extractActivations(model: LoadedModel, rows: DataRow[], o: ExtractOptions): Promise<ExtractMeta & { resumedRows: number }> {
  const tok = model.tokenizer;
  if (!tok) throw new EmlensError(`${model.dir}: no tokenizer.json; extraction needs the tokenizer`);
  if (rows.length === 0) throw new EmlensError(`${o.dataset.file}: no rows selected`);
  if (o.resume && o.overwrite) throw new EmlensError('--resume and --overwrite both given: continue the interrupted extraction, or start over, not both');
  const spec = model.spec;
  const layers = o.layers === 'all' ? Array.from({ length: spec.nLayers }, (_, l) => l) : o.layers;
  for (const l of layers) {
    if (l < 0 || l >= spec.nLayers) throw new EmlensError(`--layers: layer ${l} is out of range (model has ${spec.nLayers} layers: 0..${spec.nLayers - 1})`);
  }
  const pool = resolvePool(rows, o.pool, o.dataset.file);
  const maxTokens = o.maxTokens ?? spec.maxPositions;
  // Every row is tokenized and checked before anything is written: a bad row leaves --out as it was.
  const toks = rows.map((r) => compact(tokenizeRow(tok, r, pool, `${o.dataset.file}:${r.line}`, maxTokens)));
  warnUnknownWords(model, rows, toks, o);

  const tensors = layers.map((l) => hookName(l, o.hook));
  const D = spec.dModel;
  const chunkRows = o.chunkRows ?? defaultChunkRows(tensors.length, D);
  const layout: StoreLayout = { tensors, dModel: D, rows: rows.length, chunkRows };
  const weightsSha = model.weightsSha256();
  const key = runKey(model, weightsSha, rows, o, pool, layers);
  const manifest = join(o.outDir, PARTIAL_DIR, 'run.json');
  const bounded = boundedRun(model, toks, tensors, layout, o.batchTokens ?? DEFAULT_BATCH_TOKENS);

  const lock = lockFolder(o.outDir, 'extract');
  try {
    const finalExists = existsSync(join(o.outDir, 'meta.json'));
    const partialExists = existsSync(join(o.outDir, PARTIAL_DIR));
    if (o.overwrite) clearOutput(o.outDir);
    else if (finalExists) throw new EmlensError(`${o.outDir}: already holds an extraction (meta.json); use --overwrite or another --out`);
    else if (partialExists && !o.resume) throw new EmlensError(`${o.outDir}: holds an interrupted extraction; add --resume to continue it (or --overwrite to start over)`);
    if (o.resume && existsSync(manifest)) {
      const prev = readFileSync(manifest, 'utf8');
      if (prev !== JSON.stringify({ ...key, chunk_rows: chunkRows })) {
        throw new EmlensError(`${o.outDir}: the interrupted extraction used other parameters (model, dataset, selection, hook, pool, layers or chunking); it cannot be resumed with these`);
      }
    }
    writeFileAtomic(manifest, [JSON.stringify({ ...key, chunk_rows: chunkRows })]);
    if (bounded) o.onPlan?.(bounded.plan);
    return await run(model, rows, toks, o, { pool, layers, tensors, layout, weightsSha, bounded });
  } finally {
    lock.release();
  }
}

/** Rows of a chunk sorted by length, in batches whose padded size stays within the token budget. */
function batchesOf(chunk: Tokenized[], budget: number): number[][] {
  const order = Array.from({ length: chunk.length }, (_, i) => i).sort((x, y) => chunk[x]!.ids.length - chunk[y]!.ids.length);
  const batches: number[][] = [];
  let i = 0;
  while (i < order.length) {
    const batch: number[] = [];
    while (i < order.length && (batch.length + 1) * chunk[order[i]!]!.ids.length <= Math.max(budget, chunk[order[i]!]!.ids.length)) batch.push(order[i++]!);
    batches.push(batch);
  }
  return batches;
}

/** The layer-by-layer runner and its plan over every chunk's batches, for a memory-bounded model. */
function boundedRun(model: LoadedModel, toks: Tokenized[], tensors: string[], layout: StoreLayout, budget: number): { runner: LayerwiseRunner; plan: LayerwisePlan } | null {
  if (!model.bounded) return null;
  const runner = model.bounded.runner;
  const calls = Array.from({ length: chunkCount(layout) }, (_, k) => {
    const [a, b] = chunkRange(layout, k);
    const chunk = toks.slice(a, b);
    return batchesOf(chunk, budget).map((bt) => ({ rows: bt.length, seq: Math.max(...bt.map((j) => chunk[j]!.ids.length)) }));
  });
  // The chunk's pooled outputs are held while it runs.
  const reserved = layout.chunkRows * tensors.length * layout.dModel * 4;
  return { runner, plan: runner.plan(calls, tensors, reserved) };
}

/** Token ids held as Int32Array: every row stays tokenized for the whole run. */
function compact(t: TokenizedRow): { ids: Int32Array; start: number; end: number } {
  return { ids: Int32Array.from(t.ids), start: t.start, end: t.end };
}

type Tokenized = ReturnType<typeof compact>;

/** One warning, before the long part, listing the words a word-level tokenizer cannot encode. */
function warnUnknownWords(model: LoadedModel, rows: DataRow[], toks: Tokenized[], o: ExtractOptions): void {
  const unk = wordLevelUnknowns(model.dir);
  if (!unk || !o.onWarning) return;
  const words = new Set<string>();
  const lines: number[] = [];
  rows.forEach((r, i) => {
    if (!toks[i]!.ids.includes(unk.unkId)) return;
    const text = r.kind === 'chat' ? model.tokenizer!.applyChatTemplate(r.messages) : r.text;
    const found = unk.find(text);
    if (found.length === 0) return;
    lines.push(r.line);
    for (const w of found) words.add(w);
  });
  if (words.size === 0) return;
  const list = [...words].slice(0, 20).map((w) => JSON.stringify(w)).join(', ');
  o.onWarning(
    `${o.dataset.file}: ${words.size} word${words.size === 1 ? '' : 's'} outside the vocabulary of ${model.dir} encode as ${unk.unk}, in ${lines.length} row${lines.length === 1 ? '' : 's'} (first: line ${lines[0]}): ${list}${words.size > 20 ? ', …' : ''}`,
  );
}

async function run(
  model: LoadedModel,
  rows: DataRow[],
  toks: Tokenized[],
  o: ExtractOptions,
  p: { pool: Pool; layers: number[]; tensors: string[]; layout: StoreLayout; weightsSha: string; bounded: { runner: LayerwiseRunner; plan: LayerwisePlan } | null },
): Promise<ExtractMeta & { resumedRows: number }> {
  const { pool, layers, tensors, layout, weightsSha, bounded } = p;
  const spec = model.spec;
  const D = spec.dModel;
  const done = doneChunks(o.outDir, layout);
  const budget = o.batchTokens ?? DEFAULT_BATCH_TOKENS;
  const t0 = Date.now();
  let rowsDone = 0;
  let tokens = 0;
  let resumedRows = 0;
  for (const k of done) resumedRows += chunkRange(layout, k)[1] - chunkRange(layout, k)[0];
  rowsDone = resumedRows;
  o.onProgress?.({ rowsDone, rowsTotal: rows.length, tokens, elapsedMs: 0, resumedRows });

  for (let k = 0; k < chunkCount(layout); k++) {
    if (done.has(k)) continue;
    const [a, b] = chunkRange(layout, k);
    const n = b - a;
    const chunk = toks.slice(a, b);
    const out = new Map(tensors.map((t) => [t, new Float32Array(n * D)]));
    const pooled = new Float32Array(n);
    const batches = batchesOf(chunk, budget);
    const onCapture = (bi: number, t: string, cap: Float32Array, l: BatchLayout) => {
      const dst = out.get(t)!;
      batches[bi]!.forEach((j, r) => poolInto(cap, l.seq, D, r, l.pad[r]!, chunk[j]!.start, chunk[j]!.end, dst, j * D));
    };
    const rows0 = rowsDone;
    const tokens0 = tokens;
    const chunkTokens = chunk.reduce((s, c) => s + c.ids.length, 0);
    if (bounded) {
      // Rows finish together at the last group; progress moves by groups meanwhile.
      await bounded.runner.run(batches.map((bt) => bt.map((j) => chunk[j]!.ids)), tensors, bounded.plan, onCapture, {
        spoolDir: join(o.outDir, PARTIAL_DIR),
        onGroup: (g, G) => {
          rowsDone = rows0 + Math.floor((n * g) / G);
          tokens = tokens0 + Math.floor((chunkTokens * g) / G);
          o.onProgress?.({ rowsDone, rowsTotal: rows.length, tokens, elapsedMs: Date.now() - t0, resumedRows });
        },
      });
    } else {
      for (const [bi, batch] of batches.entries()) {
        const r = await model.backend.forward({ ids: batch.map((j) => Array.from(chunk[j]!.ids)), capture: tensors, logits: 'none' });
        for (const t of tensors) onCapture(bi, t, r.captures.get(t)!, r.layout);
        for (const j of batch) tokens += chunk[j]!.ids.length;
        rowsDone += batch.length;
        o.onProgress?.({ rowsDone, rowsTotal: rows.length, tokens, elapsedMs: Date.now() - t0, resumedRows });
      }
    }
    for (let j = 0; j < n; j++) pooled[j] = chunk[j]!.end - chunk[j]!.start;
    rowsDone = rows0 + n;
    tokens = tokens0 + chunkTokens;
    writeChunk(o.outDir, layout, k, out, pooled);
  }

  const tokensPerRow = readChunkTokens(o.outDir, layout);
  const dataset = { ...o.dataset, file: resolve(o.dataset.file) };
  const meta: ExtractMeta = {
    emlens_version: VERSION,
    created: new Date().toISOString(),
    model: { source: model.source, folder: resolve(model.dir), adapter: model.adapter ? resolve(model.adapter.dir) : null, family: spec.family, weights_sha256: weightsSha, n_layers: spec.nLayers, d_model: D },
    dataset,
    hook: o.hook,
    pool,
    layers,
    tensors,
    rows: rows.length,
    tokens_per_row: tokensPerRow,
    files: [],
  };
  // The safetensors metadata carries the provenance too, so the file stands alone.
  const stMeta = {
    emlens_version: VERSION,
    model: model.source,
    weights_sha256: weightsSha,
    dataset: dataset.file,
    dataset_sha256: o.dataset.sha256,
    hook: o.hook,
    pool,
    rows: String(rows.length),
  };
  meta.files = assemble(o.outDir, layout, stMeta, o.shardLimit);
  writeFileAtomic(join(o.outDir, 'rows.jsonl'), rows.map((r, i) => `${JSON.stringify({ row: i, line: r.line, tokens: tokensPerRow[i], labels: r.labels })}\n`));
  writeFileAtomic(join(o.outDir, 'meta.json'), [JSON.stringify(meta, null, 2)]);
  removePartial(o.outDir);
  return { ...meta, resumedRows };
}
