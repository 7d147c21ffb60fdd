// Rotation pass (KOTMS, METHOD §1). For each input site (the q/k/v input, the o input, the
// gate/up input, the down input of every block) learn one Kronecker-factored orthogonal
// transform K = C ⊗ B for all linears reading that input, then
//   W' = W · Kᵀ        for each of those linears   (rotated weights, still fp)
//   x' = K · x  ⇔  X' = C · X · Bᵀ on the [l, r] view of x   (an online op before them)
// so that W' x' = W Kᵀ K x = W x exactly: the model computes the same function.
//
// Fusion (opts.fuse): the o_proj input is the concatenation of per-head attention outputs
// x_h = A_h · V_g(h), linear in V. A per-head transform K = I_heads ⊗ B (B: headDim×headDim)
// gives B·x_h = A_h · (B V_g), so it folds into v_proj's output rows, per KV head:
//   W_v' = (I_kvHeads ⊗ B) W_v,   b_v' = (I ⊗ B) b_v,   W_o' = W_o (I_heads ⊗ B)ᵀ
// and no online op remains at that site. The other sites sit behind a non-linearity (the
// RMSNorm's division, SiLU·up) or would need one rotation shared by the whole residual
// stream, which KOTMS's per-site transforms are not, so they stay online.
import { definePass } from '../graph/pass.ts';
import { biasVector, weightRows } from '../graph/recognize.ts';
import { Rewriter } from '../graph/rewriter.ts';
import { emitKronTransform } from '../lower/kron-transform.ts';
import type { KotmsOptions, KotmsResult } from '../quant/kotms.ts';
import { defaultFitThreads, FitPool, type PoolJob } from '../quant/fit-pool.ts';
import { rotateWeight } from '../quant/kron.ts';
import type { CompileContext, SiteState } from './context.ts';
import { activationDtype } from './lower-ort.ts';
import { restoreSites, saveSite } from './resume.ts';
import { setLinearBias, setLinearWeight } from './weights.ts';

/** Sites whose KOTMS run side by side: their weights are read (fp32 copies) only as their turn comes. */
const SITES_PER_THREAD = 2;

export const rotatePass = definePass<CompileContext & { kotms?: KotmsOptions }>({
  name: 'rotate',
  async run(model, ctx) {
    const rw = new Rewriter(model.graph);
    ctx.progress.start('rotation (KOTMS)', ctx.sites.length);
    // Each site's KOTMS reads only its own linears' weights, which no earlier site changes
    // (the o_proj fusion changes v_proj's rows, v_proj's site reads its columns before), so
    // the optimisations run side by side and the rotations are applied in site order. For the
    // same reason a compile's checkpoint (passes/resume.ts) may give back the results of the
    // first sites: they are applied again in order, and only the rest are fitted.
    const ck = ctx.checkpoint;
    const restored = ck ? restoreSites(ck, ctx.sites.length) : [];
    restored.forEach((r, i) => apply(ctx, rw, ctx.sites[i], r));
    const pool = await FitPool.open(ctx.opts.threads ?? defaultFitThreads());
    try {
      const window = SITES_PER_THREAD * pool.threads;
      for (let at = restored.length; at < ctx.sites.length; at += window) {
        const sites = ctx.sites.slice(at, at + window);
        const results = await pool.run(sites.map((s) => planSite(ctx, s)));
        sites.forEach((s, i) => {
          apply(ctx, rw, s, results[i]);
          if (ck) saveSite(ck, at + i, results[i]);
        });
      }
    } finally {
      await pool.close();
    }
    ctx.progress.done();
    return { model, modified: ctx.sites.length > 0 };
  },
});

/** One site's KOTMS: the ordinary transform, or I ⊗ B per head to fold into v_proj. */
function planSite(ctx: CompileContext & { kotms?: KotmsOptions }, s: SiteState): PoolJob<'optimiseKotms'> {
  const lins = s.group.linears;
  const K = lins[0].inFeatures;
  const cost = (rows: number) => rows * K * K;
  if (fusesIntoV(ctx, s)) {
    const { heads, headDim } = ctx.structure.config;
    const o = lins[0];
    return { fn: 'optimiseKotms', args: [K, [{ weight: weightRows(o), outDim: o.outFeatures }], { ...ctx.kotms, shape: { l: heads, r: headDim }, fixC: true }], cost: cost(o.outFeatures) };
  }
  const linears = lins.map((l) => ({ weight: weightRows(l), outDim: l.outFeatures }));
  return { fn: 'optimiseKotms', args: [K, linears, ctx.kotms], cost: cost(lins.reduce((a, l) => a + l.outFeatures, 0)) };
}

/** Apply a site's KOTMS result: folded into v_proj where planned so, else online. */
function apply(ctx: CompileContext, rw: Rewriter, s: SiteState, r: KotmsResult): void {
  if (fusesIntoV(ctx, s)) applyFused(ctx, s, r);
  else applyOnline(ctx, rw, s, r);
}

function fusesIntoV(ctx: CompileContext, s: SiteState): boolean {
  return ctx.opts.fuse && s.group.site === 'o' && foldableIntoV(ctx, s);
}

/** W' = W·Kᵀ for the site's linears and the online transform x' = K·x before them. */
function applyOnline(ctx: CompileContext, rw: Rewriter, s: SiteState, r: KotmsResult): void {
  const lins = s.group.linears;
  lins.forEach((l) => setLinearWeight(l, rotateWeight(weightRows(l), l.outFeatures, r.shape, r.B, r.C)));
  // One online transform per distinct input value (normally one for the whole group).
  const dtype = activationDtype(lins[0]);
  rw.interpose(lins.map((l) => l.node), (x, before, i) =>
    emitKronTransform(rw, before, x, { l: r.shape.l, r: r.shape.r, B: r.B, C: r.C }, `${s.id}.kron${i ? `_${i + 1}` : ''}`, dtype),
  );
  s.transform = { l: r.shape.l, r: r.shape.r, B: r.B, C: r.C };
  ctx.progress.tick(1, `${s.id} ${r.shape.l}⊗${r.shape.r} loss ${r.objectiveBefore.toFixed(3)}→${r.objectiveAfter.toFixed(3)}`);
}

/** Whether K = I ⊗ B per head at this o_proj input can be folded into v_proj. */
function foldableIntoV(ctx: CompileContext, s: SiteState): boolean {
  const { heads, kvHeads, headDim } = ctx.structure.config;
  const block = ctx.structure.blocks[s.group.block];
  const o = block.o;
  const v = block.v;
  if (s.group.linears.length !== 1 || s.group.linears[0] !== o) return false;
  if (o.inFeatures !== heads * headDim || v.outFeatures !== kvHeads * headDim) return false;
  return v.node.output(0).consumers().length > 0;
}

/** KOTMS with K = I ⊗ B per head at the o_proj input, folded into v_proj. */
function applyFused(ctx: CompileContext, s: SiteState, r: KotmsResult): void {
  const { heads, kvHeads, headDim } = ctx.structure.config;
  const block = ctx.structure.blocks[s.group.block];
  const o = block.o;
  const v = block.v;
  setLinearWeight(o, rotateWeight(weightRows(o), o.outFeatures, r.shape, r.B, r.C));
  // v_proj rows: (I_kv ⊗ B) W_v, i.e. rotateWeight's transpose form applied to Wᵥᵀ.
  const Wv = weightRows(v);
  const K = v.inFeatures;
  const out = new Float64Array(Wv.length);
  for (let g = 0; g < kvHeads; g++) {
    for (let i = 0; i < headDim; i++) {
      for (let j = 0; j < headDim; j++) {
        const bij = r.B[i * headDim + j];
        if (bij === 0) continue;
        const src = (g * headDim + j) * K;
        const dst = (g * headDim + i) * K;
        for (let k = 0; k < K; k++) out[dst + k] += bij * Wv[src + k];
      }
    }
  }
  setLinearWeight(v, out);
  const bias = biasVector(v);
  if (bias) {
    const nb = new Float64Array(bias.length);
    for (let g = 0; g < kvHeads; g++) for (let i = 0; i < headDim; i++) for (let j = 0; j < headDim; j++) nb[g * headDim + i] += r.B[i * headDim + j] * bias[g * headDim + j];
    setLinearBias(v, nb);
  }
  s.fused = { l: heads, r: headDim, B: r.B, into: 'v' };
  ctx.progress.tick(1, `${s.id} fused I⊗B (${headDim}) into v_proj, loss ${r.objectiveBefore.toFixed(3)}→${r.objectiveAfter.toFixed(3)}`);
}
