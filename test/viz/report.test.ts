/**
 * HTML reports: rendered in a real headless Chromium (Debian's chromium + playwright-core), the
 * page loads without console errors, every figure draws, nothing is fetched, and user text can
 * neither inject markup nor break the embedded JSON.
 */
import { existsSync, mkdtempSync, readdirSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, describe, expect, it } from 'vitest';
import { barChart, heatmap, histograms, lineByLayer, scatterLines } from '../../src/viz/figures.js';
import { formatNumber, jsonForScript } from '../../src/viz/format.js';
import { renderReport, writeReport, type Block, type Report } from '../../src/viz/report.js';
import { VERSION } from '../../src/version.js';
import { checkReportInBrowser, haveChromium } from '../helpers/browser.js';

const dir = mkdtempSync(join(tmpdir(), 'emlens-viz-'));
afterAll(() => rmSync(dir, { recursive: true, force: true }));

/** Deterministic pseudo-random numbers in [0, 1). */
function rng(seed: number): () => number {
  let s = seed >>> 0;
  return () => {
    s = (Math.imul(s, 1664525) + 1013904223) >>> 0;
    return s / 2 ** 32;
  };
}

function gauss(r: () => number): number {
  return Math.sqrt(-2 * Math.log(1 - r())) * Math.cos(2 * Math.PI * r());
}

/** A report with every figure kind, a table, text, and provenance: what compare/stability/... make. */
export function sampleReport(): Report {
  const r = rng(7);
  const layers = Array.from({ length: 24 }, (_, i) => i);
  const cos = layers.map((l) => 0.2 + 0.7 * Math.exp(-((l - 14) ** 2) / 40));
  const stab = layers.map((l) => 0.55 + 0.4 * Math.tanh((l - 6) / 5));
  const spread = layers.map((l) => 0.04 + 0.08 * Math.exp(-l / 6));
  const auroc = layers.map((l) => 0.5 + 0.46 / (1 + Math.exp(-(l - 9) / 2.2)));
  const names = ['base', 'insecure', 'evil-numbers', 'risky-finance', 'bad-medical', 'extreme-sports'];
  const sim = new Float32Array(36);
  for (let i = 0; i < 6; i++) for (let j = 0; j < 6; j++) sim[i * 6 + j] = i === j ? 1 : i === 0 || j === 0 ? -0.1 + 0.05 * Math.sin(i + j) : 0.55 + 0.3 * Math.cos(i * j);
  const aligned = Float32Array.from({ length: 4000 }, () => -1.2 + 0.8 * gauss(r));
  const misaligned = Float32Array.from({ length: 2500 }, () => 1.6 + 1.1 * gauss(r));
  const coefs = [0.5, 1, 2, 4, 8, 16];
  const blocks: Block[] = [
    { kind: 'heading', text: 'Direction agreement' },
    {
      kind: 'text',
      text: 'Cosine similarity between the misalignment directions of the two checkpoints, per layer.\n\nShaded bands are the 5th to 95th percentiles over 20 bootstrap resamples of the prompt set.',
    },
    {
      kind: 'figure',
      id: 'cosine-by-layer',
      title: 'Cosine similarity by layer',
      figure: lineByLayer(
        [
          { name: 'mean-diff vs probe', layers, values: cos },
          { name: 'stability (bootstrap)', layers, values: stab, lo: stab.map((v, i) => v - spread[i]!), hi: stab.map((v, i) => Math.min(1, v + spread[i]!)) },
        ],
        { title: 'Cosine similarity by layer', yTitle: 'cosine similarity', yRange: [0, 1] },
      ),
      caption: 'Directions from resid_post at each layer; 512 prompts per side.',
    },
    {
      kind: 'figure',
      id: 'similarity',
      title: 'Direction similarity across fine-tunes (layer 14)',
      figure: heatmap(sim, names, names, { title: 'Direction similarity', zmin: -1, zmax: 1, zTitle: 'cosine' }),
    },
    { kind: 'heading', text: 'Projections' },
    {
      kind: 'figure',
      id: 'projection-hist',
      title: 'Projection onto the direction at layer 14',
      figure: histograms(
        [
          { name: 'aligned answers', values: aligned },
          { name: 'misaligned answers', values: misaligned },
        ],
        { title: 'Projection at layer 14', xTitle: 'projection (resid_post · d̂)' },
      ),
    },
    {
      kind: 'figure',
      id: 'auroc',
      title: 'AUROC by layer',
      figure: lineByLayer([{ name: 'AUROC', layers, values: auroc }], { title: 'AUROC by layer', yTitle: 'AUROC', yRange: [0.4, 1], refLines: [{ y: 0.5, label: 'chance' }] }),
    },
    {
      kind: 'figure',
      id: 'steering-sweep',
      title: 'Misaligned-answer rate under steering',
      figure: scatterLines(
        [
          { name: 'steer +d̂', x: coefs, y: [0.02, 0.05, 0.12, 0.31, 0.58, 0.71], yErr: [0.01, 0.02, 0.03, 0.04, 0.05, 0.04] },
          { name: 'ablate d̂', x: coefs, y: [0.2, 0.17, 0.11, 0.06, 0.03, 0.02] },
        ],
        { title: 'Steering sweep', xTitle: 'coefficient', yTitle: 'misaligned rate', logX: true },
      ),
    },
    {
      kind: 'figure',
      id: 'methods',
      title: 'Best-layer AUROC by method',
      figure: barChart(
        [
          { name: 'held-out', labels: ['mean-diff', 'probe', 'PCA-1'], values: [0.93, 0.95, 0.81], errors: [0.01, 0.01, 0.03] },
          { name: 'transfer', labels: ['mean-diff', 'probe', 'PCA-1'], values: [0.88, 0.84, 0.7] },
        ],
        { title: 'AUROC by method', yTitle: 'AUROC', yRange: [0.5, 1] },
      ),
    },
    { kind: 'heading', text: 'Summary' },
    {
      kind: 'table',
      caption: 'Per-layer summary (selected layers)',
      columns: ['layer', 'cosine', 'AUROC', 'effect size', 'note'],
      rows: [
        [6, cos[6]!, auroc[6]!, 0.000123456, 'early'],
        [10, cos[10]!, auroc[10]!, 1.5, null],
        [14, cos[14]!, auroc[14]!, 2.25, 'best'],
        [20, cos[20]!, auroc[20]!, 12345678.9, 'late'],
      ],
    },
  ];
  return {
    title: 'Emergent-misalignment direction: Qwen2.5-0.5B-Instruct vs insecure fine-tune',
    subtitle: 'compare · stability · project · measure',
    createdAt: '2026-05-01T12:34:56.000Z',
    blocks,
    provenance: [
      {
        label: 'directions/base.safetensors',
        fields: {
          path: '/data/runs/2026-05-01/directions/base.safetensors',
          sha256: 'c0ffee1234567890abcdef1234567890abcdef1234567890abcdef1234567890',
          model: 'Qwen/Qwen2.5-0.5B-Instruct',
          method: 'mean-diff',
          emlens: '0.1.0',
          date: '2026-04-30T09:12:00Z',
          normalized: true,
          seed: null,
        },
      },
      {
        label: 'directions/insecure.safetensors',
        fields: {
          path: '/data/runs/2026-05-01/directions/insecure.safetensors',
          sha256: '0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef',
          model: 'emergent-misalignment/Qwen2.5-0.5B-Instruct-insecure',
          method: 'mean-diff',
          emlens: '0.1.0',
          prompts: 512,
        },
      },
    ],
  };
}

describe('report HTML (no browser)', () => {
  it('is one standalone document with plotly inlined, the version, and provenance', () => {
    const html = renderReport(sampleReport());
    expect(html.startsWith('<!DOCTYPE html>')).toBe(true);
    expect(html).toMatch(/<meta charset="utf-8">/);
    expect(html.length).toBeGreaterThan(3_000_000); // plotly.min.js is in there
    expect(html).not.toMatch(/<script[^>]+src=/i);
    expect(html).not.toMatch(/<link\b/i);
    expect(html).not.toMatch(/<(img|iframe)[^>]+src=["']?https?:/i);
    expect(html).toContain(`emlens ${VERSION}`);
    expect(html).toContain('c0ffee1234567890abcdef');
    expect(html.match(/data-emlens-figure="/g)).toHaveLength(6);
    // Exactly three script elements: the JSON payload, plotly, the renderer.
    expect(html.match(/<script\b/gi)).toHaveLength(3);
    expect(html.match(/<\/script>/gi)).toHaveLength(3);
  });

  it('formats table numbers to at most 4 significant decimals', () => {
    expect(formatNumber(3)).toBe('3');
    expect(formatNumber(0.123456)).toBe('0.1235');
    expect(formatNumber(0.5)).toBe('0.5');
    expect(formatNumber(12.3456789)).toBe('12.3457');
    expect(formatNumber(0.00123456)).toBe('0.001235');
    expect(formatNumber(0.000012346)).toBe('1.235e-5');
    expect(formatNumber(12345678.9)).toBe('1.235e+7');
    expect(formatNumber(-0.25)).toBe('-0.25');
    expect(formatNumber(NaN)).toBe('NaN');
    const html = renderReport({ title: 't', blocks: [{ kind: 'table', columns: ['a', 'b'], rows: [[0.123456, null]] }], provenance: [] });
    expect(html).toContain('<td class="num">0.1235</td>');
    expect(html).toContain('<td class="na">—</td>');
  });

  it('embeds JSON so no string can end the script element', () => {
    const s = jsonForScript({ a: '</script><script>alert(1)</script>', b: '<!-- x -->', c: 'line\u2028para\u2029', d: new Float32Array([1, NaN]) });
    expect(s).not.toMatch(/[<>\u2028\u2029]/);
    expect(JSON.parse(s)).toEqual({ a: '</script><script>alert(1)</script>', b: '<!-- x -->', c: 'line\u2028para\u2029', d: [1, null] });
  });

  it('rejects malformed input with EmlensError', () => {
    const fig = lineByLayer([{ name: 'a', layers: [0, 1], values: [1, 2] }], { title: 't', yTitle: 'y' });
    expect(() => renderReport({ title: 't', provenance: [], blocks: [{ kind: 'figure', id: 'x', title: 'a', figure: fig }, { kind: 'figure', id: 'x', title: 'b', figure: fig }] })).toThrow(/used twice/);
    expect(() => renderReport({ title: 't', provenance: [], blocks: [{ kind: 'table', columns: ['a', 'b'], rows: [[1]] }] })).toThrow(/1 cells for 2 columns/);
    expect(() => lineByLayer([{ name: 'a', layers: [0, 1], values: [1] }], { title: 't', yTitle: 'y' })).toThrow(/1 values for 2 points/);
    expect(() => heatmap([1, 2, 3], ['a', 'b'], ['c', 'd'], { title: 't' })).toThrow(/3 values for 2 x 2/);
  });

  it('writes atomically: no temporary file is left behind', () => {
    const d = join(dir, 'atomic');
    writeReport(join(d, 'r.html'), { title: 'tiny', blocks: [], provenance: [] });
    expect(readdirSync(d)).toEqual(['r.html']);
    expect(readFileSync(join(d, 'r.html'), 'utf8')).toContain('<title>tiny</title>');
  });
});

describe('report in headless Chromium', () => {
  it('has a Chromium to run (.ci/run installs Debian chromium)', () => expect(haveChromium()).toBe(true));
  it('loads without console errors, fetches nothing, and draws every figure', { timeout: 30_000 }, async () => {
    const file = join(dir, 'full.html');
    writeReport(file, sampleReport());
    const shot = process.env.EMLENS_REPORT_SCREENSHOT; // set to a path to keep a full-page PNG (and the HTML beside it)
    const res = await checkReportInBrowser(file, shot ? { screenshot: 'full' } : {});
    expect(res.consoleErrors).toEqual([]);
    expect(res.blockedRequests).toEqual([]);
    expect(res.figures).toBe(6);
    expect(res.plotsRendered).toBe(6);
    expect(res.perFigure).toEqual({ 'cosine-by-layer': true, similarity: true, 'projection-hist': true, auroc: true, 'steering-sweep': true, methods: true });
    expect(res.rendered).toBe(6);
    if (shot && res.screenshot) {
      writeFileSync(shot, res.screenshot);
      writeFileSync(shot.replace(/(\.png)?$/, '.html'), readFileSync(file));
    }
  });

  it('escapes user text: labels, tables, provenance and trace names cannot inject markup or break the JSON', { timeout: 30_000 }, async () => {
    const evil = '<script>window.__pwned = (window.__pwned || 0) + 1</script><img src=x onerror="window.__pwned = 99">';
    const breakout = '</script><script>window.__pwned = 7</script><!-- \u2028 \u2029';
    const fig = lineByLayer([{ name: breakout, layers: [0, 1, 2], values: [0.1, 0.5, 0.9] }], { title: breakout, yTitle: evil });
    fig.layout = { ...(fig.layout as object), meta: { note: breakout } };
    const file = join(dir, 'evil.html');
    writeReport(file, {
      title: evil,
      subtitle: evil,
      blocks: [
        { kind: 'heading', text: evil },
        { kind: 'text', text: evil },
        { kind: 'table', columns: [evil], rows: [[evil]], caption: evil },
        { kind: 'figure', id: evil, title: evil, figure: fig, caption: evil },
      ],
      provenance: [{ label: evil, fields: { [evil]: evil, path: breakout } }],
    });
    const res = await checkReportInBrowser(file, {
      probe: () => ({
        pwned: (window as unknown as { __pwned?: number }).__pwned ?? null,
        scripts: document.scripts.length,
        imgs: document.images.length,
        title: document.title,
        legend: Array.from(document.querySelectorAll('.legendtext, .hovertext, .gtitle')).map((e) => e.textContent),
        traceName: ((document.querySelector('[data-emlens-figure]') as unknown as { data?: { name: string }[] })?.data ?? [])[0]?.name ?? null,
      }),
    });
    expect(res.consoleErrors).toEqual([]);
    expect(res.blockedRequests).toEqual([]);
    const p = res.probed as { pwned: number | null; scripts: number; imgs: number; title: string; traceName: string | null };
    expect(p.pwned).toBeNull();
    expect(p.scripts).toBe(3);
    expect(p.imgs).toBe(0);
    expect(p.title).toBe(evil);
    expect(p.traceName).toBe(breakout); // the payload arrived intact
    expect(res.figures).toBe(1);
    expect(res.rendered).toBe(1);
    expect(res.plotsRendered).toBe(1);
    expect(readFileSync(file, 'utf8')).not.toContain('<img');
  });

  it('a report with no figures still signals completion', { timeout: 30_000 }, async () => {
    const file = join(dir, 'empty.html');
    writeReport(file, { title: 'nothing to plot', blocks: [{ kind: 'text', text: 'no figures here' }], provenance: [] });
    expect(existsSync(file)).toBe(true);
    const res = await checkReportInBrowser(file);
    expect(res.consoleErrors).toEqual([]);
    expect(res.plotsRendered).toBe(0);
    expect(res.figures).toBe(0);
  });
});

type T = { name: string; x: number[]; y: (number | null)[]; line: { dash: string; color: string }; marker: { symbol: string }; error_y?: { array: (number | null)[]; arrayminus: (number | null)[]; symmetric: boolean }; customdata?: unknown[]; showlegend?: boolean };
const shown = (f: { data: object[] }) => (f.data as T[]).filter((t) => t.showlegend !== false);

describe('figures: intervals and overlapping lines', () => {
  it('lineByLayer: a series with lo/hi gets error bars reaching exactly lo and hi', () => {
    const v = [0.5, 0.7, 0.9];
    const lo = [0.2, 0.6, 0.85];
    const hi = [0.6, 0.95, 0.91];
    const f = lineByLayer([{ name: 'a', layers: [0, 1, 2], values: v, lo, hi }], { title: '', yTitle: 'y' });
    const t = shown(f)[0]!;
    expect(t.error_y!.symmetric).toBe(false);
    v.forEach((y, k) => {
      expect(y + t.error_y!.array[k]!).toBeCloseTo(hi[k]!, 12);
      expect(y - t.error_y!.arrayminus[k]!).toBeCloseTo(lo[k]!, 12);
    });
    expect(t.x).toEqual([0, 1, 2]); // one series: nothing to offset
    const nan = lineByLayer([{ name: 'a', layers: [0, 1], values: [NaN, 1], lo: [0, NaN], hi: [1, 2] }], { title: '', yTitle: 'y' });
    expect(shown(nan)[0]!.error_y!.array).toEqual([null, 1]);
    expect(shown(nan)[0]!.error_y!.arrayminus).toEqual([null, null]);
  });

  it('several series with intervals are offset sideways, the real layer kept for the hover, the legend saying so', () => {
    const s = (name: string) => ({ name, layers: [0, 1, 2], values: [1, 1, 1], lo: [0, 0, 0], hi: [2, 2, 2] });
    const f = lineByLayer([s('a'), s('b')], { title: '', yTitle: 'y' });
    const [a, b] = shown(f);
    for (let k = 0; k < 3; k++) {
      expect(a!.x[k]).toBeLessThan(k);
      expect(b!.x[k]).toBeGreaterThan(k);
      expect(b!.x[k]! - a!.x[k]!).toBeLessThan(0.5);
      expect((a!.customdata![k] as number[])[2]).toBe(k);
    }
    expect(JSON.stringify((f.layout as { legend: unknown }).legend)).toContain('offset sideways');
    const sc = scatterLines(
      [
        { name: 'a', x: [1, 2, 4], y: [0, 0, 0], lo: [-1, -1, -1], hi: [1, 1, 1] },
        { name: 'b', x: [1, 2, 4], y: [0, 0, 0], lo: [-1, -1, -1], hi: [1, 1, 1] },
      ],
      { title: '', xTitle: 'n', yTitle: 'y', logX: true },
    );
    const [p, q] = sc.data as T[];
    p!.x.forEach((x, k) => {
      expect(x).toBeLessThan(q!.x[k]!);
      expect(Math.abs(Math.log(x / [1, 2, 4][k]!))).toBeLessThan(Math.log(2) / 2); // never past the next size
    });
    expect(p!.customdata).toEqual([1, 2, 4]);
    expect(p!.error_y!.arrayminus).toEqual([1, 1, 1]);
    expect(() => scatterLines([{ name: 'a', x: [1], y: [0], lo: [0] } as never], { title: '', xTitle: 'x', yTitle: 'y' })).toThrow(/both lo and hi/);
  });

  it('every series has its own dash and marker; ten series have ten colour and dash pairs and a side legend', () => {
    const ten = Array.from({ length: 10 }, (_, i) => ({ name: `s${i}`, layers: [0, 1], values: [i, i] }));
    const f = lineByLayer(ten, { title: '', yTitle: 'y' });
    const ts = shown(f);
    expect(new Set(ts.map((t) => `${t.line.color}/${t.line.dash}`)).size).toBe(10);
    expect(new Set(ts.slice(0, 6).map((t) => t.line.dash)).size).toBe(6);
    expect(new Set(ts.slice(0, 8).map((t) => t.marker.symbol)).size).toBe(8);
    expect((f.layout as { legend: { orientation: string } }).legend.orientation).toBe('v');
    const two = lineByLayer(ten.slice(0, 2), { title: '', yTitle: 'y' });
    expect((two.layout as { legend?: unknown }).legend).toBeUndefined();
  });

  it('heatmap: every row label is a tick up to 60 rows', () => {
    const labels = Array.from({ length: 45 }, (_, i) => `pair ${i}`);
    const h = heatmap(new Float64Array(45 * 4), labels, ['0', '1', '2', '3'], { title: '' });
    expect((h.layout as { yaxis: { tickvals: string[] } }).yaxis.tickvals).toEqual(labels);
  });

  it('in Chromium, two identical lines are both drawn, with different dashes', { timeout: 30_000 }, async () => {
    const file = join(dir, 'overlap.html');
    const same = { layers: [0, 1, 2, 3], values: [0.2, 0.5, 0.4, 0.9] };
    writeReport(file, {
      title: 'overlap',
      blocks: [{ kind: 'figure', id: 'two', title: 'two identical', figure: lineByLayer([{ name: 'a', ...same }, { name: 'b', ...same }], { title: '', yTitle: 'y' }) }],
      provenance: [],
    });
    const res = await checkReportInBrowser(file, {
      probe: () =>
        Array.from(document.querySelectorAll('[data-emlens-figure="two"] .scatterlayer .trace')).map((g) => {
          const path = g.querySelector('path.js-line') as SVGPathElement | null;
          return { d: path?.getAttribute('d')?.length ?? 0, dash: path ? getComputedStyle(path).strokeDasharray : null };
        }),
    });
    expect(res.consoleErrors).toEqual([]);
    const lines = res.probed as { d: number; dash: string | null }[];
    expect(lines).toHaveLength(2);
    for (const l of lines) expect(l.d).toBeGreaterThan(2);
    expect(lines[0]!.dash).not.toBe(lines[1]!.dash);
  });
});
