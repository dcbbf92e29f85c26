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
import { f32, type OrtTensor, type SessionOptions } from '../runtime/ort.js';
import { logSoftmaxRows } from './batch.js';
import { OBJ, OBJECTIVE_KEY, objective } from './objective.js';

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
 * The objective's graphs (training, evaluation, the KL term's base forward) keep ORT's arena but
 * not its memory pattern: with the pattern, a session planned a block for a run's intermediates
 * on top of what its arena had pooled; without the arena, the C library's heap fragmented. 0.5B,
 * 4 x 128 tokens, a steering-vector run (the train bench): peak 1.59x the fp32 weights against
 * 2.04x with the pattern and 1.85-2.00x without the arena; CPU a step, interleaved, 18.1 s
 * against 18.2 and 22.2.
 * The arena's pools live as long as the sessions: releasingObjectiveSessions gives them back.
 */
const MEMORY: Partial<SessionOptions> = { memPattern: false };

const BASE_KEY = 'kl-base';

/** The KL term's base forward: the plain decoder graph with logits 'all', in a session of its own. */
const BASE_FORWARD: GraphExtension = { key: BASE_KEY, extend: () => {}, sessionOptions: MEMORY };

/**
 * Runs `work` (a training run, a measurement), then releases the objective's sessions and with
 * them their arenas (a run's intermediates), so a long-lived process keeps none of it; later calls
 * compile them again (a few seconds). A remote model's sessions are the server's.
 */
export async function releasingObjectiveSessions<T>(model: LoadedModel, work: () => Promise<T>): Promise<T> {
  try {
    return await work();
  } finally {
    if (!model.remote) await model.engine.releaseSessions((ext) => ext === BASE_KEY || (ext?.startsWith(OBJECTIVE_KEY) ?? false));
  }
}

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
  const out = await engine.run(prep, feeds, objective({ withKl: c.withKl, wrt: c.wrt, sessionOptions: MEMORY }));
  return Object.fromEntries(Object.entries(out).map(([k, t]) => [k, { data: t.data as Float32Array, dims: t.dims }]));
}
