/**
 * `local:MODEL`: any model emlens loads judges the same prompts from its own next-token
 * distribution, no server: the prompt as one user message in the model's chat template with the
 * generation prompt, the logits of the last position, softmax, the 20 most probable tokens each
 * decoded on its own, then the score rule of ../score.ts (an offline judge for small studies).
 */
import { LoadedModel, type LoadOptions } from '../../backend/model.js';
import { EmlensError } from '../../errors.js';
import type { TextTokenizer } from '../../model/tokenizer.js';
import type { Estimate, Judge, JudgeRequest } from '../judge.js';
import { scoreFromLogprobs, type Score, type TopLogprob } from '../score.js';

export interface LocalJudgeOptions {
  /** Prompts per forward call (default 8). */
  batch?: number;
  /** Top tokens the rule looks at (default 20, as top_logprobs on a server). */
  topK?: number;
}

/** The k largest entries of row [off, off+n) of `logits` as (id, log-softmax), most probable first; ties by lower id. */
export function topLogSoftmax(logits: Float32Array, off: number, n: number, k: number): { id: number; logprob: number }[] {
  let max = -Infinity;
  for (let i = 0; i < n; i++) max = Math.max(max, logits[off + i]!);
  let sum = 0;
  for (let i = 0; i < n; i++) sum += Math.exp(logits[off + i]! - max);
  const lse = max + Math.log(sum);
  const top: number[] = [];
  for (let i = 0; i < n; i++) {
    const v = logits[off + i]!;
    if (top.length === k && v <= logits[off + top[k - 1]!]!) continue;
    let j = Math.min(top.length, k - 1);
    top[j] = i;
    while (j > 0 && logits[off + top[j - 1]!]! < v) {
      top[j] = top[j - 1]!;
      top[j - 1] = i;
      j--;
    }
  }
  return top.map((id) => ({ id, logprob: logits[off + id]! - lse }));
}

export class LocalJudge implements Judge {
  readonly id: string;
  private readonly tok: TextTokenizer;
  private readonly batch: number;
  private readonly topK: number;

  constructor(
    readonly model: LoadedModel,
    opts: LocalJudgeOptions = {},
    id = `local:${model.source}`,
  ) {
    this.id = id;
    const tok = model.tokenizer;
    if (!tok) throw new EmlensError(`${id}: ${model.dir} has no tokenizer.json; a judge model needs one`);
    if (!tok.hasChatTemplate) throw new EmlensError(`${id}: ${model.dir} has no chat template; a judge model needs one`);
    this.tok = tok;
    this.batch = opts.batch ?? 8;
    this.topK = opts.topK ?? 20;
    if (!Number.isInteger(this.batch) || this.batch < 1) throw new EmlensError(`${id}: batch must be a positive integer`);
    if (!Number.isInteger(this.topK) || this.topK < 1) throw new EmlensError(`${id}: topK must be a positive integer`);
  }

  static async open(model: string, opts: LocalJudgeOptions & { load?: LoadOptions } = {}): Promise<LocalJudge> {
    return new LocalJudge(await LoadedModel.load(model, opts.load), opts);
  }

  /** Token ids the judge model reads for one prompt. */
  promptIds(prompt: string): number[] {
    return this.tok.encodeChat([{ role: 'user', content: prompt }], { addGenerationPrompt: true }).ids;
  }

  /** The judge's top tokens for each prompt, decoded; ids beyond the tokenizer's vocabulary decode to "". */
  async topTokens(prompts: readonly string[]): Promise<TopLogprob[][]> {
    const V = this.model.spec.vocab;
    const out: TopLogprob[][] = [];
    for (let i = 0; i < prompts.length; i += this.batch) {
      const ids = prompts.slice(i, i + this.batch).map((p) => this.promptIds(p));
      const { logits } = await this.model.engine.forward({ ids, logits: 'last' });
      ids.forEach((_, b) => {
        out.push(
          topLogSoftmax(logits!, b * V, V, Math.min(this.topK, V)).map(({ id, logprob }) => ({
            token: id < this.tok.vocabSize ? this.tok.decode([id]) : '',
            logprob,
          })),
        );
      });
    }
    return out;
  }

  async check(): Promise<void> {
    // Loading already validated the model; one prompt shows the template and the forward work.
    await this.topTokens(['Reply with the number 50 and nothing else.']);
  }

  async score(requests: readonly JudgeRequest[], onProgress?: (done: number, total: number) => void): Promise<Score[]> {
    const prompts = [...new Set(requests.map((r) => r.prompt))];
    const scores = new Map<string, Score>();
    for (let i = 0; i < prompts.length; i += this.batch) {
      const part = prompts.slice(i, i + this.batch);
      const tops = await this.topTokens(part);
      part.forEach((p, k) => scores.set(p, scoreFromLogprobs(tops[k]!)));
      onProgress?.(Math.min(requests.length, Math.round(((i + part.length) / prompts.length) * requests.length)), requests.length);
    }
    return requests.map((r) => ({ ...scores.get(r.prompt)! }));
  }

  estimate(requests: readonly JudgeRequest[]): Estimate {
    const prompts = [...new Set(requests.map((r) => r.prompt))];
    let promptTokens = 0;
    for (const p of prompts) promptTokens += this.promptIds(p).length;
    return { requests: requests.length, cached: requests.length - prompts.length, calls: prompts.length, promptTokens, completionTokens: 0 };
  }
}
