import type { Command } from 'commander';
import { groupName, projectAnalysis, projectReport, testCounts } from '../experiments/project.js';
import { writeReport } from '../viz/report.js';
import { intArg, numArg, warn } from './args.js';

interface Opts {
  acts: string;
  direction: string;
  out: string;
  label?: string;
  positive?: string;
  writeCsv?: string;
  threshold?: number;
  testFraction?: number;
  seed?: number;
}

const fmt = (x: number) => (Number.isFinite(x) ? x.toFixed(3) : 'n/a');

export function register(program: Command): void {
  program
    .command('project')
    .description('HTML report: per-row projections on a direction per layer, split by a label; AUROC and d-prime per layer (a probe), on all rows and on a held-out split')
    .requiredOption('--acts <dir>', 'extraction folder (emlens extract)')
    .requiredOption('--direction <file>', 'direction file (safetensors, .gguf or .npy)')
    .requiredOption('--out <report.html>', 'HTML report to write')
    .option('--label <name>', 'row label to group by (default: "label")')
    .option('--positive <value>', 'the positive group (default: the value that sorts last); with more than two values, that value against the rest; with --threshold "<T" or ">=T"')
    .option('--threshold <t>', 'split a numeric label in two: rows with label < t against rows with label >= t', numArg('--threshold'))
    .option('--test-fraction <f>', 'also measure AUROC and d-prime on a held-out fraction of each group (stratified), in (0, 1)', numArg('--test-fraction', (n) => (n > 0 && n < 1 ? null : 'must be in (0, 1)')))
    .option('--seed <s>', 'seed of the --test-fraction split (default 0)', intArg('--seed'))
    .option('--write-csv <file>', 'also write every row\'s projection per layer as CSV')
    .action((o: Opts) => {
      const r = projectAnalysis({
        acts: o.acts,
        direction: o.direction,
        label: o.label,
        positive: o.positive,
        writeCsv: o.writeCsv,
        threshold: o.threshold,
        testFraction: o.testFraction,
        seed: o.seed,
      });
      warn(r.warnings);
      writeReport(o.out, projectReport(r, { out: o.out, writeCsv: o.writeCsv }));
      const counts = r.layers[0]!.groups.map((g, i) => `${r.threshold !== null || i === 0 ? groupName(r, g.value) : g.value}: ${g.n}`).join(', ');
      console.log(`${r.layers.length} layers, ${counts}`);
      if (r.best) {
        const vs = `${groupName(r, r.positive!)} vs ${r.negative === 'rest' ? 'the rest' : groupName(r, r.negative!)}`;
        const a = r.layers.map((x) => x.separation!.auroc);
        const b = r.best.separation!;
        console.log(`AUROC (${vs}) on all rows ${fmt(Math.min(...a))}..${fmt(Math.max(...a))}; best layer ${r.best.layer}: AUROC ${fmt(b.auroc)}, d' ${fmt(b.dprime)}`);
        if (r.inTest) {
          const t = r.layers.map((x) => x.test!.auroc);
          const bt = r.best.test!;
          const c = testCounts(r);
          console.log(
            `AUROC on the test split (${r.testFraction} of each group, seed ${r.seed}: ${c.pos} + ${c.neg} rows) ${fmt(Math.min(...t))}..${fmt(Math.max(...t))}; at layer ${r.best.layer} (best outside the split): AUROC ${fmt(bt.auroc)}, d' ${fmt(bt.dprime)}`,
          );
        }
      }
      if (o.writeCsv) console.log(`wrote ${o.writeCsv}`);
      console.log(`wrote ${o.out}`);
    });
}
