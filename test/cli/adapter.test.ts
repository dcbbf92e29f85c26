/**
 * Adapters through the emlens binary (node dist/cli/main.js): `generate --adapter` equals
 * generating from a checkpoint the test merged itself; `inspect --adapter` reports and validates;
 * `adapter ablate` writes the ablated folder; bad input is one line on stderr, exit 1.
 */
import { spawnSync } from 'node:child_process';
import { mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join, resolve } from 'node:path';
import { afterAll, describe, expect, it } from 'vitest';
import { writeDirectionFile } from '../../src/io/directions.js';
import { readSafetensorsHeader, readTensorF32 } from '../../src/io/safetensors/index.js';
import { writeTinyCheckpoint } from '../helpers/tiny-checkpoints.js';
import { addTokenizer } from '../helpers/datasets.js';
import { loraConfig, mergeInF64, moduleKeys, randomLoras, randomValues, writePlainCheckpoint, writeTinyAdapter } from '../helpers/tiny-adapters.js';

const BIN = join(resolve(__dirname, '../..'), 'dist/cli/main.js');
const root = mkdtempSync(join(tmpdir(), 'emlens-cli-adapter-'));
afterAll(() => rmSync(root, { recursive: true, force: true }));

function emlens(...args: string[]) {
  const r = spawnSync(process.execPath, [BIN, ...args], { encoding: 'utf8', env: { ...process.env, HF_HUB_OFFLINE: '1' } });
  return { code: r.status, stdout: r.stdout, stderr: r.stderr };
}
function expectOneLineError(r: ReturnType<typeof emlens>, pattern: RegExp) {
  expect(r.code).toBe(1);
  const lines = r.stderr.trim().split('\n');
  expect(lines, r.stderr).toHaveLength(1);
  expect(lines[0]).toMatch(pattern);
}

const baseDir = join(root, 'base');
const { config, weights } = writeTinyCheckpoint(baseDir, 'llama');
addTokenizer(baseDir);
const keys = moduleKeys(weights, [0, 1, 2], ['v_proj', 'o_proj', 'down_proj']);
// Large factors, so that the adapter changes what greedy decoding picks.
const loras = randomLoras(weights, keys, () => 2, 29).map((l) => ({ ...l, B: l.B.map((x) => 4 * x) }));
const adapter = join(root, 'adapter');
writeTinyAdapter(adapter, loraConfig({ r: 2, lora_alpha: 4, target_modules: ['v_proj', 'o_proj', 'down_proj'], base_model_name_or_path: 'org/tiny-llama' }), loras);
const mergedDir = join(root, 'merged');
writePlainCheckpoint(mergedDir, config, mergeInF64(weights, loras, () => 2));
addTokenizer(mergedDir);

describe('emlens generate --adapter', () => {
  it('equals generating from the checkpoint merged by the test, and differs from the base model', () => {
    const args = ['--prompt', 'the doctor is', '--max-new-tokens', '10', '--json'];
    const a = emlens('generate', '--model', baseDir, '--adapter', adapter, ...args);
    expect(a.code, a.stderr).toBe(0);
    const m = emlens('generate', '--model', mergedDir, ...args);
    const b = emlens('generate', '--model', baseDir, ...args);
    expect(JSON.parse(a.stdout).tokens).toEqual(JSON.parse(m.stdout).tokens);
    expect(JSON.parse(a.stdout).tokens).not.toEqual(JSON.parse(b.stdout).tokens);
  });

  it('a lying adapter is one line', () => {
    const bad = join(root, 'bad');
    writeTinyAdapter(bad, loraConfig({ r: 3, lora_alpha: 4, target_modules: ['v_proj', 'o_proj', 'down_proj'] }), loras);
    expectOneLineError(emlens('generate', '--model', baseDir, '--adapter', bad, '--prompt', 'the'), /^emlens: .*adapter_model\.safetensors: ".*" has lora_A \[2, 48\].*rank 3/);
    expectOneLineError(emlens('generate', '--model', baseDir, '--adapter', join(root, 'none'), '--prompt', 'the'), /^emlens: adapter .*none: no such folder/);
  });
});

describe('emlens extract --adapter', () => {
  it("extracts the merged model's activations and records the adapter, with its own weights hash", () => {
    const data = join(root, 'rows.jsonl');
    writeFileSync(data, ['the doctor is kind', 'we help the world', 'rest and water'].map((t) => JSON.stringify({ text: t })).join('\n') + '\n');
    const run = (out: string, ...model: string[]) => {
      const r = emlens('extract', ...model, '--data', data, '--out', join(root, out), '--layers', '1,2');
      expect(r.code, r.stderr).toBe(0);
      return {
        meta: JSON.parse(readFileSync(join(root, out, 'meta.json'), 'utf8')),
        acts: readTensorF32(readSafetensorsHeader(join(root, out, 'activations.safetensors')).tensors.get('blocks.2.hook_resid_post')!),
      };
    };
    const withAdapter = run('acts-adapter', '--model', baseDir, '--adapter', adapter);
    const merged = run('acts-merged', '--model', mergedDir);
    const base = run('acts-base', '--model', baseDir);
    expect(withAdapter.meta.model.adapter).toBe(resolve(adapter));
    expect(base.meta.model.adapter).toBeNull();
    expect(withAdapter.meta.model.weights_sha256).not.toBe(base.meta.model.weights_sha256);
    let err = 0;
    let moved = 0;
    withAdapter.acts.forEach((x, i) => {
      err = Math.max(err, Math.abs(x - merged.acts[i]!));
      moved = Math.max(moved, Math.abs(x - base.acts[i]!));
    });
    expect(err).toBeLessThan(1e-4);
    expect(moved).toBeGreaterThan(1e-3);
  });
});

describe('emlens inspect --adapter', () => {
  it('reports the adapter beside the model', () => {
    const r = emlens('inspect', baseDir, '--adapter', adapter, '--json');
    expect(r.code, r.stderr).toBe(0);
    const d = JSON.parse(r.stdout);
    expect(d).toMatchObject({ family: 'llama', adapter, adapter_base_model: 'org/tiny-llama', adapter_layers: '0,1,2', adapter_rank: '2', adapter_scale: '2', adapter_rslora: false });
    expect(d.adapter_modules).toBe('9 (v_proj, o_proj, down_proj)');
  });
});

describe('emlens adapter ablate', () => {
  it('writes a PEFT folder whose residual-writing B have no component along the direction and the old norm', () => {
    const D = 48;
    const vecs = new Map([0, 1, 2].map((l) => [l, randomValues(D, 200 + l, 1)]));
    const direction = join(root, 'dir.safetensors');
    writeDirectionFile(direction, vecs, { method: 'test' });
    const out = join(root, 'ablated');
    const r = emlens('adapter', 'ablate', '--adapter', adapter, '--direction', direction, '--out', out);
    expect(r.code, r.stderr).toBe(0);
    expect(r.stdout).toMatch(/wrote .*ablated \(6 B matrices ablated, 12 factors copied unchanged\)/);
    const src = readSafetensorsHeader(join(adapter, 'adapter_model.safetensors')).tensors;
    for (const [name, info] of readSafetensorsHeader(join(out, 'adapter_model.safetensors')).tensors) {
      const m = /layers\.(\d+)\.(self_attn\.o_proj|mlp\.down_proj)\.lora_B/.exec(name);
      if (!m) continue;
      const B = readTensorF32(info);
      const B0 = readTensorF32(src.get(name)!);
      const v = vecs.get(Number(m[1]))!;
      const nv = Math.hypot(...v);
      for (let k = 0; k < 2; k++) {
        let c = 0;
        for (let i = 0; i < D; i++) c += (v[i]! / nv) * B[i * 2 + k]!;
        expect(Math.abs(c)).toBeLessThan(1e-5);
      }
      expect(Math.abs(Math.hypot(...B) - Math.hypot(...B0))).toBeLessThan(1e-5 * Math.hypot(...B0));
    }
    // The written folder generates.
    const g = emlens('generate', '--model', baseDir, '--adapter', out, '--prompt', 'the', '--max-new-tokens', '3');
    expect(g.code, g.stderr).toBe(0);
    expectOneLineError(emlens('adapter', 'ablate', '--adapter', adapter, '--direction', join(root, 'nope.safetensors'), '--out', join(root, 'x')), /^emlens: .*nope\.safetensors/);
  });
});
