/**
 * `--fp32-decode inputs|store` on the commands that generate: a bad value, a quantised --weights
 * and --backend are one line each; `generate` runs on the store by default (and prints what the
 * library's store engine generates), and a --prompts run records the store in its sidecar, so a
 * resume must keep the source (a run on the inputs records nothing, as runs before the flag).
 */
import { mkdtempSync, readFileSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join, resolve } from 'node:path';
import { describe, expect, it } from 'vitest';
import { LoadedModel } from '../../src/backend/model.js';
import { cliRunner, expectOneLine } from '../helpers/cli-run.js';

const ROOT = resolve(__dirname, '../..');
const AID = resolve(ROOT, '../shared/models/aidreams260k');
const CACHE = mkdtempSync(join(tmpdir(), 'emlens-f32flag-cache-'));

const emlens = cliRunner(CACHE);
const oneLine = expectOneLine;

describe('--fp32-decode', () => {
  it.each(['generate', 'eval', 'steer-sweep', 'ablate-eval', 'serve'])('%s: a value outside inputs, store is a usage error', (cmd) => {
    oneLine(emlens([cmd, ...(cmd === 'serve' ? [AID] : []), '--fp32-decode', 'packed']), 2, /--fp32-decode must be one of inputs, store, got "packed"/);
  });

  it('with a quantised --weights, or with --backend, is a conflict', () => {
    oneLine(emlens(['generate', '--model', AID, '--prompt', 'Once', '--weights', 'int8', '--fp32-decode', 'store']), 1, /^emlens: --fp32-decode store applies to --weights fp32 only; --weights int8 always runs on its quantised store$/);
    oneLine(emlens(['generate', '--model', AID, '--prompt', 'Once', '--fp32-decode', 'inputs', '--backend', 'http://127.0.0.1:9']), 1, /^emlens: --fp32-decode inputs has no effect with --backend: the server holds the weights/);
    oneLine(emlens(['serve', AID, '--token', 'a-token-of-16-chars', '--weights', 'int4', '--fp32-decode', 'inputs']), 1, /^emlens: --fp32-decode inputs applies to --weights fp32 only/);
  });

  it('generate runs on the store by default and prints the store engine\'s greedy tokens', async () => {
    const r = emlens(['generate', '--model', AID, '--prompt', 'Once upon a time', '--max-new-tokens', '12', '--json']);
    expect(r.code, r.stderr).toBe(0);
    const prev = process.env.EMLENS_CACHE;
    process.env.EMLENS_CACHE = CACHE;
    try {
      const m = await LoadedModel.load(AID, { generateOnly: true });
      expect(m.engine.decodeSource).toBe('store');
      const ids = [m.tokenizer!.encode('Once upon a time')];
      const g = await m.engine.generate(ids, { maxNewTokens: 12, stopIds: m.tokenizer!.eosIds });
      expect(JSON.parse(r.stdout).tokens).toEqual(g.tokens[0]);
      const inputs = emlens(['generate', '--model', AID, '--prompt', 'Once upon a time', '--max-new-tokens', '12', '--json', '--fp32-decode', 'inputs']);
      expect(inputs.code, inputs.stderr).toBe(0);
      expect(JSON.parse(inputs.stdout).tokens).toEqual(g.tokens[0]);
    } finally {
      if (prev === undefined) delete process.env.EMLENS_CACHE;
      else process.env.EMLENS_CACHE = prev;
    }
  });

  it('--prompts records the store in its sidecar; --resume refuses the other source', () => {
    const dir = mkdtempSync(join(tmpdir(), 'emlens-f32flag-'));
    writeFileSync(join(dir, 'p.jsonl'), '{"text": "Once upon"}\n{"text": "Echoes of"}\n');
    const args = (out: string) => ['generate', '--model', AID, '--prompts', join(dir, 'p.jsonl'), '--out', join(dir, out), '--max-new-tokens', '4'];
    expect(emlens(args('s.jsonl')).code).toBe(0);
    expect(JSON.parse(readFileSync(join(dir, 's.jsonl.meta.json'), 'utf8')).run.fp32_decode).toBe('store');
    oneLine(emlens([...args('s.jsonl'), '--resume', '--fp32-decode', 'inputs']), 1, /--resume: fp32_decode was "store" in .*, now null; resume with the same flags/);
    expect(emlens([...args('s.jsonl'), '--resume']).code).toBe(0);
    expect(emlens([...args('i.jsonl'), '--fp32-decode', 'inputs']).code).toBe(0);
    expect(JSON.parse(readFileSync(join(dir, 'i.jsonl.meta.json'), 'utf8')).run).not.toHaveProperty('fp32_decode');
    oneLine(emlens([...args('i.jsonl'), '--resume']), 1, /--resume: fp32_decode was null in .*, now "store"/);
  });
});
