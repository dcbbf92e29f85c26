import { describe, expect, it, beforeAll } from 'vitest';
import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import { EmlensError } from '../../src/errors.js';
import { NPY_SIDECAR_SUFFIX, readDirectionsNpy, readNpy, writeDirectionsNpy, writeNpy } from '../../src/io/npy.js';

let tmp: string;
beforeAll(() => {
  tmp = fs.mkdtempSync(path.join(os.tmpdir(), 'emlens-npy-'));
  return () => fs.rmSync(tmp, { recursive: true, force: true });
});

/** Independent hand parser of the .npy v1.0 preamble. */
function parseByHand(bytes: Buffer): { major: number; minor: number; headerLen: number; header: string; dataStart: number } {
  expect(bytes[0]).toBe(0x93);
  expect(bytes.toString('latin1', 1, 6)).toBe('NUMPY');
  const major = bytes[6]!;
  const minor = bytes[7]!;
  const headerLen = bytes[8]! | (bytes[9]! << 8);
  const header = bytes.toString('latin1', 10, 10 + headerLen);
  return { major, minor, headerLen, header, dataStart: 10 + headerLen };
}

describe('writeNpy', () => {
  for (const [shape, dict] of [
    [[2, 3], "{'descr': '<f4', 'fortran_order': False, 'shape': (2, 3), }"],
    [[5], "{'descr': '<f4', 'fortran_order': False, 'shape': (5,), }"],
    [[], "{'descr': '<f4', 'fortran_order': False, 'shape': (), }"],
    [[0, 4], "{'descr': '<f4', 'fortran_order': False, 'shape': (0, 4), }"],
    [[2, 1, 3], "{'descr': '<f4', 'fortran_order': False, 'shape': (2, 1, 3), }"],
  ] as const) {
    it(`header and data for shape [${shape}]`, () => {
      const n = shape.reduce((a: number, b: number) => a * b, 1);
      const data = Float32Array.from({ length: n }, (_, i) => (i - 2.5) / 3);
      const file = path.join(tmp, `a${shape.join('x')}.npy`);
      writeNpy(file, data, [...shape]);
      const bytes = fs.readFileSync(file);
      const h = parseByHand(bytes);
      expect([h.major, h.minor]).toEqual([1, 0]);
      expect(h.dataStart % 64).toBe(0);
      expect(h.header.endsWith('\n')).toBe(true);
      expect(h.header.trimEnd()).toBe(dict);
      expect(/^[\x20-\x7e]*\n$/.test(h.header)).toBe(true);
      expect(bytes.byteLength).toBe(h.dataStart + 4 * n);
      for (let i = 0; i < n; i++) expect(bytes.readFloatLE(h.dataStart + 4 * i)).toBe(data[i]);
      const back = readNpy(file);
      expect(back.shape).toEqual([...shape]);
      expect([...back.data]).toEqual([...data]);
    });
  }

  it('rejects a shape that does not match the data', () => {
    expect(() => writeNpy(path.join(tmp, 'x.npy'), new Float32Array(5), [2, 3])).toThrow(EmlensError);
    expect(() => writeNpy(path.join(tmp, 'x.npy'), new Float32Array(0), [-1])).toThrow(/bad shape/);
  });
});

describe('readNpy', () => {
  it('reads a version 2.0 header and rejects other dtypes and Fortran order', () => {
    const mk = (major: number, dict: string, data: Buffer) => {
      const fixed = major === 1 ? 10 : 12;
      const total = Math.ceil((fixed + dict.length + 1) / 64) * 64;
      const hl = total - fixed;
      const pre = Buffer.alloc(total, 0x20);
      Buffer.from([0x93, 0x4e, 0x55, 0x4d, 0x50, 0x59, major, 0]).copy(pre);
      if (major === 1) pre.writeUInt16LE(hl, 8);
      else pre.writeUInt32LE(hl, 8);
      pre.write(dict, fixed, 'latin1');
      pre[total - 1] = 0x0a;
      return Buffer.concat([pre, data]);
    };
    const data = Buffer.alloc(8);
    data.writeFloatLE(1.5, 0);
    data.writeFloatLE(-2, 4);
    const f2 = path.join(tmp, 'v2.npy');
    fs.writeFileSync(f2, mk(2, "{'descr': '<f4', 'fortran_order': False, 'shape': (2,), }", data));
    expect([...readNpy(f2).data]).toEqual([1.5, -2]);
    const f8 = path.join(tmp, 'f8.npy');
    fs.writeFileSync(f8, mk(1, "{'descr': '<f8', 'fortran_order': False, 'shape': (1,), }", data));
    expect(() => readNpy(f8)).toThrow(/<f4/);
    const ff = path.join(tmp, 'ff.npy');
    fs.writeFileSync(ff, mk(1, "{'descr': '<f4', 'fortran_order': True, 'shape': (1, 2), }", data));
    expect(() => readNpy(ff)).toThrow(/Fortran/);
    const bad = path.join(tmp, 'bad.npy');
    fs.writeFileSync(bad, 'not numpy at all');
    expect(() => readNpy(bad)).toThrow(/not a \.npy/);
  });
});

describe('direction files as .npy', () => {
  it('writes [n_layers, d] plus a sidecar listing the layers, and reads them back', () => {
    const file = path.join(tmp, 'dirs.npy');
    const layers = new Map([
      [9, Float32Array.from([1, 2, 3])],
      [2, Float32Array.from([4, 5, 6])],
    ]);
    writeDirectionsNpy(file, layers, { method: 'mean-diff', 'norm.2': '8.77' });
    const { data, shape } = readNpy(file);
    expect(shape).toEqual([2, 3]);
    expect([...data]).toEqual([4, 5, 6, 1, 2, 3]); // ascending layer order
    const side = JSON.parse(fs.readFileSync(file + NPY_SIDECAR_SUFFIX, 'utf8'));
    expect(side).toMatchObject({
      format: 'emlens.directions.npy',
      version: 1,
      array: 'dirs.npy',
      hook: 'resid_post',
      layers: [2, 9],
      hook_names: ['blocks.2.hook_resid_post', 'blocks.9.hook_resid_post'],
      shape: [2, 3],
      dtype: '<f4',
      metadata: { method: 'mean-diff', 'norm.2': '8.77' },
    });
    const back = readDirectionsNpy(file);
    expect([...back.layers.keys()]).toEqual([2, 9]);
    expect([...back.layers.get(9)!]).toEqual([1, 2, 3]);
    expect(back.kind).toBe('resid_post');
    expect(back.metadata.method).toBe('mean-diff');
  });
  it('errors: missing sidecar, mismatched layers, mixed widths', () => {
    const file = path.join(tmp, 'lone.npy');
    writeNpy(file, new Float32Array(6), [2, 3]);
    expect(() => readDirectionsNpy(file)).toThrow(/sidecar/);
    fs.writeFileSync(file + NPY_SIDECAR_SUFFIX, JSON.stringify({ layers: [1, 2, 3] }));
    expect(() => readDirectionsNpy(file)).toThrow(/the array has 2 rows but lone\.npy\.layers\.json lists 3 layers/);
    expect(() => writeDirectionsNpy(path.join(tmp, 'm.npy'), new Map([[0, new Float32Array(2)], [1, new Float32Array(3)]]))).toThrow(/width/);
  });
});
