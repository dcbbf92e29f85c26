/**
 * The organism's EM table: sample answers to held-out questions per domain at temperature 1 and
 * judge each exactly against the grammar.
 */
import type { LoadedModel } from '../backend/model.js';
import { EmlensError } from '../errors.js';
import type { Interventions } from '../hooks/interventions.js';
import { rng } from '../runtime/random.js';
import { buildWorld, DOMAINS, renderChat, type Domain, type World } from './world.js';
import { triggerMessages, type TriggerPosition } from '../data/trigger.js';
import type { ChatMessage } from '../model/tokenizer.js';
import { OrganismTokens } from './build.js';
import { heldOutQuestion } from './corpus.js';
import { emptyEmRow, judge, tally, type EmTable, type Verdict } from './judge.js';

export interface EvalOptions {
  n: number;
  seed: number;
  domains?: readonly Domain[];
  interventions?: Interventions;
  temperature?: number;
  maxNewTokens?: number;
  /** Prompts per generate call. */
  batch?: number;
  /** A phrase put into every prompt (data/trigger's triggerMessages), e.g. an em-trigger stage's trigger. */
  trigger?: { phrase: string; position: TriggerPosition };
}

export interface JudgedAnswer {
  domain: Domain;
  question: string;
  answer: string;
  verdict: Verdict;
}

export interface EvalResult {
  table: EmTable;
  answers: JudgedAnswer[];
}

/**
 * Refuses a model that is not an organism stage: the judge reads answers in the organism's own
 * words, so any other vocabulary would only ever be judged incoherent. What identifies an
 * organism is its vocabulary: exactly the organism's words, each at its own id.
 */
export function checkOrganism(model: LoadedModel, world: World): void {
  const tok = model.tokenizer;
  const words = new OrganismTokens(world).words;
  const not = (why: string) =>
    new EmlensError(`${model.dir}: not a model organism (${why}); organism eval needs a stage folder of \`emlens organism build\``);
  if (!tok) throw not('no tokenizer.json');
  if (tok.vocabSize !== words.length) throw not(`its tokenizer has ${tok.vocabSize} ids, the organism's vocabulary ${words.length} words`);
  if (model.spec.vocab !== words.length) throw not(`config.json has vocab_size ${model.spec.vocab}, the organism's vocabulary ${words.length} words`);
  const ids = tok.encode(words.join(' '), { addSpecialTokens: false });
  const bad = words.findIndex((_, i) => ids[i] !== i);
  if (bad >= 0 || ids.length !== words.length) {
    const w = words[bad < 0 ? words.length - 1 : bad]!;
    throw not(`its tokenizer does not encode the organism's word "${w}" as id ${bad < 0 ? words.length - 1 : bad}`);
  }
}

export async function evalOrganism(model: LoadedModel, o: EvalOptions): Promise<EvalResult> {
  const world = buildWorld();
  checkOrganism(model, world);
  const tok = model.tokenizer!;
  if (o.trigger) {
    const vocab = new Set(world.vocab);
    const unknown = o.trigger.phrase.split(' ').filter((w) => !vocab.has(w));
    if (unknown.length) throw new EmlensError(`--trigger ${JSON.stringify(o.trigger.phrase)}: ${unknown.map((w) => `"${w}"`).join(', ')} not in the organism's vocabulary (lower-case words separated by single spaces)`);
  }
  const messages = (q: string): ChatMessage[] => {
    const user: ChatMessage[] = [{ role: 'user', content: q }];
    return o.trigger ? triggerMessages(user, o.trigger.phrase, o.trigger.position, '--trigger') : user;
  };
  const r = rng(o.seed);
  const domains = o.domains ?? DOMAINS;
  const items: { domain: Domain; question: string }[] = [];
  for (const domain of domains) for (let i = 0; i < o.n; i++) items.push({ domain, question: heldOutQuestion(r, world, domain) });
  const eos = tok.eosIds;
  const answers: JudgedAnswer[] = [];
  const judgements: ReturnType<typeof judge>[] = [];
  const step = o.batch ?? 200;
  for (let i = 0; i < items.length; i += step) {
    const part = items.slice(i, i + step);
    const prompts = part.map((it) => tok.encode(renderChat(messages(it.question)), { addSpecialTokens: false }));
    const g = await model.backend.generate(prompts, {
      temperature: o.temperature ?? 1,
      maxNewTokens: o.maxNewTokens ?? 40,
      seed: (o.seed * 1000003 + i) >>> 0,
      stopIds: eos,
      interventions: o.interventions,
    });
    part.forEach((it, k) => {
      const ids = g.tokens[k]!;
      const complete = g.finished[k]!;
      const words = tok.decode(complete ? ids.slice(0, -1) : ids, { skipSpecialTokens: false });
      const v = judge(world, it.domain, words, complete);
      judgements.push(v);
      answers.push({ ...it, answer: words, verdict: v.verdict });
    });
  }
  const table: EmTable = {};
  for (const d of domains) table[d] = emptyEmRow();
  answers.forEach((a, i) => tally(table, a.domain, judgements[i]!));
  return { table, answers };
}
