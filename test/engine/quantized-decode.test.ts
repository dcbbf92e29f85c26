/**
 * Generation on quantised weights (`--weights int8|int4`): the decode graphs against the float64
 * reference forward run on the dequantised weights (the dequantisation written from MatMulNBits'
 * spec, test/helpers/matmulnbits.ts), the KV-cache decode against that forward, and steering and
 * ablation still applied where asked. Tiny real checkpoints: llama (untied, K = 48: a partial
 * block), qwen2 (tied head, q/k/v biases), gemma2 (sandwich norms, softcaps, tied); in F32, and
 * in BF16 and F16, whose embedding tables the store keeps in 16 bits (gathered, then cast).
 */
import { mkdtempSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { LoadedModel } from '../../src/backend/model.js';
import { hookName } from '../../src/hooks/names.js';
import { DECODE_SESSIONS, Engine } from '../../src/runtime/engine.js';
import { quantizeMatrix } from '../../src/runtime/quantize.js';
import { withHeadRows } from '../../src/runtime/weight-store.js';
import { referenceForward, type RefWeights } from '../reference/forward.js';
import { dequantizeNBits } from '../helpers/matmulnbits.js';
import { maxRelErr, seqIds } from '../helpers/compare.js';
import { writeTinyCheckpoint, type TinyFamily } from '../helpers/tiny-checkpoints.js';

type Dtype = 'F32' | 'BF16' | 'F16';
/** How the store holds the embedding table of a checkpoint in this dtype. */
const EMBED_DTYPE = { F32: undefined, BF16: 'bfloat16', F16: 'float16' } as const;

const cacheBefore = process.env.EMLENS_CACHE;
beforeAll(() => {
  process.env.EMLENS_CACHE = mkdtempSync(join(tmpdir(), 'emlens-qcache-'));
});
afterAll(() => {
  if (cacheBefore === undefined) delete process.env.EMLENS_CACHE;
  else process.env.EMLENS_CACHE = cacheBefore;
});

const PROJ = /\.(self_attn\.(q|k|v|o)_proj|mlp\.(gate|up|down)_proj)\.weight$/;

/** The block size along the input of each mode, as the README documents it: 32 at int8, 64 at int4. */
const BLOCK = { 8: 32, 4: 64 } as const;

/** W through quantise -> MatMulNBits' dequantisation, rounded to float32 as the reference reads it. */
function roundTrip(w: { shape: number[]; data: Float32Array }, bits: 4 | 8): { shape: number[]; data: Float32Array } {
  const [N, K] = w.shape as [number, number];
  const q = quantizeMatrix(w.data, N, K, bits, BLOCK[bits]);
  return { shape: w.shape, data: Float32Array.from(dequantizeNBits(q.B, q.scales, q.zeroPoints, N, K, bits, BLOCK[bits])) };
}

/** The checkpoint as the quantised decode graph computes it: projections and LM head dequantised, all else fp32; the head untied. */
function dequantisedReference(config: Record<string, any>, weights: RefWeights, bits: 4 | 8) {
  const w: RefWeights = new Map();
  for (const [k, t] of weights) w.set(k, PROJ.test(k) ? roundTrip(t, bits) : t);
  const head = weights.get('lm_head.weight') ?? weights.get('model.embed_tokens.weight')!;
  w.set('lm_head.weight', roundTrip(head, bits));
  return { config: { ...config, tie_word_embeddings: false }, weights: w };
}

async function setup(family: TinyFamily, mode: 'int8' | 'int4', dtype: Dtype = 'F32') {
  const dir = mkdtempSync(join(tmpdir(), `emlens-q-${family}-`));
  const { config, weights } = writeTinyCheckpoint(dir, family, { dtype });
  const model = await LoadedModel.load(dir, { weights: mode });
  return { dir, config, weights, model };
}

/** The same decode weights at accuracy_level 0: no int8 rounding of the activations inside MatMulNBits. */
function exactEngine(model: LoadedModel): Engine {
  const d = model.engine.decode!;
  return new Engine(model.spec, new Map(), {}, { ...d, projections: { ...d.projections!, accuracyLevel: 0 } });
}

describe.each([
  ['llama', 'int4', 'F32'],
  ['qwen2', 'int8', 'F32'],
  ['gemma2', 'int4', 'F32'],
  ['qwen2', 'int4', 'BF16'],
  ['llama', 'int8', 'F16'],
] as [TinyFamily, 'int8' | 'int4', Dtype][])('%s %s %s decode graphs', (family, mode, dtype) => {
  const bits = mode === 'int8' ? 8 : 4;

  it('equal the float64 reference on the dequantised weights (logits and resid_post)', async () => {
    const { config, weights, model } = await setup(family, mode, dtype);
    expect(model.engine.decode!.projections!.embedDtype).toBe(EMBED_DTYPE[dtype]);
    const ref = dequantisedReference(config, weights, bits);
    const ids = [seqIds(13, model.spec.vocab, 1), seqIds(8, model.spec.vocab, 2)];
    const L = model.spec.nLayers;
    const capture = Array.from({ length: L }, (_, l) => hookName(l, 'resid_post'));
    const V = model.spec.vocab;
    const D = model.spec.dModel;
    const exact = await exactEngine(model).forward({ ids, capture, logits: 'all', decodeWeights: true });
    const shipped = await model.engine.forward({ ids, capture, logits: 'all', decodeWeights: true });
    const T = exact.layout.seq;
    for (const [b, row] of ids.entries()) {
      const r = referenceForward(ref.config, ref.weights, row);
      const fp32 = referenceForward(config, weights, row);
      const pad = exact.layout.pad[b]!;
      const n = row.length;
      const logits = (x: Float32Array) => x.subarray((b * T + pad) * V, (b * T + pad + n) * V);
      // accuracy_level 0: float32 arithmetic on the dequantised weights.
      expect(maxRelErr(logits(exact.logits!), r.logits)).toBeLessThan(5e-5);
      for (let l = 0; l < L; l++) {
        const got = exact.captures.get(capture[l]!)!.subarray((b * T + pad) * D, (b * T + pad + n) * D);
        expect(maxRelErr(got, r.resid_post[l]!), `${capture[l]} row ${b}`).toBeLessThan(5e-5);
      }
      // The quantisation is there: the fp32 weights' logits are farther off than that.
      expect(maxRelErr(logits(exact.logits!), fp32.logits)).toBeGreaterThan(bits === 4 ? 1e-2 : 1e-3);
      // What generation runs (accuracy_level 4: activations rounded to int8 per block of the
      // weights' block size inside the op, ~0.4% per element at 32 and coarser at int4's 64;
      // these tiny random models with N(0, 0.2²) weights amplify it to at most ~5% of the
      // largest logit at int8 and ~7% at int4; on the organism resid_post moves 0.7% at int8).
      expect(maxRelErr(logits(shipped.logits!), r.logits)).toBeLessThan(bits === 4 ? 9e-2 : 6e-2);
    }
  });

  it('KV-cache generation equals the decode forward recomputed over the whole sequence', async () => {
    const { model } = await setup(family, mode, dtype);
    const e = exactEngine(model);
    const prompts = [seqIds(6, model.spec.vocab, 3), seqIds(9, model.spec.vocab, 4)];
    const g = await e.generate(prompts, { maxNewTokens: 5, stopIds: [], keepLogits: true });
    const V = model.spec.vocab;
    for (let s = 0; s < 5; s++) {
      const seqs = prompts.map((p, b) => [...p, ...g.tokens[b]!.slice(0, s)]);
      const f = await e.forward({ ids: seqs, logits: 'last', decodeWeights: true });
      expect(maxRelErr(g.logits![s]!, f.logits!), `step ${s}`).toBeLessThan(5e-5);
      expect(f.logits!.length).toBe(2 * V);
    }
  });
});

describe('an LM head run in parts of rows (headRows)', () => {
  it.each([
    ['llama', 'int8'],
    ['gemma2', 'int4'],
  ] as [TinyFamily, 'int8' | 'int4'][])('%s %s: the same logits as the whole head and as the float64 reference', async (family, mode) => {
    const { config, weights, model } = await setup(family, mode);
    const d = model.engine.decode!;
    const V = model.spec.vocab;
    // Tiny vocabularies fit one part by default; 7 rows a part leaves a shorter last one.
    expect(d.projections!.headRows!).toBeGreaterThanOrEqual(V);
    expect(V % 7).not.toBe(0);
    const exact = (w: typeof d) => new Engine(model.spec, new Map(), {}, { ...w, projections: { ...w.projections!, accuracyLevel: 0 } });
    const ids = [seqIds(11, V, 9), seqIds(6, V, 10)];
    const whole = await exact(d).forward({ ids, logits: 'all', decodeWeights: true });
    const parts = await exact(withHeadRows(d, 7)).forward({ ids, logits: 'all', decodeWeights: true });
    expect(maxRelErr(parts.logits!, whole.logits!)).toBeLessThan(1e-6);
    const ref = dequantisedReference(config, weights, mode === 'int8' ? 8 : 4);
    const T = parts.layout.seq;
    for (const [b, row] of ids.entries()) {
      const pad = parts.layout.pad[b]!;
      const r = referenceForward(ref.config, ref.weights, row);
      expect(maxRelErr(parts.logits!.subarray((b * T + pad) * V, (b * T + pad + row.length) * V), r.logits)).toBeLessThan(5e-5);
    }
    // Generation through the parts: the same greedy tokens as the whole head.
    const prompts = [seqIds(5, V, 11)];
    const g1 = await exact(d).generate(prompts, { maxNewTokens: 4, stopIds: [] });
    const g2 = await exact(withHeadRows(d, 7)).generate(prompts, { maxNewTokens: 4, stopIds: [] });
    expect(g2.tokens).toEqual(g1.tokens);
  });
});

describe('interventions on int4 weights', () => {
  let model: LoadedModel;
  beforeAll(async () => {
    ({ model } = await setup('gemma2', 'int4'));
  });
  const vec = (n: number, seed: number) => Float32Array.from(seqIds(n, 2001, seed), (x) => (x - 1000) / 1000);

  it('steering adds scale * v at the hook, in forward and in generation', async () => {
    const D = model.spec.dModel;
    const hook = hookName(1, 'resid_post');
    const v = vec(D, 1);
    const ids = [seqIds(10, model.spec.vocab, 5)];
    const steer = { steer: [{ hook, vector: v, scale: 3 }] };
    const base = await model.engine.forward({ ids, capture: [hook], logits: 'last', decodeWeights: true });
    const st = await model.engine.forward({ ids, capture: [hook], logits: 'last', decodeWeights: true, interventions: steer });
    const a = base.captures.get(hook)!;
    const b = st.captures.get(hook)!;
    for (let i = 0; i < a.length; i++) expect(b[i]! - a[i]!).toBeCloseTo(3 * v[i % D]!, 4);
    expect(maxRelErr(st.logits!, base.logits!)).toBeGreaterThan(1e-2);
    // Generation runs the same steered decode graph: its first step's logits are the steered forward's.
    const g = await model.engine.generate(ids, { maxNewTokens: 1, keepLogits: true, interventions: steer });
    expect(maxRelErr(g.logits![0]!, st.logits!)).toBeLessThan(1e-5);
    const g0 = await model.engine.generate(ids, { maxNewTokens: 1, keepLogits: true });
    expect(maxRelErr(g0.logits![0]!, base.logits!)).toBeLessThan(1e-5);
  });

  it('ablation leaves no component along the direction at the hook', async () => {
    const D = model.spec.dModel;
    const hook = hookName(2, 'resid_mid');
    const u = vec(D, 2);
    const norm = Math.hypot(...u);
    const ids = [seqIds(9, model.spec.vocab, 6)];
    const base = await model.engine.forward({ ids, capture: [hook], decodeWeights: true });
    const ab = await model.engine.forward({ ids, capture: [hook], decodeWeights: true, interventions: { ablate: [{ hook, directions: [u] }] } });
    const x = base.captures.get(hook)!;
    const y = ab.captures.get(hook)!;
    for (let t = 0; t < 9; t++) {
      let before = 0;
      let after = 0;
      for (let i = 0; i < D; i++) {
        before += (x[t * D + i]! * u[i]!) / norm;
        after += (y[t * D + i]! * u[i]!) / norm;
      }
      expect(Math.abs(before)).toBeGreaterThan(1e-2);
      expect(Math.abs(after)).toBeLessThan(1e-5 * Math.max(1, Math.abs(before)));
    }
  });

  it(`one decode session per intervention shape, at most ${DECODE_SESSIONS} alive`, async () => {
    const { model: m } = await setup('llama', 'int4');
    const ids = [seqIds(5, m.spec.vocab, 7)];
    const v = vec(m.spec.dModel, 3);
    for (const l of [0, 1, 0, 1]) await m.engine.generate(ids, { maxNewTokens: 2, interventions: { steer: [{ hook: hookName(l, 'resid_post'), vector: v, scale: 1 }] } });
    expect(m.engine.decodeVariants).toEqual({ compiled: 2, live: 2 });
    await m.engine.generate(ids, { maxNewTokens: 2 });
    // Two is the design's limit (each live session holds a prepacked copy of the weights).
    expect(m.engine.decodeVariants).toEqual({ compiled: 3, live: 2 });
    // forward() on the fp32 weights is untouched by all this.
    expect(m.engine.compiledVariants).toBe(0);
  });
});

describe('an engine loaded to generate only', () => {
  it('holds no fp32 weights: generate works, forward is one clear error', async () => {
    const dir = mkdtempSync(join(tmpdir(), 'emlens-q-only-'));
    writeTinyCheckpoint(dir, 'qwen2');
    const both = await LoadedModel.load(dir, { weights: 'int4' });
    const only = await LoadedModel.load(dir, { weights: 'int4', generateOnly: true });
    expect(only.engine.weights.size).toBe(0);
    expect(only.engine.weightMode).toBe('int4');
    const ids = [seqIds(7, only.spec.vocab, 8)];
    const a = await only.engine.generate(ids, { maxNewTokens: 6, stopIds: [] });
    const b = await both.engine.generate(ids, { maxNewTokens: 6, stopIds: [] });
    expect(a.tokens).toEqual(b.tokens);
    await expect(only.engine.forward({ ids, logits: 'last' })).rejects.toThrow(/loaded for generation only \(--weights int4\)/);
  });
});
