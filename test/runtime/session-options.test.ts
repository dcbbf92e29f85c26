/**
 * Session options reach ONNX Runtime per model: an execution provider ORT does not have is refused
 * by ORT itself, and one thread without spinning computes the same logits as the defaults.
 */
import { mkdtempSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { describe, expect, it } from 'vitest';
import { LoadedModel } from '../../src/backend/model.js';
import { defaultSessionOptions } from '../../src/runtime/ort.js';
import { writeTinyCheckpoint } from '../helpers/tiny-checkpoints.js';
import { seqIds } from '../helpers/compare.js';

describe('ORT session options', () => {
  const dir = mkdtempSync(join(tmpdir(), 'emlens-sessopts-'));
  writeTinyCheckpoint(dir, 'llama');

  it('an unknown execution provider is refused by ORT', async () => {
    const m = await LoadedModel.load(dir, { session: { executionProviders: ['no-such-provider'] } });
    await expect(m.engine.forward({ ids: [seqIds(5, m.spec.vocab, 1)], logits: 'last' })).rejects.toThrow(/no-such-provider/);
  });

  it('one thread without spinning gives the default logits', async () => {
    const ids = [seqIds(7, 64, 3)];
    const a = await (await LoadedModel.load(dir)).engine.forward({ ids, logits: 'all' });
    const b = await (await LoadedModel.load(dir, { session: { intraOpThreads: 1, spinning: false } })).engine.forward({ ids, logits: 'all' });
    expect(Array.from(b.logits!)).toEqual(Array.from(a.logits!));
  });

  it('defaults come from the environment', () => {
    const saved = { ...process.env };
    try {
      Object.assign(process.env, { EMLENS_EP: 'cuda, cpu', EMLENS_THREADS: '3', EMLENS_SPIN: '0' });
      expect(defaultSessionOptions()).toEqual({ executionProviders: ['cuda', 'cpu'], intraOpThreads: 3, spinning: false });
      delete process.env.EMLENS_EP;
      delete process.env.EMLENS_THREADS;
      delete process.env.EMLENS_SPIN;
      expect(defaultSessionOptions()).toEqual({ executionProviders: ['cpu'], intraOpThreads: 0, spinning: true });
    } finally {
      process.env = saved;
    }
  });
});
