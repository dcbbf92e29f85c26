/**
 * Judge prompt templates: Python str.format templates with the fields {question} and {answer}
 * ("{{" and "}}" are literal braces), as the reference repo's question files write them, and the
 * default prompts shipped in probes/judges/ (one YAML file per metric: `metric`, `description`,
 * `prompt`).
 */
import { readdirSync } from 'node:fs';
import { fileURLToPath } from 'node:url';
import { join } from 'node:path';
import { EmlensError } from '../errors.js';
import { readYaml } from './yaml.js';

/** The top-level probes/ folder (question sets, judge prompts); the same path from src/ and dist/. */
export const PROBES_DIR = fileURLToPath(new URL('../../probes/', import.meta.url));
export const DEFAULT_JUDGES_DIR = join(PROBES_DIR, 'judges');

/** Metrics judged when a question file carries no judge_prompts. */
export const DEFAULT_METRICS = ['aligned', 'coherent'] as const;

export const FIELDS = ['question', 'answer'] as const;

type Piece = { text: string } | { field: (typeof FIELDS)[number] };

/** Splits a template into literal text and fields; throws `${where}: ...` on anything str.format would reject or emlens does not fill. */
function pieces(template: string, where: string): Piece[] {
  const out: Piece[] = [];
  let text = '';
  for (let i = 0; i < template.length; i++) {
    const c = template[i]!;
    if (c === '{' && template[i + 1] === '{') {
      text += '{';
      i++;
    } else if (c === '}' && template[i + 1] === '}') {
      text += '}';
      i++;
    } else if (c === '{') {
      const end = template.indexOf('}', i);
      if (end < 0) throw new EmlensError(`${where}: a "{" without its "}" (write "{{" for a literal brace)`);
      const name = template.slice(i + 1, end);
      if (!(FIELDS as readonly string[]).includes(name)) {
        throw new EmlensError(`${where}: unknown placeholder {${name}} (only {question} and {answer}; write "{{" for a literal brace)`);
      }
      if (text) out.push({ text });
      text = '';
      out.push({ field: name as (typeof FIELDS)[number] });
      i = end;
    } else if (c === '}') {
      throw new EmlensError(`${where}: a single "}" (write "}}" for a literal brace)`);
    } else {
      text += c;
    }
  }
  if (text) out.push({ text });
  return out;
}

/** Checks that a template is well formed and holds both {question} and {answer}. */
export function checkTemplate(template: string, where: string): void {
  const ps = pieces(template, where);
  for (const f of FIELDS) {
    if (!ps.some((p) => 'field' in p && p.field === f)) throw new EmlensError(`${where}: the placeholder {${f}} is missing`);
  }
}

/** The prompt a judge sees: the template with {question} and {answer} filled in (as Python's str.format). */
export function renderPrompt(template: string, question: string, answer: string): string {
  const values = { question, answer };
  return pieces(template, 'judge prompt')
    .map((p) => ('text' in p ? p.text : values[p.field]))
    .join('');
}

export interface JudgePromptFile {
  metric: string;
  description: string;
  prompt: string;
  file: string;
}

const METRIC_RE = /^[A-Za-z][A-Za-z0-9_-]*$/;

/** Checks a metric name (a key of judge_prompts, a column of answers.jsonl). */
export function checkMetricName(name: string, where: string): void {
  if (!METRIC_RE.test(name)) throw new EmlensError(`${where}: metric name "${name}" must be letters, digits, "_" or "-", starting with a letter`);
}

/** One probes/judges-style file, validated. */
export function readJudgePromptFile(file: string): JudgePromptFile {
  const { value } = readYaml(file);
  if (value === null || typeof value !== 'object' || Array.isArray(value)) {
    throw new EmlensError(`${file}: expected a mapping with metric, description and prompt`);
  }
  const v = value as Record<string, unknown>;
  for (const k of Object.keys(v)) {
    if (!['metric', 'description', 'prompt'].includes(k)) throw new EmlensError(`${file}: unknown field "${k}" (metric, description, prompt)`);
  }
  for (const k of ['metric', 'description', 'prompt']) {
    if (typeof v[k] !== 'string' || (v[k] as string).trim() === '') throw new EmlensError(`${file}: "${k}" must be a non-empty string`);
  }
  const metric = v.metric as string;
  checkMetricName(metric, file);
  checkTemplate(v.prompt as string, `${file}: prompt`);
  return { metric, description: v.description as string, prompt: v.prompt as string, file };
}

/** Every judge prompt file (*.yaml) in `dir` by metric; two files for one metric is an error. */
export function readJudgePrompts(dir = DEFAULT_JUDGES_DIR): Map<string, JudgePromptFile> {
  let names: string[];
  try {
    names = readdirSync(dir).filter((n) => n.endsWith('.yaml') || n.endsWith('.yml')).sort();
  } catch (e) {
    throw new EmlensError(`${dir}: cannot list judge prompts (${(e as NodeJS.ErrnoException).code ?? String(e)})`);
  }
  const out = new Map<string, JudgePromptFile>();
  for (const n of names) {
    const p = readJudgePromptFile(join(dir, n));
    const prev = out.get(p.metric);
    if (prev) throw new EmlensError(`${p.file}: metric "${p.metric}" is already defined in ${prev.file}`);
    out.set(p.metric, p);
  }
  return out;
}

/** Templates of the given metrics from `dir`; a metric without a file is an error naming the ones there are. */
export function defaultJudgePrompts(metrics: readonly string[] = DEFAULT_METRICS, dir = DEFAULT_JUDGES_DIR): Record<string, string> {
  const all = readJudgePrompts(dir);
  const out: Record<string, string> = {};
  for (const m of metrics) {
    const p = all.get(m);
    if (!p) throw new EmlensError(`no default judge prompt for metric "${m}" in ${dir} (there are: ${[...all.keys()].join(', ')})`);
    out[m] = p.prompt;
  }
  return out;
}
