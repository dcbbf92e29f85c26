/**
 * tokenizer.json fields that tokenizers.js takes on trust (it guessed a model for type "Foo" and
 * kept string ids, which then failed mid-run as "input row 0: token id ... is outside the
 * vocabulary"): one line naming tokenizer.json and the field. The real tokenizers pass.
 */
import { mkdirSync, mkdtempSync, readFileSync, readdirSync, symlinkSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join, resolve } from 'node:path';
import { describe, expect, it } from 'vitest';
import { openModel } from '../../src/backend/model.js';
import { EmlensError } from '../../src/errors.js';
import { checkTokenizerJson, TextTokenizer } from '../../src/model/tokenizer.js';

const AID = resolve(__dirname, '../../../shared/models/aidreams260k');
const FIXTURES = resolve(__dirname, '../fixtures/tokenizers');
const tokenizer = JSON.parse(readFileSync(join(AID, 'tokenizer.json'), 'utf8'));

function messageOf(f: () => unknown): string {
  try {
    f();
  } catch (e) {
    expect(e).toBeInstanceOf(EmlensError);
    expect((e as Error).message).not.toMatch(/\n/);
    return (e as Error).message;
  }
  throw new Error('expected an error');
}
const check = (mutate: (t: any) => void) => {
  const t = structuredClone(tokenizer);
  mutate(t);
  return messageOf(() => checkTokenizerJson(t, 'm/tokenizer.json'));
};

describe('tokenizer.json fields', () => {
  it.each<[string, (t: any) => void, string]>([
    ['an unknown model type', (t) => (t.model.type = 'Foo'), 'm/tokenizer.json: "model.type" must be one of BPE, WordPiece, WordLevel, Unigram, got "Foo"'],
    ['a string id', (t) => (t.model.vocab.a = '7'), 'm/tokenizer.json: "model.vocab["a"]" must be an integer id >= 0, got "7"'],
    ['a negative id', (t) => (t.model.vocab.a = -1), 'm/tokenizer.json: "model.vocab["a"]" must be an integer id >= 0, got -1'],
    ['a repeated id', (t) => (t.model.vocab.zz = t.model.vocab.a), `m/tokenizer.json: "model.vocab["zz"]" repeats the id of "a", got ${tokenizer.model.vocab.a}`],
    ['a list vocab for BPE', (t) => (t.model.vocab = [['a', 0]]), 'm/tokenizer.json: "model.vocab" must be an object of token -> id, got [["a",0]]'],
    ['merges not a list', (t) => (t.model.merges = 5), 'm/tokenizer.json: "model.merges" must be a list, got 5'],
    ['a merge of one piece', (t) => (t.model.merges[2] = 'ab'), 'm/tokenizer.json: "model.merges[2]" must be "a b" or ["a", "b"], got "ab"'],
    ['unk_token a number', (t) => (t.model.unk_token = 0), 'm/tokenizer.json: "model.unk_token" must be a string or null, got 0'],
    ['no model', (t) => delete t.model, 'm/tokenizer.json: "model" must be an object, got undefined'],
    ['added_tokens not a list', (t) => (t.added_tokens = {}), 'm/tokenizer.json: "added_tokens" must be a list, got {}'],
    ['an added token with a string id', (t) => (t.added_tokens[1].id = '1'), 'm/tokenizer.json: "added_tokens[1].id" must be an integer id >= 0, got "1"'],
    ['a decoder without a type', (t) => (t.decoder = {}), 'm/tokenizer.json: "decoder" must be an object with a "type", or null, got {}'],
  ])('%s', (_what, mutate, message) => expect(check(mutate)).toBe(message));

  it('Unigram vocabularies are [piece, score] lists', () => {
    const uni = { model: { type: 'Unigram', vocab: [['<unk>', 0], ['a', -1.5]], unk_id: 0 } };
    checkTokenizerJson(uni, 'u.json');
    expect(messageOf(() => checkTokenizerJson({ model: { ...uni.model, vocab: [['a', 'x']] } }, 'u.json'))).toBe('u.json: "model.vocab[0]" must be [piece, score], got ["a","x"]');
    expect(messageOf(() => checkTokenizerJson({ model: { ...uni.model, unk_id: 5 } }, 'u.json'))).toBe('u.json: "model.unk_id" must be an id in 0..1 or null, got 5');
  });

  it('the real tokenizers pass (aidreams260k, Qwen2.5, Llama 3, Gemma 2)', () => {
    checkTokenizerJson(tokenizer, 'aidreams');
    for (const name of readdirSync(FIXTURES).filter((f) => !f.endsWith('.mjs'))) {
      checkTokenizerJson(JSON.parse(readFileSync(join(FIXTURES, name, 'tokenizer.json'), 'utf8')), name);
    }
  });
});

describe('tokenizer and model disagree', () => {
  function folder(tok: object, tokCfg?: object): string {
    const m = join(mkdtempSync(join(tmpdir(), 'emlens-tokf-')), 'm');
    mkdirSync(m);
    for (const f of ['config.json', 'model.safetensors', 'generation_config.json']) symlinkSync(join(AID, f), join(m, f));
    writeFileSync(join(m, 'tokenizer.json'), JSON.stringify(tok));
    writeFileSync(join(m, 'tokenizer_config.json'), JSON.stringify(tokCfg ?? JSON.parse(readFileSync(join(AID, 'tokenizer_config.json'), 'utf8'))));
    return m;
  }

  it('a token id past vocab_size is refused at load, naming both files (it failed mid-run)', async () => {
    const t = structuredClone(tokenizer);
    t.model.vocab.a = 600;
    const m = folder(t);
    await expect(openModel(m)).rejects.toThrow(`${join(m, 'tokenizer.json')}: has token id 600, outside the model's vocabulary (${join(m, 'config.json')} "vocab_size" 512)`);
  });

  it('tokenizer_config.json add_bos_token must be a boolean (a string was ignored)', async () => {
    const cfg = { ...JSON.parse(readFileSync(join(AID, 'tokenizer_config.json'), 'utf8')), add_bos_token: 'no' };
    const m = folder(tokenizer, cfg);
    await expect(TextTokenizer.load(m)).rejects.toThrow(`${join(m, 'tokenizer_config.json')}: "add_bos_token" must be true or false, got "no"`);
  });
});
