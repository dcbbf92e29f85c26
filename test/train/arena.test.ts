/**
 * A training run's graphs go without ORT's CPU arena (issue [12], training memory): what a run
 * allocates goes back to the system when it ends, instead of each of its sessions (the training
 * graph, the evaluation graph, the KL term's base forward) keeping a pool the size of its own
 * peak beside the others. Observed on the process's resident memory around trainSolution, on a
 * model whose MLP intermediates are over 32 MiB each (so the C library maps and unmaps each of
 * them: none is left in its heap), against the same run on an engine created with the arena on,
 * which keeps them. The numbers do not change: the history and the vector, bit for bit.
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

/** trainSolution on `model`, and how much more the process holds after it than before it. */
async function run(model: LoadedModel, narrow: TrainRow[], kl: TrainRow[], out: string): Promise<{ r: TrainResult; kept: number }> {
  const before = process.memoryUsage().rss;
  const r = await trainSolution(model, narrow, kl, cfg, out, { dataKey: 'arena' });
  return { r, kept: process.memoryUsage().rss - before };
}

describe('training memory', () => {
  it('a run gives back what its graphs allocated (no ORT arena), with the same history and vector', async () => {
    const dir = wideCheckpoint();
    const free = await LoadedModel.load(dir);
    const pooled = await LoadedModel.load(dir, { session: { cpuMemArena: true } });
    const V = free.spec.vocab;
    const narrow: TrainRow[] = Array.from({ length: ROWS }, (_, i) => ({ ids: seqIds(LEN, V, 10 + i), start: 1, end: LEN }));
    const kl: TrainRow[] = Array.from({ length: ROWS }, (_, i) => ({ ids: seqIds(LEN, V, 20 + i), start: 1, end: LEN }));

    // The default engine first: the pooled run's arenas, made after it, cannot lower what it keeps.
    const a = await run(free, narrow, kl, join(dir, 'free.safetensors'));
    const b = await run(pooled, narrow, kl, join(dir, 'pooled.safetensors'));
    // The arena keeps at least the training step's live intermediates (several MLP tensors a layer)...
    expect(b.kept).toBeGreaterThan(4 * INTERMEDIATE);
    // ...the run without it a small part of that (compiled sessions, the C library's heap of small tensors).
    expect(a.kept).toBeLessThan(b.kept / 10);

    expect(a.r.history).toEqual(b.r.history);
    expect(Buffer.from(a.r.solution.params[0]!.buffer).equals(Buffer.from(b.r.solution.params[0]!.buffer))).toBe(true);
    expect(a.r.firstBatch).toEqual(b.r.firstBatch);
    expect(a.r.history.every((h) => Number.isFinite(h.loss) && h.kl !== null)).toBe(true);
  });
});
