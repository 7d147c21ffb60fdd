// Proxy for the ternary structures on the real fixture: the weights of a few blocks of
// pydocs-llama-12m and their real proxy Hessians H = 2XᵀX/n, measured by onnxruntime on
// calibration text (train.txt only), on the fp32 model. Reports the relative output error
// ‖(W−Ŵ)Xᵀ‖²/‖WXᵀ‖² per structure and option set, bits/weight and time, and writes JSON.
// 'method' is METHOD.md's E2M-ATQ inside GPTQ; '+refit' refits (μ, α) under GPTQ's block
// metric once the trits are final; '+cd' adds trit coordinate descent; then act-order
// inside groups and the per-row scale pass search; 'default' adds the whole-row refinement
// under the full H after GPTQ (the kernel defaults).
//   npx tsx bench/quant-proxy.ts [blocks=0,3,5] [segments=32]
import { mkdirSync, readFileSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { captureSites, hessian } from '../src/calib/capture.ts';
import { calibrationSegments } from '../src/calib/data.ts';
import { loadTokenizer, tokenizeText } from '../src/eval/tokenizer.ts';
import { loadModel } from '../src/graph/onnx.ts';
import { recognize, weightRows } from '../src/graph/recognize.ts';
import { quantizeLinear, type QuantizeLinearOptions } from '../src/quant/quantize-linear.ts';
import { cpuDevice, resultHeader } from './result-header.ts';

const root = join(import.meta.dirname, '..');
const modelDir = join(root, '../shared/models/pydocs-llama-12m');
const blocks = (process.argv[2] ?? '0,3,5').split(',').map(Number);
const nseg = Number(process.argv[3] ?? 32);

const configs: [string, QuantizeLinearOptions][] = [
  ['rtn (absmean, per row)', { structure: 'rtn', gptq: false, xDomain: false }],
  ['kernel g128 euclid only', { structure: 'kernel', gptq: false, xDomain: false }],
  ['kernel g128 euclid+x', { structure: 'kernel', gptq: false, xDomain: true }],
  ['kernel g128 method (gptq+x)', { structure: 'kernel', gptq: true, xDomain: true, refit: false, actOrder: false }],
  ['kernel g128 +refit', { structure: 'kernel', gptq: true, xDomain: true, actOrder: false, passes: [], sweeps: 0, globalRounds: 0 }],
  ['kernel g128 +refit+cd', { structure: 'kernel', gptq: true, xDomain: true, actOrder: false, passes: [], globalRounds: 0 }],
  ['kernel g128 +act-order+passes', { structure: 'kernel', gptq: true, xDomain: true, globalRounds: 0 }],
  ['kernel g128 default', { structure: 'kernel', gptq: true, xDomain: true }],
  ['kernel g128 noshift default', { structure: 'kernel', shift: false, gptq: true, xDomain: true }],
  ['kernel g64 default', { structure: 'kernel', group: 64, gptq: true, xDomain: true }],
  ['twla gptq+x', { structure: 'twla', gptq: true, xDomain: true }],
];

const model = loadModel(join(modelDir, 'model.onnx'));
const st = recognize(model);
const tok = loadTokenizer(join(modelDir, 'tokenizer.json'));
const text = readFileSync(join(root, '../shared/data/pydocs/train.txt'), 'utf8').slice(0, 400_000);
const segs = calibrationSegments(tokenizeText(tok, text), { samples: nseg, seq: 256, seed: 1 });
const results: Record<string, { rel: number[]; bits: number; weights: number; seconds: number }> = {};
for (const [name] of configs) results[name] = { rel: [], bits: 0, weights: 0, seconds: 0 };
for (const bi of blocks) {
  const b = st.blocks[bi];
  const lins = [b.q, b.k, b.v, b.o, ...(b.gate ? [b.gate] : []), b.up, b.down];
  const sites = lins.map((l, i) => ({ id: String(i), value: l.node.input(0)!, width: l.inFeatures }));
  const stats = await captureSites(model, sites, segs);
  lins.forEach((l, i) => {
    const H = hessian(stats.get(String(i))!);
    const w = weightRows(l);
    const line: string[] = [];
    for (const [name, o] of configs) {
      const r = quantizeLinear(w, l.outFeatures, l.inFeatures, H, { ...o, measure: true });
      const R = results[name];
      R.rel.push(r.stats.relOutputError!);
      R.bits += r.storageBits;
      R.weights += w.length;
      R.seconds += r.stats.seconds;
      line.push(`${name}=${r.stats.relOutputError!.toFixed(4)}`);
    }
    console.log(`block ${bi} ${l.role} [${l.outFeatures}x${l.inFeatures}]: ${line.join('  ')}`);
  });
}
console.log('\nstructure / options               bits/w   mean rel out err   geo-mean   seconds');
const summary: Record<string, unknown> = {};
for (const [name] of configs) {
  const R = results[name];
  const mean = R.rel.reduce((a, b) => a + b, 0) / R.rel.length;
  const geo = Math.exp(R.rel.reduce((a, b) => a + Math.log(b), 0) / R.rel.length);
  console.log(`${name.padEnd(32)} ${(R.bits / R.weights).toFixed(3)}   ${mean.toFixed(4)}             ${geo.toFixed(4)}     ${R.seconds.toFixed(1)}`);
  summary[name] = { bitsPerWeight: R.bits / R.weights, meanRelOutErr: mean, geoMeanRelOutErr: geo, seconds: R.seconds, perLinear: R.rel };
}
mkdirSync(join(root, 'bench/results'), { recursive: true });
writeFileSync(join(root, 'bench/results/quant-proxy.json'), JSON.stringify({ ...resultHeader('output-error proxy of the weight structures on fixture blocks', cpuDevice(), `npm run bench:quant-proxy -- ${process.argv.slice(2).join(' ')}`), blocks, segments: nseg, seq: 256, summary }, null, 1));
