/**
 * Direction files in the commands that read them. `emlens generate --steer/--ablate` reads the
 * three formats `emlens directions` writes (GGUF control vector, .npy + sidecar, safetensors):
 * the steered and ablated tokens equal the library's engine run with the vectors the test itself
 * put in the files. A folder, an all-zero direction to ablate, a NaN direction given to project:
 * one line naming the file and layer.
 */
import { spawnSync } from 'node:child_process';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join, resolve } from 'node:path';
import { afterAll, describe, expect, it } from 'vitest';
import { LoadedModel } from '../../src/backend/model.js';
import { hookName } from '../../src/hooks/names.js';
import { writeDirectionFile } from '../../src/io/directions.js';
import { writeControlVectorGguf } from '../../src/io/gguf.js';
import { writeDirectionsNpy } from '../../src/io/npy.js';
import { projections } from '../../src/directions/separation.js';
import { EmlensError } from '../../src/errors.js';
import { writePlanted } from '../helpers/planted.js';

const ROOT = resolve(__dirname, '../..');
const BIN = join(ROOT, 'dist/cli/main.js');
const AID = resolve(ROOT, '../shared/models/aidreams260k');
const dir = mkdtempSync(join(tmpdir(), 'emlens-gendirs-'));
afterAll(() => rmSync(dir, { recursive: true, force: true }));

function emlens(...args: string[]) {
  const r = spawnSync(process.execPath, [BIN, ...args], { encoding: 'utf8', env: { ...process.env, HF_HUB_OFFLINE: '1' } });
  return { code: r.status, stdout: r.stdout, stderr: r.stderr };
}

function expectOneLineError(r: ReturnType<typeof emlens>, pattern: RegExp) {
  expect(r.code, r.stdout).not.toBe(0);
  const lines = r.stderr.trim().split('\n');
  expect(lines, r.stderr).toHaveLength(1);
  expect(lines[0]).toMatch(pattern);
}

describe('generate reads every direction format', () => {
  it('GGUF and npy steer and ablate exactly like the vectors they hold', async () => {
    const m = await LoadedModel.load(AID);
    const D = m.spec.dModel;
    const v1 = Float32Array.from({ length: D }, (_, i) => Math.cos(i * 0.7 + 1));
    const v2 = Float32Array.from({ length: D }, (_, i) => Math.sin(i * 0.3 - 2));
    const layers = new Map([[1, v1], [2, v2]]);
    const gguf = join(dir, 'd.gguf');
    writeControlVectorGguf(gguf, layers, { modelHint: 'llama' });
    const npy = join(dir, 'd.npy');
    writeDirectionsNpy(npy, layers, {});
    const prompt = 'Echoes of';
    const ids = m.tokenizer!.encode(prompt);
    const want = await m.engine.generate([ids], { maxNewTokens: 10, interventions: { steer: [{ hook: hookName(2, 'resid_post'), vector: v2, scale: 5 }] } });
    const wantAbl = await m.engine.generate([ids], {
      maxNewTokens: 10,
      interventions: { ablate: [{ hook: hookName(1, 'resid_post'), directions: [v1] }, { hook: hookName(2, 'resid_post'), directions: [v2] }] },
    });
    const plain = await m.engine.generate([ids], { maxNewTokens: 10 });
    expect(want.tokens[0]).not.toEqual(plain.tokens[0]);
    for (const file of [gguf, npy]) {
      const s = emlens('generate', '--model', AID, '--prompt', prompt, '--max-new-tokens', '10', '--steer', file, '--layer', '2', '--scale', '5', '--json');
      expect(s.code, s.stderr).toBe(0);
      expect(JSON.parse(s.stdout).tokens).toEqual(want.tokens[0]);
      const a = emlens('generate', '--model', AID, '--prompt', prompt, '--max-new-tokens', '10', '--ablate', file, '--json');
      expect(a.code, a.stderr).toBe(0);
      expect(JSON.parse(a.stdout).tokens).toEqual(wantAbl.tokens[0]);
    }
  });

  it('a folder, or an all-zero direction to ablate, is one line naming it', () => {
    expectOneLineError(emlens('generate', '--model', AID, '--prompt', 'x', '--steer', dir, '--layer', '1', '--scale', '1'), /--steer .*emlens-gendirs-\w+: is a folder, not a direction file/);
    expectOneLineError(emlens('generate', '--model', AID, '--prompt', 'x', '--ablate', dir), /--ablate .*: is a folder, not a direction file/);
    const zero = join(dir, 'zero.safetensors');
    writeDirectionFile(zero, new Map([[1, new Float32Array(64).fill(1)], [3, new Float32Array(64)]]), {});
    expectOneLineError(emlens('generate', '--model', AID, '--prompt', 'x', '--ablate', zero), /--ablate .*zero\.safetensors: the direction of layer 3 is all zero; there is nothing to project out/);
  });
});

describe('a NaN direction names its file and layer', () => {
  it('emlens project: the loader refuses it (npy had no check before)', () => {
    const d = 4;
    const acts = writePlanted(join(dir, 'acts'), { layers: new Map([[1, Float32Array.from({ length: 3 * d }, (_, i) => i % 5)]]), d, labels: [{ label: 0 }, { label: 1 }, { label: 1 }] });
    const npy = join(dir, 'nan.npy');
    writeDirectionsNpy(npy, new Map([[1, Float32Array.of(1, NaN, 0, 2)]]), {});
    expectOneLineError(emlens('project', '--acts', acts, '--direction', npy, '--out', join(dir, 'p.html')), /nan\.npy: row 0 \(layer 1\): value at index 1 is NaN/);
  });

  it('projections: the message says what the direction is', () => {
    let msg = '';
    try {
      projections(new Float32Array(4), 2, Float32Array.of(NaN, 1), 'dirs.npy, layer 3');
    } catch (e) {
      expect(e).toBeInstanceOf(EmlensError);
      msg = (e as Error).message;
    }
    expect(msg).toBe('dirs.npy, layer 3: has norm NaN, cannot normalise');
  });
});
