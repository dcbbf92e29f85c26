/**
 * `emlens train`: read the narrow and KL sets, train, write the solution with its provenance, its
 * loss history (JSONL) and a loss-curve report (HTML): OUT.history.jsonl and OUT.report.html
 * beside a solution file, history.jsonl and report.html inside a lora adapter folder.
 */
import { resolve } from 'node:path';
import type { LoadedModel } from '../backend/model.js';
import { EmlensError } from '../errors.js';
import { readJsonl } from '../data/rows.js';
import { VERSION } from '../version.js';
import { klRow, narrowRow } from '../train/batch.js';
import { trainSolution, writeSolution, type StepLog, type TrainConfig, type TrainResult } from '../train/trainer.js';
import { historyJsonl } from '../train/history.js';
import { trainReportHtml } from './train-report.js';

export interface TrainRequest {
  data: string;
  klData?: string;
  out: string;
  resume?: boolean;
  /** Replace an existing OUT and discard an earlier run's checkpoint. */
  overwrite?: boolean;
  referenceCe?: boolean;
  config: TrainConfig;
  onStep?: (log: StepLog, total: number) => void;
}

/** Progress on stderr: a line every few seconds (and the last step). */
function stepPrinter(): (log: StepLog, total: number) => void {
  let last = 0;
  return (log, total) => {
    const now = Date.now();
    if (now - last < 3000 && log.step < total && log.step > 1) return;
    last = now;
    process.stderr.write(
      `train: step ${log.step}/${total} loss ${log.loss.toFixed(4)} ce ${log.ce.toFixed(4)}${log.kl !== null ? ` kl ${log.kl.toExponential(3)}` : ''} grad ${log.gradNorm.toExponential(2)} norm ${log.norm.toFixed(4)} lr ${log.lr.toExponential(2)}\n`,
    );
  };
}

/** Below this relative change of the first batch's loss, training is reported as having learned nothing. */
export const STALLED_BELOW = 0.01;

/** One line when training did not move the loss (e.g. lr or alpha far too small), else null. */
export function stalledWarning(r: TrainResult): string | null {
  const { before, after } = r.firstBatch;
  const rel = Math.abs(after - before) / Math.max(Math.abs(before), 1e-12);
  if (rel >= STALLED_BELOW) return null;
  return `training moved the loss of its first batch by only ${(100 * rel).toPrecision(2)}% (${before.toFixed(4)} → ${after.toFixed(4)}): it learned next to nothing; raise --lr or --${r.solution.kind === 'lora' ? 'lora-alpha' : 'alpha'}`;
}

export async function runTraining(model: LoadedModel, req: TrainRequest): Promise<TrainResult> {
  const tok = model.tokenizer;
  if (!tok) throw new EmlensError(`${model.dir}: no tokenizer.json; training needs the tokenizer`);
  const narrowSet = readJsonl(req.data);
  if (req.referenceCe && !narrowSet.rows.some((r) => r.kind === 'chat')) throw new EmlensError(`--reference-ce changes how chat rows are scored; ${req.data} has none (text rows are scored on every token anyway)`);
  const narrow = narrowSet.rows.map((r) => narrowRow(tok, r, `${req.data}:${r.line}`, req.referenceCe));
  const klSet = req.klData ? readJsonl(req.klData) : null;
  const kl = klSet ? klSet.rows.map((r) => klRow(tok, r, `${req.klData}:${r.line}`)) : [];
  const weightsSha = model.weightsSha256();
  const dataKey = `${weightsSha}:${narrowSet.sha256}:${klSet?.sha256 ?? ''}:${req.referenceCe ? 'refce' : ''}`;
  const r = await trainSolution(model, narrow, kl, req.config, req.out, { resume: req.resume, overwrite: req.overwrite, dataKey, onStep: req.onStep ?? stepPrinter() });
  const last = r.history[r.history.length - 1];
  const metadata: Record<string, string> = {
    emlens_version: VERSION,
    created: new Date().toISOString(),
    model: model.source,
    adapter: model.adapter ? resolve(model.adapter.dir) : '',
    weights_sha256: weightsSha,
    method: req.config.klLambda > 0 ? 'narrow (CE + KL)' : 'general (CE)',
    data: req.data,
    data_sha256: narrowSet.sha256,
    kl_data: req.klData ?? '',
    kl_data_sha256: klSet?.sha256 ?? '',
    ce_on: req.referenceCe ? 'all tokens (reference)' : 'response tokens of chat rows, every token after the first of text rows',
    hyperparameters: JSON.stringify(req.config),
    final_loss: String(last?.loss ?? ''),
    final_ce: String(last?.ce ?? ''),
    final_kl: String(last?.kl ?? ''),
    steps: String(r.history.length),
  };
  const report = trainReportHtml({ out: req.out, config: req.config, history: r.history, resumedFrom: r.resumedFrom, provenance: { label: req.out, fields: metadata } });
  writeSolution(req.out, model, r.solution, metadata, { history: historyJsonl(r.history), report });
  return r;
}
