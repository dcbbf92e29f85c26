/** The loss-curve report every `emlens train` run writes next to (or inside) its output. */
import { scatterLines } from '../viz/figures.js';
import { renderReport, type Provenance } from '../viz/report.js';
import type { StepLog, TrainConfig } from '../train/trainer.js';

export function trainReportHtml(o: { out: string; config: TrainConfig; history: StepLog[]; provenance: Provenance; resumedFrom: number }): string {
  const h = o.history;
  const steps = h.map((x) => x.step);
  const withKl = h.some((x) => x.kl !== null);
  const lossSeries = [
    { name: 'loss', x: steps, y: h.map((x) => x.loss) },
    ...(withKl ? [{ name: 'ce', x: steps, y: h.map((x) => x.ce) }, { name: `λ·kl (λ = ${o.config.klLambda})`, x: steps, y: h.map((x) => o.config.klLambda * (x.kl ?? NaN)) }] : []),
  ];
  const first = h[0];
  const last = h[h.length - 1];
  const what = o.config.kind === 'lora' ? `LoRA rank ${o.config.lora!.rank}` : o.config.kind === 'lora-r1' ? `rank-1 LoRA, layer ${o.config.layer} down_proj` : `steering vector at layer ${o.config.layer}`;
  return renderReport({
    title: `Training: ${what}`,
    subtitle: o.out,
    blocks: [
      { kind: 'heading', text: 'Loss' },
      {
        kind: 'figure',
        id: 'loss',
        title: 'Loss per step',
        figure: scatterLines(lossSeries, { title: withKl ? 'CE + λ·KL per step' : 'CE per step', xTitle: 'step', yTitle: 'loss (nats per scored token)' }),
        caption: 'Each point is the loss of that step\'s batch before its update (CE over its scored tokens, KL over the KL rows\' tokens).',
      },
      {
        kind: 'table',
        columns: ['', 'step', 'loss', 'ce', 'kl', 'grad norm', '‖θ‖'],
        rows: [first, last].filter((x): x is StepLog => x !== undefined).map((x, i) => [i === 0 ? 'first' : 'last', x.step, x.loss, x.ce, x.kl, x.gradNorm, x.norm]),
        caption: o.resumedFrom ? `Resumed from step ${o.resumedFrom}; the history includes the steps before it.` : undefined,
      },
      { kind: 'heading', text: 'Optimiser' },
      { kind: 'figure', id: 'grad-norm', title: 'Gradient norm', figure: scatterLines([{ name: 'grad norm', x: steps, y: h.map((x) => x.gradNorm) }], { title: '‖∇θ loss‖ per step', xTitle: 'step', yTitle: 'gradient norm' }) },
      { kind: 'figure', id: 'lr', title: 'Learning rate', figure: scatterLines([{ name: 'lr', x: steps, y: h.map((x) => x.lr) }], { title: 'learning rate per step (warmup, then linear decay)', xTitle: 'step', yTitle: 'lr' }) },
      { kind: 'figure', id: 'norm', title: 'Norm of the solution', figure: scatterLines([{ name: '‖θ‖', x: steps, y: h.map((x) => x.norm) }], { title: '‖θ‖ after each step (without α or scale)', xTitle: 'step', yTitle: '‖θ‖' }) },
    ],
    provenance: [o.provenance],
  });
}
