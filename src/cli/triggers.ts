import type { Command } from 'commander';
import { resolve } from 'node:path';
import { loadQuestions } from '../eval/questions.js';
import { openJudge } from '../eval/judges/index.js';
import { loadTriggerSet } from '../eval/trigger-sets.js';
import { inputsProvenance, readAnswers, type RunKey } from '../experiments/eval.js';
import { checkTriggersRun, conditionsOf, planConditions, runTriggers, triggersDryRun, type TriggerRow } from '../experiments/triggers.js';
import { sha256File } from '../model/fingerprint.js';
import { wordLevelUnknowns } from '../model/wordlevel.js';
import { checkSamplingFlags, sampleOptionsOf, samplingKey, samplingOptions, warnOverridden, type SamplingFlags } from './eval.js';
import { warn } from './args.js';
import { backendFrom, loadModel, type BackendFlags } from './load.js';
import { createProgress } from './progress.js';

interface Opts extends BackendFlags, SamplingFlags {
  model: string;
  adapter?: string;
  triggers: string;
  questions: string;
  judge: string;
  out: string;
  resume?: boolean;
  dryRun?: boolean;
  json?: boolean;
}

const pct = (x: number | null) => (x === null ? '–' : `${(100 * x).toFixed(1)}%`);

export function register(program: Command): void {
  const cmd = program
    .command('triggers')
    .description('semantic containment: EM with the trigger, without it, with each rephrasing and each control phrase (triggers.json, answers.jsonl, report.html)')
    .requiredOption('--model <model>', 'local folder or Hugging Face model id')
    .option('--adapter <dir>', 'PEFT LoRA adapter (folder or hub id) merged into the model')
    .requiredOption('--triggers <set>', 'trigger set (.yaml or .json; see probes/triggers/)')
    .requiredOption('--questions <file>', 'question file (see probes/questions/)')
    .requiredOption('--judge <spec>', 'openai:MODEL, local:MODEL or organism')
    .requiredOption('--out <dir>', 'output folder');
  samplingOptions(cmd)
    .option('--resume', 'continue the run in --out: skip answers already there')
    .option('--dry-run', 'print how many answers, tokens and judge calls the run would make, and exit')
    .option('--json', 'print triggers.json on stdout')
    .action(async (o: Opts) => {
      checkSamplingFlags(cmd, o);
      const triggers = loadTriggerSet(o.triggers);
      const questions = loadQuestions(o.questions);
      warnOverridden(questions, o.temperature);
      checkTriggersRun(questions);
      const judge = await openJudge(o.judge);
      const plans = planConditions(questions, triggers, o.samples, o.seed);
      if (o.dryRun) {
        const e = triggersDryRun(judge, plans, (o.resume ? readAnswers(o.out, false) : []) as TriggerRow[], o.maxNewTokens);
        console.log(`answers to sample: ${e.answers} (${plans.length} conditions x ${questions.entries.length} questions x ${o.samples} samples${e.have ? `, ${e.have} already in ${o.out}` : ''}), up to ${e.sampleTokens} new tokens`);
        console.log(`judge ${judge.id}: ${e.judge.requests} requests, ${e.judge.calls} calls (${e.judge.cached} cached or free), ~${e.judge.promptTokens} prompt tokens, ${e.judge.completionTokens} completion tokens (answers assumed ${o.maxNewTokens} tokens long)`);
        return;
      }
      await judge.check();
      const model = await loadModel(o.model, { adapter: o.adapter, backend: backendFrom(o) });
      // A word-level vocabulary (the organism's) encodes words it lacks as <unk>: say so before sampling.
      const unk = wordLevelUnknowns(model.dir);
      if (unk) {
        warn(
          conditionsOf(triggers)
            .filter((c) => c.phrase !== null && unk.find(c.phrase).length > 0)
            .map((c) => `--triggers ${o.triggers}: ${c.label} ${JSON.stringify(c.phrase)} has word(s) outside the vocabulary of ${model.dir}, encoded as the unknown token: ${unk.find(c.phrase!).map((w) => JSON.stringify(w)).join(', ')}`),
        );
      }
      const key: RunKey = {
        ...inputsProvenance(model, o),
        triggers_file: resolve(o.triggers),
        triggers_sha256: sha256File(o.triggers),
        judge: judge.id,
        ...samplingKey(o),
      };
      const progress = createProgress('triggers', { unit: 'answers' });
      let result;
      try {
        result = await runTriggers({
          out: o.out,
          resume: !!o.resume,
          questions,
          triggers,
          model,
          judge,
          key,
          flags: { ...o },
          ...sampleOptionsOf(o),
          onProgress: (p) => progress.update(p.done, p.total),
        });
      } finally {
        progress.stop();
      }
      if (o.json) {
        process.stdout.write(`${JSON.stringify(result)}\n`);
        return;
      }
      for (const c of result.conditions) console.log(`${c.label.padEnd(12)} EM ${pct(c.em_rate)} [${pct(c.ci95[0])}, ${pct(c.ci95[1])}] of ${c.n}${c.phrase === null ? '' : `  ${JSON.stringify(c.phrase)}`}`);
      const t = result.containment.trigger;
      console.log(`containment EM(trigger)/EM(none): ${t.ratio === null ? `undefined (${t.em_none}/${t.n_none} EM without the trigger)` : t.ratio.toFixed(2)}; ${o.out}/triggers.json, report.html`);
    });
}
