/**
 * The project's seeded randomness: one generator, one Gaussian sampler and one norm-matched random
 * vector. Everything random in emlens (sampling, data order, initialisation, random weights,
 * perturbations, random controls) draws from these, so a seed reproduces a run exactly.
 */

/** mulberry32: small, fast, good enough for sampling; seeded runs reproduce exactly. Uniform in [0, 1). */
export function rng(seed: number): () => number {
  let a = seed >>> 0;
  return () => {
    a = (a + 0x6d2b79f5) >>> 0;
    let t = a;
    t = Math.imul(t ^ (t >>> 15), t | 1);
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
  };
}

/**
 * Fills `out` with mean + std·N(0, 1) by Box-Muller: each pair of draws u = 1 − r() ∈ (0, 1],
 * θ = 2π·r() gives √(−2 ln u)·cos θ then ·sin θ. (The order of operations is fixed: the organism's
 * and the test checkpoints' weights are built from it and must not change.)
 */
export function fillGaussian<T extends Float32Array | Float64Array>(out: T, r: () => number, std = 1, mean = 0): T {
  for (let i = 0; i < out.length; i += 2) {
    const rad = std * Math.sqrt(-2 * Math.log(1 - r()));
    const t = 2 * Math.PI * r();
    out[i] = mean + rad * Math.cos(t);
    if (i + 1 < out.length) out[i + 1] = mean + rad * Math.sin(t);
  }
  return out;
}

/**
 * Fills `out` by repeating one block of `tile` Gaussian draws (fillGaussian's): for benchmarks,
 * whose timings do not depend on the values, at a fraction of the cost of drawing every value.
 */
export function fillGaussianTiled<T extends Float32Array | Float64Array>(out: T, r: () => number, std: number, tile: number): T {
  if (tile >= out.length) return fillGaussian(out, r, std);
  const block = fillGaussian(out.subarray(0, tile) as T, r, std);
  for (let off = tile; off < out.length; off += tile) out.set(off + tile <= out.length ? block : block.subarray(0, out.length - off), off);
  return out;
}

/** n standard normal draws (float64). */
export function gaussian(r: () => number, n: number): Float64Array {
  return fillGaussian(new Float64Array(n), r);
}

/** A stream of standard normal draws: the same sequence as fillGaussian's, one at a time. */
export function normal(r: () => number): () => number {
  const pair = new Float64Array(2);
  let k = 2;
  return () => {
    if (k === 2) {
      fillGaussian(pair, r);
      k = 0;
    }
    return pair[k++]!;
  };
}

/**
 * A random direction (isotropic Gaussian) with the Euclidean norm of `x` (or `norm`); with
 * `orthogonal`, its component along x is removed first. The random control of a direction or a
 * solution, and the perturbation y of the robustness measure.
 */
export function randomNormMatched(x: ArrayLike<number>, r: () => number, o: { orthogonal?: boolean; norm?: number } = {}): Float32Array {
  const n = x.length;
  const y = gaussian(r, n);
  let xx = 0;
  for (let i = 0; i < n; i++) xx += x[i]! * x[i]!;
  if (o.orthogonal && xx > 0) {
    let xy = 0;
    for (let i = 0; i < n; i++) xy += x[i]! * y[i]!;
    for (let i = 0; i < n; i++) y[i]! -= (xy / xx) * x[i]!;
  }
  let yy = 0;
  for (let i = 0; i < n; i++) yy += y[i]! * y[i]!;
  const k = (o.norm ?? Math.sqrt(xx)) / Math.sqrt(yy);
  return Float32Array.from(y, (v) => v * k);
}
