// The compile's scaling curve: generated LLaMA shapes (bench/scripts/gen-llama.ts) compiled
// with the default twla pipeline (KOTMS rotation, E2M-ATQ in GPTQ, ILA-AMP mp:4), each in
// its own child process so that its peak RSS is its own (and each pass's peak, sampled from
// the process's RSS while it runs). Reports seconds per pass, per block
// and per billion parameters, and the terms that grow faster than the parameter count,
// timed alone at doubling widths (exponents measured, not assumed):
//   Cholesky of the damped H (O(in³) per input site), a linear's GPTQ + E2M-ATQ fit (rows·in²
//   and in³ parts), the Gram XᵀX in onnxruntime (O(tokens·in²)), and the calibration forward
//   KOTMS, and the share of GPTQ's lazy column update (the part src/gpu runs on the GPU) in a
//   linear's fit. Calibration streams block by block (src/calib/stream.ts): 2 block forwards
//   per block, flat in depth; the fits of a block run in one worker thread per core.
//
//   npm run bench:scale                                  12m, then 125m, on the CPU
//   npm run bench:scale -- --sizes 1b,7b --device gpu    the GPU machine's points
//   npm run bench:scale -- --sizes 7b --dry-run          say what would run
//   npm run bench:scale -- --notes-only FILE             rewrite a result file's notes from its numbers
//   npm run bench:scale -- --sizes 12m --baseline OLD    keep OLD's figures (an earlier commit's file) beside this run's
// Options: --device cpu|gpu|auto|both (both: each size on the CPU and on the GPU),
// --calib-samples N --seq T (calibration, default 32 × 256), --out FILE, --keep DIR.
import { execFileSync } from 'node:child_process';
import { mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { cpus, freemem, loadavg, totalmem, tmpdir } from 'node:os';
import { dirname, join, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';
import * as ort from 'onnxruntime-node';
import { compile } from '../src/compile.ts';
import { selectDevice, type DeviceChoice } from '../src/gpu/device.ts';
import { GraphBuilder } from '../src/graph/builder.ts';
import { loadModel, saveModel } from '../src/graph/onnx.ts';
import type { Progress } from '../src/graph/pass.ts';
import { optimiseKotms } from '../src/quant/kotms.ts';
import { dampedUpperCholeskyOfInverse, gaussian, rng, syntheticHessian } from '../src/quant/linalg.ts';
import type { RestUpdate } from '../src/quant/gptq.ts';
import { quantizeLinear } from '../src/quant/quantize-linear.ts';
import { defaultFitThreads } from '../src/quant/fit-pool.ts';
import { mulberry32 } from '../src/util/prng.ts';
import { LLAMA_SHAPES, generateLlama, parameterCount, type LlamaShape } from './scripts/gen-llama.ts';

const REPO = resolve(dirname(fileURLToPath(import.meta.url)), '..');

interface CompileReport {
  size: string;
  device: string;
  deviceNote: string;
  params: number;
  shape: LlamaShape;
  calib: { segments: number; seq: number; tokens: number };
  generate: { seconds: number; peakRssBytes: number; bytes: number };
  loadSeconds: number;
  totalSeconds: number;
  /** Wall seconds, and CPU seconds of this process (all its threads) where its steps are known. */
  /** peakRssBytes: the largest RSS sampled during the pass (null in result files written before it was recorded). */
  passes: { pass: string; seconds: number; cpuSeconds: number | null; perBlock: number; perBillionParams: number; peakRssBytes?: number | null }[];
  blocks: { index: number; calibrationSeconds: number; fitSeconds: number; calibrationCpuSeconds: number; fitCpuSeconds: number }[];
  steps: Step[];
  peakRssBytes: number;
  /** Threads fitting a block's linears. */
  fitThreads?: number;
}

function peakRss(): number {
  return process.resourceUsage().maxRSS * 1024;
}

interface Step {
  label: string;
  seconds: number;
  /** user + system CPU seconds of the process over the step: on a shared machine, the figure
   *  that does not depend on how many other jobs ran at the time. */
  cpuSeconds: number;
  /** The process's peak RSS so far, at the step's end (where the peak was reached). */
  maxRssBytes?: number;
}

const cpuNow = (): number => {
  const u = process.cpuUsage();
  return (u.user + u.system) / 1e6;
};

/** The steps each pass reports through its progress (for per-pass CPU time). */
const PASS_STEPS: Record<string, RegExp> = {
  rotate: /^rotation/,
  ternary: /^block \d+\/\d+: /,
  'act-precision': /^(activation samples|clip search|ILA-AMP)/,
};

/**
 * The largest RSS of this process sampled every 50 ms since `reset` (RSS counts onnxruntime's
 * native memory; the process's maxRSS only ever grows, so it cannot tell one pass's peak from
 * an earlier one's).
 */
class RssSampler {
  peak = process.memoryUsage().rss;
  private readonly timer = setInterval(() => this.sample(), 50);
  sample(): number {
    this.peak = Math.max(this.peak, process.memoryUsage().rss);
    return this.peak;
  }
  reset(): void {
    this.peak = process.memoryUsage().rss;
  }
  stop(): void {
    clearInterval(this.timer);
  }
}

/** A Progress that times every labelled step and records each pass's peak RSS (`passPeaks`, by pass name). */
function timingProgress(steps: Step[], passPeaks?: Map<string, number>): Progress {
  let label = '';
  let t0 = 0;
  let c0 = 0;
  let pass = '';
  const rss = passPeaks ? new RssSampler() : undefined;
  return {
    phase(_i, name) {
      if (rss && pass) passPeaks!.set(pass, rss.sample());
      rss?.reset();
      pass = name;
      if (!name) rss?.stop();
    },
    start(l) {
      label = l;
      t0 = performance.now();
      c0 = cpuNow();
    },
    tick() {},
    done() {
      steps.push({ label, seconds: (performance.now() - t0) / 1000, cpuSeconds: cpuNow() - c0, maxRssBytes: peakRss() });
    },
    log(line) {
      console.error(`  ${line}`);
    },
  };
}

function calibration(segments: number, seq: number, vocab: number): Int32Array[] {
  const u = mulberry32(1234);
  return Array.from({ length: segments }, () => Int32Array.from({ length: seq }, () => Math.floor(u() * vocab)));
}

/** Child: generate, then compile one size on one device. */
async function compileChild(size: string, device: DeviceChoice, segments: number, seq: number, keep?: string): Promise<CompileReport> {
  const shape = LLAMA_SHAPES[size];
  const dir = keep ?? mkdtempSync(join(tmpdir(), `twlac-scale-${size}-`));
  try {
    let t = performance.now();
    const files = generateLlama(shape, dir);
    const generate = { seconds: (performance.now() - t) / 1000, peakRssBytes: peakRss(), bytes: Object.values(files).reduce((a, b) => a + b, 0) };
    t = performance.now();
    const model = loadModel(join(dir, 'model.onnx'));
    const loadSeconds = (performance.now() - t) / 1000;
    const steps: Step[] = [];
    const deviceNote = device === 'cpu' ? 'device: cpu' : selectDevice(device).note;
    t = performance.now();
    const passPeaks = new Map<string, number>();
    const r = await compile(model, { calib: calibration(segments, seq, shape.vocab), acts: { kind: 'mp', budget: 4 }, device }, timingProgress(steps, passPeaks));
    const totalSeconds = (performance.now() - t) / 1000;
    const params = parameterCount(shape);
    // The ternary pass's steps: `block i/n: calibration`, `… ternary fit`, `… advance` (the stream through the quantised block).
    const sum = (index: number, kinds: string[], key: 'seconds' | 'cpuSeconds') =>
      steps.filter((s) => kinds.some((k) => s.label === `block ${index + 1}/${shape.layers}: ${k}`)).reduce((a, s) => a + s[key], 0);
    const blocks = Array.from({ length: shape.layers }, (_, index) => ({
      index,
      calibrationSeconds: sum(index, ['calibration', 'advance'], 'seconds'),
      fitSeconds: sum(index, ['ternary fit'], 'seconds'),
      calibrationCpuSeconds: sum(index, ['calibration', 'advance'], 'cpuSeconds'),
      fitCpuSeconds: sum(index, ['ternary fit'], 'cpuSeconds'),
    }));
    const passCpu = (pass: string): number | null => (PASS_STEPS[pass] ? steps.filter((s) => PASS_STEPS[pass].test(s.label)).reduce((a, s) => a + s.cpuSeconds, 0) : null);
    return {
      size,
      device,
      deviceNote,
      params,
      shape,
      calib: { segments, seq, tokens: segments * seq },
      generate,
      loadSeconds,
      totalSeconds,
      passes: r.timings.map((p) => ({ ...p, cpuSeconds: passCpu(p.pass), perBlock: p.seconds / shape.layers, perBillionParams: p.seconds / (params / 1e9), peakRssBytes: passPeaks.get(p.pass) ?? null })),
      blocks,
      steps,
      peakRssBytes: peakRss(),
      fitThreads: device === 'cpu' ? defaultFitThreads() : 1,
    };
  } finally {
    if (!keep) rmSync(dir, { recursive: true, force: true });
  }
}

/** CPU seconds of fn (best of `reps`): the terms are single-threaded JavaScript, so CPU
 *  time is their cost whatever else the machine runs. */
function timeIt(fn: () => void, reps = 1): number {
  let best = Infinity;
  for (let i = 0; i < reps; i++) {
    const t = cpuNow();
    fn();
    best = Math.min(best, cpuNow() - t);
  }
  return best;
}

/** GPTQ's float64 lazy update as gptq.ts runs it, timed (CPU seconds). */
class TimedCpuRestUpdate implements RestUpdate {
  seconds = 0;
  private u: Float64Array = new Float64Array(0);
  private n = 0;
  private k = 0;
  begin(_wt: Float64Array, u: Float64Array, rows: number, cols: number): void {
    [this.u, this.n, this.k] = [u, rows, cols];
  }
  apply(c0: number, width: number, err: Float64Array, wt: Float64Array): void {
    const t = cpuNow();
    const { u, n: N, k: K } = this;
    for (let c = c0 + width; c < K; c++) {
      for (let j = 0; j < width; j++) {
        const f = u[(c0 + j) * K + c];
        if (f === 0) continue;
        for (let n = 0; n < N; n++) wt[c * N + n] -= err[j * N + n] * f;
      }
    }
    this.seconds += cpuNow() - t;
  }
  end(): void {}
}

/** Exponent of t ∝ width^p between consecutive doublings. */
function exponents(points: { width: number; seconds: number }[]): number[] {
  return points.slice(1).map((p, i) => Math.log(p.seconds / points[i].seconds) / Math.log(p.width / points[i].width));
}

/** Child: the super-linear terms alone, at doubling widths. */
async function termsChild(): Promise<Record<string, unknown>> {
  const widths = [256, 512, 1024];
  const cholesky = widths.map((width) => {
    const h = syntheticHessian(width, 7);
    return { width, seconds: timeIt(() => dampedUpperCholeskyOfInverse(h, width), 2) };
  });
  // one linear's full fit (kernel structure, GPTQ + X-domain), square: rows = in = width
  const g = gaussian(rng(3));
  const warm = syntheticHessian(128, 1);
  quantizeLinear(Float32Array.from({ length: 128 * 128 }, () => g()), 128, 128, warm, { structure: 'kernel', group: 128, shift: true, lattice: true, gptq: true, xDomain: true });
  const fit = widths.map((width) => {
    const h = syntheticHessian(width, 9);
    const w = Float32Array.from({ length: width * width }, () => g() / Math.sqrt(width));
    return { width, seconds: timeIt(() => quantizeLinear(w, width, width, h, { structure: 'kernel', group: 128, shift: true, lattice: true, gptq: true, xDomain: true })) };
  });
  // the share of GPTQ's lazy column update (what src/gpu runs on the GPU) in a square fit
  const lazyShare = [512, 1024].map((width) => {
    const h = syntheticHessian(width, 9);
    const w = Float32Array.from({ length: width * width }, () => g() / Math.sqrt(width));
    const upd = new TimedCpuRestUpdate();
    const total = timeIt(() => quantizeLinear(w, width, width, h, { structure: 'kernel', group: 128, shift: true, lattice: true, gptq: true, xDomain: true, restUpdate: upd }));
    return { width, seconds: total, lazyUpdateSeconds: upd.seconds, share: upd.seconds / total };
  });
  // fit at fixed width, doubling rows: separates the rows·in² part from the in³ part
  const rowsFit = [256, 512, 1024].map((rows) => {
    const width = 512;
    const h = syntheticHessian(width, 9);
    const w = Float32Array.from({ length: rows * width }, () => g() / Math.sqrt(width));
    return { rows, width, seconds: timeIt(() => quantizeLinear(w, rows, width, h, { structure: 'kernel', group: 128, shift: true, lattice: true, gptq: true, xDomain: true })) };
  });
  // KOTMS for one site whose one linear is square (rows = in = width)
  const kotms = [256, 512, 1024, 2048].map((width) => {
    const w = Float32Array.from({ length: width * width }, () => g() / Math.sqrt(width));
    return { width, seconds: timeIt(() => optimiseKotms(width, [{ weight: w, outDim: width }])) };
  });
  // Gram XᵀX of 4096 tokens in onnxruntime (how calibration computes it on the CPU path), CPU seconds over its threads
  const gram: { width: number; tokens: number; seconds: number }[] = [];
  for (const width of [512, 1024, 2048]) {
    const b = new GraphBuilder();
    const x = b.input('x', { dtype: 'float32', shape: ['t', width] });
    const y = b.op('MatMul', [b.op('Transpose', [x], { attrs: { perm: [1, 0] } }), x]);
    b.output(y, 'gram');
    y.type = { dtype: 'float32', shape: [width, width] };
    const dir = mkdtempSync(join(tmpdir(), 'twlac-gram-'));
    saveModel(b.model(18), join(dir, 'g.onnx'));
    const s = await ort.InferenceSession.create(join(dir, 'g.onnx'), { executionProviders: ['cpu'] });
    const tokens = 4096;
    const feed = { x: new ort.Tensor('float32', Float32Array.from({ length: tokens * width }, () => g()), [tokens, width]) };
    await s.run(feed);
    let best = Infinity;
    for (let i = 0; i < 2; i++) {
      const t = cpuNow();
      await s.run(feed);
      best = Math.min(best, cpuNow() - t);
    }
    await s.release();
    rmSync(dir, { recursive: true, force: true });
    gram.push({ width, tokens, seconds: best });
  }
  return {
    cholesky: { points: cholesky, exponents: exponents(cholesky) },
    squareLinearFit: { points: fit, exponents: exponents(fit) },
    fitVsRows: { points: rowsFit, exponents: exponents(rowsFit.map((p) => ({ width: p.rows, seconds: p.seconds }))) },
    gramOrt: { points: gram, exponents: exponents(gram) },
    kotms: { points: kotms, exponents: exponents(kotms) },
    lazyUpdate: lazyShare,
  };
}

/** Least-squares slope and intercept of y on x. */
function line(x: number[], y: number[]): { slope: number; intercept: number } {
  const n = x.length, mx = x.reduce((a, b) => a + b, 0) / n, my = y.reduce((a, b) => a + b, 0) / n;
  let sxy = 0, sxx = 0;
  for (let i = 0; i < n; i++) {
    sxy += (x[i] - mx) * (y[i] - my);
    sxx += (x[i] - mx) ** 2;
  }
  return { slope: sxx ? sxy / sxx : 0, intercept: my - (sxx ? sxy / sxx : 0) * mx };
}

type Terms = Record<'cholesky' | 'squareLinearFit', { points: { width: number; seconds: number }[]; exponents: number[] }> & {
  gramOrt: { points: { width: number; tokens: number; seconds: number }[]; exponents: number[] };
  fitVsRows: { points: { rows: number; width: number; seconds: number }[]; exponents: number[] };
  kotms?: { points: { width: number; seconds: number }[]; exponents: number[] };
  lazyUpdate?: { width: number; seconds: number; lazyUpdateSeconds: number; share: number }[];
};

/** What grows faster than the parameter count, in words, from this run's measurements. */
function scalingNotes(runs: CompileReport[], terms: Terms): string[] {
  const e = (t: { exponents: number[] }) => t.exponents.map((x) => x.toFixed(2)).join(' then ');
  const notes = [
    'Times are CPU seconds of the process (user + system, all threads) unless named wall; the machine is shared, so wall times include waiting for other jobs.',
    `Cholesky + triangular inverse of the damped H (once per input site): CPU time ∝ in^p with p = ${e(terms.cholesky)} between widths 256, 512, 1024: O(in³), the first term to dominate at 4096-11008.`,
    `One square linear's full fit (GPTQ + E2M-ATQ + whole-row refinement, rows = in): p = ${e(terms.squareLinearFit)} between widths 256, 512, 1024; at fixed in = 512, doubling rows gives p = ${e(terms.fitVsRows)} (rows 256, 512, 1024), so the fit is rows·in² (the lazy updates and H-metric refits) plus in³ and per-block costs that do not scale with rows.`,
    `Gram XᵀX in onnxruntime (4096 tokens): p = ${e(terms.gramOrt)} between widths 512, 1024, 2048: O(tokens·in²) per site, against O(tokens·in·out) for the linears themselves; on the GPU path it is one fp32 GEMM per chunk.`,
    ...(terms.lazyUpdate ? [`GPTQ's lazy column update (what src/gpu moves to the GPU) is ${terms.lazyUpdate.map((p) => `${(100 * p.share).toFixed(0)}% at width ${p.width}`).join(', ')} of a square linear's fit; the rest of the fit (E2M-ATQ refits under H, whole-row refinement, Cholesky) stays on the CPU.`] : []),
    ...(terms.kotms ? [`KOTMS for one site with one square linear: p = ${e(terms.kotms)} between widths 256, 512, 1024, 2048: cheap at small widths, super-linear from 1024 on (its objective evaluations are GEMMs of the site's weights).`] : []),
  ];
  const first = runs.find((r) => r.device === 'cpu') ?? runs[0];
  if (first) {
    const x = extrapolate7b(first, terms);
    const h = (sec: number) => `${(sec / 3600).toFixed(1)} h`;
    notes.push(
      `7B (LLaMA-2 shape, 128 × 512 calibration tokens) extrapolated from ${first.size}'s per-block figures and the width terms: fit ${h(x.fitCpuSeconds)} of CPU (${(x.fitCpuSecondsPerBlock / 60).toFixed(0)} min a block), ` +
        `${h(x.fitWallSecondsOnCores)} wall with a block's 7 fits whole on 16 threads (the down projection's fit, ~${((100 * x.fitWallSecondsOnCores) / x.fitCpuSeconds).toFixed(0)}% of a block's, the floor), ` +
        `${h(x.fitSharedWallSecondsOnCores)} with fit-block.ts's schedule (a GPTQ factor a site, then the rows' work in slices: ${h(x.fitSharedCpuSeconds)} of CPU; its floor is the down projection's factor, ${(x.largestFactorSecondsPerBlock / 60).toFixed(1)} min a block on one thread); GPTQ's lazy update is ~${(100 * x.lazyUpdateShareOfFit).toFixed(0)}% of the fit; ` +
        `streamed calibration forwards ${h(x.calibrationForwardCpuSeconds)} of CPU (2 block forwards per block); Gram ${h(x.gramCpuSeconds)}; rotation ${h(x.rotateCpuSeconds)} of CPU, ${h(x.rotateWallSecondsOnCores)} wall on 16 threads; activation precision ${h(x.actPrecisionCpuSeconds)}, ` +
        `its NLL runs holding one block's weights in onnxruntime at a time (${(x.actPrecisionSessionWeightBytes / 1e9).toFixed(1)} GB fp32, the largest stage) plus at most 1 GiB of activations between stages. ` +
        `On a 16-core host: ~${h(x.cpuOnlyWallSeconds)} wall on the CPU path; ~${h(x.gpuPathHostWallSeconds)} on the GPU path (Gram on the GPU, fits in threads). The 11008-wide factor (one thread, O(in³)), the ILA-AMP sensitivity forwards (O(depth²)) and KOTMS are what stand between this and 30 minutes.`,
    );
  }
  for (const r of runs) {
    const cal = r.blocks.map((b) => b.calibrationCpuSeconds);
    const fit = r.blocks.map((b) => b.fitCpuSeconds);
    const wall = r.blocks.map((b) => b.fitSeconds);
    notes.push(
      `${r.size} on ${r.device}: streamed calibration (capture + advance) takes ${Math.min(...cal).toFixed(2)}-${Math.max(...cal).toFixed(2)} CPU s a block, flat in depth (O(depth) over the model); ` +
        `the fit of a block ${Math.min(...fit).toFixed(1)}-${Math.max(...fit).toFixed(1)} CPU s on ${r.fitThreads ?? 1} thread(s), ${Math.min(...wall).toFixed(1)}-${Math.max(...wall).toFixed(1)} s wall; peak RSS ${(r.peakRssBytes / 1e6).toFixed(0)} MB` +
        (r.passes.some((p) => p.peakRssBytes) ? ` (per pass: ${r.passes.filter((p) => p.peakRssBytes).map((p) => `${p.pass} ${(p.peakRssBytes! / 1e6).toFixed(0)}`).join(', ')} MB).` : '.'),
    );
  }
  return notes;
}

/** Linear shapes [rows = out, in] of one block. */
function blockLinears(sh: LlamaShape): [number, number][] {
  const d = sh.hidden / sh.heads;
  const q: [number, number] = [sh.heads * d, sh.hidden], kv: [number, number] = [sh.kvHeads * d, sh.hidden];
  return [q, kv, kv, [sh.hidden, sh.heads * d], [sh.intermediate, sh.hidden], [sh.intermediate, sh.hidden], [sh.hidden, sh.intermediate]];
}

/** A power law through the last two points of a term: t(w) = t_last·(w / w_last)^p. */
function powerLaw(pts: { width: number; seconds: number }[]): (w: number) => number {
  const [a, b] = pts.slice(-2);
  const p = Math.log(b.seconds / a.seconds) / Math.log(b.width / a.width);
  return (w) => b.seconds * (w / b.width) ** p;
}

/** Wall of fits of the given costs on `threads` workers, largest first to the least loaded (as quant/fit-pool.ts hands them out). */
function scheduledWall(costs: number[], threads: number): number {
  const load = new Array(Math.max(1, threads)).fill(0);
  for (const c of [...costs].sort((x, y) => y - x)) load[load.indexOf(Math.min(...load))] += c;
  return Math.max(...load);
}

/**
 * The 7B compile extrapolated from this run. Per linear, the fit is the square fit's power
 * law at its input width times rows/in (linear in rows, as the rows sweep measures); a block's
 * fits run side by side on the host's cores (fit-pool.ts), so their wall is the largest-first
 * schedule of the 7 fits. KOTMS likewise per input site with the site's total rows. The
 * streamed calibration is 2 block forwards per block (capture, then advance through the
 * quantised block): per parameter and token from this run's per-block calibration CPU less
 * its Gram; the Gram from onnxruntime's per tokens·in²; activation precision per parameter and
 * per depth² (its ~12 sensitivity settings a block each run the blocks from their first one
 * below 8 bits to the last, streamed block by block: src/calib/amp-nll.ts).
 * CPU seconds; the host's cores divide what onnxruntime runs, the fits of a block and the
 * sites' KOTMS.
 */
function extrapolate7b(run: CompileReport, terms: Terms, tokens = 128 * 512, cores = 16): Record<string, number> {
  const big = LLAMA_SHAPES['7b'];
  const fitSq = powerLaw(terms.squareLinearFit.points);
  const fits = blockLinears(big).map(([r, k]) => fitSq(k) * (r / k));
  const fitBlock = fits.reduce((a, b) => a + b, 0);
  const blockParams = (sh: LlamaShape) => blockLinears(sh).reduce((a, [r, k]) => a + r * k, 0);
  // input sites of a block: attention input (q, k, v), o input, MLP input (gate, up), down input
  const siteWidths = (sh: LlamaShape): [number, number][] => {
    const [q, k, v, o, gate, up, down] = blockLinears(sh);
    return [[q[0] + k[0] + v[0], sh.hidden], [o[0], o[1]], [gate[0] + up[0], sh.hidden], [down[0], down[1]]];
  };
  const g = terms.gramOrt.points[terms.gramOrt.points.length - 1];
  const gramPerBlock = (sh: LlamaShape, n: number) => (g.seconds / (g.tokens * g.width ** 2)) * n * siteWidths(sh).reduce((a, [, w]) => a + w * w, 0);
  const calMean = run.blocks.reduce((a, b) => a + b.calibrationCpuSeconds, 0) / run.blocks.length;
  const perBlockForward = Math.max(0, calMean - gramPerBlock(run.shape, run.calib.tokens)) / (2 * run.calib.tokens * blockParams(run.shape));
  const calibration = 2 * perBlockForward * blockParams(big) * tokens * big.layers;
  const gram = gramPerBlock(big, tokens) * big.layers;
  const kotms = terms.kotms ? powerLaw(terms.kotms.points) : undefined;
  const pass = (name: string) => run.passes.find((p) => p.pass === name)?.cpuSeconds ?? 0;
  const siteKotms = kotms ? siteWidths(big).map(([rows, w]) => kotms(w) * (rows / w)) : [(pass('rotate') / run.shape.layers) * (blockParams(big) / blockParams(run.shape))];
  const rotate = siteKotms.reduce((a, b) => a + b, 0) * big.layers;
  // the sites' KOTMS run side by side over the whole model (rotate.ts)
  const rotateWall = scheduledWall(Array.from({ length: big.layers }, () => siteKotms).flat(), cores);
  const acts = pass('act-precision') * (blockParams(big) / blockParams(run.shape)) * (big.layers / run.shape.layers) ** 2;
  const lazy = terms.lazyUpdate?.[terms.lazyUpdate.length - 1]?.share ?? 0;
  // The fit schedule of src/quant/fit-block.ts: one GPTQ factor a site (a job each, side by
  // side), then each linear's rows·in² part, a linear larger than a thread's share in row
  // slices. The square fit's law includes one factor at its width: the rest scales with rows.
  const chol = powerLaw(terms.cholesky.points);
  const sites = siteWidths(big);
  const factorJobs = sites.map(([, w]) => chol(w));
  const rowParts = blockLinears(big).map(([r, k]) => Math.max(0, fitSq(k) - chol(k)) * (r / k));
  const perThread = rowParts.reduce((a, b) => a + b, 0) / (2 * cores);
  const sliced = rowParts.flatMap((c) => {
    const n = Math.min(cores, Math.max(1, Math.ceil(c / perThread)));
    return new Array<number>(n).fill(c / n);
  });
  const fitShared = (factorJobs.reduce((a, b) => a + b, 0) + rowParts.reduce((a, b) => a + b, 0)) * big.layers;
  const fitSharedWall = (scheduledWall(factorJobs, cores) + scheduledWall(sliced, cores)) * big.layers;
  const fit = fitBlock * big.layers;
  const fitWall = scheduledWall(fits, cores) * big.layers;
  return {
    fitCpuSecondsPerBlock: fitBlock,
    fitCpuSeconds: fit,
    /** the fits of a block whole, one a thread, each with its own factor: the down projection's fit alone is the floor (the schedule before fit-block.ts) */
    fitWallSecondsOnCores: fitWall,
    /** fit-block.ts's schedule: a factor a site, then the rows' work in slices over the cores */
    fitSharedCpuSeconds: fitShared,
    fitSharedWallSecondsOnCores: fitSharedWall,
    /** the largest site's factor (one thread, O(in³) at in = intermediate): the new floor of a block's fits */
    largestFactorSecondsPerBlock: Math.max(...factorJobs),
    lazyUpdateShareOfFit: lazy,
    calibrationForwardCpuSeconds: calibration,
    gramCpuSeconds: gram,
    rotateCpuSeconds: rotate,
    rotateWallSecondsOnCores: rotateWall,
    actPrecisionCpuSeconds: acts,
    /** the weights in onnxruntime during the ILA-AMP runs: one block's, or the head's (fp32) */
    actPrecisionSessionWeightBytes: 4 * Math.max(blockParams(big), big.vocab * big.hidden),
    /** wall on a 16-core host with the GPU path: the fits in worker threads as on the CPU path (the GPU's lazy update only with one thread); ORT work over the cores; Gram on the GPU */
    gpuPathHostWallSeconds: fitSharedWall + rotateWall + (calibration + acts) / cores,
    cpuOnlyWallSeconds: fitSharedWall + rotateWall + (calibration + acts + gram) / cores,
  };
}

interface Baseline {
  commit: string;
  date: string;
  command: string;
  loadAverageAtStart: number[];
  runs: Pick<CompileReport, 'size' | 'device' | 'totalSeconds' | 'passes' | 'blocks' | 'peakRssBytes'>[];
  extrapolation7b?: Record<string, number>;
}

/** An earlier result file's figures, kept beside a new run's. */
function readBaseline(file: string): Baseline {
  const r = JSON.parse(readFileSync(file, 'utf8')) as { commit: string; date: string; command: string; machine: { loadAverageAtStart: number[] }; runs: CompileReport[]; extrapolation7b?: Record<string, number>; baseline?: Baseline };
  // A file that already carries a baseline was itself compared: keep its own figures only.
  return {
    commit: r.commit,
    date: r.date,
    command: r.command,
    loadAverageAtStart: r.machine.loadAverageAtStart,
    runs: r.runs.map(({ size, device, totalSeconds, passes, blocks, peakRssBytes }) => ({ size, device, totalSeconds, passes, blocks, peakRssBytes })),
    extrapolation7b: r.extrapolation7b,
  };
}

/** This run against the baseline, size by size: CPU seconds (what load does not distort), wall, peak RSS. */
function comparisonNotes(runs: CompileReport[], base: Baseline, x?: Record<string, number>): string[] {
  const notes: string[] = [];
  const cpu = (r: Baseline['runs'][number], pass: string) => r.passes.find((p) => p.pass === pass)?.cpuSeconds ?? NaN;
  const sum = (xs: number[]) => xs.reduce((a, b) => a + b, 0);
  for (const r of runs) {
    const b = base.runs.find((o) => o.size === r.size && o.device === r.device);
    if (!b) continue;
    const f = (v: number) => v.toFixed(1);
    notes.push(
      `${r.size} on ${r.device} against the baseline (commit ${base.commit.slice(0, 7)}, load average ${base.loadAverageAtStart[0].toFixed(0)} at its start): ` +
        `calibration ${f(sum(r.blocks.map((k) => k.calibrationCpuSeconds)))} CPU s (was ${f(sum(b.blocks.map((k) => k.calibrationCpuSeconds)))}); ` +
        `fit ${f(sum(r.blocks.map((k) => k.fitCpuSeconds)))} CPU s, ${f(sum(r.blocks.map((k) => k.fitSeconds)))} s wall (was ${f(sum(b.blocks.map((k) => k.fitCpuSeconds)))} CPU s, ${f(sum(b.blocks.map((k) => k.fitSeconds)))} s wall); ` +
        `ternary pass ${f(cpu(r, 'ternary'))} CPU s (was ${f(cpu(b, 'ternary'))}); rotate ${f(cpu(r, 'rotate'))} (was ${f(cpu(b, 'rotate'))}); act-precision ${f(cpu(r, 'act-precision'))} (was ${f(cpu(b, 'act-precision'))}); ` +
        `compile ${f(r.totalSeconds)} s wall (was ${f(b.totalSeconds)}); peak RSS ${(r.peakRssBytes / 1e6).toFixed(0)} MB (was ${(b.peakRssBytes / 1e6).toFixed(0)} MB).`,
    );
  }
  const bx = base.extrapolation7b;
  if (x && bx) {
    const h = (sec: number) => `${(sec / 3600).toFixed(1)} h`;
    notes.push(
      `7B extrapolation against the baseline's: calibration forwards ${h(x.calibrationForwardCpuSeconds)} of CPU (was ${h(bx.calibrationForwardCpuSeconds)}: blocks 0..i rerun for block i); ` +
        `16-core CPU-path wall ${h(x.cpuOnlyWallSeconds)} (was ${h(bx.cpuOnlyWallSeconds)}), GPU-path host wall ${h(x.gpuPathHostWallSeconds)} (was ${h(bx.gpuPathHostWallSeconds)}).`,
    );
  }
  return notes;
}

function runChild(args: string[]): unknown {
  const out = execFileSync(process.execPath, [...process.execArgv, fileURLToPath(import.meta.url), ...args], {
    encoding: 'utf8',
    maxBuffer: 1 << 24,
    stdio: ['ignore', 'pipe', 'inherit'],
  });
  return JSON.parse(out.trim().split('\n').pop()!);
}

function flag(args: string[], name: string, dflt: string): string {
  const i = args.indexOf(name);
  return i >= 0 && args[i + 1] !== undefined ? args[i + 1] : dflt;
}

function git(...a: string[]): string {
  try {
    return execFileSync('git', a, { cwd: REPO, encoding: 'utf8' }).trim();
  } catch {
    return 'unknown';
  }
}

async function main(args: string[]): Promise<void> {
  if (args[0] === '--child') {
    const r = args[1] === 'terms' ? await termsChild() : await compileChild(args[2], args[3] as DeviceChoice, Number(args[4]), Number(args[5]), args[6] || undefined);
    process.stdout.write(`${JSON.stringify(r)}\n`);
    return;
  }
  if (args[0] === '--notes-only') {
    // recompute the notes of an existing result file (its measurements are kept as they are)
    const file = resolve(args[1]);
    const r = JSON.parse(readFileSync(file, 'utf8')) as { runs: CompileReport[]; terms: Terms; notes: string[]; baseline?: Baseline };
    const x = r.runs.length ? extrapolate7b(r.runs.find((k) => k.device === 'cpu') ?? r.runs[0], r.terms) : undefined;
    r.notes = [...scalingNotes(r.runs, r.terms), ...(r.baseline ? comparisonNotes(r.runs, r.baseline, x) : [])];
    Object.assign(r, { notesCommit: git('rev-parse', 'HEAD') });
    Object.assign(r, { extrapolation7b: x });
    writeFileSync(file, `${JSON.stringify(r, null, 1)}\n`);
    for (const n of r.notes) console.log(`- ${n}`);
    return;
  }
  const sizes = flag(args, '--sizes', '12m,125m').split(',');
  for (const s of sizes) if (!LLAMA_SHAPES[s]) throw new Error(`unknown size ${s} (${Object.keys(LLAMA_SHAPES).join(', ')})`);
  const deviceArg = flag(args, '--device', 'cpu');
  const devices: DeviceChoice[] = deviceArg === 'both' ? ['cpu', 'gpu'] : [deviceArg as DeviceChoice];
  const segments = Number(flag(args, '--calib-samples', '32'));
  const seq = Number(flag(args, '--seq', '256'));
  const out = resolve(flag(args, '--out', join(REPO, 'bench/results/scale.json')));
  const keep = flag(args, '--keep', '');
  const baselineFile = flag(args, '--baseline', '');
  const baseline = baselineFile ? readBaseline(resolve(baselineFile)) : undefined;
  if (args.includes('--dry-run')) {
    for (const s of sizes) {
      const sh = LLAMA_SHAPES[s];
      for (const d of devices) {
        console.log(
          `${s}: ${(parameterCount(sh) / 1e9).toFixed(3)} B parameters (${sh.layers} layers, hidden ${sh.hidden}, intermediate ${sh.intermediate}, vocab ${sh.vocab}), ` +
            `~${((parameterCount(sh) * 2) / 1e9).toFixed(1)} GB fp16 generated, then compiled on ${d} with --acts mp:4 and ${segments} × ${seq} calibration tokens`,
        );
      }
    }
    console.log(`then the width terms (Cholesky, one linear's fit, ORT Gram at widths 256-2048), written to ${out}`);
    return;
  }
  const header = {
    bench: 'scale',
    date: new Date().toISOString(),
    commit: git('rev-parse', 'HEAD') + (git('status', '--porcelain', '--untracked-files=no') ? ' (uncommitted changes)' : ''),
    command: `npm run bench:scale -- ${args.join(' ')}`.trim(),
    machine: { cpus: cpus().length, cpu: cpus()[0]?.model, totalMemBytes: totalmem(), freeMemBytesAtStart: freemem(), loadAverageAtStart: loadavg(), node: process.version },
  };
  const runs: CompileReport[] = [];
  for (const s of sizes) {
    for (const d of devices) {
      console.error(`compiling ${s} on ${d} ...`);
      const r = runChild(['--child', 'compile', s, d, String(segments), String(seq), keep]) as CompileReport;
      console.error(`  ${s} on ${d}: ${r.totalSeconds.toFixed(1)} s compile, peak RSS ${(r.peakRssBytes / 1e6).toFixed(0)} MB (${r.deviceNote})`);
      runs.push(r);
      // each finished compile is kept, whatever happens to the rest
      writeFileSync(out, `${JSON.stringify({ ...header, runs, terms: null }, null, 1)}\n`);
    }
  }
  console.error('timing the width terms ...');
  const terms = runChild(['--child', 'terms']) as Terms;
  const x = runs.length ? extrapolate7b(runs.find((r) => r.device === 'cpu') ?? runs[0], terms) : undefined;
  const result = {
    ...header,
    notes: [...scalingNotes(runs, terms), ...(baseline ? comparisonNotes(runs, baseline, x) : [])],
    extrapolation7b: x,
    runs,
    terms,
    ...(baseline ? { baseline } : {}),
  };
  writeFileSync(out, `${JSON.stringify(result, null, 1)}\n`);
  for (const r of runs) {
    console.log(`${r.size} (${(r.params / 1e6).toFixed(1)} M) on ${r.device}: ${r.totalSeconds.toFixed(1)} s, ${(r.totalSeconds / (r.params / 1e9)).toFixed(0)} s per billion parameters, peak RSS ${(r.peakRssBytes / 1e6).toFixed(0)} MB`);
    for (const p of r.passes) {
      const cpu = p.cpuSeconds === null ? '' : `  ${p.cpuSeconds.toFixed(1).padStart(8)} CPU s`;
      const rss = p.peakRssBytes ? `  peak RSS ${(p.peakRssBytes / 1e6).toFixed(0).padStart(6)} MB` : '';
      console.log(`  ${p.pass.padEnd(16)} ${p.seconds.toFixed(1).padStart(8)} s  ${p.perBlock.toFixed(2).padStart(8)} s/block  ${p.perBillionParams.toFixed(0).padStart(8)} s/B params${cpu}${rss}`);
    }
  }
  for (const n of result.notes) console.log(`- ${n}`);
  console.log(`wrote ${out}`);
}

await main(process.argv.slice(2));
