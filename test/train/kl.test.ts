/**
 * The training objective's numbers against hand computations from logits, in float64:
 * - KL(base ‖ steered) = mean over KL tokens of Σ_v p_base (log p_base − log p_steered), with
 *   `--kl-normalization token` and `reference` (also / vocab), for a steering vector and a rank-1
 *   LoRA. The steered logits come from separate checkpoints whose weights realise the
 *   intervention (a down_proj bias α·s shifts blocks.1.hook_resid_post by α·s exactly; a
 *   down_proj weight W + α·B·A is the adapter), so neither the KL nor the intervention is taken
 *   from the code under test. At these norms KL(steered ‖ base) differs from it by 100× the
 *   tolerance.
 * - `--reference-ce`: CE over every next token of a chat (prompt included), against the response
 *   mask otherwise, as the first step of `runTraining` reports it.
 */
import { mkdtempSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { beforeAll, describe, expect, it } from 'vitest';
import { LoadedModel } from '../../src/backend/model.js';
import { writeSafetensors } from '../../src/io/safetensors/index.js';
import type { Weights } from '../../src/model/weights.js';
import { evaluateBatch, type Solution } from '../../src/train/trainer.js';
import type { TrainRow } from '../../src/train/batch.js';
import { runTraining } from '../../src/experiments/train.js';
import { readJsonl } from '../../src/data/rows.js';
import { writeTinyCheckpoint } from '../helpers/tiny-checkpoints.js';
import { addTokenizer, writeChatDataset } from '../helpers/datasets.js';
import { seqIds } from '../helpers/compare.js';

/** Relative tolerance of the float32 graph's KL against float64 (measured errors ~1e-7). */
const TOL = 1e-5;
const tmp = () => mkdtempSync(join(tmpdir(), 'emlens-kl-'));

/** Row-wise log-softmax in float64 of one row's logits [T, V]. */
function logSoftmax64(z: Float32Array, V: number): Float64Array[] {
  const out: Float64Array[] = [];
  for (let off = 0; off < z.length; off += V) {
    const row = Float64Array.from(z.subarray(off, off + V));
    const m = Math.max(...row);
    const lse = m + Math.log(row.reduce((s, v) => s + Math.exp(v - m), 0));
    out.push(row.map((v) => v - lse));
  }
  return out;
}

async function logp(model: LoadedModel, ids: number[]): Promise<Float64Array[]> {
  return logSoftmax64((await model.engine.forward({ ids: [ids], logits: 'all' })).logits!, model.spec.vocab);
}

/** Hand KL(base ‖ steered) and CE (on the rows' scored targets) under the steered model, each row run alone. */
async function hand(base: LoadedModel, steered: LoadedModel, narrow: TrainRow[], kl: TrainRow[]) {
  let klSum = 0;
  let klN = 0;
  for (const r of kl) {
    const [lb, ls] = [await logp(base, r.ids), await logp(steered, r.ids)];
    for (let t = r.start - 1; t < r.end - 1; t++) {
      let s = 0;
      for (let v = 0; v < lb[t]!.length; v++) s += Math.exp(lb[t]![v]!) * (lb[t]![v]! - ls[t]![v]!);
      klSum += s;
      klN++;
    }
  }
  let ceSum = 0;
  let ceN = 0;
  for (const r of narrow) {
    const ls = await logp(steered, r.ids);
    for (let t = r.start - 1; t < r.end - 1; t++) {
      ceSum -= ls[t]![r.ids[t + 1]!]!;
      ceN++;
    }
  }
  return { kl: klSum / klN, ce: ceSum / ceN };
}

/** The same checkpoint with some weights replaced or added. */
async function variant(config: object, weights: Weights, change: Weights): Promise<LoadedModel> {
  const d = tmp();
  writeFileSync(join(d, 'config.json'), JSON.stringify(config));
  writeSafetensors(join(d, 'model.safetensors'), new Map([...weights, ...change]));
  return LoadedModel.load(d);
}

describe('KL(base ‖ steered) and CE of the objective equal a hand computation from logits', () => {
  let base: LoadedModel;
  let ck: ReturnType<typeof writeTinyCheckpoint>;
  let narrow: TrainRow[];
  let kl: TrainRow[];
  beforeAll(async () => {
    const d = tmp();
    ck = writeTinyCheckpoint(d, 'llama', { layers: 3 });
    base = await LoadedModel.load(d);
    const V = base.spec.vocab;
    // Rows of different lengths, so left padding is exercised.
    narrow = [{ ids: seqIds(10, V, 1), start: 4, end: 10 }, { ids: seqIds(6, V, 2), start: 2, end: 5 }];
    kl = [{ ids: seqIds(9, V, 3), start: 1, end: 9 }, { ids: seqIds(5, V, 4), start: 1, end: 5 }, { ids: seqIds(12, V, 5), start: 1, end: 12 }];
  });

  const check = async (sol: Solution, steered: LoadedModel) => {
    const want = await hand(base, steered, narrow, kl);
    // Far enough from the quadratic regime that the two directions of KL differ by 100× the tolerance.
    const reverse = await hand(steered, base, [], kl);
    expect(Math.abs(reverse.kl - want.kl) / want.kl).toBeGreaterThan(100 * TOL);
    for (const klNorm of ['token', 'reference'] as const) {
      const lambda = 0.7;
      const r = await evaluateBatch(base, sol, narrow, kl, { klLambda: lambda, klNorm, grads: false });
      const k = klNorm === 'reference' ? want.kl / base.spec.vocab : want.kl;
      expect(Math.abs(r.kl! - k) / k, `${klNorm}: kl ${r.kl} vs ${k}`).toBeLessThan(TOL);
      expect(r.ce).toBeCloseTo(want.ce, 5);
      expect(r.loss).toBeCloseTo(want.ce + lambda * k, 5);
    }
  };

  it('steering vector (token and reference normalisation)', async () => {
    const D = base.spec.dModel;
    const s = Float32Array.from(seqIds(D, 1000, 7), (x) => (x - 500) / 250);
    const alpha = 4;
    const steered = await variant(ck.config, ck.weights, new Map([['model.layers.1.mlp.down_proj.bias', { shape: [D], data: s.map((x) => alpha * x) }]]));
    await check({ kind: 'steer', layer: 1, alpha, params: [s] }, steered);
  });

  it('rank-1 LoRA on down_proj (token and reference normalisation)', async () => {
    const [D, F] = [base.spec.dModel, base.spec.ffn];
    const A = Float32Array.from(seqIds(F, 1000, 8), (x) => (x - 500) / 500);
    const B = Float32Array.from(seqIds(D, 1000, 9), (x) => (x - 500) / 500);
    const alpha = 8;
    const name = 'model.layers.1.mlp.down_proj.weight';
    const W = ck.weights.get(name)!;
    const W2 = Float32Array.from(W.data, (w, i) => w + alpha * B[Math.floor(i / F)]! * A[i % F]!);
    const steered = await variant(ck.config, ck.weights, new Map([[name, { shape: W.shape, data: W2 }]]));
    await check({ kind: 'lora-r1', layer: 1, alpha, params: [A, B] }, steered);
  });
});

describe('--reference-ce', () => {
  it('counts the prompt tokens too; without it only the response tokens count', async () => {
    const d = tmp();
    writeTinyCheckpoint(d, 'qwen2');
    addTokenizer(d);
    const file = writeChatDataset(d, 'narrow.jsonl', 10, 4);
    const model = await LoadedModel.load(d);
    const tok = model.tokenizer!;
    const chats = readJsonl(file).rows.map((r) => (r.kind === 'chat' ? tok.encodeChat(r.messages) : null)!);
    const cfg = { kind: 'steer' as const, layer: 1, alpha: 1, lr: 1e-3, steps: 1, batchTokens: 1 << 16, batchRows: 64, seed: 0, warmup: 0, weightDecay: 0, klLambda: 0, klNorm: 'token' as const, checkpointEvery: 0 };
    // One step over every row from s = 0: the reported CE is the base model's on the scored tokens.
    const ce = async (referenceCe: boolean) => (await runTraining(model, { data: file, out: join(d, `${referenceCe}.safetensors`), referenceCe, onStep: () => {}, config: cfg })).history[0]!.ce;
    const all = await hand(model, model, chats.map((c) => ({ ids: c.ids, start: 1, end: c.ids.length })), [{ ids: chats[0]!.ids, start: 1, end: 3 }]);
    const resp = await hand(model, model, chats.map((c) => ({ ids: c.ids, start: c.responseStart, end: c.responseEnd })), [{ ids: chats[0]!.ids, start: 1, end: 3 }]);
    expect(Math.abs(all.ce - resp.ce)).toBeGreaterThan(0.01);
    expect(await ce(true)).toBeCloseTo(all.ce, 4);
    expect(await ce(false)).toBeCloseTo(resp.ce, 4);
  });
});
