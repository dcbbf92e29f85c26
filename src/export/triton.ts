/**
 * `emlens export --triton DIR MODEL`: an NVIDIA Triton Inference Server model repository for the
 * universal hooked graph (./hooked-graph.ts):
 *
 *   DIR/NAME/config.pbtxt          platform onnxruntime_onnx, the inputs and outputs, GPU instances
 *   DIR/NAME/1/model.onnx          the graph (small)
 *   DIR/NAME/1/model.onnx.data     the fp32 weights as ONNX external data, each tensor at a
 *                                  4096-byte (page) aligned offset, so ORT can map them
 *
 * Triton serves it over the same KServe v2 protocol as `emlens serve`; KServe's InferenceService
 * can point at the repository to scale it out. The folder is written next to DIR and renamed into
 * place, so a crash leaves no half repository.
 */
import { closeSync, existsSync, mkdirSync, openSync, renameSync, rmSync, writeFileSync, writeSync } from 'node:fs';
import { dirname, join } from 'node:path';
import { EmlensError } from '../errors.js';
import type { LoadedModel } from '../backend/model.js';
import { emitOnnx } from '../graph/onnx.js';
import { hookName } from '../hooks/names.js';
import { VERSION } from '../version.js';
import { buildHookedGraph } from './hooked-graph.js';

export const PAGE = 4096;
export const DATA_FILE = 'model.onnx.data';

export interface TritonExport {
  repo: string;
  modelDir: string;
  onnx: string;
  data: string;
  bytes: number;
}

const dimsText = (dims: (number | string)[]) => `[ ${dims.map((d) => (typeof d === 'number' ? d : -1)).join(', ')} ]`;

/** config.pbtxt (protobuf text format of Triton's ModelConfig). */
export function tritonConfig(name: string, model: LoadedModel): string {
  const { nLayers: L, dModel: D, vocab: V } = model.spec;
  const input = (n: string, t: string, dims: (number | string)[]) => `  {\n    name: "${n}"\n    data_type: ${t}\n    dims: ${dimsText(dims)}\n  }`;
  const output = (n: string, dims: (number | string)[]) => `  {\n    name: "${n}"\n    data_type: TYPE_FP32\n    dims: ${dimsText(dims)}\n  }`;
  const outs = [output('logits', [-1, V]), output('token_logprobs', [-1, -1])];
  for (let l = 0; l < L; l++) outs.push(output(hookName(l, 'resid_post'), [-1, -1, D]), output(`pooled.${hookName(l, 'resid_post')}`, [-1, D]));
  return [
    `# Written by emlens ${VERSION} from ${model.source} (weights sha256 ${model.weightsSha256()})`,
    `name: "${name}"`,
    'platform: "onnxruntime_onnx"',
    // Batch and sequence are explicit dims of every tensor, so Triton does no batching of its own.
    'max_batch_size: 0',
    'input [',
    [input('input_ids', 'TYPE_INT64', [-1, -1]), input('attention_mask', 'TYPE_INT64', [-1, -1]), input('steer', 'TYPE_FP32', [L, D]), input('ablate', 'TYPE_FP32', [L, D]), input('pool', 'TYPE_FP32', [-1, -1])].join(',\n'),
    ']',
    'output [',
    outs.join(',\n'),
    ']',
    'instance_group [\n  {\n    kind: KIND_GPU\n    count: 1\n  }\n]',
    `parameters {\n  key: "emlens_weights_sha256"\n  value: { string_value: "${model.weightsSha256()}" }\n}`,
    '',
  ].join('\n');
}

export function exportTriton(model: LoadedModel, repo: string, name: string): TritonExport {
  if (!/^[A-Za-z0-9._-]+$/.test(name)) throw new EmlensError(`--name "${name}": use letters, digits, ".", "_" or "-" (it is a folder and a URL part)`);
  const modelDir = join(repo, name);
  if (existsSync(modelDir)) throw new EmlensError(`${modelDir} exists; remove it or choose another --name`);
  const weights = model.engine.weights;
  const shapes = new Map([...weights].map(([k, w]) => [k, w.shape]));
  const g = buildHookedGraph(model.spec, shapes);
  mkdirSync(repo, { recursive: true });
  const tmp = join(dirname(modelDir), `.${name}.tmp-${process.pid}`);
  rmSync(tmp, { recursive: true, force: true });
  mkdirSync(join(tmp, '1'), { recursive: true });
  try {
    const external = new Map<string, { location: string; offset: number; length: number }>();
    const fd = openSync(join(tmp, '1', DATA_FILE), 'w');
    let off = 0;
    try {
      for (const v of g.inputs) {
        const w = weights.get(v.name);
        if (!w) continue;
        const pad = (PAGE - (off % PAGE)) % PAGE;
        if (pad) writeSync(fd, Buffer.alloc(pad), 0, pad, off);
        off += pad;
        const bytes = Buffer.from(w.data.buffer, w.data.byteOffset, w.data.byteLength);
        writeSync(fd, bytes, 0, bytes.length, off);
        external.set(v.name, { location: DATA_FILE, offset: off, length: bytes.length });
        off += bytes.length;
      }
    } finally {
      closeSync(fd);
    }
    // steer and ablate stay required inputs (zeros: no intervention): ORT 1.2x ignored a fed value
    // of an input that also had a default initializer, so no defaults are given.
    writeFileSync(join(tmp, '1', 'model.onnx'), emitOnnx(g, `emlens ${VERSION} hooked ${model.source}`, { external }));
    writeFileSync(join(tmp, 'config.pbtxt'), tritonConfig(name, model));
    renameSync(tmp, modelDir);
    return { repo, modelDir, onnx: join(modelDir, '1', 'model.onnx'), data: join(modelDir, '1', DATA_FILE), bytes: off };
  } catch (e) {
    rmSync(tmp, { recursive: true, force: true });
    throw e;
  }
}
