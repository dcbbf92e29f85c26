/**
 * A Qwen2.5-7B-shaped checkpoint with random BF16 weights on disk (about 15 GB), written once into
 * emlens's cache and reused: the large-model benchmark sections (memory-bounded extraction,
 * quantised decode) read it as a real model folder. Written shard by shard, each shard's tensors
 * generated just before it is written, so the writer itself stays near one shard of memory.
 */
import { existsSync, mkdirSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { emlensCacheDir } from '../src/cache.js';
import { parseConfig, type ModelSpec } from '../src/model/config.js';
import { expectedTensors } from '../src/model/tensor-names.js';
import { writeSafetensors, type StWriteTensor } from '../src/io/safetensors/write.js';
import { writeFileAtomic } from '../src/io/atomic.js';
import { fillGaussianTiled, rng } from '../src/runtime/random.js';
import { log, TILE } from './util.js';

/** Qwen2.5-7B-Instruct's config.json shape (sizes as published). */
export const QWEN25_7B_CONFIG = {
  architectures: ['Qwen2ForCausalLM'],
  model_type: 'qwen2',
  hidden_size: 3584,
  intermediate_size: 18944,
  num_hidden_layers: 28,
  num_attention_heads: 28,
  num_key_value_heads: 4,
  vocab_size: 152064,
  max_position_embeddings: 32768,
  rms_norm_eps: 1e-6,
  rope_theta: 1000000.0,
  hidden_act: 'silu',
  tie_word_embeddings: false,
  use_sliding_window: false,
  sliding_window: 131072,
  max_window_layers: 28,
  bos_token_id: 151643,
  eos_token_id: 151645,
  torch_dtype: 'bfloat16',
};

/** Bumped when the written files would differ: a stale folder is rewritten. */
const WRITER_VERSION = 1;
const SHARD_BYTES = 1 << 30;

export interface BigCheckpoint {
  dir: string;
  spec: ModelSpec;
  /** Parameters in the checkpoint. */
  params: number;
  /** What the same weights take as fp32 in memory. */
  fp32Bytes: number;
}

/**
 * The folder (config.json, model-0000i-of-0000n.safetensors, the index), written if missing or
 * stale. Tensors are N(0, 0.02²) from one seeded generator, tiled (timings do not depend on the
 * values), norms at 1, the q/k/v biases Qwen2 has.
 */
export function qwen7bCheckpoint(root = join(emlensCacheDir(), 'bench')): BigCheckpoint {
  const dir = join(root, 'qwen2.5-7b-shaped-random-bf16');
  const spec = parseConfig(QWEN25_7B_CONFIG, 'bench 7B config.json');
  const { required, optional } = expectedTensors(spec);
  const tensors: [string, number[]][] = [...required];
  for (const [name, shape] of optional) if (/(q|k|v)_proj\.bias$/.test(name)) tensors.push([name, shape]);
  const params = tensors.reduce((a, [, s]) => a + s.reduce((x, y) => x * y, 1), 0);
  const result = { dir, spec, params, fp32Bytes: params * 4 };
  const marker = join(dir, 'emlens_bench.json');
  const key = JSON.stringify({ WRITER_VERSION, config: QWEN25_7B_CONFIG });
  if (existsSync(marker) && readFileSync(marker, 'utf8') === key) return result;

  rmSync(dir, { recursive: true, force: true });
  mkdirSync(dir, { recursive: true });
  log(`writing a Qwen2.5-7B-shaped random BF16 checkpoint (${(params * 2 / 2 ** 30).toFixed(1)} GiB) to ${dir}`);
  const shards: [string, number[]][][] = [[]];
  let bytes = 0;
  for (const t of tensors) {
    const b = t[1].reduce((x, y) => x * y, 1) * 2;
    if (bytes > 0 && bytes + b > SHARD_BYTES) {
      shards.push([]);
      bytes = 0;
    }
    shards[shards.length - 1]!.push(t);
    bytes += b;
  }
  const random = rng(7);
  const n = shards.length;
  const shardName = (i: number) => `model-${String(i + 1).padStart(5, '0')}-of-${String(n).padStart(5, '0')}.safetensors`;
  const weightMap: Record<string, string> = {};
  shards.forEach((group, i) => {
    const out = new Map<string, StWriteTensor>();
    for (const [name, shape] of group) {
      const data = new Float32Array(shape.reduce((x, y) => x * y, 1));
      if (name.endsWith('norm.weight')) data.fill(1);
      else fillGaussianTiled(data, random, 0.02, TILE);
      out.set(name, { shape, data, dtype: 'BF16' });
      weightMap[name] = shardName(i);
    }
    writeSafetensors(join(dir, shardName(i)), out, { format: 'pt' });
    log(`  shard ${i + 1}/${n}`);
  });
  writeFileAtomic(join(dir, 'model.safetensors.index.json'), JSON.stringify({ metadata: { total_size: params * 2 }, weight_map: weightMap }, null, 2));
  writeFileSync(join(dir, 'config.json'), JSON.stringify(QWEN25_7B_CONFIG, null, 2));
  writeFileAtomic(marker, key);
  return result;
}
