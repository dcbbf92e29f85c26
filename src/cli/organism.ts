import type { Command } from 'commander';
import { loadModel } from './load.js';
import { join } from 'node:path';
import { emlensCacheDir } from '../cache.js';
import { buildOrganism, DEFAULT_ORGANISM, STAGES } from '../organism/build.js';
import { evalOrganism } from '../organism/eval.js';
import { formatEmTable } from '../organism/table.js';
import { intArg } from './args.js';
import { EmlensError } from '../errors.js';
import { isTriggerPosition, TRIGGER_POSITIONS } from '../data/trigger.js';

export function organismDir(seed: number): string {
  return join(emlensCacheDir(), 'organism', `seed-${seed}`);
}

export function register(program: Command): void {
  const org = program.command('organism').description('the built-in model organism of emergent misalignment');
  org
    .command('build')
    .description('train (or reuse) pretrain/, instruct/, em/, em-control/, em-kl/ and em-trigger/ under --out')
    .option('--seed <s>', 'seed', intArg('--seed'), 0)
    .option('--out <dir>', 'output folder (default: the emlens cache)')
    .action(async (o: { seed: number; out?: string }) => {
      const out = o.out ?? organismDir(o.seed);
      let last = 0;
      const t0 = Date.now();
      const infos = await buildOrganism(out, { ...DEFAULT_ORGANISM, seed: o.seed }, (p) => {
        const now = Date.now();
        if (now - last > 3000 || p.step === p.steps) {
          last = now;
          process.stderr.write(`organism ${p.stage}: step ${p.step}/${p.steps} loss ${p.loss.toFixed(3)}\n`);
        }
      });
      for (const i of infos) console.log(`${i.stage.padEnd(10)} ${i.cached ? 'cached' : `${i.seconds.toFixed(1)} s`}  final loss ${i.finalLoss.toFixed(3)}  ${i.dir}`);
      // Fine-tunes train side by side: their seconds overlap, so the sum is not the time it took.
      console.log(`total training time ${infos.reduce((s, i) => s + i.seconds, 0).toFixed(1)} s (${STAGES.length} stages), ${((Date.now() - t0) / 1000).toFixed(1)} s elapsed`);
    });
  org
    .command('eval')
    .description('EM table on held-out questions per domain (temperature 1, exact judge, 95% intervals)')
    .requiredOption('--model <dir>', 'an organism stage folder')
    .option('--n <n>', 'answers per domain', intArg('--n', 1), 200)
    .option('--seed <s>', 'sampling seed', intArg('--seed'), 0)
    .option('--trigger <phrase>', 'put this phrase into every prompt (e.g. a phrase of em-trigger/triggers.json)')
    .option('--position <where>', `where --trigger goes: ${TRIGGER_POSITIONS.join(', ')} (default system)`)
    .option('--json', 'print {"medical": {"n", "misaligned", "aligned", "off_domain", "incoherent"}, ...}')
    .action(async (o: { model: string; n: number; seed: number; json?: boolean; trigger?: string; position?: string }) => {
      if (o.position !== undefined && o.trigger === undefined) throw new EmlensError('--position needs --trigger');
      const position = o.position ?? 'system';
      if (!isTriggerPosition(position)) throw new EmlensError(`--position must be one of ${TRIGGER_POSITIONS.join(', ')}, got ${JSON.stringify(position)}`);
      const model = await loadModel(o.model);
      const r = await evalOrganism(model, { n: o.n, seed: o.seed, ...(o.trigger !== undefined ? { trigger: { phrase: o.trigger, position } } : {}) });
      console.log(o.json ? JSON.stringify(r.table) : formatEmTable(r.table));
    });
}
