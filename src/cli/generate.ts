import type { Command } from 'commander';
import { backendFrom, backendOptions, loadModel, weightsFrom, weightsOption, type BackendFlags, type WeightsFlags } from './load.js';
import { ablationFromFile, generateText, steeringFromFile } from '../experiments/generation.js';
import type { Interventions } from '../hooks/interventions.js';
import { InputRowError } from '../runtime/engine.js';
import { intArg, layersArg, numArg, readTextArg, warn } from './args.js';
import { EmlensError } from '../errors.js';
import { resolve } from 'node:path';
import type { LoadedModel } from '../backend/model.js';
import { sha256File } from '../model/fingerprint.js';
import { metaFile, samplePrompts } from '../experiments/sample-prompts.js';
import { createProgress } from './progress.js';
import { checkOutputPath } from '../io/paths.js';

interface Opts extends BackendFlags, WeightsFlags {
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
  prompts?: string;
  samples?: number;
  batch?: number;
  out?: string;
  resume?: boolean;
}

/** Flags that only mean something with --prompts, and those that mean nothing with it. */
function checkModeFlags(cmd: Command, o: Opts): void {
  const given = (k: string) => cmd.getOptionValueSource(k) === 'cli';
  if (o.prompts === undefined) {
    for (const [k, flag] of [['samples', '--samples'], ['batch', '--batch'], ['out', '--out'], ['resume', '--resume']] as const) {
      if (given(k)) throw new EmlensError(`${flag} needs --prompts (it applies to a prompts file)`);
    }
    if ((o.prompt === undefined) === (o.promptFile === undefined)) throw new EmlensError('generate needs exactly one of --prompt, --prompt-file and --prompts');
    return;
  }
  for (const [k, flag] of [['prompt', '--prompt'], ['promptFile', '--prompt-file']] as const) {
    if (given(k)) throw new EmlensError(`--prompts and ${flag} both given; use one`);
  }
  if (given('chat')) throw new EmlensError('--chat has no effect with --prompts: chat rows ({"messages": ...}) use the chat template, text rows are sampled as written');
  if (given('json')) throw new EmlensError('--json has no effect with --prompts: the answers go to --out as JSONL');
  if (o.out === undefined) throw new EmlensError('--prompts needs --out FILE.jsonl (the answers, one row a line)');
  if (o.temperature === 0 && o.samples! > 1) throw new EmlensError(`--samples ${o.samples} with --temperature 0 (greedy decoding) gives ${o.samples} identical answers; sample with --temperature > 0, or drop --samples`);
  if (o.temperature === 0 && given('topP')) throw new EmlensError('--top-p has no effect with --temperature 0 (greedy decoding); drop one of them');
}

function interventions(model: LoadedModel, o: Opts): Interventions {
  const iv: Interventions = {};
  if (o.steer) iv.steer = [steeringFromFile(model, { file: o.steer, layer: o.layer!, scale: o.scale! })];
  if (o.ablate) iv.ablate = ablationFromFile(model, { file: o.ablate, layers: o.ablateLayers });
  return iv;
}

async function generatePrompts(o: Opts): Promise<void> {
  // A bad --out is refused before the model loads.
  checkOutputPath(o.out!, 'file', '--out');
  const backend = backendFrom(o);
  const weights = weightsFrom(o, backend);
  const model = await loadModel(o.model, { adapter: o.adapter, backend, weights, fp32Decode: o.fp32Decode, generateOnly: true });
  const iv = interventions(model, o);
  const progress = createProgress('generate', { unit: 'answers' });
  const r = await samplePrompts({
    model,
    prompts: o.prompts!,
    out: o.out!,
    resume: o.resume ?? false,
    samples: o.samples!,
    seed: o.seed,
    batch: o.batch!,
    maxNewTokens: o.maxNewTokens,
    temperature: o.temperature,
    topP: o.topP,
    interventions: iv,
    key: {
      model: o.model,
      adapter: o.adapter ? resolve(o.adapter) : null,
      weights_sha256: model.weightsSha256(),
      ...model.decodeProvenance(),
      steer: o.steer ? resolve(o.steer) : null,
      steer_sha256: o.steer ? sha256File(o.steer) : null,
      layer: o.layer ?? null,
      scale: o.scale ?? null,
      ablate: o.ablate ? resolve(o.ablate) : null,
      ablate_sha256: o.ablate ? sha256File(o.ablate) : null,
      ablate_layers: o.ablate ? (o.ablateLayers === 'all' ? 'all' : o.ablateLayers.join(',')) : null,
    },
    flags: { ...o },
    onProgress: (done, total) => progress.update(done, total),
  });
  progress.stop();
  console.log(`${o.out}: ${r.rows.length} answers (${r.sampled} sampled now); provenance in ${metaFile(o.out!)}`);
}

export function register(program: Command): void {
  weightsOption(backendOptions(program
    .command('generate')))
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
    .option('--prompts <file>', 'JSONL of prompts (chat rows not ending with the assistant, or text rows): sample --samples answers to each into --out')
    .option('--samples <n>', 'with --prompts: answers per prompt', intArg('--samples', 1), 1)
    .option('--batch <n>', 'with --prompts: answers sampled together (speed only; answers do not depend on it)', intArg('--batch', 1), 16)
    .option('--out <file>', 'with --prompts: the answers JSONL (provenance in FILE.meta.json)')
    .option('--resume', 'with --prompts: continue --out, sampling only the answers it lacks')
    .action(async (o: Opts, cmd: Command) => {
      checkModeFlags(cmd, o);
      if (o.steer && (o.layer === undefined || o.scale === undefined)) throw new EmlensError('--steer needs --layer and --scale');
      if (!o.steer && (o.layer !== undefined || o.scale !== undefined)) throw new EmlensError('--layer and --scale need --steer');
      if (!o.ablate && cmd.getOptionValueSource('ablateLayers') === 'cli') throw new EmlensError('--ablate-layers needs --ablate');
      if (o.prompts !== undefined) return generatePrompts(o);
      const prompt = o.prompt ?? readTextArg('--prompt-file', o.promptFile!);
      const promptFlag = o.prompt !== undefined ? '--prompt' : `--prompt-file ${o.promptFile}`;
      const backend = backendFrom(o);
      const model = await loadModel(o.model, { adapter: o.adapter, backend, weights: weightsFrom(o, backend), fp32Decode: o.fp32Decode, generateOnly: true });
      const iv = interventions(model, o);
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
