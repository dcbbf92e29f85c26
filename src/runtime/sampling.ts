/** Next-token choice: greedy, temperature and top-p, with a seeded generator. */

export interface SamplingOptions {
  /** 0 = greedy */
  temperature: number;
  topP: number;
}

export function argmax(logits: Float32Array, off = 0, n = logits.length): number {
  let best = 0;
  let bv = -Infinity;
  for (let i = 0; i < n; i++) {
    const v = logits[off + i]!;
    if (v > bv) {
      bv = v;
      best = i;
    }
  }
  return best;
}

/** Samples one token from logits[off .. off+n). */
export function sampleToken(logits: Float32Array, off: number, n: number, opts: SamplingOptions, random: () => number): number {
  if (opts.temperature <= 0) return argmax(logits, off, n);
  let max = -Infinity;
  for (let i = 0; i < n; i++) max = Math.max(max, logits[off + i]!);
  const p = new Float64Array(n);
  let z = 0;
  for (let i = 0; i < n; i++) {
    const e = Math.exp((logits[off + i]! - max) / opts.temperature);
    p[i] = e;
    z += e;
  }
  let order: number[] | null = null;
  let total = 1;
  if (opts.topP < 1) {
    // Keep the smallest prefix of the sorted distribution whose mass reaches top_p (as HF: a
    // token stays if the mass before it is below top_p).
    order = Array.from({ length: n }, (_, i) => i).sort((a, b) => p[b]! - p[a]! || a - b);
    let cum = 0;
    let keep = 0;
    while (keep < n && cum < opts.topP * z) cum += p[order[keep++]!]!;
    order = order.slice(0, Math.max(1, keep));
    total = cum / z;
  }
  const u = random() * total * z;
  let acc = 0;
  if (order) {
    for (const i of order) {
      acc += p[i]!;
      if (u < acc) return i;
    }
    return order[order.length - 1]!;
  }
  for (let i = 0; i < n; i++) {
    acc += p[i]!;
    if (u < acc) return i;
  }
  return n - 1;
}
