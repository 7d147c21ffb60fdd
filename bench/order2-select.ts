// Where the ≤ 2.0-bit budget buys the most, measured on train.txt alone: calibration from its
// first 90%, perplexity (EVAL.md windows) on the first N windows of its last 10%. dev.txt is
// not read. One PTQ run at the default format (tq1_g128_lat) keeps every linear's weight, fit
// and Hessian; each variant then adds an order-2 residual plane (quant/order2-residual.ts) on a
// column subset of some linears, fitted on those Hessians, and is scored with its true bits
// (base bytes + residual trits, fp16 scales and int16 column indices) over all ternary weights.
// The Hessians of block i come from the model whose earlier blocks carry the base fit only, so
// this ranks variants; the compile pass fits the residual block by block.
//   npx tsx bench/order2-select.ts [--windows 200] [--variants name,name] [--out FILE]
import { existsSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join, resolve } from 'node:path';
import { DEFAULT_OPTIONS } from '../src/compile.ts';
import { captureSites, hessian } from '../src/calib/capture.ts';
import { evaluatePerplexity } from '../src/eval/perplexity.ts';
import { CODE_PACKINGS, parseFormatId, storageBytes, type TernaryWeights } from '../src/formats/ternary.ts';
import { saveModel } from '../src/graph/onnx.ts';
import { PassManager } from '../src/graph/pass.ts';
import { recognize, weightRows, type Linear } from '../src/graph/recognize.ts';
import { makeProgress } from '../src/cli/progress.ts';
import { checkWeightsPass } from '../src/passes/check-weights.ts';
import { foldNormsPass } from '../src/passes/fold-norms.ts';
import { rotatePass } from '../src/passes/rotate.ts';
import { type CompileContext, type CompileOptions, linearId, quantizedLinears, siteId } from '../src/passes/context.ts';
import { setLinearWeight } from '../src/passes/weights.ts';
import { trainSplit } from './train-split.ts';
import { quantizeLinear } from '../src/quant/quantize-linear.ts';
import { fitOrder2Linear, fitOrder2Residual, type Order2Residual } from '../src/quant/order2-residual.ts';
import { decodeOrder2, order2StorageBytes } from '../src/formats/order2.ts';

const root = resolve(import.meta.dirname, '..');
const arg = (name: string, dflt?: string) => {
  const i = process.argv.indexOf(`--${name}`);
  return i >= 0 ? process.argv[i + 1] : dflt;
};

/** Salient-column criteria: diag(H)·Σₙ w², or diag(H)·Σₙ e² of the base fit's error. */
type SalienceCriterion = 'weight' | 'error';

/** The k columns of largest salience, ascending. */
function salientColumns(
  w: ArrayLike<number>,
  base: ArrayLike<number>,
  N: number,
  K: number,
  H: Float64Array,
  k: number,
  criterion: SalienceCriterion,
): Int32Array {
  const sal = new Float64Array(K);
  for (let n = 0; n < N; n++) {
    for (let j = 0; j < K; j++) {
      const v = criterion === 'weight' ? w[n * K + j] : w[n * K + j] - base[n * K + j];
      sal[j] += v * v;
    }
  }
  for (let j = 0; j < K; j++) sal[j] *= H[j * K + j];
  const idx = Array.from({ length: K }, (_, j) => j).sort((a, b) => sal[b] - sal[a] || a - b);
  return Int32Array.from(idx.slice(0, k)).sort();
}

/** base + the residual plane, row-major [N*K] float64. */
function applyOrder2Residual(base: ArrayLike<number>, N: number, K: number, r: Order2Residual): Float64Array {
  const out = Float64Array.from(base);
  const k = r.cols.length, ng = Math.ceil(k / r.group);
  for (let n = 0; n < N; n++) {
    for (let i = 0; i < k; i++) out[n * K + r.cols[i]] += r.scale[n * ng + Math.floor(i / r.group)] * r.t[n * k + i];
  }
  return out;
}

/** Bits of a residual plane on k columns of an N-row linear, residual groups of G₂. */
function residualBits(N: number, k: number, G2: number): number {
  const ng = Math.ceil(k / G2);
  return N * ng * (CODE_PACKINGS.trit5.bytesPerGroup(G2) * 8 + 16) + 16 * k;
}

/** A residual on the linears whose role or id (blocks.<i>.<role>) matches: on all columns (a whole second plane,
 *  residual groups of 128), or on the most salient columns that fit `budget` extra bits per
 *  weight (one residual group per row). A variant is a list of parts; a linear takes the first
 *  part that matches it. */
interface Part {
  roles: RegExp;
  all?: boolean;
  /** With `all`: the product's fit (fitOrder2Linear: alternating refits of both planes). */
  alternate?: boolean;
  budget?: number;
  criterion: SalienceCriterion;
}

const ALL = /./;
const VARIANTS: Record<string, Part[]> = {
  'o2-weight-b0.125': [{ roles: ALL, budget: 0.125, criterion: 'weight' }],
  'o2-error-b0.125': [{ roles: ALL, budget: 0.125, criterion: 'error' }],
  'o2-error-b0.25': [{ roles: ALL, budget: 0.25, criterion: 'error' }],
  'o2-all-kv': [{ roles: /^(k|v)$/, all: true, criterion: 'error' }],
  'o2-all-v': [{ roles: /^v$/, all: true, criterion: 'error' }],
  'o2-error-b0.5-down': [{ roles: /^down$/, budget: 0.5, criterion: 'error' }],
  'o2-all-v+error-b0.06': [{ roles: /^v$/, all: true, criterion: 'error' }, { roles: ALL, budget: 0.06, criterion: 'error' }],
  'o2-all-vo': [{ roles: /^(v|o)$/, all: true, criterion: 'error' }],
  'o2-all-k': [{ roles: /^k$/, all: true, criterion: 'error' }],
  'o2-all-v-alt': [{ roles: /^v$/, all: true, alternate: true, criterion: 'error' }],
  'o2-all-kv-alt': [{ roles: /^(k|v)$/, all: true, alternate: true, criterion: 'error' }],
  'o2-all-v+o01-alt': [{ roles: /^v$|^blocks\.[01]\.o$/, all: true, alternate: true, criterion: 'error' }],
  'o2-all-v+o45-alt': [{ roles: /^v$|^blocks\.[45]\.o$/, all: true, alternate: true, criterion: 'error' }],
};

/** Largest k whose residual (one group of k per row, k ≤ 128) fits `budget` bits per weight. */
function columnsForBudget(N: number, K: number, budget: number): number {
  let k = 0;
  while (k + 1 <= Math.min(K, 128) && residualBits(N, k + 1, k + 1) <= budget * N * K) k++;
  return k;
}

const chosen = arg('variants')?.split(',') ?? Object.keys(VARIANTS);
const windows = Number(arg('windows', '200'));
const outFile = resolve(arg('out', join(root, 'bench/results/order2-select.json'))!);

const progress = makeProgress();
const { calib, heldOut, model } = trainSplit();
const opts: CompileOptions = { ...DEFAULT_OPTIONS, calib };
const structure = recognize(model);
const ctx: CompileContext = {
  progress,
  opts,
  structure,
  linears: new Map(quantizedLinears(structure).map((l) => [l, { id: linearId(l) }])),
  sites: structure.inputGroups.filter((g) => g.site !== 'head').map((g) => ({ id: siteId(g), group: g })),
};
let t0 = performance.now();
await new PassManager([checkWeightsPass, foldNormsPass, rotatePass]).run(model, ctx);
const f = parseFormatId(opts.format);
interface Fit { l: Linear; w: Float32Array; base: Float64Array; weights: TernaryWeights; H: Float64Array; baseBits: number }
const fits: Fit[] = [];
for (const [bi, block] of structure.blocks.entries()) {
  const sites = ctx.sites.filter((s) => s.group.block === block.index);
  const stats = await captureSites(model, sites.map((s) => ({ id: s.id, value: s.group.linears[0].node.input(0)!, width: s.group.linears[0].inFeatures })), calib, { progress, label: `block ${bi + 1}: calibration` });
  for (const s of sites) {
    const H = hessian(stats.get(s.id)!);
    for (const l of s.group.linears) {
      const w = Float32Array.from(weightRows(l));
      const r = quantizeLinear(w, l.outFeatures, l.inFeatures, H, { structure: 'kernel', group: f.group, shift: f.shift, packing: f.packing, lattice: f.lattice, gptq: true, xDomain: true });
      setLinearWeight(l, r.dequant);
      fits.push({ l, w, base: Float64Array.from(r.dequant), weights: r.weights!, H, baseBits: storageBytes(f, l.outFeatures, l.inFeatures) * 8 });
      progress.log(`${linearId(l)} fitted`);
    }
  }
}
const ptqSeconds = (performance.now() - t0) / 1000;
const totalWeights = fits.reduce((a, x) => a + x.l.outFeatures * x.l.inFeatures, 0);
const baseBits = fits.reduce((a, x) => a + x.baseBits, 0);

const dir = mkdtempSync(join(tmpdir(), 'twlac-o2sel-'));
const heldOutPpl = async () => {
  const path = join(dir, 'model.onnx');
  saveModel(model, path);
  return (await evaluatePerplexity(path, heldOut, { maxWindows: windows })).ppl;
};
const results: Record<string, unknown> = existsSync(outFile) ? JSON.parse(readFileSync(outFile, 'utf8')).results ?? {} : {};
const save = () => writeFileSync(outFile, JSON.stringify({ protocol: `calibration: train.txt[0, 90%) (128x512, seed 0); selection: EVAL.md windows on train.txt[90%, 100%), first ${windows}; base format ${opts.format}`, results }, null, 1));
try {
  results.base = { heldOutPpl: await heldOutPpl(), bitsPerWeight: baseBits / totalWeights, seconds: ptqSeconds };
  progress.log(`base: held-out ppl ${(results.base as { heldOutPpl: number }).heldOutPpl.toFixed(3)}`);
  save();
  for (const name of chosen) {
    const parts = VARIANTS[name];
    t0 = performance.now();
    let bits = baseBits;
    const ks: Record<string, number> = {};
    for (const x of fits) {
      const N = x.l.outFeatures, K = x.l.inFeatures;
      const v = parts.find((p) => p.roles.test(x.l.role ?? '') || p.roles.test(linearId(x.l)));
      const k = !v ? 0 : v.all ? K : columnsForBudget(N, K, v.budget!);
      if (k === 0) {
        setLinearWeight(x.l, x.base);
        continue;
      }
      if (v!.alternate) {
        setLinearWeight(x.l, decodeOrder2(fitOrder2Linear(x.w, x.weights, x.H)));
        bits += order2StorageBytes(f, N, K) * 8 - x.baseBits;
        ks[linearId(x.l)] = k;
        continue;
      }
      const G2 = v!.all ? 128 : k;
      const cols = salientColumns(x.w, x.base, N, K, x.H, k, v!.criterion);
      const r = fitOrder2Residual(x.w, x.base, N, K, x.H, cols, G2);
      setLinearWeight(x.l, applyOrder2Residual(x.base, N, K, r));
      bits += residualBits(N, k, G2);
      ks[linearId(x.l)] = k;
    }
    const ppl = await heldOutPpl();
    results[name] = { variant: parts.map((p) => ({ ...p, roles: p.roles.source })), heldOutPpl: ppl, bitsPerWeight: bits / totalWeights, columns: ks, seconds: (performance.now() - t0) / 1000 };
    progress.log(`${name}: held-out ppl ${ppl.toFixed(3)} at ${(bits / totalWeights).toFixed(4)} bits/weight`);
    save();
  }
} finally {
  rmSync(dir, { recursive: true, force: true });
}
