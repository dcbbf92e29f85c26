/**
 * fp32 generation on the decode store (LoadOptions.fp32Decode 'store': the weights as
 * initializers ONNX Runtime packs once) against the fp32 inputs path and the float64 reference:
 * the same greedy tokens, logits within float rounding, interventions included; which source
 * each kind of load gets by default, and conflicting options as errors.
 */
import { mkdtempSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { LoadedModel } from '../../src/backend/model.js';
import { EmlensError } from '../../src/errors.js';
import { referenceForward } from '../reference/forward.js';
import { writeTinyCheckpoint, type TinyFamily } from '../helpers/tiny-checkpoints.js';
import { moduleKeys, randomLoras, loraConfig, writeTinyAdapter } from '../helpers/tiny-adapters.js';
import { maxRelErr, seqIds } from '../helpers/compare.js';

const before = process.env.EMLENS_CACHE;
beforeAll(() => {
  process.env.EMLENS_CACHE = mkdtempSync(join(tmpdir(), 'emlens-fp32store-cache-'));
});
afterAll(() => {
  if (before === undefined) delete process.env.EMLENS_CACHE;
  else process.env.EMLENS_CACHE = before;
});

function checkpoint(family: TinyFamily) {
  const dir = mkdtempSync(join(tmpdir(), `emlens-fp32store-${family}-`));
  return { dir, ...writeTinyCheckpoint(dir, family) };
}

/** A [B, V] step's logits, row b. */
const row = (l: Float32Array, b: number, V: number) => l.subarray(b * V, (b + 1) * V);

// Untied with GQA and llama3 rope; tied with biases; softcaps, sandwich norms and sliding layers.
describe.each(['llama', 'qwen2', 'gemma2'] as TinyFamily[])('%s: generation on the fp32 store', (family) => {
  it('gives the inputs path\'s greedy tokens and logits, and the reference\'s first logits', async () => {
    const { dir, config, weights } = checkpoint(family);
    const inputs = await LoadedModel.load(dir);
    const store = await LoadedModel.load(dir, { generateOnly: true });
    expect(inputs.engine.decodeSource).toBe('inputs');
    expect(store.engine.decodeSource).toBe('store');
    // The generate-only engine keeps no fp32 copy beside the store.
    expect(store.engine.weights.size).toBe(0);
    const V = store.spec.vocab;
    const prompts = [seqIds(11, V, 1), seqIds(5, V, 2), seqIds(8, V, 3)];
    const o = { maxNewTokens: 10, stopIds: [], keepLogits: true };
    const a = await inputs.engine.generate(prompts, o);
    const b = await store.engine.generate(prompts, o);
    expect(b.tokens).toEqual(a.tokens);
    expect(b.logits!.length).toBe(10);
    b.logits!.forEach((l, s) => expect(maxRelErr(l, a.logits![s]!), `step ${s}`).toBeLessThan(1e-6));
    // The prefill's last-position logits against the float64 reference, row by row (left-padded).
    prompts.forEach((p, r) => expect(maxRelErr(row(b.logits![0]!, r, V), referenceForward(config, weights, p).logits.subarray((p.length - 1) * V)), `row ${r}`).toBeLessThan(2e-5));
  });
});

describe('interventions on the fp32 store', () => {
  it('steering and ablation give the inputs path\'s tokens and logits', async () => {
    const { dir } = checkpoint('qwen2');
    const inputs = await LoadedModel.load(dir);
    const store = await LoadedModel.load(dir, { generateOnly: true });
    const D = store.spec.dModel;
    const V = store.spec.vocab;
    const vec = Float32Array.from({ length: D }, (_, i) => Math.sin(i + 1));
    const dir2 = Float32Array.from({ length: D }, (_, i) => Math.cos(3 * i));
    const interventions = { steer: [{ hook: 'blocks.1.hook_resid_post', vector: vec, scale: 4 }], ablate: [{ hook: 'blocks.0.hook_resid_post', directions: [dir2] }] };
    const prompts = [seqIds(9, V, 4), seqIds(6, V, 5)];
    const o = { maxNewTokens: 8, stopIds: [], keepLogits: true, interventions };
    const a = await inputs.engine.generate(prompts, o);
    const b = await store.engine.generate(prompts, o);
    expect(b.tokens).toEqual(a.tokens);
    b.logits!.forEach((l, s) => expect(maxRelErr(l, a.logits![s]!), `step ${s}`).toBeLessThan(1e-6));
    // The steering is applied (not the plain graph's tokens).
    const plain = await store.engine.generate(prompts, { maxNewTokens: 8, stopIds: [], keepLogits: true });
    expect(maxRelErr(plain.logits![0]!, b.logits![0]!)).toBeGreaterThan(1e-2);
  });
});

describe('which fp32 source a load gets', () => {
  it('store only for generate-only loads by default; fp32Decode overrides either way', async () => {
    const { dir, config } = checkpoint('llama');
    const ids = [seqIds(6, config.vocab_size, 9)];
    expect((await LoadedModel.load(dir)).engine.decodeSource).toBe('inputs');
    const only = await LoadedModel.load(dir, { generateOnly: true });
    expect(only.engine.decodeSource).toBe('store');
    expect(only.decodeProvenance()).toEqual({ fp32_decode: 'store' });
    await expect(only.engine.forward({ ids, logits: 'last' })).rejects.toThrow(/loaded for generation only \(--weights fp32 --fp32-decode store\)/);
    // Asked for by a load that also runs forward: the fp32 weights stay beside the store.
    const both = await LoadedModel.load(dir, { fp32Decode: 'store' });
    expect(both.engine.decodeSource).toBe('store');
    expect(both.engine.weights.size).toBeGreaterThan(0);
    await both.engine.forward({ ids, logits: 'last' });
    const inputs = await LoadedModel.load(dir, { generateOnly: true, fp32Decode: 'inputs' });
    expect(inputs.engine.decodeSource).toBe('inputs');
    expect(inputs.decodeProvenance()).toEqual({});
    const q = await LoadedModel.load(dir, { weights: 'int8', generateOnly: true });
    expect(q.decodeProvenance()).toEqual({ weights: 'int8' });
  });

  it('fp32Decode with a quantised mode is an error', async () => {
    const { dir } = checkpoint('llama');
    const e = await LoadedModel.load(dir, { weights: 'int4', fp32Decode: 'store' }).catch((x: unknown) => x);
    expect(e).toBeInstanceOf(EmlensError);
    expect((e as Error).message).toBe('--fp32-decode store applies to --weights fp32 only; --weights int4 always runs on its quantised store');
  });

  it('an adapter\'s store is its merged weights, not the base model\'s cached store', async () => {
    const { dir, config, weights } = checkpoint('qwen2');
    const adir = mkdtempSync(join(tmpdir(), 'emlens-fp32store-adapter-'));
    writeTinyAdapter(adir, loraConfig({ target_modules: ['q_proj', 'down_proj'] }), randomLoras(weights, moduleKeys(weights, [...Array(config.num_hidden_layers as number).keys()], ['q_proj', 'down_proj']), () => 4));
    const prompts = [seqIds(7, config.vocab_size, 6)];
    const o = { maxNewTokens: 6, stopIds: [], keepLogits: true };
    // The base model's store is written first (the cache then holds it).
    const base = await (await LoadedModel.load(dir, { generateOnly: true })).engine.generate(prompts, o);
    const a = await (await LoadedModel.load(dir, { adapter: adir })).engine.generate(prompts, o);
    const only = await LoadedModel.load(dir, { adapter: adir, generateOnly: true });
    expect(only.engine.weights.size).toBe(0);
    const b = await only.engine.generate(prompts, o);
    expect(b.tokens).toEqual(a.tokens);
    b.logits!.forEach((l, s) => expect(maxRelErr(l, a.logits![s]!)).toBeLessThan(1e-6));
    expect(maxRelErr(b.logits![0]!, base.logits![0]!)).toBeGreaterThan(1e-3);
  });
});
