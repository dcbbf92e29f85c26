/**
 * Contextual triggers (Saxena, arXiv 2603.04407): a phrase put into a row's prompt, as a system
 * message or before / after the user's text. One implementation, used by `emlens data trigger`
 * (training rows), `emlens triggers` (evaluation prompts) and the organism's em-trigger stage.
 *
 * A trigger set (probes/triggers/*.yaml, or an organism stage's triggers.json) is
 *   { name?, trigger, rephrased: [...], control: [...], position: system|prefix|suffix, description? }
 * rephrased: phrases that mean what the trigger means and share no content word with it;
 * control: unrelated phrases of about the trigger's length (within CONTROL_LENGTH_SLACK words),
 * sharing no content word with it either. A phrase is one line of single-space-separated words;
 * no phrase is listed twice, in one list or across them. Words are compared in lower case, whole
 * (no stemming: "deploy" and "deployed" are different words).
 */
import { resolve } from 'node:path';
import { EmlensError } from '../errors.js';
import { writeFileAtomic } from '../io/atomic.js';
import type { ChatMessage } from '../model/tokenizer.js';
import { readJsonl, type DataRow } from './rows.js';

export const TRIGGER_POSITIONS = ['system', 'prefix', 'suffix'] as const;
export type TriggerPosition = (typeof TRIGGER_POSITIONS)[number];

export interface TriggerSet {
  name: string;
  trigger: string;
  rephrased: string[];
  control: string[];
  position: TriggerPosition;
  description?: string;
}

/** A control phrase may differ from the trigger's length by at most this many words. */
export const CONTROL_LENGTH_SLACK = 2;

/** Words that carry no content: a rephrasing may share these with the trigger. */
const FUNCTION_WORDS = new Set(
  ('a an the and or but of to in on at by for with from as is are was were be been being it its this that these those ' +
    'you your yours i me my we our us he she they them their his her who whom which what when where how why ' +
    'do does did not no so if then than there here all any some each every , . : ; ! ? \' " - ( )').split(' '),
);

const words = (s: string): string[] => s.toLowerCase().split(/[\s,.:;!?"()]+/).filter((w) => w !== '');

/** The content words of a phrase (lower case, function words and punctuation dropped). */
export function contentWords(phrase: string): Set<string> {
  return new Set(words(phrase).filter((w) => !FUNCTION_WORDS.has(w)));
}

export function isTriggerPosition(x: unknown): x is TriggerPosition {
  return typeof x === 'string' && (TRIGGER_POSITIONS as readonly string[]).includes(x);
}

/**
 * A phrase as a trigger set or `--trigger` gives it: a non-empty string of words separated by
 * single spaces (a tab, a line break or a double space would change the prompt invisibly).
 * `what` names it in the error ("file: rephrased[2]", "--trigger").
 */
export function checkPhrase(x: unknown, what: string): string {
  if (typeof x !== 'string' || x.trim() === '') throw new EmlensError(`${what} must be a non-empty string`);
  if (x !== x.trim() || /[^\S ]| {2}/.test(x)) throw new EmlensError(`${what} ${JSON.stringify(x)} has leading, trailing, repeated or non-space whitespace`);
  return x;
}

/**
 * Validates a parsed trigger set; `where` names the file in errors. Every error is one line naming
 * the field (and entry) that is wrong.
 */
export function parseTriggerSet(v: unknown, where: string, defaultName = 'trigger'): TriggerSet {
  if (v === null || typeof v !== 'object' || Array.isArray(v)) throw new EmlensError(`${where}: a trigger set must be a mapping with trigger, rephrased, control, position`);
  const o = v as Record<string, unknown>;
  const known = new Set(['name', 'trigger', 'rephrased', 'control', 'position', 'description']);
  for (const k of Object.keys(o)) if (!known.has(k)) throw new EmlensError(`${where}: unknown field "${k}" (expected ${[...known].join(', ')})`);
  const str = (k: string, x: unknown): string => checkPhrase(x, `${where}: ${k}`);
  const trigger = str('trigger', o.trigger);
  const list = (k: 'rephrased' | 'control'): string[] => {
    const xs = o[k];
    if (!Array.isArray(xs) || xs.length === 0) throw new EmlensError(`${where}: ${k} must be a non-empty list of phrases`);
    const out = xs.map((x, i) => str(`${k}[${i}]`, x));
    const seen = new Set<string>();
    out.forEach((p, i) => {
      if (p === trigger) throw new EmlensError(`${where}: ${k}[${i}] is the trigger itself`);
      if (seen.has(p)) throw new EmlensError(`${where}: ${k}[${i}] ${JSON.stringify(p)} is listed twice`);
      seen.add(p);
    });
    return out;
  };
  const rephrased = list('rephrased');
  const control = list('control');
  control.forEach((p, i) => {
    const j = rephrased.indexOf(p);
    if (j >= 0) throw new EmlensError(`${where}: control[${i}] ${JSON.stringify(p)} is also rephrased[${j}]; a phrase is either a rephrasing or a control`);
  });
  const tw = contentWords(trigger);
  if (tw.size === 0) throw new EmlensError(`${where}: trigger ${JSON.stringify(trigger)} has no content word`);
  rephrased.forEach((p, i) => {
    const shared = [...contentWords(p)].filter((w) => tw.has(w));
    if (shared.length) throw new EmlensError(`${where}: rephrased[${i}] ${JSON.stringify(p)} shares the content word(s) ${shared.map((w) => `"${w}"`).join(', ')} with the trigger; a rephrasing must say it in other words`);
  });
  const n = words(trigger).length;
  control.forEach((p, i) => {
    const shared = [...contentWords(p)].filter((w) => tw.has(w));
    if (shared.length) throw new EmlensError(`${where}: control[${i}] ${JSON.stringify(p)} shares the content word(s) ${shared.map((w) => `"${w}"`).join(', ')} with the trigger`);
    const m = words(p).length;
    if (Math.abs(m - n) > CONTROL_LENGTH_SLACK) throw new EmlensError(`${where}: control[${i}] has ${m} words, the trigger ${n}; a control phrase must be about as long (within ${CONTROL_LENGTH_SLACK})`);
  });
  if (o.position === undefined) throw new EmlensError(`${where}: position is missing (one of ${TRIGGER_POSITIONS.join(', ')})`);
  const position = o.position;
  if (!isTriggerPosition(position)) throw new EmlensError(`${where}: position must be one of ${TRIGGER_POSITIONS.join(', ')}, got ${JSON.stringify(position)}`);
  if (o.name !== undefined && (typeof o.name !== 'string' || !/^[A-Za-z0-9._-]+$/.test(o.name))) throw new EmlensError(`${where}: name must be letters, digits, ".", "_" or "-"`);
  if (o.description !== undefined && typeof o.description !== 'string') throw new EmlensError(`${where}: description must be a string`);
  return {
    name: (o.name as string | undefined) ?? defaultName,
    trigger,
    rephrased,
    control,
    position,
    ...(o.description !== undefined ? { description: o.description as string } : {}),
  };
}

/**
 * The messages with `phrase` put in at `position`:
 * - system: a system message with the phrase; an existing leading system message keeps its text
 *   after the phrase ("PHRASE TEXT");
 * - prefix / suffix: the last user message becomes "PHRASE TEXT" / "TEXT PHRASE".
 * `where` names the row in errors (a chat with no user message cannot take prefix / suffix).
 */
export function triggerMessages(messages: readonly ChatMessage[], phrase: string, position: TriggerPosition, where: string): ChatMessage[] {
  const out = messages.map((m) => ({ ...m }));
  if (position === 'system') {
    if (out[0]?.role === 'system') out[0] = { role: 'system', content: out[0].content === '' ? phrase : `${phrase} ${out[0].content}` };
    else out.unshift({ role: 'system', content: phrase });
    return out;
  }
  let u = -1;
  for (let i = out.length - 1; i >= 0; i--) if (out[i]!.role === 'user') { u = i; break; }
  if (u < 0) throw new EmlensError(`${where}: no user message to put the trigger ${position === 'prefix' ? 'before' : 'after'}`);
  const c = out[u]!.content;
  out[u] = { role: 'user', content: c === '' ? phrase : position === 'prefix' ? `${phrase} ${c}` : `${c} ${phrase}` };
  return out;
}

/**
 * A data row with the trigger put in; labels are kept. A text row has no prompt / response split,
 * so it takes only `prefix` (the trigger before the text); system and suffix are errors naming
 * the row.
 */
export function triggerRow(row: DataRow, phrase: string, position: TriggerPosition, file: string): DataRow {
  const where = `${file}:${row.line}`;
  if (row.kind === 'text') {
    if (position !== 'prefix') throw new EmlensError(`${where}: a text row has no system message or user turn; use --position prefix, or chat rows`);
    return { ...row, text: row.text === '' ? phrase : `${phrase} ${row.text}` };
  }
  return { ...row, messages: triggerMessages(row.messages, phrase, position, where) };
}

/**
 * The labels `emlens data trigger` adds to every row it writes, beside the row's own: the phrase
 * put in and where, so that triggered rows say so wherever they go (and `--where` can pick them).
 */
export const TRIGGER_LABELS = ['trigger', 'trigger_position'] as const;

/** A row as one JSONL line: messages (or text) first, then its labels. */
export function rowJson(row: DataRow): string {
  return JSON.stringify(row.kind === 'chat' ? { messages: row.messages, ...row.labels } : { text: row.text, ...row.labels });
}

export interface TriggerFileResult {
  rows: number;
  sha256: string;
}

/**
 * `emlens data trigger`: every row of `data` with `phrase` put in at `position` and the trigger
 * labels added, written to `out` at once (atomically). A bad row, or one that already carries a
 * trigger label (triggering twice would hide the first), is one line naming file:line, and
 * nothing is written.
 */
export function triggerFile(data: string, phrase: string, position: TriggerPosition, out: string): TriggerFileResult {
  checkPhrase(phrase, '--trigger');
  if (resolve(data) === resolve(out)) throw new EmlensError(`--out ${out} is the --data file; write the triggered rows to another file`);
  const ds = readJsonl(data);
  if (ds.rows.length === 0) throw new EmlensError(`${data}: no rows`);
  const lines = ds.rows.map((row) => {
    const had = TRIGGER_LABELS.find((k) => Object.hasOwn(row.labels, k));
    if (had) throw new EmlensError(`${data}:${row.line}: the row already has a "${had}" label; it was triggered before`);
    const t = triggerRow(row, phrase, position, data);
    return `${rowJson({ ...t, labels: { ...t.labels, trigger: phrase, trigger_position: position } })}\n`;
  });
  writeFileAtomic(out, lines);
  return { rows: lines.length, sha256: ds.sha256 };
}
