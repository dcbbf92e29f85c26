/**
 * Weight-space ablation of a direction from a LoRA adapter (METHODS.md): the written o_proj and
 * down_proj B satisfy r̂ᵀB ≈ 0 with ‖B‖_F unchanged, equal B − r̂r̂ᵀB rescaled as computed here
 * in float64; everything else is copied bit for bit; the result is a PEFT folder emlens loads.
 */
import { mkdtempSync, readFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, describe, expect, it } from 'vitest';
import { LoadedModel } from '../../src/backend/model.js';
import { EmlensError } from '../../src/errors.js';
import { ablateAdapter } from '../../src/experiments/adapter.js';
import { writeDirectionFile } from '../../src/io/directions.js';
import { readSafetensorsHeader, readTensorF32 } from '../../src/io/safetensors/index.js';
import { writeTinyCheckpoint } from '../helpers/tiny-checkpoints.js';
import { loraConfig, moduleKeys, randomLoras, randomValues, writeTinyAdapter } from '../helpers/tiny-adapters.js';

const root = mkdtempSync(join(tmpdir(), 'emlens-ablate-'));
afterAll(() => rmSync(root, { recursive: true, force: true }));
let n = 0;
const fresh = (name: string) => join(root, `${name}-${n++}`);

function tensors(file: string): Map<string, { shape: number[]; data: Float32Array }> {
  const h = readSafetensorsHeader(file);
  return new Map([...h.tensors].map(([k, info]) => [k, { shape: info.shape, data: readTensorF32(info) }]));
}

/** B − r̂(r̂ᵀB), rescaled to ‖B‖_F, in float64 from the equation. */
function expectedAblation(B: Float32Array, D: number, r: number, v: Float32Array): Float64Array {
  const nv = Math.sqrt(v.reduce((s, x) => s + x * x, 0));
  const u = Array.from(v, (x) => x / nv);
  const out = new Float64Array(D * r);
  for (let k = 0; k < r; k++) {
    let c = 0;
    for (let i = 0; i < D; i++) c += u[i]! * B[i * r + k]!;
    for (let i = 0; i < D; i++) out[i * r + k] = B[i * r + k]! - u[i]! * c;
  }
  const n0 = Math.sqrt(B.reduce((s, x) => s + x * x, 0));
  const n1 = Math.sqrt(out.reduce((s, x) => s + x * x, 0));
  return out.map((x) => (x * n0) / n1);
}

const frob = (a: ArrayLike<number>) => Math.sqrt(Array.from(a).reduce((s, x) => s + x * x, 0));

describe('adapter ablate', () => {
  const base = fresh('base');
  const { weights } = writeTinyCheckpoint(base, 'qwen2');
  const D = 32;
  const keys = moduleKeys(weights, [0, 1, 2], ['q_proj', 'o_proj', 'up_proj', 'down_proj']);
  const loras = randomLoras(weights, keys, () => 3, 23);
  const adapter = fresh('adapter');
  writeTinyAdapter(adapter, loraConfig({ r: 3, lora_alpha: 6, target_modules: ['q_proj', 'o_proj', 'up_proj', 'down_proj'] }), loras);
  const vecs = new Map([0, 1, 2].map((l) => [l, randomValues(D, 100 + l, 1)]));
  const direction = join(root, 'dir.safetensors');
  writeDirectionFile(direction, vecs, { method: 'test' });

  it('removes r̂ from every residual-writing B (layer L uses layer L\'s vector), keeps ‖B‖, copies the rest', async () => {
    const out = fresh('ablated');
    const r = ablateAdapter({ adapter, direction, out });
    expect(r.modules.map((m) => m.key).sort()).toEqual(keys.filter((k) => /o_proj|down_proj/.test(k)).sort());
    const before = tensors(join(adapter, 'adapter_model.safetensors'));
    const after = tensors(join(out, 'adapter_model.safetensors'));
    expect([...after.keys()]).toEqual([...before.keys()]);
    let checked = 0;
    for (const [name, t] of after) {
      const src = before.get(name)!;
      expect(t.shape).toEqual(src.shape);
      const m = /layers\.(\d+)\.(self_attn|mlp)\.(o_proj|down_proj)\.lora_B\.weight$/.exec(name);
      if (!m) {
        expect(Buffer.from(t.data.buffer).equals(Buffer.from(src.data.buffer)), name).toBe(true);
        continue;
      }
      const v = vecs.get(Number(m[1]))!;
      const nv = frob(v);
      const rr = t.shape[1]!;
      for (let k = 0; k < rr; k++) {
        let along = 0;
        let alongBefore = 0;
        for (let i = 0; i < D; i++) {
          along += (v[i]! / nv) * t.data[i * rr + k]!;
          alongBefore += (v[i]! / nv) * src.data[i * rr + k]!;
        }
        expect(Math.abs(along)).toBeLessThan(1e-6 * frob(src.data));
        expect(Math.abs(alongBefore)).toBeGreaterThan(1e-3);
      }
      expect(Math.abs(frob(t.data) - frob(src.data))).toBeLessThan(1e-6 * frob(src.data));
      const want = expectedAblation(src.data, D, rr, v);
      for (let i = 0; i < want.length; i++) expect(Math.abs(t.data[i]! - want[i]!)).toBeLessThan(1e-6);
      checked++;
    }
    expect(checked).toBe(6);
    expect(readFileSync(join(out, 'adapter_config.json'), 'utf8')).toBe(readFileSync(join(adapter, 'adapter_config.json'), 'utf8'));
    const meta = readSafetensorsHeader(join(out, 'adapter_model.safetensors')).metadata;
    expect(meta.format).toBe('pt');
    const prov = JSON.parse(meta.emlens_ablation!);
    expect(prov.direction_file).toBe(direction);
    expect(prov.modules).toHaveLength(6);
    // A PEFT folder emlens loads, and a different model from the original adapter.
    const m = await LoadedModel.load(base, { adapter: out });
    expect(m.adapter!.modules.length).toBe(keys.length);
  });

  it('--direction-layer uses one layer\'s vector for every module', () => {
    const out = fresh('ablated-one');
    const r = ablateAdapter({ adapter, direction, out, directionLayer: 1 });
    expect(r.modules.every((m) => m.directionLayer === 1)).toBe(true);
    const after = tensors(join(out, 'adapter_model.safetensors'));
    const v = vecs.get(1)!;
    const t = after.get('base_model.model.model.layers.2.mlp.down_proj.lora_B.weight')!;
    const before = tensors(join(adapter, 'adapter_model.safetensors')).get('base_model.model.model.layers.2.mlp.down_proj.lora_B.weight')!;
    const want = expectedAblation(before.data, D, 3, v);
    for (let i = 0; i < want.length; i++) expect(Math.abs(t.data[i]! - want[i]!)).toBeLessThan(1e-6);
  });

  it('refuses what it cannot do, in one line', () => {
    const bad = (f: () => unknown, re: RegExp) => {
      let e: unknown;
      try {
        f();
      } catch (x) {
        e = x;
      }
      expect(e).toBeInstanceOf(EmlensError);
      expect((e as Error).message).not.toContain('\n');
      expect((e as Error).message).toMatch(re);
    };
    const partial = join(root, 'partial.safetensors');
    writeDirectionFile(partial, new Map([[0, vecs.get(0)!]]), {});
    bad(() => ablateAdapter({ adapter, direction: partial, out: fresh('x') }), /partial\.safetensors: no vector for layer 1/);
    bad(() => ablateAdapter({ adapter, direction, out: fresh('x'), directionLayer: 7 }), /--direction-layer 7/);
    const pre = join(root, 'pre.safetensors');
    writeDirectionFile(pre, vecs, {}, 'resid_pre');
    bad(() => ablateAdapter({ adapter, direction: pre, out: fresh('x') }), /resid_pre/);
    const wide = join(root, 'wide.safetensors');
    writeDirectionFile(wide, new Map([0, 1, 2].map((l) => [l, randomValues(D + 1, l)])), {});
    bad(() => ablateAdapter({ adapter, direction: wide, out: fresh('x') }), /33 values, but .*lora_B\.weight" has 32 rows/);
    bad(() => ablateAdapter({ adapter, direction, out: adapter }), /is the adapter folder itself/);
    const qonly = fresh('qonly');
    writeTinyAdapter(qonly, loraConfig({ r: 3, lora_alpha: 6, target_modules: ['q_proj'] }), loras.filter((l) => l.key.endsWith('q_proj')));
    bad(() => ablateAdapter({ adapter: qonly, direction, out: fresh('x') }), /adapts no o_proj or down_proj/);
    const dora = fresh('dora');
    writeTinyAdapter(dora, loraConfig({ r: 3, lora_alpha: 6, use_dora: true }), loras);
    bad(() => ablateAdapter({ adapter: dora, direction, out: fresh('x') }), /"use_dora"/);
  });
});
