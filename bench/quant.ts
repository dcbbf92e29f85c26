/**
 * Sections "quant" (a) and "quant-7b" (b): what `--weights` buys in decode speed and memory.
 *
 * (a) The random Qwen2.5-0.5B-shaped model at batch 1, 8 and 32 (16-token prompts, 8 new
 *     tokens, temperature 1, the LM head every step): decode tokens/s with the fp32 weights as
 *     graph inputs (forward's layout, and --weights fp32), as prepacked initializers, int8 and
 *     int4, in one child process, run in turns; ratios against fp32 inputs.
 * (b) The Qwen2.5-7B-shaped BF16 checkpoint (bench/big-checkpoint.ts; used only when it is
 *     already complete, never written here): the int8 and int4 stores quantised from the file
 *     tensor by tensor, then greedy decode at batch 1 in a fresh child: tokens/s and peak RSS
 *     against the fp32 weights' size (computed, never loaded). Needs 12 GiB available, else skipped.
 */
import { existsSync, readFileSync } from 'node:fs';
import { join } from 'node:path';
import type { BenchOptions, Row, Section, SectionResult } from './section.js';
import { GiB, log, runChild, stats } from './util.js';
import { qwen7bCheckpoint } from './big-checkpoint.js';
import { emlensCacheDir } from '../src/cache.js';
import { LAYOUTS, type BigArgs, type BigResult, type QuantDecodeArgs, type QuantDecodeResult } from './quant-child.js';

const BATCHES = [1, 8, 32];
const GOAL_RSS = { int8: 0.35, int4: 0.2 } as const;

function availableGiB(): number {
  const m = /MemAvailable:\s+(\d+) kB/.exec(readFileSync('/proc/meminfo', 'utf8'));
  return m ? (Number(m[1]) * 1024) / GiB : 0;
}

export const quantSection: Section = {
  name: 'quant',
  description: 'decode tokens/s with the weights as fp32 inputs vs fp32 initializers vs int8 vs int4 (0.5B-shaped, batches 1, 8, 32)',
  async run(opts: BenchOptions): Promise<SectionResult> {
    const rows: Row[] = [];
    const args: QuantDecodeArgs = { batches: BATCHES, promptLen: 16, newTokens: 8, warmup: Math.min(opts.warmup, 1), runs: Math.min(opts.runs, 3) };
    log(`quant: 0.5B-shaped decode, ${LAYOUTS.join(' / ')}, batches ${BATCHES.join(', ')}, in a child process`);
    const d = await runChild<QuantDecodeResult>('decode', args, { script: 'quant-child.js' });
    for (const B of BATCHES) {
      const tps = (l: (typeof LAYOUTS)[number]) => (1000 * B) / stats(d.decodeStepMs[l][B]!).median;
      const base = tps('fp32-inputs');
      for (const l of LAYOUTS) rows.push({ metric: `0.5B decode B=${B} ${l}`, value: tps(l), unit: 'tokens/s', digits: 1 });
      for (const l of LAYOUTS.slice(1)) rows.push({ metric: `0.5B decode B=${B} ${l} / fp32-inputs`, value: tps(l) / base, unit: 'x' });
    }
    rows.push({ metric: '0.5B child peak RSS (4 layouts at once)', value: d.peakRss / GiB, unit: 'GiB' });
    return { section: 'quant', rows, data: d };
  },
};

export const quant7bSection: Section = {
  name: 'quant-7b',
  description: 'int8/int4 greedy decode of the Qwen2.5-7B-shaped BF16 checkpoint (if already written): store time, tokens/s, peak RSS vs fp32 weights',
  async run(): Promise<SectionResult> {
    const rows: Row[] = [];
    const data: BigResult[] = [];
    const marker = join(emlensCacheDir(), 'bench', 'qwen2.5-7b-shaped-random-bf16', 'emlens_bench.json');
    const avail = availableGiB();
    if (!existsSync(marker)) log(`quant: ${marker} missing (the 7B-shaped checkpoint is not written); 7B part skipped`);
    else if (avail < 12) log(`quant: ${avail.toFixed(1)} GiB available, under 12; 7B part skipped`);
    else {
      const ck = qwen7bCheckpoint();
      // EMLENS_BENCH_7B_MODES=int4 (a comma list) measures fewer modes: each store takes minutes on 2 cores.
      const modes = (process.env.EMLENS_BENCH_7B_MODES ?? 'int8,int4').split(',').filter((m): m is 'int8' | 'int4' => m === 'int8' || m === 'int4');
      for (const mode of modes) {
        const a: BigArgs = { dir: ck.dir, mode, promptLen: 16, newTokens: 8 };
        log(`quant: 7B-shaped ${mode}: store (quantised from BF16, tensor by tensor), in a child process`);
        const s = await runChild<BigResult>('store', a, { script: 'quant-child.js' });
        log(`quant: 7B-shaped ${mode}: greedy decode, batch 1, in a fresh child process`);
        const r = await runChild<BigResult>('big', a, { script: 'quant-child.js' });
        data.push(s, r);
        rows.push(
          { metric: `7B ${mode} store written (quantise from BF16)`, value: s.loadMs / 1000, unit: 's', digits: 0 },
          { metric: `7B ${mode} store peak RSS / fp32 weights`, value: s.peakRss / ck.fp32Bytes, unit: 'x', digits: 3 },
          { metric: `7B ${mode} store file / fp32 weights`, value: r.storeBytes / ck.fp32Bytes, unit: 'x', digits: 3 },
          { metric: `7B ${mode} greedy decode B=1`, value: 1000 / r.decodeStepMs!, unit: 'tokens/s', digits: 2 },
          { metric: `7B ${mode} decode peak RSS`, value: r.peakRss / GiB, unit: 'GiB', digits: 2 },
          { metric: `7B ${mode} after decode: RSS anonymous (ORT's prepacked weights, heaps)`, value: (r.rssAnon ?? 0) / GiB, unit: 'GiB', digits: 2 },
          { metric: `7B ${mode} after decode: RSS file pages (the store's mapped initializers)`, value: (r.rssFile ?? 0) / GiB, unit: 'GiB', digits: 2 },
          { metric: `7B ${mode} decode peak RSS / fp32 weights`, value: r.peakRss / ck.fp32Bytes, unit: 'x', digits: 3, goal: { op: '<=', value: GOAL_RSS[mode] } },
        );
      }
    }
    return { section: 'quant-7b', rows, data };
  },
};
