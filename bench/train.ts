/**
 * Section "train": forward + backward on the random Qwen2.5-0.5B-shaped model (a steering vector
 * at layer 12, CE on every next token of 4 x 128-token rows, gradient w.r.t. the vector) against
 * the forward alone — both the forward with the LM head + CE (the same graph without gradients)
 * and the forward section's plain call (no LM head) — and steering-vector train steps/s; then
 * full-weight WeightTrainer steps/s on the organism-sized model, with and without the KL term,
 * each with ORT's default session options and with intra-op thread spinning off.
 *
 * Then the same for a rank-32 LoRA on all seven projections of every layer (gradients w.r.t.
 * every A and B) and its train steps/s.
 *
 * Goal (issues [3], [7]): (forward + backward) / forward <= 3x.
 *
 * Goal (issue [12], training memory): peak RSS <= 2x the fp32 weights at 4 x 128 tokens, steps/s
 * not lower: of the steering-vector child (every call above and trainSolution in one process, so
 * three sessions' arenas) and of trainSolution alone in a fresh process (as `emlens train`). The
 * objective puts only the scored positions through the LM head, over VOCAB_CHUNK-entry vocabulary
 * chunks (src/train/objective.ts); before it, the [N, V] logits and their gradient peaked at 6.5
 * GiB (3.5x). The LoRA child's ratio is reported beside it.
 */
import type { BenchOptions, Row, Section, SectionResult } from './section.js';
import { GiB, log, runChild, stats } from './util.js';
import { VOCAB_CHUNK } from '../src/train/objective.js';
import type { LoraArgs, LoraResult, OrganismArgs, OrganismResult, SteerArgs, SteerResult, SteerTrainArgs, SteerTrainResult } from './train-child.js';

export const BATCH = 4;
export const SEQ = 128;
export const LAYER = 12;
export const TRAIN_STEPS = 3;
export const ORG_ROWS = 32;
export const ORG_SEQ = 64;
export const ORG_WARMUP = 5;
export const ORG_STEPS = 20;
export const GOAL_RATIO = 3;
export const LORA_RANK = 32;
/** Peak RSS of training / the fp32 weights. */
export const GOAL_RSS_RATIO = 2;

export interface OrganismCase {
  kl: boolean;
  spinning: boolean;
  runs: OrganismResult[];
  /** Median step over every timed step of every run. */
  stepMs: number;
  stepsPerSec: number;
  cpuCores: number;
}

export interface TrainBench {
  steer: SteerResult;
  /** trainSolution alone in a fresh process. */
  steerTrain: SteerTrainResult;
  /** (forward + backward) / (forward with LM head + CE) */
  ratioLm: number;
  /** (forward + backward) / plain forward (no LM head) */
  ratioPlain: number;
  steerStepsPerSec: number;
  lora: LoraResult;
  /** LoRA (forward + backward) / (forward with the LoRA + LM head + CE) */
  loraRatioLm: number;
  /** LoRA (forward + backward) / plain forward of the base model (no LoRA, no LM head) */
  loraRatioPlain: number;
  loraStepsPerSec: number;
  organism: OrganismCase[];
}

export async function benchTrain(opts: BenchOptions): Promise<TrainBench> {
  log(`train: steering vector at layer ${LAYER}, ${BATCH}x${SEQ} tokens (child process)`);
  const args: SteerArgs = { batch: BATCH, seq: SEQ, layer: LAYER, warmup: opts.warmup, runs: opts.runs, trainSteps: TRAIN_STEPS };
  const steer = await runChild<SteerResult>('steer', args, { script: 'train-child.js' });
  const fb = steer.forwardBackward.median;
  log(`train: steering-vector trainSolution alone, ${BATCH}x${SEQ} tokens (child process: peak RSS of training)`);
  const ta: SteerTrainArgs = { batch: BATCH, seq: SEQ, layer: LAYER, trainSteps: TRAIN_STEPS };
  const steerTrain = await runChild<SteerTrainResult>('steer-train', ta, { script: 'train-child.js' });
  log(`train: rank-${LORA_RANK} LoRA on all 7 projections of every layer, ${BATCH}x${SEQ} tokens (child process)`);
  const la: LoraArgs = { batch: BATCH, seq: SEQ, rank: LORA_RANK, warmup: opts.warmup, runs: opts.runs, trainSteps: TRAIN_STEPS };
  const lora = await runChild<LoraResult>('lora', la, { script: 'train-child.js' });

  // Four configurations, each in fresh processes; two rounds in opposite orders so that drift
  // on a shared machine falls on both sides of each comparison.
  const configs = [false, true].flatMap((kl) => [true, false].map((spinning) => ({ kl, spinning })));
  const results = new Map<string, OrganismResult[]>();
  const key = (c: { kl: boolean; spinning: boolean }) => `${c.kl}:${c.spinning}`;
  for (const order of [configs, [...configs].reverse()]) {
    for (const c of order) {
      log(`train: organism WeightTrainer, ${c.kl ? 'KL' : 'no KL'}, spinning ${c.spinning ? 'on (default)' : 'off'} (child process)`);
      const a: OrganismArgs = { kl: c.kl, spinning: c.spinning, rows: ORG_ROWS, seq: ORG_SEQ, warmup: ORG_WARMUP, steps: ORG_STEPS };
      const r = await runChild<OrganismResult>('organism', a, { script: 'train-child.js' });
      results.set(key(c), [...(results.get(key(c)) ?? []), r]);
    }
  }
  const organism = configs.map((c): OrganismCase => {
    const runs = results.get(key(c))!;
    const stepMs = stats(runs.flatMap((r) => r.stepMs)).median;
    return { ...c, runs, stepMs, stepsPerSec: 1000 / stepMs, cpuCores: stats(runs.map((r) => r.cpuCores)).median };
  });
  return {
    steer,
    steerTrain,
    ratioLm: fb / steer.lmForward.median,
    ratioPlain: fb / steer.plain.median,
    steerStepsPerSec: steer.trainSteps / (steer.trainMs / 1000),
    lora,
    loraRatioLm: lora.forwardBackward.median / lora.lmForward.median,
    loraRatioPlain: lora.forwardBackward.median / lora.plain.median,
    loraStepsPerSec: lora.trainSteps / (lora.trainMs / 1000),
    organism,
  };
}

export const trainSection: Section = {
  name: 'train',
  description: `forward+backward of a steering vector and of a rank-${LORA_RANK} LoRA on every projection of the 0.5B-shaped model (${BATCH}x${SEQ}, CE on all tokens); organism-sized WeightTrainer steps/s, KL on/off, ORT spinning on/off`,
  async run(opts: BenchOptions): Promise<SectionResult> {
    const r = await benchTrain(opts);
    const s = r.steer;
    const tag = `${BATCH}x${SEQ}`;
    const rows: Row[] = [
      { metric: `0.5B ${tag} plain forward (no LM head)`, value: s.plain.median, unit: 'ms', digits: 0 },
      { metric: `0.5B ${tag} forward + LM head + CE`, value: s.lmForward.median, unit: 'ms', digits: 0 },
      { metric: `0.5B ${tag} forward + CE + backward to steer@${LAYER}`, value: s.forwardBackward.median, unit: 'ms', digits: 0 },
      { metric: '(fwd+bwd) / (fwd + LM head + CE)', value: r.ratioLm, unit: 'x', goal: { op: '<=', value: GOAL_RATIO } },
      { metric: '(fwd+bwd) / plain forward', value: r.ratioPlain, unit: 'x' },
      { metric: 'steering-vector trainSolution', value: r.steerStepsPerSec, unit: 'steps/s', digits: 3 },
      { metric: `0.5B training peak RSS (${tag}, vocabulary chunk ${VOCAB_CHUNK}; every call above in one process)`, value: s.peakRss / GiB, unit: 'GiB', digits: 2 },
      { metric: 'training peak RSS / fp32 weights (every call above in one process)', value: s.peakRss / s.weightBytes, unit: 'x', digits: 2, goal: { op: '<=', value: GOAL_RSS_RATIO } },
      { metric: '0.5B training peak RSS (trainSolution alone)', value: r.steerTrain.peakRss / GiB, unit: 'GiB', digits: 2 },
      { metric: 'training peak RSS / fp32 weights (trainSolution alone)', value: r.steerTrain.peakRss / r.steerTrain.weightBytes, unit: 'x', digits: 2, goal: { op: '<=', value: GOAL_RSS_RATIO } },
      { metric: 'steering-vector trainSolution alone', value: r.steerTrain.trainSteps / (r.steerTrain.trainMs / 1000), unit: 'steps/s', digits: 3 },
      { metric: `0.5B ${tag} forward + LoRA r${LORA_RANK} (${r.lora.modules} projections) + LM head + CE`, value: r.lora.lmForward.median, unit: 'ms', digits: 0 },
      { metric: `0.5B ${tag} forward + CE + backward to every LoRA factor (${(r.lora.params / 1e6).toFixed(1)}M)`, value: r.lora.forwardBackward.median, unit: 'ms', digits: 0 },
      { metric: 'LoRA (fwd+bwd) / (fwd + LM head + CE)', value: r.loraRatioLm, unit: 'x', goal: { op: '<=', value: GOAL_RATIO } },
      { metric: 'LoRA (fwd+bwd) / plain forward', value: r.loraRatioPlain, unit: 'x' },
      { metric: `rank-${LORA_RANK} LoRA trainSolution (all 7 projections, every layer)`, value: r.loraStepsPerSec, unit: 'steps/s', digits: 3 },
      { metric: '0.5B LoRA training peak RSS', value: r.lora.peakRss / GiB, unit: 'GiB', digits: 2 },
      { metric: 'LoRA training peak RSS / fp32 weights', value: r.lora.peakRss / s.weightBytes, unit: 'x', digits: 2 },
    ];
    for (const c of r.organism) {
      const what = `organism WeightTrainer ${ORG_ROWS}x${ORG_SEQ}${c.kl ? ` + KL ${ORG_ROWS}x${ORG_SEQ}` : ''}, spinning ${c.spinning ? 'default' : 'off'}`;
      rows.push({ metric: what, value: c.stepsPerSec, unit: 'steps/s', digits: 1 });
    }
    for (const kl of [false, true]) {
      const on = r.organism.find((c) => c.kl === kl && c.spinning)!;
      const off = r.organism.find((c) => c.kl === kl && !c.spinning)!;
      rows.push({ metric: `organism ${kl ? 'KL' : 'no KL'}: spinning off / default`, value: off.stepsPerSec / on.stepsPerSec, unit: 'x' });
      rows.push({ metric: `organism ${kl ? 'KL' : 'no KL'}: CPU busy, spinning default`, value: on.cpuCores, unit: 'cores' });
      rows.push({ metric: `organism ${kl ? 'KL' : 'no KL'}: CPU busy, spinning off`, value: off.cpuCores, unit: 'cores' });
    }
    return { section: 'train', rows, data: r };
  },
};
