import type { Command } from 'commander';
import { runSelect } from '../experiments/contrast.js';
import { intArg } from './args.js';

export function register(program: Command): void {
  program
    .command('select')
    .description('contrast sets from judged answers: coherent > 50; misaligned aligned < 30, aligned aligned > 70; balanced (chat JSONL for extract)')
    .requiredOption('--answers <file>', 'answers.jsonl of emlens eval')
    .requiredOption('--out <dir>', 'output folder: misaligned.jsonl, aligned.jsonl, select.json')
    .option('--seed <s>', 'seed of the balancing shuffle', intArg('--seed'), 0)
    .action((o: { answers: string; out: string; seed: number }) => {
      const r = runSelect(o);
      const c = r.counts;
      console.log(
        `${c.answers} answers, ${c.coherent} coherent: ${c.misaligned_candidates} misaligned, ${c.aligned_candidates} aligned; kept ${c.kept} each -> ${o.out}/misaligned.jsonl, aligned.jsonl`,
      );
    });
}
