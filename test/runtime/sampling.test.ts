import { describe, expect, it } from 'vitest';
import { argmax, sampleProbs } from '../../src/runtime/sampling.js';
import { rng } from '../../src/runtime/random.js';

const logits = Float32Array.from([2.0, 1.0, 0.5, -1.0, 1.9]);
const softmax = (x: ArrayLike<number>, temp: number) => {
  const m = Math.max(...Array.from(x));
  const e = Array.from(x, (v) => Math.exp((v - m) / temp));
  const z = e.reduce((a, b) => a + b, 0);
  return e.map((v) => v / z);
};
/** What the decode graph hands the sampler: softmax(logits / T) in float32. */
const probs = (temp: number) => Float32Array.from(softmax(logits, temp));

describe('sampling', () => {
  it('argmax, over a row at an offset', () => {
    expect(argmax(logits)).toBe(0);
    expect(argmax(logits, 1, 4)).toBe(3);
  });

  it('temperature sampling follows softmax(logits / T) (chi-square, 20k draws)', () => {
    for (const temp of [0.7, 1.5]) {
      const p = softmax(logits, temp);
      const counts = new Array(5).fill(0);
      const r = rng(42);
      const n = 20000;
      const q = probs(temp);
      for (let i = 0; i < n; i++) counts[sampleProbs(q, 0, 5, 1, r)]++;
      const chi2 = counts.reduce((s, c, i) => s + (c - n * p[i]!) ** 2 / (n * p[i]!), 0);
      expect(chi2).toBeLessThan(18.5); // p = 0.001 for 4 degrees of freedom
    }
  });

  it('top-p keeps the smallest set reaching p and renormalises', () => {
    const p = softmax(logits, 1); // sorted: 0 (0.37), 4 (0.34), 1 (0.14), 2, 3
    const r = rng(7);
    const counts = new Map<number, number>();
    const q = probs(1);
    for (let i = 0; i < 20000; i++) {
      const t = sampleProbs(q, 0, 5, 0.6, r);
      counts.set(t, (counts.get(t) ?? 0) + 1);
    }
    expect([...counts.keys()].sort()).toEqual([0, 4]);
    const share0 = counts.get(0)! / 20000;
    expect(Math.abs(share0 - p[0]! / (p[0]! + p[4]!))).toBeLessThan(0.015);
    expect(sampleProbs(q, 0, 5, 0.01, r)).toBe(0);
  });

  it('a seed reproduces a draw sequence', () => {
    const a = rng(3);
    const b = rng(3);
    for (let i = 0; i < 100; i++) expect(a()).toBe(b());
  });
});
