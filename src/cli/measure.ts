import type { Command } from 'commander';
import { backendFrom, backendOptions, loadModel } from './load.js';
import { runMeasure } from '../experiments/measure.js';
import { writeReport } from '../viz/report.js';
import { writeFileAtomic } from '../io/atomic.js';
import { intArg } from './args.js';
import { rowProgress } from './progress.js';

export function register(program: Command): void {
  backendOptions(program
    .command('measure'))
    .description('efficiency, robustness and pre-training influence of trained solutions, as one HTML report (+ .json)')
    .requiredOption('--model <model>', 'local folder or Hugging Face model id')
    .option('--adapter <dir>', 'PEFT LoRA adapter (folder or hub id) merged into the model')
    .requiredOption('--solutions <files...>', 'solution files from emlens train (steering vectors or rank-1 adapters)')
    .requiredOption('--data <file>', 'NARROW.jsonl: chat rows (loss on the responses) or text rows (every token after the first)')
    .requiredOption('--out <file>', 'report.html (numbers also in report.json)')
    .option('--generic <file>', 'TEXT.jsonl of generic text for the pre-training influence')
    .option('--n <rows>', 'rows of each set used; the sets must hold that many (default: the first 100, or all if fewer)', intArg('--n', 1))
    .option('--seeds <n>', 'seeds for perturbations and random controls', intArg('--seeds', 1), 3)
    .option('--batch-tokens <n>', 'padded tokens per forward call', intArg('--batch-tokens', 1), 2048)
    .action(async (o) => {
      const model = await loadModel(o.model, { adapter: o.adapter, backend: backendFrom(o) });
      const bar = rowProgress('measure', process.stderr, 5000, 'evaluations');
      const t0 = Date.now();
      const r = await runMeasure(model, {
        solutions: o.solutions,
        data: o.data,
        generic: o.generic,
        n: o.n,
        seeds: o.seeds,
        batchTokens: o.batchTokens,
        onProgress: (d, t) => bar.update(d, t, 0, Date.now() - t0),
      });
      bar.stop();
      writeReport(o.out, r.report);
      const json = o.out.replace(/\.html?$/, '') + '.json';
      writeFileAtomic(json, [JSON.stringify({ names: r.names, efficiency: r.efficiency, robustness: r.robustness, influence: r.influence }, null, 2)]);
      r.names.forEach((n, k) => {
        console.log(`${n}: L=${r.efficiency.loss[k]!.toFixed(4)} (base ${r.efficiency.baseLoss.toFixed(4)}), ${r.efficiency.axes.find((a) => a.solutions.includes(k))!.kind === 'steer' ? '|a*s|' : '|a*BA|_F'}=${r.efficiency.addedNorm[k]!.toFixed(3)}, robustness@0.5=${r.robustness.mean[k]![r.robustness.epsilons.indexOf(0.5)]!.toFixed(1)}%${r.influence ? `, KL@max=${r.influence.kl[k]![r.influence.kl[k]!.length - 1]!.toExponential(2)} (random ${r.influence.randomKl[k]![r.influence.randomKl[k]!.length - 1]!.toExponential(2)})` : ''}`);
      });
      console.log(`${o.out} (+ ${json})`);
    });
}
