/**
 * Tiny random Hugging Face checkpoints for tests, one per supported family, with every
 * architecture feature of the family switched on and sized so that it actually matters at
 * sequence lengths of ~10-20 tokens.
 *
 * Each family mirrors the config.json and tensor names that transformers writes for it
 * (`save_pretrained`). Linear weights are stored [out_features, in_features] like nn.Linear.
 * Per layer i, "L" below stands for `model.layers.{i}.`.
 *
 * - llama (LlamaForCausalLM, modeling_llama.py): model.embed_tokens.weight [V,H];
 *   L.input_layernorm.weight, L.post_attention_layernorm.weight [H];
 *   L.self_attn.{q,k,v}_proj.weight [nH*hd | nKV*hd, H], L.self_attn.o_proj.weight [H, nH*hd];
 *   L.mlp.{gate,up}_proj.weight [I,H], L.mlp.down_proj.weight [H,I]; model.norm.weight [H];
 *   lm_head.weight [V,H] (untied). Features: rope_scaling llama3 (factor 8, low 1, high 4,
 *   original_max_position_embeddings 64 so that, at head_dim 16 and theta 5e5, the three
 *   frequency bands - kept, smoothed, divided by 8 - all occur), rope_theta 5e5, GQA 4/2,
 *   explicit head_dim 16 != hidden 48 / 4 heads (override with opts.headDim).
 * - mistral (MistralForCausalLM, modeling_mistral.py): same names as llama, no biases, untied,
 *   head_dim left out of config (defaults to hidden/heads), sliding_window 5 on every layer.
 * - qwen2 (Qwen2ForCausalLM, modeling_qwen2.py): llama names plus
 *   L.self_attn.{q,k,v}_proj.bias (o_proj has none); tied (no lm_head.weight); rope_theta 1e6;
 *   use_sliding_window false (sliding_window present but inactive, as in real Qwen2.5 configs).
 * - qwen3 (Qwen3ForCausalLM, modeling_qwen3.py): llama names plus L.self_attn.q_norm.weight and
 *   L.self_attn.k_norm.weight [hd] (RMSNorm over head_dim, w * x form); head_dim 16 with
 *   hidden 32 and 4 heads (q_proj out 64 != hidden); attention_bias false; untied.
 * - gemma2 (Gemma2ForCausalLM, modeling_gemma2.py): llama names plus
 *   L.pre_feedforward_layernorm.weight and L.post_feedforward_layernorm.weight (sandwich norms:
 *   post_attention_layernorm normalises the attention OUTPUT); all norms (1 + w) with w ~ N(0,
 *   0.1^2); embeddings scaled by sqrt(hidden); gelu_pytorch_tanh; attn_logit_softcapping 2.0,
 *   final_logit_softcapping 3.0; query_pre_attn_scalar 24 != head_dim 16; sliding_window 4 on
 *   the even layers (HF: layer_types[i] = sliding iff (i+1) % 2); tied.
 * - gemma3_text (Gemma3ForCausalLM, modeling_gemma3.py): gemma2 names plus
 *   L.self_attn.q_norm.weight / k_norm.weight [hd] ((1 + w) form); no softcapping; 7 layers with
 *   explicit layer_types (5 sliding, layer 5 full, layer 6 sliding - the sliding_window_pattern 6
 *   rule (i+1) % 6, also written); sliding layers use rope_local_base_freq 1e4 without scaling,
 *   full layers rope_theta 1e6 with rope_scaling linear factor 8; sliding_window 4; tied.
 * - gemma3 (Gemma3ForConditionalGeneration, older transformers layout, e.g. 4.50): config
 *   model_type 'gemma3' with text_config {gemma3_text fields, sliding_window_pattern 6 and NO
 *   layer_types} and a minimal siglip vision_config; text tensors are
 *   `language_model.model.<...>` (lm_head tied, absent); plus vision/projector tensors
 *   `vision_tower.vision_model.embeddings.patch_embedding.weight` and
 *   `multi_modal_projector.mm_input_projection_weight` that text-only loaders must ignore.
 *
 * Weights: matrices and embeddings ~ N(0, 0.2^2); llama-style norms 1 + N(0, 0.1^2); gemma
 * norms N(0, 0.1^2) (the model uses 1 + w); biases N(0, 0.1^2). Each tensor has its own
 * mulberry32 stream seeded from (seed, tensor name), so a tensor does not change when another
 * one is added.
 */
import { mkdirSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { bf16ToF32, f16ToF32, f32ToBf16, f32ToF16, writeSafetensors, writeShardedSafetensors } from '../../src/io/safetensors/index.js';
import { fillGaussian, rng } from '../../src/runtime/random.js';

export type TinyFamily = 'llama' | 'mistral' | 'qwen2' | 'qwen3' | 'gemma2' | 'gemma3_text' | 'gemma3';

export interface TinyOptions {
  /** Weight seed (default 0). */
  seed?: number;
  /** Stored dtype (default F32); returned weights are rounded to it. */
  dtype?: 'F32' | 'F16' | 'BF16';
  /** Write model-0000i-of-0000n.safetensors shards of at most this many bytes (plus index). */
  shardBytes?: number;
  /** Override tie_word_embeddings. */
  tied?: boolean;
  /** Override num_hidden_layers (gemma3_text layer_types are regenerated with pattern 6). */
  layers?: number;
  /** Override head_dim (llama only; e.g. 12 = hidden/heads for the plain variant). */
  headDim?: number;
}

export type TinyWeights = Map<string, { shape: number[]; data: Float32Array }>;

export const TINY_FAMILIES: TinyFamily[] = ['llama', 'mistral', 'qwen2', 'qwen3', 'gemma2', 'gemma3_text', 'gemma3'];

const TORCH_DTYPE = { F32: 'float32', F16: 'float16', BF16: 'bfloat16' } as const;

function gemma3LayerTypes(n: number, pattern: number): string[] {
  const out: string[] = [];
  for (let i = 0; i < n; i++) out.push((i + 1) % pattern !== 0 ? 'sliding_attention' : 'full_attention');
  return out;
}

function gemma3TextFields(layers: number, tied: boolean, withLayerTypes: boolean, vocab: number): Record<string, any> {
  const c: Record<string, any> = {
    model_type: 'gemma3_text',
    vocab_size: vocab,
    hidden_size: 32,
    intermediate_size: 64,
    num_hidden_layers: layers,
    num_attention_heads: 4,
    num_key_value_heads: 2,
    head_dim: 16,
    hidden_activation: 'gelu_pytorch_tanh',
    max_position_embeddings: 256,
    rms_norm_eps: 1e-6,
    rope_theta: 1000000.0,
    rope_local_base_freq: 10000.0,
    rope_scaling: { rope_type: 'linear', factor: 8.0 },
    attention_bias: false,
    attention_dropout: 0.0,
    query_pre_attn_scalar: 20,
    sliding_window: 4,
    sliding_window_pattern: 6,
    final_logit_softcapping: null,
    attn_logit_softcapping: null,
    cache_implementation: 'hybrid',
    pad_token_id: 0,
    eos_token_id: 1,
    bos_token_id: 2,
    tie_word_embeddings: tied,
    initializer_range: 0.02,
    use_cache: true,
  };
  if (withLayerTypes) c.layer_types = gemma3LayerTypes(layers, 6);
  return c;
}

/** A config.json object for `family`, as transformers would write it. */
export function tinyConfig(family: TinyFamily, opts: TinyOptions = {}): Record<string, any> {
  const torch_dtype = TORCH_DTYPE[opts.dtype ?? 'F32'];
  switch (family) {
    case 'llama':
      return {
        architectures: ['LlamaForCausalLM'],
        model_type: 'llama',
        vocab_size: 80,
        hidden_size: 48,
        intermediate_size: 64,
        num_hidden_layers: opts.layers ?? 3,
        num_attention_heads: 4,
        num_key_value_heads: 2,
        head_dim: opts.headDim ?? 16,
        hidden_act: 'silu',
        max_position_embeddings: 256,
        rms_norm_eps: 1e-5,
        rope_theta: 500000.0,
        rope_scaling: {
          rope_type: 'llama3',
          factor: 8.0,
          low_freq_factor: 1.0,
          high_freq_factor: 4.0,
          original_max_position_embeddings: 64,
        },
        attention_bias: false,
        attention_dropout: 0.0,
        mlp_bias: false,
        pretraining_tp: 1,
        tie_word_embeddings: opts.tied ?? false,
        bos_token_id: 1,
        eos_token_id: 2,
        initializer_range: 0.02,
        use_cache: true,
        torch_dtype,
      };
    case 'mistral':
      return {
        architectures: ['MistralForCausalLM'],
        model_type: 'mistral',
        vocab_size: 72,
        hidden_size: 32,
        intermediate_size: 64,
        num_hidden_layers: opts.layers ?? 3,
        num_attention_heads: 4,
        num_key_value_heads: 2,
        hidden_act: 'silu',
        max_position_embeddings: 128,
        rms_norm_eps: 1e-5,
        rope_theta: 10000.0,
        sliding_window: 5,
        attention_dropout: 0.0,
        tie_word_embeddings: opts.tied ?? false,
        bos_token_id: 1,
        eos_token_id: 2,
        initializer_range: 0.02,
        use_cache: true,
        torch_dtype,
      };
    case 'qwen2': {
      const layers = opts.layers ?? 3;
      return {
        architectures: ['Qwen2ForCausalLM'],
        model_type: 'qwen2',
        vocab_size: 88,
        hidden_size: 32,
        intermediate_size: 64,
        num_hidden_layers: layers,
        num_attention_heads: 4,
        num_key_value_heads: 2,
        hidden_act: 'silu',
        max_position_embeddings: 256,
        rms_norm_eps: 1e-6,
        rope_theta: 1000000.0,
        rope_scaling: null,
        use_sliding_window: false,
        sliding_window: 32768,
        max_window_layers: Math.min(2, layers),
        attention_dropout: 0.0,
        tie_word_embeddings: opts.tied ?? true,
        bos_token_id: 1,
        eos_token_id: 2,
        initializer_range: 0.02,
        use_cache: true,
        torch_dtype,
      };
    }
    case 'qwen3': {
      const layers = opts.layers ?? 3;
      return {
        architectures: ['Qwen3ForCausalLM'],
        model_type: 'qwen3',
        vocab_size: 64,
        hidden_size: 32,
        intermediate_size: 64,
        num_hidden_layers: layers,
        num_attention_heads: 4,
        num_key_value_heads: 2,
        head_dim: 16,
        hidden_act: 'silu',
        max_position_embeddings: 256,
        rms_norm_eps: 1e-6,
        rope_theta: 1000000.0,
        rope_scaling: null,
        attention_bias: false,
        use_sliding_window: false,
        sliding_window: null,
        max_window_layers: layers,
        attention_dropout: 0.0,
        tie_word_embeddings: opts.tied ?? false,
        bos_token_id: 1,
        eos_token_id: 2,
        initializer_range: 0.02,
        use_cache: true,
        torch_dtype,
      };
    }
    case 'gemma2':
      return {
        architectures: ['Gemma2ForCausalLM'],
        model_type: 'gemma2',
        vocab_size: 96,
        hidden_size: 32,
        intermediate_size: 64,
        num_hidden_layers: opts.layers ?? 4,
        num_attention_heads: 4,
        num_key_value_heads: 2,
        head_dim: 16,
        hidden_act: 'gelu_pytorch_tanh',
        hidden_activation: 'gelu_pytorch_tanh',
        max_position_embeddings: 256,
        rms_norm_eps: 1e-6,
        rope_theta: 10000.0,
        attention_bias: false,
        attention_dropout: 0.0,
        query_pre_attn_scalar: 24,
        attn_logit_softcapping: 2.0,
        final_logit_softcapping: 3.0,
        sliding_window: 4,
        cache_implementation: 'hybrid',
        tie_word_embeddings: opts.tied ?? true,
        pad_token_id: 0,
        eos_token_id: 1,
        bos_token_id: 2,
        initializer_range: 0.02,
        use_cache: true,
        torch_dtype,
      };
    case 'gemma3_text':
      return {
        architectures: ['Gemma3ForCausalLM'],
        ...gemma3TextFields(opts.layers ?? 7, opts.tied ?? true, true, 97),
        torch_dtype,
      };
    case 'gemma3': {
      const tied = opts.tied ?? true;
      return {
        architectures: ['Gemma3ForConditionalGeneration'],
        model_type: 'gemma3',
        text_config: { ...gemma3TextFields(opts.layers ?? 7, tied, false, 90), torch_dtype },
        vision_config: {
          model_type: 'siglip_vision_model',
          hidden_size: 8,
          intermediate_size: 16,
          num_hidden_layers: 1,
          num_attention_heads: 2,
          image_size: 4,
          patch_size: 2,
          layer_norm_eps: 1e-6,
          vision_use_head: false,
          torch_dtype,
        },
        mm_tokens_per_image: 4,
        boi_token_index: 86,
        eoi_token_index: 87,
        image_token_index: 88,
        initializer_range: 0.02,
        tie_word_embeddings: tied,
        torch_dtype,
      };
    }
  }
}

// ---------------------------------------------------------------------------------------------
// Random weights

function fnv1a(s: string): number {
  let h = 0x811c9dc5;
  for (let i = 0; i < s.length; i++) {
    h ^= s.charCodeAt(i);
    h = Math.imul(h, 0x01000193) >>> 0;
  }
  return h >>> 0;
}

/** `n` samples of mean + std * N(0, 1) (Box-Muller), from a stream seeded by (seed, name). */
function gaussian(seed: number, name: string, n: number, mean: number, std: number): Float32Array {
  return fillGaussian(new Float32Array(n), rng((fnv1a(name) ^ Math.imul(seed | 0, 0x9e3779b1)) >>> 0), std, mean);
}

/**
 * Random weights for `config` (any config produced by tinyConfig, or an edited copy), with the
 * HF tensor names and shapes of its family. Insertion order is HF's module order.
 */
export function tinyWeights(config: Record<string, any>, seed: number): TinyWeights {
  const wrapper = config.model_type === 'gemma3';
  const c: Record<string, any> = wrapper ? config.text_config : config;
  const mt: string = c.model_type ?? (wrapper ? 'gemma3_text' : '');
  const gemma = mt === 'gemma2' || mt === 'gemma3_text';
  const H: number = c.hidden_size;
  const V: number = c.vocab_size;
  const I: number = c.intermediate_size;
  const nH: number = c.num_attention_heads;
  const nKV: number = c.num_key_value_heads ?? nH;
  const hd: number = c.head_dim ?? H / nH;
  const L: number = c.num_hidden_layers;
  const prefix = wrapper ? 'language_model.model.' : 'model.';
  const headName = wrapper ? 'language_model.lm_head.weight' : 'lm_head.weight';
  const tied: boolean = (wrapper ? (c.tie_word_embeddings ?? config.tie_word_embeddings) : c.tie_word_embeddings) ?? gemma;
  const qkvBias = mt === 'qwen2' || c.attention_bias === true;
  const oBias = mt !== 'qwen2' && c.attention_bias === true;
  const mlpBias = mt === 'llama' && c.mlp_bias === true;
  const qkNorm = mt === 'qwen3' || mt === 'gemma3_text';
  const sandwich = gemma;

  const w: TinyWeights = new Map();
  const mat = (name: string, shape: number[]) =>
    w.set(name, { shape, data: gaussian(seed, name, shape.reduce((a, b) => a * b, 1), 0, 0.2) });
  const bias = (name: string, n: number) => w.set(name, { shape: [n], data: gaussian(seed, name, n, 0, 0.1) });
  const norm = (name: string, n: number) =>
    w.set(name, { shape: [n], data: gaussian(seed, name, n, gemma ? 0 : 1, 0.1) });

  mat(`${prefix}embed_tokens.weight`, [V, H]);
  for (let i = 0; i < L; i++) {
    const p = `${prefix}layers.${i}.`;
    mat(`${p}self_attn.q_proj.weight`, [nH * hd, H]);
    if (qkvBias) bias(`${p}self_attn.q_proj.bias`, nH * hd);
    mat(`${p}self_attn.k_proj.weight`, [nKV * hd, H]);
    if (qkvBias) bias(`${p}self_attn.k_proj.bias`, nKV * hd);
    mat(`${p}self_attn.v_proj.weight`, [nKV * hd, H]);
    if (qkvBias) bias(`${p}self_attn.v_proj.bias`, nKV * hd);
    mat(`${p}self_attn.o_proj.weight`, [H, nH * hd]);
    if (oBias) bias(`${p}self_attn.o_proj.bias`, H);
    if (qkNorm) {
      norm(`${p}self_attn.q_norm.weight`, hd);
      norm(`${p}self_attn.k_norm.weight`, hd);
    }
    mat(`${p}mlp.gate_proj.weight`, [I, H]);
    if (mlpBias) bias(`${p}mlp.gate_proj.bias`, I);
    mat(`${p}mlp.up_proj.weight`, [I, H]);
    if (mlpBias) bias(`${p}mlp.up_proj.bias`, I);
    mat(`${p}mlp.down_proj.weight`, [H, I]);
    if (mlpBias) bias(`${p}mlp.down_proj.bias`, H);
    norm(`${p}input_layernorm.weight`, H);
    norm(`${p}post_attention_layernorm.weight`, H);
    if (sandwich) {
      norm(`${p}pre_feedforward_layernorm.weight`, H);
      norm(`${p}post_feedforward_layernorm.weight`, H);
    }
  }
  norm(`${prefix}norm.weight`, H);
  if (!tied) mat(headName, [V, H]);

  if (wrapper) {
    const vc = config.vision_config ?? {};
    const vh: number = vc.hidden_size ?? 8;
    const ps: number = vc.patch_size ?? 2;
    mat('vision_tower.vision_model.embeddings.patch_embedding.weight', [vh, 3, ps, ps]);
    mat('multi_modal_projector.mm_input_projection_weight', [vh, H]);
  }
  return w;
}

function roundTo(data: Float32Array, dtype: 'F32' | 'F16' | 'BF16'): Float32Array {
  if (dtype === 'F32') return data;
  const out = new Float32Array(data.length);
  for (let i = 0; i < data.length; i++) {
    out[i] = dtype === 'F16' ? f16ToF32(f32ToF16(data[i]!)) : bf16ToF32(f32ToBf16(data[i]!));
  }
  return out;
}

/**
 * Writes config.json and model.safetensors (or shards + index when opts.shardBytes is set) into
 * `dir` (created if needed). The returned weights are the values as stored, i.e. after rounding
 * to opts.dtype, so a reference run on them sees exactly what a loader reads from disk.
 */
export function writeTinyCheckpoint(
  dir: string,
  family: TinyFamily,
  opts: TinyOptions = {},
): { config: Record<string, any>; weights: TinyWeights } {
  const dtype = opts.dtype ?? 'F32';
  const config = tinyConfig(family, opts);
  const raw = tinyWeights(config, opts.seed ?? 0);
  const weights: TinyWeights = new Map();
  const toWrite = new Map<string, { shape: number[]; data: Float32Array; dtype: 'F32' | 'F16' | 'BF16' }>();
  for (const [name, t] of raw) {
    const data = roundTo(t.data, dtype);
    weights.set(name, { shape: t.shape, data });
    toWrite.set(name, { shape: t.shape, data, dtype });
  }
  mkdirSync(dir, { recursive: true });
  writeFileSync(join(dir, 'config.json'), JSON.stringify(config, null, 2) + '\n');
  const metadata = { format: 'pt' };
  if (opts.shardBytes !== undefined) {
    writeShardedSafetensors(dir, toWrite, { maxShardBytes: opts.shardBytes, metadata });
  } else {
    writeSafetensors(join(dir, 'model.safetensors'), toWrite, metadata);
  }
  return { config, weights };
}
