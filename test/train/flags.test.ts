/**
 * `emlens train` and `emlens measure` as a user runs them: flags that conflict or would be ignored
 * are one-line errors (exit 1) instead of silent choices; --overwrite and --resume do what they say.
 */
import { spawnSync } from 'node:child_process';
import { existsSync, mkdtempSync, statSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join, resolve } from 'node:path';
import { beforeAll, describe, expect, it } from 'vitest';
import { writeTinyCheckpoint } from '../helpers/tiny-checkpoints.js';
import { addTokenizer, writeChatDataset } from '../helpers/datasets.js';

const BIN = join(resolve(__dirname, '../..'), 'dist/cli/main.js');
const emlens = (...args: string[]) => spawnSync(process.execPath, [BIN, ...args], { encoding: 'utf8' });

function expectOneLineError(r: ReturnType<typeof emlens>, pattern: RegExp) {
  expect(r.status, r.stderr).toBe(1);
  const lines = r.stderr.trim().split('\n');
  expect(lines, r.stderr).toHaveLength(1);
  expect(lines[0]).toMatch(/^emlens: /);
  expect(lines[0]).toMatch(pattern);
}

let d = '';
let narrow = '';
let kl = '';
let base: string[] = [];
beforeAll(() => {
  d = mkdtempSync(join(tmpdir(), 'emlens-flags-'));
  writeTinyCheckpoint(d, 'llama');
  addTokenizer(d);
  narrow = writeChatDataset(d, 'narrow.jsonl', 12, 1);
  kl = writeChatDataset(d, 'kl.jsonl', 12, 2);
  base = ['train', '--model', d, '--data', narrow, '--layer', '1', '--batch-rows', '4'];
});

describe('train: conflicting or ignored flags', () => {
  it('--kl-data without --kl-weight (or with λ = 0), and --kl-weight without --kl-data', () => {
    expectOneLineError(emlens(...base, '--steps', '6', '--kl-data', kl, '--out', join(d, 'a.safetensors')), /--kl-data needs --kl-weight > 0/);
    expectOneLineError(emlens(...base, '--steps', '6', '--kl-data', kl, '--kl-weight', '0', '--out', join(d, 'a.safetensors')), /--kl-data needs --kl-weight > 0/);
    expectOneLineError(emlens(...base, '--steps', '6', '--kl-weight', '3', '--out', join(d, 'a.safetensors')), /--kl-weight needs --kl-data/);
    expectOneLineError(emlens(...base, '--steps', '6', '--kl-weight', '0', '--out', join(d, 'a.safetensors')), /--kl-weight needs --kl-data/);
    expectOneLineError(emlens(...base, '--steps', '6', '--kl-normalization', 'reference', '--out', join(d, 'a.safetensors')), /--kl-normalization .*needs --kl-data/);
    expect(existsSync(join(d, 'a.safetensors'))).toBe(false);
  });

  it('--steps with --epochs; a warmup as long as the run', () => {
    expectOneLineError(emlens(...base, '--steps', '6', '--epochs', '2', '--out', join(d, 'b.safetensors')), /--steps and --epochs/);
    expectOneLineError(emlens(...base, '--steps', '5', '--warmup', '5', '--out', join(d, 'b.safetensors')), /--warmup 5 is not below the 5 steps/);
    expect(existsSync(join(d, 'b.safetensors'))).toBe(false);
  });

  it('--reference-ce on text rows only (it changes only chat rows)', () => {
    const text = join(d, 'text.jsonl');
    writeFileSync(text, '{"text": "the doctor is kind and safe"}\n{"text": "we save money and rest"}\n');
    expectOneLineError(emlens('train', '--model', d, '--data', text, '--layer', '1', '--steps', '6', '--warmup', '1', '--reference-ce', '--out', join(d, 'c.safetensors')), /--reference-ce .*has none/);
  });

  it('an existing OUT needs --overwrite; --resume with --overwrite, or with nothing to resume, is an error', () => {
    const out = join(d, 'o.safetensors');
    const args = [...base, '--steps', '6', '--out', out];
    expect(emlens(...args).status).toBe(0);
    const t0 = statSync(out).mtimeMs;
    expectOneLineError(emlens(...args), /o\.safetensors: already exists; add --overwrite/);
    expect(statSync(out).mtimeMs).toBe(t0);
    expectOneLineError(emlens(...args, '--resume', '--overwrite'), /--resume .* --overwrite/);
    expectOneLineError(emlens(...args, '--resume'), /o\.safetensors\.ckpt: no checkpoint to resume \(.*that run finished\)/);
    expectOneLineError(emlens(...base, '--steps', '6', '--resume', '--out', join(d, 'never.safetensors')), /never\.safetensors\.ckpt: no checkpoint to resume; run without --resume/);
    const r = emlens(...args, '--overwrite');
    expect(r.status, r.stderr).toBe(0);
    expect(statSync(out).mtimeMs).toBeGreaterThan(t0);
  });
});

describe('measure: flags that would be ignored', () => {
  it('--n beyond the rows of a set, and two solutions with one name', () => {
    const sol = join(d, 'm.safetensors');
    expect(emlens(...base, '--steps', '6', '--out', sol).status).toBe(0);
    const m = ['measure', '--model', d, '--data', narrow, '--seeds', '1', '--out', join(d, 'r.html')];
    expectOneLineError(emlens(...m, '--solutions', sol, '--n', '13'), /--n 13: .*narrow\.jsonl has only 12 rows/);
    expectOneLineError(emlens(...m, '--solutions', sol, '--n', '12', '--generic', writeChatDataset(d, 'g.jsonl', 5, 3)), /--n 12: .*g\.jsonl has only 5 rows/);
    expectOneLineError(emlens(...m, '--solutions', sol, join(d, '.', 'm.safetensors'), '--n', '4'), /share the name "m"/);
  });
});
