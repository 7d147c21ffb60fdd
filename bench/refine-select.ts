// Settings of the refinement chosen on train.txt alone: calibration from its first 90%,
// perplexity (EVAL.md windows) on the first N windows of its last 10%, which neither the
// calibration nor the refinement sees. dev.txt is not read. One PTQ run; every variant
// restarts from its result.
//   npx tsx bench/refine-select.ts [--windows 100] [--variants name,name] [--out FILE]
import { mkdtempSync, readFileSync, rmSync, writeFileSync, existsSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join, resolve } from 'node:path';
import { DEFAULT_OPTIONS } from '../src/compile.ts';
import { evaluatePerplexity } from '../src/eval/perplexity.ts';
import { decodeTernary } from '../src/formats/ternary.ts';
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

const root = resolve(import.meta.dirname, '..');
const arg = (name: string, dflt?: string) => {
  const i = process.argv.indexOf(`--${name}`);
  return i >= 0 ? process.argv[i + 1] : dflt;
};
const VARIANTS: Record<string, Partial<RefineOptions>> = {
  'keep-lr5e-3': {},
  'ste-lr5e-3': { trits: 'ste' },
  'keep-lr5e-3-e2e20': { e2eSteps: 20 },
  'keep-lr2e-3': { lr: 2e-3 },
  'keep-lr1e-3-p32': { lr: 1e-3, pieces: 32 },
};
const chosen = arg('variants')?.split(',') ?? Object.keys(VARIANTS);
const windows = Number(arg('windows', '100'));
const outFile = resolve(arg('out', join(root, 'bench/results/refine-select.json'))!);

const progress = makeProgress();
const { calib, heldOut, model } = trainSplit();
const opts: CompileOptions = { ...DEFAULT_OPTIONS, calib, refine: DEFAULT_REFINE };
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
const ptq = new Map([...ctx.linears].map(([l, st]) => [l, { ternary: st.ternary!, fp: st.fp! }]));

const dir = mkdtempSync(join(tmpdir(), 'twlac-refsel-'));
const heldOutPpl = async () => {
  const path = join(dir, 'model.onnx');
  saveModel(model, path);
  return (await evaluatePerplexity(path, heldOut, { maxWindows: windows })).ppl;
};
const results: Record<string, unknown> = existsSync(outFile) ? JSON.parse(readFileSync(outFile, 'utf8')).results ?? {} : {};
const save = () => writeFileSync(outFile, JSON.stringify({ protocol: `calibration: train.txt[0, 90%) (128x512, seed 0); selection: EVAL.md windows on train.txt[90%, 100%), first ${windows}`, results }, null, 1));
try {
  results.ptq = { heldOutPpl: await heldOutPpl(), seconds: ptqSeconds };
  progress.log(`ptq: held-out ppl ${(results.ptq as { heldOutPpl: number }).heldOutPpl.toFixed(3)}`);
  save();
  for (const name of chosen) {
    for (const [l, p] of ptq) {
      const st = ctx.linears.get(l)!;
      st.ternary = p.ternary;
      st.fp = p.fp;
      setLinearWeight(l, decodeTernary(p.ternary));
    }
    ctx.opts = { ...opts, refine: { ...DEFAULT_REFINE, ...VARIANTS[name] } };
    t0 = performance.now();
    await refinePass.run(model, ctx);
    const seconds = (performance.now() - t0) / 1000;
    const ppl = await heldOutPpl();
    results[name] = { refine: ctx.opts.refine, heldOutPpl: ppl, seconds, blocks: ctx.refine!.blocks };
    progress.log(`${name}: held-out ppl ${ppl.toFixed(3)}, refine ${seconds.toFixed(0)} s`);
    save();
  }
} finally {
  rmSync(dir, { recursive: true, force: true });
}
