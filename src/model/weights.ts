/**
 * Checkpoint tensors -> fp32 weights under canonical Hugging Face names ("model.layers.0...",
 * "lm_head.weight"). Every name and shape is checked against the spec from the headers alone,
 * before a byte of data is read, so a lying file fails fast with its name and tensor.
 */
import { basename } from 'node:path';
import { EmlensError } from '../errors.js';
import type { StTensorInfo } from '../io/safetensors/header.js';
import { readTensorF32 } from '../io/safetensors/read.js';
import { openWeights, type WeightIndex } from './weight-files.js';
import type { ModelSpec } from './config.js';

export interface Weight {
  shape: number[];
  data: Float32Array;
}
export type Weights = Map<string, Weight>;

/** Canonical name -> expected shape; optional tensors (biases) listed separately. */
export function expectedTensors(s: ModelSpec): { required: Map<string, number[]>; optional: Map<string, number[]> } {
  const req = new Map<string, number[]>();
  const opt = new Map<string, number[]>();
  const D = s.dModel;
  const q = s.nHeads * s.headDim;
  const kv = s.nKvHeads * s.headDim;
  req.set('model.embed_tokens.weight', [s.vocab, D]);
  for (let l = 0; l < s.nLayers; l++) {
    const p = `model.layers.${l}.`;
    req.set(`${p}input_layernorm.weight`, [D]);
    req.set(`${p}post_attention_layernorm.weight`, [D]);
    if (s.sandwichNorms) {
      req.set(`${p}pre_feedforward_layernorm.weight`, [D]);
      req.set(`${p}post_feedforward_layernorm.weight`, [D]);
    }
    req.set(`${p}self_attn.q_proj.weight`, [q, D]);
    req.set(`${p}self_attn.k_proj.weight`, [kv, D]);
    req.set(`${p}self_attn.v_proj.weight`, [kv, D]);
    req.set(`${p}self_attn.o_proj.weight`, [D, q]);
    opt.set(`${p}self_attn.q_proj.bias`, [q]);
    opt.set(`${p}self_attn.k_proj.bias`, [kv]);
    opt.set(`${p}self_attn.v_proj.bias`, [kv]);
    opt.set(`${p}self_attn.o_proj.bias`, [D]);
    if (s.qkNorm) {
      req.set(`${p}self_attn.q_norm.weight`, [s.headDim]);
      req.set(`${p}self_attn.k_norm.weight`, [s.headDim]);
    }
    req.set(`${p}mlp.gate_proj.weight`, [s.ffn, D]);
    req.set(`${p}mlp.up_proj.weight`, [s.ffn, D]);
    req.set(`${p}mlp.down_proj.weight`, [D, s.ffn]);
    opt.set(`${p}mlp.gate_proj.bias`, [s.ffn]);
    opt.set(`${p}mlp.up_proj.bias`, [s.ffn]);
    opt.set(`${p}mlp.down_proj.bias`, [D]);
  }
  req.set('model.norm.weight', [D]);
  (s.tiedEmbeddings ? opt : req).set('lm_head.weight', [s.vocab, D]);
  return { required: req, optional: opt };
}

/** Tensors that checkpoints carry but the forward pass derives itself. */
const IGNORED = /(^|\.)rotary_emb\.inv_freq$/;

export interface CheckpointPlan {
  index: WeightIndex;
  /** canonical name -> tensor in the file */
  tensors: Map<string, StTensorInfo>;
}

function canonicalName(fileName: string, s: ModelSpec): string | null {
  for (const p of s.weightPrefixes) {
    if (fileName.startsWith(p)) return `model.${fileName.slice(p.length)}`;
  }
  if (fileName === 'lm_head.weight') return fileName;
  if (s.weightPrefixes[0] !== 'model.' && (fileName === 'language_model.lm_head.weight')) return 'lm_head.weight';
  return null;
}

/** Maps and validates a checkpoint folder's tensors against the spec (headers only). */
export function planCheckpoint(dir: string, s: ModelSpec): CheckpointPlan {
  const index = openWeights(dir);
  const { required, optional } = expectedTensors(s);
  const tensors = new Map<string, StTensorInfo>();
  for (const [name, info] of index.tensors) {
    if (IGNORED.test(name)) continue;
    const canon = canonicalName(name, s);
    if (canon === null) {
      // Another tower of a multimodal checkpoint: not ours to check.
      if (s.weightPrefixes[0] !== 'model.') continue;
      throw new EmlensError(`${basename(info.file)}: unexpected tensor "${name}" for a ${s.modelType} model`);
    }
    const shape = required.get(canon) ?? optional.get(canon);
    if (!shape) throw new EmlensError(`${basename(info.file)}: unexpected tensor "${name}" for a ${s.modelType} model with ${s.nLayers} layers`);
    if (shape.length !== info.shape.length || shape.some((d, i) => d !== info.shape[i])) {
      throw new EmlensError(
        `${basename(info.file)}: tensor "${name}" has shape [${info.shape.join(', ')}], config.json implies [${shape.join(', ')}]`,
      );
    }
    if (!['F32', 'F16', 'BF16'].includes(info.dtype)) {
      throw new EmlensError(`${basename(info.file)}: tensor "${name}" has dtype ${info.dtype}; weights must be F32, F16 or BF16`);
    }
    if (tensors.has(canon)) throw new EmlensError(`${basename(info.file)}: tensor "${name}" appears twice (as ${canon})`);
    tensors.set(canon, info);
  }
  for (const name of required.keys()) {
    if (!tensors.has(name)) throw new EmlensError(`${dir}: checkpoint lacks tensor "${name}" that config.json requires`);
  }
  return { index, tensors };
}

/** Reads every planned tensor as fp32; a NaN or Inf anywhere is an error (file, tensor, index). */
export function loadWeights(plan: CheckpointPlan, onTensor?: (done: number, total: number) => void): Weights {
  const out: Weights = new Map();
  let i = 0;
  for (const [name, info] of plan.tensors) {
    const data = readTensorF32(info, { finite: true });
    out.set(name, { shape: info.shape, data });
    onTensor?.(++i, plan.tensors.size);
  }
  return out;
}
