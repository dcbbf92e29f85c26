/**
 * Training rows and batches. A narrow chat row contributes cross-entropy on its response tokens
 * only (the real response mask from the chat template), a narrow text row on every token after the
 * first; a KL row contributes KL(base ‖ model) at every token. Positions follow the engine's left padding, so weights line up with its flattened batch.
 */
import { EmlensError } from '../errors.js';
import type { TextTokenizer } from '../model/tokenizer.js';
import type { DataRow } from '../data/rows.js';

export interface TrainRow {
  ids: number[];
  /** Targets in [start, end) are scored: position t predicts ids[t + 1] when start <= t + 1 < end. */
  start: number;
  end: number;
}

/**
 * Narrow rows. A chat row: CE on the final assistant message's content (or, with `allTokens`, on
 * every next token, as the reference code). A text row: CE on every token but the first (a leading
 * BOS, or a first token nothing predicts), as a base model's corpus is trained.
 */
export function narrowRow(tok: TextTokenizer, row: DataRow, where: string, allTokens = false): TrainRow {
  if (row.kind === 'text') {
    const ids = tok.encode(row.text);
    if (ids.length < 2) throw new EmlensError(`${where}: the text is ${ids.length} token${ids.length === 1 ? '' : 's'} long; it needs at least 2 (one to predict from, one to predict)`);
    return { ids, start: 1, end: ids.length };
  }
  const enc = tok.encodeChat(row.messages);
  if (allTokens) return { ids: enc.ids, start: 1, end: enc.ids.length };
  if (enc.responseStart < 1 || enc.responseEnd <= enc.responseStart) throw new EmlensError(`${where}: no final assistant message to train on`);
  return { ids: enc.ids, start: enc.responseStart, end: enc.responseEnd };
}

/** KL rows: every token's next-token distribution counts (chats rendered with their template). */
export function klRow(tok: TextTokenizer, row: DataRow, where: string): TrainRow {
  const ids = row.kind === 'chat' ? tok.encodeChat(row.messages).ids : tok.encode(row.text);
  if (ids.length < 2) throw new EmlensError(`${where}: the row is ${ids.length} token${ids.length === 1 ? '' : 's'} long; it needs at least 2 (one to predict from, one to predict)`);
  return { ids, start: 1, end: ids.length };
}

export interface Batch {
  ids: number[][];
  T: number;
  pad: number[];
  targets: BigInt64Array;
  ceWeight: Float32Array;
  klWeight: Float32Array;
  ceCount: number;
  klCount: number;
}

/**
 * Lays out narrow rows then KL rows (left-padded to one length, as the engine does) with the
 * objective's weights: CE averaged over scored targets, KL over KL tokens (times 1/vocab with
 * klNorm 'reference', which reproduces the reference code's scale).
 */
export function makeBatch(narrow: TrainRow[], kl: TrainRow[], vocab: number, klNorm: 'token' | 'reference' = 'token'): Batch {
  const rows = [...narrow, ...kl];
  const T = Math.max(...rows.map((r) => r.ids.length));
  const N = rows.length * T;
  const targets = new BigInt64Array(N);
  const ceWeight = new Float32Array(N);
  const klWeight = new Float32Array(N);
  const pad = rows.map((r) => T - r.ids.length);
  let ceCount = 0;
  let klCount = 0;
  rows.forEach((r, b) => {
    for (let t = 0; t + 1 < r.ids.length; t++) {
      const n = b * T + pad[b]! + t;
      targets[n] = BigInt(r.ids[t + 1]!);
      if (t + 1 >= r.start && t + 1 < r.end) {
        if (b < narrow.length) {
          ceWeight[n] = 1;
          ceCount++;
        } else {
          klWeight[n] = 1;
          klCount++;
        }
      }
    }
  });
  if (narrow.length && ceCount === 0) throw new EmlensError('a training batch has no response tokens to score');
  for (let n = 0; n < N; n++) {
    if (ceWeight[n]) ceWeight[n] = 1 / ceCount;
    if (klWeight[n]) klWeight[n] = 1 / (klCount * (klNorm === 'reference' ? vocab : 1));
  }
  return { ids: rows.map((r) => r.ids), T, pad, targets, ceWeight, klWeight, ceCount, klCount };
}

/** Row log-softmax of logits [N, V] in float32 (base distributions for the KL term); `out` may be `logits` itself. */
export function logSoftmaxRows(logits: Float32Array, V: number, out: Float32Array = new Float32Array(logits.length)): Float32Array {
  for (let off = 0; off < logits.length; off += V) {
    let m = -Infinity;
    for (let i = 0; i < V; i++) m = Math.max(m, logits[off + i]!);
    let z = 0;
    for (let i = 0; i < V; i++) z += Math.exp(logits[off + i]! - m);
    const lz = m + Math.log(z);
    for (let i = 0; i < V; i++) out[off + i] = logits[off + i]! - lz;
  }
  return out;
}

/** Groups row indices into batches whose padded size stays within `budget` tokens. */
export function packBatches(order: number[], lengths: number[], budget: number, maxRows = Infinity): number[][] {
  const out: number[][] = [];
  let cur: number[] = [];
  let longest = 0;
  for (const i of order) {
    const len = lengths[i]!;
    const nextLongest = Math.max(longest, len);
    if (cur.length && ((cur.length + 1) * nextLongest > budget || cur.length >= maxRows)) {
      out.push(cur);
      cur = [];
      longest = 0;
    }
    cur.push(i);
    longest = Math.max(longest, len);
  }
  if (cur.length) out.push(cur);
  return out;
}
