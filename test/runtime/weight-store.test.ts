/**
 * The decode weight store: its file holds each tensor where the manifest says (quantised ones as
 * quantizeMatrix gives them, the rest as fp32), a second open reuses the cache, and what a killed
 * writer left behind is removed while a live writer's folder is kept.
 */
import { spawnSync } from 'node:child_process';
import { existsSync, mkdirSync, mkdtempSync, readFileSync, rmSync, statSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { loadSpec } from '../../src/model/config.js';
import { openWeightStore, type StoreSource } from '../../src/runtime/weight-store.js';
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

function source(): StoreSource {
  const dir = mkdtempSync(join(tmpdir(), 'emlens-store-'));
  const { weights } = writeTinyCheckpoint(dir, 'llama');
  return { spec: loadSpec(dir), shapes: new Map([...weights].map(([k, w]) => [k, w.shape])), read: (n) => weights.get(n)!.data };
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
    const q = quantizeMatrix(src.read(w), N!, K!, 4, 32);
    expect(bytes(`${w}.q`)).toEqual(q.B);
    expect(new Float32Array(bytes(`${w}.scales`).slice().buffer)).toEqual(q.scales);
    expect(bytes(`${w}.zero_points`)).toEqual(q.zeroPoints);
    const norm = 'model.layers.0.input_layernorm.weight';
    expect(new Float32Array(bytes(norm).slice().buffer)).toEqual(src.read(norm));
    // The untied head is stored quantised only, under lm_head.weight.*.
    expect(d.external.has('lm_head.weight')).toBe(false);
    expect(d.external.has('lm_head.weight.q')).toBe(true);
    expect(d.projections).toEqual({ bits: 4, blockSize: 32, accuracyLevel: 4, head: true });
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
