/**
 * Memory budgets: the default `--max-memory`, and the estimates the memory-bounded forward
 * (layerwise.ts) plans with and `emlens inspect` prints.
 */
import os from 'node:os';
import type { ModelSpec } from '../model/config.js';

/** The rule `--help` states: 80% of the memory available now (Linux: MemAvailable), within a cgroup limit if one is set. */
export function defaultMaxMemory(): number {
  let avail = os.freemem();
  const limit = typeof process.constrainedMemory === 'function' ? process.constrainedMemory() : 0;
  if (limit > 0 && limit < os.totalmem()) avail = Math.min(avail, limit - process.memoryUsage().rss);
  return Math.max(0, Math.floor(0.8 * avail));
}

export const DEFAULT_MAX_MEMORY_RULE = '80% of the memory available at start (os.freemem(): MemAvailable on Linux), within a cgroup limit if set';

export function formatBytes(n: number): string {
  if (n >= 2 ** 30) return `${(n / 2 ** 30).toFixed(2)} GiB`;
  if (n >= 2 ** 20) return `${(n / 2 ** 20).toFixed(1)} MiB`;
  return `${Math.ceil(n / 2 ** 10)} KiB`;
}

/**
 * What ONNX Runtime holds while one block runs B rows of T tokens (no cache): the block's
 * intermediates that are alive together (the MLP's gate, its activation, up and their product;
 * q, k, v, the rope temporaries and the attention context; norms and sums of the residual), the
 * attention scores and probabilities [B, H, T, T], and the rope tables and masks fed in. An upper
 * estimate, checked against peak RSS in the bounded bench.
 */
export function blockWorkBytes(spec: ModelSpec, B: number, T: number): number {
  const N = B * T;
  const q = spec.nHeads * spec.headDim;
  const kv = spec.nKvHeads * spec.headDim;
  const acts = N * (4 * spec.ffn + 6 * spec.dModel + 4 * q + 4 * kv);
  const scores = 2 * B * spec.nHeads * T * T;
  const tables = N * spec.headDim * 2 * (spec.ropeLocal ? 2 : 1) + B * T * T * (spec.slidingWindow !== null ? 2 : 1);
  return 4 * (acts + scores + tables);
}

/** Node, V8 and the ONNX Runtime library before any model: what a bare `emlens` process holds (measured ~150 MB; counted as this). */
export const RUNTIME_BYTES = 256 * 2 ** 20;

/** Rows per on-disk extraction chunk unless asked: about 64 MB of pooled outputs, at most 1024 rows. */
export function defaultChunkRows(tensors: number, dModel: number): number {
  return Math.max(1, Math.min(1024, Math.floor((64 << 20) / (tensors * dModel * 4))));
}

/** Padded tokens per forward call of an extraction unless asked (--batch-tokens). */
export const DEFAULT_BATCH_TOKENS = 4096;
