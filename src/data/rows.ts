/**
 * JSONL datasets for `emlens extract`: one row a line, either a chat
 * `{"messages": [{"role": …, "content": …}, …], …}` (the EM datasets' format; the last message is
 * the assistant's response) or a plain `{"text": …}`. Every other top-level field is a label
 * (`"aligned": 12, "domain": "medical"`), which `--where` selects on.
 */
import { createHash } from 'node:crypto';
import { readFileSync } from 'node:fs';
import { EmlensError } from '../errors.js';
import type { ChatMessage } from '../model/tokenizer.js';
import { checkWhereLabels, parseWhere } from './where.js';

export type Labels = Record<string, string | number | boolean | null>;

/** `line` is the 1-based physical line of the row in its file (blank lines counted). */
export type DataRow =
  | { kind: 'chat'; messages: ChatMessage[]; labels: Labels; line: number }
  | { kind: 'text'; text: string; labels: Labels; line: number };

export interface ReadOptions {
  /** Record bad rows in `skipped` and go on, instead of throwing on the first one. */
  skipBad?: boolean;
  /** A `--where` expression (see where.ts); rows it rejects are counted in `filteredOut`. */
  where?: string;
}

export interface Dataset {
  file: string;
  /** sha256 of the file's bytes, lowercase hex */
  sha256: string;
  /** the good rows that pass `where`, in file order */
  rows: DataRow[];
  /**
   * Non-blank lines, i.e. candidate rows: always rows.length + skipped.length + filteredOut.
   * (Blank and whitespace-only lines are ignored entirely.)
   */
  totalLines: number;
  /** bad rows (only with skipBad), with the same reason the error would have given */
  skipped: { line: number; reason: string }[];
  /** good rows that `where` rejected */
  filteredOut: number;
  where?: string;
}

/** True for a chat row whose last message is the assistant's (the response pooled by response-mean). */
export function hasFinalAssistant(row: DataRow): boolean {
  return row.kind === 'chat' && row.messages.length > 0 && row.messages[row.messages.length - 1]!.role === 'assistant';
}

/** What a JSON value is, for messages: "a string", "an array", "null", … */
function describe(v: unknown): string {
  if (v === null) return 'null';
  if (Array.isArray(v)) return 'a list';
  switch (typeof v) {
    case 'object':
      return 'an object';
    case 'string':
      return 'a string';
    case 'number':
      return 'a number';
    case 'boolean':
      return 'a boolean';
    default:
      return typeof v;
  }
}

/** A key for a message: quoted as JSON (keeps it on one line), shortened. */
function key(k: string): string {
  return JSON.stringify(k.length > 60 ? k.slice(0, 60) + '…' : k);
}

/** One line of text from an arbitrary message. */
function oneLine(s: string, max = 160): string {
  const t = s.replace(/\s+/g, ' ').trim();
  return t.length > max ? t.slice(0, max) + '…' : t;
}

/** Thrown by parseRow for a bad row; carries only the reason. */
class BadRow extends Error {}

function bad(reason: string): never {
  throw new BadRow(reason);
}

/** Validates one parsed JSON line; `line` is its 1-based line number. */
function parseRow(text: string, line: number): DataRow {
  let v: unknown;
  try {
    v = JSON.parse(text);
  } catch (e) {
    bad(`not valid JSON (${oneLine(String((e as Error)?.message ?? e))})`);
  }
  if (v === null || typeof v !== 'object' || Array.isArray(v)) bad(`a row must be a JSON object, got ${describe(v)}`);
  const obj = v as Record<string, unknown>;
  const hasMessages = Object.hasOwn(obj, 'messages');
  const hasText = Object.hasOwn(obj, 'text');
  if (hasMessages && hasText) bad('a row has both "messages" and "text"; it must have exactly one');
  if (!hasMessages && !hasText) bad('a row needs "messages" (a chat) or "text"');

  const labelEntries: [string, string | number | boolean | null][] = [];
  for (const [k, x] of Object.entries(obj)) {
    if (k === 'messages' || k === 'text') continue;
    if (x !== null && typeof x === 'object') bad(`label ${key(k)} must be a string, number, boolean or null, got ${describe(x)}`);
    labelEntries.push([k, x as string | number | boolean | null]);
  }
  // fromEntries defines own properties, so a label called "__proto__" stays a plain label.
  const labels: Labels = Object.fromEntries(labelEntries);

  if (hasText) {
    if (typeof obj.text !== 'string') bad(`"text" must be a string, got ${describe(obj.text)}`);
    return { kind: 'text', text: obj.text, labels, line };
  }
  const ms = obj.messages;
  if (!Array.isArray(ms)) bad(`"messages" must be a list of {role, content}, got ${describe(ms)}`);
  if (ms.length === 0) bad('"messages" is empty');
  const messages: ChatMessage[] = ms.map((m: unknown, i: number) => {
    if (m === null || typeof m !== 'object' || Array.isArray(m)) bad(`messages[${i}] must be an object {role, content}, got ${describe(m)}`);
    const { role, content } = m as Record<string, unknown>;
    if (typeof role !== 'string') bad(`messages[${i}].role must be a string, got ${role === undefined ? 'nothing' : describe(role)}`);
    if (typeof content !== 'string') bad(`messages[${i}].content must be a string, got ${content === undefined ? 'nothing' : describe(content)}`);
    // Other message fields (name, tool_calls, …) are dropped.
    return { role, content };
  });
  return { kind: 'chat', messages, labels, line };
}

function readBytes(file: string): Buffer {
  try {
    return readFileSync(file);
  } catch (e) {
    const code = (e as NodeJS.ErrnoException)?.code;
    if (code === 'ENOENT') throw new EmlensError(`${file}: no such file`);
    if (code === 'EISDIR') throw new EmlensError(`${file}: is a directory, not a JSONL file`);
    if (code === 'EACCES' || code === 'EPERM') throw new EmlensError(`${file}: permission denied`);
    throw new EmlensError(`${file}: cannot read (${oneLine(String((e as Error)?.message ?? e))})`);
  }
}

const utf8 = new TextDecoder('utf-8', { fatal: true });

/**
 * A `--where` expression kept in a file (`--where-file`), for expressions too long for a command
 * line; surrounding whitespace (the final newline) is dropped. Giving `--where` as well is an error.
 */
export function readWhereFile(file: string, where: string | undefined): string {
  if (where !== undefined) throw new EmlensError('--where and --where-file both given; use one');
  let text: string;
  try {
    text = utf8.decode(readBytes(file));
  } catch (e) {
    if (e instanceof EmlensError) throw new EmlensError(`--where-file ${e.message}`);
    throw new EmlensError(`--where-file ${file}: not valid UTF-8`);
  }
  const expr = text.trim();
  if (expr === '') throw new EmlensError(`--where-file ${file}: is empty`);
  try {
    parseWhere(expr);
  } catch (e) {
    // Its syntax errors name the file, not a --where the user never typed.
    if (e instanceof EmlensError) throw new EmlensError(`--where-file ${file}: ${e.message.replace(/^--where: /, '')}`);
    throw e;
  }
  return expr;
}

/**
 * Reads a JSONL dataset. Lines are split on "\n" (a trailing "\r" is dropped, a UTF-8 BOM at the
 * start ignored); blank or whitespace-only lines are skipped and not counted, but line numbers are
 * physical (1-based) so that `file:line` points at the right line. A bad row — not UTF-8, not
 * JSON, not an object, neither or both of messages/text, messages not a non-empty list of
 * {role: string, content: string}, text not a string, a label that is an object or a list —
 * throws EmlensError `${file}:${line}: <reason>`, or with `skipBad` is recorded in `skipped`.
 * `where` is compiled first (a syntax error throws before the file is read) and applied to the
 * labels of good rows; a label it names that no good row has throws once the file is read (see
 * checkWhereLabels). An empty result is not an error here.
 */
export function readJsonl(file: string, opts: ReadOptions = {}): Dataset {
  const where = opts.where !== undefined ? parseWhere(opts.where) : null;
  const seenLabels = new Set<string>();
  const bytes = readBytes(file);
  const sha256 = createHash('sha256').update(bytes).digest('hex');

  const rows: DataRow[] = [];
  const skipped: { line: number; reason: string }[] = [];
  let totalLines = 0;
  let filteredOut = 0;

  let start = bytes.length >= 3 && bytes[0] === 0xef && bytes[1] === 0xbb && bytes[2] === 0xbf ? 3 : 0;
  let lineNo = 0;
  while (start < bytes.length) {
    lineNo++;
    let end = bytes.indexOf(0x0a, start);
    if (end < 0) end = bytes.length;
    const next = end + 1;
    if (end > start && bytes[end - 1] === 0x0d) end--;
    const chunk = bytes.subarray(start, end);
    start = next;

    let text: string | null;
    try {
      text = utf8.decode(chunk);
    } catch {
      text = null;
    }
    if (text !== null && text.trim() === '') continue;
    totalLines++;
    let row: DataRow;
    try {
      if (text === null) bad('not valid UTF-8');
      row = parseRow(text, lineNo);
    } catch (e) {
      if (!(e instanceof BadRow)) throw e;
      if (!opts.skipBad) throw new EmlensError(`${file}:${lineNo}: ${e.message}`);
      skipped.push({ line: lineNo, reason: e.message });
      continue;
    }
    if (where) for (const k of Object.keys(row.labels)) seenLabels.add(k);
    if (where && !where.predicate(row.labels)) {
      filteredOut++;
      continue;
    }
    rows.push(row);
  }

  if (where && rows.length + filteredOut > 0) checkWhereLabels(where, seenLabels, file);
  const ds: Dataset = { file, sha256, rows, totalLines, skipped, filteredOut };
  if (opts.where !== undefined) ds.where = opts.where;
  return ds;
}
