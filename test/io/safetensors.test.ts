import { describe, expect, it, beforeAll } from 'vitest';
import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import { fileURLToPath } from 'node:url';
import { EmlensError } from '../../src/errors.js';
import { bf16ToF32, f16ToF32, f32ToBf16, f32ToF16 } from '../../src/io/safetensors/dtype.js';
import { readSafetensorsHeader } from '../../src/io/safetensors/header.js';
import { readTensorF32 } from '../../src/io/safetensors/read.js';
import { writeShardedSafetensors } from '../../src/io/safetensors/shards.js';
import { type StWriteTensor, writeSafetensors } from '../../src/io/safetensors/write.js';
import { openWeights } from '../../src/model/weight-files.js';
import { rng } from '../../src/runtime/random.js';

const here = path.dirname(fileURLToPath(import.meta.url));
const realDir = path.resolve(here, '../../../shared/models/aidreams260k');

let tmp: string;
beforeAll(() => {
  tmp = fs.mkdtempSync(os.tmpdir() + '/emlens-st-');
  return () => fs.rmSync(tmp, { recursive: true, force: true });
});

let seq = 0;
function freshDir(): string {
  const d = path.join(tmp, `d${seq++}`);
  fs.mkdirSync(d);
  return d;
}

// ---------------------------------------------------------------------------------------------
// Independent reference conversions: values by arithmetic, rounding by nearest-value search.

function refF16Value(h: number): number {
  const s = h & 0x8000 ? -1 : 1;
  const e = (h >> 10) & 0x1f;
  const m = h & 0x3ff;
  if (e === 0x1f) return m ? NaN : s * Infinity;
  if (e === 0) return s * m * 2 ** -24;
  return s * (1 + m / 1024) * 2 ** (e - 15);
}

function refBf16Value(h: number): number {
  const s = h & 0x8000 ? -1 : 1;
  const e = (h >> 7) & 0xff;
  const m = h & 0x7f;
  if (e === 0xff) return m ? NaN : s * Infinity;
  if (e === 0) return s * m * 2 ** -133;
  return s * (1 + m / 128) * 2 ** (e - 127);
}

/** Non-negative finite values by code, plus the code of +Inf holding the "next binade" value. */
function table(value: (h: number) => number, infCode: number, beyond: number): Float64Array {
  const t = new Float64Array(infCode + 1);
  for (let h = 0; h < infCode; h++) t[h] = value(h);
  t[infCode] = beyond;
  return t;
}
const F16_TABLE = table(refF16Value, 0x7c00, 65536);
const BF16_TABLE = table(refBf16Value, 0x7f80, 2 ** 128);

/** Nearest representable (ties to even code), IEEE overflow; returns a code, or -1 for NaN. */
function refRound(x0: number, t: Float64Array): number {
  const x = Math.fround(x0);
  if (Number.isNaN(x)) return -1;
  const sign = x < 0 || Object.is(x, -0) ? 0x8000 : 0;
  const a = Math.abs(x);
  const inf = t.length - 1;
  if (a >= t[inf]!) return sign | inf;
  let lo = 0;
  let hi = inf; // t[lo] <= a < t[hi]
  while (hi - lo > 1) {
    const mid = (lo + hi) >> 1;
    if (t[mid]! <= a) lo = mid;
    else hi = mid;
  }
  const dlo = a - t[lo]!;
  const dhi = t[hi]! - a;
  const code = dlo < dhi ? lo : dhi < dlo ? hi : lo % 2 === 0 ? lo : hi;
  return sign | code;
}

const isF16NaN = (h: number) => (h & 0x7c00) === 0x7c00 && (h & 0x3ff) !== 0;
const isBf16NaN = (h: number) => (h & 0x7f80) === 0x7f80 && (h & 0x7f) !== 0;

function f32FromBits(b: number): number {
  const dv = new DataView(new ArrayBuffer(4));
  dv.setUint32(0, b >>> 0);
  return dv.getFloat32(0);
}

const SPECIALS: number[] = [
  0, -0, Infinity, -Infinity, NaN, 1, -1, 0.1, -2.5, 3.14159,
  65504, -65504, 65519.996, 65520, 65536, 1e6, // f16 max, just below/at the overflow tie
  3.4028234663852886e38, -3.4028234663852886e38, // f32 max (rounds to Inf in bf16: above the tie)
  3.3895313892515355e38, // bf16 max
  2 ** -24, 2 ** -25, 3 * 2 ** -25, 3 * 2 ** -26, 2 ** -14, 2 ** -14 - 2 ** -24, 1e-8, -1e-8, // f16 subnormals
  2 ** -149, 2 ** -126, 2 ** -133, 1.1754942106924411e-38, // f32 / bf16 subnormals
  1 + 2 ** -11, 1 + 3 * 2 ** -11, 1 + 2 ** -11 + 2 ** -23, 2048 + 1, 2048 + 3, // f16 ties to even
  1 + 2 ** -8, 1 + 3 * 2 ** -8, 1 + 2 ** -8 + 2 ** -23, 256 + 1, 256 + 3, -(256 + 1), // bf16 ties
];

function testValues(): Float32Array {
  const r = rng(1234);
  const vals: number[] = [...SPECIALS];
  for (let i = 0; i < 4000; i++) vals.push(f32FromBits(Math.floor(r() * 2 ** 32)));
  for (let i = 0; i < 4000; i++) vals.push((r() - 0.5) * 2 ** Math.floor(r() * 60 - 30));
  // Every f16 midpoint and its f32 neighbours, and a sample of bf16 midpoints.
  for (let h = 0; h < 0x7bff; h += 7) {
    const mid = (F16_TABLE[h]! + F16_TABLE[h + 1]!) / 2;
    vals.push(mid, -mid, Math.fround(mid * (1 + 2 ** -23)), Math.fround(mid * (1 - 2 ** -24)));
  }
  for (let h = 0; h < 0x7f7f; h += 13) {
    const mid = (BF16_TABLE[h]! + BF16_TABLE[h + 1]!) / 2;
    vals.push(mid, -mid, Math.fround(mid * (1 + 2 ** -23)));
  }
  return Float32Array.from(vals);
}

// ---------------------------------------------------------------------------------------------
// Crafting files byte by byte

function u64le(n: number | bigint): Uint8Array {
  const b = Buffer.alloc(8);
  b.writeBigUInt64LE(BigInt(n));
  return b;
}

function craft(name: string, header: unknown, data: Uint8Array = new Uint8Array(0)): string {
  const h = typeof header === 'string' ? Buffer.from(header, 'utf8') : Buffer.from(JSON.stringify(header), 'utf8');
  const file = path.join(freshDir(), name);
  fs.writeFileSync(file, Buffer.concat([u64le(h.length), h, data]));
  return file;
}

function expectStError(fn: () => unknown, ...parts: string[]): EmlensError {
  let err: unknown;
  try {
    fn();
  } catch (e) {
    err = e;
  }
  expect(err).toBeInstanceOf(EmlensError);
  const msg = (err as Error).message;
  for (const p of parts) expect(msg).toContain(p);
  expect(msg).not.toContain('\n');
  return err as EmlensError;
}

function sameFloat(a: number, b: number): boolean {
  return Object.is(a, b) || (Number.isNaN(a) && Number.isNaN(b));
}

// ---------------------------------------------------------------------------------------------

describe('scalar conversions', () => {
  it('decode every f16 and bf16 code exactly', () => {
    const bad: string[] = [];
    for (let h = 0; h < 65536; h++) {
      if (!sameFloat(f16ToF32(h), refF16Value(h))) bad.push(`f16 0x${h.toString(16)}: ${f16ToF32(h)}`);
      if (!sameFloat(bf16ToF32(h), refBf16Value(h))) bad.push(`bf16 0x${h.toString(16)}: ${bf16ToF32(h)}`);
    }
    expect(bad.slice(0, 10)).toEqual([]);
  });

  it('encode round-trips every non-NaN code and keeps NaN a NaN', () => {
    const bad: string[] = [];
    for (let h = 0; h < 65536; h++) {
      const a = f32ToF16(f16ToF32(h));
      const b = f32ToBf16(bf16ToF32(h));
      if (isF16NaN(h) ? !isF16NaN(a) : a !== h) bad.push(`f16 0x${h.toString(16)} -> 0x${a.toString(16)}`);
      if (isBf16NaN(h) ? !isBf16NaN(b) : b !== h) bad.push(`bf16 0x${h.toString(16)} -> 0x${b.toString(16)}`);
    }
    expect(bad.slice(0, 10)).toEqual([]);
  });

  it('encode matches nearest-even search on specials, ties and random values', () => {
    const vals = testValues();
    const bad: string[] = [];
    for (const x of vals) {
      const r16 = refRound(x, F16_TABLE);
      const rb = refRound(x, BF16_TABLE);
      const g16 = f32ToF16(x);
      const gb = f32ToBf16(x);
      if (r16 === -1 ? !isF16NaN(g16) : g16 !== r16) bad.push(`f16(${x}) = 0x${g16.toString(16)}, want 0x${r16.toString(16)}`);
      if (rb === -1 ? !isBf16NaN(gb) : gb !== rb) bad.push(`bf16(${x}) = 0x${gb.toString(16)}, want 0x${rb.toString(16)}`);
    }
    expect(vals.length).toBeGreaterThan(20000);
    expect(bad.slice(0, 10)).toEqual([]);
  });

  it('spot values', () => {
    expect(f32ToF16(65520)).toBe(0x7c00); // overflow tie goes to Inf
    expect(f32ToF16(65519.996)).toBe(0x7bff);
    expect(f32ToF16(2 ** -25)).toBe(0x0000); // tie between 0 and the smallest subnormal: even
    expect(f32ToF16(3 * 2 ** -25)).toBe(0x0002);
    expect(f32ToF16(-0)).toBe(0x8000);
    expect(f32ToF16(1 + 2 ** -11)).toBe(0x3c00);
    expect(f32ToF16(1 + 3 * 2 ** -11)).toBe(0x3c02);
    expect(f32ToBf16(1 + 2 ** -8)).toBe(0x3f80);
    expect(f32ToBf16(1 + 3 * 2 ** -8)).toBe(0x3f82);
    expect(f32ToBf16(3.4028234663852886e38)).toBe(0x7f80);
    expect(f32ToBf16(-Infinity)).toBe(0xff80);
    expect(f16ToF32(0x0001)).toBe(2 ** -24);
    expect(bf16ToF32(0x0001)).toBe(2 ** -133);
  });
});

describe('writeSafetensors / readSafetensorsHeader / readTensorF32', () => {
  it('round-trips F32, F16 and BF16 against the independent conversion', () => {
    const vals = testValues();
    const n = vals.length - (vals.length % 4);
    const data = vals.subarray(0, n);
    const file = path.join(freshDir(), 'rt.safetensors');
    const tensors = new Map<string, StWriteTensor>([
      ['z.f32', { shape: [4, n / 4], data }],
      ['10', { shape: [n], data, dtype: 'F16' }], // integer-like name: order must still hold
      ['a.bf16', { shape: [n / 2, 2], data, dtype: 'BF16' }],
      ['scalar', { shape: [], data: Float32Array.of(7.5), dtype: 'BF16' }],
      ['empty', { shape: [0, 3], data: new Float32Array(0), dtype: 'F16' }],
    ]);
    writeSafetensors(file, tensors, { format: 'pt', note: 'hé "quoted"' });

    const raw = fs.readFileSync(file);
    const hlen = Number(raw.readBigUInt64LE(0));
    expect((8 + hlen) % 8).toBe(0);
    const htext = raw.subarray(8, 8 + hlen).toString('utf8');
    expect(htext.trimEnd().endsWith('}')).toBe(true);
    expect(/^ *$/.test(htext.slice(htext.trimEnd().length))).toBe(true);
    const order = ['__metadata__', 'z.f32', '10', 'a.bf16', 'scalar', 'empty'].map((k) => htext.indexOf(JSON.stringify(k)));
    expect(order.every((p, i) => p >= 0 && (i === 0 || p > order[i - 1]!))).toBe(true);
    expect(raw.length).toBe(8 + hlen + n * 4 + n * 2 + n * 2 + 2);

    const h = readSafetensorsHeader(file);
    expect(h.file).toBe(file);
    expect([...h.tensors.keys()].sort()).toEqual(['10', 'a.bf16', 'empty', 'scalar', 'z.f32']);
    expect(h.metadata).toEqual({ format: 'pt', note: 'hé "quoted"' });
    const f32 = h.tensors.get('z.f32')!;
    expect(f32).toMatchObject({ dtype: 'F32', shape: [4, n / 4], begin: 8 + hlen, end: 8 + hlen + 4 * n, file });

    const got32 = readTensorF32(f32);
    expect(got32.byteOffset).toBe(0);
    expect(got32.buffer.byteLength).toBe(4 * n);
    // F32 is bit-exact, NaN payloads included.
    expect(Buffer.from(got32.buffer).equals(Buffer.from(data.buffer, data.byteOffset, data.byteLength))).toBe(true);

    const got16 = readTensorF32(h.tensors.get('10')!);
    const gotb = readTensorF32(h.tensors.get('a.bf16')!);
    expect(got16.length).toBe(n);
    expect(gotb.length).toBe(n);
    expect(gotb.buffer.byteLength).toBe(4 * n);
    for (let i = 0; i < n; i++) {
      const r16 = refRound(data[i]!, F16_TABLE);
      const rb = refRound(data[i]!, BF16_TABLE);
      const e16 = r16 === -1 ? NaN : refF16Value(r16);
      const eb = rb === -1 ? NaN : refBf16Value(rb);
      if (!sameFloat(got16[i]!, e16) || !sameFloat(gotb[i]!, eb)) {
        throw new Error(`element ${i} (${data[i]}): f16 ${got16[i]} vs ${e16}, bf16 ${gotb[i]} vs ${eb}`);
      }
    }
    expect(Array.from(readTensorF32(h.tensors.get('scalar')!))).toEqual([7.5]);
    expect(readTensorF32(h.tensors.get('empty')!).length).toBe(0);
  });

  it('writes a data view with a byteOffset correctly and accepts a Record', () => {
    const big = Float32Array.from({ length: 20 }, (_, i) => i);
    const file = path.join(freshDir(), 'view.safetensors');
    writeSafetensors(file, { v: { shape: [2, 3], data: big.subarray(5, 11) } });
    const h = readSafetensorsHeader(file);
    expect(h.metadata).toEqual({});
    expect(Array.from(readTensorF32(h.tensors.get('v')!))).toEqual([5, 6, 7, 8, 9, 10]);
  });

  it('rejects data whose length does not match the shape', () => {
    const file = path.join(freshDir(), 'bad.safetensors');
    expectStError(
      () => writeSafetensors(file, { 'w.bad': { shape: [2, 3], data: new Float32Array(5) } }),
      'bad.safetensors',
      '"w.bad"',
      '5',
      '[2, 3]',
    );
    expect(fs.existsSync(file)).toBe(false);
    expectStError(() => writeSafetensors(file, { 'neg': { shape: [-1], data: new Float32Array(0) } }), '"neg"');
  });

  it('reads unaligned F32 / F16 / BF16 / F64 tensors', () => {
    // 1-byte U8 tensor first so that every float tensor starts on an odd offset; header unpadded.
    const f32 = Float32Array.of(1.5, -2.25, 3e-40, Infinity);
    const f16 = Uint16Array.of(0x3c00, 0xc000, 0x0001, 0x7c00, 0x8000);
    const bf16 = Uint16Array.of(0x3f80, 0xc040, 0x0001, 0xff80);
    const f64 = Float64Array.of(1 / 3, -1e300, 1e-300, 2.5);
    const parts = [Uint8Array.of(42), f32, f16, bf16, f64].map(
      (a) => new Uint8Array(a.buffer, a.byteOffset, a.byteLength),
    );
    const offs: [number, number][] = [];
    let o = 0;
    for (const p of parts) {
      offs.push([o, o + p.length]);
      o += p.length;
    }
    const header = {
      u: { dtype: 'U8', shape: [1], data_offsets: offs[0] },
      a: { dtype: 'F32', shape: [4], data_offsets: offs[1] },
      b: { dtype: 'F16', shape: [5], data_offsets: offs[2] },
      c: { dtype: 'BF16', shape: [2, 2], data_offsets: offs[3] },
      d: { dtype: 'F64', shape: [4], data_offsets: offs[4] },
      __metadata__: { format: 'pt' },
    };
    let text = JSON.stringify(header);
    while ((8 + text.length) % 8 !== 2) text += ' '; // data starts at 2 mod 8, so floats at odd offsets
    const file = craft('unaligned.safetensors', text, Buffer.concat(parts));
    const h = readSafetensorsHeader(file);
    for (const k of ['a', 'b', 'c', 'd']) expect(h.tensors.get(k)!.begin % 2).toBe(1);
    expect(Array.from(readTensorF32(h.tensors.get('a')!))).toEqual(Array.from(f32));
    expect(Array.from(readTensorF32(h.tensors.get('b')!))).toEqual([1, -2, 2 ** -24, Infinity, -0]);
    expect(Array.from(readTensorF32(h.tensors.get('c')!))).toEqual([1, -3, 2 ** -133, -Infinity]);
    expect(Array.from(readTensorF32(h.tensors.get('d')!))).toEqual([Math.fround(1 / 3), -Infinity, 0, 2.5]);
    expectStError(() => readTensorF32(h.tensors.get('u')!), 'unaligned.safetensors', '"u"', 'U8');
  });

  it('refuses holes, leading gaps and bytes past the last tensor (the format requires full coverage)', () => {
    const data = new Uint8Array(24);
    new Float32Array(data.buffer).set([1, 2, 0, 0, 5, 6]);
    const hole = craft('holes.safetensors', {
      x: { dtype: 'F32', shape: [2], data_offsets: [0, 8] },
      y: { dtype: 'F32', shape: [2], data_offsets: [16, 24] },
    }, data);
    expectStError(() => readSafetensorsHeader(hole), 'holes.safetensors', '[8, 16)', '"x"', '"y"');
    const lead = craft('lead.safetensors', { y: { dtype: 'F32', shape: [2], data_offsets: [16, 24] } }, data);
    expectStError(() => readSafetensorsHeader(lead), 'lead.safetensors', '[0, 16)', '"y"');
    const tail = craft('tail.safetensors', { x: { dtype: 'F32', shape: [2], data_offsets: [0, 8] } }, data);
    expectStError(() => readSafetensorsHeader(tail), 'tail.safetensors', 'tensor data 8', '16 bytes after the last tensor');
    const stray = craft('stray.safetensors', {}, Uint8Array.of(1, 2, 3));
    expectStError(() => readSafetensorsHeader(stray), 'stray.safetensors', '3 bytes');
    // Empty tensors take no bytes, wherever their (equal) offsets point inside the data.
    const empty = craft('empty.safetensors', {
      x: { dtype: 'F32', shape: [2], data_offsets: [0, 8] },
      e: { dtype: 'F32', shape: [0], data_offsets: [4, 4] },
      y: { dtype: 'F32', shape: [2], data_offsets: [8, 16] },
    }, data.subarray(0, 16));
    expect(Array.from(readTensorF32(readSafetensorsHeader(empty).tensors.get('y')!))).toEqual([0, 0]);
  });

  it('a header length shrunk into its trailing spaces is caught, not read 2 bytes off', () => {
    const file = path.join(freshDir(), 'shifted.safetensors');
    // Metadata length chosen so that the writer pads the header with at least 2 spaces.
    let meta = 'x';
    const padOf = (m: string) => {
      const json = `{"__metadata__":{"k":${JSON.stringify(m)}},"w":{"dtype":"F32","shape":[2],"data_offsets":[0,8]}}`;
      return (8 - (Buffer.byteLength(json) % 8)) % 8;
    };
    while (padOf(meta) < 2) meta += 'x';
    writeSafetensors(file, { w: { shape: [2], data: Float32Array.of(1.5, -2) } }, { k: meta });
    const bytes = fs.readFileSync(file);
    const n = Number(bytes.readBigUInt64LE(0));
    expect(bytes.subarray(8 + n - 2, 8 + n).toString('latin1')).toBe('  ');
    expect(Array.from(readTensorF32(readSafetensorsHeader(file).tensors.get('w')!))).toEqual([1.5, -2]);
    bytes.writeBigUInt64LE(BigInt(n - 2), 0);
    fs.writeFileSync(file, bytes);
    expectStError(() => readSafetensorsHeader(file), 'shifted.safetensors', `${bytes.length} bytes`, '2 bytes');
  });
});

describe('readSafetensorsHeader validation', () => {
  const T = 'model.layers.0.mlp.up_proj.weight';
  const ok = { dtype: 'F32', shape: [2], data_offsets: [0, 8] };

  it('file shorter than 8 bytes', () => {
    const file = path.join(freshDir(), 'short.safetensors');
    fs.writeFileSync(file, Uint8Array.of(1, 2, 3));
    expectStError(() => readSafetensorsHeader(file), 'short.safetensors', '3 bytes');
  });

  it('missing file', () => {
    expectStError(() => readSafetensorsHeader(path.join(tmp, 'nope.safetensors')), 'nope.safetensors');
  });

  it('header length beyond the file or over 100 MB', () => {
    const d = freshDir();
    const f1 = path.join(d, 'long.safetensors');
    fs.writeFileSync(f1, Buffer.concat([u64le(1000), Buffer.from('{}')]));
    expectStError(() => readSafetensorsHeader(f1), 'long.safetensors', '1000');
    const f2 = path.join(d, 'huge.safetensors');
    fs.writeFileSync(f2, Buffer.concat([u64le(200_000_000), Buffer.from('{}')]));
    expectStError(() => readSafetensorsHeader(f2), 'huge.safetensors', 'limit');
    const f3 = path.join(d, 'u64.safetensors');
    fs.writeFileSync(f3, Buffer.concat([u64le(2n ** 64n - 1n), Buffer.from('{}')]));
    expectStError(() => readSafetensorsHeader(f3), 'u64.safetensors', '18446744073709551615');
  });

  it('header not UTF-8, not JSON, not an object', () => {
    const d = freshDir();
    const f1 = path.join(d, 'utf8.safetensors');
    const bad = Buffer.from([0x7b, 0x22, 0xff, 0xfe, 0x22, 0x3a, 0x31, 0x7d]); // {"\xff\xfe":1}
    fs.writeFileSync(f1, Buffer.concat([u64le(bad.length), bad]));
    expectStError(() => readSafetensorsHeader(f1), 'utf8.safetensors', 'UTF-8');
    expectStError(() => readSafetensorsHeader(craft('json.safetensors', '{"a": ')), 'json.safetensors', 'JSON');
    expectStError(() => readSafetensorsHeader(craft('empty.safetensors', '')), 'empty.safetensors', 'JSON');
    expectStError(() => readSafetensorsHeader(craft('arr.safetensors', '[1, 2]')), 'arr.safetensors', 'not a JSON object');
    expectStError(() => readSafetensorsHeader(craft('null.safetensors', 'null')), 'null.safetensors', 'not a JSON object');
  });

  it('__metadata__ not a string map', () => {
    expectStError(
      () => readSafetensorsHeader(craft('meta1.safetensors', { __metadata__: { format: 'pt', total: 3 } })),
      'meta1.safetensors', '__metadata__', '"total"',
    );
    expectStError(
      () => readSafetensorsHeader(craft('meta2.safetensors', { __metadata__: ['pt'] })),
      'meta2.safetensors', '__metadata__',
    );
    expectStError(
      () => readSafetensorsHeader(craft('meta3.safetensors', { __metadata__: 'pt' })),
      'meta3.safetensors', '__metadata__',
    );
  });

  it('tensor entry not an object', () => {
    expectStError(() => readSafetensorsHeader(craft('entry.safetensors', { [T]: [1, 2] })), 'entry.safetensors', `"${T}"`);
  });

  it('unknown dtype', () => {
    expectStError(
      () => readSafetensorsHeader(craft('dtype.safetensors', { [T]: { ...ok, dtype: 'Q4_K' } }, new Uint8Array(8))),
      'dtype.safetensors', `"${T}"`, 'Q4_K',
    );
    expectStError(
      () => readSafetensorsHeader(craft('dtype2.safetensors', { [T]: { shape: [2], data_offsets: [0, 8] } }, new Uint8Array(8))),
      'dtype2.safetensors', `"${T}"`, 'dtype',
    );
  });

  it('bad shapes', () => {
    for (const shape of [[2, -1], [2.5], '3', ['2'], null, [2 ** 60]]) {
      expectStError(
        () => readSafetensorsHeader(craft('shape.safetensors', { [T]: { ...ok, shape } }, new Uint8Array(8))),
        'shape.safetensors', `"${T}"`, 'shape',
      );
    }
  });

  it('bad data_offsets', () => {
    for (const data_offsets of [[0], [8, 0], [0, '8'], [-1, 7], [0.5, 8], [0, 8, 8], undefined, 'x']) {
      expectStError(
        () => readSafetensorsHeader(craft('offs.safetensors', { [T]: { ...ok, data_offsets } }, new Uint8Array(8))),
        'offs.safetensors', `"${T}"`, 'data_offsets',
      );
    }
  });

  it('end beyond the data section', () => {
    expectStError(
      () => readSafetensorsHeader(craft('eof.safetensors', { [T]: ok }, new Uint8Array(7))),
      'eof.safetensors', `"${T}"`, 'beyond the data section', '7 bytes',
    );
  });

  it('byte size does not match shape and dtype', () => {
    const e = expectStError(
      () => readSafetensorsHeader(craft('model.safetensors', {
        [T]: { dtype: 'BF16', shape: [4, 3], data_offsets: [0, 40] },
      }, new Uint8Array(40))),
      'model.safetensors',
    );
    expect(e.message).toContain(
      `model.safetensors: tensor "${T}": data offsets [0, 40) hold 40 bytes but shape [4, 3] of BF16 needs 24`,
    );
    expectStError(
      () => readSafetensorsHeader(craft('size2.safetensors', { [T]: { dtype: 'I64', shape: [], data_offsets: [0, 4] } }, new Uint8Array(8))),
      'size2.safetensors', `"${T}"`, 'I64', 'needs 8',
    );
  });

  it('overlapping tensors', () => {
    expectStError(
      () => readSafetensorsHeader(craft('overlap.safetensors', {
        'a.weight': { dtype: 'F32', shape: [2], data_offsets: [0, 8] },
        [T]: { dtype: 'F32', shape: [2], data_offsets: [4, 12] },
        'c.empty': { dtype: 'F32', shape: [0], data_offsets: [4, 4] }, // empty ranges overlap nothing
      }, new Uint8Array(12))),
      'overlap.safetensors', `"${T}"`, '"a.weight"', 'overlap',
    );
  });

  it('tensor names with odd characters stay on one line', () => {
    expectStError(
      () => readSafetensorsHeader(craft('odd.safetensors', { 'we\nird': { ...ok, dtype: 'X' } }, new Uint8Array(8))),
      'odd.safetensors', '"we\\nird"',
    );
  });
});

describe('sharded weights', () => {
  function model(): Map<string, StWriteTensor> {
    const r = rng(7);
    const m = new Map<string, StWriteTensor>();
    const add = (name: string, shape: number[], dtype?: 'F32' | 'F16' | 'BF16') => {
      const n = shape.reduce((a, b) => a * b, 1);
      m.set(name, { shape, data: Float32Array.from({ length: n }, () => r() * 2 - 1), dtype });
    };
    add('model.embed_tokens.weight', [32, 8]); // 1024 bytes
    for (let l = 0; l < 3; l++) {
      add(`model.layers.${l}.self_attn.q_proj.weight`, [8, 8], 'BF16'); // 128
      add(`model.layers.${l}.mlp.up_proj.weight`, [16, 8], 'F16'); // 256
      add(`model.layers.${l}.input_layernorm.weight`, [8]); // 32
    }
    add('model.norm.weight', [8]);
    add('lm_head.weight', [32, 8], 'BF16'); // 512
    return m;
  }
  const bytesOf = (t: StWriteTensor) => t.data.length * ((t.dtype ?? 'F32') === 'F32' ? 4 : 2);
  const expected = (t: StWriteTensor) =>
    Array.from(t.data, (x) =>
      t.dtype === 'BF16' ? bf16ToF32(f32ToBf16(x)) : t.dtype === 'F16' ? f16ToF32(f32ToF16(x)) : x,
    );

  it('writes shards + index and openWeights reads them back', () => {
    const dir = freshDir();
    const m = model();
    const written = writeShardedSafetensors(dir, m, { maxShardBytes: 700, metadata: { format: 'pt' } });
    const total = [...m.values()].reduce((a, t) => a + bytesOf(t), 0);
    const n = written.length - 1;
    expect(n).toBeGreaterThan(2);
    const pad = (i: number) => String(i).padStart(5, '0');
    expect(written).toEqual([
      ...Array.from({ length: n }, (_, i) => path.join(dir, `model-${pad(i + 1)}-of-${pad(n)}.safetensors`)),
      path.join(dir, 'model.safetensors.index.json'),
    ]);
    expect(fs.existsSync(path.join(dir, 'model.safetensors'))).toBe(false);

    const index = JSON.parse(fs.readFileSync(path.join(dir, 'model.safetensors.index.json'), 'utf8'));
    expect(index.metadata.total_size).toBe(total);
    expect(Object.keys(index.weight_map)).toEqual([...m.keys()]);
    // The embedding (1024 bytes) exceeds the limit and gets a shard of its own.
    expect(index.weight_map['model.embed_tokens.weight']).toBe(`model-00001-of-${pad(n)}.safetensors`);
    expect(readSafetensorsHeader(written[0]!).tensors.size).toBe(1);
    for (const f of written.slice(0, n)) {
      const h = readSafetensorsHeader(f);
      expect(h.metadata).toEqual({ format: 'pt' });
      const bytes = [...h.tensors.values()].reduce((a, t) => a + t.end - t.begin, 0);
      expect(bytes <= 700 || h.tensors.size === 1).toBe(true);
    }

    const w = openWeights(dir);
    expect(w.files).toEqual(written.slice(0, n));
    expect(w.totalBytes).toBe(total);
    expect(w.dtypes).toEqual(new Set(['F32', 'F16', 'BF16']));
    expect(w.metadata).toEqual({ format: 'pt', total_size: String(total) });
    expect([...w.tensors.keys()].sort()).toEqual([...m.keys()].sort());
    for (const [name, t] of m) {
      const info = w.tensors.get(name)!;
      expect(info.shape).toEqual(t.shape);
      expect(info.dtype).toBe(t.dtype ?? 'F32');
      expect(path.basename(info.file)).toBe(index.weight_map[name]);
      expect(Array.from(readTensorF32(info))).toEqual(expected(t));
    }
  });

  it('writes a single model.safetensors when it fits, replacing a stale index', () => {
    const dir = freshDir();
    const m = model();
    writeShardedSafetensors(dir, m, { maxShardBytes: 700 });
    const written = writeShardedSafetensors(dir, m, { maxShardBytes: 1e9, metadata: { format: 'pt' } });
    expect(written).toEqual([path.join(dir, 'model.safetensors')]);
    expect(fs.existsSync(path.join(dir, 'model.safetensors.index.json'))).toBe(false);
    const w = openWeights(dir);
    expect(w.files).toEqual(written);
    expect(w.metadata).toEqual({ format: 'pt' });
    expect([...w.tensors.keys()]).toEqual([...m.keys()]);
    expect(Array.from(readTensorF32(w.tensors.get('lm_head.weight')!))).toEqual(expected(m.get('lm_head.weight')!));
  });

  it('honours the prefix', () => {
    const dir = freshDir();
    const written = writeShardedSafetensors(dir, model(), { maxShardBytes: 2000, prefix: 'adapter' });
    expect(written.map((p) => path.basename(p))).toEqual([
      'adapter-00001-of-00002.safetensors',
      'adapter-00002-of-00002.safetensors',
      'adapter.safetensors.index.json',
    ]);
  });

  it('validates all tensors before writing anything', () => {
    const dir = freshDir();
    const m = model();
    m.set('broken.weight', { shape: [3], data: new Float32Array(4) });
    expectStError(() => writeShardedSafetensors(dir, m, { maxShardBytes: 700 }), '"broken.weight"', 'model.safetensors');
    expect(fs.readdirSync(dir)).toEqual([]);
  });

  function shardedDir(): { dir: string; index: { metadata: unknown; weight_map: Record<string, string> } } {
    const dir = freshDir();
    writeShardedSafetensors(dir, model(), { maxShardBytes: 700 });
    const index = JSON.parse(fs.readFileSync(path.join(dir, 'model.safetensors.index.json'), 'utf8'));
    return { dir, index };
  }
  const writeIndex = (dir: string, index: unknown) =>
    fs.writeFileSync(path.join(dir, 'model.safetensors.index.json'), JSON.stringify(index));

  it('rejects a mapped tensor missing from its shard', () => {
    const { dir, index } = shardedDir();
    index.weight_map['model.norm.weight'] = 'model-00001-of-00004.safetensors';
    writeIndex(dir, index);
    expectStError(() => openWeights(dir), 'model.safetensors.index.json', '"model.norm.weight"', 'model-00001-of-00004.safetensors');
    index.weight_map['ghost.weight'] = 'model-00002-of-00004.safetensors';
    delete index.weight_map['model.norm.weight'];
    writeIndex(dir, index);
    expectStError(() => openWeights(dir), 'model.safetensors.index.json', '"ghost.weight"');
  });

  it('rejects a tensor present in two shards', () => {
    const { dir, index } = shardedDir();
    // Rewrite shard 2 so that it also holds the norm weight that lives in the last shard.
    const s2 = path.join(dir, 'model-00002-of-00004.safetensors');
    const h = readSafetensorsHeader(s2);
    const t = new Map<string, StWriteTensor>();
    for (const [name, info] of h.tensors) t.set(name, { shape: info.shape, data: readTensorF32(info) });
    t.set('model.norm.weight', { shape: [8], data: new Float32Array(8) });
    writeSafetensors(s2, t);
    writeIndex(dir, index);
    expectStError(() => openWeights(dir), '"model.norm.weight"', 'model-00002-of-00004.safetensors', 'two shards');
  });

  it('includes tensors a shard holds but the weight map omits', () => {
    const { dir, index } = shardedDir();
    delete index.weight_map['model.norm.weight'];
    writeIndex(dir, index);
    expect(openWeights(dir).tensors.has('model.norm.weight')).toBe(true);
  });

  it('reports missing shards, bad indexes and empty directories', () => {
    const { dir, index } = shardedDir();
    index.weight_map['model.norm.weight'] = 'model-00009-of-00009.safetensors';
    writeIndex(dir, index);
    expectStError(() => openWeights(dir), 'model-00009-of-00009.safetensors');
    index.weight_map['model.norm.weight'] = '../escape.safetensors';
    writeIndex(dir, index);
    expectStError(() => openWeights(dir), 'model.safetensors.index.json', '"model.norm.weight"', 'escape');
    fs.writeFileSync(path.join(dir, 'model.safetensors.index.json'), '{"weight_map": ');
    expectStError(() => openWeights(dir), 'model.safetensors.index.json', 'JSON');
    writeIndex(dir, { metadata: {} });
    expectStError(() => openWeights(dir), 'model.safetensors.index.json', 'weight_map');
    const empty = freshDir();
    expectStError(() => openWeights(empty), empty, 'model.safetensors');
  });
});

describe.skipIf(!fs.existsSync(path.join(realDir, 'model.safetensors')))('real checkpoint aidreams260k', () => {
  it('matches config.json and reads as finite floats', () => {
    const cfg = JSON.parse(fs.readFileSync(path.join(realDir, 'config.json'), 'utf8'));
    expect(cfg).toMatchObject({ hidden_size: 64, num_hidden_layers: 4, vocab_size: 512, intermediate_size: 172 });
    const H = cfg.hidden_size as number;
    const F = cfg.intermediate_size as number;
    const hd = H / cfg.num_attention_heads;
    const kv = cfg.num_key_value_heads * hd;
    const want = new Map<string, number[]>([
      ['model.embed_tokens.weight', [cfg.vocab_size, H]],
      ['model.norm.weight', [H]],
    ]);
    if (!cfg.tie_word_embeddings) want.set('lm_head.weight', [cfg.vocab_size, H]);
    for (let l = 0; l < cfg.num_hidden_layers; l++) {
      const p = `model.layers.${l}.`;
      want.set(p + 'input_layernorm.weight', [H]);
      want.set(p + 'post_attention_layernorm.weight', [H]);
      want.set(p + 'self_attn.q_proj.weight', [H, H]);
      want.set(p + 'self_attn.k_proj.weight', [kv, H]);
      want.set(p + 'self_attn.v_proj.weight', [kv, H]);
      want.set(p + 'self_attn.o_proj.weight', [H, H]);
      want.set(p + 'mlp.gate_proj.weight', [F, H]);
      want.set(p + 'mlp.up_proj.weight', [F, H]);
      want.set(p + 'mlp.down_proj.weight', [H, F]);
    }

    const file = path.join(realDir, 'model.safetensors');
    const h = readSafetensorsHeader(file);
    expect(h.tensors.size).toBe(38);
    expect(new Map([...h.tensors].map(([k, v]) => [k, v.shape]))).toEqual(want);

    const w = openWeights(realDir);
    expect(w.files).toEqual([file]);
    expect(w.dtypes).toEqual(new Set(['F32']));
    let numel = 0;
    for (const shape of want.values()) numel += shape.reduce((a, b) => a * b, 1);
    expect(w.totalBytes).toBe(numel * 4);

    const raw = fs.readFileSync(file); // small file: an independent read of the bytes is fine here
    for (const info of w.tensors.values()) {
      const x = readTensorF32(info);
      expect(x.length).toBe(info.shape.reduce((a, b) => a * b, 1));
      expect(x.every(Number.isFinite), info.name).toBe(true);
      expect(x.some((v) => v !== 0), info.name).toBe(true);
      const dv = new DataView(raw.buffer, raw.byteOffset + info.begin, info.end - info.begin);
      for (let i = 0; i < x.length; i += 97) expect(x[i]).toBe(dv.getFloat32(4 * i, true));
    }
    const norm = readTensorF32(w.tensors.get('model.norm.weight')!);
    expect(Math.max(...norm.map(Math.abs))).toBeLessThan(100);
  });
});
