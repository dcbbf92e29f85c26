/**
 * The universal hooked graph: one ONNX graph a serving engine (Triton's onnxruntime backend, or
 * any ONNX Runtime) runs without emlens's host code. What the engine computes on the host per
 * call (rope tables, attention masks, steering and ablation inputs) is computed in the graph from
 *
 *   input_ids INT64 [B, T], attention_mask INT64 [B, T] (1 = token; each row's tokens contiguous),
 *   steer FP32 [L, D] (row l added to blocks.l.hook_resid_post at every token; zeros: none),
 *   ablate FP32 [L, D] (row l's unit direction projected out there; zero rows do nothing),
 *   pool FP32 [B, T] (pooling weights),
 *
 * and the outputs are those of `emlens serve`'s KServe model: logits [B, V] (each row's last
 * token), token_logprobs [B, T] (log p of token t given the ones before; 0 at a row's first token
 * and at padding), blocks.l.hook_resid_post [B, T, D] and pooled.blocks.l.hook_resid_post [B, D]
 * (Σ_t pool[b, t] · h[b, t]) for every layer. So a KServe v2 client talks to an exported model
 * on Triton as to `emlens serve`.
 */
import { buildDecoderGraph, IO } from '../arch/decoder.js';
import { Graph, type Value } from '../graph/ir.js';
import { hookName } from '../hooks/names.js';
import type { ModelSpec } from '../model/config.js';
import { MASKED } from '../runtime/masks.js';
import { invFreq } from '../runtime/rope.js';

export const HOOKED_INPUTS = ['input_ids', 'attention_mask', 'steer', 'ablate', 'pool'] as const;

export function buildHookedGraph(spec: ModelSpec, weightShapes: Map<string, number[]>): Graph {
  const g = new Graph(`emlens_hooked_${spec.family}`);
  const L = spec.nLayers;
  const D = spec.dModel;
  const V = spec.vocab;
  const ids = g.input('input_ids', 'int64', ['batch', 'seq']);
  const maskI = g.input('attention_mask', 'int64', ['batch', 'seq']);
  const steer = g.input('steer', 'float32', [L, D]);
  const ablate = g.input('ablate', 'float32', [L, D]);
  const pool = g.input('pool', 'float32', ['batch', 'seq']);
  const one = g.scalar(1);
  const half = g.scalar(0.5);
  const bt = g.add('Shape', [ids], {}, 'bt');
  const shapeBT = (tail: number[]) => g.add('Concat', [bt, g.ints(tail)], { axis: 0 }, 'shape');

  const m = g.add('Cast', [maskI], { to: 'float32' }); // [B, T]
  // Position of each token within its row: a row's first token is 0 (padding before it gets -1,
  // after it the last position; padding is masked out either way).
  const pos = g.add('Sub', [g.add('CumSum', [m], { axis: 1 }), one]);
  const table = (inv: Float32Array) => {
    const ang = g.add('Mul', [g.add('Unsqueeze', [pos], { axes: [2] }), g.const({ dtype: 'float32', shape: [inv.length], data: inv }, 'inv_freq')]);
    const cos = g.add('Cos', [ang]);
    const sin = g.add('Sin', [ang]);
    return { cos: g.add('Concat', [cos, cos], { axis: -1 }), sin: g.add('Concat', [sin, sin], { axis: -1 }) };
  };
  const provided = new Map<string, Value>();
  const glob = table(invFreq(spec.rope, spec.headDim));
  provided.set(IO.cos, glob.cos).set(IO.sin, glob.sin);
  if (spec.ropeLocal) {
    const loc = table(invFreq(spec.ropeLocal, spec.headDim));
    provided.set(IO.cosLocal, loc.cos).set(IO.sinLocal, loc.sin);
  }
  // Index of every slot of a row, 0..T-1, and the additive masks [B, 1, 1, T, T].
  const ar = g.add('Sub', [g.add('CumSum', [g.add('Add', [g.add('Mul', [m, g.scalar(0)]), one])], { axis: 1 }), one]);
  const diff = g.add('Sub', [g.add('Unsqueeze', [ar], { axes: [2] }), g.add('Unsqueeze', [ar], { axes: [1] })]); // query - key
  const step = (x: Value) => g.add('Mul', [half, g.add('Add', [g.add('Sign', [x]), one])]); // 1 where x > 0 (x never 0 here)
  const ok = g.add('Mul', [step(g.add('Add', [diff, half])), g.add('Unsqueeze', [m], { axes: [1] })]);
  const additive = (allowed: Value) => g.add('Unsqueeze', [g.add('Mul', [g.add('Sub', [allowed, one]), g.scalar(-MASKED)])], { axes: [1, 2] });
  provided.set(IO.mask, additive(ok));
  if (spec.slidingWindow !== null) provided.set(IO.maskLocal, additive(g.add('Mul', [ok, step(g.add('Sub', [g.scalar(spec.slidingWindow - 0.5), diff]))])));
  provided.set(IO.steerMask, g.add('Reshape', [m], { shape: [-1, 1] }));
  provided.set(IO.ids, ids);
  const hooks = Array.from({ length: L }, (_, l) => hookName(l, 'resid_post'));
  hooks.forEach((h, l) => {
    const row = g.add('Slice', [steer], { starts: [l], ends: [l + 1], axes: [0] }); // [1, D]
    provided.set(IO.steer(h), g.add('Reshape', [row], { shape: [D] }));
    const r = g.add('Slice', [ablate], { starts: [l], ends: [l + 1], axes: [0] });
    // r / ‖r‖; a zero row stays zero (the epsilon only guards the division).
    const inv = g.add('Reciprocal', [g.add('Sqrt', [g.add('Add', [g.add('ReduceSum', [g.add('Mul', [r, r])], { axes: [-1], keepdims: 1 }), g.scalar(1e-30)])])]);
    provided.set(IO.ablate(h), g.add('Mul', [r, inv]));
  });

  buildDecoderGraph(spec, { capture: hooks, steer: hooks, ablate: hooks.map((h) => [h, 1]), kvCache: false, logits: 'all', weightShapes, provided, graph: g });

  // The decoder's outputs are flat [B*T, ...]; the hooked model's are per row.
  const decoderOutputs = g.outputs.splice(0);
  const byName = new Map(decoderOutputs.map((v) => [v.name, v]));
  const poolRow = g.add('Unsqueeze', [pool], { axes: [1] }); // [B, 1, T]
  for (const h of hooks) {
    const flat = byName.get(h)!;
    g.rename(flat, `${h}/flat`);
    const perRow = g.add('Reshape', [flat, shapeBT([D])], { dims: ['batch', 'seq', D] });
    g.output(perRow, h);
    g.output(g.add('Reshape', [g.add('MatMul', [poolRow, perRow])], { shape: [-1, D] }), `pooled.${h}`);
  }
  const logitsFlat = byName.get(IO.logits)!;
  g.rename(logitsFlat, 'logits/all');
  const lg = g.add('Reshape', [logitsFlat, shapeBT([V])], { dims: ['batch', 'seq', V] });
  // Each row's last token: a one-hot over slots picks it (exact: one term is nonzero).
  const last = g.add('ReduceMax', [g.add('Mul', [ar, m])], { axes: [1], keepdims: 1 });
  const pick = g.add('Sub', [one, g.add('Abs', [g.add('Sign', [g.add('Sub', [ar, last])])])]);
  g.output(g.add('Reshape', [g.add('MatMul', [g.add('Unsqueeze', [pick], { axes: [1] }), lg])], { shape: [-1, V] }), 'logits');
  // log p(token t | tokens < t) from the logits at t - 1.
  const lsm = g.add('LogSoftmax', [g.add('Slice', [lg], { starts: [0], ends: [-1], axes: [1] })], { axis: -1 });
  const next = g.add('Unsqueeze', [g.add('Slice', [ids], { starts: [1], ends: [2 ** 62], axes: [1] })], { axes: [2] });
  const lp = g.add('Squeeze', [g.add('GatherElements', [lsm, next], { axis: 2 })], { axes: [2] }); // [B, T-1]
  const valid = g.add('Mul', [g.add('Slice', [m], { starts: [1], ends: [2 ** 62], axes: [1] }), g.add('Slice', [m], { starts: [0], ends: [-1], axes: [1] })]);
  g.output(g.add('Pad', [g.add('Mul', [lp, valid])], { pads: [0, 1, 0, 0] }), 'token_logprobs');
  return g;
}
