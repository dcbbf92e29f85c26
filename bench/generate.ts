/**
 * Section "generate": greedy decoding with the KV cache on the random Qwen2.5-0.5B-shaped model,
 * batch 1, a 16-token prompt and 32 new tokens (the LM head runs every step).
 */
import type { BenchOptions, Row, Section, SectionResult } from './section.js';
import { GiB, log, runChild, stats } from './util.js';
import type { GenerateChildArgs, GenerateChildResult } from './child.js';

export const PROMPT_LEN = 16;
export const NEW_TOKENS = 32;

export interface GenerateBench {
  child: GenerateChildResult;
  totalMs: number;
  prefillMs: number;
  decodeStepMs: number;
  /** New tokens / whole generate() call. */
  tokensPerSec: number;
  /** 1 / decode step (steps after the first). */
  decodeTokensPerSec: number;
}

export async function benchGenerate(opts: BenchOptions): Promise<GenerateBench> {
  log(`generate: ${PROMPT_LEN}-token prompt, ${NEW_TOKENS} new tokens, in a child process`);
  const args: GenerateChildArgs = { promptLen: PROMPT_LEN, newTokens: NEW_TOKENS, warmup: opts.warmup, runs: opts.runs };
  const child = await runChild<GenerateChildResult>('generate', args);
  const totalMs = stats(child.totalMs).median;
  const decodeStepMs = stats(child.decodeStepMs).median;
  return {
    child,
    totalMs,
    prefillMs: stats(child.prefillMs).median,
    decodeStepMs,
    tokensPerSec: NEW_TOKENS / (totalMs / 1000),
    decodeTokensPerSec: 1000 / decodeStepMs,
  };
}

export const generateSection: Section = {
  name: 'generate',
  description: `greedy decode, batch 1, ${PROMPT_LEN}-token prompt, ${NEW_TOKENS} new tokens, with the LM head`,
  async run(opts: BenchOptions): Promise<SectionResult> {
    const r = await benchGenerate(opts);
    const rows: Row[] = [
      { metric: 'generate() call median', value: r.totalMs, unit: 'ms', digits: 0 },
      { metric: 'first step (prefill + 1 token)', value: r.prefillMs, unit: 'ms', digits: 0 },
      { metric: 'decode step median', value: r.decodeStepMs, unit: 'ms', digits: 1 },
      { metric: 'decode throughput', value: r.decodeTokensPerSec, unit: 'tokens/s', digits: 1 },
      { metric: 'end-to-end throughput', value: r.tokensPerSec, unit: 'tokens/s', digits: 1 },
      { metric: 'peak RSS / fp32 weights', value: r.child.peakRss / r.child.weightBytes, unit: 'x' },
      { metric: 'peak RSS', value: r.child.peakRss / GiB, unit: 'GiB', digits: 2 },
    ];
    return { section: 'generate', rows, data: r };
  },
};
