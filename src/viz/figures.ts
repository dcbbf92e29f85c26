/**
 * Plotly figure builders for the reports of compare / stability / project / measure: plain JSON
 * (no plotly.js needed in Node), with the look set once here and in report.ts.
 */
import { EmlensError } from '../errors.js';
import type { Figure } from './report.js';

/** Colour-blind-friendly categorical palette (Tableau 10). */
export const PALETTE = ['#4e79a7', '#f28e2b', '#e15759', '#76b7b2', '#59a14f', '#edc948', '#b07aa1', '#ff9da7', '#9c755f', '#bab0ac'];

export function color(i: number): string {
  return PALETTE[((i % PALETTE.length) + PALETTE.length) % PALETTE.length]!;
}

/**
 * Line dash and marker per series index, cycling at other periods than the colours, so lines that
 * coincide (two files with the same vectors) still show both, and 10+ series stay distinct.
 */
export const DASHES = ['solid', 'dash', 'dot', 'dashdot', 'longdash', 'longdashdot'];
export const SYMBOLS = ['circle', 'square', 'diamond', 'triangle-up', 'x', 'triangle-down', 'cross', 'star'];

export function lineStyle(i: number): { color: string; dash: string; symbol: string } {
  return { color: color(i), dash: DASHES[i % DASHES.length]!, symbol: SYMBOLS[i % SYMBOLS.length]! };
}

/** Asymmetric Plotly error bars from interval bounds around the values (null where unknown). */
function intervalBars(values: ArrayLike<number>, lo: ArrayLike<number>, hi: ArrayLike<number>, c: string): object {
  const up: (number | null)[] = [];
  const down: (number | null)[] = [];
  for (let k = 0; k < values.length; k++) {
    const v = values[k]!;
    up.push(Number.isFinite(v) && Number.isFinite(hi[k]!) ? Math.max(0, hi[k]! - v) : null);
    down.push(Number.isFinite(v) && Number.isFinite(lo[k]!) ? Math.max(0, v - lo[k]!) : null);
  }
  return { type: 'data', symmetric: false, array: up, arrayminus: down, visible: true, color: withAlpha(c, 0.8), thickness: 1.3, width: 4 };
}

/** '#4e79a7', 0.2 -> 'rgba(78,121,167,0.2)' */
export function withAlpha(hex: string, alpha: number): string {
  const n = parseInt(hex.slice(1), 16);
  return `rgba(${(n >> 16) & 255},${(n >> 8) & 255},${n & 255},${alpha})`;
}

/**
 * Diverging scale for signed similarities (ColorBrewer RdBu): blue for negative, white at the
 * middle, red for positive. Plotly's named 'RdBu' runs blue to red through grey instead.
 */
export const DIVERGING: [number, string][] = [
  [0, '#053061'],
  [0.1, '#2166ac'],
  [0.2, '#4393c3'],
  [0.3, '#92c5de'],
  [0.4, '#d1e5f0'],
  [0.5, '#f7f7f7'],
  [0.6, '#fddbc7'],
  [0.7, '#f4a582'],
  [0.8, '#d6604d'],
  [0.9, '#b2182b'],
  [1, '#67001f'],
];

/** A horizontal reference line (chance AUROC 0.5, cosine 0...). */
export interface RefLine {
  y: number;
  label?: string;
}

function title(text: string): { text: string } {
  return { text };
}

function num(v: number): number | null {
  return Number.isFinite(v) ? v : null;
}

function arr(v: ArrayLike<number>): (number | null)[] {
  return Array.from(v, num);
}

function checkLen(what: string, got: number, want: number): void {
  if (got !== want) throw new EmlensError(`${what}: ${got} values for ${want} points`);
}

/**
 * Sideways offsets, so the error bars of several series at the same x do not sit on each other:
 * series i of k moves by (i - (k - 1) / 2) * step (times x on a log axis). The legend says so.
 */
function dodge(i: number, k: number, step: number, log: boolean): (x: number) => number {
  const o = (i - (k - 1) / 2) * step;
  return log ? (x) => x * Math.exp(o) : (x) => x + o;
}
const DODGE_NOTE = { title: { text: 'points offset sideways so intervals do not overlap', font: { size: 11, color: '#6e7781' } } };

/** Past this many series a legend goes to the right, one entry a line, instead of wrapping above the plot. */
const SIDE_LEGEND = 6;

function legendFor(n: number): { legend?: object } {
  return n > SIDE_LEGEND ? { legend: { orientation: 'v', x: 1.02, xanchor: 'left', y: 1, yanchor: 'top' } } : {};
}

/** Two `{ legend }` fragments as one. */
function merge2(a: { legend?: object }, b: { legend?: object }): { legend?: object } {
  return a.legend || b.legend ? { legend: { ...a.legend, ...b.legend } } : {};
}

function refLineShapes(lines: RefLine[] | undefined): { shapes: object[]; annotations: object[] } {
  const shapes: object[] = [];
  const annotations: object[] = [];
  for (const l of lines ?? []) {
    shapes.push({ type: 'line', xref: 'paper', x0: 0, x1: 1, yref: 'y', y0: l.y, y1: l.y, line: { color: '#57606a', width: 1.5, dash: 'dash' }, layer: 'between' });
    if (l.label) annotations.push({ xref: 'paper', x: 1, xanchor: 'right', yref: 'y', y: l.y, yanchor: 'bottom', text: l.label, showarrow: false, font: { size: 11, color: '#6e7781' } });
  }
  return { shapes, annotations };
}

/** Integer layer axis: ticks every layer up to ~24, then every 2, 4, 5, 10...; half a layer of margin. */
function layerAxis(layers: number[]): { dtick?: number; range?: [number, number] } {
  if (layers.length === 0) return {};
  const lo = Math.min(...layers);
  const hi = Math.max(...layers);
  const span = hi - lo;
  const range: [number, number] = [lo - 0.5, hi + 0.5];
  for (const d of [1, 2, 4, 5, 10, 20, 25, 50, 100]) if (span / d <= 24) return { dtick: d, range };
  return { range };
}

/**
 * Values by layer, one line per series, each with its own colour, dash and marker; a series with
 * `lo` and `hi` gets error bars from lo to hi at every layer and a light band between them (a
 * lower edge, then an upper edge filled 'tonexty' down to it, then the line on top).
 */
export function lineByLayer(
  series: { name: string; layers: number[]; values: number[]; lo?: number[]; hi?: number[] }[],
  opts: { title: string; yTitle: string; yRange?: [number, number]; xTitle?: string; refLines?: RefLine[] },
): Figure {
  const data: object[] = [];
  const withBars = series.filter((s) => s.lo && s.hi).length;
  series.forEach((s, i) => {
    checkLen(`lineByLayer "${s.name}" values`, s.values.length, s.layers.length);
    const { color: c, dash, symbol } = lineStyle(i);
    const group = `s${i}`;
    if ((s.lo === undefined) !== (s.hi === undefined)) throw new EmlensError(`lineByLayer "${s.name}": give both lo and hi for a band, or neither`);
    // Several series with error bars: each moved sideways a little (the hover shows the real layer).
    const xs = withBars > 1 ? s.layers.map(dodge(i, series.length, Math.min(0.2, 0.5 / series.length), false)) : s.layers;
    if (s.lo && s.hi) {
      checkLen(`lineByLayer "${s.name}" lo`, s.lo.length, s.layers.length);
      checkLen(`lineByLayer "${s.name}" hi`, s.hi.length, s.layers.length);
      const edge = { type: 'scatter', mode: 'lines', x: xs, line: { width: 0, color: c }, showlegend: false, legendgroup: group, hoverinfo: 'skip' };
      data.push({ ...edge, name: `${s.name} (lower)`, y: arr(s.lo) });
      data.push({ ...edge, name: `${s.name} (upper)`, y: arr(s.hi), fill: 'tonexty', fillcolor: withAlpha(c, 0.1) });
    }
    const bars = s.lo && s.hi ? { error_y: intervalBars(s.values, s.lo, s.hi, c) } : {};
    // customdata: [lo, hi, the real layer] (the drawn x may be offset)
    const custom = s.layers.map((l, k) => [s.lo ? num(s.lo[k]!) : null, s.hi ? num(s.hi[k]!) : null, l]);
    data.push({
      type: 'scatter',
      mode: s.layers.length > 60 ? 'lines' : 'lines+markers',
      name: s.name,
      legendgroup: group,
      x: xs,
      y: arr(s.values),
      line: { color: c, width: 2.2, dash },
      marker: { color: c, size: 6, symbol },
      ...bars,
      customdata: custom,
      hovertemplate: `layer %{customdata[2]}: %{y:.4g}${s.lo && s.hi ? ' [%{customdata[0]:.4g}, %{customdata[1]:.4g}]' : ''}<extra>%{fullData.name}</extra>`,
    });
  });
  const ref = refLineShapes(opts.refLines);
  return {
    data,
    layout: {
      title: title(opts.title),
      xaxis: { title: title(opts.xTitle ?? 'layer'), ...layerAxis(series.flatMap((s) => s.layers)), zeroline: false },
      yaxis: { title: title(opts.yTitle), ...(opts.yRange ? { range: opts.yRange } : {}) },
      hovermode: withBars > 1 ? 'closest' : 'x unified',
      showlegend: series.length > 1,
      ...merge2(legendFor(series.length), withBars > 1 ? { legend: DODGE_NOTE } : {}),
      shapes: ref.shapes,
      annotations: ref.annotations,
    },
  };
}

/** Labels made unique (`a`, `a (2)`) so Plotly's category axes do not merge rows. */
function uniqueLabels(labels: string[]): string[] {
  const seen = new Map<string, number>();
  return labels.map((l) => {
    const n = (seen.get(l) ?? 0) + 1;
    seen.set(l, n);
    return n === 1 ? l : `${l} (${n})`;
  });
}

/**
 * A row-major matrix (rows = rowLabels) as a heatmap, first row at the top. With negative values
 * (zmin < 0) the default colour scale is diverging and centred on 0; otherwise Viridis. Matrices up
 * to 15 x 15 show their values in the cells.
 */
export function heatmap(
  m: ArrayLike<number>,
  rowLabels: string[],
  colLabels: string[],
  opts: { title: string; zmin?: number; zmax?: number; colorscale?: string; xTitle?: string; yTitle?: string; zTitle?: string },
): Figure {
  const R = rowLabels.length;
  const C = colLabels.length;
  if (m.length !== R * C) throw new EmlensError(`heatmap: ${m.length} values for ${R} x ${C} labels`);
  const z: (number | null)[][] = [];
  let lo = Infinity;
  let hi = -Infinity;
  for (let i = 0; i < R; i++) {
    const row: (number | null)[] = [];
    for (let j = 0; j < C; j++) {
      const v = num(m[i * C + j]!);
      row.push(v);
      if (v !== null) {
        lo = Math.min(lo, v);
        hi = Math.max(hi, v);
      }
    }
    z.push(row);
  }
  if (lo === Infinity) {
    lo = 0;
    hi = 1;
  }
  // Data on both sides of 0 and no range given: a range symmetric about 0, so white means 0.
  const sym = opts.zmin === undefined && opts.zmax === undefined && lo < 0 && hi > 0 ? Math.max(-lo, hi) : undefined;
  const zmin = opts.zmin ?? (sym !== undefined ? -sym : lo);
  const zmax = opts.zmax ?? (sym !== undefined ? sym : hi);
  const diverging = zmin < 0 && zmax > 0;
  const colorscale = opts.colorscale ?? (diverging ? DIVERGING : 'Viridis');
  const annotate = R <= 15 && C <= 15;
  // Rows tall enough for their labels up to 60 rows (a pair x layer heatmap of 10 files has 45),
  // and every label drawn: Plotly would otherwise drop every other one.
  const cellPx = R <= 8 ? 52 : R <= 20 ? 30 : R <= 60 ? 17 : 9;
  const height = Math.max(320, Math.min(R <= 60 ? 1200 : 760, R * cellPx + 130));
  const yLabels = uniqueLabels(rowLabels);
  const allTicks = R <= 60 ? { tickmode: 'array', tickvals: yLabels, ticktext: yLabels, tickfont: { size: R > 20 ? 11 : 13 } } : {};
  return {
    data: [
      {
        type: 'heatmap',
        z,
        x: uniqueLabels(colLabels),
        y: yLabels,
        zmin,
        zmax,
        colorscale,
        xgap: annotate ? 1 : 0,
        ygap: annotate ? 1 : 0,
        colorbar: { thickness: 14, outlinewidth: 0, ...(opts.zTitle ? { title: { text: opts.zTitle, side: 'right' } } : {}) },
        hovertemplate: '%{y} × %{x}: %{z:.4g}<extra></extra>',
        ...(annotate ? { texttemplate: '%{z:.2f}', textfont: { size: R <= 8 ? 12 : 10 } } : {}),
      },
    ],
    layout: {
      title: title(opts.title),
      height,
      xaxis: { type: 'category', title: title(opts.xTitle ?? ''), showgrid: false, showline: false, ticks: '', ...(C > 8 ? { tickangle: -45 } : {}) },
      yaxis: { type: 'category', title: title(opts.yTitle ?? ''), autorange: 'reversed', showgrid: false, showline: false, ticks: '', ...allTicks },
    },
  };
}

/**
 * Overlaid, semi-transparent histograms of each group over shared bins (binned here, so a
 * million projections cost as little page as a hundred), with each group's mean as a dashed line.
 */
export function histograms(
  groups: { name: string; values: ArrayLike<number> }[],
  opts: { title: string; xTitle: string; bins?: number; density?: boolean; showMeans?: boolean },
): Figure {
  const finite = groups.map((g) => Array.from(g.values).filter((v) => Number.isFinite(v)));
  let lo = Infinity;
  let hi = -Infinity;
  let total = 0;
  for (const vs of finite) {
    for (const v of vs) {
      if (v < lo) lo = v;
      if (v > hi) hi = v;
    }
    total += vs.length;
  }
  if (total === 0) {
    lo = 0;
    hi = 1;
  }
  const nb = Math.max(1, Math.floor(opts.bins ?? Math.min(60, Math.max(10, Math.ceil(2 * Math.cbrt(total / Math.max(1, groups.length)) + 6)))));
  if (hi === lo) {
    lo -= 0.5;
    hi += 0.5;
  }
  const width = (hi - lo) / nb;
  const centers = Array.from({ length: nb }, (_, k) => lo + (k + 0.5) * width);
  const ranges = centers.map((c) => [c - width / 2, c + width / 2]);
  const density = opts.density ?? false;
  const data: object[] = [];
  const shapes: object[] = [];
  finite.forEach((vs, i) => {
    const counts = new Array<number>(nb).fill(0);
    for (const v of vs) counts[Math.min(nb - 1, Math.floor((v - lo) / width))]!++;
    const y = density && vs.length ? counts.map((c) => c / (vs.length * width)) : counts;
    const c = color(i);
    data.push({
      type: 'bar',
      name: `${groups[i]!.name} (n=${vs.length})`,
      x: centers,
      y,
      width,
      customdata: ranges,
      marker: { color: withAlpha(c, 0.5), line: { color: c, width: 1 } },
      hovertemplate: `[%{customdata[0]:.4g}, %{customdata[1]:.4g}): %{y${density ? ':.4g' : ''}}<extra>%{fullData.name}</extra>`,
    });
    if ((opts.showMeans ?? true) && vs.length) {
      const mean = vs.reduce((a, b) => a + b, 0) / vs.length;
      shapes.push({ type: 'line', xref: 'x', x0: mean, x1: mean, yref: 'paper', y0: 0, y1: 1, line: { color: c, width: 2, dash: 'dash' } });
    }
  });
  return {
    data,
    layout: {
      title: title(opts.title),
      barmode: 'overlay',
      bargap: 0,
      xaxis: { title: title(opts.xTitle) },
      yaxis: { title: title(density ? 'density' : 'count'), rangemode: 'tozero' },
      shapes,
    },
  };
}

/**
 * y against x, one line per series (own colour, dash and marker), optional error bars — symmetric
 * ± yErr, or an interval lo..hi — and log x (steering sweeps, subsample curves).
 */
export function scatterLines(
  series: { name: string; x: number[]; y: number[]; yErr?: number[]; lo?: number[]; hi?: number[] }[],
  opts: { title: string; xTitle: string; yTitle: string; logX?: boolean; yRange?: [number, number]; refLines?: RefLine[] },
): Figure {
  const withBars = series.filter((s) => s.yErr || s.lo).length;
  // Distinct x values closer than this (on the axis' scale) would let dodged points swap places.
  const xsAll = [...new Set(series.flatMap((s) => s.x).filter((v) => Number.isFinite(v) && (!opts.logX || v > 0)))].sort((a, b) => a - b);
  let gap = Infinity;
  for (let k = 1; k < xsAll.length; k++) gap = Math.min(gap, opts.logX ? Math.log(xsAll[k]! / xsAll[k - 1]!) : xsAll[k]! - xsAll[k - 1]!);
  const span = xsAll.length > 1 ? (opts.logX ? Math.log(xsAll[xsAll.length - 1]! / xsAll[0]!) : xsAll[xsAll.length - 1]! - xsAll[0]!) : 1;
  const step = Math.min(Number.isFinite(gap) ? gap / (2 * series.length) : Infinity, span / 80);
  const data = series.map((s, i) => {
    checkLen(`scatterLines "${s.name}" y`, s.y.length, s.x.length);
    if (s.yErr) checkLen(`scatterLines "${s.name}" yErr`, s.yErr.length, s.x.length);
    if ((s.lo === undefined) !== (s.hi === undefined)) throw new EmlensError(`scatterLines "${s.name}": give both lo and hi for an interval, or neither`);
    if (s.lo && s.yErr) throw new EmlensError(`scatterLines "${s.name}": give yErr or lo/hi, not both`);
    if (s.lo) checkLen(`scatterLines "${s.name}" lo`, s.lo.length, s.x.length);
    if (s.hi) checkLen(`scatterLines "${s.name}" hi`, s.hi.length, s.x.length);
    const { color: c, dash, symbol } = lineStyle(i);
    const errorY = s.lo && s.hi
      ? { error_y: intervalBars(s.y, s.lo, s.hi, c) }
      : s.yErr
        ? { error_y: { type: 'data', array: arr(s.yErr), visible: true, color: withAlpha(c, 0.7), thickness: 1.2, width: 3 } }
        : {};
    return {
      type: 'scatter',
      mode: s.x.length > 60 ? 'lines' : 'lines+markers',
      name: s.name,
      x: withBars > 1 ? arr(s.x.map(dodge(i, series.length, step, opts.logX ?? false))) : arr(s.x),
      y: arr(s.y),
      line: { color: c, width: 2.2, dash },
      marker: { color: c, size: 6, symbol },
      ...errorY,
      ...(withBars > 1 ? { customdata: arr(s.x), hovertemplate: `%{customdata}: %{y:.4g}<extra>%{fullData.name}</extra>` } : {}),
    };
  });
  const ref = refLineShapes(opts.refLines);
  const dodged = withBars > 1 ? { legend: DODGE_NOTE } : {};
  // On a log axis spanning a decade or two Plotly labels every minor tick (5 6 7 8 9 1 2...);
  // a sweep's own x values make better ticks when there are few of them.
  const logTicks = opts.logX && xsAll.length > 0 && xsAll.length <= 12 ? { tickvals: xsAll, ticktext: xsAll.map((v) => String(Number(v.toPrecision(4)))) } : {};
  return {
    data,
    layout: {
      title: title(opts.title),
      xaxis: { title: title(opts.xTitle), ...(opts.logX ? { type: 'log', ...logTicks } : {}) },
      yaxis: { title: title(opts.yTitle), ...(opts.yRange ? { range: opts.yRange } : {}) },
      showlegend: series.length > 1,
      ...merge2(legendFor(series.length), dodged),
      shapes: ref.shapes,
      annotations: ref.annotations,
    },
  };
}

/**
 * Grouped bars: one trace per series over shared category labels, optional error bars: symmetric
 * (`errors`, ± each value) or an interval [lo, hi] per bar (`intervals`, e.g. a Wilson 95% interval).
 */
export function barChart(
  series: { name: string; labels: string[]; values: number[]; errors?: number[]; intervals?: [number, number][] }[],
  opts: { title: string; yTitle: string; xTitle?: string; yRange?: [number, number]; refLines?: RefLine[] },
): Figure {
  const data = series.map((s, i) => {
    checkLen(`barChart "${s.name}" values`, s.values.length, s.labels.length);
    if (s.errors) checkLen(`barChart "${s.name}" errors`, s.errors.length, s.labels.length);
    if (s.intervals) checkLen(`barChart "${s.name}" intervals`, s.intervals.length, s.labels.length);
    if (s.errors && s.intervals) throw new EmlensError(`barChart "${s.name}": errors and intervals both given`);
    const c = color(i);
    return {
      type: 'bar',
      name: s.name,
      x: s.labels,
      y: arr(s.values),
      marker: { color: withAlpha(c, 0.85), line: { color: c, width: 1 } },
      ...(s.errors ? { error_y: { type: 'data', array: arr(s.errors), visible: true, color: '#444', thickness: 1.2, width: 4 } } : {}),
      ...(s.intervals ? { error_y: intervalBars(s.values, s.intervals.map((b) => b[0]), s.intervals.map((b) => b[1]), '#444444') } : {}),
      hovertemplate: '%{x}: %{y:.4g}<extra>%{fullData.name}</extra>',
    };
  });
  const ref = refLineShapes(opts.refLines);
  return {
    data,
    layout: {
      title: title(opts.title),
      barmode: 'group',
      bargap: 0.25,
      xaxis: { type: 'category', title: title(opts.xTitle ?? '') },
      yaxis: { title: title(opts.yTitle), ...(opts.yRange ? { range: opts.yRange } : {}) },
      showlegend: series.length > 1,
      shapes: ref.shapes,
      annotations: ref.annotations,
    },
  };
}
