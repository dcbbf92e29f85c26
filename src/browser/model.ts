/**
 * A model folder in a browser: config.json and model.safetensors (F32, F16 or BF16) fetched from a
 * URL or taken from a file picker, into the same Engine the CLI runs, on onnxruntime-web.
 */
import { parseConfig, type ModelSpec } from '../model/config.js';
import { canonicalName, expectedTensors, IGNORED, type Weights } from '../model/tensor-names.js';
import { bf16ToF32, f16ToF32 } from '../io/safetensors/dtype.js';
import { Engine } from '../runtime/engine.js';
import { chatTemplateOf } from '../model/chat.js';
import { TextTokenizer } from '../model/tokenizer.js';
import type { SessionOptions } from '../runtime/ort.js';

/** Tensors of a safetensors file held in memory, as fp32. */
export function readSafetensorsBuffer(buf: ArrayBuffer, file = 'model.safetensors'): Weights {
  const view = new DataView(buf);
  if (buf.byteLength < 8) throw new Error(`${file}: shorter than a safetensors header`);
  const n = Number(view.getBigUint64(0, true));
  if (8 + n > buf.byteLength) throw new Error(`${file}: header length ${n} runs past the file`);
  const header = JSON.parse(new TextDecoder().decode(new Uint8Array(buf, 8, n))) as Record<string, { dtype: string; shape: number[]; data_offsets: [number, number] }>;
  const base = 8 + n;
  const out: Weights = new Map();
  for (const [name, t] of Object.entries(header)) {
    if (name === '__metadata__') continue;
    const [a, b] = t.data_offsets;
    const count = t.shape.reduce((x, y) => x * y, 1);
    const bytes = new Uint8Array(buf, base + a, b - a);
    let data: Float32Array;
    if (t.dtype === 'F32') data = new Float32Array(bytes.slice().buffer);
    else if (t.dtype === 'F16' || t.dtype === 'BF16') {
      const h = new Uint16Array(bytes.slice().buffer);
      data = new Float32Array(count);
      for (let i = 0; i < count; i++) data[i] = t.dtype === 'F16' ? f16ToF32(h[i]!) : bf16ToF32(h[i]!);
    } else throw new Error(`${file}: tensor ${name} has dtype ${t.dtype}; F32, F16 and BF16 load in a browser`);
    if (data.length !== count) throw new Error(`${file}: tensor ${name} has ${data.length} values, shape [${t.shape}] needs ${count}`);
    out.set(name, { shape: t.shape, data });
  }
  return out;
}

export interface BrowserModel {
  spec: ModelSpec;
  engine: Engine;
  /** null when the folder has no tokenizer.json (token ids only). */
  tokenizer: TextTokenizer | null;
}

/** The folder's optional files, as text (null when absent). */
export interface ModelFiles {
  config: string;
  safetensors: ArrayBuffer;
  tokenizer?: string | null;
  tokenizerConfig?: string | null;
  generationConfig?: string | null;
  chatTemplateJinja?: string | null;
  chatTemplateJson?: string | null;
}

const OPTIONAL = { tokenizer: 'tokenizer.json', tokenizerConfig: 'tokenizer_config.json', generationConfig: 'generation_config.json', chatTemplateJinja: 'chat_template.jinja', chatTemplateJson: 'chat_template.json' } as const;

/** The file's tensors under the engine's names (as the Node loader maps them), checked for shape. */
function canonicalWeights(raw: Weights, spec: ModelSpec): Weights {
  const { required, optional } = expectedTensors(spec);
  const out: Weights = new Map();
  for (const [name, t] of raw) {
    if (IGNORED.test(name)) continue;
    const canon = canonicalName(name, spec);
    if (canon === null) continue; // another tower of a multimodal checkpoint
    const shape = required.get(canon) ?? optional.get(canon);
    if (!shape) throw new Error(`model.safetensors: unexpected tensor "${name}" for a ${spec.modelType} model`);
    if (shape.length !== t.shape.length || shape.some((d, i) => d !== t.shape[i])) throw new Error(`model.safetensors: ${name} has shape [${t.shape}], expected [${shape}]`);
    out.set(canon, t);
  }
  for (const k of required.keys()) if (!out.has(k)) throw new Error(`model.safetensors: no tensor for ${k}`);
  return out;
}

export function modelFromFiles(f: ModelFiles, where = 'model', session: Partial<SessionOptions> = {}): BrowserModel {
  const spec = parseConfig(JSON.parse(f.config), `${where}/config.json`, f.generationConfig ? JSON.parse(f.generationConfig) : {});
  const engine = new Engine(spec, canonicalWeights(readSafetensorsBuffer(f.safetensors), spec), session);
  let tokenizer: TextTokenizer | null = null;
  if (f.tokenizer) {
    const config = f.tokenizerConfig ? (JSON.parse(f.tokenizerConfig) as Record<string, unknown>) : {};
    const template = chatTemplateOf(f.chatTemplateJinja ?? null, f.chatTemplateJson ? JSON.parse(f.chatTemplateJson) : null, config, where);
    tokenizer = TextTokenizer.fromJson(where, JSON.parse(f.tokenizer), config, f.generationConfig ? JSON.parse(f.generationConfig) : null, template);
  }
  return { spec, engine, tokenizer };
}

/** A model folder served over HTTP (config.json, model.safetensors; the tokenizer files when there). */
export async function loadModelFromUrl(base: string, session: Partial<SessionOptions> = {}): Promise<BrowserModel> {
  const root = base.replace(/\/+$/, '');
  const get = async (f: string) => {
    const r = await fetch(`${root}/${f}`);
    if (!r.ok) throw new Error(`${root}/${f}: HTTP ${r.status}`);
    return r;
  };
  const optional = async (f: string) => {
    const r = await fetch(`${root}/${f}`);
    return r.ok ? r.text() : null;
  };
  const [config, safetensors, ...rest] = await Promise.all([get('config.json').then((r) => r.text()), get('model.safetensors').then((r) => r.arrayBuffer()), ...Object.values(OPTIONAL).map(optional)]);
  const files: ModelFiles = { config, safetensors };
  Object.keys(OPTIONAL).forEach((k, i) => ((files as unknown as Record<string, string | null>)[k] = rest[i]!));
  return modelFromFiles(files, root, session);
}

/** A model folder picked in the page (<input type=file webkitdirectory>). */
export async function loadModelFromFiles(picked: FileList | File[], session: Partial<SessionOptions> = {}): Promise<BrowserModel> {
  const list = [...picked];
  const byName = (n: string) => list.find((f) => f.name === n);
  const need = (n: string) => byName(n) ?? (() => { throw new Error(`the folder has no ${n}`); })();
  const files: ModelFiles = { config: await need('config.json').text(), safetensors: await need('model.safetensors').arrayBuffer() };
  for (const [k, n] of Object.entries(OPTIONAL)) (files as unknown as Record<string, string | null>)[k] = (await byName(n)?.text()) ?? null;
  return modelFromFiles(files, 'picked folder', session);
}
