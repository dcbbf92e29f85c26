/** Extraction folders written directly in the on-disk format of `emlens extract`: planted data. */
import { join } from 'node:path';
import { assemble, removePartial, writeChunk } from '../../src/activations/store.js';
import { writeFileAtomic } from '../../src/io/atomic.js';
import { hookName } from '../../src/hooks/names.js';

/**
 * An extraction folder in exactly the on-disk format `emlens extract` writes (chunks through the
 * store, assembled, rows.jsonl, meta.json), holding the given activations: planted data.
 */
export function writePlanted(
  out: string,
  o: { layers: Map<number, Float32Array>; d: number; tokens?: number[]; labels?: Record<string, unknown>[]; sha?: string; hook?: 'resid_post' | 'resid_pre'; name?: string },
): string {
  const ls = [...o.layers.keys()].sort((a, b) => a - b);
  const hook = o.hook ?? 'resid_post';
  const tensors = ls.map((l) => hookName(l, hook));
  const rows = o.layers.get(ls[0]!)!.length / o.d;
  const tokens = o.tokens ?? new Array<number>(rows).fill(1);
  const layout = { tensors, dModel: o.d, rows, chunkRows: rows };
  writeChunk(out, layout, 0, new Map(ls.map((l, i) => [tensors[i]!, o.layers.get(l)!])), Float32Array.from(tokens));
  const files = assemble(out, layout, { planted: 'yes' });
  writeFileAtomic(
    join(out, 'rows.jsonl'),
    tokens.map((t, i) => `${JSON.stringify({ row: i, line: i + 1, tokens: t, labels: o.labels?.[i] ?? {} })}\n`),
  );
  const meta = {
    emlens_version: '0.0.0-planted',
    created: new Date().toISOString(),
    model: { source: 'planted-model', folder: '/nowhere', family: 'llama', weights_sha256: o.sha ?? 'a'.repeat(64), n_layers: Math.max(...ls) + 1, d_model: o.d },
    dataset: { file: `/nowhere/${o.name ?? 'planted'}.jsonl`, sha256: 'b'.repeat(64), selection: {} },
    hook,
    pool: 'response-mean',
    layers: ls,
    tensors,
    rows,
    tokens_per_row: tokens,
    files,
  };
  writeFileAtomic(join(out, 'meta.json'), [JSON.stringify(meta, null, 2)]);
  removePartial(out);
  return out;
}
