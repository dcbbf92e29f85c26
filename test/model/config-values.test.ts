/**
 * config.json values out of range or of the wrong kind, and JSON that is not JSON: each one line
 * naming the file and the field (before, most were accepted and broke the run later, or printed
 * JSON.parse's two-line message).
 */
import { readFileSync } from 'node:fs';
import { join, resolve } from 'node:path';
import { describe, expect, it } from 'vitest';
import { EmlensError } from '../../src/errors.js';
import { parseConfig, parseJsonObject } from '../../src/model/config.js';

const AID = resolve(__dirname, '../../../shared/models/aidreams260k');
const base = JSON.parse(readFileSync(join(AID, 'config.json'), 'utf8')) as Record<string, unknown>;
const text = readFileSync(join(AID, 'config.json'), 'utf8');

function messageOf(f: () => unknown): string {
  try {
    f();
  } catch (e) {
    expect(e).toBeInstanceOf(EmlensError);
    const m = (e as Error).message;
    expect(m).not.toMatch(/\n/);
    return m;
  }
  throw new Error('expected an error');
}
const bad = (over: Record<string, unknown>, gen: Record<string, unknown> = {}) => messageOf(() => parseConfig({ ...base, ...over }, 'm/config.json', gen, 'm/generation_config.json'));

describe('config.json values', () => {
  it.each([
    [{ max_position_embeddings: 0 }, 'm/config.json: "max_position_embeddings" must be a positive integer, got 0'],
    [{ max_position_embeddings: 12.5 }, 'm/config.json: "max_position_embeddings" must be a positive integer, got 12.5'],
    [{ rms_norm_eps: -1 }, 'm/config.json: "rms_norm_eps" must be > 0, got -1'],
    [{ rms_norm_eps: 0 }, 'm/config.json: "rms_norm_eps" must be > 0, got 0'],
    [{ rope_theta: 0 }, 'm/config.json: "rope_theta" must be > 0, got 0'],
    [{ rope_scaling: 'abc' }, 'm/config.json: "rope_scaling" must be an object or null, got "abc"'],
    [{ rope_scaling: 5 }, 'm/config.json: "rope_scaling" must be an object or null, got 5'],
    [{ rope_scaling: { type: 'linear', factor: -2 } }, 'm/config.json: "rope_scaling.factor" must be > 0, got -2'],
    [{ rope_scaling: { rope_type: 'llama3', factor: 8, low_freq_factor: 4, high_freq_factor: 4, original_max_position_embeddings: 64 } }, 'm/config.json: "rope_scaling.high_freq_factor" (4) must be greater than "rope_scaling.low_freq_factor" (4)'],
    [{ rope_scaling: { rope_type: 'llama3', factor: 8, low_freq_factor: 1, high_freq_factor: 4, original_max_position_embeddings: -64 } }, 'm/config.json: "rope_scaling.original_max_position_embeddings" must be a positive integer, got -64'],
    [{ rope_parameters: { rope_theta: 0 } }, 'm/config.json: "rope_parameters.rope_theta" must be > 0, got 0'],
    [{ eos_token_id: '2' }, 'm/config.json: "eos_token_id" must be a token id (an integer >= 0) or a list of them, got "2"'],
    [{ eos_token_id: [2, -1] }, 'm/config.json: "eos_token_id" must be a token id (an integer >= 0) or a list of them, got [2,-1]'],
    [{ bos_token_id: [1, 2] }, 'm/config.json: "bos_token_id" must be one token id, got a list'],
    [{ tie_word_embeddings: 'yes' }, 'm/config.json: "tie_word_embeddings" must be true or false, got "yes"'],
    [{ hidden_act: 'relu' }, 'm/config.json: "hidden_act" "relu" is not supported (silu, gelu_pytorch_tanh)'],
  ])('%j', (over, message) => expect(bad(over)).toBe(message));

  it('generation_config.json is checked too, and config.json even when generation_config.json overrides it', () => {
    expect(bad({}, { eos_token_id: '2' })).toBe('m/generation_config.json: "eos_token_id" must be a token id (an integer >= 0) or a list of them, got "2"');
    expect(bad({ eos_token_id: '2' }, { eos_token_id: 2 })).toMatch(/^m\/config\.json: "eos_token_id"/);
    expect(bad({ bos_token_id: '1' }, { bos_token_id: 1 })).toMatch(/^m\/config\.json: "bos_token_id"/);
  });

  it('gemma softcaps: null is none, a number must be > 0', () => {
    const g = JSON.parse(readFileSync(resolve(__dirname, '../fixtures/configs/google__gemma-2-9b-it.json'), 'utf8'));
    expect(parseConfig({ ...g, attn_logit_softcapping: null }).attnSoftcap).toBeNull();
    expect(parseConfig(g).attnSoftcap).toBe(50);
    expect(messageOf(() => parseConfig({ ...g, attn_logit_softcapping: 0 }))).toBe('config.json: "attn_logit_softcapping" must be > 0, got 0');
  });

  it('the real file still parses, unchanged', () => {
    const s = parseConfig(base, 'm/config.json');
    expect([s.maxPositions, s.rmsEps, s.rope.theta, s.eosIds, s.bosId, s.tiedEmbeddings]).toEqual([128, 1e-5, 10000, [2], 1, true]);
  });
});

describe('JSON that is not JSON: one line', () => {
  it.each([
    ['a byte-order mark', `\ufeff${text}`, 'm/config.json: invalid JSON: the file starts with a UTF-8 byte-order mark (save it without one)'],
    ['NaN (Python writes it for float nan)', text.replace('1e-05', 'NaN'), 'm/config.json: invalid JSON: "rms_norm_eps" is NaN, which JSON does not allow (and no usable value)'],
    ['-Infinity', text.replace('10000.0', '-Infinity'), 'm/config.json: invalid JSON: "rope_theta" is -Infinity, which JSON does not allow (and no usable value)'],
    ['a list', '[1]', 'm/config.json: must hold a JSON object, got a list'],
  ])('%s', (_what, body, message) => expect(messageOf(() => parseJsonObject(body, 'm/config.json'))).toBe(message));

  it('JSON.parse messages that quote several lines of the file are joined into one', () => {
    const m = messageOf(() => parseJsonObject(text.replace('"llama",', '"llama"'), 'm/config.json'));
    expect(m).toMatch(/^m\/config\.json: invalid JSON \(.+\)$/);
  });
});
