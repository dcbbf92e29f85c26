/**
 * The project's one generator and Gaussian sampler: mulberry32 against published values of the
 * algorithm, Box-Muller written out from its equations (bit for bit: organism and test-checkpoint
 * weights are built from it), moments, and the norm-matched random vector.
 */
import { describe, expect, it } from 'vitest';
import { fillGaussian, gaussian, normal, randomNormMatched, rng } from '../../src/runtime/random.js';

/** mulberry32 as published (Tommy Ettinger / bryc), written here independently. */
function mulberry32(seed: number): () => number {
  let a = seed >>> 0;
  return () => {
    a = (a + 0x6d2b79f5) | 0;
    let t = Math.imul(a ^ (a >>> 15), 1 | a);
    t = (t + Math.imul(t ^ (t >>> 7), 61 | t)) ^ t;
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
  };
}

describe('rng', () => {
  it('is mulberry32: the same stream as the published algorithm, for several seeds', () => {
    for (const seed of [0, 1, 42, 0xdeadbeef, -7]) {
      const a = rng(seed);
      const b = mulberry32(seed);
      for (let i = 0; i < 1000; i++) expect(a()).toBe(b());
    }
  });
});

describe('Gaussian sampler', () => {
  it('is Box-Muller on (1 − u1, u2): z = std·√(−2 ln(1 − u1))·(cos, sin)(2π u2) + mean, bit for bit', () => {
    const r = mulberry32(9);
    const want = new Float32Array(101);
    for (let i = 0; i < want.length; i += 2) {
      const u1 = r();
      const u2 = r();
      const rad = 0.02 * Math.sqrt(-2 * Math.log(1 - u1));
      want[i] = 0.5 + rad * Math.cos(2 * Math.PI * u2);
      if (i + 1 < want.length) want[i + 1] = 0.5 + rad * Math.sin(2 * Math.PI * u2);
    }
    const got = fillGaussian(new Float32Array(101), rng(9), 0.02, 0.5);
    expect(Buffer.from(got.buffer).equals(Buffer.from(want.buffer))).toBe(true);
  });

  it('has mean 0, variance 1, no correlation between neighbours and normal tails (200k draws)', () => {
    const n = 200_000;
    const z = gaussian(rng(3), n);
    let s = 0, s2 = 0, s4 = 0, lag = 0, tail = 0;
    for (let i = 0; i < n; i++) {
      s += z[i]!;
      s2 += z[i]! ** 2;
      s4 += z[i]! ** 4;
      if (i) lag += z[i]! * z[i - 1]!;
      if (Math.abs(z[i]!) > 1.959964) tail++;
    }
    // standard errors: mean 1/√n, variance √(2/n), lag-1 product 1/√n, 4th moment √(96/n), tail √(.05·.95/n)
    expect(Math.abs(s / n)).toBeLessThan(5 / Math.sqrt(n));
    expect(Math.abs(s2 / n - 1)).toBeLessThan(5 * Math.sqrt(2 / n));
    expect(Math.abs(lag / n)).toBeLessThan(5 / Math.sqrt(n));
    expect(Math.abs(s4 / n - 3)).toBeLessThan(5 * Math.sqrt(96 / n));
    expect(Math.abs(tail / n - 0.05)).toBeLessThan(5 * Math.sqrt(0.0475 / n));
  });

  it('normal() streams the same draws as fillGaussian', () => {
    const g = normal(rng(5));
    const want = gaussian(rng(5), 11);
    for (let i = 0; i < 11; i++) expect(g()).toBe(want[i]);
  });
});

describe('randomNormMatched', () => {
  const x = Float32Array.from({ length: 64 }, (_, i) => Math.cos(i) + 0.3);
  const dot = (a: ArrayLike<number>, b: ArrayLike<number>) => Array.from(a).reduce((s, v, i) => s + v * b[i]!, 0);
  it('has the norm of x (or the norm asked for), optionally orthogonal to x, and depends on the seed', () => {
    const nx = Math.sqrt(dot(x, x));
    const y = randomNormMatched(x, rng(1));
    expect(Math.sqrt(dot(y, y)) / nx).toBeCloseTo(1, 6);
    expect(Math.abs(dot(x, y)) / (nx * nx)).toBeGreaterThan(1e-4); // not orthogonal unless asked
    const yo = randomNormMatched(x, rng(1), { orthogonal: true, norm: 3 });
    expect(Math.sqrt(dot(yo, yo))).toBeCloseTo(3, 5);
    expect(Math.abs(dot(x, yo)) / (nx * 3)).toBeLessThan(1e-6);
    expect(randomNormMatched(x, rng(2))).not.toEqual(y);
    expect(randomNormMatched(x, rng(1))).toEqual(y);
  });
});
