/**
 * Every op's VJP rule against central finite differences in float64, on random shapes with
 * broadcasting: loss = Σ op(inputs) ⊙ R for a random R, gradient from the emitted backward graph
 * run by ONNX Runtime, compared with (L(x + h e_i) − L(x − h e_i)) / 2h for every element and
 * with (L(x + h u) − L(x − h u)) / 2h along random unit directions u, relative to the gradient's
 * size. h = 1e-5 balances truncation (~h²·L‴/6 ≈ 1e-11) against rounding (~ε·|L|/h ≈ 1e-11).
 */
import { describe, expect, it } from 'vitest';
import ort from 'onnxruntime-node';
import { Graph, type Attrs, type Value } from '../../src/graph/ir.js';
import { emitOnnx } from '../../src/graph/onnx.js';
import { addGradients } from '../../src/graph/autodiff.js';
import { withGradient } from '../../src/graph/vjp-helpers.js';
import type { OpName } from '../../src/graph/ops.js';
import { randomNormMatched, rng } from '../../src/runtime/random.js';

function rand(n: number, seed: number, lo = -1, hi = 1): Float64Array {
  const r = rng(seed);
  return Float64Array.from({ length: n }, () => lo + (hi - lo) * r());
}

/**
 * Finite-difference step and the relative error allowed. Measured: ≤ 4e-10 for every rule but Gelu
 * tanh (6e-9: ORT's kernel and the composite VJP round sqrt(2/π) differently); a rule off by 1e-6
 * fails.
 */
const H = 1e-5;
const TOL = 3e-8;

interface In {
  shape: number[];
  /** positive values only (Sqrt, Log, Div denominators) */
  positive?: boolean;
  /** int64 index input with values < bound */
  indexBound?: number;
  /** don't differentiate */
  frozen?: boolean;
}

interface Case {
  name: string;
  inputs: In[];
  build: (g: Graph, xs: Value[]) => Value;
}

const op = (name: OpName, attrs: Attrs = {}) => (g: Graph, xs: Value[]) => g.add(name, xs, attrs);

const CASES: Case[] = [
  { name: 'Add broadcast', inputs: [{ shape: [2, 3, 4] }, { shape: [3, 1] }], build: op('Add') },
  { name: 'Sub broadcast', inputs: [{ shape: [4] }, { shape: [2, 3, 4] }], build: op('Sub') },
  { name: 'Mul broadcast', inputs: [{ shape: [2, 1, 4] }, { shape: [1, 3, 1] }], build: op('Mul') },
  { name: 'Div broadcast', inputs: [{ shape: [2, 3] }, { shape: [3], positive: true }], build: op('Div') },
  { name: 'Neg', inputs: [{ shape: [5] }], build: op('Neg') },
  { name: 'Sqrt', inputs: [{ shape: [2, 3], positive: true }], build: op('Sqrt') },
  { name: 'Reciprocal', inputs: [{ shape: [2, 3], positive: true }], build: op('Reciprocal') },
  { name: 'Tanh', inputs: [{ shape: [6] }], build: op('Tanh') },
  { name: 'Exp', inputs: [{ shape: [6] }], build: op('Exp') },
  { name: 'Log', inputs: [{ shape: [6], positive: true }], build: op('Log') },
  { name: 'Sigmoid', inputs: [{ shape: [6] }], build: op('Sigmoid') },
  { name: 'Abs', inputs: [{ shape: [6] }], build: op('Abs') },
  { name: 'Identity', inputs: [{ shape: [2, 2] }], build: op('Identity') },
  { name: 'Gelu tanh (composite gradient)', inputs: [{ shape: [7] }], build: op('Gelu', { approximate: 'tanh' }) },
  { name: 'MatMul batched broadcast', inputs: [{ shape: [2, 3, 2, 4] }, { shape: [2, 1, 4, 5] }], build: op('MatMul') },
  { name: 'MatMul 2-D with 3-D', inputs: [{ shape: [2, 3, 4] }, { shape: [4, 2] }], build: op('MatMul') },
  { name: 'Gemm', inputs: [{ shape: [3, 4] }, { shape: [4, 2] }], build: op('Gemm') },
  { name: 'Gemm transB + bias', inputs: [{ shape: [3, 4] }, { shape: [2, 4] }, { shape: [2] }], build: op('Gemm', { transB: 1 }) },
  { name: 'Gemm transA transB alpha', inputs: [{ shape: [4, 3] }, { shape: [2, 4] }], build: op('Gemm', { transA: 1, transB: 1, alpha: 0.7 }) },
  { name: 'Gemm transA', inputs: [{ shape: [4, 3] }, { shape: [4, 2] }, { shape: [3, 2] }], build: op('Gemm', { transA: 1 }) },
  { name: 'ReduceSum keepdims', inputs: [{ shape: [2, 3, 4] }], build: op('ReduceSum', { axes: [1], keepdims: 1 }) },
  { name: 'ReduceSum drop dims', inputs: [{ shape: [2, 3, 4] }], build: op('ReduceSum', { axes: [0, 2], keepdims: 0 }) },
  { name: 'ReduceMean', inputs: [{ shape: [2, 3, 4] }], build: op('ReduceMean', { axes: [-1], keepdims: 1 }) },
  { name: 'ReduceLogSumExp keepdims', inputs: [{ shape: [3, 5] }], build: op('ReduceLogSumExp', { axes: [1], keepdims: 1 }) },
  { name: 'ReduceLogSumExp drop dims', inputs: [{ shape: [2, 3, 4] }], build: op('ReduceLogSumExp', { axes: [0, 2], keepdims: 0 }) },
  { name: 'Softmax', inputs: [{ shape: [2, 5] }], build: op('Softmax', { axis: -1 }) },
  { name: 'LogSoftmax', inputs: [{ shape: [3, 4] }], build: op('LogSoftmax', { axis: 1 }) },
  { name: 'Reshape', inputs: [{ shape: [2, 6] }], build: op('Reshape', { shape: [3, -1, 2] }) },
  { name: 'Transpose', inputs: [{ shape: [2, 3, 4] }], build: op('Transpose', { perm: [2, 0, 1] }) },
  { name: 'Concat', inputs: [{ shape: [2, 3] }, { shape: [2, 1] }, { shape: [2, 2] }], build: op('Concat', { axis: -1 }) },
  { name: 'Slice', inputs: [{ shape: [3, 6] }], build: op('Slice', { starts: [1, -4], ends: [3, 5], axes: [0, 1] }) },
  { name: 'Pad', inputs: [{ shape: [2, 3] }], build: op('Pad', { pads: [1, 0, 0, 2] }) },
  { name: 'Unsqueeze/Squeeze', inputs: [{ shape: [2, 3] }], build: (g, [x]) => g.add('Squeeze', [g.add('Unsqueeze', [x!], { axes: [0, 2] })], { axes: [0] }) },
  {
    name: 'Expand',
    inputs: [{ shape: [3, 1] }, { shape: [2, 3, 4], frozen: true }],
    build: (g, [x, like]) => g.add('Expand', [x!, g.add('Shape', [like!])], { dims: [2, 3, 4] }),
  },
  { name: 'Gather rows (repeated ids)', inputs: [{ shape: [5, 3] }, { shape: [2, 4], indexBound: 5 }], build: op('Gather', { axis: 0 }) },
  {
    // The table's row count known only at run time (rows of a flattened batch): one-hot depth from its shape.
    name: 'Gather rows of a table with a symbolic row count',
    inputs: [{ shape: [5, 3] }, { shape: [2, 4], indexBound: 5 }],
    build: (g, [x, idx]) => g.add('Gather', [g.add('Reshape', [x!, g.add('Shape', [x!])], { dims: ['rows', 3] }), idx!], { axis: 0 }),
  },
  { name: 'GatherElements', inputs: [{ shape: [4, 6] }, { shape: [4, 1], indexBound: 6 }], build: op('GatherElements', { axis: 1 }) },
  {
    name: 'composite: rmsnorm-like chain',
    inputs: [{ shape: [3, 4] }, { shape: [4] }],
    build: (g, [x, w]) => {
      const ms = g.add('ReduceMean', [g.add('Mul', [x!, x!])], { axes: [-1], keepdims: 1 });
      const inv = g.add('Reciprocal', [g.add('Sqrt', [g.add('Add', [ms, g.scalar(1e-3, 'float64')])])]);
      return g.add('Mul', [g.add('Mul', [x!, inv]), w!]);
    },
  },
  {
    // y_m = Σ_d sin(x_md)² with its row gradient J computed first and attached: the backward takes J, not y's nodes.
    name: 'withGradient (a row gradient computed in the forward, attached through StopGradient)',
    inputs: [{ shape: [3, 4] }],
    build: (g, [x]) => {
      const s = g.add('Sin', [x!]);
      const y = g.add('ReduceSum', [g.add('Mul', [s, s])], { axes: [1], keepdims: 1 });
      const [J] = addGradients(g, g.add('ReduceSum', [y], { axes: [0, 1], keepdims: 0 }), [x!]);
      return g.add('Mul', [withGradient(g, y, x!, J!), g.add('Exp', [x!])]);
    },
  },
];

async function session(g: Graph) {
  return ort.InferenceSession.create(emitOnnx(g), { intraOpNumThreads: 1 });
}

describe('VJP rules equal finite differences (float64)', () => {
  it.each(CASES.map((c) => [c.name, c] as const))('%s', async (_name, c) => {
    const g = new Graph('gradcheck');
    const vals: Value[] = [];
    const data: (Float64Array | BigInt64Array)[] = [];
    c.inputs.forEach((inp, i) => {
      if (inp.indexBound) {
        vals.push(g.input(`x${i}`, 'int64', inp.shape));
        const n = inp.shape.reduce((a, b) => a * b, 1);
        data.push(BigInt64Array.from(rand(n, 99 + i, 0, inp.indexBound - 1e-9), (v) => BigInt(Math.floor(v))));
      } else {
        vals.push(g.input(`x${i}`, 'float64', inp.shape));
        const n = inp.shape.reduce((a, b) => a * b, 1);
        data.push(inp.positive ? rand(n, 7 + i, 0.5, 2) : rand(n, 7 + i));
      }
    });
    const out = c.build(g, vals);
    const outShape = out.shape as number[];
    const R = g.input('R', 'float64', outShape);
    const rData = rand(outShape.reduce((a, b) => a * b, 1), 1234);
    const loss = g.add('ReduceSum', [g.add('Mul', [out, R])], { axes: [...outShape.keys()], keepdims: 0 });
    g.output(loss, 'loss');
    const wrtIdx = c.inputs.map((inp, i) => i).filter((i) => !c.inputs[i]!.indexBound && !c.inputs[i]!.frozen);
    const grads = addGradients(g, loss, wrtIdx.map((i) => vals[i]!));
    grads.forEach((gv, k) => g.output(gv, `grad${wrtIdx[k]}`));
    const s = await session(g);
    const feeds = (d: (Float64Array | BigInt64Array)[]) => {
      const f: Record<string, ort.Tensor> = { R: new ort.Tensor('float64', rData, outShape) };
      d.forEach((x, i) => (f[`x${i}`] = new ort.Tensor(x instanceof BigInt64Array ? 'int64' : 'float64', x, c.inputs[i]!.shape)));
      return f;
    };
    const res = await s.run(feeds(data));
    const lossAt = async (i: number, x: Float64Array) => {
      const d = [...data];
      d[i] = x;
      return ((await s.run(feeds(d))).loss!.data as Float64Array)[0]!;
    };
    const fdAlong = async (i: number, u: ArrayLike<number>) => {
      const x = data[i] as Float64Array;
      return ((await lossAt(i, x.map((v, e) => v + H * u[e]!))) - (await lossAt(i, x.map((v, e) => v - H * u[e]!)))) / (2 * H);
    };
    for (const i of wrtIdx) {
      const analytic = res[`grad${i}`]!.data as Float64Array;
      const x = data[i] as Float64Array;
      expect(analytic.length).toBe(x.length);
      const fd = new Float64Array(x.length);
      for (let e = 0; e < x.length; e++) fd[e] = await fdAlong(i, Float64Array.from(x, (_, j) => (j === e ? 1 : 0)));
      const scale = Math.max(...fd.map(Math.abs));
      expect(scale, `input ${i}: a gradient that is 0 everywhere checks nothing`).toBeGreaterThan(1e-3);
      for (let e = 0; e < x.length; e++) {
        expect(Math.abs(analytic[e]! - fd[e]!) / scale, `input ${i} element ${e}: ${analytic[e]} vs ${fd[e]}`).toBeLessThan(TOL);
      }
      const norm = Math.sqrt(analytic.reduce((a, g) => a + g * g, 0));
      for (let k = 0; k < 3; k++) {
        const u = randomNormMatched(x, rng(31 * i + k), { norm: 1 });
        const want = await fdAlong(i, u);
        const got = analytic.reduce((a, g, e) => a + g * u[e]!, 0);
        expect(Math.abs(got - want) / norm, `input ${i} direction ${k}: ${got} vs ${want}`).toBeLessThan(TOL);
      }
    }
  });
});

describe('embedding gradient under threads', () => {
  it('sums rows of repeated ids exactly with ORT on every core (no scatter race)', async () => {
    const [V, D, N] = [453, 128, 3072];
    const g = new Graph('embgrad');
    const W = g.input('W', 'float32', [V, D]);
    const ids = g.input('ids', 'int64', [N]);
    const R = g.input('R', 'float32', [N, D]);
    const loss = g.add('ReduceSum', [g.add('Mul', [g.add('Gather', [W, ids], { axis: 0 }), R])], { axes: [0, 1], keepdims: 0 });
    g.output(loss, 'loss');
    const [gw] = addGradients(g, loss, [W]);
    g.output(gw!, 'gW');
    const s = await ort.InferenceSession.create(emitOnnx(g)); // default threads: all cores
    const idData = BigInt64Array.from(rand(N, 5, 0, 49.999), (v) => BigInt(Math.floor(v)));
    const rData = Float32Array.from(rand(N * D, 6));
    const want = new Float64Array(V * D);
    for (let n = 0; n < N; n++) for (let d = 0; d < D; d++) want[Number(idData[n]) * D + d]! += rData[n * D + d]!;
    for (let rep = 0; rep < 5; rep++) {
      const out = await s.run({ W: new ort.Tensor('float32', new Float32Array(V * D), [V, D]), ids: new ort.Tensor('int64', idData, [N]), R: new ort.Tensor('float32', rData, [N, D]) });
      const got = out.gW!.data as Float32Array;
      let err = 0;
      for (let i = 0; i < got.length; i++) err = Math.max(err, Math.abs(got[i]! - want[i]!));
      expect(err).toBeLessThan(1e-3);
    }
  });
});
