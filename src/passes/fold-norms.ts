// Fold RMSNorm γ into the linears that read the norm:  W · diag(γ) · n(x) = (W ⊙ γ_cols) · n(x).
// γ is then replaced by ones (exact in real arithmetic; the folded weights are rounded to
// the weight's own precision). Folding is what lets a later rotation see the weights the
// activation really meets. Skipped for a norm whose output reaches anything but the
// group's linears (through reshapes/casts).
import { definePass } from '../graph/pass.ts';
import type { Node, Value } from '../graph/ir.ts';
import { constTensor, weightRows, type InputGroup } from '../graph/recognize.ts';
import { Rewriter } from '../graph/rewriter.ts';
import type { CompileContext } from './context.ts';
import { encodeFloats, setLinearWeight } from './weights.ts';

const PASS_THROUGH = new Set(['Reshape', 'Cast', 'Identity', 'Unsqueeze', 'Squeeze', 'Flatten']);

/** Does `v` reach only the group's linear nodes (through pass-through ops)? */
function feedsOnly(v: Value, targets: Set<Node>): boolean {
  for (const c of v.consumers()) {
    if (targets.has(c)) continue;
    if (!PASS_THROUGH.has(c.opType) || c.input(0) !== v) return false;
    if (!feedsOnly(c.output(0), targets)) return false;
  }
  return true;
}

function canFold(g: InputGroup): boolean {
  const n = g.norm;
  return !!n && n.rms && !!n.gamma && !!constTensor(n.gamma) && feedsOnly(n.output, new Set(g.linears.map((l) => l.node)));
}

export const foldNormsPass = definePass<CompileContext>({
  name: 'fold-norms',
  run(model, ctx) {
    const rw = new Rewriter(model.graph);
    let modified = false;
    for (const s of ctx.sites) {
      const g = s.group;
      if (!canFold(g)) continue;
      const gammaV = g.norm!.gamma!;
      const gt = constTensor(gammaV)!;
      const gamma = gt.toFloat32();
      for (const l of g.linears) {
        const W = weightRows(l);
        const K = l.inFeatures;
        for (let i = 0; i < W.length; i++) W[i] *= gamma[i % K];
        setLinearWeight(l, W);
      }
      // A fresh ones tensor for this norm only (γ may be shared with another norm).
      const ones = rw.init(`${s.id}.unit_gamma`, encodeFloats(gt.dtype, gt.dims, new Float32Array(gt.numel).fill(1)));
      for (const u of gammaV.uses()) if (g.norm!.nodes.includes(u.node)) u.node.setInput(u.index, ones);
      g.norm!.gamma = ones;
      s.gammaFolded = true;
      modified = true;
    }
    if (modified) model.graph.removeDeadNodes();
    return { model, modified };
  },
});
