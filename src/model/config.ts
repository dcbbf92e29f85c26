/**
 * config.json -> ModelSpec: everything the graph builder needs, with each family's quirks resolved
 * here once (defaults, sliding layers, rope variants), so arch/ reads flags, not model types.
 */
import { readFileSync, existsSync } from 'node:fs';
import { join } from 'node:path';
import { EmlensError } from '../errors.js';

export type Family = 'llama' | 'mistral' | 'qwen2' | 'qwen3' | 'gemma2' | 'gemma3';
export const FAMILIES: readonly string[] = ['llama', 'mistral', 'qwen2', 'qwen3', 'gemma2', 'gemma3_text', 'gemma3'];

export type RopeScaling =
  | { type: 'default' }
  | { type: 'linear'; factor: number }
  | { type: 'llama3'; factor: number; lowFreqFactor: number; highFreqFactor: number; originalMaxPositions: number };

export interface RopeSpec {
  theta: number;
  scaling: RopeScaling;
}

export interface ModelSpec {
  family: Family;
  modelType: string;
  nLayers: number;
  dModel: number;
  nHeads: number;
  nKvHeads: number;
  headDim: number;
  ffn: number;
  vocab: number;
  rmsEps: number;
  act: 'silu' | 'gelu_tanh';
  /** Gemma's RMSNorm multiplies by (1 + w). */
  normPlusOne: boolean;
  /** Gemma scales embeddings by sqrt(d_model). */
  embedScale: number | null;
  /** Gemma's pre/post sandwich norms around attention and MLP. */
  sandwichNorms: boolean;
  /** RMSNorm on q and k over head_dim (qwen3, gemma3). */
  qkNorm: boolean;
  attnScale: number;
  attnSoftcap: number | null;
  finalSoftcap: number | null;
  /** Per layer: attends to the whole prefix, or to the last `slidingWindow` keys. */
  layerTypes: ('full' | 'sliding')[];
  slidingWindow: number | null;
  rope: RopeSpec;
  /** Rope for sliding layers where it differs (gemma3's rope_local_base_freq). */
  ropeLocal: RopeSpec | null;
  tiedEmbeddings: boolean;
  bosId: number | null;
  eosIds: number[];
  maxPositions: number;
  torchDtype: string;
  /** Prefix of the text model's tensors in the file (gemma3 multimodal wraps them). */
  weightPrefixes: string[];
}

type Json = Record<string, unknown>;

/** `cfg[key]` as a finite number; `within` names the object cfg is in (e.g. "rope_scaling"). */
function num(cfg: Json, key: string, file: string, fallback?: number, within?: string): number {
  const v = cfg[key];
  const name = within ? `${within}.${key}` : key;
  if (v === undefined || v === null) {
    if (fallback !== undefined) return fallback;
    throw new EmlensError(`${file}: missing "${name}"`);
  }
  if (typeof v !== 'number' || !Number.isFinite(v)) throw new EmlensError(`${file}: "${name}" must be a number, got ${JSON.stringify(v)}`);
  return v;
}

function posInt(cfg: Json, key: string, file: string, fallback?: number, within?: string): number {
  const v = num(cfg, key, file, fallback, within);
  if (!Number.isInteger(v) || v <= 0) throw new EmlensError(`${file}: "${within ? `${within}.${key}` : key}" must be a positive integer, got ${v}`);
  return v;
}

/** A number > 0 (epsilons, rope bases and factors: 0 or less divides by zero or flips signs). */
function positive(cfg: Json, key: string, file: string, fallback?: number, within?: string): number {
  const v = num(cfg, key, file, fallback, within);
  if (!(v > 0)) throw new EmlensError(`${file}: "${within ? `${within}.${key}` : key}" must be > 0, got ${v}`);
  return v;
}

/**
 * A token id or list of them (eos_token_id), each an integer >= 0; null = none. Not checked
 * against vocab_size: an id past it only never occurs (configs shrunk for tests keep theirs).
 */
function tokenIds(v: unknown, key: string, file: string): number[] {
  if (v === undefined || v === null) return [];
  const list = Array.isArray(v) ? v : [v];
  for (const x of list) {
    if (typeof x !== 'number' || !Number.isInteger(x) || x < 0) {
      throw new EmlensError(`${file}: "${key}" must be a token id (an integer >= 0) or a list of them, got ${JSON.stringify(v)}`);
    }
  }
  return [...new Set(list as number[])];
}

function parseRopeScaling(raw: unknown, file: string, key = 'rope_scaling'): RopeScaling {
  if (raw === undefined || raw === null) return { type: 'default' };
  if (typeof raw !== 'object' || Array.isArray(raw)) throw new EmlensError(`${file}: "${key}" must be an object or null, got ${JSON.stringify(raw)}`);
  const r = raw as Json;
  const type = r.rope_type ?? r.type;
  switch (type) {
    case undefined:
    case 'default':
      return { type: 'default' };
    case 'linear':
      return { type: 'linear', factor: positive(r, 'factor', file, undefined, key) };
    case 'llama3': {
      const s: RopeScaling = {
        type: 'llama3',
        factor: positive(r, 'factor', file, undefined, key),
        lowFreqFactor: positive(r, 'low_freq_factor', file, undefined, key),
        highFreqFactor: positive(r, 'high_freq_factor', file, undefined, key),
        originalMaxPositions: posInt(r, 'original_max_position_embeddings', file, undefined, key),
      };
      // The smoothing between the two bands divides by (high - low).
      if (s.highFreqFactor <= s.lowFreqFactor) throw new EmlensError(`${file}: "${key}.high_freq_factor" (${s.highFreqFactor}) must be greater than "${key}.low_freq_factor" (${s.lowFreqFactor})`);
      return s;
    }
    default:
      throw new EmlensError(`${file}: ${key} type ${JSON.stringify(type)} is not supported (supported: default, linear, llama3)`);
  }
}

/**
 * Rope for one layer type. transformers v5 writes `rope_parameters` (flat, or keyed by layer type
 * for gemma3); earlier versions `rope_theta` + `rope_scaling`, with gemma3's sliding layers on
 * `rope_local_base_freq` and unscaled.
 */
function ropeFor(text: Json, family: Family, layerType: 'full_attention' | 'sliding_attention', file: string): RopeSpec {
  const local = family === 'gemma3' && layerType === 'sliding_attention';
  const defaultTheta = family === 'gemma3' && !local ? 1_000_000 : 10000;
  const rp = text.rope_parameters as Json | undefined | null;
  if (rp !== undefined && rp !== null) {
    if (typeof rp !== 'object' || Array.isArray(rp)) throw new EmlensError(`${file}: "rope_parameters" must be an object, got ${JSON.stringify(rp)}`);
    const perType = rp.full_attention !== undefined || rp.sliding_attention !== undefined;
    const p = (perType ? rp[layerType] : rp) as Json | undefined;
    if (!p) throw new EmlensError(`${file}: rope_parameters has no entry for ${layerType}`);
    const key = perType ? `rope_parameters.${layerType}` : 'rope_parameters';
    const theta = p.rope_theta !== undefined ? positive(p, 'rope_theta', file, undefined, key) : positive(text, local ? 'rope_local_base_freq' : 'rope_theta', file, defaultTheta);
    return { theta, scaling: parseRopeScaling(p, file, key) };
  }
  if (local) return { theta: positive(text, 'rope_local_base_freq', file, 10000), scaling: { type: 'default' } };
  return { theta: positive(text, 'rope_theta', file, defaultTheta), scaling: parseRopeScaling(text.rope_scaling, file) };
}

function layerTypesFrom(cfg: Json, n: number, family: Family, file: string): ('full' | 'sliding')[] {
  const lt = cfg.layer_types;
  // MistralAttention applies config.sliding_window to every layer and ignores layer_types.
  if (Array.isArray(lt) && family !== 'mistral') {
    if (lt.length !== n) throw new EmlensError(`${file}: layer_types has ${lt.length} entries for ${n} layers`);
    return lt.map((t, i) => {
      if (t === 'full_attention') return 'full';
      if (t === 'sliding_attention') return 'sliding';
      throw new EmlensError(`${file}: layer_types[${i}] = ${JSON.stringify(t)} is not supported`);
    });
  }
  const all = (t: 'full' | 'sliding') => Array.from({ length: n }, () => t);
  switch (family) {
    case 'gemma2':
      // modeling_gemma2 (pre layer_types): is_sliding = not bool(layer_idx % 2)
      return Array.from({ length: n }, (_, i) => (i % 2 === 0 ? 'sliding' : 'full'));
    case 'gemma3': {
      // modeling_gemma3 (pre layer_types): is_sliding = bool((layer_idx + 1) % sliding_window_pattern)
      const p = posInt(cfg, 'sliding_window_pattern', file, 6);
      return Array.from({ length: n }, (_, i) => ((i + 1) % p ? 'sliding' : 'full'));
    }
    case 'mistral':
      return all(!('sliding_window' in cfg) || cfg.sliding_window ? 'sliding' : 'full');
    case 'qwen2':
    case 'qwen3': {
      if (!cfg.use_sliding_window || !cfg.sliding_window) return all('full');
      // Qwen2: layers from max_window_layers on use the sliding window.
      const m = num(cfg, 'max_window_layers', file, n);
      if (!Number.isInteger(m) || m < 0) throw new EmlensError(`${file}: "max_window_layers" must be an integer >= 0, got ${m}`);
      return Array.from({ length: n }, (_, i) => (i >= m ? 'sliding' : 'full'));
    }
    default:
      return all('full');
  }
}

/**
 * What each family's transformers Config class assumes for keys a config.json leaves out (Google's
 * Gemma 3 files, for one, omit every text_config key that equals the default).
 */
const FAMILY_DEFAULTS: Record<Family, Json> = {
  llama: { vocab_size: 32000, max_position_embeddings: 2048, rms_norm_eps: 1e-6, tie_word_embeddings: false, rope_theta: 10000, hidden_act: 'silu', bos_token_id: 1, eos_token_id: 2 },
  mistral: { vocab_size: 32000, num_key_value_heads: 8, max_position_embeddings: 131072, rms_norm_eps: 1e-6, tie_word_embeddings: false, rope_theta: 10000, hidden_act: 'silu', bos_token_id: 1, eos_token_id: 2 },
  qwen2: { vocab_size: 151936, num_key_value_heads: 32, max_position_embeddings: 32768, rms_norm_eps: 1e-6, tie_word_embeddings: false, rope_theta: 10000, hidden_act: 'silu', use_sliding_window: false, max_window_layers: 28 },
  qwen3: { vocab_size: 151936, num_key_value_heads: 32, head_dim: 128, max_position_embeddings: 32768, rms_norm_eps: 1e-6, tie_word_embeddings: false, rope_theta: 10000, hidden_act: 'silu', use_sliding_window: false, max_window_layers: 28 },
  gemma2: {
    vocab_size: 256000, num_key_value_heads: 4, head_dim: 256, query_pre_attn_scalar: 256, max_position_embeddings: 8192, rms_norm_eps: 1e-6, tie_word_embeddings: true,
    rope_theta: 10000, hidden_activation: 'gelu_pytorch_tanh', sliding_window: 4096, attn_logit_softcapping: 50, final_logit_softcapping: 30, bos_token_id: 2, eos_token_id: 1,
  },
  gemma3: {
    vocab_size: 262208, num_key_value_heads: 4, head_dim: 256, query_pre_attn_scalar: 256, max_position_embeddings: 131072, rms_norm_eps: 1e-6, tie_word_embeddings: true,
    rope_theta: 1_000_000, rope_local_base_freq: 10000, hidden_activation: 'gelu_pytorch_tanh', sliding_window: 4096, sliding_window_pattern: 6,
  },
};

export function parseConfig(cfg: Json, file = 'config.json', generation: Json = {}, generationFile = 'generation_config.json'): ModelSpec {
  const modelType = cfg.model_type;
  if (typeof modelType !== 'string') throw new EmlensError(`${file}: missing "model_type"`);
  let text = cfg;
  let weightPrefixes = ['model.'];
  let family: Family;
  switch (modelType) {
    case 'llama':
    case 'mistral':
    case 'qwen2':
    case 'qwen3':
    case 'gemma2':
      family = modelType;
      break;
    case 'gemma3_text':
      family = 'gemma3';
      break;
    case 'gemma3': {
      // The multimodal checkpoint: the language model lives in text_config and under a prefix.
      const tc = cfg.text_config;
      if (!tc || typeof tc !== 'object') throw new EmlensError(`${file}: gemma3 config has no "text_config"`);
      text = { ...(tc as Json) };
      family = 'gemma3';
      weightPrefixes = ['language_model.model.', 'model.language_model.', 'model.'];
      break;
    }
    default:
      throw new EmlensError(
        `${file}: model_type "${modelType}" is not supported (supported: ${FAMILIES.join(', ')})`,
      );
  }
  // Keys set to null count as set (e.g. Mistral's "sliding_window": null means no window).
  text = { ...FAMILY_DEFAULTS[family], ...text };
  const isGemma = family === 'gemma2' || family === 'gemma3';
  const nLayers = posInt(text, 'num_hidden_layers', file);
  const dModel = posInt(text, 'hidden_size', file);
  const nHeads = posInt(text, 'num_attention_heads', file);
  const nKvHeads = posInt(text, 'num_key_value_heads', file, nHeads);
  if (nHeads % nKvHeads !== 0) throw new EmlensError(`${file}: num_attention_heads ${nHeads} is not a multiple of num_key_value_heads ${nKvHeads}`);
  const headDim = posInt(text, 'head_dim', file, Math.floor(dModel / nHeads));
  if (headDim % 2) throw new EmlensError(`${file}: head_dim ${headDim} must be even for rotary embeddings`);
  const actKey = text.hidden_activation !== undefined && text.hidden_activation !== null ? 'hidden_activation' : 'hidden_act';
  const act = String(text[actKey] ?? (isGemma ? 'gelu_pytorch_tanh' : 'silu'));
  let actKind: ModelSpec['act'];
  if (act === 'silu' || act === 'swish') actKind = 'silu';
  else if (act === 'gelu_pytorch_tanh' || act === 'gelu_tanh' || act === 'gelu_new') actKind = 'gelu_tanh';
  else throw new EmlensError(`${file}: "${actKey}" ${JSON.stringify(text[actKey])} is not supported (silu, gelu_pytorch_tanh)`);

  const rope = ropeFor(text, family, 'full_attention', file);
  const ropeLocal = family === 'gemma3' ? ropeFor(text, family, 'sliding_attention', file) : null;

  const layerTypes = layerTypesFrom(text, nLayers, family, file);
  // MistralConfig defaults sliding_window to 4096 when the key is absent; null means none.
  const sw = family === 'mistral' && !('sliding_window' in text) ? 4096 : layerTypes.includes('sliding') ? text.sliding_window : null;
  const slidingWindow = typeof sw === 'number' && sw > 0 ? sw : null;
  if (layerTypes.includes('sliding') && slidingWindow === null) {
    throw new EmlensError(`${file}: sliding layers but no positive "sliding_window"`);
  }
  const qpas = isGemma ? positive(text, 'query_pre_attn_scalar', file, headDim) : headDim;
  // null (or absent) = no softcapping.
  const soft = (k: string) => (text[k] === undefined || text[k] === null ? null : positive(text, k, file));
  const tied = cfg.tie_word_embeddings ?? text.tie_word_embeddings;
  if (typeof tied !== 'boolean') throw new EmlensError(`${file}: "tie_word_embeddings" must be true or false, got ${JSON.stringify(tied)}`);
  const vocab = posInt(text, 'vocab_size', file);
  // generation_config.json's ids win; both files are checked.
  const genEos = tokenIds(generation.eos_token_id, 'eos_token_id', generationFile);
  const cfgEos = tokenIds(text.eos_token_id ?? cfg.eos_token_id, 'eos_token_id', file);
  const eos = genEos.length ? genEos : cfgEos;
  const oneBos = (v: unknown, f: string) => {
    if (Array.isArray(v)) throw new EmlensError(`${f}: "bos_token_id" must be one token id, got a list`);
    return tokenIds(v, 'bos_token_id', f)[0];
  };
  const genBos = oneBos(generation.bos_token_id, generationFile);
  const cfgBos = oneBos(text.bos_token_id ?? cfg.bos_token_id, file);
  const bos = genBos ?? cfgBos;
  return {
    family,
    modelType,
    nLayers,
    dModel,
    nHeads,
    nKvHeads,
    headDim,
    ffn: posInt(text, 'intermediate_size', file),
    vocab,
    rmsEps: positive(text, 'rms_norm_eps', file, 1e-6),
    act: actKind,
    normPlusOne: isGemma,
    embedScale: isGemma ? Math.sqrt(dModel) : null,
    sandwichNorms: isGemma,
    qkNorm: family === 'qwen3' || family === 'gemma3',
    attnScale: 1 / Math.sqrt(qpas),
    attnSoftcap: isGemma ? soft('attn_logit_softcapping') : null,
    finalSoftcap: isGemma ? soft('final_logit_softcapping') : null,
    layerTypes,
    slidingWindow,
    rope,
    ropeLocal,
    tiedEmbeddings: tied,
    bosId: typeof bos === 'number' ? bos : null,
    eosIds: eos,
    maxPositions: posInt(text, 'max_position_embeddings', file, 4096),
    torchDtype: String(text.torch_dtype ?? text.dtype ?? cfg.torch_dtype ?? 'float32'),
    weightPrefixes,
  };
}

/**
 * Parses `text` (the content of `file`) as one JSON object; every failure is one line naming the
 * file. A leading byte-order mark and NaN / Infinity (which Python's json writes for float nan /
 * inf) are named as such, since JSON.parse's own message quotes the text around them.
 */
export function parseJsonObject(text: string, file: string): Json {
  if (text.charCodeAt(0) === 0xfeff) throw new EmlensError(`${file}: invalid JSON: the file starts with a UTF-8 byte-order mark (save it without one)`);
  let v: unknown;
  try {
    v = JSON.parse(text);
  } catch (e) {
    const bad = /"((?:[^"\\]|\\.)*)"\s*:\s*(-?Infinity|NaN)\b/.exec(text);
    if (bad) throw new EmlensError(`${file}: invalid JSON: "${bad[1]}" is ${bad[2]}, which JSON does not allow (and no usable value)`);
    throw new EmlensError(`${file}: invalid JSON (${(e as Error).message.replace(/\s*\n\s*/g, ' ')})`);
  }
  if (!v || typeof v !== 'object' || Array.isArray(v)) throw new EmlensError(`${file}: must hold a JSON object, got ${Array.isArray(v) ? 'a list' : v === null ? 'null' : `a ${typeof v}`}`);
  return v as Json;
}

export function readJson(file: string): Json {
  let raw: string;
  try {
    raw = readFileSync(file, 'utf8');
  } catch {
    throw new EmlensError(`${file}: cannot read file`);
  }
  return parseJsonObject(raw, file);
}

export function loadSpec(dir: string): ModelSpec {
  const file = join(dir, 'config.json');
  if (!existsSync(file)) throw new EmlensError(`${dir}: no config.json`);
  const gen = join(dir, 'generation_config.json');
  return parseConfig(readJson(file), file, existsSync(gen) ? readJson(gen) : {}, gen);
}

/** Parameter count of the text model (embeddings once when tied). */
export function parameterCount(s: ModelSpec): number {
  const attn = s.dModel * s.headDim * (2 * s.nHeads + 2 * s.nKvHeads);
  const mlp = 3 * s.dModel * s.ffn;
  const norms = s.dModel * (s.sandwichNorms ? 4 : 2) + (s.qkNorm ? 2 * s.headDim : 0);
  const emb = s.vocab * s.dModel * (s.tiedEmbeddings ? 1 : 2);
  return s.nLayers * (attn + mlp + norms) + emb + s.dModel;
}
