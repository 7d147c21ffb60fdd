// Refinement pass (TernaryLLM, METHOD.md): Dual Learnable Ternarization with outlier-friendly
// feature distillation, starting from the ternary pass's PTQ result. Block by block:
//   teacher: the fp block (the rotated, norm-folded weights the ternary pass started from)
//            on the teacher's own stream;
//   student: the ternary block (learnable α, γ per group; trits kept or re-decided by a
//            straight-through estimator) on the stream of the already refined student blocks;
//   loss:    mean over calibration tokens of 1 − cos(student output, teacher output).
// Order-2 linears (formats/order2.ts) learn the scales of both planes, or of the first plane only
// (`order2Plane`). Optionally, an end-to-end stage then trains every block together: on the
// last block's output (1 − cos against the fp model's final hidden state) or on the logits
// (KL of the fp model's next-token distribution to the student's, through the final norm and
// the head). Rotations stay fixed. Gradients come from the hand-written block backward
// (quant/block-grad.ts, checked against finite differences). After its steps each linear
// goes back into its storage format (lattice rows snapped, fp16) and the graph's dense
// weight is set to the decoded values, so later passes and the lowering see what is stored.
// Calibration segments only: the pieces are cut from `opts.calib`.
// Under a compile's checkpoint (passes/resume.ts) each finished block of the block-wise stage,
// and the end-to-end stage from time to time, keep the learnt state; a resumed compile runs
// the calibration streams through the restored blocks and continues with the same Adam steps.
import { artifactModel } from '../artifact/from-structure.ts';
import { BLOCK_LINEARS, type BlockLinearRole } from '../artifact/build.ts';
import { decodeTernary } from '../formats/ternary.ts';
import { decodeOrder2 } from '../formats/order2.ts';
import { definePass } from '../graph/pass.ts';
import { blockBackward, blockForward, cosineLoss, headLogProbs, logitKlLoss, type BlockDims, type BlockParams, type HeadParams } from '../quant/block-grad.ts';
import { DltLinear, DltOrder2Linear } from '../quant/dlt.ts';
import { weightRows } from '../graph/recognize.ts';
import type { CompileContext, LinearState, RefineOptions } from './context.ts';
import type { TransformerStructure } from '../graph/recognize.ts';
import { FEATURE_TEXT, isDefaultScale, type Feature } from '../program/block-program.ts';
import { setLinearWeight } from './weights.ts';
import { type LearnableState, restoreRefineBlocks, restoreRefineE2e, saveRefineBlock, saveRefineE2e } from './resume.ts';

/** Chosen on a split of train.txt (bench/refine-select.ts: held-out PPL 13.86 against 14.01 for the
 *  PTQ result and 14.08 for lr 5e-3 on 8 pieces): 30 Adam steps of one 128-token piece a block,
 *  each step a new piece, at a small step size. The end-to-end stage is off by default (about 3–4 s
 *  a step on the fixture on 2 cores); its loss, step size and pieces are the ones measured
 *  (bench/results/refine-e2e-select.json: logit KL at 1e-3 over 128 pieces kept improving the
 *  order-2 refinement's held-out PPL up to the longest stage tried, where 32 pieces stopped after
 *  128 steps and a 3e-3 step after 64). */
export const DEFAULT_REFINE: RefineOptions = { steps: 30, lr: 1e-3, pieces: 32, seq: 128, batch: 1, trits: 'keep', tritLr: 0.05, order2Plane: 'learn', e2eSteps: 0, e2eLr: 1e-3, e2ePieces: 128, e2eLoss: 'logits', e2eSchedule: 'constant' };

/** The end-to-end stage's step size at `step` (0-based) of its `e2eSteps`. */
export function e2eStepSize(o: Pick<RefineOptions, 'e2eLr' | 'e2eSteps' | 'e2eSchedule'>, step: number): number {
  if (o.e2eSchedule !== 'cosine') return o.e2eLr;
  return 0.5 * o.e2eLr * (1 + Math.cos((Math.PI * step) / o.e2eSteps));
}

/** A linear under the refinement: one plane, or both planes of an order-2 linear. */
type Learnable = DltLinear | DltOrder2Linear;

/** The end-to-end stage keeps its state (every block's) when that costs at most this share of the
 *  time since it last did: every step on small models, every few minutes where a save takes seconds. */
const E2E_SAVE_SHARE = 0.05;

function restoreLearnable(l: Learnable, s: LearnableState): void {
  if (l instanceof DltOrder2Linear) {
    if (!('base' in s)) throw new Error('refinement state of a one-plane linear for an order-2 linear');
    l.restore(s);
  } else {
    if ('base' in s) throw new Error('refinement state of an order-2 linear for a one-plane linear');
    l.restore(s);
  }
}

/** The values the linear decodes to once stored. */
function storedWeight(l: Learnable): Float64Array {
  return l instanceof DltOrder2Linear ? decodeOrder2({ base: l.base.encode(), plane: l.plane.encode() }) : decodeTernary(l.encode());
}

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
  /** Wall time; kept in the manifest only with --timings (out/ is otherwise reproducible). */
  seconds?: number;
}

export interface RefineE2eStats {
  /** The stage's loss (1 − cos of the last block's output, or the logits' KL): after the block-wise stage and after end to end (both as stored). */
  loss: 'hidden' | 'logits';
  lossBefore: number;
  lossStored: number;
  /** Wall time; kept in the manifest only with --timings. */
  seconds?: number;
}

/**
 * The first block-program feature of the model that block-grad.ts's LLaMA block leaves out
 * (distilling towards a block that computes something else would be silently wrong).
 */
function unmodelledFeature(s: TransformerStructure): Feature | undefined {
  if (s.embedScale !== 1) return 'embed-scale';
  if ((s.rope.rotaryDim ?? s.config.headDim) !== s.config.headDim) return 'partial-rotary';
  for (const b of s.blocks) {
    if (!b.attnNorm) return 'no-pre-norm';
    if (b.postNorm) return 'post-norm';
    if (b.qkNorm) return ({ head: 'qk-norm', 'head-own': 'qk-norm-head-own', all: 'qk-norm-full' } as const)[b.qkNorm.span];
    if (b.attention.window !== undefined) return 'sliding-window';
    if (b.attention.softcap !== undefined) return 'attn-softcap';
    if (!isDefaultScale(b.attention.scale!, s.config.headDim)) return 'query-scale';
    if (b.ropeTheta !== undefined) return 'rope-theta-per-layer';
    if (b.activation !== 'silu') return b.activation === 'gelu' ? 'gelu-mlp' : 'gelu-tanh-mlp';
    if (b.residualScale.attn !== 1 || b.residualScale.mlp !== 1) return 'residual-scale';
  }
  return undefined;
}

export const refinePass = definePass<CompileContext>({
  name: 'refine',
  requires(_m, ctx) {
    if (ctx.opts.weights !== 'twla' || ctx.opts.structure !== 'kernel') return '--refine needs the twla weights in the kernel structure (a ternary storage format)';
    if (!ctx.opts.calib?.length) return '--refine needs calibration data (--calib)';
    // block-grad.ts differentiates the LLaMA block only.
    const b0 = ctx.structure.blocks[0];
    if (!b0.gate || b0.parallel || b0.attnNorm?.rms === false || ctx.structure.positionEmbedding) {
      return '--refine supports LLaMA-style blocks only (RMSNorm, gated MLP, sequential residual, RoPE); this model is GPT-2 / GPT-NeoX / Phi-2 style';
    }
    const o = ctx.opts.refine!;
    if (refinePieces(ctx.opts.calib, o.seq, 1).length === 0) return `--refine: calibration segments are shorter than ${o.seq} tokens`;
    for (const st of ctx.linears.values()) if (st.ternary && !st.fp) return `${st.id}: the ternary pass kept no fp weights to distil from`;
    const f = unmodelledFeature(ctx.structure);
    if (f) return `--refine: the refinement's block (src/quant/block-grad.ts) does not compute feature '${f}' (${FEATURE_TEXT[f]}), which this model uses`;
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
    const embed = (ids: Int32Array): Float32Array => {
      const x = new Float32Array(S * H);
      ids.forEach((id, s) => x.set(am.embed.subarray(id * H, (id + 1) * H), s * H));
      return x;
    };
    let teacherIn: Float32Array[] = pieces.map(embed);
    let studentIn = teacherIn;
    const stats: RefineBlockStats[] = [];
    const blocks: { base: Omit<BlockParams, 'W'>; dlt: Record<BlockLinearRole, Learnable> }[] = [];
    const params = (b: (typeof blocks)[number], W: (r: BlockLinearRole) => Float32Array): BlockParams => ({ ...b.base, W: Object.fromEntries(BLOCK_LINEARS.map((r) => [r, W(r)])) as BlockParams['W'] });
    const student = (b: (typeof blocks)[number]) => params(b, (r) => b.dlt[r].weight());
    const stored = (b: (typeof blocks)[number]) => params(b, (r) => Float32Array.from(storedWeight(b.dlt[r])));
    const teacherOf = (bi: number) => params(blocks[bi], (r) => ctx.linears.get(ctx.structure.blocks[bi][r]!)!.fp!);
    const states = (b: (typeof blocks)[number]) => Object.fromEntries(BLOCK_LINEARS.map((r) => [r, b.dlt[r].state()])) as Record<BlockLinearRole, LearnableState>;
    const restore = (b: (typeof blocks)[number], st: Record<BlockLinearRole, LearnableState>) => BLOCK_LINEARS.forEach((r) => restoreLearnable(b.dlt[r], st[r]));
    const learnable = (st: LinearState): Learnable => (st.order2 ? new DltOrder2Linear(st.ternary!, st.order2, o.trits, o.order2Plane) : new DltLinear(st.ternary!, o.trits));
    const zeroGrads = (p: BlockParams) => Object.fromEntries(BLOCK_LINEARS.map((r) => [r, new Float32Array(p.W[r].length)])) as Record<BlockLinearRole, Float32Array>;
    const ck = ctx.checkpoint;
    const nb = ctx.structure.blocks.length;
    // Blocks a compile's checkpoint gives back are not trained again; the streams are run through
    // them (teacher: fp, student: as stored) when a block after them is, as the block-wise stage
    // did after each block, so the next block sees the same floats.
    const kept = ck ? restoreRefineBlocks(ck, nb) : [];
    let streamed = 0;
    const advanceStreams = (to: number) => {
      if (streamed === to) return;
      ctx.progress.start(`refine: streams through restored blocks 1-${to}`, to - streamed);
      for (; streamed < to; streamed++) {
        const teacher = teacherOf(streamed);
        const st = stored(blocks[streamed]);
        teacherIn = teacherIn.map((x) => blockForward(teacher, dims, x, S).out);
        studentIn = studentIn.map((x) => blockForward(st, dims, x, S).out);
        ctx.progress.tick(1);
      }
      ctx.progress.done();
    };
    for (const [bi, block] of ctx.structure.blocks.entries()) {
      const t0 = performance.now();
      const ab = am.blocks[bi];
      const b = {
        base: {
          attnNorm: ab.attnNorm,
          mlpNorm: ab.mlpNorm,
          bias: Object.fromEntries(BLOCK_LINEARS.map((r) => [r, ab.linears[r]!.bias])) as BlockParams['bias'],
          T: { attn: ab.acts.attn.transform, o: ab.acts.o.transform, mlp: ab.acts.mlp.transform, down: ab.acts.down.transform },
        },
        dlt: Object.fromEntries(BLOCK_LINEARS.map((r) => [r, learnable(ctx.linears.get(block[r]!)!)])) as Record<BlockLinearRole, Learnable>,
      };
      blocks.push(b);
      if (bi < kept.length) {
        restore(b, kept[bi].states);
        stats.push(kept[bi].stats);
        continue;
      }
      advanceStreams(bi);
      const teacher = teacherOf(bi);
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
      const lossPtq = meanLoss(student(b)).loss;
      ctx.progress.start(`block ${bi}: refine`, o.steps);
      for (let step = 0; step < o.steps; step++) {
        const p = student(b);
        const dW = zeroGrads(p);
        let loss = 0;
        for (let j = 0; j < o.batch; j++) {
          const i = (step * o.batch + j) % pieces.length;
          const { out, cache } = blockForward(p, dims, studentIn[i], S);
          const l = cosineLoss(out, targets[i], S, H, true);
          loss += l.loss / o.batch;
          for (let q = 0; q < l.dOut!.length; q++) l.dOut![q] /= o.batch;
          blockBackward(p, dims, cache, l.dOut!, dW);
        }
        for (const r of BLOCK_LINEARS) b.dlt[r].step(dW[r], o.lr, o.tritLr);
        ctx.progress.tick(1, `loss ${loss.toExponential(3)}`);
      }
      ctx.progress.done();
      const lossRefined = meanLoss(student(b)).loss;
      const after = meanLoss(stored(b));
      const flipped = BLOCK_LINEARS.reduce((a, r) => a + b.dlt[r].flipped(), 0);
      stats.push({ block: bi, lossPtq, lossRefined, lossStored: after.loss, flipped, seconds: (performance.now() - t0) / 1000 });
      ctx.progress.log(`block ${bi}: 1−cos ${lossPtq.toExponential(3)} → ${lossRefined.toExponential(3)} (stored ${after.loss.toExponential(3)}), ${flipped} trits flipped`);
      teacherIn = targets;
      studentIn = after.outs;
      streamed = bi + 1;
      if (ck) saveRefineBlock(ck, bi, { states: states(b), stats: stats[bi] });
    }
    /** Each linear back into its storage format, and the graph's weight set to what it decodes to. */
    const store = () => {
      for (const [bi, block] of ctx.structure.blocks.entries()) {
        for (const r of BLOCK_LINEARS) {
          const d = blocks[bi].dlt[r];
          const st = ctx.linears.get(block[r]!)!;
          setLinearWeight(block[r]!, storedWeight(d));
          if (d instanceof DltOrder2Linear) {
            st.ternary = d.base.encode();
            st.order2 = d.plane.encode();
          } else st.ternary = d.encode();
        }
      }
    };
    // End to end: the loss on the last block's output (or on the logits), back through every block.
    let e2e: RefineE2eStats | undefined;
    // The end-to-end stage as a compile's checkpoint left it: finished, or its state after some steps.
    const e2eKept = o.e2eSteps > 0 && ck ? restoreRefineE2e(ck, nb) : undefined;
    e2eKept?.states.forEach((st, k) => restore(blocks[k], st));
    if (e2eKept?.stats) e2e = e2eKept.stats;
    else if (o.e2eSteps > 0) {
      const t0 = performance.now() - (e2eKept?.seconds ?? 0) * 1000;
      const head: HeadParams = { norm: am.finalNorm, W: am.lmHead.dense ?? Float32Array.from(weightRows(ctx.structure.lmHead)), bias: am.lmHead.bias, vocab: c.vocab };
      // The stage's pieces: the block-wise ones, then more of the calibration text; the fp model's
      // final hidden state on each (teacherIn holds it for the block-wise pieces once the streams
      // passed every block; after a resume that restored them, it is computed as for the rest).
      const e2ePieces = refinePieces(ctx.opts.calib!, S, Math.max(o.e2ePieces, 1));
      const teachers = ctx.structure.blocks.map((_, bi) => teacherOf(bi));
      const finalHidden = streamed === nb ? teacherIn : [];
      const teacherOut = e2ePieces.map((ids, i) => {
        if (i < finalHidden.length) return finalHidden[i];
        let x = embed(ids);
        for (const p of teachers) x = blockForward(p, dims, x, S).out;
        return x;
      });
      // The fp model's next-token log-probabilities are recomputed from its final hidden state at
      // each use (one head forward) rather than kept: pieces × seq × vocab floats is half a GB at 32k vocab.
      const lossOf = (x: Float32Array, i: number, withGrad: boolean) => {
        if (o.e2eLoss === 'hidden') {
          const l = cosineLoss(x, teacherOut[i], S, H, withGrad);
          return { loss: l.loss, dX: l.dOut };
        }
        return logitKlLoss(head, x, headLogProbs(head, teacherOut[i], S, H, c.normEps), S, H, c.normEps, withGrad);
      };
      const finalLoss = (ps: BlockParams[]) => {
        let l = 0;
        e2ePieces.forEach((ids, i) => {
          let x = embed(ids);
          for (const p of ps) x = blockForward(p, dims, x, S).out;
          l += lossOf(x, i, false).loss;
        });
        return l / e2ePieces.length;
      };
      const before = e2eKept?.lossBefore ?? finalLoss(blocks.map(stored));
      const keep = (step: number, done?: RefineE2eStats) =>
        saveRefineE2e(ck!, { step, lossBefore: before, seconds: (performance.now() - t0) / 1000, states: blocks.map(states), ...(done ? { stats: done } : {}) });
      let lastSave = { at: performance.now(), took: 0 };
      const first = e2eKept?.step ?? 0;
      ctx.progress.start('refine end to end', o.e2eSteps - first);
      for (let step = first; step < o.e2eSteps; step++) {
        const ps = blocks.map(student);
        const dW = ps.map(zeroGrads);
        let loss = 0;
        for (let j = 0; j < o.batch; j++) {
          const i = (step * o.batch + j) % e2ePieces.length;
          let x: Float32Array = embed(e2ePieces[i]);
          const caches = ps.map((p) => {
            const f = blockForward(p, dims, x, S);
            x = f.out;
            return f.cache;
          });
          const l = lossOf(x, i, true);
          loss += l.loss / o.batch;
          let d: Float32Array = l.dX!.map((v) => v / o.batch);
          for (let k = ps.length - 1; k >= 0; k--) d = blockBackward(ps[k], dims, caches[k], d, dW[k]);
        }
        const lr = e2eStepSize(o, step);
        blocks.forEach((b, k) => BLOCK_LINEARS.forEach((r) => b.dlt[r].step(dW[k][r], lr, o.tritLr)));
        ctx.progress.tick(1, `loss ${loss.toExponential(3)}`);
        const now = performance.now();
        if (ck && step + 1 < o.e2eSteps && lastSave.took <= E2E_SAVE_SHARE * (now - lastSave.at)) {
          keep(step + 1);
          lastSave = { at: performance.now(), took: performance.now() - now };
        }
        if (ctx.refineProbe?.e2eSteps.includes(step + 1)) {
          store();
          await ctx.refineProbe.at(step + 1);
        }
      }
      ctx.progress.done();
      e2e = { loss: o.e2eLoss, lossBefore: before, lossStored: finalLoss(blocks.map(stored)), seconds: (performance.now() - t0) / 1000 };
      ctx.progress.log(`end to end (${o.e2eLoss}): loss ${e2e.lossBefore.toExponential(3)} → ${e2e.lossStored.toExponential(3)} (stored), ${(e2e.seconds ?? 0).toFixed(0)} s`);
      if (ck) keep(o.e2eSteps, e2e);
    }
    store();
    for (const st of ctx.linears.values()) st.fp = undefined;
    ctx.refine = { options: o, blocks: stats, e2e };
    return { model, modified: true };
  },
});
