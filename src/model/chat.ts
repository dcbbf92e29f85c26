/**
 * Chat templates: finding a model folder's template, rendering it with @huggingface/jinja, and
 * working out exactly which characters, then which tokens, of the rendering are the content of
 * which message.
 *
 * Character spans come from a second rendering in which every message's content is replaced by a
 * unique sentinel: the text between sentinels is the template's own scaffolding, so walking the
 * real rendering piece by piece pins down where each content starts and ends, even when the
 * template trims it or prepends it to another turn. Token spans come from re-encoding prefixes of
 * the rendering (the tokenizer exposes no offsets): a character position is a token boundary when
 * the encoding of everything before it is exactly a prefix of the full encoding.
 */
import { readFile } from 'node:fs/promises';
import { join } from 'node:path';
import { Template } from '@huggingface/jinja';
import { EmlensError } from '../errors.js';
import { parseJsonObject } from './config.js';

export interface ChatMessage {
  role: string;
  content: string;
}

/** Token kinds in an encoded chat. */
export const KIND_SCAFFOLD = 0;
export const KIND_PROMPT = 1;
export const KIND_RESPONSE = 2;

/** Where one message's content lies in a rendered chat, in UTF-16 code units, half-open. */
export interface ContentSpan {
  message: number;
  start: number;
  end: number;
}

const oneLine = (s: string): string => s.replace(/\s*\n\s*/g, ' ').trim();

async function readText(path: string): Promise<string | null> {
  try {
    return await readFile(path, 'utf8');
  } catch (e) {
    if ((e as NodeJS.ErrnoException).code === 'ENOENT') return null;
    throw new EmlensError(`cannot read ${path}: ${oneLine((e as Error).message)}`);
  }
}

/** Reads and parses a JSON file; null when the file does not exist. */
export async function readJsonFile(path: string): Promise<Record<string, unknown> | null> {
  const text = await readText(path);
  return text === null ? null : parseJsonObject(text, path);
}

/**
 * A chat_template value as transformers stores it: a string, or a list of {name, template} (or a
 * name -> template object) of which "default" is the one used.
 */
function pickTemplate(value: unknown, where: string): string | null {
  if (value === undefined || value === null) return null;
  if (typeof value === 'string') return value;
  let named: Array<[string, unknown]>;
  if (Array.isArray(value)) {
    named = value.map((t) => [String((t as { name?: unknown })?.name), (t as { template?: unknown })?.template]);
  } else if (typeof value === 'object') {
    named = Object.entries(value as Record<string, unknown>);
  } else {
    throw new EmlensError(`${where}: chat_template must be a string or a list of {name, template}`);
  }
  const chosen = named.find(([name]) => name === 'default') ?? (named.length === 1 ? named[0] : undefined);
  if (chosen === undefined) {
    throw new EmlensError(
      `${where}: chat_template lists ${named.length} templates (${named.map(([n]) => n).join(', ')}) and none is named "default"`,
    );
  }
  if (typeof chosen[1] !== 'string') throw new EmlensError(`${where}: chat template "${chosen[0]}" is not a string`);
  return chosen[1];
}

/**
 * The chat template of a model folder: chat_template.jinja, else chat_template.json, else
 * tokenizer_config.json's chat_template; null when there is none.
 */
export async function readChatTemplate(dir: string, tokenizerConfig: Record<string, unknown>): Promise<string | null> {
  const jsonPath = join(dir, 'chat_template.json');
  return chatTemplateOf(await readText(join(dir, 'chat_template.jinja')), await readJsonFile(jsonPath), tokenizerConfig, dir);
}

/** The same choice from the files' contents (null: the file is absent), e.g. fetched by a page. */
export function chatTemplateOf(jinja: string | null, json: Record<string, unknown> | null, tokenizerConfig: Record<string, unknown>, dir: string): string | null {
  if (jinja !== null) return jinja;
  if (json !== null) {
    const t = pickTemplate(json.chat_template, join(dir, 'chat_template.json'));
    if (t !== null) return t;
  }
  return pickTemplate(tokenizerConfig.chat_template, join(dir, 'tokenizer_config.json'));
}

/** Special-token strings handed to the template (bos_token, eos_token, ...); absent ones render as ''. */
export type TemplateSpecials = Partial<Record<'bos_token' | 'eos_token' | 'unk_token' | 'pad_token', string>>;

export class ChatTemplate {
  private compiled: Template | null = null;

  /** `where` names the model folder in error messages. */
  constructor(
    readonly source: string,
    private readonly where: string,
    private readonly specials: TemplateSpecials,
  ) {}

  render(messages: readonly ChatMessage[], addGenerationPrompt: boolean): string {
    if (this.compiled === null) {
      try {
        this.compiled = new Template(this.source);
      } catch (e) {
        throw new EmlensError(`cannot parse the chat template of model folder ${this.where}: ${oneLine(String((e as Error)?.message ?? e))}`);
      }
    }
    try {
      // @huggingface/jinja provides raise_exception (throwing an Error with the template's
      // message) and strftime_now itself.
      return this.compiled.render({
        ...this.specials,
        messages: messages.map((m) => ({ ...m })),
        add_generation_prompt: addGenerationPrompt,
      });
    } catch (e) {
      throw new EmlensError(`the chat template of model folder ${this.where} failed: ${oneLine(String((e as Error)?.message ?? e))}`);
    }
  }
}

/** Checks that `messages` is a list of {role: string, content: string}. */
export function checkMessages(messages: unknown, where: string): asserts messages is ChatMessage[] {
  if (!Array.isArray(messages)) throw new EmlensError(`chat for model folder ${where}: messages must be a list`);
  messages.forEach((m, i) => {
    const ok = m !== null && typeof m === 'object' && typeof m.role === 'string' && typeof m.content === 'string';
    if (!ok) throw new EmlensError(`chat for model folder ${where}: message ${i} must be {role: string, content: string}`);
  });
}

// ---------------------------------------------------------------------------------------------
// Character spans of message contents.

/** Two private-use characters found in neither the template nor any content. */
function sentinelDelimiters(haystacks: string[]): [string, string] {
  for (let c = 0xe000; c < 0xf8fe; c += 2) {
    const open = String.fromCharCode(c);
    const close = String.fromCharCode(c + 1);
    if (haystacks.every((h) => !h.includes(open) && !h.includes(close))) return [open, close];
  }
  throw new Error('no free private-use characters for chat sentinels');
}

type Piece = { text: string } | { message: number };

/**
 * Finds the character span of every message's content in `rendered`, the template's rendering of
 * `messages`. `render` renders a list of messages with the same options.
 *
 * Messages with empty content get no span; a message the template does not render gets none; a
 * message rendered twice gets two. Throws an EmlensError when a rendered content cannot be found.
 */
export function locateContents(
  messages: readonly ChatMessage[],
  rendered: string,
  render: (messages: ChatMessage[]) => string,
  templateSource: string,
  where: string,
): ContentSpan[] {
  if (messages.every((m) => m.content === '')) return [];
  const [open, close] = sentinelDelimiters([templateSource, ...messages.map((m) => m.content)]);
  // Empty contents stay empty so that templates testing `if message.content` take the same branch.
  const skeleton = render(messages.map((m, i) => ({ ...m, content: m.content === '' ? '' : `${open}${i}${close}` })));
  const pieces: Piece[] = [];
  const re = new RegExp(`${open}(\\d+)${close}`, 'g');
  let last = 0;
  for (let m = re.exec(skeleton); m !== null; m = re.exec(skeleton)) {
    pieces.push({ text: skeleton.slice(last, m.index) }, { message: Number(m[1]) });
    last = m.index + m[0].length;
  }
  pieces.push({ text: skeleton.slice(last) });
  return (
    alignExact(pieces, messages, rendered) ??
    alignLoose(pieces, messages, rendered, where)
  );
}

/** The ways a template commonly transforms a content before printing it. */
function candidates(content: string): string[] {
  return [...new Set([content, content.trim(), content.trimStart(), content.trimEnd()])];
}

/**
 * Walks the rendering piece by piece: scaffolding must match verbatim, and each content must be
 * the message's content (possibly trimmed) or, failing that, a substring of it (a template that
 * splits off part of a content) that runs up to the next piece of scaffolding. Null when the
 * rendering does not follow the skeleton (a template branching on the content itself).
 */
function alignExact(pieces: Piece[], messages: readonly ChatMessage[], rendered: string): ContentSpan[] | null {
  const spans: ContentSpan[] = [];
  let pos = 0;
  for (let j = 0; j < pieces.length; j++) {
    const piece = pieces[j];
    if ('text' in piece) {
      if (!rendered.startsWith(piece.text, pos)) return null;
      pos += piece.text.length;
      continue;
    }
    const content = messages[piece.message].content;
    const next = pieces[j + 1] as { text: string };
    const atEnd = j + 1 === pieces.length - 1;
    const fits = (end: number): boolean =>
      next.text === '' ? !atEnd || end === rendered.length : rendered.startsWith(next.text, end);
    let end = -1;
    for (const c of candidates(content)) {
      if (rendered.startsWith(c, pos) && fits(pos + c.length)) {
        end = pos + c.length;
        break;
      }
    }
    if (end < 0) {
      const stop = next.text === '' ? (atEnd ? rendered.length : -1) : rendered.indexOf(next.text, pos);
      if (stop < 0 || !content.includes(rendered.slice(pos, stop))) return null;
      end = stop;
    }
    spans.push({ message: piece.message, start: pos, end });
    pos = end;
  }
  return pos === rendered.length ? spans : null;
}

/**
 * Fallback: looks for each rendered content (in skeleton order) in the rendering, after the
 * previous one and preferably after the scaffolding that precedes it in the skeleton.
 */
function alignLoose(pieces: Piece[], messages: readonly ChatMessage[], rendered: string, where: string): ContentSpan[] {
  const spans: ContentSpan[] = [];
  let floor = 0; // end of the previous content found
  let hint = 0; // end of the scaffolding found since
  for (const piece of pieces) {
    if ('text' in piece) {
      const at = piece.text === '' ? -1 : rendered.indexOf(piece.text, hint);
      if (at >= 0) hint = at + piece.text.length;
      continue;
    }
    const m = messages[piece.message];
    let best: { start: number; end: number } | null = null;
    for (const from of [hint, floor]) {
      for (const c of candidates(m.content)) {
        if (c === '') continue;
        const at = rendered.indexOf(c, from);
        if (at >= 0 && (best === null || at < best.start)) best = { start: at, end: at + c.length };
      }
      if (best !== null) break;
    }
    if (best === null) {
      throw new EmlensError(
        `cannot find the content of message ${piece.message} (${m.role}) in the chat template's rendering for model folder ${where}`,
      );
    }
    spans.push({ message: piece.message, ...best });
    floor = hint = best.end;
  }
  return spans;
}

/**
 * Character kinds of a rendering: KIND_RESPONSE over the last span of message `responseMessage`
 * (-1 for none), KIND_PROMPT over every other span, KIND_SCAFFOLD elsewhere.
 */
export function characterKinds(length: number, spans: readonly ContentSpan[], responseMessage: number): Uint8Array {
  const kinds = new Uint8Array(length);
  let responseSpan = -1;
  spans.forEach((s, i) => {
    if (s.message === responseMessage) responseSpan = i;
  });
  spans.forEach((s, i) => kinds.fill(i === responseSpan ? KIND_RESPONSE : KIND_PROMPT, s.start, s.end));
  return kinds;
}

// ---------------------------------------------------------------------------------------------
// Token kinds.

/** What token classification needs from a tokenizer. */
export interface TokenizerView {
  /** Token ids of `text`, no special tokens added. */
  encode(text: string): number[];
  /**
   * For an added token that the tokenizer splits out of raw text before normalizing, its text;
   * null for every other id.
   */
  splitToken(id: number): string | null;
}

/** How far (in code units) to look either side of a content boundary for token boundaries. */
const SCAN = 64;

/**
 * Kind of each token of `ids` (= view.encode(rendered)): a token takes the kind that most of its
 * characters have, and is content only when content characters are a strict majority.
 */
export function tokenKinds(rendered: string, ids: readonly number[], charKinds: Uint8Array, view: TokenizerView): Uint8Array {
  const n = rendered.length;
  const prompt = new Int32Array(n + 1);
  const response = new Int32Array(n + 1);
  for (let i = 0; i < n; i++) {
    prompt[i + 1] = prompt[i] + (charKinds[i] === KIND_PROMPT ? 1 : 0);
    response[i + 1] = response[i] + (charKinds[i] === KIND_RESPONSE ? 1 : 0);
  }
  const kindOf = (start: number, end: number): number => {
    const p = prompt[end] - prompt[start];
    const r = response[end] - response[start];
    if (2 * (p + r) <= end - start) return KIND_SCAFFOLD;
    return r >= p ? KIND_RESPONSE : KIND_PROMPT;
  };
  const kinds = new Uint8Array(ids.length);

  // Added tokens split out of the raw text cut it into sections that are encoded independently.
  interface Split {
    index: number;
    start: number;
    end: number;
  }
  const splits: Split[] = [];
  let cursor = 0;
  ids.forEach((id, index) => {
    const text = view.splitToken(id);
    if (text === null) return;
    const start = rendered.indexOf(text, cursor);
    if (start < 0) return;
    splits.push({ index, start, end: start + text.length });
    cursor = start + text.length;
  });
  for (const s of splits) kinds[s.index] = kindOf(s.start, s.end);

  for (let k = 0; k <= splits.length; k++) {
    const before = k > 0 ? splits[k - 1] : null;
    const after = k < splits.length ? splits[k] : null;
    const section = {
      start: before ? before.end : 0,
      end: after ? after.start : n,
      first: before ? before.index + 1 : 0,
      stop: after ? after.index : ids.length,
      // Prefixes are encoded from the preceding added token on, so that they are split and
      // pre-tokenized the way they are inside the whole rendering.
      base: before ? before.start : 0,
      baseIndex: before ? before.index : 0,
    };
    if (section.first < section.stop) classifySection(rendered, ids, charKinds, view, section, kindOf, kinds);
  }
  return kinds;
}

function classifySection(
  rendered: string,
  ids: readonly number[],
  charKinds: Uint8Array,
  view: TokenizerView,
  sec: { start: number; end: number; first: number; stop: number; base: number; baseIndex: number },
  kindOf: (start: number, end: number) => number,
  kinds: Uint8Array,
): void {
  // Known token starts: token index -> character offset.
  const known = new Map<number, number>([
    [sec.first, sec.start],
    [sec.stop, sec.end],
  ]);
  /**
   * Encodes rendered[sec.base, q) and compares it with the whole encoding: `exact` when it is a
   * prefix of it (q is then a token boundary, with `tokens` tokens before it), else `tokens` is
   * where they part.
   */
  const probe = (q: number): { exact: boolean; tokens: number } => {
    if (q <= sec.start) return { exact: true, tokens: sec.first };
    if (q >= sec.end) return { exact: true, tokens: sec.stop };
    const enc = view.encode(rendered.slice(sec.base, q));
    let i = 0;
    while (i < enc.length && sec.baseIndex + i < sec.stop && enc[i] === ids[sec.baseIndex + i]) i++;
    return { exact: i === enc.length, tokens: sec.baseIndex + i };
  };
  const tokensBefore = (q: number): number => {
    const r = probe(q);
    return r.exact ? r.tokens : -1;
  };
  for (let p = sec.start + 1; p < sec.end; p++) {
    if (charKinds[p] === charKinds[p - 1]) continue;
    const here = probe(p);
    if (here.exact) {
      known.set(here.tokens, p);
      continue;
    }
    // A token straddles p: find the nearest token boundaries on either side.
    let left = -1;
    let right = -1;
    let leftTokens = -1;
    let rightTokens = -1;
    for (let q = p - 1; q >= Math.max(sec.start, p - SCAN); q--) {
      const t = tokensBefore(q);
      if (t >= 0) {
        [left, leftTokens] = [q, t];
        break;
      }
    }
    for (let q = p + 1; q <= Math.min(sec.end, p + SCAN); q++) {
      const t = tokensBefore(q);
      if (t >= 0) {
        [right, rightTokens] = [q, t];
        break;
      }
    }
    if (left >= 0 && right >= 0 && leftTokens < rightTokens && leftTokens <= here.tokens && here.tokens < rightTokens) {
      known.set(leftTokens, left);
      known.set(rightTokens, right);
    } else if (here.tokens > sec.first && here.tokens < sec.stop) {
      // No clean boundary nearby (not seen in practice): the tokens the prefix agrees on go left
      // of p, the rest right.
      known.set(here.tokens, p);
    }
  }
  // Tokens between consecutive known boundaries share those boundaries' characters. No content
  // boundary lies strictly inside such a range unless it is a single straddling token, so a
  // range of several tokens is all one kind.
  const marks = [...known].sort((a, b) => a[0] - b[0]);
  let prev = marks[0];
  for (const mark of marks.slice(1)) {
    if (mark[1] < prev[1]) continue; // inconsistent boundary: ignore it
    const kind = kindOf(prev[1], mark[1]);
    kinds.fill(kind, prev[0], mark[0]);
    prev = mark;
  }
}
