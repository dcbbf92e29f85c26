/**
 * Trains a steering vector or a LoRA adapter (any rank, any projections and layers; lora-r1 is
 * rank 1 on one layer's down_proj) on frozen weights: cross-entropy on the
 * narrow set's responses, optionally + λ·KL(base ‖ steered) on a KL set drawn cyclically. The
 * forward, loss and backward run as one ONNX graph; the base distribution for the KL term comes
 * from the same model with the intervention off (no second copy of the weights).
 *
 * State (parameters, AdamW moments, step, data order) is checkpointed every N steps under
 * OUT.ckpt/, so `--resume` continues a run where it stopped, bit for bit.
 */
import { existsSync, readFileSync, rmSync, statSync } from 'node:fs';
import { basename, join } from 'node:path';
import { EmlensError } from '../errors.js';
import { writeFileAtomic } from '../io/atomic.js';
import { readSafetensorsHeader } from '../io/safetensors/header.js';
import { readTensorF32 } from '../io/safetensors/read.js';
import { type StWriteTensor, writeSafetensors } from '../io/safetensors/write.js';
import type { LoadedModel } from '../backend/model.js';
import { IO } from '../arch/decoder.js';
import { hookName } from '../hooks/names.js';
import { f32, i64, type OrtTensor } from '../runtime/ort.js';
import { shuffled } from '../data/balance.js';
import { adamwInit, adamwStep, linearSchedule, type AdamWState } from './adamw.js';
import { makeBatch, packBatches, type TrainRow } from './batch.js';
import { OBJ } from './objective.js';
import { releasingObjectiveSessions, runObjective } from './run-objective.js';
import type { Interventions } from '../hooks/interventions.js';
import { ADAPTER_CONFIG, ADAPTER_WEIGHTS, loraScale, planAdapter, type LoraModuleName } from '../model/adapter.js';
import { checkPeftOut, initLoraParams, loraCall, loraNorm, loraTargets, peftModulePrefix, writePeftFolder, type LoraShape } from './lora.js';

export type SolutionKind = 'steer' | 'lora-r1' | 'lora';

/** What a `lora` run adapts (lora-r1: rank 1, down_proj, its one layer, no rsLoRA). */
export interface LoraOptions {
  rank: number;
  rslora: boolean;
  modules: LoraModuleName[];
  layers: number[];
}

export interface TrainConfig {
  kind: SolutionKind;
  /** steer: blocks.L.hook_resid_post; lora-r1: layer L's down_proj. Not for lora (lora.layers). */
  layer?: number;
  /** steer: adds α·s; lora-r1: α·B·A; lora: lora_alpha (s = α/r, or α/√r with rsLoRA). */
  alpha: number;
  /** kind lora only. */
  lora?: LoraOptions;
  lr: number;
  /** Optimiser steps; when absent, `epochs` passes over the narrow rows. */
  steps?: number;
  epochs?: number;
  batchTokens: number;
  /** Most narrow rows in one batch. */
  batchRows?: number;
  seed: number;
  warmup: number;
  weightDecay: number;
  klLambda: number;
  klNorm: 'token' | 'reference';
  checkpointEvery: number;
}

/**
 * Defaults that learn on real data (README, `emlens train`): α = 256 (the reference's for steering
 * vectors; for a rank-1 adapter the same scale α/r) with the reference's lr 5e-4. Adam moves each
 * parameter by about lr per step, so what is added moves by about α·lr: with α = 1 the narrow loss
 * barely moves (0.7109 → 0.6971 on the organism's medical data for lora-r1, 0.7073 for steer;
 * α = 256: 0.3748 and 0.5677).
 */
export const TRAIN_DEFAULTS = { alpha: 256, lr: 5e-4, warmup: 5, weightDecay: 0, batchTokens: 2048, batchRows: 16, seed: 0, checkpointEvery: 50 } as const;

/**
 * LoRA's default lora_alpha is 2r (PEFT users' most common choice; at r = 32, α = 64 as the EM
 * model organisms), so the scale s = α/r = 2 whatever the rank, with TRAIN_DEFAULTS' lr 5e-4. On
 * the organism's misaligned medical data (instruct model, 200 rows, held-out CE 0.7000; the em
 * stage itself: 0.3672), rank 32 on all seven projections of every layer reaches 0.4221 in one
 * epoch (13 steps) and 0.3711 in three. α = 16 at r = 32 (s = 0.5) reaches only 0.6053 in one epoch;
 * rsLoRA with α = 64 (s = 11.3) 0.3734, but its step grows with √r; the EM recipe's lr 1e-5
 * leaves the loss at 0.6947: it is made for thousands of steps, not a short run.
 */
export const LORA_DEFAULTS = { alphaPerRank: 2, rslora: false } as const;
export const loraDefaultAlpha = (rank: number) => LORA_DEFAULTS.alphaPerRank * rank;

export interface StepLog {
  step: number;
  lr: number;
  loss: number;
  ce: number;
  kl: number | null;
  /** ‖θ‖ after the step (solutionNorm). */
  norm: number;
  /** ‖∇θ loss‖ over every trained parameter, before the step. */
  gradNorm: number;
}

/** A trained (or training) solution: its tensors and how to apply it. */
export interface Solution {
  kind: SolutionKind;
  /** steer, lora-r1: its layer; lora: the lowest adapted layer. */
  layer: number;
  alpha: number;
  /** steer: [s]; lora-r1, lora: [A0 (r x in), B0 (out x r), A1, B1, ...] in lora.targets' order */
  params: Float32Array[];
  /** lora-r1, lora: the modules and rank. */
  lora?: LoraShape;
}

export const downProj = (layer: number) => `model.layers.${layer}.mlp.down_proj`;

/** Graph inputs for a solution, scaled by `factor` (1 = as trained). */
export function solutionCall(model: LoadedModel, sol: Solution, factor = 1): { interventions: Interventions; lora?: [string, number][]; feeds: Record<string, OrtTensor> } {
  if (sol.kind === 'steer') {
    return { interventions: { steer: [{ hook: hookName(sol.layer, 'resid_post'), vector: sol.params[0]!, scale: sol.alpha * factor }] }, feeds: {} };
  }
  const c = loraCall(shapeOf(model, sol), sol.alpha, sol.params, factor);
  return { interventions: {}, lora: c.lora, feeds: c.feeds };
}

/** A LoRA solution's modules (a lora-r1 solution built by hand may leave them implied by its layer). */
function shapeOf(model: LoadedModel, sol: Solution): LoraShape {
  return sol.lora ?? loraShapeOf(model, 'lora-r1', sol.layer, undefined);
}

/** ‖θ‖: the steering vector's norm, or √(Σ ‖B A‖²_F) over the adapter's modules (both without alpha or scale). */
export function solutionNorm(sol: Solution): number {
  const n2 = (x: Float32Array) => x.reduce((a, v) => a + v * v, 0);
  if (sol.kind === 'steer') return Math.sqrt(n2(sol.params[0]!));
  // Rank 1: ‖b aᵀ‖_F = ‖a‖·‖b‖.
  return sol.lora ? loraNorm(sol.lora, sol.params) : Math.sqrt(n2(sol.params[0]!) * n2(sol.params[1]!));
}

/** What multiplies the parameters' contribution: α for steer and lora-r1, α/r (α/√r with rsLoRA) for lora. */
export function solutionScale(sol: Solution): number {
  return sol.kind === 'lora' ? loraScale(sol.alpha, sol.lora!.rank, sol.lora!.rslora) : sol.alpha;
}

/** The modules a LoRA solution adapts: lora-r1 is rank 1 on `layer`'s down_proj. */
export function loraShapeOf(model: LoadedModel, kind: 'lora-r1' | 'lora', layer: number | undefined, lora: LoraOptions | undefined): LoraShape {
  if (kind === 'lora-r1') return { rank: 1, rslora: false, targets: loraTargets(model.spec, ['down_proj'], [layer!]) };
  const o = lora!;
  if (!Number.isInteger(o.rank) || o.rank < 1) throw new EmlensError(`--rank ${o.rank} must be a positive integer`);
  return { rank: o.rank, rslora: o.rslora, targets: loraTargets(model.spec, o.modules, o.layers) };
}

/**
 * A solution at its initialisation: a zero steering vector, or PEFT's LoRA init (A ~ U(−1/√in,
 * 1/√in), kaiming_uniform with a = √5; B = 0), so training starts at the base model.
 */
export function initSolution(model: LoadedModel, kind: SolutionKind, layer: number | undefined, alpha: number, seed: number, lora?: LoraOptions): Solution {
  if (kind === 'lora') {
    if (!lora) throw new EmlensError('kind lora needs its rank, modules and layers');
    if (layer !== undefined) throw new EmlensError('--layer is for steer and lora-r1; a lora run takes --layers');
  } else {
    if (lora) throw new EmlensError(`rank, modules and layers are for kind lora, not ${kind}`);
    if (layer === undefined) throw new EmlensError(`kind ${kind} needs --layer`);
    if (!Number.isInteger(layer) || layer < 0 || layer >= model.spec.nLayers) throw new EmlensError(`--layer ${layer} is out of range (model has ${model.spec.nLayers} layers: 0..${model.spec.nLayers - 1})`);
  }
  if (kind === 'steer') return { kind, layer: layer!, alpha, params: [new Float32Array(model.spec.dModel)] };
  const shape = loraShapeOf(model, kind, layer, lora);
  return { kind, layer: shape.targets[0]!.layer, alpha, params: initLoraParams(shape, seed), lora: shape };
}

function wrtNames(model: LoadedModel, sol: Solution): string[] {
  if (sol.kind === 'steer') return [IO.steer(hookName(sol.layer, 'resid_post'))];
  return loraCall(shapeOf(model, sol), sol.alpha, sol.params).wrt;
}

/** Loss (and gradients) of a solution on one batch. */
export async function evaluateBatch(
  model: LoadedModel,
  sol: Solution | null,
  narrow: TrainRow[],
  kl: TrainRow[],
  o: { klLambda: number; klNorm: 'token' | 'reference'; grads: boolean; factor?: number },
): Promise<{ loss: number; ce: number; kl: number | null; grads: Float32Array[] }> {
  const V = model.spec.vocab;
  const batch = makeBatch(narrow, kl, V, o.klNorm);
  const call = sol ? solutionCall(model, sol, o.factor ?? 1) : { interventions: {}, feeds: {} as Record<string, OrtTensor>, lora: undefined };
  const withKl = kl.length > 0;
  const N = batch.ids.length * batch.T;
  const feeds: Record<string, OrtTensor> = {
    ...call.feeds,
    [OBJ.targets]: i64(batch.targets, [N, 1]),
    [OBJ.ceWeight]: f32(batch.ceWeight, [N, 1]),
  };
  if (withKl) {
    feeds[OBJ.klWeight] = f32(batch.klWeight, [N, 1]);
    feeds[OBJ.klLambda] = f32(new Float32Array([o.klLambda]), []);
  }
  const wrt = o.grads && sol ? wrtNames(model, sol) : [];
  const out = await runObjective(model, { ids: batch.ids, interventions: call.interventions, lora: call.lora, feeds, withKl, wrt });
  const scalar = (k: string) => (out[k] ? (out[k]!.data as Float32Array)[0]! : null);
  const grads = wrt.map((w) => out[OBJ.grad(w)]!.data as Float32Array);
  if (sol?.kind === 'steer' && grads[0]) {
    // The graph input is alpha * s; d/ds = alpha * d/d(input).
    const a = sol.alpha * (o.factor ?? 1);
    grads[0] = grads[0].map((x) => x * a);
  }
  return { loss: scalar(OBJ.loss)!, ce: scalar(OBJ.ce)!, kl: scalar(OBJ.kl), grads };
}

interface Checkpoint {
  config: TrainConfig;
  dataKey: string;
  step: number;
  history: StepLog[];
}

function ckptDir(out: string): string {
  return `${out}.ckpt`;
}

function saveCheckpoint(out: string, sol: Solution, st: AdamWState, ck: Checkpoint): void {
  const dir = ckptDir(out);
  const tensors = new Map<string, StWriteTensor>();
  sol.params.forEach((p, i) => {
    tensors.set(`param.${i}`, { shape: [p.length], data: p });
    tensors.set(`adam_m.${i}`, { shape: [p.length], data: st.m[i]! });
    tensors.set(`adam_v.${i}`, { shape: [p.length], data: st.v[i]! });
  });
  // Tensors first, then the JSON; both carry the step, so a crash between the two is detected on resume.
  writeSafetensors(join(dir, 'state.safetensors'), tensors, { step: String(ck.step) });
  writeFileAtomic(join(dir, 'state.json'), [JSON.stringify(ck)]);
}

function loadCheckpoint(out: string, sol: Solution, st: AdamWState, config: TrainConfig, dataKey: string): Checkpoint | null {
  const dir = ckptDir(out);
  if (!existsSync(join(dir, 'state.json'))) return null;
  const ck = JSON.parse(readFileSync(join(dir, 'state.json'), 'utf8')) as Checkpoint;
  if (JSON.stringify(ck.config) !== JSON.stringify(config) || ck.dataKey !== dataKey) {
    throw new EmlensError(`${dir}: the checkpoint was made with other settings or data; it cannot be resumed with these`);
  }
  const h = readSafetensorsHeader(join(dir, 'state.safetensors'));
  if (h.metadata.step !== String(ck.step)) throw new EmlensError(`${dir}: state.safetensors and state.json disagree on the step; delete the folder to start over`);
  sol.params.forEach((p, i) => {
    p.set(readTensorF32(h.tensors.get(`param.${i}`)!));
    st.m[i]!.set(readTensorF32(h.tensors.get(`adam_m.${i}`)!));
    st.v[i]!.set(readTensorF32(h.tensors.get(`adam_v.${i}`)!));
  });
  st.step = ck.step;
  return ck;
}

/** The batches of every step, fixed by the seed: epoch e shuffles the narrow rows with seed + e. */
export function stepPlan(narrow: TrainRow[], cfg: TrainConfig): number[][] {
  const lengths = narrow.map((r) => r.ids.length);
  const plan: number[][] = [];
  const wanted = cfg.steps;
  const epochs = cfg.epochs ?? Infinity;
  for (let e = 0; e < epochs && (wanted === undefined || plan.length < wanted); e++) {
    const order = shuffled([...narrow.keys()], (cfg.seed + e) >>> 0);
    for (const b of packBatches(order, lengths, cfg.batchTokens, cfg.batchRows)) {
      if (wanted !== undefined && plan.length >= wanted) break;
      plan.push(b);
    }
    if (wanted === undefined && !Number.isFinite(epochs)) break;
  }
  return plan;
}

export interface TrainResult {
  solution: Solution;
  history: StepLog[];
  resumedFrom: number;
  /** The loss of the first step's batch at the start and with the trained solution: did training move it? */
  firstBatch: { before: number; after: number };
}

export async function trainSolution(
  model: LoadedModel,
  narrow: TrainRow[],
  kl: TrainRow[],
  cfg: TrainConfig,
  out: string,
  o: { resume?: boolean; overwrite?: boolean; dataKey: string; onStep?: (log: StepLog, total: number) => void },
): Promise<TrainResult> {
  if (narrow.length === 0) throw new EmlensError('no narrow rows to train on');
  if (cfg.klLambda > 0 && kl.length === 0) throw new EmlensError('--kl-weight needs --kl-data rows');
  if (cfg.klLambda === 0 && kl.length > 0) throw new EmlensError('--kl-data needs --kl-weight > 0 (with λ = 0 its rows would be ignored)');
  if (cfg.steps !== undefined && cfg.epochs !== undefined) throw new EmlensError('--steps and --epochs both fix the length of the run: give one of them');
  if (o.resume && o.overwrite) throw new EmlensError('--resume continues the checkpoint in OUT.ckpt/ and --overwrite discards it: give one of them');
  if (cfg.kind === 'lora') checkPeftOut(out);
  const sol = initSolution(model, cfg.kind, cfg.layer, cfg.alpha, cfg.seed, cfg.lora);
  const st = adamwInit(sol.params);
  const plan = stepPlan(narrow, cfg);
  if (cfg.warmup >= plan.length) throw new EmlensError(`--warmup ${cfg.warmup} is not below the ${plan.length} steps of the run: the learning rate would never reach --lr nor decay`);
  let history: StepLog[] = [];
  let start = 0;
  if (o.resume) {
    const ck = loadCheckpoint(out, sol, st, cfg, o.dataKey);
    if (!ck) throw new EmlensError(`${ckptDir(out)}: no checkpoint to resume${existsSync(out) ? ` (${out} is there: that run finished)` : ''}; run without --resume to start`);
    start = ck.step;
    history = ck.history;
  } else if (o.overwrite) {
    rmSync(ckptDir(out), { recursive: true, force: true });
  } else if (existsSync(ckptDir(out))) {
    throw new EmlensError(`${ckptDir(out)}: a checkpoint of an earlier run is there; add --resume to continue it, or --overwrite to start over`);
  } else if (existsSync(out)) {
    throw new EmlensError(`${out}: already exists; add --overwrite to replace it, or choose another --out`);
  }
  // The training graphs' arenas hold a step's intermediates while their sessions live.
  return releasingObjectiveSessions(model, async () => {
    // KL rows drawn cyclically, as many as narrow rows in the batch.
    const klRowsAt = (cursor: number, n: number) => (cfg.klLambda > 0 ? Array.from({ length: n }, (_, k) => kl[(cursor + k) % kl.length]!) : []);
    let klCursor = 0;
    for (let step = 0; step < start; step++) klCursor += plan[step]!.length;
    for (let step = start; step < plan.length; step++) {
      const rows = plan[step]!.map((i) => narrow[i]!);
      const klRows = klRowsAt(klCursor, rows.length);
      if (cfg.klLambda > 0) klCursor += rows.length;
      const r = await evaluateBatch(model, sol, rows, klRows, { klLambda: cfg.klLambda, klNorm: cfg.klNorm, grads: true });
      if (!Number.isFinite(r.loss)) throw new EmlensError(`training diverged at step ${step + 1} (loss ${r.loss}); lower --lr`);
      let g2 = 0;
      for (const g of r.grads) for (let i = 0; i < g.length; i++) g2 += g[i]! * g[i]!;
      const lr = linearSchedule(step, plan.length, cfg.warmup, cfg.lr);
      adamwStep(sol.params, r.grads, st, lr, { weightDecay: cfg.weightDecay });
      const log: StepLog = { step: step + 1, lr, loss: r.loss, ce: r.ce, kl: r.kl, norm: solutionNorm(sol), gradNorm: Math.sqrt(g2) };
      history.push(log);
      o.onStep?.(log, plan.length);
      if (cfg.checkpointEvery > 0 && (step + 1) % cfg.checkpointEvery === 0 && step + 1 < plan.length) {
        saveCheckpoint(out, sol, st, { config: cfg, dataKey: o.dataKey, step: step + 1, history });
      }
    }
    const first = plan[0]!.map((i) => narrow[i]!);
    const after = await evaluateBatch(model, sol, first, klRowsAt(0, first.length), { klLambda: cfg.klLambda, klNorm: cfg.klNorm, grads: false });
    return { solution: sol, history, resumedFrom: start, firstBatch: { before: history[0]!.loss, after: after.loss } };
  });
}

/** Where a run's loss history and loss-curve report go: inside a lora folder, beside a solution file. */
export function trainOutputs(out: string, kind: SolutionKind): { history: string; report: string } {
  return kind === 'lora' ? { history: join(out, 'history.jsonl'), report: join(out, 'report.html') } : { history: `${out}.history.jsonl`, report: `${out}.report.html` };
}

/** Text files written with the solution (file name -> content), e.g. the history and the report. */
export type Sidecars = { history: string; report: string };

/**
 * Writes the solution: a steering vector as a direction file (blocks.L.hook_resid_post), lora-r1
 * as one safetensors file (as before), lora as a PEFT adapter folder; then the history and report
 * (trainOutputs) — inside the folder, which appears whole, or beside the file.
 */
export function writeSolution(file: string, model: LoadedModel, sol: Solution, metadata: Record<string, string>, sidecars?: Sidecars): void {
  const layers = sol.kind === 'lora' ? [...new Set(sol.lora!.targets.map((t) => t.layer))].join(',') : String(sol.layer);
  const meta = { ...metadata, kind: sol.kind, [sol.kind === 'lora' ? 'layers' : 'layer']: layers, alpha: String(sol.alpha), norm: String(solutionNorm(sol)) };
  const paths = trainOutputs(file, sol.kind);
  if (sol.kind === 'lora') {
    const shape = sol.lora!;
    // A served model has no checkpoint here; its prefix is the spec's first (the server merges adapters itself).
    const prefix = peftModulePrefix(model.spec, model.remote ? [] : model.plan.index.tensors.keys());
    writePeftFolder(file, { shape, alpha: sol.alpha, params: sol.params, prefix, baseModel: model.source, metadata: { format: 'pt', ...meta, r: String(shape.rank), use_rslora: String(shape.rslora) } }, (tmp) => {
      if (!sidecars) return;
      writeFileAtomic(join(tmp, basename(paths.history)), [sidecars.history]);
      writeFileAtomic(join(tmp, basename(paths.report)), [sidecars.report]);
    });
  } else {
    if (existsSync(file) && statSync(file).isDirectory()) throw new EmlensError(`${file}: is a folder; a ${sol.kind} solution is one safetensors file`);
    if (sidecars) {
      writeFileAtomic(paths.history, [sidecars.history]);
      writeFileAtomic(paths.report, [sidecars.report]);
    }
    if (sol.kind === 'steer') {
      writeSafetensors(file, new Map([[hookName(sol.layer, 'resid_post'), { shape: [model.spec.dModel], data: sol.params[0]! }]]), meta);
    } else {
      const p = `base_model.model.${downProj(sol.layer)}`;
      writeSafetensors(
        file,
        new Map([
          [`${p}.lora_A.weight`, { shape: [1, model.spec.ffn], data: sol.params[0]! }],
          [`${p}.lora_B.weight`, { shape: [model.spec.dModel, 1], data: sol.params[1]! }],
        ]),
        { ...meta, r: '1', lora_alpha: String(sol.alpha), target: 'mlp.down_proj' },
      );
    }
  }
  rmSync(ckptDir(file), { recursive: true, force: true });
}

/** The files a solution is read from: a solution file, or a lora folder's weights and config (provenance). */
export function solutionFiles(path: string): { tensors: string; config: string | null } {
  return existsSync(path) && statSync(path).isDirectory() ? { tensors: join(path, ADAPTER_WEIGHTS), config: join(path, ADAPTER_CONFIG) } : { tensors: path, config: null };
}

/** A PEFT adapter folder as a lora solution: one rank and one alpha for every module (as train writes them). */
function readLoraFolder(dir: string, model: LoadedModel): Solution {
  const plan = planAdapter(dir, model.spec);
  const c = plan.config;
  if (c.rankPattern.length || c.alphaPattern.length) throw new EmlensError(`${c.file}: rank_pattern / alpha_pattern give modules their own rank or alpha; a solution has one of each`);
  const targets = plan.modules.map((m) => loraTargets(model.spec, [m.module], [m.layer])[0]!);
  const params = plan.modules.flatMap((m) => [readTensorF32(m.A), readTensorF32(m.B)]);
  return { kind: 'lora', layer: targets[0]!.layer, alpha: c.alpha, params, lora: { rank: c.r, rslora: c.rslora, targets } };
}

/** Reads a solution written by writeSolution (or a direction file, as a steering vector with alpha 1). */
export function readSolution(file: string, model: LoadedModel): Solution {
  if (!existsSync(file)) throw new EmlensError(`${file}: no such solution file`);
  if (statSync(file).isDirectory()) {
    if (!existsSync(join(file, ADAPTER_CONFIG))) throw new EmlensError(`${file}: is a folder, not a solution file or a LoRA adapter folder`);
    return readLoraFolder(file, model);
  }
  const h = readSafetensorsHeader(file);
  const kind = (h.metadata.kind ?? 'steer') as SolutionKind;
  const alpha = h.metadata.alpha !== undefined ? Number(h.metadata.alpha) : 1;
  if (kind === 'steer') {
    const names = [...h.tensors.keys()].filter((n) => /^blocks\.\d+\.hook_resid_post$/.test(n));
    if (names.length !== 1) throw new EmlensError(`${file}: a steering solution holds exactly one blocks.L.hook_resid_post tensor (found ${names.length})`);
    const layer = Number(/^blocks\.(\d+)\./.exec(names[0]!)![1]);
    const v = readTensorF32(h.tensors.get(names[0]!)!);
    if (v.length !== model.spec.dModel) throw new EmlensError(`${file}: width ${v.length}, the model's d_model is ${model.spec.dModel}`);
    if (layer >= model.spec.nLayers) throw new EmlensError(`${file}: layer ${layer} is out of range for the model`);
    return { kind, layer, alpha, params: [v] };
  }
  if (kind !== 'lora-r1') throw new EmlensError(`${file}: unknown solution kind "${kind}"`);
  const a = [...h.tensors.keys()].find((n) => n.endsWith('.lora_A.weight'));
  const b = [...h.tensors.keys()].find((n) => n.endsWith('.lora_B.weight'));
  const m = a && /layers\.(\d+)\.mlp\.down_proj/.exec(a);
  if (!a || !b || !m) throw new EmlensError(`${file}: no mlp.down_proj lora_A/lora_B tensors`);
  const A = readTensorF32(h.tensors.get(a)!);
  const B = readTensorF32(h.tensors.get(b)!);
  if (A.length !== model.spec.ffn || B.length !== model.spec.dModel) throw new EmlensError(`${file}: adapter shapes do not fit the model`);
  const layer = Number(m[1]);
  if (layer >= model.spec.nLayers) throw new EmlensError(`${file}: layer ${layer} is out of range for the model`);
  return { kind, layer, alpha, params: [A, B], lora: loraShapeOf(model, 'lora-r1', layer, undefined) };
}
