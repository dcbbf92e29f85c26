/**
 * End-to-end gradients of the training objective (CE + λ·KL through the whole decoder) for every
 * family, with respect to a steering vector, to the rank-1 LoRA factors, and to every factor of a
 * rank-r LoRA on all seven projections of several layers:
 * - in float64 (the same graphs replayed in float64), against central finite differences along
 *   several random unit directions, at a step where truncation (~h²) and rounding (~ε/h) are both
 *   far below the tolerance;
 * - the float32 gradients evaluateBatch returns (chain rule through α included) against those
 *   float64 gradients, element by element.
 */
import { mkdtempSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import ort from 'onnxruntime-node';
import { describe, expect, it } from 'vitest';
import { LoadedModel } from '../../src/backend/model.js';
import { IO } from '../../src/arch/decoder.js';
import { evaluateBatch, initSolution, solutionCall, type Solution } from '../../src/train/trainer.js';
import { loraCall } from '../../src/train/lora.js';
import { LORA_MODULES } from '../../src/model/adapter.js';
import { makeBatch, type TrainRow } from '../../src/train/batch.js';
import { OBJ, objective } from '../../src/train/objective.js';
import { hookName } from '../../src/hooks/names.js';
import { randomNormMatched, rng } from '../../src/runtime/random.js';
import { TINY_FAMILIES, writeTinyCheckpoint, type TinyFamily } from '../helpers/tiny-checkpoints.js';
import { seqIds } from '../helpers/compare.js';
import { run64 } from '../helpers/float64.js';

/** Finite-difference step (float64 central differences: truncation ~1e-10, rounding ~1e-11 here). */
const H = 1e-5;
/** Relative error allowed between the float64 gradient and finite differences (measured ≤ 3e-9). */
const TOL64 = 3e-8;
/** Relative error allowed between the float32 gradients and the float64 ones (measured ≤ 1.2e-6). */
const TOL32 = 2e-5;
const LAMBDA = 0.7;

function rows(vocab: number): { narrow: TrainRow[]; kl: TrainRow[] } {
  const a = seqIds(11, vocab, 1);
  const b = seqIds(7, vocab, 2);
  const c = seqIds(9, vocab, 3);
  return { narrow: [{ ids: a, start: 5, end: 11 }, { ids: b, start: 3, end: 7 }], kl: [{ ids: c, start: 1, end: 9 }] };
}

const dir = (seed: number, n: number) => Float32Array.from(seqIds(n, 1000, seed), (x) => (x - 500) / 500);

/** The objective in float64 as a function of the differentiated graph inputs (by name). */
async function objective64(model: LoadedModel, sol: Solution, data: ReturnType<typeof rows>) {
  const V = model.spec.vocab;
  const batch = makeBatch(data.narrow, data.kl, V, 'token');
  const N = batch.ids.length * batch.T;
  const call = solutionCall(model, sol);
  const prep = model.engine.prepareCall(batch.ids, { logits: 'all', interventions: call.interventions, lora: call.lora });
  const base = (await run64(model.engine, model.engine.prepareCall(batch.ids, { logits: 'all' }), {}))[IO.logits]!;
  const baseLogp = new Float64Array(base.length);
  for (let off = 0; off < base.length; off += V) {
    let m = -Infinity;
    for (let v = 0; v < V; v++) m = Math.max(m, base[off + v]!);
    let z = 0;
    for (let v = 0; v < V; v++) z += Math.exp(base[off + v]! - m);
    for (let v = 0; v < V; v++) baseLogp[off + v] = base[off + v]! - m - Math.log(z);
  }
  const wrt = sol.kind === 'steer' ? [IO.steer(hookName(sol.layer, 'resid_post'))] : loraCall(sol.lora!, sol.alpha, sol.params).wrt;
  const feeds: Record<string, ort.Tensor> = {
    ...call.feeds,
    [OBJ.targets]: new ort.Tensor('int64', batch.targets, [N, 1]),
    [OBJ.ceWeight]: new ort.Tensor('float32', batch.ceWeight, [N, 1]),
    [OBJ.baseLogp]: new ort.Tensor('float64', baseLogp, [N, V]),
    [OBJ.klWeight]: new ort.Tensor('float32', batch.klWeight, [N, 1]),
    [OBJ.klLambda]: new ort.Tensor('float32', new Float32Array([LAMBDA]), []),
  };
  const all = { ...prep.feeds, ...feeds };
  const x0 = wrt.map((n) => Float64Array.from(all[n]!.data as Float32Array));
  const dims = wrt.map((n) => all[n]!.dims);
  const ext = objective({ withKl: true, wrt });
  return {
    wrt,
    x0,
    async at(xs: Float64Array[]) {
      const f = { ...feeds };
      wrt.forEach((n, k) => (f[n] = new ort.Tensor('float64', xs[k]!, dims[k]!)));
      const out = await run64(model.engine, prep, f, ext);
      return { loss: out[OBJ.loss]![0]!, grads: wrt.map((n) => out[OBJ.grad(n)]!) };
    },
  };
}

/** Checks one solution's gradients as described above; returns the worst relative errors. */
async function check(model: LoadedModel, sol: Solution) {
  const data = rows(model.spec.vocab);
  const f = await objective64(model, sol, data);
  const g64 = (await f.at(f.x0)).grads;
  let worst64 = 0;
  // Three directions per tensor; one each when there are dozens of tensors (every LoRA factor).
  const directions = f.wrt.length > 2 ? 1 : 3;
  for (let k = 0; k < f.wrt.length; k++) {
    for (let seed = 0; seed < directions; seed++) {
      const u = randomNormMatched(f.x0[k]!, rng(100 * k + seed), { norm: 1 });
      const shift = (sgn: number) => f.x0.map((x, j) => (j === k ? x.map((xi, i) => xi + sgn * H * u[i]!) : x));
      const fd = ((await f.at(shift(1))).loss - (await f.at(shift(-1))).loss) / (2 * H);
      const analytic = g64[k]!.reduce((s, gi, i) => s + gi * u[i]!, 0);
      // Relative to the gradient's norm: a directional derivative near 0 is no easier to match.
      const norm = Math.sqrt(g64[k]!.reduce((s, gi) => s + gi * gi, 0));
      expect(norm).toBeGreaterThan(1e-3);
      const err = Math.abs(analytic - fd) / norm;
      worst64 = Math.max(worst64, err);
      expect(err, `${f.wrt[k]} direction ${seed}: ${analytic} vs ${fd}`).toBeLessThan(TOL64);
    }
  }
  // float32, through evaluateBatch: the steering input is α·s, so d/ds = α·d/d(input).
  const r = await evaluateBatch(model, sol, data.narrow, data.kl, { klLambda: LAMBDA, klNorm: 'token', grads: true });
  let worst32 = 0;
  r.grads.forEach((g, k) => {
    const want = sol.kind === 'steer' ? g64[k]!.map((x) => x * sol.alpha) : g64[k]!;
    const scale = Math.max(...want.map(Math.abs));
    const err = Math.max(...Array.from(g, (x, i) => Math.abs(x - want[i]!))) / scale;
    worst32 = Math.max(worst32, err);
    expect(err, `${f.wrt[k]} float32`).toBeLessThan(TOL32);
  });
  return { worst64, worst32 };
}

async function tiny(family: TinyFamily) {
  const d = mkdtempSync(join(tmpdir(), `emlens-grad-${family}-`));
  writeTinyCheckpoint(d, family);
  return LoadedModel.load(d);
}

describe.each(TINY_FAMILIES)('%s: objective gradients', (family) => {
  it('d(CE + λ KL)/d(steering vector): float64 equals finite differences, float32 equals float64', async () => {
    const model = await tiny(family);
    const sol = initSolution(model, 'steer', 1, 2, 0);
    sol.params[0]!.set(dir(5, model.spec.dModel).map((x) => x * 0.3));
    await check(model, sol);
  });
});

describe('LoRA factors', () => {
  it.each(['llama', 'gemma2'] as const)('%s: d/dA and d/dB of the rank-1 down_proj adapter', async (family) => {
    const model = await tiny(family);
    const sol = initSolution(model, 'lora-r1', 1, 2, 3);
    sol.params[1]!.set(dir(6, model.spec.dModel).map((x) => x * 0.5));
    await check(model, sol);
  });
});

describe.each(TINY_FAMILIES)('%s: rank-r LoRA gradients', (family) => {
  it('d/dA and d/dB of rank 2 on q, k, v, o, gate, up, down of layers 0 and 1 (rsLoRA scale)', async () => {
    const model = await tiny(family);
    const sol = initSolution(model, 'lora', undefined, 3, 4, { rank: 2, rslora: true, modules: [...LORA_MODULES], layers: [0, 1] });
    expect(sol.lora!.targets).toHaveLength(14);
    // B off zero, so that d/dA is not zero; each factor its own direction.
    sol.params.forEach((p, i) => {
      if (i % 2 === 1) p.set(dir(20 + i, p.length).map((x) => x * 0.3));
    });
    await check(model, sol);
  }, 120_000);
});
