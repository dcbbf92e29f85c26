/**
 * Independent reference forward pass for the decoder-only families emlens supports, written
 * directly from the Hugging Face transformers modeling code (modeling_llama.py,
 * modeling_mistral.py, modeling_qwen2.py, modeling_qwen3.py, modeling_gemma2.py,
 * modeling_gemma3.py, modeling_rope_utils.py, masking_utils.py and the configuration_*.py
 * defaults), in float64 with plain loops. It shares no code with emlens's compiler on purpose.
 *
 * One sequence, positions 0..T-1, no padding, eager attention semantics.
 *
 * Hook points (TransformerLens names), each [T * hidden] row-major:
 *   resid_pre[l]  = input of decoder layer l (for Gemma: after the sqrt(hidden) embedding scale)
 *                 = HF output_hidden_states[l].
 *   attn_out[l]   = what the attention block adds to the residual: o_proj(...) for llama-style,
 *                   post_attention_layernorm(o_proj(...)) for Gemma 2/3 (sandwich norms:
 *                   Gemma2DecoderLayer `hidden_states = self.post_attention_layernorm(hidden_states);
 *                   hidden_states = residual + hidden_states`).
 *   resid_mid[l]  = resid_pre[l] + attn_out[l].
 *   mlp_out[l]    = what the MLP adds: down_proj(act(gate_proj(h)) * up_proj(h)) for llama-style,
 *                   post_feedforward_layernorm(mlp(pre_feedforward_layernorm(resid_mid))) for Gemma.
 *   resid_post[l] = raw output of decoder layer l, BEFORE the final norm. For l < L-1 this is HF
 *                   hidden_states[l+1]; for the last layer HF's hidden_states[L] is NOT this: HF
 *                   replaces the last entry with model.norm(...) (see check_model_inputs /
 *                   capture_outputs in utils/generic.py: `collected_outputs[key][:-1] +
 *                   (outputs.last_hidden_state,)`; older versions appended the normed state
 *                   after the layer loop). Ours is always the un-normed block output.
 *   logits        = lm_head(norm(resid_post[L-1])), then final_logit_softcapping if set.
 *
 * Sliding window convention (masking_utils.py, `sliding_window_overlay`):
 *     def inner_mask(batch_idx, head_idx, q_idx, kv_idx): return kv_idx > q_idx - sliding_window
 * and'ed with causal_mask_function (`kv_idx <= q_idx`). So a window of W lets query q see the
 * keys q-W+1 .. q: W keys including itself, i.e. W-1 previous tokens. The pre-masking_utils
 * code agrees: Gemma2DecoderLayer masked `torch.tril(ones, diagonal=-sliding_window)`
 * (kv <= q - W) and Mistral's _update_causal_mask excluded `arange <= cache_position - W`.
 *
 * Numerics: everything in float64 from the float32 weights. Where HF rounds to a lower
 * precision we do not: inv_freq and cos/sin are float32 in HF; the Gemma embedding scale is
 * `torch.tensor(hidden_size**0.5)` cast to the weight dtype (Gemma2: `normalizer =
 * torch.tensor(hidden**0.5, dtype=hidden_states.dtype)`; Gemma3: embed_scale.to(weight.dtype)),
 * so in a bf16 run HF multiplies by bf16(sqrt(H)) (e.g. 55.5 instead of 55.4256 for H=3072);
 * we use the exact sqrt(H), matching a float32 run to float32 precision.
 */

export interface RefOutput {
  resid_pre: Float64Array[];
  attn_out: Float64Array[];
  resid_mid: Float64Array[];
  mlp_out: Float64Array[];
  resid_post: Float64Array[];
  logits: Float64Array;
}

export type RefWeights = Map<string, { shape: number[]; data: Float32Array }>;

export type RefFamily = 'llama' | 'mistral' | 'qwen2' | 'qwen3' | 'gemma2' | 'gemma3_text';

/** Everything the forward pass needs, resolved from config.json with HF's defaults. */
export interface RefSpec {
  family: RefFamily;
  hidden: number;
  intermediate: number;
  vocab: number;
  layers: number;
  heads: number;
  kvHeads: number;
  headDim: number;
  eps: number;
  act: string;
  /** Gemma RMSNorm: x_hat * (1 + w); else w * x_hat. */
  onePlusNorm: boolean;
  /** Gemma 2/3: post_attention_layernorm on the attention output, pre/post feed-forward norms. */
  sandwich: boolean;
  qkNorm: boolean;
  qkvBias: boolean;
  oBias: boolean;
  mlpBias: boolean;
  embedScale: number;
  /** Multiplies q.k. */
  scaling: number;
  attnSoftcap: number | null;
  finalSoftcap: number | null;
  tied: boolean;
  /** Per layer: sliding window size, or null for full causal attention. */
  window: (number | null)[];
  /** Per layer: RoPE inverse frequencies, headDim/2 of them. */
  invFreq: Float64Array[];
}

/** HF's mask for one (query, key) pair: causal, plus the sliding window when window != null. */
export function attentionAllowed(q: number, k: number, window: number | null): boolean {
  if (k > q) return false; // causal_mask_function: kv_idx <= q_idx
  if (window !== null && !(k > q - window)) return false; // sliding_window_overlay
  return true;
}

// ---------------------------------------------------------------------------------------------
// Config resolution

const has = (o: Record<string, any>, k: string) => Object.prototype.hasOwnProperty.call(o, k);
/** HF dataclass-style default: the default applies only when the key is absent. */
const get = (o: Record<string, any>, k: string, dflt: any) => (has(o, k) ? o[k] : dflt);
/** Default also when the key is present but null (HF `x if x is not None else default`). */
const getNN = (o: Record<string, any>, k: string, dflt: any) => (o[k] ?? dflt);

interface RopeParams {
  rope_type: string;
  rope_theta: number;
  [k: string]: any;
}

function ropeParamsFor(c: Record<string, any>, family: RefFamily, layerType: string): RopeParams {
  const defaultTheta = family === 'gemma3_text' ? (layerType === 'sliding_attention' ? 10000 : 1000000) : 10000;
  // transformers v5 layout: rope_parameters, nested by layer type for Gemma3.
  if (c.rope_parameters != null) {
    const rp = c.rope_parameters;
    const p = rp.full_attention !== undefined || rp.sliding_attention !== undefined ? rp[layerType] : rp;
    if (p == null) throw new Error(`reference: no rope_parameters for ${layerType}`);
    let theta = p.rope_theta;
    if (theta == null) {
      theta = family === 'gemma3_text' && layerType === 'sliding_attention'
        ? getNN(c, 'rope_local_base_freq', defaultTheta)
        : getNN(c, 'rope_theta', defaultTheta);
    }
    return { ...p, rope_type: p.rope_type ?? p.type ?? 'default', rope_theta: theta };
  }
  // Legacy layout: rope_theta + rope_scaling. Gemma3 sliding layers: rope_local_base_freq and
  // default RoPE (4.50: `config.rope_theta = config.rope_local_base_freq; config.rope_scaling =
  // {"rope_type": "default"}` for rotary_emb_local; v5: rope_scaling only updates full_attention).
  if (family === 'gemma3_text' && layerType === 'sliding_attention') {
    return { rope_type: 'default', rope_theta: getNN(c, 'rope_local_base_freq', 10000) };
  }
  const theta = getNN(c, 'rope_theta', defaultTheta);
  const rs = c.rope_scaling;
  if (rs == null) return { rope_type: 'default', rope_theta: theta };
  return { ...rs, rope_type: rs.rope_type ?? rs.type ?? 'default', rope_theta: theta };
}

/** modeling_rope_utils.py: _compute_default / _compute_linear_scaling / _compute_llama3_parameters. */
function invFreqFor(p: RopeParams, headDim: number): Float64Array {
  const dim = headDim;
  const half = dim / 2;
  const inv = new Float64Array(half);
  // inv_freq = 1 / (base ** (arange(0, dim, 2) / dim))
  for (let i = 0; i < half; i++) inv[i] = 1.0 / Math.pow(p.rope_theta, (2 * i) / dim);
  switch (p.rope_type) {
    case 'default':
      return inv;
    case 'linear': {
      // inv_freq /= factor
      for (let i = 0; i < half; i++) inv[i] = inv[i]! / p.factor;
      return inv;
    }
    case 'llama3': {
      const factor: number = p.factor;
      const low: number = p.low_freq_factor;
      const high: number = p.high_freq_factor;
      const oldLen: number = p.original_max_position_embeddings;
      const lowFreqWavelen = oldLen / low;
      const highFreqWavelen = oldLen / high;
      for (let i = 0; i < half; i++) {
        const f = inv[i]!;
        const wavelen = (2 * Math.PI) / f;
        // inv_freq_llama = where(wavelen > low_freq_wavelen, inv_freq / factor, inv_freq)
        let fl = wavelen > lowFreqWavelen ? f / factor : f;
        // medium band: ~(wavelen < high_freq_wavelen) * ~(wavelen > low_freq_wavelen)
        if (!(wavelen < highFreqWavelen) && !(wavelen > lowFreqWavelen)) {
          const smooth = (oldLen / wavelen - low) / (high - low);
          fl = ((1 - smooth) * fl) / factor + smooth * fl;
        }
        inv[i] = fl;
      }
      return inv;
    }
    default:
      throw new Error(`reference: rope_type ${JSON.stringify(p.rope_type)} not implemented`);
  }
}

/** Resolves config.json (a causal-LM config or the gemma3 multimodal wrapper) with HF defaults. */
export function resolveSpec(config: Record<string, any>): RefSpec {
  let c = config;
  let tiedDefault: boolean | undefined;
  if (config.model_type === 'gemma3') {
    c = { model_type: 'gemma3_text', ...(config.text_config ?? {}) };
    tiedDefault = config.tie_word_embeddings ?? true; // Gemma3Config default True
  }
  const family = c.model_type as RefFamily;
  if (!['llama', 'mistral', 'qwen2', 'qwen3', 'gemma2', 'gemma3_text'].includes(family)) {
    throw new Error(`reference: model_type ${JSON.stringify(c.model_type)} not supported`);
  }
  const gemma = family === 'gemma2' || family === 'gemma3_text';
  if (c.partial_rotary_factor != null && c.partial_rotary_factor !== 1) {
    throw new Error('reference: partial_rotary_factor not implemented');
  }
  if (c.use_bidirectional_attention) throw new Error('reference: use_bidirectional_attention not implemented');

  const hidden: number = c.hidden_size;
  const heads: number = c.num_attention_heads;
  const layers: number = c.num_hidden_layers;
  // num_key_value_heads: the class default when absent (mistral 8, qwen2/qwen3 32, gemma 4;
  // llama None), and num_attention_heads when None.
  const kvDefault = { llama: null, mistral: 8, qwen2: 32, qwen3: 32, gemma2: 4, gemma3_text: 4 }[family];
  const kvHeads: number = get(c, 'num_key_value_heads', kvDefault) ?? heads;
  // head_dim: qwen3 class default 128, gemma 256, else hidden // heads (None -> hidden // heads).
  const hdDefault = { llama: null, mistral: null, qwen2: null, qwen3: 128, gemma2: 256, gemma3_text: 256 }[family];
  const headDim: number = get(c, 'head_dim', hdDefault) ?? Math.floor(hidden / heads);
  const eps: number = getNN(c, 'rms_norm_eps', 1e-6);
  const act: string = gemma ? getNN(c, 'hidden_activation', 'gelu_pytorch_tanh') : getNN(c, 'hidden_act', 'silu');
  const attentionBias = getNN(c, 'attention_bias', false) === true;

  let scaling = 1 / Math.sqrt(headDim); // head_dim ** -0.5
  if (gemma) scaling = 1 / Math.sqrt(getNN(c, 'query_pre_attn_scalar', 256)); // query_pre_attn_scalar ** -0.5

  let attnSoftcap: number | null = null;
  let finalSoftcap: number | null = null;
  if (family === 'gemma2') {
    attnSoftcap = get(c, 'attn_logit_softcapping', 50.0);
    finalSoftcap = get(c, 'final_logit_softcapping', 30.0);
  } else if (family === 'gemma3_text') {
    attnSoftcap = get(c, 'attn_logit_softcapping', null);
    finalSoftcap = get(c, 'final_logit_softcapping', null);
  }

  // tie_word_embeddings: gemma classes default True, the others False.
  const tied: boolean = getNN(c, 'tie_word_embeddings', tiedDefault ?? gemma);

  // Which layers slide.
  const window: (number | null)[] = [];
  const layerTypes: string[] = [];
  for (let i = 0; i < layers; i++) {
    let type: string;
    let w: number | null;
    if (family === 'llama') {
      type = 'full_attention';
      w = null;
    } else if (family === 'mistral') {
      // MistralModel: create_sliding_window_causal_mask for all layers when config.sliding_window
      // is set (class default 4096); layer_types is ignored (MistralConfig only warns).
      w = get(c, 'sliding_window', 4096);
      type = w === null ? 'full_attention' : 'sliding_attention';
    } else if (family === 'qwen2' || family === 'qwen3') {
      // Qwen2Config/Qwen3Config: sliding_window = sliding_window if use_sliding_window else None;
      // layer_types default: sliding iff sliding_window is not None and i >= max_window_layers.
      const sw = getNN(c, 'use_sliding_window', false) ? get(c, 'sliding_window', 4096) : null;
      if (Array.isArray(c.layer_types)) type = c.layer_types[i];
      else type = sw !== null && i >= getNN(c, 'max_window_layers', 28) ? 'sliding_attention' : 'full_attention';
      w = type === 'sliding_attention' ? sw : null;
    } else if (family === 'gemma2') {
      // Gemma2Config: layer_types default "sliding_attention" if bool((i + 1) % 2) (even i);
      // older code: Gemma2Attention.sliding_window if not bool(layer_idx % 2).
      if (Array.isArray(c.layer_types)) type = c.layer_types[i];
      else type = (i + 1) % 2 !== 0 ? 'sliding_attention' : 'full_attention';
      w = type === 'sliding_attention' ? getNN(c, 'sliding_window', 4096) : null;
    } else {
      // Gemma3TextConfig: layer_types default "sliding_attention" if bool((i + 1) %
      // sliding_window_pattern) with pattern default 6 (4.50: is_sliding = bool((layer_idx + 1) %
      // config.sliding_window_pattern)).
      const pattern: number = getNN(c, 'sliding_window_pattern', 6);
      if (Array.isArray(c.layer_types)) type = c.layer_types[i];
      else type = (i + 1) % pattern !== 0 ? 'sliding_attention' : 'full_attention';
      w = type === 'sliding_attention' ? getNN(c, 'sliding_window', 4096) : null;
    }
    if (type !== 'sliding_attention' && type !== 'full_attention') {
      throw new Error(`reference: layer type ${JSON.stringify(type)} not supported`);
    }
    layerTypes.push(type);
    window.push(w);
  }

  const invFreq = layerTypes.map((t) => invFreqFor(ropeParamsFor(c, family, t), headDim));

  return {
    family,
    hidden,
    intermediate: c.intermediate_size,
    vocab: c.vocab_size,
    layers,
    heads,
    kvHeads,
    headDim,
    eps,
    act,
    onePlusNorm: gemma,
    sandwich: gemma,
    qkNorm: family === 'qwen3' || family === 'gemma3_text',
    // Qwen2Attention: q/k/v bias=True, o_proj bias=False; Mistral: no biases; the others use
    // config.attention_bias for all four projections.
    qkvBias: family === 'qwen2' ? true : family === 'mistral' ? false : attentionBias,
    oBias: family === 'qwen2' || family === 'mistral' ? false : attentionBias,
    mlpBias: family === 'llama' ? getNN(c, 'mlp_bias', false) === true : false,
    embedScale: gemma ? Math.sqrt(hidden) : 1,
    scaling,
    attnSoftcap,
    finalSoftcap,
    tied,
    window,
    invFreq,
  };
}

// ---------------------------------------------------------------------------------------------
// Building blocks

function activation(name: string, x: number): number {
  switch (name) {
    case 'silu':
    case 'swish':
      return x / (1 + Math.exp(-x));
    case 'gelu_pytorch_tanh':
    case 'gelu_new':
      // 0.5 * x * (1 + tanh(sqrt(2 / pi) * (x + 0.044715 * x^3)))
      return 0.5 * x * (1 + Math.tanh(Math.sqrt(2 / Math.PI) * (x + 0.044715 * x * x * x)));
    default:
      throw new Error(`reference: activation ${JSON.stringify(name)} not implemented`);
  }
}

/** y[t, o] = sum_i W[o, i] * x[t, i] + b[o]; W stored [out, in]. */
function linear(x: Float64Array, T: number, inF: number, W: Float32Array, outF: number, b?: Float32Array): Float64Array {
  if (W.length !== inF * outF) throw new Error(`reference: weight has ${W.length} values, expected ${outF}x${inF}`);
  const y = new Float64Array(T * outF);
  for (let t = 0; t < T; t++) {
    for (let o = 0; o < outF; o++) {
      let s = 0;
      for (let i = 0; i < inF; i++) s += W[o * inF + i]! * x[t * inF + i]!;
      if (b) s += b[o]!;
      y[t * outF + o] = s;
    }
  }
  return y;
}

/** RMSNorm over consecutive groups of `n` values: x / sqrt(mean(x^2) + eps) * (w or 1 + w). */
function rmsNorm(x: Float64Array, n: number, w: Float32Array, eps: number, onePlus: boolean): Float64Array {
  if (w.length !== n) throw new Error(`reference: norm weight has ${w.length} values, expected ${n}`);
  const y = new Float64Array(x.length);
  for (let r = 0; r < x.length / n; r++) {
    let ss = 0;
    for (let j = 0; j < n; j++) ss += x[r * n + j]! * x[r * n + j]!;
    const inv = 1 / Math.sqrt(ss / n + eps);
    for (let j = 0; j < n; j++) {
      const g = onePlus ? 1 + w[j]! : w[j]!;
      y[r * n + j] = x[r * n + j]! * inv * g;
    }
  }
  return y;
}

/** apply_rotary_pos_emb on [T, nHeads, headDim]: x*cos + rotate_half(x)*sin, cos/sin = cat(f, f). */
function rope(x: Float64Array, T: number, nHeads: number, headDim: number, invFreq: Float64Array): Float64Array {
  const half = headDim / 2;
  const y = new Float64Array(x.length);
  for (let t = 0; t < T; t++) {
    for (let h = 0; h < nHeads; h++) {
      const base = (t * nHeads + h) * headDim;
      for (let i = 0; i < half; i++) {
        const angle = t * invFreq[i]!;
        const cos = Math.cos(angle);
        const sin = Math.sin(angle);
        const x1 = x[base + i]!;
        const x2 = x[base + half + i]!;
        y[base + i] = x1 * cos - x2 * sin; // rotate_half puts -x2 in the first half
        y[base + half + i] = x2 * cos + x1 * sin; // and x1 in the second
      }
    }
  }
  return y;
}

function softcap(x: number, cap: number): number {
  return Math.tanh(x / cap) * cap;
}

// ---------------------------------------------------------------------------------------------
// Forward

function findPrefix(weights: RefWeights): string {
  // model.* (causal LMs), language_model.model.* (Gemma3ForConditionalGeneration before 4.52),
  // model.language_model.* (4.52+ layout).
  for (const p of ['model.', 'language_model.model.', 'model.language_model.', '']) {
    if (weights.has(`${p}embed_tokens.weight`)) return p;
  }
  throw new Error('reference: no embed_tokens.weight found');
}

/** The reference forward pass; see the file comment for the hook definitions. */
export function referenceForward(config: Record<string, any>, weights: RefWeights, ids: number[]): RefOutput {
  const s = resolveSpec(config);
  const prefix = findPrefix(weights);
  const W = (name: string): Float32Array => {
    const t = weights.get(name);
    if (!t) throw new Error(`reference: missing tensor ${name}`);
    return t.data;
  };
  const Wopt = (name: string): Float32Array | undefined => weights.get(name)?.data;

  const T = ids.length;
  const H = s.hidden;
  const hd = s.headDim;
  const nH = s.heads;
  const nKV = s.kvHeads;
  const groups = nH / nKV;
  if (!Number.isInteger(groups)) throw new Error('reference: heads not a multiple of kv heads');

  // Embedding (Gemma: times sqrt(hidden)).
  const embed = W(`${prefix}embed_tokens.weight`);
  const V = embed.length / H;
  let x = new Float64Array(T * H);
  for (let t = 0; t < T; t++) {
    const id = ids[t]!;
    if (!(id >= 0 && id < V)) throw new Error(`reference: token id ${id} out of range`);
    for (let j = 0; j < H; j++) x[t * H + j] = embed[id * H + j]! * s.embedScale;
  }

  const out: RefOutput = { resid_pre: [], attn_out: [], resid_mid: [], mlp_out: [], resid_post: [], logits: new Float64Array(0) };

  for (let l = 0; l < s.layers; l++) {
    const p = `${prefix}layers.${l}.`;
    out.resid_pre.push(x.slice());

    // --- attention
    const h = rmsNorm(x, H, W(`${p}input_layernorm.weight`), s.eps, s.onePlusNorm);
    let q = linear(h, T, H, W(`${p}self_attn.q_proj.weight`), nH * hd, s.qkvBias ? W(`${p}self_attn.q_proj.bias`) : undefined);
    let k = linear(h, T, H, W(`${p}self_attn.k_proj.weight`), nKV * hd, s.qkvBias ? W(`${p}self_attn.k_proj.bias`) : undefined);
    const v = linear(h, T, H, W(`${p}self_attn.v_proj.weight`), nKV * hd, s.qkvBias ? W(`${p}self_attn.v_proj.bias`) : undefined);
    if (s.qkNorm) {
      // q_norm / k_norm: RMSNorm over head_dim per head, before RoPE.
      q = rmsNorm(q, hd, W(`${p}self_attn.q_norm.weight`), s.eps, s.onePlusNorm);
      k = rmsNorm(k, hd, W(`${p}self_attn.k_norm.weight`), s.eps, s.onePlusNorm);
    }
    q = rope(q, T, nH, hd, s.invFreq[l]!);
    k = rope(k, T, nKV, hd, s.invFreq[l]!);

    const ctx = new Float64Array(T * nH * hd);
    const scores = new Float64Array(T);
    for (let head = 0; head < nH; head++) {
      const kvh = Math.floor(head / groups); // repeat_kv: head = kv_head * n_rep + r
      for (let tq = 0; tq < T; tq++) {
        let max = -Infinity;
        for (let tk = 0; tk < T; tk++) {
          if (!attentionAllowed(tq, tk, s.window[l]!)) {
            scores[tk] = -Infinity;
            continue;
          }
          let d = 0;
          for (let i = 0; i < hd; i++) d += q[(tq * nH + head) * hd + i]! * k[(tk * nKV + kvh) * hd + i]!;
          d *= s.scaling;
          if (s.attnSoftcap !== null) d = softcap(d, s.attnSoftcap); // before the mask, as in HF
          scores[tk] = d;
          if (d > max) max = d;
        }
        let sum = 0;
        for (let tk = 0; tk < T; tk++) {
          const e = scores[tk] === -Infinity ? 0 : Math.exp(scores[tk]! - max);
          scores[tk] = e;
          sum += e;
        }
        for (let tk = 0; tk < T; tk++) {
          const pr = scores[tk]! / sum;
          if (pr === 0) continue;
          for (let i = 0; i < hd; i++) ctx[(tq * nH + head) * hd + i] += pr * v[(tk * nKV + kvh) * hd + i]!;
        }
      }
    }
    let attnOut = linear(ctx, T, nH * hd, W(`${p}self_attn.o_proj.weight`), H, s.oBias ? W(`${p}self_attn.o_proj.bias`) : undefined);
    if (s.sandwich) attnOut = rmsNorm(attnOut, H, W(`${p}post_attention_layernorm.weight`), s.eps, s.onePlusNorm);
    out.attn_out.push(attnOut.slice());
    const mid = new Float64Array(T * H);
    for (let i = 0; i < T * H; i++) mid[i] = x[i]! + attnOut[i]!;
    out.resid_mid.push(mid.slice());

    // --- MLP: down(act(gate(x)) * up(x))
    const preMlpNorm = s.sandwich ? `${p}pre_feedforward_layernorm.weight` : `${p}post_attention_layernorm.weight`;
    const h2 = rmsNorm(mid, H, W(preMlpNorm), s.eps, s.onePlusNorm);
    const I = s.intermediate;
    const gate = linear(h2, T, H, W(`${p}mlp.gate_proj.weight`), I, s.mlpBias ? W(`${p}mlp.gate_proj.bias`) : undefined);
    const up = linear(h2, T, H, W(`${p}mlp.up_proj.weight`), I, s.mlpBias ? W(`${p}mlp.up_proj.bias`) : undefined);
    const act = new Float64Array(T * I);
    for (let i = 0; i < T * I; i++) act[i] = activation(s.act, gate[i]!) * up[i]!;
    let mlpOut = linear(act, T, I, W(`${p}mlp.down_proj.weight`), H, s.mlpBias ? W(`${p}mlp.down_proj.bias`) : undefined);
    if (s.sandwich) mlpOut = rmsNorm(mlpOut, H, W(`${p}post_feedforward_layernorm.weight`), s.eps, s.onePlusNorm);
    out.mlp_out.push(mlpOut.slice());
    x = new Float64Array(T * H);
    for (let i = 0; i < T * H; i++) x[i] = mid[i]! + mlpOut[i]!;
    out.resid_post.push(x.slice());
  }

  // --- final norm, lm_head (tied: the embedding matrix, unscaled), final softcapping
  const xf = rmsNorm(x, H, W(`${prefix}norm.weight`), s.eps, s.onePlusNorm);
  let head: Float32Array;
  if (s.tied) {
    head = embed;
  } else {
    const cand = prefix === 'language_model.model.' ? 'language_model.lm_head.weight' : 'lm_head.weight';
    const hw = Wopt(cand) ?? Wopt('lm_head.weight');
    if (!hw) throw new Error('reference: tie_word_embeddings is false but lm_head.weight is missing');
    head = hw;
  }
  const logits = linear(xf, T, H, head, head.length / H);
  if (s.finalSoftcap !== null) for (let i = 0; i < logits.length; i++) logits[i] = softcap(logits[i]!, s.finalSoftcap);
  out.logits = logits;
  return out;
}
