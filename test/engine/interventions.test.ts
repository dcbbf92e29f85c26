/**
 * Hook-point interventions checked numerically: steering adds exactly scale * v where asked,
 * ablation leaves no component along the directions, and KV-cache generation (with the same
 * interventions) equals recomputing the whole sequence every step.
 */
import { mkdtempSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { beforeAll, describe, expect, it } from 'vitest';
import { LoadedModel } from '../../src/backend/model.js';
import { hookName } from '../../src/hooks/names.js';
import { EmlensError } from '../../src/errors.js';
import { writeTinyCheckpoint, type TinyFamily } from '../helpers/tiny-checkpoints.js';
import { maxRelErr, seqIds } from '../helpers/compare.js';
import { argmax } from '../../src/runtime/sampling.js';
import { rng } from '../../src/runtime/random.js';

async function load(family: TinyFamily): Promise<LoadedModel> {
  const dir = mkdtempSync(join(tmpdir(), `emlens-iv-${family}-`));
  writeTinyCheckpoint(dir, family);
  return LoadedModel.load(dir);
}

function randVec(n: number, seed: number): Float32Array {
  const ids = seqIds(n, 2001, seed);
  return Float32Array.from(ids, (x) => (x - 1000) / 1000);
}

function dot(a: ArrayLike<number>, b: ArrayLike<number>, aOff = 0, n = b.length): number {
  let s = 0;
  for (let i = 0; i < n; i++) s += a[aOff + i]! * b[i]!;
  return s;
}

let model: LoadedModel;
const rows = () => [seqIds(12, model.spec.vocab, 5), seqIds(7, model.spec.vocab, 6)];
beforeAll(async () => {
  model = await load('gemma2');
});

describe('steering', () => {
  it('adds scale * v at the hook, at real positions from fromPosition on, and changes what follows', async () => {
    const D = model.spec.dModel;
    const hook = hookName(1, 'resid_post');
    const down = hookName(2, 'resid_post');
    const v = randVec(D, 1);
    const base = await model.engine.forward({ ids: rows(), capture: [hook, down] });
    const from = 3;
    const st = await model.engine.forward({
      ids: rows(),
      capture: [hook, down],
      interventions: { steer: [{ hook, vector: v, scale: 2.5, fromPosition: from }] },
    });
    const { pad, seq } = base.layout;
    const b0 = base.captures.get(hook)!;
    const s0 = st.captures.get(hook)!;
    for (let b = 0; b < pad.length; b++) {
      for (let t = pad[b]!; t < seq; t++) {
        const pos = t - pad[b]!;
        const off = (b * seq + t) * D;
        for (let i = 0; i < D; i++) {
          const want = b0[off + i]! + (pos >= from ? 2.5 * v[i]! : 0);
          expect(Math.abs(s0[off + i]! - want)).toBeLessThan(1e-5 * (1 + Math.abs(want)));
        }
      }
    }
    expect(maxRelErr(st.captures.get(down)!, base.captures.get(down)!)).toBeGreaterThan(1e-3);
  });

  it('steering the output of block l equals steering the input of block l+1', async () => {
    const v = randVec(model.spec.dModel, 2);
    const a = await model.engine.forward({ ids: rows(), logits: 'all', interventions: { steer: [{ hook: hookName(0, 'resid_post'), vector: v, scale: 3 }] } });
    const b = await model.engine.forward({ ids: rows(), logits: 'all', interventions: { steer: [{ hook: hookName(1, 'resid_pre'), vector: v, scale: 3 }] } });
    expect(maxRelErr(a.logits!, b.logits!)).toBeLessThan(1e-6);
  });
});

describe('sub-block outputs (attn_out, mlp_out)', () => {
  it.each(['attn_out', 'mlp_out'] as const)('steering %s adds scale * v to what enters the residual: equals steering the residual right after the add', async (kind) => {
    const D = model.spec.dModel;
    const v = randVec(D, 12);
    const at = hookName(1, kind);
    const after = hookName(1, kind === 'attn_out' ? 'resid_mid' : 'resid_post');
    const base = await model.engine.forward({ ids: rows(), capture: [at] });
    const a = await model.engine.forward({ ids: rows(), capture: [at], logits: 'all', interventions: { steer: [{ hook: at, vector: v, scale: 2 }] } });
    const b = await model.engine.forward({ ids: rows(), logits: 'all', interventions: { steer: [{ hook: after, vector: v, scale: 2 }] } });
    expect(maxRelErr(a.logits!, b.logits!)).toBeLessThan(1e-5);
    const { pad, seq } = base.layout;
    const h = base.captures.get(at)!;
    const g = a.captures.get(at)!;
    for (let bb = 0; bb < pad.length; bb++) {
      for (let t = pad[bb]!; t < seq; t++) {
        for (let i = 0; i < D; i++) expect(Math.abs(g[(bb * seq + t) * D + i]! - (h[(bb * seq + t) * D + i]! + 2 * v[i]!))).toBeLessThan(1e-5);
      }
    }
  });

  it.each(['attn_out', 'mlp_out'] as const)('ablating %s projects r out of the sub-block output only: the residual keeps its own component', async (kind) => {
    const D = model.spec.dModel;
    const r = randVec(D, 13);
    const at = hookName(2, kind);
    const before = hookName(2, kind === 'attn_out' ? 'resid_pre' : 'resid_mid');
    const after = hookName(2, kind === 'attn_out' ? 'resid_mid' : 'resid_post');
    const base = await model.engine.forward({ ids: rows(), capture: [at, before] });
    const ab = await model.engine.forward({ ids: rows(), capture: [at, before, after], interventions: { ablate: [{ hook: at, directions: [r] }] } });
    const norm = Math.sqrt(dot(r, r));
    const rhat = Float64Array.from(r, (x) => x / norm);
    const h = base.captures.get(at)!;
    const g = ab.captures.get(at)!;
    const pre = ab.captures.get(before)!;
    const post = ab.captures.get(after)!;
    expect(maxRelErr(pre, base.captures.get(before)!)).toBeLessThan(1e-6);
    for (let n = 0; n < h.length / D; n++) {
      const c = dot(h, rhat, n * D, D);
      for (let i = 0; i < D; i++) {
        expect(Math.abs(g[n * D + i]! - (h[n * D + i]! - c * rhat[i]!))).toBeLessThan(2e-5);
        expect(Math.abs(post[n * D + i]! - (pre[n * D + i]! + g[n * D + i]!))).toBeLessThan(2e-5);
      }
    }
    // The residual stream itself still carries a component along r (only the write was removed).
    expect(Math.abs(dot(post, rhat, 0, D))).toBeGreaterThan(1e-3);
  });
});

describe('ablation', () => {
  it('leaves zero component along every direction and equals h - (h.r)r for one direction', async () => {
    const D = model.spec.dModel;
    const hook = hookName(2, 'resid_mid');
    const r = randVec(D, 3);
    const base = await model.engine.forward({ ids: rows(), capture: [hook] });
    const ab = await model.engine.forward({ ids: rows(), capture: [hook], interventions: { ablate: [{ hook, directions: [r] }] } });
    const norm = Math.sqrt(dot(r, r));
    const rhat = Float64Array.from(r, (x) => x / norm);
    const h = base.captures.get(hook)!;
    const g = ab.captures.get(hook)!;
    for (let n = 0; n < h.length / D; n++) {
      const c = dot(h, rhat, n * D, D);
      expect(Math.abs(dot(g, rhat, n * D, D))).toBeLessThan(1e-5 * Math.sqrt(dot(h.subarray(n * D, (n + 1) * D), h.subarray(n * D, (n + 1) * D))) + 1e-6);
      for (let i = 0; i < D; i++) expect(Math.abs(g[n * D + i]! - (h[n * D + i]! - c * rhat[i]!))).toBeLessThan(2e-5);
    }
  });

  it('several non-orthogonal directions: the whole span is removed, at every layer', async () => {
    const D = model.spec.dModel;
    const r1 = randVec(D, 4);
    const r2 = Float32Array.from(randVec(D, 5), (x, i) => x + 0.7 * r1[i]!);
    const hooks = Array.from({ length: model.spec.nLayers }, (_, l) => hookName(l, 'resid_post'));
    const ab = await model.engine.forward({
      ids: rows(),
      capture: hooks,
      interventions: { ablate: hooks.map((hook) => ({ hook, directions: [r1, r2] })) },
    });
    for (const hk of hooks) {
      const g = ab.captures.get(hk)!;
      for (let n = 0; n < g.length / D; n++) {
        const gn = Math.sqrt(dot(g.subarray(n * D, (n + 1) * D), g.subarray(n * D, (n + 1) * D)));
        expect(Math.abs(dot(g, r1, n * D, D))).toBeLessThan(1e-4 * gn * Math.sqrt(dot(r1, r1)) + 1e-6);
        expect(Math.abs(dot(g, r2, n * D, D))).toBeLessThan(1e-4 * gn * Math.sqrt(dot(r2, r2)) + 1e-6);
      }
    }
  });
});

describe.each(['gemma2', 'mistral', 'qwen3'] as TinyFamily[])('KV-cache generation (%s)', (family) => {
  it('equals full recomputation, with steering and ablation, batched prompts of different lengths', async () => {
    const m = await load(family);
    const D = m.spec.dModel;
    const iv = {
      steer: [
        { hook: hookName(1, 'resid_post'), vector: randVec(D, 7), scale: 1.5 },
        { hook: hookName(0, 'mlp_out'), vector: randVec(D, 14), scale: 0.7 },
      ],
      ablate: [
        { hook: hookName(0, 'resid_mid'), directions: [randVec(D, 8)] },
        { hook: hookName(1, 'attn_out'), directions: [randVec(D, 15)] },
      ],
    };
    const prompts = [seqIds(6, m.spec.vocab, 9), seqIds(3, m.spec.vocab, 10), seqIds(9, m.spec.vocab, 11)];
    const gen = await m.engine.generate(prompts, { maxNewTokens: 10, interventions: iv, stopIds: [], keepLogits: true });
    for (let step = 0; step < 10; step++) {
      const seqs = prompts.map((p, b) => [...p, ...gen.tokens[b]!.slice(0, step)]);
      const full = await m.engine.forward({ ids: seqs, logits: 'last', interventions: iv });
      expect(maxRelErr(gen.logits![step]!, full.logits!)).toBeLessThan(2e-5);
      prompts.forEach((_, b) => expect(gen.tokens[b]![step]).toBe(argmax(full.logits!, b * m.spec.vocab, m.spec.vocab)));
    }
  });
});

/**
 * The textbook draw (sort by p, ties by id; keep the shortest prefix reaching top_p; u·mass walked
 * over it) from softmax(logits / T) computed here in float64 from the full recomputation's logits,
 * rounded to float32 as the graph's probabilities are.
 */
function textbookDraw(logits: Float32Array, off: number, V: number, T: number, topP: number, u: number): number {
  let max = -Infinity;
  for (let i = 0; i < V; i++) max = Math.max(max, logits[off + i]!);
  const e = Array.from({ length: V }, (_, i) => Math.exp((logits[off + i]! - max) / T));
  const z = e.reduce((a, b) => a + b, 0);
  const p = Float32Array.from(e, (v) => v / z);
  const total = p.reduce((a, b) => a + b, 0);
  const ids = Array.from({ length: V }, (_, i) => i);
  if (topP < 1) ids.sort((a, b) => p[b]! - p[a]! || a - b);
  let mass = 0;
  let k = 0;
  while (k < V && (topP >= 1 || mass < topP * total)) mass += p[ids[k++]!]!;
  const kept = ids.slice(0, Math.max(1, k));
  let acc = 0;
  for (const i of kept) {
    acc += p[i]!;
    if (u * mass < acc) return i;
  }
  return kept[kept.length - 1]!;
}

describe.each(['gemma2', 'qwen3'] as TinyFamily[])('sampled KV-cache generation (%s)', (family) => {
  it('draws, step by step and row by row from one seeded generator, what softmax(full-recompute logits / T) gives', async () => {
    const m = await load(family);
    const V = m.spec.vocab;
    const iv = { steer: [{ hook: hookName(1, 'resid_post'), vector: randVec(m.spec.dModel, 7), scale: 1.5 }] };
    const prompts = [seqIds(6, V, 9), seqIds(3, V, 10), seqIds(9, V, 11)];
    for (const [T, topP] of [
      [0.7, 1],
      [1.3, 0.8],
    ] as const) {
      const steps = 8;
      const gen = await m.engine.generate(prompts, { maxNewTokens: steps, temperature: T, topP, seed: 21, interventions: iv, stopIds: [] });
      const r = rng(21);
      for (let step = 0; step < steps; step++) {
        const seqs = prompts.map((p, b) => [...p, ...gen.tokens[b]!.slice(0, step)]);
        const full = await m.engine.forward({ ids: seqs, logits: 'last', interventions: iv });
        prompts.forEach((_, b) => expect(gen.tokens[b]![step], `T ${T}, top-p ${topP}, step ${step}, row ${b}`).toBe(textbookDraw(full.logits!, b * V, V, T, topP, r())));
      }
    }
  });

  it('prefills a prompt given several times once, and grows the cache past its first slots, drawing the same', async () => {
    const m = await load(family);
    const V = m.spec.vocab;
    const iv = { steer: [{ hook: hookName(0, 'resid_post'), vector: randVec(m.spec.dModel, 8), scale: 1 }] };
    const p = seqIds(5, V, 12);
    const prompts = [p, seqIds(8, V, 13), p, p];
    // 70 steps: past the cache's first 64 slots (CHUNK), so it grows while rows decode.
    const steps = 70;
    const gen = await m.engine.generate(prompts, { maxNewTokens: steps, temperature: 1, topP: 1, seed: 5, interventions: iv, stopIds: [] });
    const r = rng(5);
    for (let step = 0; step < steps; step++) {
      const seqs = prompts.map((q, b) => [...q, ...gen.tokens[b]!.slice(0, step)]);
      const full = await m.engine.forward({ ids: seqs, logits: 'last', interventions: iv });
      prompts.forEach((_, b) => expect(gen.tokens[b]![step], `step ${step}, row ${b}`).toBe(textbookDraw(full.logits!, b * V, V, 1, 1, r())));
    }
    // The shared prompt's rows drew from one generator in turn, so they part ways.
    expect(gen.tokens[2]).not.toEqual(gen.tokens[3]);
  });
});

describe('bad interventions', () => {
  it('reject wrong widths and layers with one clear line', async () => {
    const D = model.spec.dModel;
    await expect(model.engine.forward({ ids: rows(), capture: [hookName(0, 'resid_post')], interventions: { steer: [{ hook: hookName(0, 'resid_post'), vector: new Float32Array(D + 1), scale: 1 }] } })).rejects.toThrow(EmlensError);
    await expect(model.engine.forward({ ids: rows(), capture: [hookName(99, 'resid_post')] })).rejects.toThrow(/layer 99 is out of range/);
    await expect(model.engine.forward({ ids: [[model.spec.vocab]], logits: 'last' })).rejects.toThrow(/outside the vocabulary/);
  });
});
