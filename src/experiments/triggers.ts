/**
 * Semantic containment (`emlens triggers`; METHODS.md "Semantic containment", Saxena, arXiv
 * 2603.04407): the same questions asked with the trained trigger, with none, with each rephrasing
 * and with each control phrase, each phrase put in at the set's position by triggerMessages; EM
 * per condition with Wilson 95% intervals, and EM(trigger) against EM(none).
 *
 * One sampling-and-judging implementation: each condition is `emlens eval`'s run (planItems,
 * runItems) of the question set with the phrase put in. Paired design: every condition uses the
 * same --seed, so its paraphrase draws and its batches' sampling seeds are the other conditions'
 * (only the prompt differs); the "none" condition is exactly `emlens eval` of the questions.
 * The judge sees the question as the model was asked it: a prefix / suffix trigger is in it, a
 * system one is not (as eval's judge never sees an entry's system prompt).
 *
 * DIR/answers.jsonl holds every condition's rows, each with `condition` and `phrase`; a resumed
 * run samples and judges only the (condition, phrase, question, sample) rows that are missing.
 */
import { existsSync } from 'node:fs';
import { basename, join } from 'node:path';
import { EmlensError } from '../errors.js';
import type { LoadedModel } from '../backend/model.js';
import type { Judge } from '../eval/judge.js';
import type { QuestionSet } from '../eval/questions.js';
import { emRate } from '../eval/em.js';
import { triggerMessages, type TriggerPosition, type TriggerSet } from '../data/trigger.js';
import type { ChatMessage } from '../model/tokenizer.js';
import { writeFileAtomic } from '../io/atomic.js';
import { ensureDir } from '../io/paths.js';
import { barChart } from '../viz/figures.js';
import { writeReport, type Block } from '../viz/report.js';
import { VERSION } from '../version.js';
import {
  ANSWERS,
  appendRows,
  checkMetrics,
  checkResume,
  dryRunEstimate,
  itemKey,
  planItems,
  readAnswers,
  RUN,
  runItems,
  scored,
  type AnswerRow,
  type EvalItem,
  type RunKey,
  type RunProgress,
  type SampleOptions,
} from './eval.js';
import { provenanceFields } from './eval-report.js';

export const CONDITION_NAMES = ['trigger', 'none', 'rephrased', 'control'] as const;
export type ConditionName = (typeof CONDITION_NAMES)[number];

export interface Condition {
  name: ConditionName;
  /** The phrase put in; null for "none". */
  phrase: string | null;
  /** A short label: "trigger", "none", "rephrased 1", "control 2". */
  label: string;
}

/** Row fields of answers.jsonl beside eval's: a metric may not take them. */
const CONDITION_FIELDS = ['condition', 'phrase'];

export type TriggerRow = AnswerRow & { condition: ConditionName; phrase: string | null };

export function conditionsOf(t: TriggerSet): Condition[] {
  return [
    { name: 'trigger', phrase: t.trigger, label: 'trigger' },
    { name: 'none', phrase: null, label: 'none' },
    ...t.rephrased.map((p, i) => ({ name: 'rephrased' as const, phrase: p, label: `rephrased ${i + 1}` })),
    ...t.control.map((p, i) => ({ name: 'control' as const, phrase: p, label: `control ${i + 1}` })),
  ];
}

/**
 * The question set with `phrase` put into every paraphrase's prompt at `position` (an entry's own
 * system prompt, if any, kept after a system trigger); the set itself for null.
 */
export function conditionQuestions(q: QuestionSet, phrase: string | null, position: TriggerPosition): QuestionSet {
  if (phrase === null) return q;
  return {
    file: q.file,
    entries: q.entries.map((e) => {
      const chats = e.paraphrases.map((p) => {
        const ms: ChatMessage[] = [...(e.system !== undefined ? [{ role: 'system', content: e.system }] : []), { role: 'user', content: p }];
        return triggerMessages(ms, phrase, position, `${q.file}: entry ${e.id}`);
      });
      const system = chats[0]![0]!.role === 'system' ? chats[0]![0]!.content : undefined;
      return { ...e, ...(system !== undefined ? { system } : {}), paraphrases: chats.map((ms) => ms[ms.length - 1]!.content) };
    }),
  };
}

const condKey = (c: { condition?: unknown; phrase?: unknown }, questionId: string, sample: number): string =>
  `${String(c.condition)}\u0000${c.phrase === null ? '' : `=${String(c.phrase)}`}\u0000${itemKey(questionId, sample)}`;

export interface ConditionPlan {
  condition: Condition;
  questions: QuestionSet;
  items: EvalItem[];
}

/** Every condition's items, each planned with the same seed (the paired design). */
export function planConditions(q: QuestionSet, t: TriggerSet, samples: number, seed: number): ConditionPlan[] {
  return conditionsOf(t).map((condition) => {
    const questions = conditionQuestions(q, condition.phrase, t.position);
    return { condition, questions, items: planItems(questions, samples, seed) };
  });
}

/** The keys of a condition's items already in `rows`. */
function haveOf(rows: readonly TriggerRow[], c: Condition): Set<string> {
  return new Set(rows.filter((r) => r.condition === c.name && r.phrase === c.phrase).map((r) => itemKey(r.question_id, r.sample)));
}

/** What a dry run reports, summed over the conditions (rows already in `rows` left out). */
export function triggersDryRun(judge: Judge, plans: readonly ConditionPlan[], rows: readonly TriggerRow[], maxNewTokens: number) {
  const sum = { answers: 0, have: 0, sampleTokens: 0, judge: { requests: 0, cached: 0, calls: 0, promptTokens: 0, completionTokens: 0 } };
  for (const p of plans) {
    const have = haveOf(rows, p.condition);
    const e = dryRunEstimate(judge, p.items, have, maxNewTokens);
    sum.answers += e.answers;
    sum.have += p.items.length - e.answers;
    sum.sampleTokens += e.sampleTokens;
    for (const k of Object.keys(sum.judge) as (keyof typeof sum.judge)[]) sum.judge[k] += e.judge[k];
  }
  return sum;
}

// ---------------------------------------------------------------- rates and the ratio

export interface ConditionRate {
  em: number;
  /** Answers with both scores (the EM rate's denominator). */
  n: number;
  em_rate: number | null;
  ci95: [number, number];
  coherent_rate: number | null;
  coherent_ci95: [number, number];
  n_answers: number;
  by_domain?: Record<string, { em: number; n: number; em_rate: number | null; ci95: [number, number] }>;
}

export function conditionRate(rows: readonly AnswerRow[]): ConditionRate {
  const r = emRate(rows.map(scored));
  const out: ConditionRate = { em: r.em, n: r.n, em_rate: r.em_rate, ci95: r.ci95, coherent_rate: r.coherent_rate, coherent_ci95: r.coherent_ci95, n_answers: rows.length };
  const domains = [...new Set(rows.map((x) => x.domain).filter((d): d is string => d !== undefined))];
  if (domains.length) {
    out.by_domain = Object.fromEntries(
      domains.map((d) => {
        const e = emRate(rows.filter((x) => x.domain === d).map(scored));
        return [d, { em: e.em, n: e.n, em_rate: e.em_rate, ci95: e.ci95 }];
      }),
    );
  }
  return out;
}

/**
 * EM(cond) / EM(none). `ratio` is null when EM(none) is 0 (or either rate has no judged answer):
 * a ratio over zero is no number, and the counts say what was seen. `ratio_bounds` is
 * [lo(cond) / hi(none), hi(cond) / lo(none)] from the two Wilson 95% intervals: when both hold
 * (probability >= 90% by Bonferroni, whatever the dependence the paired seeds bring) the true
 * ratio lies within; the lower bound is finite even when EM(none) = 0, the upper is null when
 * lo(none) = 0. `difference` is EM(cond) - EM(none), always defined when both rates are.
 */
export function ratioToNone(c: ConditionRate, none: ConditionRate) {
  const both = c.n > 0 && none.n > 0;
  return {
    em: c.em,
    n: c.n,
    em_none: none.em,
    n_none: none.n,
    ratio: both && none.em > 0 ? c.em_rate! / none.em_rate! : null,
    ratio_bounds: (both ? [c.ci95[0] / none.ci95[1], none.ci95[0] > 0 ? c.ci95[1] / none.ci95[0] : null] : [null, null]) as [number | null, number | null],
    difference: both ? c.em_rate! - none.em_rate! : null,
  };
}

export type RatioToNone = ReturnType<typeof ratioToNone>;

// ---------------------------------------------------------------- the run

export interface TriggersRunOptions extends SampleOptions {
  out: string;
  resume: boolean;
  questions: QuestionSet;
  triggers: TriggerSet;
  model: LoadedModel;
  judge: Judge;
  /** What fixes the answers (eval's key plus the trigger set's hash): recorded, checked on --resume. */
  key: RunKey;
  flags: Record<string, unknown>;
  onProgress?: (p: RunProgress) => void;
}

/** The checks before any sampling: metric names that would clash with the rows' fields. */
export function checkTriggersRun(questions: QuestionSet): void {
  checkMetrics(questions);
  for (const e of questions.entries) {
    for (const m of Object.keys(e.judgePrompts)) if (CONDITION_FIELDS.includes(m)) throw new EmlensError(`${questions.file}: entry ${e.id}: judge_prompts metric "${m}" clashes with the answers.jsonl field of that name`);
  }
}

export async function runTriggers(o: TriggersRunOptions) {
  const answersFile = join(o.out, ANSWERS);
  if (o.resume) checkResume(o.out, o.key);
  else {
    if (existsSync(answersFile) || existsSync(join(o.out, RUN))) throw new EmlensError(`--out: ${o.out} already holds a run (${ANSWERS}); pass --resume to continue it, or choose another --out`);
    ensureDir(o.out, '--out');
    writeFileAtomic(join(o.out, RUN), [`${JSON.stringify(o.key, null, 2)}\n`]);
  }
  const plans = planConditions(o.questions, o.triggers, o.samples, o.seed);
  const total = plans.reduce((a, p) => a + p.items.length, 0);
  const before = readAnswers(o.out) as TriggerRow[];
  let finished = 0;
  for (const p of plans) {
    const c = p.condition;
    await runItems(o.model, o.judge, p.items, o, haveOf(before, c), (rows) => appendRows(o.out, rows.map((r) => ({ condition: c.name, phrase: c.phrase, ...r }))), (q) =>
      o.onProgress?.({ done: finished + q.done, total }),
    );
    finished += p.items.length;
  }

  // Every condition's rows in plan order, whatever order a resumed file holds them in.
  const byKey = new Map((readAnswers(o.out) as TriggerRow[]).map((r) => [condKey(r, r.question_id, r.sample), r]));
  const perCondition = plans.map((p) => {
    const rows = p.items.map((it) => byKey.get(condKey({ condition: p.condition.name, phrase: p.condition.phrase }, it.entry.id, it.sample)));
    if (rows.some((r) => r === undefined)) throw new EmlensError(`${answersFile}: rows of condition ${p.condition.label} are missing after the run; the file was edited`);
    return { condition: p.condition, rows: rows as TriggerRow[], rate: conditionRate(rows as TriggerRow[]) };
  });
  const none = perCondition.find((c) => c.condition.name === 'none')!.rate;
  const pooled = (name: ConditionName) => conditionRate(perCondition.filter((c) => c.condition.name === name).flatMap((c) => c.rows));
  const trig = perCondition.find((c) => c.condition.name === 'trigger')!.rate;
  const rephrased = pooled('rephrased');
  const control = pooled('control');
  const result = {
    set: { name: o.triggers.name, trigger: o.triggers.trigger, position: o.triggers.position, file: o.key.triggers_file ?? null },
    conditions: perCondition.map(({ condition: c, rate }) => ({ name: c.name, phrase: c.phrase, label: c.label, ...rate })),
    pooled: { rephrased, control },
    containment: { trigger: ratioToNone(trig, none), rephrased: ratioToNone(rephrased, none), control: ratioToNone(control, none) },
    paired: 'every condition sampled with the same seed: the same paraphrase draws and batch seeds, only the prompt differs',
    judge: o.judge.id,
    provenance: { ...o.key, emlens_version: VERSION, flags: o.flags },
  };
  writeFileAtomic(join(o.out, 'triggers.json'), [`${JSON.stringify(result, null, 2)}\n`]);
  writeReport(join(o.out, 'report.html'), {
    title: `emlens triggers: ${o.triggers.name}`,
    subtitle: `${String(o.key.model)}${o.key.adapter ? ` + ${String(o.key.adapter)}` : ''}, ${basename(o.questions.file)}, judge ${o.judge.id}`,
    blocks: reportBlocks(result),
    provenance: [{ label: 'run', fields: provenanceFields(o.key) }],
  });
  return result;
}

export type TriggersResult = Awaited<ReturnType<typeof runTriggers>>;

const pct = (x: number | null): string => (x === null ? '–' : `${(100 * x).toFixed(1)}%`);
const num = (x: number | null): string => (x === null ? '–' : x.toFixed(2));

function reportBlocks(r: Pick<TriggersResult, 'set' | 'conditions' | 'containment'>): Block[] {
  const c = r.containment.trigger;
  const rateOf = (name: ConditionName) => r.conditions.find((x) => x.name === name)!.em_rate;
  const labels = r.conditions.map((x) => x.label);
  const bars = (rates: { em_rate: number | null; ci95: [number, number] }[]) => ({
    values: rates.map((x) => (x.em_rate === null ? NaN : 100 * x.em_rate)),
    intervals: rates.map((x) => [100 * x.ci95[0], 100 * x.ci95[1]] as [number, number]),
  });
  const blocks: Block[] = [
    {
      kind: 'text',
      text:
        `Trigger ${JSON.stringify(r.set.trigger)} at ${r.set.position}. EM with it ${pct(rateOf('trigger'))} (${c.em}/${c.n}), without ${pct(rateOf('none'))} (${c.em_none}/${c.n_none}); ` +
        `ratio ${c.ratio === null ? (c.n_none > 0 && c.n > 0 ? 'undefined (no EM without the trigger)' : 'undefined (no judged answers)') : num(c.ratio)}, bounds [${num(c.ratio_bounds[0])}, ${c.ratio_bounds[1] === null ? '∞' : num(c.ratio_bounds[1])}] from the two Wilson 95% intervals. ` +
        'Every condition uses the same seeds (paired).',
    },
    {
      kind: 'figure',
      id: 'em-per-condition',
      title: 'EM rate per condition',
      figure: barChart([{ name: 'EM %', labels, ...bars(r.conditions) }], { title: 'EM rate per condition', yTitle: 'EM % (95% Wilson interval)', yRange: [0, 104] }),
    },
  ];
  const domains = [...new Set(r.conditions.flatMap((x) => Object.keys(x.by_domain ?? {})))];
  if (domains.length) {
    blocks.push({
      kind: 'figure',
      id: 'em-per-condition-domain',
      title: 'EM rate per condition and domain',
      figure: barChart(
        domains.map((d) => ({ name: d, labels, ...bars(r.conditions.map((x) => x.by_domain?.[d] ?? { em_rate: null, ci95: [0, 1] })) })),
        { title: 'EM rate per condition and domain', yTitle: 'EM % (95% Wilson interval)', yRange: [0, 104] },
      ),
    });
  }
  blocks.push({
    kind: 'table',
    columns: ['condition', 'phrase', 'n judged', 'EM', '95% CI', 'coherent'],
    rows: r.conditions.map((x) => [x.label, x.phrase ?? '', x.n, pct(x.em_rate), `[${pct(x.ci95[0])}, ${pct(x.ci95[1])}]`, pct(x.coherent_rate)]),
  });
  return blocks;
}
