#!/usr/bin/env node
/**
 * The emlens command line. Each command lives in its own thin file: parse flags, call the
 * library, print. User errors print one line and exit 1; --debug adds the stack.
 */
import { Command, CommanderError } from 'commander';
import { EmlensError } from '../errors.js';
import { checkOutputPath } from '../io/paths.js';
import { VERSION } from '../version.js';
import * as inspect from './inspect.js';
import * as generate from './generate.js';
import * as demo from './demo.js';
import * as extract from './extract.js';
import * as train from './train.js';
import * as measure from './measure.js';
import * as organism from './organism.js';
import * as directions from './directions.js';
import * as compare from './compare.js';
import * as stability from './stability.js';
import * as project from './project.js';
import * as adapter from './adapter.js';
import * as evalCmd from './eval.js';
import * as select from './select.js';
import * as steerSweep from './steer-sweep.js';
import * as ablateEval from './ablate-eval.js';
import * as data from './data.js';
import * as triggers from './triggers.js';
import * as serve from './serve.js';
import * as exportCmd from './export.js';
import * as playground from './playground.js';

const program = new Command();
program
  .name('emlens')
  .description('Linear misalignment directions in LLMs: extract, compare, steer, ablate (ONNX Runtime, no Python)')
  .version(VERSION)
  .option('--debug', 'print stack traces')
  .exitOverride()
  // commander's own errors (unknown option, bad value) are one line with the prefix of every other
  // error ("(Did you mean --x?)" joins the line).
  .configureOutput({ outputError: (str, write) => write(`emlens: ${str.replace(/^error: /, '').trim().replace(/\s*\n\s*/g, ' ')}\n`) });

for (const cmd of [inspect, generate, extract, train, measure, directions, compare, stability, project, organism, demo, adapter, evalCmd, select, steerSweep, ablateEval, data, triggers, serve, exportCmd, playground]) cmd.register(program);

// A bad output path (a file where a folder goes, an unwritable or impossible parent) is refused
// before the command does any work; the flag's placeholder (<dir> or a file) says which kind
// (<file|dir>: the command's other flags decide, and it checks the path itself).
const OUTPUT_FLAGS = ['--out', '--write-csv'];
program.hook('preAction', (_, cmd) => {
  for (const opt of cmd.options) {
    const value: unknown = cmd.opts()[opt.attributeName()];
    if (opt.long && OUTPUT_FLAGS.includes(opt.long) && typeof value === 'string' && !opt.flags.includes('<file|dir>')) {
      checkOutputPath(value, opt.flags.includes('<dir>') ? 'dir' : 'file', opt.long);
    }
  }
});

const debug = process.argv.includes('--debug');
try {
  await program.parseAsync(process.argv);
} catch (e) {
  if (e instanceof CommanderError) {
    // commander already printed its one-line message (or help/version).
    process.exitCode = e.exitCode === 0 ? 0 : 2;
  } else if (e instanceof EmlensError && !debug) {
    process.stderr.write(`emlens: ${e.message}\n`);
    process.exitCode = 1;
  } else {
    const err = e as Error;
    process.stderr.write(debug ? `${err.stack ?? err}\n` : `emlens: internal error: ${err.message} (run with --debug for the stack)\n`);
    process.exitCode = err instanceof EmlensError ? 1 : 70;
  }
}
