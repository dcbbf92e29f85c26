/**
 * A model as the experiment layer and the CLI see it: resolved folder, spec, checkpoint plan,
 * tokenizer and (once loaded) the engine. `openModel` reads headers only; `LoadedModel.load`
 * also reads the weights.
 */
import { existsSync } from 'node:fs';
import { join } from 'node:path';
import { resolveModel, type ResolveOptions } from '../hub/resolve.js';
import { loadSpec, type ModelSpec } from '../model/config.js';
import { planCheckpoint, loadWeights, type CheckpointPlan } from '../model/weights.js';
import { TextTokenizer } from '../model/tokenizer.js';
import { Engine } from '../runtime/engine.js';
import { EmlensError } from '../errors.js';

export interface ModelInfo {
  source: string;
  dir: string;
  spec: ModelSpec;
  plan: CheckpointPlan;
  tokenizer: TextTokenizer | null;
}

export interface LoadOptions extends ResolveOptions {
  /** Called while tensors are read (done, total). */
  onLoad?: (done: number, total: number) => void;
}

/** Resolves the model and validates config, tokenizer and tensor headers; reads no weight data. */
export async function openModel(idOrPath: string, opts: ResolveOptions = {}): Promise<ModelInfo> {
  const dir = await resolveModel(idOrPath, opts);
  const spec = loadSpec(dir);
  const plan = planCheckpoint(dir, spec);
  const tokenizer = existsSync(join(dir, 'tokenizer.json')) ? await TextTokenizer.load(dir) : null;
  // An id past the embedding table would fail in the middle of a run; the two files disagree.
  if (tokenizer && tokenizer.vocabSize > spec.vocab) {
    throw new EmlensError(`${join(dir, 'tokenizer.json')}: has token id ${tokenizer.vocabSize - 1}, outside the model's vocabulary (${join(dir, 'config.json')} "vocab_size" ${spec.vocab})`);
  }
  return { source: idOrPath, dir, spec, plan, tokenizer };
}

/** Parameters actually in the checkpoint (biases included, tied embeddings once). */
export function parameterCount(info: ModelInfo): number {
  let n = 0;
  for (const t of info.plan.tensors.values()) n += t.shape.reduce((a, b) => a * b, 1);
  return n;
}

export class LoadedModel implements ModelInfo {
  private constructor(
    readonly source: string,
    readonly dir: string,
    readonly spec: ModelSpec,
    readonly plan: CheckpointPlan,
    readonly tokenizer: TextTokenizer | null,
    readonly engine: Engine,
  ) {}

  static async load(idOrPath: string, opts: LoadOptions = {}): Promise<LoadedModel> {
    const info = await openModel(idOrPath, opts);
    const weights = loadWeights(info.plan, opts.onLoad);
    return new LoadedModel(info.source, info.dir, info.spec, info.plan, info.tokenizer, new Engine(info.spec, weights));
  }
}
