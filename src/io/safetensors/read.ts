/** Reading one tensor of a safetensors file as fp32 (F32, F16, BF16, F64). */
import { closeSync } from 'node:fs';
import { EmlensError } from '../../errors.js';
import { DTYPE_SIZE, fmtShape, fname, numelOf, tname } from './common.js';
import { CONVERT_CHUNK, f16ToF32Table, firstNonFinite, LITTLE_ENDIAN, nonFiniteBits, swapBytes } from './dtype.js';
import { openForRead, readFully } from './file.js';
import type { StTensorInfo } from './header.js';

/**
 * Reads one tensor's bytes (only those) and converts them to fp32: into a fresh Float32Array
 * (own ArrayBuffer, byteOffset 0), or into `into` (exactly the tensor's length; the memory-bounded
 * path reuses one buffer per weight slot). F32, F16, BF16 and F64 only. With `finite`, every value is
 * checked once, during or right after the conversion, and the first NaN or Inf is an error naming file, tensor and
 * index (weights: one bad value would poison every activation downstream, silently).
 */
export function readTensorF32(info: StTensorInfo, opts: { finite?: boolean; into?: Float32Array } = {}): Float32Array {
  const t = checkReadable(info);
  const n = numelOf(info.shape);
  if (opts.into && opts.into.length !== n) throw new Error(`${t}: buffer of ${opts.into.length} values for ${n}`);
  const out = opts.into ?? new Float32Array(n);
  if (n === 0) return out;
  const fd = openForRead(info.file);
  let bad: number;
  try {
    bad = readSpan(fd, info, 0, n, out, 0, opts.finite ?? false);
  } finally {
    closeSync(fd);
  }
  if (bad >= 0) {
    throw new EmlensError(`${t}: value at index ${bad} (${fmtShape(unravel(bad, info.shape))}) is ${out[bad]}; weights must be finite`);
  }
  return out;
}

/**
 * Gathers rows of a 2-D tensor (an embedding table) as fp32: out[i] = tensor[rows[i]], each row
 * read on its own from the file, so the table is never in memory whole.
 */
export function readTensorRowsF32(info: StTensorInfo, rows: ArrayLike<number>, out: Float32Array, opts: { finite?: boolean } = {}): void {
  const t = checkReadable(info);
  if (info.shape.length !== 2) throw new Error(`${t}: rows of a ${info.shape.length}-D tensor`);
  const [R, C] = info.shape as [number, number];
  if (out.length !== rows.length * C) throw new Error(`${t}: buffer of ${out.length} values for ${rows.length} rows of ${C}`);
  const fd = openForRead(info.file);
  try {
    for (let i = 0; i < rows.length; i++) {
      const r = rows[i]!;
      if (!Number.isInteger(r) || r < 0 || r >= R) throw new Error(`${t}: row ${r} out of range`);
      const bad = readSpan(fd, info, r * C, C, out, i * C, opts.finite ?? false);
      if (bad >= 0) throw new EmlensError(`${t}: value at index [${r}, ${bad}] is ${out[i * C + bad]}; weights must be finite`);
    }
  } finally {
    closeSync(fd);
  }
}

/** The tensor's name for messages, once its dtype and byte range are known to be readable as floats. */
function checkReadable(info: StTensorInfo): string {
  const t = `${fname(info.file)}: ${tname(info.name)}`;
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
  return t;
}

/**
 * Reads elements [first, first + n) of the tensor into out[off, off + n) as fp32; returns the
 * index (from `first`) of the first non-finite value when `finite`, else -1.
 */
function readSpan(fd: number, info: StTensorInfo, first: number, n: number, out: Float32Array, off: number, finite: boolean): number {
  const { dtype } = info;
  const size = DTYPE_SIZE[dtype];
  const at = info.begin + first * size;
  const bits = new Int32Array(out.buffer, out.byteOffset + off * 4, n);
  let bad = -1; // first non-finite index, found by the 16-bit widening loops or a scan after
  if (dtype === 'F32') {
    const raw = new Uint8Array(out.buffer, out.byteOffset + off * 4, n * 4);
    readFully(fd, raw, at, info.file);
    if (!LITTLE_ENDIAN) swapBytes(raw, 4);
    if (finite) bad = firstNonFinite(bits);
  } else if (dtype === 'BF16' || dtype === 'F16') {
    // Read the 16-bit values into the upper half of the output span and widen in place,
    // front to back: writing out[i] (bytes 4i..4i+3) never clobbers an unread source value
    // (source i+1 lives at byte 2n+2i+2 >= 4i+4). Saves a second buffer for huge tensors.
    // The finite check rides along in the same loop (a second pass would cost more).
    const raw = new Uint8Array(out.buffer, out.byteOffset + off * 4 + 2 * n, 2 * n);
    readFully(fd, raw, at, info.file);
    if (!LITTLE_ENDIAN) swapBytes(raw, 2);
    const src = new Uint16Array(out.buffer, out.byteOffset + off * 4 + 2 * n, n);
    if (dtype === 'BF16') {
      for (let i = 0; i < n; i++) {
        const x = src[i]! << 16;
        bits[i] = x;
        if (bad < 0 && nonFiniteBits(x)) bad = i;
      }
    } else {
      const lut = f16ToF32Table();
      for (let i = 0; i < n; i++) {
        const x = lut[src[i]!]! | 0;
        bits[i] = x;
        if (bad < 0 && nonFiniteBits(x)) bad = i;
      }
    }
    if (!finite) bad = -1;
  } else {
    const chunk = new Float64Array(Math.min(n, CONVERT_CHUNK));
    const raw = new Uint8Array(chunk.buffer);
    for (let i = 0; i < n; i += chunk.length) {
      const m = Math.min(chunk.length, n - i);
      const part = raw.subarray(0, m * 8);
      readFully(fd, part, at + i * 8, info.file);
      if (!LITTLE_ENDIAN) swapBytes(part, 8);
      out.set(chunk.subarray(0, m), off + i);
    }
    if (finite) bad = firstNonFinite(bits);
  }
  return bad;
}

/** Flat C-order index -> multi-index of `shape`. */
function unravel(flat: number, shape: readonly number[]): number[] {
  const idx = new Array<number>(shape.length);
  for (let k = shape.length - 1; k >= 0; k--) {
    idx[k] = flat % shape[k]!;
    flat = Math.floor(flat / shape[k]!);
  }
  return idx;
}
