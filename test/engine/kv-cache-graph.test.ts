/**
 * The decode graph hands its KV cache back without copying it: each present.L.key/value output is
 * the Concat of the past and the new positions itself. Routed through an Identity (what
 * Graph.output does for a value named otherwise), ORT copied the whole cache every step, 6% of a
 * batch-32 decode step at 216 positions on the Qwen2.5-0.5B shape; and no Transpose reads the whole
 * cache (keys are stored [B, KV, head_dim, S], as the scores' MatMul takes them: the transpose took
 * 3-5% of that step). Every family's graph is checked.
 */
import { describe, expect, it } from 'vitest';
import { buildDecoderGraph, IO, type GraphVariant } from '../../src/arch/decoder.js';
import { parseConfig } from '../../src/model/config.js';
import { randomWeights } from '../../src/model/random.js';
import { TINY_FAMILIES, tinyConfig } from '../helpers/tiny-checkpoints.js';

describe('KV-cache graph', () => {
  it('present keys and values are the Concat outputs, with no copy', () => {
    for (const family of TINY_FAMILIES) {
      const config = tinyConfig(family);
      const spec = parseConfig(config, `${family} config.json`);
      const weightShapes = new Map([...randomWeights(spec, 0)].map(([k, w]) => [k, w.shape]));
      const variant: GraphVariant = { capture: [], steer: [], ablate: [], kvCache: true, logits: 'last', weightShapes };
      const g = buildDecoderGraph(spec, variant);
      const producer = new Map(g.nodes.flatMap((n) => n.outputs.map((o) => [o.name, n] as const)));
      expect(g.nodes.filter((n) => n.op === 'Identity'), family).toEqual([]);
      for (let l = 0; l < spec.nLayers; l++) {
        for (const name of [IO.presentKey(l), IO.presentValue(l)]) {
          expect(g.outputs.some((o) => o.name === name), `${family} ${name}`).toBe(true);
          const n = producer.get(name)!;
          expect(n.op, `${family} ${name}`).toBe('Concat');
          expect(n.inputs[0]!.name).toBe(name === IO.presentKey(l) ? IO.pastKey(l) : IO.pastValue(l));
          // Nor is the whole cache transposed each step (keys are kept as the scores' MatMul takes them).
          const users = g.nodes.filter((u) => u.inputs.some((x) => x.name === name)).map((u) => u.op);
          expect(users, `${family} ${name}`).not.toContain('Transpose');
        }
      }
    }
  });
});
