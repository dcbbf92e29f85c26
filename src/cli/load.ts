/**
 * Loading a model for a command: hub download progress, a notice while another process holds a
 * blob's download lock, and progress over the tensors while weights are read.
 */
import type { Command } from 'commander';
import { decodesOnStore, FP32_DECODES, LoadedModel, type Fp32Decode, type LoadOptions } from '../backend/model.js';
import { parseBackendUrls, type BackendOptions } from '../backend/remote.js';
import { EmlensError } from '../errors.js';
import { createProgress, downloadProgress } from './progress.js';
import { warn } from './args.js';
import { WEIGHT_MODES, type WeightMode } from '../runtime/quantize.js';
import { InvalidArgumentError } from 'commander';

/** With `maxMemory`, the model is opened memory-bounded (LoadedModel.openBounded: no weights read yet). */
export async function loadModel(id: string, opts: LoadOptions & { maxMemory?: number } = {}): Promise<LoadedModel> {
  const download = downloadProgress(`downloading ${id}`);
  const tensors = createProgress(`loading ${id}`, { unit: 'tensors', everyMs: 10_000, delayMs: 3000 });
  try {
    const o: LoadOptions = {
      onProgress: download,
      onLockWait: (file, lock) => warn([`waiting for another process downloading ${file} (lock ${lock})`]),
      onLoad: (done, total) => tensors.update(done, total),
      ...opts,
    };
    return await (opts.maxMemory !== undefined ? LoadedModel.openBounded(id, { ...o, maxMemory: opts.maxMemory }) : LoadedModel.load(id, o));
  } finally {
    download.stop();
    tensors.stop();
  }
}

export interface BackendFlags {
  backend?: string;
  token?: string;
}

/** `--backend URL[,URL…]` and `--token T` on a command that runs a model. */
export function backendOptions(cmd: Command): Command {
  return cmd
    .option('--backend <urls>', 'run the model on `emlens serve` processes (comma list; default: EMLENS_BACKEND); --model then gives config and tokenizer')
    .option('--token <token>', 'bearer token of the --backend servers (default: EMLENS_TOKEN)');
}

/** The backend a command runs on: its flags, else EMLENS_BACKEND / EMLENS_TOKEN; none: local. */
export function backendFrom(o: BackendFlags, log: (line: string) => void = (l) => warn([l])): BackendOptions | undefined {
  const list = o.backend ?? (process.env.EMLENS_BACKEND || undefined);
  const token = o.token ?? (process.env.EMLENS_TOKEN || undefined);
  if (list === undefined) {
    if (o.token !== undefined) throw new EmlensError('--token is for --backend servers; give --backend too');
    return undefined;
  }
  return { urls: parseBackendUrls(list, o.backend !== undefined ? '--backend' : 'EMLENS_BACKEND'), token, onRetry: (url, why) => log(`--backend ${url}: ${why}; retrying on the other servers`) };
}

export interface WeightsFlags {
  weights?: WeightMode;
  fp32Decode?: Fp32Decode;
}

/** `--weights fp32|int8|int4` and `--fp32-decode inputs|store` on a command that generates (generate, eval, steer-sweep, ablate-eval, serve). */
export function weightsOption(cmd: Command): Command {
  return cmd
    .option(
      '--fp32-decode <source>',
      'with --weights fp32, where generation takes the weights from: store (a copy in the cache that ONNX Runtime packs once; faster, the default of commands that only generate) or inputs (the weights in memory, packed again every step; the default of serve)',
      (v: string): Fp32Decode => {
        if (!(FP32_DECODES as readonly string[]).includes(v)) throw new InvalidArgumentError(`--fp32-decode must be one of ${FP32_DECODES.join(', ')}, got "${v}"`);
        return v as Fp32Decode;
      },
    )
    .option(
      '--weights <mode>',
      'how generation holds the linear layers: fp32 (default), int8 or int4 (weight-only in blocks of 32 (int8) or 64 (int4), ONNX Runtime MatMulNBits; quantised once and cached)',
      (v: string): WeightMode => {
        if (!(WEIGHT_MODES as readonly string[]).includes(v)) throw new InvalidArgumentError(`--weights must be one of ${WEIGHT_MODES.join(', ')}, got "${v}"`);
        return v as WeightMode;
      },
    );
}

/**
 * The weight mode of a command that runs locally. On --backend (or EMLENS_BACKEND) the server
 * holds the weights, so --weights would be ignored there: an error.
 */
export function weightsFrom(o: WeightsFlags, backend: BackendOptions | undefined): WeightMode {
  if (o.weights !== undefined && backend) throw new EmlensError(`--weights ${o.weights} has no effect with --backend: the server holds the weights (start it with emlens serve MODEL --weights ${o.weights})`);
  if (o.fp32Decode !== undefined && backend) throw new EmlensError(`--fp32-decode ${o.fp32Decode} has no effect with --backend: the server holds the weights (start it with emlens serve MODEL --fp32-decode ${o.fp32Decode})`);
  decodesOnStore(o); // --fp32-decode with --weights int8|int4: an error before the model loads
  return o.weights ?? 'fp32';
}
