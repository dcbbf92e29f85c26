/**
 * Trigger sets from files: probes/triggers/*.yaml, or the JSON an organism stage writes
 * (triggers.json), both in the format of src/data/trigger.ts, validated there. The set's default
 * name is the file's name without its extension.
 */
import { readFileSync } from 'node:fs';
import { basename, extname } from 'node:path';
import { EmlensError } from '../errors.js';
import { parseTriggerSet, type TriggerSet } from '../data/trigger.js';
import { readYaml } from './yaml.js';

export function loadTriggerSet(file: string): TriggerSet {
  const ext = extname(file).toLowerCase();
  let value: unknown;
  if (ext === '.yaml' || ext === '.yml') value = readYaml(file).value;
  else if (ext === '.json') {
    let text: string;
    try {
      text = readFileSync(file, 'utf8');
    } catch (e) {
      const code = (e as NodeJS.ErrnoException).code;
      throw new EmlensError(`${file}: cannot read (${code === 'ENOENT' ? 'no such file' : (code ?? String(e))})`);
    }
    try {
      value = JSON.parse(text);
    } catch (e) {
      throw new EmlensError(`${file}: not valid JSON (${String((e as Error).message).split('\n')[0]})`);
    }
  } else throw new EmlensError(`${file}: a trigger set is a .yaml, .yml or .json file`);
  return parseTriggerSet(value, file, basename(file, extname(file)));
}
