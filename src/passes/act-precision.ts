// Activation-precision pass (ILA-AMP, METHOD §3), on calibration data only.
//   1. Sample each input site's activations on the weight-quantised model (streamed block by
//      block: calib/stream.ts).
//   2. Per site and bit-width b, search the clip ratio ρ ∈ {0.5, 0.505, …, 1} minimising the
//      output error Σ‖W(x̂ − x)‖² of the linears that read the site (all 101 ratios, in one
//      onnxruntime call: src/calib/clip-search.ts).
//   3. Uniform precision (--acts 8|6|4|2): every site gets b. Mixed precision (--acts mp:B):
//      measure calibration NLL with block i at b bits (the rest at 8) and with neighbour
//      pairs at (b′, b), then choose per-block bits by the exact DP of src/quant/ila-amp.ts
//      under mean bits ≤ B. The NLL runs stream block by block (src/calib/amp-nll.ts): one
//      block's session at a time, whose quantisers read their levels and clip ratios from
//      graph inputs, each setting run from the first block where it differs from all-8.
//   4. Insert the chosen quantisers (constants) before the linears of every site, after the
//      site's online transform: x → T(x) → Q_b,ρ(T(x)) → linears.
// Under a compile's checkpoint (passes/resume.ts) the choice of steps 1-3 is kept, and a resumed
// compile goes straight to step 4 with it.
import type { SiteStats } from '../calib/capture.ts';
import { streamedNlls } from '../calib/amp-nll.ts';
import { CalibrationStream } from '../calib/stream.ts';
import type { GraphBuilder } from '../graph/builder.ts';
import { Rewriter } from '../graph/rewriter.ts';
import type { Model, Node, Value } from '../graph/ir.ts';
import { definePass } from '../graph/pass.ts';
import { weightRows } from '../graph/recognize.ts';
import { emitActQuant } from '../quant/act-quant.ts';
import { ClipSearcher } from '../calib/clip-search.ts';
import { AMP_BITS, allocateBits, costsFromMeasurements, measurementPlan, type AmpAllocation } from '../quant/ila-amp.ts';
import type { ActSpec, CompileContext, SiteState } from './context.ts';
import { activationDtype } from './lower-ort.ts';
import { type ActPrecisionEntry, restoreActPrecision, saveActPrecision } from './resume.ts';

/** Token rows sampled per site for the clip search. */
const CLIP_SAMPLE_ROWS = 256;
/** Calibration segments the clip search samples from. */
const SAMPLE_SEGMENTS = 4;
/** Calibration segments used for the ILA-AMP NLL measurements. */
const AMP_SEGMENTS = 4;

/** Insert quantisers before one site's linears (after any online transform); `make` emits the quantiser of one input value. */
function insertQuantisers(model: Model, s: SiteState, make: (b: GraphBuilder, x: Value, before: Node, dtype: 'float32' | 'float16') => Value): void {
  const rw = new Rewriter(model.graph);
  const dtype = activationDtype(s.group.linears[0]);
  rw.interpose(s.group.linears.map((l) => l.node), (x, before) => make(rw.b, x, before, dtype));
}

export const actPrecisionPass = definePass<CompileContext>({
  name: 'act-precision',
  requires(_m, ctx) {
    return ctx.opts.acts.kind !== 'none' && !ctx.opts.calib?.length ? 'activation quantisation needs calibration data (--calib)' : undefined;
  },
  async run(model, ctx) {
    const { acts } = ctx.opts;
    if (acts.kind === 'none') return { model, modified: false };
    const ck = ctx.checkpoint;
    const kept = ck && restoreActPrecision(ck, ctx);
    const choice = kept ?? (await choosePrecision(model, ctx, acts));
    if (ck && !kept) saveActPrecision(ck, choice);
    if (choice.amp) {
      ctx.progress.log(`ILA-AMP: bits per block ${choice.amp.bits.join(',')} (mean ${choice.amp.meanBits.toFixed(2)}, cost ${choice.amp.cost.toFixed(4)})`);
      ctx.amp = choice.amp;
    }

    // 4. The chosen quantisers, as constants.
    ctx.sites.forEach((s, i) => {
      const { bits, clip } = choice.sites[i];
      insertQuantisers(model, s, (b, x, before, dtype) => emitActQuant(b, x, bits, clip, { before, dtype, opset: model.opset(''), prefix: `${s.id}.actq` }));
      s.act = { bits, clip };
    });
    return { model, modified: true };
  },
});

/** Steps 1-3: bits and clip ratio per site. */
async function choosePrecision(model: Model, ctx: CompileContext, acts: Exclude<ActSpec, { kind: 'none' }>): Promise<ActPrecisionEntry> {
  const { calib } = ctx.opts;
  const { progress } = ctx;
  const sites = ctx.sites;
  const bitsNeeded = acts.kind === 'uniform' ? [acts.bits] : [...AMP_BITS];

  // 1. Activation samples per site, streamed block by block (one block's weights in onnxruntime at a time).
  const stats = new Map<string, SiteStats>();
  const stream = new CalibrationStream(model, ctx.structure, calib!.slice(0, Math.min(calib!.length, SAMPLE_SEGMENTS)));
  for (const b of ctx.structure.blocks) {
    const caps = sites.filter((s) => s.group.block === b.index).map((s) => ({ id: s.id, value: s.group.linears[0].node.input(0)!, width: s.group.linears[0].inFeatures }));
    const got = await stream.capture(b.index, caps, { sampleRows: CLIP_SAMPLE_ROWS, progress, label: `activation samples: block ${b.index + 1}/${ctx.structure.blocks.length}`, advance: true });
    for (const [id, st] of got) stats.set(id, st);
  }

  // 2. Clip ratio per site and bit-width.
  const clips = new Map<string, Map<number, number>>();
  progress.start('clip search', sites.length * bitsNeeded.length);
  const searcher = await ClipSearcher.create();
  for (const s of sites) {
    const st = stats.get(s.id)!;
    const K = s.group.linears[0].inFeatures;
    const lins = s.group.linears.map((l) => ({ weight: weightRows(l), outDim: l.outFeatures }));
    const m = new Map<number, number>();
    for (const b of bitsNeeded) {
      m.set(b, (await searcher.search(st.samples!, st.sampleRows, K, lins, b)).clip);
      progress.tick(1, `${s.id} ${b}b`);
    }
    clips.set(s.id, m);
  }
  await searcher.release();
  progress.done();

  // 3. Bits per block.
  const amp = acts.kind === 'mp' ? await ampAllocate(model, ctx, clips, acts.budget) : undefined;
  const blockBits = amp?.bits ?? new Array<number>(ctx.structure.blocks.length).fill(bitsNeeded[0]);
  const chosen = sites.map((s) => {
    const bits = blockBits[s.group.block];
    return { id: s.id, bits, clip: clips.get(s.id)!.get(bits)! };
  });
  return { sites: chosen, ...(amp ? { amp } : {}) };
}

/** ILA-AMP's NLL measurements (streamed block by block: calib/amp-nll.ts) and DP. */
async function ampAllocate(model: Model, ctx: CompileContext, clips: Map<string, Map<number, number>>, budget: number): Promise<AmpAllocation> {
  const blocks = ctx.structure.blocks.length;
  const sites = ctx.sites.map((s) => ({ id: s.id, group: s.group, dtype: activationDtype(s.group.linears[0]) }));
  const segs = ctx.opts.calib!.slice(0, Math.min(AMP_SEGMENTS, ctx.opts.calib!.length));
  const plan = measurementPlan(blocks);
  const nlls = await streamedNlls(model, ctx.structure, sites, clips, segs, plan.map((p) => p.config), Math.max(...AMP_BITS), { progress: ctx.progress });
  return allocateBits(costsFromMeasurements(blocks, plan.map((m, i) => ({ m, nll: nlls[i] }))), budget);
}
