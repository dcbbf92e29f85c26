/**
 * The real config.json files of the checkpoints the papers use (test/fixtures/configs; where
 * each came from is in test/fixtures/configs/SOURCES.md), without their weights:
 *
 * 1. parseConfig resolves each one to the architecture transformers builds from it, and
 *    parameterCount agrees with the published / safetensors-index parameter counts.
 * 2. expectedTensors names and shapes the tensors that the real checkpoints' safetensors indexes
 *    list (where an index could be found: Llama-3.1-8B, Qwen2.5-14B).
 * 3. Each config shrunk (same model_type, same flags, rope and sliding settings; only the sizes
 *    change) gets random BF16 weights under the real tensor names, is loaded by LoadedModel.load
 *    and run by the engine, and its logits match the independent float64 reference.
 *
 * The official Gemma 3 config omits every text_config key equal to transformers' default; those
 * tests check that emlens fills the defaults in as transformers does.
 */
import { mkdtempSync, readFileSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { describe, expect, it } from 'vitest';
import { LoadedModel } from '../../src/backend/model.js';
import { parameterCount, parseConfig, type ModelSpec } from '../../src/model/config.js';
import { expectedTensors } from '../../src/model/weights.js';
import { bf16ToF32, f32ToBf16 } from '../../src/io/safetensors/dtype.js';
import { writeSafetensors } from '../../src/io/safetensors/write.js';
import { referenceForward } from '../reference/forward.js';
import { tinyWeights } from '../helpers/tiny-checkpoints.js';
import { maxRelErr, seqIds } from '../helpers/compare.js';

type Json = Record<string, any>;

const FIXTURES = fileURLToPath(new URL('../fixtures/configs/', import.meta.url));
const fixture = (name: string): Json => JSON.parse(readFileSync(join(FIXTURES, name), 'utf8'));

const range = (n: number) => Array.from({ length: n }, (_, i) => i);
/** Gemma 3: layer i is global iff (i + 1) % 6 == 0 (Gemma3TextConfig sliding_window_pattern 6). */
const gemma3Types = (n: number) => range(n).map((i) => ((i + 1) % 6 ? 'sliding' : 'full'));
/** Gemma 2: even layers slide (Gemma2Config layer_types: sliding iff (i + 1) % 2). */
const gemma2Types = (n: number) => range(n).map((i) => (i % 2 === 0 ? 'sliding' : 'full'));
const allFull = (n: number) => range(n).map(() => 'full');

/** Parameters of the biases expectedTensors lists as optional and the family actually has. */
function biasCount(s: ModelSpec, names: RegExp): number {
  let n = 0;
  for (const [name, shape] of expectedTensors(s).optional) if (names.test(name)) n += shape.reduce((a, b) => a * b, 1);
  return n;
}

// ---------------------------------------------------------------------------------------------
// 1. parseConfig + parameterCount on the real configs

interface RealCase {
  id: string;
  file: string;
  gen?: string;
  spec: Partial<ModelSpec>;
  layerTypes: string[];
  attnScale: number;
  /** parameterCount(spec): the text model without biases, tied embeddings once. */
  params: number;
  /** Biases the checkpoint has on top (Qwen2: q/k/v_proj.bias). */
  biases?: RegExp;
  /** An exact independent count of the same text model (with biases) and where it comes from. */
  exact?: { value: number; source: string };
  /** The model card's rounded figures, checked to 1%. */
  card?: { value: number; nonEmbedding?: number; source: string };
}

const CASES: RealCase[] = [
  {
    id: 'Qwen/Qwen2.5-14B-Instruct',
    file: 'Qwen__Qwen2.5-14B-Instruct.json',
    gen: 'Qwen__Qwen2.5-14B-Instruct.generation_config.json',
    spec: {
      family: 'qwen2', modelType: 'qwen2', nLayers: 48, dModel: 5120, nHeads: 40, nKvHeads: 8, headDim: 128,
      ffn: 13824, vocab: 152064, rmsEps: 1e-6, act: 'silu', normPlusOne: false, embedScale: null,
      sandwichNorms: false, qkNorm: false, attnSoftcap: null, finalSoftcap: null, slidingWindow: null,
      rope: { theta: 1e6, scaling: { type: 'default' } }, ropeLocal: null, tiedEmbeddings: false,
      bosId: 151643, eosIds: [151645, 151643], maxPositions: 32768, torchDtype: 'bfloat16', weightPrefixes: ['model.'],
    },
    layerTypes: allFull(48),
    attnScale: 1 / Math.sqrt(128),
    params: 14_769_689_600,
    biases: /self_attn\.[qkv]_proj\.bias$/,
    // Same architecture (a Qwen2.5-14B fine-tune): metadata.total_size 29540067328 bytes of BF16.
    exact: { value: 29_540_067_328 / 2, source: 'VAGOsolutions/SauerkrautLM-v2-14b-DPO model.safetensors.index.json' },
    card: { value: 14.7e9, source: 'model card "Number of Parameters: 14.7B"' },
  },
  {
    id: 'Qwen/Qwen2.5-0.5B-Instruct',
    file: 'Qwen__Qwen2.5-0.5B-Instruct.json',
    spec: {
      family: 'qwen2', nLayers: 24, dModel: 896, nHeads: 14, nKvHeads: 2, headDim: 64, ffn: 4864, vocab: 151936,
      rmsEps: 1e-6, rope: { theta: 1e6, scaling: { type: 'default' } }, tiedEmbeddings: true, bosId: 151643,
      eosIds: [151645], maxPositions: 32768, torchDtype: 'bfloat16',
    },
    // use_sliding_window false: sliding_window 32768 / max_window_layers 21 are inert.
    layerTypes: allFull(24),
    attnScale: 1 / 8,
    params: 494_005_120,
    biases: /self_attn\.[qkv]_proj\.bias$/,
    card: { value: 0.49e9, nonEmbedding: 0.36e9, source: 'model card "Number of Parameters: 0.49B (0.36B non-embedding)"' },
  },
  {
    id: 'meta-llama/Llama-3.1-8B-Instruct',
    file: 'meta-llama__Llama-3.1-8B-Instruct.json',
    gen: 'meta-llama__Llama-3.1-8B-Instruct.generation_config.json',
    spec: {
      family: 'llama', nLayers: 32, dModel: 4096, nHeads: 32, nKvHeads: 8, headDim: 128, ffn: 14336, vocab: 128256,
      rmsEps: 1e-5, act: 'silu', qkNorm: false, slidingWindow: null, tiedEmbeddings: false,
      rope: {
        theta: 500000,
        scaling: { type: 'llama3', factor: 8, lowFreqFactor: 1, highFreqFactor: 4, originalMaxPositions: 8192 },
      },
      bosId: 128000, eosIds: [128001, 128008, 128009], maxPositions: 131072, torchDtype: 'bfloat16',
    },
    layerTypes: allFull(32),
    attnScale: 1 / Math.sqrt(128),
    params: 8_030_261_248,
    exact: { value: 16_060_522_496 / 2, source: 'Llama-3.1-8B model.safetensors.index.json total_size (BF16)' },
  },
  {
    id: 'google/gemma-2-9b-it',
    file: 'google__gemma-2-9b-it.json',
    spec: {
      family: 'gemma2', nLayers: 42, dModel: 3584, nHeads: 16, nKvHeads: 8, headDim: 256, ffn: 14336, vocab: 256000,
      rmsEps: 1e-6, act: 'gelu_tanh', normPlusOne: true, embedScale: Math.sqrt(3584), sandwichNorms: true,
      qkNorm: false, attnSoftcap: 50, finalSoftcap: 30, slidingWindow: 4096,
      rope: { theta: 10000, scaling: { type: 'default' } }, ropeLocal: null, tiedEmbeddings: true,
      bosId: 2, eosIds: [1], maxPositions: 8192, torchDtype: 'bfloat16',
    },
    layerTypes: gemma2Types(42),
    attnScale: 1 / Math.sqrt(256), // query_pre_attn_scalar 256
    params: 9_241_705_984,
    exact: { value: 9_241_705_984, source: 'HF safetensors total / keras-hub gemma2_9b_en "params"' },
  },
  {
    id: 'mistralai/Mistral-7B-Instruct-v0.3',
    file: 'mistralai__Mistral-7B-Instruct-v0.3.json',
    spec: {
      family: 'mistral', nLayers: 32, dModel: 4096, nHeads: 32, nKvHeads: 8, headDim: 128, ffn: 14336, vocab: 32768,
      rmsEps: 1e-5, slidingWindow: null, rope: { theta: 1e6, scaling: { type: 'default' } }, tiedEmbeddings: false,
      bosId: 1, eosIds: [2], maxPositions: 32768, torchDtype: 'bfloat16',
    },
    layerTypes: allFull(32), // "sliding_window": null
    attnScale: 1 / Math.sqrt(128),
    params: 7_248_023_552,
    exact: { value: 14_496_047_104 / 2, source: 'Mistral-7B-v0.3 model.safetensors.index.json total_size (BF16)' },
  },
  {
    id: 'Qwen/Qwen3-8B',
    file: 'Qwen__Qwen3-8B.json',
    spec: {
      family: 'qwen3', nLayers: 36, dModel: 4096, nHeads: 32, nKvHeads: 8, headDim: 128, ffn: 12288, vocab: 151936,
      rmsEps: 1e-6, qkNorm: true, normPlusOne: false, slidingWindow: null,
      rope: { theta: 1e6, scaling: { type: 'default' } }, tiedEmbeddings: false, bosId: 151643, eosIds: [151645],
      maxPositions: 40960, torchDtype: 'bfloat16',
    },
    layerTypes: allFull(36),
    attnScale: 1 / Math.sqrt(128),
    params: 8_190_735_360,
    card: { value: 8.2e9, source: 'model card "Number of Parameters: 8.2B"' },
  },
  {
    id: 'google/gemma-3-12b-it (transformers re-save, explicit text_config)',
    file: 'unsloth__gemma-3-12b-it.resaved.json',
    spec: {
      family: 'gemma3', modelType: 'gemma3', nLayers: 48, dModel: 3840, nHeads: 16, nKvHeads: 8, headDim: 256,
      ffn: 15360, vocab: 262208, rmsEps: 1e-6, act: 'gelu_tanh', normPlusOne: true, embedScale: Math.sqrt(3840),
      sandwichNorms: true, qkNorm: true, attnSoftcap: null, finalSoftcap: null, slidingWindow: 1024,
      rope: { theta: 1e6, scaling: { type: 'linear', factor: 8 } },
      ropeLocal: { theta: 10000, scaling: { type: 'default' } },
      tiedEmbeddings: true, bosId: 2, eosIds: [106], maxPositions: 131072, torchDtype: 'bfloat16',
      weightPrefixes: ['language_model.model.', 'model.language_model.', 'model.'],
    },
    layerTypes: gemma3Types(48),
    attnScale: 1 / Math.sqrt(256), // query_pre_attn_scalar 256
    params: 11_766_034_176,
    // keras-hub gemma3_12b_text: 11765788416 with a 262144-row embedding; HF pads it to 262208.
    exact: { value: 11_765_788_416 + 64 * 3840, source: 'keras-hub gemma3_12b_text params + 64 padded vocab rows' },
  },
];

/** What transformers builds from google/gemma-3-12b-it's own config.json (Gemma3TextConfig defaults). */
const GEMMA3_OFFICIAL: Partial<ModelSpec> = {
  family: 'gemma3', modelType: 'gemma3', nLayers: 48, dModel: 3840, nHeads: 16, nKvHeads: 8,
  headDim: 256, // Gemma3TextConfig(head_dim=256); hidden/heads would be 240
  ffn: 15360,
  vocab: 262208, // Gemma3TextConfig(vocab_size=262_208); the file has no vocab_size
  rmsEps: 1e-6, act: 'gelu_tanh', attnSoftcap: null, finalSoftcap: null, slidingWindow: 1024,
  rope: { theta: 1e6, scaling: { type: 'linear', factor: 8 } },
  ropeLocal: { theta: 10000, scaling: { type: 'default' } },
  tiedEmbeddings: true, eosIds: [1, 106],
  maxPositions: 131072, // Gemma3TextConfig(max_position_embeddings=131_072)
  torchDtype: 'bfloat16',
};

function checkSpec(c: Pick<RealCase, 'spec' | 'layerTypes' | 'attnScale' | 'params'>, s: ModelSpec) {
  expect(s).toMatchObject(c.spec);
  expect(s.layerTypes).toEqual(c.layerTypes);
  expect(s.attnScale).toBeCloseTo(c.attnScale, 12);
  expect(parameterCount(s)).toBe(c.params);
}

describe('real configs: parseConfig and parameterCount', () => {
  it.each(CASES.map((c) => [c.id, c] as const))('%s', (_id, c) => {
    const s = parseConfig(fixture(c.file), c.file, c.gen ? fixture(c.gen) : {});
    checkSpec(c, s);
    // parameterCount leaves biases out; the checkpoint has them on top.
    const total = parameterCount(s) + (c.biases ? biasCount(s, c.biases) : 0);
    if (c.exact) expect(total, c.exact.source).toBe(c.exact.value);
    if (c.card) expect(Math.abs(total / c.card.value - 1), c.card.source).toBeLessThan(0.01);
    if (c.card?.nonEmbedding) {
      const embeddings = s.vocab * s.dModel * (s.tiedEmbeddings ? 1 : 2);
      expect(Math.abs((total - embeddings) / c.card.nonEmbedding - 1), c.card.source).toBeLessThan(0.01);
    }
  });

  it('Qwen2.5 biases: q/k/v only (Qwen2Attention: q/k/v bias=True, o_proj bias=False)', () => {
    const s = parseConfig(fixture('Qwen__Qwen2.5-14B-Instruct.json'));
    expect(biasCount(s, /self_attn\.[qkv]_proj\.bias$/)).toBe(48 * (5120 + 1024 + 1024));
    const s05 = parseConfig(fixture('Qwen__Qwen2.5-0.5B-Instruct.json'));
    expect(parameterCount(s05) + biasCount(s05, /self_attn\.[qkv]_proj\.bias$/)).toBe(494_032_768);
  });

  it('Gemma 3 12B text model: 11.77B parameters, 1.0B of them the (tied) embedding', () => {
    const s = parseConfig(fixture('unsloth__gemma-3-12b-it.resaved.json'));
    expect(parameterCount(s) / 1e9).toBeCloseTo(11.77, 2);
    expect(s.vocab * s.dModel).toBe(1_006_878_720);
  });

  // google/gemma-3-12b-it's own config.json names only the text keys that differ from
  // Gemma3TextConfig's defaults; parseConfig fills them in as transformers does.
  it('google/gemma-3-12b-it (official sparse text_config) resolves like transformers', () => {
    const s = parseConfig(fixture('google__gemma-3-12b-it.json'));
    expect(s).toMatchObject(GEMMA3_OFFICIAL);
    expect(s.layerTypes).toEqual(gemma3Types(48));
    expect(s.attnScale).toBeCloseTo(1 / 16, 12);
    expect(parameterCount(s)).toBe(11_766_034_176);
  });
});

// ---------------------------------------------------------------------------------------------
// 2. Tensor names against real safetensors indexes

describe('real configs: expectedTensors against safetensors index weight maps', () => {
  /** Names seen in each index's weight_map (a sample; see SOURCES.md). */
  const LLAMA_INDEX_SAMPLE = [
    'lm_head.weight',
    'model.embed_tokens.weight',
    ...['0', '1', '10', '20', '26'].flatMap((l) =>
      [
        'input_layernorm.weight', 'mlp.down_proj.weight', 'mlp.gate_proj.weight', 'mlp.up_proj.weight',
        'post_attention_layernorm.weight', 'self_attn.k_proj.weight', 'self_attn.o_proj.weight',
        'self_attn.q_proj.weight', 'self_attn.v_proj.weight',
      ].map((t) => `model.layers.${l}.${t}`),
    ),
  ];
  const QWEN_INDEX_LAYER0 = [
    'input_layernorm.weight', 'mlp.down_proj.weight', 'mlp.gate_proj.weight', 'mlp.up_proj.weight',
    'post_attention_layernorm.weight', 'self_attn.k_proj.bias', 'self_attn.k_proj.weight', 'self_attn.o_proj.weight',
    'self_attn.q_proj.bias', 'self_attn.q_proj.weight', 'self_attn.v_proj.bias', 'self_attn.v_proj.weight',
  ].map((t) => `model.layers.0.${t}`);

  const numel = (m: Map<string, number[]>) => [...m.values()].reduce((a, s) => a + s.reduce((x, y) => x * y, 1), 0);

  it('meta-llama/Llama-3.1-8B-Instruct: names and total size (16060522496 BF16 bytes)', () => {
    const s = parseConfig(fixture('meta-llama__Llama-3.1-8B-Instruct.json'));
    const { required, optional } = expectedTensors(s);
    for (const n of LLAMA_INDEX_SAMPLE) expect(required.has(n), n).toBe(true);
    expect(required.get('model.layers.0.self_attn.k_proj.weight')).toEqual([1024, 4096]);
    expect(required.get('model.layers.0.mlp.down_proj.weight')).toEqual([4096, 14336]);
    expect(required.get('lm_head.weight')).toEqual([128256, 4096]);
    // Required tensors alone make up the checkpoint: no biases in Llama 3.1.
    expect(required.size).toBe(3 + 32 * 9);
    expect(numel(required) * 2).toBe(16_060_522_496);
    expect([...optional.keys()].every((n) => n.endsWith('.bias'))).toBe(true);
  });

  it('Qwen/Qwen2.5-14B-Instruct: q/k/v biases, no o_proj bias, total size (29540067328 BF16 bytes)', () => {
    const s = parseConfig(fixture('Qwen__Qwen2.5-14B-Instruct.json'));
    const { required, optional } = expectedTensors(s);
    const all = new Map([...required, ...optional]);
    for (const n of ['lm_head.weight', 'model.embed_tokens.weight', ...QWEN_INDEX_LAYER0]) expect(all.has(n), n).toBe(true);
    expect(all.get('model.layers.0.self_attn.q_proj.bias')).toEqual([5120]);
    expect(all.get('model.layers.0.self_attn.k_proj.bias')).toEqual([1024]);
    expect(all.get('model.layers.0.self_attn.v_proj.bias')).toEqual([1024]);
    // The index's tensors: every required one plus the 3 x 48 q/k/v biases (o_proj has none).
    const inCheckpoint = new Map(required);
    for (const [n, shape] of optional) if (/self_attn\.[qkv]_proj\.bias$/.test(n)) inCheckpoint.set(n, shape);
    expect(inCheckpoint.size).toBe(3 + 48 * 12);
    expect(numel(inCheckpoint) * 2).toBe(29_540_067_328);
  });
});

// ---------------------------------------------------------------------------------------------
// 3. Shrunk real configs: real tensor names, BF16 weights, engine vs reference

interface Shrink {
  layers: number;
  heads: number;
  kv: number;
  /** hidden_size; without a head_dim key head_dim = hidden / heads must come out at 16. */
  hidden: number;
  /** Write head_dim: 16 (only where the real config has the key, or transformers' default is not hidden/heads). */
  headDim?: boolean;
  slidingWindow?: number;
}

/** The real config with only the sizes changed; every flag, rope and window setting kept. */
function shrink(real: Json, o: Shrink): Json {
  const cfg: Json = structuredClone(real);
  const text: Json = cfg.model_type === 'gemma3' ? cfg.text_config : cfg;
  Object.assign(text, {
    num_hidden_layers: o.layers,
    hidden_size: o.hidden,
    intermediate_size: 96,
    num_attention_heads: o.heads,
    num_key_value_heads: o.kv,
    vocab_size: 128,
  });
  if (o.headDim) text.head_dim = 16;
  else expect(o.hidden / o.heads).toBe(16);
  if (o.slidingWindow !== undefined) text.sliding_window = o.slidingWindow;
  if (cfg.vision_config) Object.assign(cfg.vision_config, { hidden_size: 8, intermediate_size: 16, num_hidden_layers: 1, num_attention_heads: 2 });
  return cfg;
}

/** Writes config.json (+ generation_config.json) and BF16 weights; returns the weights as stored. */
function writeCheckpoint(dir: string, config: Json, gen: Json | null, seed: number) {
  const weights = new Map<string, { shape: number[]; data: Float32Array }>();
  const toWrite = new Map<string, { shape: number[]; data: Float32Array; dtype: 'BF16' }>();
  for (const [name, t] of tinyWeights(config, seed)) {
    const data = new Float32Array(t.data.length);
    for (let i = 0; i < data.length; i++) data[i] = bf16ToF32(f32ToBf16(t.data[i]!));
    weights.set(name, { shape: t.shape, data });
    toWrite.set(name, { shape: t.shape, data, dtype: 'BF16' });
  }
  writeFileSync(join(dir, 'config.json'), JSON.stringify(config, null, 2) + '\n');
  if (gen) writeFileSync(join(dir, 'generation_config.json'), JSON.stringify(gen, null, 2) + '\n');
  writeSafetensors(join(dir, 'model.safetensors'), toWrite, { format: 'pt' });
  return weights;
}

interface ShrunkCase {
  name: string;
  file: string;
  gen?: string;
  shrink: Shrink;
  /** Tensor names that must be in the written file (the real checkpoint's naming). */
  names: string[];
  check?: (s: ModelSpec) => void;
}

const SHRUNK: ShrunkCase[] = [
  {
    name: 'Qwen/Qwen2.5-14B-Instruct (GQA 5:1, q/k/v bias, untied)',
    file: 'Qwen__Qwen2.5-14B-Instruct.json',
    gen: 'Qwen__Qwen2.5-14B-Instruct.generation_config.json',
    shrink: { layers: 2, heads: 5, kv: 1, hidden: 80 },
    names: ['model.layers.0.self_attn.q_proj.bias', 'model.layers.1.self_attn.v_proj.bias', 'lm_head.weight'],
    check: (s) => expect(s.eosIds).toEqual([151645, 151643]),
  },
  {
    name: 'Qwen/Qwen2.5-0.5B-Instruct (GQA 7:1, q/k/v bias, tied)',
    file: 'Qwen__Qwen2.5-0.5B-Instruct.json',
    shrink: { layers: 2, heads: 7, kv: 1, hidden: 112 },
    names: ['model.layers.0.self_attn.k_proj.bias', 'model.embed_tokens.weight'],
    check: (s) => expect(s.tiedEmbeddings).toBe(true),
  },
  {
    name: 'meta-llama/Llama-3.1-8B-Instruct (llama3 rope scaling, GQA 4:1)',
    file: 'meta-llama__Llama-3.1-8B-Instruct.json',
    gen: 'meta-llama__Llama-3.1-8B-Instruct.generation_config.json',
    shrink: { layers: 2, heads: 4, kv: 1, hidden: 64 },
    names: ['model.layers.1.mlp.gate_proj.weight', 'lm_head.weight'],
    check: (s) => expect(s.rope.scaling.type).toBe('llama3'),
  },
  {
    name: 'google/gemma-2-9b-it (softcaps 50/30, query_pre_attn_scalar 256, window 4096)',
    file: 'google__gemma-2-9b-it.json',
    shrink: { layers: 2, heads: 4, kv: 2, hidden: 64, headDim: true },
    names: ['model.layers.0.pre_feedforward_layernorm.weight', 'model.layers.1.post_feedforward_layernorm.weight'],
    check: (s) => expect([s.attnSoftcap, s.finalSoftcap, s.attnScale, s.slidingWindow]).toEqual([50, 30, 1 / 16, 4096]),
  },
  {
    name: 'google/gemma-2-9b-it, sliding_window 4 so the even layers\' window binds',
    file: 'google__gemma-2-9b-it.json',
    shrink: { layers: 2, heads: 4, kv: 2, hidden: 64, headDim: true, slidingWindow: 4 },
    names: [],
    check: (s) => expect(s.layerTypes).toEqual(['sliding', 'full']),
  },
  {
    name: 'mistralai/Mistral-7B-Instruct-v0.3 (sliding_window null, GQA 4:1)',
    file: 'mistralai__Mistral-7B-Instruct-v0.3.json',
    shrink: { layers: 2, heads: 4, kv: 1, hidden: 64 },
    names: ['lm_head.weight'],
    check: (s) => expect(s.layerTypes).toEqual(['full', 'full']),
  },
  {
    name: 'Qwen/Qwen3-8B (q/k norm, head_dim key, GQA 4:1)',
    file: 'Qwen__Qwen3-8B.json',
    shrink: { layers: 2, heads: 4, kv: 1, hidden: 64, headDim: true },
    names: ['model.layers.0.self_attn.q_norm.weight', 'model.layers.1.self_attn.k_norm.weight'],
  },
  {
    name: 'google/gemma-3-12b-it re-saved (language_model.model.*, pattern 6, local/global rope)',
    file: 'unsloth__gemma-3-12b-it.resaved.json',
    shrink: { layers: 7, heads: 4, kv: 2, hidden: 64, headDim: true },
    names: ['language_model.model.layers.5.self_attn.q_norm.weight', 'vision_tower.vision_model.embeddings.patch_embedding.weight'],
    check: (s) => {
      expect(s.layerTypes).toEqual(gemma3Types(7));
      expect([s.rope.theta, s.ropeLocal!.theta, s.attnScale]).toEqual([1e6, 1e4, 1 / 16]);
    },
  },
  {
    name: 'google/gemma-3-12b-it re-saved, sliding_window 4 so the local layers\' window binds',
    file: 'unsloth__gemma-3-12b-it.resaved.json',
    shrink: { layers: 7, heads: 4, kv: 2, hidden: 64, headDim: true, slidingWindow: 4 },
    names: [],
  },
];

async function runShrunk(c: Pick<ShrunkCase, 'file' | 'gen' | 'shrink' | 'names'>, seed: number) {
  const config = shrink(fixture(c.file), c.shrink);
  const dir = mkdtempSync(join(tmpdir(), 'emlens-real-'));
  const weights = writeCheckpoint(dir, config, c.gen ? fixture(c.gen) : null, seed);
  for (const n of c.names) expect(weights.has(n), n).toBe(true);
  const model = await LoadedModel.load(dir);
  const ids = seqIds(13, 128, seed + 1);
  const r = await model.engine.forward({ ids: [ids], logits: 'all' });
  const ref = referenceForward(config, weights, ids);
  return { model, err: maxRelErr(r.logits!, ref.logits) };
}

describe('shrunk real configs: BF16 checkpoint under the real tensor names, engine vs reference', () => {
  it.each(SHRUNK.map((c, i) => [c.name, c, i] as const))('%s', async (_n, c, i) => {
    const { model, err } = await runShrunk(c, 100 + i);
    expect(model.spec.torchDtype).toBe('bfloat16');
    expect(model.spec.vocab).toBe(128);
    c.check?.(model.spec);
    expect(err).toBeLessThan(2e-5);
  });

  // The official sparse text_config, shrunk: it names head_dim and vocab_size (the sizes change)
  // but, like the real file, not query_pre_attn_scalar, so transformers scales q.k by 256^-0.5
  // while emlens uses head_dim^-0.5 = 16^-0.5.
  it('google/gemma-3-12b-it official sparse config, shrunk (query_pre_attn_scalar from the default)', async () => {
    const { err } = await runShrunk(
      {
        file: 'google__gemma-3-12b-it.json',
        shrink: { layers: 7, heads: 4, kv: 2, hidden: 64, headDim: true },
        names: ['language_model.model.layers.0.self_attn.k_norm.weight'],
      },
      200,
    );
    expect(err).toBeLessThan(2e-5);
  });
});
