/**
 * PEFT LoRA adapters as `PeftModel.save_pretrained` writes them: `adapter_config.json` and
 * `adapter_model.safetensors` with tensors `base_model.model.<module>.lora_A.weight` [r, in] and
 * `.lora_B.weight` [out, r], <module> the projection's name in the transformers model
 * (`model.layers.{i}.self_attn.q_proj`, ...; Gemma 3 multimodal: `language_model.model.layers...`
 * or `model.language_model.layers...`).
 *
 * The adapter is merged into the fp32 weights when the model loads, W ← W + s·B·A with
 * s = lora_alpha / r (rsLoRA: lora_alpha / √r), per module r and alpha from rank_pattern /
 * alpha_pattern. Merging is exact (the product is summed in float64 and rounded once) and costs
 * nothing per token, and every hook, intervention and graph variant then sees the adapted model
 * without knowing about adapters.
 *
 * Validation reads headers only and matches PEFT's own rules (check_target_module_exists,
 * get_pattern_key): every tensor must belong to a targeted projection of a layer the model has,
 * with the shapes the model and the config imply; anything PEFT would compute differently from
 * W + s·B·A (DoRA, trained biases, modules_to_save, base-modifying initialisations, ...) is
 * refused with one line naming the file and the field or tensor.
 */
import { existsSync, readFileSync, statSync } from 'node:fs';
import { join } from 'node:path';
import { EmlensError } from '../errors.js';
import { readSafetensorsHeader, readTensorF32, type StTensorInfo } from '../io/safetensors/index.js';
import type { ModelSpec } from './config.js';
import { expectedTensors, type Weights } from './weights.js';

export const ADAPTER_CONFIG = 'adapter_config.json';
export const ADAPTER_WEIGHTS = 'adapter_model.safetensors';

export const LORA_MODULES = ['q_proj', 'k_proj', 'v_proj', 'o_proj', 'gate_proj', 'up_proj', 'down_proj'] as const;
export type LoraModuleName = (typeof LORA_MODULES)[number];
const SUBLAYER: Record<LoraModuleName, 'self_attn' | 'mlp'> = {
  q_proj: 'self_attn',
  k_proj: 'self_attn',
  v_proj: 'self_attn',
  o_proj: 'self_attn',
  gate_proj: 'mlp',
  up_proj: 'mlp',
  down_proj: 'mlp',
};

/** Where PEFT puts the transformers model's own names. */
const PEFT_PREFIX = 'base_model.model.';
/** Text-model prefixes of every family emlens loads (Gemma 3 multimodal has the first two). */
const TEXT_PREFIXES = ['language_model.model.', 'model.language_model.', 'model.'];

export interface LoraConfig {
  file: string;
  r: number;
  alpha: number;
  rslora: boolean;
  /** A list (exact name or `.`-suffix match) or a regex that must match the whole module name. */
  targetModules: string[] | string;
  excludeModules: string[] | string | null;
  layersToTransform: number[] | null;
  layersPattern: string[] | null;
  rankPattern: [string, number][];
  alphaPattern: [string, number][];
  baseModel: string | null;
}

export interface LoraModule {
  /** The projection under emlens's canonical names, e.g. "model.layers.3.mlp.down_proj". */
  target: string;
  /** The module name as PEFT matched it (the tensor name without base_model.model. and .lora_X.weight). */
  key: string;
  layer: number;
  module: LoraModuleName;
  rank: number;
  alpha: number;
  /** alpha / r, or alpha / sqrt(r) with rsLoRA. */
  scale: number;
  A: StTensorInfo;
  B: StTensorInfo;
}

export interface AdapterPlan {
  dir: string;
  config: LoraConfig;
  weightsFile: string;
  /** Sorted by layer, then module order. */
  modules: LoraModule[];
  /** Tensors of another tower of a multimodal model (vision), left out like its weights. */
  skipped: string[];
  metadata: Record<string, string>;
}

type Json = Record<string, unknown>;

const isObj = (v: unknown): v is Json => typeof v === 'object' && v !== null && !Array.isArray(v);
const isStrList = (v: unknown): v is string[] => Array.isArray(v) && v.every((x) => typeof x === 'string');

/** Python's re.fullmatch / re.match(...$) in JS; a bad pattern is the config's fault. */
function regex(src: string, file: string, field: string): RegExp {
  try {
    return new RegExp(src);
  } catch (e) {
    throw new EmlensError(`${file}: "${field}" holds a regular expression JS cannot read (${JSON.stringify(src)}: ${(e as Error).message})`);
  }
}
const fullmatch = (pattern: string, key: string, file: string, field: string) => regex(`^(?:${pattern})$`, file, field).test(key);

function patternMap(cfg: Json, field: string, file: string, int: boolean): [string, number][] {
  const v = cfg[field];
  if (v === undefined || v === null) return [];
  if (!isObj(v)) throw new EmlensError(`${file}: "${field}" must be an object of module pattern -> number, got ${JSON.stringify(v)}`);
  return Object.entries(v).map(([k, x]) => {
    if (typeof x !== 'number' || !Number.isFinite(x) || x <= 0 || (int && !Number.isInteger(x))) {
      throw new EmlensError(`${file}: "${field}" entry ${JSON.stringify(k)} must be a positive ${int ? 'integer' : 'number'}, got ${JSON.stringify(x)}`);
    }
    regex(`^(.*\\.)?(${k})$`, file, field);
    return [k, x];
  });
}

/** Fields whose non-default values make PEFT compute something other than W + s·B·A. */
function refuseUnsupported(cfg: Json, file: string): void {
  const bad = (field: string, why: string) => new EmlensError(`${file}: "${field}" is ${JSON.stringify(cfg[field])}; ${why}`);
  const set = (f: string) => cfg[f] !== undefined && cfg[f] !== null;
  if (cfg.peft_type !== 'LORA') {
    throw new EmlensError(`${file}: "peft_type" is ${JSON.stringify(cfg.peft_type)}; emlens reads LoRA adapters ("LORA") only`);
  }
  if (set('task_type') && cfg.task_type !== 'CAUSAL_LM') throw bad('task_type', 'emlens runs causal language models (CAUSAL_LM)');
  if (cfg.use_dora === true) throw bad('use_dora', 'DoRA rescales the merged weight per column, which emlens does not implement');
  if (set('bias') && cfg.bias !== 'none') throw bad('bias', 'trained biases are not supported (only "none")');
  if (cfg.lora_bias === true) throw bad('lora_bias', 'a bias on lora_B is not supported');
  if (Array.isArray(cfg.modules_to_save) ? cfg.modules_to_save.length > 0 : set('modules_to_save')) {
    throw bad('modules_to_save', 'fully trained module copies are not supported (only LoRA factors)');
  }
  if (set('layer_replication')) throw bad('layer_replication', 'replicated layers are not supported');
  if (Array.isArray(cfg.target_parameters) ? cfg.target_parameters.length > 0 : set('target_parameters')) {
    throw bad('target_parameters', 'LoRA on raw parameters is not supported');
  }
  if (set('trainable_token_indices')) throw bad('trainable_token_indices', 'trained token embeddings are not supported');
  if (set('alora_invocation_tokens')) throw bad('alora_invocation_tokens', 'activated LoRA (applied from an invocation sequence on) is not a weight merge');
  if (cfg.use_qalora === true) throw bad('use_qalora', 'QALoRA is not supported');
  if (set('arrow_config')) throw bad('arrow_config', 'Arrow routing is not supported');
  if (set('loftq_config') && isObj(cfg.loftq_config) && Object.keys(cfg.loftq_config).length > 0) {
    throw bad('loftq_config', 'LoftQ adapters belong to a quantised copy of the base weights');
  }
  // These initialisations subtract B·A from the base weights, so the adapter belongs to that
  // residual model, unless it was converted at save time (PEFT then writes init_lora_weights: true).
  const init = cfg.init_lora_weights;
  if (typeof init === 'string' && /^(pissa|olora|corda|loftq)/.test(init)) {
    throw bad('init_lora_weights', 'this initialisation modifies the base weights; save the adapter converted to plain LoRA (path_initial_model_for_weight_conversion)');
  }
}

/** Reads and validates `dir/adapter_config.json`. */
export function readLoraConfig(dir: string): LoraConfig {
  const file = join(dir, ADAPTER_CONFIG);
  if (!existsSync(file)) throw new EmlensError(`${dir}: no ${ADAPTER_CONFIG} (not a PEFT adapter folder)`);
  let cfg: unknown;
  try {
    cfg = JSON.parse(readFileSync(file, 'utf8'));
  } catch (e) {
    throw new EmlensError(`${file}: not valid JSON (${(e as Error).message})`);
  }
  if (!isObj(cfg)) throw new EmlensError(`${file}: must hold a JSON object`);
  refuseUnsupported(cfg, file);
  const posInt = (f: string) => {
    const v = cfg[f];
    if (typeof v !== 'number' || !Number.isInteger(v) || v <= 0) throw new EmlensError(`${file}: "${f}" must be a positive integer, got ${JSON.stringify(v)}`);
    return v;
  };
  const r = posInt('r');
  const alpha = cfg.lora_alpha;
  if (typeof alpha !== 'number' || !Number.isFinite(alpha) || alpha <= 0) throw new EmlensError(`${file}: "lora_alpha" must be a positive number, got ${JSON.stringify(alpha)}`);
  const bool = (f: string) => {
    const v = cfg[f] ?? false;
    if (typeof v !== 'boolean') throw new EmlensError(`${file}: "${f}" must be true or false, got ${JSON.stringify(v)}`);
    return v;
  };
  const rslora = bool('use_rslora');
  // fan_in_fan_out describes Conv1D base layers (GPT-2); every projection here is nn.Linear, for
  // which PEFT resets it to false and merges B·A as is, so either value means the same merge.
  bool('fan_in_fan_out');

  const tm = cfg.target_modules;
  let targetModules: string[] | string;
  if (tm === 'all-linear') targetModules = [...LORA_MODULES];
  else if (typeof tm === 'string') targetModules = (regex(`^(?:${tm})$`, file, 'target_modules'), tm);
  else if (isStrList(tm) && tm.length > 0) targetModules = tm;
  else throw new EmlensError(`${file}: "target_modules" must be a non-empty list of module names or a regex string, got ${JSON.stringify(tm)}`);

  const ex = cfg.exclude_modules ?? null;
  if (ex !== null && typeof ex !== 'string' && !isStrList(ex)) throw new EmlensError(`${file}: "exclude_modules" must be a list of names or a regex string, got ${JSON.stringify(ex)}`);
  if (typeof ex === 'string') regex(ex, file, 'exclude_modules');

  let layersToTransform: number[] | null = null;
  const lt = cfg.layers_to_transform;
  if (lt !== undefined && lt !== null && !(Array.isArray(lt) && lt.length === 0)) {
    const list = typeof lt === 'number' ? [lt] : lt;
    if (!Array.isArray(list) || !list.every((x) => typeof x === 'number' && Number.isInteger(x) && x >= 0)) {
      throw new EmlensError(`${file}: "layers_to_transform" must be a layer number or a list of them, got ${JSON.stringify(lt)}`);
    }
    if (typeof targetModules === 'string') throw new EmlensError(`${file}: "layers_to_transform" needs "target_modules" as a list (PEFT refuses it with a regex)`);
    layersToTransform = list as number[];
  }
  const lp = cfg.layers_pattern ?? null;
  let layersPattern: string[] | null = null;
  if (lp !== null && !(Array.isArray(lp) && lp.length === 0)) {
    if (typeof lp !== 'string' && !isStrList(lp)) throw new EmlensError(`${file}: "layers_pattern" must be a name or a list of names, got ${JSON.stringify(lp)}`);
    layersPattern = typeof lp === 'string' ? [lp] : lp;
    for (const p of layersPattern) regex(p, file, 'layers_pattern');
  }
  const base = cfg.base_model_name_or_path;
  if (base !== undefined && base !== null && typeof base !== 'string') throw new EmlensError(`${file}: "base_model_name_or_path" must be a string, got ${JSON.stringify(base)}`);

  return {
    file,
    r,
    alpha,
    rslora,
    targetModules,
    excludeModules: ex,
    layersToTransform,
    layersPattern,
    rankPattern: patternMap(cfg, 'rank_pattern', file, true),
    alphaPattern: patternMap(cfg, 'alpha_pattern', file, false),
    baseModel: base ? base : null,
  };
}

/** PEFT's check_target_module_exists for one module name. */
export function isTargeted(c: LoraConfig, key: string): boolean {
  const ex = c.excludeModules;
  if (ex !== null) {
    if (typeof ex === 'string' ? fullmatch(ex, key, c.file, 'exclude_modules') : ex.some((e) => key === e || key.endsWith(`.${e}`))) return false;
  }
  const tm = c.targetModules;
  if (typeof tm === 'string') return fullmatch(tm, key, c.file, 'target_modules');
  if (tm.includes(key)) return true;
  if (!tm.some((t) => key.endsWith(`.${t}`))) return false;
  if (c.layersToTransform === null) return true;
  let m: RegExpExecArray | null = null;
  if (c.layersPattern === null) m = /^.*\.[^.]*\.(\d+)\./.exec(key);
  else for (const p of c.layersPattern) if ((m = new RegExp(`^.*\\.${p}\\.(\\d+)\\.`).exec(key))) break;
  return m !== null && c.layersToTransform.includes(Number(m[1]));
}

/** PEFT's get_pattern_key: the first pattern that matches the end of the module name. */
function patternValue(pattern: [string, number][], key: string, dflt: number): number {
  for (const [p, v] of pattern) if (new RegExp(`^(.*\\.)?(${p})$`).test(key)) return v;
  return dflt;
}

export function loraScale(alpha: number, r: number, rslora: boolean): number {
  return rslora ? alpha / Math.sqrt(r) : alpha / r;
}

interface ParsedName {
  key: string;
  factor: 'A' | 'B';
  /** Null when the module is not a decoder-layer projection of the text model. */
  proj: { layer: number; module: LoraModuleName; text: boolean } | null;
}

function parseTensorName(name: string, file: string, prefixes: readonly string[]): ParsedName {
  const m = /^(.*)\.lora_([AB])\.weight$/.exec(name);
  if (!m || !m[1]!.startsWith(PEFT_PREFIX)) {
    let why = 'not a LoRA factor (base_model.model.<module>.lora_A.weight / lora_B.weight)';
    if (/lora_magnitude_vector/.test(name)) why = 'a DoRA magnitude vector (DoRA is not supported)';
    else if (/\.lora_[AB]\.bias$/.test(name) || /\.bias$/.test(name)) why = 'a bias (trained biases are not supported)';
    else if (/lora_embedding_[AB]/.test(name)) why = 'a LoRA on an embedding (only q/k/v/o/gate/up/down projections are supported)';
    else if (/\.lora_[AB]\.[^.]+\.weight$/.test(name)) why = 'named with an adapter name inside (PEFT saves lora_A.weight without it)';
    else if (/modules_to_save|original_module/.test(name)) why = 'a modules_to_save copy (not supported)';
    throw new EmlensError(`${file}: tensor "${name}" is ${why}`);
  }
  const key = m[1]!.slice(PEFT_PREFIX.length);
  for (const p of prefixes) {
    if (!key.startsWith(p)) continue;
    const pm = /^layers\.(\d+)\.(self_attn|mlp)\.([a-z_]+)$/.exec(key.slice(p.length));
    if (pm && (LORA_MODULES as readonly string[]).includes(pm[3]!) && SUBLAYER[pm[3] as LoraModuleName] === pm[2]) {
      return { key, factor: m[2] as 'A' | 'B', proj: { layer: Number(pm[1]), module: pm[3] as LoraModuleName, text: true } };
    }
  }
  return { key, factor: m[2] as 'A' | 'B', proj: null };
}

const MULTIMODAL_OTHER = /(^|\.)(vision_tower|vision_model|multi_modal_projector|audio_tower)\./;

/**
 * Reads the adapter folder's config and tensor headers and checks every tensor name, pairing and
 * rank. With `spec`, also that each module exists in that model with matching in/out widths, and
 * that every targeted projection of the model has its factors.
 */
export function planAdapter(dir: string, spec?: ModelSpec): AdapterPlan {
  if (!existsSync(dir) || !statSync(dir).isDirectory()) throw new EmlensError(`${dir}: no such adapter folder`);
  const config = readLoraConfig(dir);
  const weightsFile = join(dir, ADAPTER_WEIGHTS);
  if (!existsSync(weightsFile)) {
    const bin = existsSync(join(dir, 'adapter_model.bin')) ? ' (only adapter_model.bin: emlens reads safetensors only)' : '';
    throw new EmlensError(`${dir}: no ${ADAPTER_WEIGHTS}${bin}`);
  }
  const beyond = spec && config.layersToTransform?.find((l) => l >= spec.nLayers);
  if (spec && beyond !== undefined) {
    throw new EmlensError(`${config.file}: "layers_to_transform" names layer ${beyond}, the model has ${spec.nLayers} layers (0..${spec.nLayers - 1})`);
  }
  const header = readSafetensorsHeader(weightsFile);
  const file = weightsFile;
  const multimodal = spec ? spec.weightPrefixes[0] !== 'model.' : true;
  const pairs = new Map<string, { layer: number; module: LoraModuleName; A?: StTensorInfo; B?: StTensorInfo }>();
  const skipped: string[] = [];
  for (const [name, info] of header.tensors) {
    const p = parseTensorName(name, file, spec ? spec.weightPrefixes : TEXT_PREFIXES);
    if (!p.proj) {
      if (multimodal && MULTIMODAL_OTHER.test(p.key)) {
        skipped.push(name);
        continue;
      }
      throw new EmlensError(`${file}: tensor "${name}" adapts "${p.key}", which is not a q/k/v/o/gate/up/down projection of a decoder layer`);
    }
    if (!isTargeted(config, p.key)) {
      throw new EmlensError(`${file}: tensor "${name}" adapts "${p.key}", which ${ADAPTER_CONFIG} does not target (target_modules / layers_to_transform / exclude_modules)`);
    }
    if (spec && p.proj.layer >= spec.nLayers) {
      throw new EmlensError(`${file}: tensor "${name}" is for layer ${p.proj.layer}, the model has ${spec.nLayers} layers (0..${spec.nLayers - 1})`);
    }
    if (!['F32', 'F16', 'BF16'].includes(info.dtype)) throw new EmlensError(`${file}: tensor "${name}" has dtype ${info.dtype}; LoRA factors must be F32, F16 or BF16`);
    let e = pairs.get(p.key);
    if (!e) pairs.set(p.key, (e = { layer: p.proj.layer, module: p.proj.module }));
    if (e[p.factor]) throw new EmlensError(`${file}: "${p.key}" has lora_${p.factor} twice`);
    e[p.factor] = info;
  }
  if (pairs.size === 0) throw new EmlensError(`${file}: holds no LoRA factors`);

  const targets = new Set<string>();
  const expected = spec ? expectedTensors(spec).required : undefined;
  const modules: LoraModule[] = [];
  for (const [key, e] of pairs) {
    if (!e.A || !e.B) throw new EmlensError(`${file}: "${key}" has lora_${e.A ? 'A' : 'B'}.weight but no lora_${e.A ? 'B' : 'A'}.weight`);
    const target = `model.layers.${e.layer}.${SUBLAYER[e.module]}.${e.module}`;
    if (targets.has(target)) throw new EmlensError(`${file}: layer ${e.layer} ${e.module} is adapted twice (as "${key}" and another name)`);
    targets.add(target);
    const rank = patternValue(config.rankPattern, key, config.r);
    const alpha = patternValue(config.alphaPattern, key, config.alpha);
    const [ar, ain] = e.A.shape;
    const [bout, br] = e.B.shape;
    const shapes = `lora_A [${e.A.shape.join(', ')}], lora_B [${e.B.shape.join(', ')}]`;
    if (e.A.shape.length !== 2 || e.B.shape.length !== 2) throw new EmlensError(`${file}: "${key}" has ${shapes}; both must be matrices`);
    if (ar !== rank || br !== rank) {
      throw new EmlensError(`${file}: "${key}" has ${shapes}, but ${ADAPTER_CONFIG} gives it rank ${rank} (r${config.rankPattern.length ? ' / rank_pattern' : ''})`);
    }
    if (expected) {
      const w = expected.get(`${target}.weight`)!;
      if (ain !== w[1] || bout !== w[0]) {
        throw new EmlensError(`${file}: "${key}" has ${shapes}, but the model's ${e.module} is [${w.join(', ')}] (out, in): expected lora_A [${rank}, ${w[1]}], lora_B [${w[0]}, ${rank}]`);
      }
    }
    modules.push({ target, key, layer: e.layer, module: e.module, rank, alpha, scale: loraScale(alpha, rank, config.rslora), A: e.A, B: e.B });
  }
  if (spec) {
    // PEFT leaves a targeted module that the file omits at its initialisation: not a defined model.
    // Module names are spelled with the text-model prefix the file itself uses.
    const first = modules[0]!.key;
    const prefix = first.slice(0, first.length - `layers.${modules[0]!.layer}.${SUBLAYER[modules[0]!.module]}.${modules[0]!.module}`.length);
    for (let l = 0; l < spec.nLayers; l++) {
      for (const mod of LORA_MODULES) {
        const target = `model.layers.${l}.${SUBLAYER[mod]}.${mod}`;
        if (targets.has(target)) continue;
        const key = `${prefix}layers.${l}.${SUBLAYER[mod]}.${mod}`;
        if (isTargeted(config, key)) throw new EmlensError(`${file}: ${ADAPTER_CONFIG} targets "${key}" but the file has no lora_A/lora_B for it`);
      }
    }
  }
  const order = (m: LoraModule) => m.layer * LORA_MODULES.length + LORA_MODULES.indexOf(m.module);
  modules.sort((a, b) => order(a) - order(b));
  return { dir, config, weightsFile, modules, skipped, metadata: header.metadata };
}

/**
 * Refuses an adapter trained on another base model, where that can be told from names: both the
 * adapter's base_model_name_or_path and the model's hub id (or its config's _name_or_path) are
 * hub ids whose repository names differ. Only the name after the organisation is compared, so a
 * re-upload under another organisation (unsloth/Qwen2.5-7B-Instruct for Qwen/Qwen2.5-7B-Instruct)
 * passes; local paths on either side are not comparable and pass.
 */
export function checkBaseModel(plan: AdapterPlan, modelIds: (string | null | undefined)[]): void {
  const base = plan.config.baseModel;
  const repoName = (s: string) => {
    const m = /^[A-Za-z0-9_.-]+\/([A-Za-z0-9_.-]+)$/.exec(s);
    return m ? m[1]!.toLowerCase().replace(/(-unsloth)?(-bnb-4bit|-bnb-8bit)$/, '') : null;
  };
  if (!base) return;
  const want = repoName(base);
  if (want === null) return;
  for (const id of modelIds) {
    if (!id) continue;
    const have = repoName(id);
    if (have !== null && have !== want) {
      throw new EmlensError(`${plan.config.file}: "base_model_name_or_path" is "${base}", but the model is ${id}`);
    }
  }
}

/** W ← W + s·B·A for every module of the plan, in place in `weights` (float64 sums, one rounding). */
export function mergeAdapter(weights: Weights, plan: AdapterPlan): void {
  for (const m of plan.modules) {
    const name = `${m.target}.weight`;
    const w = weights.get(name);
    if (!w) throw new Error(`merge: weight ${name} missing`);
    const A = readTensorF32(m.A);
    const B = readTensorF32(m.B);
    for (const [t, v] of [['lora_A', A], ['lora_B', B]] as const) {
      if (v.some((x: number) => !Number.isFinite(x))) throw new EmlensError(`${plan.weightsFile}: "${m.key}.${t}.weight" holds non-finite values`);
    }
    const [out, inn] = w.shape as [number, number];
    const r = m.rank;
    const merged = new Float32Array(w.data.length);
    const row = new Float64Array(inn);
    for (let o = 0; o < out; o++) {
      row.fill(0);
      for (let k = 0; k < r; k++) {
        const b = B[o * r + k]!;
        if (b === 0) continue;
        const off = k * inn;
        for (let i = 0; i < inn; i++) row[i]! += b * A[off + i]!;
      }
      const wo = o * inn;
      for (let i = 0; i < inn; i++) merged[wo + i] = w.data[wo + i]! + m.scale * row[i]!;
    }
    weights.set(name, { shape: w.shape, data: merged });
  }
}

/** What `emlens inspect --adapter` adds: the facts of an adapter a researcher checks. */
export function describeAdapter(plan: AdapterPlan): Record<string, string | number | boolean | object> {
  const layers = [...new Set(plan.modules.map((m) => m.layer))].sort((a, b) => a - b);
  const mods = LORA_MODULES.filter((x) => plan.modules.some((m) => m.module === x));
  const ranks = [...new Set(plan.modules.map((m) => m.rank))].sort((a, b) => a - b);
  const scales = [...new Set(plan.modules.map((m) => m.scale))].sort((a, b) => a - b);
  return {
    adapter: plan.dir,
    adapter_base_model: plan.config.baseModel ?? 'unknown',
    adapter_modules: `${plan.modules.length} (${mods.join(', ')})`,
    adapter_layers: layers.join(','),
    adapter_rank: ranks.join(','),
    adapter_scale: scales.join(','),
    adapter_rslora: plan.config.rslora,
  };
}
