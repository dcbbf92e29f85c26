/**
 * A model's graphs (decoder, objective and its backward) replayed in float64, for gradient checks
 * that finite differences in float32 cannot resolve. The replay keeps every op and attribute and
 * only widens float32 inputs, constants and casts, so it is the same computation in more bits (run
 * without ORT's graph fusions, some of which have float32 kernels only).
 */
import ort from 'onnxruntime-node';
import { Graph, type Value } from '../../src/graph/ir.js';
import { emitOnnx } from '../../src/graph/onnx.js';
import { buildDecoderGraph } from '../../src/arch/decoder.js';
import type { Engine, GraphExtension, Prepared } from '../../src/runtime/engine.js';

export function toFloat64(g: Graph): Graph {
  const out = new Graph(`${g.name}_f64`);
  const map = new Map<number, Value>();
  const m = (v: Value) => map.get(v.id) ?? fail(v);
  const fail = (v: Value): never => {
    throw new Error(`toFloat64: ${v.name} used before it is defined`);
  };
  for (const v of g.inputs) map.set(v.id, out.input(v.name, v.dtype === 'float32' ? 'float64' : v.dtype, v.shape));
  for (const { value, data } of g.consts.values()) {
    const wide = data.dtype === 'float32' ? { dtype: 'float64' as const, shape: data.shape, data: Float64Array.from(data.data as Float32Array) } : data;
    map.set(value.id, out.const(wide, value.name));
  }
  for (const n of g.nodes) {
    const attrs = n.op === 'Cast' && n.attrs.to === 'float32' ? { ...n.attrs, to: 'float64' } : n.attrs;
    const outs = out.addMulti(n.op, n.inputs.map(m), attrs, n.outputs.length === 1 ? n.outputs[0]!.name : undefined);
    // Ops whose output type is fixed (OneHot is float32 only in ORT) are widened after the fact.
    n.outputs.forEach((v, i) => map.set(v.id, outs[i]!.dtype === 'float32' ? out.add('Cast', [outs[i]!], { to: 'float64' }) : outs[i]!));
  }
  for (const v of g.outputs) out.outputs.push(m(v));
  return out;
}

const sessions = new Map<string, Promise<ort.InferenceSession>>();

/** Runs a prepared call like Engine.run, in float64: float32 feeds and weights are widened. */
export async function run64(engine: Engine, p: Prepared, extra: Record<string, ort.Tensor>, ext?: GraphExtension): Promise<Record<string, Float64Array>> {
  const key = JSON.stringify({ ...p.variant, ext: ext?.key, spec: engine.spec });
  let s = sessions.get(key);
  if (!s) {
    const g = buildDecoderGraph(engine.spec, p.variant);
    ext?.extend(g);
    s = ort.InferenceSession.create(emitOnnx(toFloat64(g)), { intraOpNumThreads: 1, graphOptimizationLevel: 'disabled' });
    sessions.set(key, s);
  }
  const session = await s;
  const feeds: Record<string, ort.Tensor> = { ...p.feeds, ...extra };
  const all: Record<string, ort.Tensor> = {};
  for (const name of session.inputNames) {
    let t = feeds[name];
    if (!t) {
      const w = engine.weights.get(name);
      if (!w) throw new Error(`run64: no feed for ${name}`);
      t = new ort.Tensor('float32', w.data, w.shape);
    }
    all[name] = t.type === 'float32' ? new ort.Tensor('float64', Float64Array.from(t.data as Float32Array), t.dims) : t;
  }
  const res = await session.run(all);
  return Object.fromEntries(Object.entries(res).map(([k, v]) => [k, v.data as Float64Array]));
}

/** float64 log-softmax of one row of logits, written out. */
export function logSoftmax64(row: ArrayLike<number>): number[] {
  let max = -Infinity;
  for (let i = 0; i < row.length; i++) max = Math.max(max, row[i]!);
  let z = 0;
  for (let i = 0; i < row.length; i++) z += Math.exp(row[i]! - max);
  return Array.from(row, (v) => v - max - Math.log(z));
}
