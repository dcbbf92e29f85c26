/**
 * The decode graph never copies its KV cache: the cache's slots come in as inputs (which
 * onnxruntime-node feeds without a copy) and are read only by the attention MatMuls (through a
 * unit-axis Unsqueeze, a view); only the call's new positions go out, as the Transposes' own values
 * (onnxruntime-node copies every output into a new JS buffer, and an output routed through an
 * Identity is one copy more). Handing the whole cache back (a Concat of past and new as output) cost
 * ~100 ms of a ~420 ms batch-32 decode step on the Qwen2.5-0.5B shape. Every family's graph.
 */
import { describe, expect, it } from 'vitest';
import { buildDecoderGraph, IO, type GraphVariant } from '../../src/arch/decoder.js';
import { parseConfig } from '../../src/model/config.js';
import { randomWeights } from '../../src/model/random.js';
import { TINY_FAMILIES, tinyConfig } from '../helpers/tiny-checkpoints.js';

describe('KV-cache graph', () => {
  it('the cache is read in place, and only the new positions are returned', () => {
    for (const family of TINY_FAMILIES) {
      const config = tinyConfig(family);
      const spec = parseConfig(config, `${family} config.json`);
      const weightShapes = new Map([...randomWeights(spec, 0)].map(([k, w]) => [k, w.shape]));
      const variant: GraphVariant = { capture: [], steer: [], ablate: [], kvCache: true, logits: 'last', weightShapes };
      const g = buildDecoderGraph(spec, variant);
      const producer = new Map(g.nodes.flatMap((n) => n.outputs.map((o) => [o.name, n] as const)));
      const users = (name: string) => g.nodes.filter((u) => u.inputs.some((x) => x.name === name));
      expect(g.nodes.filter((n) => n.op === 'Identity'), family).toEqual([]);
      for (let l = 0; l < spec.nLayers; l++) {
        for (const [present, past] of [
          [IO.presentKey(l), IO.pastKey(l)],
          [IO.presentValue(l), IO.pastValue(l)],
        ] as const) {
          expect(g.outputs.some((o) => o.name === present), `${family} ${present}`).toBe(true);
          expect(g.outputs.some((o) => o.name === past), `${family} ${past}`).toBe(false);
          // The new positions only: a Transpose of this call's keys/values, not of the cache.
          const n = producer.get(present)!;
          expect(n.op, `${family} ${present}`).toBe('Transpose');
          expect(n.inputs[0]!.name).not.toBe(past);
          // The cache: a graph input read by one Unsqueeze that feeds the MatMul alone.
          expect(g.inputs.some((i) => i.name === past), `${family} ${past}`).toBe(true);
          const u = users(past);
          expect(u.map((x) => x.op), `${family} ${past}`).toEqual(['Unsqueeze']);
          expect(users(u[0]!.outputs[0]!.name).map((x) => x.op), `${family} ${past}`).toEqual(['MatMul']);
        }
      }
    }
  });
});
