// Refinement pass (TernaryLLM, METHOD.md): Dual Learnable Ternarization with outlier-friendly
// feature distillation, starting from the ternary pass's PTQ result. Block by block:
//   teacher: the fp block (the rotated, norm-folded weights the ternary pass started from)
//            on the teacher's own stream;
//   student: the ternary block (learnable α, γ per group; trits kept or re-decided by a
//            straight-through estimator) on the stream of the already refined student blocks;
//   loss:    mean over calibration tokens of 1 − cos(student output, teacher output).
// Rotations stay fixed. Gradients come from the hand-written block backward
// (quant/block-grad.ts, checked against finite differences). After its steps each linear
// goes back into its storage format (lattice rows snapped, fp16) and the graph's dense
// weight is set to the decoded values, so later passes and the lowering see what is stored.
// Calibration segments only: the pieces are cut from `opts.calib`.
import { artifactModel } from '../artifact/from-structure.ts';
import { BLOCK_LINEARS, type BlockLinearRole } from '../artifact/build.ts';
import { decodeTernary } from '../formats/ternary.ts';
import { definePass } from '../graph/pass.ts';
import { blockBackward, blockForward, cosineLoss, type BlockDims, type BlockParams } from '../quant/block-grad.ts';
import { DltLinear } from '../quant/dlt.ts';
import type { CompileContext, RefineOptions } from './context.ts';
import { setLinearWeight } from './weights.ts';

export const DEFAULT_REFINE: RefineOptions = { steps: 40, lr: 2e-3, pieces: 16, seq: 256, batch: 2, trits: 'keep', tritLr: 0.02 };

/** Calibration pieces of `seq` tokens: each segment cut into whole pieces, the first `count` kept. */
export function refinePieces(calib: Int32Array[], seq: number, count: number): Int32Array[] {
  const out: Int32Array[] = [];
  for (const s of calib) for (let o = 0; o + seq <= s.length && out.length < count; o += seq) out.push(s.subarray(o, o + seq));
  return out;
}

export interface RefineBlockStats {
  block: number;
  /** Mean 1 − cos over the pieces: PTQ start, after the steps, after snapping to the format. */
  lossPtq: number;
  lossRefined: number;
  lossStored: number;
  flipped: number;
  seconds: number;
}

export const refinePass = definePass<CompileContext>({
  name: 'refine',
  requires(_m, ctx) {
    if (ctx.opts.weights !== 'twla' || ctx.opts.structure !== 'kernel') return '--refine needs the twla weights in the kernel structure (a ternary storage format)';
    if (!ctx.opts.calib?.length) return '--refine needs calibration data (--calib)';
    const o = ctx.opts.refine!;
    if (refinePieces(ctx.opts.calib, o.seq, 1).length === 0) return `--refine: calibration segments are shorter than ${o.seq} tokens`;
    for (const st of ctx.linears.values()) if (st.ternary && !st.fp) return `${st.id}: the ternary pass kept no fp weights to distil from`;
    return undefined;
  },
  async run(model, ctx) {
    const o = ctx.opts.refine!;
    const am = artifactModel(ctx, '');
    const c = am.config;
    const dims: BlockDims = { hidden: c.hidden, heads: c.heads, kvHeads: c.kvHeads, headDim: c.headDim, intermediate: c.intermediate, ropeTheta: c.ropeTheta, normEps: c.normEps };
    const H = c.hidden;
    const pieces = refinePieces(ctx.opts.calib!, o.seq, o.pieces);
    const S = o.seq;
    const embed = (ids: Int32Array) => {
      const x = new Float32Array(S * H);
      ids.forEach((id, s) => x.set(am.embed.subarray(id * H, (id + 1) * H), s * H));
      return x;
    };
    let teacherIn: Float32Array[] = pieces.map(embed);
    let studentIn = teacherIn;
    const stats: RefineBlockStats[] = [];
    for (const [bi, block] of ctx.structure.blocks.entries()) {
      const t0 = performance.now();
      const ab = am.blocks[bi];
      const base = {
        attnNorm: ab.attnNorm,
        mlpNorm: ab.mlpNorm,
        bias: Object.fromEntries(BLOCK_LINEARS.map((r) => [r, ab.linears[r].bias])) as BlockParams['bias'],
        T: { attn: ab.acts.attn.transform, o: ab.acts.o.transform, mlp: ab.acts.mlp.transform, down: ab.acts.down.transform },
      };
      const state = (r: BlockLinearRole) => ctx.linears.get(block[r])!;
      const teacher: BlockParams = { ...base, W: Object.fromEntries(BLOCK_LINEARS.map((r) => [r, state(r).fp!])) as BlockParams['W'] };
      const dlt = Object.fromEntries(BLOCK_LINEARS.map((r) => [r, new DltLinear(state(r).ternary!, o.trits)])) as Record<BlockLinearRole, DltLinear>;
      const student = (): BlockParams => ({ ...base, W: Object.fromEntries(BLOCK_LINEARS.map((r) => [r, dlt[r].weight()])) as BlockParams['W'] });
      const targets = teacherIn.map((x) => blockForward(teacher, dims, x, S).out);
      const meanLoss = (p: BlockParams) => {
        let l = 0;
        const outs = studentIn.map((x, i) => {
          const out = blockForward(p, dims, x, S).out;
          l += cosineLoss(out, targets[i], S, H, false).loss;
          return out;
        });
        return { loss: l / pieces.length, outs };
      };
      const lossPtq = meanLoss(student()).loss;
      ctx.progress.start(`block ${bi}: refine`, o.steps);
      for (let step = 0; step < o.steps; step++) {
        const p = student();
        const dW = Object.fromEntries(BLOCK_LINEARS.map((r) => [r, new Float32Array(p.W[r].length)])) as Record<BlockLinearRole, Float32Array>;
        let loss = 0;
        for (let j = 0; j < o.batch; j++) {
          const i = (step * o.batch + j) % pieces.length;
          const { out, cache } = blockForward(p, dims, studentIn[i], S);
          const l = cosineLoss(out, targets[i], S, H, true);
          loss += l.loss / o.batch;
          for (let q = 0; q < l.dOut!.length; q++) l.dOut![q] /= o.batch;
          blockBackward(p, dims, cache, l.dOut!, dW);
        }
        for (const r of BLOCK_LINEARS) dlt[r].step(dW[r], o.lr, o.tritLr);
        ctx.progress.tick(1, `loss ${loss.toExponential(3)}`);
      }
      ctx.progress.done();
      const lossRefined = meanLoss(student()).loss;
      let flipped = 0;
      const stored: BlockParams = { ...base, W: {} as BlockParams['W'] };
      for (const r of BLOCK_LINEARS) {
        const w = dlt[r].encode();
        const dq = decodeTernary(w);
        setLinearWeight(block[r], dq);
        const st = state(r);
        st.ternary = w;
        stored.W[r] = Float32Array.from(dq);
        flipped += dlt[r].flipped();
      }
      const after = meanLoss(stored);
      stats.push({ block: bi, lossPtq, lossRefined, lossStored: after.loss, flipped, seconds: (performance.now() - t0) / 1000 });
      ctx.progress.log(`block ${bi}: 1−cos ${lossPtq.toExponential(3)} → ${lossRefined.toExponential(3)} (stored ${after.loss.toExponential(3)}), ${flipped} trits flipped`);
      teacherIn = targets;
      studentIn = after.outs;
    }
    for (const st of ctx.linears.values()) st.fp = undefined;
    ctx.refine = { options: o, blocks: stats };
    return { model, modified: true };
  },
});
