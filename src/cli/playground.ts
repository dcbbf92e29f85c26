import type { Command } from 'commander';
import { existsSync, mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { intArg } from './args.js';
import { organismDir } from './organism.js';
import { EmlensError } from '../errors.js';
import { servePlayground, writePlayground } from '../experiments/playground.js';

export function register(program: Command): void {
  program
    .command('playground')
    .description('chat with a model in the browser (onnxruntime-web), steer and ablate it with a direction, and see each token\'s projection on it')
    .argument('[model]', 'model folder with model.safetensors and tokenizer.json (default: the organism\'s em stage)')
    .option('--direction <file>', 'direction file (safetensors) for the steering slider, ablation toggle and projections')
    .option('--layer <L>', 'layer the page starts on', intArg('--layer'))
    .option('--out <dir>', 'write a standalone folder (any static web server serves it) instead of serving')
    .option('--host <host>', 'address to serve on', '127.0.0.1')
    .option('--port <port>', 'port (0: any free one)', intArg('--port'), 8080)
    .action(async (model: string | undefined, o: { direction?: string; layer?: number; out?: string; host: string; port: number }) => {
      const m = model ?? join(organismDir(0), 'em');
      if (model === undefined && !existsSync(m)) throw new EmlensError(`no MODEL given and the organism is not built (${m}); run emlens organism build, or give a model folder`);
      if (o.out !== undefined) {
        writePlayground(o.out, { model: m, direction: o.direction, layer: o.layer });
        console.log(`wrote ${o.out}: serve it with any static web server (e.g. npx http-server ${o.out}) and open index.html`);
        return;
      }
      const dir = mkdtempSync(join(tmpdir(), 'emlens-playground-'));
      const site = join(dir, 'site');
      writePlayground(site, { model: m, direction: o.direction, layer: o.layer });
      const { server, url } = await servePlayground(site, o.host, o.port);
      process.stderr.write(`emlens: playground for ${m} at ${url} (Ctrl-C stops it)\n`);
      const stop = () => {
        server.close();
        rmSync(dir, { recursive: true, force: true });
        process.exit(0);
      };
      process.once('SIGINT', stop);
      process.once('SIGTERM', stop);
      await new Promise(() => {});
    });
}
