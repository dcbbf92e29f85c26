/**
 * The tensors a model's weights are: canonical Hugging Face names ("model.layers.0...",
 * "lm_head.weight") with their shapes, and how a checkpoint's file names map onto them. No file
 * access, so the browser bundle shares it with the Node loader (weights.ts).
 */
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
export const IGNORED = /(^|\.)rotary_emb\.inv_freq$/;

export function canonicalName(fileName: string, s: ModelSpec): string | null {
  for (const p of s.weightPrefixes) {
    if (fileName.startsWith(p)) return `model.${fileName.slice(p.length)}`;
  }
  if (fileName === 'lm_head.weight') return fileName;
  if (s.weightPrefixes[0] !== 'model.' && (fileName === 'language_model.lm_head.weight')) return 'lm_head.weight';
  return null;
}

