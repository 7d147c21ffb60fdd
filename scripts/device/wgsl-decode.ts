// Device benchmark (not a test): end-to-end WebGPU decode of a LLaMA-2-7B-shaped ternary model
// (synthetic weights: valid random codes, fp16 scales; speed does not depend on the values)
// through the twlac WebGPU runtime on Dawn/Vulkan, for each decode GEMV shape of the plan.
// The KV cache is filled to the context by chunked prefill, then `steps` greedy tokens are
// decoded two ways: one forward at a time with the logits read back each token (loop 'host', a
// decode loop that samples on the host), and WebgpuModel.greedy (loop 'device': the argmax on
// the GPU feeds the next step, which is queued before the token is read back).
// `--group 1,0` measures the stacked q|k|v and gate|up launches (plan.ts groupLinears) and the
// unstacked ones side by side, `--prologue 1,0` the GEMVs that make their input themselves
// (plan.ts A8Prologue) and the site kernels before them, `--kv f16,f32` the KV cache's storage,
// `--rope 1,0` RoPE and the cache append inside the decode attention (BlockKernels.attentionDecode)
// and the rope_kv launch before it, `--prologue-shape plan,gemv,32x4` the shapes of the GEMVs with
// a prologue ('plan': prologueGemvShape's rule; 'gemv': the plain GEMV's, gemvA8Shape; or threads a
// row × rows a thread). The device loop runs 3 × STEPS tokens and reports the median of the three
// windows' ms a token (a stall of the host or the driver in one window does not move it).
// The KV cache holds the largest context + the decoded tokens (not maxPositions).
// Reports tokens/s, ms a token and dispatches a token, and where one token's GPU time goes by
// kernel (WebgpuModel.profileStep, each dispatch timestamped in its own pass). Bundled and run on the device with
// scripts/device/wgsl-h100.sh (WGSL_SCRIPT=wgsl-decode.mjs).
//   node wgsl-decode.mjs [--out wgsl-decode.json] [--ctx 512,2048] [--steps 32] [--format tq2_g128]
//                        [--gemv rows-a8,rows-per-workgroup,workgroup-per-row] [--layers 32] [--act-bits 8] [--group 1,0] [--prologue 1,0] [--kv f16,f32] [--rope 1,0] [--prologue-shape plan,gemv,32x4]
import { randomFillSync } from 'node:crypto';
import { writeFileSync } from 'node:fs';
import { syntheticManifest } from '../../src/codegen/cuda/synthetic.ts';
import type { GemvVariant } from '../../src/codegen/wgsl/plan.ts';
import type { KvStorage } from '../../src/codegen/wgsl/kernels.ts';
import { CODE_PACKINGS, parseFormatId } from '../../src/formats/ternary.ts';
import type { ModelConfig } from '../../src/graph/model-config.ts';
import { floatToHalf } from '../../src/graph/tensor.ts';
import { nodeDevice } from '../../src/runtime/webgpu/node.ts';
import { WebgpuModel } from '../../src/runtime/webgpu/runtime.ts';
import { argmax } from '../../src/runtime/reference.ts';
import { resultHeader } from '../../bench/result-header.ts';

const arg = (name: string, dflt: string) => {
  const i = process.argv.indexOf(`--${name}`);
  return i > 0 ? process.argv[i + 1] : dflt;
};
const OUT = arg('out', 'wgsl-decode.json');
const CTX = arg('ctx', '512,2048').split(',').map(Number);
const STEPS = Number(arg('steps', '32'));
const FORMAT = parseFormatId(arg('format', 'tq2_g128'));
const GEMVS = arg('gemv', 'rows-a8,rows-per-workgroup,workgroup-per-row').split(',') as GemvVariant[];
const LAYERS = Number(arg('layers', '32'));
const GROUPS = arg('group', '1').split(',').map((g) => g === '1');
const PROLOGUES = arg('prologue', '1').split(',').map((g) => g === '1');
const KVS = arg('kv', 'f16').split(',') as KvStorage[];
const ROPES = arg('rope', '1').split(',').map((g) => g === '1');
const PRO_SHAPES = arg('prologue-shape', 'plan').split(',').map((s) => (s === 'plan' ? undefined : s === 'gemv' ? ('gemv' as const) : { threadsPerRow: Number(s.split('x')[0]), rowsPerThread: Number(s.split('x')[1]) }));
const shapeName = (s: (typeof PRO_SHAPES)[number]) => (s === undefined ? 'plan' : s === 'gemv' ? 'gemv' : `${s.threadsPerRow}x${s.rowsPerThread}`);
/** Bits of every act site (16: none); 'rows-a8' runs its integer GEMVs only after sites of 8 bits or fewer. */
const ACT_BITS = Number(arg('act-bits', '8'));
const config: ModelConfig = { arch: 'llama', vocab: 32000, hidden: 4096, layers: LAYERS, heads: 32, kvHeads: 32, headDim: 128, intermediate: 11008, ropeTheta: 10000, normEps: 1e-5, maxPositions: 4096 };

process.env.TWLAC_WEBGPU_BACKEND ??= 'vulkan';
const t0 = performance.now();
const manifest = syntheticManifest(config, FORMAT, ACT_BITS);
const weights = new Uint8Array(manifest.files['weights.bin']);
// Every tensor filled by kind: codes from the bytes their packing can hold, fp16 scales around
// 1/√(0.6·K) with small shifts, norms 1, fp16 embedding and lm_head of unit-variance outputs.
const valid = (() => {
  const P = CODE_PACKINGS[FORMAT.packing];
  const G = FORMAT.packing === 'trit5' ? 5 : 4;
  const set = new Set<number>();
  const t = new Int8Array(G), out = new Uint8Array(1);
  for (let c = 0; c < 3 ** G; c++) {
    for (let i = 0, v = c; i < G; i++, v = Math.floor(v / 3)) t[i] = (v % 3) - 1;
    P.encodeGroup(t, G, out, 0);
    set.add(out[0]);
  }
  return Uint8Array.from(set);
})();
let seed = 1;
const rand = () => ((seed = (seed * 1664525 + 1013904223) >>> 0) / 2 ** 32);
for (const [name, e] of Object.entries(manifest.tensors)) {
  const view = weights.subarray(e.offset, e.offset + e.bytes);
  if (name.endsWith('.codes')) {
    randomFillSync(view);
    for (let i = 0; i < view.length; i++) view[i] = valid[view[i] % valid.length];
  } else if (e.dtype === 'float32') {
    new Float32Array(weights.buffer, e.offset, e.bytes / 4).fill(1);
  } else {
    const h = new Uint16Array(weights.buffer, e.offset, e.bytes / 2);
    const K = e.dims.length === 2 ? e.dims[1] : config.hidden;
    const sc = name.endsWith('.shifts') ? 0.02 / Math.sqrt(K) : name.endsWith('.scales') ? 1 / Math.sqrt(0.6 * K) : 1 / Math.sqrt(K);
    const table = Uint16Array.from({ length: 4096 }, () => floatToHalf(sc * (name.endsWith('.scales') ? 0.5 + rand() : 2 * rand() - 1) * (name === 'embed' ? Math.sqrt(K) * 0.02 : 1)));
    for (let i = 0; i < h.length; i++) h[i] = table[(i * 2654435761) >>> 20];
  }
}
console.log(`synthetic ${FORMAT.id} ${LAYERS}-layer 7B-shaped weights: ${(weights.byteLength / 2 ** 30).toFixed(2)} GiB in ${((performance.now() - t0) / 1e3).toFixed(1)} s`);

const { device, adapter, backend } = await nodeDevice();
console.log(`adapter ${adapter} (${backend}); subgroups ${device.features.has('subgroups')}`);
const runs: unknown[] = [];
const summary: { gemv: string; group: boolean; prologue: boolean; kv: KvStorage; ropeInAttention: boolean; prologueShape: string; loop: 'host' | 'device'; context: number; tokensPerSecond: number; msPerToken: number; dispatchesPerToken: number; gpuMsPerToken?: number }[] = [];
for (const gemv of GEMVS) for (const group of GROUPS) for (const prologue of PROLOGUES) for (const kv of KVS) for (const ropeInAttention of ROPES) for (const proShape of PRO_SHAPES) {
  const prologueShape = shapeName(proShape);
  const tl = performance.now();
  const model = await WebgpuModel.create(device, { manifest, weights }, { capacity: 64, gemv, group, prologue, kv, ropeInAttention, prologueShape: proShape, adapter: 'gpu', context: Math.max(...CTX) + 3 * STEPS + 8 });
  const loadS = (performance.now() - tl) / 1e3;
  const dispatches = model.dispatches('last');
  console.log(`${gemv}${group ? ' stacked' : ''}${prologue ? ' prologue' : ''}${ropeInAttention ? ' rope-in-attention' : ''}${prologue ? ` prologue GEMVs ${prologueShape}` : ''} ${kv} KV: loaded in ${loadS.toFixed(1)} s, ${dispatches} dispatches a decode token`);
  try {
    for (const ctx of CTX) {
      model.reset();
      const prompt = Array.from({ length: ctx }, (_, i) => (i * 7919 + 17) % config.vocab);
      const tp = performance.now();
      let logits = await model.forward(prompt);
      const prefillS = (performance.now() - tp) / 1e3;
      const ids: number[] = [];
      // two warm-up tokens, then the timed ones
      for (let i = 0; i < 2; i++) logits = await model.forward([argmax(logits, 0, logits.length)]);
      const td = performance.now();
      for (let i = 0; i < STEPS; i++) {
        const next = argmax(logits, 0, logits.length);
        ids.push(next);
        logits = await model.forward([next]);
      }
      const ms = (performance.now() - td) / STEPS;
      // one more step with every dispatch timed on the GPU: where a token's time goes, by kernel
      let profile: { gpuMsPerToken: number; byKernel: { kernel: string; dispatches: number; us: number; pct: number }[] } | undefined;
      if (device.features.has('timestamp-query')) {
        const prof = await model.profileStep(argmax(logits, 0, logits.length));
        const total = prof.reduce((a, p) => a + p.us, 0);
        const by = new Map<string, { dispatches: number; us: number }>();
        for (const p of prof) {
          const e = by.get(p.kernel) ?? { dispatches: 0, us: 0 };
          e.dispatches++;
          e.us += p.us;
          by.set(p.kernel, e);
        }
        profile = {
          gpuMsPerToken: +(total / 1e3).toFixed(3),
          byKernel: [...by].map(([kernel, e]) => ({ kernel, dispatches: e.dispatches, us: +e.us.toFixed(1), pct: +((100 * e.us) / total).toFixed(1) })).sort((a, b) => b.us - a.us),
        };
      }
      const r = { gemv, group, prologue, kv, ropeInAttention, prologueShape, loop: 'host' as const, context: ctx, steps: STEPS, prefillSeconds: +prefillS.toFixed(2), msPerToken: +ms.toFixed(3), tokensPerSecond: +(1000 / ms).toFixed(1), dispatchesPerToken: dispatches, firstTokens: ids.slice(0, 8), loadSeconds: +loadS.toFixed(1), profile };
      runs.push(r);
      summary.push({ gemv, group, prologue, kv, ropeInAttention, prologueShape, loop: 'host', context: ctx, tokensPerSecond: r.tokensPerSecond, msPerToken: r.msPerToken, dispatchesPerToken: dispatches, gpuMsPerToken: profile?.gpuMsPerToken });
      console.log(JSON.stringify(r));
      // the same prompt through greedy(): tokens 2 .. 3·STEPS + 1 timed as they reach the host, in three windows
      const arrivals: number[] = [];
      const devIds = await model.greedy(prompt, 3 * STEPS + 2, () => arrivals.push(performance.now()));
      const windows = [0, 1, 2].map((w) => +((arrivals[1 + (w + 1) * STEPS] - arrivals[1 + w * STEPS]) / STEPS).toFixed(3));
      const msDev = [...windows].sort((a, b) => a - b)[1];
      const rd = { gemv, group, prologue, kv, ropeInAttention, prologueShape, loop: 'device' as const, context: ctx, steps: STEPS, msPerToken: +msDev.toFixed(3), windowsMsPerToken: windows, tokensPerSecond: +(1000 / msDev).toFixed(1), dispatchesPerToken: dispatches + 1, firstTokens: devIds.slice(0, 8), sameTokensAsHostLoop: devIds.slice(2, 10).join() === ids.slice(0, 8).join() };
      runs.push(rd);
      summary.push({ gemv, group, prologue, kv, ropeInAttention, prologueShape, loop: 'device', context: ctx, tokensPerSecond: rd.tokensPerSecond, msPerToken: rd.msPerToken, dispatchesPerToken: dispatches + 1, gpuMsPerToken: profile?.gpuMsPerToken });
      console.log(JSON.stringify(rd));
      writeFileSync(OUT, JSON.stringify({ ...resultHeader('WebGPU end-to-end decode, LLaMA-2-7B shape, synthetic ternary weights', adapter, 'bash scripts/device/wgsl-h100.sh (WGSL_SCRIPT=wgsl-decode.mjs)'), adapter, format: FORMAT.id, layers: LAYERS, actBits: ACT_BITS, runs, summary }, null, 1));
    }
  } finally {
    model.destroy();
  }
}
console.log(`wrote ${OUT}`);
process.exit(0);
