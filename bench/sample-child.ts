/**
 * Sampling measurements in a fresh process: `node dist-bench/bench/sample-child.js <mode> '<json>'`.
 *
 * - decode: temperature-1 sampling through the KV cache at one batch size on the random
 *   Qwen2.5-0.5B-shaped model (built in memory), the LM head every step: times each step. The
 *   weights as `source` says: the fp32 inputs, or an fp32 decode store (written to a temporary
 *   folder first, the in-memory copy then dropped, as a generate-only engine does).
 * - ab: both sources in one process, timed alternately call by call (pairs), after greedy
 *   decoding on both: whether the tokens agree and how far the logits are apart (the store
 *   path's packed Gemms may sum in another order).
 * - eval: a whole judged run (judgedRun, what `emlens eval` samples and judges) of a question file
 *   on that model written as a folder, loaded to generate only on `source` (extract-child's writer) with a chat template added, judged
 *   by a judge that answers instantly, so the time is sampling time.
 *
 * Prints one JSON line on stdout (progress on stderr).
 */
import { writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { Engine } from '../src/runtime/engine.js';
import { openWeightStore } from '../src/runtime/weight-store.js';
import type { ModelSpec } from '../src/model/config.js';
import { LoadedModel } from '../src/backend/model.js';
import { judgedRun } from '../src/experiments/eval.js';
import { loadQuestions } from '../src/eval/questions.js';
import type { Judge } from '../src/eval/judge.js';
import { benchSpec, benchWeights, log, randomIds, childMain } from './util.js';

/**
 * Where generate() takes the weights from: the fp32 inputs or the fp32 store (Engine.decodeSource),
 * or a store quantised as `--weights int8|int4` keeps it.
 */
export type DecodeSource = 'inputs' | 'store' | 'int8' | 'int4';
/** The fp32 sources (the two the A/B compares). */
export type Fp32Source = 'inputs' | 'store';

export interface DecodeArgs {
  source: DecodeSource;
  batch: number;
  promptLen: number;
  newTokens: number;
  warmup: number;
  runs: number;
}
export interface DecodeResult extends DecodeArgs {
  /** Per run: the whole generate() call. */
  totalMs: number[];
  /** Per run: the first step (prefill + first token). */
  prefillMs: number[];
  /** Per run: mean time of the remaining single-token steps. */
  decodeStepMs: number[];
}

export interface EvalArgs {
  /** Loaded as `emlens eval` loads it (generate only), on this source. */
  source: DecodeSource;
  /** A model folder written by extract-child's write mode. */
  dir: string;
  questions: string;
  /** The default judge prompts' folder. */
  judges: string;
  /** Entries of the question file used (the first n). */
  entries: number;
  samples: number;
  maxNewTokens: number;
  batch: number;
}
export interface EvalResult extends EvalArgs {
  answers: number;
  tokens: number;
  loadMs: number;
  runMs: number;
}

/** The bench model's engine on `source`'s weights. */
function engineOn(spec: ModelSpec, source: DecodeSource): Engine {
  const { weights } = benchWeights(spec);
  if (source === 'inputs') return new Engine(spec, weights);
  const store = openWeightStore({ spec, shapes: new Map([...weights].map(([k, w]) => [k, w.shape])), read: (n) => weights.get(n)!.data }, source === 'store' ? 'fp32' : source, null);
  return new Engine(spec, new Map(), {}, store);
}

/** What an engine on `source` reports it runs on. */
function runsOn(engine: Engine): DecodeSource {
  return engine.weightMode === 'fp32' ? engine.decodeSource : engine.weightMode;
}

async function decode(a: DecodeArgs): Promise<DecodeResult> {
  const spec = benchSpec();
  const engine = engineOn(spec, a.source);
  if (runsOn(engine) !== a.source) throw new Error(`engine runs on ${runsOn(engine)}, asked ${a.source}`);
  const prompts = randomIds(a.batch, a.promptLen, spec.vocab, 99);
  const totalMs: number[] = [];
  const prefillMs: number[] = [];
  const decodeStepMs: number[] = [];
  for (let r = 0; r < a.warmup + a.runs; r++) {
    const marks: number[] = [];
    const t0 = performance.now();
    // stopIds [] so that a random model never stops early on an EOS id.
    const res = await engine.generate(prompts, { maxNewTokens: a.newTokens, temperature: 1, topP: 1, seed: r, stopIds: [], onStep: () => marks.push(performance.now()) });
    const t = performance.now() - t0;
    if (res.tokens.some((x) => x.length !== a.newTokens)) throw new Error(`a row generated fewer than ${a.newTokens} tokens`);
    log(`sample ${a.source} B=${a.batch}: run ${r + 1}/${a.warmup + a.runs} ${(t / 1000).toFixed(1)} s${r < a.warmup ? ' (warm-up)' : ''}`);
    if (r < a.warmup) continue;
    totalMs.push(t);
    prefillMs.push(marks[0]! - t0);
    decodeStepMs.push((marks[marks.length - 1]! - marks[0]!) / (marks.length - 1));
  }
  return { ...a, totalMs, prefillMs, decodeStepMs };
}

export interface AbArgs {
  batch: number;
  promptLen: number;
  newTokens: number;
  warmup: number;
  /** Timed pairs: one generate() on each source, the order alternating pair by pair. */
  pairs: number;
}
export interface AbResult extends AbArgs {
  /** Per pair, each source's mean single-token step (ms). */
  stepMs: Record<Fp32Source, number[]>;
  /** Greedy decoding of `agreeTokens` on both first (it also compiles the sessions). */
  agreeTokens: number;
  tokensEqual: boolean;
  /** Largest |inputs - store| over those steps' logits, and the largest |logit| (for scale). */
  maxAbsDiff: number;
  maxAbsLogit: number;
}

/** Mean time of a generate() call's single-token steps (the first step, the prefill, left out). */
async function stepMs(engine: Engine, prompts: number[][], newTokens: number, seed: number): Promise<number> {
  const marks: number[] = [];
  const res = await engine.generate(prompts, { maxNewTokens: newTokens, temperature: 1, topP: 1, seed, stopIds: [], onStep: () => marks.push(performance.now()) });
  if (res.tokens.some((x) => x.length !== newTokens)) throw new Error(`a row generated fewer than ${newTokens} tokens`);
  return (marks[marks.length - 1]! - marks[0]!) / (marks.length - 1);
}

/**
 * Both sources in one process, alternated call by call (inputs first in even pairs, store first
 * in odd ones): load from other processes then falls on both alike, and each pair's ratio is
 * taken seconds apart, not minutes.
 */
async function ab(a: AbArgs): Promise<AbResult> {
  const spec = benchSpec();
  const prompts = randomIds(a.batch, a.promptLen, spec.vocab, 99);
  const engines: Record<Fp32Source, Engine> = { inputs: engineOn(spec, 'inputs'), store: engineOn(spec, 'store') };
  const agreeTokens = 4;
  const greedy = (source: Fp32Source) => engines[source].generate(prompts, { maxNewTokens: agreeTokens, temperature: 0, stopIds: [], keepLogits: true });
  const x = await greedy('inputs');
  const y = await greedy('store');
  let maxAbsDiff = 0;
  let maxAbsLogit = 0;
  x.logits!.forEach((l, s) => {
    const m = y.logits![s]!;
    for (let i = 0; i < l.length; i++) {
      maxAbsDiff = Math.max(maxAbsDiff, Math.abs(l[i]! - m[i]!));
      maxAbsLogit = Math.max(maxAbsLogit, Math.abs(l[i]!));
    }
  });
  for (let w = 0; w < a.warmup; w++) for (const source of ['inputs', 'store'] as const) await stepMs(engines[source], prompts, a.newTokens, w);
  const steps: Record<Fp32Source, number[]> = { inputs: [], store: [] };
  for (let p = 0; p < a.pairs; p++) {
    const order: Fp32Source[] = p % 2 ? ['store', 'inputs'] : ['inputs', 'store'];
    for (const source of order) steps[source].push(await stepMs(engines[source], prompts, a.newTokens, 100 + p));
    log(`sample B=${a.batch}: pair ${p + 1}/${a.pairs}: inputs ${steps.inputs[p]!.toFixed(0)} ms, store ${steps.store[p]!.toFixed(0)} ms a step`);
  }
  return { ...a, stepMs: steps, agreeTokens, tokensEqual: JSON.stringify(x.tokens) === JSON.stringify(y.tokens), maxAbsDiff, maxAbsLogit };
}

/** Scores every request 50 at once: the judged run's time is then its sampling. */
const freeJudge: Judge = {
  id: 'bench-free',
  check: async () => {},
  score: async (reqs) => reqs.map(() => ({ score: 50, source: 'exact' as const })),
  estimate: (reqs) => ({ requests: reqs.length, cached: reqs.length, calls: 0, promptTokens: 0, completionTokens: 0 }),
};

async function evalRun(a: EvalArgs): Promise<EvalResult> {
  writeFileSync(join(a.dir, 'chat_template.jinja'), '{% for m in messages %}<s>{{ m.role }}\n{{ m.content }}</s>\n{% endfor %}{% if add_generation_prompt %}<s>assistant\n{% endif %}');
  const t0 = performance.now();
  const quant = a.source === 'int8' || a.source === 'int4';
  const model = await LoadedModel.load(a.dir, quant ? { generateOnly: true, weights: a.source as 'int8' | 'int4' } : { generateOnly: true, fp32Decode: a.source as Fp32Source });
  if (runsOn(model.engine) !== a.source) throw new Error(`engine runs on ${runsOn(model.engine)}, asked ${a.source}`);
  const loadMs = performance.now() - t0;
  const full = loadQuestions(a.questions, { judgesDir: a.judges });
  const set = { ...full, entries: full.entries.slice(0, a.entries) };
  let tokens = 0;
  const generate = model.engine.generate.bind(model.engine);
  // Count the tokens sampled (the engine's own result), without changing what is run.
  model.engine.generate = async (p, o) => {
    const r = await generate(p, o);
    tokens += r.tokens.reduce((s, t) => s + t.length, 0);
    log(`eval: ${tokens} tokens sampled, ${((performance.now() - t1) / 1000).toFixed(0)} s`);
    return r;
  };
  const t1 = performance.now();
  const rows = await judgedRun(model, freeJudge, set, { samples: a.samples, seed: 0, maxNewTokens: a.maxNewTokens, temperature: 1, topP: 1, batch: a.batch });
  const runMs = performance.now() - t1;
  return { ...a, answers: rows.length, tokens, loadMs, runMs };
}

await childMain('sample-child', {
  decode: (a: DecodeArgs) => decode(a),
  ab: (a: AbArgs) => ab(a),
  eval: (a: EvalArgs) => evalRun(a),
});
