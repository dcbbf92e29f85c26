/**
 * `--where`: a small, safe expression language for selecting dataset rows on their labels.
 * Parsed by hand into closures; nothing is ever evaluated as JavaScript.
 *
 * Grammar (lowest precedence first; `&&` binds tighter than `||`, `!` tighter than both):
 *
 *   expr       := and ( '||' and )*
 *   and        := unary ( '&&' unary )*
 *   unary      := '!' unary | '(' expr ')' | comparison
 *   comparison := operand ( cmp operand | 'in' '(' literal ( ',' literal )* ','? ')' )?
 *   cmp        := '==' | '!=' | '<' | '<=' | '>' | '>='
 *   operand    := label | literal
 *   literal    := number | string | 'true' | 'false' | 'null'
 *
 * - label: a name starting with a letter or `_`, then letters, digits, `_`, `-`, `.`
 *   (`aligned`, `judge.score`, `em-type`). Any other name can be written in backticks:
 *   `` `my label` `` (also for labels called `true`, `false`, `null` or `in`).
 * - number: `12`, `-3.5`, `1e3`, `.5`. A `-` right after a name character belongs to the name
 *   (`a-1` is the label "a-1"), so write `a == -1` with a space or compare the other way round.
 * - string: `'…'` or `"…"`, with the escapes `\\`, `\'`, `\"`, `\n`, `\t`, `\r`.
 * - A bare operand without a comparison is a truth test: `flagged` means `flagged == true`
 *   (a bare string, number or null literal is an error).
 *
 * Semantics (a row's labels are strings, numbers, booleans or null):
 * - A comparison involving a label the row does not have is FALSE, whatever the operator —
 *   `domain != 'medical'` and `domain in ('a')` are both false for a row without `domain`
 *   (while `!(domain == 'medical')` is true for it). A label that is present with value null is
 *   not missing: `x == null` is true for it.
 * - number vs number: numeric. number vs string: if the string is a decimal number (optional sign,
 *   digits, optional fraction and exponent, surrounding blanks allowed) both compare as numbers;
 *   otherwise `==` is false, `!=` true and the ordering operators false.
 * - string vs string: `==`/`!=` exact, ordering by UTF-16 code units (no numeric parsing: quote
 *   nothing you mean as a number).
 * - boolean and null: only `==`/`!=`, and only equal to themselves (`true == 1` is false);
 *   ordering operators are false.
 * - `x in (v1, v2, …)` is true iff `x == vi` for some i.
 *
 * - A label that NO row of the file has is an error naming it (checkWhereLabels, called by
 *   readJsonl once the file is read): `domain == medical` would otherwise compare with a missing
 *   label `medical` on every row and select the wrong rows; the error suggests `'medical'`.
 *
 * Errors are EmlensErrors `--where: <what> at column N` (1-based, in UTF-16 code units).
 */
import { EmlensError } from '../errors.js';
import type { Labels } from './rows.js';

export type Predicate = (labels: Labels) => boolean;

/** A label an expression reads: its name, where it starts, and whether it is compared with something. */
export interface WhereLabel {
  name: string;
  /** 0-based start index in the expression */
  pos: number;
  /** an operand of `==`, `<`…, as opposed to a truth test or the left of `in` */
  compared: boolean;
}

export interface ParsedWhere {
  predicate: Predicate;
  /** every label the expression reads, in source order */
  labels: WhereLabel[];
}

type Scalar = string | number | boolean | null;
/** An operand's value for a row; `undefined` = the label is missing. */
type Getter = (labels: Labels) => Scalar | undefined;
type CmpOp = '==' | '!=' | '<' | '<=' | '>' | '>=';

type TokKind = 'name' | 'num' | 'str' | 'kw' | 'op' | 'end';
interface Token {
  kind: TokKind;
  /** name: the label; num: the source text; str: the decoded string; kw/op: the keyword or operator */
  text: string;
  value?: Scalar;
  /** 0-based start index in the expression */
  pos: number;
}

const MAX_DEPTH = 200;
const NUMERIC = /^\s*[+-]?(?:\d+\.?\d*|\.\d+)(?:[eE][+-]?\d+)?\s*$/;
const KEYWORDS = new Set(['true', 'false', 'null', 'in']);

function fail(message: string, pos: number, after = ''): never {
  throw new EmlensError(`--where: ${message} at column ${pos + 1}${after}`);
}

/** A token for an error message: quoted, escaped (one line), shortened. */
function show(t: Token): string {
  const cut = (x: string) => (x.length > 40 ? x.slice(0, 40) + '…' : x);
  switch (t.kind) {
    case 'end':
      return 'the end of the expression';
    case 'num':
      return cut(t.text);
    case 'str':
      return `string ${JSON.stringify(cut(t.text))}`;
    default:
      return JSON.stringify(cut(t.text));
  }
}

function isNameStart(c: string): boolean {
  return /[A-Za-z_]/.test(c);
}
function isNameChar(c: string): boolean {
  return /[A-Za-z0-9_.\-]/.test(c);
}

function tokenize(src: string): Token[] {
  const out: Token[] = [];
  let i = 0;
  const n = src.length;
  while (i < n) {
    const c = src[i]!;
    if (/\s/.test(c)) {
      i++;
      continue;
    }
    const start = i;
    if (isNameStart(c)) {
      while (i < n && isNameChar(src[i]!)) i++;
      const word = src.slice(start, i);
      if (KEYWORDS.has(word)) {
        const value = word === 'true' ? true : word === 'false' ? false : word === 'null' ? null : undefined;
        out.push(word === 'in' ? { kind: 'kw', text: word, pos: start } : { kind: 'kw', text: word, value, pos: start });
      } else {
        out.push({ kind: 'name', text: word, pos: start });
      }
      continue;
    }
    if (c === '`') {
      const close = src.indexOf('`', i + 1);
      if (close < 0) fail('unterminated `quoted label name`', start);
      const name = src.slice(i + 1, close);
      if (name === '') fail('empty `quoted label name`', start);
      out.push({ kind: 'name', text: name, pos: start });
      i = close + 1;
      continue;
    }
    if (/[0-9.]/.test(c) || ((c === '-' || c === '+') && /[0-9.]/.test(src[i + 1] ?? ''))) {
      const m = /^[+-]?(?:\d+\.?\d*|\.\d+)(?:[eE][+-]?\d+)?/.exec(src.slice(i));
      if (!m) fail(`bad number ${JSON.stringify(src.slice(i, i + 10))}`, start);
      i += m[0].length;
      if (i < n && isNameChar(src[i]!) && src[i] !== '-') fail(`bad number ${JSON.stringify(src.slice(start, i + 1))}`, start);
      out.push({ kind: 'num', text: m[0], value: Number(m[0]), pos: start });
      continue;
    }
    if (c === "'" || c === '"') {
      let s = '';
      i++;
      for (;;) {
        if (i >= n) fail('unterminated string', start);
        const d = src[i]!;
        if (d === c) {
          i++;
          break;
        }
        if (d === '\\') {
          const e = src[i + 1];
          const map: Record<string, string> = { '\\': '\\', "'": "'", '"': '"', n: '\n', t: '\t', r: '\r' };
          if (e === undefined) fail('unterminated string', start);
          if (!Object.hasOwn(map, e)) fail(`unknown escape ${JSON.stringify('\\' + e)} in a string`, i);
          s += map[e];
          i += 2;
          continue;
        }
        s += d;
        i++;
      }
      out.push({ kind: 'str', text: s, value: s, pos: start });
      continue;
    }
    const two = src.slice(i, i + 2);
    if (['==', '!=', '<=', '>=', '&&', '||'].includes(two)) {
      out.push({ kind: 'op', text: two, pos: start });
      i += 2;
      continue;
    }
    if ('<>!(),'.includes(c)) {
      out.push({ kind: 'op', text: c, pos: start });
      i++;
      continue;
    }
    if (c === '=') fail("'=' is not an operator; use '==' to compare", start);
    if (c === '&') fail("single '&'; use '&&' for 'and'", start);
    if (c === '|') fail("single '|'; use '||' for 'or'", start);
    fail(`unexpected character ${JSON.stringify(c)}`, start);
  }
  out.push({ kind: 'end', text: '', pos: n });
  return out;
}

function asNumber(v: Scalar): number | null {
  if (typeof v === 'number') return v;
  if (typeof v === 'string' && NUMERIC.test(v)) return Number(v);
  return null;
}

/** Equality on present values, as documented above. */
function equal(x: Scalar, y: Scalar): boolean {
  if (typeof x === 'number' || typeof y === 'number') {
    const a = asNumber(x);
    const b = asNumber(y);
    return a !== null && b !== null && a === b;
  }
  return x === y;
}

/** Ordering on present values: -1/0/1, or null when they do not order. */
function order(x: Scalar, y: Scalar): number | null {
  if (typeof x === 'number' || typeof y === 'number') {
    const a = asNumber(x);
    const b = asNumber(y);
    if (a === null || b === null) return null;
    return a < b ? -1 : a > b ? 1 : 0;
  }
  if (typeof x === 'string' && typeof y === 'string') return x < y ? -1 : x > y ? 1 : 0;
  return null;
}

function compare(op: CmpOp, x: Scalar | undefined, y: Scalar | undefined): boolean {
  if (x === undefined || y === undefined) return false;
  switch (op) {
    case '==':
      return equal(x, y);
    case '!=':
      return !equal(x, y);
    default: {
      const o = order(x, y);
      if (o === null) return false;
      return op === '<' ? o < 0 : op === '<=' ? o <= 0 : op === '>' ? o > 0 : o >= 0;
    }
  }
}

class Parser {
  private i = 0;
  private depth = 0;
  readonly labels: WhereLabel[] = [];
  constructor(private readonly toks: Token[]) {}

  private peek(): Token {
    return this.toks[this.i]!;
  }
  private next(): Token {
    return this.toks[this.i++]!;
  }
  private isOp(text: string): boolean {
    const t = this.peek();
    return t.kind === 'op' && t.text === text;
  }
  private expectOp(text: string, what: string): void {
    const t = this.peek();
    if (!(t.kind === 'op' && t.text === text)) fail(`expected ${what}, found ${show(t)}`, t.pos);
    this.i++;
  }
  private enter(pos: number): void {
    if (++this.depth > MAX_DEPTH) fail(`expression nested more than ${MAX_DEPTH} deep`, pos);
  }

  parseAll(): Predicate {
    if (this.peek().kind === 'end') fail('empty expression', 0);
    const p = this.parseOr();
    const t = this.peek();
    if (t.kind !== 'end') {
      const hint = t.kind === 'op' && t.text === ')' ? 'unmatched ")"' : `unexpected ${show(t)}; expected "&&", "||" or the end`;
      fail(hint, t.pos);
    }
    return p;
  }

  private parseOr(): Predicate {
    const parts = [this.parseAnd()];
    while (this.isOp('||')) {
      this.i++;
      parts.push(this.parseAnd());
    }
    return parts.length === 1 ? parts[0]! : (l) => parts.some((p) => p(l));
  }

  private parseAnd(): Predicate {
    const parts = [this.parseUnary()];
    while (this.isOp('&&')) {
      this.i++;
      parts.push(this.parseUnary());
    }
    return parts.length === 1 ? parts[0]! : (l) => parts.every((p) => p(l));
  }

  private parseUnary(): Predicate {
    const t = this.peek();
    if (t.kind === 'op' && t.text === '!') {
      this.enter(t.pos);
      this.i++;
      const inner = this.parseUnary();
      this.depth--;
      return (l) => !inner(l);
    }
    if (t.kind === 'op' && t.text === '(') {
      this.enter(t.pos);
      this.i++;
      const inner = this.parseOr();
      this.expectOp(')', `")" to close the "(" at column ${t.pos + 1}`);
      this.depth--;
      return inner;
    }
    return this.parseComparison();
  }

  private parseOperand(): { get: Getter; tok: Token } {
    const t = this.peek();
    if (t.kind === 'name') {
      this.i++;
      const name = t.text;
      return { get: (l) => (Object.hasOwn(l, name) ? l[name] : undefined), tok: t };
    }
    if (t.kind === 'num' || t.kind === 'str' || (t.kind === 'kw' && t.text !== 'in')) {
      this.i++;
      const v = t.value as Scalar;
      return { get: () => v, tok: t };
    }
    fail(`expected a label name or a value, found ${show(t)}`, t.pos);
  }

  private parseLiteral(): Scalar {
    const t = this.peek();
    if (t.kind === 'num' || t.kind === 'str' || (t.kind === 'kw' && t.text !== 'in')) {
      this.i++;
      return t.value as Scalar;
    }
    fail(`expected a value (number, string, true, false or null) in the "in" list, found ${show(t)}`, t.pos);
  }

  private note(tok: Token, compared: boolean): void {
    if (tok.kind === 'name') this.labels.push({ name: tok.text, pos: tok.pos, compared });
  }

  private parseComparison(): Predicate {
    const left = this.parseOperand();
    const t = this.peek();
    if (t.kind === 'op' && ['==', '!=', '<', '<=', '>', '>='].includes(t.text)) {
      this.i++;
      const op = t.text as CmpOp;
      const right = this.parseOperand();
      this.note(left.tok, true);
      this.note(right.tok, true);
      const a = left.get;
      const b = right.get;
      return (l) => compare(op, a(l), b(l));
    }
    if (t.kind === 'kw' && t.text === 'in') {
      this.i++;
      this.note(left.tok, false);
      this.expectOp('(', '"(" to start the list after "in"');
      const values: Scalar[] = [];
      if (this.isOp(')')) fail('empty list after "in"', this.peek().pos);
      for (;;) {
        values.push(this.parseLiteral());
        if (this.isOp(',')) {
          this.i++;
          if (this.isOp(')')) break;
          continue;
        }
        break;
      }
      this.expectOp(')', '"," or ")" in the "in" list');
      const a = left.get;
      return (l) => {
        const x = a(l);
        return x !== undefined && values.some((v) => equal(x, v));
      };
    }
    // A bare operand: a truth test on a label or a boolean literal.
    const lt = left.tok;
    if (lt.kind === 'name' || (lt.kind === 'kw' && typeof lt.value === 'boolean')) {
      this.note(lt, false);
      const a = left.get;
      return (l) => a(l) === true;
    }
    fail(`expected a comparison operator after ${show(lt)}, found ${show(t)}`, t.pos);
  }
}

/**
 * Compiles a `--where` expression into a predicate on a row's labels (see the module comment for
 * the language). Throws an EmlensError `--where: … at column N` on a syntax error.
 */
export function compileWhere(expr: string): Predicate {
  return parseWhere(expr).predicate;
}

/** compileWhere, plus the labels the expression reads (for checkWhereLabels). */
export function parseWhere(expr: string): ParsedWhere {
  const parser = new Parser(tokenize(expr));
  const predicate = parser.parseAll();
  return { predicate, labels: parser.labels };
}

/**
 * Throws for the first label of the expression that no row has (`present` is the union of the
 * rows' label names): a bare word meant as a value (`domain == medical`) would otherwise be a
 * missing label on every row. A label some rows have keeps the missing-is-false rule.
 */
export function checkWhereLabels(w: ParsedWhere, present: ReadonlySet<string>, file: string): void {
  for (const l of w.labels) {
    if (present.has(l.name)) continue;
    const names = [...present].sort();
    const shown = names.length > 12 ? `${names.slice(0, 12).join(', ')}, …` : names.join(', ') || 'none';
    const quoted = `'${l.name.replace(/\\/g, '\\\\').replace(/'/g, "\\'")}'`;
    fail(`no row of ${file} has a label ${JSON.stringify(l.name)}`, l.pos, ` (the rows' labels: ${shown})${l.compared ? `; did you mean ${quoted}?` : ''}`);
  }
}
