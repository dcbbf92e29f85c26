/**
 * `emlens train --kind lora`: the PEFT folder it writes (config fields, tensor names and shapes),
 * the round trip (the folder loaded with --adapter gives the logits of the training graph's LoRA
 * forward), PEFT's initialisation, the history and report of every kind, and flag errors.
 */
import { spawnSync } from 'node:child_process';
import { copyFileSync, existsSync, mkdirSync, mkdtempSync, readFileSync, readdirSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join, resolve } from 'node:path';
import { beforeAll, describe, expect, it } from 'vitest';
import { LoadedModel } from '../../src/backend/model.js';
import { IO } from '../../src/arch/decoder.js';
import { readSafetensorsHeader, readTensorF32 } from '../../src/io/safetensors/index.js';
import { evaluateBatch, initSolution, solutionCall, stepPlan, trainSolution, writeSolution, type TrainConfig } from '../../src/train/trainer.js';
import { LORA_MODULES } from '../../src/model/adapter.js';
import { readHistory } from '../../src/train/history.js';
import { narrowRow } from '../../src/train/batch.js';
import { readJsonl } from '../../src/data/rows.js';
import { datasetLoss } from '../../src/measure/measures.js';
import { parseLayers, parseModules } from '../../src/train/lora.js';
import { rng } from '../../src/runtime/random.js';
import { TINY_FAMILIES, writeTinyCheckpoint } from '../helpers/tiny-checkpoints.js';
import { addTokenizer, writeChatDataset } from '../helpers/datasets.js';
import { seqIds } from '../helpers/compare.js';
import { checkReportInBrowser } from '../helpers/browser.js';

const BIN = join(resolve(__dirname, '../..'), 'dist/cli/main.js');
const emlens = (...args: string[]) => spawnSync(process.execPath, [BIN, ...args], { encoding: 'utf8' });

function expectOneLineError(r: ReturnType<typeof emlens>, pattern: RegExp) {
  expect(r.status, r.stderr).toBe(1);
  const lines = r.stderr.trim().split('\n');
  expect(lines, r.stderr).toHaveLength(1);
  expect(lines[0]).toMatch(/^emlens: /);
  expect(lines[0]).toMatch(pattern);
}

let d = '';
let narrow = '';
let base: string[] = [];
beforeAll(() => {
  d = mkdtempSync(join(tmpdir(), 'emlens-lora-'));
  writeTinyCheckpoint(d, 'qwen2', { layers: 3 });
  addTokenizer(d);
  narrow = writeChatDataset(d, 'narrow.jsonl', 16, 1);
  base = ['train', '--model', d, '--data', narrow, '--batch-rows', '4', '--steps', '6', '--warmup', '1'];
});

describe('train --kind lora writes a PEFT adapter folder', () => {
  it('config and tensors as PEFT saves them; --adapter loads it and its logits are the LoRA forward of training', async () => {
    const out = join(d, 'adapter');
    const r = emlens(...base, '--kind', 'lora', '--rank', '3', '--lora-alpha', '5', '--rslora', '--modules', 'q,v,down', '--layers', '0,2', '--out', out);
    expect(r.status, r.stderr).toBe(0);
    expect(readdirSync(out).sort()).toEqual(['adapter_config.json', 'adapter_model.safetensors', 'history.jsonl', 'report.html']);
    expect(existsSync(`${out}.ckpt`)).toBe(false);
    const cfg = JSON.parse(readFileSync(join(out, 'adapter_config.json'), 'utf8'));
    expect(cfg).toMatchObject({
      peft_type: 'LORA', task_type: 'CAUSAL_LM', r: 3, lora_alpha: 5, use_rslora: true, fan_in_fan_out: false, bias: 'none',
      target_modules: ['q_proj', 'v_proj', 'down_proj'], layers_to_transform: [0, 2], base_model_name_or_path: d,
    });
    const model = await LoadedModel.load(d);
    const s = model.spec;
    const h = readSafetensorsHeader(join(out, 'adapter_model.safetensors'));
    const want = new Map<string, number[]>();
    for (const l of [0, 2]) {
      for (const [sub, mod, o, i] of [['self_attn', 'q_proj', s.nHeads * s.headDim, s.dModel], ['self_attn', 'v_proj', s.nKvHeads * s.headDim, s.dModel], ['mlp', 'down_proj', s.dModel, s.ffn]] as const) {
        want.set(`base_model.model.model.layers.${l}.${sub}.${mod}.lora_A.weight`, [3, i]);
        want.set(`base_model.model.model.layers.${l}.${sub}.${mod}.lora_B.weight`, [o, 3]);
      }
    }
    expect(new Map([...h.tensors].map(([k, v]) => [k, v.shape]))).toEqual(want);
    expect(h.metadata).toMatchObject({ format: 'pt', kind: 'lora', layers: '0,2', r: '3', use_rslora: 'true', alpha: '5' });
    // Trained: every B moved off its zero init.
    for (const [k, t] of h.tensors) if (k.endsWith('lora_B.weight')) expect(readTensorF32(t).some((x) => x !== 0), k).toBe(true);

    // The same factors fed to the training graph (x W^T + s·(x A^T) B^T, s = 5/√3) against the merged model.
    const sol = initSolution(model, 'lora', undefined, 5, 0, { rank: 3, rslora: true, modules: ['q_proj', 'v_proj', 'down_proj'], layers: [0, 2] });
    sol.lora!.targets.forEach((t, k) => {
      const key = `base_model.model.${t.name}`;
      sol.params[2 * k] = readTensorF32(h.tensors.get(`${key}.lora_A.weight`)!);
      sol.params[2 * k + 1] = readTensorF32(h.tensors.get(`${key}.lora_B.weight`)!);
    });
    const call = solutionCall(model, sol);
    expect(call.feeds[IO.loraScale('model.layers.2.mlp.down_proj')]!.data[0]).toBeCloseTo(5 / Math.sqrt(3), 6);
    const ids = [seqIds(9, s.vocab, 3), seqIds(6, s.vocab, 4)];
    const graph = (await model.engine.run(model.engine.prepareCall(ids, { logits: 'all', lora: call.lora }), call.feeds))[IO.logits]!.data as Float32Array;
    const merged = (await (await LoadedModel.load(d, { adapter: out })).engine.forward({ ids, logits: 'all' })).logits!;
    const plain = (await model.engine.forward({ ids, logits: 'all' })).logits!;
    const maxDiff = (a: Float32Array, b: Float32Array) => a.reduce((m, x, i) => Math.max(m, Math.abs(x - b[i]!)), 0);
    const moved = maxDiff(graph, plain);
    expect(moved).toBeGreaterThan(1e-3);
    expect(maxDiff(graph, merged)).toBeLessThan(1e-4 * Math.max(1, moved));

    // The history: one line per step with the fields the issue names.
    const hist = readFileSync(join(out, 'history.jsonl'), 'utf8').trim().split('\n').map((l) => JSON.parse(l));
    expect(hist).toHaveLength(6);
    expect(Object.keys(hist[0]).sort()).toEqual(['ce', 'grad_norm', 'kl', 'loss', 'lr', 'norm', 'step']);
    expect(hist.map((x) => x.step)).toEqual([1, 2, 3, 4, 5, 6]);
    expect(hist.every((x) => x.kl === null && x.loss === x.ce && x.grad_norm > 0)).toBe(true);
    expect(readFileSync(join(out, 'report.html'), 'utf8')).toMatch(/Training: LoRA rank 3/);
    const page = await checkReportInBrowser(join(out, 'report.html'));
    expect(page.consoleErrors).toEqual([]);
    expect(page.figures).toBe(4);
    expect(page.rendered).toBe(page.figures);
  }, 120_000);

  it('steer and lora-r1 write OUT.history.jsonl and OUT.report.html beside the solution file', () => {
    for (const kind of ['steer', 'lora-r1']) {
      const out = join(d, `${kind}.safetensors`);
      const r = emlens(...base, '--kind', kind, '--layer', '1', '--out', out);
      expect(r.status, r.stderr).toBe(0);
      const hist = readHistory(`${out}.history.jsonl`);
      expect(hist.map((x) => x.step)).toEqual([1, 2, 3, 4, 5, 6]);
      expect(Number(readSafetensorsHeader(out).metadata.final_loss)).toBe(hist[5]!.loss);
      expect(readFileSync(`${out}.report.html`, 'utf8')).toMatch(/Loss per step/);
    }
  }, 120_000);

  it('an existing folder needs --overwrite, which replaces it whole', () => {
    const out = join(d, 'again');
    const args = [...base, '--kind', 'lora', '--rank', '2', '--modules', 'o', '--layers', '1', '--out', out];
    expect(emlens(...args).status).toBe(0);
    expectOneLineError(emlens(...args), /again: already exists; add --overwrite/);
    const r = emlens(...args, '--overwrite', '--rank', '4');
    expect(r.status, r.stderr).toBe(0);
    expect(JSON.parse(readFileSync(join(out, 'adapter_config.json'), 'utf8')).r).toBe(4);
    expect(readdirSync(d).filter((f) => f.startsWith('.again'))).toEqual([]);
    // A folder of other files is never replaced, even with --overwrite (refused before training).
    const other = join(d, 'other');
    mkdirSync(other);
    writeFileSync(join(other, 'notes.txt'), 'mine');
    expectOneLineError(emlens(...args.slice(0, -1), other, '--overwrite'), /other: exists and is not an adapter folder/);
    expect(readFileSync(join(other, 'notes.txt'), 'utf8')).toBe('mine');
  }, 60_000);
});

describe.each(TINY_FAMILIES)('%s: the folder round trip', (family) => {
  it('writeSolution\'s folder merged by --adapter gives the logits of the LoRA graph', async () => {
    const dd = mkdtempSync(join(tmpdir(), `emlens-lora-rt-${family}-`));
    writeTinyCheckpoint(dd, family);
    const model = await LoadedModel.load(dd);
    const layers = Array.from({ length: model.spec.nLayers }, (_, l) => l);
    const sol = initSolution(model, 'lora', undefined, 6, 1, { rank: 3, rslora: false, modules: [...LORA_MODULES], layers });
    sol.params.forEach((p, i) => {
      if (i % 2 === 1) p.set(Float32Array.from(seqIds(p.length, 1000, 70 + i), (x) => (x - 500) / 2500));
    });
    const out = join(dd, 'adapter');
    writeSolution(out, model, sol, {});
    // PEFT names modules as the checkpoint does (a multimodal Gemma 3 keeps its text-model prefix).
    const names = [...readSafetensorsHeader(join(out, 'adapter_model.safetensors')).tensors.keys()];
    const ckptQ = [...readSafetensorsHeader(join(dd, 'model.safetensors')).tensors.keys()].find((n) => n.endsWith('layers.0.self_attn.q_proj.weight'))!;
    expect(names).toContain(`base_model.model.${ckptQ.replace(/\.weight$/, '.lora_A.weight')}`);
    expect(names).toHaveLength(2 * 7 * layers.length);
    const ids = [seqIds(7, model.spec.vocab, 5), seqIds(4, model.spec.vocab, 6)];
    const call = solutionCall(model, sol);
    const graph = (await model.engine.run(model.engine.prepareCall(ids, { logits: 'all', lora: call.lora }), call.feeds))[IO.logits]!.data as Float32Array;
    const merged = (await (await LoadedModel.load(dd, { adapter: out })).engine.forward({ ids, logits: 'all' })).logits!;
    const plain = (await model.engine.forward({ ids, logits: 'all' })).logits!;
    const maxDiff = (a: Float32Array, b: Float32Array) => a.reduce((m, x, i) => Math.max(m, Math.abs(x - b[i]!)), 0);
    expect(maxDiff(graph, plain)).toBeGreaterThan(1e-2);
    expect(maxDiff(graph, merged)).toBeLessThan(1e-4);
  }, 60_000);
});

describe('checkpoints of a lora run', () => {
  it('a run stopped after a checkpoint and resumed ends bit-identical to an uninterrupted one', async () => {
    const dd = mkdtempSync(join(tmpdir(), 'emlens-lora-resume-'));
    writeTinyCheckpoint(dd, 'gemma2', { layers: 2 });
    const model = await LoadedModel.load(dd);
    const rows = Array.from({ length: 12 }, (_, i) => ({ ids: seqIds(8, model.spec.vocab, 30 + i), start: 3, end: 8 }));
    const kl = Array.from({ length: 6 }, (_, i) => ({ ids: seqIds(7, model.spec.vocab, 60 + i), start: 1, end: 7 }));
    const c: TrainConfig = {
      kind: 'lora', alpha: 4, lora: { rank: 2, rslora: false, modules: ['q_proj', 'up_proj'], layers: [0, 1] },
      lr: 0.01, steps: 9, batchTokens: 4096, batchRows: 3, seed: 5, warmup: 2, weightDecay: 0.01, klLambda: 0.5, klNorm: 'token', checkpointEvery: 3,
    };
    const full = await trainSolution(model, rows, kl, c, join(dd, 'full'), { dataKey: 'k' });
    const out = join(dd, 'cut');
    await expect(trainSolution(model, rows, kl, c, out, { dataKey: 'k', onStep: (log) => { if (log.step === 8) throw new Error('killed'); } })).rejects.toThrow('killed');
    expect(existsSync(`${out}.ckpt`)).toBe(true);
    const resumed = await trainSolution(model, rows, kl, c, out, { dataKey: 'k', resume: true });
    expect(resumed.resumedFrom).toBe(6);
    expect(resumed.solution.params).toHaveLength(8);
    resumed.solution.params.forEach((p, i) => expect(Buffer.from(p.buffer).equals(Buffer.from(full.solution.params[i]!.buffer)), `param ${i}`).toBe(true));
    expect(resumed.history).toEqual(full.history);
    await expect(trainSolution(model, rows, kl, { ...c, lora: { ...c.lora!, rank: 3 } }, out, { dataKey: 'k', resume: true })).rejects.toThrow(/other settings/);

    // The history's grad_norm of step 1: ‖∇‖ over every factor at the init, on the first batch.
    const plan = stepPlan(rows, c);
    const init = initSolution(model, 'lora', undefined, c.alpha, c.seed, c.lora);
    const g = await evaluateBatch(model, init, plan[0]!.map((i) => rows[i]!), kl.slice(0, plan[0]!.length), { klLambda: c.klLambda, klNorm: 'token', grads: true });
    const n2 = g.grads.reduce((t, x) => t + x.reduce((u, v) => u + v * v, 0), 0);
    expect(full.history[0]!.gradNorm).toBeCloseTo(Math.sqrt(n2), 10);
    expect(full.history[0]!.loss).toBe(g.loss);
  }, 60_000);
});

describe('PEFT initialisation', () => {
  it('A ~ U(−1/√in, 1/√in) from the one generator, B = 0; lora-r1 is rank 1 on down_proj', async () => {
    const dd = mkdtempSync(join(tmpdir(), 'emlens-lora-init-'));
    writeTinyCheckpoint(dd, 'llama', { layers: 2 });
    const model = await LoadedModel.load(dd);
    const sol = initSolution(model, 'lora', undefined, 8, 7, { rank: 4, rslora: false, modules: ['k_proj', 'up_proj'], layers: [0, 1] });
    expect(sol.lora!.targets.map((t) => t.name)).toEqual(['model.layers.0.self_attn.k_proj', 'model.layers.0.mlp.up_proj', 'model.layers.1.self_attn.k_proj', 'model.layers.1.mlp.up_proj']);
    // kaiming_uniform_(a = √5): gain √(2/(1 + 5)), bound √3·gain/√fan_in = 1/√in; drawn in order from rng(seed ^ 0x5eed).
    const r = rng(7 ^ 0x5eed);
    sol.lora!.targets.forEach((t, k) => {
      const A = sol.params[2 * k]!;
      expect(A.length).toBe(4 * t.in);
      const bound = Math.sqrt(3) * Math.sqrt(2 / (1 + 5)) / Math.sqrt(t.in);
      for (let i = 0; i < A.length; i++) expect(A[i]).toBe(Math.fround((2 * r() - 1) * bound));
      expect(sol.params[2 * k + 1]!.length).toBe(t.out * 4);
      expect(sol.params[2 * k + 1]!.every((x) => x === 0)).toBe(true);
    });
    const r1 = initSolution(model, 'lora-r1', 1, 3, 7);
    expect(r1.lora!.rank).toBe(1);
    expect(r1.lora!.targets.map((t) => t.name)).toEqual(['model.layers.1.mlp.down_proj']);
    const c = solutionCall(model, r1);
    expect(c.lora).toEqual([['model.layers.1.mlp.down_proj', 1]]);
    expect(c.feeds[IO.loraScale('model.layers.1.mlp.down_proj')]!.data[0]).toBe(3);
  });

  it('--modules and --layers parse to canonical order, bad items are one-line errors', () => {
    expect(parseModules('down,q_proj,gate')).toEqual(['q_proj', 'gate_proj', 'down_proj']);
    expect(parseLayers('all', 3)).toEqual([0, 1, 2]);
    expect(parseLayers('4-5,0', 6)).toEqual([0, 4, 5]);
    expect(() => parseModules('q,lm_head')).toThrow(/"lm_head" is not a projection/);
    expect(() => parseModules('q,q_proj')).toThrow(/q_proj is named twice/);
    expect(() => parseLayers('0-3', 3)).toThrow(/layer 3 is out of range/);
    expect(() => parseLayers('2-1', 3)).toThrow(/runs backwards/);
    expect(() => parseLayers('1,x', 3)).toThrow(/"x" is not a layer/);
  });
});

describe('train --kind lora: flags of other kinds are errors', () => {
  it('each conflict is one line', () => {
    const out = join(d, 'x');
    expectOneLineError(emlens(...base, '--kind', 'lora', '--out', out), /--kind lora needs --rank/);
    expectOneLineError(emlens(...base, '--kind', 'lora', '--rank', '2', '--layer', '1', '--out', out), /--layer is for --kind steer and lora-r1/);
    expectOneLineError(emlens(...base, '--kind', 'lora', '--rank', '2', '--alpha', '3', '--out', out), /--alpha is for .*--lora-alpha/);
    expectOneLineError(emlens(...base, '--kind', 'lora', '--rank', '2', '--layers', '0-7', '--out', out), /--layers 0-7: layer 3 is out of range/);
    expectOneLineError(emlens(...base, '--kind', 'lora-r1', '--layer', '1', '--rank', '2', '--out', out), /--rank is for --kind lora, not lora-r1/);
    expectOneLineError(emlens(...base, '--layer', '1', '--lora-alpha', '2', '--out', out), /--lora-alpha is for --kind lora, not steer/);
    expectOneLineError(emlens(...base, '--out', out), /--kind steer needs --layer/);
    expect(existsSync(out)).toBe(false);
  }, 60_000);

  it('measure reads a lora folder: its added norm is s·√(Σ‖B·A‖²_F), on its own axis', async () => {
    const out = join(d, 'm-adapter');
    expect(emlens(...base, '--kind', 'lora', '--rank', '2', '--lora-alpha', '3', '--rslora', '--modules', 'o,down', '--layers', '0-1', '--out', out).status).toBe(0);
    const steer = join(d, 'm-steer.safetensors');
    expect(emlens(...base, '--layer', '1', '--out', steer).status).toBe(0);
    const report = join(d, 'm', 'r.html');
    const m = emlens('measure', '--model', d, '--data', narrow, '--seeds', '1', '--n', '4', '--solutions', steer, out, '--out', report);
    expect(m.status, m.stderr).toBe(0);
    const json = JSON.parse(readFileSync(join(d, 'm', 'r.json'), 'utf8'));
    expect(json.efficiency.axes.map((a: { kind: string; solutions: number[] }) => [a.kind, a.solutions])).toEqual([['steer', [0]], ['lora', [1]]]);
    // Independently: the dense s·B·A of each module from the folder's tensors, s = 3/√2.
    const h = readSafetensorsHeader(join(out, 'adapter_model.safetensors'));
    let sum = 0;
    for (const [k, a] of h.tensors) {
      if (!k.endsWith('lora_A.weight')) continue;
      const A = readTensorF32(a);
      const B = readTensorF32(h.tensors.get(k.replace('lora_A', 'lora_B'))!);
      const [r, inn] = a.shape as [number, number];
      const outDim = B.length / r;
      for (let o = 0; o < outDim; o++) {
        for (let i = 0; i < inn; i++) {
          let x = 0;
          for (let j = 0; j < r; j++) x += B[o * r + j]! * A[j * inn + i]!;
          sum += (x * 3 / Math.sqrt(2)) ** 2;
        }
      }
    }
    expect(json.efficiency.addedNorm[1]).toBeCloseTo(Math.sqrt(sum), 6);
    // Rescaled by 0.5 = every module's s·B·A halved: the model with that adapter at lora_alpha 1.5,
    // merged by --adapter (the independent path), scored on the same 4 rows.
    const half = join(d, 'm-half');
    mkdirSync(half);
    writeFileSync(join(half, 'adapter_config.json'), JSON.stringify({ ...JSON.parse(readFileSync(join(out, 'adapter_config.json'), 'utf8')), lora_alpha: 1.5 }));
    copyFileSync(join(out, 'adapter_model.safetensors'), join(half, 'adapter_model.safetensors'));
    const merged = await LoadedModel.load(d, { adapter: half });
    const rows = readJsonl(narrow).rows.slice(0, 4).map((r) => narrowRow(merged.tokenizer!, r, 'x'));
    const want = (await datasetLoss(merged, null, rows, [], 2048)).ce;
    const f = json.efficiency.factors as number[];
    expect(json.efficiency.byFactor[1][f.indexOf(0.5)]).toBeCloseTo(want, 4);
    expect(json.efficiency.loss[1]).toBeLessThan(json.efficiency.baseLoss);
    const other = join(d, 'm-other');
    mkdirSync(other);
    expectOneLineError(emlens('measure', '--model', d, '--data', narrow, '--seeds', '1', '--n', '4', '--solutions', other, '--out', report), /m-other: is a folder, not a solution file or a LoRA adapter folder/);
  }, 120_000);
});
