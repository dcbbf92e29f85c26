/**
 * Next-token choice: greedy (argmax of the logits), or a draw from the probabilities the decode
 * graph computed (softmax of logits / temperature, GraphVariant.probs) with top-p, with a seeded
 * generator. The exps are ORT's: B × V of them in JS cost a quarter of a batch-32 decode step.
 */

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

/** Tokens above these fractions of the largest probability are tried first as the top-p set. */
const TOP_P_CUTS = [1e-2, 1e-4, 1e-8];

/** Indices by descending p, ties by ascending index (the order top-p keeps a prefix of). */
const byP = (p: Float32Array) => (a: number, b: number) => p[b]! - p[a]! || a - b;

/**
 * The smallest prefix of the sorted distribution whose mass reaches topP·z, as HF (a token stays if
 * the mass before it is below top_p), and that mass. The prefix lies among the tokens whose p
 * reaches some cut, so those are sorted first, alone; the whole vocabulary only when they do not
 * hold the mass. Either way the prefix and its sum (added in sorted order) are the full sort's.
 */
function topPrefix(p: Float32Array, n: number, pmax: number, mass: number): { order: number[]; cum: number } {
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

/**
 * Samples one token from the probabilities probs[off .. off+n) (any positive scale; sums are
 * float64): u·mass walked over the top-p prefix when topP < 1, else over every token in id order.
 * `mass`: their sum when the caller has it (the decode graph's probs_sum, so that a draw at top-p 1
 * reads only the tokens up to the one drawn); otherwise summed here.
 */
export function sampleProbs(probs: Float32Array, off: number, n: number, topP: number, random: () => number, mass?: number): number {
  const p = probs.subarray(off, off + n);
  if (topP < 1) {
    let z = 0;
    let pmax = 0;
    for (let i = 0; i < n; i++) {
      const e = p[i]!;
      z += e;
      if (e > pmax) pmax = e;
    }
    const t = topPrefix(p, n, pmax, topP * z);
    const u = random() * t.cum;
    let acc = 0;
    for (const i of t.order) {
      acc += p[i]!;
      if (u < acc) return i;
    }
    return t.order[t.order.length - 1]!;
  }
  const u = random() * (mass ?? total(p, n));
  return walk(p, n, u);
}

/** The sum of p[0 .. n) in float64 (a caller without the graph's probs_sum). */
function total(p: Float32Array, n: number): number {
  let z = 0;
  for (let i = 0; i < n; i++) z += p[i]!;
  return z;
}

/**
 * The first i whose running mass p[0] + … + p[i] exceeds u, stepping a block of eight at a time
 * (its sum added at once) and walking into the block that crosses u. If none does (u within
 * rounding of a mass summed elsewhere), the last token with p > 0.
 */
function walk(p: Float32Array, n: number, u: number): number {
  let acc = 0;
  let i = 0;
  for (; i + 8 <= n; i += 8) {
    const s = p[i]! + p[i + 1]! + (p[i + 2]! + p[i + 3]!) + (p[i + 4]! + p[i + 5]! + (p[i + 6]! + p[i + 7]!));
    if (u < acc + s) break;
    acc += s;
  }
  for (; i < n; i++) {
    acc += p[i]!;
    if (u < acc) return i;
  }
  for (let j = n - 1; j > 0; j--) if (p[j]! > 0) return j;
  return 0;
}
