// Ternary rewrite pass. Every recognised linear except the lm_head gets ternary weights:
//   rtn-ternary: per-row absmean round-to-nearest (BitNet style), no calibration;
//   twla:        E2M-ATQ (Euclidean + X-domain stages) inside GPTQ error feedback, block
//                by block: the Hessians H = 2XᵀX/n of block i's inputs are measured on the
//                model whose blocks < i are already quantised, as the reference does, by
//                running only block i on the kept calibration stream (calib/stream.ts).
// Linears named by `order2` (by role or id) become order-2 linears (formats/order2.ts): a second
// ternary plane on every column, fitted to the first plane's error under the same H
// (quant/order2-residual.ts), before the stream advances past the block.
// The graph keeps dense weights holding the dequantised values (so calibration runs of
// later passes see the quantised model); the chosen TernaryWeights are recorded in the
// linear's state, and the lowering pass turns them into MatMulNBits.
// Under a compile's checkpoint (passes/resume.ts) each finished block's state is kept, and a
// resumed compile fits only the blocks after the last one kept.
import { parseFormatId } from '../formats/ternary.ts';
import { definePass } from '../graph/pass.ts';
import { weightRows, type Linear } from '../graph/recognize.ts';
import { hessian } from '../calib/capture.ts';
import { CalibrationStream } from '../calib/stream.ts';
import { rtnTernary } from '../quant/structure-kernel.ts';
import { relWeightError, type QuantizeLinearResult } from '../quant/quantize-linear.ts';
import { fitBlock } from '../quant/fit-block.ts';
import { fitOrder2Linear } from '../quant/order2-residual.ts';
import { relativeOutputError } from '../quant/gptq.ts';
import { decodeOrder2, order2StorageBytes } from '../formats/order2.ts';
import type { CompileContext } from './context.ts';
import { isOrder2Linear, linearId, quantizedLinears } from './context.ts';
import { setLinearWeight } from './weights.ts';
import { GpuGram, GpuRestUpdate } from '../gpu/ops.ts';
import { defaultFitThreads, FitPool, sharedFloat64 } from '../quant/fit-pool.ts';
import { restoreBlocks, saveBlock } from './resume.ts';

function record(ctx: CompileContext, l: Linear, r: { weights?: import('../formats/ternary.ts').TernaryWeights; dequant: Float64Array | Float32Array; storageBits?: number }) {
  setLinearWeight(l, r.dequant);
  const st = ctx.linears.get(l)!;
  st.ternary = r.weights;
  st.storageBits = r.storageBits;
}

/** Make the linear an order-2 linear (fitOrder2Linear) and record both planes; the result's
 *  stats are re-measured on the two planes. */
function addOrder2Plane(ctx: CompileContext, l: Linear, r: QuantizeLinearResult, H: Float64Array): void {
  const w = weightRows(l);
  const { base, plane } = fitOrder2Linear(w, r.weights!, H);
  const dequant = decodeOrder2({ base, plane });
  record(ctx, l, { weights: base, dequant, storageBits: order2StorageBytes(base.format, base.rows, base.cols) * 8 });
  ctx.linears.get(l)!.order2 = plane;
  const out = relativeOutputError(w, dequant, l.outFeatures, l.inFeatures, H, OUTPUT_ERROR_BUDGET);
  Object.assign(r.stats, { relWeightError: relWeightError(w, dequant), relOutputError: out.error, outputErrorRows: out.rows });
}

/** Multiply-adds a linear may spend on measuring its output error for the report (quant/gptq.ts relativeOutputError). */
export const OUTPUT_ERROR_BUDGET = 2 ** 28;

export const ternaryPass = definePass<CompileContext>({
  name: 'ternary',
  requires(_m, ctx) {
    if (ctx.opts.weights === 'twla' && !ctx.opts.calib?.length) return 'twla needs calibration data (--calib)';
    if (ctx.opts.order2Cols !== undefined && ctx.opts.structure !== 'twla') return 'order-2 columns exist only in the twla structure (--structure twla)';
    if (ctx.opts.order2?.length) {
      if (ctx.opts.weights !== 'twla' || ctx.opts.structure !== 'kernel') return '--order2 needs the twla weights in the kernel structure (a ternary storage format)';
      if (!ctx.opts.gptq && !ctx.opts.xDomain) return '--order2 fits the second plane through the Hessian: it needs GPTQ or the X-domain stage';
      const ids = new Set(quantizedLinears(ctx.structure).flatMap((l) => [l.role ?? '', linearId(l)]));
      const unknown = ctx.opts.order2.find((x) => !ids.has(x));
      if (unknown) return `--order2: the model has no linear '${unknown}'`;
    }
    return undefined;
  },
  async run(model, ctx) {
    const { opts, progress, structure } = ctx;
    const linears = quantizedLinears(structure);
    if (opts.weights === 'rtn-ternary') {
      progress.start('ternary (rtn)', linears.length);
      for (const l of linears) {
        const w = weightRows(l);
        const r = rtnTernary(w, l.outFeatures, l.inFeatures);
        record(ctx, l, r);
        ctx.linears.get(l)!.stats = { relWeightError: relWeightError(w, r.dequant) };
        progress.tick(1, linearId(l));
      }
      progress.done();
      return { model, modified: true };
    }
    const f = parseFormatId(opts.format);
    const gpu = ctx.gpu;
    const nb = structure.blocks.length;
    // The calibration stream enters block i with blocks < i already quantised.
    const stream = new CalibrationStream(model, structure, opts.calib!);
    // A block's fits are independent given its Hessians: they run side by side in worker
    // threads. GPTQ's lazy update moves to the GPU only where the fits run in this thread (one
    // thread): it is 6-11 % of a fit (bench/results/scale.json), so a many-core host fits faster
    // on its cores than one thread with the GPU's help; the Gram matrices stay on the GPU.
    const threads = opts.threads ?? defaultFitThreads();
    const pool = gpu && threads <= 1 ? undefined : await FitPool.open(threads);
    const restUpdate = gpu && (pool?.threads ?? 1) <= 1 ? new GpuRestUpdate(gpu) : undefined;
    const blockSites = (bi: number) => ctx.sites.filter((s) => s.group.block === structure.blocks[bi].index);
    // Blocks a compile's checkpoint (passes/resume.ts) gives back are not fitted again: the
    // stream is run through them, quantised, to enter the first unfinished block as it did
    // (when every block is restored, nothing reads the stream).
    const ck = ctx.checkpoint;
    const restored = ck ? restoreBlocks(ck, ctx, (bi) => blockSites(bi).flatMap((s) => s.group.linears)) : 0;
    try {
      for (let bi = 0; restored < nb && bi < restored; bi++) await stream.advance({ progress, label: `block ${bi + 1}/${nb}: restored, advance` });
      for (let bi = restored; bi < nb; bi++) {
        // The pass's ETA counts only the blocks this run fits.
        progress.units?.(bi - restored, nb - restored);
        const groups = blockSites(bi);
        const capSites = groups.map((s) => ({ id: s.id, value: s.group.linears[0].node.input(0)!, width: s.group.linears[0].inFeatures }));
        const stats = await stream.capture(bi, capSites, {
          progress,
          label: `block ${bi + 1}/${nb}: calibration`,
          gram: gpu ? (width) => new GpuGram(gpu, width) : undefined,
        });
        const fit = { structure: opts.structure, group: f.group, shift: f.shift, packing: f.packing, lattice: f.lattice, gptq: opts.gptq, xDomain: opts.xDomain, order2Cols: opts.order2Cols };
        const sites = groups.map((s) => {
          const st = stats.get(s.id)!;
          const H = opts.gptq || opts.xDomain ? hessian(st, sharedFloat64(st.gram.length)) : null;
          stats.delete(s.id);
          for (const l of s.group.linears) if (opts.refine) ctx.linears.get(l)!.fp = Float32Array.from(weightRows(l));
          return { H, cols: s.group.linears[0].inFeatures, linears: s.group.linears.map((l) => ({ w: weightRows(l), rows: l.outFeatures })) };
        });
        let factors = false;
        const fitted = await fitBlock(pool, sites, fit, {
          measureBudget: OUTPUT_ERROR_BUDGET,
          restUpdate,
          onStage: (stage, n) => {
            if (factors) progress.done();
            factors = stage === 'factors';
            progress.start(`block ${bi + 1}/${nb}: ${stage === 'factors' ? 'GPTQ factors' : 'ternary fit'}`, n);
          },
          onJob: (si, li) => progress.tick(1, li < 0 ? undefined : linearId(groups[si].group.linears[li])),
        });
        const jobs = groups.flatMap((s, si) => s.group.linears.map((l) => ({ l, H: sites[si].H })));
        const results = fitted.flat();
        jobs.forEach(({ l, H }, i) => {
          const r = results[i];
          if (H && r.weights && isOrder2Linear(opts.order2, l)) addOrder2Plane(ctx, l, r, H);
          else record(ctx, l, r);
          const { relWeightError, relOutputError, outputErrorRows, seconds } = r.stats;
          ctx.linears.get(l)!.stats = { relWeightError, seconds, ...(relOutputError !== null ? { relOutputError, outputErrorRows: outputErrorRows! } : {}) };
        });
        progress.done();
        if (ck) saveBlock(ck, ctx, bi, jobs.map((j) => j.l));
        if (bi + 1 < nb) await stream.advance({ progress, label: `block ${bi + 1}/${nb}: advance` });
      }
    } finally {
      await pool?.close();
    }
    if (restored < nb) progress.units?.(nb - restored, nb - restored);
    return { model, modified: true };
  },
  ensures(_m, ctx) {
    for (const l of quantizedLinears(ctx.structure)) {
      const st = ctx.linears.get(l);
      if (!st?.ternary && st?.storageBits === undefined) return `${linearId(l)} was not quantised`;
    }
    return undefined;
  },
});
