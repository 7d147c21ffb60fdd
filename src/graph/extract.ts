// A sub-model cut out of a model, as onnx.utils.extract_model does: the given nodes, the
// initializers they read, the values they read from elsewhere as graph inputs, and the
// chosen values as outputs. New Values and Nodes (the source graph is not touched), the
// same immutable Tensor objects, so a cut of a model with external weights costs only the
// cut's graph and reads no weight until it is saved.
import { cloneAttr } from './clone.ts';
import { Graph, Model, Node, Value, type ValueType } from './ir.ts';

/** Values a node reads: its inputs, and the outer values its subgraphs (If/Loop/Scan bodies) read. */
export function readsOf(n: Node): Value[] {
  const out = n.inputs.filter((v): v is Value => v !== undefined);
  for (const a of n.attributes.values()) if (a.type === 'graph') outerReads(a.value, out);
  return out;
}

function outerReads(g: Graph, out: Value[]): void {
  const own = new Set<Value>([...g.inputs, ...g.initializers.values()]);
  for (const n of g.nodes) {
    for (const v of n.inputs) if (v && !own.has(v) && v.producer()?.graph !== g) out.push(v);
    for (const a of n.attributes.values()) if (a.type === 'graph') outerReads(a.value, out);
  }
}

export interface Cut {
  model: Model;
  /** Each source value the cut holds, to its copy. */
  map: Map<Value, Value>;
}

/**
 * The sub-model of `nodes` (any order; they are sorted topologically). `inputs` are the
 * non-constant values they read from outside (each declared with the type given, or the
 * value's own), `outputs` the values the cut returns.
 */
export function extractModel(model: Model, nodes: Iterable<Node>, inputs: { value: Value; type?: ValueType }[], outputs: Value[]): Cut {
  const g = new Graph();
  g.name = model.graph.name;
  const map = new Map<Value, Value>();
  const copy = (v: Value, type = v.type): Value => {
    let c = map.get(v);
    if (!c) {
      c = new Value(v.name, type ? { dtype: type.dtype, shape: type.shape ? [...type.shape] : undefined } : undefined, v.constValue);
      for (const [k, m] of v.meta) c.meta.set(k, m);
      map.set(v, c);
      g.reserveName(v.name);
      if (v.constValue) g.initializers.set(v.name, c);
    }
    return c;
  };
  g.inputs = inputs.map((i) => copy(i.value, i.type));
  for (const n of nodes) {
    const nn = new Node(n.opType, n.inputs.map((v) => (v ? copy(v) : undefined)), [], n.domain, n.name);
    for (const o of n.outputs) nn.addOutput(copy(o));
    // Outer values a subgraph reads must be copies too: copy them before cloning the body.
    if ([...n.attributes.values()].some((a) => a.type === 'graph')) for (const v of readsOf(n)) copy(v);
    for (const [k, a] of n.attributes) nn.setAttr(k, cloneAttr(a, map));
    for (const [k, m] of n.meta) nn.meta.set(k, m);
    g.addNode(nn);
  }
  for (const [v, c] of map) if (!c.producer() && !c.constValue && !g.inputs.includes(c)) throw new Error(`extractModel: the cut reads ${v.name}, which it neither computes nor takes as an input`);
  g.outputs = outputs.map((v) => {
    const c = map.get(v);
    if (!c) throw new Error(`extractModel: output ${v.name} is not computed by the cut`);
    return c;
  });
  g.topologicalSort();
  const m = new Model(g);
  m.irVersion = model.irVersion;
  m.opsetImports = model.opsetImports.map((o) => ({ ...o }));
  m.opaqueFunctions = [...model.opaqueFunctions];
  m.baseDir = model.baseDir;
  return { model: m, map };
}
