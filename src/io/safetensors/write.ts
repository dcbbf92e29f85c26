/**
 * Writing one safetensors file atomically: fp32 data stored as F32, F16 or BF16, the header
 * padded with spaces so that the data starts 8-aligned.
 */
import { EmlensError } from '../../errors.js';
import { writeFileAtomic } from '../atomic.js';
import { describe, DTYPE_SIZE, fmtShape, fname, numelOf, tname } from './common.js';
import { CONVERT_CHUNK, f32BitsToBf16, f32BitsToF16, LITTLE_ENDIAN, swapBytes } from './dtype.js';
import { IO_CHUNK_BYTES } from './file.js';

export interface StWriteTensor {
  shape: number[];
  data: Float32Array;
  /** Stored dtype; default F32. Data is converted on write (round to nearest even). */
  dtype?: 'F32' | 'F16' | 'BF16';
}

export interface Planned {
  name: string;
  t: StWriteTensor;
  dtype: 'F32' | 'F16' | 'BF16';
  bytes: number;
}

export function plan(file: string, tensors: Record<string, StWriteTensor> | Map<string, StWriteTensor>): Planned[] {
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

export function checkMetadata(file: string, metadata: Record<string, string> | undefined): void {
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

export function writePlanned(file: string, planned: Planned[], metadata: Record<string, string> | undefined): void {
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
