// The one object through which passes change a graph: it adds nodes and initializers
// (via the builder) and replaces nodes in place, keeping the output values so that
// consumers and graph outputs stay wired.
import { GraphBuilder, toAttr, type AttrInput } from './builder.ts';
import { Node, type Graph, type Value } from './ir.ts';
import type { Tensor } from './tensor.ts';

export class Rewriter {
  readonly b: GraphBuilder;
  constructor(readonly graph: Graph) {
    this.b = new GraphBuilder(graph);
  }

  init(name: string, t: Tensor): Value {
    return this.b.init(name, t);
  }

  /** Insert a node before `anchor` and return its single output. */
  opBefore(anchor: Node, opType: string, inputs: (Value | undefined)[], attrs: Record<string, AttrInput> = {}, domain = ''): Value {
    return this.b.op(opType, inputs, { before: anchor, attrs, domain, name: this.graph.uniqueName(`${anchor.name || opType}/${opType}`) });
  }

  /** Replace `old` with a new node that keeps old's outputs. */
  replace(old: Node, opType: string, inputs: (Value | undefined)[], attrs: Record<string, AttrInput> = {}, domain = ''): Node {
    const n = new Node(opType, inputs, [], domain, old.name);
    for (const [k, v] of Object.entries(attrs)) n.setAttr(k, toAttr(v));
    return this.graph.replaceNode(old, n);
  }

  /**
   * Put an op chain in front of `nodes`' first input: for each distinct input-0 value x of
   * `nodes`, `make(x, before, i)` emits the chain before the first of x's readers (in graph
   * order) and returns its result, which those readers then read instead of x.
   */
  interpose(nodes: readonly Node[], make: (x: Value, before: Node, i: number) => Value): void {
    const byInput = new Map<Value, Node[]>();
    for (const n of nodes) byInput.set(n.input(0)!, [...(byInput.get(n.input(0)!) ?? []), n]);
    let i = 0;
    for (const [x, readers] of byInput) {
      const first = this.graph.nodes.find((n) => readers.includes(n))!;
      const y = make(x, first, i++);
      for (const n of readers) n.setInput(0, y);
    }
  }

  /** Make every consumer of `from` (but not the nodes in `except`) read `to` instead. */
  redirect(from: Value, to: Value, except: Node[] = []): void {
    for (const u of from.uses()) if (!except.includes(u.node)) u.node.setInput(u.index, to);
  }
}
