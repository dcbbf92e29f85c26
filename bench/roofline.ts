/**
 * The roofline the forward pass is held to: what a bare ORT Gemm reaches on the model's own
 * projection shapes, each a one-op graph built with the project's IR and run with the engine's
 * session options. As in the engine, the weight is a graph input [out, in] used with transB=1.
 */
import { Graph } from '../src/graph/ir.js';
import { emitOnnx } from '../src/graph/onnx.js';
import { createSession, f32, type OrtTensor, type SessionOptions } from '../src/runtime/ort.js';
import { stats, TILE, timeRuns, type Projection } from './util.js';
import { fillGaussianTiled, rng } from '../src/runtime/random.js';

export interface GemmTiming {
  name: string;
  tokens: number;
  in: number;
  out: number;
  count: number;
  flops: number;
  medianMs: number;
  minMs: number;
  gflops: number;
}

export interface Roofline {
  tokens: number;
  /** Weights fed as graph inputs, as the engine feeds them. */
  weightsAs: 'input' | 'initializer';
  shapes: GemmTiming[];
  /** FLOP-weighted: Σ count·flops / Σ count·time over one layer's projections (median times). */
  gflops: number;
  /** The same from each shape's fastest run. */
  gflopsBest: number;
}

/**
 * Times y = x · Wᵀ for each projection shape at `tokens` rows (`passes` x `runs` samples each).
 * `session`: options over the engine's defaults (the memory-bounded runner's graphs run without
 * ORT's arena). Each shape's inputs exist only while it is timed, so the roofline's own memory is
 * one shape's, not all of them at once (it may run in the process whose peak RSS is measured).
 */
export async function gemmRoofline(
  projs: Projection[],
  tokens: number,
  opts: { warmup: number; runs: number; passes?: number; weightsAs?: 'input' | 'initializer'; session?: Partial<SessionOptions> },
): Promise<Roofline> {
  const weightsAs = opts.weightsAs ?? 'input';
  const passes = opts.passes ?? 2;
  const build = (p: Projection, i: number) => {
    const x = new Float32Array(tokens * p.in);
    fillGaussianTiled(x, rng(2 * i + 1), 1, TILE);
    const w = new Float32Array(p.out * p.in);
    fillGaussianTiled(w, rng(2 * i + 2), 0.02, TILE);
    const g = new Graph('gemm_roofline');
    const xv = g.input('x', 'float32', ['tokens', p.in]);
    const wv =
      weightsAs === 'input'
        ? g.input('w', 'float32', [p.out, p.in])
        : g.const({ dtype: 'float32', shape: [p.out, p.in], data: w }, 'w');
    // Only the first row leaves the graph: onnxruntime-node copies each output into a fresh JS
    // buffer (~0.4 ms per MB here, a third of a [512, 4864] Gemm), a cost the model pays only
    // for its captures, not for every projection. The Slice itself takes microseconds.
    const y = g.add('Gemm', [xv, wv], { transB: 1 });
    g.output(g.add('Slice', [y], { starts: [0], ends: [1], axes: [0] }), 'y');
    const feeds: Record<string, OrtTensor> = { x: f32(x, [tokens, p.in]) };
    if (weightsAs === 'input') feeds.w = f32(w, [p.out, p.in]);
    return { model: emitOnnx(g, 'gemm roofline'), feeds };
  };
  const cases = projs.map((p) => ({ p, times: [] as number[] }));
  // One session alive at a time: each ORT session has its own intra-op thread pool, whose
  // threads spin after a run; an idle session's spinning threads slow the next session's run
  // (on 2 cores, alternating two sessions doubled a Gemm's time). Passes spread the noise of a
  // shared machine over all shapes.
  for (let pass = 0; pass < passes; pass++) {
    for (const [i, c] of cases.entries()) {
      const { model, feeds } = build(c.p, i);
      const session = await createSession(model, opts.session);
      c.times.push(...(await timeRuns(() => session.run(feeds), opts.warmup, opts.runs)));
      await session.release();
    }
  }
  const shapes: GemmTiming[] = [];
  for (const { p, times } of cases) {
    const st = stats(times);
    const flops = 2 * tokens * p.in * p.out;
    shapes.push({ name: p.name, tokens, in: p.in, out: p.out, count: p.count, flops, medianMs: st.median, minMs: st.min, gflops: flops / st.median / 1e6 });
  }
  const flops = shapes.reduce((s, t) => s + t.count * t.flops, 0);
  const ms = shapes.reduce((s, t) => s + t.count * t.medianMs, 0);
  const best = shapes.reduce((s, t) => s + t.count * t.minMs, 0);
  return { tokens, weightsAs, shapes, gflops: flops / ms / 1e6, gflopsBest: flops / best / 1e6 };
}
