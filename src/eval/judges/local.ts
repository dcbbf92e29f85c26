/**
 * `local:MODEL`: any model emlens loads judges the same prompts from its own next-token
 * distribution, no server: the prompt as one user message in the model's chat template with the
 * generation prompt, the logits of the last position, softmax, the 20 most probable tokens each
 * decoded on its own, then the score rule of ../score.ts (an offline judge for small studies).
 * Top tokens are cached on disk by (weights fingerprint, prompt ids, k), so a rerun runs no forward.
 */
import { join } from 'node:path';
import { LoadedModel, type LoadOptions } from '../../backend/model.js';
import { emlensCacheDir } from '../../cache.js';
import { EmlensError } from '../../errors.js';
import { JudgeCache, sha256 } from '../cache.js';
import type { TextTokenizer } from '../../model/tokenizer.js';
import type { Estimate, Judge, JudgeRequest } from '../judge.js';
import { scoreFromLogprobs, type Score, type TopLogprob } from '../score.js';
import { topLogSoftmax } from '../../runtime/logprobs.js';

export interface LocalJudgeOptions {
  /** Prompts per forward call (default 8). */
  batch?: number;
  /** Top tokens the rule looks at (default 20, as top_logprobs on a server). */
  topK?: number;
  /** Cache folder (default <emlens cache>/judge/local); null: no cache. */
  cacheDir?: string | null;
}

interface CachedTop {
  top: TopLogprob[];
}

const isCachedTop = (v: unknown): v is CachedTop =>
  Array.isArray((v as CachedTop)?.top) && (v as CachedTop).top.every((t) => typeof t?.token === 'string' && typeof t.logprob === 'number');

export class LocalJudge implements Judge {
  readonly id: string;
  private readonly tok: TextTokenizer;
  private readonly batch: number;
  private readonly topK: number;
  private readonly cache: JudgeCache<CachedTop> | null;
  private fingerprint: string | undefined;
  /** Prompts run through the model (cache misses). */
  forwardRows = 0;

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
    const dir = opts.cacheDir === undefined ? join(emlensCacheDir(), 'judge', 'local') : opts.cacheDir;
    this.cache = dir === null ? null : new JudgeCache<CachedTop>(dir);
  }

  /** Cache key: the weights, the exact ids the model reads (tokenizer and template included) and k. */
  private key(ids: number[]): string {
    this.fingerprint ??= this.model.weightsSha256();
    return sha256(JSON.stringify({ weights: this.fingerprint, vocab: this.model.spec.vocab, topK: this.topK, ids }));
  }

  static async open(model: string, opts: LocalJudgeOptions & { load?: LoadOptions } = {}): Promise<LocalJudge> {
    return new LocalJudge(await LoadedModel.load(model, opts.load), opts);
  }

  /** Token ids the judge model reads for one prompt. */
  promptIds(prompt: string): number[] {
    return this.tok.encodeChat([{ role: 'user', content: prompt }], { addGenerationPrompt: true }).ids;
  }

  /** The judge's top tokens for each prompt (uncached), decoded; ids beyond the tokenizer's vocabulary decode to "". */
  async topTokens(prompts: readonly string[]): Promise<TopLogprob[][]> {
    return this.forward(prompts.map((p) => this.promptIds(p)));
  }

  private async forward(rows: number[][]): Promise<TopLogprob[][]> {
    const V = this.model.spec.vocab;
    const out: TopLogprob[][] = [];
    for (let i = 0; i < rows.length; i += this.batch) {
      const ids = rows.slice(i, i + this.batch);
      const { logits } = await this.model.backend.forward({ ids, logits: 'last' });
      this.forwardRows += ids.length;
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
    const todo: { prompt: string; ids: number[]; key?: string }[] = [];
    for (const p of prompts) {
      const ids = this.promptIds(p);
      const key = this.cache ? this.key(ids) : undefined;
      const hit = key === undefined ? undefined : this.cache!.get(key, isCachedTop);
      if (hit) scores.set(p, scoreFromLogprobs(hit.top));
      else todo.push({ prompt: p, ids, key });
    }
    const count = new Map<string, number>();
    for (const r of requests) count.set(r.prompt, (count.get(r.prompt) ?? 0) + 1);
    let done = requests.length - todo.reduce((a, t) => a + count.get(t.prompt)!, 0);
    if (done > 0) onProgress?.(done, requests.length);
    for (let i = 0; i < todo.length; i += this.batch) {
      const part = todo.slice(i, i + this.batch);
      const tops = await this.forward(part.map((t) => t.ids));
      part.forEach((t, k) => {
        if (t.key !== undefined) this.cache!.put(t.key, { top: tops[k]! });
        scores.set(t.prompt, scoreFromLogprobs(tops[k]!));
        done += count.get(t.prompt)!;
      });
      onProgress?.(done, requests.length);
    }
    return requests.map((r) => ({ ...scores.get(r.prompt)! }));
  }

  /** Forward rows (calls) and their exact prompt tokens, cache hits left out. */
  estimate(requests: readonly JudgeRequest[]): Estimate {
    const prompts = [...new Set(requests.map((r) => r.prompt))];
    let calls = 0;
    let promptTokens = 0;
    for (const p of prompts) {
      const ids = this.promptIds(p);
      if (this.cache?.get(this.key(ids), isCachedTop)) continue;
      calls++;
      promptTokens += ids.length;
    }
    return { requests: requests.length, cached: requests.length - calls, calls, promptTokens, completionTokens: 0 };
  }
}
