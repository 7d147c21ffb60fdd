// Does the KOTMS rotation help activation quantisation? For block 0..N−1's sites, capture
// calibration activations (train.txt), learn the transform with an identity start (the
// METHOD's Cayley at A = 0) and with a random orthogonal start, and compare the linears'
// relative output error Σ‖W′(Q(x′) − x′)‖² / Σ‖W x‖² at 4 and 6 bits (ρ = 1, no clip search),
// next to the ternary weight error of each.
// Usage: npx tsx bench/kotms-acts.ts [--blocks 1] [--rows 256] [--json out.json]
import { readFileSync, writeFileSync } from 'node:fs';
import { resolve } from 'node:path';
import { captureSites, type CaptureSite } from '../src/calib/capture.ts';
import { calibrationSegments } from '../src/calib/data.ts';
import { loadTokenizer, tokenizeText } from '../src/eval/tokenizer.ts';
import { loadModel } from '../src/graph/onnx.ts';
import { actQuantRows } from '../src/quant/act-quant.ts';
import { kronMulRows, rotateWeight } from '../src/quant/kron.ts';
import { gemmABt, optimiseKotms, ternaryRelError } from '../src/quant/kotms.ts';

const args = process.argv.slice(2);
const flag = (name: string, dflt: number) => (args.includes(name) ? Number(args[args.indexOf(name) + 1]) : dflt);
const rows = flag('--rows', 256);
const blocks = flag('--blocks', 1);
const jsonOut = args.includes('--json') ? args[args.indexOf('--json') + 1] : undefined;
const records: unknown[] = [];
const shared = resolve(import.meta.dirname, '../../shared');
const model = loadModel(`${shared}/models/pydocs-llama-12m/model.onnx`);
const tok = loadTokenizer(`${shared}/models/pydocs-llama-12m/tokenizer.json`);
const ids = tokenizeText(tok, readFileSync(`${shared}/data/pydocs/train.txt`, 'utf8').slice(0, 400_000));
const segments = calibrationSegments(ids, { samples: 16, seq: 256, seed: 0 });

const bySite = new Map<string, { site: CaptureSite; linears: { W: Float64Array; out: number }[] }>();
for (const node of model.graph.nodes) {
  const t = node.input(1)?.constValue;
  if (node.opType !== 'MatMul' || !t || t.dims.length !== 2 || t.dims[1] === 4096) continue;
  const [inDim, out] = t.dims as number[];
  const Wt = t.toFloat32();
  const W = new Float64Array(out * inDim);
  for (let i = 0; i < inDim; i++) for (let o = 0; o < out; o++) W[o * inDim + i] = Wt[i * out + o];
  const x = node.input(0)!;
  if (!bySite.has(x.name)) bySite.set(x.name, { site: { id: `s${bySite.size}`, value: x, width: inDim }, linears: [] });
  bySite.get(x.name)!.linears.push({ W, out });
}
const sites = [...bySite.values()].slice(0, blocks * 4);
const stats = await captureSites(model, sites.map((s) => s.site), segments, { sampleRows: rows });

/** Σ‖W e‖² over token rows of e [n, in]. */
function outEnergy(W: Float64Array, out: number, inDim: number, e: Float64Array, n: number): number {
  const F = new Float64Array(n * out);
  gemmABt(e, W, F, n, out, inDim);
  let s = 0;
  for (const v of F) s += v * v;
  return s;
}

for (const s of sites) {
  const st = stats.get(s.site.id)!;
  const n = st.sampleRows;
  const inDim = s.site.width;
  const X = Float64Array.from(st.samples!.subarray(0, n * inDim));
  const ref = s.linears.reduce((a, l) => a + outEnergy(l.W, l.out, inDim, X, n), 0);
  const line: string[] = [];
  for (const init of ['none', 'identity', 'random'] as const) {
    const res = init === 'none' ? undefined : optimiseKotms(inDim, s.linears.map((l) => ({ weight: l.W, outDim: l.out })), { init });
    const Xr = res ? kronMulRows(X, n, res.shape, res.B, res.C) : X;
    const Ws = s.linears.map((l) => (res ? rotateWeight(l.W, l.out, res.shape, res.B, res.C) : l.W));
    let wErr = 0, wNorm = 0;
    s.linears.forEach((l, i) => {
      let nn = 0;
      for (const v of l.W) nn += v * v;
      wErr += ternaryRelError(Ws[i], l.out, inDim, 'e2m-init') ** 2 * nn;
      wNorm += nn;
    });
    const parts = [`W-tern ${Math.sqrt(wErr / wNorm).toFixed(4)}`];
    for (const bits of [4, 6]) {
      const q = actQuantRows(Xr, n, inDim, bits, 1);
      const e = new Float64Array(n * inDim);
      for (let i = 0; i < e.length; i++) e[i] = q[i] - Xr[i];
      const err = s.linears.reduce((a, l, i) => a + outEnergy(Ws[i], l.out, inDim, e, n), 0);
      parts.push(`A${bits} ${(err / ref).toExponential(2)}`);
      records.push({ site: s.site.id, in: inDim, outs: s.linears.map((l) => l.out), init, bits, relOutputError: err / ref, weightTernaryError: Math.sqrt(wErr / wNorm) });
    }
    line.push(`${init}: ${parts.join(' ')}`);
  }
  console.log(`${s.site.id} in ${inDim} → ${s.linears.map((l) => l.out).join('+')} | ${line.join(' | ')}`);
}
if (jsonOut) writeFileSync(jsonOut, JSON.stringify({ rows, records }, null, 1));
