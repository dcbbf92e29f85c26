/**
 * Additive attention masks [B, 1, 1, T, S] for left-padded batches. A large finite negative
 * rather than -Infinity: a fully masked row (a pad query) then softmaxes to finite values
 * instead of NaN, which would leak through 0 * NaN into real rows.
 */
export const MASKED = -1e30;

export interface BatchLayout {
  /** Left padding of each row (tokens before the row's first real token). */
  pad: number[];
  /** Tokens already in the cache (same for every row). */
  past: number;
  /** New tokens this call (same for every row, padding included). */
  seq: number;
}

/** window = null: causal over the whole prefix; else a query sees keys with q - k < window. */
export function attentionMask(layout: BatchLayout, window: number | null): Float32Array {
  const { pad, past, seq } = layout;
  const S = past + seq;
  const m = new Float32Array(pad.length * seq * S).fill(MASKED);
  for (let b = 0; b < pad.length; b++) {
    for (let t = 0; t < seq; t++) {
      const q = past + t;
      const lo = Math.max(pad[b]!, window === null ? 0 : q - window + 1);
      const row = (b * seq + t) * S;
      for (let k = lo; k <= q; k++) m[row + k] = 0;
    }
  }
  return m;
}

/** Position ids [B*T]: a row's first real token is position 0; pads get 0. */
export function positionIds(layout: BatchLayout): Float64Array {
  const { pad, past, seq } = layout;
  const out = new Float64Array(pad.length * seq);
  for (let b = 0; b < pad.length; b++) for (let t = 0; t < seq; t++) out[b * seq + t] = Math.max(0, past + t - pad[b]!);
  return out;
}

/**
 * attentionMask's two halves for a call on a KV cache of `capacity` slots (layout.past of them
 * written): the cache's slots [B, 1, 1, T, capacity], unwritten ones masked, and the call's own
 * positions [B, 1, 1, T, T].
 */
export function cacheMasks(layout: BatchLayout, window: number | null, capacity: number): { cache: Float32Array; fresh: Float32Array } {
  const { pad, past, seq } = layout;
  if (past > capacity) throw new Error(`${past} cached positions in ${capacity} slots`);
  const full = attentionMask(layout, window);
  const S = past + seq;
  const cache = new Float32Array(pad.length * seq * capacity).fill(MASKED);
  const fresh = new Float32Array(pad.length * seq * seq);
  for (let r = 0; r < pad.length * seq; r++) {
    cache.set(full.subarray(r * S, r * S + past), r * capacity);
    fresh.set(full.subarray(r * S + past, (r + 1) * S), r * seq);
  }
  return { cache, fresh };
}
