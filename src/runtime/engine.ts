/**
 * Runs a model's forward graphs on ONNX Runtime with hook-point interventions, and generates
 * with a KV cache. Weights are fed as graph inputs from one fp32 copy, so every graph variant
 * (capture sets, steering, ablation, cache or not) shares them; variants compile once and are
 * cached by their shape of interventions, never by the values fed.
 *
 * With decode weights (runtime/weight-store.ts), generation runs instead on graphs whose weights
 * are initializers (external data ORT maps and prepacks once per session, where a weight input is
 * packed again every call): `--weights int8|int4` with the linear layers as MatMulNBits, or fp32
 * (`--fp32-decode store`) with the same Gemms as forward. Hooks and interventions are the same
 * graph code. Each such session holds its
 * own prepacked copy, so at most DECODE_SESSIONS of them live at once (least recently used
 * released first). forward() and the graphs built on it (KL, gradients, training) stay fp32.
 */
import { buildDecoderGraph, IO, type GraphVariant } from '../arch/decoder.js';
import type { Graph } from '../graph/ir.js';
import { emitOnnx } from '../graph/onnx.js';
import { EmlensError } from '../errors.js';
import type { ModelSpec } from '../model/config.js';
import type { Weights } from '../model/tensor-names.js';
import { HOOK_PATTERN, parseHookName } from '../hooks/names.js';
import { orthonormalize } from '../hooks/interventions.js';
import type { Interventions } from '../hooks/interventions.js';
import { attentionMask, cacheMasks, positionIds, type BatchLayout } from './masks.js';
import { KvCache } from './kv-cache.js';
import { invFreq, ropeTables } from './rope.js';
import { createSession, f32, i64, WEB, type OrtSession, type OrtTensor, type SessionOptions } from './ort.js';
import { rng } from './random.js';
import { argmax, sampleProbs, type SamplingOptions } from './sampling.js';
import type { WeightMode } from './quantize.js';

/** The decode graphs' weights: external data in `dir` (see weight-store.ts). */
export interface DecodeWeights {
  mode: WeightMode;
  /** Folder the external data locations are relative to. */
  dir: string;
  /** Graph input name -> its initializer's data in `dir`. */
  external: Map<string, { location: string; offset: number; length: number }>;
  /** How the decode graphs compute the linear layers (unset: fp32 Gemm on initializers). */
  projections: GraphVariant['projections'];
  /** The checkpoint's weight shapes (canonical names). */
  shapes: Map<string, number[]>;
}

/** Decode sessions alive at once (each holds a prepacked copy of the weights). */
export const DECODE_SESSIONS = 2;

export interface ForwardRequest {
  /** Token ids per row; rows of different lengths are left-padded. */
  ids: number[][];
  capture?: string[];
  interventions?: Interventions;
  logits?: 'none' | 'last' | 'all';
  /**
   * Run on the decode weights (int8 / int4: the graphs generate() runs) instead of the fp32
   * ones: what quantisation changes in activations and logits, measured.
   */
  decodeWeights?: boolean;
}

export interface ForwardResult {
  layout: BatchLayout;
  /** hook name -> [B, T, D] in the padded layout (row b's tokens start at layout.pad[b]). */
  captures: Map<string, Float32Array>;
  /** [B, V] for 'last', [B, T, V] for 'all'. */
  logits?: Float32Array;
}

export interface GenerateOptions extends Partial<SamplingOptions> {
  maxNewTokens?: number;
  /** One generator for the batch: rows draw from it in row order, so a row's tokens depend on the batch. */
  seed?: number;
  /**
   * One generator per row instead (row b draws from rng(seeds[b]) only): a row's tokens are then
   * those of a batch of one with that seed, whatever rows it is batched with.
   */
  seeds?: number[];
  interventions?: Interventions;
  /** Stop a row at any of these ids (default: the model's EOS ids). */
  stopIds?: number[];
  /**
   * Called after every step with the tokens so far and the logits [B, V] the step chose from
   * (null when sampling computed none: temperature > 0 without keepLogits or stepLogits);
   * throwing stops generation.
   */
  onStep?: (step: number, tokens: number[][], logits: Float32Array | null) => void;
  /** Hand onStep each step's logits when sampling (temperature > 0) too. */
  stepLogits?: boolean;
  /** Keep each step's next-token logits [B, V] (log-probs, analyses, tests). */
  keepLogits?: boolean;
}

export interface GenerateResult {
  /** Generated ids per row (the stop token included when one ended the row). */
  tokens: number[][];
  finished: boolean[];
  /** Per row: true when the row stopped because prompt + generated reached spec.maxPositions. */
  contextFull: boolean[];
  /** With keepLogits: per step, the logits [B, V] the step's tokens were chosen from. */
  logits?: Float32Array[];
}

export interface Prepared {
  variant: GraphVariant;
  feeds: Record<string, OrtTensor>;
  layout: BatchLayout;
  /** Outputs ORT writes into these tensors instead of new buffers (the rest are returned as usual). */
  into?: Record<string, OrtTensor>;
}

/** A graph built on the decoder (training objective, evaluation): extends it in place. */
export interface GraphExtension {
  /** Identifies the extension in the session cache (with the variant). */
  key: string;
  extend(g: Graph): void;
  /** ORT options its sessions take where the engine's own options leave them unset (e.g. the training objective's arena off). */
  sessionOptions?: Partial<SessionOptions>;
}

export interface CallOptions {
  capture?: string[];
  interventions?: Interventions;
  logits?: 'none' | 'last' | 'all';
  /** Low-rank adapters: projection -> rank (factors fed by the caller). */
  lora?: [string, number][];
}

/**
 * Bad token rows. The engine only knows row numbers; callers that know where a row came from (a
 * flag, a file line) catch this and name it: `${where}: ${e.problem}`.
 */
export class InputRowError extends EmlensError {
  constructor(
    readonly row: number,
    readonly problem: string,
  ) {
    super(`input row ${row}: ${problem}`);
  }
}

export class Engine {
  private sessions = new Map<string, Promise<OrtSession>>();
  private weightTensors = new Map<string, OrtTensor>();
  private readonly weightShapes: Map<string, number[]>;
  private readonly inv: Float32Array;
  private readonly invLocal: Float32Array | null;

  private decodeSessions = new Map<string, { session: Promise<OrtSession>; busy: number }>();
  private decodeCompiled = 0;

  constructor(
    readonly spec: ModelSpec,
    /** fp32 weights for forward(); may be empty when `decode` is given (an engine that only generates). */
    readonly weights: Weights,
    /** ORT session options for every graph variant (default: from the environment). */
    readonly sessionOptions: Partial<SessionOptions> = {},
    /** Weights of the graphs generate() runs; null: the fp32 weight inputs, as forward(). */
    readonly decode: DecodeWeights | null = null,
  ) {
    if (weights.size === 0 && !decode) throw new Error('Engine: no weights');
    this.weightShapes = weights.size ? new Map([...weights].map(([k, w]) => [k, w.shape])) : decode!.shapes;
    for (const [k, w] of weights) this.weightTensors.set(k, f32(w.data, w.shape));
    this.inv = invFreq(spec.rope, spec.headDim);
    this.invLocal = spec.ropeLocal ? invFreq(spec.ropeLocal, spec.headDim) : null;
  }

  /** Compiled graph variants so far (for tests and benchmarks). */
  get compiledVariants(): number {
    return this.sessions.size;
  }

  /** Decode sessions (decode weights) compiled so far, and how many are alive now. */
  get decodeVariants(): { compiled: number; live: number } {
    return { compiled: this.decodeCompiled, live: this.decodeSessions.size };
  }

  /**
   * Releases the forward sessions whose graph extension's key (undefined: the plain forward)
   * `which` picks, and with them their ORT arenas; later calls compile them again.
   */
  async releaseSessions(which: (extKey: string | undefined) => boolean): Promise<void> {
    const gone: Promise<OrtSession>[] = [];
    for (const [key, s] of this.sessions) {
      if (!which((JSON.parse(key) as { ext?: string }).ext)) continue;
      this.sessions.delete(key);
      gone.push(s);
    }
    await Promise.all(gone.map((s) => s.then((x) => x.release())));
  }

  /** Releases the decode sessions (their prepacked weights); later calls compile them again. */
  async releaseDecodeSessions(): Promise<void> {
    const all = [...this.decodeSessions.values()];
    this.decodeSessions.clear();
    await Promise.all(all.map((e) => e.session.then((s) => s.release())));
  }

  /** How generate() holds the weights: fp32, or the decode weights' quantised mode. */
  get weightMode(): WeightMode {
    return this.decode?.mode ?? 'fp32';
  }

  /** Where generate() takes its weights from: the fp32 inputs forward uses, or the decode store. */
  get decodeSource(): 'inputs' | 'store' {
    return this.decode ? 'store' : 'inputs';
  }

  private session(variant: GraphVariant, ext?: GraphExtension): Promise<OrtSession> {
    const key = JSON.stringify({ ...variant, weightShapes: undefined, ext: ext?.key });
    let s = this.sessions.get(key);
    if (!s) {
      if (this.weights.size === 0) {
        const how = this.weightMode === 'fp32' ? '--weights fp32 --fp32-decode store' : `--weights ${this.weightMode}`;
        throw new EmlensError(`this model was loaded for generation only (${how}): activations, losses and training need the fp32 weights in memory (load it without generateOnly)`);
      }
      const graph = buildDecoderGraph(this.spec, variant);
      ext?.extend(graph);
      s = createSession(emitOnnx(graph, `${this.spec.modelType} ${ext?.key ?? 'forward'}`), { ...ext?.sessionOptions, ...this.sessionOptions });
      this.sessions.set(key, s);
    }
    return s;
  }

  /**
   * Runs a prepared call on a decode session (decode weights as initializers). Sessions are
   * kept least recently used first; past DECODE_SESSIONS, idle ones are released.
   */
  private async runDecode(p: Prepared, extra: Record<string, OrtTensor>): Promise<Record<string, OrtTensor>> {
    const d = this.decode!;
    const variant: GraphVariant = { ...p.variant, projections: d.projections };
    const key = JSON.stringify({ ...variant, weightShapes: undefined });
    let entry = this.decodeSessions.get(key);
    if (entry) this.decodeSessions.delete(key);
    else {
      const graph = buildDecoderGraph(this.spec, variant);
      const model = emitOnnx(graph, `${this.spec.modelType} decode ${d.mode}`, { external: d.external });
      entry = { session: createSession(model, this.sessionOptions, d.dir), busy: 0 };
      this.decodeCompiled++;
    }
    this.decodeSessions.set(key, entry);
    for (const [k, e] of this.decodeSessions) {
      if (this.decodeSessions.size <= DECODE_SESSIONS) break;
      if (k === key || e.busy > 0) continue;
      this.decodeSessions.delete(k);
      void e.session.then((s) => s.release()).catch(() => {});
    }
    entry.busy++;
    try {
      const session = await entry.session;
      const feeds: Record<string, OrtTensor> = { ...p.feeds, ...extra };
      const all: Record<string, OrtTensor> = {};
      for (const name of session.inputNames) {
        const t = feeds[name];
        if (!t) throw new Error(`no feed for decode graph input ${name}`);
        all[name] = t;
      }
      return await session.run(all, fetches(session, p.into));
    } finally {
      entry.busy--;
    }
  }

  private checkHook(name: string, what: string): number {
    const h = parseHookName(name);
    if (!h) throw new EmlensError(`${what}: "${name}" is not a hook point (${HOOK_PATTERN})`);
    if (h.layer >= this.spec.nLayers) throw new EmlensError(`${what}: layer ${h.layer} is out of range (model has ${this.spec.nLayers} layers: 0..${this.spec.nLayers - 1})`);
    return h.layer;
  }

  private checkIds(rows: number[][]): void {
    rows.forEach((r, b) => {
      for (const id of r) {
        if (!Number.isInteger(id) || id < 0 || id >= this.spec.vocab) throw new InputRowError(b, `token id ${id} is outside the vocabulary (0..${this.spec.vocab - 1})`);
      }
    });
  }

  /** Builds the variant and the feeds for one call (past = tokens already cached). */
  private prepare(
    rows: BigInt64Array,
    layout: BatchLayout,
    capture: string[],
    iv: Interventions,
    logits: 'none' | 'last' | 'all',
    /** The KV cache's slots (null: no cache); layout.past of them are written. */
    kvCapacity: number | null,
    lora?: [string, number][],
    /** Sampling at this temperature (> 0): the graph also returns the probabilities to draw from. */
    temperature = 0,
    /** With temperature > 0: return the probabilities without the logits. */
    probsOnly = false,
  ): Prepared {
    const D = this.spec.dModel;
    const B = layout.pad.length;
    const T = layout.seq;
    let deepest = -1;
    for (const c of capture) deepest = Math.max(deepest, this.checkHook(c, 'capture'));
    const feeds: Record<string, OrtTensor> = {};

    // Steering: vectors at one hook sum; the mask says which positions receive them.
    const steerSums = new Map<string, Float32Array>();
    let from: number | null = null;
    for (const s of iv.steer ?? []) {
      deepest = Math.max(deepest, this.checkHook(s.hook, 'steer'));
      if (s.vector.length !== D) throw new EmlensError(`steer: vector for ${s.hook} has ${s.vector.length} values, model d_model is ${D}`);
      const fp = s.fromPosition ?? 0;
      if (from !== null && from !== fp) throw new EmlensError('steer: all steering vectors in one call must share fromPosition');
      from = fp;
      let acc = steerSums.get(s.hook);
      if (!acc) steerSums.set(s.hook, (acc = new Float32Array(D)));
      for (let i = 0; i < D; i++) acc[i]! += s.scale * s.vector[i]!;
    }
    for (const [hook, vec] of steerSums) feeds[IO.steer(hook)] = f32(vec, [D]);

    const ablate: [string, number][] = [];
    for (const a of iv.ablate ?? []) {
      deepest = Math.max(deepest, this.checkHook(a.hook, 'ablate'));
      for (const d of a.directions) {
        if (d.length !== D) throw new EmlensError(`ablate: direction for ${a.hook} has ${d.length} values, model d_model is ${D}`);
      }
      if (feeds[IO.ablate(a.hook)]) throw new EmlensError(`ablate: ${a.hook} listed twice; pass all its directions together`);
      const basis = orthonormalize(a.directions, D);
      if (basis.length === 0) throw new EmlensError(`ablate: directions for ${a.hook} are all zero`);
      const R = new Float32Array(basis.length * D);
      basis.forEach((r, i) => R.set(r, i * D));
      feeds[IO.ablate(a.hook)] = f32(R, [basis.length, D]);
      ablate.push([a.hook, basis.length]);
    }

    const variant: GraphVariant = {
      capture: [...new Set(capture)].sort(),
      steer: [...steerSums.keys()].sort(),
      ablate: ablate.sort((x, y) => (x[0] < y[0] ? -1 : 1)),
      kvCache: kvCapacity !== null,
      logits,
      ...(temperature > 0 ? { probs: true, ...(probsOnly ? { probsOnly: true } : {}) } : {}),
      lastLayer: logits === 'none' ? Math.max(deepest, 0) : undefined,
      weightShapes: this.weightShapes,
      lora,
    };

    if (temperature > 0) feeds[IO.invTemperature] = f32(new Float32Array([1 / temperature]), [1]);
    feeds[IO.ids] = i64(rows, [B, T]);
    const pos = positionIds(layout);
    const { cos, sin } = ropeTables(this.inv, pos);
    feeds[IO.cos] = f32(cos, [B, T, this.spec.headDim]);
    feeds[IO.sin] = f32(sin, [B, T, this.spec.headDim]);
    if (this.invLocal) {
      const t = ropeTables(this.invLocal, pos);
      feeds[IO.cosLocal] = f32(t.cos, [B, T, this.spec.headDim]);
      feeds[IO.sinLocal] = f32(t.sin, [B, T, this.spec.headDim]);
    }
    if (kvCapacity === null) {
      const S = layout.past + T;
      feeds[IO.mask] = f32(attentionMask(layout, null), [B, 1, 1, T, S]);
      if (this.spec.slidingWindow !== null) feeds[IO.maskLocal] = f32(attentionMask(layout, this.spec.slidingWindow), [B, 1, 1, T, S]);
    } else {
      const C = kvCapacity;
      const m = cacheMasks(layout, null, C);
      feeds[IO.mask] = f32(m.fresh, [B, 1, 1, T, T]);
      feeds[IO.maskCache] = f32(m.cache, [B, 1, 1, T, C]);
      if (this.spec.slidingWindow !== null) {
        const w = cacheMasks(layout, this.spec.slidingWindow, C);
        feeds[IO.maskLocal] = f32(w.fresh, [B, 1, 1, T, T]);
        feeds[IO.maskCacheLocal] = f32(w.cache, [B, 1, 1, T, C]);
      }
    }
    if (steerSums.size) {
      const m = new Float32Array(B * T);
      for (let b = 0; b < B; b++) {
        for (let t = 0; t < T; t++) {
          const abs = layout.past + t;
          m[b * T + t] = abs >= layout.pad[b]! && pos[b * T + t]! >= from! ? 1 : 0;
        }
      }
      feeds[IO.steerMask] = f32(m, [B * T, 1]);
    }
    return { variant, feeds, layout };
  }

  /** Left-pads rows and builds the graph variant and feeds for one call. */
  prepareCall(ids: number[][], o: CallOptions = {}): Prepared {
    this.checkIds(ids);
    const { rows, layout } = leftPad(ids, 0);
    return this.prepare(rows, layout, o.capture ?? [], o.interventions ?? {}, o.logits ?? 'none', null, o.lora);
  }

  /** Runs a prepared call, optionally on the decoder graph extended by `ext`, with extra feeds. */
  async run(p: Prepared, extra: Record<string, OrtTensor> = {}, ext?: GraphExtension): Promise<Record<string, OrtTensor>> {
    const session = await this.session(p.variant, ext);
    const feeds: Record<string, OrtTensor> = { ...p.feeds, ...extra };
    const all: Record<string, OrtTensor> = {};
    for (const name of session.inputNames) {
      const t = feeds[name] ?? this.weightTensors.get(name);
      if (!t) throw new Error(`no feed for graph input ${name}`);
      all[name] = t;
    }
    return session.run(all, fetches(session, p.into));
  }

  async forward(req: ForwardRequest): Promise<ForwardResult> {
    this.checkIds(req.ids);
    const { rows, layout } = leftPad(req.ids, 0);
    const logits = req.logits ?? 'none';
    const capture = req.capture ?? [];
    if (logits === 'none' && capture.length === 0) throw new EmlensError('forward: nothing requested (no captures, no logits)');
    const prep = this.prepare(rows, layout, capture, req.interventions ?? {}, logits, null);
    if (req.decodeWeights && !this.decode) throw new EmlensError('forward: decodeWeights asked, but this engine has no decode weights (--weights int8|int4, or --fp32-decode store)');
    const out = req.decodeWeights ? await this.runDecode(prep, {}) : await this.run(prep);
    const captures = new Map<string, Float32Array>();
    for (const c of prep.variant.capture) captures.set(c, out[c]!.data as Float32Array);
    return { layout, captures, logits: logits === 'none' ? undefined : (out[IO.logits]!.data as Float32Array) };
  }

  async generate(prompts: number[][], opts: GenerateOptions = {}): Promise<GenerateResult> {
    const spec = this.spec;
    const maxNew = opts.maxNewTokens ?? 64;
    const sampling: SamplingOptions = { temperature: opts.temperature ?? 0, topP: opts.topP ?? 1 };
    if (opts.seeds && opts.seed !== undefined) throw new EmlensError('generate: pass seed or seeds, not both');
    if (opts.seeds && opts.seeds.length !== prompts.length) throw new EmlensError(`generate: ${opts.seeds.length} seeds for ${prompts.length} rows`);
    const shared = rng(opts.seed ?? 0);
    const randoms = opts.seeds ? opts.seeds.map((s) => rng(s)) : prompts.map(() => shared);
    const stop = new Set(opts.stopIds ?? spec.eosIds);
    const iv = opts.interventions ?? {};
    const B = prompts.length;
    this.checkIds(prompts);
    // Prompt + generated tokens stay within the positions the model was built for (as
    // transformers' max_length); a prompt that alone fills them leaves no room.
    const M = spec.maxPositions;
    prompts.forEach((p, b) => {
      if (maxNew > 0 && p.length >= M) throw new InputRowError(b, `the prompt is ${p.length} tokens; the model's context (max_position_embeddings) is ${M}, which leaves no room to generate`);
    });
    const { rows, layout } = leftPad(prompts, 0);
    // A prompt given several times (an eval's samples of one question) is prefilled once and its
    // cache copied to each of its rows: row b reads prefill row `prefillRow[b]`.
    const distinct = new Map<string, number>();
    const unique: number[][] = [];
    const prefillRow = prompts.map((p) => {
      const k = p.join(',');
      let u = distinct.get(k);
      if (u === undefined) distinct.set(k, (u = unique.push(p) - 1));
      return u;
    });
    const U = unique.length;
    const prefill = U < B ? leftPad(unique, 0) : { rows, layout };
    const tokens: number[][] = prompts.map(() => []);
    const finished = prompts.map(() => false);
    const contextFull = prompts.map(() => false);
    const V = spec.vocab;
    const cache = new KvCache(spec.nLayers, B, spec.nKvHeads, spec.headDim);
    let step = 0;
    const kept: Float32Array[] = [];
    let input = prefill.rows;
    let cur: BatchLayout = prefill.layout;
    const done = (b: number) => finished[b] || contextFull[b];
    const sampled = sampling.temperature > 0;
    // Sampling reads the probabilities alone; the logits are computed only for whoever reads them.
    const wantLogits = !sampled || !!opts.keepLogits || !!opts.stepLogits;
    // In Node the probabilities land in one buffer reused every step (the first step's rows are U);
    // onnxruntime-web returns its own.
    const probsBuf = sampled && !WEB ? new Float32Array(B * V) : null;
    while (step < maxNew && !prompts.every((_, b) => done(b))) {
      const first = step === 0 && U < B;
      const fed = first ? new KvCache(spec.nLayers, U, spec.nKvHeads, spec.headDim) : cache;
      const prep = this.prepare(input, cur, [], iv, 'last', fed.capacity, undefined, sampling.temperature, !wantLogits);
      const rowsNow = first ? U : B;
      if (probsBuf) prep.into = { [IO.probs]: f32(probsBuf.subarray(0, rowsNow * V), [rowsNow, V]) };
      const out = this.decode ? await this.runDecode(prep, fed.feeds()) : await this.run(prep, fed.feeds());
      let logits = wantLogits ? (out[IO.logits]!.data as Float32Array) : null;
      const probs = sampled ? (out[IO.probs]!.data as Float32Array) : null;
      const mass = sampled ? (out[IO.probsSum]!.data as Float32Array) : null;
      // The prefill's row of each batch row (after it, row b is row b).
      const row = (b: number) => (first ? prefillRow[b]! : b);
      const next = new BigInt64Array(B);
      for (let b = 0; b < B; b++) {
        if (done(b)) {
          next[b] = BigInt(tokens[b]![tokens[b]!.length - 1] ?? 0);
          continue;
        }
        const t = probs ? sampleProbs(probs, row(b) * V, V, sampling.topP, randoms[b]!, mass![row(b)]!) : argmax(logits!, row(b) * V, V);
        tokens[b]!.push(t);
        next[b] = BigInt(t);
        if (stop.has(t)) finished[b] = true;
        else if (prompts[b]!.length + tokens[b]!.length >= M) contextFull[b] = true;
      }
      if (logits && first && (opts.keepLogits || opts.onStep)) {
        const all = new Float32Array(B * V);
        for (let b = 0; b < B; b++) all.set(logits.subarray(row(b) * V, (row(b) + 1) * V), b * V);
        logits = all;
      }
      if (opts.keepLogits) kept.push(logits!);
      step++;
      opts.onStep?.(step, tokens, logits);
      cache.append(out, cur.seq, first ? prefillRow : undefined);
      cur = { pad: layout.pad, past: cur.past + cur.seq, seq: 1 };
      input = next;
    }
    return { tokens, finished, contextFull, logits: opts.keepLogits ? kept : undefined };
  }
}

/**
 * What session.run fetches: every output, those in `into` written into the caller's tensors (ORT
 * fills a preallocated output in place; others come back in new buffers). Undefined: all, as usual.
 */
function fetches(session: OrtSession, into?: Record<string, OrtTensor>): Record<string, OrtTensor | null> | undefined {
  if (!into) return undefined;
  const f: Record<string, OrtTensor | null> = {};
  for (const name of session.outputNames) f[name] = into[name] ?? null;
  return f;
}

/**
 * Left-pads rows to one length; pad positions are masked out, so the pad id is arbitrary: 0, an
 * id every embedding table has (config.json's bos_token_id need not be in range).
 */
export function leftPad(ids: number[][], padId: number): { rows: BigInt64Array; layout: BatchLayout } {
  if (ids.length === 0) throw new EmlensError('no input rows');
  const T = Math.max(...ids.map((r) => r.length));
  const empty = ids.findIndex((r) => r.length === 0);
  if (empty >= 0) throw new InputRowError(empty, 'has no tokens');
  const rows = new BigInt64Array(ids.length * T).fill(BigInt(padId));
  const pad: number[] = [];
  ids.forEach((r, b) => {
    const p = T - r.length;
    pad.push(p);
    for (let t = 0; t < r.length; t++) rows[b * T + p + t] = BigInt(r[t]!);
  });
  return { rows, layout: { pad, past: 0, seq: T } };
}
