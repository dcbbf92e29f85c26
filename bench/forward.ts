/**
 * Section "forward": prefill throughput of a random Qwen2.5-0.5B-shaped model capturing every
 * blocks.L.hook_resid_post (no LM head), against the roofline of a bare ORT Gemm on the same
 * projection shapes, and the forward's peak RSS against its fp32 weight bytes.
 *
 * Goals (issue [1]): achieved GFLOP/s >= 0.80 x roofline; peak RSS <= 1.3 x weight bytes.
 */
import { gemmRoofline, type Roofline } from './roofline.js';
import type { BenchOptions, Row, Section, SectionResult } from './section.js';
import { benchSpec, forwardFlops, GiB, log, projections, runChild } from './util.js';
import type { ForwardChildArgs, ForwardChildResult } from './child.js';

export const SEQ = 128;
export const BATCHES = [1, 4];
export const GOAL_RATIO = 0.8;
export const GOAL_RSS = 1.3;

export interface ForwardCase {
  batch: number;
  seq: number;
  tokens: number;
  flops: { linear: number; attention: number; total: number };
  roofline: Roofline;
  model: ForwardChildResult;
  tokensPerSec: number;
  achievedGflops: number;
  /** achieved / roofline (medians) */
  ratio: number;
  /** fastest model run / roofline from each shape's fastest run */
  ratioBest: number;
  /** peak RSS / fp32 weight bytes */
  rssRatio: number;
}

export async function benchForward(opts: BenchOptions): Promise<{ cases: ForwardCase[] }> {
  const spec = benchSpec();
  const projs = projections(spec);
  const cases: ForwardCase[] = [];
  for (const batch of BATCHES) {
    const tokens = batch * SEQ;
    log(`forward B=${batch}: gemm roofline at ${tokens} tokens`);
    // One-op graphs are cheap: take more samples than the model loop does.
    const roofline = await gemmRoofline(projs, tokens, { warmup: 2, runs: Math.max(opts.runs, 6), passes: 2 });
    log(`forward B=${batch}: model in a child process`);
    const args: ForwardChildArgs = { batch, seq: SEQ, warmup: opts.warmup, runs: opts.runs, capture: 'all' };
    const model = await runChild<ForwardChildResult>('forward', args);
    const flops = forwardFlops(spec, batch, SEQ);
    const ms = model.stats.median;
    const achievedGflops = flops.total / ms / 1e6;
    cases.push({
      batch,
      seq: SEQ,
      tokens,
      flops,
      roofline,
      model,
      tokensPerSec: tokens / (ms / 1000),
      achievedGflops,
      ratio: achievedGflops / roofline.gflops,
      ratioBest: flops.total / model.stats.min / 1e6 / roofline.gflopsBest,
      rssRatio: model.peakRss / model.weightBytes,
    });
  }
  return { cases };
}

export const forwardSection: Section = {
  name: 'forward',
  description: `prefill of a random Qwen2.5-0.5B-shaped model, ${SEQ}-token rows, batch ${BATCHES.join(' and ')}, capturing every resid_post`,
  async run(opts: BenchOptions): Promise<SectionResult> {
    const res = await benchForward(opts);
    const rows: Row[] = [];
    for (const c of res.cases) {
      const tag = `B=${c.batch}x${c.seq}`;
      rows.push(
        { metric: `${tag} forward median`, value: c.model.stats.median, unit: 'ms', digits: 0 },
        { metric: `${tag} prefill throughput`, value: c.tokensPerSec, unit: 'tokens/s', digits: 0 },
        { metric: `${tag} bare Gemm roofline`, value: c.roofline.gflops, unit: 'GFLOP/s', digits: 1 },
        { metric: `${tag} model achieved`, value: c.achievedGflops, unit: 'GFLOP/s', digits: 1 },
        { metric: `${tag} achieved / roofline`, value: c.ratio, unit: 'x', goal: { op: '>=', value: GOAL_RATIO } },
        { metric: `${tag} same, fastest runs`, value: c.ratioBest, unit: 'x' },
        { metric: `${tag} peak RSS`, value: c.model.peakRss / GiB, unit: 'GiB', digits: 2 },
        { metric: `${tag} peak RSS / fp32 weights`, value: c.rssRatio, unit: 'x', goal: { op: '<=', value: GOAL_RSS } },
      );
    }
    const w = res.cases[0]?.model.weightBytes;
    if (w) rows.push({ metric: 'fp32 weight bytes', value: w / GiB, unit: 'GiB', digits: 2 });
    return { section: 'forward', rows, data: res };
  },
};
