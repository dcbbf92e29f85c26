/** What `emlens inspect` prints: the facts of a model a researcher checks before running it. */
import type { ModelSpec } from '../model/config.js';
import { planLayers } from '../runtime/layerwise.js';
import { bitsOf, blockSizeOf, quantLayout } from '../runtime/quantize.js';
import { DEFAULT_BATCH_TOKENS, defaultChunkRows, RUNTIME_BYTES } from '../runtime/memory.js';
import { parameterCount, type ModelInfo } from './model.js';

/** The projections quantisation covers: every block's seven, and the LM head (runtime/weight-store.ts quantises a tied one from the embedding table too). */
const LINEAR = /^(model\.layers\.\d+\.(self_attn\.[qkvo]_proj|mlp\.(gate|up|down)_proj)|lm_head)\.weight$/;
const EMBED = 'model.embed_tokens.weight';
/** Rows `inspect` assumes for the bounded figure: the default --batch-tokens filled with rows of this many tokens. */
export const INSPECT_ROW_TOKENS = 512;

export interface MemoryFigures {
  /** Every weight as fp32, held at once (LoadedModel.load). */
  fp32: number;
  /** Peak of a memory-bounded extraction of every layer's resid_post, one layer at a time (rows of INSPECT_ROW_TOKENS). */
  bounded: number;
  /**
   * Weights only, as the decode store holds them: quantised projections and LM head (tied or
   * not), the embedding table in the checkpoint's 16-bit dtype (BF16/F16; else fp32), norms and
   * biases as fp32.
   */
  int8: number;
  int4: number;
}

const numel = (s: readonly number[]) => s.reduce((a, b) => a * b, 1);

/**
 * MatMulNBits bytes of one [out, in] weight as `--weights` stores it (runtime/quantize.ts): packed
 * codes per block of the mode's size along the input (padded to whole blocks), an fp32 scale per
 * block, zero points packed per row.
 */
export function quantizedBytes(shape: readonly number[], mode: 'int8' | 'int4'): number {
  const [out, inn] = shape as [number, number];
  const { blocks, blob, zpRow } = quantLayout(inn, bitsOf(mode), blockSizeOf(mode));
  return out * (blocks * (blob + 4) + zpRow);
}

/**
 * The memory each way of running the model needs, from its tensors' canonical names and shapes;
 * `embedDtype`: the embedding table's dtype on disk (safetensors' name, e.g. BF16).
 */
export function memoryFigures(spec: ModelSpec, tensors: Map<string, readonly number[]>, embedDtype = 'F32'): MemoryFigures {
  let fp32 = 0;
  let rest = 0;
  const q = { i8: 0, i4: 0 };
  const layerBytes = new Array<number>(spec.nLayers).fill(0);
  for (const [name, shape] of tensors) {
    const n = numel(shape);
    fp32 += 4 * n;
    const m = /^model\.layers\.(\d+)\./.exec(name);
    if (m) layerBytes[Number(m[1])]! += 4 * n;
    if (LINEAR.test(name)) {
      q.i8 += quantizedBytes(shape, 'int8');
      q.i4 += quantizedBytes(shape, 'int4');
    } else if (name === EMBED) rest += (embedDtype === 'BF16' || embedDtype === 'F16' ? 2 : 4) * n;
    else rest += 4 * n;
  }
  const embed = tensors.get(EMBED);
  if (spec.tiedEmbeddings && embed) {
    q.i8 += quantizedBytes(embed, 'int8');
    q.i4 += quantizedBytes(embed, 'int4');
  }
  // The bounded figure: every layer's resid_post at the default chunk and batch size, rows of
  // INSPECT_ROW_TOKENS tokens, one layer at a time, residuals held in memory.
  const L = spec.nLayers;
  const chunkRows = defaultChunkRows(L, spec.dModel);
  const perBatch = Math.max(1, Math.floor(DEFAULT_BATCH_TOKENS / INSPECT_ROW_TOKENS));
  const batches = Array.from({ length: Math.ceil(chunkRows / perBatch) }, (_, i) => ({ rows: Math.min(perBatch, chunkRows - i * perBatch), seq: INSPECT_ROW_TOKENS }));
  const plan = planLayers(spec, {
    maxMemory: Infinity,
    baseline: RUNTIME_BYTES,
    reserved: chunkRows * L * spec.dModel * 4,
    layers: L,
    layerBytes: Math.max(...layerBytes),
    hooksPerLayer: 1,
    calls: [batches],
    layersPerGroup: 1,
    spool: false,
  });
  return {
    fp32,
    bounded: plan.peakBytes,
    int8: rest + q.i8,
    int4: rest + q.i4,
  };
}

const gib = (n: number) => `${(n / 2 ** 30).toFixed(3)} GiB`;

export function describeModel(m: ModelInfo): Record<string, string | number | boolean | object> {
  const s = m.spec;
  const params = parameterCount(m);
  const sliding = s.layerTypes.filter((t) => t === 'sliding').length;
  const mem = memoryFigures(s, new Map([...m.plan.tensors].map(([k, t]) => [k, t.shape])), m.plan.tensors.get(EMBED)?.dtype);
  return {
    model: m.source,
    folder: m.dir,
    family: s.family,
    model_type: s.modelType,
    layers: s.nLayers,
    d_model: s.dModel,
    heads: s.nHeads,
    kv_heads: s.nKvHeads,
    head_dim: s.headDim,
    ffn: s.ffn,
    vocab: s.vocab,
    parameters: params,
    dtype_on_disk: [...m.plan.index.dtypes].join(','),
    bytes_on_disk: m.plan.index.totalBytes,
    fp32_memory_bytes: mem.fp32,
    fp32_memory: gib(mem.fp32),
    bounded_memory_bytes: mem.bounded,
    bounded_memory: `${gib(mem.bounded)} (extract, every layer, one layer in memory at a time, --batch-tokens ${DEFAULT_BATCH_TOKENS} of ${INSPECT_ROW_TOKENS}-token rows)`,
    int8_memory_bytes: mem.int8,
    int8_memory: `${gib(mem.int8)} (weights, --weights int8)`,
    int4_memory_bytes: mem.int4,
    int4_memory: `${gib(mem.int4)} (weights, --weights int4)`,
    tied_embeddings: s.tiedEmbeddings,
    sliding_layers: sliding ? `${sliding} of ${s.nLayers} (window ${s.slidingWindow})` : 'none',
    rope: s.ropeLocal ? { global: s.rope, local: s.ropeLocal } : s.rope,
    chat_template: m.tokenizer?.hasChatTemplate ?? false,
  };
}
