// Clip search on real activations: the fixture's linear inputs captured on calibration
// text (train.txt only), searched at 2/4/6/8 bits, exhaustive against coarse-to-fine.
// Prints per site the chosen ratio, the output error relative to no clipping, whether the
// two strategies agree, and the time of each.
// Usage: npx tsx bench/act-clip.ts [--rows 256] [--blocks 6] [--json out.json]
import { readFileSync, writeFileSync } from 'node:fs';
import { resolve } from 'node:path';
import { captureSites, type CaptureSite } from '../src/calib/capture.ts';
import { calibrationSegments } from '../src/calib/data.ts';
import { loadTokenizer, tokenizeText } from '../src/eval/tokenizer.ts';
import { loadModel } from '../src/graph/onnx.ts';
import { searchClip } from '../src/quant/act-quant.ts';

const args = process.argv.slice(2);
const flag = (name: string, dflt: number) => (args.includes(name) ? Number(args[args.indexOf(name) + 1]) : dflt);
const rows = flag('--rows', 256);
const blocks = flag('--blocks', 6);
const jsonOut = args.includes('--json') ? args[args.indexOf('--json') + 1] : undefined;
const shared = resolve(import.meta.dirname, '../../shared');
const model = loadModel(`${shared}/models/pydocs-llama-12m/model.onnx`);
const tok = loadTokenizer(`${shared}/models/pydocs-llama-12m/tokenizer.json`);
const ids = tokenizeText(tok, readFileSync(`${shared}/data/pydocs/train.txt`, 'utf8').slice(0, 400_000));
const segments = calibrationSegments(ids, { samples: 16, seq: 256, seed: 0 });

// Sites: the value each group of linears reads, with the linears' W [out, in].
const bySite = new Map<string, { site: CaptureSite; linears: { weight: Float64Array; outDim: number }[] }>();
for (const node of model.graph.nodes) {
  const t = node.input(1)?.constValue;
  if (node.opType !== 'MatMul' || !t || t.dims.length !== 2 || t.dims[1] === 4096) continue;
  const [inDim, out] = t.dims as number[];
  const Wt = t.toFloat32();
  const W = new Float64Array(out * inDim);
  for (let i = 0; i < inDim; i++) for (let o = 0; o < out; o++) W[o * inDim + i] = Wt[i * out + o];
  const x = node.input(0)!;
  if (!bySite.has(x.name)) bySite.set(x.name, { site: { id: `s${bySite.size}`, value: x, width: inDim }, linears: [] });
  bySite.get(x.name)!.linears.push({ weight: W, outDim: out });
}
const sites = [...bySite.values()].slice(0, blocks * 4);
const stats = await captureSites(model, sites.map((s) => s.site), segments, { sampleRows: rows });

const results: unknown[] = [];
let agree = 0;
let total = 0;
const time = { exhaustive: 0, coarse: 0 };
for (const s of sites) {
  const st = stats.get(s.site.id)!;
  const line: string[] = [];
  for (const bits of [2, 4, 6, 8]) {
    let t0 = performance.now();
    const full = searchClip(st.samples!, st.sampleRows, s.site.width, s.linears, bits, { strategy: 'exhaustive' });
    time.exhaustive += performance.now() - t0;
    t0 = performance.now();
    const fast = searchClip(st.samples!, st.sampleRows, s.site.width, s.linears, bits);
    time.coarse += performance.now() - t0;
    total++;
    if (fast.clip === full.clip) agree++;
    line.push(`A${bits} ρ ${full.clip.toFixed(3)}${fast.clip === full.clip ? '' : ` (c2f ${fast.clip.toFixed(3)}, +${((fast.mse / full.mse - 1) * 100).toFixed(2)}%)`} err×${(full.mse / full.mseNoClip).toFixed(3)}`);
    results.push({ site: s.site.id, width: s.site.width, outs: s.linears.map((l) => l.outDim), bits, exhaustive: full, coarseToFine: fast });
  }
  console.log(`${s.site.id} in ${s.site.width} → ${s.linears.map((l) => l.outDim).join('+')}: ${line.join(' | ')}`);
}
console.log(`coarse-to-fine picked the exhaustive ratio in ${agree}/${total} searches; time ${(time.exhaustive / 1000).toFixed(1)} s exhaustive vs ${(time.coarse / 1000).toFixed(1)} s coarse-to-fine (${rows} token rows per site)`);
if (jsonOut) writeFileSync(jsonOut, JSON.stringify({ rows, agree, total, timeMs: time, results }, null, 1));
