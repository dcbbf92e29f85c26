/** Random weights for a spec: the organism's initialisation, benchmarks, placeholder models. */
import { expectedTensors, type Weights } from './weights.js';
import type { ModelSpec } from './config.js';
import { fillGaussian, fillGaussianTiled, rng } from '../runtime/random.js';

export interface RandomWeightOptions {
  /** standard deviation of every matrix (default 0.02) */
  std?: number;
  /** also the q/k/v projection biases the family allows (Qwen2) */
  withBiases?: boolean;
  /**
   * Fill each tensor by repeating one seeded block of this many Gaussian values instead of drawing
   * every value: ~1 s instead of ~10 for a 0.5B model. For benchmarks, whose timings do not depend
   * on the values; a prime length keeps the repeats off every tensor dimension.
   */
  tile?: number;
}

/**
 * N(0, std²) matrices from the project's Gaussian sampler on one seeded generator (tensors in
 * expectedTensors order), norms at 1 (0 for (1 + w) norms).
 */
export function randomWeights(spec: ModelSpec, seed: number, o: RandomWeightOptions = {}): Weights {
  const std = o.std ?? 0.02;
  const { required, optional } = expectedTensors(spec);
  const out: Weights = new Map();
  const random = rng(seed);
  const fill = (shape: number[], isNorm: boolean) => {
    const n = shape.reduce((a, b) => a * b, 1);
    const data = new Float32Array(n);
    if (isNorm) return data.fill(spec.normPlusOne ? 0 : 1);
    return o.tile ? fillGaussianTiled(data, random, std, o.tile) : fillGaussian(data, random, std);
  };
  for (const [name, shape] of required) out.set(name, { shape, data: fill(shape, name.endsWith('norm.weight')) });
  if (o.withBiases) {
    for (const [name, shape] of optional) {
      if (name.endsWith('.bias') && /(q|k|v)_proj/.test(name)) out.set(name, { shape, data: fill(shape, false) });
    }
  }
  return out;
}
