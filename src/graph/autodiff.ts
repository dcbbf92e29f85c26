/**
 * Reverse-mode autodiff over the IR: appends to the graph the nodes that compute the gradient of
 * a loss with respect to chosen values (graph inputs: a steering vector, adapter factors,
 * weights). Each op's VJP rule (ops.ts) adds its part; only the nodes on a path from `wrt` to the
 * loss are differentiated, and only the input gradients those paths need are built — a frozen
 * weight costs no weight-gradient matmul.
 */
import type { Graph, Value } from './ir.js';
import { OPS } from './ops.js';
import { GradError } from './vjp-helpers.js';

export { GradError };

/** Adds d(loss)/d(w) for each w in `wrt` to the graph; `loss` is summed if not a scalar. */
export function addGradients(g: Graph, loss: Value, wrt: Value[]): Value[] {
  if (loss.dtype !== 'float32' && loss.dtype !== 'float64') throw new GradError(`loss must be floating point, got ${loss.dtype}`);
  // Values that depend on some wrt value: the only ones gradients flow through.
  const live = new Set<number>(wrt.map((w) => w.id));
  const forward = [...g.nodes];
  // A StopGradient's output depends on nothing differentiably: gradients need not be built towards it.
  for (const n of forward) if (n.op !== 'StopGradient' && n.inputs.some((v) => live.has(v.id))) for (const o of n.outputs) live.add(o.id);
  if (!live.has(loss.id)) throw new GradError('the loss does not depend on any of the values to differentiate');

  const grads = new Map<number, Value>();
  const accumulate = (v: Value, gv: Value) => {
    const prev = grads.get(v.id);
    grads.set(v.id, prev ? g.add('Add', [prev, gv]) : gv);
  };
  const seed =
    loss.shape.length === 0
      ? g.scalar(1, loss.dtype)
      : g.add('Expand', [g.scalar(1, loss.dtype), g.add('Shape', [loss])], { dims: loss.shape });
  grads.set(loss.id, seed);

  for (let i = forward.length - 1; i >= 0; i--) {
    const n = forward[i]!;
    const gy = n.outputs.map((o) => grads.get(o.id) ?? null);
    if (gy.every((x) => x === null)) continue;
    const needs = n.inputs.map((v) => live.has(v.id) && (v.dtype === 'float32' || v.dtype === 'float64'));
    if (!needs.some(Boolean)) continue;
    const gx = OPS[n.op].vjp({ g, inputs: n.inputs, outputs: n.outputs, attrs: n.attrs, gy, needs });
    n.inputs.forEach((v, k) => {
      const gv = gx[k];
      if (needs[k] && gv) accumulate(v, gv);
    });
  }
  return wrt.map((w) => {
    const gw = grads.get(w.id);
    if (!gw) throw new GradError(`no gradient reaches ${w.name}`);
    return gw;
  });
}
