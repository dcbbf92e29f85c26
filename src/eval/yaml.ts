/**
 * YAML files as plain values plus the line each top-level list item starts on, so that a bad
 * entry is named by line as well as by index. Syntax errors, duplicate keys and alias bombs are
 * one-line EmlensErrors naming the file and line.
 */
import { readFileSync } from 'node:fs';
import { isSeq, LineCounter, parseDocument } from 'yaml';
import { EmlensError } from '../errors.js';

export interface YamlFile {
  value: unknown;
  /** 1-based line of top-level list item i, when the document is a list. */
  itemLine: (i: number) => number | undefined;
}

const firstLine = (s: string): string => s.split('\n')[0]!.trim();

export function parseYaml(text: string, file: string): YamlFile {
  const lc = new LineCounter();
  const doc = parseDocument(text, { lineCounter: lc, prettyErrors: false, uniqueKeys: true });
  const err = doc.errors[0];
  if (err) {
    const line = err.linePos?.[0]?.line ?? lc.linePos(err.pos[0]).line;
    throw new EmlensError(`${file}: line ${line}: not valid YAML (${firstLine(err.message)})`);
  }
  let value: unknown;
  try {
    value = doc.toJS({ maxAliasCount: 10_000 });
  } catch (e) {
    throw new EmlensError(`${file}: ${firstLine(String((e as Error)?.message ?? e))}`);
  }
  const contents = doc.contents;
  const itemLine = (i: number): number | undefined => {
    if (!isSeq(contents)) return undefined;
    const node = contents.items[i] as { range?: [number, number, number] } | undefined;
    return node?.range ? lc.linePos(node.range[0]).line : undefined;
  };
  return { value, itemLine };
}

export function readYaml(file: string): YamlFile {
  let text: string;
  try {
    text = readFileSync(file, 'utf8');
  } catch (e) {
    const code = (e as NodeJS.ErrnoException).code;
    throw new EmlensError(`${file}: cannot read (${code === 'ENOENT' ? 'no such file' : (code ?? String(e))})`);
  }
  return parseYaml(text, file);
}
