// Structural copy of a model: new Values and Nodes, the same (immutable) Tensor objects,
// so cloning a model with gigabytes of external weights costs only the graph.
import { Graph, Model, Node, Value, type AttrValue } from './ir.ts';

export function cloneGraph(g: Graph, outer: Map<Value, Value> = new Map()): { graph: Graph; map: Map<Value, Value> } {
  const map = new Map<Value, Value>(outer);
  const ng = new Graph();
  ng.name = g.name;
  ng.docString = g.docString;
  const copy = (v: Value): Value => {
    let c = map.get(v);
    if (!c) {
      c = new Value(v.name, v.type ? { dtype: v.type.dtype, shape: v.type.shape ? [...v.type.shape] : undefined } : undefined, v.constValue);
      for (const [k, m] of v.meta) c.meta.set(k, m);
      map.set(v, c);
      ng.reserveName(v.name);
    }
    return c;
  };
  for (const v of g.initializers.values()) ng.initializers.set(v.name, copy(v));
  ng.inputs = g.inputs.map(copy);
  for (const [k, t] of g.valueInfo) ng.valueInfo.set(k, t);
  for (const n of g.nodes) {
    const nn = new Node(n.opType, n.inputs.map((v) => (v ? copy(v) : undefined)), [], n.domain, n.name);
    for (const o of n.outputs) nn.addOutput(copy(o));
    for (const [k, a] of n.attributes) nn.setAttr(k, cloneAttr(a, map));
    for (const [k, m] of n.meta) nn.meta.set(k, m);
    ng.addNode(nn);
  }
  ng.outputs = g.outputs.map(copy);
  return { graph: ng, map };
}

/** Copy an attribute; a subgraph's references to outer values go through `map`. */
export function cloneAttr(a: AttrValue, map: Map<Value, Value>): AttrValue {
  if (a.type === 'graph') return { type: 'graph', value: cloneGraph(a.value, map).graph };
  if (a.type === 'ints' || a.type === 'floats' || a.type === 'strings') return { type: a.type, value: [...a.value] } as AttrValue;
  return a;
}

/** Copy a model. `map` takes each original Value to its copy (for carrying references across). */
export function cloneModel(m: Model): { model: Model; map: Map<Value, Value> } {
  const { graph, map } = cloneGraph(m.graph);
  const c = new Model(graph);
  c.irVersion = m.irVersion;
  c.producerName = m.producerName;
  c.producerVersion = m.producerVersion;
  c.domain = m.domain;
  c.modelVersion = m.modelVersion;
  c.docString = m.docString;
  c.opsetImports = m.opsetImports.map((o) => ({ ...o }));
  for (const [k, v] of m.metadataProps) c.metadataProps.set(k, v);
  c.opaqueFunctions = [...m.opaqueFunctions];
  c.baseDir = m.baseDir;
  return { model: c, map };
}
