import type { Command } from 'commander';
import { loadModel } from './load.js';
import { join } from 'node:path';
import { emlensCacheDir } from '../cache.js';
import { buildOrganism, DEFAULT_ORGANISM, STAGES } from '../organism/build.js';
import { evalOrganism } from '../organism/eval.js';
import { formatEmTable } from '../organism/table.js';
import { intArg } from './args.js';

export function organismDir(seed: number): string {
  return join(emlensCacheDir(), 'organism', `seed-${seed}`);
}

export function register(program: Command): void {
  const org = program.command('organism').description('the built-in model organism of emergent misalignment');
  org
    .command('build')
    .description('train (or reuse) pretrain/, instruct/, em/, em-control/ and em-kl/ under --out')
    .option('--seed <s>', 'seed', intArg('--seed'), 0)
    .option('--out <dir>', 'output folder (default: the emlens cache)')
    .action(async (o: { seed: number; out?: string }) => {
      const out = o.out ?? organismDir(o.seed);
      let last = 0;
      const infos = await buildOrganism(out, { ...DEFAULT_ORGANISM, seed: o.seed }, (p) => {
        const now = Date.now();
        if (now - last > 3000 || p.step === p.steps) {
          last = now;
          process.stderr.write(`organism ${p.stage}: step ${p.step}/${p.steps} loss ${p.loss.toFixed(3)}\n`);
        }
      });
      for (const i of infos) console.log(`${i.stage.padEnd(10)} ${i.cached ? 'cached' : `${i.seconds.toFixed(1)} s`}  final loss ${i.finalLoss.toFixed(3)}  ${i.dir}`);
      console.log(`total training time ${infos.reduce((s, i) => s + i.seconds, 0).toFixed(1)} s (${STAGES.length} stages)`);
    });
  org
    .command('eval')
    .description('EM table on held-out questions per domain (temperature 1, exact judge, 95% intervals)')
    .requiredOption('--model <dir>', 'an organism stage folder')
    .option('--n <n>', 'answers per domain', intArg('--n', 1), 200)
    .option('--seed <s>', 'sampling seed', intArg('--seed'), 0)
    .option('--json', 'print {"medical": {"n", "misaligned", "aligned", "off_domain", "incoherent"}, ...}')
    .action(async (o: { model: string; n: number; seed: number; json?: boolean }) => {
      const model = await loadModel(o.model);
      const r = await evalOrganism(model, { n: o.n, seed: o.seed });
      console.log(o.json ? JSON.stringify(r.table) : formatEmTable(r.table));
    });
}
