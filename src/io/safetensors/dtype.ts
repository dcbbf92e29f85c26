/**
 * fp32 <-> f16 / bf16 conversions (round to nearest even, as numpy and torch) and byte order.
 */

/** Elements per conversion chunk on write and for F64 reads. */
export const CONVERT_CHUNK = 1 << 22;

export const LITTLE_ENDIAN = new Uint8Array(new Uint16Array([1]).buffer)[0] === 1;

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
export function f32BitsToBf16(b: number): number {
  if ((b & 0x7fffffff) >>> 0 > 0x7f800000) return ((b >>> 16) | 0x0040) & 0xffff;
  return ((b + 0x7fff + ((b >>> 16) & 1)) >>> 16) & 0xffff;
}

/** f32 bit pattern -> f16 bit pattern, round to nearest even, overflow to Inf, subnormals kept. */
export function f32BitsToF16(b: number): number {
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
export function f16ToF32Table(): Uint32Array {
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

/** Reverses each `size`-byte group in place (for big-endian hosts only). */
export function swapBytes(b: Uint8Array, size: number): void {
  for (let i = 0; i + size <= b.length; i += size) {
    for (let j = 0, k = size - 1; j < k; j++, k--) {
      const t = b[i + j]!;
      b[i + j] = b[i + k]!;
      b[i + k] = t;
    }
  }
}

/** Whether an fp32 bit pattern is NaN or ±Inf (all exponent bits set). */
export function nonFiniteBits(x: number): boolean {
  return (x & 0x7f800000) === 0x7f800000;
}

/** Index of the first NaN or ±Inf among the fp32 bit patterns bits[from..to), or -1. */
export function firstNonFinite(bits: Int32Array, from = 0, to = bits.length): number {
  for (let i = from; i < to; i++) {
    if (nonFiniteBits(bits[i]!)) return i;
  }
  return -1;
}
