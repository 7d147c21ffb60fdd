// onnxruntime's WebGPU execution provider running com.microsoft::MatMulNBits (bits 2 and 4,
// block 128, float32 activations, M = 1) on the same adapter as twlac's WGSL GEMVs, in the
// same process (scripts/device/wgsl-h100.ts --ort DIR, DIR holding onnxruntime-node).
// A session's run has a fixed cost (input upload, output readback, synchronisation), so each
// shape is timed as two chains of MatMulNBits nodes, alternating N×K and K×N: a short one of
// 2 nodes and a long one of 2 + 2j nodes whose extra weights span ≥ `coldBytes` (so they come
// from HBM, not L2); µs a GEMV = (t_long − t_short) / 2j, the median of `trials` runs each.
import { GraphBuilder } from '../../src/graph/builder.ts';
import { encodeModel } from '../../src/graph/onnx.ts';
import { Tensor } from '../../src/graph/tensor.ts';

export interface OrtGemvResult {
  bits: number;
  N: number;
  K: number;
  us: number | null;
  nodesShort: number;
  nodesLong: number;
  shortMs: number;
  longMs: number;
  error?: string;
}

type Ort = typeof import('onnxruntime-node');

function chainModel(N: number, K: number, bits: number, nodes: number, rand: () => number): Uint8Array {
  const b = new GraphBuilder();
  const x = b.input('x', { dtype: 'float32', shape: [1, K] });
  let y = x;
  const block = 128;
  for (let i = 0; i < nodes; i++) {
    const [n, k] = i % 2 === 0 ? [N, K] : [K, N];
    const nb = Math.ceil(k / block);
    const codes = new Uint8Array(n * nb * ((block * bits) / 8));
    for (let j = 0; j < codes.length; j += 4) {
      const r = (rand() * 2 ** 32) >>> 0;
      codes[j] = r & 0xff;
      codes[j + 1] = (r >>> 8) & 0xff;
      codes[j + 2] = (r >>> 16) & 0xff;
      codes[j + 3] = r >>> 24;
    }
    const scales = Float32Array.from({ length: n * nb }, () => (0.5 + rand()) / Math.sqrt(k) / 2 ** (bits - 1));
    const B = b.init(`w${i}`, Tensor.fromBytes('uint8', [n, nb, (block * bits) / 8], codes));
    const S = b.init(`s${i}`, Tensor.fromFloat32([n * nb], scales));
    y = b.op('MatMulNBits', [y, B, S], { domain: 'com.microsoft', attrs: { K: k, N: n, bits, block_size: block, accuracy_level: 0 } });
  }
  b.output(y, 'y');
  return encodeModel(b.model(21, [{ domain: 'com.microsoft', version: 1 }]));
}

async function timeSession(ort: Ort, model: Uint8Array, K: number, trials: number): Promise<number> {
  const s = await ort.InferenceSession.create(model, { executionProviders: ['webgpu'] });
  try {
    const feeds = { x: new ort.Tensor('float32', Float32Array.from({ length: K }, (_, i) => Math.sin(i)), [1, K]) };
    for (let i = 0; i < 3; i++) await s.run(feeds);
    const t: number[] = [];
    for (let i = 0; i < trials; i++) {
      const t0 = performance.now();
      await s.run(feeds);
      t.push(performance.now() - t0);
    }
    return t.sort((a, b) => a - b)[Math.floor(t.length / 2)];
  } finally {
    await s.release();
  }
}

export async function ortGemv(ort: Ort, shapes: [number, number][], opts: { coldBytes: number; trials: number; rand: () => number; log: (s: string) => void }): Promise<OrtGemvResult[]> {
  const out: OrtGemvResult[] = [];
  for (const [N, K] of shapes) {
    for (const bits of [2, 4]) {
      const pairBytes = (2 * N * K * bits) / 8;
      const j = Math.max(1, Math.ceil(opts.coldBytes / pairBytes));
      const r: OrtGemvResult = { bits, N, K, us: null, nodesShort: 2, nodesLong: 2 + 2 * j, shortMs: 0, longMs: 0 };
      try {
        r.shortMs = await timeSession(ort, chainModel(N, K, bits, 2, opts.rand), K, opts.trials);
        r.longMs = await timeSession(ort, chainModel(N, K, bits, 2 + 2 * j, opts.rand), K, opts.trials);
        r.us = +(((r.longMs - r.shortMs) / (2 * j)) * 1e3).toFixed(2);
      } catch (e) {
        r.error = (e as Error).message.split('\n')[0];
      }
      opts.log(`ORT WebGPU MatMulNBits bits=${bits} ${N}x${K}: ${r.us ?? r.error} us a GEMV (${r.nodesShort} nodes ${r.shortMs.toFixed(3)} ms, ${r.nodesLong} nodes ${r.longMs.toFixed(3)} ms)`);
      out.push(r);
    }
  }
  return out;
}
