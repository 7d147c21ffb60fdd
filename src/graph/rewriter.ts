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

  /** Make every consumer of `from` (but not the nodes in `except`) read `to` instead. */
  redirect(from: Value, to: Value, except: Node[] = []): void {
    for (const u of from.uses()) if (!except.includes(u.node)) u.node.setInput(u.index, to);
  }
}
