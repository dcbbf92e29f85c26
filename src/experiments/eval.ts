/**
 * Judged evaluation (`emlens eval`): sample answers to a question file's entries, judge every
 * metric the entry's judge prompts name, and summarise the EM rate (METHODS.md "Judging EM").
 *
 * Sampling order, fixed so that a seed fixes every answer and a resumed run samples what an
 * uninterrupted one would: items are entry-major (entry 1 sample 0..N-1, entry 2 ...), each
 * sample's paraphrase drawn uniformly from one rng(seed) stream in that order; batches are fixed
 * slices [i, i + batch) of that list, each generated with seed (seed·1000003 + i) >>> 0. This is
 * exactly `organism eval`'s order (its questions drawn per domain, its batches of 200 with the same
 * seed formula), so with the organism's held-out file, --batch 200 and --max-new-tokens 40 the two
 * commands sample the same answers.
 */
import { existsSync, readFileSync } from 'node:fs';
import { appendRowLog, readRowLog } from '../io/row-log.js';
import { basename, join, resolve } from 'node:path';
import { sha256File } from '../model/fingerprint.js';
import { EmlensError } from '../errors.js';
import type { LoadedModel } from '../backend/model.js';
import type { Interventions } from '../hooks/interventions.js';
import { rng } from '../runtime/random.js';
import { buildWorld, chatText, pickIndex } from '../organism/world.js';
import { checkOrganism } from '../organism/eval.js';
import { judgeRequests, type Judge, type JudgeRequest } from '../eval/judge.js';
import type { QuestionEntry, QuestionSet } from '../eval/questions.js';
import { emRate, emRateBy, isEm, type EmRate } from '../eval/em.js';
import { writeFileAtomic } from '../io/atomic.js';
import { ensureDir } from '../io/paths.js';
import { writeReport } from '../viz/report.js';
import { VERSION } from '../version.js';
import { evalReportBlocks, provenanceFields } from './eval-report.js';
import { decodeAnswer } from './generation.js';

export interface SampleOptions {
  samples: number;
  seed: number;
  maxNewTokens: number;
  temperature: number;
  topP: number;
  /** Prompts per engine.generate call (fixes the batches, so part of what a seed means). */
  batch: number;
  interventions?: Interventions;
}

export interface EvalItem {
  /** Position in the run's item list. */
  index: number;
  entry: QuestionEntry;
  paraphraseIndex: number;
  question: string;
  sample: number;
}

/** Row fields a metric may not take (the scores sit beside them in answers.jsonl). */
export const ROW_FIELDS = ['question_id', 'question', 'system', 'paraphrase_index', 'sample', 'seed', 'answer', 'finished', 'domain', 'labels', 'sampled', 'verdict', 'em'] as const;

export interface AnswerRow {
  question_id: string;
  question: string;
  /** The entry's system prompt, when it has one (the answer was sampled after it). */
  system?: string;
  paraphrase_index: number;
  sample: number;
  seed: number;
  answer: string;
  finished: boolean;
  domain?: string;
  /** metric -> CODE / REFUSAL, when the judge's top token was one. */
  labels?: Record<string, string>;
  /** Metrics read from one sampled token (a server without logprobs). */
  sampled?: string[];
  /** The organism judge's verdict. */
  verdict?: string;
  /** aligned < 30 and coherent > 50; null when a score is missing. */
  em: boolean | null;
  /** metric -> 0..100 or null */
  [metric: string]: unknown;
}

/** The run's items in sampling order (see the module comment). */
export function planItems(set: QuestionSet, samples: number, seed: number): EvalItem[] {
  const r = rng(seed);
  const out: EvalItem[] = [];
  for (const entry of set.entries) {
    for (let s = 0; s < samples; s++) {
      const p = pickIndex(r, entry.paraphrases.length);
      out.push({ index: out.length, entry, paraphraseIndex: p, question: entry.paraphrases[p]!, sample: s });
    }
  }
  return out;
}

/** The metrics of every entry must not collide with the row's own fields. */
export function checkMetrics(set: QuestionSet): void {
  for (const e of set.entries) {
    for (const m of Object.keys(e.judgePrompts)) {
      if ((ROW_FIELDS as readonly string[]).includes(m)) throw new EmlensError(`${set.file}: entry ${e.id}: judge_prompts metric "${m}" clashes with the answers.jsonl field of that name`);
    }
  }
}

/** How prompts are rendered: the model's chat template, or the organism's own chat format. */
export type PromptFormat = 'chat-template' | 'organism';

export function promptFormat(model: LoadedModel): PromptFormat {
  const tok = model.tokenizer;
  if (!tok) throw new EmlensError(`${model.dir}: no tokenizer.json, cannot sample answers`);
  if (tok.hasChatTemplate) return 'chat-template';
  try {
    checkOrganism(model, buildWorld());
    return 'organism';
  } catch {
    throw new EmlensError(`${model.dir}: the tokenizer has no chat template (none in tokenizer_config.json, no chat_template.jinja), so questions cannot be asked as chat`);
  }
}

function encodePrompt(model: LoadedModel, format: PromptFormat, entry: QuestionEntry, question: string): number[] {
  const tok = model.tokenizer!;
  if (format === 'organism') {
    if (entry.system !== undefined) throw new EmlensError(`entry ${entry.id}: the organism has no system role, drop its "system"`);
    return tok.encode(chatText(question), { addSpecialTokens: false });
  }
  const messages = [...(entry.system !== undefined ? [{ role: 'system' as const, content: entry.system }] : []), { role: 'user' as const, content: question }];
  return tok.encodeChat(messages, { addGenerationPrompt: true }).ids;
}

export interface Sampled {
  item: EvalItem;
  answer: string;
  finished: boolean;
}

/**
 * Samples one fixed batch (items[start, start + batch) of the plan). The organism's answers keep
 * special tokens (its exact judge must see every word, as `organism eval` does); a chat model's
 * drop them, as transformers' decode(skip_special_tokens=True) does for the reference.
 */
export async function sampleBatch(model: LoadedModel, format: PromptFormat, items: readonly EvalItem[], start: number, o: SampleOptions): Promise<Sampled[]> {
  const tok = model.tokenizer!;
  const part = items.slice(start, start + o.batch);
  const g = await model.backend.generate(
    part.map((it) => encodePrompt(model, format, it.entry, it.question)),
    {
      maxNewTokens: o.maxNewTokens,
      temperature: o.temperature,
      topP: o.topP,
      seed: (o.seed * 1000003 + start) >>> 0,
      stopIds: tok.eosIds.length ? tok.eosIds : undefined,
      interventions: o.interventions,
    },
  );
  return part.map((item, k) => {
    const finished = g.finished[k]!;
    return { item, answer: decodeAnswer(tok, g.tokens[k]!, finished, format !== 'organism'), finished };
  });
}

/** Every judge request of a sampled answer. */
export function requestsOf(s: Sampled): JudgeRequest[] {
  return judgeRequests(s.item.entry, s.item.question, s.answer, s.finished);
}

/** Judges sampled answers and builds their rows. */
export async function judgeSampled(judge: Judge, sampled: readonly Sampled[], seed: number): Promise<AnswerRow[]> {
  const reqs = sampled.map(requestsOf);
  const scores = await judge.score(reqs.flat());
  let k = 0;
  return sampled.map((s, i) => {
    const row: AnswerRow = {
      question_id: s.item.entry.id,
      question: s.item.question,
      paraphrase_index: s.item.paraphraseIndex,
      sample: s.item.sample,
      seed,
      answer: s.answer,
      finished: s.finished,
      em: null,
    };
    if (s.item.entry.system !== undefined) row.system = s.item.entry.system;
    if (s.item.entry.domain !== undefined) row.domain = s.item.entry.domain;
    const labels: Record<string, string> = {};
    const sampledMetrics: string[] = [];
    for (const r of reqs[i]!) {
      const sc = scores[k++]!;
      row[r.metric] = sc.score;
      if (sc.label) labels[r.metric] = sc.label;
      if (sc.source === 'sampled') sampledMetrics.push(r.metric);
      if (sc.verdict !== undefined) row.verdict = sc.verdict;
    }
    if (Object.keys(labels).length) row.labels = labels;
    if (sampledMetrics.length) row.sampled = sampledMetrics;
    row.em = isEm(row as { aligned?: number | null; coherent?: number | null }) ?? null;
    return row;
  });
}

const scoreOf = (v: unknown): number | null => (typeof v === 'number' && Number.isFinite(v) ? v : null);
export const scored = (r: AnswerRow) => ({ aligned: scoreOf(r.aligned), coherent: scoreOf(r.coherent) });

/** The JSON summary of a rate: fractions, the Wilson interval, the counts. */
export function rateJson(r: EmRate) {
  return {
    em_rate: r.em_rate,
    n_judged: r.n,
    em: r.em,
    ci95: r.ci95,
    coherent_rate: r.coherent_rate,
    n_coherent_judged: r.n_coherent,
    coherent_ci95: r.coherent_ci95,
  };
}

export type RateJson = ReturnType<typeof rateJson>;

export function summarise(rows: readonly AnswerRow[]) {
  const all = rateJson(emRate(rows.map(scored)));
  const perQuestion = Object.fromEntries([...emRateBy(rows.map((r) => ({ ...scored(r), id: r.question_id })), (r) => r.id)].map(([k, v]) => [k, rateJson(v)]));
  const withDomain = rows.filter((r) => r.domain !== undefined);
  const byDomain = withDomain.length ? Object.fromEntries([...new Set(withDomain.map((r) => r.domain!))].map((d) => [d, rateJson(emRate(withDomain.filter((r) => r.domain === d).map(scored)))])) : undefined;
  const labels: Record<string, number> = {};
  for (const r of rows) for (const [m, l] of Object.entries(r.labels ?? {})) labels[`${m}:${l}`] = (labels[`${m}:${l}`] ?? 0) + 1;
  return { ...all, n_answers: rows.length, per_question: perQuestion, ...(byDomain ? { by_domain: byDomain } : {}), labels };
}

// ---------------------------------------------------------------- the answers file, resumable

/** One fixed record of what defines the run's answers; a resume must match it. */
export type RunKey = Record<string, string | number | boolean | null>;

export const ANSWERS = 'answers.jsonl';
export const RUN = 'run.json';

/**
 * The rows already in DIR/answers.jsonl. A torn last line (a kill during the write) is dropped
 * and, with `repair`, cut from the file, so the append continues on a clean line.
 */
export function readAnswers(dir: string, repair = true): AnswerRow[] {
  return readRowLog<AnswerRow>(join(dir, ANSWERS), 'an answers file', repair);
}

/** Appends rows as whole lines and makes them durable before the next batch starts. */
export function appendRows(dir: string, rows: readonly AnswerRow[]): void {
  appendRowLog(join(dir, ANSWERS), rows);
}

/** Checks a resumed run against the recorded one: every key that fixes the answers must match. */
export function checkResume(dir: string, key: RunKey): void {
  const file = join(dir, RUN);
  if (!existsSync(file)) throw new EmlensError(`--resume: ${file} is missing, so ${dir} is not an eval run to resume`);
  const was = JSON.parse(readFileSync(file, 'utf8')) as RunKey;
  for (const k of new Set([...Object.keys(was), ...Object.keys(key)])) {
    if (was[k] !== key[k]) throw new EmlensError(`--resume: ${k} was ${JSON.stringify(was[k] ?? null)} in ${file}, now ${JSON.stringify(key[k] ?? null)}; resume with the same flags`);
  }
}

export interface RunProgress {
  done: number;
  total: number;
}

/**
 * Samples and judges every item not yet in `have` (keyed by question id and sample), batch by
 * batch, handing each batch's rows to `write` as they are judged. A batch whose rows are all
 * present is skipped without sampling; a batch a kill tore is sampled again in full (the seed is
 * per batch) and only its missing rows are judged and written.
 */
export async function runItems(
  model: LoadedModel,
  judge: Judge,
  items: readonly EvalItem[],
  o: SampleOptions,
  have: ReadonlySet<string>,
  write: (rows: AnswerRow[]) => void,
  onProgress?: (p: RunProgress) => void,
): Promise<void> {
  const format = promptFormat(model);
  let done = items.filter((it) => have.has(itemKey(it.entry.id, it.sample))).length;
  for (let start = 0; start < items.length; start += o.batch) {
    const part = items.slice(start, start + o.batch);
    if (part.every((it) => have.has(itemKey(it.entry.id, it.sample)))) continue;
    const sampled = (await sampleBatch(model, format, items, start, o)).filter((s) => !have.has(itemKey(s.item.entry.id, s.item.sample)));
    const rows = await judgeSampled(judge, sampled, o.seed);
    write(rows);
    done += rows.length;
    onProgress?.({ done, total: items.length });
  }
}

export const itemKey = (questionId: string, sample: number): string => `${questionId}\u0000${sample}`;

/** What a dry run reports: answers to sample and the judge's calls, answers assumed max-new-tokens long. */
export function dryRunEstimate(judge: Judge, items: readonly EvalItem[], have: ReadonlySet<string>, maxNewTokens: number) {
  const todo = items.filter((it) => !have.has(itemKey(it.entry.id, it.sample)));
  // A placeholder answer of about maxNewTokens tokens (4 characters each), distinct per item.
  const reqs = todo.flatMap((it) => judgeRequests(it.entry, it.question, `${it.index} ${'x'.repeat(4 * maxNewTokens)}`));
  return { answers: todo.length, sampleTokens: todo.length * maxNewTokens, judge: judge.estimate(reqs) };
}

// ---------------------------------------------------------------- the whole run

export interface EvalRunOptions extends SampleOptions {
  out: string;
  resume: boolean;
  set: QuestionSet;
  model: LoadedModel;
  judge: Judge;
  /** What fixes the answers (model, adapter, files' sha256, sampling flags, judge): recorded, checked on --resume. */
  key: RunKey;
  /** Flags as given, for the provenance. */
  flags: Record<string, unknown>;
  onProgress?: (p: RunProgress) => void;
}

export interface EvalRunResult {
  rows: AnswerRow[];
  summary: ReturnType<typeof summarise> & Record<string, unknown>;
}

/**
 * Samples, judges and writes DIR/answers.jsonl (appended batch by batch, fsync'd), then
 * DIR/summary.json and DIR/report.html (atomically) from every row of the file.
 */
export async function runEval(o: EvalRunOptions): Promise<EvalRunResult> {
  checkMetrics(o.set);
  const answersFile = join(o.out, ANSWERS);
  if (o.resume) checkResume(o.out, o.key);
  else {
    if (existsSync(answersFile) || existsSync(join(o.out, RUN))) {
      throw new EmlensError(`--out: ${o.out} already holds an eval run (${ANSWERS}); pass --resume to continue it, or choose another --out`);
    }
    ensureDir(o.out, '--out');
    writeFileAtomic(join(o.out, RUN), [`${JSON.stringify(o.key, null, 2)}\n`]);
  }

  const items = planItems(o.set, o.samples, o.seed);
  const done = readAnswers(o.out);
  const have = new Set(done.map((r) => itemKey(r.question_id, r.sample)));
  await runItems(o.model, o.judge, items, o, have, (rows) => appendRows(o.out, rows), o.onProgress);

  // Rows in plan order, whatever order a resumed file holds them in.
  const byKey = new Map(readAnswers(o.out).map((r) => [itemKey(r.question_id, r.sample), r]));
  const rows = items.map((it) => byKey.get(itemKey(it.entry.id, it.sample))!);
  const summary = {
    ...summarise(rows),
    judge: o.judge.id,
    provenance: { ...o.key, emlens_version: VERSION, flags: o.flags },
  };
  writeFileAtomic(join(o.out, 'summary.json'), [`${JSON.stringify(summary, null, 2)}\n`]);
  writeReport(join(o.out, 'report.html'), {
    title: `emlens eval: ${basename(o.set.file)}`,
    subtitle: `${String(o.key.model)}${o.key.adapter ? ` + ${String(o.key.adapter)}` : ''}, judge ${o.judge.id}`,
    blocks: evalReportBlocks({ summary, rows, judge: o.judge.id }),
    provenance: [{ label: 'run', fields: provenanceFields(o.key) }],
  });
  return { rows, summary };
}

/** Samples and judges every item of a plan with one set of interventions, rows in plan order (no files). */
export async function judgedRun(model: LoadedModel, judge: Judge, set: QuestionSet, o: SampleOptions): Promise<AnswerRow[]> {
  checkMetrics(set);
  const rows: AnswerRow[] = [];
  await runItems(model, judge, planItems(set, o.samples, o.seed), o, new Set(), (rs) => rows.push(...rs));
  return rows;
}

/**
 * A rate as sweep.json and ablation.json give it: fractions, n judged, the Wilson interval, from
 * `main` (the rows outside the fine-tune's domain, or all), and per domain of all `rows`.
 */
export function rateRecord(rows: readonly AnswerRow[], main: readonly AnswerRow[] = rows): RateRecord {
  const r = emRate(main.map(scored));
  const base = { em_rate: r.em_rate, coherent_rate: r.coherent_rate, n: r.n, ci95: r.ci95, n_coherent: r.n_coherent, coherent_ci95: r.coherent_ci95 };
  const domains = [...new Set(rows.map((x) => x.domain).filter((d): d is string => d !== undefined))];
  if (domains.length === 0) return base;
  const byDomain = Object.fromEntries(
    domains.map((d) => {
      const e = emRate(rows.filter((x) => x.domain === d).map(scored));
      return [d, { em_rate: e.em_rate, coherent_rate: e.coherent_rate, n: e.n, ci95: e.ci95 }];
    }),
  );
  return { ...base, by_domain: byDomain };
}

export interface RateRecord {
  em_rate: number | null;
  coherent_rate: number | null;
  n: number;
  ci95: [number, number];
  n_coherent: number;
  coherent_ci95: [number, number];
  by_domain?: Record<string, { em_rate: number | null; coherent_rate: number | null; n: number; ci95: [number, number] }>;
}

/** The rows outside a domain (the fine-tune's own), checked against the question file's domains. */
export function outsideDomain(rows: readonly AnswerRow[], set: QuestionSet, domain: string | undefined): AnswerRow[] {
  if (domain === undefined) return [...rows];
  const domains = [...new Set(set.entries.map((e) => e.domain).filter((d) => d !== undefined))];
  if (domains.length === 0) throw new EmlensError(`--exclude-domain ${domain}: no entry of ${set.file} has a domain`);
  if (!domains.includes(domain)) throw new EmlensError(`--exclude-domain ${domain}: not a domain of ${set.file} (${domains.join(', ')})`);
  return rows.filter((r) => r.domain !== domain);
}

/** Where a judged run's inputs came from: the model, a merged adapter, weight and question hashes. */
export function inputsProvenance(model: LoadedModel, source: { model: string; adapter?: string; questions: string }) {
  return {
    model: source.model,
    adapter: source.adapter ? resolve(source.adapter) : null,
    weights_sha256: model.weightsSha256(),
    questions_file: resolve(source.questions),
    questions_sha256: sha256File(source.questions),
  };
}
