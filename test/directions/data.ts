/** Planted test data for the direction tests (not a test file itself). */
import { normal, rng } from '../../src/runtime/random.js';

/** Standard normal draws from the project's seeded generator. */
export function gaussian(seed: number): () => number {
  return normal(rng(seed));
}

export function randomRows(n: number, d: number, seed: number, scale = 1): Float32Array {
  const g = gaussian(seed);
  const out = new Float32Array(n * d);
  for (let i = 0; i < out.length; i++) out[i] = scale * g();
  return out;
}

export function randomUnit(d: number, seed: number): Float64Array {
  const g = gaussian(seed);
  const v = new Float64Array(d);
  let s = 0;
  for (let i = 0; i < d; i++) {
    v[i] = g();
    s += v[i]! * v[i]!;
  }
  for (let i = 0; i < d; i++) v[i] /= Math.sqrt(s);
  return v;
}

/** Rows = base + shift (row-wise broadcast), rounded to float32. */
export function shifted(base: Float32Array, d: number, shift: ArrayLike<number>): Float32Array {
  const out = new Float32Array(base.length);
  for (let i = 0; i < base.length; i++) out[i] = base[i]! + shift[i % d]!;
  return out;
}

/**
 * Paired data for pca_diff: neg_i random, pos_i = neg_i + c_i u + noise_i with c_i drawn from
 * [cLo, cHi] and isotropic noise of scale `noise`.
 */
export function pairedPlanted(
  n: number,
  d: number,
  u: ArrayLike<number>,
  opts: { seed: number; cLo: number; cHi: number; noise: number; baseScale?: number },
): { pos: Float32Array; neg: Float32Array; c: Float64Array } {
  const neg = randomRows(n, d, opts.seed, opts.baseScale ?? 1);
  const g = gaussian(opts.seed + 1);
  const r = rng(opts.seed + 2);
  const c = new Float64Array(n);
  const pos = new Float32Array(n * d);
  for (let i = 0; i < n; i++) {
    c[i] = opts.cLo + (opts.cHi - opts.cLo) * r();
    for (let j = 0; j < d; j++) pos[i * d + j] = neg[i * d + j]! + c[i]! * u[j]! + opts.noise * g();
  }
  return { pos, neg, c };
}

export function cos64(a: ArrayLike<number>, b: ArrayLike<number>): number {
  let ab = 0;
  let aa = 0;
  let bb = 0;
  for (let i = 0; i < a.length; i++) {
    ab += a[i]! * b[i]!;
    aa += a[i]! * a[i]!;
    bb += b[i]! * b[i]!;
  }
  return ab / Math.sqrt(aa * bb);
}

/** numpy's default quantile (method "linear": h = (n - 1) q, interpolate between the values at floor and ceil of h). */
export function quantile7(values: ArrayLike<number>, q: number): number {
  const s = Array.from(values).sort((a, b) => a - b);
  const h = (s.length - 1) * q;
  const f = Math.floor(h);
  return f + 1 < s.length ? s[f]! + (h - f) * (s[f + 1]! - s[f]!) : s[f]!;
}

/** mean(sum_i c_i x_i / sum_i c_i) of a [rows, d] buffer with per-row counts c (float64). */
function countedMean(rows: ArrayLike<number>, d: number, c: ArrayLike<number>): Float64Array {
  const m = new Float64Array(d);
  let t = 0;
  for (let i = 0; i < c.length; i++) {
    t += c[i]!;
    for (let j = 0; j < d; j++) m[j] += c[i]! * rows[i * d + j]!;
  }
  for (let j = 0; j < d; j++) m[j] /= t;
  return m;
}

function diffOf(pos: ArrayLike<number>, neg: ArrayLike<number>, d: number, cp: ArrayLike<number>, cn: ArrayLike<number>): Float64Array {
  const a = countedMean(pos, d, cp);
  const b = countedMean(neg, d, cn);
  return a.map((x, j) => x - b[j]!);
}

export interface RefSummary {
  cosines: number[];
  mean: number;
  lo: number;
  hi: number;
}

function summary(cosines: number[]): RefSummary {
  return { cosines, mean: cosines.reduce((s, x) => s + x, 0) / cosines.length, lo: quantile7(cosines, 0.025), hi: quantile7(cosines, 0.975) };
}

/**
 * The mean-diff bootstrap written from its definition, drawing from the same seeded generator in
 * the documented order (per replicate: np indices of pos, then nn of neg, each floor(u * n)):
 * cosine of each replicate's mean difference with the full-data one; mean and 2.5/97.5% quantiles.
 */
export function referenceBootstrap(pos: ArrayLike<number>, neg: ArrayLike<number>, d: number, B: number, seed: number): RefSummary {
  const np = pos.length / d;
  const nn = neg.length / d;
  const full = diffOf(pos, neg, d, new Array<number>(np).fill(1), new Array<number>(nn).fill(1));
  const r = rng(seed);
  const cos: number[] = [];
  for (let b = 0; b < B; b++) {
    const cp = new Array<number>(np).fill(0);
    for (let i = 0; i < np; i++) cp[Math.floor(r() * np)]!++;
    const cn = new Array<number>(nn).fill(0);
    for (let i = 0; i < nn; i++) cn[Math.floor(r() * nn)]!++;
    cos.push(cos64(diffOf(pos, neg, d, cp, cn), full));
  }
  return summary(cos);
}

/** A shuffled prefix: the first k of a Fisher-Yates pass over `perm` (kept between calls). */
function shufflePrefix(perm: number[], k: number, r: () => number): number[] {
  for (let i = 0; i < k; i++) {
    const j = i + Math.floor(r() * (perm.length - i));
    [perm[i], perm[j]] = [perm[j]!, perm[i]!];
  }
  return perm.slice(0, k);
}

const indicator = (n: number, idx: number[]) => {
  const c = new Array<number>(n).fill(0);
  for (const i of idx) c[i] = 1;
  return c;
};

/**
 * Mean-diff split-half from its definition: per repeat a full shuffle of pos then of neg; halves
 * of floor(n/2) and the rest; the cosine between the halves' mean differences.
 */
export function referenceSplitHalf(pos: ArrayLike<number>, neg: ArrayLike<number>, d: number, repeats: number, seed: number): RefSummary {
  const np = pos.length / d;
  const nn = neg.length / d;
  const r = rng(seed);
  const pp = Array.from({ length: np }, (_, i) => i);
  const pn = Array.from({ length: nn }, (_, i) => i);
  const cos: number[] = [];
  for (let k = 0; k < repeats; k++) {
    const sp = shufflePrefix(pp, np, r);
    const sn = shufflePrefix(pn, nn, r);
    const a = diffOf(pos, neg, d, indicator(np, sp.slice(0, np >> 1)), indicator(nn, sn.slice(0, nn >> 1)));
    const b = diffOf(pos, neg, d, indicator(np, sp.slice(np >> 1)), indicator(nn, sn.slice(nn >> 1)));
    cos.push(cos64(a, b));
  }
  return summary(cos);
}

/**
 * Mean-diff agreement from its definition: per size n and repeat, 2n shuffled rows of pos then of
 * neg; the first n against the next n; the cosine between the two mean differences.
 */
export function referenceAgreement(pos: ArrayLike<number>, neg: ArrayLike<number>, d: number, sizes: number[], repeats: number, seed: number): RefSummary[] {
  const np = pos.length / d;
  const nn = neg.length / d;
  const r = rng(seed);
  const pp = Array.from({ length: np }, (_, i) => i);
  const pn = Array.from({ length: nn }, (_, i) => i);
  return sizes.map((n) => {
    const cos: number[] = [];
    for (let k = 0; k < repeats; k++) {
      const sp = shufflePrefix(pp, 2 * n, r);
      const sn = shufflePrefix(pn, 2 * n, r);
      const a = diffOf(pos, neg, d, indicator(np, sp.slice(0, n)), indicator(nn, sn.slice(0, n)));
      const b = diffOf(pos, neg, d, indicator(np, sp.slice(n)), indicator(nn, sn.slice(n)));
      cos.push(cos64(a, b));
    }
    return summary(cos);
  });
}
