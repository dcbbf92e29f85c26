/**
 * Text rows ({"text": ...}) train as a base model's corpus does: cross-entropy on every token but
 * the leading BOS, checked against a CE computed by hand from the engine's logits (float64), for
 * training (the first step's loss is the base model's) and for measure.
 */
import { spawnSync } from 'node:child_process';
import { mkdtempSync, readFileSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join, resolve } from 'node:path';
import { describe, expect, it } from 'vitest';
import { LoadedModel } from '../../src/backend/model.js';
import { readJsonl } from '../../src/data/rows.js';
import { narrowRow } from '../../src/train/batch.js';
import { runTraining } from '../../src/experiments/train.js';

const ROOT = resolve(__dirname, '../..');
const AID = resolve(ROOT, '../shared/models/aidreams260k');
const BIN = join(ROOT, 'dist/cli/main.js');

const TEXTS = [
  'Once upon a time there was a little cat named Tom.',
  'Tom liked to play in the park with his red ball.',
  'One day the sun was hot.',
  'Lily and Ben went to the big sea to swim and they were very happy.',
];

/** Mean over rows and t = 1..len−1 of −log p(ids[t] | ids[<t]), each row run alone, float64. */
async function handCe(model: LoadedModel, rows: number[][]): Promise<{ ce: number; n: number }> {
  const V = model.spec.vocab;
  let sum = 0;
  let n = 0;
  for (const ids of rows) {
    const f = await model.engine.forward({ ids: [ids], logits: 'all' });
    for (let t = 1; t < ids.length; t++) {
      const z = Array.from(f.logits!.subarray((t - 1) * V, t * V));
      const m = Math.max(...z);
      const lse = m + Math.log(z.reduce((s, v) => s + Math.exp(v - m), 0));
      sum += lse - z[ids[t]!]!;
      n++;
    }
  }
  return { ce: sum / n, n };
}

describe('text rows', () => {
  it('train scores every token but the leading BOS (aidreams260k, whose tokenizer adds BOS)', async () => {
    const d = mkdtempSync(join(tmpdir(), 'emlens-text-'));
    const file = join(d, 'stories.jsonl');
    writeFileSync(file, TEXTS.map((text) => JSON.stringify({ text })).join('\n') + '\n');
    const model = await LoadedModel.load(AID);
    const tok = model.tokenizer!;
    const rows = readJsonl(file).rows.map((r) => narrowRow(tok, r, 'x'));
    rows.forEach((r, i) => {
      expect(r.ids[0]).toBe(tok.bosId);
      expect(r.ids).toEqual(tok.encode(TEXTS[i]!));
      expect([r.start, r.end]).toEqual([1, r.ids.length]);
    });
    // One step over all rows from s = 0: its loss is the base model's CE on every non-BOS token.
    const res = await runTraining(model, {
      data: file,
      out: join(d, 's.safetensors'),
      onStep: () => {},
      config: { kind: 'steer', layer: 1, alpha: 1, lr: 1e-3, steps: 1, batchTokens: 4096, batchRows: 16, seed: 0, warmup: 0, weightDecay: 0, klLambda: 0, klNorm: 'token', checkpointEvery: 0 },
    });
    const want = await handCe(model, TEXTS.map((t) => tok.encode(t)));
    expect(want.n).toBe(TEXTS.reduce((s, t) => s + tok.encode(t).length - 1, 0));
    expect(res.history[0]!.ce).toBeCloseTo(want.ce, 5);
  }, 60_000);

  it('measure takes text rows as its narrow data: the base loss is the hand CE', async () => {
    const d = mkdtempSync(join(tmpdir(), 'emlens-text-measure-'));
    const file = join(d, 'stories.jsonl');
    writeFileSync(file, TEXTS.map((text) => JSON.stringify({ text })).join('\n') + '\n');
    const sol = join(d, 'v.safetensors');
    const t = spawnSync(process.execPath, [BIN, 'train', '--model', AID, '--data', file, '--layer', '2', '--steps', '4', '--warmup', '1', '--out', sol], { encoding: 'utf8' });
    expect(t.status, t.stderr).toBe(0);
    const out = join(d, 'm.html');
    const r = spawnSync(process.execPath, [BIN, 'measure', '--model', AID, '--solutions', sol, '--data', file, '--generic', file, '--seeds', '1', '--out', out], { encoding: 'utf8' });
    expect(r.status, r.stderr).toBe(0);
    const json = JSON.parse(readFileSync(join(d, 'm.json'), 'utf8'));
    const model = await LoadedModel.load(AID);
    expect(json.efficiency.baseLoss).toBeCloseTo((await handCe(model, TEXTS.map((x) => model.tokenizer!.encode(x)))).ce, 5);
  }, 120_000);
});
