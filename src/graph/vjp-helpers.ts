/** Building blocks the VJP rules share: broadcasting undone, zeros, transposes. */
import type { Graph, Shape, Value } from './ir.js';

/** A gradient that cannot be built (op or case not differentiable here). */
export class GradError extends Error {
  override name = 'GradError';
}

export function staticShape(v: Value, what: string): number[] {
  if (!v.shape.every((d) => typeof d === 'number')) throw new GradError(`${what}: needs a static shape, got [${v.shape}]`);
  return v.shape as number[];
}

/**
 * Sums a gradient over the axes on which `target` was broadcast, and shapes it like `target`.
 * Axes are found from the static shapes: leading axes the target lacks, and axes where the
 * target has 1 and the gradient does not (a symbolic dim is never taken to be 1).
 */
export function sumToShape(g: Graph, grad: Value, target: Value): Value {
  const gs = grad.shape;
  const ts = target.shape;
  const lead = gs.length - ts.length;
  const axes: number[] = [];
  for (let i = 0; i < gs.length; i++) {
    if (i < lead) axes.push(i);
    else if (ts[i - lead] === 1 && gs[i] !== 1) axes.push(i);
  }
  let out = grad;
  if (axes.length) out = g.add('ReduceSum', [out], { axes, keepdims: 1 });
  if (lead > 0 || !sameDims(out.shape, ts)) {
    out = ts.every((d) => typeof d === 'number')
      ? g.add('Reshape', [out], { shape: ts as number[] })
      : g.add('Reshape', [out, g.add('Shape', [target])], { dims: ts });
  }
  return out;
}

function sameDims(a: Shape, b: Shape): boolean {
  return a.length === b.length && a.every((d, i) => d === b[i]);
}

export function transposeLast2(g: Graph, x: Value): Value {
  const r = x.shape.length;
  const perm = [...Array(r).keys()];
  perm[r - 2] = r - 1;
  perm[r - 1] = r - 2;
  return g.add('Transpose', [x], { perm });
}

/**
 * `y` (per-row values [M, 1] of `x` [M, D], row m depending on x's row m only) as a value whose
 * gradient with respect to x is J ⊙ dy, J [M, D] = dy_m/dx_m computed already (e.g. by an inner
 * addGradients while y's intermediates were live), and through whose own nodes no gradient
 * flows: SG(y) + Σ_d (x − SG(x)) ⊙ SG(J). The added term is exactly zero for a finite J.
 */
export function withGradient(g: Graph, y: Value, x: Value, J: Value): Value {
  const dx = g.add('Sub', [x, g.add('StopGradient', [x])]);
  const lin = g.add('ReduceSum', [g.add('Mul', [dx, g.add('StopGradient', [J])])], { axes: [-1], keepdims: 1 });
  return g.add('Add', [g.add('StopGradient', [y]), lin]);
}
