import { describe, expect, it } from 'vitest';
import { EmlensError } from '../../src/errors.js';
import { auroc, dprime, projections, separation, splitByLabel } from '../../src/directions/separation.js';
import { rng } from '../../src/runtime/random.js';
import { gaussian } from './data.js';

/** O(n^2) reference: fraction of (pos, neg) pairs with pos > neg, ties counting one half. */
function pairwiseAuroc(p: ArrayLike<number>, n: ArrayLike<number>): number {
  let s = 0;
  for (let i = 0; i < p.length; i++) {
    for (let j = 0; j < n.length; j++) s += p[i]! > n[j]! ? 1 : p[i]! === n[j]! ? 0.5 : 0;
  }
  return s / (p.length * n.length);
}

describe('auroc', () => {
  it('matches the pairwise count, with many ties', () => {
    const r = rng(3);
    for (let trial = 0; trial < 20; trial++) {
      const np_ = 1 + Math.floor(r() * 40);
      const nn = 1 + Math.floor(r() * 40);
      const p = Array.from({ length: np_ }, () => Math.floor(r() * 6) + (trial % 3));
      const n = Array.from({ length: nn }, () => Math.floor(r() * 6));
      expect(auroc(p, n)).toBeCloseTo(pairwiseAuroc(p, n), 12);
    }
  });
  it('matches the pairwise count on continuous scores', () => {
    const g = gaussian(4);
    const p = Array.from({ length: 300 }, () => g() + 0.7);
    const n = Array.from({ length: 217 }, () => g());
    expect(auroc(p, n)).toBeCloseTo(pairwiseAuroc(p, n), 12);
  });
  it('edge values', () => {
    expect(auroc([2, 3], [0, 1])).toBe(1);
    expect(auroc([0, 1], [2, 3])).toBe(0);
    expect(auroc([1, 1], [1, 1, 1])).toBe(0.5);
    expect(auroc([Infinity, 1], [-Infinity, Infinity])).toBeCloseTo(pairwiseAuroc([Infinity, 1], [-Infinity, Infinity]), 12);
    expect(() => auroc([], [1])).toThrow(EmlensError);
    expect(() => auroc([NaN], [1])).toThrow(/NaN/);
  });
});

describe('dprime', () => {
  it('matches a hand computation', () => {
    // pos mean 2, var 1; neg mean 1/3, var 1/3 (n - 1 denominators)
    const want = (2 - 1 / 3) / Math.sqrt((1 + 1 / 3) / 2);
    expect(dprime([1, 2, 3], [0, 0, 1])).toBeCloseTo(want, 12);
    expect(dprime([0, 0, 1], [1, 2, 3])).toBeCloseTo(-want, 12);
  });
  it('needs two scores a side', () => {
    expect(() => dprime([1], [1, 2])).toThrow(/at least 2/);
  });
});

describe('projections / separation', () => {
  it('projects onto the unit direction', () => {
    const acts = Float32Array.from([1, 2, 3, 4, 0, 0]);
    const p = projections(acts, 2, [0, 5]); // unit (0, 1)
    expect([...p]).toEqual([2, 4, 0]);
    const q = projections(acts, 2, [3, 4]);
    expect(q[0]).toBeCloseTo((3 + 8) / 5, 6);
    expect(() => projections(acts, 2, [0, 0])).toThrow(EmlensError);
    expect(() => projections(acts, 2, [1, 2, 3])).toThrow(/width/);
  });
  it('summary and label split', () => {
    const s = separation([1, 2, 3], [0, 0, 1]);
    expect(s.nPos).toBe(3);
    expect(s.meanPos).toBe(2);
    expect(s.sdPos).toBeCloseTo(1, 12);
    expect(s.auroc).toBeCloseTo(pairwiseAuroc([1, 2, 3], [0, 0, 1]), 12);
    expect(s.dprime).toBeCloseTo(dprime([1, 2, 3], [0, 0, 1]), 12);
    const m = splitByLabel([5, 6, 7, 8], ['a', 'b', 'a', 'c']);
    expect([...m.keys()]).toEqual(['a', 'b', 'c']);
    expect([...m.get('a')!]).toEqual([5, 7]);
  });
});
