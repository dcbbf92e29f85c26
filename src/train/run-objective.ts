/**
 * One run of the training objective (CE on the narrow rows + λ·KL on the KL rows, and gradients
 * with respect to `wrt`) on a model: here, or on an `emlens serve` process when the model runs on
 * `--backend` (the server calls this same function on its engine). With KL the base distribution
 * comes from the same weights with the intervention off, computed where the weights are, so the
 * [N, V] base log-probs never cross the network.
 */
import type { LoadedModel } from '../backend/model.js';
import type { Interventions } from '../hooks/interventions.js';
import { IO } from '../arch/decoder.js';
import type { GraphExtension } from '../runtime/engine.js';
import { f32, type OrtTensor } from '../runtime/ort.js';
import { logSoftmaxRows } from './batch.js';
import { OBJ, objective } from './objective.js';

export interface ObjectiveCall {
  ids: number[][];
  interventions: Interventions;
  lora?: [string, number][];
  /** targets, weights, λ, LoRA factors: every feed but the base log-probs. */
  feeds: Record<string, OrtTensor>;
  withKl: boolean;
  wrt: string[];
}

/** The graph's outputs by name (loss, ce, kl, grad.<input>). */
export type ObjectiveOutputs = Record<string, { data: Float32Array; dims: readonly number[] }>;

/**
 * A run's graphs go without ORT's CPU arena: with it, each session (the training graph, the
 * evaluation graph, the KL term's base forward) kept a pool the size of its own peak after its
 * runs, side by side (0.5B, 4 x 128 tokens, a steering-vector run: 2.04x the fp32 weights, 1.75x
 * without; CPU a step equal in two separate runs, 7% more when alternated in one process: the
 * train bench).
 */
const CPU_MEM_ARENA = false;

/** The KL term's base forward: the plain decoder graph with logits 'all', in a session of its own without the arena. */
const BASE_FORWARD: GraphExtension = { key: 'kl-base', extend: () => {}, sessionOptions: { cpuMemArena: CPU_MEM_ARENA } };

export async function runObjective(model: LoadedModel, c: ObjectiveCall): Promise<ObjectiveOutputs> {
  if (model.remote) return model.remote.engine.objective(c);
  const engine = model.engine;
  const prep = engine.prepareCall(c.ids, { logits: 'all', interventions: c.interventions, lora: c.lora });
  const feeds = { ...c.feeds };
  if (c.withKl) {
    const V = model.spec.vocab;
    // In place: the base logits [N, V] are not needed once they are log-probs (one copy, not two).
    const base = (await engine.run(engine.prepareCall(c.ids, { logits: 'all' }), {}, BASE_FORWARD))[IO.logits]!.data as Float32Array;
    feeds[OBJ.baseLogp] = f32(logSoftmaxRows(base, V, base), [base.length / V, V]);
  }
  const out = await engine.run(prep, feeds, objective({ withKl: c.withKl, wrt: c.wrt, cpuMemArena: CPU_MEM_ARENA }));
  return Object.fromEntries(Object.entries(out).map(([k, t]) => [k, { data: t.data as Float32Array, dims: t.dims }]));
}
