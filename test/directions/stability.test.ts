import { describe, expect, it } from 'vitest';
import { EmlensError } from '../../src/errors.js';
import { agreementCurve, bootstrapStability, rowsToSettle, splitHalf } from '../../src/directions/stability.js';
import { quantileSorted } from '../../src/directions/common.js';
import { pairedPlanted, randomRows, randomUnit, referenceAgreement, referenceBootstrap, referenceSplitHalf, shifted } from './data.js';

const d = 48;
const u = randomUnit(d, 1);
const scaled = (k: number) => Array.from(u, (x) => k * x);
const strongNeg = randomRows(80, d, 2);
const strongPos = shifted(randomRows(60, d, 3), d, scaled(8)); // separated by 8 sd
const noisyNeg = randomRows(80, d, 4);
const noisyPos = shifted(randomRows(60, d, 5), d, scaled(0.5));

describe('quantileSorted', () => {
  it("is numpy's default (linear) quantile: values from numpy.quantile", () => {
    // numpy.quantile([0.3, -1, 2.5, 7, 4], q) for q = 0, .025, .1, .25, .5, .9, .975, 1
    const s = Float64Array.from([-1, 0.3, 2.5, 4, 7]);
    const want: [number, number][] = [[0, -1], [0.025, -0.87], [0.1, -0.48], [0.25, 0.3], [0.5, 2.5], [0.9, 5.8], [0.975, 6.7], [1, 7]];
    for (const [q, v] of want) expect(quantileSorted(s, q), `q = ${q}`).toBeCloseTo(v, 12);
    expect(quantileSorted([5], 0.3)).toBe(5);
    expect(quantileSorted([1, 2], 0.975)).toBeCloseTo(1.975, 12);
    expect(quantileSorted([], 0.5)).toBeNaN();
  });
});

describe('bootstrapStability', () => {
  it('equals the bootstrap written from its definition: cosines, mean and the 2.5/97.5% endpoints', () => {
    const p = noisyPos.subarray(0, 30 * d);
    const q = noisyNeg.subarray(0, 25 * d);
    const got = bootstrapStability(p, q, d, { n: 40, seed: 12 });
    const want = referenceBootstrap(p, q, d, 40, 12);
    for (let b = 0; b < 40; b++) expect(got.cosines[b]).toBeCloseTo(want.cosines[b]!, 10);
    expect(got.mean).toBeCloseTo(want.mean, 10);
    expect(got.lo).toBeCloseTo(want.lo, 10);
    expect(got.hi).toBeCloseTo(want.hi, 10);
    expect(got.hi - got.lo).toBeGreaterThan(0.01); // a real interval, so a wrong quantile shows
    const sh = splitHalf(p, q, d, { repeats: 30, seed: 5 });
    const ref = referenceSplitHalf(p, q, d, 30, 5);
    expect(sh.halves.mean).toBeCloseTo(ref.mean, 10);
    expect(sh.halves.lo).toBeCloseTo(ref.lo, 10);
    expect(sh.halves.hi).toBeCloseTo(ref.hi, 10);
    const curve = agreementCurve(p, q, d, { sizes: [2, 12], repeats: 30, seed: 6 });
    const refCurve = referenceAgreement(p, q, d, [2, 12], 30, 6);
    curve.forEach((c, i) => {
      expect(c.mean).toBeCloseTo(refCurve[i]!.mean, 10);
      expect(c.lo).toBeCloseTo(refCurve[i]!.lo, 10);
      expect(c.hi).toBeCloseTo(refCurve[i]!.hi, 10);
    });
  });

  it('is deterministic for a seed and differs across seeds', () => {
    const a = bootstrapStability(noisyPos, noisyNeg, d, { n: 50, seed: 7 });
    const b = bootstrapStability(noisyPos, noisyNeg, d, { n: 50, seed: 7 });
    const c = bootstrapStability(noisyPos, noisyNeg, d, { n: 50, seed: 8 });
    expect([...a.cosines]).toEqual([...b.cosines]);
    expect([...a.cosines]).not.toEqual([...c.cosines]);
    expect(a.cosines.length).toBe(50);
  });
  it('interval contains the mean; strong data near 1, noisy data lower', () => {
    const s = bootstrapStability(strongPos, strongNeg, d, { n: 200, seed: 1 });
    const w = bootstrapStability(noisyPos, noisyNeg, d, { n: 200, seed: 1 });
    for (const r of [s, w]) {
      expect(r.lo).toBeLessThanOrEqual(r.mean);
      expect(r.mean).toBeLessThanOrEqual(r.hi);
      expect(r.failed).toBe(0);
    }
    expect(s.mean).toBeGreaterThan(0.98);
    expect(s.lo).toBeGreaterThan(0.97);
    expect(w.mean).toBeLessThan(s.mean - 0.1);
    expect(w.lo).toBeLessThan(s.lo);
  });
  it('scale of the row weights does not matter; token weights are carried through resampling', () => {
    const two = { posWeights: new Array(60).fill(2), negWeights: new Array(80).fill(2) };
    const a = bootstrapStability(noisyPos, noisyNeg, d, { n: 20, seed: 3 });
    const b = bootstrapStability(noisyPos, noisyNeg, d, { n: 20, seed: 3, ...two });
    for (let i = 0; i < 20; i++) expect(b.cosines[i]).toBeCloseTo(a.cosines[i]!, 10);
    const counts = { posWeights: Array.from({ length: 60 }, (_, i) => 1 + (i % 7)), negWeights: Array.from({ length: 80 }, (_, i) => 1 + (i % 3)) };
    const c = bootstrapStability(noisyPos, noisyNeg, d, { n: 20, seed: 3, ...counts });
    expect([...c.cosines]).not.toEqual([...a.cosines]);
  });
  it('pca resamples pairs and gives signed cosines near 1 for a clean planted direction', () => {
    const { pos, neg } = pairedPlanted(40, d, u, { seed: 9, cLo: 1, cHi: 4, noise: 0.05 });
    const r = bootstrapStability(pos, neg, d, { n: 30, seed: 2, method: 'pca' });
    expect(r.mean).toBeGreaterThan(0.97);
    expect(r.lo).toBeGreaterThan(0.9);
    expect(() => bootstrapStability(pos, neg.subarray(0, 39 * d), d, { n: 3, seed: 1, method: 'pca' })).toThrow(EmlensError);
  });
});

describe('splitHalf', () => {
  it('halves agree for strong data, less for noisy data', () => {
    const s = splitHalf(strongPos, strongNeg, d, { repeats: 30, seed: 4 });
    const w = splitHalf(noisyPos, noisyNeg, d, { repeats: 30, seed: 4 });
    expect(s.halves.cosines.length).toBe(30);
    expect(s.toFull.cosines.length).toBe(60);
    expect(s.halves.mean).toBeGreaterThan(0.95);
    expect(w.halves.mean).toBeLessThan(s.halves.mean);
    // Each half is closer to the full direction than to the other half, on average.
    expect(w.toFull.mean).toBeGreaterThan(w.halves.mean);
    expect(splitHalf(noisyPos, noisyNeg, d, { repeats: 30, seed: 4 }).halves.cosines).toEqual(w.halves.cosines);
  });
  it('pca split-half works on pairs', () => {
    const { pos, neg } = pairedPlanted(40, d, u, { seed: 9, cLo: 1, cHi: 4, noise: 0.05 });
    const r = splitHalf(pos, neg, d, { repeats: 10, seed: 1, method: 'pca' });
    expect(r.halves.mean).toBeGreaterThan(0.9);
  });
});

describe('agreementCurve / rowsToSettle', () => {
  // Two directions from disjoint subsamples of n rows per side, rows x ~ N(0, I_d) plus the shift
  // mu on the pos side: each mean-diff is mu + e, e ~ N(0, (2/n) I_d), so for large d
  //   cos(v1, v2) ~ |mu|^2 / (|mu|^2 + 2d/n).
  const D = 200;
  const N = 256;
  const sizes = [1, 2, 4, 8, 16, 32, 64, 128];
  const analytic = (mu2: number, n: number) => mu2 / (mu2 + (2 * D) / n);
  const v = randomUnit(D, 11);
  const planted = (mu2: number, seed: number) => ({
    pos: shifted(randomRows(N, D, 100 + seed), D, Array.from(v, (x) => Math.sqrt(mu2) * x)),
    neg: randomRows(N, D, 200 + seed),
  });

  it('pure noise never settles, at any size up to half the rows (the whole set against itself would)', () => {
    const { pos, neg } = planted(0, 1);
    const curve = agreementCurve(pos, neg, D, { sizes, repeats: 60, seed: 1 });
    for (const c of curve) {
      expect(Math.abs(c.mean), `size ${c.size}`).toBeLessThan(0.08); // sd of one cosine ~ 1/sqrt(d) = 0.07
      expect(c.hi).toBeLessThan(0.3);
    }
    expect(rowsToSettle(curve, 0.9)).toBeNull();
    expect(rowsToSettle(curve, 0.5)).toBeNull();
    // 3 + 3 rows per side: disjoint subsamples of 3 rows, nowhere near settled
    const few = agreementCurve(pos.subarray(0, 6 * D), neg.subarray(0, 6 * D), D, { sizes: [1, 2, 3], repeats: 60, seed: 2 });
    expect(rowsToSettle(few, 0.9)).toBeNull();
    expect(() => agreementCurve(pos.subarray(0, 6 * D), neg, D, { sizes: [4], repeats: 1, seed: 1 })).toThrow(/size 4 is not an integer in 1\.\.3/);
  });

  it('a planted direction settles where the analytic signal-to-noise says', () => {
    // |mu|^2 chosen so that cos = 0.9 at n = 45: analytic 0.865 at 32, 0.927 at 64.
    const mu2 = (2 * D * 0.9) / (0.1 * 45);
    const { pos, neg } = planted(mu2, 2);
    const curve = agreementCurve(pos, neg, D, { sizes, repeats: 60, seed: 3 });
    expect(curve.map((c) => c.size)).toEqual(sizes);
    for (const c of curve) {
      expect(Math.abs(c.mean - analytic(mu2, c.size)), `size ${c.size}: ${c.mean} vs ${analytic(mu2, c.size)}`).toBeLessThan(0.02);
      expect(c.lo).toBeLessThanOrEqual(c.mean);
      expect(c.mean).toBeLessThanOrEqual(c.hi);
      expect(c.failed).toBe(0);
    }
    const want = sizes.find((n, i) => sizes.slice(i).every((m) => analytic(mu2, m) >= 0.9));
    expect(want).toBe(64);
    expect(rowsToSettle(curve, 0.9)).toBe(want);
    // a four times stronger signal needs a quarter of the rows
    const strong = planted(4 * mu2, 3);
    expect(rowsToSettle(agreementCurve(strong.pos, strong.neg, D, { sizes, repeats: 60, seed: 4 }), 0.9)).toBe(16);
    expect(() => agreementCurve(pos, neg, D, { sizes: [129], repeats: 1, seed: 1 })).toThrow(/size 129/);
  });

  it('pca: two disjoint sets of pairs', () => {
    const { pos, neg } = pairedPlanted(40, d, u, { seed: 9, cLo: 1, cHi: 4, noise: 0.05 });
    const curve = agreementCurve(pos, neg, d, { sizes: [2, 20], repeats: 10, seed: 1, method: 'pca' });
    expect(curve[1]!.mean).toBeGreaterThan(0.95);
    const noise = agreementCurve(randomRows(40, d, 30), randomRows(40, d, 31), d, { sizes: [20], repeats: 10, seed: 1, method: 'pca' });
    expect(Math.abs(noise[0]!.mean)).toBeLessThan(0.5);
  });
  it('rowsToSettle: smallest size from which the curve stays above the threshold', () => {
    const pt = (size: number, mean: number, lo = mean - 0.1) => ({ size, mean, lo, hi: mean + 0.05, failed: 0 });
    const curve = [pt(64, 0.95), pt(4, 0.5), pt(8, 0.92), pt(16, 0.85), pt(32, 0.91)];
    expect(rowsToSettle(curve)).toBe(32);
    expect(rowsToSettle(curve, 0.8)).toBe(8);
    expect(rowsToSettle(curve, 0.9, 'lo')).toBeNull();
    expect(rowsToSettle(curve, 0.8, 'lo')).toBe(32);
    expect(rowsToSettle([], 0.9)).toBeNull();
  });
});
