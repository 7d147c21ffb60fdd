// `emitWgsl`: the files --target wgsl writes, golden sources of representative kernels
// (UPDATE_GOLDEN=1 rewrites them), validation before generation, and every emitted module
// compiling on the WebGPU adapter.
import { mkdirSync, mkdtempSync, readFileSync, readdirSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, describe, expect, it } from 'vitest';
import { writeArtifact } from '../../src/artifact/build.ts';
import type { ModelConfig } from '../../src/graph/model-config.ts';
import { randomArtifactModel } from '../../src/artifact/random.ts';
import { readArtifact } from '../../src/artifact/weights.ts';
import { emitWgsl, type EmittedKernel } from '../../src/codegen/wgsl/emit.ts';
import { wgsl, u32, f32, ident } from '../../src/codegen/wgsl/fragments.ts';
import * as K from '../../src/codegen/wgsl/kernels.ts';
import { adapterKind, distinctKernels, planModel, type PlanOptions } from '../../src/codegen/wgsl/plan.ts';
import { ternaryFormat } from '../../src/formats/ternary.ts';
import { testDevice } from './wgsl-harness.ts';

const GOLDEN = join(import.meta.dirname, '..', 'golden', 'wgsl');
const dirs: string[] = [];
afterAll(() => dirs.forEach((d) => rmSync(d, { recursive: true, force: true })));

const tiny: ModelConfig = {
  arch: 'llama', vocab: 64, hidden: 40, layers: 2, heads: 4, kvHeads: 2, headDim: 10,
  intermediate: 48, ropeTheta: 10000, normEps: 1e-5, maxPositions: 32,
};

function artifact(c: ModelConfig, f = ternaryFormat('trit5', 16)) {
  const dir = mkdtempSync(join(tmpdir(), 'twlac-wgsl-emit-'));
  dirs.push(dir);
  // trit5 g20 would trip writeArtifact's float equality of declared vs written bytes (768 vs 768.0000000000001).
  writeArtifact(dir, randomArtifactModel(c, f, 3));
  return { dir, ...readArtifact(dir) };
}

describe('emitWgsl', () => {
  it('writes one file per distinct kernel and an index with bindings', () => {
    const a = artifact(tiny);
    const files = emitWgsl(a.manifest, a.dir);
    const written = readdirSync(join(a.dir, 'kernels', 'wgsl')).sort();
    expect(Object.keys(files).map((f) => f.replace('kernels/wgsl/', '')).sort()).toEqual(written);
    const index = JSON.parse(readFileSync(join(a.dir, 'kernels', 'wgsl', 'index.json'), 'utf8')) as EmittedKernel[];
    const plan = distinctKernels(planModel(a.manifest));
    expect(index.map((e) => e.cacheKey).sort()).toEqual(plan.map((k) => k.cacheKey).sort());
    // ternary shapes [N, K]: q|k|v stacked [40 + 20 + 20, 40], o [40, 40] adding into the stream
    // (the residual add in its epilogue), gate|up stacked [48 + 48, 40], down [40, 48] adding too;
    // the GEMM is thread-per-row, the GEMV workgroup-per-row (emitted kernels default to a GPU
    // adapter, and K = 40 is too short for the rows and integer GEMVs)
    expect(index.filter((e) => e.file.startsWith('ternary_linear_trit5')).length).toBe(4);
    expect(index.filter((e) => e.file.startsWith('ternary_gemv_wg_trit5')).length).toBe(4);
    expect(index.filter((e) => e.cacheKey.includes('split=40+20+20')).length).toBe(2);
    expect(index.filter((e) => e.cacheKey.includes('split=48+48')).length).toBe(2);
    expect(index.filter((e) => e.cacheKey.startsWith('ternary_gemv_wg') && e.cacheKey.includes('accumulate')).length).toBe(2);
    expect(index.some((e) => e.file.startsWith('residual_add'))).toBe(false);
    expect(index.filter((e) => e.cacheKey.startsWith('ternary_gemv_wg')).every((e) => e.workgroupSize === K.GEMV_WG)).toBe(true);
    // the lm_head: the GEMM thread-per-row, the GEMV rows-per-workgroup (K = 40, a multiple of 8)
    expect(index.filter((e) => e.file.startsWith('dense_linear_float16')).length).toBe(1);
    expect(index.filter((e) => e.file.startsWith('dense_gemv_rows_float16')).length).toBe(1);
    for (const e of index) {
      const src = readFileSync(join(a.dir, 'kernels', 'wgsl', e.file), 'utf8');
      e.bindings.forEach((b, i) => expect(src).toContain(`@binding(${i}) var<storage, ${b.access}> ${b.name}: array<${b.elem}>;`));
    }
  });

  it('refuses what it cannot run, before generating', () => {
    const a = artifact(tiny);
    const odd = { ...a.manifest, config: { ...a.manifest.config, headDim: 9 } };
    expect(() => planModel(odd)).toThrow(/RoPE over 10 of 9 head dims \(must be even and at most the head size\)/);
    expect(() => planModel({ ...odd, program: { ...odd.program, rope: { ...odd.program.rope, rotaryDim: 9 } } })).toThrow(/RoPE over 9 of 9 head dims/);
    // WGSL implements every program feature of this twlac; a name from a newer one is refused by name.
    const newer = structuredClone(a.manifest);
    expect(() => planModel(newer)).not.toThrow();
    newer.features.push('mixture-of-experts' as never);
    expect(() => planModel(newer)).toThrow(/^the WGSL backend does not implement feature 'mixture-of-experts' \(unknown to this twlac\)$/);
    const bad = structuredClone(a.manifest);
    bad.blocks[0].q.format = 'tq3_g64';
    expect(() => planModel(bad)).toThrow(/blocks\.0\.q: unknown weight format 'tq3_g64'/);
    bad.blocks[0].q.format = a.manifest.blocks[0].q.format;
    bad.blocks[0].acts.o = { bits: 4, clip: 1, transform: { l: 3, r: 3, C: 'x', B: 'y' } };
    expect(() => planModel(bad)).toThrow(/online transform 3x3 does not match its input width 40/);
  });

  it('the adapter table picks the GEMV shape; a forced shape wins; the GEMM is unchanged', () => {
    expect(adapterKind({ vendor: 'google', architecture: 'swiftshader', description: 'SwiftShader driver 5.0.0', isFallbackAdapter: true })).toBe('software');
    expect(adapterKind({ vendor: 'mesa', description: 'llvmpipe (LLVM 15.0.6, 256 bits)' })).toBe('software');
    expect(adapterKind({ vendor: 'nvidia', device: 'nvidia-h100-80gb-hbm3', description: 'NVIDIA: 580.159.04' })).toBe('gpu');
    expect(adapterKind({ vendor: 'intel', architecture: 'gen-12lp', description: 'Intel(R) UHD Graphics' })).toBe('gpu');
    const a = artifact(tiny);
    const q = (o: PlanOptions) => planModel(a.manifest, o).blocks[0].q;
    expect(q({ adapter: 'software' }).gemv.name).toBe('ternary_linear_trit5');
    expect(q({ adapter: 'gpu' }).gemv.name).toBe('ternary_gemv_wg_trit5');
    expect(q({}).gemv.name).toBe('ternary_gemv_wg_trit5');
    expect(q({ adapter: 'gpu', gemv: 'thread-per-row' }).gemv.name).toBe('ternary_linear_trit5');
    expect(q({ adapter: 'software', gemv: 'workgroup-per-row' }).gemv.name).toBe('ternary_gemv_wg_trit5');
    expect(q({ adapter: 'gpu' }).gemm.cacheKey).toBe(q({ adapter: 'software' }).gemm.cacheKey);
    // rows-per-workgroup: bit2 kernels, trit5 codes transcoded when groups are multiples of 64
    // and K a multiple of the group; other shapes fall back to workgroup-per-row
    const wide = artifact({ ...tiny, hidden: 128, intermediate: 256, heads: 2, kvHeads: 1, headDim: 64 }, ternaryFormat('trit5', 128));
    const rq = planModel(wide.manifest, { gemv: 'rows-per-workgroup' }).blocks[0].q;
    expect(rq.gemv.name).toBe('ternary_gemv_rows_bit2');
    expect(rq.gemm.name).toBe('ternary_linear_bit2');
    expect(rq.codes?.packing).toBe('bit2');
    expect(planModel(a.manifest, { gemv: 'rows-per-workgroup' }).blocks[0].q.gemv.name).toBe('ternary_gemv_wg_trit5'); // K = 40
    // dense fp16 linears (lm_head): rows a workgroup on GPUs, thread-per-row on software adapters
    expect(planModel(a.manifest, { adapter: 'gpu' }).lmHead.gemv.name).toBe('dense_gemv_rows_float16');
    expect(planModel(a.manifest, { adapter: 'software' }).lmHead.gemv.name).toBe('dense_linear_float16');
  });

  it('typed fragments reject raw floats and non-identifiers', () => {
    expect(() => wgsl`${0.5}`).toThrow(/wrap floats with f32/);
    expect(() => ident('a-b')).toThrow(/not an identifier/);
    expect(() => u32(-1)).toThrow(/not a u32/);
    expect(f32(1e-5).text).toBe('f32(1.000000000e-5)');
  });
});

describe('golden WGSL sources', () => {
  const goldens: Record<string, () => string> = {
    'ternary_gemv_tq1_g128_n256_k384.wgsl': () => K.ternaryLinearKernel(ternaryFormat('trit5', 128), 256, 384, 1, false).source(),
    'ternary_gemm_tq2_g128_ns_n96_k1000_tm8_bias.wgsl': () => K.ternaryLinearKernel(ternaryFormat('bit2', 128, false), 96, 1000, 8, true).source(),
    'attention_partial_h6_kv2_d64_s4_subgroups.wgsl': () => K.attentionPartialKernel(6, 2, 64, 1 / 8, null, 4, { subgroups: true }).source(),
    'attention_combine_h6_d64_s4.wgsl': () => K.attentionCombineKernel(6, 64, 4).source(),
    'act_quant_w384_b4_clip0.9.wgsl': () => K.actQuantKernel(384, 4, 0.9).source(),
    'ternary_gemv_wg_tq1_g128_n256_k384.wgsl': () => K.ternaryGemvWorkgroupKernel(ternaryFormat('trit5', 128), 256, 384, false).source(),
    'ternary_gemv_wg_tq2_g128_ns_n96_k1000_bias_subgroups.wgsl': () => K.ternaryGemvWorkgroupKernel(ternaryFormat('bit2', 128, false), 96, 1000, true, { subgroups: true }).source(),
  };
  for (const [file, gen] of Object.entries(goldens)) {
    it(file, () => {
      const text = gen();
      const path = join(GOLDEN, file);
      if (process.env.UPDATE_GOLDEN) {
        mkdirSync(GOLDEN, { recursive: true });
        writeFileSync(path, text);
      }
      expect(text).toBe(readFileSync(path, 'utf8'));
    });
  }
});

const { dev, skip } = await testDevice();
describe.skipIf(!!skip)('emitted WGSL compiles on the adapter', () => {
  it('every module of a plan (with transforms and A4) has no compilation errors', async () => {
    const a = artifact(tiny);
    const m = structuredClone(a.manifest);
    for (const b of m.blocks) b.acts.down = { bits: 4, clip: 0.9, transform: { l: 6, r: 8, C: 'c', B: 'b' } };
    const device = dev!.device;
    const features = { subgroups: device.features.has('subgroups') };
    const kernels = [...distinctKernels(planModel(m, { features, adapter: 'gpu' })), ...distinctKernels(planModel(m, { features, adapter: 'software' }))];
    expect(new Set(kernels.map((k) => k.name))).toContain('ternary_gemv_wg_trit5');
    for (const k of kernels) {
      const info = await device.createShaderModule({ code: k.source() }).getCompilationInfo();
      expect(info.messages.filter((x) => x.type === 'error').map((x) => `${k.cacheKey}: ${x.message}`)).toEqual([]);
    }
  });
});
