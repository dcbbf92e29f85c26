/**
 * PEFT LoRA adapters: a model loaded with an adapter equals a plain checkpoint whose weights the
 * test merged itself in float64 (W + s·B·A, s = alpha/r or alpha/sqrt(r)), for every family, and
 * the float64 reference forward on those merged weights; PEFT's targeting rules (layers_to_transform,
 * regex target_modules, rank_pattern / alpha_pattern); lying adapters refused with one line.
 */
import { mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, afterEach, beforeEach, describe, expect, it, vi } from 'vitest';
import { LoadedModel } from '../../src/backend/model.js';
import { EmlensError } from '../../src/errors.js';
import { referenceForward } from '../reference/forward.js';
import { TINY_FAMILIES, writeTinyCheckpoint, type TinyFamily, type TinyWeights } from '../helpers/tiny-checkpoints.js';
import { loraConfig, mergeInF64, moduleKeys, randomLoras, randomValues, writePlainCheckpoint, writeTinyAdapter, type TinyLora } from '../helpers/tiny-adapters.js';
import { maxRelErr, seqIds } from '../helpers/compare.js';
import { startFakeHub, type FakeHub } from '../hub/fake-hub.js';

const root = mkdtempSync(join(tmpdir(), 'emlens-adapter-'));
afterAll(() => rmSync(root, { recursive: true, force: true }));
let n = 0;
const fresh = (name: string) => join(root, `${name}-${n++}`);

const ALL = ['q_proj', 'k_proj', 'v_proj', 'o_proj', 'gate_proj', 'up_proj', 'down_proj'];

function base(family: TinyFamily): { dir: string; config: Record<string, any>; weights: TinyWeights } {
  const dir = fresh(`base-${family}`);
  return { dir, ...writeTinyCheckpoint(dir, family) };
}

async function logits(model: LoadedModel, ids: number[][]): Promise<Float32Array> {
  return (await model.engine.forward({ ids, logits: 'all' })).logits!;
}

/** Loads base + adapter and the test's own merged checkpoint; returns both models' logits and the reference. */
async function compare(b: ReturnType<typeof base>, cfg: Record<string, unknown>, loras: TinyLora[], scale: (l: TinyLora) => number) {
  const adir = fresh('adapter');
  writeTinyAdapter(adir, cfg, loras);
  const merged = mergeInF64(b.weights, loras, scale);
  const mdir = fresh('merged');
  writePlainCheckpoint(mdir, b.config, merged);
  const adapted = await LoadedModel.load(b.dir, { adapter: adir });
  const plain = await LoadedModel.load(mdir);
  const original = await LoadedModel.load(b.dir);
  const ids = [seqIds(12, adapted.spec.vocab, 7), seqIds(8, adapted.spec.vocab, 8)];
  const got = await logits(adapted, ids);
  const want = await logits(plain, ids);
  const before = await logits(original, ids);
  const ref = referenceForward(b.config, merged, ids[0]!);
  const V = adapted.spec.vocab;
  return { adapted, got, want, before, ref, first: got.subarray(0, 12 * V) };
}

describe.each(TINY_FAMILIES)('%s with a LoRA adapter', (family) => {
  it('equals the checkpoint merged in float64 by the test (all seven projections, every layer)', async () => {
    const b = base(family);
    const keys = moduleKeys(b.weights, [...Array(20).keys()], ALL);
    expect(keys.length).toBeGreaterThanOrEqual(7 * 3);
    const loras = randomLoras(b.weights, keys, () => 4, 3);
    const r = await compare(b, loraConfig({ r: 4, lora_alpha: 8 }), loras, () => 8 / 4);
    expect(maxRelErr(r.got, r.want)).toBeLessThan(1e-6);
    expect(maxRelErr(r.first, r.ref.logits)).toBeLessThan(2e-5);
    // The adapter matters: the base model's logits are far from these.
    expect(maxRelErr(r.got, r.before)).toBeGreaterThan(1e-2);
    expect(r.adapted.adapter!.modules.length).toBe(keys.length);
  });
});

describe('scaling and targeting', () => {
  it('rsLoRA scales by alpha / sqrt(r)', async () => {
    const b = base('qwen2');
    const keys = moduleKeys(b.weights, [0, 1, 2], ['q_proj', 'down_proj', 'up_proj']);
    const loras = randomLoras(b.weights, keys, () => 4, 5);
    const cfg = loraConfig({ r: 4, lora_alpha: 3, use_rslora: true, target_modules: ['q_proj', 'down_proj', 'up_proj'] });
    const r = await compare(b, cfg, loras, () => 3 / Math.sqrt(4));
    expect(maxRelErr(r.got, r.want)).toBeLessThan(1e-6);
    // alpha / r would be a different model.
    const wrong = await compare(b, cfg, loras, () => 3 / 4);
    expect(maxRelErr(wrong.got, wrong.want)).toBeGreaterThan(1e-3);
  });

  it('rank_pattern and alpha_pattern give per-module rank and alpha (first matching pattern, PEFT get_pattern_key)', async () => {
    const b = base('llama');
    const keys = moduleKeys(b.weights, [0, 1, 2], ['o_proj', 'down_proj', 'v_proj']);
    const rankOf = (k: string) => (k === 'model.layers.1.mlp.down_proj' ? 3 : k.endsWith('o_proj') ? 1 : 2);
    const alphaOf = (k: string) => (k.endsWith('down_proj') ? 6 : k === 'model.layers.2.self_attn.v_proj' ? 5 : 4);
    const loras = randomLoras(b.weights, keys, rankOf, 7);
    const cfg = loraConfig({
      r: 2,
      lora_alpha: 4,
      target_modules: ['o_proj', 'down_proj', 'v_proj'],
      rank_pattern: { 'model.layers.1.mlp.down_proj': 3, o_proj: 1 },
      alpha_pattern: { down_proj: 6, 'layers.2.self_attn.v_proj': 5 },
    });
    const r = await compare(b, cfg, loras, (l) => alphaOf(l.key) / l.r);
    expect(maxRelErr(r.got, r.want)).toBeLessThan(1e-6);
    const ranks = new Map(r.adapted.adapter!.modules.map((m) => [m.key, [m.rank, m.scale]]));
    expect(ranks.get('model.layers.1.mlp.down_proj')).toEqual([3, 2]);
    expect(ranks.get('model.layers.0.self_attn.o_proj')).toEqual([1, 4]);
    expect(ranks.get('model.layers.2.self_attn.v_proj')).toEqual([2, 2.5]);
  });

  it('rank-1 down_proj on chosen layers (layers_to_transform), as the EM organisms; regex target_modules', async () => {
    const b = base('gemma2');
    const keys = moduleKeys(b.weights, [1, 3], ['down_proj']);
    const loras = randomLoras(b.weights, keys, () => 1, 9);
    const r = await compare(b, loraConfig({ r: 1, lora_alpha: 2, target_modules: ['down_proj'], layers_to_transform: [1, 3] }), loras, () => 2);
    expect(maxRelErr(r.got, r.want)).toBeLessThan(1e-6);
    const rx = await compare(b, loraConfig({ r: 1, lora_alpha: 2, target_modules: 'model\\.layers\\.(1|3)\\.mlp\\.down_proj' }), loras, () => 2);
    expect(maxRelErr(rx.got, rx.want)).toBeLessThan(1e-6);
  });

  it('fan_in_fan_out: true merges the same way (PEFT resets it for nn.Linear)', async () => {
    const b = base('mistral');
    const loras = randomLoras(b.weights, moduleKeys(b.weights, [0], ['gate_proj']), () => 2, 11);
    const r = await compare(b, loraConfig({ r: 2, lora_alpha: 2, fan_in_fan_out: true, target_modules: ['gate_proj'], layers_to_transform: 0 }), loras, () => 1);
    expect(maxRelErr(r.got, r.want)).toBeLessThan(1e-6);
  });

  it('Gemma 3 multimodal: text layers merged, vision-tower factors left out like the vision weights', async () => {
    const b = base('gemma3');
    const keys = moduleKeys(b.weights, [0, 4], ['q_proj', 'down_proj']);
    expect(keys[0]).toMatch(/^language_model\.model\.layers\./);
    const loras = randomLoras(b.weights, keys, () => 2, 13);
    const adir = fresh('adapter-g3');
    const vis = 'base_model.model.vision_tower.vision_model.encoder.layers.0.self_attn.q_proj';
    writeTinyAdapter(adir, loraConfig({ r: 2, lora_alpha: 2, target_modules: ['q_proj', 'down_proj'], layers_to_transform: [0, 4] }), loras, {
      [`${vis}.lora_A.weight`]: { shape: [2, 8], data: randomValues(16, 1) },
      [`${vis}.lora_B.weight`]: { shape: [8, 2], data: randomValues(16, 2) },
    });
    const merged = mergeInF64(b.weights, loras, () => 1);
    const mdir = fresh('merged-g3');
    writePlainCheckpoint(mdir, b.config, merged);
    const ids = [seqIds(10, 90, 3)];
    const a = await LoadedModel.load(b.dir, { adapter: adir });
    expect(a.adapter!.skipped.length).toBe(2);
    expect(maxRelErr(await logits(a, ids), await logits(await LoadedModel.load(mdir), ids))).toBeLessThan(1e-6);
  });
});

async function refused(dir: string, adapter: string, ...parts: (string | RegExp)[]): Promise<void> {
  const e = await LoadedModel.load(dir, { adapter }).then(
    () => undefined,
    (err: unknown) => err,
  );
  expect(e).toBeInstanceOf(EmlensError);
  const msg = (e as Error).message;
  expect(msg).not.toContain('\n');
  for (const p of parts) expect(msg).toMatch(p);
}

describe('lying adapters are refused with one line naming the file and field or tensor', () => {
  const b = base('qwen3');
  const keys = moduleKeys(b.weights, [0, 1], ['q_proj', 'down_proj']);
  const good = () => randomLoras(b.weights, keys, () => 2, 17);
  const cfg = (over: Record<string, unknown> = {}) => loraConfig({ r: 2, lora_alpha: 4, target_modules: ['q_proj', 'down_proj'], layers_to_transform: [0, 1], ...over });
  const write = (over: Record<string, unknown>, loras = good(), extra = {}) => {
    const d = fresh('lying');
    writeTinyAdapter(d, cfg(over), loras, extra);
    return d;
  };

  it('a well-formed one loads (the control)', async () => {
    const m = await LoadedModel.load(b.dir, { adapter: write({}) });
    expect(m.adapter!.modules.map((x) => x.key)).toEqual(keys);
  });

  it('bad shapes: lora_A with the wrong input width, lora_B with the wrong output width, rank against r', async () => {
    const wrongIn = good();
    wrongIn[0] = { ...wrongIn[0]!, inF: wrongIn[0]!.inF + 1, A: randomValues(2 * (wrongIn[0]!.inF + 1), 3) };
    await refused(b.dir, write({}, wrongIn), /adapter_model\.safetensors/, /model\.layers\.0\.self_attn\.q_proj/, /lora_A \[2, 33\]/, /expected lora_A \[2, 32\]/);
    const wrongOut = good();
    wrongOut[1] = { ...wrongOut[1]!, outF: 31, B: randomValues(31 * 2, 4) };
    await refused(b.dir, write({}, wrongOut), /adapter_model\.safetensors/, /lora_B \[31, 2\]/);
    await refused(b.dir, write({ r: 3 }), /adapter_model\.safetensors/, /gives it rank 3/);
  });

  it('unknown modules, modules outside target_modules or layers_to_transform, layers out of range', async () => {
    const lm = { 'base_model.model.lm_head.lora_A.weight': { shape: [2, 32], data: randomValues(64, 1) }, 'base_model.model.lm_head.lora_B.weight': { shape: [64, 2], data: randomValues(128, 2) } };
    await refused(b.dir, write({}, good(), lm), /adapter_model\.safetensors/, /"base_model\.model\.lm_head\.lora_A\.weight"/, /not a q\/k\/v\/o\/gate\/up\/down projection/);
    await refused(b.dir, write({ target_modules: ['q_proj'] }), /adapter_model\.safetensors/, /model\.layers\.0\.mlp\.down_proj/, /does not target/);
    await refused(b.dir, write({ layers_to_transform: [0] }), /model\.layers\.1\./, /does not target/);
    const deep = randomLoras(b.weights, keys, () => 2, 17).map((l) => ({ ...l, key: l.key.replace('layers.1.', 'layers.7.') }));
    await refused(b.dir, write({ layers_to_transform: null }, deep), /adapter_model\.safetensors/, /layer 7, the model has 3 layers/);
    await refused(b.dir, write({ exclude_modules: ['layers.1.mlp.down_proj'] }), /"model\.layers\.1\.mlp\.down_proj", which adapter_config\.json does not target/);
    const kept = await LoadedModel.load(b.dir, { adapter: write({ exclude_modules: 'model\\.layers\\.1\\.mlp\\.down_proj' }, good().filter((l) => !l.key.endsWith('layers.1.mlp.down_proj'))) });
    expect(kept.adapter!.modules.length).toBe(3);
    await refused(b.dir, write({ layers_to_transform: [0, 1, 5] }), /adapter_config\.json: "layers_to_transform" names layer 5, the model has 3 layers/);
    // The config targets layer 2 too, but the file has nothing for it.
    await refused(b.dir, write({ layers_to_transform: null }), /adapter_config\.json targets "model\.layers\.2\.self_attn\.q_proj"/);
  });

  it('unsupported configurations: modules_to_save, DoRA, trained biases, peft_type, base-modifying init', async () => {
    await refused(b.dir, write({ modules_to_save: ['lm_head'] }), /adapter_config\.json/, /"modules_to_save"/);
    await refused(b.dir, write({ use_dora: true }), /adapter_config\.json/, /"use_dora"/, /DoRA/);
    await refused(b.dir, write({ bias: 'all' }), /adapter_config\.json/, /"bias" is "all"/);
    await refused(b.dir, write({ peft_type: 'IA3' }), /adapter_config\.json/, /"peft_type" is "IA3"/);
    await refused(b.dir, write({ init_lora_weights: 'pissa' }), /adapter_config\.json/, /"init_lora_weights"/);
    await refused(b.dir, write({ target_modules: [] }), /adapter_config\.json/, /"target_modules"/);
    await refused(b.dir, write({ lora_alpha: 'x' }), /adapter_config\.json/, /"lora_alpha"/);
    const dora = { 'base_model.model.model.layers.0.self_attn.q_proj.lora_magnitude_vector': { shape: [64], data: randomValues(64, 5) } };
    await refused(b.dir, write({}, good(), dora), /adapter_model\.safetensors/, /lora_magnitude_vector/, /DoRA/);
  });

  it('missing files and unpaired factors', async () => {
    const d = write({});
    rmSync(join(d, 'adapter_config.json'));
    await refused(b.dir, d, /no adapter_config\.json/);
    const e = write({});
    rmSync(join(e, 'adapter_model.safetensors'));
    await refused(b.dir, e, /no adapter_model\.safetensors/);
    await refused(b.dir, join(root, 'nowhere', 'x'), /no such folder/);
    const lone = { 'base_model.model.model.layers.2.self_attn.q_proj.lora_A.weight': { shape: [2, 32], data: randomValues(64, 6) } };
    await refused(b.dir, write({ layers_to_transform: [0, 1, 2] }, good(), lone), /model\.layers\.2\.self_attn\.q_proj" has lora_A\.weight but no lora_B\.weight/);
  });

  it('a base-model mismatch with the model config\'s _name_or_path', async () => {
    const d = fresh('named');
    const { config } = writeTinyCheckpoint(d, 'qwen3');
    writeFileSync(join(d, 'config.json'), JSON.stringify({ ...config, _name_or_path: 'Qwen/Qwen3-0.6B' }));
    await refused(d, write({ base_model_name_or_path: 'Qwen/Qwen3-1.7B' }), /adapter_config\.json/, /"base_model_name_or_path" is "Qwen\/Qwen3-1\.7B", but the model is Qwen\/Qwen3-0\.6B/);
    // The same model re-uploaded under another organisation, or a local path: accepted.
    await LoadedModel.load(d, { adapter: write({ base_model_name_or_path: 'unsloth/Qwen3-0.6B' }) });
    await LoadedModel.load(d, { adapter: write({ base_model_name_or_path: '/home/me/models/qwen3' }) });
  });
});

describe('adapters by hub id', () => {
  let hub: FakeHub | undefined;
  let cache: string;
  beforeEach(() => {
    cache = mkdtempSync(join(tmpdir(), 'emlens-adapter-hub-'));
    vi.stubEnv('HF_HUB_OFFLINE', '');
    vi.stubEnv('HF_TOKEN', '');
    vi.stubEnv('HF_TOKEN_PATH', join(cache, 'no-token-here'));
  });
  afterEach(async () => {
    await hub?.close();
    hub = undefined;
    vi.unstubAllEnvs();
    rmSync(cache, { recursive: true, force: true });
  });

  it('fetches only the adapter files into the hub cache, then works offline from it', async () => {
    const b = base('llama');
    const loras = randomLoras(b.weights, moduleKeys(b.weights, [0, 1, 2], ['down_proj']), () => 1, 19);
    const d = fresh('hub-adapter');
    writeTinyAdapter(d, loraConfig({ r: 1, lora_alpha: 1, target_modules: ['down_proj'] }), loras);
    const files = ['adapter_config.json', 'adapter_model.safetensors'].map((name) => ({ name, data: readFileSync(join(d, name)), lfs: name.endsWith('.safetensors') }));
    hub = await startFakeHub([...files, { name: 'README.md', data: Buffer.from('# em organism') }], { id: 'org/em-adapter' });
    const local = await LoadedModel.load(b.dir, { adapter: d });
    const remote = await LoadedModel.load(b.dir, { adapter: 'org/em-adapter', endpoint: hub.url, cacheDir: cache });
    const ids = [seqIds(9, 80, 1)];
    expect(maxRelErr(await logits(remote, ids), await logits(local, ids))).toBeLessThan(1e-7);
    const fetched = hub.requests.filter((r) => r.method === 'GET' && r.url.includes('/resolve/')).map((r) => r.url.split('/').pop());
    expect(fetched.sort()).toEqual(['adapter_config.json', 'adapter_model.safetensors']);
    expect(hub.requests.some((r) => r.url.includes('README'))).toBe(false);
    await hub.close();
    hub = undefined;
    const offline = await LoadedModel.load(b.dir, { adapter: 'org/em-adapter', cacheDir: cache, offline: true });
    expect(maxRelErr(await logits(offline, ids), await logits(local, ids))).toBeLessThan(1e-7);
  });
});
