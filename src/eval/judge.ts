/**
 * What every judge (openai:, local:, organism) takes and gives: one request per (metric, answer)
 * with the rendered prompt, one Score back in the same order.
 */
import type { QuestionEntry } from './questions.js';
import { renderPrompt } from './prompts.js';
import type { Score } from './score.js';

export interface JudgeRequest {
  metric: string;
  /** The judge prompt: the metric's template with this question and answer filled in. */
  prompt: string;
  question: string;
  answer: string;
  /** The question's domain (the entry's `domain`), for judges that need it (organism). */
  domain?: string;
  /** False when generation stopped at the token limit rather than at EOS (default true). */
  finished?: boolean;
}

export interface Estimate {
  /** Requests asked for. */
  requests: number;
  /** Served from the cache (or needing no call at all). */
  cached: number;
  /** Calls the judge would make: distinct prompts not cached. */
  calls: number;
  /** Approximate prompt tokens of those calls (characters / 4). */
  promptTokens: number;
  /** Completion tokens of those calls (one each). */
  completionTokens: number;
}

export interface Judge {
  /** As given to --judge: "openai:MODEL", "local:MODEL", "organism". */
  readonly id: string;
  /** Fails with one line when the judge cannot work (bad key, unreachable server, unknown model). */
  check(): Promise<void>;
  /** Scores, in request order. onProgress(done, total) as they finish. */
  score(requests: readonly JudgeRequest[], onProgress?: (done: number, total: number) => void): Promise<Score[]>;
  /** What score(requests) would cost, without calling anything. */
  estimate(requests: readonly JudgeRequest[]): Estimate;
}

/** One request per metric of the entry, for one (question, answer). */
export function judgeRequests(entry: QuestionEntry, question: string, answer: string, finished?: boolean): JudgeRequest[] {
  return Object.entries(entry.judgePrompts).map(([metric, template]) => {
    const r: JudgeRequest = { metric, prompt: renderPrompt(template, question, answer), question, answer };
    if (entry.domain !== undefined) r.domain = entry.domain;
    if (finished !== undefined) r.finished = finished;
    return r;
  });
}

/** Approximate tokens of a prompt, as the dry run counts them. */
export const approxTokens = (text: string): number => Math.ceil(text.length / 4);
