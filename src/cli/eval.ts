import type { Command } from 'commander';
import { resolve } from 'node:path';
import { EmlensError } from '../errors.js';
import { loadQuestions } from '../eval/questions.js';
import { openJudge } from '../eval/judges/index.js';
import { ablationFromFile, steeringFromFile } from '../experiments/generation.js';
import { dryRunEstimate, inputsProvenance, itemKey, planItems, readAnswers, runEval, type RunKey } from '../experiments/eval.js';
import type { Interventions } from '../hooks/interventions.js';
import { sha256File } from '../model/fingerprint.js';
import { intArg, layersArg, numArg, warn } from './args.js';
import { backendFrom, backendOptions, loadModel, weightsFrom, weightsOption, type BackendFlags, type WeightsFlags } from './load.js';
import { createProgress } from './progress.js';

interface Opts extends BackendFlags, WeightsFlags {
  model: string;
  adapter?: string;
  questions: string;
  samples: number;
  judge: string;
  out: string;
  maxNewTokens: number;
  temperature: number;
  topP: number;
  seed: number;
  batch: number;
  steer?: string;
  layer?: number;
  scale?: number;
  ablate?: string;
  ablateLayers?: number[] | 'all';
  resume?: boolean;
  dryRun?: boolean;
}

/** The sampling flags every judged command shares. */
export function samplingOptions(cmd: Command, defaults: { samples?: number } = {}): Command {
  cmd
    .option('--max-new-tokens <n>', 'tokens per answer at most', intArg('--max-new-tokens', 1), 600)
    .option('--temperature <t>', 'sampling temperature; 0 = greedy', numArg('--temperature', (n) => (n < 0 ? 'must be >= 0' : null)), 1)
    .option('--top-p <p>', 'nucleus sampling mass', numArg('--top-p', (n) => (n <= 0 || n > 1 ? 'must be in (0, 1]' : null)), 1)
    .option('--seed <s>', 'sampling seed (fixes every answer, with --batch)', intArg('--seed'), 0)
    .option('--batch <n>', 'prompts sampled together (part of what a seed means)', intArg('--batch', 1), 32)
    .requiredOption('--samples <n>', 'answers per question', intArg('--samples', 1), defaults.samples);
  return backendOptions(cmd);
}

/** The flags samplingOptions adds, as every judged command parses them. */
export interface SamplingFlags {
  samples: number;
  maxNewTokens: number;
  temperature: number;
  topP: number;
  seed: number;
  batch: number;
}

/** The sampling flags as the experiments take them (one mapping for every judged command). */
export function sampleOptionsOf(o: SamplingFlags) {
  return { samples: o.samples, seed: o.seed, batch: o.batch, maxNewTokens: o.maxNewTokens, temperature: o.temperature, topP: o.topP };
}

/** The sampling flags' part of a run key (what fixes the answers, checked on --resume). */
export function samplingKey(o: SamplingFlags) {
  return { samples: o.samples, seed: o.seed, batch: o.batch, max_new_tokens: o.maxNewTokens, temperature: o.temperature, top_p: o.topP };
}

/** Flags that would be silently ignored: --top-p under greedy decoding. */
export function checkSamplingFlags(cmd: Command, o: { temperature: number }): void {
  if (o.temperature === 0 && cmd.getOptionValueSource('topP') === 'cli') throw new EmlensError('--top-p has no effect with --temperature 0 (greedy decoding); drop one of them');
}

/** A reference file's own sampling fields that the flags override: one line per field. */
export function warnOverridden(set: ReturnType<typeof loadQuestions>, temperature: number): void {
  const spp = set.entries.filter((e) => e.samplesPerParaphrase !== undefined).map((e) => e.id);
  const temp = set.entries.filter((e) => e.temperature !== undefined && e.temperature !== temperature).map((e) => e.id);
  const lines: string[] = [];
  if (spp.length) lines.push(`${set.file}: samples_per_paraphrase of ${spp.length} entr${spp.length === 1 ? 'y' : 'ies'} (${spp.join(', ')}) is not used: --samples sets the answers per question`);
  if (temp.length) lines.push(`${set.file}: temperature of ${temp.length} entr${temp.length === 1 ? 'y' : 'ies'} (${temp.join(', ')}) is not used: --temperature is ${temperature}`);
  warn(lines);
}

/** The flags steer-sweep and ablate-eval share. */
export interface DirectionRunOpts extends BackendFlags, WeightsFlags {
  model: string;
  adapter?: string;
  direction: string;
  layers: number[] | 'all';
  questions: string;
  judge: string;
  samples: number;
  out: string;
  maxNewTokens: number;
  temperature: number;
  topP: number;
  seed: number;
  batch: number;
  excludeDomain?: string;
  randomSeed: number;
}

/**
 * What steer-sweep and ablate-eval do before their runs: check the flags, read the questions,
 * preflight the judge (before any sampling), load the model; returns the run's common inputs.
 */
export async function openDirectionRun(cmd: Command, o: DirectionRunOpts) {
  checkSamplingFlags(cmd, o);
  const set = loadQuestions(o.questions);
  warnOverridden(set, o.temperature);
  const judge = await openJudge(o.judge);
  await judge.check();
  const backend = backendFrom(o);
  const weights = weightsFrom(o, backend);
  const model = await loadModel(o.model, { adapter: o.adapter, backend, weights, fp32Decode: o.fp32Decode, generateOnly: true });
  return {
    model,
    judge,
    set,
    direction: o.direction,
    layers: o.layers,
    excludeDomain: o.excludeDomain,
    randomSeed: o.randomSeed,
    samples: o.samples,
    seed: o.seed,
    batch: o.batch,
    maxNewTokens: o.maxNewTokens,
    temperature: o.temperature,
    topP: o.topP,
    out: o.out,
    provenance: { ...inputsProvenance(model, o), weights, ...model.decodeProvenance(), direction: resolve(o.direction), flags: { ...o } },
  };
}

export function register(program: Command): void {
  const cmd = program
    .command('eval')
    .description('sample answers to a question file, judge them, and report the EM rate (answers.jsonl, summary.json, report.html)')
    .requiredOption('--model <model>', 'local folder or Hugging Face model id')
    .option('--adapter <dir>', 'PEFT LoRA adapter (folder or hub id) merged into the model')
    .requiredOption('--questions <file>', 'question file (the reference repo\'s YAML format; see probes/questions/)')
    .requiredOption('--judge <spec>', 'openai:MODEL, local:MODEL or organism')
    .requiredOption('--out <dir>', 'output folder');
  samplingOptions(cmd)
    .option('--steer <file>', 'direction file to steer with (adds scale * v at --layer)')
    .option('--layer <L>', 'layer to steer at', intArg('--layer'))
    .option('--scale <a>', 'steering scale', numArg('--scale'))
    .option('--ablate <file>', 'direction file whose unit directions are projected out')
    .option('--ablate-layers <layers>', '"all" (every layer the file covers, the default) or L,L,...', layersArg('--ablate-layers'))
    .option('--resume', 'continue the run in --out: skip answers already there')
    .option('--dry-run', 'print how many answers, tokens and judge calls the run would make, and exit');
  weightsOption(cmd)
    .action(async (o: Opts) => {
      checkSamplingFlags(cmd, o);
      if (o.steer && (o.layer === undefined || o.scale === undefined)) throw new EmlensError('--steer needs --layer and --scale');
      if (!o.steer && (o.layer !== undefined || o.scale !== undefined)) throw new EmlensError('--layer and --scale need --steer');
      if (!o.ablate && o.ablateLayers !== undefined) throw new EmlensError('--ablate-layers needs --ablate');
      const set = loadQuestions(o.questions);
      warnOverridden(set, o.temperature);
      const judge = await openJudge(o.judge);
      const items = planItems(set, o.samples, o.seed);
      if (o.dryRun) {
        const have = new Set((o.resume ? readAnswers(o.out, false) : []).map((r) => itemKey(r.question_id, r.sample)));
        const e = dryRunEstimate(judge, items, have, o.maxNewTokens);
        console.log(`answers to sample: ${e.answers} (${set.entries.length} questions x ${o.samples} samples${have.size ? `, ${have.size} already in ${o.out}` : ''}), up to ${e.sampleTokens} new tokens`);
        console.log(`judge ${judge.id}: ${e.judge.requests} requests, ${e.judge.calls} calls (${e.judge.cached} cached or free), ~${e.judge.promptTokens} prompt tokens, ${e.judge.completionTokens} completion tokens (answers assumed ${o.maxNewTokens} tokens long)`);
        return;
      }
      // A bad key, an unknown model or an unreachable server: one line now, not after hours of sampling.
      await judge.check();
      const backend = backendFrom(o);
      const weights = weightsFrom(o, backend);
      const model = await loadModel(o.model, { adapter: o.adapter, backend, weights, fp32Decode: o.fp32Decode, generateOnly: true });
      const iv: Interventions = {};
      if (o.steer) iv.steer = [steeringFromFile(model, { file: o.steer, layer: o.layer!, scale: o.scale! })];
      if (o.ablate) iv.ablate = ablationFromFile(model, { file: o.ablate, layers: o.ablateLayers ?? 'all' });
      const key: RunKey = {
        ...inputsProvenance(model, o),
        ...model.decodeProvenance(),
        judge: judge.id,
        ...samplingKey(o),
        steer_sha256: o.steer ? sha256File(o.steer) : null,
        steer_layer: o.layer ?? null,
        steer_scale: o.scale ?? null,
        ablate_sha256: o.ablate ? sha256File(o.ablate) : null,
        ablate_layers: o.ablate ? String(o.ablateLayers ?? 'all') : null,
      };
      const progress = createProgress('eval', { unit: 'answers' });
      let summary;
      try {
        ({ summary } = await runEval({
          out: o.out,
          resume: !!o.resume,
          set,
          model,
          judge,
          key,
          flags: { ...o },
          ...sampleOptionsOf(o),
          interventions: iv,
          onProgress: (p) => progress.update(p.done, p.total),
        }));
      } finally {
        progress.stop();
      }
      const pct = (x: number | null) => (x === null ? '–' : `${(100 * x).toFixed(1)}%`);
      console.log(`EM ${pct(summary.em_rate)} [${pct(summary.ci95[0])}, ${pct(summary.ci95[1])}] of ${summary.n_judged} judged; coherent ${pct(summary.coherent_rate)}; ${o.out}/summary.json, report.html`);
    });
}
