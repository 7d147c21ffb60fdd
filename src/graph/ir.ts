// The graph IR, after onnx-ir: values (not names) connect nodes; a value knows its
// producer and its uses; initializers are values that hold a constant tensor.
// Pass annotations live in `meta` maps and never reach disk unless a pass lowers them.
import { UserError } from '../errors.ts';
import type { DType } from './tensor.ts';
import { Tensor } from './tensor.ts';

export type Dim = number | string | undefined;
export interface ValueType {
  dtype: DType;
  shape?: Dim[];
}

export interface Use {
  node: Node;
  index: number;
}

export class Value {
  /** Set by Node when this value is one of its outputs. */
  _producer: Node | undefined;
  readonly _uses = new Set<Use>();
  readonly meta = new Map<string, unknown>();
  /** Free-form ONNX value_info doc string etc. is not kept; only name, type and constant. */
  constructor(
    public name: string,
    public type?: ValueType,
    public constValue?: Tensor,
  ) {}

  producer(): Node | undefined {
    return this._producer;
  }

  uses(): Use[] {
    return [...this._uses];
  }

  /** Consumers of this value, without duplicates. */
  consumers(): Node[] {
    return [...new Set([...this._uses].map((u) => u.node))];
  }

  get isConstant(): boolean {
    return this.constValue !== undefined;
  }
}

export type AttrValue =
  | { type: 'float'; value: number }
  | { type: 'int'; value: number }
  | { type: 'string'; value: string }
  | { type: 'tensor'; value: Tensor }
  | { type: 'graph'; value: Graph }
  | { type: 'floats'; value: number[] }
  | { type: 'ints'; value: number[] }
  | { type: 'strings'; value: string[] }
  /** Attributes twlac does not interpret (sparse tensors, type protos, lists of graphs): kept as encoded AttributeProto bytes. */
  | { type: 'opaque'; value: Uint8Array };

export class Node {
  readonly meta = new Map<string, unknown>();
  readonly attributes = new Map<string, AttrValue>();
  private _inputs: (Value | undefined)[] = [];
  private _outputs: Value[] = [];
  graph: Graph | undefined;

  constructor(
    public opType: string,
    inputs: (Value | undefined)[],
    outputs: Value[],
    public domain = '',
    public name = '',
  ) {
    inputs.forEach((v, i) => this.setInput(i, v));
    for (const o of outputs) this.addOutput(o);
  }

  get inputs(): readonly (Value | undefined)[] {
    return this._inputs;
  }

  get outputs(): readonly Value[] {
    return this._outputs;
  }

  input(i: number): Value | undefined {
    return this._inputs[i];
  }

  output(i = 0): Value {
    return this._outputs[i];
  }

  setInput(i: number, v: Value | undefined): void {
    const old = this._inputs[i];
    if (old) {
      for (const u of old._uses) if (u.node === this && u.index === i) old._uses.delete(u);
    }
    this._inputs[i] = v;
    if (v) v._uses.add({ node: this, index: i });
  }

  /** Drop all input edges (used when removing the node). */
  detachInputs(): void {
    for (let i = 0; i < this._inputs.length; i++) this.setInput(i, undefined);
    this._inputs = [];
  }

  /** Give up the output values (so a replacement node can take them over). */
  releaseOutputs(): Value[] {
    const outs = this._outputs;
    for (const o of outs) o._producer = undefined;
    this._outputs = [];
    return outs;
  }

  addOutput(v: Value): void {
    if (v._producer && v._producer !== this) throw new Error(`value ${v.name} already has a producer`);
    v._producer = this;
    this._outputs.push(v);
  }

  attr<T extends AttrValue['type']>(name: string, type: T): Extract<AttrValue, { type: T }>['value'] | undefined {
    const a = this.attributes.get(name);
    if (!a) return undefined;
    // A model's attribute of the wrong type is the model's defect, not twlac's.
    if (a.type !== type) throw new UserError(`invalid ONNX model: node '${this.name}' (${this.opType}) has attribute ${name} of type ${a.type}; ONNX defines it as ${type}`);
    return a.value as never;
  }

  setAttr(name: string, a: AttrValue): this {
    this.attributes.set(name, a);
    return this;
  }

  /** `domain::opType`, with the default domain written as empty. */
  get qualifiedOp(): string {
    return this.domain && this.domain !== 'ai.onnx' ? `${this.domain}::${this.opType}` : this.opType;
  }
}

export class Graph {
  name = 'graph';
  inputs: Value[] = [];
  outputs: Value[] = [];
  readonly initializers = new Map<string, Value>();
  /** value_info entries that carry types for intermediate values (kept for round trips). */
  readonly valueInfo = new Map<string, ValueType>();
  private _nodes: Node[] = [];
  private names = new Set<string>();
  docString = '';
  /** Annotations, as on Node and Value (onnx.ts keeps GraphProto fields it does not interpret here). */
  readonly meta = new Map<string, unknown>();

  get nodes(): readonly Node[] {
    return this._nodes;
  }

  /** A fresh, unused value name with the given prefix. */
  uniqueName(prefix: string): string {
    let name = prefix;
    for (let i = 1; this.names.has(name); i++) name = `${prefix}_${i}`;
    this.names.add(name);
    return name;
  }

  reserveName(name: string): void {
    this.names.add(name);
  }

  addInitializer(name: string, t: Tensor): Value {
    const v = new Value(this.names.has(name) ? this.uniqueName(name) : name, { dtype: t.dtype, shape: [...t.dims] }, t);
    this.names.add(v.name);
    this.initializers.set(v.name, v);
    return v;
  }

  removeInitializer(v: Value): void {
    this.initializers.delete(v.name);
  }

  /** Append a node (or insert before `before`). Output names are registered. */
  addNode(node: Node, before?: Node): Node {
    node.graph = this;
    // Node names share the namespace, so a loaded graph's node names are never handed out again.
    if (node.name) this.names.add(node.name);
    for (const o of node.outputs) this.names.add(o.name);
    if (before) {
      const i = this._nodes.indexOf(before);
      if (i < 0) throw new Error('addNode: anchor node not in graph');
      this._nodes.splice(i, 0, node);
    } else {
      this._nodes.push(node);
    }
    return node;
  }

  removeNode(node: Node): void {
    const i = this._nodes.indexOf(node);
    if (i < 0) throw new Error(`removeNode: ${node.opType} ${node.name} not in graph`);
    this._nodes.splice(i, 1);
    node.detachInputs();
    node.graph = undefined;
  }

  /** Replace `old` by `node` in place: `node` takes over old's output values, so consumers and graph outputs stay wired. */
  replaceNode(old: Node, node: Node): Node {
    const i = this._nodes.indexOf(old);
    if (i < 0) throw new Error(`replaceNode: ${old.opType} ${old.name} not in graph`);
    if (node.outputs.length) throw new Error('replaceNode: the replacement must not have outputs yet');
    const outs = old.releaseOutputs();
    old.detachInputs();
    old.graph = undefined;
    for (const o of outs) node.addOutput(o);
    node.graph = this;
    this._nodes[i] = node;
    return node;
  }

  /** Point every use of `from` (node inputs and graph outputs) at `to`. */
  replaceAllUses(from: Value, to: Value): void {
    for (const u of from.uses()) u.node.setInput(u.index, to);
    this.outputs = this.outputs.map((o) => (o === from ? to : o));
  }

  /** Is `v` a graph output? */
  isOutput(v: Value): boolean {
    return this.outputs.includes(v);
  }

  /** Reorder nodes topologically (stable: keeps the existing order where it is already valid). */
  topologicalSort(): void {
    const indeg = new Map<Node, number>();
    const nodeSet = new Set(this._nodes);
    for (const n of this._nodes) {
      let d = 0;
      for (const v of new Set(n.inputs)) {
        const p = v?.producer();
        if (p && nodeSet.has(p)) d++;
      }
      indeg.set(n, d);
    }
    const order: Node[] = [];
    const ready = this._nodes.filter((n) => indeg.get(n) === 0);
    const pos = new Map(this._nodes.map((n, i) => [n, i]));
    while (ready.length) {
      ready.sort((a, b) => pos.get(a)! - pos.get(b)!);
      const n = ready.shift()!;
      order.push(n);
      for (const o of n.outputs) {
        for (const c of o.consumers()) {
          if (!nodeSet.has(c)) continue;
          const uniqueInputsFromN = new Set(c.inputs.filter((v) => v?.producer() === n)).size;
          if (uniqueInputsFromN === 0) continue;
          const d = indeg.get(c)! - 1;
          indeg.set(c, d);
          if (d === 0) ready.push(c);
        }
      }
    }
    if (order.length !== this._nodes.length) throw new Error('graph has a cycle');
    this._nodes = order;
  }

  /** Remove nodes whose outputs reach no graph output, and initializers nobody uses. Returns the count removed. */
  removeDeadNodes(): number {
    const live = new Set<Node>();
    const stack = this.outputs.map((o) => o.producer()).filter((n): n is Node => !!n);
    while (stack.length) {
      const n = stack.pop()!;
      if (live.has(n)) continue;
      live.add(n);
      for (const v of n.inputs) {
        const p = v?.producer();
        if (p && !live.has(p)) stack.push(p);
      }
      for (const a of n.attributes.values()) if (a.type === 'graph') markOuterUses(a.value, stack);
    }
    let removed = 0;
    for (const n of [...this._nodes].reverse()) {
      if (!live.has(n)) {
        this.removeNode(n);
        removed++;
      }
    }
    for (const v of [...this.initializers.values()]) {
      if (v._uses.size === 0 && !this.isOutput(v)) this.initializers.delete(v.name);
    }
    return removed;
  }

  /** Find the value with this name (graph input, initializer or node output). */
  findValue(name: string): Value | undefined {
    const init = this.initializers.get(name);
    if (init) return init;
    for (const v of this.inputs) if (v.name === name) return v;
    for (const n of this._nodes) for (const o of n.outputs) if (o.name === name) return o;
    return undefined;
  }
}

/** Subgraphs may read outer values by name; keep their producers alive. */
function markOuterUses(g: Graph, stack: Node[]): void {
  for (const n of g.nodes) {
    for (const v of n.inputs) {
      const p = v?.producer();
      if (p && p.graph !== g) stack.push(p);
    }
    for (const a of n.attributes.values()) if (a.type === 'graph') markOuterUses(a.value, stack);
  }
}

export interface OpsetImport {
  domain: string;
  version: number;
}

export class Model {
  irVersion = 10;
  producerName = 'twlac';
  producerVersion = '';
  domain = '';
  modelVersion = 0;
  docString = '';
  opsetImports: OpsetImport[] = [{ domain: '', version: 18 }];
  /** Serialized ONNX metadata (metadata_props). */
  readonly metadataProps = new Map<string, string>();
  /** Model-local functions and other fields twlac does not interpret, kept as encoded ModelProto fields (tag included). */
  opaqueFunctions: Uint8Array[] = [];
  /** Directory the model was loaded from (external data paths are resolved against it). */
  baseDir = '.';

  constructor(public graph: Graph) {}

  opset(domain = ''): number | undefined {
    return this.opsetImports.find((o) => (o.domain === 'ai.onnx' ? '' : o.domain) === domain)?.version;
  }

  /** Ensure an opset import for `domain` of at least `version`. */
  requireOpset(domain: string, version: number): void {
    const o = this.opsetImports.find((x) => (x.domain === 'ai.onnx' ? '' : x.domain) === domain);
    if (!o) this.opsetImports.push({ domain, version });
    else if (o.version < version) o.version = version;
  }
}
