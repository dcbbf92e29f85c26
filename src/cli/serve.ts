import type { Command } from 'commander';
import { basename } from 'node:path';
import { loadModel, weightsOption, type WeightsFlags } from './load.js';
import { intArg, sizeArg } from './args.js';
import { EmlensError } from '../errors.js';
import { readDirectionFile, type DirectionFile } from '../io/directions.js';
import { checkAccess, SERVE_DEFAULTS, serveModel } from '../serve/server.js';

interface Opts extends WeightsFlags {
  adapter?: string;
  name?: string;
  direction: string[];
  host: string;
  port: number;
  token?: string;
  auth: boolean;
  cors?: string;
  maxBody: number;
  maxNewTokensLimit: number;
  maxBatch: number;
  queue: number;
  requestTimeout: number;
}

const collect = (v: string, acc: string[]) => [...acc, v];

export function register(program: Command): void {
  weightsOption(program
    .command('serve'))
    .description('serve a model over HTTP: OpenAI-compatible /v1 (chat, completions, logprobs, steering) and KServe v2 /v2 (hooked captures)')
    .argument('<model>', 'local folder or Hugging Face model id')
    .option('--adapter <dir>', 'PEFT LoRA adapter (folder or hub id) merged into the model')
    .option('--name <name>', 'the model name clients use (default: the folder or repo name)')
    .option('--direction <name=file>', 'a direction file requests may steer or ablate with by name (repeatable)', collect, [])
    .option('--host <host>', 'address to bind', SERVE_DEFAULTS.host)
    .option('--port <port>', 'port (0: any free port)', intArg('--port'), SERVE_DEFAULTS.port)
    .option('--token <token>', 'bearer token every route but health requires (default: EMLENS_TOKEN)')
    .option('--no-auth', 'no token (only on a loopback address)')
    .option('--cors <origin>', 'allow browsers from this origin (default: no CORS)')
    .option('--max-body <size>', 'largest request body', sizeArg('--max-body'), SERVE_DEFAULTS.maxBodyBytes)
    .option('--max-new-tokens-limit <n>', 'largest max_tokens a request may ask for', intArg('--max-new-tokens-limit', 1), SERVE_DEFAULTS.maxNewTokens)
    .option('--max-batch <n>', 'most rows (n, or input_ids rows) in one request', intArg('--max-batch', 1), SERVE_DEFAULTS.maxBatch)
    .option('--queue <n>', 'requests that may wait behind the running one; more get 429', intArg('--queue', 0), SERVE_DEFAULTS.queue)
    .option('--request-timeout <s>', 'seconds a request may take (504 after)', intArg('--request-timeout', 1), SERVE_DEFAULTS.requestTimeoutS)
    .action(async (modelId: string, o: Opts) => {
      const token = o.token ?? process.env.EMLENS_TOKEN ?? null;
      const access = { host: o.host, token: token === '' ? null : token, noAuth: !o.auth };
      checkAccess(access);
      const dirs = new Map<string, string>();
      for (const d of o.direction) {
        const m = /^([A-Za-z0-9._-]+)=(.+)$/.exec(d);
        if (!m) throw new EmlensError(`--direction ${d}: expected NAME=FILE (NAME of letters, digits, ".", "_", "-")`);
        if (dirs.has(m[1]!)) throw new EmlensError(`--direction: the name "${m[1]}" is given twice`);
        dirs.set(m[1]!, m[2]!);
      }
      // /v1 and the backend API's generate run on the --weights graphs; captures, losses and training stay fp32.
      const model = await loadModel(modelId, { adapter: o.adapter, weights: o.weights ?? 'fp32', fp32Decode: o.fp32Decode });
      const directions = new Map<string, DirectionFile>();
      for (const [name, file] of dirs) directions.set(name, readDirectionFile(file, model.spec, `--direction ${name}`));
      const name = o.name ?? basename(modelId.replace(/\/+$/, ''));
      if (!/^[A-Za-z0-9._-]+$/.test(name)) throw new EmlensError(`--name "${name}": use letters, digits, ".", "_" or "-" (it appears in URLs)`);
      const server = await serveModel(model, {
        name,
        ...access,
        port: o.port,
        cors: o.cors ?? null,
        maxBodyBytes: o.maxBody,
        maxNewTokens: o.maxNewTokensLimit,
        maxBatch: o.maxBatch,
        queue: o.queue,
        requestTimeoutS: o.requestTimeout,
        directions,
        log: (line) => process.stderr.write(line + '\n'),
      });
      process.stderr.write(`emlens: serving "${name}" at ${server.url} (OpenAI: ${server.url}/v1, KServe v2: ${server.url}/v2/models/${name})${access.token ? '' : ', no auth'}\n`);
      const stop = () => {
        void server.close().then(() => process.exit(0));
      };
      process.once('SIGINT', stop);
      process.once('SIGTERM', stop);
      await new Promise(() => {});
    });
}
