/**
 * The defaults learn: on a real model (aidreams260k) and a narrow set it does not produce by
 * itself, a steering vector, a rank-1 LoRA and a rank-8 LoRA on every projection trained with
 * TRAIN_DEFAULTS and LoRA's default α (what `emlens train` uses) lower the held-out loss substantially. And a run that leaves the loss where it was says so.
 */
import { spawnSync } from 'node:child_process';
import { mkdtempSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join, resolve } from 'node:path';
import { describe, expect, it } from 'vitest';
import { LoadedModel } from '../../src/backend/model.js';
import { evaluateBatch, trainSolution, LORA_DEFAULTS, loraDefaultAlpha, TRAIN_DEFAULTS, type SolutionKind } from '../../src/train/trainer.js';
import { LORA_MODULES } from '../../src/model/adapter.js';
import type { TrainRow } from '../../src/train/batch.js';
import { hookName } from '../../src/hooks/names.js';
import { gaussian, rng } from '../../src/runtime/random.js';
import { writeTinyCheckpoint } from '../helpers/tiny-checkpoints.js';
import { addTokenizer, writeChatDataset } from '../helpers/datasets.js';

const ROOT = resolve(__dirname, '../..');
const AID = resolve(ROOT, '../shared/models/aidreams260k');
const BIN = join(ROOT, 'dist/cli/main.js');
const tmp = () => mkdtempSync(join(tmpdir(), 'emlens-defaults-'));

describe('TRAIN_DEFAULTS', () => {
  it.each(['steer', 'lora-r1', 'lora'] as const)('%s: lowers held-out CE on aidreams260k by more than a tenth', async (kind: SolutionKind) => {
    const model = await LoadedModel.load(AID);
    // Narrow data: the model's own stories under a fixed random shift of blocks.2.hook_resid_post.
    const shift = Float32Array.from(gaussian(rng(5), model.spec.dModel), (x) => 0.3 * x);
    const prompts = Array.from({ length: 240 }, () => model.tokenizer!.encode('Once upon a time'));
    const g = await model.engine.generate(prompts, { maxNewTokens: 24, temperature: 1, seed: 9, stopIds: [], interventions: { steer: [{ hook: hookName(2, 'resid_post'), vector: shift, scale: 1 }] } });
    const rows: TrainRow[] = prompts.map((p, i) => ({ ids: [...p, ...g.tokens[i]!], start: 1, end: p.length + g.tokens[i]!.length }));
    const [train, held] = [rows.slice(0, 200), rows.slice(200)];
    const before = (await evaluateBatch(model, null, held, [], { klLambda: 0, klNorm: 'token', grads: false })).ce;
    // lora: rank 8 on every projection of every layer with the CLI's default lora_alpha (2r).
    const shape = kind === 'lora'
      ? { alpha: loraDefaultAlpha(8), lora: { rank: 8, rslora: LORA_DEFAULTS.rslora, modules: [...LORA_MODULES], layers: Array.from({ length: model.spec.nLayers }, (_, l) => l) } }
      : { layer: 2 };
    const r = await trainSolution(model, train, [], { ...TRAIN_DEFAULTS, kind, ...shape, epochs: 3, klLambda: 0, klNorm: 'token', checkpointEvery: 0 }, join(tmp(), 's.safetensors'), { dataKey: 'x' });
    const after = (await evaluateBatch(model, r.solution, held, [], { klLambda: 0, klNorm: 'token', grads: false })).ce;
    expect(after, `${kind}: held-out CE ${before} → ${after}`).toBeLessThan(0.9 * before);
    expect(r.firstBatch.after).toBeLessThan(0.9 * r.firstBatch.before);
  }, 120_000);
});

describe('a run that does not move the loss', () => {
  it('prints one warning line; a run that learns prints none', () => {
    const d = tmp();
    writeTinyCheckpoint(d, 'llama');
    addTokenizer(d);
    const data = writeChatDataset(d, 'narrow.jsonl', 16, 1);
    const args = ['train', '--model', d, '--data', data, '--layer', '1', '--steps', '8', '--batch-rows', '8'];
    const stalled = spawnSync(process.execPath, [BIN, ...args, '--lr', '1e-9', '--out', join(d, 'a.safetensors')], { encoding: 'utf8' });
    expect(stalled.status, stalled.stderr).toBe(0);
    const warnings = stalled.stderr.split('\n').filter((l) => l.startsWith('emlens: warning:'));
    expect(warnings).toHaveLength(1);
    expect(warnings[0]).toMatch(/training moved the loss of its first batch by only 0(\.0+)?\d*% \(\d\.\d{4} → \d\.\d{4}\): .*raise --lr or --alpha/);
    const learned = spawnSync(process.execPath, [BIN, ...args, '--out', join(d, 'b.safetensors')], { encoding: 'utf8' });
    expect(learned.status, learned.stderr).toBe(0);
    expect(learned.stderr).not.toMatch(/warning/);
  }, 60_000);
});
