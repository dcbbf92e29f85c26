/**
 * MatMulNBits' dequantisation, written from the contrib op's spec (ORT's ContribOperators.md,
 * com.microsoft.MatMulNBits), independently of src/runtime/quantize.ts: B is uint8
 * [N, ceil(K/bs), bs·bits/8] with codes packed low bits first along K, scales [N·blocks], zero
 * points uint8 [N, ceil(blocks·bits/8)] packed the same way, and w = (q − zp) · scale.
 */

/** Code `i` of a low-bits-first packed run of `bits`-bit codes starting at byte `start`. */
export function packedCode(bytes: Uint8Array, start: number, i: number, bits: number): number {
  const bit = i * bits;
  return (bytes[start + (bit >> 3)]! >> (bit & 7)) & ((1 << bits) - 1);
}

/** dequant(W) [N, K] from MatMulNBits' inputs; throws when an input has the wrong size. */
export function dequantizeNBits(B: Uint8Array, scales: Float32Array, zp: Uint8Array, N: number, K: number, bits: number, bs: number): Float64Array {
  const blocks = Math.ceil(K / bs);
  const blob = (bs * bits) / 8;
  const zpRow = Math.ceil((blocks * bits) / 8);
  if (B.length !== N * blocks * blob || scales.length !== N * blocks || zp.length !== N * zpRow) {
    throw new Error(`MatMulNBits inputs of sizes ${B.length}, ${scales.length}, ${zp.length}; [${N}, ${K}] at ${bits} bits, block ${bs} needs ${N * blocks * blob}, ${N * blocks}, ${N * zpRow}`);
  }
  const w = new Float64Array(N * K);
  for (let n = 0; n < N; n++) {
    for (let k = 0; k < K; k++) {
      const b = Math.floor(k / bs);
      const q = packedCode(B, (n * blocks + b) * blob, k % bs, bits);
      const z = packedCode(zp, n * zpRow, b, bits);
      w[n * K + k] = (q - z) * scales[n * blocks + b]!;
    }
  }
  return w;
}
