import type { Command } from 'commander';
import { basename } from 'node:path';
import { loadModel } from './load.js';
import { EmlensError } from '../errors.js';
import { exportTriton } from '../export/triton.js';

interface Opts {
  triton?: string;
  adapter?: string;
  name?: string;
}

export function register(program: Command): void {
  program
    .command('export')
    .description('write a model for another serving engine: --triton DIR, a Triton model repository of the universal hooked graph (KServe v2, as emlens serve)')
    .argument('<model>', 'local folder or Hugging Face model id')
    .option('--triton <dir>', 'Triton model repository to write the model into (DIR/NAME/config.pbtxt, DIR/NAME/1/model.onnx + model.onnx.data)')
    .option('--adapter <dir>', 'PEFT LoRA adapter (folder or hub id) merged into the exported weights')
    .option('--name <name>', 'model name in the repository (default: the folder or repo name)')
    .action(async (modelId: string, o: Opts) => {
      if (o.triton === undefined) throw new EmlensError('export needs a target: --triton DIR');
      const model = await loadModel(modelId, { adapter: o.adapter });
      const name = o.name ?? basename(modelId.replace(/\/+$/, ''));
      const r = exportTriton(model, o.triton, name);
      console.log(`wrote ${r.modelDir} (model.onnx + ${(r.bytes / 2 ** 20).toFixed(1)} MiB of weights); serve it with: tritonserver --model-repository ${o.triton}`);
    });
}
