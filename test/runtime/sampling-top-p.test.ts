/**
 * Top-p over a real vocabulary size: sampleProbs sorts only the tokens that can be in the kept set,
 * so every draw must equal the textbook procedure written here from its definition (sort all
 * tokens by probability, ties by id; keep the shortest prefix whose mass reaches top_p; draw
 * u·mass and walk the prefix), draw for draw with the same generator, on the float32 softmax the
 * decode graph hands it. Distributions: peaked, flat with ties, and one whose kept set reaches
 * into a tail below every cut.
 */
import { describe, expect, it } from 'vitest';
import { sampleProbs } from '../../src/runtime/sampling.js';
import { rng } from '../../src/runtime/random.js';

/** softmax(logits / T) in float64, rounded to float32 (what ORT's Softmax returns, to rounding). */
function softmax32(logits: Float32Array, temperature: number): Float32Array {
  let max = -Infinity;
  for (const v of logits) max = Math.max(max, v);
  const e = Array.from(logits, (v) => Math.exp((v - max) / temperature));
  const z = e.reduce((a, b) => a + b, 0);
  return Float32Array.from(e, (v) => v / z);
}

function reference(p: Float32Array, topP: number, random: () => number): number {
  const n = p.length;
  const z = p.reduce((a, b) => a + b, 0);
  const ids = Array.from({ length: n }, (_, i) => i).sort((a, b) => p[b]! - p[a]! || a - b);
  let mass = 0;
  let k = 0;
  while (k < n && mass < topP * z) mass += p[ids[k++]!]!;
  const kept = ids.slice(0, Math.max(1, k));
  const u = random() * (mass / z) * z;
  let acc = 0;
  for (const i of kept) {
    acc += p[i]!;
    if (u < acc) return i;
  }
  return kept[kept.length - 1]!;
}

const V = 151936;
function rows(): [string, Float32Array][] {
  const r = rng(3);
  const peaked = Float32Array.from({ length: V }, (_, i) => -3 * Math.log(1 + ((i * 7919) % V)) + r());
  const flat = Float32Array.from({ length: V }, () => Math.round(r() * 8) / 4); // many exact ties
  // One token at 0 and a tail at -20: e^-20 ≈ 2e-9 of the top, below every cut; top-p 0.99999 needs the tail.
  const tail = new Float32Array(V).fill(-20);
  tail[12345] = 0;
  return [
    ['peaked', peaked],
    ['flat with ties', flat],
    ['tail below the cuts', tail],
  ];
}

describe('top-p over 151936 tokens', () => {
  it('every draw equals the full-sort procedure', () => {
    for (const [name, logits] of rows()) {
      for (const [temperature, topP] of [
        [1, 0.9],
        [0.7, 0.95],
        [1.3, 0.5],
        [1, 0.99999],
        [1, 1e-6],
      ] as const) {
        // Two seeded draws, and one at u just below the kept mass: it returns the last token kept,
        // so a kept set cut short or run long shows even where seeded draws all hit the top token.
        const edge = () => 1 - 2 ** -40;
        const p = softmax32(logits, temperature);
        for (const [ra, rb] of [[rng(11), rng(11)], [rng(12), rng(12)], [edge, edge]] as const) {
          expect(sampleProbs(p, 0, V, topP, ra), `${name}, T ${temperature}, top-p ${topP}`).toBe(reference(p, topP, rb));
        }
      }
    }
  }, 120_000);

  it('top-p 1 walks the vocabulary in id order: the cumulative-sum draw, with the mass given or summed', () => {
    // The definition: the first token whose running sum (in id order) exceeds u · mass.
    const cdfDraw = (p: Float32Array, u: number, mass: number) => {
      let acc = 0;
      for (let i = 0; i < p.length; i++) {
        acc += p[i]!;
        if (u * mass < acc) return i;
      }
      return -1;
    };
    for (const [name, logits] of rows()) {
      const p = softmax32(logits, 1);
      const z = p.reduce((a, b) => a + b, 0);
      for (const seed of [21, 22, 23]) {
        const ra = rng(seed);
        const rb = rng(seed);
        const rc = rng(seed);
        for (let k = 0; k < 20; k++) {
          const want = cdfDraw(p, rb(), z);
          expect(sampleProbs(p, 0, V, 1, ra), `${name}, seed ${seed}, draw ${k}`).toBe(want);
          // The decode graph's probs_sum is a float32 sum of the same values.
          expect(sampleProbs(p, 0, V, 1, rc, Math.fround(z)), `${name}, seed ${seed}, draw ${k}, mass given`).toBe(want);
        }
      }
    }
  });

  it('a given mass a little above the sum draws the last token with p > 0 at the top of the range', () => {
    const p = softmax32(rows()[0]![1], 1);
    p.fill(0, V - 10);
    const z = p.reduce((a, b) => a + b, 0);
    expect(sampleProbs(p, 0, V, 1, () => 1 - 2 ** -40, z * (1 + 1e-6))).toBe(V - 11);
    expect(sampleProbs(p, 0, V, 1, () => 0, z)).toBe(0);
  });

  it('a row inside a batch (offset) samples as the row alone', () => {
    const peaked = softmax32(rows()[0]![1], 1);
    const batch = new Float32Array(3 * V);
    batch.set(peaked, V);
    expect(sampleProbs(batch, V, V, 0.9, rng(5))).toBe(sampleProbs(peaked, 0, V, 0.9, rng(5)));
  });
});
