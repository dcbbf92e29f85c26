/**
 * One direction loader for every format, detected by content: safetensors, llama.cpp control
 * vector (GGUF) and .npy + sidecar give the same layers, and every format gets the same checks
 * (finite values, one width, valid layer lists, the model's d_model and layer count), each
 * refusal one line naming the file and the tensor, row or layer.
 *
 * Bad GGUF files are built here byte by byte from the GGUF v3 layout (magic, version, counts,
 * KVs, tensor infos, 32-aligned data), independently of the writer under test.
 */
import { mkdirSync, mkdtempSync, readFileSync, rmSync, writeFileSync, copyFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, describe, expect, it } from 'vitest';
import { EmlensError } from '../../src/errors.js';
import { readDirectionFile, writeDirectionFile } from '../../src/io/directions.js';
import { writeControlVectorGguf } from '../../src/io/gguf.js';
import { NPY_SIDECAR_SUFFIX, writeDirectionsNpy, writeNpy } from '../../src/io/npy.js';

const tmp = mkdtempSync(join(tmpdir(), 'emlens-dirio-'));
afterAll(() => rmSync(tmp, { recursive: true, force: true }));
let seq = 0;
const path = (name: string) => {
  const d = join(tmp, `d${seq++}`);
  mkdirSync(d);
  return join(d, name);
};

function errorOf(fn: () => unknown): string {
  try {
    fn();
  } catch (e) {
    expect(e).toBeInstanceOf(EmlensError);
    const m = (e as Error).message;
    expect(m).not.toContain('\n');
    return m;
  }
  throw new Error('expected an error');
}

const D = 6;
const vec = (seed: number) => Float32Array.from({ length: D }, (_, i) => Math.fround(Math.sin(seed * 10 + i) * 3));
const LAYERS = new Map([[1, vec(1)], [2, vec(2)], [4, vec(4)]]);

/** GGUF v3 bytes: string KVs, then 1-D or n-D F32 tensors, data 32-aligned (the spec's default). */
function ggufBytes(kv: Record<string, string>, tensors: { name: string; dims: number[]; data: Float32Array; type?: number }[]): Buffer {
  const parts: Buffer[] = [];
  const u32 = (v: number) => { const b = Buffer.alloc(4); b.writeUInt32LE(v); parts.push(b); };
  const u64 = (v: number) => { const b = Buffer.alloc(8); b.writeBigUInt64LE(BigInt(v)); parts.push(b); };
  const str = (s: string) => { u64(Buffer.byteLength(s)); parts.push(Buffer.from(s)); };
  parts.push(Buffer.from('GGUF', 'latin1'));
  u32(3);
  u64(tensors.length);
  u64(Object.keys(kv).length);
  for (const [k, v] of Object.entries(kv)) { str(k); u32(8); str(v); }
  let off = 0;
  const offsets: number[] = [];
  for (const t of tensors) {
    str(t.name);
    u32(t.dims.length);
    for (const d of t.dims) u64(d);
    u32(t.type ?? 0);
    u64(off);
    offsets.push(off);
    off += Math.ceil((t.data.length * 4) / 32) * 32;
  }
  let head = Buffer.concat(parts);
  head = Buffer.concat([head, Buffer.alloc((32 - (head.length % 32)) % 32)]);
  const data = Buffer.alloc(off);
  tensors.forEach((t, i) => t.data.forEach((x, k) => data.writeFloatLE(x, offsets[i]! + 4 * k)));
  return Buffer.concat([head, data]);
}
const CV = { 'general.architecture': 'controlvector', 'controlvector.model_hint': 'llama' };

describe('readDirectionFile: one loader, format by content', () => {
  it('safetensors, GGUF and npy give the same layers; the extension does not matter', () => {
    const st = path('d.safetensors');
    writeDirectionFile(st, LAYERS, { method: 'm' });
    const gg = path('d.gguf');
    writeControlVectorGguf(gg, LAYERS, { modelHint: 'llama', metadata: { 'emlens.method': 'm' } });
    const np = path('d.npy');
    writeDirectionsNpy(np, LAYERS, { method: 'm' });
    for (const [file, format] of [[st, 'safetensors'], [gg, 'gguf'], [np, 'npy']] as const) {
      const f = readDirectionFile(file, { dModel: D, nLayers: 5 });
      expect(f.format).toBe(format);
      expect(f.kind).toBe('resid_post');
      expect(f.metadata.method).toBe('m');
      expect([...f.layers.keys()].sort()).toEqual([1, 2, 4]);
      for (const [l, v] of LAYERS) expect([...f.layers.get(l)!]).toEqual([...v]);
    }
    // A GGUF named .safetensors is still read as GGUF.
    const renamed = path('cv.safetensors');
    copyFileSync(gg, renamed);
    expect(readDirectionFile(renamed).format).toBe('gguf');
  });

  it('a folder, a missing file and a file of no known format are one line each', () => {
    const dir = join(tmp, 'a-folder');
    mkdirSync(dir);
    expect(errorOf(() => readDirectionFile(dir))).toMatch(/a-folder: is a folder, not a direction file/);
    expect(errorOf(() => readDirectionFile(join(tmp, 'nope.gguf')))).toMatch(/nope\.gguf: no such direction file/);
    const text = path('notes.safetensors');
    writeFileSync(text, 'just some text, long enough to have a length field\n');
    expect(errorOf(() => readDirectionFile(text))).toMatch(/notes\.safetensors: not a direction file: .*safetensors.*GGUF.*\.npy/);
    const tiny = path('tiny.npy');
    writeFileSync(tiny, 'ab');
    expect(errorOf(() => readDirectionFile(tiny))).toMatch(/tiny\.npy: not a direction file/);
  });
});

describe('every format gets the same checks', () => {
  it('NaN and Inf are refused in each format, naming file, layer and index', () => {
    const bad = new Map(LAYERS);
    const v = vec(2);
    v[3] = NaN;
    bad.set(2, v);
    const st = path('nan.safetensors');
    writeDirectionFile(st, bad, {});
    expect(errorOf(() => readDirectionFile(st))).toMatch(/nan\.safetensors: .*blocks\.2\.hook_resid_post.*index 3.*NaN/);
    const np = path('nan.npy');
    writeDirectionsNpy(np, bad, {});
    expect(errorOf(() => readDirectionFile(np))).toMatch(/nan\.npy: row 1 \(layer 2\).*index 3.*NaN/);
    const inf = vec(4);
    inf[5] = -Infinity;
    const gg = path('inf.gguf');
    writeFileSync(gg, ggufBytes(CV, [{ name: 'direction.1', dims: [D], data: vec(1) }, { name: 'direction.4', dims: [D], data: inf }]));
    expect(errorOf(() => readDirectionFile(gg))).toMatch(/inf\.gguf: tensor direction\.4 \(layer 4\).*index 5.*-Infinity/);
  });

  it('npy sidecar layers: duplicates, non-integers, negatives, wrong count are refused', () => {
    const np = path('s.npy');
    writeNpy(np, new Float32Array(4 * D).fill(1), [4, D]);
    const side = (layers: unknown) => writeFileSync(np + NPY_SIDECAR_SUFFIX, JSON.stringify({ format: 'emlens.directions.npy', version: 1, hook: 'resid_post', layers }));
    side([0, 0, 1, 2]);
    expect(errorOf(() => readDirectionFile(np))).toMatch(/s\.npy\.layers\.json: "layers" lists layer 0 twice \(entries 0 and 1\)/);
    side([0, 1.5, 2, 3]);
    expect(errorOf(() => readDirectionFile(np))).toMatch(/s\.npy\.layers\.json: "layers" entry 1 is 1\.5, not a layer index/);
    side([0, -1, 2, 3]);
    expect(errorOf(() => readDirectionFile(np))).toMatch(/s\.npy\.layers\.json: "layers" entry 1 is -1, not a layer index/);
    side([0, '1', 2, 3]);
    expect(errorOf(() => readDirectionFile(np))).toMatch(/"layers" entry 1 is "1", not a layer index/);
    side([0, 1, 2]);
    expect(errorOf(() => readDirectionFile(np))).toMatch(/s\.npy: the array has 4 rows but s\.npy\.layers\.json lists 3 layers/);
    side([0, 1, 2, 3]);
    expect(readDirectionFile(np).layers.size).toBe(4);
    // Not a [layers, d_model] array.
    writeNpy(np, new Float32Array(4 * D), [4 * D]);
    expect(errorOf(() => readDirectionFile(np))).toMatch(/s\.npy: array shape \[24\] is not \[layers, d_model\]/);
    writeNpy(np, new Float32Array(4 * D), [4, 2, 3]);
    expect(errorOf(() => readDirectionFile(np))).toMatch(/s\.npy: array shape \[4,2,3\] is not \[layers, d_model\]/);
  });

  it('GGUF shapes: 2-D tensors, widths that differ and empty vectors are refused', () => {
    const two = path('two.gguf');
    writeFileSync(two, ggufBytes(CV, [{ name: 'direction.1', dims: [D, 2], data: new Float32Array(2 * D) }]));
    expect(errorOf(() => readDirectionFile(two))).toMatch(/two\.gguf: tensor direction\.1 has shape \[6,2\], expected 1-D/);
    const mixed = path('mixed.gguf');
    writeFileSync(mixed, ggufBytes(CV, [{ name: 'direction.1', dims: [D], data: vec(1) }, { name: 'direction.3', dims: [D + 1], data: new Float32Array(D + 1) }]));
    expect(errorOf(() => readDirectionFile(mixed))).toMatch(/mixed\.gguf: .*layer 3 has width 7, layer 1 has 6/);
    const empty = path('empty.gguf');
    writeFileSync(empty, ggufBytes(CV, [{ name: 'direction.1', dims: [0], data: new Float32Array(0) }]));
    expect(errorOf(() => readDirectionFile(empty))).toMatch(/empty\.gguf: tensor direction\.1 \(layer 1\) is empty/);
    const other = path('model.gguf');
    writeFileSync(other, ggufBytes({ 'general.architecture': 'llama' }, [{ name: 'direction.1', dims: [D], data: vec(1) }]));
    expect(errorOf(() => readDirectionFile(other))).toMatch(/model\.gguf: GGUF general\.architecture is "llama", not a control vector/);
  });

  it('safetensors widths that differ are refused even without a model', () => {
    const st = path('mixed.safetensors');
    writeDirectionFile(st, new Map([[1, vec(1)], [3, new Float32Array(D + 2).fill(1)]]), {});
    expect(errorOf(() => readDirectionFile(st))).toMatch(/mixed\.safetensors: .*layer 3 has width 8, layer 1 has 6/);
  });

  it("the model's d_model and layer count apply to every format", () => {
    const np = path('w.npy');
    writeDirectionsNpy(np, LAYERS, {});
    expect(errorOf(() => readDirectionFile(np, { dModel: D + 1, nLayers: 8 }))).toMatch(/w\.npy: row 0 \(layer 1\) has width 6, the model's d_model is 7/);
    expect(errorOf(() => readDirectionFile(np, { dModel: D, nLayers: 4 }))).toMatch(/w\.npy: .*layer 4, the model has 4 layers/);
    const gg = path('w.gguf');
    writeControlVectorGguf(gg, LAYERS, { modelHint: 'llama' });
    expect(errorOf(() => readDirectionFile(gg, { dModel: D + 1, nLayers: 8 }))).toMatch(/w\.gguf: tensor direction\.1 \(layer 1\) has width 6, the model's d_model is 7/);
    expect(errorOf(() => readDirectionFile(gg, { dModel: D, nLayers: 3 }))).toMatch(/w\.gguf: .*layer 4, the model has 3 layers/);
  });
});

// Keeps the fixture bytes honest: the hand-built GGUF of good vectors reads back exactly.
it('the hand-built GGUF fixture reads back', () => {
  const ok = path('ok.gguf');
  writeFileSync(ok, ggufBytes(CV, [{ name: 'direction.2', dims: [D], data: vec(2) }]));
  expect([...readDirectionFile(ok).layers.get(2)!]).toEqual([...vec(2)]);
  expect(readFileSync(ok).subarray(0, 4).toString('latin1')).toBe('GGUF');
});
