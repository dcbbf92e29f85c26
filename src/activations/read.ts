/** Reading an extraction folder back: meta.json plus one [rows, d] tensor at a time. */
import { existsSync, readFileSync } from 'node:fs';
import { join } from 'node:path';
import { EmlensError } from '../errors.js';
import { readSafetensorsHeader, type StTensorInfo } from '../io/safetensors/header.js';
import { readTensorF32 } from '../io/safetensors/read.js';
import { readJson } from '../model/config.js';
import type { ExtractMeta } from './extract.js';

export interface Activations {
  dir: string;
  meta: ExtractMeta;
  /** tensor name -> where it is */
  tensors: Map<string, StTensorInfo>;
  /** layer -> tensor name */
  byLayer: Map<number, string>;
  /** Float32Array [rows, d_model] of one layer (read on demand, not cached). */
  layer(l: number): Float32Array;
  /** Per-row labels and pooled token counts, from rows.jsonl. */
  rows(): { row: number; line: number; tokens: number; labels: Record<string, unknown> }[];
}

export function openActivations(dir: string): Activations {
  const metaFile = join(dir, 'meta.json');
  if (!existsSync(metaFile)) {
    throw new EmlensError(
      existsSync(join(dir, '.partial')) ? `${dir}: extraction is unfinished; run it again with --resume` : `${dir}: not an extraction folder (no meta.json)`,
    );
  }
  const meta = readJson(metaFile) as unknown as ExtractMeta;
  const tensors = new Map<string, StTensorInfo>();
  const index = join(dir, 'activations.safetensors.index.json');
  const files = existsSync(index)
    ? [...new Set(Object.values((readJson(index).weight_map ?? {}) as Record<string, string>))]
    : ['activations.safetensors'];
  for (const f of files) {
    const path = join(dir, f);
    if (!existsSync(path)) throw new EmlensError(`${dir}: missing ${f}`);
    for (const [name, info] of readSafetensorsHeader(path).tensors) tensors.set(name, info);
  }
  const byLayer = new Map<number, string>();
  meta.layers.forEach((l, i) => {
    const name = meta.tensors[i]!;
    const info = tensors.get(name);
    if (!info) throw new EmlensError(`${dir}: meta.json lists ${name} but no file holds it`);
    if (info.shape[0] !== meta.rows || info.shape[1] !== meta.model.d_model) {
      throw new EmlensError(`${dir}: ${name} has shape [${info.shape}], meta.json says [${meta.rows}, ${meta.model.d_model}]`);
    }
    byLayer.set(l, name);
  });
  return {
    dir,
    meta,
    tensors,
    byLayer,
    layer(l: number) {
      const name = byLayer.get(l);
      if (!name) throw new EmlensError(`${dir}: no activations for layer ${l} (has ${meta.layers.join(', ')})`);
      return readTensorF32(tensors.get(name)!);
    },
    rows() {
      const text = readFileSync(join(dir, 'rows.jsonl'), 'utf8');
      return text
        .split('\n')
        .filter((l) => l.trim())
        .map((l) => JSON.parse(l));
    },
  };
}
