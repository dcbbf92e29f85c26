/**
 * measure: perturbations as defined, losses against an independent CE computed from the engine's
 * logits, and the report rendered in headless Chromium.
 */
import { spawnSync } from 'node:child_process';
import { mkdtempSync, readFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join, resolve } from 'node:path';
import { describe, expect, it } from 'vitest';
import { LoadedModel } from '../../src/backend/model.js';
import { perturb, datasetLoss, randomLike, addedNorm, FACTORS } from '../../src/measure/measures.js';
import { readJsonl } from '../../src/data/rows.js';
import { narrowRow } from '../../src/train/batch.js';
import { readSolution, solutionCall } from '../../src/train/trainer.js';
import { writeTinyCheckpoint } from '../helpers/tiny-checkpoints.js';
import { addTokenizer, writeChatDataset } from '../helpers/datasets.js';
import { checkReportInBrowser } from '../helpers/browser.js';

const ROOT = resolve(__dirname, '../..');
const BIN = join(ROOT, 'dist/cli/main.js');
const run = (...args: string[]) => spawnSync(process.execPath, [BIN, ...args], { encoding: 'utf8' });

describe('perturbation', () => {
  it('keeps the norm, and ε is the sine of the angle to x', () => {
    const x = Float32Array.from({ length: 50 }, (_, i) => Math.cos(i));
    for (const eps of [0.01, 0.3, 1]) {
      const p = perturb(x, eps, 4);
      const nx = Math.hypot(...x);
      const np = Math.hypot(...p);
      expect(np / nx).toBeCloseTo(1, 5);
      const c = x.reduce((s, v, i) => s + v * p[i]!, 0) / (nx * np);
      expect(c).toBeCloseTo(Math.sqrt(1 - eps * eps), 5);
    }
  });
});

describe('emlens measure', () => {
  it('losses equal an independent CE; report renders; json has every figure', async () => {
    const d = mkdtempSync(join(tmpdir(), 'emlens-measure-'));
    writeTinyCheckpoint(d, 'qwen3');
    addTokenizer(d);
    const narrow = writeChatDataset(d, 'narrow.jsonl', 24, 1);
    const kl = writeChatDataset(d, 'kl.jsonl', 24, 2);
    const common = ['--model', d, '--data', narrow, '--layer', '1', '--alpha', '2', '--lr', '0.05', '--steps', '10', '--batch-rows', '8'];
    expect(run('train', ...common, '--out', join(d, 'general.safetensors')).status).toBe(0);
    expect(run('train', ...common, '--out', join(d, 'narrow.safetensors'), '--kl-data', kl, '--kl-weight', '50').status).toBe(0);
    const out = join(d, 'report.html');
    const r = run('measure', '--model', d, '--solutions', join(d, 'general.safetensors'), join(d, 'narrow.safetensors'), '--data', narrow, '--generic', kl, '--out', out, '--n', '12', '--seeds', '2');
    expect(r.status, r.stderr).toBe(0);
    const json = JSON.parse(readFileSync(join(d, 'report.json'), 'utf8'));

    // Independent CE of the general solution: engine logits, log-softmax and response mask by hand.
    const model = await LoadedModel.load(d);
    const sol = readSolution(join(d, 'general.safetensors'), model);
    const rows = readJsonl(narrow).rows.slice(0, 12).map((row) => narrowRow(model.tokenizer!, row, 'x'));
    const call = solutionCall(model, sol);
    let sum = 0;
    let n = 0;
    for (const row of rows) {
      const f = await model.engine.forward({ ids: [row.ids], logits: 'all', interventions: call.interventions });
      const V = model.spec.vocab;
      for (let t = row.start - 1; t < row.end - 1; t++) {
        const z = f.logits!.subarray(t * V, (t + 1) * V);
        const m = Math.max(...z);
        const lse = m + Math.log(z.reduce((s, v) => s + Math.exp(v - m), 0));
        sum += lse - z[row.ids[t + 1]!]!;
        n++;
      }
    }
    expect(json.efficiency.loss[0]).toBeCloseTo(sum / n, 4);
    expect(json.efficiency.byFactor[0][0]).toBeCloseTo((await datasetLoss(model, null, rows, [], 4096)).ce, 5);
    expect(json.influence.kl[0].length).toBe(json.efficiency.norms[0].length);
    expect(Math.abs(addedNorm(randomLike(sol, 3)) - addedNorm(sol))).toBeLessThan(1e-3 * addedNorm(sol));

    const page = await checkReportInBrowser(out);
    expect(page.consoleErrors).toEqual([]);
    expect(page.figures).toBe(4);
    expect(page.rendered).toBe(page.figures);
  }, 120_000);
});

describe('steering vectors and LoRA adapters', () => {
  it('each kind has its own norm axis, labelled with what it measures, in the JSON and the report', async () => {
    const d = mkdtempSync(join(tmpdir(), 'emlens-measure-kinds-'));
    writeTinyCheckpoint(d, 'llama');
    addTokenizer(d);
    const narrow = writeChatDataset(d, 'narrow.jsonl', 16, 1);
    const common = ['--model', d, '--data', narrow, '--layer', '1', '--steps', '8', '--batch-rows', '8'];
    const steer = join(d, 'steer.safetensors');
    const lora = join(d, 'lora.safetensors');
    for (const [out, kind] of [[steer, 'steer'], [lora, 'lora-r1']]) {
      const t = run('train', ...common, '--kind', kind!, '--out', out!);
      expect(t.status, t.stderr).toBe(0);
    }
    const out = join(d, 'report.html');
    const r = run('measure', '--model', d, '--solutions', steer, lora, '--data', narrow, '--generic', narrow, '--out', out, '--n', '8', '--seeds', '1');
    expect(r.status, r.stderr).toBe(0);
    const json = JSON.parse(readFileSync(join(d, 'report.json'), 'utf8'));
    const model = await LoadedModel.load(d);
    const added = [steer, lora].map((f) => addedNorm(readSolution(f, model)));
    // The two added norms (of different quantities) differ: one shared axis would misplace one of them.
    expect(Math.max(...added) / Math.min(...added)).toBeGreaterThan(1.5);
    expect(json.efficiency.axes.map((a: { kind: string; solutions: number[] }) => [a.kind, a.solutions])).toEqual([['steer', [0]], ['lora-r1', [1]]]);
    expect(json.efficiency.axes[0].quantity).toMatch(/‖α·s‖/);
    expect(json.efficiency.axes[1].quantity).toMatch(/‖α·B·A‖_F/);
    for (const k of [0, 1]) {
      // Each solution's grid ends at its own kind's largest norm (here: its own), so at that
      // point the equal-norm loss is the loss of the solution as trained.
      const norms: number[] = json.efficiency.norms[k];
      expect(norms[norms.length - 1]).toBeCloseTo(added[k]!, 5);
      expect(norms[0]).toBeCloseTo(added[k]! * FACTORS[1]! / 2, 5);
      expect(json.efficiency.byNorm[k][norms.length - 1]).toBeCloseTo(json.efficiency.loss[k], 5);
      expect(json.influence.norms[k]).toEqual(norms);
    }
    const html = readFileSync(out, 'utf8');
    for (const id of ['efficiency-norm-steer', 'efficiency-norm-lora-r1', 'influence-steer', 'influence-lora-r1']) expect(html).toContain(id);
    const page = await checkReportInBrowser(out);
    expect(page.consoleErrors).toEqual([]);
    expect(page.figures).toBe(6);
    expect(page.rendered).toBe(page.figures);
  }, 120_000);
});
