import type { Command } from 'commander';
import { resolveAdapter } from '../backend/model.js';
import { ablateAdapter } from '../experiments/adapter.js';
import { intArg } from './args.js';

interface AblateOpts {
  adapter: string;
  direction: string;
  out: string;
  directionLayer?: number;
  json?: boolean;
}

export function register(program: Command): void {
  const adapter = program.command('adapter').description('PEFT LoRA adapters');
  adapter
    .command('ablate')
    .description('write a copy of a LoRA adapter whose o_proj/down_proj B matrices cannot write along a direction (B <- B - r r^T B, rescaled to the old norm)')
    .requiredOption('--adapter <dir>', 'PEFT adapter folder or Hugging Face id')
    .requiredOption('--direction <file>', 'direction file (blocks.L.hook_resid_post vectors); layer L\'s modules use layer L\'s vector')
    .requiredOption('--out <dir>', 'folder for the ablated adapter (adapter_config.json + adapter_model.safetensors)')
    .option('--direction-layer <L>', 'use this layer\'s vector for every module', intArg('--direction-layer'))
    .option('--json', 'print the per-module result as JSON')
    .action(async (o: AblateOpts) => {
      const r = ablateAdapter({ adapter: await resolveAdapter(o.adapter), direction: o.direction, out: o.out, directionLayer: o.directionLayer });
      if (o.json) {
        console.log(JSON.stringify(r));
        return;
      }
      for (const m of r.modules) {
        console.log(`layer ${m.layer} ${m.module}: |r^T B| ${m.along.toPrecision(4)} -> ${m.alongAfter.toExponential(1)} (direction of layer ${m.directionLayer}), ||B|| ${m.norm.toPrecision(4)} kept`);
      }
      console.log(`wrote ${r.out} (${r.modules.length} B matrices ablated, ${r.copied} factors copied unchanged)`);
    });
}
