// Timing of the ternary weight fitters on the fixture's two linear shapes (1024×384 as
// gate/up, 384×1024 as down) with a synthetic correlated H. Reports wall and CPU seconds
// (the machine is shared, CPU time is the steadier figure), an estimate for the whole
// fixture (6 blocks × {q,k,v,o: 384×384/128×384, gate, up, down}), and writes JSON.
//   npx tsx bench/quant.ts [structures=rtn,kernel,twla]
import { mkdirSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { dampedUpperCholeskyOfInverse, gaussian, rng, syntheticHessian } from '../src/quant/linalg.ts';
import { quantizeLinear, type QuantizeLinearOptions, type WeightStructure } from '../src/quant/quantize-linear.ts';
import { cpuDevice, resultHeader } from './result-header.ts';

const structures = (process.argv[2] ?? 'rtn,kernel,twla').split(',') as WeightStructure[];
const shapes: [number, number][] = [[1024, 384], [384, 1024]];
const opts: Record<WeightStructure, QuantizeLinearOptions> = {
  rtn: { structure: 'rtn', gptq: false, xDomain: false },
  kernel: { structure: 'kernel', group: 128, shift: true, gptq: true, xDomain: true, refit: true },
  twla: { structure: 'twla', gptq: true, xDomain: true },
};

function timed<T>(f: () => T): { r: T; wall: number; cpu: number } {
  const c0 = process.cpuUsage(), t0 = performance.now();
  const r = f();
  const c = process.cpuUsage(c0);
  return { r, wall: (performance.now() - t0) / 1000, cpu: (c.user + c.system) / 1e6 };
}

const out: Record<string, unknown> = {};
for (const [N, K] of shapes) {
  const g = gaussian(rng(N + K));
  const w = Float32Array.from({ length: N * K }, () => 0.05 * g());
  const h = syntheticHessian(K, 7);
  const f = timed(() => dampedUpperCholeskyOfInverse(h, K));
  console.log(`${N}x${K}: upper Cholesky of H⁻¹ (K=${K}): wall ${f.wall.toFixed(3)} s, cpu ${f.cpu.toFixed(3)} s`);
  out[`${N}x${K}/factor`] = { wall: f.wall, cpu: f.cpu };
  for (const s of structures) {
    const q = timed(() => quantizeLinear(w, N, K, h, opts[s]));
    console.log(`${N}x${K}: ${s.padEnd(6)} wall ${q.wall.toFixed(2)} s, cpu ${q.cpu.toFixed(2)} s, ${q.r.stats.bitsPerWeight.toFixed(3)} bits/weight`);
    out[`${N}x${K}/${s}`] = { wall: q.wall, cpu: q.cpu, bitsPerWeight: q.r.stats.bitsPerWeight };
  }
}
// Whole fixture: per block q,o 384×384; k,v 128×384; gate,up 1024×384; down 384×1024.
// Time scales ~linearly in N for a fixed K, so per block ≈ (384·2+128·2+1024·2)/1024 × t(1024×384) + t(384×1024).
for (const s of structures) {
  const a = out[`1024x384/${s}`] as { cpu: number } | undefined, b = out[`384x1024/${s}`] as { cpu: number } | undefined;
  if (!a || !b) continue;
  const est = 6 * ((3072 / 1024) * a.cpu + b.cpu);
  console.log(`estimated whole fixture (42 linears), ${s}: ${est.toFixed(0)} cpu-seconds`);
  out[`fixtureEstimate/${s}`] = est;
}
mkdirSync(join(import.meta.dirname, 'results'), { recursive: true });
writeFileSync(join(import.meta.dirname, 'results/quant.json'), JSON.stringify({ ...resultHeader('ternary fit time per linear and structure', cpuDevice(), 'npm run bench:quant'), results: out }, null, 1));
