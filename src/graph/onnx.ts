/**
 * Emits an IR graph as an ONNX ModelProto (opset 21, plus com.microsoft version 1 when a contrib
 * op such as MatMulNBits is used) through onnx-proto.
 */
import onnxProto from 'onnx-proto';
import type { ConstData, DType, Graph, Value } from './ir.js';

const { onnx } = onnxProto;
export const OPSET = 21;
const IR_VERSION = 10;

const ELEM: Record<DType, number> = {
  float32: onnx.TensorProto.DataType.FLOAT,
  float64: onnx.TensorProto.DataType.DOUBLE,
  int64: onnx.TensorProto.DataType.INT64,
  bool: onnx.TensorProto.DataType.BOOL,
  uint8: onnx.TensorProto.DataType.UINT8,
  float16: onnx.TensorProto.DataType.FLOAT16,
  bfloat16: onnx.TensorProto.DataType.BFLOAT16,
};

/** Ops of ONNX Runtime's contrib domain (com.microsoft); every other op is standard ONNX. */
const CONTRIB = new Set(['MatMulNBits']);
const MS_DOMAIN = 'com.microsoft';

function valueInfo(v: Value): onnxProto.onnx.IValueInfoProto {
  return {
    name: v.name,
    type: {
      tensorType: {
        elemType: ELEM[v.dtype],
        shape: { dim: v.shape.map((d) => (typeof d === 'number' ? { dimValue: d } : { dimParam: d })) },
      },
    },
  };
}

function tensorProto(name: string, c: ConstData): onnxProto.onnx.ITensorProto {
  const bytes = new Uint8Array(c.data.buffer, c.data.byteOffset, c.data.byteLength);
  return { name, dims: c.shape, dataType: ELEM[c.dtype], rawData: bytes };
}

function intsConst(name: string, xs: number[]): onnxProto.onnx.ITensorProto {
  return tensorProto(name, { dtype: 'int64', shape: [xs.length], data: BigInt64Array.from(xs.map(BigInt)) });
}

type Attr = onnxProto.onnx.IAttributeProto;
const A = onnx.AttributeProto.AttributeType;
const intAttr = (name: string, i: number): Attr => ({ name, type: A.INT, i });
const intsAttr = (name: string, ints: number[]): Attr => ({ name, type: A.INTS, ints });
const floatAttr = (name: string, f: number): Attr => ({ name, type: A.FLOAT, f });
const strAttr = (name: string, s: string): Attr => ({ name, type: A.STRING, s: new TextEncoder().encode(s) });

export interface EmitOptions {
  /**
   * Graph inputs to store as initializers whose data lives in an external file (ONNX's external
   * data: location, offset, length), so the model file itself stays small: an exported model.
   */
  external?: Map<string, { location: string; offset: number; length: number }>;
}

/**
 * Serialises `g` to ONNX bytes. Weights stay graph inputs (the model holds no weight data),
 * unless `opts.external` stores them as external-data initializers.
 */
export function emitOnnx(g: Graph, docString = '', opts: EmitOptions = {}): Uint8Array {
  const initializer: onnxProto.onnx.ITensorProto[] = [];
  const external = opts.external ?? new Map();
  for (const v of g.inputs) {
    const e = external.get(v.name);
    if (e) {
      initializer.push({
        name: v.name,
        dims: v.shape as number[],
        dataType: ELEM[v.dtype],
        dataLocation: onnx.TensorProto.DataLocation.EXTERNAL,
        externalData: [
          { key: 'location', value: e.location },
          { key: 'offset', value: String(e.offset) },
          { key: 'length', value: String(e.length) },
        ],
      });
    }
  }
  for (const { value, data } of g.consts.values()) initializer.push(tensorProto(value.name, data));
  const nodes: onnxProto.onnx.INodeProto[] = [];
  let k = 0;
  for (const n of g.nodes) {
    const inputs = n.inputs.map((v) => v.name);
    const outputs = n.outputs.map((v) => v.name);
    const attribute: Attr[] = [];
    const extraConst = (xs: number[]) => {
      const name = `__c${k++}`;
      initializer.push(intsConst(name, xs));
      return name;
    };
    const a = n.attrs;
    switch (n.op) {
      case 'ReduceMean':
      case 'ReduceSum':
      case 'ReduceMax':
      case 'ReduceLogSumExp':
        inputs.push(extraConst(a.axes as number[]));
        attribute.push(intAttr('keepdims', a.keepdims === 0 ? 0 : 1));
        break;
      case 'Reshape':
        if (inputs.length === 1) inputs.push(extraConst(a.shape as number[]));
        break;
      case 'CumSum': {
        // The axis is a 0-D tensor.
        const name = `__c${k++}`;
        initializer.push(tensorProto(name, { dtype: 'int64', shape: [], data: BigInt64Array.from([BigInt(a.axis as number)]) }));
        inputs.push(name);
        break;
      }
      case 'Unsqueeze':
      case 'Squeeze':
        inputs.push(extraConst(a.axes as number[]));
        break;
      case 'Slice':
        inputs.push(extraConst(a.starts as number[]), extraConst(a.ends as number[]), extraConst(a.axes as number[]));
        break;
      case 'Cast':
        attribute.push(intAttr('to', ELEM[a.to as DType]));
        break;
      case 'Gelu':
        attribute.push(strAttr('approximate', (a.approximate as string) ?? 'none'));
        break;
      case 'Gemm':
        if (a.transA) attribute.push(intAttr('transA', 1));
        if (a.transB) attribute.push(intAttr('transB', 1));
        if (a.alpha !== undefined) attribute.push(floatAttr('alpha', a.alpha as number));
        break;
      case 'Softmax':
      case 'LogSoftmax':
        attribute.push(intAttr('axis', a.axis as number));
        break;
      case 'Pad':
        inputs.push(extraConst(a.pads as number[]));
        break;
      case 'ScatterND':
        if (a.reduction) attribute.push(strAttr('reduction', a.reduction as string));
        break;
      case 'ScatterElements':
        attribute.push(intAttr('axis', (a.axis as number) ?? 0));
        if (a.reduction) attribute.push(strAttr('reduction', a.reduction as string));
        break;
      case 'OneHot': {
        if (inputs.length === 1) inputs.push(extraConst([a.depth as number]));
        const vals = `__c${k++}`;
        initializer.push(tensorProto(vals, { dtype: 'float32', shape: [2], data: Float32Array.from([0, 1]) }));
        inputs.push(vals);
        attribute.push(intAttr('axis', -1));
        break;
      }
      case 'GatherElements':
        attribute.push(intAttr('axis', (a.axis as number) ?? 0));
        break;
      case 'Transpose':
        attribute.push(intsAttr('perm', a.perm as number[]));
        break;
      case 'Concat':
        attribute.push(intAttr('axis', a.axis as number));
        break;
      case 'Gather':
        attribute.push(intAttr('axis', (a.axis as number) ?? 0));
        break;
      case 'MatMulNBits':
        for (const k of ['K', 'N', 'bits', 'block_size', 'accuracy_level']) attribute.push(intAttr(k, a[k] as number));
        break;
      default:
        break;
    }
    const domain = CONTRIB.has(n.op) ? MS_DOMAIN : undefined;
    // StopGradient only matters to autodiff; at run time it is the identity.
    const opType = n.op === 'StopGradient' ? 'Identity' : n.op;
    nodes.push({ opType, ...(domain ? { domain } : {}), input: inputs, output: outputs, attribute, name: `n${nodes.length}_${n.op}` });
  }
  const model: onnxProto.onnx.IModelProto = {
    irVersion: IR_VERSION,
    producerName: 'emlens',
    docString,
    opsetImport: [{ domain: '', version: OPSET }, ...(g.nodes.some((n) => CONTRIB.has(n.op)) ? [{ domain: MS_DOMAIN, version: 1 }] : [])],
    graph: {
      name: g.name,
      node: nodes,
      input: g.inputs.filter((v) => !external.has(v.name)).map(valueInfo),
      output: g.outputs.map(valueInfo),
      initializer,
    },
  };
  return onnx.ModelProto.encode(model).finish();
}

