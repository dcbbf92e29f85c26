/**
 * How stable a direction is under resampling of its rows, per layer (call once per layer):
 *
 * - bootstrapStability: resample rows with replacement, recompute the direction, cosine to the
 *   full-data direction; mean and 95% percentile interval over replicates.
 * - splitHalf: random halves; cosine between the two half directions, and of each half to the
 *   full-data direction.
 * - agreementCurve / rowsToSettle: for each size n, two DISJOINT subsamples of n rows per side
 *   (n pairs for pca), a direction from each, and the cosine between them; the smallest size from
 *   which it stays above a threshold. Disjoint, because a subsample compared with the full-data
 *   direction shares its rows with it: at the largest size the two are the same rows (cosine 1),
 *   so every layer "settled", pure noise included. Two independent directions from n rows agree
 *   at cos ≈ |μ|² / (|μ|² + d·τ²) (τ² = the per-coordinate variance of one estimate, 2σ²/n for
 *   mean-diff of isotropic rows), i.e. about the square of either one's cosine with the
 *   population direction; noise (μ = 0) stays near 0 at every size and never settles.
 *
 * Resampling unit: for mean-diff, rows are resampled independently within pos and within neg
 * (the two means are independent estimates). For pca, repeng's pca_diff is defined on pairs
 * (pos_i - neg_i), so pairs are resampled jointly: the same index is drawn on both sides.
 *
 * Mean-diff replicates are computed by reweighting rather than copying: a bootstrap sample is the
 * full data with integer multiplicities (times the row weights for --weight tokens), a subsample
 * or half is a 0/1 mask. PCA replicates copy the drawn rows. Cosines are signed (mean-diff has a
 * natural sign; pca's is fixed by repeng's vote). A pca replicate whose paired differences have
 * no variance (possible with very few pairs) has no direction: it is recorded as NaN, left out of
 * mean/lo/hi and counted in `failed`.
 *
 * Everything is driven by one mulberry32 stream seeded with `seed`, so runs are reproducible.
 */
import { EmlensError } from '../errors.js';
import { rng } from '../runtime/random.js';
import { checkWeights, gatherRows, quantileSorted, rowCount, type DirectionMethod, type Rows, type Vec } from './common.js';
import { meanDiff64 } from './meandiff.js';
import { pcaDiff } from './pca.js';
import { cosine } from './similarity.js';

export interface ResampleOptions {
  seed: number;
  /** default 'mean-diff' */
  method?: DirectionMethod;
  /** per-row weights (token counts) for mean-diff; ignored by pca */
  posWeights?: Vec;
  negWeights?: Vec;
}

export interface CosineSummary {
  /** one cosine per replicate (NaN for a failed pca replicate) */
  cosines: Float64Array;
  /** mean of the finite cosines */
  mean: number;
  /** 2.5% and 97.5% percentiles (numpy's linear interpolation) of the finite cosines */
  lo: number;
  hi: number;
  failed: number;
}

/**
 * The direction of the given method from all rows (float64 for mean-diff, unit float32 for pca);
 * `what` names the data in errors (e.g. the layer and folders).
 */
export function computeDirection(pos: Rows, neg: Rows, d: number, opts: Omit<ResampleOptions, 'seed'> & { what?: string } = {}): Float32Array | Float64Array {
  return (opts.method ?? 'mean-diff') === 'pca'
    ? pcaDiff(pos, neg, d, { what: opts.what })
    : meanDiff64(pos, neg, d, { posWeights: opts.posWeights, negWeights: opts.negWeights });
}

export function summarize(cosines: Float64Array): CosineSummary {
  const finite = Float64Array.from([...cosines].filter((c) => Number.isFinite(c))).sort();
  let m = 0;
  for (const c of finite) m += c;
  return {
    cosines,
    mean: finite.length ? m / finite.length : NaN,
    lo: quantileSorted(finite, 0.025),
    hi: quantileSorted(finite, 0.975),
    failed: cosines.length - finite.length,
  };
}

interface Setup {
  method: DirectionMethod;
  np: number;
  nn: number;
  full: Float32Array | Float64Array;
  /** direction from per-row multiplicities (mean-diff) or drawn pair indices (pca) */
  replicate(posMult: Float64Array | null, negMult: Float64Array | null, pairIdx: number[] | null): Float32Array | Float64Array | null;
}

function setup(pos: Rows, neg: Rows, d: number, opts: Omit<ResampleOptions, 'seed'>): Setup {
  const method = opts.method ?? 'mean-diff';
  if (method !== 'mean-diff' && method !== 'pca') throw new EmlensError(`unknown direction method "${String(method)}"`);
  const np_ = rowCount(pos, d, 'pos');
  const nn = rowCount(neg, d, 'neg');
  if (np_ === 0 || nn === 0) throw new EmlensError(`need rows on both sides (pos ${np_}, neg ${nn})`);
  checkWeights(opts.posWeights, np_, 'pos');
  checkWeights(opts.negWeights, nn, 'neg');
  const full = computeDirection(pos, neg, d, opts);
  const mult = (base: Vec | undefined, m: Float64Array): Float64Array => {
    if (!base) return m;
    const w = new Float64Array(m.length);
    for (let i = 0; i < m.length; i++) w[i] = m[i]! * base[i]!;
    return w;
  };
  return {
    method,
    np: np_,
    nn,
    full,
    replicate(posMult, negMult, pairIdx) {
      if (method === 'pca') {
        try {
          return pcaDiff(gatherRows(pos, d, pairIdx!), gatherRows(neg, d, pairIdx!), d);
        } catch (e) {
          if (e instanceof EmlensError && /no variance/.test(e.message)) return null;
          throw e;
        }
      }
      const pw = mult(opts.posWeights, posMult!);
      const nw = mult(opts.negWeights, negMult!);
      if (!(sum(pw) > 0) || !(sum(nw) > 0)) return null; // drew only zero-weight rows
      return meanDiff64(pos, neg, d, { posWeights: pw, negWeights: nw });
    },
  };
}

function sum(a: Float64Array): number {
  let s = 0;
  for (const x of a) s += x;
  return s;
}

function cosOrNaN(v: Float32Array | Float64Array | null, full: Float32Array | Float64Array): number {
  return v ? cosine(v, full) : NaN;
}

/** k distinct indices from 0..n-1 (partial Fisher-Yates on a scratch permutation). */
function drawDistinct(perm: Uint32Array, k: number, r: () => number): Uint32Array {
  const n = perm.length;
  for (let i = 0; i < k; i++) {
    const j = i + Math.floor(r() * (n - i));
    const t = perm[i]!;
    perm[i] = perm[j]!;
    perm[j] = t;
  }
  return perm.subarray(0, k);
}

function identity(n: number): Uint32Array {
  const p = new Uint32Array(n);
  for (let i = 0; i < n; i++) p[i] = i;
  return p;
}

function mask(n: number, idx: ArrayLike<number>): Float64Array {
  const m = new Float64Array(n);
  for (let k = 0; k < idx.length; k++) m[idx[k]!] += 1;
  return m;
}

function pairedCount(s: Setup): number {
  if (s.method === 'pca' && s.np !== s.nn) {
    throw new EmlensError(`pca: rows are paired by index, so pos and neg need equal row counts; pos has ${s.np}, neg has ${s.nn}`);
  }
  return s.np;
}

/**
 * Bootstrap: `n` replicates, each resampling rows with replacement (within pos and within neg for
 * mean-diff, pairs for pca), cosine of the replicate direction to the full-data direction.
 */
export function bootstrapStability(pos: Rows, neg: Rows, d: number, opts: ResampleOptions & { n: number }): CosineSummary {
  if (!Number.isInteger(opts.n) || opts.n < 1) throw new EmlensError(`bootstrap: n must be a positive integer, got ${opts.n}`);
  const s = setup(pos, neg, d, opts);
  const r = rng(opts.seed);
  const cos = new Float64Array(opts.n);
  if (s.method === 'pca') {
    const n = pairedCount(s);
    const idx = new Array<number>(n);
    for (let b = 0; b < opts.n; b++) {
      for (let i = 0; i < n; i++) idx[i] = Math.floor(r() * n);
      cos[b] = cosOrNaN(s.replicate(null, null, idx), s.full);
    }
  } else {
    for (let b = 0; b < opts.n; b++) {
      const pm = new Float64Array(s.np);
      for (let i = 0; i < s.np; i++) pm[Math.floor(r() * s.np)] += 1;
      const nm = new Float64Array(s.nn);
      for (let i = 0; i < s.nn; i++) nm[Math.floor(r() * s.nn)] += 1;
      cos[b] = cosOrNaN(s.replicate(pm, nm, null), s.full);
    }
  }
  return summarize(cos);
}

export interface SplitHalfResult {
  /** cosine between the directions of the two halves, one per repeat */
  halves: CosineSummary;
  /** cosine of each half's direction to the full-data direction, two per repeat */
  toFull: CosineSummary;
}

/**
 * Split-half: `repeats` random splits of the rows (within each side for mean-diff, of the pairs
 * for pca) into halves of floor(n/2) and ceil(n/2).
 */
export function splitHalf(pos: Rows, neg: Rows, d: number, opts: ResampleOptions & { repeats: number }): SplitHalfResult {
  if (!Number.isInteger(opts.repeats) || opts.repeats < 1) throw new EmlensError(`split-half: repeats must be a positive integer, got ${opts.repeats}`);
  const s = setup(pos, neg, d, opts);
  const r = rng(opts.seed);
  const halves = new Float64Array(opts.repeats);
  const toFull = new Float64Array(2 * opts.repeats);
  if (s.method === 'pca') {
    const n = pairedCount(s);
    if (n < 4) throw new EmlensError(`split-half: pca needs at least 4 pairs (2 per half), got ${n}`);
    const perm = identity(n);
    for (let k = 0; k < opts.repeats; k++) {
      drawDistinct(perm, n, r);
      const h = n >> 1;
      const a = s.replicate(null, null, Array.from(perm.subarray(0, h)));
      const b = s.replicate(null, null, Array.from(perm.subarray(h)));
      halves[k] = a && b ? cosine(a, b) : NaN;
      toFull[2 * k] = cosOrNaN(a, s.full);
      toFull[2 * k + 1] = cosOrNaN(b, s.full);
    }
  } else {
    if (s.np < 2 || s.nn < 2) throw new EmlensError(`split-half: needs at least 2 rows per side (pos ${s.np}, neg ${s.nn})`);
    const pp = identity(s.np);
    const pn = identity(s.nn);
    for (let k = 0; k < opts.repeats; k++) {
      drawDistinct(pp, s.np, r);
      drawDistinct(pn, s.nn, r);
      const hp = s.np >> 1;
      const hn = s.nn >> 1;
      const a = s.replicate(mask(s.np, pp.subarray(0, hp)), mask(s.nn, pn.subarray(0, hn)), null);
      const b = s.replicate(mask(s.np, pp.subarray(hp)), mask(s.nn, pn.subarray(hn)), null);
      halves[k] = a && b ? cosine(a, b) : NaN;
      toFull[2 * k] = cosOrNaN(a, s.full);
      toFull[2 * k + 1] = cosOrNaN(b, s.full);
    }
  }
  return { halves: summarize(halves), toFull: summarize(toFull) };
}

export interface CurvePoint {
  /** rows per side (pairs for pca) */
  size: number;
  mean: number;
  lo: number;
  hi: number;
  failed: number;
}

/**
 * For each size n, `repeats` draws of 2n distinct rows per side (2n pairs for pca) without
 * replacement, split into two disjoint subsamples of n; the cosine between the two subsamples'
 * directions. Needs 2n <= the rows of each side.
 */
export function agreementCurve(pos: Rows, neg: Rows, d: number, opts: ResampleOptions & { sizes: number[]; repeats: number }): CurvePoint[] {
  if (!Number.isInteger(opts.repeats) || opts.repeats < 1) throw new EmlensError(`subsample: repeats must be a positive integer, got ${opts.repeats}`);
  const s = setup(pos, neg, d, opts);
  const minSize = s.method === 'pca' ? 2 : 1;
  const maxSize = Math.floor(Math.min(s.np, s.nn) / 2);
  for (const size of opts.sizes) {
    if (!Number.isInteger(size) || size < minSize || size > maxSize) {
      throw new EmlensError(
        `subsample: size ${size} is not an integer in ${minSize}..${maxSize} (two disjoint subsamples of that size per side; pos has ${s.np} rows, neg ${s.nn})`,
      );
    }
  }
  if (s.method === 'pca') pairedCount(s);
  const r = rng(opts.seed);
  const pp = identity(s.np);
  const pn = identity(s.nn);
  return opts.sizes.map((size) => {
    const cos = new Float64Array(opts.repeats);
    for (let k = 0; k < opts.repeats; k++) {
      let a: Float32Array | Float64Array | null;
      let b: Float32Array | Float64Array | null;
      if (s.method === 'pca') {
        const idx = drawDistinct(pp, 2 * size, r);
        a = s.replicate(null, null, Array.from(idx.subarray(0, size)));
        b = s.replicate(null, null, Array.from(idx.subarray(size)));
      } else {
        const ip = drawDistinct(pp, 2 * size, r);
        const iN = drawDistinct(pn, 2 * size, r);
        a = s.replicate(mask(s.np, ip.subarray(0, size)), mask(s.nn, iN.subarray(0, size)), null);
        b = s.replicate(mask(s.np, ip.subarray(size)), mask(s.nn, iN.subarray(size)), null);
      }
      cos[k] = a && b ? cosine(a, b) : NaN;
    }
    const { mean, lo, hi, failed } = summarize(cos);
    return { size, mean, lo, hi, failed };
  });
}

/**
 * The smallest size from which the curve stays at or above `threshold` (by its mean, or by its
 * lower 2.5% bound with by = 'lo') for every larger size measured; null if the largest size is
 * still below it.
 */
export function rowsToSettle(curve: CurvePoint[], threshold = 0.9, by: 'mean' | 'lo' = 'mean'): number | null {
  const pts = [...curve].sort((a, b) => a.size - b.size);
  let settled: number | null = null;
  for (let i = pts.length - 1; i >= 0; i--) {
    const v = pts[i]![by];
    if (!(v >= threshold)) break;
    settled = pts[i]!.size;
  }
  return settled;
}
