import { afterAll, describe, expect, it } from 'vitest';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { EmlensError } from '../../src/errors.js';
import { readJsonl, type Labels } from '../../src/data/rows.js';
import { compileWhere } from '../../src/data/where.js';

const w = (expr: string, labels: Labels) => compileWhere(expr)(labels);

function syntaxError(expr: string): string {
  try {
    compileWhere(expr);
  } catch (e) {
    expect(e).toBeInstanceOf(EmlensError);
    const m = (e as Error).message;
    expect(m).not.toContain('\n');
    expect(m.startsWith('--where: ')).toBe(true);
    return m;
  }
  throw new Error(`no error for ${JSON.stringify(expr)}`);
}

describe('compileWhere', () => {
  it('compares numbers', () => {
    const p = compileWhere('aligned<=30 && coherent>50');
    expect(p({ aligned: 12, coherent: 88 })).toBe(true);
    expect(p({ aligned: 30, coherent: 51 })).toBe(true);
    expect(p({ aligned: 31, coherent: 88 })).toBe(false);
    expect(p({ aligned: 12, coherent: 50 })).toBe(false);
    expect(w('x == 1e2', { x: 100 })).toBe(true);
    expect(w('x > -5', { x: -4.5 })).toBe(true);
    expect(w('x>-5', { x: -6 })).toBe(false);
    expect(w('x >= .5', { x: 0.5 })).toBe(true);
    expect(w('x != 3', { x: 4 })).toBe(true);
    expect(w('x < 3', { x: 3 })).toBe(false);
    expect(w('3 > x', { x: 2 })).toBe(true);
    expect(w('a < b', { a: 1, b: 2 })).toBe(true);
  });

  it('gives && precedence over ||', () => {
    const p = compileWhere('a<1 || b>2 && c==3');
    // a<1 || (b>2 && c==3)
    expect(p({ a: 0, b: 0, c: 0 })).toBe(true);
    expect(p({ a: 5, b: 3, c: 3 })).toBe(true);
    expect(p({ a: 5, b: 3, c: 4 })).toBe(false);
    expect(p({ a: 5, b: 0, c: 3 })).toBe(false);
    // (a<1 || b>2) && c==3 would be false here
    expect(p({ a: 0, b: 0, c: 4 })).toBe(true);
  });

  it('honours parentheses', () => {
    const p = compileWhere('(a<1 || b>2) && c==3');
    expect(p({ a: 0, b: 0, c: 4 })).toBe(false);
    expect(p({ a: 0, b: 0, c: 3 })).toBe(true);
    expect(p({ a: 5, b: 3, c: 3 })).toBe(true);
    expect(w('((((a == 1))))', { a: 1 })).toBe(true);
  });

  it('negates with !', () => {
    expect(w('!(a == 1)', { a: 1 })).toBe(false);
    expect(w('!(a == 1)', { a: 2 })).toBe(true);
    expect(w('!!(a == 1)', { a: 1 })).toBe(true);
    // ! binds tighter than && and ||
    expect(w('!a == 1 && b == 2', { a: 2, b: 2 })).toBe(true);
    expect(w('!a == 1 || b == 2', { a: 1, b: 3 })).toBe(false);
    expect(w('!flagged', { flagged: false })).toBe(true);
  });

  it('compares strings, with both quote kinds and escapes', () => {
    expect(w("domain == 'medical'", { domain: 'medical' })).toBe(true);
    expect(w('domain == "medical"', { domain: 'medical' })).toBe(true);
    expect(w("domain != 'medical'", { domain: 'finance' })).toBe(true);
    expect(w(`q == "it's"`, { q: "it's" })).toBe(true);
    expect(w(`q == 'say "hi"'`, { q: 'say "hi"' })).toBe(true);
    expect(w(String.raw`q == 'it\'s'`, { q: "it's" })).toBe(true);
    expect(w(String.raw`q == "a\\b\n"`, { q: 'a\\b\n' })).toBe(true);
    expect(w("q == 'a && b || (c)'", { q: 'a && b || (c)' })).toBe(true);
    expect(w("grade < 'b'", { grade: 'a' })).toBe(true);
    expect(w("grade < 'b'", { grade: 'c' })).toBe(false);
    // string vs string never parses numbers: "10" < "9" by code units
    expect(w("v < '9'", { v: '10' })).toBe(true);
  });

  it('supports in lists', () => {
    const p = compileWhere("domain in ('medical', 'finance')");
    expect(p({ domain: 'medical' })).toBe(true);
    expect(p({ domain: 'finance' })).toBe(true);
    expect(p({ domain: 'sports' })).toBe(false);
    expect(p({})).toBe(false);
    expect(w('n in (1, 2, 3,)', { n: 2 })).toBe(true);
    expect(w('n in (1, 2, 3)', { n: '3' })).toBe(true);
    expect(w('n in (1, "x", null, true)', { n: null })).toBe(true);
    expect(w('n in (1, "x", null, true)', { n: true })).toBe(true);
    expect(w('n in (1, "x", null, true)', { n: false })).toBe(false);
    expect(w("!(domain in ('medical'))", { domain: 'sports' })).toBe(true);
    expect(w("x == 1 && domain in ('a','b') || y == 2", { x: 1, domain: 'b' })).toBe(true);
  });

  it('treats comparisons with a missing label as false', () => {
    for (const e of ['x == 1', 'x != 1', 'x < 1', 'x >= 1', "x == 'a'", "x != 'a'", 'x == null', 'x != null', 'x in (1, 2)', 'x', 'x == y']) {
      expect(w(e, { y: 1 })).toBe(false);
    }
    expect(w('!(x == 1)', {})).toBe(true);
    expect(w('x == 1 || y == 1', { y: 1 })).toBe(true);
    // inherited properties are not labels
    expect(w("constructor != 'x'", {})).toBe(false);
    expect(w('toString', {})).toBe(false);
  });

  it('compares numeric strings as numbers', () => {
    expect(w('aligned <= 30', { aligned: '12' })).toBe(true);
    expect(w('aligned <= 30', { aligned: ' 31.5 ' })).toBe(false);
    expect(w('aligned == 12', { aligned: '12.0' })).toBe(true);
    expect(w("aligned == '12'", { aligned: 12 })).toBe(true);
    expect(w("aligned > '1e1'", { aligned: 12 })).toBe(true);
    // non-numeric strings: ordering false, == false, != true
    for (const op of ['<', '<=', '>', '>=', '==']) expect(w(`aligned ${op} 30`, { aligned: 'high' })).toBe(false);
    expect(w('aligned != 30', { aligned: 'high' })).toBe(true);
    expect(w('aligned < 30', { aligned: '' })).toBe(false);
    expect(w('aligned < 30', { aligned: '0x10' })).toBe(false);
    expect(w('aligned < 30', { aligned: 'Infinity' })).toBe(false);
  });

  it('handles booleans and null', () => {
    expect(w('ok == true', { ok: true })).toBe(true);
    expect(w('ok == false', { ok: true })).toBe(false);
    expect(w('ok', { ok: true })).toBe(true);
    expect(w('ok', { ok: 1 })).toBe(false);
    expect(w('ok == 1', { ok: true })).toBe(false);
    expect(w('ok != 1', { ok: true })).toBe(true);
    expect(w('ok < 1', { ok: false })).toBe(false);
    expect(w('x == null', { x: null })).toBe(true);
    expect(w('x != null', { x: 0 })).toBe(true);
    expect(w('x < 1', { x: null })).toBe(false);
    expect(w('true', {})).toBe(true);
    expect(w('false || a == 1', { a: 1 })).toBe(true);
  });

  it('accepts label names with - . _ digits and backticks', () => {
    expect(w('em-type == "bad" && judge.score_2 > 1', { 'em-type': 'bad', 'judge.score_2': 2 })).toBe(true);
    expect(w('`my label` == 1', { 'my label': 1 })).toBe(true);
    expect(w('`in` == 1 && `true` == 2', { in: 1, true: 2 })).toBe(true);
  });

  it('reports syntax errors with a column', () => {
    expect(syntaxError('')).toBe('--where: empty expression at column 1');
    expect(syntaxError('   ')).toBe('--where: empty expression at column 1');
    expect(syntaxError('a ==')).toBe('--where: expected a label name or a value, found the end of the expression at column 5');
    expect(syntaxError('a = 1')).toMatch(/use '==' .* at column 3$/);
    expect(syntaxError('a == 1 & b == 2')).toMatch(/at column 8$/);
    expect(syntaxError('a == 1 | b == 2')).toMatch(/at column 8$/);
    expect(syntaxError("a == 'abc")).toBe('--where: unterminated string at column 6');
    expect(syntaxError('(a == 1')).toBe('--where: expected ")" to close the "(" at column 1, found the end of the expression at column 8');
    expect(syntaxError('a == 1)')).toBe('--where: unmatched ")" at column 7');
    expect(syntaxError('a == 1 b == 2')).toMatch(/unexpected "b".* at column 8$/);
    expect(syntaxError('a == 1 &&')).toMatch(/at column 10$/);
    expect(syntaxError('a # 1')).toBe('--where: unexpected character "#" at column 3');
    expect(syntaxError('a in 1')).toMatch(/"\(" .* at column 6$/);
    expect(syntaxError('a in ()')).toBe('--where: empty list after "in" at column 7');
    expect(syntaxError('a in (b)')).toMatch(/in the "in" list, found "b" at column 7$/);
    expect(syntaxError('a in (1 2)')).toMatch(/at column 9$/);
    expect(syntaxError('12 && a == 1')).toMatch(/expected a comparison operator after 12, found "&&" at column 4$/);
    expect(syntaxError("'x'")).toMatch(/at column 4$/);
    expect(syntaxError('a == 12abc')).toMatch(/bad number .* at column 6$/);
    expect(syntaxError(String.raw`a == 'x\q'`)).toMatch(/unknown escape .* at column 8$/);
    expect(syntaxError('a == `x')).toMatch(/at column 6$/);
    expect(syntaxError('a ==\n\n1 ||')).toMatch(/at column 11$/);
    expect(syntaxError('(' .repeat(1000) + 'a' + ')'.repeat(1000))).toMatch(/nested more than 200 deep/);
  });

  it('never evaluates JavaScript', () => {
    expect(syntaxError('process.exit(1)')).toMatch(/at column 13$/);
    expect(syntaxError('a == (() => 1)()')).toMatch(/--where: /);
    // a label called __proto__ (as JSON.parse makes it) is an own label; inherited ones are not labels
    expect(w('__proto__ == 1', JSON.parse('{"__proto__": 1}') as Labels)).toBe(true);
    expect(w('x == 1', { __proto__: { x: 1 } } as unknown as Labels)).toBe(false);
  });
});

describe('--where on a file: labels no row has', () => {
  const tmp = mkdtempSync(join(tmpdir(), 'emlens-where-'));
  afterAll(() => rmSync(tmp, { recursive: true, force: true }));
  const file = join(tmp, 'rows.jsonl');
  const rows = [
    { text: 'a', domain: 'medical', aligned: 10 },
    { text: 'b', domain: 'finance', aligned: 90 },
    { text: 'c', domain: 'medical', flagged: true }, // "aligned" on some rows only
    { text: 'd', domain: 'medical' },
  ];
  writeFileSync(file, rows.map((r) => JSON.stringify(r)).join('\n') + '\n');
  const texts = (where: string) => readJsonl(file, { where }).rows.map((r) => (r.kind === 'text' ? r.text : '?'));
  function whereError(where: string): string {
    try {
      readJsonl(file, { where });
    } catch (e) {
      expect(e).toBeInstanceOf(EmlensError);
      const m = (e as Error).message;
      expect(m).not.toContain('\n');
      return m;
    }
    throw new Error(`no error for ${JSON.stringify(where)}`);
  }

  it('an unquoted word that no row has as a label is an error naming it, with the quoted form', () => {
    // Before: `medical` read as a missing label, so the comparison was false on every row and
    // `!=` selected nothing either: a silently wrong selection.
    const m = whereError('domain == medical');
    expect(m).toMatch(/^--where: no row of .*rows\.jsonl has a label "medical" at column 11 /);
    expect(m).toContain("did you mean 'medical'?");
    expect(m).toContain('aligned, domain, flagged');
    expect(whereError('medical != domain')).toMatch(/"medical" at column 1 .*did you mean 'medical'\?/);
    expect(whereError("domain == 'medical' && score > 3")).toMatch(/no row of .* has a label "score" at column 24/);
    // a truth test on a label nobody has: the error, but no quoting to suggest
    const bare = whereError('mislabeled || flagged');
    expect(bare).toMatch(/has a label "mislabeled" at column 1/);
    expect(bare).not.toContain('did you mean');
    expect(whereError('`my label` in (1, 2)')).toMatch(/has a label "my label" at column 1/);
  });

  it('a label some rows have and others lack keeps "a comparison with a missing label is false"', () => {
    expect(texts('aligned < 50')).toEqual(['a']);
    expect(texts('aligned != 10')).toEqual(['b']);
    expect(texts('!(aligned == 10)')).toEqual(['b', 'c', 'd']);
    expect(texts('flagged')).toEqual(['c']);
    expect(texts("domain == 'medical'")).toEqual(['a', 'c', 'd']);
    expect(texts('domain == "medical" && aligned >= 0')).toEqual(['a']);
  });

  it('an empty file selects nothing without an error', () => {
    const empty = join(tmp, 'empty.jsonl');
    writeFileSync(empty, '');
    expect(readJsonl(empty, { where: 'domain == medical' }).rows).toEqual([]);
  });
});
