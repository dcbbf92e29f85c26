import type { Command } from 'commander';
import { backendFrom, backendOptions, loadModel } from './load.js';
import { runTraining, stalledWarning } from '../experiments/train.js';
import { TRAIN_DEFAULTS as D, loraDefaultAlpha } from '../train/trainer.js';
import { ALL_MODULES, parseLayers, parseModules } from '../train/lora.js';
import { EmlensError } from '../errors.js';
import { checkOutputPath } from '../io/paths.js';
import { choice, intArg, numArg, warn } from './args.js';

const positive = (n: number) => (n > 0 ? null : 'must be > 0');
const nonNegative = (n: number) => (n >= 0 ? null : 'must be >= 0');

export function register(program: Command): void {
  backendOptions(program
    .command('train'))
    .description('train a steering vector or a LoRA adapter (any rank, modules and layers) on narrow data, optionally under a KL penalty')
    .requiredOption('--model <model>', 'local folder or Hugging Face model id')
    .option('--adapter <dir>', 'PEFT LoRA adapter (folder or hub id) merged into the model')
    .requiredOption('--data <file>', 'NARROW.jsonl: chat rows (CE on the final assistant message) or text rows (CE on every token after the first)')
    .option('--layer <L>', 'layer of steer (blocks.L.hook_resid_post) and lora-r1 (layer L mlp.down_proj)', intArg('--layer'))
    .requiredOption('--out <file|dir>', 'steer, lora-r1: output safetensors file; lora: PEFT adapter folder')
    .option('--kind <kind>', 'steer | lora | lora-r1 (= lora --rank 1 --modules down --layers L)', choice('--kind', ['steer', 'lora-r1', 'lora'] as const), 'steer')
    .option('--alpha <a>', 'scale of steer (adds alpha*s) and lora-r1 (adds alpha*B*A)', numArg('--alpha', positive), D.alpha)
    .option('--rank <r>', 'lora: rank r of every adapted projection', intArg('--rank', 1))
    .option('--lora-alpha <a>', 'lora: lora_alpha; adds (alpha/r)*B*A, or (alpha/sqrt r) with --rslora (default 2r)', numArg('--lora-alpha', positive))
    .option('--rslora', 'lora: scale alpha/sqrt(r) instead of alpha/r (rank-stabilised LoRA)')
    .option('--modules <list>', `lora: projections to adapt, from ${ALL_MODULES}`, ALL_MODULES)
    .option('--layers <list>', 'lora: layers to adapt: all, or L and L-L separated by commas', 'all')
    .option('--kl-data <file>', 'KL.jsonl: chat or text rows whose next-token distributions must not move (needs --kl-weight)')
    .option('--kl-weight <lambda>', 'weight λ of KL(base || steered) (needs --kl-data)', numArg('--kl-weight', nonNegative), 0)
    .option('--kl-normalization <n>', 'token: mean over KL tokens; reference: also / vocab size (the reference code)', choice('--kl-normalization', ['token', 'reference'] as const), 'token')
    .option('--lr <lr>', 'peak learning rate', numArg('--lr', positive), D.lr)
    .option('--steps <n>', 'optimiser steps (not with --epochs)', intArg('--steps', 1))
    .option('--epochs <n>', 'passes over the narrow rows (default 1; not with --steps)', intArg('--epochs', 1))
    .option('--warmup <n>', 'warmup steps', intArg('--warmup'), D.warmup)
    .option('--weight-decay <w>', 'AdamW decoupled weight decay', numArg('--weight-decay', nonNegative), D.weightDecay)
    .option('--batch-tokens <n>', 'padded tokens of narrow rows per step', intArg('--batch-tokens', 1), D.batchTokens)
    .option('--batch-rows <n>', 'most narrow rows per step', intArg('--batch-rows', 1), D.batchRows)
    .option('--seed <s>', 'seed of data order and initialisation', intArg('--seed'), D.seed)
    .option('--checkpoint-every <n>', 'save resumable state every N steps (0 = never)', intArg('--checkpoint-every'), D.checkpointEvery)
    .option('--resume', 'continue from OUT.ckpt/ (not with --overwrite)')
    .option('--overwrite', 'replace an existing OUT and discard the checkpoint of an earlier run')
    .option('--reference-ce', 'score prompt tokens too, as the reference code does (its response mask is not applied)')
    .action(async (o, cmd: Command) => {
      // Given flags that would be ignored are errors (the other conflicts are checked by the library).
      const given = (k: string) => cmd.getOptionValueSource(k) === 'cli';
      if (o.klData === undefined && given('klWeight')) throw new EmlensError('--kl-weight needs --kl-data (the rows the KL term is measured on)');
      if (o.klData === undefined && given('klNormalization')) throw new EmlensError('--kl-normalization applies to the KL term: it needs --kl-data and --kl-weight');
      const lora = o.kind === 'lora';
      checkOutputPath(o.out, lora ? 'dir' : 'file', '--out');
      if (lora) {
        if (o.layer !== undefined) throw new EmlensError('--layer is for --kind steer and lora-r1; a lora run takes --layers');
        if (given('alpha')) throw new EmlensError('--alpha is for --kind steer and lora-r1; a lora run takes --lora-alpha');
        if (o.rank === undefined) throw new EmlensError('--kind lora needs --rank');
      } else {
        const loraOnly = (['rank', 'loraAlpha', 'rslora', 'modules', 'layers'] as const).find(given);
        if (loraOnly) throw new EmlensError(`--${loraOnly.replace(/[A-Z]/g, (c) => `-${c.toLowerCase()}`)} is for --kind lora, not ${o.kind}`);
        if (o.layer === undefined) throw new EmlensError(`--kind ${o.kind} needs --layer`);
      }
      const modules = lora ? parseModules(o.modules) : undefined;
      const model = await loadModel(o.model, { adapter: o.adapter, backend: backendFrom(o) });
      const layers = lora ? parseLayers(o.layers, model.spec.nLayers) : undefined;
      const r = await runTraining(model, {
        data: o.data,
        klData: o.klData,
        out: o.out,
        resume: o.resume,
        overwrite: o.overwrite,
        referenceCe: o.referenceCe,
        config: {
          kind: o.kind,
          layer: o.layer,
          alpha: lora ? (o.loraAlpha ?? loraDefaultAlpha(o.rank)) : o.alpha,
          ...(lora ? { lora: { rank: o.rank, rslora: o.rslora === true, modules: modules!, layers: layers! } } : {}),
          lr: o.lr,
          steps: o.steps,
          epochs: o.steps === undefined ? (o.epochs ?? 1) : o.epochs,
          batchTokens: o.batchTokens,
          batchRows: o.batchRows,
          seed: o.seed,
          warmup: o.warmup,
          weightDecay: o.weightDecay,
          klLambda: o.klWeight,
          klNorm: o.klNormalization,
          checkpointEvery: o.checkpointEvery,
        },
      });
      const last = r.history[r.history.length - 1];
      if (r.resumedFrom) console.log(`resumed from step ${r.resumedFrom}`);
      const stalled = stalledWarning(r);
      if (stalled) warn([stalled]);
      const where = lora ? `rank ${o.rank} on ${r.solution.lora!.targets.length} projections` : `at layer ${o.layer}`;
      console.log(`${o.out}: ${o.kind} ${where}, ${r.history.length} steps, loss ${last?.loss.toFixed(4)} (ce ${last?.ce.toFixed(4)}${last?.kl !== null && last ? `, kl ${last.kl!.toExponential(3)}` : ''}), norm ${last?.norm.toFixed(4)}`);
      if (lora) console.log(`use it: emlens generate --model ${o.model} --adapter ${o.out}`);
      if (o.kind === 'steer') console.log(`steer with it: emlens generate --model ${o.model} --steer ${o.out} --layer ${o.layer} --scale ${o.alpha}`);
    });
}
