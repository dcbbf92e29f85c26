/**
 * `emlens inspect` prints the memory each mode needs (fp32 in memory, memory-bounded extraction,
 * int8 and int4 weights) for the real configs of the papers' models. Each model folder is the real
 * config.json plus a sparse model.safetensors whose header names every tensor of the real
 * checkpoint with its shape (BF16; the data section is a hole, so no weights are written).
 * Expected figures are computed here from the published sizes, not from the code: parameter
 * counts per projection and per norm, MatMulNBits' packing (32 weights a block at int8, 64 at
 * int4, an fp32 scale and a bits-wide zero point each).
 */
import { spawnSync } from 'node:child_process';
import { closeSync, mkdtempSync, openSync, readFileSync, truncateSync, writeFileSync, writeSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join, resolve } from 'node:path';
import { describe, expect, it } from 'vitest';

const ROOT = resolve(__dirname, '../..');
const FIXTURES = join(ROOT, 'test/fixtures/configs');
const MiB = 2 ** 20;

interface Sizes {
  file: string;
  L: number;
  D: number;
  H: number;
  KV: number;
  hd: number;
  F: number;
  V: number;
  tied: boolean;
  /** Tensor name prefix of the text model in the file. */
  prefix: string;
  qkvBias: boolean;
  /** Gemma: pre/post feed-forward norms and q/k norms. */
  gemma: boolean;
}

// Published sizes (config.json; Gemma 3's text_config omits transformers' defaults: head_dim 256,
// vocab 262208, tied embeddings).
const MODELS: Sizes[] = [
  { file: 'Qwen__Qwen2.5-14B-Instruct.json', L: 48, D: 5120, H: 40, KV: 8, hd: 128, F: 13824, V: 152064, tied: false, prefix: 'model.', qkvBias: true, gemma: false },
  { file: 'meta-llama__Llama-3.1-8B-Instruct.json', L: 32, D: 4096, H: 32, KV: 8, hd: 128, F: 14336, V: 128256, tied: false, prefix: 'model.', qkvBias: false, gemma: false },
  { file: 'google__gemma-3-12b-it.json', L: 48, D: 3840, H: 16, KV: 8, hd: 256, F: 15360, V: 262208, tied: true, prefix: 'language_model.model.', qkvBias: false, gemma: true },
];

/** The checkpoint's tensors: name -> shape, as the real safetensors index lists them. */
function tensorsOf(m: Sizes): [string, number[]][] {
  const t: [string, number[]][] = [[`${m.prefix}embed_tokens.weight`, [m.V, m.D]]];
  const q = m.H * m.hd;
  const kv = m.KV * m.hd;
  for (let l = 0; l < m.L; l++) {
    const p = `${m.prefix}layers.${l}.`;
    t.push([`${p}input_layernorm.weight`, [m.D]], [`${p}post_attention_layernorm.weight`, [m.D]]);
    if (m.gemma) t.push([`${p}pre_feedforward_layernorm.weight`, [m.D]], [`${p}post_feedforward_layernorm.weight`, [m.D]], [`${p}self_attn.q_norm.weight`, [m.hd]], [`${p}self_attn.k_norm.weight`, [m.hd]]);
    t.push([`${p}self_attn.q_proj.weight`, [q, m.D]], [`${p}self_attn.k_proj.weight`, [kv, m.D]], [`${p}self_attn.v_proj.weight`, [kv, m.D]], [`${p}self_attn.o_proj.weight`, [m.D, q]]);
    if (m.qkvBias) t.push([`${p}self_attn.q_proj.bias`, [q]], [`${p}self_attn.k_proj.bias`, [kv]], [`${p}self_attn.v_proj.bias`, [kv]]);
    t.push([`${p}mlp.gate_proj.weight`, [m.F, m.D]], [`${p}mlp.up_proj.weight`, [m.F, m.D]], [`${p}mlp.down_proj.weight`, [m.D, m.F]]);
  }
  t.push([`${m.prefix}norm.weight`, [m.D]]);
  if (!m.tied) t.push(['lm_head.weight', [m.V, m.D]]);
  return t;
}

/** A safetensors file whose data section is a hole of the right size (tens of GB, no blocks used). */
function writeSparseSafetensors(file: string, tensors: [string, number[]][]): void {
  const header: Record<string, unknown> = { __metadata__: { format: 'pt' } };
  let off = 0;
  for (const [name, shape] of tensors) {
    const bytes = 2 * shape.reduce((a, b) => a * b, 1);
    header[name] = { dtype: 'BF16', shape, data_offsets: [off, off + bytes] };
    off += bytes;
  }
  let json = JSON.stringify(header);
  json += ' '.repeat((8 - (json.length % 8)) % 8);
  const len = Buffer.alloc(8);
  len.writeBigUInt64LE(BigInt(json.length));
  const fd = openSync(file, 'w');
  writeSync(fd, len);
  writeSync(fd, Buffer.from(json));
  closeSync(fd);
  truncateSync(file, 8 + json.length + off);
}

/** The figures from the sizes: fp32 weights, quantised weights, the bounded extraction peak. */
function expected(m: Sizes) {
  const q = m.H * m.hd;
  const kv = m.KV * m.hd;
  // Parameters of the seven projections of one block, of the embedding table, of the LM head
  // when untied, and of what stays fp32 (norms, biases).
  const proj = m.D * q + 2 * m.D * kv + q * m.D + 3 * m.D * m.F;
  const embed = m.V * m.D;
  const head = m.tied ? 0 : m.V * m.D;
  const perLayerRest = 2 * m.D + (m.gemma ? 2 * m.D + 2 * m.hd : 0) + (m.qkvBias ? q + 2 * kv : 0);
  const rest = m.L * perLayerRest + m.D;
  // Every projection's input width is a multiple of 128: no padding of the last block, and an
  // even number of int4 blocks (zero points pack two a byte with no half-empty last byte).
  for (const w of [m.D, q, m.F]) expect(w % 128).toBe(0);
  // The quantised store: the projections and an LM head (quantised from the embedding table when
  // tied), the embedding table in its BF16 (2 bytes a value), norms and biases as fp32.
  const quantised = m.L * proj + m.V * m.D;
  const quant = (bits: number, block: number) => 4 * rest + 2 * embed + quantised * (bits / 8 + 4 / block + bits / 8 / block);
  // Bounded: 256 MiB of runtime; the default chunk's pooled outputs (about 64 MiB, at most 1024
  // rows) for every layer; ORT's working memory for 8 rows x 512 tokens; a batch's residual in and
  // out, its capture, four more batch-sized outputs awaiting garbage collection, and the whole
  // chunk's residuals; one layer's fp32 weights.
  const chunkRows = Math.min(1024, Math.floor((64 * MiB) / (m.L * m.D * 4)));
  const B = 8;
  const T = 512;
  const N = B * T;
  const work = 4 * (N * (4 * m.F + 6 * m.D + 4 * q + 4 * kv) + 2 * B * m.H * T * T + N * m.hd * 2 * (m.gemma ? 2 : 1) + B * T * T * (m.gemma ? 2 : 1));
  const batchResid = 4 * N * m.D;
  const chunkResid = 4 * chunkRows * T * m.D;
  const layer = 4 * (proj + perLayerRest);
  const bounded = 256 * MiB + chunkRows * m.L * m.D * 4 + work + 7 * batchResid + chunkResid + layer;
  return { fp32: 4 * (m.L * proj + head + embed + rest), int8: quant(8, 32), int4: quant(4, 64), bounded, layer };
}

describe('inspect: memory per mode on the real configs', () => {
  it.each(MODELS)('$file', (m) => {
    const dir = mkdtempSync(join(tmpdir(), 'emlens-mem-'));
    writeFileSync(join(dir, 'config.json'), readFileSync(join(FIXTURES, m.file)));
    writeSparseSafetensors(join(dir, 'model.safetensors'), tensorsOf(m));
    const bin = join(ROOT, 'dist/cli/main.js');
    const r = spawnSync(process.execPath, [bin, 'inspect', dir, '--json'], { encoding: 'utf8' });
    expect(r.status, r.stderr).toBe(0);
    const d = JSON.parse(r.stdout);
    const e = expected(m);
    expect(d.fp32_memory_bytes).toBe(e.fp32);
    expect(d.int8_memory_bytes).toBe(e.int8);
    expect(d.int4_memory_bytes).toBe(e.int4);
    expect(d.bounded_memory_bytes).toBe(e.bounded);
    // What the figures mean: int4 under a third of fp32 and int8 about half or less of it; the
    // bounded run holds one layer, far below the whole model.
    expect(d.int4_memory_bytes / d.fp32_memory_bytes).toBeLessThan(0.35);
    expect(d.int8_memory_bytes / d.fp32_memory_bytes).toBeLessThan(0.5);
    expect(d.bounded_memory_bytes).toBeLessThan(d.fp32_memory_bytes / 4);
    const text = spawnSync(process.execPath, [bin, 'inspect', dir], { encoding: 'utf8' });
    expect(text.status, text.stderr).toBe(0);
    const gib = (n: number) => (n / 2 ** 30).toFixed(3);
    expect(text.stdout).toContain(`fp32_memory        ${gib(e.fp32)} GiB`);
    expect(text.stdout).toMatch(new RegExp(`bounded_memory +${gib(e.bounded)} GiB \\(extract, every layer, one layer in memory at a time`));
    expect(text.stdout).toMatch(new RegExp(`int8_memory +${gib(e.int8)} GiB \\(weights, --weights int8\\)`));
    expect(text.stdout).toMatch(new RegExp(`int4_memory +${gib(e.int4)} GiB \\(weights, --weights int4\\)`));
  });
});
