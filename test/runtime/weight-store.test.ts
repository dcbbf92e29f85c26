/**
 * The decode weight store: its file holds each tensor where the manifest says (quantised ones as
 * quantizeMatrix gives them, the rest as fp32; in a quantised mode the embedding table of a BF16
 * or F16 checkpoint in that 16-bit type), a second open reuses the cache, and what a killed
 * writer left behind is removed while a live writer's folder is kept.
 */
import { spawnSync } from 'node:child_process';
import { existsSync, mkdirSync, mkdtempSync, readFileSync, rmSync, statSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { loadSpec } from '../../src/model/config.js';
import { openWeightStore, withHeadRows, type StoreSource } from '../../src/runtime/weight-store.js';
import { quantizeMatrix } from '../../src/runtime/quantize.js';
import { writeTinyCheckpoint } from '../helpers/tiny-checkpoints.js';

const before = process.env.EMLENS_CACHE;
beforeAll(() => {
  process.env.EMLENS_CACHE = mkdtempSync(join(tmpdir(), 'emlens-store-cache-'));
});
afterAll(() => {
  if (before === undefined) delete process.env.EMLENS_CACHE;
  else process.env.EMLENS_CACHE = before;
});

function source(dtype: 'F32' | 'BF16' | 'F16' = 'F32'): StoreSource {
  const dir = mkdtempSync(join(tmpdir(), 'emlens-store-'));
  const { weights } = writeTinyCheckpoint(dir, 'llama', { dtype });
  return { spec: loadSpec(dir), shapes: new Map([...weights].map(([k, w]) => [k, w.shape])), read: (n) => weights.get(n)!.data };
}

/** A bf16 bit pattern's value: the top half of an fp32 pattern. */
function bf16Value(h: number): number {
  return new Float32Array(new Uint32Array([h << 16]).buffer)[0]!;
}

/** An IEEE half's value, from its fields (1 sign, 5 exponent with bias 15, 10 fraction bits). */
function f16Value(h: number): number {
  const sign = h & 0x8000 ? -1 : 1;
  const e = (h >> 10) & 0x1f;
  const f = h & 0x3ff;
  if (e === 0x1f) return f ? NaN : sign * Infinity;
  return e === 0 ? sign * f * 2 ** -24 : sign * (1 + f / 1024) * 2 ** (e - 15);
}

const EMBED = 'model.embed_tokens.weight';
/** int4's block size along the input, as the README documents it. */
const B4 = 64;

function manifestEntry(dir: string, name: string): { dtype: string; shape: number[]; length: number } {
  return JSON.parse(readFileSync(join(dir, 'manifest.json'), 'utf8')).entries.find((e: { name: string }) => e.name === name);
}

describe('openWeightStore', () => {
  it('stores each tensor at its manifest offset; quantised ones in MatMulNBits layout', () => {
    const src = source();
    const d = openWeightStore(src, 'int4', 'a'.repeat(64));
    const bin = readFileSync(join(d.dir, 'weights.bin'));
    const bytes = (name: string) => {
      const e = d.external.get(name)!;
      return new Uint8Array(bin.buffer, bin.byteOffset + e.offset, e.length);
    };
    const w = 'model.layers.1.mlp.down_proj.weight';
    const [N, K] = src.shapes.get(w)!;
    const q = quantizeMatrix(src.read(w), N!, K!, 4, B4);
    expect(bytes(`${w}.q`)).toEqual(q.B);
    expect(new Float32Array(bytes(`${w}.scales`).slice().buffer)).toEqual(q.scales);
    expect(bytes(`${w}.zero_points`)).toEqual(q.zeroPoints);
    const norm = 'model.layers.0.input_layernorm.weight';
    expect(new Float32Array(bytes(norm).slice().buffer)).toEqual(src.read(norm));
    // The untied head is stored quantised only, under lm_head.weight.*.
    expect(d.external.has('lm_head.weight')).toBe(false);
    expect(d.external.has('lm_head.weight.q')).toBe(true);
    // The head runs in parts of at most 64 MiB of codes (one part here: a tiny vocabulary).
    const [V, D] = src.shapes.get('lm_head.weight')!;
    expect(d.projections).toEqual({ bits: 4, blockSize: B4, accuracyLevel: 4, head: true, headRows: Math.floor((64 << 20) / (Math.ceil(D! / B4) * (B4 / 2))) });
    // Parts of 5 rows: each part's initializers are those rows of the quantised head, in place.
    const h = quantizeMatrix(src.read('lm_head.weight'), V!, D!, 4, B4);
    const blocks = Math.ceil(D! / B4);
    const parts = withHeadRows(d, 5);
    expect(parts.projections!.headRows).toBe(5);
    for (let n0 = 0; n0 < V!; n0 += 5) {
      const n1 = Math.min(V!, n0 + 5);
      const at = (k: string) => {
        const e = parts.external.get(`lm_head.weight.rows${n0}.${k}`)!;
        return new Uint8Array(bin.buffer, bin.byteOffset + e.offset, e.length);
      };
      expect(at('q')).toEqual(h.B.subarray(n0 * blocks * (B4 / 2), n1 * blocks * (B4 / 2)));
      expect(new Float32Array(at('scales').slice().buffer)).toEqual(h.scales.subarray(n0 * blocks, n1 * blocks));
      expect(at('zero_points')).toEqual(h.zeroPoints.subarray(n0 * Math.ceil(blocks / 2), n1 * Math.ceil(blocks / 2)));
    }
    expect(parts.external.has(`lm_head.weight.rows${5 * Math.ceil(V! / 5)}.q`)).toBe(false);
  });

  it.each([
    ['BF16', 'int4', 'bfloat16', bf16Value],
    ['F16', 'int8', 'float16', f16Value],
  ] as const)('keeps a %s checkpoint\'s embedding table in 16 bits (%s): the same values, half the bytes', (dtype, mode, stored, value) => {
    const src = source(dtype);
    const d = openWeightStore(src, mode, null);
    const w = src.read(EMBED);
    const e = manifestEntry(d.dir, EMBED);
    expect(e).toMatchObject({ dtype: stored, shape: src.shapes.get(EMBED), length: 2 * w.length });
    expect(d.projections!.embedDtype).toBe(stored);
    const x = d.external.get(EMBED)!;
    const bin = readFileSync(join(d.dir, 'weights.bin'));
    const h = new Uint16Array(bin.buffer.slice(bin.byteOffset + x.offset, bin.byteOffset + x.offset + x.length));
    expect(h.length).toBe(w.length);
    let differ = 0;
    for (let i = 0; i < w.length; i++) if (value(h[i]!) !== w[i]) differ++;
    expect(differ).toBe(0);
    // Everything else is as before: a norm as fp32, the head quantised.
    expect(manifestEntry(d.dir, 'model.norm.weight').dtype).toBe('float32');
    expect(d.external.has('lm_head.weight.q')).toBe(true);
  });

  it('keeps an embedding table fp32 where 16 bits would round it, and in mode fp32', () => {
    const f32 = source('F32');
    const q = openWeightStore(f32, 'int4', null);
    expect(manifestEntry(q.dir, EMBED)).toMatchObject({ dtype: 'float32', length: 4 * f32.read(EMBED).length });
    expect(q.projections!.embedDtype).toBeUndefined();
    const x = q.external.get(EMBED)!;
    const bin = readFileSync(join(q.dir, 'weights.bin'));
    expect(new Float32Array(bin.buffer.slice(bin.byteOffset + x.offset, bin.byteOffset + x.offset + x.length))).toEqual(f32.read(EMBED));
    const bf = source('BF16');
    const p = openWeightStore(bf, 'fp32', null);
    expect(manifestEntry(p.dir, EMBED)).toMatchObject({ dtype: 'float32', length: 4 * bf.read(EMBED).length });
  });

  it('reuses the cached store; removes a dead writer\'s folder, keeps a live one\'s', () => {
    const src = source();
    const key = 'b'.repeat(64);
    const d = openWeightStore(src, 'int8', key);
    const mtime = statSync(join(d.dir, 'manifest.json')).mtimeMs;
    expect(openWeightStore({ ...src, read: () => { throw new Error('read again'); } }, 'int8', key).dir).toBe(d.dir);
    expect(statSync(join(d.dir, 'manifest.json')).mtimeMs).toBe(mtime);
    rmSync(d.dir, { recursive: true });
    const dead = spawnSync(process.execPath, ['-e', 'process.stdout.write(String(process.pid))'], { encoding: 'utf8' }).stdout;
    const deadDir = `${d.dir}.${dead}.tmp`;
    const liveDir = `${d.dir}.${process.ppid}.tmp`;
    mkdirSync(deadDir);
    mkdirSync(liveDir);
    openWeightStore(src, 'int8', key);
    expect(existsSync(deadDir)).toBe(false);
    expect(existsSync(liveDir)).toBe(true);
    expect(existsSync(join(d.dir, 'manifest.json'))).toBe(true);
    rmSync(liveDir, { recursive: true });
  });
});
