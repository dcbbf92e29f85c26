/**
 * Safetensors reading and writing (https://github.com/huggingface/safetensors).
 *
 * Layout: u64 little-endian header length N, then N bytes of UTF-8 JSON
 * `{"__metadata__": {str: str}, name: {"dtype", "shape", "data_offsets": [begin, end]}, ...}`,
 * then the data section; data_offsets are relative to the start of the data section.
 *
 * Reading never loads a whole file: readSafetensorsHeader reads only the header and
 * readTensorF32 only the byte range of one tensor. Everything is converted to fp32.
 */
import { closeSync, existsSync, fstatSync, openSync, readSync, rmSync } from 'node:fs';
import { isAbsolute, join, relative, resolve, sep } from 'node:path';
import { EmlensError } from '../errors.js';
import { writeFileAtomic } from './atomic.js';

export type StDType = 'F32' | 'F16' | 'BF16' | 'F64' | 'I64' | 'I32' | 'I16' | 'I8' | 'U8' | 'BOOL';

/** One tensor of a safetensors file; begin/end are absolute byte offsets in `file` (header included). */
export interface StTensorInfo {
  name: string;
  dtype: StDType;
  shape: number[];
  begin: number;
  end: number;
  file: string;
}

export interface StHeader {
  file: string;
  /** In header order. */
  tensors: Map<string, StTensorInfo>;
  metadata: Record<string, string>;
}

export interface WeightIndex {
  /** The safetensors files holding the weights (one, or the shards sorted by name). */
  files: string[];
  tensors: Map<string, StTensorInfo>;
  metadata: Record<string, string>;
  dtypes: Set<StDType>;
  /** Sum of the tensors' byte sizes as stored. */
  totalBytes: number;
}

export interface StWriteTensor {
  shape: number[];
  data: Float32Array;
  /** Stored dtype; default F32. Data is converted on write (round to nearest even). */
  dtype?: 'F32' | 'F16' | 'BF16';
}

const DTYPE_SIZE: Record<StDType, number> = {
  F32: 4,
  F16: 2,
  BF16: 2,
  F64: 8,
  I64: 8,
  I32: 4,
  I16: 2,
  I8: 1,
  U8: 1,
  BOOL: 1,
};

/** Same limit as the reference implementation (safetensors MAX_HEADER_SIZE). */
const MAX_HEADER_BYTES = 100_000_000;
/** fs.readSync / writeSync refuse lengths of 2 GiB and more; stay well below. */
const IO_CHUNK_BYTES = 1 << 28;
/** Elements per conversion chunk on write and for F64 reads. */
const CONVERT_CHUNK = 1 << 22;

const LITTLE_ENDIAN = new Uint8Array(new Uint16Array([1]).buffer)[0] === 1;

// ---------------------------------------------------------------------------------------------
// Scalar conversions

const scratchF32 = new Float32Array(1);
const scratchU32 = new Uint32Array(scratchF32.buffer);

function f32Bits(x: number): number {
  scratchF32[0] = x;
  return scratchU32[0]!;
}

function bitsF32(b: number): number {
  scratchU32[0] = b;
  return scratchF32[0]!;
}

/** f32 bit pattern -> bf16 bit pattern, round to nearest even; NaN stays a (quiet) NaN. */
function f32BitsToBf16(b: number): number {
  if ((b & 0x7fffffff) >>> 0 > 0x7f800000) return ((b >>> 16) | 0x0040) & 0xffff;
  return ((b + 0x7fff + ((b >>> 16) & 1)) >>> 16) & 0xffff;
}

/** f32 bit pattern -> f16 bit pattern, round to nearest even, overflow to Inf, subnormals kept. */
function f32BitsToF16(b: number): number {
  const sign = (b >>> 16) & 0x8000;
  const exp = (b >>> 23) & 0xff;
  const mant = b & 0x7fffff;
  if (exp === 0xff) return mant === 0 ? sign | 0x7c00 : sign | 0x7e00 | (mant >>> 13);
  const e = exp - 112; // rebias 127 -> 15
  if (e >= 31) return sign | 0x7c00;
  if (e <= 0) {
    if (e < -10) return sign; // below half the smallest subnormal (or exactly half: ties to 0)
    const m = mant | 0x800000;
    const shift = 14 - e; // 14..24
    let h = m >>> shift;
    const rem = m & ((1 << shift) - 1);
    const half = 1 << (shift - 1);
    if (rem > half || (rem === half && (h & 1) !== 0)) h++;
    return sign | h; // a carry into bit 10 yields the smallest normal, which is right
  }
  let h = (e << 10) | (mant >>> 13);
  const rem = mant & 0x1fff;
  if (rem > 0x1000 || (rem === 0x1000 && (h & 1) !== 0)) h++; // a carry may reach Inf: right
  return sign | h;
}

/** f16 bit pattern -> f32 bit pattern (exact). */
function f16BitsToF32Bits(h: number): number {
  const sign = (h & 0x8000) << 16;
  const exp = (h >>> 10) & 0x1f;
  const mant = h & 0x3ff;
  if (exp === 0x1f) return (sign | 0x7f800000 | (mant << 13)) >>> 0;
  if (exp !== 0) return (sign | ((exp + 112) << 23) | (mant << 13)) >>> 0;
  if (mant === 0) return sign >>> 0;
  // Subnormal: normalise. Value = mant * 2^-24.
  let m = mant;
  let e = 113; // f32 biased exponent for 2^-14
  while ((m & 0x400) === 0) {
    m <<= 1;
    e--;
  }
  return (sign | (e << 23) | ((m & 0x3ff) << 13)) >>> 0;
}

let f16Table: Uint32Array | undefined;
function f16ToF32Table(): Uint32Array {
  if (!f16Table) {
    f16Table = new Uint32Array(65536);
    for (let h = 0; h < 65536; h++) f16Table[h] = f16BitsToF32Bits(h);
  }
  return f16Table;
}

/** Rounds `x` to f32, then to bf16 (nearest even); returns the bf16 bit pattern. */
export function f32ToBf16(x: number): number {
  return f32BitsToBf16(f32Bits(x));
}

/** bf16 bit pattern -> its value. */
export function bf16ToF32(h: number): number {
  return bitsF32(((h & 0xffff) << 16) >>> 0);
}

/** Rounds `x` to f32, then to f16 (nearest even, overflow to Inf, subnormals kept); returns bits. */
export function f32ToF16(x: number): number {
  return f32BitsToF16(f32Bits(x));
}

/** f16 bit pattern -> its value. */
export function f16ToF32(h: number): number {
  return bitsF32(f16ToF32Table()[h & 0xffff]!);
}

// ---------------------------------------------------------------------------------------------
// Helpers

/** File names in messages: keep the message on one line. */
function fname(file: string): string {
  return file.replace(/[\u0000-\u001f\u007f]/g, '?');
}

function tname(name: string): string {
  return `tensor ${JSON.stringify(name)}`;
}

function fmtShape(shape: readonly number[]): string {
  return `[${shape.join(', ')}]`;
}

function numelOf(shape: readonly number[]): number {
  let n = 1;
  for (const d of shape) n *= d;
  return n;
}

function describe(v: unknown): string {
  if (v === null) return 'null';
  if (Array.isArray(v)) return 'an array';
  return `a ${typeof v}`;
}

function isPlainObject(v: unknown): v is Record<string, unknown> {
  return typeof v === 'object' && v !== null && !Array.isArray(v);
}

function isDType(s: unknown): s is StDType {
  return typeof s === 'string' && Object.prototype.hasOwnProperty.call(DTYPE_SIZE, s);
}

function openForRead(file: string): number {
  let fd: number;
  try {
    fd = openSync(file, 'r');
  } catch (e) {
    const code = (e as NodeJS.ErrnoException).code ?? String(e);
    throw new EmlensError(`${fname(file)}: cannot open for reading (${code})`);
  }
  // A folder opens fine on Linux and fails only at the first read (EISDIR).
  if (fstatSync(fd).isDirectory()) {
    closeSync(fd);
    throw new EmlensError(`${fname(file)}: is a folder, not a file`);
  }
  return fd;
}

/** Reads exactly target.byteLength bytes at `position`, in chunks. */
function readFully(fd: number, target: Uint8Array, position: number, file: string): void {
  let off = 0;
  while (off < target.byteLength) {
    const len = Math.min(IO_CHUNK_BYTES, target.byteLength - off);
    const n = readSync(fd, target, off, len, position + off);
    if (n === 0) {
      throw new EmlensError(
        `${fname(file)}: unexpected end of file at byte ${position + off} (wanted ${target.byteLength - off} more bytes)`,
      );
    }
    off += n;
  }
}

/** Reverses each `size`-byte group in place (for big-endian hosts only). */
function swapBytes(b: Uint8Array, size: number): void {
  for (let i = 0; i + size <= b.length; i += size) {
    for (let j = 0, k = size - 1; j < k; j++, k--) {
      const t = b[i + j]!;
      b[i + j] = b[i + k]!;
      b[i + k] = t;
    }
  }
}

// ---------------------------------------------------------------------------------------------
// Reading

/** Reads and validates the header of one safetensors file (not the data). */
export function readSafetensorsHeader(file: string): StHeader {
  const f = fname(file);
  const fd = openForRead(file);
  let json: string;
  let fileSize: number;
  let headerLen: number;
  try {
    fileSize = fstatSync(fd).size;
    if (fileSize < 8) throw new EmlensError(`${f}: file is ${fileSize} bytes, too short for a safetensors header`);
    const lenBuf = Buffer.alloc(8);
    readFully(fd, lenBuf, 0, file);
    const len = lenBuf.readBigUInt64LE(0);
    if (len > BigInt(MAX_HEADER_BYTES)) {
      throw new EmlensError(`${f}: header length ${len} exceeds the ${MAX_HEADER_BYTES}-byte limit (not a safetensors file?)`);
    }
    headerLen = Number(len);
    if (8 + headerLen > fileSize) {
      throw new EmlensError(`${f}: header length ${headerLen} runs past the end of the ${fileSize}-byte file`);
    }
    const hbuf = Buffer.alloc(headerLen);
    readFully(fd, hbuf, 8, file);
    try {
      json = new TextDecoder('utf-8', { fatal: true, ignoreBOM: true }).decode(hbuf);
    } catch {
      throw new EmlensError(`${f}: header is not valid UTF-8`);
    }
  } finally {
    closeSync(fd);
  }

  let parsed: unknown;
  try {
    parsed = JSON.parse(json);
  } catch (e) {
    throw new EmlensError(`${f}: header is not valid JSON (${(e as Error).message.split('\n')[0]})`);
  }
  if (!isPlainObject(parsed)) throw new EmlensError(`${f}: header is ${describe(parsed)}, not a JSON object`);

  const dataStart = 8 + headerLen;
  const dataSize = fileSize - dataStart;
  const metadata: [string, string][] = [];
  const tensors = new Map<string, StTensorInfo>();

  for (const [name, entry] of Object.entries(parsed)) {
    if (name === '__metadata__') {
      if (!isPlainObject(entry)) {
        throw new EmlensError(`${f}: __metadata__ is ${describe(entry)}, not a map of strings to strings`);
      }
      for (const [k, v] of Object.entries(entry)) {
        if (typeof v !== 'string') {
          throw new EmlensError(
            `${f}: __metadata__ must map strings to strings, but key ${JSON.stringify(k)} holds ${describe(v)}`,
          );
        }
        metadata.push([k, v]);
      }
      continue;
    }
    const t = `${f}: ${tname(name)}`;
    if (!isPlainObject(entry)) throw new EmlensError(`${t}: entry is ${describe(entry)}, not an object`);
    const { dtype, shape, data_offsets: offs } = entry;
    if (!isDType(dtype)) {
      throw new EmlensError(
        `${t}: unknown dtype ${JSON.stringify(dtype) ?? 'undefined'} (known: ${Object.keys(DTYPE_SIZE).join(', ')})`,
      );
    }
    if (!Array.isArray(shape) || !shape.every((d) => Number.isSafeInteger(d) && d >= 0)) {
      throw new EmlensError(`${t}: shape ${JSON.stringify(shape) ?? 'undefined'} is not an array of non-negative integers`);
    }
    if (
      !Array.isArray(offs) ||
      offs.length !== 2 ||
      !offs.every((o) => Number.isSafeInteger(o) && o >= 0) ||
      offs[0] > offs[1]
    ) {
      throw new EmlensError(
        `${t}: data_offsets ${JSON.stringify(offs) ?? 'undefined'} are not [begin, end] non-negative integers with begin <= end`,
      );
    }
    const [b, e] = offs as [number, number];
    if (e > dataSize) {
      throw new EmlensError(`${t}: data offsets [${b}, ${e}) end beyond the data section, which holds ${dataSize} bytes`);
    }
    const dims = shape as number[];
    const need = numelOf(dims) * DTYPE_SIZE[dtype];
    if (need !== e - b) {
      throw new EmlensError(
        `${t}: data offsets [${b}, ${e}) hold ${e - b} bytes but shape ${fmtShape(dims)} of ${dtype} needs ${need}`,
      );
    }
    tensors.set(name, { name, dtype, shape: dims.slice(), begin: dataStart + b, end: dataStart + e, file });
  }

  // Overlaps (holes are fine). Empty tensors occupy nothing.
  const ranges = [...tensors.values()].filter((x) => x.end > x.begin).sort((x, y) => x.begin - y.begin);
  for (let i = 1; i < ranges.length; i++) {
    const prev = ranges[i - 1]!;
    const cur = ranges[i]!;
    if (cur.begin < prev.end) {
      throw new EmlensError(
        `${f}: ${tname(cur.name)}: data offsets [${cur.begin - dataStart}, ${cur.end - dataStart}) overlap ` +
          `${tname(prev.name)} at [${prev.begin - dataStart}, ${prev.end - dataStart})`,
      );
    }
  }

  return { file, tensors, metadata: Object.fromEntries(metadata) };
}

/**
 * Reads one tensor's bytes (only those) and converts them to a fresh Float32Array
 * (own ArrayBuffer, byteOffset 0). F32, F16, BF16 and F64 only.
 */
export function readTensorF32(info: StTensorInfo): Float32Array {
  const f = fname(info.file);
  const t = `${f}: ${tname(info.name)}`;
  const { dtype } = info;
  if (dtype !== 'F32' && dtype !== 'F16' && dtype !== 'BF16' && dtype !== 'F64') {
    throw new EmlensError(`${t}: dtype ${dtype} cannot be read as floats (F32, F16, BF16 or F64 only)`);
  }
  const n = numelOf(info.shape);
  const bytes = info.end - info.begin;
  if (bytes !== n * DTYPE_SIZE[dtype]) {
    throw new EmlensError(
      `${t}: byte range [${info.begin}, ${info.end}) holds ${bytes} bytes but shape ${fmtShape(info.shape)} of ${dtype} needs ${n * DTYPE_SIZE[dtype]}`,
    );
  }
  const out = new Float32Array(n);
  if (n === 0) return out;
  const fd = openForRead(info.file);
  try {
    if (dtype === 'F32') {
      const raw = new Uint8Array(out.buffer);
      readFully(fd, raw, info.begin, info.file);
      if (!LITTLE_ENDIAN) swapBytes(raw, 4);
    } else if (dtype === 'BF16' || dtype === 'F16') {
      // Read the 16-bit values into the upper half of the output buffer and widen in place,
      // front to back: writing out[i] (bytes 4i..4i+3) never clobbers an unread source value
      // (source i+1 lives at byte 2n+2i+2 >= 4i+4). Saves a second buffer for huge tensors.
      const raw = new Uint8Array(out.buffer, 2 * n, 2 * n);
      readFully(fd, raw, info.begin, info.file);
      if (!LITTLE_ENDIAN) swapBytes(raw, 2);
      const src = new Uint16Array(out.buffer, 2 * n, n);
      const dst = new Uint32Array(out.buffer);
      if (dtype === 'BF16') {
        for (let i = 0; i < n; i++) dst[i] = src[i]! << 16;
      } else {
        const lut = f16ToF32Table();
        for (let i = 0; i < n; i++) dst[i] = lut[src[i]!]!;
      }
    } else {
      const chunk = new Float64Array(Math.min(n, CONVERT_CHUNK));
      const raw = new Uint8Array(chunk.buffer);
      for (let i = 0; i < n; i += chunk.length) {
        const m = Math.min(chunk.length, n - i);
        const part = raw.subarray(0, m * 8);
        readFully(fd, part, info.begin + i * 8, info.file);
        if (!LITTLE_ENDIAN) swapBytes(part, 8);
        out.set(chunk.subarray(0, m), i);
      }
    }
  } finally {
    closeSync(fd);
  }
  return out;
}

// ---------------------------------------------------------------------------------------------
// Model directories

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

// ---------------------------------------------------------------------------------------------
// Writing

interface Planned {
  name: string;
  t: StWriteTensor;
  dtype: 'F32' | 'F16' | 'BF16';
  bytes: number;
}

function plan(file: string, tensors: Record<string, StWriteTensor> | Map<string, StWriteTensor>): Planned[] {
  const f = fname(file);
  const entries = tensors instanceof Map ? [...tensors.entries()] : Object.entries(tensors);
  return entries.map(([name, t]) => {
    const at = `${f}: ${tname(name)}`;
    if (name === '__metadata__') throw new EmlensError(`${at}: the name __metadata__ is reserved`);
    const dtype = t.dtype ?? 'F32';
    if (dtype !== 'F32' && dtype !== 'F16' && dtype !== 'BF16') {
      throw new EmlensError(`${at}: cannot write dtype ${String(dtype)} (F32, F16 or BF16 only)`);
    }
    if (!Array.isArray(t.shape) || !t.shape.every((d) => Number.isSafeInteger(d) && d >= 0)) {
      throw new EmlensError(`${at}: shape ${JSON.stringify(t.shape)} is not an array of non-negative integers`);
    }
    if (!(t.data instanceof Float32Array)) throw new EmlensError(`${at}: data is not a Float32Array`);
    const n = numelOf(t.shape);
    if (t.data.length !== n) {
      throw new EmlensError(`${at}: data has ${t.data.length} elements but shape ${fmtShape(t.shape)} needs ${n}`);
    }
    return { name, t, dtype, bytes: n * DTYPE_SIZE[dtype] };
  });
}

function checkMetadata(file: string, metadata: Record<string, string> | undefined): void {
  for (const [k, v] of Object.entries(metadata ?? {})) {
    if (typeof v !== 'string') {
      throw new EmlensError(`${fname(file)}: metadata ${JSON.stringify(k)} is ${describe(v)}, not a string`);
    }
  }
}

function headerBytes(planned: Planned[], metadata: Record<string, string> | undefined): string {
  // Built by hand so that the order is the given one (a JS object would hoist integer-like keys).
  const parts: string[] = [];
  if (metadata !== undefined && Object.keys(metadata).length > 0) {
    const m = Object.entries(metadata).map(([k, v]) => `${JSON.stringify(k)}:${JSON.stringify(v)}`);
    parts.push(`"__metadata__":{${m.join(',')}}`);
  }
  let off = 0;
  for (const p of planned) {
    const entry = `{"dtype":"${p.dtype}","shape":${JSON.stringify(p.t.shape)},"data_offsets":[${off},${off + p.bytes}]}`;
    parts.push(`${JSON.stringify(p.name)}:${entry}`);
    off += p.bytes;
  }
  let json = `{${parts.join(',')}}`;
  const len = Buffer.byteLength(json, 'utf8');
  json += ' '.repeat((8 - (len % 8)) % 8);
  return json;
}

function* tensorChunks(p: Planned): Generator<Uint8Array> {
  const { data } = p.t;
  if (p.dtype === 'F32') {
    const bytes = new Uint8Array(data.buffer, data.byteOffset, data.byteLength);
    for (let off = 0; off < bytes.byteLength; off += IO_CHUNK_BYTES) {
      const part = bytes.subarray(off, Math.min(bytes.byteLength, off + IO_CHUNK_BYTES));
      if (LITTLE_ENDIAN) yield part;
      else {
        const copy = part.slice();
        swapBytes(copy, 4);
        yield copy;
      }
    }
    return;
  }
  const conv = p.dtype === 'BF16' ? f32BitsToBf16 : f32BitsToF16;
  // A Uint32Array view needs 4-byte alignment; a Float32Array's byteOffset always has it.
  const bits = new Uint32Array(data.buffer, data.byteOffset, data.length);
  for (let i = 0; i < bits.length; i += CONVERT_CHUNK) {
    const m = Math.min(CONVERT_CHUNK, bits.length - i);
    const out = new Uint16Array(m); // fresh per chunk: the consumer may keep chunks
    for (let j = 0; j < m; j++) out[j] = conv(bits[i + j]!);
    const bytes = new Uint8Array(out.buffer);
    if (!LITTLE_ENDIAN) swapBytes(bytes, 2);
    yield bytes;
  }
}

function writePlanned(file: string, planned: Planned[], metadata: Record<string, string> | undefined): void {
  const header = headerBytes(planned, metadata);
  const len = Buffer.alloc(8);
  len.writeBigUInt64LE(BigInt(Buffer.byteLength(header, 'utf8')));
  writeFileAtomic(
    file,
    (function* () {
      yield len;
      yield header;
      for (const p of planned) yield* tensorChunks(p);
    })(),
  );
}

/**
 * Writes one safetensors file atomically. Tensors are stored in the given order, converted to
 * their dtype (default F32); the header is padded with spaces so the data starts 8-aligned.
 */
export function writeSafetensors(
  file: string,
  tensors: Record<string, StWriteTensor> | Map<string, StWriteTensor>,
  metadata?: Record<string, string>,
): void {
  checkMetadata(file, metadata);
  writePlanned(file, plan(file, tensors), metadata);
}

/**
 * Writes `tensors` into `dir` as `<prefix>.safetensors` when their bytes fit in maxShardBytes,
 * else as `<prefix>-0000i-of-0000n.safetensors` shards (filled in order; a tensor larger than
 * maxShardBytes gets a shard of its own) plus `<prefix>.safetensors.index.json` with
 * metadata.total_size, written last. `metadata` goes into every file's __metadata__. Removes a
 * stale file of the other layout (`<prefix>.safetensors` or the index) so that readers do not
 * pick it up. Returns the paths written.
 */
export function writeShardedSafetensors(
  dir: string,
  tensors: Map<string, StWriteTensor>,
  opts: { maxShardBytes: number; metadata?: Record<string, string>; prefix?: string },
): string[] {
  const prefix = opts.prefix ?? 'model';
  const { maxShardBytes, metadata } = opts;
  if (!(maxShardBytes > 0)) throw new EmlensError(`${fname(dir)}: maxShardBytes must be positive, got ${maxShardBytes}`);
  if (prefix === '' || /[/\\]/.test(prefix)) throw new EmlensError(`${fname(dir)}: bad file prefix ${JSON.stringify(prefix)}`);
  const singlePath = join(dir, `${prefix}.safetensors`);
  const indexPath = join(dir, `${prefix}.safetensors.index.json`);
  checkMetadata(singlePath, metadata);
  const planned = plan(singlePath, tensors); // validate everything before writing anything

  const shards: Planned[][] = [];
  let cur: Planned[] = [];
  let curBytes = 0;
  for (const p of planned) {
    if (cur.length > 0 && curBytes + p.bytes > maxShardBytes) {
      shards.push(cur);
      cur = [];
      curBytes = 0;
    }
    cur.push(p);
    curBytes += p.bytes;
  }
  if (cur.length > 0 || shards.length === 0) shards.push(cur);

  if (shards.length === 1) {
    writePlanned(singlePath, shards[0]!, metadata);
    rmSync(indexPath, { force: true });
    return [singlePath];
  }

  const n = shards.length;
  const pad = (i: number) => String(i).padStart(5, '0');
  const written: string[] = [];
  const weightMap: string[] = [];
  let total = 0;
  shards.forEach((shard, i) => {
    const name = `${prefix}-${pad(i + 1)}-of-${pad(n)}.safetensors`;
    const path = join(dir, name);
    writePlanned(path, shard, metadata);
    written.push(path);
    for (const p of shard) {
      weightMap.push(`    ${JSON.stringify(p.name)}: ${JSON.stringify(name)}`);
      total += p.bytes;
    }
  });
  const index = `{\n  "metadata": {\n    "total_size": ${total}\n  },\n  "weight_map": {\n${weightMap.join(',\n')}\n  }\n}\n`;
  writeFileAtomic(indexPath, [index]);
  written.push(indexPath);
  rmSync(singlePath, { force: true });
  return written;
}

