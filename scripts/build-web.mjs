#!/usr/bin/env node
/**
 * Bundles emlens for the browser: src/browser/index.ts -> dist-web/emlens.mjs (one ES module),
 * with onnxruntime-node mapped to onnxruntime-web and node:fs / node:path to a stub (the engine's
 * import graph names them; a page never reads files). The .wasm files stay in
 * node_modules/onnxruntime-web/dist (copied to dist-web/ort/ beside the bundle).
 */
import { cpSync, mkdirSync, readdirSync } from 'node:fs';
import { dirname, join, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';
import { build } from 'rolldown';

const root = resolve(dirname(fileURLToPath(import.meta.url)), '..');
const out = process.argv[2] ? resolve(process.argv[2]) : join(root, 'dist-web');
const shim = join(root, 'src/browser/node-shim.ts');
await build({
  input: join(root, 'src/browser/index.ts'),
  platform: 'browser',
  resolve: {
    alias: {
      'onnxruntime-node': join(root, 'src/browser/ort-web.ts'),
      'node:fs': shim,
      'node:fs/promises': shim,
      'node:path': shim,
    },
  },
  output: { file: join(out, 'emlens.mjs'), format: 'esm', sourcemap: true },
  logLevel: 'warn',
});
mkdirSync(join(out, 'ort'), { recursive: true });
const dist = join(root, 'node_modules/onnxruntime-web/dist');
for (const f of readdirSync(dist)) if (/^ort-wasm-simd-threaded(\.jsep)?\.(wasm|mjs)$/.test(f)) cpSync(join(dist, f), join(out, 'ort', f));
// The playground page (served or written by `emlens playground`).
mkdirSync(join(out, 'playground'), { recursive: true });
for (const f of readdirSync(join(root, 'src/browser/playground'))) cpSync(join(root, 'src/browser/playground', f), join(out, 'playground', f));
console.log(`wrote ${join(out, 'emlens.mjs')}`);
