/** Reading one tensor of a safetensors file as fp32 (F32, F16, BF16, F64). */
import { closeSync } from 'node:fs';
import { EmlensError } from '../../errors.js';
import { DTYPE_SIZE, fmtShape, fname, numelOf, tname } from './common.js';
import { CONVERT_CHUNK, f16ToF32Table, firstNonFinite, LITTLE_ENDIAN, swapBytes } from './dtype.js';
import { openForRead, readFully } from './file.js';
import type { StTensorInfo } from './header.js';

/** Values converted and checked per block: small enough to stay in cache between the two. */
const CHECK_BLOCK = 1 << 16;

/**
 * Reads one tensor's bytes (only those) and converts them to a fresh Float32Array
 * (own ArrayBuffer, byteOffset 0). F32, F16, BF16 and F64 only. With `finite`, every value is
 * checked once, block by block as it is converted, and the first NaN or Inf is an error naming file, tensor and
 * index (weights: one bad value would poison every activation downstream, silently).
 */
export function readTensorF32(info: StTensorInfo, opts: { finite?: boolean } = {}): Float32Array {
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
  // The finite check runs on each block right after it is converted, while it is in cache.
  const bits = new Int32Array(out.buffer);
  let bad = -1;
  const check = (from: number, to: number): void => {
    if (opts.finite && bad < 0) bad = firstNonFinite(bits, from, to);
  };
  const fd = openForRead(info.file);
  try {
    if (dtype === 'F32') {
      const raw = new Uint8Array(out.buffer);
      for (let i = 0; i < n; i += CHECK_BLOCK) {
        const m = Math.min(CHECK_BLOCK, n - i);
        const part = raw.subarray(4 * i, 4 * (i + m));
        readFully(fd, part, info.begin + 4 * i, info.file);
        if (!LITTLE_ENDIAN) swapBytes(part, 4);
        check(i, i + m);
      }
    } else if (dtype === 'BF16' || dtype === 'F16') {
      // Read the 16-bit values into the upper half of the output buffer and widen in place,
      // front to back: writing out[i] (bytes 4i..4i+3) never clobbers an unread source value
      // (source i+1 lives at byte 2n+2i+2 >= 4i+4). Saves a second buffer for huge tensors.
      const raw = new Uint8Array(out.buffer, 2 * n, 2 * n);
      readFully(fd, raw, info.begin, info.file);
      if (!LITTLE_ENDIAN) swapBytes(raw, 2);
      const src = new Uint16Array(out.buffer, 2 * n, n);
      const lut = dtype === 'F16' ? f16ToF32Table() : null;
      for (let i = 0; i < n; i += CHECK_BLOCK) {
        const end = Math.min(n, i + CHECK_BLOCK);
        if (lut) for (let k = i; k < end; k++) bits[k] = lut[src[k]!]!;
        else for (let k = i; k < end; k++) bits[k] = src[k]! << 16;
        check(i, end);
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
        check(i, i + m);
      }
    }
  } finally {
    closeSync(fd);
  }
  if (bad >= 0) {
    throw new EmlensError(`${t}: value at index ${bad} (${fmtShape(unravel(bad, info.shape))}) is ${out[bad]}; weights must be finite`);
  }
  return out;
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
