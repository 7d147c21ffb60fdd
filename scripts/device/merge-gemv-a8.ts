// Writes streaming-GEMV tuning runs (gen-gemv-bench.ts --a8-tune, then scripts/device/
// run-gemv.sh and, for a second sample, `gemv_bench . gemv2.json sa8`) to bench/results/
// cuda-<card>-decode-gemv.json: per shape the default plan and every candidate, int8 activations
// (and the fp16-activation kernels the run timed), each with the median µs of its samples
// over all the given run directories, with and without programmatic dependent launch, and its
// ratio to cuBLAS fp16 measured in the same run.
// Usage: npx tsx scripts/device/merge-gemv-a8.ts <device out dir>... [--decode LOG] [--out FILE]
import { existsSync, readFileSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { resultsPath } from './results-path.ts';
import { resultHeader } from '../../bench/result-header.ts';

const args = process.argv.slice(2);
const opt = (name: string) => (args.includes(name) ? args[args.indexOf(name) + 1] : undefined);
const dirs = args.filter((a, i) => !a.startsWith('--') && !['--decode', '--out'].includes(args[i - 1]));
if (!dirs.length) throw new Error('usage: merge-gemv-a8.ts <device out dir>... [--decode LOG] [--out FILE]');
interface Row { kernel: string; n: number; k: number; bytes: number; us: number; cublasFp16Us: number; usWithPdl: number }
const runs = dirs.flatMap((dir) => ['gemv.json', 'gemv2.json'].map((f) => join(dir, f)).filter(existsSync)).map((f) => JSON.parse(readFileSync(f, 'utf8')));
if (!runs.length) throw new Error(`no gemv.json in ${dirs.join(', ')}`);
const devices = new Set(runs.map((r) => r.device));
if (devices.size > 1) throw new Error(`runs on different cards: ${[...devices].join(', ')}`);
const path = opt('--out') ?? resultsPath(runs[0].device, 'decode-gemv');
// streaming kernels only (gemv_s…: the runtime's decode path, default plans and candidates)
const rows = (r: { gemv: (Row | null)[]; gemvA8: (Row | null)[] }) => [...r.gemv, ...r.gemvA8].filter((x): x is Row => x !== null && x.kernel.startsWith('gemv_s'));
const median = (xs: number[]) => (xs.length ? [...xs].sort((a, b) => a - b)[Math.floor((xs.length - 1) / 2)] : NaN);
const byKernel = new Map<string, Row[]>();
// Runs before gemv_bench forced PDL off timed the first streaming kernel of a pass started
// without TWLAC_PDL=0 with PDL on twice: that PDL-off time (equal to its PDL-on time within
// 0.3 %) is left out.
const pdlTwice = new Set<Row>();
for (const r of runs) {
  const first = rows(r).find((x) => x.usWithPdl > 0);
  if (first && Math.abs(first.us - first.usWithPdl) <= 0.003 * first.usWithPdl) pdlTwice.add(first);
  for (const x of rows(r)) byKernel.set(x.kernel, [...(byKernel.get(x.kernel) ?? []), x]);
}
const shapes = [...new Set([...byKernel.values()].map((xs) => `${xs[0].n}x${xs[0].k}`))];
const out = {
  ...resultHeader('decode GEMV (M = 1, streaming kernels) against cuBLAS fp16', runs[0].device, 'bash scripts/device/run-gemv.sh; npx tsx scripts/device/merge-gemv-a8.ts <device out>...'),
  copyGBs: runs[0].copyGBs,
  commands: {
    prepare: 'npx tsx scripts/device/gen-gemv-bench.ts --a8-tune',
    device: 'bash scripts/device/run-gemv.sh; cd .device/cuda && ./gemv_bench . $OUT/gemv2.json sa8   (carry .device/cuda)',
    merge: 'npx tsx scripts/device/merge-gemv-a8.ts <device out>... [--decode LOG]',
  },
  runs: runs.length,
  note: 'M = 1, tq2_g128; gemv_sa8_* = int8 activation codes, gemv_s_* = fp16 activations. gemv_s(a8)_<shape> = the default plan (kernels/gemv-stream.ts), suffix rRwWkKuU = an explicit plan (rows a warp, warps, K-split warps, chunks in flight), then bB = bulk loads into shared memory landing in B phases (a bare b, from the first runs, is one phase). A trailing xsm (a plan since removed) or xb: the activations too go through shared memory, copied by the threads (xsm) or by bulk copies a phase (xb, as the default plans do beyond K = 8192). samples = timings over all runs (each run times every kernel it has once). us = median over the samples of the per-launch time in a CUDA graph over rotating buffers (>= 400 MB, no L2 reuse), withPdl = the same with programmatic dependent launch on, as inside the runtime. Ratios are against cuBLAS fp16 (cublasGemmEx) of the same run.',
  checksFailed: runs.map((r) => r.failures),
  shapes: Object.fromEntries(
    shapes.map((sh) => {
      const ks = [...byKernel.entries()].filter(([, xs]) => `${xs[0].n}x${xs[0].k}` === sh);
      return [
        sh,
        ks.map(([kernel, xs]) => {
          const cub = median(xs.map((x) => x.cublasFp16Us));
          const us = median(xs.filter((x) => !pdlTwice.has(x)).map((x) => x.us));
          const pdl = median(xs.map((x) => x.usWithPdl));
          return { kernel, samples: xs.length, us, usWithPdl: pdl, cublasFp16Us: cub, speedup: +(cub / us).toFixed(3), speedupWithPdl: +(cub / pdl).toFixed(3), GBsWithPdl: +(xs[0].bytes / (pdl * 1e3)).toFixed(1) };
        }),
      ];
    }),
  ),
  decode: opt('--decode') ? readFileSync(opt('--decode')!, 'utf8').split('\n').filter((l) => /^(==|\{)/.test(l)) : undefined,
};
writeFileSync(path, JSON.stringify(out, null, 1) + '\n');
console.log(`wrote ${path}`);
for (const [sh, ks] of Object.entries(out.shapes)) for (const k of ks) console.log(sh.padEnd(11), k.kernel.padEnd(60), k.us.toFixed(2).padStart(7), k.usWithPdl.toFixed(2).padStart(7), `${k.speedup}x`.padStart(7), `${k.speedupWithPdl}x`.padStart(7));
