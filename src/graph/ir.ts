/**
 * A small tensor-graph IR. Every node is an op from the table in ops.ts, which gives its shape
 * rule (and, for autodiff, its VJP rule). The graph is emitted to ONNX by onnx.ts and run by ORT.
 *
 * Dims are numbers when known and strings (symbols such as "batch") when only known at run time;
 * shape rules propagate symbols, so a rule can still tell which axes a broadcast stretched.
 */
import { OPS, type OpName } from './ops.js';

export type DType = 'float32' | 'float64' | 'int64' | 'bool' | 'uint8' | 'float16' | 'bfloat16';
export type Dim = number | string;
export type Shape = Dim[];
export type AttrValue = number | number[] | string | boolean | Dim[];
export type Attrs = Record<string, AttrValue>;

export interface Value {
  readonly id: number;
  name: string;
  readonly dtype: DType;
  readonly shape: Shape;
  /** 'input' and 'const' values have no producer. */
  readonly kind: 'input' | 'const' | 'node';
}

export interface ConstData {
  dtype: DType;
  shape: number[];
  data: Float32Array | Float64Array | BigInt64Array | Uint8Array;
}

export interface Node {
  readonly op: OpName;
  readonly inputs: Value[];
  readonly outputs: Value[];
  readonly attrs: Attrs;
}

export class Graph {
  readonly nodes: Node[] = [];
  readonly inputs: Value[] = [];
  readonly outputs: Value[] = [];
  readonly consts = new Map<number, { value: Value; data: ConstData }>();
  private nextId = 0;
  private names = new Set<string>();
  private scalarCache = new Map<string, Value>();

  constructor(readonly name = 'emlens') {}

  private newValue(name: string, dtype: DType, shape: Shape, kind: Value['kind']): Value {
    let n = name;
    for (let i = 1; this.names.has(n); i++) n = `${name}_${i}`;
    this.names.add(n);
    return { id: this.nextId++, name: n, dtype, shape: [...shape], kind };
  }

  input(name: string, dtype: DType, shape: Shape): Value {
    if (this.names.has(name)) throw new Error(`graph input name ${name} already used`);
    const v = this.newValue(name, dtype, shape, 'input');
    this.inputs.push(v);
    return v;
  }

  const(data: ConstData, name = 'const'): Value {
    const v = this.newValue(name, data.dtype, data.shape, 'const');
    this.consts.set(v.id, { value: v, data });
    return v;
  }

  /** A float32 scalar constant (shared per value). */
  scalar(x: number, dtype: DType = 'float32'): Value {
    const key = `${dtype}:${x}`;
    let v = this.scalarCache.get(key);
    if (!v) {
      const data =
        dtype === 'float64' ? new Float64Array([x]) : dtype === 'int64' ? new BigInt64Array([BigInt(x)]) : new Float32Array([x]);
      v = this.const({ dtype, shape: [], data }, 'scalar');
      this.scalarCache.set(key, v);
    }
    return v;
  }

  ints(xs: number[], name = 'ints'): Value {
    return this.const({ dtype: 'int64', shape: [xs.length], data: BigInt64Array.from(xs.map(BigInt)) }, name);
  }

  /** Adds a node for `op`; returns its outputs (shape rule from the op table). */
  addMulti(op: OpName, inputs: Value[], attrs: Attrs = {}, name?: string): Value[] {
    const def = OPS[op];
    const types = def.infer(inputs, attrs, this);
    const outputs = types.map((t, i) => this.newValue(name ?? `${op.toLowerCase()}${types.length > 1 ? i : ''}`, t.dtype, t.shape, 'node'));
    this.nodes.push({ op, inputs, outputs, attrs });
    return outputs;
  }

  add(op: OpName, inputs: Value[], attrs: Attrs = {}, name?: string): Value {
    const outs = this.addMulti(op, inputs, attrs, name);
    if (outs.length !== 1) throw new Error(`${op} has ${outs.length} outputs`);
    return outs[0]!;
  }

  /** Gives a value another (unused) name, e.g. to free its name for a graph output built on it. */
  rename(v: Value, name: string): void {
    if (this.names.has(name)) throw new Error(`graph name ${name} already used`);
    this.names.delete(v.name);
    this.names.add(name);
    v.name = name;
  }

  /** Removes nodes whose outputs nothing left in the graph uses (e.g. a head replaced by an extension). */
  removeNodes(drop: Node[]): void {
    const gone = new Set(drop);
    const dead = new Set(drop.flatMap((n) => n.outputs.map((v) => v.id)));
    for (const n of this.nodes) {
      if (gone.has(n)) continue;
      const used = n.inputs.find((v) => dead.has(v.id));
      if (used) throw new Error(`removeNodes: ${used.name} is still used by a ${n.op} node`);
    }
    const out = this.outputs.find((v) => dead.has(v.id));
    if (out) throw new Error(`removeNodes: ${out.name} is a graph output`);
    const keep = this.nodes.filter((n) => !gone.has(n));
    this.nodes.length = 0;
    this.nodes.push(...keep);
  }

  output(v: Value, name?: string): Value {
    // An output must be a node's own value with the requested name; route through Identity
    // when the value is an input/const or already named differently.
    let out = v;
    if (name !== undefined && v.name !== name) {
      if (this.names.has(name)) throw new Error(`graph output name ${name} already used`);
      out = this.add('Identity', [v], {}, name);
    } else if (v.kind !== 'node') {
      out = this.add('Identity', [v], {}, name ?? `${v.name}_out`);
    }
    this.outputs.push(out);
    return out;
  }
}
