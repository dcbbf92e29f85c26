import { afterAll, describe, expect, it } from 'vitest';
import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import { EmlensError } from '../../src/errors.js';
import { balance, balanceTo, countRowsForBalance, shuffled } from '../../src/data/balance.js';
import { rng } from '../../src/runtime/random.js';

const tmp = fs.mkdtempSync(path.join(os.tmpdir(), 'emlens-balance-'));
afterAll(() => fs.rmSync(tmp, { recursive: true, force: true }));

const range = (n: number, base = 0) => Array.from({ length: n }, (_, i) => base + i);
const sorted = (x: number[]) => [...x].sort((p, q) => p - q);

function errorOf(fn: () => unknown): string {
  try {
    fn();
  } catch (e) {
    expect(e).toBeInstanceOf(EmlensError);
    expect((e as Error).message).not.toContain('\n');
    return (e as Error).message;
  }
  throw new Error('no error');
}

describe('shuffled', () => {
  it('is the documented Fisher-Yates on a fresh rng(seed)', () => {
    const items = range(10);
    const r = rng(7);
    const want = items.slice();
    for (let i = want.length - 1; i > 0; i--) {
      const j = Math.floor(r() * (i + 1));
      [want[i], want[j]] = [want[j]!, want[i]!];
    }
    expect(shuffled(items, 7)).toEqual(want);
    expect(items).toEqual(range(10)); // input untouched
  });

  it('handles empty and single lists', () => {
    expect(shuffled([], 1)).toEqual([]);
    expect(shuffled(['x'], 1)).toEqual(['x']);
  });

  it('rejects bad seeds', () => {
    expect(errorOf(() => shuffled([1], -1))).toMatch(/--seed must be an integer/);
    expect(errorOf(() => shuffled([1], 1.5))).toMatch(/--seed/);
    expect(errorOf(() => shuffled([1], 2 ** 32))).toMatch(/--seed/);
  });
});

describe('balance', () => {
  const a = range(50);
  const b = range(20, 1000);

  it('is deterministic for a seed', () => {
    expect(balance(a, b, 42)).toEqual(balance(a, b, 42));
    expect(balance(a, b, 0)).toEqual(balance(a.slice(), b.slice(), 0));
  });

  it('differs between seeds', () => {
    const x = balance(a, b, 1);
    const y = balance(a, b, 2);
    expect(x.a).not.toEqual(y.a);
    expect(x.b).not.toEqual(y.b);
  });

  it('makes both sides the smaller size, each a subset of its input without repeats', () => {
    for (const [p, q] of [
      [a, b],
      [b, a],
    ] as const) {
      const out = balance(p, q, 3);
      expect(out.a).toHaveLength(20);
      expect(out.b).toHaveLength(20);
      expect(new Set(out.a).size).toBe(20);
      expect(new Set(out.b).size).toBe(20);
      for (const v of out.a) expect(p).toContain(v);
      for (const v of out.b) expect(q).toContain(v);
    }
    expect(a).toEqual(range(50));
    expect(b).toEqual(range(20, 1000));
  });

  it('shuffles the smaller side too (a permutation of all of it)', () => {
    const out = balance(a, b, 5);
    expect(sorted(out.b)).toEqual(b);
    expect(out.b).not.toEqual(b);
    expect(out.b).toEqual(shuffled(b, 5));
    expect(out.a).toEqual(shuffled(a, 5).slice(0, 20));
  });

  it('with equal sizes keeps everything, shuffled', () => {
    const out = balance(range(30), range(30, 100), 9);
    expect(sorted(out.a)).toEqual(range(30));
    expect(sorted(out.b)).toEqual(range(30, 100));
    expect(out.a).not.toEqual(range(30));
  });

  it('with an empty side gives two empty sides', () => {
    expect(balance(a, [], 1)).toEqual({ a: [], b: [] });
  });

  it('balanceTo reproduces one side of balance (for --balance-with)', () => {
    const both = balance(a, b, 11);
    expect(balanceTo(a, b.length, 11)).toEqual(both.a);
    expect(balanceTo(b, a.length, 11)).toEqual(both.b);
    expect(errorOf(() => balanceTo(a, -1, 1))).toMatch(/non-negative integer/);
  });
});

describe('countRowsForBalance', () => {
  let seq = 0;
  const dir = () => {
    const d = path.join(tmp, `out${seq++}`);
    fs.mkdirSync(d);
    return d;
  };

  it('reads rows from an extract output folder', () => {
    const d = dir();
    fs.writeFileSync(path.join(d, 'meta.json'), JSON.stringify({ rows: 123, model: 'x' }));
    expect(countRowsForBalance(d)).toBe(123);
  });

  it('explains a folder it cannot use', () => {
    const d = dir();
    expect(errorOf(() => countRowsForBalance(d))).toMatch(/meta\.json; this one has none$/);
    fs.writeFileSync(path.join(d, 'meta.json'), '{rows: 1');
    expect(errorOf(() => countRowsForBalance(d))).toMatch(/meta\.json: not valid JSON/);
    fs.writeFileSync(path.join(d, 'meta.json'), '{"model": "x"}');
    expect(errorOf(() => countRowsForBalance(d))).toMatch(/has no "rows" field/);
    fs.writeFileSync(path.join(d, 'meta.json'), '{"rows": "12"}');
    expect(errorOf(() => countRowsForBalance(d))).toMatch(/"rows" must be a non-negative integer, got "12"/);
    fs.writeFileSync(path.join(d, 'meta.json'), '[1]');
    expect(errorOf(() => countRowsForBalance(d))).toMatch(/has no "rows" field/);
  });

  it('counts the non-blank rows of a JSONL file, and the selected ones with options', () => {
    const f = path.join(tmp, 'other.jsonl');
    fs.writeFileSync(f, ['{"text": "a", "x": 1}', '', '{"text": "b", "x": 2}', '  ', '{"text": "c", "x": 3}', ''].join('\n'));
    expect(countRowsForBalance(f)).toBe(3);
    expect(countRowsForBalance(f, { where: 'x >= 2' })).toBe(2);
    const g = path.join(tmp, 'other-bad.jsonl');
    fs.writeFileSync(g, '{"text": "a"}\nnope\n');
    expect(errorOf(() => countRowsForBalance(g))).toMatch(/^--balance-with .*other-bad\.jsonl:2: not valid JSON/);
    expect(countRowsForBalance(g, { skipBad: true })).toBe(1);
  });

  it('names a missing path', () => {
    const p = path.join(tmp, 'missing');
    expect(errorOf(() => countRowsForBalance(p))).toBe(`--balance-with ${p}: no such file or folder`);
  });
});
