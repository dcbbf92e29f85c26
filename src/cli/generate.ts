import type { Command } from 'commander';
import { loadModel } from './load.js';
import { ablationFromFile, generateText, steeringFromFile } from '../experiments/generation.js';
import type { Interventions } from '../hooks/interventions.js';
import { InputRowError } from '../runtime/engine.js';
import { intArg, layersArg, numArg, readTextArg, warn } from './args.js';
import { EmlensError } from '../errors.js';

interface Opts {
  model: string;
  adapter?: string;
  prompt?: string;
  promptFile?: string;
  chat?: boolean;
  maxNewTokens: number;
  temperature: number;
  topP: number;
  seed: number;
  steer?: string;
  layer?: number;
  scale?: number;
  ablate?: string;
  ablateLayers: number[] | 'all';
  json?: boolean;
}

export function register(program: Command): void {
  program
    .command('generate')
    .description('generate text, optionally steering with or ablating a direction')
    .requiredOption('--model <model>', 'local folder or Hugging Face model id')
    .option('--adapter <dir>', 'PEFT LoRA adapter (folder or hub id) merged into the model')
    .option('--prompt <text>', 'prompt text')
    .option('--prompt-file <file>', 'read the prompt from a UTF-8 file, verbatim (for prompts too long for a command line)')
    .option('--chat', 'render the prompt as one user message with the chat template')
    .option('--max-new-tokens <n>', 'tokens to generate', intArg('--max-new-tokens'), 64)
    .option('--temperature <t>', 'sampling temperature; 0 = greedy', numArg('--temperature', (n) => (n < 0 ? 'must be >= 0' : null)), 0)
    .option('--top-p <p>', 'nucleus sampling mass', numArg('--top-p', (n) => (n <= 0 || n > 1 ? 'must be in (0, 1]' : null)), 1)
    .option('--seed <s>', 'sampling seed', intArg('--seed'), 0)
    .option('--steer <file>', 'direction file to steer with (adds scale * v to blocks.L.hook_resid_post)')
    .option('--layer <L>', 'layer to steer at', intArg('--layer'))
    .option('--scale <a>', 'steering scale', numArg('--scale'))
    .option('--ablate <file>', 'direction file whose unit directions are projected out')
    .option('--ablate-layers <layers>', '"all" (every layer the file covers) or L,L,...', layersArg('--ablate-layers'), 'all')
    .option('--json', 'print {"text", "tokens", "stopped"}')
    .action(async (o: Opts) => {
      if ((o.prompt === undefined) === (o.promptFile === undefined)) throw new EmlensError('generate needs exactly one of --prompt and --prompt-file');
      const prompt = o.prompt ?? readTextArg('--prompt-file', o.promptFile!);
      const promptFlag = o.prompt !== undefined ? '--prompt' : `--prompt-file ${o.promptFile}`;
      if (o.steer && (o.layer === undefined || o.scale === undefined)) throw new EmlensError('--steer needs --layer and --scale');
      if (!o.steer && (o.layer !== undefined || o.scale !== undefined)) throw new EmlensError('--layer and --scale need --steer');
      const model = await loadModel(o.model, { adapter: o.adapter });
      const iv: Interventions = {};
      if (o.steer) iv.steer = [steeringFromFile(model, { file: o.steer, layer: o.layer!, scale: o.scale! })];
      if (o.ablate) iv.ablate = ablationFromFile(model, { file: o.ablate, layers: o.ablateLayers });
      const [r] = await generateText(model, [prompt], {
        chat: o.chat,
        maxNewTokens: o.maxNewTokens,
        temperature: o.temperature,
        topP: o.topP,
        seed: o.seed,
        interventions: iv,
      }).catch((e: unknown) => {
        // The engine numbers rows; here row 0 is the prompt flag.
        throw e instanceof InputRowError ? new EmlensError(`${promptFlag}: ${e.problem}`) : e;
      });
      if (r!.unknownWords.length) {
        warn([`${promptFlag}: ${r!.unknownWords.length} word(s) outside the vocabulary of ${model.dir} encode as the unknown token: ${r!.unknownWords.slice(0, 20).map((w) => JSON.stringify(w)).join(', ')}`]);
      }
      const stopped = r!.finished ? 'eos' : r!.contextFull ? 'max_position_embeddings' : 'max_new_tokens';
      if (stopped === 'max_position_embeddings') {
        warn([`stopped after ${r!.tokens.length} new tokens: prompt + output reached the model's context of ${model.spec.maxPositions} tokens (max_position_embeddings)`]);
      }
      if (o.json) console.log(JSON.stringify({ text: r!.text, tokens: r!.tokens, stopped }));
      else console.log(r!.text);
    });
}
