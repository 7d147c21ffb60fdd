// ONNX load+save: time and peak memory. Each case runs in its own child process, which
// loads a model, saves it to a temporary folder and reports its peak RSS
// (process.resourceUsage().maxRSS). Cases: (a) the shared fixture (fp32, 4 data files);
// (b) a generated model with 2.5 GiB of fp16 weights in external data (40 MatMul weights
// of 64 MiB each), written by streaming and deleted afterwards. The saved data file of (b)
// is compared byte for byte with the source one (same layout, so it must be identical).
// Target: peak RSS < 1.5 × largest single tensor + 300 MB.
//
//   npm run bench:io            writes bench/results/io.json
import { execFileSync } from 'node:child_process';
import { closeSync, existsSync, mkdirSync, mkdtempSync, openSync, readSync, rmSync, statSync, unlinkSync, writeFileSync, writeSync } from 'node:fs';
import { cpus, tmpdir } from 'node:os';
import { dirname, join, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';
import { GraphBuilder } from '../src/graph/builder.ts';
import { loadModel, saveModel } from '../src/graph/onnx.ts';
import { Tensor } from '../src/graph/tensor.ts';
import { cpuDevice, resultHeader } from './result-header.ts';

const REPO = resolve(dirname(fileURLToPath(import.meta.url)), '..');
const FIXTURE = resolve(REPO, '../shared/models/pydocs-llama-12m/model.onnx');
const MB = 1e6;

interface ChildReport {
  loadMs: number;
  saveMs: number;
  peakRssBytes: number;
  largestTensorBytes: number;
  weightBytes: number;
  initializers: number;
  files: Record<string, number>;
}

/** In the child: load `src`, save into `outDir`, report. */
function child(src: string, outDir: string): void {
  const t0 = performance.now();
  const m = loadModel(src);
  const t1 = performance.now();
  const { files } = saveModel(m, join(outDir, 'model.onnx'));
  const t2 = performance.now();
  const sizes = [...m.graph.initializers.values()].map((v) => v.constValue!.byteLength);
  const report: ChildReport = {
    loadMs: t1 - t0,
    saveMs: t2 - t1,
    peakRssBytes: process.resourceUsage().maxRSS * 1024,
    largestTensorBytes: Math.max(...sizes),
    weightBytes: sizes.reduce((a, b) => a + b, 0),
    initializers: sizes.length,
    files,
  };
  process.stdout.write(`${JSON.stringify(report)}\n`);
}

function runChild(args: string[]): string {
  return execFileSync(process.execPath, [...process.execArgv, fileURLToPath(import.meta.url), ...args], { encoding: 'utf8', maxBuffer: 1 << 20 });
}

/** Generate a model with `layers` fp16 MatMul weights of rows×cols (alternating shapes), weights streamed to disk. */
function generateLargeModel(dir: string, layers: number, d: number, ff: number): void {
  const weightsPath = join(dir, 'weights.bin');
  const fd = openSync(weightsPath, 'w');
  const chunk = new Uint16Array(4 << 20);
  const b = new GraphBuilder();
  let x = b.input('x', { dtype: 'float16', shape: [1, d] });
  let offset = 0;
  for (let i = 0; i < layers; i++) {
    const dims = i % 2 === 0 ? [d, ff] : [ff, d];
    const length = dims[0] * dims[1] * 2;
    // Small fp16 values from an LCG: sign, exponent 2^-8..2^-5, random mantissa.
    let s = (i + 1) * 2654435761;
    for (let done = 0; done < length; ) {
      for (let k = 0; k < chunk.length; k++) {
        s = (Math.imul(s, 1664525) + 1013904223) >>> 0;
        chunk[k] = ((s >>> 16) & 0x8000) | ((7 + ((s >>> 10) & 3)) << 10) | (s & 0x3ff);
      }
      const n = Math.min(chunk.byteLength, length - done);
      const bytes = new Uint8Array(chunk.buffer, 0, n);
      for (let w = 0; w < n; ) w += writeSync(fd, bytes, w, n - w);
      done += n;
    }
    const w = b.init(`layers.${i}.weight`, new Tensor('float16', dims, { kind: 'external', path: weightsPath, offset, length }));
    offset += length;
    x = b.op('MatMul', [x, w]);
  }
  closeSync(fd);
  b.output(x, 'y');
  saveModel(b.model(18), join(dir, 'model.onnx'));
  unlinkSync(weightsPath);
}

function sameBytes(a: string, b: string): boolean {
  if (statSync(a).size !== statSync(b).size) return false;
  const [fa, fb] = [openSync(a, 'r'), openSync(b, 'r')];
  const [ba, bb] = [Buffer.alloc(8 << 20), Buffer.alloc(8 << 20)];
  try {
    for (let pos = 0; ; ) {
      const n = readSync(fa, ba, 0, ba.length, pos);
      const m = readSync(fb, bb, 0, bb.length, pos);
      if (n !== m) return false;
      if (n === 0) return true;
      if (ba.compare(bb, 0, m, 0, n) !== 0) return false;
      pos += n;
    }
  } finally {
    closeSync(fa);
    closeSync(fb);
  }
}

interface CaseResult extends ChildReport {
  name: string;
  targetPeakRssBytes: number;
  pass: boolean;
  outputIdenticalToSource?: boolean;
}

function measure(name: string, src: string, work: string): CaseResult {
  const out = mkdtempSync(join(work, 'out-'));
  try {
    const r = JSON.parse(runChild(['--child', src, out])) as ChildReport;
    const target = 1.5 * r.largestTensorBytes + 300 * MB;
    const result: CaseResult = { name, ...r, targetPeakRssBytes: target, pass: r.peakRssBytes < target };
    const srcData = join(dirname(src), 'model.onnx.data');
    if (existsSync(srcData)) result.outputIdenticalToSource = sameBytes(srcData, join(out, 'model.onnx.data'));
    result.files = Object.fromEntries(Object.entries(r.files).map(([k, v]) => [k.slice(out.length + 1), v]));
    return result;
  } finally {
    rmSync(out, { recursive: true, force: true });
  }
}

function main(): void {
  const work = mkdtempSync(join(tmpdir(), 'twlac-bench-io-'));
  const results: CaseResult[] = [];
  try {
    const baseline = JSON.parse(runChild(['--baseline'])) as { peakRssBytes: number };
    if (existsSync(FIXTURE)) results.push(measure('fixture pydocs-llama-12m (fp32, 4 data files)', FIXTURE, work));
    else console.warn(`skipping the fixture case: ${FIXTURE} not found`);

    const gen = join(work, 'gen');
    mkdirSync(gen);
    const t0 = performance.now();
    generateLargeModel(gen, 40, 4096, 8192);
    const genMs = performance.now() - t0;
    results.push(measure('generated 40 × fp16 [4096×8192] (2.5 GiB external data)', join(gen, 'model.onnx'), work));
    rmSync(gen, { recursive: true, force: true });

    for (const r of results) {
      console.log(
        `${r.name}: load ${r.loadMs.toFixed(0)} ms, save ${r.saveMs.toFixed(0)} ms (${((r.files['model.onnx.data'] ?? 0) / MB / (r.saveMs / 1000)).toFixed(0)} MB/s), ` +
          `peak RSS ${(r.peakRssBytes / MB).toFixed(0)} MB vs target ${(r.targetPeakRssBytes / MB).toFixed(0)} MB ` +
          `(largest tensor ${(r.largestTensorBytes / MB).toFixed(1)} MB, weights ${(r.weightBytes / MB).toFixed(0)} MB): ${r.pass ? 'PASS' : 'FAIL'}` +
          (r.outputIdenticalToSource === undefined ? '' : `, data file identical to source: ${r.outputIdenticalToSource}`),
      );
    }
    console.log(`baseline peak RSS of a child that only imports onnx.ts: ${(baseline.peakRssBytes / MB).toFixed(0)} MB; generating case (b) took ${(genMs / 1000).toFixed(1)} s`);
    const json = {
      ...resultHeader('ONNX load and save: peak memory against the largest tensor', cpuDevice(), 'npm run bench:io'),
      machine: { cpus: cpus().length, cpu: cpus()[0]?.model, node: process.version },
      target: 'peak RSS < 1.5 × largest single tensor + 300 MB (peak RSS of the child process that loads and saves)',
      baselinePeakRssBytes: baseline.peakRssBytes,
      cases: results,
      pass: results.every((r) => r.pass && r.outputIdenticalToSource !== false),
    };
    const outPath = join(REPO, 'bench/results/io.json');
    writeFileSync(outPath, `${JSON.stringify(json, null, 2)}\n`);
    console.log(`wrote ${outPath}`);
    if (!json.pass) process.exitCode = 1;
  } finally {
    rmSync(work, { recursive: true, force: true });
  }
}

const args = process.argv.slice(2);
if (args[0] === '--child') child(args[1], args[2]);
else if (args[0] === '--baseline') process.stdout.write(`${JSON.stringify({ peakRssBytes: process.resourceUsage().maxRSS * 1024 })}\n`);
else main();
