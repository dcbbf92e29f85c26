/**
 * The op table: every op the IR knows, with its shape rule. Ops map one-to-one onto ONNX ops
 * (opset 21); attributes that ONNX takes as inputs (axes, shapes, slice bounds) are attributes
 * here and become constants at emission, so shape rules can read them.
 *
 * Each op also has its VJP rule: given the gradients of its outputs, it adds the nodes that
 * compute the gradients of its inputs (only those asked for) to the same graph. autodiff.ts walks
 * the graph backwards with these rules.
 */
import type { Attrs, DType, Dim, Graph, Shape, Value } from './ir.js';
import { GradError, sumToShape, transposeLast2, staticShape } from './vjp-helpers.js';

export interface OutType {
  dtype: DType;
  shape: Shape;
}

export interface VjpArgs {
  g: Graph;
  inputs: Value[];
  outputs: Value[];
  attrs: Attrs;
  /** Gradient of each output (null where nothing flows back). */
  gy: (Value | null)[];
  /** Which inputs need a gradient. */
  needs: boolean[];
}

export interface OpDef {
  infer(inputs: Value[], attrs: Attrs, g: Graph): OutType[];
  /** Input gradients (null where not needed or not differentiable). */
  vjp(a: VjpArgs): (Value | null)[];
}

const noGrad = (what: string) => (a: VjpArgs): (Value | null)[] => {
  if (a.needs.some(Boolean)) throw new GradError(`${what} has no gradient`);
  return a.inputs.map(() => null);
};

let fresh = 0;
/** A new symbolic dim for sizes the rules cannot name. */
function freshDim(tag: string): string {
  return `${tag}_${fresh++}`;
}

function fail(op: string, msg: string): never {
  throw new Error(`shape rule ${op}: ${msg}`);
}

function arity(op: string, inputs: Value[], n: number): void {
  if (inputs.length !== n) fail(op, `expects ${n} inputs, got ${inputs.length}`);
}

export function broadcastShapes(op: string, a: Shape, b: Shape): Shape {
  const n = Math.max(a.length, b.length);
  const out: Dim[] = [];
  for (let i = 0; i < n; i++) {
    const da = i < n - a.length ? 1 : a[i - (n - a.length)]!;
    const db = i < n - b.length ? 1 : b[i - (n - b.length)]!;
    if (da === 1) out.push(db);
    else if (db === 1) out.push(da);
    else if (da === db) out.push(da);
    else if (typeof da === 'string' || typeof db === 'string') out.push(typeof da === 'number' ? da : db);
    else fail(op, `cannot broadcast [${a}] with [${b}]`);
  }
  return out;
}

function normAxis(op: string, axis: number, rank: number): number {
  const a = axis < 0 ? axis + rank : axis;
  if (a < 0 || a >= rank) fail(op, `axis ${axis} out of range for rank ${rank}`);
  return a;
}

const sameShape = (x: Value[]): OutType[] => {
  arity('unary', x, 1);
  return [{ dtype: x[0]!.dtype, shape: x[0]!.shape }];
};

/** An elementwise op whose derivative is dy/dx = f(g, x, y). */
const unary = (deriv: (g: Graph, x: Value, y: Value) => Value): OpDef => ({
  infer: sameShape,
  vjp: ({ g, inputs: [x], outputs: [y], gy: [gy], needs: [n] }) => (n && gy ? [g.add('Mul', [gy, deriv(g, x!, y!)])] : [null]),
});

const binaryInfer = (op: string) => ([a, b]: Value[]): OutType[] => {
  if (!a || !b) fail(op, 'expects 2 inputs');
  if (a.dtype !== b.dtype) fail(op, `dtype mismatch ${a.dtype} vs ${b.dtype}`);
  return [{ dtype: a.dtype, shape: broadcastShapes(op, a.shape, b.shape) }];
};

/** A broadcasting binary op: ga, gb before summing over broadcast axes. */
const binary = (op: string, grads: (g: Graph, gy: Value, a: Value, b: Value, y: Value, needs: boolean[]) => [Value | null, Value | null]): OpDef => ({
  infer: binaryInfer(op),
  vjp: ({ g, inputs: [a, b], outputs: [y], gy: [gy], needs }) => {
    if (!gy) return [null, null];
    const [ga, gb] = grads(g, gy, a!, b!, y!, needs);
    return [needs[0] && ga ? sumToShape(g, ga, a!) : null, needs[1] && gb ? sumToShape(g, gb, b!) : null];
  },
});

const reduceInfer = (op: string) => ([x]: Value[], attrs: Attrs): OutType[] => {
    const axes = (attrs.axes as number[]).map((a) => normAxis(op, a, x!.shape.length));
    const keep = attrs.keepdims !== 0;
    const shape: Shape = [];
    x!.shape.forEach((d, i) => {
      if (!axes.includes(i)) shape.push(d);
      else if (keep) shape.push(1);
    });
    return [{ dtype: x!.dtype, shape }];
};

/** Broadcasts a reduced gradient back over the reduced axes. */
function expandBack(g: Graph, gy: Value, x: Value, attrs: Attrs): Value {
  const axes = (attrs.axes as number[]).map((a) => (a < 0 ? a + x.shape.length : a));
  const kept = attrs.keepdims === 0 ? g.add('Unsqueeze', [gy], { axes }) : gy;
  return g.add('Expand', [kept, g.add('Shape', [x])], { dims: x.shape });
}

function dimProduct(dims: Shape): number | null {
  let p = 1;
  for (const d of dims) {
    if (typeof d !== 'number') return null;
    p *= d;
  }
  return p;
}

export type OpName =
  | 'Identity' | 'Neg' | 'Sqrt' | 'Cos' | 'Sin' | 'CumSum' | 'Reciprocal' | 'Tanh' | 'Exp' | 'Log' | 'Sigmoid' | 'Abs' | 'Sign' | 'Gelu'
  | 'Add' | 'Sub' | 'Mul' | 'Div' | 'Cast' | 'MatMul' | 'Gemm' | 'MatMulNBits'
  | 'ReduceMean' | 'ReduceSum' | 'ReduceMax' | 'ReduceLogSumExp' | 'Softmax' | 'LogSoftmax'
  | 'Reshape' | 'Expand' | 'Transpose' | 'Concat' | 'Slice' | 'Pad'
  | 'Gather' | 'GatherElements' | 'ScatterND' | 'ScatterElements' | 'OneHot' | 'Shape' | 'Unsqueeze' | 'Squeeze'
  | 'NonZero' | 'StopGradient';

export const OPS: Record<OpName, OpDef> = {
  Identity: unary((g, x) => g.scalar(1, x.dtype)),
  Neg: unary((g, x) => g.scalar(-1, x.dtype)),
  Sqrt: unary((g, _x, y) => g.add('Div', [g.scalar(0.5, y.dtype), y])),
  Reciprocal: unary((g, _x, y) => g.add('Neg', [g.add('Mul', [y, y])])),
  Tanh: unary((g, _x, y) => g.add('Sub', [g.scalar(1, y.dtype), g.add('Mul', [y, y])])),
  Exp: unary((_g, _x, y) => y),
  Log: unary((g, x) => g.add('Reciprocal', [x])),
  Sigmoid: unary((g, _x, y) => g.add('Mul', [y, g.add('Sub', [g.scalar(1, y.dtype), y])])),
  Abs: unary((g, x) => g.add('Sign', [x])),
  Sign: { infer: sameShape, vjp: ({ inputs }) => inputs.map(() => null) },
  Cos: unary((g, x) => g.add('Neg', [g.add('Sin', [x])])),
  Sin: unary((g, x) => g.add('Cos', [x])),
  /** Inclusive running sum along attrs.axis (in-graph position ids); not differentiated. */
  CumSum: { infer: sameShape, vjp: noGrad('CumSum') },
  /** attrs.approximate: 'none' | 'tanh' (only tanh is differentiable here). */
  Gelu: unary((g, x, _y) => geluTanhDerivative(g, x)),
  Add: binary('Add', (_g, gy) => [gy, gy]),
  Sub: binary('Sub', (g, gy, _a, _b, _y, n) => [gy, n[1] ? g.add('Neg', [gy]) : null]),
  Mul: binary('Mul', (g, gy, a, b, _y, n) => [n[0] ? g.add('Mul', [gy, b]) : null, n[1] ? g.add('Mul', [gy, a]) : null]),
  Div: binary('Div', (g, gy, _a, b, y, n) => [
    n[0] ? g.add('Div', [gy, b]) : null,
    n[1] ? g.add('Neg', [g.add('Div', [g.add('Mul', [gy, y]), b])]) : null,
  ]),
  Cast: {
    infer: ([x], attrs) => [{ dtype: attrs.to as DType, shape: x!.shape }],
    vjp: ({ g, inputs: [x], gy: [gy], needs: [n] }) => (n && gy ? [g.add('Cast', [gy], { to: x!.dtype })] : [null]),
  },
  MatMul: {
    infer: ([a, b]) => {
      if (!a || !b) fail('MatMul', 'expects 2 inputs');
      if (a.shape.length < 2 || b.shape.length < 2) fail('MatMul', '1-D operands are not supported');
      const ka = a.shape[a.shape.length - 1]!;
      const kb = b.shape[b.shape.length - 2]!;
      if (typeof ka === 'number' && typeof kb === 'number' && ka !== kb) fail('MatMul', `inner dims ${ka} vs ${kb}`);
      const batch = broadcastShapes('MatMul', a.shape.slice(0, -2), b.shape.slice(0, -2));
      return [{ dtype: a.dtype, shape: [...batch, a.shape[a.shape.length - 2]!, b.shape[b.shape.length - 1]!] }];
    },
    // dA = dY Bᵀ, dB = Aᵀ dY, each summed over the batch axes its operand was broadcast on.
    vjp: ({ g, inputs: [a, b], gy: [gy], needs }) => {
      if (!gy) return [null, null];
      return [
        needs[0] ? sumToShape(g, g.add('MatMul', [gy, transposeLast2(g, b!)]), a!) : null,
        needs[1] ? sumToShape(g, g.add('MatMul', [transposeLast2(g, a!), gy]), b!) : null,
      ];
    },
  },
  /**
   * com.microsoft MatMulNBits: Y[..., N] = A[..., K] · dequant(B)ᵀ, B block-quantised along K
   * (inputs A, B, scales, zero_points; attrs K, N, bits, block_size, accuracy_level). Inference
   * only: its weights are constants.
   */
  MatMulNBits: {
    infer: ([a], attrs) => {
      if (!a) fail('MatMulNBits', 'expects A');
      const k = a.shape[a.shape.length - 1]!;
      if (typeof k === 'number' && k !== attrs.K) fail('MatMulNBits', `A's last dim ${k} vs K ${attrs.K}`);
      return [{ dtype: a.dtype, shape: [...a.shape.slice(0, -1), attrs.N as number] }];
    },
    vjp: noGrad('MatMulNBits'),
  },
  /** Y = alpha * A' B' (+ C); 2-D only. attrs: transA, transB, alpha. */
  Gemm: {
    infer: ([a, b, c], attrs) => {
      if (!a || !b || a.shape.length !== 2 || b.shape.length !== 2) fail('Gemm', 'needs 2-D A and B');
      const [m, ka] = attrs.transA ? [a.shape[1]!, a.shape[0]!] : [a.shape[0]!, a.shape[1]!];
      const [kb, n] = attrs.transB ? [b.shape[1]!, b.shape[0]!] : [b.shape[0]!, b.shape[1]!];
      if (typeof ka === 'number' && typeof kb === 'number' && ka !== kb) fail('Gemm', `inner dims ${ka} vs ${kb}`);
      if (c) broadcastShapes('Gemm', [m, n], c.shape);
      return [{ dtype: a.dtype, shape: [m, n] }];
    },
    vjp: ({ g, inputs: [a, b, c], attrs, gy: [gy], needs }) => {
      if (!gy) return [null, null, null];
      const alpha = (attrs.alpha as number | undefined) ?? 1;
      const tA = attrs.transA ? 1 : 0;
      const tB = attrs.transB ? 1 : 0;
      const scale: Attrs = alpha === 1 ? {} : { alpha };
      // Y = op(A) op(B): d op(A) = dY op(B)ᵀ, d op(B) = op(A)ᵀ dY; undo the op on the way out.
      const ga = !needs[0]
        ? null
        : tA
          ? g.add('Gemm', [b!, gy], { transA: tB, transB: 1, ...scale }) // (dY op(B)ᵀ)ᵀ = op(B) dYᵀ
          : g.add('Gemm', [gy, b!], { transB: tB ? 0 : 1, ...scale });
      const gb = !needs[1]
        ? null
        : tB
          ? g.add('Gemm', [gy, a!], { transA: 1, transB: tA, ...scale }) // (op(A)ᵀ dY)ᵀ = dYᵀ op(A)
          : g.add('Gemm', [a!, gy], { transA: tA ? 0 : 1, ...scale });
      const gc = c && needs[2] ? sumToShape(g, gy, c) : null;
      return [ga, gb, gc];
    },
  },
  ReduceMean: {
    infer: reduceInfer('ReduceMean'),
    vjp: ({ g, inputs: [x], attrs, gy: [gy], needs: [n] }) => {
      if (!n || !gy) return [null];
      const axes = (attrs.axes as number[]).map((a) => (a < 0 ? a + x!.shape.length : a));
      const count = axes.reduce((p, a) => (typeof x!.shape[a] === 'number' && typeof p === 'number' ? p * (x!.shape[a] as number) : NaN), 1);
      if (!Number.isFinite(count)) throw new GradError('ReduceMean over a symbolic axis has no gradient here; use ReduceSum and divide by a fed count');
      return [g.add('Mul', [expandBack(g, gy, x!, attrs), g.scalar(1 / count, x!.dtype)])];
    },
  },
  ReduceSum: {
    infer: reduceInfer('ReduceSum'),
    vjp: ({ g, inputs: [x], attrs, gy: [gy], needs: [n] }) => [n && gy ? expandBack(g, gy, x!, attrs) : null],
  },
  ReduceMax: { infer: reduceInfer('ReduceMax'), vjp: noGrad('ReduceMax') },
  /** log Σ exp(x) over attrs.axes (ORT subtracts the max first: no overflow). dx = exp(x − y) ⊙ dy. */
  ReduceLogSumExp: {
    infer: reduceInfer('ReduceLogSumExp'),
    vjp: ({ g, inputs: [x], outputs: [y], attrs, gy: [gy], needs: [n] }) => {
      if (!n || !gy) return [null];
      const axes = (attrs.axes as number[]).map((a) => (a < 0 ? a + x!.shape.length : a));
      const keep = (v: Value) => (attrs.keepdims === 0 ? g.add('Unsqueeze', [v], { axes }) : v);
      return [g.add('Mul', [g.add('Exp', [g.add('Sub', [x!, keep(y!)])]), keep(gy)])];
    },
  },
  Softmax: {
    infer: ([x], attrs) => {
      normAxis('Softmax', attrs.axis as number, x!.shape.length);
      return [{ dtype: x!.dtype, shape: x!.shape }];
    },
    // dx = y ⊙ (dy − Σ dy ⊙ y)
    vjp: ({ g, outputs: [y], attrs, gy: [gy], needs: [n] }) => {
      if (!n || !gy) return [null];
      const s = g.add('ReduceSum', [g.add('Mul', [gy, y!])], { axes: [attrs.axis as number], keepdims: 1 });
      return [g.add('Mul', [y!, g.add('Sub', [gy, s])])];
    },
  },
  LogSoftmax: {
    infer: ([x], attrs) => {
      normAxis('LogSoftmax', attrs.axis as number, x!.shape.length);
      return [{ dtype: x!.dtype, shape: x!.shape }];
    },
    // dx = dy − softmax(x) Σ dy
    vjp: ({ g, outputs: [y], attrs, gy: [gy], needs: [n] }) => {
      if (!n || !gy) return [null];
      const s = g.add('ReduceSum', [gy], { axes: [attrs.axis as number], keepdims: 1 });
      return [g.add('Sub', [gy, g.add('Mul', [g.add('Exp', [y!]), s])])];
    },
  },
  /**
   * Static: attrs.shape with ONNX semantics (0 copies the input dim, -1 is inferred).
   * Dynamic: a second input holds the shape at run time; attrs.dims names the result's dims.
   */
  Reshape: {
    infer: ([x, dyn], attrs) => {
      if (dyn) return [{ dtype: x!.dtype, shape: attrs.dims as unknown as Shape }];
      const target = attrs.shape as number[];
      const shape: Shape = target.map((d, i) => (d === 0 ? x!.shape[i]! : d));
      const neg = shape.indexOf(-1);
      if (neg >= 0) {
        const total = dimProduct(x!.shape);
        const rest = dimProduct(shape.filter((_, i) => i !== neg));
        shape[neg] = total !== null && rest !== null ? total / rest : freshDim('r');
      }
      return [{ dtype: x!.dtype, shape }];
    },
    vjp: ({ g, inputs: [x], gy: [gy], needs: [n] }) => [n && gy ? reshapeLike(g, gy, x!) : null, null],
  },
  /** Broadcast to a run-time shape (second input); attrs.dims names the result's dims. */
  Expand: {
    infer: ([x], attrs) => [{ dtype: x!.dtype, shape: attrs.dims as unknown as Shape }],
    vjp: ({ g, inputs: [x], gy: [gy], needs: [n] }) => [n && gy ? sumToShape(g, gy, x!) : null, null],
  },
  Transpose: {
    infer: ([x], attrs) => {
      const perm = attrs.perm as number[];
      if (perm.length !== x!.shape.length) fail('Transpose', `perm ${perm} for rank ${x!.shape.length}`);
      return [{ dtype: x!.dtype, shape: perm.map((p) => x!.shape[p]!) }];
    },
    vjp: ({ g, attrs, gy: [gy], needs: [n] }) => {
      if (!n || !gy) return [null];
      const perm = attrs.perm as number[];
      const inv = perm.map((_, i) => perm.indexOf(i));
      return [g.add('Transpose', [gy], { perm: inv })];
    },
  },
  Concat: {
    infer: (xs, attrs) => {
      const rank = xs[0]!.shape.length;
      const axis = normAxis('Concat', attrs.axis as number, rank);
      const shape = [...xs[0]!.shape];
      const sizes = xs.map((x) => x.shape[axis]!);
      shape[axis] = sizes.every((s) => typeof s === 'number') ? (sizes as number[]).reduce((a, b) => a + b, 0) : freshDim('cat');
      return [{ dtype: xs[0]!.dtype, shape }];
    },
    vjp: ({ g, inputs, attrs, gy: [gy], needs }) => {
      if (!gy) return inputs.map(() => null);
      const rank = inputs[0]!.shape.length;
      const axis = normAxis('Concat', attrs.axis as number, rank);
      let off = 0;
      return inputs.map((x, i) => {
        const size = x.shape[axis];
        if (typeof size !== 'number') {
          if (needs.some(Boolean)) throw new GradError('Concat along a symbolic axis has no gradient here');
          return null;
        }
        const piece = needs[i] ? g.add('Slice', [gy], { starts: [off], ends: [off + size], axes: [axis] }) : null;
        off += size;
        return piece;
      });
    },
  },
  /** attrs: starts, ends, axes (steps 1). */
  Slice: {
    infer: ([x], attrs) => {
      const shape = [...x!.shape];
      const axes = attrs.axes as number[];
      axes.forEach((a, i) => {
        const ax = normAxis('Slice', a, shape.length);
        const d = shape[ax]!;
        const s = (attrs.starts as number[])[i]!;
        const e = (attrs.ends as number[])[i]!;
        if (typeof d === 'number') {
          const clamp = (v: number) => Math.max(0, Math.min(d, v < 0 ? v + d : v));
          shape[ax] = Math.max(0, clamp(e) - clamp(s));
        } else if (s >= 0 && e >= 0 && e < 2 ** 31) shape[ax] = e - s;
        else shape[ax] = freshDim('slice');
      });
      return [{ dtype: x!.dtype, shape }];
    },
    // Zero-pad the gradient back to the input's extent (static dims only).
    vjp: ({ g, inputs: [x], attrs, gy: [gy], needs: [n] }) => {
      if (!n || !gy) return [null];
      const rank = x!.shape.length;
      const pads = new Array(2 * rank).fill(0);
      (attrs.axes as number[]).forEach((a, i) => {
        const ax = normAxis('Slice', a, rank);
        const d = x!.shape[ax];
        if (typeof d !== 'number') throw new GradError('Slice of a symbolic axis has no gradient here');
        const clamp = (v: number) => Math.max(0, Math.min(d, v < 0 ? v + d : v));
        const s = clamp((attrs.starts as number[])[i]!);
        const e = Math.max(s, clamp((attrs.ends as number[])[i]!));
        pads[ax] = s;
        pads[rank + ax] = d - e;
      });
      return [g.add('Pad', [gy], { pads })];
    },
  },
  /** Constant zero padding; attrs.pads as ONNX: [begin_0..begin_r, end_0..end_r]. */
  Pad: {
    infer: ([x], attrs) => {
      const pads = attrs.pads as number[];
      const r = x!.shape.length;
      return [{ dtype: x!.dtype, shape: x!.shape.map((d, i) => (typeof d === 'number' ? d + pads[i]! + pads[r + i]! : pads[i]! + pads[r + i]! ? freshDim('pad') : d)) }];
    },
    vjp: ({ g, inputs: [x], attrs, gy: [gy], needs: [n] }) => {
      if (!n || !gy) return [null];
      const pads = attrs.pads as number[];
      const r = x!.shape.length;
      const axes = [...Array(r).keys()].filter((i) => pads[i] || pads[r + i]);
      if (!axes.length) return [gy];
      const shape = staticShape(x!, 'Pad');
      return [g.add('Slice', [gy], { starts: axes.map((i) => pads[i]!), ends: axes.map((i) => pads[i]! + shape[i]!), axes })];
    },
  },
  /**
   * Gather along attrs.axis (default 0). The gradient w.r.t. the data is OneHot(idx)ᵀ · dY: a
   * matmul, deterministic. (ORT's ScatterND with reduction 'add' races when two threads add into
   * the same row — repeated token ids — and returns wrong sums.)
   */
  Gather: {
    infer: ([x, idx], attrs) => {
      const axis = normAxis('Gather', (attrs.axis as number) ?? 0, x!.shape.length);
      return [{ dtype: x!.dtype, shape: [...x!.shape.slice(0, axis), ...idx!.shape, ...x!.shape.slice(axis + 1)] }];
    },
    // The row count may be symbolic (rows of the flattened batch): the one-hot depth is then read at run time.
    vjp: ({ g, inputs: [x, idx], attrs, gy: [gy], needs }) => {
      if (!gy || !needs[0]) return [null, null];
      if (((attrs.axis as number) ?? 0) !== 0 || x!.shape.length !== 2) throw new GradError('Gather has a gradient for 2-D data on axis 0 only');
      const [rows, width] = x!.shape;
      if (typeof width !== 'number') throw new GradError(`Gather: needs a static row width, got [${x!.shape}]`);
      const flatIdx = g.add('Reshape', [idx!], { shape: [-1] });
      const depth = typeof rows === 'number' ? rows : g.add('Slice', [g.add('Shape', [x!])], { starts: [0], ends: [1], axes: [0] });
      const oneHot = oneHotAs(g, flatIdx, depth, x!.dtype, rows!); // [n, rows]
      const upd = g.add('Reshape', [gy], { shape: [-1, width] }); // [n, width]
      return [g.add('Gemm', [oneHot, upd], { transA: 1 }), null];
    },
  },
  /** Picks one element per row: y[i, 0] = x[i, idx[i, 0]] along attrs.axis (the last). */
  GatherElements: {
    infer: ([x, idx]) => [{ dtype: x!.dtype, shape: idx!.shape }],
    // One pick per row: the gradient is OneHot(idx) ⊙ dY, elementwise.
    vjp: ({ g, inputs: [x, idx], attrs, gy: [gy], needs }) => {
      if (!gy || !needs[0]) return [null, null];
      const rank = x!.shape.length;
      const axis = normAxis('GatherElements', (attrs.axis as number) ?? 0, rank);
      const depth = x!.shape[axis];
      if (axis !== rank - 1 || idx!.shape[axis] !== 1 || typeof depth !== 'number') throw new GradError('GatherElements has a gradient for one pick along the last, static axis only');
      const oneHot = oneHotAs(g, g.add('Squeeze', [idx!], { axes: [axis] }), depth, x!.dtype);
      return [g.add('Mul', [oneHot, gy]), null];
    },
  },
  ScatterND: { infer: ([x]) => [{ dtype: x!.dtype, shape: x!.shape }], vjp: noGrad('ScatterND') },
  ScatterElements: { infer: ([x]) => [{ dtype: x!.dtype, shape: x!.shape }], vjp: noGrad('ScatterElements') },
  /**
   * indices [...] -> float32 [..., depth] of 0/1 (ONNX OneHot, values [0, 1]; ORT has no float64
   * kernel). depth: attrs.depth, or a run-time int64 [1] second input with attrs.dim naming it.
   */
  OneHot: {
    infer: ([idx, depth], attrs) => [{ dtype: 'float32', shape: [...idx!.shape, depth ? (attrs.dim as Dim) : (attrs.depth as number)] }],
    vjp: ({ inputs }) => inputs.map(() => null),
  },
  Shape: {
    infer: ([x]) => [{ dtype: 'int64', shape: [x!.shape.length] }],
    vjp: ({ inputs }) => inputs.map(() => null),
  },
  Unsqueeze: {
    infer: ([x], attrs) => {
      const shape = [...x!.shape];
      const rank = shape.length + (attrs.axes as number[]).length;
      for (const a of (attrs.axes as number[]).map((a) => (a < 0 ? a + rank : a)).sort((p, q) => p - q)) shape.splice(a, 0, 1);
      return [{ dtype: x!.dtype, shape }];
    },
    vjp: ({ g, inputs: [x], attrs, gy: [gy], needs: [n] }) => [n && gy ? g.add('Squeeze', [gy], { axes: attrs.axes as number[] }) : null],
  },
  Squeeze: {
    infer: ([x], attrs) => {
      const axes = (attrs.axes as number[]).map((a) => normAxis('Squeeze', a, x!.shape.length));
      return [{ dtype: x!.dtype, shape: x!.shape.filter((_, i) => !axes.includes(i)) }];
    },
    vjp: ({ g, inputs: [x], attrs, gy: [gy], needs: [n] }) => [n && gy ? g.add('Unsqueeze', [gy], { axes: attrs.axes as number[] }) : null],
  },
  /** Indices [rank, count] of the non-zero elements (count known at run time); not differentiated. */
  NonZero: {
    infer: ([x]) => [{ dtype: 'int64', shape: [x!.shape.length, freshDim('nonzero')] }],
    vjp: ({ inputs }) => inputs.map(() => null),
  },
  /**
   * The value itself (ONNX Identity), through which no gradient flows: for a gradient computed
   * otherwise and attached with vjp-helpers' withGradient.
   */
  StopGradient: { infer: sameShape, vjp: ({ inputs }) => inputs.map(() => null) },
};

/** Reshape `v` to `like`'s shape (static when known, else from Shape(like) at run time). */
function reshapeLike(g: Graph, v: Value, like: Value): Value {
  if (like.shape.every((d) => typeof d === 'number')) return g.add('Reshape', [v], { shape: like.shape as number[] });
  return g.add('Reshape', [v, g.add('Shape', [like])], { dims: like.shape });
}

/** d/dx of 0.5 x (1 + tanh(c (x + 0.044715 x³))), c = sqrt(2/pi). */
function geluTanhDerivative(g: Graph, x: Value): Value {
  const t = x.dtype;
  const c = Math.sqrt(2 / Math.PI);
  const x2 = g.add('Mul', [x, x]);
  const inner = g.add('Mul', [g.scalar(c, t), g.add('Add', [x, g.add('Mul', [g.scalar(0.044715, t), g.add('Mul', [x2, x])])])]);
  const th = g.add('Tanh', [inner]);
  const dinner = g.add('Mul', [g.scalar(c, t), g.add('Add', [g.scalar(1, t), g.add('Mul', [g.scalar(3 * 0.044715, t), x2])])]);
  const left = g.add('Mul', [g.scalar(0.5, t), g.add('Add', [g.scalar(1, t), th])]);
  const sech2 = g.add('Sub', [g.scalar(1, t), g.add('Mul', [th, th])]);
  return g.add('Add', [left, g.add('Mul', [g.add('Mul', [g.scalar(0.5, t), x]), g.add('Mul', [sech2, dinner])])]);
}

function oneHotAs(g: Graph, idx: Value, depth: number | Value, dtype: DType, dim?: Dim): Value {
  const h = typeof depth === 'number' ? g.add('OneHot', [idx], { depth }) : g.add('OneHot', [idx, depth], { dim: dim! });
  return dtype === 'float32' ? h : g.add('Cast', [h], { to: dtype });
}
