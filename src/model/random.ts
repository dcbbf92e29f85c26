/** Random weights for a spec: benchmarks and the demo's placeholder model. */
import { expectedTensors, type Weights } from './weights.js';
import type { ModelSpec } from './config.js';
import { fillGaussian, rng } from '../runtime/random.js';

/** N(0, std²) matrices (Box-Muller on a seeded generator), norms at 1 (0 for (1 + w) norms). */
export function randomWeights(spec: ModelSpec, seed: number, std = 0.02, withBiases = false): Weights {
  const { required, optional } = expectedTensors(spec);
  const out: Weights = new Map();
  const random = rng(seed);
  const fill = (shape: number[], isNorm: boolean) => {
    const n = shape.reduce((a, b) => a * b, 1);
    const data = new Float32Array(n);
    if (isNorm) return data.fill(spec.normPlusOne ? 0 : 1);
    return fillGaussian(data, random, std);
  };
  for (const [name, shape] of required) out.set(name, { shape, data: fill(shape, name.endsWith('norm.weight')) });
  if (withBiases) {
    for (const [name, shape] of optional) {
      if (name.endsWith('.bias') && /(q|k|v)_proj/.test(name)) out.set(name, { shape, data: fill(shape, false) });
    }
  }
  return out;
}
