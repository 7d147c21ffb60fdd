// KOTMS on the fixture: time of all 24 transform sites, and the ternary rounding error of
// the rotated weights (absmean RTN and E2M-ATQ's init quantiser) for the start and step-size variants.
// Usage: npx tsx bench/kotms.ts [--variants] [--blocks N] [--entries N] [--json out.json]
import { writeFileSync } from 'node:fs';
import { resolve } from 'node:path';
import { loadModel } from '../src/graph/onnx.ts';
import { rotateWeight } from '../src/quant/kron.ts';
import { KOTMS_DEFAULTS, optimiseKotms, ternaryRelError, type KotmsOptions } from '../src/quant/kotms.ts';

const args = process.argv.slice(2);
const variants = args.includes('--variants');
const blocks = args.includes('--blocks') ? Number(args[args.indexOf('--blocks') + 1]) : 6;
const entries = args.includes('--entries') ? Number(args[args.indexOf('--entries') + 1]) : undefined;
const jsonOut = args.includes('--json') ? args[args.indexOf('--json') + 1] : undefined;
const fixture = resolve(import.meta.dirname, '../../shared/models/pydocs-llama-12m/model.onnx');
const model = loadModel(fixture);

// Linears in graph order: MatMul(x, Wt) with a 2-D initializer Wt [in, out].
const linears: { input: string; name: string; W: Float64Array; out: number; in: number }[] = [];
for (const node of model.graph.nodes) {
  if (node.opType !== 'MatMul') continue;
  const w = node.input(1);
  const t = w?.constValue;
  if (!t || t.dims.length !== 2 || t.dims[1] === 4096) continue;
  const [inDim, out] = t.dims as number[];
  const Wt = t.toFloat32();
  const W = new Float64Array(out * inDim);
  for (let i = 0; i < inDim; i++) for (let o = 0; o < out; o++) W[o * inDim + i] = Wt[i * out + o];
  linears.push({ input: node.input(0)!.name, name: w!.name, W, out, in: inDim });
}
// Sites: linears grouped by the value they read.
const sites = new Map<string, typeof linears>();
for (const l of linears) sites.set(l.input, [...(sites.get(l.input) ?? []), l]);
const siteList = [...sites.values()].slice(0, blocks * 4);
console.log(`${siteList.length} sites: ${siteList.map((s) => s.map((l) => `${l.out}x${l.in}`).join('+')).join(', ')}`);

function errors(site: typeof linears, res?: ReturnType<typeof optimiseKotms>): { absmean: number; e2m: number } {
  let a = 0, e = 0, norm = 0;
  for (const l of site) {
    const W = res ? rotateWeight(l.W, l.out, res.shape, res.B, res.C) : l.W;
    let nn = 0;
    for (const x of l.W) nn += x * x;
    a += ternaryRelError(W, l.out, l.in, 'absmean') ** 2 * nn;
    e += ternaryRelError(W, l.out, l.in, 'e2m-init') ** 2 * nn;
    norm += nn;
  }
  return { absmean: Math.sqrt(a / norm), e2m: Math.sqrt(e / norm) };
}

const configs: [string, KotmsOptions][] = variants
  ? [
      ['trigauss/identity/131k-per-step', { init: 'identity', maxEntriesPerStep: 131072 }],
      ['trigauss/identity/full-batch', { init: 'identity', maxEntriesPerStep: Infinity }],
      ['trigauss/identity/32k-per-step', { init: 'identity', maxEntriesPerStep: 32768 }],
      ['trigauss/random', { init: 'random' }],
      ['random rotation only (0 iters)', { init: 'random', iterations: 0 }],
    ]
  : [[`trigauss/${KOTMS_DEFAULTS.init}`, { ...(entries ? { maxEntriesPerStep: entries } : {}) }]];
const results: Record<string, unknown> = {};
const base = siteList.map((s) => errors(s));
const mean = (xs: number[]) => xs.reduce((a, b) => a + b, 0) / xs.length;
console.log(`unrotated: absmean ${mean(base.map((b) => b.absmean)).toFixed(4)}  e2m-init ${mean(base.map((b) => b.e2m)).toFixed(4)} (mean over sites)`);
for (const [label, opts] of configs) {
  const t0 = performance.now();
  const cpu0 = process.cpuUsage();
  const per = siteList.map((s) => {
    const res = optimiseKotms(s[0].in, s.map((l) => ({ weight: l.W, outDim: l.out })), opts);
    return { ms: res.ms, shape: res.shape, before: res.objectiveBefore, after: res.objectiveAfter, mixing: res.mixing, ...errors(s, res) };
  });
  const total = performance.now() - t0;
  const cpu = process.cpuUsage(cpu0);
  const cpuS = (cpu.user + cpu.system) / 1e6;
  console.log(`${label}: ${(total / 1000).toFixed(1)} s wall, ${cpuS.toFixed(1)} s CPU; absmean ${mean(per.map((p) => p.absmean)).toFixed(4)}  e2m-init ${mean(per.map((p) => p.e2m)).toFixed(4)}`);
  for (let i = 0; i < Math.min(4, per.length); i++) {
    const p = per[i];
    console.log(`  site ${i} ${p.shape.l}x${p.shape.r} ${p.ms.toFixed(0)} ms obj ${p.before.toFixed(3)}→${p.after.toFixed(3)} absmean ${base[i].absmean.toFixed(4)}→${p.absmean.toFixed(4)} e2m ${base[i].e2m.toFixed(4)}→${p.e2m.toFixed(4)} π ${p.mixing.map((x) => x.toFixed(2)).join('/')}`);
  }
  results[label] = { wallMs: total, cpuS, sites: per };
}
if (jsonOut) writeFileSync(jsonOut, JSON.stringify({ base, results }, null, 1));
