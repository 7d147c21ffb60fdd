// ILA-AMP's calibration NLL measurements (the plan of src/quant/ila-amp.ts: baseline, singles,
// neighbour pairs), streamed block by block (src/calib/amp-nll.ts) against the whole-model
// session they replaced (test/calib/amp-whole-model.ts), each path in its own child process
// so that its peak RSS is its own. Per model and path: wall and CPU seconds, the process's
// peak RSS, the RSS after loading the model (what the measurements add is the difference;
// RSS is also sampled every 50 ms during the measurements), and whether the two paths' NLLs
// and the bits the DP chooses from them agree.
//
//   npm run bench:amp-stream                                 the fixture, then a generated 125m
//   npm run bench:amp-stream -- --models 12m --seq 64        a quick look
// Options: --models fixture,tiny,12m,125m,… (fixture: ../shared's fp32 pydocs-llama-12m; the
// rest generated LLaMA shapes, bench/scripts/gen-llama.ts), --seq T (tokens per segment, 4
// segments as the pass takes; default 256), --out FILE (default bench/results/amp-stream.json).
import { execFileSync } from 'node:child_process';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { loadavg, tmpdir } from 'node:os';
import { dirname, join, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';
import { streamedNlls, type AmpSite } from '../src/calib/amp-nll.ts';
import { createContext } from '../src/compile.ts';
import { loadModel } from '../src/graph/onnx.ts';
import { activationDtype } from '../src/passes/lower-ort.ts';
import { AMP_BITS, allocateBits, costsFromMeasurements, measurementPlan } from '../src/quant/ila-amp.ts';
import { mulberry32 } from '../src/util/prng.ts';
import { wholeModelNlls } from '../test/calib/amp-whole-model.ts';
import { cpuDevice, resultHeader } from './result-header.ts';
import { LLAMA_SHAPES, generateLlama, parameterCount } from './scripts/gen-llama.ts';

const REPO = resolve(dirname(fileURLToPath(import.meta.url)), '..');
const FIXTURE = resolve(REPO, '../shared/models/pydocs-llama-12m/model.onnx');
const SEGMENTS = 4;
const BUDGETS = [3, 4, 5, 6];

interface PathRun {
  path: 'whole-model' | 'streamed';
  seconds: number;
  cpuSeconds: number;
  /** RSS once the model is loaded and recognised, before the measurements. */
  rssBeforeBytes: number;
  /** Largest RSS sampled during the measurements, and the process's peak RSS (getrusage). */
  sampledPeakRssBytes: number;
  peakRssBytes: number;
  nlls: number[];
  /** Bits per block the DP chooses at each budget of BUDGETS. */
  bits: number[][];
}

const cpuNow = () => {
  const u = process.cpuUsage();
  return (u.user + u.system) / 1e6;
};

/** Child: one path's measurements on one model file. */
async function child(file: string, path: PathRun['path'], seq: number): Promise<PathRun> {
  const model = loadModel(file);
  const ctx = createContext(model);
  const sites: AmpSite[] = ctx.sites.map((s) => ({ id: s.id, group: s.group, dtype: activationDtype(s.group.linears[0]) }));
  // Clip ratios do not change the work; varied by site so that the settings differ.
  const clips = new Map(sites.map((s, i) => [s.id, new Map(AMP_BITS.map((b) => [b, b === 8 ? 1 : 0.7 + 0.05 * ((i + b) % 6)]))]));
  const u = mulberry32(1234);
  const vocab = ctx.structure.config.vocab;
  const calib = Array.from({ length: SEGMENTS }, () => Int32Array.from({ length: seq }, () => Math.floor(u() * vocab)));
  const blocks = ctx.structure.blocks.length;
  const plan = measurementPlan(blocks);
  const configs = plan.map((p) => p.config);
  const rssBeforeBytes = process.memoryUsage().rss;
  let sampled = rssBeforeBytes;
  const timer = setInterval(() => (sampled = Math.max(sampled, process.memoryUsage().rss)), 50);
  const t0 = performance.now();
  const c0 = cpuNow();
  const nlls =
    path === 'streamed' ? await streamedNlls(model, ctx.structure, sites, clips, calib, configs, Math.max(...AMP_BITS)) : await wholeModelNlls(model, sites, clips, calib, configs);
  const seconds = (performance.now() - t0) / 1000;
  const cpuSeconds = cpuNow() - c0;
  clearInterval(timer);
  const bits = BUDGETS.map((b) => allocateBits(costsFromMeasurements(blocks, plan.map((m, i) => ({ m, nll: nlls[i] }))), b).bits);
  return { path, seconds, cpuSeconds, rssBeforeBytes, sampledPeakRssBytes: Math.max(sampled, process.memoryUsage().rss), peakRssBytes: process.resourceUsage().maxRSS * 1024, nlls, bits };
}

function runChild(args: string[]): PathRun {
  const out = execFileSync(process.execPath, [...process.execArgv, fileURLToPath(import.meta.url), ...args], { encoding: 'utf8', maxBuffer: 1 << 24, stdio: ['ignore', 'pipe', 'inherit'] });
  return JSON.parse(out.trim().split('\n').pop()!) as PathRun;
}

function flag(args: string[], name: string, dflt: string): string {
  const i = args.indexOf(name);
  return i >= 0 && args[i + 1] !== undefined ? args[i + 1] : dflt;
}

async function main(args: string[]): Promise<void> {
  if (args[0] === '--child') {
    process.stdout.write(`${JSON.stringify(await child(args[1], args[2] as PathRun['path'], Number(args[3])))}\n`);
    return;
  }
  const models = flag(args, '--models', 'fixture,125m').split(',');
  for (const m of models) if (m !== 'fixture' && !LLAMA_SHAPES[m]) throw new Error(`unknown model ${m} (fixture, ${Object.keys(LLAMA_SHAPES).join(', ')})`);
  const seq = Number(flag(args, '--seq', '256'));
  const out = resolve(flag(args, '--out', join(REPO, 'bench/results/amp-stream.json')));
  const header = { ...resultHeader('amp-stream', cpuDevice(), `npm run bench:amp-stream -- ${args.join(' ')}`.trim()), loadAverageAtStart: loadavg() };
  const results = [];
  for (const name of models) {
    const dir = name === 'fixture' ? undefined : mkdtempSync(join(tmpdir(), `twlac-amp-${name}-`));
    try {
      if (dir) generateLlama(LLAMA_SHAPES[name], dir);
      const file = dir ? join(dir, 'model.onnx') : FIXTURE;
      const runs: PathRun[] = [];
      for (const path of ['whole-model', 'streamed'] as const) {
        console.error(`${name}: ${path} ...`);
        const r = runChild(['--child', file, path, String(seq)]);
        console.error(`  ${r.seconds.toFixed(1)} s (${r.cpuSeconds.toFixed(1)} CPU s), peak RSS ${(r.peakRssBytes / 1e6).toFixed(0)} MB, ${((r.sampledPeakRssBytes - r.rssBeforeBytes) / 1e6).toFixed(0)} MB over the loaded model`);
        runs.push(r);
      }
      const [whole, streamed] = runs;
      const maxRelNllDiff = Math.max(...streamed.nlls.map((x, i) => Math.abs(x - whole.nlls[i]) / Math.abs(whole.nlls[i])));
      results.push({
        model: name === 'fixture' ? 'pydocs-llama-12m (fp32 fixture)' : `generated LLaMA ${name}`,
        params: name === 'fixture' ? undefined : parameterCount(LLAMA_SHAPES[name]),
        layers: streamed.bits[0].length,
        settings: streamed.nlls.length,
        tokens: SEGMENTS * seq,
        maxRelNllDiff,
        sameBits: JSON.stringify(whole.bits) === JSON.stringify(streamed.bits),
        cpuSpeedup: whole.cpuSeconds / streamed.cpuSeconds,
        runs: runs.map(({ nlls: _n, ...r }) => r),
      });
      writeFileSync(out, `${JSON.stringify({ ...header, results }, null, 1)}\n`);
    } finally {
      if (dir) rmSync(dir, { recursive: true, force: true });
    }
  }
  for (const r of results) {
    const [w, s] = r.runs;
    const mb = (x: number) => `${(x / 1e6).toFixed(0)} MB`;
    console.log(
      `${r.model}: ${r.settings} settings over ${r.layers} blocks, ${r.tokens} tokens; NLLs agree to ${r.maxRelNllDiff.toExponential(1)} (relative), same bits: ${r.sameBits}; ` +
        `whole-model ${w.cpuSeconds.toFixed(1)} CPU s, +${mb(w.sampledPeakRssBytes - w.rssBeforeBytes)} (peak ${mb(w.peakRssBytes)}); ` +
        `streamed ${s.cpuSeconds.toFixed(1)} CPU s, +${mb(s.sampledPeakRssBytes - s.rssBeforeBytes)} (peak ${mb(s.peakRssBytes)}); ${r.cpuSpeedup.toFixed(2)}× less CPU`,
    );
  }
  console.log(`wrote ${out}`);
}

await main(process.argv.slice(2));
