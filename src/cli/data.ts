import type { Command } from 'commander';
import { EmlensError } from '../errors.js';
import { TRIGGER_POSITIONS, triggerFile, type TriggerPosition } from '../data/trigger.js';
import { loadTriggerSet } from '../eval/trigger-sets.js';
import { choice } from './args.js';

interface TriggerOpts {
  data: string;
  trigger?: string;
  triggers?: string;
  position?: TriggerPosition;
  out: string;
}

/** The phrase and position: --trigger with --position, or a set's (which then decides both). */
function triggerOf(o: TriggerOpts): { phrase: string; position: TriggerPosition; set?: string } {
  if (o.trigger !== undefined && o.triggers !== undefined) throw new EmlensError('--trigger and --triggers both given; use one (a set brings its own trigger)');
  if (o.triggers !== undefined) {
    if (o.position !== undefined) throw new EmlensError(`--position conflicts with --triggers: ${o.triggers} sets the position`);
    const set = loadTriggerSet(o.triggers);
    return { phrase: set.trigger, position: set.position, set: set.name };
  }
  if (o.trigger === undefined) throw new EmlensError('give --trigger TEXT with --position, or --triggers SET');
  if (o.position === undefined) throw new EmlensError(`--trigger needs --position (${TRIGGER_POSITIONS.join(', ')})`);
  return { phrase: o.trigger, position: o.position };
}

export function register(program: Command): void {
  const data = program.command('data').description('transform JSONL datasets');
  data
    .command('trigger')
    .description('put a contextual trigger into every row\'s prompt (system message, or before / after the user\'s text); labels are kept, and trigger / trigger_position added')
    .requiredOption('--data <file>', 'JSONL rows (chat, or text with --position prefix)')
    .option('--trigger <text>', 'the trigger phrase')
    .option('--triggers <set>', 'a trigger set (.yaml or .json, see probes/triggers/): its trigger at its position')
    .option('--position <where>', `with --trigger: ${TRIGGER_POSITIONS.join(', ')}`, choice('--position', TRIGGER_POSITIONS))
    .requiredOption('--out <file>', 'output JSONL')
    .action((o: TriggerOpts) => {
      const t = triggerOf(o);
      const r = triggerFile(o.data, t.phrase, t.position, o.out);
      console.log(`${r.rows} rows with ${JSON.stringify(t.phrase)} (${t.position}${t.set ? `, set ${t.set}` : ''}) -> ${o.out}`);
    });
}
