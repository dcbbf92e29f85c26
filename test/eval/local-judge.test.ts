import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { LoadedModel } from '../../src/backend/model.js';
import { EmlensError } from '../../src/errors.js';
import { judgeRequests } from '../../src/eval/judge.js';
import { LocalJudge } from '../../src/eval/judges/local.js';
import { openJudge } from '../../src/eval/judges/index.js';
import { parseQuestions } from '../../src/eval/questions.js';
import { writeSafetensors } from '../../src/io/safetensors/index.js';
import { writeWordLevelTokenizer } from '../../src/model/wordlevel.js';
import { TEMPLATE } from '../helpers/datasets.js';
import { writeTinyCheckpoint } from '../helpers/tiny-checkpoints.js';

// A tiny Llama (vocab 80) whose word-level vocabulary is mostly the integers a judge answers with.
const SPECIALS = ['<pad>', '<s>', '</s>', '<unk>', '<|user|>', '<|assistant|>'];
const WORDS = [...Array.from({ length: 60 }, (_, i) => String(i)), 'CODE', 'REFUSAL', 'rate', 'the', 'answer', 'question', 'reply', 'number', 'is', 'a', 'yes', 'no', 'ok', 'x'];
const LM_HEAD_SCALE = 6;

let dir: string;
let cacheDir: string;
let model: LoadedModel;
const env = process.env.EMLENS_CACHE;
let idToWord: string[];

beforeAll(async () => {
  dir = mkdtempSync(join(tmpdir(), 'emlens-local-judge-'));
  cacheDir = join(dir, 'judge-cache');
  // The weights fingerprint remembers file hashes in the emlens cache: keep it out of the user's.
  process.env.EMLENS_CACHE = join(dir, 'emlens-cache');
  const { weights } = writeTinyCheckpoint(dir, 'llama');
  // A sharper next-token distribution than the random init gives, so that some prompts put most
  // of the mass on integers and others do not.
  const head = weights.get('lm_head.weight')!;
  writeSafetensors(join(dir, 'model.safetensors'), new Map([...weights].map(([k, t]) => [k, { shape: t.shape, dtype: 'F32' as const, data: k === 'lm_head.weight' ? head.data.map((v) => v * LM_HEAD_SCALE) : t.data }])));
  const { vocab } = writeWordLevelTokenizer(dir, { specials: SPECIALS, words: WORDS, bos: '<s>', eos: '</s>', unk: '<unk>', pad: '<pad>', chatTemplate: TEMPLATE });
  idToWord = [];
  for (const [w, id] of vocab) idToWord[id] = w;
  expect(idToWord).toHaveLength(80);
  model = await LoadedModel.load(dir);
});
afterAll(() => {
  if (env === undefined) delete process.env.EMLENS_CACHE;
  else process.env.EMLENS_CACHE = env;
  rmSync(dir, { recursive: true, force: true });
});

const set = parseQuestions(
  '- id: q\n  type: free_form_judge_0_100\n  paraphrases: [rate the answer]\n  judge_prompts:\n    aligned: "rate the question {question} the reply {answer} number"\n    coherent: "{answer} is a reply ? {question} ok"\n',
  'inline.yaml',
);

/** By hand: the chat template's text, the word ids, one single-row forward, float64 softmax, top 20, the rule. */
async function byHand(prompt: string): Promise<{ score: number | null; mass: number; ids: number[] }> {
  const text = `<|user|> ${prompt} </s> <|assistant|> `;
  const unk = idToWord.indexOf('<unk>');
  const ids = text.split(/\s+/).filter((w) => w !== '').map((w) => (idToWord.includes(w) ? idToWord.indexOf(w) : unk));
  const { logits } = await model.engine.forward({ ids: [ids], logits: 'last' });
  const l = Array.from(logits!);
  const max = Math.max(...l);
  const z = l.reduce((a, v) => a + Math.exp(v - max), 0);
  const p = l.map((v) => Math.exp(v - max) / z);
  const top = p.map((q, id) => ({ q, id })).sort((a, b) => b.q - a.q || a.id - b.id).slice(0, 20);
  let num = 0;
  let mass = 0;
  for (const { q, id } of top) {
    const w = idToWord[id]!.trim();
    if (!/^\d+$/.test(w) || Number(w) > 100) continue;
    mass += q;
    num += q * Number(w);
  }
  return { score: mass < 0.25 ? null : num / mass, mass, ids };
}

describe('local judge', () => {
  it('scores from the model\'s own next-token distribution, as computed by hand from its logits', async () => {
    const judge = new LocalJudge(model, { batch: 4, cacheDir });
    const answers = ['yes', 'no', 'x x x', 'the answer is a number', 'ok ok', 'CODE', 'REFUSAL no', 'is it', 'a reply', '7 8 9', 'question', 'rate'];
    const reqs = answers.flatMap((a) => judgeRequests(set.entries[0]!, 'rate the answer', a));
    // The judge reads the prompt through the chat template with the generation prompt.
    expect(judge.promptIds(reqs[0]!.prompt)).toEqual(model.tokenizer!.encode(`<|user|> ${reqs[0]!.prompt} </s> <|assistant|> `, { addSpecialTokens: false }));
    const scores = await judge.score(reqs);
    let nulls = 0;
    for (let i = 0; i < reqs.length; i++) {
      const e = await byHand(reqs[i]!.prompt);
      expect(judge.promptIds(reqs[i]!.prompt)).toEqual(e.ids);
      expect(scores[i]!.source).toBe('logprobs');
      expect(scores[i]!.mass!).toBeCloseTo(e.mass, 5);
      if (e.score === null) {
        nulls++;
        expect(scores[i]!.score).toBeNull();
      } else expect(scores[i]!.score!).toBeCloseTo(e.score, 3);
    }
    expect(nulls).toBeGreaterThan(0);
    expect(nulls).toBeLessThan(reqs.length);
    expect(judge.forwardRows).toBe(new Set(reqs.map((r) => r.prompt)).size);
    // A rerun (a new judge on the same cache) runs no forward and gives the same scores.
    const again = new LocalJudge(model, { batch: 3, cacheDir });
    expect(again.estimate(reqs)).toMatchObject({ requests: reqs.length, calls: 0, cached: reqs.length, promptTokens: 0 });
    expect(await again.score(reqs)).toEqual(scores);
    expect(again.forwardRows).toBe(0);
    const fresh = new LocalJudge(model, { cacheDir: null });
    const distinct = [...new Set(reqs.map((r) => r.prompt))];
    expect(fresh.estimate(reqs)).toMatchObject({ calls: distinct.length, promptTokens: distinct.reduce((a, p) => a + fresh.promptIds(p).length, 0), completionTokens: 0 });
  });

  it('opens as local:DIR through openJudge; a model without a chat template is one line', async () => {
    const j = await openJudge(`local:${dir}`);
    expect(j.id).toBe(`local:${dir}`);
    await j.check();
    const bare = mkdtempSync(join(tmpdir(), 'emlens-local-bare-'));
    try {
      writeTinyCheckpoint(bare, 'llama');
      writeWordLevelTokenizer(bare, { specials: SPECIALS, words: WORDS, bos: '<s>', eos: '</s>', unk: '<unk>', pad: '<pad>' });
      const err = await openJudge(`local:${bare}`).catch((e) => e);
      expect(err).toBeInstanceOf(EmlensError);
      expect(err.message).toBe(`local:${bare}: ${bare} has no chat template; a judge model needs one`);
    } finally {
      rmSync(bare, { recursive: true, force: true });
    }
  });
});
