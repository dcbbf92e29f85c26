/**
 * Every weight is checked once at load: a single NaN or Inf anywhere in a checkpoint (not only
 * at sampled positions) is refused with the file, the tensor and the first bad index, for each
 * stored dtype. The bad value is planted by patching the file's bytes at an offset computed
 * from the header, independently of the reader.
 */
import { mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, describe, expect, it } from 'vitest';
import { EmlensError } from '../../src/errors.js';
import { readSafetensorsHeader } from '../../src/io/safetensors/header.js';
import { loadSpec } from '../../src/model/config.js';
import { loadWeights, planCheckpoint } from '../../src/model/weights.js';
import { writeTinyCheckpoint } from '../helpers/tiny-checkpoints.js';

const tmp = mkdtempSync(join(tmpdir(), 'emlens-finite-'));
afterAll(() => rmSync(tmp, { recursive: true, force: true }));

/** IEEE bit patterns, little-endian, of NaN and +Inf in each dtype. */
const BITS = {
  F32: { NaN: [0x00, 0x00, 0xc0, 0x7f], Inf: [0x00, 0x00, 0x80, 0x7f] },
  F16: { NaN: [0x00, 0x7e], Inf: [0x00, 0x7c] },
  BF16: { NaN: [0xc0, 0x7f], Inf: [0x80, 0x7f] },
} as const;
const SIZE = { F32: 4, F16: 2, BF16: 2 } as const;

function loadAll(dir: string) {
  return loadWeights(planCheckpoint(dir, loadSpec(dir)));
}

function errorOf(fn: () => unknown): EmlensError {
  try {
    fn();
  } catch (e) {
    expect(e).toBeInstanceOf(EmlensError);
    return e as EmlensError;
  }
  throw new Error('expected an error');
}

describe('non-finite weights are refused at load, wherever they are', () => {
  for (const dtype of ['F32', 'F16', 'BF16'] as const) {
    for (const what of ['NaN', 'Inf'] as const) {
      it(`${dtype} ${what} at an index no sampling stride hits`, () => {
        const dir = join(tmp, `${dtype}-${what}`);
        writeTinyCheckpoint(dir, 'llama', { dtype });
        expect(loadAll(dir).size).toBeGreaterThan(0); // intact file loads
        const file = join(dir, 'model.safetensors');
        const tensor = 'model.layers.1.mlp.up_proj.weight';
        const info = readSafetensorsHeader(file).tensors.get(tensor)!;
        const [rows, cols] = info.shape as [number, number];
        const r = rows - 1;
        const c = cols - 2;
        const flat = r * cols + c; // neither 0 nor a multiple of 4099
        expect(flat % 4099).not.toBe(0);
        const bytes = readFileSync(file);
        bytes.set(BITS[dtype][what], info.begin + flat * SIZE[dtype]);
        writeFileSync(file, bytes);
        const e = errorOf(() => loadAll(dir));
        expect(e.message).not.toContain('\n');
        expect(e.message).toContain('model.safetensors');
        expect(e.message).toContain(`"${tensor}"`);
        expect(e.message).toContain(`index ${flat} ([${r}, ${c}])`);
        expect(e.message).toContain(what === 'NaN' ? 'NaN' : 'Infinity');
      });
    }
  }

  it('names the first bad index when there are several', () => {
    const dir = join(tmp, 'two');
    writeTinyCheckpoint(dir, 'llama');
    const file = join(dir, 'model.safetensors');
    const tensor = 'model.norm.weight';
    const info = readSafetensorsHeader(file).tensors.get(tensor)!;
    const bytes = readFileSync(file);
    bytes.set(BITS.F32.Inf, info.begin + 4 * 7);
    bytes.set(BITS.F32.NaN, info.begin + 4 * 3);
    writeFileSync(file, bytes);
    const e = errorOf(() => loadAll(dir));
    expect(e.message).toContain(`"${tensor}"`);
    expect(e.message).toContain('index 3 ([3])');
  });
});
