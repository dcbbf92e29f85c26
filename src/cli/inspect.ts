import type { Command } from 'commander';
import { openAdapter, openModel } from '../backend/model.js';
import { describeModel } from '../backend/describe.js';
import { describeAdapter } from '../model/adapter.js';

export function register(program: Command): void {
  program
    .command('inspect')
    .description('print a model\'s family, shape, parameter count, dtypes and memory')
    .argument('<model>', 'local folder or Hugging Face model id')
    .option('--adapter <dir>', 'also validate a PEFT LoRA adapter (folder or hub id) against the model')
    .option('--json', 'print one JSON object')
    .action(async (model: string, opts: { json?: boolean; adapter?: string }) => {
      const m = await openModel(model);
      const d = { ...describeModel(m), ...(opts.adapter ? describeAdapter(await openAdapter(opts.adapter, m)) : {}) };
      if (opts.json) console.log(JSON.stringify(d));
      else for (const [k, v] of Object.entries(d)) console.log(`${k.padEnd(18)} ${typeof v === 'object' ? JSON.stringify(v) : v}`);
    });
}
