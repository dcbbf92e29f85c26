/**
 * Direction files: safetensors with one float32 [d_model] tensor per covered layer, named by hook
 * (`blocks.{l}.hook_resid_post`), provenance as string metadata. The same layout holds mean-diff
 * directions, trained steering vectors and anything else that lives on the residual stream.
 */
import { basename } from 'node:path';
import { existsSync } from 'node:fs';
import { EmlensError } from '../errors.js';
import { parseHookName, type HookKind } from '../hooks/names.js';
import { readSafetensorsHeader } from './safetensors/header.js';
import { readTensorF32 } from './safetensors/read.js';
import { type StWriteTensor, writeSafetensors } from './safetensors/write.js';

export interface DirectionFile {
  file: string;
  /** hook kind shared by every tensor of the file */
  kind: HookKind;
  /** layer -> vector */
  layers: Map<number, Float32Array>;
  metadata: Record<string, string>;
}

export function readDirectionFile(file: string, model?: { dModel: number; nLayers: number }): DirectionFile {
  if (!existsSync(file)) throw new EmlensError(`${file}: no such direction file`);
  const header = readSafetensorsHeader(file);
  const layers = new Map<number, Float32Array>();
  let kind: HookKind | null = null;
  const name = basename(file);
  for (const [tname, info] of header.tensors) {
    const h = parseHookName(tname);
    if (!h) throw new EmlensError(`${name}: tensor "${tname}" is not named blocks.L.hook_resid_{pre,mid,post}`);
    if (kind && kind !== h.kind) throw new EmlensError(`${name}: mixes hook kinds (${kind} and ${h.kind})`);
    kind = h.kind;
    if (info.shape.length !== 1) throw new EmlensError(`${name}: tensor "${tname}" has shape [${info.shape}], expected [d_model]`);
    if (model && info.shape[0] !== model.dModel) {
      throw new EmlensError(`${name}: tensor "${tname}" has width ${info.shape[0]}, the model's d_model is ${model.dModel}`);
    }
    if (model && h.layer >= model.nLayers) {
      throw new EmlensError(`${name}: tensor "${tname}" is for layer ${h.layer}, the model has ${model.nLayers} layers`);
    }
    const v = readTensorF32(info);
    if (v.some((x) => !Number.isFinite(x))) throw new EmlensError(`${name}: tensor "${tname}" holds non-finite values`);
    layers.set(h.layer, v);
  }
  if (!kind) throw new EmlensError(`${name}: holds no direction tensors`);
  return { file, kind, layers, metadata: header.metadata };
}

export function writeDirectionFile(
  file: string,
  layers: Map<number, Float32Array>,
  metadata: Record<string, string>,
  kind: HookKind = 'resid_post',
): void {
  const tensors = new Map<string, StWriteTensor>();
  for (const l of [...layers.keys()].sort((a, b) => a - b)) {
    const v = layers.get(l)!;
    tensors.set(`blocks.${l}.hook_${kind}`, { shape: [v.length], data: v });
  }
  writeSafetensors(file, tensors, metadata);
}
