/**
 * Builds the forward graph of a decoder-only transformer from a ModelSpec. One builder serves
 * every family: llama, mistral, qwen2, qwen3, gemma2 and gemma3 differ only in flags the spec
 * resolved (norm form, sandwich norms, q/k norms, softcaps, sliding layers, rope variants).
 *
 * The residual stream is kept 2-D, [N = B*T, D], so every projection is one Gemm with the
 * Hugging Face [out, in] weight used as is (transB) — no transposed copies of weights.
 *
 * Hook points (TransformerLens names) sit on the residual stream (resid_pre, resid_mid,
 * resid_post) and on what each sub-block adds to it (attn_out: o_proj's output, after Gemma's
 * post_attention_layernorm; mlp_out: down_proj's output, after Gemma's post_feedforward_layernorm).
 * At each hook the order is: ablate (project out directions), then steer (add a vector), then
 * capture; the captured value is what flows on downstream (for attn_out/mlp_out: into the add).
 */
import { Graph, type Value } from '../graph/ir.js';
import type { ModelSpec } from '../model/config.js';
import { hookName, type HookKind } from '../hooks/names.js';

export interface GraphVariant {
  /** Hook names to return as outputs. */
  capture: string[];
  /** Hook names that take a steering vector input `steer.<hook>` [D] (scaled already). */
  steer: string[];
  /** Hook name -> number of orthonormal directions to project out (input `ablate.<hook>` [K, D]). */
  ablate: [string, number][];
  /**
   * Take the KV cache as inputs (IO.pastKey/pastValue, masked per slot by IO.maskCache) and return
   * only this call's keys and values (IO.presentKey/presentValue). The cache stays the caller's
   * buffer: onnxruntime-node copies every output into a new JS buffer (and feeds inputs without a
   * copy), so handing the whole cache back each step cost ~15% of a batch-32 decode step.
   */
  kvCache: boolean;
  /** Which logits to return. */
  logits: 'none' | 'last' | 'all';
  /**
   * Also return `probs` = softmax(logits × inv_temperature) over the vocabulary, the input
   * `inv_temperature` [1] fed per call, and each row's sum `probs_sum`; needs logits 'last'.
   * Sampling then draws from probabilities ORT computed (vectorised, on every thread) instead of
   * B × V exps in JS, which at batch 32 cost a quarter of a decode step.
   */
  probs?: boolean;
  /**
   * With probs: leave the logits inside the graph (return probs alone). Sampling reads only the
   * probabilities, and every output is copied into a new JS buffer: [B, V] floats a step.
   */
  probsOnly?: boolean;
  /** Stop after this block (default: the last); only valid with logits 'none'. */
  lastLayer?: number;
  /**
   * Start at this block, from the residual stream fed as `resid_in` [B, T, D] (for block 0: the
   * embedding rows, already scaled); the graph then has no input_ids and no embedding table. The
   * memory-bounded runner (runtime/layerwise.ts) runs a model one layer group at a time this way.
   */
  firstLayer?: number;
  /** Also return the last block's output as `resid_out` [B*T, D] (the next group's resid_in). */
  residOut?: boolean;
  /** Shapes of the weights the checkpoint has (optional biases are looked up here). */
  weightShapes: Map<string, number[]>;
  /**
   * Low-rank adapters: projection name (e.g. "model.layers.21.mlp.down_proj") -> rank. Inputs
   * `<name>.lora_A.weight` [r, in] and `<name>.lora_B.weight` [out, r] (PEFT's layout); the
   * projection becomes W x + scale · B A x with scale fed as `<name>.lora_scale` [1].
   */
  lora?: [string, number][];
  /**
   * Values computed in the graph that stand in for the inputs of these names (rope tables, masks,
   * steering and ablation inputs): the universal hooked graph computes them from an attention
   * mask and per-layer tensors (see export/hooked-graph.ts). Needs `graph`.
   */
  provided?: Map<string, Value>;
  /** Build into this graph (which already holds the provided values' nodes). */
  graph?: Graph;
  /**
   * How the linear layers (q/k/v/o, gate/up/down; the LM head too with `head`) are computed:
   * unset, Gemm on the fp32 weight inputs; set, MatMulNBits (com.microsoft) on the block-quantised
   * inputs IO.quant(weight) in runtime/quantize.ts's layout (the LM head's are IO.quant('lm_head.weight'),
   * tied or not). Inference only (no gradient). `embedDtype`: the embedding table is this 16-bit
   * type (its rows are gathered, then cast to float: the same values as an fp32 table holding
   * them); needs `head` (the table is then used by the Gather only). `headRows`: the quantised LM
   * head runs as one MatMulNBits per this many vocabulary rows (inputs IO.quant(IO.headRows(n0))),
   * logits concatenated: ORT prepacks one node's weights at a time, so a large head's codes are
   * not all mapped at once on top of everything already packed. The same logits.
   */
  projections?: { bits: 4 | 8; blockSize: number; accuracyLevel: number; head: boolean; embedDtype?: 'bfloat16' | 'float16'; headRows?: number };
}

/** Graph input/output names the runtime feeds and reads. */
export const IO = {
  ids: 'input_ids',
  residIn: 'resid_in',
  residOut: 'resid_out',
  cos: 'rope_cos',
  sin: 'rope_sin',
  cosLocal: 'rope_cos_local',
  sinLocal: 'rope_sin_local',
  mask: 'attn_mask',
  maskLocal: 'attn_mask_local',
  steerMask: 'steer_mask',
  logits: 'logits',
  probs: 'probs',
  /** With probs: each row's sum of probs [B, 1] (sampling's total mass, summed on ORT's threads). */
  probsSum: 'probs_sum',
  invTemperature: 'inv_temperature',
  /** kvCache: the masks of the cache's C slots, [B, 1, 1, T, C] (attn_mask is then the new positions', [B, 1, 1, T, T]). */
  maskCache: 'attn_mask_cache',
  maskCacheLocal: 'attn_mask_cache_local',
  /** The KV cache's C slots (those not yet written masked): keys transposed, [B, KV, head_dim, C]; values [B, KV, C, head_dim]. */
  pastKey: (l: number) => `past.${l}.key`,
  pastValue: (l: number) => `past.${l}.value`,
  /** This call's T positions, to be written into the cache: keys [B, KV, head_dim, T], values [B, KV, T, head_dim]. */
  presentKey: (l: number) => `present.${l}.key`,
  presentValue: (l: number) => `present.${l}.value`,
  steer: (hook: string) => `steer.${hook}`,
  ablate: (hook: string) => `ablate.${hook}`,
  loraA: (proj: string) => `${proj}.lora_A.weight`,
  loraB: (proj: string) => `${proj}.lora_B.weight`,
  loraScale: (proj: string) => `${proj}.lora_scale`,
  /** A quantised weight's inputs (GraphVariant.projections): codes, scales, zero points. */
  quant: (weight: string) => ({ weight: `${weight}.q`, scales: `${weight}.scales`, zeroPoints: `${weight}.zero_points` }),
  /** The quantised LM head's rows from n0 on (GraphVariant.projections.headRows), as a weight name for IO.quant. */
  headRows: (n0: number) => `lm_head.weight.rows${n0}`,
} as const;

const B = 'batch';
const T = 'seq';
const N = 'tokens';
const S = 'total';
const C = 'cache';

export function buildDecoderGraph(spec: ModelSpec, v: GraphVariant): Graph {
  const last = v.lastLayer ?? spec.nLayers - 1;
  const first = v.firstLayer ?? 0;
  if (v.logits !== 'none' && last !== spec.nLayers - 1) throw new Error('logits need every layer');
  if (v.probs && v.logits !== 'last') throw new Error("probs need logits 'last'");
  if (v.probsOnly && !v.probs) throw new Error('probsOnly needs probs');
  const g = v.graph ?? new Graph(`emlens_${spec.family}`);
  // An input of the decoder, unless the caller computes it in the graph.
  const inp = (name: string, dtype: 'float32', shape: (number | string)[]): Value => v.provided?.get(name) ?? g.input(name, dtype, shape);
  const D = spec.dModel;
  const hd = spec.headDim;
  const H = spec.nHeads;
  const KV = spec.nKvHeads;
  const G = H / KV;

  const weights = new Map<string, Value>();
  const W = (name: string): Value => {
    let w = weights.get(name);
    if (!w) {
      const shape = v.weightShapes.get(name);
      if (!shape) throw new Error(`weight ${name} missing`);
      w = g.input(name, 'float32', shape);
      weights.set(name, w);
    }
    return w;
  };
  const optW = (name: string): Value | undefined => (v.weightShapes.has(name) ? W(name) : undefined);

  const residIn = v.firstLayer !== undefined ? g.input(IO.residIn, 'float32', [B, T, D]) : undefined;
  const ids = residIn ? undefined : (v.provided?.get(IO.ids) ?? g.input(IO.ids, 'int64', [B, T]));
  const bt = residIn
    ? g.add('Slice', [g.add('Shape', [residIn])], { starts: [0], ends: [2], axes: [0] }, 'bt')
    : g.add('Shape', [ids!], {}, 'bt');
  const dynShape = (tail: number[]) => g.add('Concat', [bt, g.ints(tail)], { axis: 0 }, 'shape');

  const anySliding = spec.layerTypes.slice(first, last + 1).includes('sliding');
  const anyFull = spec.layerTypes.slice(first, last + 1).includes('full');
  const ropeTable = (cosName: string, sinName: string) => ({
    // [B, T, hd] -> [B, T, 1, hd] to broadcast over heads
    cos: g.add('Unsqueeze', [inp(cosName, 'float32', [B, T, hd])], { axes: [2] }),
    sin: g.add('Unsqueeze', [inp(sinName, 'float32', [B, T, hd])], { axes: [2] }),
  });
  const ropeGlobal = ropeTable(IO.cos, IO.sin);
  const ropeLocal = spec.ropeLocal && anySliding ? ropeTable(IO.cosLocal, IO.sinLocal) : ropeGlobal;
  // With a KV cache the masks are the new positions' ([., T]); the cache's slots have their own.
  const keys = v.kvCache ? T : S;
  const maskFull = anyFull ? inp(IO.mask, 'float32', [B, 1, 1, T, keys]) : undefined;
  const maskLocal = anySliding ? inp(IO.maskLocal, 'float32', [B, 1, 1, T, keys]) : undefined;
  const maskCacheFull = v.kvCache && anyFull ? inp(IO.maskCache, 'float32', [B, 1, 1, T, C]) : undefined;
  const maskCacheLocal = v.kvCache && anySliding ? inp(IO.maskCacheLocal, 'float32', [B, 1, 1, T, C]) : undefined;

  const steerSet = new Set(v.steer);
  const ablateMap = new Map(v.ablate);
  const captureSet = new Set(v.capture);
  const steerMask = steerSet.size ? inp(IO.steerMask, 'float32', [N, 1]) : undefined;

  const loras = new Map(v.lora ?? []);
  // x [., K] · dequant(W)ᵀ for a weight W [N, K] stored quantised (v.projections).
  const quantMatMul = (x: Value, weight: string, shape: number[], name?: string): Value => {
    const p = v.projections!;
    const [n, k] = shape as [number, number];
    const blocks = Math.ceil(k / p.blockSize);
    const io = IO.quant(weight);
    const qw = g.input(io.weight, 'uint8', [n, blocks, (p.blockSize * p.bits) / 8]);
    const scales = g.input(io.scales, 'float32', [n * blocks]);
    const zp = g.input(io.zeroPoints, 'uint8', [n * Math.ceil((blocks * p.bits) / 8)]);
    return g.add('MatMulNBits', [x, qw, scales, zp], { K: k, N: n, bits: p.bits, block_size: p.blockSize, accuracy_level: p.accuracyLevel }, name);
  };
  const linear = (x: Value, name: string, bias = true): Value => {
    const b = bias ? optW(`${name}.bias`) : undefined;
    const wShape = v.weightShapes.get(`${name}.weight`);
    if (!wShape) throw new Error(`weight ${name}.weight missing`);
    let y: Value;
    if (v.projections) {
      y = quantMatMul(x, `${name}.weight`, wShape);
      if (b) y = g.add('Add', [y, b]);
    } else y = g.add('Gemm', b ? [x, W(`${name}.weight`), b] : [x, W(`${name}.weight`)], { transB: 1 });
    const r = loras.get(name);
    if (r === undefined) return y;
    const [out, inn] = wShape;
    const A = g.input(IO.loraA(name), 'float32', [r, inn!]);
    const Bm = g.input(IO.loraB(name), 'float32', [out!, r]);
    const scale = g.input(IO.loraScale(name), 'float32', [1]);
    const delta = g.add('Gemm', [g.add('Gemm', [x, A], { transB: 1 }), Bm], { transB: 1 });
    return g.add('Add', [y, g.add('Mul', [delta, scale])]);
  };

  const rmsNorm = (x: Value, weight: Value): Value => {
    const ms = g.add('ReduceMean', [g.add('Mul', [x, x])], { axes: [-1], keepdims: 1 });
    const inv = g.add('Reciprocal', [g.add('Sqrt', [g.add('Add', [ms, g.scalar(spec.rmsEps)])])]);
    const w = spec.normPlusOne ? g.add('Add', [weight, g.scalar(1)]) : weight;
    return g.add('Mul', [g.add('Mul', [x, inv]), w]);
  };

  const geluTanh = (x: Value): Value => {
    const x3 = g.add('Mul', [g.add('Mul', [x, x]), x]);
    const inner = g.add('Mul', [g.add('Add', [x, g.add('Mul', [x3, g.scalar(0.044715)])]), g.scalar(Math.sqrt(2 / Math.PI))]);
    return g.add('Mul', [g.add('Mul', [x, g.scalar(0.5)]), g.add('Add', [g.add('Tanh', [inner]), g.scalar(1)])]);
  };

  const rope = (x: Value, table: { cos: Value; sin: Value }): Value => {
    // x * cos + rotate_half(x) * sin, rotate_half(x) = [-x2, x1]
    const rank = x.shape.length;
    const half = hd / 2;
    const x1 = g.add('Slice', [x], { starts: [0], ends: [half], axes: [rank - 1] });
    const x2 = g.add('Slice', [x], { starts: [half], ends: [hd], axes: [rank - 1] });
    const rot = g.add('Concat', [g.add('Neg', [x2]), x1], { axis: -1 });
    return g.add('Add', [g.add('Mul', [x, table.cos]), g.add('Mul', [rot, table.sin])]);
  };

  const hook = (x: Value, layer: number, kind: HookKind): Value => {
    const name = hookName(layer, kind);
    let h = x;
    const k = ablateMap.get(name);
    if (k !== undefined) {
      const R = inp(IO.ablate(name), 'float32', [k, D]);
      const coef = g.add('Gemm', [h, R], { transB: 1 }); // [N, K]
      h = g.add('Sub', [h, g.add('Gemm', [coef, R])]);
    }
    if (steerSet.has(name)) {
      const vec = inp(IO.steer(name), 'float32', [D]);
      h = g.add('Add', [h, g.add('Mul', [steerMask!, vec])]);
    }
    if (captureSet.has(name)) h = g.output(h, name);
    return h;
  };

  let x: Value;
  if (residIn) x = g.add('Reshape', [residIn], { shape: [-1, D] });
  else {
    const half = v.projections?.embedDtype;
    if (half && !v.projections!.head) throw new Error('a 16-bit embedding table needs the quantised LM head');
    const table = half ? g.input('model.embed_tokens.weight', half, v.weightShapes.get('model.embed_tokens.weight')!) : W('model.embed_tokens.weight');
    let embed = g.add('Gather', [table, ids!], { axis: 0 }); // [B, T, D]
    if (half) embed = g.add('Cast', [embed], { to: 'float32' });
    x = g.add('Reshape', [embed], { shape: [-1, D] });
    if (spec.embedScale !== null) x = g.add('Mul', [x, g.scalar(spec.embedScale)]);
  }

  for (let l = first; l <= last; l++) {
    const p = `model.layers.${l}.`;
    const sliding = spec.layerTypes[l] === 'sliding';
    x = hook(x, l, 'resid_pre');

    // --- attention ---
    const hn = rmsNorm(x, W(`${p}input_layernorm.weight`));
    let q = g.add('Reshape', [linear(hn, `${p}self_attn.q_proj`), dynShape([H, hd])], { dims: [B, T, H, hd] });
    let k = g.add('Reshape', [linear(hn, `${p}self_attn.k_proj`), dynShape([KV, hd])], { dims: [B, T, KV, hd] });
    const vv = g.add('Reshape', [linear(hn, `${p}self_attn.v_proj`), dynShape([KV, hd])], { dims: [B, T, KV, hd] });
    if (spec.qkNorm) {
      q = rmsNorm(q, W(`${p}self_attn.q_norm.weight`));
      k = rmsNorm(k, W(`${p}self_attn.k_norm.weight`));
    }
    const table = sliding ? ropeLocal : ropeGlobal;
    q = rope(q, table);
    k = rope(k, table);
    // Scale q rather than the [T, S] scores: fewer multiplies, same result.
    q = g.add('Mul', [q, g.scalar(spec.attnScale)]);
    // q: [B,T,H,hd] -> [B,KV,G,T,hd]; k, v: [B,T,KV,hd] -> [B,KV,T,hd]
    q = g.add('Transpose', [g.add('Reshape', [q, dynShape([KV, G, hd])], { dims: [B, T, KV, G, hd] })], { perm: [0, 2, 3, 1, 4] });
    // Keys are kept transposed, [B,KV,hd,S], as the scores' MatMul takes them: the cache is then
    // never transposed whole, only each call's new positions.
    const kt = g.add('Transpose', [k], { perm: [0, 2, 3, 1] }, v.kvCache ? IO.presentKey(l) : undefined);
    const vt = g.add('Transpose', [vv], { perm: [0, 2, 1, 3] }, v.kvCache ? IO.presentValue(l) : undefined);
    // The Transposes' own values are the outputs: g.output of a value named otherwise routes it
    // through an Identity, a copy.
    if (v.kvCache) {
      g.output(kt);
      g.output(vt);
    }
    // GQA without copies: a unit group axis on k/v lets MatMul broadcast over the G query heads.
    const scoresOf = (keys: Value, mask: Value): Value => {
      let s = g.add('MatMul', [q, g.add('Unsqueeze', [keys], { axes: [2] })]); // [B,KV,G,T,S]
      if (spec.attnSoftcap !== null) {
        const c = spec.attnSoftcap;
        s = g.add('Mul', [g.add('Tanh', [g.add('Mul', [s, g.scalar(1 / c)])]), g.scalar(c)]);
      }
      return g.add('Add', [s, mask]);
    };
    const scores = scoresOf(kt, sliding ? maskLocal! : maskFull!);
    let ctx: Value;
    if (!v.kvCache) ctx = g.add('MatMul', [g.add('Softmax', [scores], { axis: -1 }), g.add('Unsqueeze', [vt], { axes: [2] })]); // [B,KV,G,T,hd]
    else {
      // Softmax over the cache's slots and the new positions together, without concatenating
      // the cache: a shared max, exps of each part, one denominator.
      const cacheK = g.input(IO.pastKey(l), 'float32', [B, KV, hd, C]);
      const cacheV = g.input(IO.pastValue(l), 'float32', [B, KV, C, hd]);
      const cached = scoresOf(cacheK, sliding ? maskCacheLocal! : maskCacheFull!);
      const maxOf = (x: Value) => g.add('ReduceMax', [x], { axes: [-1], keepdims: 1 });
      const m = maxOf(g.add('Concat', [maxOf(cached), maxOf(scores)], { axis: -1 }));
      const eCache = g.add('Exp', [g.add('Sub', [cached, m])]);
      const eNew = g.add('Exp', [g.add('Sub', [scores, m])]);
      const sumOf = (x: Value) => g.add('ReduceSum', [x], { axes: [-1], keepdims: 1 });
      const den = g.add('Add', [sumOf(eCache), sumOf(eNew)]);
      const num = g.add('Add', [
        g.add('MatMul', [eCache, g.add('Unsqueeze', [cacheV], { axes: [2] })]),
        g.add('MatMul', [eNew, g.add('Unsqueeze', [vt], { axes: [2] })]),
      ]);
      ctx = g.add('Div', [num, den]);
    }
    const merged = g.add('Reshape', [g.add('Transpose', [ctx], { perm: [0, 3, 1, 2, 4] })], { shape: [-1, H * hd] });
    let attn = linear(merged, `${p}self_attn.o_proj`);
    if (spec.sandwichNorms) attn = rmsNorm(attn, W(`${p}post_attention_layernorm.weight`));
    attn = hook(attn, l, 'attn_out');
    x = g.add('Add', [x, attn]);
    x = hook(x, l, 'resid_mid');

    // --- MLP ---
    const mn = rmsNorm(x, W(spec.sandwichNorms ? `${p}pre_feedforward_layernorm.weight` : `${p}post_attention_layernorm.weight`));
    const gate = linear(mn, `${p}mlp.gate_proj`);
    // gelu_tanh as its formula 0.5·x·(1 + tanh(√(2/π)·(x + 0.044715·x³))), not ONNX Gelu(approximate=
    // 'tanh'): onnxruntime-web's WebGPU kernel for Gelu drops the attribute and computes the erf GELU.
    const act = spec.act === 'silu' ? g.add('Mul', [gate, g.add('Sigmoid', [gate])]) : geluTanh(gate);
    let mlp = linear(g.add('Mul', [act, linear(mn, `${p}mlp.up_proj`)]), `${p}mlp.down_proj`);
    if (spec.sandwichNorms) mlp = rmsNorm(mlp, W(`${p}post_feedforward_layernorm.weight`));
    mlp = hook(mlp, l, 'mlp_out');
    x = g.add('Add', [x, mlp]);
    x = hook(x, l, 'resid_post');
  }
  if (v.residOut) g.output(x, IO.residOut);

  if (v.logits !== 'none') {
    let h = x;
    if (v.logits === 'last') {
      const seq = g.add('Reshape', [h, dynShape([D])], { dims: [B, T, D] });
      h = g.add('Reshape', [g.add('Slice', [seq], { starts: [-1], ends: [2 ** 62], axes: [1] })], { shape: [-1, D] });
    }
    h = rmsNorm(h, W('model.norm.weight'));
    // The last node's value is named as the output, so no Identity copies [B, V] every step.
    const headName = spec.tiedEmbeddings ? 'model.embed_tokens.weight' : 'lm_head.weight';
    const c = spec.finalSoftcap;
    const project = (name?: string) => {
      if (!v.projections?.head) return g.add('Gemm', [h, W(headName)], { transB: 1 }, name);
      const [V, K] = v.weightShapes.get(headName)! as [number, number];
      const rows = v.projections.headRows ?? V;
      if (rows >= V) return quantMatMul(h, 'lm_head.weight', [V, K], name);
      const parts: Value[] = [];
      for (let n0 = 0; n0 < V; n0 += rows) parts.push(quantMatMul(h, IO.headRows(n0), [Math.min(rows, V - n0), K]));
      return g.add('Concat', parts, { axis: 1 }, name);
    };
    const logits =
      c === null
        ? project(IO.logits)
        : g.add('Mul', [g.add('Tanh', [g.add('Mul', [project(), g.scalar(1 / c)])]), g.scalar(c)], {}, IO.logits);
    if (!v.probsOnly) g.output(logits);
    if (v.probs) {
      const probs = g.output(g.add('Softmax', [g.add('Mul', [logits, g.input(IO.invTemperature, 'float32', [1])])], { axis: -1 }, IO.probs));
      g.output(g.add('ReduceSum', [probs], { axes: [-1], keepdims: 1 }, IO.probsSum));
    }
  }
  return g;
}
