// Rotation pass (KOTMS, METHOD §1). For each input site (the q/k/v input, the o input, the
// gate/up input, the down input of every block) learn one Kronecker-factored orthogonal
// transform K = C ⊗ B for all linears reading that input, then
//   W' = W · Kᵀ        for each of those linears   (rotated weights, still fp)
//   x' = K · x  ⇔  X' = C · X · Bᵀ on the [l, r] view of x   (an online op before them)
// so that W' x' = W Kᵀ K x = W x exactly: the model computes the same function.
import { definePass } from '../graph/pass.ts';
import type { Value } from '../graph/ir.ts';
import { weightRows, type Linear } from '../graph/recognize.ts';
import { Rewriter } from '../graph/rewriter.ts';
import { emitKronTransform } from '../lower/kron-transform.ts';
import { optimiseKotms, type KotmsOptions } from '../quant/kotms.ts';
import { rotateWeight } from '../quant/kron.ts';
import type { CompileContext } from './context.ts';
import { activationDtype } from './lower-ort.ts';
import { setLinearWeight } from './weights.ts';

export const rotatePass = definePass<CompileContext & { kotms?: KotmsOptions }>({
  name: 'rotate',
  run(model, ctx) {
    const rw = new Rewriter(model.graph);
    ctx.progress.start('rotation (KOTMS)', ctx.sites.length);
    for (const s of ctx.sites) {
      const lins = s.group.linears;
      const K = lins[0].inFeatures;
      const Ws = lins.map((l) => weightRows(l));
      const r = optimiseKotms(K, lins.map((l, i) => ({ weight: Ws[i], outDim: l.outFeatures })), ctx.kotms);
      lins.forEach((l, i) => setLinearWeight(l, rotateWeight(Ws[i], l.outFeatures, r.shape, r.B, r.C)));
      // One online transform per distinct input value (normally one for the whole group).
      const byInput = new Map<Value, Linear[]>();
      for (const l of lins) byInput.set(l.node.input(0)!, [...(byInput.get(l.node.input(0)!) ?? []), l]);
      let i = 0;
      for (const [x, ls] of byInput) {
        const first = model.graph.nodes.find((n) => ls.some((l) => l.node === n))!;
        const y = emitKronTransform(rw, first, x, { l: r.shape.l, r: r.shape.r, B: r.B, C: r.C }, `${s.id}.kron${i++ ? `_${i}` : ''}`, activationDtype(ls[0]));
        for (const l of ls) l.node.setInput(0, y);
      }
      s.transform = { l: r.shape.l, r: r.shape.r, B: r.B, C: r.C };
      ctx.progress.tick(1, `${s.id} ${r.shape.l}⊗${r.shape.r} loss ${r.objectiveBefore.toFixed(3)}→${r.objectiveAfter.toFixed(3)}`);
    }
    ctx.progress.done();
    return { model, modified: ctx.sites.length > 0 };
  },
});
