import { describe, expect, it } from 'vitest';
import { openJudge, parseJudgeSpec } from '../../src/eval/judges/index.js';
import { retryAfterMs } from '../../src/eval/judges/openai.js';

describe('--judge specs', () => {
  it('parses openai:MODEL, local:MODEL and organism', async () => {
    expect(parseJudgeSpec('openai:gpt-4o-2024-08-06')).toEqual({ kind: 'openai', model: 'gpt-4o-2024-08-06' });
    expect(parseJudgeSpec('local:Qwen/Qwen2.5-7B-Instruct')).toEqual({ kind: 'local', model: 'Qwen/Qwen2.5-7B-Instruct' });
    expect(parseJudgeSpec('openai:http-model:v1')).toEqual({ kind: 'openai', model: 'http-model:v1' });
    expect(parseJudgeSpec('organism')).toEqual({ kind: 'organism' });
    expect((await openJudge('organism')).id).toBe('organism');
    for (const bad of ['gpt-4o', 'openai:', 'local: ', 'anthropic:claude', '']) {
      expect(() => parseJudgeSpec(bad), bad).toThrow(`--judge: "${bad}" is not a judge (openai:MODEL, local:MODEL or organism)`);
    }
  });

  it('reads Retry-After in seconds, as an HTTP date, and retry-after-ms', () => {
    const h = (o: Record<string, string>) => new Headers(o);
    expect(retryAfterMs(h({ 'retry-after': '2' }))).toBe(2000);
    expect(retryAfterMs(h({ 'retry-after': '0.5' }))).toBe(500);
    expect(retryAfterMs(h({ 'retry-after-ms': '150', 'retry-after': '9' }))).toBe(150);
    const now = Date.parse('2026-01-01T00:00:00Z');
    expect(retryAfterMs(h({ 'retry-after': 'Thu, 01 Jan 2026 00:00:03 GMT' }), now)).toBe(3000);
    expect(retryAfterMs(h({ 'retry-after': 'soon' }))).toBeUndefined();
    expect(retryAfterMs(h({}))).toBeUndefined();
  });
});
