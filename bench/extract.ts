/**
 * Section "extract": throughput of the real extraction pipeline (extractActivations: tokenizing,
 * batching, the forward, pooling, chunk files, final assembly, meta) on the random
 * Qwen2.5-0.5B-shaped model, against the forward section's call timed in the same process
 * (4 x 128 tokens, every resid_post, no LM head); and the peak RSS of extracting N rows against
 * 10·N rows, each in a fresh process.
 *
 * The model is written once per bench run as a model folder (F32 safetensors + word-level
 * tokenizer) in a temporary directory and loaded with LoadedModel.load, as `emlens extract` does.
 *
 * Goals (issue [2]): extraction tokens/s >= 0.80 x forward tokens/s; peak RSS of 10·N rows
 * ≈ that of N rows (<= 1.05 x).
 */
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import type { BenchOptions, Row, Section, SectionResult } from './section.js';
import { GiB, log, runChild, stats } from './util.js';
import type { RssResult, TimeResult, WriteResult } from './extract-child.js';

import { ROW_TOKENS } from './text-rows.js';
export const BATCH_ROWS = 4;
/** Rows per timed extraction (4 forward calls). */
export const TIMED_ROWS = 16;
/** Peak RSS: N rows (2 forward calls) against 10·N rows (20 calls; ~25 s, which keeps the bench within minutes). */
export const RSS_ROWS = 8;
export const GOAL_RATIO = 0.8;
export const GOAL_RSS = 1.05;

export interface ExtractBench {
  write: WriteResult;
  time: TimeResult;
  rss: RssResult[];
  forwardTokensPerSec: number;
  extractTokensPerSec: number;
  ratio: number;
  /** Median share of the extraction's wall time spent outside engine.forward. */
  overheadShare: number;
  rssRatio: number;
}

export async function benchExtract(opts: BenchOptions): Promise<ExtractBench> {
  const tmp = mkdtempSync(join(tmpdir(), 'emlens-bench-extract-'));
  // The weights fingerprint's hash cache goes to the temporary folder, not the user's cache.
  const env = { EMLENS_CACHE: join(tmp, 'cache') };
  const dir = join(tmp, 'model');
  const child = <T>(mode: string, args: object) => runChild<T>(mode, args, { script: 'extract-child.js', env });
  try {
    log('extract: writing the random model folder (child process)');
    const write = await child<WriteResult>('write', { dir });
    log(`extract: timing forward vs extraction of ${TIMED_ROWS} rows, interleaved (child process)`);
    const time = await child<TimeResult>('time', { dir, out: join(tmp, 'out-time'), rows: TIMED_ROWS, warmup: opts.warmup, runs: opts.runs });
    const rss: RssResult[] = [];
    for (const rows of [RSS_ROWS, 10 * RSS_ROWS]) {
      log(`extract: peak RSS of ${rows} rows (fresh child process)`);
      rss.push(await child<RssResult>('rss', { dir, out: join(tmp, `out-rss-${rows}`), rows }));
    }
    const batchTokens = BATCH_ROWS * ROW_TOKENS;
    const forwardTokensPerSec = batchTokens / (time.forward.median / 1000);
    const extractTokensPerSec = (TIMED_ROWS * ROW_TOKENS) / (time.extract.median / 1000);
    const overheadShare = stats(time.extractMs.map((t, i) => (t - time.extractForwardMs[i]!) / t)).median;
    return {
      write,
      time,
      rss,
      forwardTokensPerSec,
      extractTokensPerSec,
      ratio: extractTokensPerSec / forwardTokensPerSec,
      overheadShare,
      rssRatio: rss[1]!.peakRss / rss[0]!.peakRss,
    };
  } finally {
    rmSync(tmp, { recursive: true, force: true });
  }
}

export const extractSection: Section = {
  name: 'extract',
  description: `extractActivations on a random Qwen2.5-0.5B-shaped model folder, ${ROW_TOKENS}-token rows, all layers, pool mean, batch-tokens ${BATCH_ROWS * ROW_TOKENS}; peak RSS of ${RSS_ROWS} vs ${10 * RSS_ROWS} rows`,
  async run(opts: BenchOptions): Promise<SectionResult> {
    const r = await benchExtract(opts);
    const [small, big] = r.rss as [RssResult, RssResult];
    const rows: Row[] = [
      { metric: `forward B=${BATCH_ROWS}x${ROW_TOKENS} (same process)`, value: r.forwardTokensPerSec, unit: 'tokens/s', digits: 0 },
      { metric: `extraction, ${TIMED_ROWS} rows a run`, value: r.extractTokensPerSec, unit: 'tokens/s', digits: 0 },
      { metric: 'extraction / forward', value: r.ratio, unit: 'x', goal: { op: '>=', value: GOAL_RATIO } },
      { metric: 'extraction time outside engine.forward', value: 100 * r.overheadShare, unit: '%', digits: 1 },
      { metric: `peak RSS, ${small.rows} rows`, value: small.peakRss / GiB, unit: 'GiB', digits: 3 },
      { metric: `peak RSS, ${big.rows} rows`, value: big.peakRss / GiB, unit: 'GiB', digits: 3 },
      { metric: `peak RSS ${big.rows} / ${small.rows} rows`, value: r.rssRatio, unit: 'x', goal: { op: '<=', value: GOAL_RSS } },
      { metric: `${big.rows}-row extraction (cold, one process)`, value: big.tokens / (big.extractMs / 1000), unit: 'tokens/s', digits: 0 },
    ];
    return { section: 'extract', rows, data: r };
  },
};
