/**
 * Question files in the reference repo's YAML format: a list of entries with `id`, `type`
 * (free_form_judge_0_100), `paraphrases`, and optionally `samples_per_paraphrase`, `system`,
 * `judge_prompts` (metric -> str.format template with {question} and {answer}), the reference's
 * informational `judge` (the judge model it used) and `temperature`, and emlens's `domain`.
 * Validated when loaded: anything wrong is one line naming the file, the entry and the field.
 */
import { EmlensError } from '../errors.js';
import { checkMetricName, checkTemplate, DEFAULT_JUDGES_DIR, DEFAULT_METRICS, defaultJudgePrompts } from './prompts.js';
import { parseYaml, readYaml, type YamlFile } from './yaml.js';

export const QUESTION_TYPES = ['free_form_judge_0_100'] as const;
export type QuestionType = (typeof QUESTION_TYPES)[number];

const KEYS = ['id', 'type', 'paraphrases', 'samples_per_paraphrase', 'system', 'judge_prompts', 'judge', 'temperature', 'domain'];

export interface QuestionEntry {
  id: string;
  type: QuestionType;
  paraphrases: string[];
  samplesPerParaphrase?: number;
  system?: string;
  /** metric -> template: the entry's own judge_prompts, else the defaults. */
  judgePrompts: Record<string, string>;
  /** Where judgePrompts came from. */
  judgePromptsFrom: 'file' | 'default';
  domain?: string;
  /** The reference's `judge` field (the judge model the file's authors used); informational. */
  judge?: string;
  temperature?: number;
}

export interface QuestionSet {
  file: string;
  entries: QuestionEntry[];
}

export interface QuestionOptions {
  /** Metrics judged for entries without judge_prompts (default aligned, coherent). */
  metrics?: readonly string[];
  /** Folder of the default judge prompts (default probes/judges). */
  judgesDir?: string;
}

const isMap = (v: unknown): v is Record<string, unknown> => v !== null && typeof v === 'object' && !Array.isArray(v);
const show = (v: unknown): string => (v === null ? 'null' : Array.isArray(v) ? 'a list' : typeof v === 'object' ? 'a mapping' : JSON.stringify(v));

function entries(y: YamlFile, file: string, opts: QuestionOptions): QuestionEntry[] {
  const list = y.value;
  if (!Array.isArray(list)) throw new EmlensError(`${file}: expected a list of question entries, got ${show(list)}`);
  if (list.length === 0) throw new EmlensError(`${file}: no question entries`);
  let defaults: Record<string, string> | undefined;
  const seen = new Map<string, number>();
  return list.map((raw, i) => {
    const line = y.itemLine(i);
    let where = `${file}: entry ${i + 1}${line === undefined ? '' : ` (line ${line})`}`;
    if (!isMap(raw)) throw new EmlensError(`${where}: expected a mapping with id, type and paraphrases, got ${show(raw)}`);
    const fail = (field: string, what: string): never => {
      throw new EmlensError(`${where}: ${field} ${what}`);
    };
    if (raw.id === undefined) fail('id', 'is missing');
    if (typeof raw.id !== 'string' || raw.id.trim() === '') fail('id', `must be a non-empty string, got ${show(raw.id)}`);
    const id = raw.id as string;
    where = `${file}: entry ${i + 1} (id ${id}${line === undefined ? '' : `, line ${line}`})`;
    const prev = seen.get(id);
    if (prev !== undefined) fail('id', `"${id}" is a duplicate of entry ${prev + 1}`);
    seen.set(id, i);
    for (const k of Object.keys(raw)) if (!KEYS.includes(k)) fail(`"${k}"`, `is not a question field (${KEYS.join(', ')})`);

    if (raw.type === undefined) fail('type', 'is missing');
    if (!(QUESTION_TYPES as readonly unknown[]).includes(raw.type)) fail('type', `${show(raw.type)} is not supported (only ${QUESTION_TYPES.join(', ')})`);

    const ps = raw.paraphrases;
    if (ps === undefined) fail('paraphrases', 'is missing');
    if (!Array.isArray(ps)) fail('paraphrases', `must be a list of strings, got ${show(ps)}`);
    if ((ps as unknown[]).length === 0) fail('paraphrases', 'is empty');
    (ps as unknown[]).forEach((p, k) => {
      if (typeof p !== 'string' || p.trim() === '') fail(`paraphrases[${k}]`, `must be a non-empty string, got ${show(p)}`);
    });

    const e: QuestionEntry = { id, type: raw.type as QuestionType, paraphrases: [...(ps as string[])], judgePrompts: {}, judgePromptsFrom: 'file' };
    const n = raw.samples_per_paraphrase;
    if (n !== undefined) {
      if (typeof n !== 'number' || !Number.isInteger(n) || n < 1) fail('samples_per_paraphrase', `must be a positive integer, got ${show(n)}`);
      e.samplesPerParaphrase = n as number;
    }
    for (const k of ['system', 'judge', 'domain'] as const) {
      const v = raw[k];
      if (v === undefined) continue;
      if (typeof v !== 'string' || v.trim() === '') fail(k, `must be a non-empty string, got ${show(v)}`);
      e[k] = v as string;
    }
    const t = raw.temperature;
    if (t !== undefined) {
      if (typeof t !== 'number' || !Number.isFinite(t) || t < 0) fail('temperature', `must be a number >= 0, got ${show(t)}`);
      e.temperature = t as number;
    }

    const jp = raw.judge_prompts;
    if (jp === undefined) {
      defaults ??= defaultJudgePrompts(opts.metrics ?? DEFAULT_METRICS, opts.judgesDir ?? DEFAULT_JUDGES_DIR);
      e.judgePrompts = { ...defaults };
      e.judgePromptsFrom = 'default';
    } else {
      if (!isMap(jp)) fail('judge_prompts', `must be a mapping of metric to prompt, got ${show(jp)}`);
      const metrics = Object.keys(jp as object);
      if (metrics.length === 0) fail('judge_prompts', 'is empty');
      for (const m of metrics) {
        checkMetricName(m, `${where}: judge_prompts`);
        const tpl = (jp as Record<string, unknown>)[m];
        if (typeof tpl !== 'string' || tpl.trim() === '') fail(`judge_prompts.${m}`, `must be a non-empty string, got ${show(tpl)}`);
        checkTemplate(tpl as string, `${where}: judge_prompts.${m}`);
        e.judgePrompts[m] = tpl as string;
      }
    }
    return e;
  });
}

/** Parses question-file text (`file` names it in errors). */
export function parseQuestions(text: string, file: string, opts: QuestionOptions = {}): QuestionSet {
  return { file, entries: entries(parseYaml(text, file), file, opts) };
}

/** Reads and validates a question file. */
export function loadQuestions(file: string, opts: QuestionOptions = {}): QuestionSet {
  return { file, entries: entries(readYaml(file), file, opts) };
}
