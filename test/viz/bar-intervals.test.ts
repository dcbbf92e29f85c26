/** barChart's interval error bars: up = hi - value, down = value - lo, per bar; bad lengths refused. */
import { describe, expect, it } from 'vitest';
import { barChart } from '../../src/viz/figures.js';

describe('barChart intervals', () => {
  it('asymmetric bars from [lo, hi]', () => {
    const f = barChart([{ name: 'EM %', labels: ['a', 'b', 'c'], values: [30, 0, NaN], intervals: [[10, 55], [0, 43], [0, 100]] }], { title: 't', yTitle: 'y' });
    const e = (f.data[0] as any).error_y;
    expect(e.symmetric).toBe(false);
    expect(e.array).toEqual([25, 43, null]);
    expect(e.arrayminus).toEqual([20, 0, null]);
    expect((f.data[0] as any).y).toEqual([30, 0, null]);
  });
  it('one interval per bar, and not with errors', () => {
    expect(() => barChart([{ name: 's', labels: ['a', 'b'], values: [1, 2], intervals: [[0, 1]] }], { title: 't', yTitle: 'y' })).toThrow(/intervals/);
    expect(() => barChart([{ name: 's', labels: ['a'], values: [1], errors: [1], intervals: [[0, 2]] }], { title: 't', yTitle: 'y' })).toThrow(/errors and intervals both given/);
  });
});
