// The fits of one LLaMA-shaped block (q, k, v, o; gate, up; down) given synthetic Hessians,
// as the ternary pass runs them (src/quant/fit-block.ts), two ways side by side in one process
// and one pool of worker threads:
//   whole:  every linear one job with its own GPTQ factor of its site's H (before);
//   shared: one factor a site, made once for its linears, and linears larger than a thread's
//           share of the block fitted in row slices (now).
// Both must write the same bytes (checked here); reports wall and CPU seconds (all threads) of
// each, best of --reps, and writes bench/results/fit-block.json.
//   npx tsx bench/fit-block.ts [--hidden 768] [--intermediate 2048] [--threads N] [--reps 1]
import { writeFileSync } from 'node:fs';
import { FitPool, defaultFitThreads, sharedFloat64 } from '../src/quant/fit-pool.ts';
import { fitBlock, type BlockFitSite } from '../src/quant/fit-block.ts';
import { gaussian, rng, syntheticHessian } from '../src/quant/linalg.ts';
import { parseFormatId } from '../src/formats/ternary.ts';
import { cpuDevice, resultHeader } from './result-header.ts';

const arg = (name: string, dflt: number) => {
  const i = process.argv.indexOf(`--${name}`);
  return i > 0 ? Number(process.argv[i + 1]) : dflt;
};
const hidden = arg('hidden', 768), inter = arg('intermediate', 2048), threads = arg('threads', defaultFitThreads()), reps = arg('reps', 1);
const g = gaussian(rng(11));
const weights = (rows: number, cols: number) => Float32Array.from({ length: rows * cols }, () => 0.02 * g() * (1 + 0.5 * g() ** 2));
const hess = (n: number, seed: number) => {
  const h = syntheticHessian(n, seed);
  const s = sharedFloat64(n * n);
  s.set(h);
  return s;
};
const sites: BlockFitSite[] = [
  { H: hess(hidden, 1), cols: hidden, linears: [hidden, hidden, hidden].map((r) => ({ w: weights(r, hidden), rows: r })) },
  { H: hess(hidden, 2), cols: hidden, linears: [{ w: weights(hidden, hidden), rows: hidden }] },
  { H: hess(hidden, 3), cols: hidden, linears: [inter, inter].map((r) => ({ w: weights(r, hidden), rows: r })) },
  { H: hess(inter, 4), cols: inter, linears: [{ w: weights(hidden, inter), rows: hidden }] },
];
const f = parseFormatId('tq1_g128_lat');
const fit = { structure: 'kernel' as const, group: f.group, shift: f.shift, packing: f.packing, lattice: f.lattice, gptq: true, xDomain: true };
const pool = await FitPool.open(threads);
const cpu = () => {
  const u = process.cpuUsage();
  return (u.user + u.system) / 1e6;
};
const runs: Record<string, { wallSeconds: number; cpuSeconds: number; jobs: number }> = {};
let codes: Record<string, Buffer> = {};
for (let r = 0; r < reps; r++) {
  for (const mode of ['whole', 'shared'] as const) {
    let jobs = 0;
    const t0 = performance.now(), c0 = cpu();
    const out = await fitBlock(pool, sites, fit, { measureBudget: 2 ** 28, share: mode === 'shared', onStage: (s, n) => (jobs += s === 'fits' ? n : 0) });
    const wall = (performance.now() - t0) / 1000, c = cpu() - c0;
    console.log(`${mode}: ${wall.toFixed(1)} s wall, ${c.toFixed(1)} s CPU, ${jobs} fit jobs`);
    if (!runs[mode] || wall < runs[mode].wallSeconds) runs[mode] = { wallSeconds: +wall.toFixed(2), cpuSeconds: +c.toFixed(2), jobs };
    codes[mode] = Buffer.concat(out.flat().flatMap((x) => [Buffer.from(x.weights!.codes), Buffer.from(x.weights!.scales.buffer), Buffer.from(x.weights!.shifts!.buffer)]));
  }
  if (!codes.whole.equals(codes.shared)) throw new Error('the two schedules wrote different weights');
  codes = {};
}
await pool.close();
const result = {
  ...resultHeader('one block of ternary fits (GPTQ + E2M-ATQ, tq1_g128_lat), LLaMA-shaped linears on synthetic Hessians', cpuDevice()),
  shape: { hidden, intermediate: inter },
  threads,
  reps,
  runs,
  sameBytes: true,
  wallRatio: +(runs.whole.wallSeconds / runs.shared.wallSeconds).toFixed(2),
  cpuRatio: +(runs.whole.cpuSeconds / runs.shared.cpuSeconds).toFixed(2),
  note: 'whole: one job a linear, each making its own GPTQ factor (O(cols³)) of its site\'s H; shared: one factor a site for its linears, and linears larger than a thread\'s share of the block fitted in row slices. Same bytes (checked).',
};
writeFileSync('bench/results/fit-block.json', JSON.stringify(result, null, 1) + '\n');
console.log(JSON.stringify({ runs, wallRatio: result.wallRatio, cpuRatio: result.cpuRatio }));
