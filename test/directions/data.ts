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
