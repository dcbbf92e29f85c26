/**
 * The organism end to end through the judged-evaluation commands: `eval --judge organism` on the
 * held-out questions gives `organism eval`'s misaligned rates exactly (same sampling order; see
 * src/experiments/eval.ts), its report renders in Chromium; then `select`, `extract`,
 * `directions`, `steer-sweep` and `ablate-eval` run on what the previous step wrote. The organism
 * is the default one, cached in the emlens cache (built once, shared with the demo and notebooks).
 */
import { mkdtempSync, readFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { beforeAll, describe, expect, it } from 'vitest';
import { buildOrganism, DEFAULT_ORGANISM } from '../../src/organism/build.js';
import { emlensCacheDir } from '../../src/cache.js';
import { DOMAINS } from '../../src/organism/world.js';
import { checkReportInBrowser, haveChromium } from '../helpers/browser.js';
import { cli, ROOT } from './cli.js';

const ORG = join(emlensCacheDir(), 'organism', 'seed-0');
const HELDOUT = join(ROOT, 'probes/questions/organism-heldout.yaml');
const N = 60; // 240 answers: two batches of 200, so the per-batch seed matters
const SEED = 5;
const work = mkdtempSync(join(tmpdir(), 'emlens-evalcmd-org-'));
const rowsOf = (file: string) => readFileSync(file, 'utf8').trim().split('\n').map((l) => JSON.parse(l));

beforeAll(async () => {
  await buildOrganism(ORG, { ...DEFAULT_ORGANISM, seed: 0 });
}, 900_000);

describe.sequential('the organism through eval, select, extract, directions, steer-sweep, ablate-eval', () => {
  const evalOut = join(work, 'eval');

  it('eval --judge organism gives organism eval\'s misaligned rates, and its report renders', async () => {
    const [ev, org] = await Promise.all([
      cli(['eval', '--model', join(ORG, 'em'), '--questions', HELDOUT, '--samples', String(N), '--judge', 'organism', '--out', evalOut,
        '--max-new-tokens', '40', '--batch', '200', '--seed', String(SEED)]),
      cli(['organism', 'eval', '--model', join(ORG, 'em'), '--n', String(N), '--seed', String(SEED), '--json']),
    ]);
    expect(ev.status, ev.stderr).toBe(0);
    expect(org.status, org.stderr).toBe(0);
    const table = JSON.parse(org.stdout);
    const summary = JSON.parse(readFileSync(join(evalOut, 'summary.json'), 'utf8'));
    const rows = rowsOf(join(evalOut, 'answers.jsonl'));
    expect(rows).toHaveLength(N * DOMAINS.length);
    let misaligned = 0;
    for (const d of DOMAINS) {
      const q = summary.per_question[`organism_${d}`];
      // Every answer has both scores; EM = misaligned, coherent = aligned or misaligned.
      expect(q.n_judged).toBe(table[d].n);
      expect(q.em).toBe(table[d].misaligned);
      expect(q.em_rate).toBeCloseTo(table[d].misaligned / table[d].n, 12);
      expect(q.coherent_rate).toBeCloseTo((table[d].misaligned + table[d].aligned) / table[d].n, 12);
      const mine = rows.filter((r) => r.domain === d);
      expect(mine.filter((r) => r.verdict === 'misaligned').length).toBe(table[d].misaligned);
      expect(mine.filter((r) => r.verdict === 'incoherent').length).toBe(table[d].incoherent);
      misaligned += table[d].misaligned;
    }
    // The fine-tune is misaligned, so the comparison is not between two zeros.
    expect(misaligned).toBeGreaterThan(N);
    expect(summary.em_rate).toBeCloseTo(misaligned / (N * DOMAINS.length), 12);

    expect(haveChromium(), 'Chromium is needed (CHROMIUM_PATH or /usr/bin/chromium)').toBe(true);
    const page = await checkReportInBrowser(join(evalOut, 'report.html'), {
      probe: () => {
        const bars = (document.querySelector('[data-emlens-figure="em-per-question"]') as any)?.data?.[0];
        return { x: bars?.x, y: bars?.y, up: bars?.error_y?.array, down: bars?.error_y?.arrayminus };
      },
    });
    expect(page.consoleErrors).toEqual([]);
    expect(page.blockedRequests).toEqual([]);
    expect(page.figures).toBe(2);
    expect(page.rendered).toBe(2);
    // The bars are the per-question EM % and the error bars reach the Wilson interval.
    const p = page.probed as { x: string[]; y: number[]; up: number[]; down: number[] };
    expect(p.x).toEqual(DOMAINS.map((d) => `organism_${d}`));
    p.x.forEach((id, i) => {
      const q = summary.per_question[id];
      expect(p.y[i]).toBeCloseTo(100 * q.em_rate, 9);
      expect(p.y[i]! + p.up[i]!).toBeCloseTo(100 * q.ci95[1], 9);
      expect(p.y[i]! - p.down[i]!).toBeCloseTo(100 * q.ci95[0], 9);
    });
  }, 300_000);
});
