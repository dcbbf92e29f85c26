import type { Command } from 'commander';
import { backendFrom, backendOptions, loadModel, type BackendFlags } from './load.js';
import { resolve } from 'node:path';
import { readWhereFile } from '../data/rows.js';
import { extractActivations } from '../activations/extract.js';
import { POOLS, type Pool } from '../activations/pool.js';
import { selectRows } from '../experiments/select.js';
import { HOOK_KINDS, type HookKind } from '../hooks/names.js';
import { choice, intArg, layersArg, sizeArg, warn } from './args.js';
import { DEFAULT_MAX_MEMORY_RULE, defaultMaxMemory, formatBytes } from '../runtime/memory.js';
import { rowProgress } from './progress.js';
import { ACTIVATIONS_ROOT, activationsDir, activationsDirOrFile } from '../activations/store.js';

interface Opts extends BackendFlags {
  model: string;
  adapter?: string;
  data: string;
  out: string;
  layers: number[] | 'all';
  hook: HookKind;
  pool?: Pool;
  where?: string;
  whereFile?: string;
  skipBad?: boolean;
  balanceWith?: string;
  seed?: number;
  resume?: boolean;
  overwrite?: boolean;
  batchTokens: number;
  chunkRows?: number;
  maxTokens?: number;
  maxMemory?: number;
}


export function register(program: Command): void {
  backendOptions(program
    .command('extract'))
    .description('pooled residual-stream activations of a JSONL dataset, per layer, to DIR/activations.safetensors')
    .requiredOption('--model <model>', 'local folder or Hugging Face model id')
    .option('--adapter <dir>', 'PEFT LoRA adapter (folder or hub id) merged into the model')
    .requiredOption('--data <file>', 'JSONL: {"messages": [...]} or {"text": ...} rows, other fields are labels')
    .requiredOption('--out <dir>', `output folder; a bare name NAME (no slash) is ${ACTIVATIONS_ROOT}/NAME`)
    .option('--layers <layers>', '"all" or L,L,...', layersArg('--layers'), 'all')
    .option('--hook <name>', `hook point to read: ${HOOK_KINDS.join(' | ')}`, choice('--hook', HOOK_KINDS.map((h) => h) as HookKind[]), 'resid_post')
    .option('--pool <pool>', 'response-mean | mean | last (default: response-mean for chat rows, mean for text rows)', choice('--pool', POOLS))
    .option('--where <expr>', "select rows on labels, e.g. 'aligned<=30 && coherent>50'")
    .option('--where-file <file>', 'the --where expression read from a file (for long ones)')
    .option('--skip-bad', 'skip bad rows (counted in meta.json) instead of stopping')
    .option('--balance-with <dir_or_file>', `shuffle and truncate to the size of this set (extract folder, a bare name meaning ${ACTIVATIONS_ROOT}/NAME, or JSONL)`)
    .option('--seed <s>', 'seed of the balancing shuffle', intArg('--seed'))
    .option('--resume', 'continue an interrupted extraction in --out')
    .option('--overwrite', 'replace an existing extraction in --out')
    .option('--batch-tokens <n>', 'padded tokens per forward call', intArg('--batch-tokens', 1), 4096)
    .option('--chunk-rows <n>', 'rows per on-disk chunk (resume granularity)', intArg('--chunk-rows', 1))
    .option('--max-tokens <n>', 'longest row accepted (default: the model\'s context)', intArg('--max-tokens', 1))
    .option('--max-memory <size>', `memory the run may use, e.g. 8GiB or 500MB; weights are read a layer at a time and, when the model does not fit, the forward runs layer group by layer group (default: ${DEFAULT_MAX_MEMORY_RULE})`, sizeArg('--max-memory'))
    .action(async (o: Opts) => {
      const where = o.whereFile !== undefined ? readWhereFile(o.whereFile, o.where) : o.where;
      const out = activationsDir(o.out);
      const balanceWith = o.balanceWith === undefined ? undefined : activationsDirOrFile(o.balanceWith);
      const sel = selectRows(o.data, { where, skipBad: o.skipBad, balanceWith, seed: o.seed });
      if (o.whereFile !== undefined) sel.selection.where_file = resolve(o.whereFile);
      const backend = backendFrom(o);
      // A local model is always read a layer at a time; on --backend the server holds it.
      const maxMemory = o.maxMemory ?? (backend ? undefined : defaultMaxMemory());
      const model = await loadModel(o.model, { adapter: o.adapter, backend, maxMemory });
      const bar = rowProgress('extract');
      try {
        const meta = await extractActivations(model, sel.rows, {
          outDir: out,
          layers: o.layers,
          hook: o.hook,
          pool: o.pool,
          resume: o.resume,
          overwrite: o.overwrite,
          batchTokens: o.batchTokens,
          chunkRows: o.chunkRows,
          maxTokens: o.maxTokens,
          dataset: { file: sel.file, sha256: sel.sha256, selection: sel.selection },
          onProgress: (p) => bar.update(p.rowsDone, p.rowsTotal, p.tokens, p.elapsedMs),
          onWarning: (m) => warn([m]),
          onPlan: (p) =>
            process.stderr.write(
              `emlens: blocks 0-${p.layers - 1} ${p.groups === 1 ? 'in memory at once' : `in ${p.groups} groups of ${p.layersPerGroup}, weights read from disk per chunk`}, residuals ${p.spool ? 'spooled to disk' : 'in memory'}; peak about ${formatBytes(p.peakBytes)} of --max-memory ${formatBytes(p.maxMemory)}\n`,
            ),
        });
        bar.stop();
        const tok = meta.tokens_per_row.reduce((a, b) => a + b, 0);
        if (meta.resumedRows) console.log(`resumed ${meta.resumedRows} rows from chunks already on disk`);
        console.log(`${out}: ${meta.rows} rows x ${meta.layers.length} layers (${meta.hook}, pool ${meta.pool}, ${tok} tokens pooled) -> ${meta.files.join(', ')}`);
      } catch (e) {
        bar.stop();
        throw e;
      }
    });
}
