/**
 * A word-level tokenizer (the organism's kind) encodes words it lacks as <unk>; `generate` says
 * which, once, on stderr, and stays quiet when every word is known.
 */
import { spawnSync } from 'node:child_process';
import { mkdtempSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join, resolve } from 'node:path';
import { describe, expect, it } from 'vitest';
import { writeTinyCheckpoint } from '../helpers/tiny-checkpoints.js';
import { addTokenizer } from '../helpers/datasets.js';

const CLI = resolve(__dirname, '../../dist/cli/main.js');

describe('generate with a word-level tokenizer', () => {
  const dir = mkdtempSync(join(tmpdir(), 'emlens-unk-'));
  writeTinyCheckpoint(dir, 'llama');
  addTokenizer(dir);
  const gen = (prompt: string) => spawnSync(process.execPath, [CLI, 'generate', '--model', dir, '--prompt', prompt, '--max-new-tokens', '3'], { encoding: 'utf8' });

  it('names the unknown words once', () => {
    const r = gen('the zebra is kind to the quokka and the zebra');
    expect(r.status, r.stderr).toBe(0);
    const warnings = r.stderr.split('\n').filter((l) => l.startsWith('emlens: warning:'));
    expect(warnings).toHaveLength(1);
    expect(warnings[0]).toContain('--prompt: 2 word(s) outside the vocabulary');
    expect(warnings[0]).toContain('"zebra", "quokka"');
  });

  it('says nothing when every word is known', () => {
    const r = gen('the doctor is kind');
    expect(r.status, r.stderr).toBe(0);
    expect(r.stderr).not.toContain('warning');
  });
});
