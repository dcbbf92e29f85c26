import type { Command } from 'commander';
import { resolve } from 'node:path';
import { loadQuestions } from '../eval/questions.js';
import { openJudge } from '../eval/judges/index.js';
import { runAblateEval } from '../experiments/ablate-eval.js';
import { inputsProvenance } from '../experiments/eval.js';
import { intArg, layersArg } from './args.js';
import { checkSamplingFlags, samplingOptions, warnOverridden } from './eval.js';
import { loadModel } from './load.js';
import { createProgress } from './progress.js';

interface Opts {
  model: string;
  adapter?: string;
  direction: string;
  layers: number[] | 'all';
  questions: string;
  judge: string;
  samples: number;
  out: string;
  maxNewTokens: number;
  temperature: number;
  topP: number;
  seed: number;
  batch: number;
  excludeDomain?: string;
  randomSeed: number;
}

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
    .option('--random-seed <s>', 'seed of the random directions (layer L: seed + L)', intArg('--random-seed'), 1)
    .action(async (o: Opts) => {
      checkSamplingFlags(cmd, o);
      const set = loadQuestions(o.questions);
      warnOverridden(set, o.temperature);
      const judge = await openJudge(o.judge);
      await judge.check();
      const model = await loadModel(o.model, { adapter: o.adapter });
      const progress = createProgress('ablate-eval', { unit: 'runs' });
      let r;
      try {
        r = await runAblateEval({
          model,
          judge,
          set,
          direction: o.direction,
          layers: o.layers,
          excludeDomain: o.excludeDomain,
          randomSeed: o.randomSeed,
          samples: o.samples,
          seed: o.seed,
          batch: o.batch,
          maxNewTokens: o.maxNewTokens,
          temperature: o.temperature,
          topP: o.topP,
          out: o.out,
          provenance: {
            ...inputsProvenance(model, o),
            direction: resolve(o.direction),
            flags: { ...o },
          },
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
