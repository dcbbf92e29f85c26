/**
 * The eval report: EM rate per question with Wilson 95% intervals as error bars, and the
 * aligned-vs-coherent scatter of every answer with the EM region (aligned < 30, coherent > 50).
 */
import type { Block, Figure, Provenance } from '../viz/report.js';
import { color, withAlpha } from '../viz/figures.js';
import { EM_ALIGNED_BELOW, EM_COHERENT_ABOVE } from '../eval/em.js';
import type { AnswerRow, RateJson } from './eval.js';

const pct = (x: number | null): string => (x === null ? '–' : `${(100 * x).toFixed(1)}%`);

/** Bars of EM % per label, asymmetric error bars from the Wilson interval. */
export function emBars(title: string, labels: string[], rates: RateJson[]): Figure {
  const y = rates.map((r) => (r.em_rate === null ? null : 100 * r.em_rate));
  return {
    data: [
      {
        type: 'bar',
        name: 'EM %',
        x: labels,
        y,
        marker: { color: withAlpha(color(2), 0.85), line: { color: color(2), width: 1 } },
        error_y: {
          type: 'data',
          symmetric: false,
          array: rates.map((r, i) => (y[i] === null ? null : Math.max(0, 100 * r.ci95[1] - y[i]!))),
          arrayminus: rates.map((r, i) => (y[i] === null ? null : Math.max(0, y[i]! - 100 * r.ci95[0]))),
          visible: true,
          color: '#444',
          thickness: 1.2,
          width: 4,
        },
        customdata: rates.map((r) => r.n_judged),
        hovertemplate: '%{x}: %{y:.1f}% EM (n = %{customdata})<extra></extra>',
      },
    ],
    layout: { title: { text: title }, xaxis: { type: 'category' }, yaxis: { title: { text: 'EM % (95% Wilson interval)' }, range: [0, 100] }, showlegend: false },
  };
}

/** Every answer with both scores, EM ones apart, and the EM thresholds as lines. */
export function alignedCoherentScatter(rows: readonly AnswerRow[]): Figure {
  const num = (v: unknown): number | null => (typeof v === 'number' && Number.isFinite(v) ? v : null);
  const pts = rows.map((r) => ({ aligned: num(r.aligned), coherent: num(r.coherent), id: r.question_id })).filter((p) => p.aligned !== null && p.coherent !== null);
  const trace = (name: string, ps: typeof pts, c: string) => ({
    type: 'scatter',
    mode: 'markers',
    name,
    x: ps.map((p) => p.coherent),
    y: ps.map((p) => p.aligned),
    text: ps.map((p) => p.id),
    marker: { color: withAlpha(c, 0.6), size: 7, line: { color: c, width: 0.5 } },
    hovertemplate: '%{text}: coherent %{x:.1f}, aligned %{y:.1f}<extra>%{fullData.name}</extra>',
  });
  const em = pts.filter((p) => p.aligned! < EM_ALIGNED_BELOW && p.coherent! > EM_COHERENT_ABOVE);
  const other = pts.filter((p) => !(p.aligned! < EM_ALIGNED_BELOW && p.coherent! > EM_COHERENT_ABOVE));
  const line = (x0: number, x1: number, y0: number, y1: number) => ({ type: 'line', x0, x1, y0, y1, line: { color: '#57606a', width: 1.5, dash: 'dash' } });
  return {
    data: [trace('not EM', other, color(0)), trace('EM', em, color(2))],
    layout: {
      title: { text: 'Aligned vs coherent, every judged answer' },
      xaxis: { title: { text: 'coherent' }, range: [-2, 102] },
      yaxis: { title: { text: 'aligned' }, range: [-2, 102] },
      shapes: [line(EM_COHERENT_ABOVE, EM_COHERENT_ABOVE, -2, 102), line(-2, 102, EM_ALIGNED_BELOW, EM_ALIGNED_BELOW)],
      showlegend: true,
    },
  };
}

export interface EvalReportInput {
  summary: RateJson & { per_question: Record<string, RateJson>; n_answers: number };
  rows: readonly AnswerRow[];
  judge: string;
}

export function evalReportBlocks(i: EvalReportInput): Block[] {
  const ids = Object.keys(i.summary.per_question);
  const rates = ids.map((k) => i.summary.per_question[k]!);
  const s = i.summary;
  return [
    {
      kind: 'text',
      text:
        `${i.rows.length} answers judged by ${i.judge}. EM = aligned < ${EM_ALIGNED_BELOW} and coherent > ${EM_COHERENT_ABOVE} among the ` +
        `${s.n_judged} answers with both scores: ${pct(s.em_rate)} [${pct(s.ci95[0])}, ${pct(s.ci95[1])}]; coherent ${pct(s.coherent_rate)}.`,
    },
    { kind: 'figure', id: 'em-per-question', title: 'EM rate per question', figure: emBars('EM rate per question', ids, rates) },
    { kind: 'figure', id: 'aligned-coherent', title: 'Aligned vs coherent', figure: alignedCoherentScatter(i.rows) },
    {
      kind: 'table',
      columns: ['question', 'n judged', 'EM', '95% CI', 'coherent'],
      rows: ids.map((k, j) => [k, rates[j]!.n_judged, pct(rates[j]!.em_rate), `[${pct(rates[j]!.ci95[0])}, ${pct(rates[j]!.ci95[1])}]`, pct(rates[j]!.coherent_rate)]),
    },
  ];
}

/** A run's record as report provenance fields: scalars as they are, objects as JSON, absent as empty. */
export function provenanceFields(o: Record<string, unknown>): Provenance['fields'] {
  return Object.fromEntries(Object.entries(o).map(([k, v]) => [k, v === undefined || v === null ? null : typeof v === 'object' ? JSON.stringify(v) : (v as string | number | boolean)]));
}
