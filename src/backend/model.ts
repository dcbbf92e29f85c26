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
import { fileSha256, weightsFingerprint } from '../model/fingerprint.js';
import { planCheckpoint, loadWeights, type CheckpointPlan } from '../model/weights.js';
import { LayerWeightReader } from '../model/layer-weights.js';
import { LayerwiseRunner, type LayerwiseOptions } from '../runtime/layerwise.js';
import { TextTokenizer } from '../model/tokenizer.js';
import { Engine } from '../runtime/engine.js';
import { readTensorF32 } from '../io/safetensors/read.js';
import type { WeightMode } from '../runtime/quantize.js';
import { openWeightStore } from '../runtime/weight-store.js';
import type { SessionOptions } from '../runtime/ort.js';
import { kserveModelOf, RemoteEngine, type BackendOptions, type ModelBackend } from './remote.js';

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
  /** Run on these `emlens serve` processes instead of here (the model id then gives config and tokenizer only). */
  backend?: BackendOptions;
  /**
   * How generation holds the linear layers (`--weights`): fp32 (the default; fp32Decode says
   * where its weights come from), or int8 / int4 (MatMulNBits on block-quantised weights, cached
   * on disk under the weights' fingerprint; see runtime/weight-store.ts).
   */
  weights?: WeightMode;
  /**
   * The engine only generates: when generation runs on a decode store (int8 / int4, or fp32 with
   * fp32Decode 'store'), no fp32 weights are kept in memory beside it, and forward() refuses.
   * Without it the fp32 weights stay for forward too. Also sets fp32Decode's default.
   */
  generateOnly?: boolean;
  /**
   * With --weights fp32, where generation's weights come from (`--fp32-decode`): 'inputs', the
   * fp32 weights in memory fed to every call (ORT packs each matrix again per call), or 'store',
   * initializers in the fp32 decode store (runtime/weight-store.ts: a copy of the weights on disk
   * in the cache under their fingerprint) that each decode session packs once: faster decode,
   * the same logits to float rounding. Default: 'store' with generateOnly (nothing else then
   * holds the weights), 'inputs' otherwise (the store's packed copy would be a second one beside
   * the fp32 weights forward needs). With int8 / int4 it is an error (they always run on a store).
   */
  fp32Decode?: Fp32Decode;
}

/** Where fp32 generation takes its weights from (LoadOptions.fp32Decode). */
export type Fp32Decode = 'inputs' | 'store';
export const FP32_DECODES: readonly Fp32Decode[] = ['inputs', 'store'];

/** Whether generation runs on a decode store, for these options (fp32Decode checked against weights). */
export function decodesOnStore(opts: Pick<LoadOptions, 'weights' | 'generateOnly' | 'fp32Decode'>): boolean {
  const mode = opts.weights ?? 'fp32';
  if (opts.fp32Decode !== undefined && mode !== 'fp32') throw new EmlensError(`--fp32-decode ${opts.fp32Decode} applies to --weights fp32 only; --weights ${mode} always runs on its quantised store`);
  return mode !== 'fp32' || (opts.fp32Decode ?? (opts.generateOnly ? 'store' : 'inputs')) === 'store';
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

/** The checkpoint's tensor shapes by canonical name. */
function shapesOf(plan: CheckpointPlan): Map<string, number[]> {
  return new Map([...plan.tensors].map(([k, t]) => [k, t.shape]));
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
    private readonly checkpoint: CheckpointPlan | null,
    readonly tokenizer: TextTokenizer | null,
    private readonly local: Engine | null,
    /** The adapter merged into the weights, if any (provenance: its folder and tensors). */
    readonly adapter: AdapterPlan | null = null,
    /** The servers of `--backend`, when the model runs there instead of here. */
    readonly remote: { engine: RemoteEngine; weightsSha256: string } | null = null,
    /**
     * Opened memory-bounded (openBounded): weights stay on disk, read a layer at a time by the
     * runner (runtime/layerwise.ts), which keeps its compiled graphs across calls as Engine does.
     */
    readonly bounded: { reader: LayerWeightReader; runner: LayerwiseRunner } | null = null,
  ) {}

  private sha: string | undefined;

  /** The local runtime; a model served by `--backend` has none here. */
  get engine(): Engine {
    if (this.bounded) throw new EmlensError(`${this.source} was opened memory-bounded (weights read a layer at a time); this needs the whole model in memory (LoadedModel.load)`);
    if (!this.local) throw new EmlensError(`${this.source} runs on --backend ${this.remote!.engine.o.urls.join(',')}; this command needs the weights here (run it without --backend)`);
    return this.local;
  }

  get plan(): CheckpointPlan {
    if (!this.checkpoint) throw new EmlensError(`${this.source} runs on --backend; its checkpoint is not here`);
    return this.checkpoint;
  }

  /**
   * How generation runs, for provenance and resume keys: {} on the fp32 inputs (so runs from
   * before --weights and --fp32-decode still resume) and on --backend (the server's weights);
   * { weights } when quantised; { fp32_decode: 'store' } on the fp32 store, whose logits differ
   * from the inputs' by float rounding (packed Gemms sum in another order), so samples may too.
   */
  decodeProvenance(): { weights?: WeightMode; fp32_decode?: 'store' } {
    if (!this.local) return {};
    if (this.local.weightMode !== 'fp32') return { weights: this.local.weightMode };
    return this.local.decodeSource === 'store' ? { fp32_decode: 'store' } : {};
  }

  /** Forward and generate, here or on the servers of `--backend`. */
  get backend(): ModelBackend {
    return this.remote?.engine ?? this.engine;
  }

  /**
   * sha256 over the files the weights in memory came from: the checkpoint's, plus a merged
   * adapter's weights and config (a served model: the server's, which covers its adapter).
   * Provenance and resume keys use it, so a run with an adapter is never taken for one without.
   */
  weightsSha256(): string {
    if (this.remote) return this.remote.weightsSha256;
    const files = [...this.plan.index.files];
    if (this.adapter) files.push(this.adapter.weightsFile, join(this.adapter.dir, ADAPTER_CONFIG));
    return (this.sha ??= weightsFingerprint(files));
  }

  static async load(idOrPath: string, opts: LoadOptions = {}): Promise<LoadedModel> {
    if (opts.backend) return LoadedModel.connect(idOrPath, opts);
    const info = await openModel(idOrPath, opts);
    // The adapter is checked before a byte of weights is read, so a lying one fails fast.
    const adapter = opts.adapter !== undefined ? await openAdapter(opts.adapter, info, opts) : null;
    const mode = opts.weights ?? 'fp32';
    const store = decodesOnStore(opts);
    if (!store || adapter || !opts.generateOnly) {
      const weights = loadWeights(info.plan, opts.onLoad);
      if (adapter) mergeAdapter(weights, adapter);
      const model = new LoadedModel(info.source, info.dir, info.spec, info.plan, info.tokenizer, null, adapter);
      const decode = store ? openWeightStore({ spec: info.spec, shapes: shapesOf(info.plan), read: (n) => weights.get(n)!.data }, mode, model.weightsSha256()) : null;
      // An engine that only generates drops the fp32 copy once the store holds the weights.
      const engine = decode && opts.generateOnly ? new Engine(info.spec, new Map(), opts.session, decode) : new Engine(info.spec, weights, opts.session, decode);
      return model.withEngine(engine);
    }
    // Stored straight from the checkpoint, a tensor at a time: memory stays near one tensor
    // beside the store (quantised, or fp32 for an fp32 store).
    const model = new LoadedModel(info.source, info.dir, info.spec, info.plan, info.tokenizer, null, null);
    const plan = info.plan;
    const decode = openWeightStore({ spec: info.spec, shapes: shapesOf(plan), read: (n) => readTensorF32(plan.tensors.get(n)!, { finite: true }) }, mode, model.weightsSha256(), opts.onLoad);
    return model.withEngine(new Engine(info.spec, new Map(), opts.session, decode));
  }

  /** This model with `engine` as its local runtime. */
  private withEngine(engine: Engine): LoadedModel {
    const m = new LoadedModel(this.source, this.dir, this.spec, this.checkpoint, this.tokenizer, engine, this.adapter, this.remote);
    m.sha = this.sha;
    return m;
  }

  /**
   * A model whose weights stay in the checkpoint files until a layer-by-layer forward reads them
   * (within `options.maxMemory`; see runtime/layerwise.ts): config, tokenizer, tensor headers and
   * the adapter are checked here, no weight data is read. Extraction runs on it.
   */
  static async openBounded(idOrPath: string, opts: LoadOptions & LayerwiseOptions): Promise<LoadedModel> {
    if (opts.backend) throw new EmlensError('--max-memory and --backend both given; a --backend server holds the model in its own memory');
    const info = await openModel(idOrPath, opts);
    const adapter = opts.adapter !== undefined ? await openAdapter(opts.adapter, info, opts) : null;
    const options: LayerwiseOptions = { maxMemory: opts.maxMemory, session: opts.session, layersPerGroup: opts.layersPerGroup, spool: opts.spool };
    const reader = new LayerWeightReader(info.spec, info.plan, adapter);
    return new LoadedModel(info.source, info.dir, info.spec, info.plan, info.tokenizer, null, adapter, null, { reader, runner: new LayerwiseRunner(info.spec, reader, options) });
  }

  /**
   * A model that runs on `emlens serve` processes: config and tokenizer are read here (no
   * weights), and every server must serve exactly this config and tokenizer, and the same weights.
   */
  private static async connect(idOrPath: string, opts: LoadOptions): Promise<LoadedModel> {
    const b = opts.backend!;
    if (opts.adapter !== undefined) throw new EmlensError('--adapter and --backend both given; start the server with the adapter (emlens serve MODEL --adapter A)');
    const dir = existsSync(idOrPath) ? idOrPath : await resolveModel(idOrPath, { ...opts, allowPatterns: ['*.json', '*.jinja'], requiredFiles: ['config.json'] });
    const spec = loadSpec(dir);
    const tokenizer = existsSync(join(dir, 'tokenizer.json')) ? await TextTokenizer.load(dir) : null;
    const local = { config: fileSha256(join(dir, 'config.json')), tokenizer: fileSha256(join(dir, 'tokenizer.json')) };
    let weights: string | null = null;
    let maxRows = Infinity;
    for (const url of b.urls) {
      if (kserveModelOf(url)) {
        // A KServe model (Triton serving an export, or emlens serve's /v2): its shape, and its
        // weights' fingerprint when it states one.
        const k = await RemoteEngine.kserveInfo(url, b.token);
        if (k.layers !== spec.nLayers || k.d_model !== spec.dModel || k.vocab !== spec.vocab) throw new EmlensError(`--backend ${url} serves a model of ${k.layers} layers, width ${k.d_model}, vocabulary ${k.vocab}; ${join(dir, 'config.json')} says ${spec.nLayers}, ${spec.dModel}, ${spec.vocab}`);
        if (k.weights_sha256 !== null && weights !== null && k.weights_sha256 !== weights) throw new EmlensError(`--backend: ${url} serves other weights than ${b.urls[0]} (sha256 ${k.weights_sha256.slice(0, 12)} vs ${weights.slice(0, 12)})`);
        weights ??= k.weights_sha256;
        continue;
      }
      const info = await RemoteEngine.info(url, b.token);
      if (info.config_sha256 !== local.config) throw new EmlensError(`--backend ${url} serves "${info.name}", whose config.json differs from ${join(dir, 'config.json')} (sha256 ${String(info.config_sha256).slice(0, 12)} vs ${String(local.config).slice(0, 12)})`);
      if (info.tokenizer_sha256 !== local.tokenizer) throw new EmlensError(`--backend ${url} serves "${info.name}", whose tokenizer.json differs from ${dir}'s`);
      if (weights !== null && info.weights_sha256 !== weights) throw new EmlensError(`--backend: ${url} serves other weights than ${b.urls[0]} (sha256 ${info.weights_sha256.slice(0, 12)} vs ${weights.slice(0, 12)})`);
      weights = info.weights_sha256;
      maxRows = Math.min(maxRows, info.max_batch ?? 64);
    }
    if (weights === null) throw new EmlensError(`--backend ${b.urls.join(',')}: no server states the weights' fingerprint, so results could not name what made them`);
    return new LoadedModel(idOrPath, dir, spec, null, tokenizer, null, null, { engine: new RemoteEngine(spec, { ...b, maxRows: Number.isFinite(maxRows) ? maxRows : b.maxRows }), weightsSha256: weights });
  }
}
