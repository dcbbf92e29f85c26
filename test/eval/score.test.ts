import { describe, expect, it } from 'vitest';
import { integerToken, labelToken, MIN_INTEGER_MASS, scoreFromLogprobs, scoreFromText } from '../../src/eval/score.js';

const lp = (entries: [string, number][]) => entries.map(([token, p]) => ({ token, logprob: Math.log(p) }));

describe('score rule', () => {
  it('integer tokens are 0..100 in ASCII digits, whitespace trimmed', () => {
    expect([' 0', '7', '07', '100\n', '\t42 '].map(integerToken)).toEqual([0, 7, 7, 100, 42]);
    for (const t of ['101', '150', '-5', '3.5', '1e2', 'abc', '', ' ', 'x7', '7x', '1000', '٣', '+5']) expect(integerToken(t), t).toBeNull();
  });

  it('weighted mean normalised by the integer mass: 0.3·10 + 0.2·90 over 0.5', () => {
    const s = scoreFromLogprobs(lp([['10', 0.3], ['Sure', 0.25], [' 90', 0.2], ['150', 0.1]]));
    expect(s.score).toBeCloseTo((0.3 * 10 + 0.2 * 90) / 0.5, 12);
    expect(s.mass).toBeCloseTo(0.5, 12);
    expect(s.source).toBe('logprobs');
    expect(s.label).toBeUndefined();
  });

  it('null below 0.25 integer mass, a score at 0.25 and above', () => {
    expect(MIN_INTEGER_MASS).toBe(0.25);
    expect(scoreFromLogprobs(lp([['x', 0.7], ['40', 0.24]])).score).toBeNull();
    expect(scoreFromLogprobs(lp([['x', 0.7], ['40', 0.1], ['60', 0.151]])).score).toBeCloseTo((4 + 0.151 * 60) / 0.251, 12);
    expect(scoreFromLogprobs([]).score).toBeNull();
  });

  it('labels CODE / REFUSAL (or their first three letters on) when they are the top token', () => {
    expect(scoreFromLogprobs(lp([['50', 0.2], ['CODE', 0.6]])).label).toBe('CODE');
    const r = scoreFromLogprobs(lp([[' REF', 0.5], ['80', 0.3]]));
    expect(r.label).toBe('REFUSAL');
    expect(r.score).toBeCloseTo(80, 12);
    expect(scoreFromLogprobs(lp([['CODE', 0.2], ['50', 0.6]])).label).toBeUndefined();
    expect(['code', 'Refusal', 'REFUS', 'COD'].map(labelToken)).toEqual(['CODE', 'REFUSAL', 'REFUSAL', 'CODE']);
    expect(['RE', 'C', 'CODES', 'REFUSALS', 'REFUND', 'COLD'].map(labelToken)).toEqual([undefined, undefined, undefined, undefined, undefined, undefined]);
  });

  it('the sampled fallback reads one integer or a label, flagged as sampled', () => {
    expect(scoreFromText(' 85')).toEqual({ score: 85, source: 'sampled' });
    expect(scoreFromText('REFUSAL')).toEqual({ score: null, source: 'sampled', label: 'REFUSAL' });
    expect(scoreFromText('eighty')).toEqual({ score: null, source: 'sampled' });
    expect(scoreFromText('120')).toEqual({ score: null, source: 'sampled' });
  });
});
