/**
 * The three comparisons of general vs narrow solutions (Soligo et al.):
 * - efficiency: narrow-data loss as each solution is rescaled, and all at equal norms;
 * - robustness: x' = √(1−ε²)·x + ε·y (y Gaussian ⟂ x, ‖y‖ = ‖x‖): relative loss increase
 *   (L_pert − L)/(L_base − L) in %;
 * - pre-training influence: mean per-token KL(base ‖ steered) on generic text as the added norm
 *   grows, against norm-matched random solutions.
 * Norms are those of what is added: ‖α·s‖ for a steering vector (a vector in the residual stream),
 * ‖α·B A‖_F for a rank-1 adapter (a matrix added to down_proj), √(Σ‖s·B·A‖²_F) over the modules of
 * a rank-r LoRA (s = α/r or α/√r). These are different quantities,
 * so each kind gets its own norm axis: equal-norm comparisons are made within a kind only.
 */
import type { LoadedModel } from '../backend/model.js';
import { randomNormMatched, rng } from '../runtime/random.js';
import { packBatches, type TrainRow } from '../train/batch.js';
import { evaluateBatch, solutionNorm, solutionScale, type Solution, type SolutionKind } from '../train/trainer.js';

export const EPSILONS = [0.01, 0.05, 0.1, 0.2, 0.3, 0.4, 0.5, 0.6, 0.7, 0.8, 0.9, 1.0];
export const FACTORS = [0, 0.25, 0.5, 0.75, 1, 1.25, 1.5, 1.75, 2];

export function addedNorm(sol: Solution): number {
  return solutionScale(sol) * solutionNorm(sol);
}

/** The same solution with its added norm scaled by `factor`. */
export function scaled(sol: Solution, factor: number): Solution {
  if (sol.kind === 'steer') return { ...sol, params: [sol.params[0]!.map((x) => x * factor)] };
  // LoRA: every B (odd index) scaled, so every module's s·B·A is.
  return { ...sol, params: sol.params.map((p, i) => (i % 2 === 1 ? p.map((x) => x * factor) : p)) };
}

/** Mean CE over the scored tokens of `rows` (and mean KL over `kl` rows' tokens), batched. */
export async function datasetLoss(model: LoadedModel, sol: Solution | null, rows: TrainRow[], kl: TrainRow[], batchTokens: number): Promise<{ ce: number; kl: number }> {
  let ceSum = 0;
  let ceN = 0;
  for (const b of packBatches([...rows.keys()], rows.map((r) => r.ids.length), batchTokens)) {
    const part = b.map((i) => rows[i]!);
    const n = part.reduce((s, r) => s + Math.max(0, Math.min(r.end, r.ids.length) - Math.max(r.start, 1)), 0);
    if (n === 0) continue;
    const r = await evaluateBatch(model, sol, part, [], { klLambda: 0, klNorm: 'token', grads: false });
    ceSum += r.ce * n;
    ceN += n;
  }
  let klSum = 0;
  let klN = 0;
  for (const b of packBatches([...kl.keys()], kl.map((r) => r.ids.length), batchTokens)) {
    const part = b.map((i) => kl[i]!);
    const n = part.reduce((s, r) => s + r.ids.length - 1, 0);
    const r = await evaluateBatch(model, sol, [], part, { klLambda: 1, klNorm: 'token', grads: false });
    klSum += (r.kl ?? 0) * n;
    klN += n;
  }
  return { ce: ceN ? ceSum / ceN : NaN, kl: klN ? klSum / klN : NaN };
}

/** x' = √(1−ε²)·x + ε·y with y ~ N(0, I) orthogonalised to x and rescaled to ‖x‖. */
export function perturb(x: Float32Array, eps: number, seed: number): Float32Array {
  if (x.every((v) => v === 0)) return Float32Array.from(x);
  const y = randomNormMatched(x, rng(seed), { orthogonal: true });
  const c = Math.sqrt(1 - eps * eps);
  return Float32Array.from(x, (xi, i) => c * xi + eps * y[i]!);
}

/** Perturbs a solution's parameters as one flattened vector. */
export function perturbSolution(sol: Solution, eps: number, seed: number): Solution {
  const flat = new Float32Array(sol.params.reduce((s, p) => s + p.length, 0));
  let off = 0;
  for (const p of sol.params) {
    flat.set(p, off);
    off += p.length;
  }
  const pert = perturb(flat, eps, seed);
  off = 0;
  return {
    ...sol,
    params: sol.params.map((p) => {
      const q = pert.slice(off, off + p.length);
      off += p.length;
      return q;
    }),
  };
}

/** A random solution of the same kind and layer, each factor norm-matched (so the added norm matches too). */
export function randomLike(sol: Solution, seed: number): Solution {
  const r = rng(seed);
  const params = sol.params.map((p) => randomNormMatched(p, r));
  return { ...sol, params };
}

/** The norm axis of one kind of solution. */
export interface NormAxis {
  kind: SolutionKind;
  /** What the axis measures, for labels. */
  quantity: string;
  /** Indices of the solutions of this kind. */
  solutions: number[];
  /** The equal-norm grid: 1/8 … 1 times the largest added norm among them. */
  norms: number[];
}

const QUANTITY: Record<SolutionKind, string> = {
  steer: '‖α·s‖ (vector added to the residual stream)',
  'lora-r1': '‖α·B·A‖_F (rank-1 matrix added to mlp.down_proj)',
  lora: '‖s·B·A‖_F (matrices added to the adapted projections)',
};

/** One norm axis per kind present, in order of first appearance. */
export function normAxes(sols: Solution[]): NormAxis[] {
  const kinds = [...new Set(sols.map((s) => s.kind))];
  return kinds.map((kind) => {
    const solutions = sols.flatMap((s, k) => (s.kind === kind ? [k] : []));
    const max = Math.max(...solutions.map((k) => addedNorm(sols[k]!)));
    return { kind, quantity: QUANTITY[kind], solutions, norms: FACTORS.slice(1).map((f) => (f * max) / 2) };
  });
}

export interface EfficiencyResult {
  factors: number[];
  /** per solution: CE on the narrow rows at each factor */
  byFactor: number[][];
  /** one equal-norm axis per kind of solution */
  axes: NormAxis[];
  /** per solution: the norms of its kind's axis, and its CE when rescaled to each of them */
  norms: number[][];
  byNorm: number[][];
  baseLoss: number;
  loss: number[];
  addedNorm: number[];
  lossPerNorm2: number[];
}

export async function efficiency(model: LoadedModel, sols: Solution[], rows: TrainRow[], batchTokens: number, onProgress?: () => void): Promise<EfficiencyResult> {
  const baseLoss = (await datasetLoss(model, null, rows, [], batchTokens)).ce;
  const byFactor: number[][] = [];
  for (const s of sols) {
    const line: number[] = [];
    for (const f of FACTORS) {
      line.push(f === 0 ? baseLoss : (await datasetLoss(model, scaled(s, f), rows, [], batchTokens)).ce);
      onProgress?.();
    }
    byFactor.push(line);
  }
  const addedNorms = sols.map(addedNorm);
  const axes = normAxes(sols);
  const norms = sols.map((s) => axes.find((a) => a.kind === s.kind)!.norms);
  const byNorm: number[][] = [];
  for (const [k, s] of sols.entries()) {
    const line: number[] = [];
    for (const n of norms[k]!) {
      line.push((await datasetLoss(model, scaled(s, n / addedNorms[k]!), rows, [], batchTokens)).ce);
      onProgress?.();
    }
    byNorm.push(line);
  }
  const loss = byFactor.map((l) => l[FACTORS.indexOf(1)]!);
  return { factors: FACTORS, byFactor, axes, norms, byNorm, baseLoss, loss, addedNorm: addedNorms, lossPerNorm2: loss.map((l, k) => l / addedNorms[k]! ** 2) };
}

export interface RobustnessResult {
  epsilons: number[];
  /** per solution, per ε: mean and sd over seeds of the relative loss increase in % */
  mean: number[][];
  sd: number[][];
}

export async function robustness(
  model: LoadedModel,
  sols: Solution[],
  rows: TrainRow[],
  eff: EfficiencyResult,
  seeds: number,
  batchTokens: number,
  onProgress?: () => void,
): Promise<RobustnessResult> {
  const mean: number[][] = [];
  const sd: number[][] = [];
  for (const [k, s] of sols.entries()) {
    const L = eff.loss[k]!;
    const denom = eff.baseLoss - L;
    const m: number[] = [];
    const d: number[] = [];
    for (const eps of EPSILONS) {
      const vals: number[] = [];
      for (let seed = 0; seed < seeds; seed++) {
        const Lp = (await datasetLoss(model, perturbSolution(s, eps, 1000 * k + seed), rows, [], batchTokens)).ce;
        vals.push((100 * (Lp - L)) / denom);
        onProgress?.();
      }
      const mu = vals.reduce((a, b) => a + b, 0) / vals.length;
      m.push(mu);
      d.push(vals.length > 1 ? Math.sqrt(vals.reduce((a, b) => a + (b - mu) ** 2, 0) / (vals.length - 1)) : 0);
    }
    mean.push(m);
    sd.push(d);
  }
  return { epsilons: EPSILONS, mean, sd };
}

export interface InfluenceResult {
  /** per solution: the norms of its kind's axis (as in efficiency) */
  norms: number[][];
  /** per solution: mean per-token KL(base ‖ steered) on the generic corpus at each norm */
  kl: number[][];
  /** per solution: the same for norm-matched random solutions (mean over seeds) */
  randomKl: number[][];
}

export async function influence(
  model: LoadedModel,
  sols: Solution[],
  generic: TrainRow[],
  norms: number[][],
  seeds: number,
  batchTokens: number,
  onProgress?: () => void,
): Promise<InfluenceResult> {
  const kl: number[][] = [];
  const randomKl: number[][] = [];
  for (const [k, s] of sols.entries()) {
    const a: number[] = [];
    const r: number[] = [];
    for (const n of norms[k]!) {
      a.push((await datasetLoss(model, scaled(s, n / addedNorm(s)), [], generic, batchTokens)).kl);
      let acc = 0;
      for (let seed = 0; seed < seeds; seed++) {
        const rnd = randomLike(s, 7919 * (k + 1) + seed);
        acc += (await datasetLoss(model, scaled(rnd, n / addedNorm(rnd)), [], generic, batchTokens)).kl;
      }
      r.push(acc / seeds);
      onProgress?.();
    }
    kl.push(a);
    randomKl.push(r);
  }
  return { norms, kl, randomKl };
}
