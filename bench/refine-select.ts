// Settings of the refinement chosen on train.txt alone: calibration from its first 90%,
// perplexity (EVAL.md windows) on the first N windows of its last 10%, which neither the
// calibration nor the refinement sees. dev.txt is not read. One PTQ run; every variant
// restarts from its result, or (`after`) from an earlier variant's refined linears (an
// end-to-end stage on top of a block-wise result without redoing it). With --order2 the PTQ run
// makes those linears order-2 linears (formats/order2.ts), as `twlac --order2` does.
//   npx tsx bench/refine-select.ts [--windows 100] [--variants name,name] [--order2 v,blocks.0.o] [--out FILE]
import { mkdtempSync, readFileSync, rmSync, writeFileSync, existsSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join, resolve } from 'node:path';
import { DEFAULT_OPTIONS } from '../src/compile.ts';
import { evaluatePerplexity } from '../src/eval/perplexity.ts';
import { decodeTernary, type TernaryWeights } from '../src/formats/ternary.ts';
import { decodeOrder2 } from '../src/formats/order2.ts';
import type { Linear } from '../src/graph/recognize.ts';
import { saveModel } from '../src/graph/onnx.ts';
import { PassManager } from '../src/graph/pass.ts';
import { recognize } from '../src/graph/recognize.ts';
import { makeProgress } from '../src/cli/progress.ts';
import { checkWeightsPass } from '../src/passes/check-weights.ts';
import { foldNormsPass } from '../src/passes/fold-norms.ts';
import { rotatePass } from '../src/passes/rotate.ts';
import { ternaryPass } from '../src/passes/ternary.ts';
import { DEFAULT_REFINE, refinePass } from '../src/passes/refine.ts';
import { type CompileContext, type CompileOptions, type RefineOptions, linearId, quantizedLinears, siteId } from '../src/passes/context.ts';
import { setLinearWeight } from '../src/passes/weights.ts';
import { trainSplit } from './train-split.ts';
import { cpuDevice, resultHeader } from './result-header.ts';

const root = resolve(import.meta.dirname, '..');
const arg = (name: string, dflt?: string) => {
  const i = process.argv.indexOf(`--${name}`);
  return i >= 0 ? process.argv[i + 1] : dflt;
};
interface Variant extends Partial<RefineOptions> {
  /** Start from this earlier variant's refined linears instead of the PTQ result. */
  after?: string;
  /** Also score the linears as stored after these end-to-end steps (one run gives every stage length up to e2eSteps). */
  probe?: number[];
}
const VARIANTS: Record<string, Variant> = {
  'keep-lr5e-3': {},
  'ste-lr5e-3': { trits: 'ste' },
  'keep-lr5e-3-e2e20': { e2eSteps: 20, e2ePieces: 32 },
  'keep-lr2e-3': { lr: 2e-3 },
  'keep-lr1e-3-p32': { lr: 1e-3, pieces: 32 },
  // With --order2: both planes' scales learnt, or the second plane kept at its PTQ fit.
  'o2-learn': { order2Plane: 'learn' },
  'o2-fixed': { order2Plane: 'fixed' },
  // End-to-end stages on top of the chosen block-wise result (64 single-piece steps over the block-wise stage's 32 pieces).
  'o2-learn+e2e-logits': { after: 'o2-learn', steps: 0, e2eSteps: 64, e2eLr: 1e-3, e2eLoss: 'logits', e2ePieces: 32 },
  'o2-learn+e2e-hidden': { after: 'o2-learn', steps: 0, e2eSteps: 64, e2eLr: 1e-3, e2eLoss: 'hidden', e2ePieces: 32 },
  // How long the end-to-end stage should run, and on how many pieces (each step one 128-token piece).
  'o2-learn+e2e-long': { after: 'o2-learn', steps: 0, e2eSteps: 384, e2eLr: 1e-3, e2eLoss: 'logits', e2ePieces: 32, probe: [64, 128, 192, 256] },
  'o2-learn+e2e-long-p128': { after: 'o2-learn', steps: 0, e2eSteps: 384, e2eLr: 1e-3, e2eLoss: 'logits', e2ePieces: 128, probe: [64, 128, 192, 256] },
  'o2-learn+e2e-p128-cos384': { after: 'o2-learn', steps: 0, e2eSteps: 384, e2eLr: 1e-3, e2eLoss: 'logits', e2ePieces: 128, e2eSchedule: 'cosine' },
  'o2-learn+e2e-long-p128-lr3e-3': { after: 'o2-learn', steps: 0, e2eSteps: 256, e2eLr: 3e-3, e2eLoss: 'logits', e2ePieces: 128, probe: [64, 128, 192] },
  // The chosen end-to-end stage with the trits re-decided by straight-through rounding (latent Adam
  // step in units of one trit: 0.01 flips a trit after ~50 steps of one sign, 0.004 after ~125).
  'o2-learn+e2e-ste-t1e-2': { after: 'o2-learn', steps: 0, e2eSteps: 384, e2eLr: 1e-3, e2eLoss: 'logits', e2ePieces: 128, trits: 'ste', tritLr: 1e-2, probe: [64, 128, 192, 256] },
  'o2-learn+e2e-ste-t4e-3': { after: 'o2-learn', steps: 0, e2eSteps: 384, e2eLr: 1e-3, e2eLoss: 'logits', e2ePieces: 128, trits: 'ste', tritLr: 4e-3, probe: [64, 128, 192, 256] },
};
const chosen = arg('variants')?.split(',') ?? Object.keys(VARIANTS);
const windows = Number(arg('windows', '100'));
const outFile = resolve(arg('out', join(root, 'bench/results/refine-select.json'))!);
const order2 = arg('order2')?.split(',');

const progress = makeProgress();
const { calib, heldOut, model } = trainSplit();
// refine set: the ternary pass keeps the fp weights the refinement distils from
const opts: CompileOptions = { ...DEFAULT_OPTIONS, calib, refine: DEFAULT_REFINE, ...(order2 ? { order2 } : {}) };
const structure = recognize(model);
const ctx: CompileContext = {
  progress,
  opts,
  structure,
  linears: new Map(quantizedLinears(structure).map((l) => [l, { id: linearId(l) }])),
  sites: structure.inputGroups.filter((g) => g.site !== 'head').map((g) => ({ id: siteId(g), group: g })),
};
let t0 = performance.now();
await new PassManager([checkWeightsPass, foldNormsPass, rotatePass, ternaryPass]).run(model, ctx);
const ptqSeconds = (performance.now() - t0) / 1000;
const fp = new Map([...ctx.linears].map(([l, st]) => [l, st.fp!]));
type Snapshot = Map<Linear, { ternary: TernaryWeights; order2?: TernaryWeights }>;
const snapshot = (): Snapshot => new Map([...ctx.linears].map(([l, st]) => [l, { ternary: st.ternary!, order2: st.order2 }]));
const snapshots = new Map<string, Snapshot>([['ptq', snapshot()]]);

const dir = mkdtempSync(join(tmpdir(), 'twlac-refsel-'));
const heldOutPpl = async () => {
  const path = join(dir, 'model.onnx');
  saveModel(model, path);
  return (await evaluatePerplexity(path, heldOut, { maxWindows: windows })).ppl;
};
const results: Record<string, unknown> = existsSync(outFile) ? JSON.parse(readFileSync(outFile, 'utf8')).results ?? {} : {};
const header = resultHeader('refine-select', cpuDevice());
const save = () => writeFileSync(outFile, JSON.stringify({ ...header, protocol: `calibration: train.txt[0, 90%) (128x512, seed 0); selection: EVAL.md windows on train.txt[90%, 100%), first ${windows}`, results }, null, 1));
try {
  results.ptq = { ...(order2 ? { order2 } : {}), heldOutPpl: await heldOutPpl(), seconds: ptqSeconds };
  progress.log(`ptq: held-out ppl ${(results.ptq as { heldOutPpl: number }).heldOutPpl.toFixed(3)}`);
  save();
  for (const name of chosen) {
    const { after, probe, ...refine } = VARIANTS[name];
    const from = snapshots.get(after ?? 'ptq');
    if (!from) throw new Error(`${name} starts from ${after}, which this run has not refined`);
    for (const [l, p] of from) {
      const st = ctx.linears.get(l)!;
      st.ternary = p.ternary;
      st.order2 = p.order2;
      st.fp = fp.get(l);
      setLinearWeight(l, p.order2 ? decodeOrder2({ base: p.ternary, plane: p.order2 }) : decodeTernary(p.ternary));
    }
    ctx.opts = { ...opts, refine: { ...DEFAULT_REFINE, ...refine } };
    const probes: { e2eSteps: number; heldOutPpl: number; seconds: number }[] = [];
    t0 = performance.now();
    let probeSeconds = 0;
    ctx.refineProbe = probe && {
      e2eSteps: probe,
      at: async (step) => {
        const p0 = performance.now();
        const ppl = await heldOutPpl();
        probeSeconds += (performance.now() - p0) / 1000;
        probes.push({ e2eSteps: step, heldOutPpl: ppl, seconds: (performance.now() - t0) / 1000 - probeSeconds });
        progress.log(`${name} after ${step} end-to-end steps: held-out ppl ${ppl.toFixed(3)}`);
        results[name] = { ...(after ? { after } : {}), ...(order2 ? { order2 } : {}), refine: ctx.opts.refine, probes, running: true };
        save();
      },
    };
    await refinePass.run(model, ctx);
    ctx.refineProbe = undefined;
    const seconds = (performance.now() - t0) / 1000 - probeSeconds;
    const ppl = await heldOutPpl();
    snapshots.set(name, snapshot());
    results[name] = { ...(after ? { after } : {}), ...(order2 ? { order2 } : {}), refine: ctx.opts.refine, heldOutPpl: ppl, ...(probes.length ? { probes } : {}), seconds, blocks: ctx.refine!.blocks, ...(ctx.refine!.e2e ? { e2e: ctx.refine!.e2e } : {}) };
    progress.log(`${name}: held-out ppl ${ppl.toFixed(3)}, refine ${seconds.toFixed(0)} s`);
    save();
  }
} finally {
  rmSync(dir, { recursive: true, force: true });
}
