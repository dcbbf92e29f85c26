/**
 * The safetensors files of a model directory: `model.safetensors`, or shards listed by
 * `model.safetensors.index.json`, opened (headers only) into one tensor index.
 */
import { closeSync, existsSync, fstatSync } from 'node:fs';
import { isAbsolute, join, relative, resolve, sep } from 'node:path';
import { EmlensError } from '../errors.js';
import { describe, fname, isPlainObject, tname, type StDType } from '../io/safetensors/common.js';
import { openForRead, readFully } from '../io/safetensors/file.js';
import { readSafetensorsHeader, type StHeader, type StTensorInfo } from '../io/safetensors/header.js';

export interface WeightIndex {
  /** The safetensors files holding the weights (one, or the shards sorted by name). */
  files: string[];
  tensors: Map<string, StTensorInfo>;
  metadata: Record<string, string>;
  dtypes: Set<StDType>;
  /** Sum of the tensors' byte sizes as stored. */
  totalBytes: number;
}

const SINGLE = 'model.safetensors';
const INDEX = 'model.safetensors.index.json';

/**
 * Opens the weights of a model directory: `model.safetensors` if present (as transformers
 * does), else the sharded layout `model.safetensors.index.json` + shards. Validates every
 * header, that every tensor of the weight map is in its shard, and that no tensor is in two
 * shards. Tensors a shard holds but the weight map omits are included (transformers loads
 * whole shards too).
 */
export function openWeights(dir: string): WeightIndex {
  const single = join(dir, SINGLE);
  const indexPath = join(dir, INDEX);
  if (existsSync(single)) {
    const h = readSafetensorsHeader(single);
    return summarize([single], h.tensors, h.metadata);
  }
  if (!existsSync(indexPath)) {
    const hint = existsSync(join(dir, 'pytorch_model.bin')) || existsSync(join(dir, 'pytorch_model.bin.index.json'))
      ? ' (only PyTorch .bin weights found; convert them to safetensors)'
      : '';
    throw new EmlensError(`${fname(dir)}: no ${SINGLE} or ${INDEX}${hint}`);
  }

  const fi = fname(indexPath);
  let index: unknown;
  try {
    const fd = openForRead(indexPath);
    let text: string;
    try {
      const size = fstatSync(fd).size;
      const buf = Buffer.alloc(size);
      readFully(fd, buf, 0, indexPath);
      text = buf.toString('utf8');
    } finally {
      closeSync(fd);
    }
    index = JSON.parse(text);
  } catch (e) {
    if (e instanceof EmlensError) throw e;
    throw new EmlensError(`${fi}: not valid JSON (${(e as Error).message.split('\n')[0]})`);
  }
  if (!isPlainObject(index)) throw new EmlensError(`${fi}: is ${describe(index)}, not a JSON object`);
  const wm = index['weight_map'];
  if (!isPlainObject(wm)) throw new EmlensError(`${fi}: "weight_map" is ${describe(wm)}, not an object`);
  const meta = index['metadata'];
  if (meta !== undefined && !isPlainObject(meta)) {
    throw new EmlensError(`${fi}: "metadata" is ${describe(meta)}, not an object`);
  }

  const root = resolve(dir);
  const shardOf = new Map<string, string>(); // tensor -> shard name as in the index
  const shardNames: string[] = [];
  for (const [name, shard] of Object.entries(wm)) {
    if (typeof shard !== 'string' || shard === '') {
      throw new EmlensError(`${fi}: ${tname(name)} maps to ${describe(shard)}, not a shard file name`);
    }
    const rel = relative(root, resolve(root, shard));
    if (isAbsolute(shard) || rel === '' || rel === '..' || rel.startsWith('..' + sep) || isAbsolute(rel)) {
      throw new EmlensError(`${fi}: ${tname(name)} maps to ${JSON.stringify(shard)}, which is not a file inside the model directory`);
    }
    shardOf.set(name, shard);
    if (!shardNames.includes(shard)) shardNames.push(shard);
  }
  shardNames.sort();

  const headers = new Map<string, StHeader>();
  for (const s of shardNames) headers.set(s, readSafetensorsHeader(join(dir, s)));

  const tensors = new Map<string, StTensorInfo>();
  const foundIn = new Map<string, string>();
  for (const [s, h] of headers) {
    for (const [name, info] of h.tensors) {
      const other = foundIn.get(name);
      if (other !== undefined) {
        throw new EmlensError(`${fi}: ${tname(name)} is in two shards, ${other} and ${s}`);
      }
      foundIn.set(name, s);
      tensors.set(name, info);
    }
  }
  for (const [name, s] of shardOf) {
    if (!headers.get(s)!.tensors.has(name)) {
      const where = foundIn.get(name);
      throw new EmlensError(
        `${fi}: ${tname(name)} is mapped to ${s} but that shard does not hold it` +
          (where !== undefined ? ` (it is in ${where})` : ''),
      );
    }
  }

  // Shard __metadata__ (first shard wins), then the index's "metadata" (e.g. total_size).
  const metadata: [string, string][] = [];
  for (const h of headers.values()) {
    for (const kv of Object.entries(h.metadata)) if (!metadata.some(([k]) => k === kv[0])) metadata.push(kv);
  }
  for (const [k, v] of Object.entries(meta ?? {})) {
    const sv = typeof v === 'string' ? v : typeof v === 'number' || typeof v === 'boolean' ? String(v) : JSON.stringify(v);
    const at = metadata.findIndex(([mk]) => mk === k);
    if (at >= 0) metadata[at] = [k, sv];
    else metadata.push([k, sv]);
  }

  return summarize(
    shardNames.map((s) => join(dir, s)),
    tensors,
    Object.fromEntries(metadata),
  );
}

function summarize(files: string[], tensors: Map<string, StTensorInfo>, metadata: Record<string, string>): WeightIndex {
  const dtypes = new Set<StDType>();
  let totalBytes = 0;
  for (const t of tensors.values()) {
    dtypes.add(t.dtype);
    totalBytes += t.end - t.begin;
  }
  return { files, tensors, metadata, dtypes, totalBytes };
}
