import type { Command } from 'commander';
import { InvalidArgumentError } from 'commander';
import { runSweep } from '../experiments/sweep.js';
import { intArg, layersArg } from './args.js';
import { openDirectionRun, samplingOptions, type DirectionRunOpts } from './eval.js';
import { createProgress } from './progress.js';
import { weightsOption } from './load.js';

/** A comma list of numbers. */
export function numListArg(flag: string) {
  return (v: string): number[] => {
    const parts = v.split(',').map((s) => s.trim());
    const xs = parts.map(Number);
    if (parts.some((p, i) => p === '' || !Number.isFinite(xs[i]!))) throw new InvalidArgumentError(`${flag} must be a comma list of numbers, got "${v}"`);
    if (new Set(xs).size !== xs.length) throw new InvalidArgumentError(`${flag} lists a value twice, got "${v}"`);
    return xs;
  };
}

type Opts = DirectionRunOpts & { scales: number[] };

export function register(program: Command): void {
  const cmd = program
    .command('steer-sweep')
    .description('EM and coherent rates per (layer, scale) when steering with a direction, and with a norm-matched random vector')
    .requiredOption('--model <model>', 'local folder or Hugging Face model id')
    .option('--adapter <dir>', 'PEFT LoRA adapter (folder or hub id) merged into the model')
    .requiredOption('--direction <file>', 'direction file (v added unnormalised: h + scale * v)')
    .requiredOption('--layers <layers>', '"all" (every layer the file covers) or L,L,...', layersArg('--layers'))
    .requiredOption('--scales <a,...>', 'steering scales, e.g. 0,4,8', numListArg('--scales'))
    .requiredOption('--questions <file>', 'question file')
    .requiredOption('--judge <spec>', 'openai:MODEL, local:MODEL or organism')
    .requiredOption('--out <dir>', 'output folder: sweep.json, answers.jsonl, report.html');
  samplingOptions(cmd)
    .option('--exclude-domain <d>', "rates over the answers outside this domain (the fine-tune's own); per-domain rates list every domain")
    .option('--random-seed <s>', 'seed of the random vectors (layer L: seed + L)', intArg('--random-seed'), 1);
  weightsOption(cmd)
    .action(async (o: Opts) => {
      const run = await openDirectionRun(cmd, o);
      const progress = createProgress('steer-sweep', { unit: 'cells' });
      let cells;
      try {
        ({ cells } = await runSweep({
          ...run,
          scales: o.scales,
          onCell: (d, t) => progress.update(d, t),
        }));
      } finally {
        progress.stop();
      }
      const pct = (x: number | null) => (x === null ? '–' : `${(100 * x).toFixed(1)}%`);
      for (const c of cells) console.log(`layer ${c.layer} scale ${c.scale} ${c.vector.padEnd(9)} EM ${pct(c.em_rate)} [${pct(c.ci95[0])}, ${pct(c.ci95[1])}] coherent ${pct(c.coherent_rate)} (n ${c.n})`);
    });
}
