/** `emlens measure`: efficiency, robustness and pre-training influence of solutions, as one report. */
import { basename } from 'node:path';
import { EmlensError } from '../errors.js';
import type { LoadedModel } from '../backend/model.js';
import { readJsonl } from '../data/rows.js';
import { readSafetensorsHeader } from '../io/safetensors/header.js';
import { sha256File } from '../model/fingerprint.js';
import { klRow, narrowRow } from '../train/batch.js';
import { readSolution, solutionFiles, type Solution, type SolutionKind } from '../train/trainer.js';
import { releasingObjectiveSessions } from '../train/run-objective.js';
import { efficiency, influence, robustness, EPSILONS, type EfficiencyResult, type InfluenceResult, type NormAxis, type RobustnessResult } from '../measure/measures.js';
import { scatterLines } from '../viz/figures.js';
import type { Block, Provenance, Report } from '../viz/report.js';
import { VERSION } from '../version.js';

export interface MeasureRequest {
  solutions: string[];
  data: string;
  generic?: string;
  /** Rows of each set used; the sets must hold that many. Absent: the first 100 (the paper's), or all if fewer. */
  n?: number;
  seeds: number;
  batchTokens: number;
  onProgress?: (done: number, total: number) => void;
}

export interface MeasureResult {
  names: string[];
  efficiency: EfficiencyResult;
  robustness: RobustnessResult;
  influence: InfluenceResult | null;
  report: Report;
}

const KIND_NAME: Record<SolutionKind, string> = { steer: 'steering vectors', 'lora-r1': 'rank-1 LoRA adapters', lora: 'LoRA adapters' };
const NORM_OF: Record<SolutionKind, string> = { steer: '‖α·s‖', 'lora-r1': '‖α·B·A‖_F', lora: '‖s·B·A‖_F' };

/** Rows of each set used when --n is not given (the paper's 100). */
export const DEFAULT_ROWS = 100;

export async function runMeasure(model: LoadedModel, req: MeasureRequest): Promise<MeasureResult> {
  const tok = model.tokenizer;
  if (!tok) throw new EmlensError(`${model.dir}: no tokenizer.json`);
  if (req.solutions.length === 0) throw new EmlensError('--solutions needs at least one file');
  const sols: Solution[] = req.solutions.map((f) => readSolution(f, model));
  sols.forEach((s, i) => {
    if (s.params.every((p) => p.every((x) => x === 0))) throw new EmlensError(`${req.solutions[i]}: the solution is all zeros`);
  });
  const names = req.solutions.map((f) => basename(f).replace(/\.safetensors$/, ''));
  names.forEach((n, i) => {
    if (names.indexOf(n) !== i) throw new EmlensError(`--solutions: ${req.solutions[names.indexOf(n)]} and ${req.solutions[i]} share the name "${n}" in the report; rename one`);
  });
  const narrowSet = readJsonl(req.data);
  const genericSet = req.generic ? readJsonl(req.generic) : null;
  for (const set of [narrowSet, genericSet]) {
    if (set && req.n !== undefined && set.rows.length < req.n) throw new EmlensError(`--n ${req.n}: ${set.file} has only ${set.rows.length} rows`);
  }
  const n = req.n ?? DEFAULT_ROWS;
  const rows = narrowSet.rows.slice(0, n).map((r) => narrowRow(tok, r, `${req.data}:${r.line}`));
  const generic = genericSet ? genericSet.rows.slice(0, n).map((r) => klRow(tok, r, `${req.generic}:${r.line}`)) : [];

  const total = sols.length * (9 + 8 + EPSILONS.length * req.seeds + (generic.length ? 8 : 0));
  let done = 0;
  const tick = () => req.onProgress?.(++done, total);
  const { eff, rob, inf } = await releasingObjectiveSessions(model, async () => {
    const eff = await efficiency(model, sols, rows, req.batchTokens, tick);
    const rob = await robustness(model, sols, rows, eff, req.seeds, req.batchTokens, tick);
    const inf = generic.length ? await influence(model, sols, generic, eff.norms, req.seeds, req.batchTokens, tick) : null;
    return { eff, rob, inf };
  });

  // One equal-norm figure per kind: ‖α·s‖ and ‖α·B·A‖_F are different quantities.
  const perKind = (id: string, title: string, a: NormAxis, series: (k: number) => { name: string; x: number[]; y: number[] }[], yTitle: string, caption: string): Block => ({
    kind: 'figure',
    id: eff.axes.length > 1 ? `${id}-${a.kind}` : id,
    title: eff.axes.length > 1 ? `${title}: ${KIND_NAME[a.kind]}` : title,
    figure: scatterLines(a.solutions.flatMap(series), { title: '', xTitle: a.quantity, yTitle }),
    caption,
  });
  const mixed = eff.axes.length > 1 ? ' Steering vectors and adapters add different quantities, so each kind has its own axis.' : '';
  const blocks: Block[] = [
    { kind: 'heading', text: 'Solutions' },
    {
      kind: 'table',
      columns: ['solution', 'kind', 'layer', 'alpha', 'added norm', 'norm of', 'L(θ)', 'L(θ)/‖θ‖²', 'L base', 'robustness @ε=0.5 (%)', inf ? 'KL @ max norm of its kind' : 'KL'],
      rows: sols.map((s, k) => [
        names[k]!,
        s.kind === 'lora' ? `lora r${s.lora!.rank}` : s.kind,
        s.kind === 'lora' ? [...new Set(s.lora!.targets.map((t) => t.layer))].join(',') : s.layer,
        s.alpha,
        eff.addedNorm[k]!,
        NORM_OF[s.kind],
        eff.loss[k]!,
        eff.lossPerNorm2[k]!,
        eff.baseLoss,
        rob.mean[k]![EPSILONS.indexOf(0.5)]!,
        inf ? inf.kl[k]![inf.kl[k]!.length - 1]! : null,
      ]),
      caption: `Loss = mean cross-entropy over the scored tokens (responses of chat rows, every token after the first of text rows) of the first ${rows.length} rows of ${req.data}. Norms are those of what is added: ‖α·s‖ for a steering vector, ‖α·B·A‖_F for a rank-1 adapter, ‖s·B·A‖_F over its modules for a LoRA adapter folder; compare norms and L(θ)/‖θ‖² within a kind only.`,
    },
    { kind: 'heading', text: 'Efficiency' },
    {
      kind: 'figure',
      id: 'efficiency-factor',
      title: 'Narrow loss as each solution is rescaled',
      figure: scatterLines(sols.map((_, k) => ({ name: names[k]!, x: eff.factors, y: eff.byFactor[k]! })), { title: '', xTitle: 'scale factor (1 = as trained)', yTitle: 'loss on narrow data' }),
    },
    ...eff.axes.map((a) =>
      perKind('efficiency-norm', 'Narrow loss at equal norms', a, (k) => [{ name: names[k]!, x: eff.norms[k]!, y: eff.byNorm[k]! }], 'loss on narrow data', `A more efficient solution reaches lower loss at the same norm.${mixed}`),
    ),
    { kind: 'heading', text: 'Robustness' },
    {
      kind: 'figure',
      id: 'robustness',
      title: 'Relative loss increase under perturbation',
      figure: scatterLines(sols.map((_, k) => ({ name: names[k]!, x: rob.epsilons, y: rob.mean[k]!, yErr: rob.sd[k]! })), {
        title: '',
        xTitle: 'ε  (x′ = √(1−ε²)·x + ε·y, y ⟂ x, ‖y‖ = ‖x‖)',
        yTitle: '(L_pert − L)/(L_base − L), %',
      }),
      caption: `Mean ± sd over ${req.seeds} seeds. Lower is more robust.`,
    },
  ];
  if (inf) {
    blocks.push(
      { kind: 'heading', text: 'Pre-training influence' },
      ...eff.axes.map((a) =>
        perKind(
          'influence',
          'KL(base ‖ steered) on generic text',
          a,
          (k) => [
            { name: names[k]!, x: inf.norms[k]!, y: inf.kl[k]! },
            { name: `${names[k]} (random, norm-matched)`, x: inf.norms[k]!, y: inf.randomKl[k]! },
          ],
          'mean per-token KL',
          `Mean per-token KL over ${generic.length} rows of ${req.generic} (no chat template), against random solutions of the same kind and norm (${req.seeds} seeds).${mixed}`,
        ),
      ),
    );
  } else {
    blocks.push({ kind: 'text', text: 'Pre-training influence was not measured: pass --generic TEXT.jsonl (generic text rows) to add it.' });
  }
  const weightsSha = model.weightsSha256();
  const provenance: Provenance[] = [
    { label: 'model', fields: { source: model.source, folder: model.dir, adapter: model.adapter?.dir ?? null, family: model.spec.family, weights_sha256: weightsSha } },
    ...req.solutions.map((f) => {
      const sf = solutionFiles(f);
      return { label: `solution ${basename(f)}`, fields: { path: f, sha256: sha256File(sf.tensors), ...(sf.config ? { config_sha256: sha256File(sf.config) } : {}), ...readSafetensorsHeader(sf.tensors).metadata } };
    }),
    { label: 'narrow data', fields: { path: req.data, sha256: narrowSet.sha256, rows_used: rows.length } },
    ...(genericSet ? [{ label: 'generic text', fields: { path: req.generic!, sha256: genericSet.sha256, rows_used: generic.length } }] : []),
    { label: 'parameters', fields: { seeds: req.seeds, batch_tokens: req.batchTokens, emlens_version: VERSION } },
  ];
  const report: Report = { title: 'General vs narrow solutions', subtitle: `${model.source} · ${sols.length} solutions`, blocks, provenance };
  return { names, efficiency: eff, robustness: rob, influence: inf, report };
}
