/**
 * emlens in a browser: the engine (graphs with hook points, steering, ablation, KV-cache
 * generation) on onnxruntime-web, wasm or WebGPU. Bundled by scripts/build-web.mjs into
 * dist-web/emlens.mjs; `ort` is onnxruntime-web itself (set ort.env.wasm.wasmPaths before the
 * first session when the .wasm files are not beside the page).
 */
export { default as ort } from './ort-web.js';
export { Engine } from '../runtime/engine.js';
export { defaultSessionOptions, WEB } from '../runtime/ort.js';
export { parseConfig } from '../model/config.js';
export { hookName } from '../hooks/names.js';
export { loadModelFromFiles, loadModelFromUrl, modelFromFiles, readSafetensorsBuffer, type BrowserModel, type ModelFiles } from './model.js';
