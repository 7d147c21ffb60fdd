// End to end on the WebGPU runtime (Dawn + the software adapter on CI): logits and greedy
// tokens against the float64 reference runtime on random models, and against stock
// onnxruntime on the fixture compiled by twlac (same quantised model, out/model.onnx).
import { execFileSync } from 'node:child_process';
import { existsSync, mkdtempSync, readFileSync, rmSync, statSync } from 'node:fs';
import type { AddressInfo } from 'node:net';
import { tmpdir } from 'node:os';
import { extname, join, normalize, resolve } from 'node:path';
import puppeteer from 'puppeteer-core';
import { serveDir } from './serve-dir.ts';
import { relErr } from './compare.ts';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { writeArtifact, type ArtifactModel } from '../../src/artifact/build.ts';
import type { ModelConfig } from '../../src/graph/model-config.ts';
import { randomArtifactModel, rng } from '../../src/artifact/random.ts';
import { readArtifact } from '../../src/artifact/weights.ts';
import { ternaryFormat } from '../../src/formats/ternary.ts';
import { generate } from '../../src/eval/generate.ts';
import { forward, openModel } from '../../src/eval/ort-session.ts';
import { findTokenizer, loadTokenizer } from '../../src/eval/tokenizer.ts';
import { argmax, referenceGreedy, referenceLogits } from '../../src/runtime/reference.ts';
import { WebgpuModel } from '../../src/runtime/webgpu/runtime.ts';
import { planModel } from '../../src/codegen/wgsl/plan.ts';
import { runWebgpu, webgpuLogits } from '../../src/runtime/webgpu/node.ts';
import { testDevice } from '../codegen/wgsl-harness.ts';
import { buildDemo } from '../../demo/build.ts';
import { decodePng } from './png.ts';

const CHROMIUM = '/usr/bin/chromium';

const { dev, skip } = await testDevice();
const dirs: string[] = [];
afterAll(() => dirs.forEach((d) => rmSync(d, { recursive: true, force: true })));
const tmp = () => {
  const d = mkdtempSync(join(tmpdir(), 'twlac-wgpu-'));
  dirs.push(d);
  return d;
};


const tiny: ModelConfig = {
  arch: 'llama', vocab: 64, hidden: 40, layers: 2, heads: 4, kvHeads: 2, headDim: 10,
  intermediate: 48, ropeTheta: 10000, normEps: 1e-5, maxPositions: 32,
};

/** A dense orthogonal n×n matrix: a Householder reflection I − 2vvᵀ/‖v‖². */
function householder(n: number, rand: () => number): Float64Array {
  const v = Array.from({ length: n }, () => rand() - 0.5);
  const vv = v.reduce((a, x) => a + x * x, 0);
  return Float64Array.from({ length: n * n }, (_, i) => (Math.floor(i / n) === i % n ? 1 : 0) - (2 * v[Math.floor(i / n)] * v[i % n]) / vv);
}

/** Online transforms at every site, 8-bit inputs to q/k/v/gate/up, 4-bit to o and down. */
function withTransformsAndActs(m: ArtifactModel): ArtifactModel {
  const rand = rng(9);
  const site = (bits: number, l: number, r: number) => ({ bits, clip: 0.95, transform: { l, r, C: householder(l, rand), B: householder(r, rand) } });
  for (const b of m.blocks) {
    b.acts = { attn: site(8, 5, 8), o: site(4, 4, 10), mlp: site(8, 4, 10), down: site(4, 6, 8) };
    b.attnNorm = null;
  }
  return m;
}

describe.skipIf(!!skip)('WebGPU runtime vs the reference runtime (random models)', () => {
  const device = dev!.device;

  it('trit5 g16 with shifts, A16: chunked prefill logits and 8 greedy tokens', async () => {
    const dir = tmp();
    writeArtifact(dir, randomArtifactModel(tiny, ternaryFormat('trit5', 16), 21));
    const a = readArtifact(dir);
    const model = await WebgpuModel.create(device, a, { capacity: 4 }); // 11 tokens = 3 chunks
    try {
      const ids = [1, 5, 7, 9, 11, 3, 2, 40, 41, 0, 63];
      expect(relErr(await model.logitsOf(ids), referenceLogits(a, ids))).toBeLessThan(1e-5);
      expect(await model.greedy([4, 8, 15], 8)).toEqual(referenceGreedy(a, [4, 8, 15], 8));
    } finally {
      model.destroy();
    }
  });

  it('workgroup-per-row GEMV forced on: decode logits and greedy tokens still match; the software adapter defaults to thread-per-row', async () => {
    for (const [fmt, seed] of [[ternaryFormat('trit5', 16), 24], [ternaryFormat('bit2', 8, false), 25]] as const) {
      const dir = tmp();
      writeArtifact(dir, randomArtifactModel(tiny, fmt, seed));
      const a = readArtifact(dir);
      const model = await WebgpuModel.create(device, a, { capacity: 4, gemv: 'workgroup-per-row' });
      const auto = await WebgpuModel.create(device, a, { capacity: 4 });
      try {
        expect(model.gemv).toBe('workgroup-per-row');
        expect([auto.adapter, auto.gemv]).toEqual(dev!.adapter.match(/swiftshader|llvmpipe/i) ? ['software', 'thread-per-row'] : ['gpu', 'rows-a8']);
        // One token at a time: every linear runs its GEMV.
        const ids = [2, 9, 33, 5, 17];
        const got = new Float32Array(ids.length * tiny.vocab);
        for (let i = 0; i < ids.length; i++) got.set(await model.forward([ids[i]]), i * tiny.vocab);
        expect(relErr(got, referenceLogits(a, ids))).toBeLessThan(1e-5);
        expect(await model.greedy([4, 8, 15], 8)).toEqual(referenceGreedy(a, [4, 8, 15], 8));
      } finally {
        model.destroy();
        auto.destroy();
      }
    }
  });

  it('rows-per-workgroup GEMV: trit5 g64 codes transcoded to bit2 at upload, bit2 g128 as stored; decode logits, prefill and greedy tokens match the reference', async () => {
    const wide = { ...tiny, hidden: 128, intermediate: 256, heads: 2, kvHeads: 1, headDim: 64 };
    for (const [fmt, seed] of [[ternaryFormat('trit5', 64), 31], [ternaryFormat('bit2', 128, false), 32]] as const) {
      const dir = tmp();
      writeArtifact(dir, randomArtifactModel(wide, fmt, seed));
      const a = readArtifact(dir);
      const model = await WebgpuModel.create(device, a, { capacity: 8, gemv: 'rows-per-workgroup' });
      try {
        const ids = [2, 9, 33, 5, 17];
        const got = new Float32Array(ids.length * wide.vocab);
        for (let i = 0; i < ids.length; i++) got.set(await model.forward([ids[i]]), i * wide.vocab);
        expect(relErr(got, referenceLogits(a, ids))).toBeLessThan(1e-5);
        expect(relErr(await model.logitsOf(ids), referenceLogits(a, ids))).toBeLessThan(1e-5);
        expect(await model.greedy([4, 8, 15], 8)).toEqual(referenceGreedy(a, [4, 8, 15], 8));
      } finally {
        model.destroy();
      }
    }
  });

  it('rows-a8 GEMV: linears after 8- and 4-bit sites read the sites\' bytes (dot4U8Packed), the 16-bit site\'s float x; decode, prefill and greedy match the reference', async () => {
    const wide = { ...tiny, hidden: 128, intermediate: 256, heads: 2, kvHeads: 1, headDim: 64 };
    for (const [fmt, seed] of [[ternaryFormat('trit5', 64), 33], [ternaryFormat('bit2', 128, false), 34]] as const) {
      const dir = tmp();
      const am = randomArtifactModel(wide, fmt, seed);
      const rand = rng(seed);
      const site = (bits: number, l: number, r: number) => ({ bits, clip: 0.95, transform: { l, r, C: householder(l, rand), B: householder(r, rand) } });
      // attn: 8 bits without a transform (its quantiser fused into the RMSNorm), o: 16 bits (float x)
      // down: 4 bits without a transform (its quantiser fused into the SwiGLU)
      for (const b of am.blocks) b.acts = { attn: { bits: 8, clip: 0.95 }, o: site(16, 8, 16), mlp: site(4, 16, 8), down: { bits: 4, clip: 0.9 } };
      writeArtifact(dir, am);
      const a = readArtifact(dir);
      const model = await WebgpuModel.create(device, a, { capacity: 8, gemv: 'rows-a8' });
      try {
        const plan = planModel(a.manifest, { gemv: 'rows-a8' }).blocks[0];
        expect([plan.q, plan.k, plan.v, plan.o, plan.gate!, plan.up, plan.down].map((l) => !!l.gemvA8)).toEqual([true, true, true, false, true, true, true]);
        expect(plan.q.gemv.name).toBe('ternary_gemv_a8_bit2');
        expect([plan.attnNorm.name, plan.attnAct.fused, plan.mlpNorm.name, plan.mlpAct.quant?.name]).toEqual(['rms_norm_quant_pack', true, 'rms_norm', 'act_quant_pack']);
        expect([plan.swiglu.name, plan.downAct.fused, plan.downAct.quant]).toEqual(['glu_silu_quant_pack', true, undefined]);
        // at decode the q|k|v GEMV makes its bytes from x and γ, and down from g and u (A8Prologue):
        // the attention pre-norm and the SiLU kernel run for prefill only; the o site (16 bits) and
        // the MLP site (a transform) keep theirs
        expect([plan.attnAct.prologue?.source, plan.oAct.prologue, plan.mlpAct.prologue, plan.downAct.prologue?.source]).toEqual(['rms-norm', undefined, undefined, 'mlp-act']);
        expect([plan.qkv[0].gemv.name, plan.gateUp[0].gemv.name, plan.down.gemv.name]).toEqual(['ternary_gemv_a8_bit2_rms_norm', 'ternary_gemv_a8_bit2', 'ternary_gemv_a8_bit2_mlp_act']);
        // the prologue GEMVs take 4 rows a thread where the source is more than the row (x and γ; g and u)
        expect([plan.qkv[0].gemv.cacheKey, plan.down.gemv.cacheKey, plan.gateUp[0].gemv.cacheKey].map((k) => /TPR=(\d+),RPT=(\d+)/.exec(k)!.slice(1).join('x'))).toEqual(['32x4', '32x4', '64x2']);
        // prefill adds the two sites' kernels and rope_kv, and runs the plain split attention for the decode one
        expect(model.dispatches('last', 2) - model.dispatches('last', 1)).toBe(3 * wide.layers);
        const ids = [2, 9, 33, 5, 17];
        const want = referenceLogits(a, ids);
        const got = new Float32Array(ids.length * wide.vocab);
        for (let i = 0; i < ids.length; i++) got.set(await model.forward([ids[i]]), i * wide.vocab);
        expect(relErr(got, want)).toBeLessThan(1e-5);
        expect(relErr(await model.logitsOf(ids), want)).toBeLessThan(1e-5);
        const greedy = await model.greedy([4, 8, 15], 8);
        expect(greedy).toEqual(referenceGreedy(a, [4, 8, 15], 8));
        // greedy stays on the device; a chooser of the host's (here argmax again) reads logits back each token
        const seen: number[] = [];
        expect(await model.greedy([4, 8, 15], 8, (id) => seen.push(id), (l, o, n) => argmax(l, o, n))).toEqual(greedy);
        expect(seen).toEqual(greedy);
        // the prologue GEMVs in another shape (PlanOptions.prologueShape, what wgsl-decode.ts sweeps)
        const other = await WebgpuModel.create(device, a, { capacity: 8, gemv: 'rows-a8', prologueShape: { threadsPerRow: 16, rowsPerThread: 4 } });
        try {
          expect(planModel(a.manifest, { gemv: 'rows-a8', prologueShape: { threadsPerRow: 16, rowsPerThread: 4 } }).blocks[0].qkv[0].gemv.cacheKey).toMatch(/TPR=16,RPT=4/);
          const dec = new Float32Array(ids.length * wide.vocab);
          for (let i = 0; i < ids.length; i++) dec.set(await other.forward([ids[i]]), i * wide.vocab);
          expect(relErr(dec, want)).toBeLessThan(1e-5);
        } finally {
          other.destroy();
        }
      } finally {
        model.destroy();
      }
    }
  });

  it('linears sharing an input (q|k|v with biases, gate|up) run as one stacked launch (thread-per-row and rows-a8 GEMVs): 3 dispatches fewer a block, logits equal to the unstacked run and to the reference', async () => {
    const wide = { ...tiny, hidden: 128, intermediate: 256, heads: 2, kvHeads: 1, headDim: 64 };
    const am = randomArtifactModel(wide, ternaryFormat('trit5', 64), 35);
    const rand = rng(35);
    for (const b of am.blocks) for (const l of [b.linears.q, b.linears.k, b.linears.v]) l.bias = Float32Array.from({ length: l.rows }, () => rand() - 0.5);
    for (const b of am.blocks) b.acts = { attn: { bits: 8, clip: 0.95 }, o: { bits: 16, clip: 1 }, mlp: { bits: 8, clip: 0.95 }, down: { bits: 4, clip: 0.9 } };
    const dir = tmp();
    writeArtifact(dir, am);
    const a = readArtifact(dir);
    const ids = [2, 9, 33, 5, 17];
    const want = referenceLogits(a, ids);
    // the software adapter's default and the GPU's (every kernel's split output is checked against float64 in wgsl-kernels.test.ts)
    for (const gemv of ['thread-per-row', 'rows-a8'] as const) {
      const blk = planModel(a.manifest, { gemv }).blocks[0];
      expect(blk.qkv.map((l) => l.members?.map((e) => e.role))).toEqual([['q', 'k', 'v']]);
      expect(blk.gateUp.map((l) => l.members?.map((e) => e.role))).toEqual([['gate', 'up']]);
      expect(blk.qkv[0].entry.rows).toBe(wide.heads * 64 + 2 * 64);
      const run = async (group: boolean) => {
        const model = await WebgpuModel.create(device, a, { capacity: 8, gemv, group });
        try {
          const dec = new Float32Array(ids.length * wide.vocab);
          for (let i = 0; i < ids.length; i++) dec.set(await model.forward([ids[i]]), i * wide.vocab);
          return { dec, pre: await model.logitsOf(ids), dispatches: model.dispatches('last') };
        } finally {
          model.destroy();
        }
      };
      const [stacked, alone] = [await run(true), await run(false)];
      expect(alone.dispatches - stacked.dispatches, gemv).toBe(3 * wide.layers);
      // each output row is the same computation either way
      expect(stacked.dec, gemv).toEqual(alone.dec);
      expect(stacked.pre, gemv).toEqual(alone.pre);
      expect(relErr(stacked.dec, want), gemv).toBeLessThan(1e-5);
      expect(relErr(stacked.pre, want), gemv).toBeLessThan(1e-5);
    }
  });

  it('an fp16 KV cache (the GPU default): decode and prefill logits near the float64 reference, identical greedy tokens; software adapters keep f32', async () => {
    const wide = { ...tiny, hidden: 128, intermediate: 256, heads: 2, kvHeads: 1, headDim: 64 };
    const dir = tmp();
    writeArtifact(dir, randomArtifactModel(wide, ternaryFormat('bit2', 64), 36));
    const a = readArtifact(dir);
    const ids = [2, 9, 33, 5, 17, 40, 3];
    const want = referenceLogits(a, ids);
    const half = await WebgpuModel.create(device, a, { capacity: 4, gemv: 'rows-a8', kv: 'f16' });
    const full = await WebgpuModel.create(device, a, { capacity: 4, gemv: 'rows-a8' });
    try {
      expect([half.kv, full.kv]).toEqual(['f16', 'f32']);
      const dec = new Float32Array(ids.length * wide.vocab);
      for (let i = 0; i < ids.length; i++) dec.set(await half.forward([ids[i]]), i * wide.vocab);
      // keys and values rounded to fp16 (relative 2^-11): well above the f32 cache's 1e-5, well below a token's margin
      expect(relErr(dec, want)).toBeLessThan(3e-3);
      expect(relErr(await half.logitsOf(ids), want)).toBeLessThan(3e-3);
      expect(relErr(await full.logitsOf(ids), want)).toBeLessThan(1e-5);
      expect(await half.greedy([4, 8, 15], 8)).toEqual(referenceGreedy(a, [4, 8, 15], 8));
    } finally {
      half.destroy();
      full.destroy();
    }
  });

  it('RoPE and the cache append in the decode attention (attentionDecode): one dispatch fewer a block, decode logits and the cache it leaves equal to the rope_kv launch\'s, f32 and fp16 caches', async () => {
    const wide = { ...tiny, hidden: 128, intermediate: 256, heads: 4, kvHeads: 2, headDim: 32 };
    const dir = tmp();
    writeArtifact(dir, randomArtifactModel(wide, ternaryFormat('bit2', 64), 37));
    const a = readArtifact(dir);
    const want = referenceLogits(a, [2, 9, 33, 5, 17, 40, 3]);
    for (const kv of ['f32', 'f16'] as const) {
      const run = async (ropeInAttention: boolean) => {
        const model = await WebgpuModel.create(device, a, { capacity: 4, gemv: 'rows-a8', kv, ropeInAttention });
        try {
          // a 3-token prefill (rope_kv and the plain split attention), then decode steps (the fused kernel),
          // then a 2-token chunk that reads the cache the decode steps wrote
          const out = [await model.forward([2, 9, 33])];
          for (const id of [5, 17]) out.push(await model.forward([id]));
          out.push(await model.forward([40, 3], true));
          return { out, dispatches: [model.dispatches('last', 1), model.dispatches('last', 2)] };
        } finally {
          model.destroy();
        }
      };
      const [fused, apart] = [await run(true), await run(false)];
      expect(apart.dispatches[0] - fused.dispatches[0], kv).toBe(wide.layers);
      expect(fused.dispatches[1], kv).toBe(apart.dispatches[1]);
      expect(fused.out, kv).toEqual(apart.out);
      const V = wide.vocab;
      expect(relErr(fused.out[2], want.subarray(4 * V, 5 * V)), kv).toBeLessThan(kv === 'f16' ? 3e-3 : 1e-5);
      expect(relErr(fused.out[3], want.subarray(5 * V, 7 * V)), kv).toBeLessThan(kv === 'f16' ? 3e-3 : 1e-5);
    }
    expect(planModel(a.manifest, { ropeInAttention: false }).blocks[0].attentionDecode).toBeUndefined();
    expect(planModel(a.manifest).blocks[0].attentionDecode?.name).toBe('attention_partial_rope_f16');
  });

  it('profileStep: GPU time of every dispatch of a decode step, named by kernel; the step runs as a forward does', async () => {
    const dir = tmp();
    writeArtifact(dir, randomArtifactModel(tiny, ternaryFormat('bit2', 8, false), 27));
    const a = readArtifact(dir);
    const model = await WebgpuModel.create(device, a, { capacity: 4 });
    try {
      if (!device.features.has('timestamp-query')) {
        await expect(model.profileStep(3)).rejects.toThrow(/timestamp-query/);
        return;
      }
      await model.forward([4, 8]);
      const prof = await model.profileStep(15);
      expect(model.position).toBe(3);
      expect(prof).toHaveLength(model.dispatches('last'));
      expect(prof[0].kernel).toBe('embed_gather');
      expect(prof.filter((p) => p.kernel === 'attention_partial_rope')).toHaveLength(tiny.layers);
      expect(prof.filter((p) => p.kernel.startsWith('rope_kv'))).toHaveLength(0);
      expect(prof.every((p) => Number.isFinite(p.us) && p.us >= 0)).toBe(true);
      // the profiled step advanced the cache: the next token's logits are the reference's
      const next = await model.forward([16]);
      const want = referenceLogits(a, [4, 8, 15, 16]).subarray(3 * tiny.vocab);
      expect(relErr(next, want)).toBeLessThan(1e-5);
    } finally {
      model.destroy();
    }
  });

  it('a KV cache sized by the requested context: same logits as the full cache, refused past it', async () => {
    const dir = tmp();
    writeArtifact(dir, randomArtifactModel(tiny, ternaryFormat('bit2', 8, false), 26));
    const a = readArtifact(dir);
    const model = await WebgpuModel.create(device, a, { capacity: 4, context: 9 });
    try {
      expect(model.context).toBe(9);
      // a decode step runs the blocks and the last token's final norm + lm_head (2 dispatches)
      expect(model.dispatches('last') - model.dispatches('none')).toBe(2);
      expect(model.dispatches('all')).toBe(model.dispatches('last'));
      const ids = [3, 1, 4, 1, 5, 9, 2, 6, 5];
      expect(relErr(await model.logitsOf(ids), referenceLogits(a, ids))).toBeLessThan(1e-5);
      await expect(model.forward([3])).rejects.toThrow(/context of 10 tokens exceeds the 9 positions this model's KV cache holds/);
    } finally {
      model.destroy();
    }
  });

  it('the CLI entries: runWebgpu and webgpuLogits on an artifact directory, UserError without one', async () => {
    const dir = tmp();
    writeArtifact(dir, randomArtifactModel(tiny, ternaryFormat('bit2', 16), 23));
    const a = readArtifact(dir);
    expect(await runWebgpu(dir, [7, 7, 2], 5)).toEqual(referenceGreedy(a, [7, 7, 2], 5));
    expect(relErr(await webgpuLogits(dir, [9, 8, 7]), referenceLogits(a, [9, 8, 7]))).toBeLessThan(1e-5);
    await expect(runWebgpu(tmp(), [1], 1)).rejects.toThrow(/no manifest\.json/);
  });

  it('bit2 g8 without shifts, online Kronecker transforms, A8/A4 activations', async () => {
    const dir = tmp();
    writeArtifact(dir, withTransformsAndActs(randomArtifactModel(tiny, ternaryFormat('bit2', 8, false), 22)));
    const a = readArtifact(dir);
    const model = await WebgpuModel.create(device, a, { capacity: 8 });
    try {
      const ids = [3, 1, 4, 1, 5, 9, 2, 6, 5, 3];
      const got = await model.logitsOf(ids);
      const want = referenceLogits(a, ids);
      // A 4-bit code can land on the other side of a rounding boundary when the GPU's f32
      // sums differ in their last bit from the reference's; such a flip moves one input by
      // one quantisation step. Bound the error well below the A4 quantisation noise itself.
      expect(relErr(got, want)).toBeLessThan(2e-3);
    } finally {
      model.destroy();
    }
  });
});

const FIXTURE = resolve('../shared/models/pydocs-llama-12m/model.onnx');
const fixtureSkip = skip ?? (existsSync(FIXTURE) ? undefined : `fixture missing: ${FIXTURE}`);
if (fixtureSkip && !skip) console.warn(`WebGPU fixture test skipped: ${fixtureSkip}`);

describe.skipIf(!!fixtureSkip)('WebGPU runtime and demo on the fixture (rtn-ternary) vs onnxruntime on out/model.onnx', () => {
  let out = '';
  let prompt: number[] = [];
  beforeAll(() => {
    out = join(tmp(), 'out');
    execFileSync(process.execPath, ['bin/twlac.js', FIXTURE, '-o', out, '--weights', 'rtn-ternary', '--quiet'], { stdio: 'pipe' });
    prompt = Array.from(loadTokenizer(findTokenizer(out)).encode('The json module can'));
  }, 120_000);

  let ortIds: number[] = [];

  it('prefill logits match ORT and 32 greedy tokens are identical', async () => {
    const a = readArtifact(out);
    const model = await WebgpuModel.create(dev!.device, a, { capacity: 16 });
    const ort = await openModel(join(out, 'model.onnx'));
    try {
      const got = await model.logitsOf(prompt);
      // The float64 reference reads the same weights.bin: agreement to f32 rounding.
      expect(relErr(got, referenceLogits(a, prompt))).toBeLessThan(1e-5);
      // ORT runs the lowered graph (MatMulNBits, its own op order): agreement to ~1e-4.
      const want = await forward(ort, prompt, 1, prompt.length);
      expect(relErr(got, want.logits)).toBeLessThan(1e-3);
      ortIds = Array.from(await generate(ort, prompt, 32));
      expect(await model.greedy(prompt, 32)).toEqual(ortIds);
    } finally {
      model.destroy();
      await ort.session.release();
    }
  }, 180_000);

  const chromiumSkip = existsSync(CHROMIUM) ? undefined : `no browser at ${CHROMIUM} (scripts/install-webgpu-deps.sh installs it)`;
  it.skipIf(!!chromiumSkip && !process.env.CI)('the demo page in headless Chromium generates the same 32 tokens and shows them', async () => {
    expect(ortIds).toHaveLength(32);
    const site = join(tmp(), 'site');
    await buildDemo(site, out);
    const server = serveDir(site);
    const port = await new Promise<number>((r) => server.listen(0, '127.0.0.1', () => r((server.address() as AddressInfo).port)));
    const browser = await puppeteer.launch({
      executablePath: CHROMIUM,
      headless: true,
      userDataDir: tmp(),
      args: ['--no-sandbox', '--enable-unsafe-webgpu', '--disable-background-networking', '--disable-component-update', '--disable-sync', '--no-first-run'],
    });
    try {
      const page = await browser.newPage();
      await page.setViewport({ width: 1000, height: 600 });
      const prompt = 'The json module can';
      await page.goto(`http://127.0.0.1:${port}/index.html?auto=1&tokens=32&prompt=${encodeURIComponent(prompt)}`);
      await page.waitForFunction(() => ['done', 'error'].includes(document.body.dataset.state ?? ''), { timeout: 150_000 });
      const r = await page.evaluate(() => {
        const w = window as unknown as { twlacResult?: { ids: number[]; text: string }; twlacError?: string };
        return { result: w.twlacResult, error: w.twlacError, shown: document.querySelector('#output .gen')?.textContent ?? '' };
      });
      expect(r.error).toBeUndefined();
      expect(r.result!.ids).toEqual(ortIds);
      const text = loadTokenizer(findTokenizer(out)).decode(ortIds);
      expect(r.shown).toBe(text);
      const shot = join(process.env.TWLAC_DEMO_SCREENSHOT ?? join(tmp(), 'demo.png'));
      await page.screenshot({ path: shot });
      // The generated span, as rendered: dark text pixels on the highlight, not an empty box.
      const gen = decodePng(new Uint8Array(await (await page.$('#output .gen'))!.screenshot({ type: 'png' })));
      let dark = 0;
      for (let i = 0; i < gen.width * gen.height; i++) if (gen.rgba[i * 4] + gen.rgba[i * 4 + 1] + gen.rgba[i * 4 + 2] < 300) dark++;
      expect(dark).toBeGreaterThan(8 * text.replace(/\s/g, '').length);
    } finally {
      await browser.close();
      server.close();
    }
  }, 240_000);
});

