/** Reading one tensor of a safetensors file as fp32 (F32, F16, BF16, F64). */
import { closeSync } from 'node:fs';
import { EmlensError } from '../../errors.js';
import { DTYPE_SIZE, fmtShape, fname, numelOf, tname } from './common.js';
import { CONVERT_CHUNK, f16ToF32Table, firstNonFinite, LITTLE_ENDIAN, nonFiniteBits, swapBytes } from './dtype.js';
import { openForRead, readFully } from './file.js';
import type { StTensorInfo } from './header.js';

/**
 * Reads one tensor's bytes (only those) and converts them to a fresh Float32Array
 * (own ArrayBuffer, byteOffset 0). F32, F16, BF16 and F64 only. With `finite`, every value is
 * checked once, during or right after the conversion, and the first NaN or Inf is an error naming file, tensor and
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
  const bits = new Int32Array(out.buffer);
  let bad = -1; // first non-finite index, found by the 16-bit widening loops or a scan after
  const fd = openForRead(info.file);
  try {
    if (dtype === 'F32') {
      const raw = new Uint8Array(out.buffer);
      readFully(fd, raw, info.begin, info.file);
      if (!LITTLE_ENDIAN) swapBytes(raw, 4);
      if (opts.finite) bad = firstNonFinite(bits);
    } else if (dtype === 'BF16' || dtype === 'F16') {
      // Read the 16-bit values into the upper half of the output buffer and widen in place,
      // front to back: writing out[i] (bytes 4i..4i+3) never clobbers an unread source value
      // (source i+1 lives at byte 2n+2i+2 >= 4i+4). Saves a second buffer for huge tensors.
      // The finite check rides along in the same loop (a second pass would cost more).
      const raw = new Uint8Array(out.buffer, 2 * n, 2 * n);
      readFully(fd, raw, info.begin, info.file);
      if (!LITTLE_ENDIAN) swapBytes(raw, 2);
      const src = new Uint16Array(out.buffer, 2 * n, n);
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
      if (!opts.finite) bad = -1;
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
      if (opts.finite) bad = firstNonFinite(bits);
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
