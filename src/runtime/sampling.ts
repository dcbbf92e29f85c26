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

/**
 * The unnormalised probabilities of one row, reused across calls: a fresh Float64Array of the
 * vocabulary (1.2 MB for 151936 ids) per row and step cost more than the exps.
 */
let scratch = new Float64Array(0);

/** Tokens above these fractions of the largest probability are tried first as the top-p set. */
const TOP_P_CUTS = [1e-2, 1e-4, 1e-8];

/** Indices by descending p, ties by ascending index (the order top-p keeps a prefix of). */
const byP = (p: Float64Array) => (a: number, b: number) => p[b]! - p[a]! || a - b;

/**
 * The smallest prefix of the sorted distribution whose mass reaches topP·z, as HF (a token stays if
 * the mass before it is below top_p), and that mass. The prefix lies among the tokens whose p
 * reaches some cut, so those are sorted first, alone; the whole vocabulary only when they do not
 * hold the mass. Either way the prefix and its sum (added in sorted order) are the full sort's.
 */
function topPrefix(p: Float64Array, n: number, pmax: number, mass: number): { order: number[]; cum: number } {
  for (const cut of [...TOP_P_CUTS.map((c) => c * pmax), -1]) {
    const cand: number[] = [];
    for (let i = 0; i < n; i++) if (p[i]! >= cut) cand.push(i);
    cand.sort(byP(p));
    let cum = 0;
    let keep = 0;
    while (keep < cand.length && cum < mass) cum += p[cand[keep++]!]!;
    // Reached within the candidates (or every token is one): the full sort's prefix.
    if (cum >= mass || cand.length === n) return { order: cand.slice(0, Math.max(1, keep)), cum };
  }
  throw new Error('unreachable');
}

/** Samples one token from logits[off .. off+n). */
export function sampleToken(logits: Float32Array, off: number, n: number, opts: SamplingOptions, random: () => number): number {
  if (opts.temperature <= 0) return argmax(logits, off, n);
  let max = -Infinity;
  for (let i = 0; i < n; i++) max = Math.max(max, logits[off + i]!);
  if (scratch.length < n) scratch = new Float64Array(n);
  const p = scratch;
  let z = 0;
  let pmax = 0;
  for (let i = 0; i < n; i++) {
    const e = Math.exp((logits[off + i]! - max) / opts.temperature);
    p[i] = e;
    z += e;
    if (e > pmax) pmax = e;
  }
  let order: number[] | null = null;
  let total = 1;
  if (opts.topP < 1) {
    const t = topPrefix(p, n, pmax, opts.topP * z);
    order = t.order;
    total = t.cum / z;
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
