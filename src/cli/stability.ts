import type { Command } from 'commander';
import type { DirectionMethod } from '../directions/common.js';
import { DIRECTION_METHODS, WEIGHT_MODES, type WeightMode } from '../experiments/directions.js';
import { settleCell, stabilityAnalysis, stabilityReport } from '../experiments/stability.js';
import { writeReport } from '../viz/report.js';
import { choice, intArg, numArg, warn } from './args.js';

interface Opts {
  pos: string;
  neg: string;
  out: string;
  method: DirectionMethod;
  weight: WeightMode;
  bootstrap: number;
  seed: number;
  threshold: number;
}

const fmt = (x: number) => (Number.isFinite(x) ? x.toFixed(3) : 'n/a');

export function register(program: Command): void {
  program
    .command('stability')
    .description('HTML report: per layer, bootstrap and split-half cosines (95% intervals) and the rows two disjoint subsamples need to give agreeing directions')
    .requiredOption('--pos <dir>', 'extraction folder of the positive set')
    .requiredOption('--neg <dir>', 'extraction folder of the negative set')
    .requiredOption('--out <report.html>', 'HTML report to write')
    .option('--method <m>', 'mean-diff | pca', choice('--method', DIRECTION_METHODS), 'mean-diff')
    .option('--weight <w>', 'mean-diff pooling: rows | tokens', choice('--weight', WEIGHT_MODES), 'rows')
    .option('--bootstrap <n>', 'bootstrap resamples (also split-half repeats and subsamples per size)', intArg('--bootstrap', 2), 100)
    .option('--seed <s>', 'random seed', intArg('--seed'), 0)
    .option('--threshold <c>', 'cosine the directions of two disjoint subsamples must reach and keep for a layer to count as settled', numArg('--threshold', (n) => (n <= -1 || n > 1 ? 'must be in (-1, 1]' : null)), 0.9)
    .action((o: Opts) => {
      const r = stabilityAnalysis(o);
      warn(r.warnings);
      writeReport(o.out, stabilityReport(r, { out: o.out }));
      const worst = r.layers.reduce((a, b) => (b.bootstrap.mean < a.bootstrap.mean ? b : a));
      const bestL = r.layers.reduce((a, b) => (b.bootstrap.mean > a.bootstrap.mean ? b : a));
      console.log(`${r.method} at ${r.pair.hook}, ${r.layers.length} layers, ${r.bootstrap} bootstrap resamples, seed ${r.seed}`);
      console.log(
        `bootstrap cosine to full: ${fmt(worst.bootstrap.mean)} (layer ${worst.layer}, 95% ${fmt(worst.bootstrap.lo)}..${fmt(worst.bootstrap.hi)}) to ${fmt(bestL.bootstrap.mean)} (layer ${bestL.layer})`,
      );
      const unit = r.method === 'pca' ? 'pairs' : 'rows per side';
      console.log(`${unit} for two disjoint subsamples to agree at ${r.threshold}: ${r.layers.map((x) => `${x.layer}:${settleCell(x.settle, r.sizes)}`).join(', ')}`);
      console.log(`wrote ${o.out}`);
    });
}
