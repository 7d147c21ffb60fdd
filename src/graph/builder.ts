// A small graph builder: tests, fixtures and lowerings make graphs with it rather than
// with hand-written protobuf. `b.op('MatMul', [x, w])` adds a node and returns its output.
import { Graph, Model, Node, Value, type AttrValue, type ValueType } from './ir.ts';
import { Tensor } from './tensor.ts';

export type AttrInput = number | string | number[] | string[] | Tensor | AttrValue;

export function toAttr(v: AttrInput, floatHint = false): AttrValue {
  if (v instanceof Tensor) return { type: 'tensor', value: v };
  if (typeof v === 'string') return { type: 'string', value: v };
  if (typeof v === 'number') return Number.isInteger(v) && !floatHint ? { type: 'int', value: v } : { type: 'float', value: v };
  if (Array.isArray(v)) {
    if (v.length && typeof v[0] === 'string') return { type: 'strings', value: v as string[] };
    const nums = v as number[];
    return nums.every(Number.isInteger) && !floatHint ? { type: 'ints', value: nums } : { type: 'floats', value: nums };
  }
  return v;
}

export interface OpOptions {
  domain?: string;
  name?: string;
  /** Number of outputs (default 1). */
  outputs?: number;
  /** Attributes; use `{type:'float', value: 1}` to force a float for an integral value. */
  attrs?: Record<string, AttrInput>;
  /** Names for the outputs. */
  outputNames?: string[];
  /** Insert before this node instead of appending. */
  before?: Node;
}

export class GraphBuilder {
  readonly graph: Graph;
  constructor(graph?: Graph) {
    this.graph = graph ?? new Graph();
  }

  input(name: string, type: ValueType): Value {
    const v = new Value(name, type);
    this.graph.reserveName(name);
    this.graph.inputs.push(v);
    return v;
  }

  output(v: Value, name?: string): Value {
    if (name && v.name !== name) v.name = name;
    this.graph.outputs.push(v);
    return v;
  }

  init(name: string, t: Tensor): Value {
    return this.graph.addInitializer(name, t);
  }

  f32(name: string, dims: number[], data: Float32Array | number[]): Value {
    return this.init(name, Tensor.fromFloat32(dims, data instanceof Float32Array ? data : Float32Array.from(data)));
  }

  i64(name: string, data: number[], dims: number[] = [data.length]): Value {
    return this.init(name, Tensor.fromInt64(dims, data));
  }

  /** Add a node; returns its outputs. */
  node(opType: string, inputs: (Value | undefined)[], opts: OpOptions = {}): Value[] {
    const n = opts.outputs ?? 1;
    const outs: Value[] = [];
    for (let i = 0; i < n; i++) outs.push(new Value(this.graph.uniqueName(opts.outputNames?.[i] ?? `${opts.name ?? opType.toLowerCase()}_out`)));
    const node = new Node(opType, inputs, outs, opts.domain ?? '', opts.name ?? this.graph.uniqueName(opType));
    for (const [k, v] of Object.entries(opts.attrs ?? {})) node.setAttr(k, toAttr(v));
    this.graph.addNode(node, opts.before);
    return outs;
  }

  /** Add a single-output node and return the output. */
  op(opType: string, inputs: (Value | undefined)[], opts: OpOptions = {}): Value {
    return this.node(opType, inputs, { ...opts, outputs: 1 })[0];
  }

  model(opset = 18, extra: { domain: string; version: number }[] = []): Model {
    const m = new Model(this.graph);
    m.opsetImports = [{ domain: '', version: opset }, ...extra];
    return m;
  }
}
