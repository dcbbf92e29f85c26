/**
 * A planted low-rank shift recovered: the teacher is the base model plus a known rank-2 update
 * s·B*·A* on two projections of one layer (merged by --adapter, the independent path); a rank-2
 * LoRA on those projections, trained on the teacher's own samples from PEFT's init, ends with
 * ΔW = s·B·A close to the planted one, and with the teacher's held-out loss.
 */
import { mkdtempSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { describe, expect, it } from 'vitest';
import { LoadedModel } from '../../src/backend/model.js';
import { evaluateBatch, trainSolution, type TrainConfig } from '../../src/train/trainer.js';
import type { TrainRow } from '../../src/train/batch.js';
import { loraTargets, writePeftFolder } from '../../src/train/lora.js';
import { gaussian, rng } from '../../src/runtime/random.js';
import { writeTinyCheckpoint } from '../helpers/tiny-checkpoints.js';
import { seqIds } from '../helpers/compare.js';

const RANK = 2;
const MODULES = ['v_proj', 'down_proj'] as const;
const LAYER = 1;

/** s·B·A as a dense [out, in] matrix, in float64. */
function delta(A: ArrayLike<number>, B: ArrayLike<number>, out: number, inn: number, r: number, s: number): Float64Array {
  const d = new Float64Array(out * inn);
  for (let o = 0; o < out; o++) for (let k = 0; k < r; k++) for (let i = 0; i < inn; i++) d[o * inn + i]! += s * B[o * r + k]! * A[k * inn + i]!;
  return d;
}
const dot = (a: Float64Array, b: Float64Array) => a.reduce((t, x, i) => t + x * b[i]!, 0);

async function sample(model: LoadedModel, n: number, len: number, seed: number): Promise<TrainRow[]> {
  const prompts = Array.from({ length: n }, (_, i) => [seqIds(1, model.spec.vocab, seed * 1000 + i)[0]!]);
  const g = await model.engine.generate(prompts, { maxNewTokens: len, temperature: 1, seed, stopIds: [] });
  return prompts.map((p, i) => ({ ids: [...p, ...g.tokens[i]!], start: 1, end: len + 1 }));
}

describe('planted low-rank shift', () => {
  it('a rank-2 LoRA trained on a rank-2-shifted teacher recovers ΔW and the teacher\'s loss', async () => {
    const d = mkdtempSync(join(tmpdir(), 'emlens-planted-lora-'));
    writeTinyCheckpoint(d, 'llama', { layers: 3 });
    const base = await LoadedModel.load(d);
    const targets = loraTargets(base.spec, [...MODULES], [LAYER]);
    // The planted factors: Gaussian, large enough to move the distribution well past sampling noise.
    const r = rng(42);
    const planted = targets.flatMap((t) => [Float32Array.from(gaussian(r, RANK * t.in), (x) => x / Math.sqrt(t.in)), Float32Array.from(gaussian(r, t.out * RANK), (x) => 1.5 * x)]);
    const teacherDir = join(d, 'teacher');
    writePeftFolder(teacherDir, { shape: { rank: RANK, rslora: false, targets }, alpha: RANK, params: planted, prefix: 'model.', baseModel: d, metadata: {} });
    const teacher = await LoadedModel.load(d, { adapter: teacherDir });

    const train = await sample(teacher, 384, 24, 1);
    const held = await sample(teacher, 64, 24, 2);
    const ce = async (m: LoadedModel, sol: Parameters<typeof evaluateBatch>[1]) => (await evaluateBatch(m, sol, held, [], { klLambda: 0, klNorm: 'token', grads: false })).ce;
    const [ceTeacher, ceBase] = [await ce(teacher, null), await ce(base, null)];
    expect(ceBase - ceTeacher, 'the shift must matter').toBeGreaterThan(0.1);

    const cfg: TrainConfig = {
      kind: 'lora', alpha: RANK, lora: { rank: RANK, rslora: false, modules: [...MODULES], layers: [LAYER] },
      lr: 0.02, epochs: 15, batchTokens: 4096, batchRows: 32, seed: 0, warmup: 10, weightDecay: 0, klLambda: 0, klNorm: 'token', checkpointEvery: 0,
    };
    const res = await trainSolution(base, train, [], cfg, join(d, 'student'), { dataKey: 'planted' });
    const ceStudent = await ce(base, res.solution);
    // Most of the gap to the teacher closed (the rest: the finite sample).
    expect(ceStudent - ceTeacher, `CE base ${ceBase}, student ${ceStudent}, teacher ${ceTeacher}`).toBeLessThan(0.1 * (ceBase - ceTeacher));
    targets.forEach((t, k) => {
      const want = delta(planted[2 * k]!, planted[2 * k + 1]!, t.out, t.in, RANK, 1);
      const got = delta(res.solution.params[2 * k]!, res.solution.params[2 * k + 1]!, t.out, t.in, RANK, 1);
      const cos = dot(got, want) / Math.sqrt(dot(got, got) * dot(want, want));
      const ratio = Math.sqrt(dot(got, got) / dot(want, want));
      expect(cos, `${t.name}: cos(ΔW learned, planted)`).toBeGreaterThan(0.9);
      expect(Math.abs(ratio - 1), `${t.name}: ‖ΔW learned‖ / ‖planted‖ = ${ratio}`).toBeLessThan(0.2);
    });
  }, 300_000);
});
