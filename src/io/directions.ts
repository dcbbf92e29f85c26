/**
 * Direction files: one float32 [d_model] vector per covered layer, on the residual stream.
 * Three formats, told apart by their first bytes (not their names):
 *
 *   safetensors  one tensor per layer named by hook (`blocks.{l}.hook_resid_post`), provenance
 *                as string metadata (the emlens format; also trained steering vectors)
 *   GGUF         a llama.cpp control vector, `direction.N` = blocks.N.hook_resid_post (gguf.ts)
 *   .npy         a [layers, d_model] array plus FILE.layers.json naming the rows' layers (npy.ts)
 *
 * readDirectionFile is the one reader every command uses: whatever the format, it refuses
 * non-finite values, vectors of different or zero width, and (given the model) widths other than
 * d_model or layers past the last block, each in one line naming the file and the layer.
 */
import { closeSync, existsSync, openSync, readSync, statSync } from 'node:fs';
import { basename } from 'node:path';
import { EmlensError } from '../errors.js';
import { HOOK_PATTERN, parseHookName, type HookKind } from '../hooks/names.js';
import { readControlVectorGguf } from './gguf.js';
import { readDirectionsNpy } from './npy.js';
import { firstNonFinite } from './safetensors/dtype.js';
import { readSafetensorsHeader } from './safetensors/header.js';
import { readTensorF32 } from './safetensors/read.js';
import { writeSafetensors, type StWriteTensor } from './safetensors/write.js';

export type DirectionFormat = 'safetensors' | 'gguf' | 'npy';
export const DIRECTION_FORMATS: readonly DirectionFormat[] = ['safetensors', 'gguf', 'npy'];
/** The file extension of each format (what `--out` must end with). */
export const DIRECTION_EXTENSIONS: Readonly<Record<DirectionFormat, string>> = { safetensors: '.safetensors', gguf: '.gguf', npy: '.npy' };

export interface DirectionFile {
  file: string;
  format: DirectionFormat;
  /** hook kind shared by every vector of the file (GGUF: always resid_post) */
  kind: HookKind;
  /** layer -> vector */
  layers: Map<number, Float32Array>;
  /** string metadata (GGUF: the string KVs, `emlens.` prefix removed) */
  metadata: Record<string, string>;
}

/** What one format's reader hands to the shared checks. */
interface Parsed {
  kind: HookKind;
  layers: Map<number, Float32Array>;
  metadata: Record<string, string>;
  /** layer -> where its vector lives in the file, for messages (tensor name, array row) */
  where: Map<number, string>;
}

/** The format of a file by its first bytes, or null. */
function sniff(file: string, size: number): DirectionFormat | null {
  const head = Buffer.alloc(9);
  const fd = openSync(file, 'r');
  let n: number;
  try {
    n = readSync(fd, head, 0, 9, 0);
  } finally {
    closeSync(fd);
  }
  if (n >= 4 && head.toString('latin1', 0, 4) === 'GGUF') return 'gguf';
  if (n >= 6 && head.toString('latin1', 0, 6) === '\x93NUMPY') return 'npy';
  // safetensors: u64 header length that fits the file, then a JSON object.
  if (n === 9 && head.readBigUInt64LE(0) <= BigInt(size - 8) && head[8] === 0x7b) return 'safetensors';
  return null;
}

function fromSafetensors(file: string): Parsed {
  const header = readSafetensorsHeader(file);
  const layers = new Map<number, Float32Array>();
  const where = new Map<number, string>();
  let kind: HookKind | null = null;
  for (const [tname, info] of header.tensors) {
    const h = parseHookName(tname);
    if (!h) throw new EmlensError(`${file}: tensor "${tname}" is not named ${HOOK_PATTERN}`);
    if (kind && kind !== h.kind) throw new EmlensError(`${file}: mixes hook kinds (${kind} and ${h.kind})`);
    kind = h.kind;
    if (info.shape.length !== 1) throw new EmlensError(`${file}: tensor "${tname}" has shape [${info.shape}], expected [d_model]`);
    layers.set(h.layer, readTensorF32(info));
    where.set(h.layer, `tensor "${tname}"`);
  }
  return { kind: kind ?? 'resid_post', layers, metadata: header.metadata, where };
}

function fromGguf(file: string): Parsed {
  const g = readControlVectorGguf(file);
  if (g.architecture !== 'controlvector') throw new EmlensError(`${file}: GGUF general.architecture is "${g.architecture}", not a control vector`);
  const metadata: Record<string, string> = {};
  for (const [k, v] of g.kv) {
    if (typeof v === 'string' && k !== 'general.architecture') metadata[k.startsWith('emlens.') ? k.slice(7) : k] = v;
  }
  const where = new Map([...g.layers.keys()].map((l) => [l, `tensor direction.${l}`]));
  return { kind: 'resid_post', layers: g.layers, metadata, where };
}

function fromNpy(file: string): Parsed {
  const n = readDirectionsNpy(file);
  const where = new Map([...n.layers.keys()].map((l, row) => [l, `row ${row}`]));
  return { ...n, where };
}

/** The checks every format gets (see the header comment). */
function check(file: string, p: Parsed, model?: { dModel: number; nLayers: number }): void {
  const ls = [...p.layers.keys()];
  if (ls.length === 0) throw new EmlensError(`${file}: holds no direction tensors`);
  const at = (l: number) => `${file}: ${p.where.get(l)} (layer ${l})`;
  const first = ls[0]!;
  const d = p.layers.get(first)!.length;
  for (const l of ls) {
    const v = p.layers.get(l)!;
    if (v.length === 0) throw new EmlensError(`${at(l)} is empty`);
    if (v.length !== d) throw new EmlensError(`${at(l)}: layer ${l} has width ${v.length}, layer ${first} has ${d}`);
    if (model && v.length !== model.dModel) throw new EmlensError(`${at(l)} has width ${v.length}, the model's d_model is ${model.dModel}`);
    if (model && l >= model.nLayers) throw new EmlensError(`${at(l)} is for layer ${l}, the model has ${model.nLayers} layers`);
    const bad = firstNonFinite(new Int32Array(v.buffer, v.byteOffset, v.length));
    if (bad >= 0) throw new EmlensError(`${at(l)}: value at index ${bad} is ${v[bad]}; directions must be finite`);
  }
}

/**
 * Reads a direction file of any of the three formats, detected by content, and checks it (see
 * the header comment). `model` adds the model's checks; `flag` (e.g. "--steer") prefixes errors.
 */
export function readDirectionFile(file: string, model?: { dModel: number; nLayers: number }, flag?: string): DirectionFile {
  try {
    if (!existsSync(file)) throw new EmlensError(`${file}: no such direction file`);
    const st = statSync(file);
    if (st.isDirectory()) throw new EmlensError(`${file}: is a folder, not a direction file (.safetensors, .gguf or .npy)`);
    if (!st.isFile()) throw new EmlensError(`${file}: not a regular file`);
    const format = sniff(file, st.size);
    if (!format) {
      throw new EmlensError(`${file}: not a direction file: its first bytes are neither safetensors, a GGUF control vector nor .npy`);
    }
    const p = format === 'gguf' ? fromGguf(file) : format === 'npy' ? fromNpy(file) : fromSafetensors(file);
    check(file, p, model);
    return { file, format, kind: p.kind, layers: p.layers, metadata: p.metadata };
  } catch (e) {
    if (flag && e instanceof EmlensError) throw new EmlensError(`${flag} ${e.message}`);
    throw e;
  }
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
  if (tensors.size === 0) throw new EmlensError(`${basename(file)}: no layers to write`);
  writeSafetensors(file, tensors, metadata);
}
