/**
 * Section "bounded": memory-bounded extraction (LoadedModel.openBounded + extractActivations,
 * weights read from the checkpoint a layer at a time).
 *
 * (a) The random Qwen2.5-0.5B-shaped model, BF16 on disk in a temporary folder: the same
 *     extraction of 128 rows x 128 tokens (all layers, resid_post, pool mean), interleaved in one
 *     child process, on the model loaded whole and opened bounded with one layer per group (so
 *     every run reads every layer from disk and converts it). Goal: bounded >= 0.8x in memory.
 * (b) The Qwen2.5-7B-shaped random BF16 checkpoint (bench/big-checkpoint.ts, ~15 GB, used only if
 *     already written): 32 rows x 128 tokens at every layer in a fresh child with --max-memory
 *     4 GiB: peak RSS (goal <= 4 GiB) and tokens/s as a share of the Gemm roofline on the model's
 *     projection shapes at the extraction's tokens per call (4096), timed in the same child right
 *     before and right after the extraction with the runner's session options; the share is
 *     against their mean (goal >= 70%), both rooflines reported beside it.
 *     The folder is seen through symlinks in a temporary folder that adds a word-level tokenizer.
 */
import { existsSync, mkdirSync, mkdtempSync, readdirSync, rmSync, symlinkSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { emlensCacheDir } from '../src/cache.js';
import { parseConfig } from '../src/model/config.js';
import type { BenchOptions, Row, Section, SectionResult } from './section.js';
import { forwardFlops, GiB, log, runChild, stats } from './util.js';
import type { Roofline } from './roofline.js';
import { QWEN25_7B_CONFIG } from './big-checkpoint.js';
import type { BigResult, TimeResult } from './bounded-child.js';
import { ROW_TOKENS, writeBenchTokenizer } from './text-rows.js';

export const SMALL_ROWS = 128;
export const BATCH_TOKENS = 4096;
export const BIG_ROWS = 32;
export const BIG_MAX_MEMORY = 4 * GiB;
export const GOAL_RATIO = 0.8;
export const GOAL_RSS_GIB = 4;
export const GOAL_ROOFLINE = 0.7;

export interface BoundedBench {
  small: TimeResult & { ratio: number; inMemoryTokensPerSec: number; boundedTokensPerSec: number };
  big: (BigResult & { tokensPerSec: number; rooflineTokensPerSec: { before: number; after: number; mean: number }; share: number }) | null;
}

const BIG_DIR = () => join(emlensCacheDir(), 'bench', 'qwen2.5-7b-shaped-random-bf16');

export async function benchBounded(opts: BenchOptions, which: { small: boolean; big: boolean } = { small: true, big: true }): Promise<BoundedBench> {
  const tmp = mkdtempSync(join(tmpdir(), 'emlens-bench-bounded-'));
  const env = { EMLENS_CACHE: join(tmp, 'cache') };
  try {
    let small: BoundedBench['small'] | null = null;
    if (which.small) {
      const dir = join(tmp, 'model');
      log('bounded: writing the 0.5B-shaped BF16 model folder (child process)');
      await runChild('write', { dir }, { script: 'bounded-child.js', env });
      log(`bounded: ${SMALL_ROWS} rows in memory vs bounded, interleaved (child process)`);
      const t = await runChild<TimeResult>('time', { dir, out: join(tmp, 'out'), rows: SMALL_ROWS, runs: Math.min(opts.runs, 2), layersPerGroup: 1, batchTokens: BATCH_TOKENS }, { script: 'bounded-child.js', env });
      const mem = stats(t.inMemoryMs).median;
      const bnd = stats(t.boundedMs).median;
      small = { ...t, ratio: mem / bnd, inMemoryTokensPerSec: t.tokens / (mem / 1000), boundedTokensPerSec: t.tokens / (bnd / 1000) };
      rmSync(dir, { recursive: true, force: true });
    }
    let big: BoundedBench['big'] = null;
    const src = BIG_DIR();
    if (which.big && existsSync(join(src, 'emlens_bench.json'))) {
      const spec = parseConfig(QWEN25_7B_CONFIG, 'bench 7B config.json');
      const dir = join(tmp, 'model-7b');
      mkdirSync(dir);
      for (const f of readdirSync(src)) if (f.endsWith('.safetensors') || f.endsWith('.json')) symlinkSync(join(src, f), join(dir, f));
      writeBenchTokenizer(dir);
      log(`bounded: ${BIG_ROWS} rows x ${ROW_TOKENS} tokens of the 7B-shaped model, --max-memory 4 GiB, a Gemm roofline before and after it (child process)`);
      // The fingerprint cache is the user's, so the 15 GB are hashed once, not every bench run.
      const r = await runChild<BigResult>('big', { dir, out: join(tmp, 'out-7b'), rows: BIG_ROWS, maxMemory: BIG_MAX_MEMORY, batchTokens: BATCH_TOKENS }, { script: 'bounded-child.js' });
      const tokensPerSec = r.tokens / (r.extractMs / 1000);
      // FLOPs per token of the forward the extraction ran (its rows are all ROW_TOKENS long).
      const perToken = forwardFlops(spec, BIG_ROWS, ROW_TOKENS).total / (BIG_ROWS * ROW_TOKENS);
      const at = (ro: Roofline) => (ro.gflops * 1e9) / perToken;
      const rooflineTokensPerSec = { before: at(r.rooflineBefore), after: at(r.rooflineAfter), mean: (at(r.rooflineBefore) + at(r.rooflineAfter)) / 2 };
      big = { ...r, tokensPerSec, rooflineTokensPerSec, share: tokensPerSec / rooflineTokensPerSec.mean };
    } else if (which.big) log(`bounded: ${src} is not written (bench/big-checkpoint.ts qwen7bCheckpoint()); skipping the 7B part`);
    if (!small && !big) throw new Error('bounded: nothing measured');
    return { small: small!, big };
  } finally {
    rmSync(tmp, { recursive: true, force: true });
  }
}

export const boundedSection: Section = {
  name: 'bounded',
  description: `memory-bounded extraction: 0.5B-shaped BF16, ${SMALL_ROWS} rows in memory vs one layer at a time; 7B-shaped BF16, ${BIG_ROWS} x ${ROW_TOKENS} tokens in 4 GiB`,
  async run(opts: BenchOptions): Promise<SectionResult> {
    // EMLENS_BENCH_BOUNDED=7b (or 0.5b) measures one part only: the 7B part alone takes ~20 min on 2 cores.
    const only = process.env.EMLENS_BENCH_BOUNDED;
    if (only !== undefined && only !== '7b' && only !== '0.5b') throw new Error(`EMLENS_BENCH_BOUNDED=${only}: expected 7b or 0.5b`);
    const r = await benchBounded(opts, { small: only !== '7b', big: only !== '0.5b' });
    const rows: Row[] = [];
    if (r.small) {
      rows.push(
        { metric: `0.5B in memory, ${SMALL_ROWS} rows`, value: r.small.inMemoryTokensPerSec, unit: 'tokens/s', digits: 0 },
        { metric: `0.5B bounded (1 layer/group), ${SMALL_ROWS} rows`, value: r.small.boundedTokensPerSec, unit: 'tokens/s', digits: 0 },
        { metric: '0.5B bounded / in memory', value: r.small.ratio, unit: 'x', goal: { op: '>=', value: GOAL_RATIO } },
        { metric: '0.5B bounded: reading weights', value: 100 * stats(r.small.boundedReadMs.map((x, i) => x / r.small.boundedMs[i]!)).median, unit: '% of wall', digits: 1 },
      );
    }
    if (r.big) {
      rows.push(
        { metric: `7B bounded, ${BIG_ROWS}x${ROW_TOKENS} all layers: peak RSS`, value: r.big.peakRss / GiB, unit: 'GiB', digits: 2, goal: { op: '<=', value: GOAL_RSS_GIB } },
        { metric: '7B bounded: throughput', value: r.big.tokensPerSec, unit: 'tokens/s', digits: 1 },
        { metric: `7B Gemm roofline at ${r.big.rooflineBefore.tokens} tokens, same child, before`, value: r.big.rooflineTokensPerSec.before, unit: 'tokens/s', digits: 1 },
        { metric: `7B Gemm roofline at ${r.big.rooflineAfter.tokens} tokens, same child, after`, value: r.big.rooflineTokensPerSec.after, unit: 'tokens/s', digits: 1 },
        { metric: '7B bounded / roofline (mean of before and after)', value: 100 * r.big.share, unit: '%', digits: 1, goal: { op: '>=', value: 100 * GOAL_ROOFLINE } },
        { metric: '7B bounded / roofline before', value: (100 * r.big.tokensPerSec) / r.big.rooflineTokensPerSec.before, unit: '%', digits: 1 },
        { metric: '7B bounded / roofline after', value: (100 * r.big.tokensPerSec) / r.big.rooflineTokensPerSec.after, unit: '%', digits: 1 },
        { metric: '7B bounded: reading weights', value: (100 * r.big.readMs) / r.big.extractMs, unit: '% of wall', digits: 1 },
      );
    }
    return { section: 'bounded', rows, data: r };
  },
};
