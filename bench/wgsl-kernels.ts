// Benchmark (not a test): the WGSL ternary GEMV (decode, M = 1) against onnxruntime-node's
// own WebGPU execution provider running com.microsoft::MatMulNBits bits=2 on the same
// adapter and shape, side by side in one process. Both sides are timed the same way: write
// the activation, run, read the output back (what ORT's session.run does). GB/s counts the
// weight bytes each side reads (codes + scales [+ shifts / zero points]).
//   npx tsx bench/wgsl-kernels.ts [--reps 20] [--out bench/results/wgsl-swiftshader.json]
import { writeFileSync } from 'node:fs';
import * as ort from 'onnxruntime-node';
import { rng } from '../src/artifact/random.ts';
import { layoutEntries, NO_FEATURES, type WgslFeatures, type WgslKernel } from '../src/codegen/wgsl/fragments.ts';
import { denseLinearKernel, ternaryLayout, ternaryLinearKernel } from '../src/codegen/wgsl/kernels.ts';
import { decodeTernary, encodeTernary, groupsPerRow, storageBytes, ternaryFormat, type TernaryFormat } from '../src/formats/ternary.ts';
import { GraphBuilder } from '../src/graph/builder.ts';
import { encodeModel } from '../src/graph/onnx.ts';
import { floatToHalf } from '../src/graph/tensor.ts';
import { matmulNBitsTensors } from '../src/lower/ternary-linear.ts';
import { nodeDevice } from '../src/runtime/webgpu/node.ts';
import { resultHeader } from './result-header.ts';

const arg = (name: string, dflt: string) => {
  const i = process.argv.indexOf(`--${name}`);
  return i > 0 ? process.argv[i + 1] : dflt;
};
const REPS = Number(arg('reps', '20'));
const OUT = arg('out', 'bench/results/wgsl-swiftshader.json');

/** Decode shapes [N, K]: the fixture's q/o, k/v, gate/up, down, and one LLaMA-7B-sized q. */
const SHAPES: [string, number, number][] = [
  ['fixture q/o', 384, 384],
  ['fixture k/v', 128, 384],
  ['fixture gate/up', 1024, 384],
  ['fixture down', 384, 1024],
  ['7B q', 4096, 4096],
];

const median = (a: number[]) => [...a].sort((x, y) => x - y)[Math.floor(a.length / 2)];

const { device, adapter, backend } = await nodeDevice();
const rand = rng(5);

async function timeWgsl(k: WgslKernel, weights: Uint8Array, x: Float32Array, rows: number): Promise<{ ms: number; y: Float32Array }> {
  const buf = (bytes: number, usage: number) => device.createBuffer({ size: Math.ceil(bytes / 16) * 16 + 16, usage });
  const W = buf(weights.byteLength, 0x80 | 0x08);
  const padded = new Uint8Array(Math.ceil(weights.byteLength / 4) * 4);
  padded.set(weights);
  device.queue.writeBuffer(W, 0, padded);
  const X = buf(x.byteLength, 0x80 | 0x08);
  const Y = buf(rows * 4, 0x80 | 0x04);
  const R = buf(rows * 4, 0x01 | 0x08);
  const step = buf(16, 0x40 | 0x08);
  device.queue.writeBuffer(step, 0, new Uint32Array([0, 1, 0, 0]));
  const bgl = device.createBindGroupLayout({ entries: layoutEntries(k) });
  const pipeline = await device.createComputePipelineAsync({
    layout: device.createPipelineLayout({ bindGroupLayouts: [bgl] }),
    compute: { module: device.createShaderModule({ code: k.source() }), entryPoint: 'main' },
  });
  const bind = device.createBindGroup({ layout: bgl, entries: [W, X, Y, step].map((buffer, binding) => ({ binding, resource: { buffer } })) });
  const run = async () => {
    device.queue.writeBuffer(X, 0, x);
    const enc = device.createCommandEncoder();
    const pass = enc.beginComputePass();
    pass.setPipeline(pipeline);
    pass.setBindGroup(0, bind);
    pass.dispatchWorkgroups(...k.dispatch(1));
    pass.end();
    enc.copyBufferToBuffer(Y, 0, R, 0, rows * 4);
    device.queue.submit([enc.finish()]);
    await R.mapAsync(1, 0, rows * 4);
    const y = new Float32Array(R.getMappedRange(0, rows * 4).slice(0));
    R.unmap();
    return y;
  };
  let y = await run();
  const times: number[] = [];
  for (let i = 0; i < REPS; i++) {
    const t = performance.now();
    y = await run();
    times.push(performance.now() - t);
  }
  [W, X, Y, R, step].forEach((b) => b.destroy());
  return { ms: median(times), y };
}

async function timeOrt(w: ReturnType<typeof encodeTernary>, x: Float32Array): Promise<{ ms: number; y: Float32Array; bytes: number }> {
  const t = matmulNBitsTensors(w, 'float32');
  const b = new GraphBuilder();
  const xin = b.input('x', { dtype: 'float32', shape: [1, w.cols] });
  const inputs = [xin, b.init('B', t.codes), b.init('scales', t.scales), ...(t.zeroPoints ? [b.init('zp', t.zeroPoints)] : [])];
  b.output(b.op('MatMulNBits', inputs, { domain: 'com.microsoft', attrs: t.attrs }), 'y');
  const s = await ort.InferenceSession.create(encodeModel(b.model(18, [{ domain: 'com.microsoft', version: 1 }])), { executionProviders: ['webgpu'] });
  const feeds = { x: new ort.Tensor('float32', x, [1, w.cols]) };
  let y = (await s.run(feeds)).y.data as Float32Array;
  const times: number[] = [];
  for (let i = 0; i < REPS; i++) {
    const t0 = performance.now();
    y = (await s.run(feeds)).y.data as Float32Array;
    times.push(performance.now() - t0);
  }
  await s.release();
  return { ms: median(times), y, bytes: t.codes.byteLength + t.scales.byteLength + (t.zeroPoints?.byteLength ?? 0) };
}

function maxRelErr(y: Float32Array, W: Float64Array, x: Float32Array, rows: number, cols: number): number {
  let worst = 0;
  for (let n = 0; n < rows; n++) {
    let s = 0, mag = 0;
    for (let k = 0; k < cols; k++) (s += W[n * cols + k] * x[k]), (mag += Math.abs(W[n * cols + k] * x[k]));
    worst = Math.max(worst, Math.abs(y[n] - s) / mag);
  }
  return worst;
}

interface Row {
  shape: string;
  N: number;
  K: number;
  format: string;
  features: string;
  wgsl_ms: number;
  wgsl_GBps: number;
  ort_ms: number;
  ort_GBps: number;
  speedup: number;
  wgsl_maxRelErr: number;
  ort_maxRelErr: number;
}

const rows: Row[] = [];
const formats: TernaryFormat[] = [ternaryFormat('bit2', 128, false), ternaryFormat('trit5', 128, false)];
const featureSets: WgslFeatures[] = device.features.has('subgroups') ? [NO_FEATURES, { subgroups: true }] : [NO_FEATURES];
console.log(`adapter: ${adapter} (${backend}); ${REPS} reps, median; ORT ${ort.env.versions?.common ?? ''} webgpu EP`);
for (const [shape, N, K] of SHAPES) {
  for (const f of formats) {
    const t = Int8Array.from({ length: N * K }, () => Math.floor(rand() * 3) - 1);
    const ng = groupsPerRow(f, K);
    const w = encodeTernary(f, N, K, t, Float32Array.from({ length: N * ng }, () => 0.01 + 0.05 * rand()));
    const W = decodeTernary(w);
    const x = Float32Array.from({ length: K }, () => rand() * 2 - 1);
    const L = ternaryLayout(f, N, K);
    const packed = new Uint8Array(L.words * 4);
    packed.set(w.codes, 0);
    packed.set(new Uint8Array(w.scales.buffer), L.scaleWord0 * 4);
    const o = await timeOrt(w, x);
    for (const feats of featureSets.slice(0, 1)) {
      const g = await timeWgsl(ternaryLinearKernel(f, N, K, 1, false, feats), packed, x, N);
      const bytes = storageBytes(f, N, K);
      const r: Row = {
        shape, N, K, format: f.id, features: feats.subgroups ? 'subgroups' : 'none',
        wgsl_ms: g.ms, wgsl_GBps: bytes / g.ms / 1e6, ort_ms: o.ms, ort_GBps: o.bytes / o.ms / 1e6,
        speedup: o.ms / g.ms, wgsl_maxRelErr: maxRelErr(g.y, W, x, N, K), ort_maxRelErr: maxRelErr(o.y, W, x, N, K),
      };
      rows.push(r);
      console.log(`${shape.padEnd(16)} ${N}x${K} ${f.id.padEnd(12)} wgsl ${r.wgsl_ms.toFixed(2)} ms (${r.wgsl_GBps.toFixed(3)} GB/s)  ort ${r.ort_ms.toFixed(2)} ms (${r.ort_GBps.toFixed(3)} GB/s)  ${r.speedup.toFixed(2)}x  err ${r.wgsl_maxRelErr.toExponential(1)}/${r.ort_maxRelErr.toExponential(1)}`);
    }
  }
}

// lm_head (dense fp16) at the fixture's shape, against ORT's MatMul on fp16 weights is not
// like for like (ORT would need an fp16 graph); report our GB/s alone.
const lmN = 4096, lmK = 384;
const lm = Uint16Array.from({ length: lmN * lmK }, () => floatToHalf(rand() - 0.5));
const lmX = Float32Array.from({ length: lmK }, () => rand() - 0.5);
const lmT = await timeWgsl(denseLinearKernel('float16', lmN, lmK, 1, false), new Uint8Array(lm.buffer), lmX, lmN);
console.log(`lm_head fp16 ${lmN}x${lmK}: ${lmT.ms.toFixed(2)} ms (${((lmN * lmK * 2) / lmT.ms / 1e6).toFixed(3)} GB/s)`);

const ternRows = rows.filter((r) => r.format.startsWith('tq2'));
const geo = Math.exp(ternRows.reduce((a, r) => a + Math.log(r.speedup), 0) / ternRows.length);
writeFileSync(
  OUT,
  JSON.stringify(
    {
      ...resultHeader('WGSL ternary GEMV vs onnxruntime-node webgpu EP MatMulNBits bits=2 (decode, M=1)', String(adapter), 'npm run bench:wgsl'),
      adapter,
      backend,
      reps: REPS,
      timing: 'median of reps; each rep = write x, dispatch, read y back (both sides)',
      rows,
      lmHead: { N: lmN, K: lmK, ms: lmT.ms, GBps: (lmN * lmK * 2) / lmT.ms / 1e6 },
      geomeanSpeedupBit2: geo,
      load: (await import('node:os')).loadavg(),
    },
    null,
    1,
  ),
);
console.log(`geomean speedup (tq2 formats, same bytes as MatMulNBits): ${geo.toFixed(2)}x; wrote ${OUT}`);
process.exit(0);
