/**
 * The block quantiser against MatMulNBits' own definition: the dequantisation of
 * test/helpers/matmulnbits.ts is written from the contrib op's spec, not from quantize.ts. Then ONNX Runtime itself runs MatMulNBits on the quantiser's output
 * (accuracy_level 0: no activation rounding) and must give x · dequant(W)ᵀ computed in float64.
 */
import { describe, expect, it } from 'vitest';
import { Graph } from '../../src/graph/ir.js';
import { emitOnnx } from '../../src/graph/onnx.js';
import { createSession, f32 } from '../../src/runtime/ort.js';
import { quantizeMatrix } from '../../src/runtime/quantize.js';
import { fillGaussian, rng } from '../../src/runtime/random.js';
import { dequantizeNBits as dequantize } from '../helpers/matmulnbits.js';

function gaussian(n: number, seed: number, sd = 0.2): Float32Array {
  const a = new Float32Array(n);
  fillGaussian(a, rng(seed), sd);
  return a;
}

describe.each([4, 8] as const)('quantizeMatrix, %i bits', (bits) => {
  // K = 80: two whole blocks of 32 and a partial one (16), as a down_proj of width 172 has.
  const N = 6;
  const K = 80;
  const bs = 32;
  const w = gaussian(N * K, bits);
  // An all-zero block, and a block of one sign only (the range still holds 0).
  for (let k = 0; k < 32; k++) w[2 * K + k] = 0;
  for (let k = 32; k < 64; k++) w[3 * K + k] = Math.abs(w[3 * K + k]!) + 0.05;
  const q = quantizeMatrix(w, N, K, bits, bs);

  it('dequantises within half a step of each weight, zero exactly, the full code range used', () => {
    const dq = dequantize(q.B, q.scales, q.zeroPoints, N, K, bits, bs);
    const blocks = Math.ceil(K / bs);
    for (let n = 0; n < N; n++) {
      for (let b = 0; b < blocks; b++) {
        const s = q.scales[n * blocks + b]!;
        let lo = 0;
        let hi = 0;
        for (let k = b * bs; k < Math.min(K, (b + 1) * bs); k++) {
          lo = Math.min(lo, w[n * K + k]!);
          hi = Math.max(hi, w[n * K + k]!);
          expect(Math.abs(dq[n * K + k]! - w[n * K + k]!), `row ${n} col ${k}`).toBeLessThanOrEqual(s / 2 + 1e-7);
        }
        // min/max over the block (0 included): the step is the range over 2^bits - 1 codes.
        if (hi > lo) expect(s).toBeCloseTo((hi - lo) / ((1 << bits) - 1), 6);
      }
    }
    for (let k = 0; k < 32; k++) expect(dq[2 * K + k]).toBe(0);
  });

  it('ONNX Runtime MatMulNBits on its output computes x · dequant(W)ᵀ', async () => {
    const M = 5;
    const x = gaussian(M * K, 10 + bits, 1);
    const g = new Graph('q');
    const xi = g.input('x', 'float32', ['m', K]);
    const blocks = Math.ceil(K / bs);
    const Bv = g.const({ dtype: 'uint8', shape: [N, blocks, (bs * bits) / 8], data: q.B }, 'B');
    const Sv = g.const({ dtype: 'float32', shape: [N * blocks], data: q.scales }, 'scales');
    const Zv = g.const({ dtype: 'uint8', shape: [q.zeroPoints.length], data: q.zeroPoints }, 'zp');
    g.output(g.add('MatMulNBits', [xi, Bv, Sv, Zv], { K, N, bits, block_size: bs, accuracy_level: 0 }, 'y'));
    const s = await createSession(emitOnnx(g));
    const y = (await s.run({ x: f32(x, [M, K]) })).y!.data as Float32Array;
    const dq = dequantize(q.B, q.scales, q.zeroPoints, N, K, bits, bs);
    let scale = 0;
    let err = 0;
    for (let m = 0; m < M; m++) {
      for (let n = 0; n < N; n++) {
        let acc = 0;
        for (let k = 0; k < K; k++) acc += x[m * K + k]! * dq[n * K + k]!;
        scale = Math.max(scale, Math.abs(acc));
        err = Math.max(err, Math.abs(acc - y[m * N + n]!));
      }
    }
    expect(err / scale).toBeLessThan(1e-5);
  });
});
