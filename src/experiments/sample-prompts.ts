/**
 * `emlens generate --prompts FILE.jsonl --samples N --out answers.jsonl`: N sampled answers to
 * every prompt of a JSONL file (chat rows whose last message is not the assistant's, or text rows;
 * src/data/rows.ts), batched through the KV cache, resumable.
 *
 * Seeds: the items are prompt-major (prompt 0 samples 0..N-1, prompt 1 ...); item k = prompt
 * index·N + sample is sampled with its own generator, seed (seed·1000003 + k) >>> 0, which is
 * eval's batch-seed formula at --batch 1. Every row draws only from its own generator, so an
 * answer is the one `emlens generate` gives that prompt with that seed, whatever it is batched
 * with: --batch is speed only, and a resumed run samples just the missing items.
 *
 * Files: OUT holds only rows, one JSON object a line, so that pandas.read_json(lines=True),
 * datasets' "json" loader and jq read it as they read any JSONL; what made it (model, weights
 * hash, prompts hash, the sampling flags) goes in the sidecar OUT.meta.json, written before the
 * first row, and a resume must match it.
 */
import { existsSync, readFileSync } from 'node:fs';
import { resolve } from 'node:path';
import { EmlensError } from '../errors.js';
import type { LoadedModel } from '../backend/model.js';
import type { Interventions } from '../hooks/interventions.js';
import { hasFinalAssistant, readJsonl, type DataRow, type Labels } from '../data/rows.js';
import type { ChatMessage } from '../model/tokenizer.js';
import { InputRowError } from '../runtime/engine.js';
import { writeFileAtomic } from '../io/atomic.js';
import { appendRowLog, readRowLog } from '../io/row-log.js';
import { VERSION } from '../version.js';
import { decodeAnswer } from './generation.js';

export type Stopped = 'eos' | 'max_new_tokens' | 'max_position_embeddings';

export interface PromptAnswerRow {
  prompt_index: number;
  sample: number;
  labels: Labels;
  messages?: ChatMessage[];
  text?: string;
  answer: string;
  seed: number;
  stopped: Stopped;
  /** New tokens, the stop token included. */
  n_tokens: number;
}

export interface EncodedPrompt {
  row: DataRow;
  ids: number[];
}

/** What fixes the answers; recorded in the sidecar and checked on --resume. */
export type PromptRunKey = Record<string, string | number | boolean | null>;

export interface PromptRunOptions {
  model: LoadedModel;
  prompts: string;
  out: string;
  resume: boolean;
  samples: number;
  seed: number;
  /** Items per engine.generate call (speed only: answers do not depend on it). */
  batch: number;
  maxNewTokens: number;
  temperature: number;
  topP: number;
  interventions?: Interventions;
  /** Inputs that fix the answers beyond the prompts and sampling flags (model, adapter, directions). */
  key: PromptRunKey;
  flags: Record<string, unknown>;
  onProgress?: (done: number, total: number) => void;
}

export const metaFile = (out: string): string => `${out}.meta.json`;

/** The seed of item k (see the module comment). */
export const itemSeed = (seed: number, k: number): number => (seed * 1000003 + k) >>> 0;

/**
 * Reads and encodes every prompt, refusing the first bad one with `file:line: problem` before
 * anything is sampled.
 */
export function encodePrompts(model: LoadedModel, file: string, maxNewTokens: number): { rows: EncodedPrompt[]; sha256: string } {
  const tok = model.tokenizer;
  if (!tok) throw new EmlensError(`${model.dir}: no tokenizer.json, cannot generate from text`);
  const ds = readJsonl(file);
  if (ds.rows.length === 0) throw new EmlensError(`--prompts ${file}: has no rows`);
  const M = model.spec.maxPositions;
  const rows = ds.rows.map((row) => {
    const at = `${file}:${row.line}`;
    if (hasFinalAssistant(row)) throw new EmlensError(`${at}: the last message is the assistant's; a prompt must end before the answer to sample`);
    let ids: number[];
    if (row.kind === 'text') ids = tok.encode(row.text);
    else if (!tok.hasChatTemplate) throw new EmlensError(`${at}: a chat row, but ${model.dir} has no chat template; give the prompt as {"text": ...}`);
    else {
      try {
        ids = tok.encodeChat(row.messages, { addGenerationPrompt: true }).ids;
      } catch (e) {
        throw e instanceof EmlensError ? new EmlensError(`${at}: ${e.message}`) : e;
      }
    }
    if (ids.length === 0) throw new EmlensError(`${at}: the prompt encodes to no tokens`);
    if (maxNewTokens > 0 && ids.length >= M) throw new EmlensError(`${at}: the prompt is ${ids.length} tokens; the model's context (max_position_embeddings) is ${M}, which leaves no room to generate`);
    return { row, ids };
  });
  return { rows, sha256: ds.sha256 };
}

const stoppedOf = (finished: boolean, contextFull: boolean): Stopped => (finished ? 'eos' : contextFull ? 'max_position_embeddings' : 'max_new_tokens');

/** Samples items[k] for k in `todo` (item indices), `batch` at a time; hands each batch's rows to `write`. */
async function sampleItems(o: PromptRunOptions, prompts: readonly EncodedPrompt[], todo: readonly number[], write: (rows: PromptAnswerRow[]) => void): Promise<void> {
  const tok = o.model.tokenizer!;
  for (let i = 0; i < todo.length; i += o.batch) {
    const part = todo.slice(i, i + o.batch);
    const seeds = part.map((k) => itemSeed(o.seed, k));
    const at = (k: number) => prompts[Math.floor(k / o.samples)]!;
    const g = await o.model.backend
      .generate(
        part.map((k) => at(k).ids),
        {
          maxNewTokens: o.maxNewTokens,
          temperature: o.temperature,
          topP: o.topP,
          seeds,
          stopIds: tok.eosIds.length ? tok.eosIds : undefined,
          interventions: o.interventions,
        },
      )
      .catch((e: unknown) => {
        throw e instanceof InputRowError ? new EmlensError(`${o.prompts}:${at(part[e.row]!).row.line}: ${e.problem}`) : e;
      });
    write(
      part.map((k, j) => {
        const { row } = at(k);
        const finished = g.finished[j]!;
        return {
          prompt_index: Math.floor(k / o.samples),
          sample: k % o.samples,
          labels: row.labels,
          ...(row.kind === 'chat' ? { messages: row.messages } : { text: row.text }),
          answer: decodeAnswer(tok, g.tokens[j]!, finished, true),
          seed: seeds[j]!,
          stopped: stoppedOf(finished, g.contextFull[j]!),
          n_tokens: g.tokens[j]!.length,
        };
      }),
    );
  }
}

function checkResume(out: string, key: PromptRunKey): void {
  const file = metaFile(out);
  if (!existsSync(file)) throw new EmlensError(`--resume: ${file} is missing, so ${out} is not a generate --prompts run to resume`);
  const was = (JSON.parse(readFileSync(file, 'utf8')) as { run?: PromptRunKey }).run ?? {};
  for (const k of new Set([...Object.keys(was), ...Object.keys(key)])) {
    if (was[k] !== key[k]) throw new EmlensError(`--resume: ${k} was ${JSON.stringify(was[k] ?? null)} in ${file}, now ${JSON.stringify(key[k] ?? null)}; resume with the same flags`);
  }
}

/**
 * Writes OUT (rows appended batch by batch, fsync'd) and OUT.meta.json; with `resume`, samples
 * only the items OUT lacks. Returns every row, in item order.
 */
export async function samplePrompts(o: PromptRunOptions): Promise<{ rows: PromptAnswerRow[]; sampled: number }> {
  const { rows: prompts, sha256 } = encodePrompts(o.model, o.prompts, o.maxNewTokens);
  const key: PromptRunKey = {
    ...o.key,
    prompts_file: resolve(o.prompts),
    prompts_sha256: sha256,
    samples: o.samples,
    seed: o.seed,
    max_new_tokens: o.maxNewTokens,
    temperature: o.temperature,
    top_p: o.topP,
  };
  if (o.resume) checkResume(o.out, key);
  else {
    if (existsSync(o.out) || existsSync(metaFile(o.out))) throw new EmlensError(`--out: ${o.out} already exists; pass --resume to continue it, or choose another --out`);
    writeFileAtomic(metaFile(o.out), [`${JSON.stringify({ run: key, emlens_version: VERSION, flags: o.flags }, null, 2)}\n`]);
  }
  const total = prompts.length * o.samples;
  const have = new Set<number>();
  for (const r of readRowLog<PromptAnswerRow>(o.out, 'an answers file')) {
    if (!Number.isInteger(r.prompt_index) || !Number.isInteger(r.sample) || r.sample < 0 || r.sample >= o.samples || r.prompt_index < 0 || r.prompt_index >= prompts.length) {
      throw new EmlensError(`${o.out}: a row with prompt_index ${JSON.stringify(r.prompt_index)}, sample ${JSON.stringify(r.sample)} is outside this run's ${prompts.length} prompts x ${o.samples} samples`);
    }
    have.add(r.prompt_index * o.samples + r.sample);
  }
  const todo = Array.from({ length: total }, (_, k) => k).filter((k) => !have.has(k));
  let done = have.size;
  await sampleItems(o, prompts, todo, (rows) => {
    appendRowLog(o.out, rows);
    done += rows.length;
    o.onProgress?.(done, total);
  });
  const byItem = new Map(readRowLog<PromptAnswerRow>(o.out, 'an answers file').map((r) => [r.prompt_index * o.samples + r.sample, r]));
  return { rows: Array.from({ length: total }, (_, k) => byItem.get(k)!), sampled: todo.length };
}
