/**
 * NumPy .npy files (format version 1.0, little-endian float32), for numpy users.
 *
 * Layout: "\x93NUMPY", major 1, minor 0, uint16 LE header length, then an ASCII Python dict
 *   {'descr': '<f4', 'fortran_order': False, 'shape': (L, d), }
 * padded with spaces and ended by "\n" so that magic + version + length + header is a multiple
 * of 64 bytes, then the C-order data.
 *
 * Direction files as .npy (`--format npy`): FILE holds ONE float32 array of shape
 * [n_layers_covered, d_model], row k being the direction of the k-th covered layer in ascending
 * layer order; the sidecar `FILE.layers.json` says which layers those are:
 *
 *   {
 *     "format": "emlens.directions.npy", "version": 1,
 *     "array": "<basename of FILE>",
 *     "hook": "resid_post",
 *     "layers": [3, 4, 5],                       // row k of the array is layer layers[k]
 *     "hook_names": ["blocks.3.hook_resid_post", ...],
 *     "shape": [3, 896], "dtype": "<f4",
 *     "metadata": { ...same string metadata as the safetensors direction file... }
 *   }
 *
 * In numpy: `a = np.load(FILE); meta = json.load(open(FILE + ".layers.json"));
 * dirs = dict(zip(meta["layers"], a))`. Each file is written atomically, the array first.
 */
import { existsSync, readFileSync } from 'node:fs';
import { basename } from 'node:path';
import { EmlensError } from '../errors.js';
import { hookName, type HookKind } from '../hooks/names.js';
import { writeFileAtomic } from './atomic.js';

const MAGIC = [0x93, 0x4e, 0x55, 0x4d, 0x50, 0x59]; // \x93NUMPY

function shapeRepr(shape: number[]): string {
  if (shape.length === 0) return '()';
  if (shape.length === 1) return `(${shape[0]},)`;
  return `(${shape.join(', ')})`;
}

function isLittleEndian(): boolean {
  return new Uint8Array(new Uint16Array([1]).buffer)[0] === 1;
}

/** The .npy v1.0 preamble (magic .. header newline) for a C-order '<f4' array of `shape`. */
export function npyHeader(shape: number[]): Uint8Array {
  const dict = `{'descr': '<f4', 'fortran_order': False, 'shape': ${shapeRepr(shape)}, }`;
  const fixed = MAGIC.length + 2 + 2;
  const total = Math.ceil((fixed + dict.length + 1) / 64) * 64;
  const headerLen = total - fixed;
  if (headerLen > 0xffff) throw new EmlensError(`npy: header of ${headerLen} bytes does not fit format 1.0`);
  const text = dict + ' '.repeat(headerLen - dict.length - 1) + '\n';
  const out = new Uint8Array(total);
  out.set(MAGIC, 0);
  out[6] = 1;
  out[7] = 0;
  new DataView(out.buffer).setUint16(8, headerLen, true);
  out.set(Buffer.from(text, 'latin1'), fixed);
  return out;
}

/** Writes a float32 array of `shape` (C order) as .npy v1.0 '<f4', atomically. */
export function writeNpy(file: string, data: Float32Array, shape: number[]): void {
  let n = 1;
  for (const s of shape) {
    if (!Number.isInteger(s) || s < 0) throw new EmlensError(`npy: bad shape [${shape}]`);
    n *= s;
  }
  if (n !== data.length) throw new EmlensError(`npy: shape [${shape}] holds ${n} values, data has ${data.length}`);
  let bytes: Uint8Array;
  if (isLittleEndian()) bytes = new Uint8Array(data.buffer, data.byteOffset, data.byteLength);
  else {
    bytes = new Uint8Array(data.byteLength);
    const dv = new DataView(bytes.buffer);
    for (let i = 0; i < data.length; i++) dv.setFloat32(4 * i, data[i]!, true);
  }
  writeFileAtomic(file, [npyHeader(shape), bytes]);
}

export interface NpyArray {
  data: Float32Array;
  shape: number[];
}

/** Reads a C-order little-endian float32 .npy (format 1.0, 2.0 or 3.0). */
export function readNpy(file: string): NpyArray {
  const name = basename(file);
  if (!existsSync(file)) throw new EmlensError(`${file}: no such file`);
  const buf = readFileSync(file);
  if (buf.byteLength < 10 || MAGIC.some((b, i) => buf[i] !== b)) throw new EmlensError(`${name}: not a .npy file`);
  const major = buf[6]!;
  let headerLen: number;
  let start: number;
  if (major === 1) {
    headerLen = buf.readUInt16LE(8);
    start = 10;
  } else if (major === 2 || major === 3) {
    if (buf.byteLength < 12) throw new EmlensError(`${name}: truncated .npy header`);
    headerLen = buf.readUInt32LE(8);
    start = 12;
  } else throw new EmlensError(`${name}: .npy format version ${major}.${buf[7]} is not supported`);
  if (start + headerLen > buf.byteLength) throw new EmlensError(`${name}: truncated .npy header`);
  const header = buf.toString(major === 3 ? 'utf8' : 'latin1', start, start + headerLen);
  const descr = /'descr'\s*:\s*'([^']*)'/.exec(header)?.[1];
  const fortran = /'fortran_order'\s*:\s*(True|False)/.exec(header)?.[1];
  const shapeText = /'shape'\s*:\s*\(([^)]*)\)/.exec(header)?.[1];
  if (descr === undefined || fortran === undefined || shapeText === undefined) {
    throw new EmlensError(`${name}: unparsable .npy header ${JSON.stringify(header.trim())}`);
  }
  if (descr !== '<f4') throw new EmlensError(`${name}: dtype ${descr}, expected little-endian float32 ('<f4')`);
  if (fortran !== 'False') throw new EmlensError(`${name}: Fortran-ordered arrays are not supported`);
  const shape = shapeText
    .split(',')
    .map((s) => s.trim())
    .filter((s) => s.length > 0)
    .map((s) => {
      const v = Number(s.replace(/L$/, ''));
      if (!Number.isInteger(v) || v < 0) throw new EmlensError(`${name}: bad shape (${shapeText})`);
      return v;
    });
  const n = shape.reduce((a, b) => a * b, 1);
  const dataStart = start + headerLen;
  if (buf.byteLength - dataStart < 4 * n) throw new EmlensError(`${name}: ${buf.byteLength - dataStart} data bytes, shape [${shape}] needs ${4 * n}`);
  const data = new Float32Array(n);
  if (isLittleEndian() && dataStart % 4 === 0) data.set(new Float32Array(buf.buffer, buf.byteOffset + dataStart, n));
  else for (let i = 0; i < n; i++) data[i] = buf.readFloatLE(dataStart + 4 * i);
  return { data, shape };
}

export const NPY_SIDECAR_SUFFIX = '.layers.json';

export interface NpyDirections {
  layers: Map<number, Float32Array>;
  kind: HookKind;
  metadata: Record<string, string>;
}

/** Writes directions as FILE ([n_layers_covered, d] '<f4') plus FILE.layers.json (see above). */
export function writeDirectionsNpy(
  file: string,
  layers: Map<number, Float32Array>,
  metadata: Record<string, string> = {},
  kind: HookKind = 'resid_post',
): void {
  const ls = [...layers.keys()].sort((a, b) => a - b);
  if (ls.length === 0) throw new EmlensError(`${basename(file)}: no layers to write`);
  const d = layers.get(ls[0]!)!.length;
  const data = new Float32Array(ls.length * d);
  ls.forEach((l, k) => {
    const v = layers.get(l)!;
    if (v.length !== d) throw new EmlensError(`${basename(file)}: layer ${l} has width ${v.length}, layer ${ls[0]} has ${d}`);
    data.set(v, k * d);
  });
  writeNpy(file, data, [ls.length, d]);
  const sidecar = {
    format: 'emlens.directions.npy',
    version: 1,
    array: basename(file),
    hook: kind,
    layers: ls,
    hook_names: ls.map((l) => hookName(l, kind)),
    shape: [ls.length, d],
    dtype: '<f4',
    metadata,
  };
  writeFileAtomic(file + NPY_SIDECAR_SUFFIX, [JSON.stringify(sidecar, null, 2) + '\n']);
}

/**
 * Reads FILE and FILE.layers.json back into layer -> vector. The sidecar's "layers" must be
 * distinct non-negative integers, one per row of a 2-D [layers, d_model] array.
 */
export function readDirectionsNpy(file: string): NpyDirections {
  const name = basename(file);
  const side = file + NPY_SIDECAR_SUFFIX;
  const sname = basename(side);
  if (!existsSync(side)) throw new EmlensError(`${name}: sidecar ${sname} is missing (it lists the layers of the array's rows)`);
  let meta: { layers?: unknown; hook?: unknown; metadata?: unknown };
  try {
    meta = JSON.parse(readFileSync(side, 'utf8'));
  } catch (e) {
    throw new EmlensError(`${sname}: not valid JSON (${(e as Error).message})`);
  }
  const { data, shape } = readNpy(file);
  const ls = meta.layers;
  if (!Array.isArray(ls)) throw new EmlensError(`${sname}: "layers" must be a list of layer indices`);
  const seen = new Map<number, number>();
  ls.forEach((l: unknown, k) => {
    if (typeof l !== 'number' || !Number.isInteger(l) || l < 0) {
      throw new EmlensError(`${sname}: "layers" entry ${k} is ${JSON.stringify(l)}, not a layer index (a non-negative integer)`);
    }
    if (seen.has(l)) throw new EmlensError(`${sname}: "layers" lists layer ${l} twice (entries ${seen.get(l)} and ${k})`);
    seen.set(l, k);
  });
  if (shape.length !== 2) throw new EmlensError(`${name}: array shape [${shape}] is not [layers, d_model]`);
  if (shape[0] !== ls.length) throw new EmlensError(`${name}: the array has ${shape[0]} rows but ${sname} lists ${ls.length} layers`);
  const kind = (meta.hook ?? 'resid_post') as HookKind;
  if (!['resid_pre', 'resid_mid', 'resid_post'].includes(kind)) throw new EmlensError(`${sname}: unknown hook "${String(kind)}"`);
  const d = shape[1]!;
  const layers = new Map<number, Float32Array>();
  (ls as number[]).forEach((l, k) => layers.set(l, data.slice(k * d, k * d + d)));
  const metadata: Record<string, string> = {};
  if (meta.metadata && typeof meta.metadata === 'object') {
    for (const [k, v] of Object.entries(meta.metadata as Record<string, unknown>)) metadata[k] = String(v);
  }
  return { layers, kind, metadata };
}
