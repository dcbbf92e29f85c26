import { mkdtempSync, readFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { dirname, join, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';
import { afterAll, describe, expect, it } from 'vitest';
import { readTensorF32 } from '../../src/io/safetensors/read.js';
import { openWeights } from '../../src/model/weight-files.js';
import { TINY_FAMILIES, tinyConfig, writeTinyCheckpoint, type TinyFamily } from '../helpers/tiny-checkpoints.js';
import { attentionAllowed, referenceForward, resolveSpec, type RefOutput, type RefWeights } from './forward.js';

const here = dirname(fileURLToPath(import.meta.url));
const AIDREAMS = resolve(here, '../../../shared/models/aidreams260k');

const tmpRoot = mkdtempSync(join(tmpdir(), 'emlens-ref-'));
afterAll(() => rmSync(tmpRoot, { recursive: true, force: true }));

function loadDir(dir: string): { config: Record<string, any>; weights: RefWeights } {
  const config = JSON.parse(readFileSync(join(dir, 'config.json'), 'utf8'));
  const idx = openWeights(dir);
  const weights: RefWeights = new Map();
  for (const [name, info] of idx.tensors) weights.set(name, { shape: info.shape, data: readTensorF32(info) });
  return { config, weights };
}

function argmaxLast(logits: Float64Array, T: number): number {
  const V = logits.length / T;
  let best = 0;
  for (let j = 1; j < V; j++) if (logits[(T - 1) * V + j]! > logits[(T - 1) * V + best]!) best = j;
  return best;
}

/** Rows [from, to) of a [T * n] array. */
function rows(a: Float64Array, n: number, from: number, to: number): Float64Array {
  return a.subarray(from * n, to * n);
}

function allFinite(o: RefOutput): boolean {
  for (const arr of [...o.resid_pre, ...o.attn_out, ...o.resid_mid, ...o.mlp_out, ...o.resid_post, o.logits]) {
    for (const v of arr) if (!Number.isFinite(v)) return false;
  }
  return true;
}

/** First position p such that row p of a and b differ (or T if none). */
function firstDiffRow(a: Float64Array, b: Float64Array, n: number): number {
  for (let i = 0; i < a.length; i++) if (a[i] !== b[i]) return Math.floor(i / n);
  return a.length / n;
}
/** Last position p such that row p of a and b differ (or -1 if none). */
function lastDiffRow(a: Float64Array, b: Float64Array, n: number): number {
  for (let i = a.length - 1; i >= 0; i--) if (a[i] !== b[i]) return Math.floor(i / n);
  return -1;
}

function seqIds(T: number, vocab: number, salt = 0): number[] {
  const ids: number[] = [];
  for (let t = 0; t < T; t++) ids.push((7 * t + 3 + salt * 11) % vocab);
  return ids;
}

describe('reference forward: aidreams260k (real trained Llama)', () => {
  it('greedy-decodes the known 30 tokens from BOS', () => {
    const { config, weights } = loadDir(AIDREAMS);
    const ids = [1];
    for (let step = 0; step < 30; step++) {
      const out = referenceForward(config, weights, ids);
      ids.push(argmaxLast(out.logits, ids.length));
    }
    expect(ids.slice(1)).toEqual([
      319, 459, 355, 260, 275, 429, 339, 315, 374, 327, 446, 262, 421, 392, 275, 280, 269, 440, 270, 283, 446, 299,
      303, 266, 358, 430, 312, 379, 441, 260,
    ]);
  });
});

describe('tiny checkpoints', () => {
  for (const family of TINY_FAMILIES) {
    it(`${family}: builds, writes, reads back, and the reference output is finite`, () => {
      const dir = join(tmpRoot, `finite-${family}`);
      const { config, weights } = writeTinyCheckpoint(dir, family, { seed: 3 });
      const back = loadDir(dir);
      expect(back.config).toEqual(config);
      expect([...back.weights.keys()].sort()).toEqual([...weights.keys()].sort());
      for (const [name, t] of weights) {
        expect(back.weights.get(name)!.shape).toEqual(t.shape);
        expect(back.weights.get(name)!.data).toEqual(t.data);
      }
      const spec = resolveSpec(config);
      const T = 13;
      const out = referenceForward(back.config, back.weights, seqIds(T, spec.vocab));
      expect(out.resid_pre).toHaveLength(spec.layers);
      expect(out.resid_mid).toHaveLength(spec.layers);
      expect(out.resid_post).toHaveLength(spec.layers);
      expect(out.resid_post[0]).toHaveLength(T * spec.hidden);
      expect(out.logits).toHaveLength(T * spec.vocab);
      expect(allFinite(out)).toBe(true);
      // resid_pre[l+1] is resid_post[l]
      for (let l = 0; l + 1 < spec.layers; l++) expect(out.resid_pre[l + 1]).toEqual(out.resid_post[l]);
      // the logits are not degenerate
      let spread = 0;
      for (let j = 0; j < spec.vocab; j++) spread = Math.max(spread, Math.abs(out.logits[j]! - out.logits[0]!));
      expect(spread).toBeGreaterThan(1e-3);
    });
  }

  it('feature switches are on where the brief says', () => {
    const llama = resolveSpec(tinyConfig('llama'));
    expect(llama.headDim).not.toBe(llama.hidden / llama.heads);
    expect(llama.tied).toBe(false);
    expect(llama.kvHeads).toBeLessThan(llama.heads);
    // llama3 rope: some frequencies kept, some smoothed, some divided by the factor.
    const plain = resolveSpec({ ...tinyConfig('llama'), rope_scaling: null });
    const ratios = [...llama.invFreq[0]!].map((f, i) => f / plain.invFreq[0]![i]!);
    expect(ratios.some((r) => r === 1)).toBe(true);
    expect(ratios.some((r) => Math.abs(r - 1 / 8) < 1e-12)).toBe(true);
    expect(ratios.some((r) => r > 1 / 8 + 1e-9 && r < 1 - 1e-9)).toBe(true);

    const mistral = resolveSpec(tinyConfig('mistral'));
    expect(mistral.window.every((w) => w === 5)).toBe(true);
    expect(mistral.headDim).toBe(mistral.hidden / mistral.heads);

    const qwen2 = resolveSpec(tinyConfig('qwen2'));
    expect([qwen2.qkvBias, qwen2.oBias, qwen2.tied]).toEqual([true, false, true]);
    expect(qwen2.window.every((w) => w === null)).toBe(true); // use_sliding_window false

    const qwen3 = resolveSpec(tinyConfig('qwen3'));
    expect(qwen3.qkNorm).toBe(true);
    expect(qwen3.headDim * qwen3.heads).not.toBe(qwen3.hidden);

    const gemma2 = resolveSpec(tinyConfig('gemma2'));
    expect(gemma2.window).toEqual([4, null, 4, null]);
    expect([gemma2.attnSoftcap, gemma2.finalSoftcap, gemma2.tied, gemma2.sandwich]).toEqual([2, 3, true, true]);
    expect(gemma2.scaling).toBeCloseTo(1 / Math.sqrt(24), 15);
    expect(gemma2.embedScale).toBe(Math.sqrt(32));

    for (const fam of ['gemma3_text', 'gemma3'] as TinyFamily[]) {
      const g3 = resolveSpec(tinyConfig(fam));
      expect(g3.window).toEqual([4, 4, 4, 4, 4, null, 4]);
      expect(g3.qkNorm).toBe(true);
      expect([g3.attnSoftcap, g3.finalSoftcap]).toEqual([null, null]);
      // sliding layers: default rope with base 1e4; the full layer: 1e6 with linear factor 8.
      expect(g3.invFreq[0]![1]).toBeCloseTo(1 / Math.pow(10000, 2 / 16), 15);
      expect(g3.invFreq[5]![1]).toBeCloseTo(1 / Math.pow(1e6, 2 / 16) / 8, 15);
    }
  });

  it('llama variants: head_dim = hidden/heads, and tied embeddings (no lm_head.weight)', () => {
    const plain = writeTinyCheckpoint(join(tmpRoot, 'llama-plain'), 'llama', { headDim: 12, tied: true, layers: 2 });
    expect(plain.weights.has('lm_head.weight')).toBe(false);
    expect(plain.weights.get('model.layers.0.self_attn.q_proj.weight')!.shape).toEqual([48, 48]);
    const spec = resolveSpec(plain.config);
    expect([spec.headDim, spec.tied, spec.layers]).toEqual([12, true, 2]);
    expect(allFinite(referenceForward(plain.config, plain.weights, seqIds(10, spec.vocab)))).toBe(true);
  });

  it('gemma3_text with layer_types and the gemma3 wrapper with sliding_window_pattern agree', () => {
    const a = writeTinyCheckpoint(join(tmpRoot, 'g3-text'), 'gemma3_text', { seed: 5 });
    const b = writeTinyCheckpoint(join(tmpRoot, 'g3-wrap'), 'gemma3', { seed: 5 });
    expect(b.weights.has('vision_tower.vision_model.embeddings.patch_embedding.weight')).toBe(true);
    expect(b.weights.has('language_model.model.layers.0.self_attn.q_norm.weight')).toBe(true);
    // Same tensors under the other prefix, apart from the vocabulary size: compare via a remap.
    const remapped: RefWeights = new Map();
    for (const [name, t] of a.weights) remapped.set(name.replace(/^model\./, 'language_model.model.'), t);
    const cfg = JSON.parse(JSON.stringify(b.config));
    cfg.text_config.vocab_size = a.config.vocab_size;
    const ids = seqIds(14, 90);
    const viaWrapper = referenceForward(cfg, remapped, ids);
    const viaText = referenceForward(a.config, a.weights, ids);
    expect(viaWrapper.logits).toEqual(viaText.logits);
  });

  it('stores F16 / BF16 exactly and shards when asked', () => {
    const dir = join(tmpRoot, 'bf16-sharded');
    const { config, weights } = writeTinyCheckpoint(dir, 'qwen3', { dtype: 'BF16', shardBytes: 4096, seed: 9 });
    expect(config.torch_dtype).toBe('bfloat16');
    const back = loadDir(dir);
    expect(openWeights(dir).files.length).toBeGreaterThan(1);
    const u32 = new Uint32Array(1);
    const f32 = new Float32Array(u32.buffer);
    for (const [name, t] of weights) {
      for (const v of t.data) {
        f32[0] = v;
        expect(u32[0]! & 0xffff).toBe(0);
      }
      expect(back.weights.get(name)!.data).toEqual(t.data);
    }
    const f16 = writeTinyCheckpoint(join(tmpRoot, 'f16'), 'llama', { dtype: 'F16', seed: 9 });
    expect(loadDir(join(tmpRoot, 'f16')).weights.get('lm_head.weight')!.data).toEqual(f16.weights.get('lm_head.weight')!.data);
    expect(allFinite(referenceForward(back.config, back.weights, seqIds(9, 64)))).toBe(true);
  });
});

describe('masking', () => {
  it('implements HF causal and sliding-window masks (window W = W keys including the query)', () => {
    for (let q = 0; q < 12; q++) {
      for (let k = 0; k < 12; k++) {
        expect(attentionAllowed(q, k, null)).toBe(k <= q);
        expect(attentionAllowed(q, k, 5)).toBe(k <= q && q - k < 5);
      }
    }
    expect(attentionAllowed(4, 0, 5)).toBe(true);
    expect(attentionAllowed(5, 0, 5)).toBe(false);
    expect(attentionAllowed(3, 0, 1)).toBe(false);
    expect(attentionAllowed(3, 3, 1)).toBe(true);
  });

  for (const family of TINY_FAMILIES) {
    it(`${family}: changing the last token leaves every earlier position untouched`, () => {
      const config = tinyConfig(family);
      const spec = resolveSpec(config);
      const { weights } = writeTinyCheckpoint(join(tmpRoot, `causal-${family}`), family, { seed: 1 });
      const T = 12;
      const a = seqIds(T, spec.vocab);
      const b = a.slice();
      b[T - 1] = (b[T - 1]! + 5) % spec.vocab;
      const oa = referenceForward(config, weights, a);
      const ob = referenceForward(config, weights, b);
      const H = spec.hidden;
      for (let l = 0; l < spec.layers; l++) {
        for (const key of ['resid_pre', 'resid_mid', 'resid_post'] as const) {
          expect(rows(oa[key][l]!, H, 0, T - 1)).toEqual(rows(ob[key][l]!, H, 0, T - 1));
        }
        expect(lastDiffRow(oa.resid_post[l]!, ob.resid_post[l]!, H)).toBe(T - 1);
      }
      expect(rows(oa.logits, spec.vocab, 0, T - 1)).toEqual(rows(ob.logits, spec.vocab, 0, T - 1));
    });
  }

  // Changing token 0 reaches position p after layer l only through attention hops; a sliding
  // layer with window W moves information at most W-1 positions forward, a full layer all the way.
  for (const family of ['mistral', 'gemma2', 'gemma3_text'] as TinyFamily[]) {
    it(`${family}: the sliding window limits how far token 0 reaches, layer by layer`, () => {
      const config = tinyConfig(family);
      const spec = resolveSpec(config);
      const { weights } = writeTinyCheckpoint(join(tmpRoot, `window-${family}`), family, { seed: 2 });
      const T = 20;
      const a = seqIds(T, spec.vocab);
      const b = a.slice();
      b[0] = (b[0]! + 9) % spec.vocab;
      const oa = referenceForward(config, weights, a);
      const ob = referenceForward(config, weights, b);
      const H = spec.hidden;
      let reach = 0; // last position that token 0 can influence so far
      for (let l = 0; l < spec.layers; l++) {
        const w = spec.window[l]!;
        reach = w === null ? T - 1 : Math.min(T - 1, reach + (w - 1));
        // resid_mid already includes this layer's attention; resid_post adds the per-position MLP.
        for (const key of ['resid_mid', 'resid_post'] as const) {
          expect(lastDiffRow(oa[key][l]!, ob[key][l]!, H)).toBe(reach);
          expect(firstDiffRow(oa[key][l]!, ob[key][l]!, H)).toBe(0);
        }
      }
      expect(spec.window.some((w) => w !== null)).toBe(true);
    });
  }
});
