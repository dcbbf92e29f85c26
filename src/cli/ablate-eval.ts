import type { Command } from 'commander';
import { runAblateEval } from '../experiments/ablate-eval.js';
import { intArg, layersArg } from './args.js';
import { openDirectionRun, samplingOptions, type DirectionRunOpts } from './eval.js';
import { createProgress } from './progress.js';
import { weightsOption } from './load.js';

type Opts = DirectionRunOpts;

export function register(program: Command): void {
  const cmd = program
    .command('ablate-eval')
    .description('EM before and after projecting a direction out, and with a norm-matched random direction (ablation.json, report.html)')
    .requiredOption('--model <model>', 'local folder or Hugging Face model id')
    .option('--adapter <dir>', 'PEFT LoRA adapter (folder or hub id) merged into the model')
    .requiredOption('--direction <file>', 'direction file (each layer\'s direction normalised, then projected out)')
    .requiredOption('--layers <layers>', '"all" (every layer the file covers, each its own direction) or L,L,...', layersArg('--layers'))
    .requiredOption('--questions <file>', 'question file')
    .requiredOption('--judge <spec>', 'openai:MODEL, local:MODEL or organism')
    .requiredOption('--out <dir>', 'output folder: ablation.json, answers.jsonl, report.html');
  samplingOptions(cmd)
    .option('--exclude-domain <d>', "rates over the answers outside this domain (the fine-tune's own); per-domain rates list every domain")
    .option('--random-seed <s>', 'seed of the random directions (layer L: seed + L)', intArg('--random-seed'), 1);
  weightsOption(cmd)
    .action(async (o: Opts) => {
      const run = await openDirectionRun(cmd, o);
      const progress = createProgress('ablate-eval', { unit: 'runs' });
      let r;
      try {
        r = await runAblateEval({
          ...run,
          onRun: (d, t) => progress.update(d, t),
        });
      } finally {
        progress.stop();
      }
      const pct = (x: number | null) => (x === null ? '–' : `${(100 * x).toFixed(1)}%`);
      const red = (x: number | null) => (x === null ? '–' : `${x.toFixed(1)}%`);
      console.log(`EM before ${pct(r.before.em_rate)}, direction ablated ${pct(r.after.em_rate)} (reduction ${red(r.reduction)}), random ablated ${pct(r.random.em_rate)} (reduction ${red(r.random_reduction)}); n ${r.before.n}`);
    });
}
