/**
 * A model as the experiment layer and the CLI see it: resolved folder, spec, checkpoint plan,
 * tokenizer and (once loaded) the engine. `openModel` reads headers only; `LoadedModel.load`
 * also reads the weights.
 */
import { existsSync, statSync } from 'node:fs';
import { join } from 'node:path';
import { EmlensError } from '../errors.js';
import { isRepoId, resolveModel, type ResolveOptions } from '../hub/resolve.js';
import { ADAPTER_CONFIG, ADAPTER_WEIGHTS, checkBaseModel, mergeAdapter, planAdapter, type AdapterPlan } from '../model/adapter.js';
import { loadSpec, readJson, type ModelSpec } from '../model/config.js';
import { weightsFingerprint } from '../model/fingerprint.js';
import { planCheckpoint, loadWeights, type CheckpointPlan } from '../model/weights.js';
import { TextTokenizer } from '../model/tokenizer.js';
import { Engine } from '../runtime/engine.js';
import type { SessionOptions } from '../runtime/ort.js';

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
  /** ONNX Runtime session options (execution providers, threads, spinning); default from the environment. */
  session?: Partial<SessionOptions>;
  /**
   * A PEFT LoRA adapter (folder or hub id), merged into the fp32 weights at load: exact, and no
   * extra compute per token (see src/model/adapter.ts).
   */
  adapter?: string;
}

/** A PEFT adapter folder: `dirOrId` itself, or its hub snapshot (adapter files only). */
export async function resolveAdapter(dirOrId: string, opts: ResolveOptions = {}): Promise<string> {
  if (existsSync(dirOrId)) {
    if (!statSync(dirOrId).isDirectory()) throw new EmlensError(`adapter ${dirOrId} is a file, not a PEFT adapter folder`);
    return dirOrId;
  }
  if (!isRepoId(dirOrId)) throw new EmlensError(`adapter ${dirOrId}: no such folder, and not a Hugging Face id (org/name)`);
  const files = [ADAPTER_CONFIG, ADAPTER_WEIGHTS];
  return resolveModel(dirOrId, { ...opts, allowPatterns: files, requiredFiles: files });
}

/** Resolves and validates an adapter against a model (headers only). */
export async function openAdapter(dirOrId: string, info: ModelInfo, opts: ResolveOptions = {}): Promise<AdapterPlan> {
  const plan = planAdapter(await resolveAdapter(dirOrId, opts), info.spec);
  const nameOrPath = readJson(join(info.dir, 'config.json'))._name_or_path;
  checkBaseModel(plan, [isRepoId(info.source) && !existsSync(info.source) ? info.source : null, typeof nameOrPath === 'string' ? nameOrPath : null]);
  return plan;
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
    /** The adapter merged into the weights, if any (provenance: its folder and tensors). */
    readonly adapter: AdapterPlan | null = null,
  ) {}

  private sha: string | undefined;

  /**
   * sha256 over the files the weights in memory came from: the checkpoint's, plus a merged
   * adapter's weights and config. Provenance and resume keys use it, so a run with an adapter is
   * never taken for one without.
   */
  weightsSha256(): string {
    const files = [...this.plan.index.files];
    if (this.adapter) files.push(this.adapter.weightsFile, join(this.adapter.dir, ADAPTER_CONFIG));
    return (this.sha ??= weightsFingerprint(files));
  }

  static async load(idOrPath: string, opts: LoadOptions = {}): Promise<LoadedModel> {
    const info = await openModel(idOrPath, opts);
    // The adapter is checked before a byte of weights is read, so a lying one fails fast.
    const adapter = opts.adapter !== undefined ? await openAdapter(opts.adapter, info, opts) : null;
    const weights = loadWeights(info.plan, opts.onLoad);
    if (adapter) mergeAdapter(weights, adapter);
    return new LoadedModel(info.source, info.dir, info.spec, info.plan, info.tokenizer, new Engine(info.spec, weights, opts.session), adapter);
  }
}
