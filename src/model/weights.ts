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

export { canonicalName, expectedTensors, IGNORED, type Weight, type Weights } from './tensor-names.js';
import { canonicalName, expectedTensors, IGNORED, type Weights } from './tensor-names.js';

export interface CheckpointPlan {
  index: WeightIndex;
  /** canonical name -> tensor in the file */
  tensors: Map<string, StTensorInfo>;
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
