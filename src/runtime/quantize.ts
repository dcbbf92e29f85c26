/**
 * Weight-only block quantisation in the layout of ONNX Runtime's MatMulNBits (com.microsoft):
 * a weight W [N, K] (Hugging Face [out, in]) is cut along K into blocks of `blockSize`; each
 * block gets a scale s and a zero point z, and each value the code q = clamp(round(w / s) + z,
 * 0, 2^bits − 1), so that dequant(q) = (q − z) · s. Asymmetric min/max per block, with 0 kept in
 * the range (then 0 is exactly representable), as ORT's own quantiser does.
 *
 * Layout (MatMulNBits' spec): B uint8 [N, blocks, blockSize·bits/8], codes packed low bits first
 * along K (4 bits: element 2j in the low nibble of byte j, 2j+1 in the high one); scales float
 * [N·blocks]; zero points uint8 [N · ceil(blocks·bits/8)], packed the same way per row. A last
 * partial block is padded with its zero point (dequantises to 0; MatMulNBits ignores it).
 */
import { EmlensError } from '../errors.js';

/** How a command's generation holds the linear layers' weights (`--weights`). */
export type WeightMode = 'fp32' | 'int8' | 'int4';
export const WEIGHT_MODES: readonly WeightMode[] = ['fp32', 'int8', 'int4'];

/**
 * Values per block along K (MatMulNBits' block_size: a power of two >= 16), per mode. int4 uses
 * 64: at 32, ORT's packed copy (codes, an fp32 scale and an fp32 block sum per block) and the
 * fp32 scales it keeps mapped put a 7B decode at 0.213x the fp32 weights, over the 0.2x goal; the
 * price of 64 against 32 is measured in the README's table (bench/quant-price.ts).
 */
export const BLOCK_SIZES: Readonly<Record<Exclude<WeightMode, 'fp32'>, number>> = { int8: 32, int4: 64 };

/**
 * MatMulNBits' accuracy_level: 4 lets ORT's CPU kernel quantise the activations to int8 per
 * block (dynamically, inside the op) and use integer dot products. For bits 8 it is the only fast
 * path (level 0 measured 5-20x slower than fp32 Gemm); for bits 4, 1.1-1.8x faster than level 0.
 * The CUDA kernel ignores it. The added error is measured in the tests and the report.
 */
export const ACCURACY_LEVEL = 4;

export function bitsOf(mode: Exclude<WeightMode, 'fp32'>): 4 | 8 {
  return mode === 'int8' ? 8 : 4;
}

export function blockSizeOf(mode: Exclude<WeightMode, 'fp32'>): number {
  return BLOCK_SIZES[mode];
}

export interface QuantizedMatrix {
  bits: 4 | 8;
  blockSize: number;
  /** Rows (output features). */
  N: number;
  /** Columns (input features). */
  K: number;
  /** [N, blocks, blockSize·bits/8] */
  B: Uint8Array;
  /** [N·blocks] */
  scales: Float32Array;
  /** [N · ceil(blocks·bits/8)] */
  zeroPoints: Uint8Array;
}

/** Blocks per row and the packed sizes of one row's codes and zero points. */
export function quantLayout(K: number, bits: 4 | 8, blockSize: number) {
  const blocks = Math.ceil(K / blockSize);
  return { blocks, blob: (blockSize * bits) / 8, zpRow: Math.ceil((blocks * bits) / 8) };
}

/** Writes code `q` as element `i` of a low-bits-first packed byte run starting at `base`. */
function pack(out: Uint8Array, base: number, i: number, q: number, bits: 4 | 8): void {
  if (bits === 8) out[base + i] = q;
  else out[base + (i >> 1)]! |= (i & 1 ? q << 4 : q);
}

/** Quantises W [N, K] (row-major, Hugging Face [out, in]). */
export function quantizeMatrix(w: Float32Array, N: number, K: number, bits: 4 | 8, blockSize: number): QuantizedMatrix {
  if (w.length !== N * K) throw new Error(`quantizeMatrix: ${w.length} values for [${N}, ${K}]`);
  const { blocks, blob, zpRow } = quantLayout(K, bits, blockSize);
  const qmax = (1 << bits) - 1;
  const B = new Uint8Array(N * blocks * blob);
  const scales = new Float32Array(N * blocks);
  const zeroPoints = new Uint8Array(N * zpRow);
  for (let n = 0; n < N; n++) {
    const row = n * K;
    for (let b = 0; b < blocks; b++) {
      const k0 = b * blockSize;
      const k1 = Math.min(K, k0 + blockSize);
      let lo = 0;
      let hi = 0;
      for (let k = k0; k < k1; k++) {
        const x = w[row + k]!;
        if (!Number.isFinite(x)) throw new EmlensError(`quantize: weight value ${x} at row ${n}, column ${k}`);
        if (x < lo) lo = x;
        if (x > hi) hi = x;
      }
      // An all-zero block: any scale works; 1 keeps (q - z) * s exact.
      const s = hi > lo ? (hi - lo) / qmax : 1;
      const sf = Math.fround(s);
      const z = Math.min(qmax, Math.max(0, Math.round(-lo / sf)));
      scales[n * blocks + b] = sf;
      pack(zeroPoints, n * zpRow, b, z, bits);
      const base = (n * blocks + b) * blob;
      for (let j = 0; j < blockSize; j++) {
        const k = k0 + j;
        const q = k < k1 ? Math.min(qmax, Math.max(0, Math.round(w[row + k]! / sf) + z)) : z;
        pack(B, base, j, q, bits);
      }
    }
  }
  return { bits, blockSize, N, K, B, scales, zeroPoints };
}
