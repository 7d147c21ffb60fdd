// Fold a norm's γ (and LayerNorm's β) into the linears that read the norm:
//   W · (γ ⊙ n(x) + β) + b = (W ⊙ γ_cols) · n(x) + (W β + b)
// with n(x) = x/rms(x) (RMSNorm) or (x − μ)/σ (LayerNorm, whose mean subtraction stays in the
// norm: it is what makes n(x) exact whatever the residual stream's mean). γ is then replaced by
// ones and β by zeros (exact in real arithmetic; the folded weights are rounded to the weight's
// own precision, the new biases are float32). A linear without a bias gets one when β is
// folded. Folding is what lets a later rotation see the weights the activation really meets.
// A norm read by several sites (Phi-2's one LayerNorm before attention and MLP) is folded
// into all of their linears at once. Skipped for a norm whose output reaches anything but
// those linears (through reshapes/casts).
import { definePass } from '../graph/pass.ts';
import type { Node, Value } from '../graph/ir.ts';
import { biasVector, constTensor, weightRows, type Norm } from '../graph/recognize.ts';
import { Rewriter } from '../graph/rewriter.ts';
import type { CompileContext, SiteState } from './context.ts';
import { addLinearBias, encodeFloats, setLinearBias, setLinearWeight } from './weights.ts';

const PASS_THROUGH = new Set(['Reshape', 'Cast', 'Identity', 'Unsqueeze', 'Squeeze', 'Flatten']);

/** Does `v` reach only the given linear nodes (through pass-through ops)? Shape ops read no values (the exporters' Reshape targets). */
function feedsOnly(v: Value, targets: Set<Node>): boolean {
  for (const c of v.consumers()) {
    if (targets.has(c) || (c.opType === 'Shape' && c.domain === '')) continue;
    if (!PASS_THROUGH.has(c.opType) || c.input(0) !== v) return false;
    if (!feedsOnly(c.output(0), targets)) return false;
  }
  return true;
}

function canFold(n: Norm, sites: SiteState[]): boolean {
  const constant = (v: Value | undefined) => !v || !!constTensor(v);
  return (!!n.gamma || !!n.beta) && constant(n.gamma) && constant(n.beta) && feedsOnly(n.output, new Set(sites.flatMap((s) => s.group.linears.map((l) => l.node))));
}

export const foldNormsPass = definePass<CompileContext>({
  name: 'fold-norms',
  run(model, ctx) {
    const rw = new Rewriter(model.graph);
    let modified = false;
    // The sites each norm feeds, in site order.
    const byNorm = new Map<Norm, SiteState[]>();
    for (const s of ctx.sites) if (s.group.norm) byNorm.set(s.group.norm, [...(byNorm.get(s.group.norm) ?? []), s]);
    for (const [norm, sites] of byNorm) {
      if (!canFold(norm, sites)) continue;
      const gt = norm.gamma && constTensor(norm.gamma)!;
      const bt = norm.beta && constTensor(norm.beta)!;
      const gamma = gt?.toFloat32();
      const beta = bt?.toFloat32();
      for (const l of sites.flatMap((s) => s.group.linears)) {
        const W = weightRows(l);
        const K = l.inFeatures;
        if (beta) {
          // b' = b + W β, with the weights before γ is folded in.
          const b = Float64Array.from(biasVector(l) ?? new Float32Array(l.outFeatures));
          for (let n = 0; n < l.outFeatures; n++) {
            let s = 0;
            for (let k = 0; k < K; k++) s += W[n * K + k] * beta[k];
            b[n] += s;
          }
          if (l.bias) setLinearBias(l, b);
          else addLinearBias(rw, l, b);
        }
        if (gamma) {
          for (let i = 0; i < W.length; i++) W[i] *= gamma[i % K];
          setLinearWeight(l, W);
        }
      }
      // Fresh ones / zeros for this norm only (γ and β may be shared with another norm).
      const id = sites[0].id;
      const replace = (old: Value, fresh: Value) => {
        for (const u of old.uses()) if (norm.nodes.includes(u.node)) u.node.setInput(u.index, fresh);
      };
      if (gt) {
        const ones = rw.init(`${id}.unit_gamma`, encodeFloats(gt.dtype, gt.dims, new Float32Array(gt.numel).fill(1)));
        replace(norm.gamma!, ones);
        norm.gamma = ones;
      }
      if (bt) {
        const zeros = rw.init(`${id}.zero_beta`, encodeFloats(bt.dtype, bt.dims, new Float32Array(bt.numel)));
        replace(norm.beta!, zeros);
        norm.beta = zeros;
      }
      for (const s of sites) s.gammaFolded = true;
      modified = true;
    }
    if (modified) model.graph.removeDeadNodes();
    return { model, modified };
  },
});
