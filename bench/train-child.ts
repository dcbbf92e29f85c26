/**
 * Training measurements in a fresh process: `node dist-bench/bench/train-child.js <mode> '<json>'`.
 *
 * - steer: the random Qwen2.5-0.5B-shaped model, a steering vector at one layer, CE on every
 *   next token of 4 x 128-token rows. Times, interleaved: the plain forward (the forward
 *   section's call: every resid_post, no LM head), evaluateBatch without gradients (forward with
 *   logits 'all' + CE) and with them (forward + CE + backward to the vector); then trainSolution
 *   for a few steps.
 * - steer-steps: the training step's forward+backward on one engine per memory variant (ORT's arena
 *   and memory pattern, MemVariant), on the same weights, interleaved: CPU s per step.
 * - lora: the same model and rows, a rank-r LoRA on all seven projections of every layer
 *   (PEFT's init with B off zero, so the adapted forward is not the base one numerically). Times,
 *   interleaved: the plain forward, evaluateBatch without gradients (forward with the LoRA + LM
 *   head + CE) and with them (+ backward to every A and B); then trainSolution for a few steps.
 * - steer-train: trainSolution alone on the same model and rows, in a fresh process: the peak RSS
 *   of training as `emlens train` runs it (one forward+backward graph, one evaluation graph), and
 *   each step's CPU seconds; `memory` sets every session's arena and memory pattern (MemVariant).
 * - organism: WeightTrainer (every weight) on the organism-sized model, 32 rows of 64 tokens a
 *   step, with or without the KL term (32 more rows against a frozen base engine, as the
 *   organism's em-kl stage), with ORT's intra-op spinning on or off.
 *
 * Prints one JSON line on stdout (progress on stderr).
 */
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import type { LoadedModel } from '../src/backend/model.js';
import { hookName } from '../src/hooks/names.js';
import { randomWeights } from '../src/model/random.js';
import type { Weights } from '../src/model/weights.js';
import { Engine } from '../src/runtime/engine.js';
import type { SessionOptions } from '../src/runtime/ort.js';
import { evaluateBatch, initSolution, trainSolution, type Solution, type TrainConfig } from '../src/train/trainer.js';
import { LORA_MODULES } from '../src/model/adapter.js';
import type { TrainRow } from '../src/train/batch.js';
import { WeightTrainer } from '../src/train/weights.js';
import { benchSpec, log, organismSpec, peakRss, randomIds, benchWeights, stats, type Stats, childMain } from './util.js';

export interface SteerArgs {
  batch: number;
  seq: number;
  layer: number;
  warmup: number;
  runs: number;
  /** trainSolution steps timed at the end. */
  trainSteps: number;
}

export interface SteerResult {
  batch: number;
  seq: number;
  layer: number;
  /** First call of each kind (compiles its graph variant). */
  firstCallMs: { plain: number; lmForward: number; forwardBackward: number };
  plainMs: number[];
  lmForwardMs: number[];
  forwardBackwardMs: number[];
  plain: Stats;
  lmForward: Stats;
  forwardBackward: Stats;
  trainSteps: number;
  trainMs: number;
  weightBytes: number;
  peakRss: number;
}

/**
 * How every session of an engine holds its memory: 'arena' = ORT's arena and memory pattern (ORT's
 * default, training before issue [12]'s fix); 'no-arena' = neither; 'default' = the engine's
 * default, so the training graphs' own choice (the arena without the memory pattern).
 */
export type MemVariant = 'default' | 'arena' | 'no-arena';

export function memOptions(v: MemVariant): Partial<SessionOptions> {
  if (v === 'arena') return { cpuMemArena: true, memPattern: true };
  if (v === 'no-arena') return { cpuMemArena: false };
  return {};
}

export interface SteerTrainArgs {
  batch: number;
  seq: number;
  layer: number;
  trainSteps: number;
  /** Absent: 'default'. */
  memory?: MemVariant;
}

export interface SteerTrainResult {
  memory: MemVariant;
  trainSteps: number;
  trainMs: number;
  /** Per step: CPU seconds of this process (ORT's threads included) and wall ms; the first compiles the graph. */
  stepCpuS: number[];
  stepMs: number[];
  weightBytes: number;
  peakRss: number;
}

export interface SteerStepsArgs {
  batch: number;
  seq: number;
  layer: number;
  /** Timed rounds, each one call on every engine (rotating which goes first). */
  rounds: number;
  variants: MemVariant[];
}

export interface SteerStepsResult {
  rounds: number;
  variants: MemVariant[];
  /** Per variant, per call: CPU seconds of this process (ORT's threads included) and wall ms. */
  cpuS: Record<string, number[]>;
  ms: Record<string, number[]>;
  /** Whether every engine gave the same loss and gradient, bit for bit. */
  sameNumbers: boolean;
}

export interface LoraArgs {
  batch: number;
  seq: number;
  rank: number;
  warmup: number;
  runs: number;
  trainSteps: number;
}

export interface LoraResult {
  batch: number;
  seq: number;
  rank: number;
  /** Adapted projections and trained parameters. */
  modules: number;
  params: number;
  firstCallMs: { plain: number; lmForward: number; forwardBackward: number };
  plainMs: number[];
  lmForwardMs: number[];
  forwardBackwardMs: number[];
  plain: Stats;
  lmForward: Stats;
  forwardBackward: Stats;
  trainSteps: number;
  trainMs: number;
  peakRss: number;
}

export interface OrganismArgs {
  kl: boolean;
  /** ORT intra-op thread spinning (ORT's default: on). */
  spinning: boolean;
  rows: number;
  seq: number;
  warmup: number;
  steps: number;
}

export interface OrganismResult {
  kl: boolean;
  spinning: boolean;
  params: number;
  firstStepMs: number;
  stepMs: number[];
  step: Stats;
  /** Timed steps / their total wall time. */
  stepsPerSec: number;
  /** CPU time of this process over the timed steps / their wall time (spinning threads show here). */
  cpuCores: number;
}

async function steer(a: SteerArgs): Promise<SteerResult> {
  const spec = benchSpec();
  const { weights, bytes } = benchWeights(spec);
  const engine = new Engine(spec, weights);
  // evaluateBatch and trainSolution read only the spec and the engine of a LoadedModel.
  const model = { spec, engine, source: 'bench', dir: tmpdir(), tokenizer: null } as unknown as LoadedModel;
  const ids = randomIds(a.batch, a.seq, spec.vocab, 4);
  const rows: TrainRow[] = ids.map((r) => ({ ids: r, start: 1, end: r.length }));
  const sol = initSolution(model, 'steer', a.layer, 1, 0);
  // A non-zero vector, so that the steered forward is not a no-op numerically.
  sol.params[0]!.forEach((_, i, v) => (v[i] = Math.sin(i) * 0.01));
  const capture = Array.from({ length: spec.nLayers }, (_, l) => hookName(l, 'resid_post'));
  const plain = () => engine.forward({ ids, capture, logits: 'none' });
  const evaluate = (grads: boolean) => async () => {
    const r = await evaluateBatch(model, sol, rows, [], { klLambda: 0, klNorm: 'token', grads });
    if (!Number.isFinite(r.loss) || (grads && r.grads[0]!.length !== spec.dModel)) throw new Error('bad evaluateBatch result');
    return r;
  };
  const { firstCallMs, ms } = await interleaved({ plain, lmForward: evaluate(false), forwardBackward: evaluate(true) }, a.warmup, a.runs);
  const [plainMs, lmForwardMs, forwardBackwardMs] = [ms.plain, ms.lmForward, ms.forwardBackward];
  const cfg = steerConfig(a);
  const { trainMs } = await timedTrain(model, rows, cfg);
  return {
    batch: a.batch,
    seq: a.seq,
    layer: a.layer,
    firstCallMs,
    plainMs,
    lmForwardMs,
    forwardBackwardMs,
    plain: stats(plainMs),
    lmForward: stats(lmForwardMs),
    forwardBackward: stats(forwardBackwardMs),
    trainSteps: a.trainSteps,
    trainMs,
    weightBytes: bytes,
    peakRss: peakRss(),
  };
}

/** The steering-vector training run the steer children time (lr 1e-3, no KL, one batch of the rows a step). */
function steerConfig(a: { batch: number; seq: number; layer: number; trainSteps: number }): TrainConfig {
  return {
    kind: 'steer', layer: a.layer, alpha: 1, lr: 1e-3, steps: a.trainSteps, batchTokens: a.batch * a.seq, batchRows: a.batch,
    seed: 0, warmup: 0, weightDecay: 0, klLambda: 0, klNorm: 'token', checkpointEvery: 0,
  };
}

/** Runs trainSolution; returns its wall time and each step's CPU seconds and wall ms. */
async function timedTrain(model: LoadedModel, rows: TrainRow[], cfg: TrainConfig): Promise<{ trainMs: number; stepCpuS: number[]; stepMs: number[] }> {
  const stepCpuS: number[] = [];
  const stepMs: number[] = [];
  const t = performance.now();
  let [cpu, t1] = [process.cpuUsage(), t];
  const onStep = () => {
    const c = process.cpuUsage(cpu);
    stepCpuS.push((c.user + c.system) / 1e6);
    stepMs.push(performance.now() - t1);
    [cpu, t1] = [process.cpuUsage(), performance.now()];
  };
  const res = await trainSolution(model, rows, [], cfg, join(tmpdir(), `emlens-bench-steer-${process.pid}`), { dataKey: 'bench', onStep });
  const trainMs = performance.now() - t;
  if (res.history.length !== cfg.steps) throw new Error(`trainSolution ran ${res.history.length} steps`);
  log(`train: trainSolution ${cfg.steps} steps in ${(trainMs / 1000).toFixed(1)} s (CPU per step ${stepCpuS.map((x) => x.toFixed(1)).join(', ')} s)`);
  return { trainMs, stepCpuS, stepMs };
}

/** trainSolution alone in this process: the peak RSS of training itself. */
async function steerTrain(a: SteerTrainArgs): Promise<SteerTrainResult> {
  const spec = benchSpec();
  const { weights, bytes } = benchWeights(spec);
  const memory = a.memory ?? 'default';
  const engine = new Engine(spec, weights, memOptions(memory));
  const model = { spec, engine, source: 'bench', dir: tmpdir(), tokenizer: null } as unknown as LoadedModel;
  const rows: TrainRow[] = randomIds(a.batch, a.seq, spec.vocab, 4).map((r) => ({ ids: r, start: 1, end: r.length }));
  const t = await timedTrain(model, rows, steerConfig(a));
  return { memory, trainSteps: a.trainSteps, ...t, weightBytes: bytes, peakRss: peakRss() };
}

/**
 * A training step's forward+backward (the evaluateBatch call trainSolution makes each step) on one
 * engine per memory variant over the same weight arrays, interleaved in one process (the first
 * engine rotating each round) so that the load of a shared machine falls on all alike.
 */
async function steerSteps(a: SteerStepsArgs): Promise<SteerStepsResult> {
  const spec = benchSpec();
  const { weights } = benchWeights(spec);
  const models = a.variants.map((v) => ({ spec, engine: new Engine(spec, weights, memOptions(v)), source: 'bench', dir: tmpdir(), tokenizer: null }) as unknown as LoadedModel);
  const rows: TrainRow[] = randomIds(a.batch, a.seq, spec.vocab, 4).map((r) => ({ ids: r, start: 1, end: r.length }));
  const sol = initSolution(models[0]!, 'steer', a.layer, 1, 0);
  sol.params[0]!.forEach((_, i, v) => (v[i] = Math.sin(i) * 0.01));
  const call = async (m: LoadedModel) => {
    const [cpu, t] = [process.cpuUsage(), performance.now()];
    const r = await evaluateBatch(m, sol, rows, [], { klLambda: 0, klNorm: 'token', grads: true });
    const c = process.cpuUsage(cpu);
    return { cpuS: (c.user + c.system) / 1e6, ms: performance.now() - t, r };
  };
  // First calls compile the graphs.
  const first: Awaited<ReturnType<typeof call>>['r'][] = [];
  for (const m of models) first.push((await call(m)).r);
  const sameNumbers = first.every((x) => x.loss === first[0]!.loss && x.grads[0]!.every((g, i) => g === first[0]!.grads[0]![i]));
  const cpuS: Record<string, number[]> = Object.fromEntries(a.variants.map((v) => [v, []]));
  const ms: Record<string, number[]> = Object.fromEntries(a.variants.map((v) => [v, []]));
  for (let r = 0; r < a.rounds; r++) {
    for (let j = 0; j < models.length; j++) {
      const i = (r + j) % models.length;
      const t = await call(models[i]!);
      cpuS[a.variants[i]!]!.push(t.cpuS);
      ms[a.variants[i]!]!.push(t.ms);
    }
    log(`train: round ${r + 1}/${a.rounds}: CPU ${a.variants.map((v) => `${cpuS[v]![r]!.toFixed(1)} s ${v}`).join(', ')}`);
  }
  return { rounds: a.rounds, variants: a.variants, cpuS, ms, sameNumbers };
}

/** Times `fns` interleaved: a first call each (graph compile), warmup rounds, then `runs` timed rounds. */
async function interleaved(fns: Record<'plain' | 'lmForward' | 'forwardBackward', () => Promise<unknown>>, warmup: number, runs: number) {
  const time = async (fn: () => Promise<unknown>) => {
    const t = performance.now();
    await fn();
    return performance.now() - t;
  };
  const firstCallMs = { plain: await time(fns.plain), lmForward: await time(fns.lmForward), forwardBackward: await time(fns.forwardBackward) };
  log(`train: first calls (compile + run): plain ${firstCallMs.plain.toFixed(0)} ms, LM-head forward ${firstCallMs.lmForward.toFixed(0)} ms, forward+backward ${firstCallMs.forwardBackward.toFixed(0)} ms`);
  for (let i = 1; i < warmup; i++) for (const fn of Object.values(fns)) await fn();
  const ms = { plain: [] as number[], lmForward: [] as number[], forwardBackward: [] as number[] };
  for (let r = 0; r < runs; r++) {
    ms.plain.push(await time(fns.plain));
    ms.lmForward.push(await time(fns.lmForward));
    ms.forwardBackward.push(await time(fns.forwardBackward));
    log(`train: round ${r + 1}/${runs}: plain ${ms.plain[r]!.toFixed(0)} ms, LM-head forward ${ms.lmForward[r]!.toFixed(0)} ms, forward+backward ${ms.forwardBackward[r]!.toFixed(0)} ms`);
  }
  return { firstCallMs, ms };
}

async function lora(a: LoraArgs): Promise<LoraResult> {
  const spec = benchSpec();
  const { weights } = benchWeights(spec);
  const engine = new Engine(spec, weights);
  const model = { spec, engine, source: 'bench', dir: tmpdir(), tokenizer: null } as unknown as LoadedModel;
  const ids = randomIds(a.batch, a.seq, spec.vocab, 4);
  const rows: TrainRow[] = ids.map((r) => ({ ids: r, start: 1, end: r.length }));
  const shape = { rank: a.rank, rslora: false, modules: [...LORA_MODULES], layers: Array.from({ length: spec.nLayers }, (_, l) => l) };
  const sol: Solution = initSolution(model, 'lora', undefined, 2 * a.rank, 0, shape);
  sol.params.forEach((p, i) => {
    if (i % 2 === 1) p.forEach((_, j, v) => (v[j] = Math.sin(i + j) * 1e-3));
  });
  const params = sol.params.reduce((n, p) => n + p.length, 0);
  const capture = Array.from({ length: spec.nLayers }, (_, l) => hookName(l, 'resid_post'));
  const evaluate = (grads: boolean) => async () => {
    const r = await evaluateBatch(model, sol, rows, [], { klLambda: 0, klNorm: 'token', grads });
    if (!Number.isFinite(r.loss) || (grads && r.grads.length !== sol.params.length)) throw new Error('bad evaluateBatch result');
  };
  const { firstCallMs, ms } = await interleaved({ plain: () => engine.forward({ ids, capture, logits: 'none' }), lmForward: evaluate(false), forwardBackward: evaluate(true) }, a.warmup, a.runs);
  const cfg: TrainConfig = {
    kind: 'lora', alpha: 2 * a.rank, lora: shape, lr: 1e-3, steps: a.trainSteps, batchTokens: a.batch * a.seq, batchRows: a.batch,
    seed: 0, warmup: 0, weightDecay: 0, klLambda: 0, klNorm: 'token', checkpointEvery: 0,
  };
  const t = performance.now();
  const res = await trainSolution(model, rows, [], cfg, join(tmpdir(), `emlens-bench-lora-${process.pid}`), { dataKey: 'bench' });
  const trainMs = performance.now() - t;
  if (res.history.length !== a.trainSteps) throw new Error(`trainSolution ran ${res.history.length} steps`);
  log(`train: LoRA rank ${a.rank} trainSolution ${a.trainSteps} steps in ${(trainMs / 1000).toFixed(1)} s`);
  return {
    batch: a.batch, seq: a.seq, rank: a.rank, modules: sol.lora!.targets.length, params, firstCallMs,
    plainMs: ms.plain, lmForwardMs: ms.lmForward, forwardBackwardMs: ms.forwardBackward,
    plain: stats(ms.plain), lmForward: stats(ms.lmForward), forwardBackward: stats(ms.forwardBackward),
    trainSteps: a.trainSteps, trainMs, peakRss: peakRss(),
  };
}

function cloneWeights(w: Weights): Weights {
  return new Map([...w].map(([k, v]) => [k, { shape: [...v.shape], data: v.data.slice() }]));
}

async function organism(a: OrganismArgs): Promise<OrganismResult> {
  const spec = organismSpec();
  const weights = randomWeights(spec, 0);
  const engine = new Engine(spec, weights, { spinning: a.spinning });
  const base = a.kl ? new Engine(spec, cloneWeights(weights), { spinning: a.spinning }) : undefined;
  const total = a.warmup + a.steps;
  // As src/organism/build.ts configures its stages (not a literal, so that fields the trainer
  // does not know are ignored rather than rejected).
  const cfg = { lr: 3e-4, steps: total, warmup: 10, weightDecay: 0.01, beta2: 0.95, clipNorm: 1, schedule: 'cosine' as const, klLambda: a.kl ? 30 : 0 };
  const trainer = new WeightTrainer(engine, cfg, base);
  // A few fixed batches, cycled: random ids over the vocabulary past the 4 specials.
  const V = spec.vocab;
  const batches = Array.from({ length: 4 }, (_, k) => {
    const narrow: TrainRow[] = randomIds(a.rows, a.seq, V - 4, 10 + k).map((r) => {
      const ids = r.map((x) => x + 4);
      // With KL: a chat fine-tune (CE on the answer); without: pretraining (every next token).
      return { ids, start: a.kl ? a.seq >> 1 : 1, end: ids.length };
    });
    const kl: TrainRow[] = a.kl ? randomIds(a.rows, a.seq, V - 4, 20 + k).map((r) => ({ ids: r.map((x) => x + 4), start: 1, end: r.length })) : [];
    return { narrow, kl };
  });
  let params = 0;
  for (const w of weights.values()) params += w.data.length;
  const step = async (i: number) => {
    const b = batches[i % batches.length]!;
    const log = await trainer.trainStep(b.narrow, b.kl);
    if (!Number.isFinite(log.loss)) throw new Error(`organism bench: loss ${log.loss} at step ${i + 1}`);
  };
  let t = performance.now();
  await step(0);
  const firstStepMs = performance.now() - t;
  for (let i = 1; i < a.warmup; i++) await step(i);
  const stepMs: number[] = [];
  const cpu0 = process.cpuUsage();
  const t0 = performance.now();
  for (let i = 0; i < a.steps; i++) {
    t = performance.now();
    await step(a.warmup + i);
    stepMs.push(performance.now() - t);
  }
  const wall = performance.now() - t0;
  const cpu = process.cpuUsage(cpu0);
  const tag = `${a.kl ? 'KL' : 'no KL'}${a.spinning ? '' : ', spinning off'}`;
  log(`train: organism ${tag}: ${a.steps} steps in ${(wall / 1000).toFixed(2)} s (${((1000 * a.steps) / wall).toFixed(1)} steps/s)`);
  return {
    kl: a.kl,
    spinning: a.spinning,
    params,
    firstStepMs,
    stepMs,
    step: stats(stepMs),
    stepsPerSec: (1000 * a.steps) / wall,
    cpuCores: (cpu.user + cpu.system) / 1000 / wall,
  };
}

await childMain('train child', {
  steer: (a: SteerArgs) => steer(a),
  'steer-train': (a: SteerTrainArgs) => steerTrain(a),
  'steer-steps': (a: SteerStepsArgs) => steerSteps(a),
  lora: (a: LoraArgs) => lora(a),
  organism: (a: OrganismArgs) => organism(a),
});
