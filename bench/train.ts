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
 * three sessions) and of trainSolution alone in a fresh process (as `emlens train`). The
 * objective puts only the scored positions through the LM head, over VOCAB_CHUNK-entry vocabulary
 * chunks (src/train/objective.ts); before it, the [N, V] logits and their gradient peaked at 6.5
 * GiB (3.5x). Its sessions keep ORT's CPU arena without its memory pattern
 * (src/train/run-objective.ts); trainSolution alone is also run with every session keeping the
 * arena and its pattern (ORT's default, as before) and with no arena, for their peak RSS and CPU
 * seconds per step beside the new ones (CPU time, not wall time: far less sensitive to the load of
 * a shared machine), and the three are interleaved in one process. The LoRA child's ratio is
 * reported beside it.
 */
import type { BenchOptions, Row, Section, SectionResult } from './section.js';
import { GiB, log, runChild, stats } from './util.js';
import { VOCAB_CHUNK } from '../src/train/objective.js';
import type { MemVariant, LoraArgs, LoraResult, OrganismArgs, OrganismResult, SteerArgs, SteerResult, SteerStepsArgs, SteerStepsResult, SteerTrainArgs, SteerTrainResult } from './train-child.js';

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
  /** The same with every session keeping ORT's CPU arena: training before issue [12]'s fix. */
  steerTrainArena: SteerTrainResult;
  /** The same with no session keeping ORT's arena: training between the chunked objective and the memory-pattern fix. */
  steerTrainNoArena: SteerTrainResult;
  /** Training steps of each memory variant, interleaved in one process. */
  steerSteps: SteerStepsResult;
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
  log(`train: the same with every session keeping ORT's CPU arena, as before (child process)`);
  const steerTrainArena = await runChild<SteerTrainResult>('steer-train', { ...ta, memory: 'arena' }, { script: 'train-child.js' });
  log(`train: the same with no session keeping ORT's arena (child process)`);
  const steerTrainNoArena = await runChild<SteerTrainResult>('steer-train', { ...ta, memory: 'no-arena' }, { script: 'train-child.js' });
  log(`train: training steps with ORT's arena, without it, and as training runs them (arena, no memory pattern), interleaved (child process)`);
  const sa: SteerStepsArgs = { batch: BATCH, seq: SEQ, layer: LAYER, rounds: opts.runs, variants: ['arena', 'no-arena', 'default'] };
  const steerSteps = await runChild<SteerStepsResult>('steer-steps', sa, { script: 'train-child.js' });
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
    steerTrainArena,
    steerTrainNoArena,
    steerSteps,
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

const MEM_LABEL: Record<MemVariant, string> = { default: 'as training runs (ORT arena, no memory pattern)', arena: 'ORT arena and memory pattern (before)', 'no-arena': 'no ORT arena' };

/** CPU seconds per trainSolution step once its graph is compiled (the first step compiles it). */
function steadyCpu(r: SteerTrainResult): number {
  return stats(r.stepCpuS.slice(1)).median;
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
      // Not a training run (the goal's rows are trainSolution alone below): this child also holds the plain forward's session, with ORT's arena as forward and extract run it.
      { metric: 'peak RSS / fp32 weights (every call above in one process: plain forward with ORT arena + training graphs)', value: s.peakRss / s.weightBytes, unit: 'x', digits: 2 },
      { metric: '0.5B training peak RSS (trainSolution alone)', value: r.steerTrain.peakRss / GiB, unit: 'GiB', digits: 2 },
      { metric: 'training peak RSS / fp32 weights (trainSolution alone)', value: r.steerTrain.peakRss / r.steerTrain.weightBytes, unit: 'x', digits: 2, goal: { op: '<=', value: GOAL_RSS_RATIO } },
      { metric: 'training peak RSS / fp32 weights (trainSolution alone, every session with ORT arena and memory pattern: before)', value: r.steerTrainArena.peakRss / r.steerTrainArena.weightBytes, unit: 'x', digits: 2 },
      { metric: 'training peak RSS / fp32 weights (trainSolution alone, no ORT arena)', value: r.steerTrainNoArena.peakRss / r.steerTrainNoArena.weightBytes, unit: 'x', digits: 2 },
      { metric: 'steering-vector trainSolution alone', value: r.steerTrain.trainSteps / (r.steerTrain.trainMs / 1000), unit: 'steps/s', digits: 3 },
      { metric: 'steering-vector trainSolution alone, ORT arena and pattern (before)', value: r.steerTrainArena.trainSteps / (r.steerTrainArena.trainMs / 1000), unit: 'steps/s', digits: 3 },
      { metric: 'steering-vector trainSolution alone, no ORT arena', value: r.steerTrainNoArena.trainSteps / (r.steerTrainNoArena.trainMs / 1000), unit: 'steps/s', digits: 3 },
      { metric: `trainSolution CPU per step (median of steps 2-${TRAIN_STEPS}; this process, ORT threads included)`, value: steadyCpu(r.steerTrain), unit: 's', digits: 1 },
      { metric: 'trainSolution CPU per step, ORT arena and pattern (before)', value: steadyCpu(r.steerTrainArena), unit: 's', digits: 1 },
      { metric: 'trainSolution CPU per step, no ORT arena', value: steadyCpu(r.steerTrainNoArena), unit: 's', digits: 1 },
      { metric: 'trainSolution CPU per step: now / before (1 = steps/s unchanged)', value: steadyCpu(r.steerTrain) / steadyCpu(r.steerTrainArena), unit: 'x' },
      ...r.steerSteps.variants.map((v): Row => ({ metric: `training step CPU (fwd+bwd; interleaved in one process), ${MEM_LABEL[v]}`, value: stats(r.steerSteps.cpuS[v]!).median, unit: 's', digits: 2 })),
      ...r.steerSteps.variants.filter((v) => v !== 'arena').map((v): Row => ({ metric: `training step CPU, interleaved: ${MEM_LABEL[v]} / ORT arena and pattern (1 = steps/s unchanged)`, value: stats(r.steerSteps.cpuS[v]!).median / stats(r.steerSteps.cpuS.arena!).median, unit: 'x' })),
      { metric: 'training step: same loss and gradient bit for bit in every variant (1 = yes)', value: r.steerSteps.sameNumbers ? 1 : 0, unit: '', digits: 0, goal: { op: '>=', value: 1 } },
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
