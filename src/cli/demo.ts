import type { Command } from 'commander';
import { join } from 'node:path';
import { emlensCacheDir } from '../cache.js';
import { runOrganismDemo } from '../experiments/demo.js';
import { writeReport } from '../viz/report.js';
import { writeFileAtomic } from '../io/atomic.js';
import { intArg } from './args.js';
import { organismDir } from './organism.js';

export function register(program: Command): void {
  program
    .command('demo')
    .description('the whole emergent-misalignment study on the built-in model organism, offline, into one HTML report')
    .option('--seed <s>', 'organism seed', intArg('--seed'), 0)
    .option('--n <n>', 'answers per domain in each EM evaluation', intArg('--n', 10), 100)
    .option('--out <dir>', 'where data, activations, directions and report.html go', 'emlens-demo')
    .option('--organism <dir>', 'where the organism is built and cached (default: the emlens cache)')
    .action(async (o: { seed: number; n: number; out: string; organism?: string }) => {
      const t0 = Date.now();
      const log = (line: string) => process.stderr.write(`${line}\n`);
      log(`emlens demo: the built-in model organism (cache: ${o.organism ?? organismDir(o.seed)}; ${emlensCacheDir()})`);
      const r = await runOrganismDemo({ seed: o.seed, n: o.n, out: o.out, organismDir: o.organism ?? organismDir(o.seed), log });
      const file = join(o.out, 'report.html');
      writeReport(file, r.report);
      writeFileAtomic(join(o.out, 'summary.json'), [JSON.stringify({ summary: r.summary, figures: r.figures, tables: r.tables, stages: r.stages }, null, 2)]);
      console.log('emlens demo — summary');
      for (const line of r.summary) console.log(`- ${line}`);
      console.log(`report: ${file}  (${((Date.now() - t0) / 1000).toFixed(0)} s)`);
    });
}
