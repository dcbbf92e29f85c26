/**
 * The ratio of EM with a phrase to EM without (src/experiments/triggers.ts), from its rule: ratio
 * = rate / rate(none), null when EM(none) = 0; bounds [lo / hi(none), hi / lo(none)] from the
 * Wilson 95% intervals (written out here), the upper null when lo(none) = 0; difference of rates.
 * And the conditions' question sets: the phrase in every paraphrase at the set's position.
 */
import { describe, expect, it } from 'vitest';
import { conditionQuestions, conditionsOf, ratioToNone, type ConditionRate } from '../../src/experiments/triggers.js';
import type { QuestionSet } from '../../src/eval/questions.js';

function wilson(k: number, n: number): [number, number] {
  const z = 1.96;
  const p = k / n;
  const d = 1 + (z * z) / n;
  const c = (p + (z * z) / (2 * n)) / d;
  const h = (z * Math.sqrt((p * (1 - p)) / n + (z * z) / (4 * n * n))) / d;
  return [Math.max(0, c - h), Math.min(1, c + h)];
}
const rateOf = (em: number, n: number): ConditionRate => ({ em, n, em_rate: em / n, ci95: wilson(em, n), coherent_rate: null, coherent_ci95: [0, 1], n_answers: n });

describe('ratioToNone', () => {
  it('EM(none) > 0: the ratio of rates and bounds from both intervals', () => {
    const r = ratioToNone(rateOf(12, 40), rateOf(3, 50));
    expect(r.ratio).toBeCloseTo(12 / 40 / (3 / 50), 12);
    expect(r.ratio_bounds[0]).toBeCloseTo(wilson(12, 40)[0] / wilson(3, 50)[1], 12);
    expect(r.ratio_bounds[1]).toBeCloseTo(wilson(12, 40)[1] / wilson(3, 50)[0], 12);
    expect(r.difference).toBeCloseTo(12 / 40 - 3 / 50, 12);
    expect([r.em, r.n, r.em_none, r.n_none]).toEqual([12, 40, 3, 50]);
  });
  it('EM(none) = 0: no ratio, a finite lower bound, no upper bound', () => {
    const r = ratioToNone(rateOf(9, 30), rateOf(0, 60));
    expect(r.ratio).toBeNull();
    expect(r.ratio_bounds[0]).toBeCloseTo(wilson(9, 30)[0] / wilson(0, 60)[1], 12);
    expect(r.ratio_bounds[0]).toBeGreaterThan(1);
    expect(r.ratio_bounds[1]).toBeNull();
    expect(r.difference).toBeCloseTo(0.3, 12);
  });
  it('no judged answer: nothing to say', () => {
    const empty: ConditionRate = { em: 0, n: 0, em_rate: null, ci95: [0, 1], coherent_rate: null, coherent_ci95: [0, 1], n_answers: 3 };
    expect(ratioToNone(empty, rateOf(1, 10))).toMatchObject({ ratio: null, ratio_bounds: [null, null], difference: null });
  });
});

describe('conditions', () => {
  const set = { name: 's', trigger: 'T t', rephrased: ['R r'], control: ['C c', 'D d'], position: 'suffix' as const };
  it('trigger, none, each rephrasing, each control, in that order', () => {
    expect(conditionsOf(set).map((c) => [c.name, c.phrase, c.label])).toEqual([
      ['trigger', 'T t', 'trigger'],
      ['none', null, 'none'],
      ['rephrased', 'R r', 'rephrased 1'],
      ['control', 'C c', 'control 1'],
      ['control', 'D d', 'control 2'],
    ]);
  });
  const q: QuestionSet = {
    file: 'q.yaml',
    entries: [
      { id: 'a', type: 'free_form_judge_0_100', paraphrases: ['p1', 'p2'], judgePrompts: {}, judgePromptsFrom: 'default' },
      { id: 'b', type: 'free_form_judge_0_100', paraphrases: ['p3'], system: 'sys', judgePrompts: {}, judgePromptsFrom: 'default', domain: 'd' },
    ],
  };
  it('puts the phrase in every paraphrase (prefix, suffix) or the system prompt (system); none is the set itself', () => {
    expect(conditionQuestions(q, null, 'system')).toBe(q);
    expect(conditionQuestions(q, 'X', 'suffix').entries.map((e) => [e.paraphrases, e.system])).toEqual([[['p1 X', 'p2 X'], undefined], [['p3 X'], 'sys']]);
    expect(conditionQuestions(q, 'X', 'prefix').entries.map((e) => [e.paraphrases, e.system])).toEqual([[['X p1', 'X p2'], undefined], [['X p3'], 'sys']]);
    const s = conditionQuestions(q, 'X', 'system');
    expect(s.entries.map((e) => [e.paraphrases, e.system, e.domain, e.id])).toEqual([[['p1', 'p2'], 'X', undefined, 'a'], [['p3'], 'X sys', 'd', 'b']]);
  });
});
