/**
 * Top-p over a real vocabulary size: sampleToken sorts only the tokens that can be in the kept set,
 * so every draw must equal the textbook procedure written here from its definition (sort all
 * tokens by probability, ties by id; keep the shortest prefix whose mass reaches top_p; draw
 * u·mass and walk the prefix), draw for draw with the same generator. Distributions: peaked,
 * flat with ties, and one whose kept set reaches into a tail below every cut.
 */
import { describe, expect, it } from 'vitest';
import { sampleToken } from '../../src/runtime/sampling.js';
import { rng } from '../../src/runtime/random.js';

function reference(logits: Float32Array, temperature: number, topP: number, random: () => number): number {
  const n = logits.length;
  let max = -Infinity;
  for (const v of logits) max = Math.max(max, v);
  const p = Array.from(logits, (v) => Math.exp((v - max) / temperature));
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
        for (const [ra, rb] of [[rng(11), rng(11)], [rng(12), rng(12)], [edge, edge]] as const) {
          expect(sampleToken(logits, 0, V, { temperature, topP }, ra), `${name}, T ${temperature}, top-p ${topP}`).toBe(reference(logits, temperature, topP, rb));
        }
      }
    }
  }, 120_000);

  it('a row inside a batch (offset) samples as the row alone', () => {
    const [, peaked] = rows()[0]!;
    const batch = new Float32Array(3 * V);
    batch.set(peaked, V);
    expect(sampleToken(batch, V, V, { temperature: 1, topP: 0.9 }, rng(5))).toBe(sampleToken(peaked, 0, V, { temperature: 1, topP: 0.9 }, rng(5)));
  });
});
