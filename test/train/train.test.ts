/**
 * Training behaviour: the KL term, a planted optimum recovered, held-out CE on a real model, the
 * narrow (KL-penalised) solution, AdamW over many steps against a hand computation, the learning
 * rate a run uses, and bit-exact resume.
 */
import { mkdtempSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join, resolve } from 'node:path';
import { describe, expect, it } from 'vitest';
import { LoadedModel } from '../../src/backend/model.js';
import { evaluateBatch, initSolution, trainSolution, type Solution, type TrainConfig } from '../../src/train/trainer.js';
import type { TrainRow } from '../../src/train/batch.js';
import { adamwInit, adamwStep, linearSchedule } from '../../src/train/adamw.js';
import { normal, rng } from '../../src/runtime/random.js';
import { writeSafetensors } from '../../src/io/safetensors/write.js';
import { hookName } from '../../src/hooks/names.js';
import { writeTinyCheckpoint } from '../helpers/tiny-checkpoints.js';
import { seqIds } from '../helpers/compare.js';

const AID = resolve(__dirname, '../../../shared/models/aidreams260k');
const tmp = () => mkdtempSync(join(tmpdir(), 'emlens-train-'));
const cfg = (o: Partial<TrainConfig>): TrainConfig => ({
  kind: 'steer', layer: 1, alpha: 1, lr: 0.05, steps: 60, batchTokens: 4096, batchRows: 16, seed: 0, warmup: 3,
  weightDecay: 0, klLambda: 0, klNorm: 'token', checkpointEvery: 0, ...o,
});
const cos = (a: ArrayLike<number>, b: ArrayLike<number>) => {
  let d = 0, na = 0, nb = 0;
  for (let i = 0; i < a.length; i++) { d += a[i]! * b[i]!; na += a[i]! ** 2; nb += b[i]! ** 2; }
  return d / Math.sqrt(na * nb);
};
const norm = (a: ArrayLike<number>) => Math.sqrt(Array.from(a).reduce((s, x) => s + x * x, 0));

/** Samples sequences from a model (temperature 1), as training rows scored on every next token. */
async function sample(model: LoadedModel, n: number, len: number, seed: number, iv = {}): Promise<TrainRow[]> {
  const prompts = Array.from({ length: n }, (_, i) => [seqIds(1, model.spec.vocab, seed * 1000 + i)[0]!]);
  const g = await model.engine.generate(prompts, { maxNewTokens: len, temperature: 1, seed, stopIds: [], interventions: iv });
  return prompts.map((p, i) => ({ ids: [...p, ...g.tokens[i]!], start: 1, end: len + 1 }));
}

describe('the KL term', () => {
  it('is 0 at s = 0 and grows with the norm of s', async () => {
    const d = tmp();
    writeTinyCheckpoint(d, 'qwen2');
    const model = await LoadedModel.load(d);
    const kl: TrainRow[] = [{ ids: seqIds(12, model.spec.vocab, 4), start: 1, end: 12 }];
    const narrow: TrainRow[] = [{ ids: seqIds(8, model.spec.vocab, 5), start: 4, end: 8 }];
    const u = Float32Array.from(seqIds(model.spec.dModel, 100, 6), (x) => (x - 50) / 50);
    const kls: number[] = [];
    for (const scale of [0, 0.25, 0.5, 1, 2]) {
      const sol: Solution = { kind: 'steer', layer: 1, alpha: scale, params: [u] };
      kls.push((await evaluateBatch(model, sol, narrow, kl, { klLambda: 1, klNorm: 'token', grads: false })).kl!);
    }
    expect(Math.abs(kls[0]!)).toBeLessThan(1e-6);
    for (let i = 1; i < kls.length; i++) expect(kls[i]!).toBeGreaterThan(kls[i - 1]! + 1e-6);
  });
});

describe('planted optimum', () => {
  it('train finds the vector that undoes a known shift of blocks.L.hook_resid_post', async () => {
    // B = A with a bias c on layer 1's down_proj: B's resid_post[1] = A's + c at every position.
    const dA = tmp();
    const { config, weights } = writeTinyCheckpoint(dA, 'llama', { layers: 3 });
    const A = await LoadedModel.load(dA);
    const D = A.spec.dModel;
    const c = Float32Array.from(seqIds(D, 1000, 8), (x) => (x - 500) / 250);
    const dB = tmp();
    writeFileSync(join(dB, 'config.json'), JSON.stringify(config));
    writeSafetensors(join(dB, 'model.safetensors'), new Map([...weights, ['model.layers.1.mlp.down_proj.bias', { shape: [D], data: c }]]));
    const B = await LoadedModel.load(dB);
    // Sanity: B really is A shifted at that hook.
    const ids = [seqIds(6, A.spec.vocab, 9)];
    const h = hookName(1, 'resid_post');
    const [ca, cb] = [await A.engine.forward({ ids, capture: [h] }), await B.engine.forward({ ids, capture: [h] })];
    expect(Math.abs(cb.captures.get(h)![0]! - ca.captures.get(h)![0]! - c[0]!)).toBeLessThan(1e-4);

    const data = await sample(A, 256, 24, 1);
    const r = await trainSolution(B, data, [], cfg({ layer: 1, epochs: 12, steps: undefined, lr: 0.05 }), join(dB, 'planted.safetensors'), { dataKey: 'x' });
    const s = r.solution.params[0]!;
    const target = c.map((x) => -x);
    expect(cos(s, target)).toBeGreaterThan(0.95);
    expect(Math.abs(norm(s) / norm(target) - 1)).toBeLessThan(0.2);
    expect(r.history[r.history.length - 1]!.ce).toBeLessThan(r.history[0]!.ce);
  }, 180_000);
});

describe('aidreams260k', () => {
  it('training a steering vector lowers held-out CE', async () => {
    const model = await LoadedModel.load(AID);
    // A style the base model does not have: its own samples under a fixed shift at layer 2.
    const shift = Float32Array.from(seqIds(64, 1000, 3), (x) => (x - 500) / 100);
    const iv = { steer: [{ hook: hookName(2, 'resid_post'), vector: shift, scale: 1 }] };
    const all = await sample(model, 60, 24, 5, iv);
    const [train, held] = [all.slice(0, 40), all.slice(40)];
    const before = await evaluateBatch(model, null, held, [], { klLambda: 0, klNorm: 'token', grads: false });
    const r = await trainSolution(model, train, [], cfg({ layer: 2, steps: 80, lr: 0.05 }), join(tmp(), 's.safetensors'), { dataKey: 'x' });
    const after = await evaluateBatch(model, r.solution, held, [], { klLambda: 0, klNorm: 'token', grads: false });
    expect(after.ce).toBeLessThan(before.ce - 0.1);
  }, 180_000);
});

describe('narrow solution', () => {
  it('a large λ keeps KL on the KL set near 0 while CE falls', async () => {
    const d = tmp();
    writeTinyCheckpoint(d, 'llama', { layers: 3 });
    const model = await LoadedModel.load(d);
    const shift = Float32Array.from(seqIds(model.spec.dModel, 1000, 2), (x) => (x - 500) / 200);
    const narrow = await sample(model, 48, 12, 7, { steer: [{ hook: hookName(1, 'resid_post'), vector: shift, scale: 1 }] });
    const klSet = await sample(model, 48, 12, 8);
    const evalKl = async (sol: Solution) => (await evaluateBatch(model, sol, [], klSet, { klLambda: 1, klNorm: 'token', grads: false })).kl!;
    const general = await trainSolution(model, narrow, [], cfg({ steps: 60 }), join(d, 'g.safetensors'), { dataKey: 'g' });
    const narrowRun = await trainSolution(model, narrow, klSet, cfg({ steps: 60, klLambda: 100 }), join(d, 'n.safetensors'), { dataKey: 'n' });
    const [h0, hN] = [narrowRun.history[0]!, narrowRun.history[narrowRun.history.length - 1]!];
    expect(hN.ce).toBeLessThan(h0.ce);
    const klGeneral = await evalKl(general.solution);
    const klNarrow = await evalKl(narrowRun.solution);
    expect(klNarrow).toBeLessThan(0.05 * klGeneral);
    expect(klNarrow).toBeLessThan(1e-3);
  }, 180_000);
});

describe('optimiser and resume', () => {
  it('AdamW over 30 steps (weight decay, warmup then linear decay) matches a hand-written float64 AdamW', () => {
    // torch.optim.AdamW: p ← p·(1 − lr·wd); m ← β1·m + (1 − β1)·g; v ← β2·v + (1 − β2)·g²;
    // p ← p − lr·(m / (1 − β1^t)) / (√(v / (1 − β2^t)) + ε). The lr: lr0·(t + 1)/W for t < W,
    // then lr0·(T − t)/(T − W).
    const [T, W, lr0, wd, b1, b2, eps] = [30, 4, 0.01, 0.05, 0.9, 0.999, 1e-8];
    const n = 64;
    const g = normal(rng(11));
    // Gradients that change sign and scale from step to step; some ~ε so that ε matters.
    const grads = Array.from({ length: T }, (_, t) => Float32Array.from({ length: n }, (_, i) => g() * (i < 8 ? 1e-8 : 1 + Math.sin(t + i))));
    const p0 = Float32Array.from({ length: n }, () => g());
    const p = [Float32Array.from(p0)];
    const st = adamwInit(p);
    const want = Float64Array.from(p0);
    const m = new Float64Array(n);
    const v = new Float64Array(n);
    for (let t = 0; t < T; t++) {
      const lr = t < W ? (lr0 * (t + 1)) / W : (lr0 * (T - t)) / (T - W);
      expect(linearSchedule(t, T, W, lr0)).toBeCloseTo(lr, 15);
      adamwStep(p, [grads[t]!], st, linearSchedule(t, T, W, lr0), { weightDecay: wd, beta1: b1, beta2: b2, eps });
      for (let i = 0; i < n; i++) {
        const gi = grads[t]![i]!;
        want[i]! *= 1 - lr * wd;
        m[i] = b1 * m[i]! + (1 - b1) * gi;
        v[i] = b2 * v[i]! + (1 - b2) * gi * gi;
        want[i]! -= (lr * (m[i]! / (1 - b1 ** (t + 1)))) / (Math.sqrt(v[i]! / (1 - b2 ** (t + 1))) + eps);
      }
      // The state is float32: allow its rounding (~1e-7 relative per step), far below one update (~lr).
      for (let i = 0; i < n; i++) expect(Math.abs(p[0]![i]! - want[i]!), `step ${t + 1}, element ${i}`).toBeLessThan(1e-6 * (1 + Math.abs(want[i]!)));
    }
    expect(linearSchedule(T, T, W, lr0)).toBe(0);
    // The defaults are torch's (β1 0.9, β2 0.999, ε 1e-8, no weight decay).
    const q = [Float32Array.from(p0)];
    const sq = adamwInit(q);
    const r = [Float32Array.from(p0)];
    const sr = adamwInit(r);
    for (let t = 0; t < 5; t++) {
      adamwStep(q, [grads[t]!], sq, 0.01);
      adamwStep(r, [grads[t]!], sr, 0.01, { weightDecay: 0, beta1: b1, beta2: b2, eps });
    }
    expect(q[0]).toEqual(r[0]);
  });

  it('a run stopped after a checkpoint and resumed ends bit-identical to an uninterrupted one', async () => {
    const d = tmp();
    writeTinyCheckpoint(d, 'mistral');
    const model = await LoadedModel.load(d);
    const narrow = await sample(model, 20, 8, 3);
    const kl = await sample(model, 10, 8, 4);
    const c = cfg({ steps: 12, klLambda: 0.5, checkpointEvery: 4, batchRows: 4, kind: 'lora-r1' });
    const full = await trainSolution(model, narrow, kl, c, join(d, 'full.safetensors'), { dataKey: 'k' });
    const out = join(d, 'cut.safetensors');
    await expect(
      trainSolution(model, narrow, kl, c, out, { dataKey: 'k', onStep: (log) => { if (log.step === 10) throw new Error('killed'); } }),
    ).rejects.toThrow('killed');
    await expect(trainSolution(model, narrow, kl, c, out, { dataKey: 'k' })).rejects.toThrow(/add --resume/);
    const resumed = await trainSolution(model, narrow, kl, c, out, { dataKey: 'k', resume: true });
    expect(resumed.resumedFrom).toBe(8);
    resumed.solution.params.forEach((p, i) => expect(Buffer.from(p.buffer).equals(Buffer.from(full.solution.params[i]!.buffer))).toBe(true));
    expect(resumed.history.map((h) => h.loss)).toEqual(full.history.map((h) => h.loss));
    // The learning rate of each step: warmup over 3 steps, then linear decay towards 0 at step 12.
    full.history.forEach((h, t) => expect(h.lr).toBeCloseTo(t < 3 ? (0.05 * (t + 1)) / 3 : (0.05 * (12 - t)) / 9, 14));
    await expect(trainSolution(model, narrow, kl, { ...c, lr: 0.01 }, out, { dataKey: 'k', resume: true })).rejects.toThrow(/other settings/);
  }, 120_000);
});
