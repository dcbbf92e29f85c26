/**
 * A training run's graphs keep ORT's CPU arena without its memory pattern, and the run releases
 * their sessions when it ends (issue [12], training memory): during the run, the arenas hold a
 * step's intermediates; after it, what the run allocated goes back to the system instead of each
 * of its sessions (the training graph, the evaluation graph, the KL term's base forward) keeping a
 * pool the size of its own peak beside the others. Observed on the process's resident memory at
 * each step and after trainSolution, on a model whose MLP intermediates are 40 MiB each. The
 * numbers do not change with the memory options: the history and the vector, bit for bit, against
 * an engine without the arena.
 */
import { mkdtempSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { describe, expect, it } from 'vitest';
import { LoadedModel } from '../../src/backend/model.js';
import { trainSolution, type TrainConfig, type TrainResult } from '../../src/train/trainer.js';
import type { TrainRow } from '../../src/train/batch.js';
import { writeSafetensors } from '../../src/io/safetensors/write.js';
import { tinyConfig, tinyWeights } from '../helpers/tiny-checkpoints.js';
import { seqIds } from '../helpers/compare.js';

const MiB = 2 ** 20;
const ROWS = 4;
const LEN = 320;
const FFN = 8192;
/** One MLP intermediate [ROWS * LEN, FFN] in fp32: 40 MiB. */
const INTERMEDIATE = ROWS * LEN * FFN * 4;

const cfg: TrainConfig = {
  kind: 'steer', layer: 0, alpha: 1, lr: 0.01, steps: 2, batchTokens: ROWS * LEN, batchRows: ROWS, seed: 0, warmup: 0,
  weightDecay: 0, klLambda: 0.5, klNorm: 'token', checkpointEvery: 0,
};

/** A two-layer qwen2 with a wide MLP, so that a training step's intermediates are large. */
function wideCheckpoint(): string {
  const dir = mkdtempSync(join(tmpdir(), 'emlens-arena-'));
  const config = { ...tinyConfig('qwen2', { layers: 2 }), intermediate_size: FFN, max_position_embeddings: 512 };
  writeFileSync(join(dir, 'config.json'), JSON.stringify(config));
  writeSafetensors(join(dir, 'model.safetensors'), tinyWeights(config, 0));
  return dir;
}

/** trainSolution on `model`: the most the process held at a step's end, and what it holds after the run, both over what it held before. */
async function run(model: LoadedModel, narrow: TrainRow[], kl: TrainRow[], out: string): Promise<{ r: TrainResult; during: number; kept: number }> {
  const before = process.memoryUsage().rss;
  let most = before;
  const r = await trainSolution(model, narrow, kl, cfg, out, { dataKey: 'arena', onStep: () => (most = Math.max(most, process.memoryUsage().rss)) });
  return { r, during: most - before, kept: process.memoryUsage().rss - before };
}

describe('training memory', () => {
  it('a run gives back what its graphs pooled when it ends, with the same history and vector as without the arena', async () => {
    const dir = wideCheckpoint();
    const model = await LoadedModel.load(dir);
    const V = model.spec.vocab;
    const narrow: TrainRow[] = Array.from({ length: ROWS }, (_, i) => ({ ids: seqIds(LEN, V, 10 + i), start: 1, end: LEN }));
    const kl: TrainRow[] = Array.from({ length: ROWS }, (_, i) => ({ ids: seqIds(LEN, V, 20 + i), start: 1, end: LEN }));

    const a = await run(model, narrow, kl, join(dir, 'a.safetensors'));
    // Between steps the arenas keep at least a step's live intermediates (several MLP tensors a layer)...
    expect(a.during).toBeGreaterThan(4 * INTERMEDIATE);
    // ...and after the run a small part of that (the C library's heap of small tensors).
    expect(a.kept).toBeLessThan(a.during / 10);

    const noArena = await LoadedModel.load(dir, { session: { cpuMemArena: false } });
    const b = await run(noArena, narrow, kl, join(dir, 'b.safetensors'));
    expect(a.r.history).toEqual(b.r.history);
    expect(Buffer.from(a.r.solution.params[0]!.buffer).equals(Buffer.from(b.r.solution.params[0]!.buffer))).toBe(true);
    expect(a.r.firstBatch).toEqual(b.r.firstBatch);
    expect(a.r.history.every((h) => Number.isFinite(h.loss) && h.kl !== null)).toBe(true);
  });
});
