// The compile's scaling curve: generated LLaMA shapes (bench/scripts/gen-llama.ts) compiled
// with the default twla pipeline (KOTMS rotation, E2M-ATQ in GPTQ, ILA-AMP mp:4), each in
// its own child process so that its peak RSS is its own. Reports seconds per pass, per block
// and per billion parameters, and the terms that grow faster than the parameter count,
// timed alone at doubling widths (exponents measured, not assumed):
//   Cholesky of the damped H (O(in³) per input site), a linear's GPTQ + E2M-ATQ fit (rows·in²
//   and in³ parts), the Gram XᵀX in onnxruntime (O(tokens·in²)), and the calibration forward
//   of block i, which reruns blocks 0..i (O(depth²) in total).
//
//   npm run bench:scale                                  12m, then 125m, on the CPU
//   npm run bench:scale -- --sizes 1b,7b --device gpu    the GPU machine's points
//   npm run bench:scale -- --sizes 7b --dry-run          say what would run
// Options: --device cpu|gpu|auto|both (both: each size on the CPU and on the GPU),
// --calib-samples N --seq T (calibration, default 32 × 256), --out FILE, --keep DIR.
import { execFileSync } from 'node:child_process';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { cpus, freemem, loadavg, totalmem, tmpdir } from 'node:os';
import { dirname, join, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';
import * as ort from 'onnxruntime-node';
import { compile } from '../src/compile.ts';
import { selectDevice, type DeviceChoice } from '../src/gpu/device.ts';
import { GraphBuilder } from '../src/graph/builder.ts';
import { loadModel, saveModel } from '../src/graph/onnx.ts';
import type { Progress } from '../src/graph/pass.ts';
import { dampedUpperCholeskyOfInverse, gaussian, rng, syntheticHessian } from '../src/quant/linalg.ts';
import { quantizeLinear } from '../src/quant/quantize-linear.ts';
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
  passes: { pass: string; seconds: number; perBlock: number; perBillionParams: number }[];
  blocks: { index: number; calibrationSeconds: number; fitSeconds: number }[];
  peakRssBytes: number;
}

function peakRss(): number {
  return process.resourceUsage().maxRSS * 1024;
}

/** A Progress that times every labelled step. */
function timingProgress(steps: { label: string; seconds: number }[]): Progress {
  let label = '';
  let t0 = 0;
  return {
    start(l) {
      label = l;
      t0 = performance.now();
    },
    tick() {},
    done() {
      steps.push({ label, seconds: (performance.now() - t0) / 1000 });
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
    const steps: { label: string; seconds: number }[] = [];
    const deviceNote = device === 'cpu' ? 'device: cpu' : selectDevice(device).note;
    t = performance.now();
    const r = await compile(model, { calib: calibration(segments, seq, shape.vocab), acts: { kind: 'mp', budget: 4 }, device }, timingProgress(steps));
    const totalSeconds = (performance.now() - t) / 1000;
    const params = parameterCount(shape);
    const blocks = Array.from({ length: shape.layers }, (_, index) => ({
      index,
      calibrationSeconds: steps.find((s) => s.label === `block ${index}: calibration`)?.seconds ?? NaN,
      fitSeconds: steps.find((s) => s.label === `block ${index}: ternary fit`)?.seconds ?? NaN,
    }));
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
      passes: r.timings.map((p) => ({ ...p, perBlock: p.seconds / shape.layers, perBillionParams: p.seconds / (params / 1e9) })),
      blocks,
      peakRssBytes: peakRss(),
    };
  } finally {
    if (!keep) rmSync(dir, { recursive: true, force: true });
  }
}

/** Seconds of fn (best of `reps`). */
function timeIt(fn: () => void, reps = 1): number {
  let best = Infinity;
  for (let i = 0; i < reps; i++) {
    const t = performance.now();
    fn();
    best = Math.min(best, (performance.now() - t) / 1000);
  }
  return best;
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
  // fit at fixed width, doubling rows: separates the rows·in² part from the in³ part
  const rowsFit = [256, 512, 1024].map((rows) => {
    const width = 512;
    const h = syntheticHessian(width, 9);
    const w = Float32Array.from({ length: rows * width }, () => g() / Math.sqrt(width));
    return { rows, width, seconds: timeIt(() => quantizeLinear(w, rows, width, h, { structure: 'kernel', group: 128, shift: true, lattice: true, gptq: true, xDomain: true })) };
  });
  // Gram XᵀX of 4096 tokens in onnxruntime (how calibration computes it on the CPU path)
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
      const t = performance.now();
      await s.run(feed);
      best = Math.min(best, (performance.now() - t) / 1000);
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
  };
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
  const sizes = flag(args, '--sizes', '12m,125m').split(',');
  for (const s of sizes) if (!LLAMA_SHAPES[s]) throw new Error(`unknown size ${s} (${Object.keys(LLAMA_SHAPES).join(', ')})`);
  const deviceArg = flag(args, '--device', 'cpu');
  const devices: DeviceChoice[] = deviceArg === 'both' ? ['cpu', 'gpu'] : [deviceArg as DeviceChoice];
  const segments = Number(flag(args, '--calib-samples', '32'));
  const seq = Number(flag(args, '--seq', '256'));
  const out = resolve(flag(args, '--out', join(REPO, 'bench/results/scale.json')));
  const keep = flag(args, '--keep', '');
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
  const started = new Date().toISOString();
  const load = loadavg();
  const runs: CompileReport[] = [];
  for (const s of sizes) {
    for (const d of devices) {
      console.error(`compiling ${s} on ${d} ...`);
      const r = runChild(['--child', 'compile', s, d, String(segments), String(seq), keep]) as CompileReport;
      console.error(`  ${s} on ${d}: ${r.totalSeconds.toFixed(1)} s compile, peak RSS ${(r.peakRssBytes / 1e6).toFixed(0)} MB (${r.deviceNote})`);
      runs.push(r);
    }
  }
  console.error('timing the width terms ...');
  const terms = runChild(['--child', 'terms']);
  const result = {
    bench: 'scale',
    date: started,
    commit: git('rev-parse', 'HEAD') + (git('status', '--porcelain', '--untracked-files=no') ? ' (uncommitted changes)' : ''),
    command: `npm run bench:scale -- ${args.join(' ')}`.trim(),
    machine: { cpus: cpus().length, cpu: cpus()[0]?.model, totalMemBytes: totalmem(), freeMemBytesAtStart: freemem(), loadAverageAtStart: load, node: process.version },
    runs,
    terms,
  };
  writeFileSync(out, `${JSON.stringify(result, null, 1)}\n`);
  for (const r of runs) {
    console.log(`${r.size} (${(r.params / 1e6).toFixed(1)} M) on ${r.device}: ${r.totalSeconds.toFixed(1)} s, ${(r.totalSeconds / (r.params / 1e9)).toFixed(0)} s per billion parameters, peak RSS ${(r.peakRssBytes / 1e6).toFixed(0)} MB`);
    for (const p of r.passes) console.log(`  ${p.pass.padEnd(16)} ${p.seconds.toFixed(1).padStart(8)} s  ${p.perBlock.toFixed(2).padStart(8)} s/block  ${p.perBillionParams.toFixed(0).padStart(8)} s/B params`);
  }
  console.log(`wrote ${out}`);
}

await main(process.argv.slice(2));
