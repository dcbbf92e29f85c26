/**
 * Which tokens of a row are pooled, and pooling them out of captured [B, T, D] activations.
 *
 * - response-mean: mean over the tokens of the final assistant message's content (chat rows);
 * - mean: mean over every token except a leading BOS;
 * - last: the last token.
 * Default: response-mean for chat rows, mean for text rows.
 */
import { EmlensError } from '../errors.js';
import type { TextTokenizer } from '../model/tokenizer.js';
import type { DataRow } from '../data/rows.js';

export type Pool = 'response-mean' | 'mean' | 'last';
export const POOLS: readonly Pool[] = ['response-mean', 'mean', 'last'];

export interface TokenizedRow {
  ids: number[];
  /** Pooled token range [start, end) in the row's own positions. */
  start: number;
  end: number;
}

export function defaultPool(row: DataRow): Pool {
  return row.kind === 'chat' ? 'response-mean' : 'mean';
}

/**
 * The one pool every row of an extraction uses: `pool` when given, else the rows' default. Rows
 * of both kinds without a --pool would be pooled two ways under one label: an error.
 */
export function resolvePool(rows: readonly DataRow[], pool: Pool | undefined, file: string): Pool {
  if (pool !== undefined) return pool;
  const chat = rows.find((r) => r.kind === 'chat');
  const text = rows.find((r) => r.kind === 'text');
  if (chat && text) {
    throw new EmlensError(
      `${file}: mixes chat rows (line ${chat.line}) and text rows (line ${text.line}), whose default pools differ (response-mean, mean); pass --pool mean or --pool last`,
    );
  }
  return defaultPool(rows[0]!);
}

/** Tokenizes one row and picks its pooled range; bad rows throw `file:line: …`. */
export function tokenizeRow(tok: TextTokenizer, row: DataRow, pool: Pool | undefined, where: string, maxTokens: number): TokenizedRow {
  const p = pool ?? defaultPool(row);
  let ids: number[];
  let start: number;
  let end: number;
  if (row.kind === 'chat') {
    const enc = tok.encodeChat(row.messages);
    ids = enc.ids;
    if (p === 'response-mean') {
      if (enc.responseStart < 0 || enc.responseEnd <= enc.responseStart) {
        throw new EmlensError(`${where}: no final assistant message with content to pool (--pool response-mean)`);
      }
      [start, end] = [enc.responseStart, enc.responseEnd];
    } else [start, end] = [0, ids.length];
  } else {
    if (p === 'response-mean') throw new EmlensError(`${where}: a text row has no response to pool; use --pool mean or last`);
    ids = tok.encode(row.text);
    [start, end] = [0, ids.length];
  }
  if (ids.length === 0) throw new EmlensError(`${where}: row encodes to no tokens`);
  if (ids.length > maxTokens) throw new EmlensError(`${where}: row has ${ids.length} tokens, more than --max-tokens ${maxTokens}`);
  if (p === 'mean' && tok.bosId !== null && ids[0] === tok.bosId) start = Math.max(start, 1);
  if (p === 'last') [start, end] = [ids.length - 1, ids.length];
  if (end <= start) throw new EmlensError(`${where}: no tokens to pool (only a BOS token)`);
  return { ids, start, end };
}

/**
 * Mean over [start, end) of row b of a padded capture [B, T, D] (row b starts at pad) into
 * out[offset .. offset + D), accumulated in float64.
 */
export function poolInto(capture: Float32Array, T: number, D: number, b: number, pad: number, start: number, end: number, out: Float32Array, offset: number): void {
  const acc = new Float64Array(D);
  for (let t = pad + start; t < pad + end; t++) {
    const base = (b * T + t) * D;
    for (let i = 0; i < D; i++) acc[i]! += capture[base + i]!;
  }
  const n = end - start;
  for (let i = 0; i < D; i++) out[offset + i] = acc[i]! / n;
}
