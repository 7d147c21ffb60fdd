// CUDA backend, without a GPU:
// - the per-packing decode snippets (the same C++ the kernels use) run on the host through
//   g++ against the format's reference decoder, on every slot of random groups;
// - every kernel kind compiles with the local nvcc for sm_80 and sm_90a (skipped without nvcc);
// - tile plans respect the alignment and shared-memory rules; golden sources are pinned.
// Numerics on the GPU are checked by scripts/device/ (see bench/results/cuda-h100-decode-e2e.json).
import { execFile } from 'node:child_process';
import { existsSync, mkdtempSync, readFileSync, rmSync, writeFileSync, mkdirSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { promisify } from 'node:util';
import { describe, expect, it } from 'vitest';
import type { ModelConfig } from '../../src/graph/model-config.ts';
import type { LinearEntry } from '../../src/artifact/manifest.ts';
import { cudaFloat } from '../../src/codegen/cuda/kernel.ts';
import { rng } from '../../src/artifact/random.ts';
import { CUDA_ARCHS, parseArchs, type CudaArch } from '../../src/codegen/cuda/arch.ts';
import { CUDA_EMITTABLE, CUDA_FEATURES, emitCuda, cudaModelSource } from '../../src/codegen/cuda/emit.ts';
import { actKernel, attnPartialKernel, denseGemvKernel } from '../../src/codegen/cuda/kernels/block.ts';
import { gemvKernel, gemvPlan } from '../../src/codegen/cuda/kernels/gemv.ts';
import { gemvA8Kernel, gemvA8Unsupported } from '../../src/codegen/cuda/kernels/gemv-a8.ts';
import { transcodeGroupFunction, transcodeKernel } from '../../src/codegen/cuda/kernels/transcode.ts';
import { latticeRowFunction, latticeRowsKernel } from '../../src/codegen/cuda/kernels/lattice-rows.ts';
import { gemvTcPlan, gemvTcKernel, gemvTcUnsupported } from '../../src/codegen/cuda/kernels/gemv-tc.ts';
import { gemvStreamGroupKernel, gemvStreamKernel, gemvStreamPlan, gemvStreamUnsupported, type StreamTuning } from '../../src/codegen/cuda/kernels/gemv-stream.ts';
import { gemmA8Kernel, gemmA8Plan, gemmA8Unsupported } from '../../src/codegen/cuda/kernels/gemm-a8.ts';
import { prefillGemmKernel, prefillGemmKernels } from '../../src/codegen/cuda/kernels/prefill-gemm.ts';
import { DEFAULT_OPTIONS } from '../../src/compile.ts';
import { gemmWgmmaKernel, gemmWgmmaPlan, gemmWgmmaUnsupported } from '../../src/codegen/cuda/kernels/gemm-wgmma.ts';
import { attnPrefillTcKernel, attnPrefillTcUnsupported } from '../../src/codegen/cuda/kernels/attn-prefill-tc.ts';
import { GEMM_RS_RUNTIME, GEMM_RS_VARIANTS, gemmRsTailSplit, gemmWgmmaRsKernel, gemmWgmmaRsPlan, gemmWgmmaRsUnsupported, type GemmRsVariantName } from '../../src/codegen/cuda/kernels/gemm-wgmma-rs.ts';
import { CUDA_PACKINGS } from '../../src/codegen/cuda/packing.ts';
import { cudaPrelude, packingHelpers } from '../../src/codegen/cuda/prelude.ts';
import { latticeCheckFunctions } from '../../src/codegen/cuda/lattice-check.ts';
import { floatToHalf } from '../../src/graph/tensor.ts';
import { syntheticManifest } from '../../src/codegen/cuda/synthetic.ts';
import { order2PlaneFormat } from '../../src/formats/order2.ts';
import { code, join as cjoin } from '../../src/codegen/common/fragments.ts';
import { CODE_PACKINGS, decodeTernary, decodeTrits, encodeTernary, groupsPerRow, latticeUnit, parseFormatId, snapRowToLattice, ternaryFormat, type TernaryFormat } from '../../src/formats/ternary.ts';

const run = promisify(execFile);
const NVCC = ['/usr/local/bin/nvcc', '/usr/local/cuda/bin/nvcc'].find((p) => existsSync(p));
const GXX = ['/usr/bin/g++'].find((p) => existsSync(p));
/** Builds a C++ program with g++ in a temporary directory, runs it and returns its stdout. */
async function runHostProgram(source: string): Promise<string> {
  const dir = mkdtempSync(join(tmpdir(), 'twlac-cuda-host-'));
  try {
    writeFileSync(join(dir, 'prog.cpp'), source);
    await run(GXX!, ['-O1', '-o', join(dir, 'prog'), join(dir, 'prog.cpp')]);
    return (await run(join(dir, 'prog'))).stdout;
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
}
const GOLDEN = join(import.meta.dirname, '..', 'golden', 'cuda');

/** A float32 vector tensor placed after every other tensor of a synthetic manifest. */
function addVector(m: ReturnType<typeof syntheticManifest>, name: string, n: number): string {
  const end = Math.max(...Object.values(m.tensors).map((e) => e.offset + e.bytes));
  m.tensors[name] = { offset: Math.ceil(end / 64) * 64, bytes: n * 4, dtype: 'float32', dims: [n] };
  return name;
}

/** Give a synthetic manifest's linear a bias. */
function withBias(m: ReturnType<typeof syntheticManifest>, l: LinearEntry): void {
  l.bias = addVector(m, `${l.name}.bias`, l.rows);
}

/** Make a synthetic manifest's linear an order-2 linear: a second plane's codes and scales (formats/order2.ts). */
function withOrder2(m: ReturnType<typeof syntheticManifest>, l: LinearEntry): void {
  const f = order2PlaneFormat(parseFormatId(l.format));
  const groups = l.rows * groupsPerRow(f, l.cols);
  const add = (name: string, bytes: number, dtype: 'uint8' | 'uint16') => {
    const end = Math.max(...Object.values(m.tensors).map((e) => e.offset + e.bytes));
    m.tensors[name] = { offset: Math.ceil(end / 64) * 64, bytes, dtype, dims: [dtype === 'uint8' ? bytes : bytes / 2] };
    return name;
  };
  l.order2 = { format: f.id, codes: add(`${l.name}.o2.codes`, groups * CODE_PACKINGS.trit5.bytesPerGroup(f.group), 'uint8'), scales: add(`${l.name}.o2.scales`, groups * 2, 'uint16') };
  if (!m.features.includes('order2-linear')) m.features.push('order2-linear');
}

/** Give block i a q/k norm (Qwen3), with γ. */
function withQkNorm(m: ReturnType<typeof syntheticManifest>, i: number): void {
  const d = m.config.headDim;
  m.blocks[i].attention.qkNorm = { q: { gamma: addVector(m, `blocks.${i}.q_norm`, d), eps: 1e-6 }, k: { gamma: addVector(m, `blocks.${i}.k_norm`, d), eps: 1e-6 } };
}

/** Make a synthetic manifest GPT-2-like: LayerNorms with β, learned positions, no RoPE, ungated GELU(tanh) MLPs. */
function gpt2Like(m: ReturnType<typeof syntheticManifest>): void {
  const { hidden, maxPositions } = m.config;
  m.program.norm = 'layer';
  m.program.rope = { kind: 'none', theta: m.program.rope.theta, rotaryDim: 0 };
  m.positionEmbed = addVector(m, 'position_embed', maxPositions * hidden);
  m.blocks.forEach((b, i) => {
    b.attnNormBias = addVector(m, `blocks.${i}.attn_norm_bias`, hidden);
    b.mlpNormBias = addVector(m, `blocks.${i}.mlp_norm_bias`, hidden);
    delete b.gate;
    b.mlp = { activation: 'gelu-tanh', gated: false };
  });
  m.finalNormBias = addVector(m, 'final_norm_bias', hidden);
}

const tiny: ModelConfig = { arch: 'llama', vocab: 256, hidden: 128, layers: 1, heads: 2, kvHeads: 1, headDim: 64, intermediate: 256, ropeTheta: 10000, normEps: 1e-5, maxPositions: 128 };

/** Host C++ that decodes every unit of `rows` groups with the CUDA snippets and compares each
 *  trit slot with the reference decoder's trits; prints "ok <checked>" or the first mismatch. */
function decodeCheckProgram(f: TernaryFormat, rows: number): string {
  const rand = rng(f.group * 7 + (f.packing === 'bit2' ? 1 : 0));
  const G = f.group;
  const t = Int8Array.from({ length: rows * G }, () => Math.floor(rand() * 3) - 1);
  const w = encodeTernary(f, rows, G, t, new Float32Array(rows).fill(1), f.shift ? new Float32Array(rows) : undefined);
  const ref = decodeTrits(w);
  const unit = CUDA_PACKINGS[f.packing].unit(G);
  const bpg = CODE_PACKINGS[f.packing].bytesPerGroup(G);
  const raw = cjoin(
    Array.from({ length: unit.unitBytes }, (_, b) => code`((uint32_t)codes[g * ${bpg} + j * ${unit.unitBytes} + ${b}] << ${8 * b})`),
    ' | ',
  );
  return cjoin([
    code`#include <cstdint>
#include <cstdio>
static const unsigned twlac_pow3[5] = {1u, 3u, 9u, 27u, 81u};
static const uint8_t codes[] = {${cjoin(Array.from(w.codes, (v) => code`${v}`), ', ')}};
static const int ref[] = {${cjoin(Array.from(ref, (v) => code`${v + 1}`), ', ')}};
static uint32_t lut[256];
int main() {
  long checked = 0;`,
    unit.lutEntry ? code`  for (unsigned v = 0; v < 256; ++v) lut[v] = ${unit.lutEntry(code`v`)};` : code`  (void)lut;`,
    code`  for (int g = 0; g < ${rows}; ++g)
    for (int j = 0; j < ${bpg / unit.unitBytes}; ++j) {
      const uint32_t raw = ${raw};
      const uint32_t d = ${unit.digits(code`raw`)};
      for (int p = 0; p < ${unit.pairs}; ++p)
        for (int h = 0; h < 2; ++h) {
          const int i = ${unit.tritIndex(code`j`, code`p`, code`h`)};
          if (i >= ${G}) continue;
          const int trit = (int)((d >> (2 * p + 16 * h)) & 3u) - ${unit.bias};
          const int host = ${CUDA_PACKINGS[f.packing].hostTrit(code`(codes + g * ${bpg})`, code`i`)};
          if (trit != ref[g * ${G} + i] - 1 || host != trit) { printf("mismatch group %d slot %d: %d %d ref %d\\n", g, i, trit, host, ref[g * ${G} + i] - 1); return 1; }
          ++checked;
        }
    }
  printf("ok %ld\\n", checked);
  return 0;
}`,
  ]).text;
}

describe.skipIf(!GXX)('CUDA decode snippets vs the reference decoder (host, g++)', () => {
  const formats = [
    ternaryFormat('trit5', 128, true), // byte pairs
    ternaryFormat('trit5', 384, false), // single bytes (77 bytes a group)
    ternaryFormat('trit5', 43, false), // partial last byte
    ternaryFormat('bit2', 128, true), // 32-bit words
    ternaryFormat('bit2', 100, false), // single bytes
    ternaryFormat('bit2', 30, false), // partial last byte
  ];
  it.each(formats.map((f) => [f.id, f] as const))('%s: every trit slot decodes as decodeTrits', async (_id, f) => {
    expect((await runHostProgram(decodeCheckProgram(f, 6))).trim()).toBe(`ok ${6 * f.group}`);
  }, 60_000);
});

describe.skipIf(!GXX)('load-time trit5 → bit2 transcoding vs the reference encoder (host, g++)', () => {
  it.each([128, 48, 100, 20])('group %d: bytes equal encodeTernary(bit2) of the same trits', async (G) => {
    const rand = rng(G);
    const rows = 5;
    const t = Int8Array.from({ length: rows * G }, () => Math.floor(rand() * 3) - 1);
    const ones = new Float32Array(rows).fill(1);
    const src = encodeTernary(ternaryFormat('trit5', G, false), rows, G, t, ones);
    const want = encodeTernary(ternaryFormat('bit2', G, false), rows, G, t, ones);
    const inB = CODE_PACKINGS.trit5.bytesPerGroup(G);
    const outB = CODE_PACKINGS.bit2.bytesPerGroup(G);
    const prog = `#include <cstdint>
#include <cstdio>
#define __host__
#define __device__
#define __forceinline__ inline
${transcodeGroupFunction(G).text}
static const uint8_t src[] = {${Array.from(src.codes).join(', ')}};
static const uint8_t want[] = {${Array.from(want.codes).join(', ')}};
int main() {
  uint8_t out[${outB}];
  for (int g = 0; g < ${rows}; ++g) {
    transcode_trit5_bit2_g${G}_group(src + g * ${inB}, out);
    for (int b = 0; b < ${outB}; ++b) if (out[b] != want[g * ${outB} + b]) { printf("group %d byte %d: %d != %d\\n", g, b, out[b], want[g * ${outB} + b]); return 1; }
  }
  printf("ok\\n");
  return 0;
}
`;
    expect((await runHostProgram(prog)).trim()).toBe('ok');
  }, 60_000);
});

describe.skipIf(!GXX)('load-time row constants of the lattice GEMM vs the reference decoder (host, g++)', () => {
  it('E = Σ_k weight/u and u = latticeUnit of the row, with and without shifts, for all-zero and one-sign rows too', async () => {
    const G = 128;
    const ng = 5;
    const K = G * ng;
    const rand = rng(91);
    const rows: { f: TernaryFormat; codes: Uint8Array; sc: Float64Array; sh?: Float64Array; e: number; u: number }[] = [];
    for (const shift of [true, false]) {
      const f = ternaryFormat('bit2', G, shift, true);
      for (let i = 0; i < 12; i++) {
        const sc = Float64Array.from({ length: ng }, () => (0.0005 + 0.08 * rand()) * (rand() < 0.3 ? -1 : 1));
        const sh = shift ? Float64Array.from({ length: ng }, () => 0.02 * (rand() - 0.5)) : undefined;
        if (i === 3) sc.fill(0); // all-zero scales: the smallest unit, E from the shifts alone
        snapRowToLattice(sc, sh, 0, ng);
        const p1 = i === 7 ? 1 : 0.4; // i = 7: every trit +1
        const t = Int8Array.from({ length: K }, () => (rand() < p1 ? 1 : Math.floor(rand() * 3) - 1));
        const w = encodeTernary(f, 1, K, t, sc, sh);
        const ref = decodeTernary(w);
        let m2 = 0;
        for (let g = 0; g < ng; g++) m2 = Math.max(m2, Math.abs(sc[g]) + (sh ? Math.abs(sh[g]) : 0));
        const u = latticeUnit(m2);
        let e = 0;
        for (let k = 0; k < K; k++) e += ref[k] / u;
        expect(Number.isInteger(e)).toBe(true);
        rows.push({ f, codes: w.codes, sc, sh, e, u });
      }
    }
    const halves = (a: Float64Array | undefined) => (a ? Array.from(a, (v) => floatToHalf(v)).join(', ') : '0');
    const prog = `#include <cstdint>
#include <cstdio>
#include <cmath>
#define __host__
#define __device__
${latticeRowFunction(G).text}
${rows.map((r, i) => `static const uint8_t c${i}[] = {${Array.from(r.codes).join(', ')}}; static const uint16_t sc${i}[] = {${halves(r.sc)}}; static const uint16_t sh${i}[] = {${halves(r.sh)}};`).join('\n')}
int main() {
  int e;
  float u;
${rows.map((r, i) => `  twlac_lattice_row_g${G}(c${i}, sc${i}, ${r.sh ? `sh${i}` : 'nullptr'}, ${ng}, &e, &u); printf("%d %.17g\\n", e, (double)u);`).join('\n')}
  return 0;
}
`;
    const got = (await runHostProgram(prog)).trim().split('\n').map((l) => l.split(' '));
    expect(got.map(([e, u]) => [Number(e), Number(u)])).toEqual(rows.map((r) => [r.e, r.u]));
    expect(rows.some((r) => r.e > 1000) && rows.some((r) => r.e < -1000)).toBe(true);
  }, 60_000);
  it('the host program computes them after loading and after random fills, for the linears the lattice GEMM runs, and passes them to it', () => {
    const m = syntheticManifest({ ...tiny, layers: 2 }, ternaryFormat('trit5', 128, true, true), 8);
    const h = cudaModelSource(m, 'sm_90a');
    const fn = h.slice(h.indexOf('static void twlac_lattice_rows('), h.indexOf('static void twlac_forward('));
    // q, o, gate, up, down of both blocks; not k and v (64 features: no whole 128-feature tile,
    // so no lattice GEMM and no row constants, nullptr), nor the fp16 lm_head
    expect(fn.match(/launch_lattice_rows_g128\(/g)).toHaveLength(10);
    expect(h).toMatch(/group_a8_tq2_g128_lat_n128_64_64_k128\(b\.a16, b\.q8, b\.qp, [^;]*reinterpret_cast<const int2\*>\(W \+ \d+ull\), b\.q, [^;]*, nullptr, b\.k, [^;]*, nullptr, b\.v, T, 0, s\);/);
    expect(h).toMatch(/launch_gemm_wgr_t128_tq2_g128_lat_n256_k128_sm_90a_f32\(q, qp, codes, scales, shifts, rows, y, T, acc, s\)/);
    expect(cudaModelSource(m, 'sm_80')).toMatch(/static void twlac_lattice_rows\(uint8_t\* W, cudaStream_t s\) \{\n  \(void\)W;/); // no lattice GEMM on sm_80
    const main = readFileSync(join(import.meta.dirname, '..', '..', 'src', 'codegen', 'cuda', 'runtime', 'main.cu'), 'utf8');
    expect(main).toMatch(/check_lattice\(path\);\n    lattice_rows\(\);/);
    expect(main).toMatch(/release_staging\(\);\n    lattice_rows\(\);\n  \}/);
  });
});

describe.skipIf(!GXX)('load-time lattice check of the host program vs the reference encoder (host, g++)', () => {
  it('refuses exactly the rows encodeTernary refuses for a lattice format, and rows with NaN', async () => {
    const G = 128;
    const ng = 3;
    const K = G * ng;
    const rand = rng(77);
    const cases: { f: TernaryFormat; sc: Float64Array; sh?: Float64Array; nan?: boolean }[] = [];
    for (const shift of [true, false]) {
      const f = ternaryFormat('bit2', G, shift, true);
      for (let i = 0; i < 24; i++) {
        const sc = Float64Array.from({ length: ng }, () => (0.001 + 0.05 * rand()) * (rand() < 0.2 ? -1 : 1));
        const sh = shift ? Float64Array.from({ length: ng }, () => 0.01 * (rand() - 0.5)) : undefined;
        snapRowToLattice(sc, sh, 0, ng);
        // perturb some rows off the lattice: one value up by a relative step above fp16 rounding
        if (i % 3 === 1) sc[i % ng] *= 1 + 2 ** -9;
        if (i % 3 === 2 && sh) sh[i % ng] += latticeUnit(0.06) / 4;
        if (i === 5) sc.fill(0); // all-zero row: the smallest unit
        cases.push({ f, sc, sh });
      }
      cases.push({ f, sc: Float64Array.from([0.5, Number.NaN, 0.25]), sh: shift ? new Float64Array(ng) : undefined, nan: true });
    }
    const t = new Int8Array(K);
    const expected = cases.map(({ f, sc, sh, nan }) => {
      if (nan) return 0;
      try {
        encodeTernary(f, 1, K, t, sc, sh);
        return -1;
      } catch {
        return 0;
      }
    });
    expect(expected.filter((e) => e === -1).length).toBeGreaterThan(10);
    expect(expected.filter((e) => e === 0).length).toBeGreaterThan(10);
    const halves = (a: Float64Array | undefined) => (a ? Array.from(a, (v) => floatToHalf(v)).join(', ') : '');
    const prog = `#include <cstdint>
#include <cstdio>
${latticeCheckFunctions().text}
${cases.map((c, i) => `static const uint16_t sc${i}[] = {${halves(c.sc)}};${c.sh ? ` static const uint16_t sh${i}[] = {${halves(c.sh)}};` : ''}`).join('\n')}
int main() {
${cases.map((c, i) => `  printf("%d\\n", twlac_lattice_bad_row(sc${i}, ${c.sh ? `sh${i}` : 'nullptr'}, 1, ${ng}));`).join('\n')}
  return 0;
}
`;
    expect((await runHostProgram(prog)).trim().split('\n').map(Number)).toEqual(expected);
  }, 60_000);
  it('the host program checks every lattice linear after loading', () => {
    const two: ModelConfig = { ...tiny, layers: 2 };
    const m = syntheticManifest(two, ternaryFormat('trit5', 128, true, true), 8);
    const lat = [...m.blocks.flatMap((b) => [b.q, b.k, b.v, b.o, b.gate!, b.up, b.down]), m.lmHead].filter((l) => l.format.endsWith('_lat'));
    expect(lat.length).toBeGreaterThanOrEqual(14);
    const h = cudaModelSource(m, 'sm_90a');
    expect(h).toContain(`twlac_lattice_linear_count = ${lat.length};`);
    // device view: trit5 codes transcoded to bit2, so the bit2 lattice format is what the GEMM reads
    expect(h.match(/^  \{"[^"]+", "tq2_g128_lat", \d+ull, \d+ull, \d+, \d+\},$/gm)).toHaveLength(lat.length);
    expect(cudaModelSource(syntheticManifest(two, ternaryFormat('trit5', 128, true), 8), 'sm_90a')).toMatch(/twlac_lattice_linear_count = 0;/);
    expect(readFileSync(join(import.meta.dirname, '..', '..', 'src', 'codegen', 'cuda', 'runtime', 'main.cu'), 'utf8')).toMatch(/release_staging\(\);\n    check_lattice\(path\);/);
  });
});

describe('GEMV tile plans', () => {
  const shapes: [number, number][] = [[4096, 4096], [11008, 4096], [4096, 11008], [8192, 28672], [384, 1024], [100, 450]];
  const formats = [ternaryFormat('trit5', 128, true), ternaryFormat('bit2', 128, true), ternaryFormat('trit5', 1024, false), ternaryFormat('bit2', 100, false)];
  for (const arch of ['sm_80', 'sm_86', 'sm_90a'] as const) {
    it(`${arch}: vectors divide rows, tiles hold whole vectors, shared memory fits`, () => {
      for (const f of formats) {
        for (const [n, k] of shapes) {
          for (const m of [1, 4, 16]) {
            const p = gemvPlan({ format: f, n, k, m, arch });
            expect(p.rowBytes % p.vec.bytes, `${f.id} ${n}x${k}`).toBe(0);
            expect(p.tu % p.upc).toBe(0);
            expect(p.upr).toBe(groupsPerRow(f, k) * p.upg);
            expect(p.smemBytes).toBeLessThanOrEqual(CUDA_ARCHS[arch].maxSmemPerBlock);
            expect(p.rowsPerBlock * p.rowBlocks).toBeGreaterThanOrEqual(n);
          }
        }
      }
    });
  }
  it('rejects M outside 1…16 and unknown architectures', () => {
    expect(() => gemvPlan({ format: ternaryFormat('trit5', 128), n: 8, k: 128, m: 17, arch: 'sm_90a' })).toThrow(/M=17/);
    expect(() => parseArchs('sm_90a,sm_42')).toThrow(/unknown CUDA architecture 'sm_42'/);
    expect(parseArchs(undefined)).toEqual(['sm_90a', 'sm_80']);
  });
});

describe('emitCuda', () => {
  it('writes per-arch model headers, the host program and a Makefile', () => {
    const dir = mkdtempSync(join(tmpdir(), 'twlac-cuda-emit-'));
    try {
      const files = emitCuda(syntheticManifest(tiny, ternaryFormat('trit5', 128)), dir, ['sm_90a', 'sm_80']);
      expect(Object.keys(files).sort()).toEqual(['Makefile', 'sm_80/twlac_model.cuh', 'sm_90a/twlac_model.cuh', 'twlac_cuda_main.cu']);
      const h = readFileSync(join(dir, 'sm_90a/twlac_model.cuh'), 'utf8');
      expect(h).toContain('compute_90a');
      // tq1 codes are transcoded to bit2 at load and run on the streaming GEMVs.
      expect(h).toMatch(/launch_transcode_trit5_bit2_g128\(/);
      expect(h).toMatch(/gemv_sg_tq2_g128_n128_64_64_k128_m1_sm_90a/);
      expect(h).toMatch(/#define TWLAC_DEVICE_BYTES/);
      expect(readFileSync(join(dir, 'Makefile'), 'utf8')).toContain('twlac_cuda_sm_80:');
    } finally {
      rmSync(dir, { recursive: true, force: true });
    }
  });
  it('routes ≤ 8-bit sites to the int8 GEMV only where the format allows it', () => {
    const a8 = cudaModelSource(syntheticManifest(tiny, ternaryFormat('bit2', 128), 8), 'sm_90a');
    // M = 1 and 4: streaming int8 GEMVs (q/k/v and gate/up grouped); M = 16 (prefill chunks):
    // the tensor-core skinny GEMM on the dequantised fp16 copy.
    expect(a8).toMatch(/gemv_sa8g_tq2_g128_n128_64_64_k128_m1_sm_90a/);
    expect(a8).toMatch(/gemv_sa8_tq2_g128_n128_k256_m4_sm_90a/);
    expect(a8).toMatch(/gemv_tc_tq2_g128_n128_k128_m16_sm_90a/);
    expect(a8).not.toMatch(/gemv_a8_/);
    expect(a8).toMatch(/group_a8_tq2_g128_n256_256_k128\(b\.a16, b\.q8, b\.qp,/);
    const a16 = cudaModelSource(syntheticManifest(tiny, ternaryFormat('bit2', 128), 16), 'sm_90a');
    expect(a16).not.toMatch(/a8_/);
    expect(a16).toMatch(/gemv_sg_tq2_g128_n256_256_k128_m1_sm_90a/);
    expect(a16).toMatch(/gemv_tc_tq2_g128_n256_k128_m4_sm_90a/);
    // tq1 with groups of 16k is transcoded to bit2 and takes the int8 path; tq1_g40 cannot be.
    const trit = cudaModelSource(syntheticManifest(tiny, ternaryFormat('trit5', 128), 8), 'sm_90a');
    expect(trit).toMatch(/group_a8_tq2_g128_n256_256_k128\(b\.a16, b\.q8, b\.qp,/);
    const trit40 = cudaModelSource(syntheticManifest(tiny, ternaryFormat('trit5', 40), 8), 'sm_90a');
    expect(trit40).not.toMatch(/a8_|gemv_s|transcode_/);
    expect(trit40).toMatch(/gemv_tq1_g40_n128_k128_m1_sm_90a/);
    // beyond 16 tokens: the int8 prefill GEMM of the arch (fp32 out, accumulating into the
    // residual), or the 16-token kernels slice by slice where the site is not int8
    expect(a8).toMatch(/launch_gemm_wg_tq2_g128_n128_k256_sm_90a_f32\(q, qp, codes, scales, shifts, y, T, acc, s\)/);
    expect(cudaModelSource(syntheticManifest(tiny, ternaryFormat('bit2', 128), 8), 'sm_80')).toMatch(/launch_gemm_a8_tq2_g128_n128_k256_sm_80_f32\(/);
    // a format the prefill GEMM refuses (groups of 64) takes the skinny GEMM on the dequantised copy
    const g64 = cudaModelSource(syntheticManifest(tiny, ternaryFormat('bit2', 64), 8), 'sm_90a');
    expect(g64).not.toMatch(/gemm_/);
    expect(g64).toMatch(/for \(int t0 = 0; t0 < T; t0 \+= 64\)\n    launch_gemv_tc_tq2_g64_n128_k256_m64_sm_90a\(a \+ \(size_t\)t0 \* 256, codes/);
    expect(a16).not.toMatch(/gemm_/);
    // attention: split kernels up to 16 tokens, the tensor-core prefill kernel beyond
    expect(a16).toMatch(/if \(T > 16\) launch_attn_prefill_tc_h2_kv1_d64\(/);
    expect(a16).toMatch(/if \(T <= 16\) launch_attn_combine_h2_d64\(/);
    expect(a16).toMatch(/for \(int t0 = 0; t0 < T; t0 \+= 64\)\n    launch_gemv_tc_tq2_g128_n128_k256_m64_sm_90a\(/);
    expect(gemvA8Unsupported({ format: ternaryFormat('trit5', 128), k: 128 })).toMatch(/not bit2/);
    expect(gemvA8Unsupported({ format: ternaryFormat('bit2', 128), k: 120 })).toMatch(/K=120/);
  });
  it('streaming GEMV: supported shapes, tuning by activation kind, groups of one K only', () => {
    const f = ternaryFormat('bit2', 128);
    expect(gemvStreamUnsupported({ format: ternaryFormat('trit5', 128), k: 128, m: 1 })).toMatch(/not bit2/);
    expect(gemvStreamUnsupported({ format: f, k: 120, m: 1 })).toMatch(/K=120/);
    expect(gemvStreamUnsupported({ format: f, k: 128, m: 5 })).toMatch(/M=5/);
    // Every lane chunk lies in one group, the grid covers every row, and the batches cover every chunk.
    for (const [n, k] of [[4096, 4096], [28672, 8192], [8192, 28672], [384, 1024], [70, 992]]) {
      for (const act of ['f16', 'u8'] as const) {
        for (const g of [128, 96, 48]) {
          const p = gemvStreamPlan({ format: ternaryFormat('bit2', g), n, k, m: 1, arch: 'sm_90a' }, act);
          expect(p.bpg % p.vec).toBe(0);
          expect(p.blocks * p.rowsPerBlock).toBeGreaterThanOrEqual(n);
          expect(Math.ceil(p.iters / p.ub) * p.ub * 32 * p.wk).toBeGreaterThanOrEqual(p.cpr);
        }
      }
    }
    // The f16 kernel keeps more rows a warp than the memory-bound u8 kernel at the 70B shape.
    const shape = { format: f, n: 28672, k: 8192, m: 1, arch: 'sm_90a' as const };
    expect(gemvStreamPlan(shape, 'f16').rows).toBeGreaterThan(gemvStreamPlan(shape, 'u8').rows);
    expect(() => gemvStreamGroupKernel([{ ...shape }, { ...shape, k: 4096 }], 'u8')).toThrow(/K=4096/);
  });
  it('streaming GEMV bulk loads: default for int8 activations at M = 1 up to 20 MB of codes on sm_90+, phases of whole batches', () => {
    const f = ternaryFormat('bit2', 128);
    const plan = (n: number, k: number, o: { act?: 'f16' | 'u8'; m?: number; arch?: CudaArch; tune?: Partial<StreamTuning> } = {}) =>
      gemvStreamPlan({ format: f, n, k, m: o.m ?? 1, arch: o.arch ?? 'sm_90a' }, o.act ?? 'u8', o.tune);
    // the LLaMA-2-7B shapes and 8192²: one phase a batch, 8 rows a block at N ≤ 4096 (K split over 2 warps), else 16
    for (const [n, k, phases, rpb] of [[4096, 4096, 1, 8], [11008, 4096, 2, 16], [4096, 11008, 3, 8], [8192, 8192, 4, 16]]) {
      const p = plan(n, k);
      expect([p.bulk, p.rowsPerBlock, p.batches]).toEqual([phases, rpb, phases]);
      expect(p.sliceBytes).toBeLessThanOrEqual(40 * 1024);
    }
    // not: 70B shapes (register streaming at the copy bandwidth), fp16 activations, M > 1,
    // architectures without bulk copies, slices off 16-byte alignment (K = 384: 6-byte scale rows)
    for (const p of [plan(28672, 8192), plan(8192, 28672), plan(4096, 4096, { act: 'f16' }), plan(4096, 4096, { m: 2 }), plan(4096, 4096, { arch: 'sm_80' }), plan(384, 384)]) expect(p.bulk).toBe(0);
    // a shape the bulk default does not fit falls back to the plain default plan, not to the bulk plan's rows
    const fields = ({ phaseStart: _, ...rest }: ReturnType<typeof plan>) => rest;
    expect(fields(plan(384, 384))).toEqual(fields(plan(384, 384, { tune: { bulk: 0, warps: 4 } })));
    // explicit plans load through registers unless they ask for bulk; sm_80 refuses an explicit bulk plan
    expect(plan(4096, 4096, { tune: { rows: 4, warps: 4, wk: 2, ub: 1 } }).bulk).toBe(0);
    expect(() => plan(4096, 4096, { arch: 'sm_80', tune: { rows: 4, warps: 4, wk: 2, ub: 1, bulk: 1 } })).toThrow(/bulk loads need sm_90/);
    // phases start on batch boundaries, grow strictly, and end at the row's last chunk
    for (const [n, k, tune] of [[4096, 11008, { rows: 2, warps: 4, wk: 1, ub: 1, bulk: 6 }], [96, 11008, { rows: 1, warps: 4, wk: 1, ub: 2, bulk: 3 }], [300, 4096, { rows: 2, warps: 4, wk: 1, ub: 1, bulk: 2 }], [8192, 8192, {}]] as const) {
      const p = plan(n, k, { tune });
      const starts = Array.from({ length: p.bulk + 1 }, (_, i) => p.phaseStart(i));
      expect(starts[0]).toBe(0);
      expect(starts[p.bulk]).toBe(p.cpr);
      for (let i = 0; i < p.bulk; i++) {
        expect(starts[i + 1]).toBeGreaterThan(starts[i]);
        expect(starts[i] % (32 * p.wk * p.ub)).toBe(0);
      }
      // the kernel waits, before batch bt, for phase ((bt + 1)·P − 1) / batches: it holds every chunk of the batch
      for (let bt = 0; bt < p.batches; bt++) {
        const need = Math.floor(((bt + 1) * p.bulk - 1) / p.batches);
        expect(starts[need + 1]).toBeGreaterThanOrEqual(Math.min(p.cpr, 32 * p.wk * p.ub * (bt + 1)));
        expect(starts[need]).toBeLessThanOrEqual(32 * p.wk * p.ub * bt);
      }
    }
    const src = gemvStreamKernel({ format: f, n: 8192, k: 8192, m: 1, arch: 'sm_90a' }, 'u8').source();
    expect(src).toMatch(/cp\.async\.bulk\.shared::cluster\.global\.mbarrier::complete_tx::bytes/);
    expect(src).toMatch(/uint64_t twlac_wbar\[4\]/);
    expect(src.indexOf('cp.async.bulk')).toBeLessThan(src.indexOf('TWLAC_GRID_WAIT()')); // requested before the grid wait
    expect(src).not.toMatch(/__ldg\(reinterpret_cast<const uint4\*>\(wc/); // shared memory is read with plain loads
  });
  it('streaming GEMV activations by bulk copy: one copy a phase, of the K range its chunks read, on the phase\'s mbarrier armed with its bytes', () => {
    const f = ternaryFormat('bit2', 128);
    for (const [n, k, tune] of [
      [4096, 11008, { rows: 4, warps: 4, wk: 2, ub: 1, bulk: 3 }],
      [200, 4000, { rows: 2, warps: 4, wk: 1, ub: 1, bulk: 2 }],
    ] as const) {
      const p = gemvStreamPlan({ format: f, n, k, m: 1, arch: 'sm_90a' }, 'u8', { ...tune, xbulk: true });
      const src = gemvStreamKernel({ format: f, n, k, m: 1, arch: 'sm_90a' }, 'u8', { ...tune, xbulk: true }).source();
      expect(p.bulk).toBe(tune.bulk);
      expect(src).toContain(`uint8_t twlac_xbk[${k}]`);
      expect(src).toContain('*reinterpret_cast<const uint4*>(twlac_xbk + kq)');
      const armed = [...src.matchAll(/"r"\(xbar \+ (\d+)\), "r"\((\d+)u\)/g)].map((m) => [Number(m[1]) / 8, Number(m[2])]);
      const copies = [...src.matchAll(/"r"\(xs \+ (\d+)u\), "l"\(a \+ (\d+)\), "r"\((\d+)u\), "r"\(xbar \+ (\d+)\)/g)].map((m) => m.slice(1).map(Number));
      expect(armed.map(([i]) => i)).toEqual([...Array(p.bulk).keys()]);
      expect(copies).toHaveLength(p.bulk);
      let next = 0;
      for (const [i, [dst, src0, bytes, bar]] of copies.entries()) {
        // the chunks of phase i (64 codes each) read k = 64·phaseStart(i)… (clipped to K): that range, in order, no gaps
        expect(dst).toBe(src0);
        expect(src0).toBe(next);
        expect(src0).toBe(Math.min(k, 64 * p.phaseStart(i)));
        expect(src0 + bytes).toBe(Math.min(k, 64 * p.phaseStart(i + 1)));
        expect(bar / 8).toBe(i);
        expect(armed[i][1]).toBe(bytes);
        expect(bytes % 16).toBe(0);
        next = src0 + bytes;
      }
      expect(next).toBe(k);
      // requested after the grid wait (the activations are the previous kernel's output), waited on with the weights' phases
      expect(src.indexOf('"l"(a + 0)')).toBeGreaterThan(src.indexOf('TWLAC_GRID_WAIT()'));
      expect(src).toMatch(/"r"\(xbar \+ 8 \* landed\)/);
      expect(src).toContain('const uint32_t xbar = (uint32_t)__cvta_generic_to_shared(twlac_xbar);');
    }
    const s1 = { format: f, n: 4096, k: 11008, m: 1, arch: 'sm_90a' } as const;
    expect(() => gemvStreamPlan(s1, 'f16', { bulk: 3, xbulk: true })).toThrow(/int8 activations, M = 1/);
    expect(() => gemvStreamPlan({ ...s1, m: 2 }, 'u8', { bulk: 3, xbulk: true })).toThrow(/M = 1/);
    expect(() => gemvStreamPlan(s1, 'u8', { bulk: 0, xbulk: true })).toThrow(/a bulk plan/);
    expect(() => gemvStreamPlan({ ...s1, arch: 'sm_80' }, 'u8', { xbulk: true })).toThrow(/a bulk plan/);
  });
  it('tensor-core skinny GEMM: groups of 64k, whole groups, up to 16 tokens in tiles of 8', () => {
    expect(gemvTcUnsupported({ format: ternaryFormat('bit2', 96), k: 960, m: 4 })).toMatch(/groups of 64k/);
    expect(gemvTcUnsupported({ format: ternaryFormat('bit2', 128), k: 1000, m: 4 })).toMatch(/K=1000/);
    expect(gemvTcUnsupported({ format: ternaryFormat('bit2', 128), k: 1024, m: 65 })).toMatch(/M=65/);
    for (const [n, k, m] of [[4096, 4096, 16], [28672, 8192, 9], [70, 448, 1]]) {
      const p = gemvTcPlan({ format: ternaryFormat('bit2', 128), n, k: Math.ceil(k / 128) * 128, m, arch: 'sm_90a' });
      expect(p.tiles * 16).toBeGreaterThanOrEqual(n);
      expect(p.wk * p.gpw).toBeGreaterThanOrEqual(p.ng);
      expect(p.nt).toBe(Math.ceil(m / 8));
    }
  });
  it('linear biases (Qwen2 q/k/v, and any other linear): a bias add after the linear, before anything reads its output', () => {
    const m = syntheticManifest({ ...tiny, layers: 2 }, ternaryFormat('trit5', 128));
    const plain = cudaModelSource(m, 'sm_90a', CUDA_EMITTABLE);
    for (const r of ['q', 'k', 'v', 'o'] as const) withBias(m, m.blocks[1][r]);
    withBias(m, m.lmHead);
    const src = cudaModelSource(m, 'sm_90a', CUDA_EMITTABLE);
    expect(plain).not.toMatch(/bias_add/);
    const forward = src.slice(src.indexOf('static void twlac_forward'));
    const [, b0, b1] = forward.split('// block ');
    expect(b0).not.toMatch(/bias_add/);
    // q, k, v after their grouped launch and before RoPE; o into the residual stream after o
    expect(b1).toMatch(/TWLAC_MARK\(s, "attn_act"\);\n.*b\.v, T, 0, s\);\n  launch_bias_add_n128\([^\n]*, b\.q, T, s\);\n  launch_bias_add_n64\([^\n]*, b\.k, T, s\);\n  launch_bias_add_n64\([^\n]*, b\.v, T, s\);\n  TWLAC_MARK\(s, "qkv"\);\n  launch_rope/);
    expect(b1).toMatch(/b\.x, T, 1, s\);\n  launch_bias_add_n128\([^\n]*b\.x, T, s\);\n  TWLAC_MARK\(s, "o"\);/);
    expect(forward).toMatch(/b\.logits, nLogits, 0, s\);\n  launch_bias_add_n256\([^\n]*b\.logits, nLogits, s\);\n  TWLAC_MARK\(s, "lm_head"\);/);
  });
  it('order-2 linears: the second plane runs on its own format\'s kernels, accumulated into the first plane\'s output, outside grouped launches', () => {
    const m = syntheticManifest({ ...tiny, layers: 2 }, ternaryFormat('trit5', 128));
    const plain = cudaModelSource(m, 'sm_90a', CUDA_EMITTABLE);
    withOrder2(m, m.blocks[1].v);
    withOrder2(m, m.blocks[1].down);
    withBias(m, m.blocks[1].v);
    const src = cudaModelSource(m, 'sm_90a', CUDA_EMITTABLE);
    expect(plain).not.toMatch(/tq1_g128_ns/);
    const [, b0, b1] = src.slice(src.indexOf('static void twlac_forward')).split('// block ');
    expect(b0).not.toMatch(/tq1_g128_ns/);
    // block 1: v leaves the grouped q/k/v launch; its first plane writes b.v, its second adds to it, then the bias
    const v = b1.match(/\n  (linear_\w+)\([^\n]*, b\.v, T, 0, s\);\n  (linear_\w+)\([^\n]*, b\.v, T, 1, s\);\n  launch_bias_add_n64\([^\n]*b\.v, T, s\);/);
    expect(v).not.toBeNull();
    expect(v![1]).not.toBe(v![2]);
    expect(v![2]).toMatch(/_tq\d_g128_ns_n64_k128$/);
    expect(b1).not.toMatch(/group_[^\n]*b\.v/);
    // down: both planes accumulate into the residual stream
    expect(b1).toMatch(/b\.x, T, 1, s\);\n  linear_\w+_ns_n128_k256\([^\n]*b\.x, T, 1, s\);\n  TWLAC_MARK\(s, "down"\);/);
    // a CUDA table without the feature refuses it by name, with the block that uses it
    const only = syntheticManifest({ ...tiny, layers: 2 }, ternaryFormat('trit5', 128));
    withOrder2(only, only.blocks[1].v);
    expect(() => cudaModelSource(only, 'sm_90a', { ...CUDA_FEATURES, 'order2-linear': false })).toThrow(/^the CUDA backend does not implement feature 'order2-linear' \(.*\) \(block 1\)$/);
  });
  it('q/k norms (Qwen3): per-head RMSNorm of q then k after q/k/v (and their biases), before RoPE', () => {
    const m = syntheticManifest({ ...tiny, layers: 2 }, ternaryFormat('trit5', 128));
    withQkNorm(m, 1);
    withBias(m, m.blocks[1].k);
    const src = cudaModelSource(m, 'sm_90a', CUDA_EMITTABLE);
    const [, b0, b1] = src.slice(src.indexOf('static void twlac_forward')).split('// block ');
    expect(b0).not.toMatch(/head_norm/);
    expect(b1).toMatch(/b\.k, T, s\);\n  TWLAC_MARK\(s, "qkv"\);\n  launch_head_norm_h2_d64\([^\n]*\(W \+ \d+ull\), T, s\);\n  launch_head_norm_h1_d64\(b\.k, [^\n]*, T, s\);\n  TWLAC_MARK\(s, "qk_norm"\);\n  launch_rope/);
    expect(b1).toMatch(/launch_head_norm_h2_d64\(b\.q, /);
    expect(src).toMatch(/head_norm_h2_d64\([^]*?rsqrtf\(ss \/ 64\.0f \+ 1\.000000000e-6f\)[^]*?\* gamma\[i\]/);
  });
  it('a block whose program states another query scale gets attention kernels with that scale; the default keeps the default ones', () => {
    const m = syntheticManifest({ ...tiny, layers: 2 }, ternaryFormat('trit5', 128));
    const plain = cudaModelSource(m, 'sm_90a', CUDA_EMITTABLE);
    m.blocks[1].attention.scale = 0.1;
    const src = cudaModelSource(m, 'sm_90a', CUDA_EMITTABLE);
    const forward = src.slice(src.indexOf('static void twlac_forward'));
    const blocks = forward.split('// block ');
    expect(blocks[1]).toMatch(/launch_attn_partial_h2_kv1_d64\(/);
    expect(blocks[2]).toMatch(/launch_attn_partial_h2_kv1_d64_s10000000\(/);
    expect(blocks[2]).toMatch(/launch_attn_prefill_tc_h2_kv1_d64_s10000000\(/);
    const kernelText = (name: string) => {
      const at = src.indexOf(`// twlac kernel ${name}(`);
      expect(at).toBeGreaterThan(0);
      return src.slice(at, src.indexOf('// twlac kernel', at + 1));
    };
    expect(kernelText('attn_partial_h2_kv1_d64_s10000000')).toContain(`* ${cudaFloat(0.1).text};`);
    expect(kernelText('attn_prefill_tc_h2_kv1_d64_s10000000')).toContain(`const float sc = ${cudaFloat(Math.LOG2E * 0.1).text};`);
    expect(kernelText('attn_partial_h2_kv1_d64')).toContain(`* ${cudaFloat(1 / 8).text};`);
    expect(plain).not.toMatch(/_s10000000/);
  });
  it('sliding windows: a windowed block gets split and scalar prefill kernels that start at the window; a global block keeps the plain ones', () => {
    const m = syntheticManifest({ ...tiny, layers: 2 }, ternaryFormat('trit5', 128));
    m.blocks[0].attention.window = 16;
    const src = cudaModelSource(m, 'sm_90a', CUDA_EMITTABLE);
    const [, b0, b1] = src.slice(src.indexOf('static void twlac_forward')).split('// block ');
    expect(b0).toMatch(/launch_attn_partial_h2_kv1_d64_w16\(/);
    expect(b0).toMatch(/launch_attn_prefill_h2_kv1_d64_w16\(/); // not the tensor-core kernel
    expect(b1).toMatch(/launch_attn_partial_h2_kv1_d64\(/);
    expect(b1).toMatch(/launch_attn_prefill_tc_h2_kv1_d64\(/);
    const part = src.slice(src.indexOf('// twlac kernel attn_partial_h2_kv1_d64_w16('));
    expect(part).toMatch(/const int p0 = max\(blockIdx\.y \* 64, len - 16\)/);
    const pre = src.slice(src.indexOf('// twlac kernel attn_prefill_h2_kv1_d64_w16('));
    expect(pre).toMatch(/const int first = mine - 16 \+ 1;/);
    expect(pre).toMatch(/< first\) sc\[j\] = -INFINITY/);
  });
  it('partial rotary: RoPE rotates the first rotaryDim dims with frequencies over rotaryDim, k passes the rest to the cache', () => {
    const m = syntheticManifest({ ...tiny, layers: 1 }, ternaryFormat('trit5', 128));
    m.program.rope.rotaryDim = 32;
    const src = cudaModelSource(m, 'sm_90a', CUDA_EMITTABLE);
    const rope = src.slice(src.indexOf('// twlac kernel rope_kv_h2_kv1_d64_r32('));
    expect(rope).toMatch(/_inv_freq\[16\] = \{1\.0+e\+0, /);
    expect(rope).toContain(`${Math.pow(m.program.rope.theta, -2 / 32).toExponential(17)}`);
    expect(rope).toMatch(/if \(i < 16\) \{/);
    expect(rope).toMatch(/for \(int e = 32 \+ threadIdx\.x; e < 64; e \+= blockDim\.x\) kcache/);
  });
  it('batched decode: the cache append and the split attention place token t by (posp, seq): one sequence at *posp + t, or sequence t at posp[t] with its cache seq elements on', () => {
    const src = cudaModelSource(syntheticManifest({ ...tiny, layers: 2 }, ternaryFormat('trit5', 128)), 'sm_90a', CUDA_EMITTABLE);
    const forward = src.slice(src.indexOf('static void twlac_forward'));
    // every launch of the cache append and the split attention passes the batch's cache stride
    expect(forward.match(/launch_rope_kv_[^\n]*\(b\.q, b\.k, b\.v, [^\n]*, b\.pos, b\.seq, T, s\);/g)).toHaveLength(2);
    expect(forward.match(/launch_attn_partial_[^\n]*b\.pm, b\.pl, b\.pacc, b\.pos, b\.seq, T, \d+, s\);/g)).toHaveLength(2);
    expect(src).toMatch(/unsigned long long seq;\n\};/);
    for (const k of ['rope_kv_h2_kv1_d64(', 'attn_partial_h2_kv1_d64(']) {
      const body = src.slice(src.indexOf(`// twlac kernel ${k}`)).split('\n}\n')[0];
      expect(body).toMatch(/\(seq \? posp\[t\] : \*posp \+ t\)/);
      expect(body).toMatch(/kcache \+= t \* seq;\n  vcache \+= t \* seq;/);
    }
  });
  it('GeGLU, embedding, residual and logit multipliers: each where the program puts it, absent from a plain LLaMA', () => {
    const m = syntheticManifest({ ...tiny, layers: 2 }, ternaryFormat('trit5', 128));
    const plain = cudaModelSource(m, 'sm_90a', CUDA_EMITTABLE);
    m.blocks[1].mlp.activation = 'gelu-tanh';
    m.program.embedScale = 2.5;
    m.program.logitScale = 0.4;
    m.blocks[1].residualScale = { attn: 0.7, mlp: 1.3 };
    const src = cudaModelSource(m, 'sm_90a', CUDA_EMITTABLE);
    for (const re of [/act_geglu_/, /residual_add_/, /scale_n\d+_s/, /embed_h\d+_f16_s/]) expect(plain).not.toMatch(re);
    const forward = src.slice(src.indexOf('static void twlac_forward'));
    const [pre, b0, b1] = forward.split('// block ');
    expect(pre).toMatch(/launch_embed_h\d+_f16_s2500000\(/);
    expect(src).toMatch(/x\[\(size_t\)t \* \d+ \+ i\] = __half2float\([^\n]*\) \* 2\.5/);
    expect(b0).toMatch(/launch_act_swiglu_/);
    expect(b0).not.toMatch(/residual_add/);
    expect(b1).toMatch(/launch_act_geglu_d\d+\(b\.g, b\.u/);
    // o and down into b.r, then x += s·r
    expect(b1).toMatch(/b\.r, T, 0, s\);\n  launch_residual_add_n\d+_s700000\(b\.r, b\.x, T, s\);\n  TWLAC_MARK\(s, "o"\);/);
    expect(b1).toMatch(/b\.r, T, 0, s\);\n  launch_residual_add_n\d+_s1300000\(b\.r, b\.x, T, s\);\n  TWLAC_MARK\(s, "down"\);/);
    expect(forward).toMatch(/b\.logits, nLogits, 0, s\);\n  launch_scale_n\d+_s400000\(b\.logits, nLogits, s\);\n  TWLAC_MARK\(s, "lm_head"\);/);
    expect(src).toContain('tanhf(0.7978845608028654f * (');
  });
  it('GELU(erf) MLP: the down act kernel takes σ(g)·u with erff, where the gated SwiGLU would be', () => {
    const m = syntheticManifest({ ...tiny, layers: 2 }, ternaryFormat('trit5', 128));
    m.blocks[1].mlp.activation = 'gelu';
    const src = cudaModelSource(m, 'sm_90a', CUDA_EMITTABLE);
    const [, b0, b1] = src.slice(src.indexOf('static void twlac_forward')).split('// block ');
    expect(b0).toMatch(/launch_act_swiglu_d256\(b\.g, b\.u, /);
    expect(b1).toMatch(/TWLAC_MARK\(s, "gate_up"\);\n  launch_act_geglu_erf_d256\(b\.g, b\.u, nullptr, nullptr, /);
    const k = src.slice(src.indexOf('// twlac kernel act_geglu_erf_d256('), src.indexOf('// twlac kernel', src.indexOf('// twlac kernel act_geglu_erf_d256(') + 1));
    expect(k).toContain('(0.5f * src[(size_t)t * 256 + i] * (1.f + erff(src[(size_t)t * 256 + i] * 0.7071067811865476f))) * src2[(size_t)t * 256 + i])');
    // an online transform at the down site: the same value into the transform's buffer
    expect(actKernel({ source: 'geglu_erf', dim: 256, transform: { l: 16, r: 16 }, eps: 1e-5 }).source()).toContain('buf[i] = ((0.5f * src[(size_t)t * 256 + i] * (1.f + erff(');
    expect(() => cudaModelSource(m, 'sm_90a', { ...CUDA_FEATURES, 'gelu-mlp': false })).toThrow(/^the CUDA backend does not implement feature 'gelu-mlp' \(.*\) \(block 1\)$/);
  });
  it('GPT-2 (LayerNorm with β, learned positions, no RoPE, ungated GELU MLP): each step where the program puts it', () => {
    const m = syntheticManifest({ ...tiny, layers: 2 }, ternaryFormat('trit5', 128));
    gpt2Like(m);
    withBias(m, m.blocks[1].up);
    const src = cudaModelSource(m, 'sm_90a', CUDA_EMITTABLE);
    const forward = src.slice(src.indexOf('static void twlac_forward'));
    const [pre, b0, b1] = forward.split('// block ');
    // a float tensor's pointer, at its device offset in the header's tensor table
    const at = (name: string) => {
      const dev = src.match(new RegExp(`\\{\\d+ull, \\d+ull, (\\d+)ull, [^\\n]*// ${name.replaceAll('.', '\\.')}\\n`));
      expect(dev).not.toBeNull();
      return `reinterpret_cast<const float\\*>\\(W \\+ ${dev![1]}ull\\)`;
    };
    // x₀ = E[id] + P[pos0 + t] (P[pos_t] for a batch of sequences): the position table and the device positions
    expect(pre).toMatch(new RegExp(`launch_embed_h128_f16_pos\\(ids, [^\\n]*, ${at('position_embed')}, b\\.pos, b\\.seq, b\\.x, T, s\\);`));
    expect(src).toMatch(/x\[\(size_t\)t \* 128 \+ i\] = __half2float\([^\n]*\) \+ ptable\[\(size_t\)\(seq \? posp\[t\] : \*posp \+ t\) \* 128 \+ i\];/);
    for (const [i, b] of [b0, b1].entries()) {
      // LayerNorm of b.x with γ and β at both pre-norms; k and v to the cache without RoPE
      expect(b).toMatch(new RegExp(`launch_act_layer_norm_d128\\(b\\.x, nullptr, ${at(`blocks.${i}.attn_norm`)}, ${at(`blocks.${i}.attn_norm_bias`)}, `));
      expect(b).toMatch(new RegExp(`launch_act_layer_norm_d128\\(b\\.x, nullptr, ${at(`blocks.${i}.mlp_norm`)}, ${at(`blocks.${i}.mlp_norm_bias`)}, `));
      expect(b).toMatch(/TWLAC_MARK\(s, "qkv"\);\n  launch_kv_append_kv1_d64\(b\.q, b\.k, b\.v, /);
      expect(b).not.toMatch(/launch_rope|gate_up|b\.g\b/);
      // u = up(m) alone, then σ(u)
      expect(b).toMatch(/, b\.u, T, 0, s\);(\n  launch_bias_add_n256\([^\n]*b\.u, T, s\);)?\n  TWLAC_MARK\(s, "up"\);\n  launch_act_gelu_tanh_d256\(b\.u, nullptr, nullptr, nullptr, /);
    }
    expect(b0).not.toMatch(/bias_add_n256/);
    expect(b1).toMatch(/launch_bias_add_n256\([^\n]*b\.u, T, s\);\n  TWLAC_MARK\(s, "up"\);/);
    expect(forward).toMatch(new RegExp(`// final norm and lm_head\\n  launch_act_layer_norm_d128\\(b\\.x, nullptr, ${at('final_norm')}, ${at('final_norm_bias')}, `));
    expect(src).not.toMatch(/rope_kv_|act_norm_/);
    // the kernels: LayerNorm's mean first, then the centred variance (two passes), ·γ + β; σ(u) ungated
    const kernel = (name: string) => {
      const i = src.indexOf(`// twlac kernel ${name}(`);
      expect(i).toBeGreaterThan(0);
      return src.slice(i, src.indexOf('// twlac kernel', i + 1));
    };
    const ln = kernel('act_layer_norm_d128');
    expect(ln).toMatch(/mu = twlac_block_reduce<false>\(mu, scratch\) \/ 128\.0f;\n  float ss = 0\.f;\n[^\n]*const float v = src\[\(size_t\)t \* 128 \+ i\] - mu; ss \+= v \* v;/);
    expect(ln).toContain('(src[(size_t)t * 128 + i] - mu) * inv * (gamma ? gamma[i] : 1.f) + (beta ? beta[i] : 0.f)');
    expect(kernel('act_gelu_tanh_d256')).toContain('__float2half_rn((0.5f * src[(size_t)t * 256 + i] * (1.f + tanhf(0.7978845608028654f * (src[');
    expect(kernel('act_gelu_tanh_d256')).not.toMatch(/src2\[/);
    const kv = kernel('kv_append_kv1_d64');
    expect(kv).toContain('kcache[dst + e] = __float2half_rn(k[src + e]);');
    expect(kv).toContain('vcache[dst + e] = __float2half_rn(v[src + e]);');
    // a LayerNorm without β (folded into the next linears) passes a null β
    const noBeta = syntheticManifest({ ...tiny, layers: 1 }, ternaryFormat('trit5', 128));
    gpt2Like(noBeta);
    delete noBeta.blocks[0].attnNormBias;
    expect(cudaModelSource(noBeta, 'sm_90a', CUDA_EMITTABLE)).toMatch(/launch_act_layer_norm_d128\(b\.x, nullptr, reinterpret_cast<const float\*>\(W \+ \d+ull\), nullptr, /);
    // a position table shorter than the positions the runtime takes is refused
    const short = syntheticManifest({ ...tiny, layers: 1 }, ternaryFormat('trit5', 128));
    gpt2Like(short);
    short.tensors.position_embed.bytes = 64 * 128 * 4;
    expect(() => cudaModelSource(short, 'sm_90a', CUDA_EMITTABLE)).toThrow(/^CUDA target: the position table position_embed is not float32 \[128\]\[128\]$/);
  });
  it('parallel residual (GPT-NeoX, Phi-2): the MLP reads the block input: mlp-in and gate/up run before o adds into b.x', () => {
    const m = syntheticManifest({ ...tiny, layers: 1 }, ternaryFormat('trit5', 128));
    const seq = cudaModelSource(m, 'sm_90a', CUDA_EMITTABLE);
    m.program.residual = 'parallel';
    const par = cudaModelSource(m, 'sm_90a', CUDA_EMITTABLE);
    const marks = (src: string) => [...src.slice(src.indexOf('static void twlac_forward')).matchAll(/TWLAC_MARK\(s, "(\w+)"\)/g)].map((x) => x[1]);
    expect(marks(seq)).toEqual(['embed', 'attn_act', 'qkv', 'rope_kv', 'attention', 'attn_combine', 'o_act', 'o', 'mlp_act', 'gate_up', 'down_act', 'down', 'final_act', 'lm_head']);
    expect(marks(par)).toEqual(['embed', 'attn_act', 'qkv', 'rope_kv', 'attention', 'attn_combine', 'mlp_act', 'gate_up', 'o_act', 'o', 'down_act', 'down', 'final_act', 'lm_head']);
    // the MLP's norm reads b.x before o accumulates into it; o and down both accumulate into b.x
    const body = par.slice(par.indexOf('// block 0'));
    expect(body.indexOf('launch_act_norm_d128(b.x', body.indexOf('"attn_combine"'))).toBeLessThan(body.indexOf('b.x, T, 1, s);'));
    expect(body.match(/b\.x, T, 1, s\);/g)).toHaveLength(2);
  });
  it('Gemma-2/3 and OLMo-2: post-norms, no pre-norm, soft-caps, a layer RoPE θ and whole-width q/k norms, each where the program puts it', () => {
    const m = syntheticManifest({ ...tiny, layers: 2 }, ternaryFormat('trit5', 128));
    const plain = cudaModelSource(m, 'sm_90a', CUDA_EMITTABLE);
    const b = m.blocks[1];
    b.postNorm = { attn: { gamma: addVector(m, 'blocks.1.attn_post_norm', 128), eps: 1e-6 }, mlp: { gamma: addVector(m, 'blocks.1.mlp_post_norm', 128), eps: 1e-6 } };
    b.residualScale = { attn: 1, mlp: 0.5 };
    b.preNorm = false;
    b.attention.softcap = 50;
    b.attention.ropeTheta = 1e6;
    withQkNorm(m, 1);
    b.attention.qkNorm = { q: { gamma: addVector(m, 'blocks.1.q_norm_all', 128), eps: 1e-6 }, k: { gamma: addVector(m, 'blocks.1.k_norm_all', 64), eps: 1e-6 }, span: 'all' };
    m.program.logitScale = 0.5;
    m.program.logitSoftcap = 30;
    const src = cudaModelSource(m, 'sm_90a', CUDA_EMITTABLE);
    expect(plain).not.toMatch(/post_norm_add|softcap_|_c50|head_norm|_t1000000|act_plain_d128\(b\.x/);
    const forward = src.slice(src.indexOf('static void twlac_forward'));
    const [, b0, rest] = forward.split('// block ');
    const b1 = rest.slice(0, rest.indexOf('// final norm'));
    const ptr = (name: string) => {
      const dev = src.match(new RegExp(`\\{\\d+ull, \\d+ull, (\\d+)ull, [^\\n]*// ${name.replaceAll('.', '\\.')}\\n`));
      expect(dev).not.toBeNull();
      return `reinterpret_cast<const float*>(W + ${dev![1]}ull)`;
    };
    // block 0 as LLaMA; block 1 reads the stream without a norm
    expect(b0).toMatch(/launch_act_norm_d128\(b\.x, nullptr, reinterpret_cast/);
    expect(b0).not.toMatch(/post_norm|act_plain_d128\(b\.x|_c50|_t1000000|head_norm/);
    expect(b1.startsWith('1\n  launch_act_plain_d128(b.x, nullptr, nullptr, nullptr, ')).toBe(true);
    expect(b1).toContain('TWLAC_MARK(s, "mlp_act");');
    expect(b1.match(/launch_act_plain_d128\(b\.x, nullptr, nullptr, nullptr, /g)).toHaveLength(2); // attn-in and mlp-in
    expect(b1).not.toMatch(/act_norm_d128/);
    // q, k normalised over the whole projection (one run, γ over it), then RoPE with the layer's θ
    expect(b1).toContain(`TWLAC_MARK(s, "qkv");\n  launch_head_norm_h1_d128(b.q, ${ptr('blocks.1.q_norm_all')}, T, s);\n  launch_head_norm_h1_d64(b.k, ${ptr('blocks.1.k_norm_all')}, T, s);\n  TWLAC_MARK(s, "qk_norm");\n  launch_rope_kv_h2_kv1_d64_t1000000(`);
    expect(src).toContain(`${Math.pow(1e6, -2 / 64).toExponential(17)}`);
    // soft-capped scores: split decode and the scalar prefill kernel (not the tensor-core one)
    expect(b1).toMatch(/launch_attn_prefill_h2_kv1_d64_c50000000\(/);
    expect(b1).toMatch(/launch_attn_partial_h2_kv1_d64_c50000000\(/);
    expect(b0).toMatch(/launch_attn_prefill_tc_h2_kv1_d64\(/);
    const kernel = (name: string) => {
      const i = src.indexOf(`// twlac kernel ${name}(`);
      expect(i).toBeGreaterThan(0);
      return src.slice(i, src.indexOf('// twlac kernel', i + 1));
    };
    const cap = cudaFloat(50).text;
    expect(kernel('attn_partial_h2_kv1_d64_c50000000')).toContain(`sc[pl_] = ${cap} * tanhf(acc / ${cap});`);
    expect(kernel('attn_prefill_h2_kv1_d64_c50000000')).toMatch(new RegExp(`sc\\[j\\] = ${cap.replace(/[.+]/g, '\\$&')} \\* tanhf\\(sc\\[j\\] / [^\\n]*\\);\\n      if \\(p0 \\+ l8`));
    // o and down into b.r, then x += s · rms(r)·γ with the post-norm's own γ
    expect(b1).toContain(`b.r, T, 0, s);\n  launch_post_norm_add_n128_e19932(b.r, ${ptr('blocks.1.attn_post_norm')}, b.x, T, s);\n  TWLAC_MARK(s, "o");`);
    expect(b1).toContain(`b.r, T, 0, s);\n  launch_post_norm_add_n128_s500000_e19932(b.r, ${ptr('blocks.1.mlp_post_norm')}, b.x, T, s);\n  TWLAC_MARK(s, "down");`);
    expect(kernel('post_norm_add_n128_s500000_e19932')).toContain('x[(size_t)t * 128 + i] += 5.000000000e-1f * (r[(size_t)t * 128 + i] * inv * gamma[i]);');
    // logits: scale, then cap·tanh(z/cap)
    expect(forward).toMatch(/launch_scale_n256_s500000\(b\.logits, nLogits, s\);\n  launch_softcap_n256_c30000000\(b\.logits, nLogits, s\);\n  TWLAC_MARK\(s, "lm_head"\);/);
    expect(kernel('softcap_n256_c30000000')).toContain(`= ${cudaFloat(30).text} * tanhf(y[(size_t)t * 256 + i] / ${cudaFloat(30).text});`);
  });
  it('StableLM qk_layernorm: a LayerNorm (γ, no β) per head of q and k, each head with its own γ', () => {
    const m = syntheticManifest({ ...tiny, layers: 1 }, ternaryFormat('trit5', 128));
    withQkNorm(m, 0);
    m.blocks[0].attention.qkNorm = { q: { gamma: addVector(m, 'q_ln', 128), eps: 1e-5 }, k: { gamma: addVector(m, 'k_ln', 64), eps: 1e-5 }, span: 'head-own', kind: 'layer' };
    const src = cudaModelSource(m, 'sm_90a', CUDA_EMITTABLE);
    expect(src).toMatch(/launch_head_norm_h2_d64_own_ln\(b\.q, [^\n]*\n  launch_head_norm_h1_d64_ln\(b\.k, /);
    const k = src.slice(src.indexOf('// twlac kernel head_norm_h2_d64_own_ln('));
    expect(k).toMatch(/mu = twlac_block_reduce<false>\(mu, scratch\) \/ 64\.0f;[^]*row\[i\] = \(row\[i\] - mu\) \* inv \* gamma\[blockIdx\.y \* 64 \+ i\];/);
    expect(() => cudaModelSource(m, 'sm_90a', { ...CUDA_FEATURES, 'qk-norm-head-own': false })).toThrow(/does not implement feature 'qk-norm-head-own'/);
  });
  it('refuses every program feature its table lacks, naming the feature and the block', () => {
    const cases: [string, (m: ReturnType<typeof syntheticManifest>) => void][] = [
      ['gelu-mlp', (m) => void (m.blocks[1].mlp.activation = 'gelu')],
      ['attn-softcap', (m) => void (m.blocks[1].attention.softcap = 50)],
      ['sliding-window', (m) => void (m.blocks[1].attention.window = 16)],
      ['linear-bias', (m) => void withBias(m, m.blocks[1].q)],
      ['qk-norm', (m) => void withQkNorm(m, 1)],
      ['query-scale', (m) => void (m.blocks[1].attention.scale = 0.1)],
      ['gelu-tanh-mlp', (m) => void (m.blocks[1].mlp.activation = 'gelu-tanh')],
      ['residual-scale', (m) => void (m.blocks[1].residualScale = { attn: 0.5, mlp: 1 })],
      ['ungated-mlp', (m) => void (delete m.blocks[1].gate, (m.blocks[1].mlp.gated = false))],
      // Gemma-2/3 and OLMo-2
      ['post-norm', (m) => void (m.blocks[1].postNorm = { attn: { gamma: addVector(m, 'blocks.1.attn_post_norm', m.config.hidden), eps: 1e-6 }, mlp: { gamma: null, eps: 1e-6 } })],
      ['no-pre-norm', (m) => void (m.blocks[1].preNorm = false)],
      ['qk-norm-full', (m) => (withQkNorm(m, 1), void (m.blocks[1].attention.qkNorm!.span = 'all'))],
      ['rope-theta-per-layer', (m) => void (m.blocks[1].attention.ropeTheta = 1000000)],
    ];
    for (const [feature, edit] of cases) {
      const m = syntheticManifest({ ...tiny, layers: 2 }, ternaryFormat('trit5', 128));
      expect(() => cudaModelSource(m, 'sm_90a')).not.toThrow();
      edit(m);
      expect(() => cudaModelSource(m, 'sm_90a', { ...CUDA_FEATURES, [feature]: false })).toThrow(new RegExp(`^the CUDA backend does not implement feature '${feature}' \\(.*\\) \\(block 1\\)$`));
    }
    // model-wide: GPT-2 / GPT-NeoX features
    const wide: [string, (m: ReturnType<typeof syntheticManifest>) => void][] = [
      ['layer-norm', (m) => void (m.program.norm = 'layer')],
      ['no-rope', (m) => void (m.program.rope = { kind: 'none', theta: 10000, rotaryDim: 0 })],
      ['learned-positions', (m) => void (m.positionEmbed = addVector(m, 'position_embed', m.config.maxPositions * m.config.hidden))],
      ['parallel-residual', (m) => void (m.program.residual = 'parallel')],
    ];
    for (const [feature, edit] of wide) {
      const m = syntheticManifest({ ...tiny, layers: 2 }, ternaryFormat('trit5', 128));
      edit(m);
      expect(() => cudaModelSource(m, 'sm_90a', { ...CUDA_FEATURES, [feature]: false })).toThrow(new RegExp(`^the CUDA backend does not implement feature '${feature}' \(.*\)$`));
      expect(() => cudaModelSource(m, 'sm_90a', CUDA_EMITTABLE)).not.toThrow();
    }
    const m = syntheticManifest({ ...tiny, layers: 2 }, ternaryFormat('trit5', 128));
    m.program.logitSoftcap = 30;
    expect(() => cudaModelSource(m, 'sm_90a', { ...CUDA_FEATURES, 'logit-softcap': false })).toThrow(/^the CUDA backend does not implement feature 'logit-softcap' \(final logit soft-capping cap·tanh\(z\/cap\) \(Gemma-2\)\)$/);
  });
});

describe('int8 prefill GEMM plan', () => {
  it('fits every architecture\'s shared memory and refuses what it cannot generate', () => {
    for (const arch of Object.keys(CUDA_ARCHS) as (keyof typeof CUDA_ARCHS)[]) {
      const p = gemmA8Plan({ format: ternaryFormat('bit2', 128), n: 11008, k: 4096, arch });
      expect(p.smemBytes).toBeLessThanOrEqual(CUDA_ARCHS[arch].maxSmemPerBlock);
      expect(p.kt).toBe(32);
      expect(p.aStride % 16).toBe(0);
    }
    expect(gemmA8Unsupported({ format: ternaryFormat('trit5', 128), n: 128, k: 128, arch: 'sm_80' })).toMatch(/not bit2/);
    expect(gemmA8Unsupported({ format: ternaryFormat('bit2', 64), n: 128, k: 128, arch: 'sm_80' })).toMatch(/groups of 128/);
    expect(gemmA8Unsupported({ format: ternaryFormat('bit2', 128), n: 128, k: 200, arch: 'sm_80' })).toMatch(/K=200/);
    expect(gemmA8Unsupported({ format: ternaryFormat('bit2', 128), n: 100, k: 128, arch: 'sm_80' })).toMatch(/N=100/);
    expect(() => gemmA8Kernel({ format: ternaryFormat('bit2', 128), n: 100, k: 128, arch: 'sm_90a' })).toThrow(/N=100/);
  });
  it('bakes the shape and uses the u8 m16n8k32 tensor-core instruction', () => {
    const k = gemmA8Kernel({ format: ternaryFormat('bit2', 128, false), n: 256, k: 1024, arch: 'sm_80' });
    const src = k.source();
    expect(src).toMatch(/mma\.sync\.aligned\.m16n8k32\.row\.col\.s32\.u8\.u8\.s32/);
    expect(src).toMatch(/cp\.async\.cg\.shared\.global/);
    expect(src).not.toMatch(/shifts\[/); // no-shift format reads no shifts
    expect(k.grid[0].text).toBe('2');
    expect(k.cacheKey).toMatch(/stages=3/);
  });
  it('expands every code byte to its 4 digits (byte_perm formula of the kernel, emulated)', () => {
    const src = gemmA8Kernel({ format: ternaryFormat('bit2', 128, true), n: 256, k: 1024, arch: 'sm_90a' }).source();
    expect(src).toMatch(/__byte_perm\(e0, e1, \(uint32_t\)\(j \| \(j << 4\) \| \(\(4 \+ j\) << 8\) \| \(\(4 \+ j\) << 12\)\)\)/);
    expect(src).toMatch(/\(v & 0x00030003u\) \| \(\(v << 6\) & 0x03000300u\)/);
    let bad = 0;
    for (let t = 0; t < 4096; t++) {
      const w = (Math.imul(t, 2654435761) ^ (t << 7) ^ (t >>> 3)) >>> 0;
      const e0 = w & 0x0f0f0f0f, e1 = (w >>> 4) & 0x0f0f0f0f;
      for (let j = 0; j < 4; j++) {
        const v = bytePerm(e0, e1, j | (j << 4) | ((4 + j) << 8) | ((4 + j) << 12));
        const r = ((v & 0x00030003) | ((v << 6) & 0x03000300)) >>> 0;
        const byte = (w >>> (8 * j)) & 0xff;
        for (let p = 0; p < 4; p++) if (((r >>> (8 * p)) & 0xff) !== ((byte >>> (2 * p)) & 3)) bad++; // digit p: bits 2p…2p+1, little end first
      }
    }
    expect(bad).toBe(0);
  });
  it('reads the group sums as fp32 without I2F: 2^23 bias, exact over the whole range of D', () => {
    const src = gemmA8Kernel({ format: ternaryFormat('bit2', 128, true), n: 256, k: 1024, arch: 'sm_90a' }).source();
    expect(src).toMatch(/d\[mt\]\[nt\]\[i\] = 0x4B000000/);
    expect(src).toMatch(/__int_as_float\(d\[mt\]\[nt\]\[2 \* r \+ j\]\) - 8388608\.f/);
    expect(src).not.toMatch(/\(float\)d\[/);
    // the kernel's arithmetic, on the host: int32 register 0x4B000000 + D read as fp32, minus
    // 2^23 in fp32, for every D a group of 128 digits c ≤ 3 times codes q ≤ 255 can reach
    const bits = new DataView(new ArrayBuffer(4));
    const two23 = Math.fround(8388608);
    let bad = -1;
    for (let d = 0; d <= 128 * 3 * 255 && bad < 0; d++) {
      bits.setInt32(0, 0x4b000000 + d, true);
      if (Math.fround(bits.getFloat32(0, true) - two23) !== d) bad = d;
    }
    expect(bad).toBe(-1);
    bits.setInt32(0, 0x4b000000 + (1 << 23) + 1, true); // the bound matters: past 2^23 the exponent changes
    expect(Math.fround(bits.getFloat32(0, true) - two23)).not.toBe((1 << 23) + 1);
  });
});

describe('golden CUDA sources', () => {
  const goldens = {
    'gemv_tq1_g128_n256_k4096_m1_sm_90a.cu': () => gemvKernel({ format: ternaryFormat('trit5', 128), n: 256, k: 4096, m: 1, arch: 'sm_90a' }).source(),
    'gemv_tq2_g128_ns_n96_k11008_m16_sm_80.cu': () => gemvKernel({ format: ternaryFormat('bit2', 128, false), n: 96, k: 11008, m: 16, arch: 'sm_80' }).source(),
    'gemv_a8_tq2_g128_n4096_k4096_m1_sm_90a.cu': () => gemvA8Kernel({ format: ternaryFormat('bit2', 128), n: 4096, k: 4096, m: 1, arch: 'sm_90a' }).source(),
    'act_norm_d384_kron16x24.cu': () => actKernel({ source: 'norm', dim: 384, transform: { l: 16, r: 24 }, eps: 1e-5 }).source(),
    'gemv_sa8g_tq2_g128_n384_128_k384_m1_sm_90a.cu': () =>
      gemvStreamGroupKernel([384, 128].map((n) => ({ format: ternaryFormat('bit2', 128), n, k: 384, m: 1, arch: 'sm_90a' as const })), 'u8').source(),
    'gemv_s_tq2_g128_n4096_k4096_m1_sm_90a.cu': () => gemvStreamKernel({ format: ternaryFormat('bit2', 128), n: 4096, k: 4096, m: 1, arch: 'sm_90a' }, 'f16').source(),
    'gemv_sa8_tq2_g128_n8192_k8192_m1_sm_90a.cu': () => gemvStreamKernel({ format: ternaryFormat('bit2', 128), n: 8192, k: 8192, m: 1, arch: 'sm_90a' }, 'u8').source(),
    'attn_partial_h6_kv2_d64.cu': () => attnPartialKernel({ heads: 6, kvHeads: 2, headDim: 64, maxPositions: 512, ropeTheta: 10000 }).source(),
    // the runtime's picks for a 7B model: decode GEMV with bulk-copied activations (K > 8192), and
    // the lattice prefill GEMM's two variants (gemmRsRuntimeVariants)
    'gemv_sa8_tq2_g128_n4096_k11008_m1_sm_90a.cu': () => gemvStreamKernel({ format: ternaryFormat('bit2', 128), n: 4096, k: 11008, m: 1, arch: 'sm_90a' }, 'u8').source(),
    'gemm_wgr_t256sd_tq2_g128_lat_n11008_k4096_sm_90a.cu': () => gemmWgmmaRsKernel({ format: ternaryFormat('bit2', 128, true, true), n: 11008, k: 4096, arch: 'sm_90a' }, 't256sd').source(),
    'gemm_wgr_t128_tq2_g128_lat_n4096_k4096_sm_90a_f32.cu': () => gemmWgmmaRsKernel({ format: ternaryFormat('bit2', 128, true, true), n: 4096, k: 4096, arch: 'sm_90a', out: 'f32' }, 't128').source(),
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

// __byte_perm(x, y, s): byte i of the result is byte (s >> 4i) & 7 of the 8 bytes y:x
function bytePerm(x: number, y: number, sel: number): number {
  let r = 0;
  for (let i = 0; i < 4; i++) {
    const b = (sel >>> (4 * i)) & 7;
    r |= ((b < 4 ? x >>> (8 * b) : y >>> (8 * (b - 4))) & 0xff) << (8 * i);
  }
  return r >>> 0;
}

describe('wgmma prefill GEMM (sm_90a)', () => {
  const f = ternaryFormat('bit2', 128, true);
  it('is the prefill GEMM of the architectures whose table row names wgmma, and only of those', () => {
    expect(prefillGemmKernel({ format: f, n: 4096, k: 4096, arch: 'sm_90a' }).name).toMatch(/^gemm_wg_/);
    for (const arch of ['sm_80', 'sm_86', 'sm_89', 'sm_100', 'sm_120'] as const) {
      expect(prefillGemmKernel({ format: f, n: 4096, k: 4096, arch }).name).toMatch(/^gemm_a8_/);
      expect(gemmWgmmaUnsupported({ format: f, n: 4096, k: 4096, arch })).toMatch(/no wgmma/);
    }
    expect(gemmWgmmaUnsupported({ format: ternaryFormat('trit5', 128), n: 128, k: 128, arch: 'sm_90a' })).toMatch(/not bit2/);
    expect(gemmWgmmaUnsupported({ format: f, n: 100, k: 128, arch: 'sm_90a' })).toMatch(/N=100/);
    expect(gemmWgmmaUnsupported({ format: f, n: 128, k: 200, arch: 'sm_90a' })).toMatch(/K=200/);
  });
  it('keeps every ring slot on the 1024-byte swizzle alignment and within shared memory', () => {
    for (const k of [128, 4096, 28672]) {
      const p = gemmWgmmaPlan({ format: f, n: 8192, k, arch: 'sm_90a' });
      expect(p.slotBytes % 1024).toBe(0);
      expect(p.smemBytes).toBeLessThanOrEqual(CUDA_ARCHS.sm_90a.maxSmemPerBlock);
    }
  });
  it('bakes the shape, drains every 4 K steps and issues u8 m64n64k32 wgmma from SWIZZLE_128B descriptors', () => {
    const src = gemmWgmmaKernel({ format: ternaryFormat('bit2', 128, false), n: 256, k: 128 * 10, arch: 'sm_90a' }).source();
    expect(src).toMatch(/wgmma\.mma_async\.sync\.aligned\.m64n64k32\.s32\.u8\.u8/);
    expect(src).toMatch(/\(1ull << 62\)/); // swizzle mode 1 = 128 B
    expect(src).toMatch(/fence\.proxy\.async\.shared::cta/);
    expect(src).toMatch(/for \(int g0 = 0; g0 < 8; g0 \+= 4\)/); // 10 groups: two blocks of 4 in the loop …
    expect(src).toMatch(/const int g0 = 8;/); // … and a tail block of 2
    expect(src).not.toMatch(/shifts\[/);
  });
  it('expands 16 codes to 16 digit bytes in k order (the kernel\'s shift/mask planes and 4×4 PRMT transpose, emulated)', () => {
    const src = gemmWgmmaKernel({ format: f, n: 128, k: 128, arch: 'sm_90a' }).source();
    const sels = [...src.matchAll(/__byte_perm\((\w+), (\w+), (0x[0-9a-f]+)\)/g)].map((m) => [m[1], m[2], Number(m[3])] as const);
    expect(sels.map((s) => s[2])).toEqual([0x5140, 0x7362, 0x5140, 0x7362, 0x5410, 0x7632, 0x5410, 0x7632]);
    let bad = 0;
    for (let t = 0; t < 4096; t++) {
      const w = (Math.imul(t, 2654435761) ^ (t << 9) ^ (t >>> 5)) >>> 0;
      const p = [0, 2, 4, 6].map((sh) => (w >>> sh) & 0x03030303);
      const t0 = bytePerm(p[0], p[1], 0x5140), t1 = bytePerm(p[0], p[1], 0x7362);
      const t2 = bytePerm(p[2], p[3], 0x5140), t3 = bytePerm(p[2], p[3], 0x7362);
      const out = [bytePerm(t0, t2, 0x5410), bytePerm(t0, t2, 0x7632), bytePerm(t1, t3, 0x5410), bytePerm(t1, t3, 0x7632)];
      for (let k = 0; k < 16; k++) {
        const digit = (out[k >> 2] >>> (8 * (k & 3))) & 0xff;
        const ref = (((w >>> (8 * (k >> 2))) & 0xff) >>> (2 * (k & 3))) & 3; // reference bit2 layout: code k at byte k/4, bits 2(k%4)
        if (digit !== ref) bad++;
      }
    }
    expect(bad).toBe(0);
  });
});

/** PTX prmt.b32 in its default mode: selector nibble bit 3 replicates the chosen byte's sign. */
function prmtDefault(x: number, y: number, sel: number): number {
  let r = 0;
  for (let i = 0; i < 4; i++) {
    const nib = (sel >>> (4 * i)) & 15, b = nib & 7;
    const v = (b < 4 ? x >>> (8 * b) : y >>> (8 * (b - 4))) & 0xff;
    r |= (nib & 8 ? (v & 0x80 ? 0xff : 0) : v) << (8 * i);
  }
  return r >>> 0;
}

describe('lattice GEMM weight expansion', () => {
  it('looks the codes up by plain prmt: every selector nibble is a code (0…3, sign bit clear), and the bytes come out in k order', () => {
    const src = gemmWgmmaRsKernel({ format: ternaryFormat('bit2', 128, true, true), n: 128, k: 128, arch: 'sm_90a' }, 't128').source();
    // the generated expansion, as emulated below
    expect(src).toContain('const uint32_t s01 = (w & 0x03030303u) | ((w << 2) & 0x30303030u);');
    expect(src).toContain('const uint32_t s23 = ((w >> 4) & 0x03030303u) | ((w >> 2) & 0x30303030u);');
    expect(src).toContain('{__byte_perm(s01, s23, 0x40), __byte_perm(s01, s23, 0x51), __byte_perm(s01, s23, 0x62), __byte_perm(s01, s23, 0x73)}');
    expect(src).toContain('asm("prmt.b32 %0, %1, 0, %2;" : "=r"(r[i]) : "r"(table), "r"(sel[i]));');
    let bad = 0;
    for (let t = 0; t < 4096; t++) {
      const w = (Math.imul(t, 2654435761) ^ (t << 11) ^ (t >>> 3)) >>> 0;
      const table = (Math.imul(t + 7, 40503) & 0xffffff00) >>> 0; // bytes 1, 2, 3: the weights of codes 1, 2, 3
      const s01 = ((w & 0x03030303) | ((w << 2) & 0x30303030)) >>> 0;
      const s23 = (((w >>> 4) & 0x03030303) | ((w >>> 2) & 0x30303030)) >>> 0;
      const out = [0x40, 0x51, 0x62, 0x73].map((c) => {
        const sel = bytePerm(s01, s23, c);
        for (let i = 0; i < 4; i++) if (((sel >>> (4 * i)) & 15) > 3) bad++;
        return prmtDefault(table, 0, sel);
      });
      for (let k = 0; k < 16; k++) {
        const code = (w >>> (2 * k)) & 3; // bit2 layout: code k at bits 2k
        if (((out[k >> 2] >>> (8 * (k & 3))) & 0xff) !== ((table >>> (8 * code)) & 0xff)) bad++;
      }
    }
    expect(bad).toBe(0);
  });
});

describe('tensor-core prefill attention', () => {
  it('is the prefill attention up to head dim 128; larger heads keep the CUDA-core kernel', () => {
    const a = { heads: 32, kvHeads: 8, headDim: 128, maxPositions: 4096, ropeTheta: 1e4 };
    const src = attnPrefillTcKernel(a).source();
    expect(src).toMatch(/mma\.sync\.aligned\.m16n8k16\.row\.col\.f32\.f16\.f16\.f32/);
    expect(src).toMatch(/ldmatrix\.sync\.aligned\.m8n8\.x4\.trans\.shared\.b16/); // V as the B operand
    expect(src).toMatch(/kh = h \/ 4/); // GQA
    expect(attnPrefillTcUnsupported({ ...a, headDim: 256 })).toMatch(/head dim 256/);
    const big = cudaModelSource(syntheticManifest({ ...tiny, heads: 2, kvHeads: 1, headDim: 256, hidden: 512 }, ternaryFormat('bit2', 128), 16), 'sm_90a');
    expect(big).toMatch(/launch_attn_prefill_h2_kv1_d256\(/);
    expect(big).not.toMatch(/attn_prefill_tc/);
  });
});

describe('lattice prefill GEMM (sm_90a, _lat formats): weights in registers', () => {
  const f = ternaryFormat('bit2', 128, true, true);
  it('is the prefill GEMM of lattice formats where the arch has wgmma; other formats and archs keep theirs', () => {
    expect(prefillGemmKernel({ format: f, n: 4096, k: 4096, arch: 'sm_90a' }).name).toBe(`gemm_wgr_${GEMM_RS_RUNTIME}_tq2_g128_lat_n4096_k4096_sm_90a`);
    expect(prefillGemmKernel({ format: ternaryFormat('bit2', 128, true), n: 4096, k: 4096, arch: 'sm_90a' }).name).toMatch(/^gemm_wg_/);
    expect(prefillGemmKernel({ format: f, n: 4096, k: 4096, arch: 'sm_80' }).name).toMatch(/^gemm_a8_/);
    expect(gemmWgmmaRsUnsupported({ format: ternaryFormat('bit2', 128, true), n: 128, k: 128, arch: 'sm_90a' })).toMatch(/not a lattice format/);
    expect(gemmWgmmaRsUnsupported({ format: f, n: 100, k: 128, arch: 'sm_90a' })).toMatch(/N=100/);
  });
  it('the default format is a lattice format, so default compiles take the fold-free prefill GEMM on sm_90a', () => {
    const d = parseFormatId(DEFAULT_OPTIONS.format);
    expect(d.lattice).toBe(true);
    // the runtime's device view of the default (trit5 codes transcoded to bit2 at load) keeps the lattice
    const onDevice = ternaryFormat('bit2', d.group, d.shift, d.lattice);
    expect(prefillGemmKernels({ format: onDevice, n: 4096, k: 4096, arch: 'sm_90a' }).map(({ kernel }) => kernel.name)).toEqual([expect.stringMatching(/^gemm_wgr_t256sd_/), expect.stringMatching(/^gemm_wgr_t128_/)]);
  });
  it('the runtime runs 256-token tiles beyond 256 tokens where N ≥ 8192 and beyond 512 tokens elsewhere, 128-token tiles otherwise', () => {
    const names = (n: number, fmt = f, arch: CudaArch = 'sm_90a') => prefillGemmKernels({ format: fmt, n, k: 4096, arch }).map(({ kernel, beyondT }) => `${kernel.name.split('_tq2')[0]}>${beyondT}`);
    expect(names(4096)).toEqual(['gemm_wgr_t256sd>512', 'gemm_wgr_t128>0']);
    expect(names(11008)).toEqual(['gemm_wgr_t256sd>256', 'gemm_wgr_t128>0']);
    expect(names(11008, ternaryFormat('bit2', 128, true))).toEqual(['gemm_wg>0']);
    expect(names(11008, f, 'sm_80')).toEqual(['gemm_a8>0']);
    // the model's dispatcher: the first variant whose threshold T exceeds
    const src = cudaModelSource(syntheticManifest({ ...tiny, intermediate: 8192 }, f, 8), 'sm_90a');
    expect(src).toMatch(/if \(T > 256\) \{ launch_gemm_wgr_t256sd_tq2_g128_lat_n8192_k128_sm_90a_f32\(q, qp, codes, scales, shifts, rows, y, T, acc, s\); return; \}\n\s*launch_gemm_wgr_t128_tq2_g128_lat_n8192_k128_sm_90a_f32\(/);
    expect(src).toMatch(/if \(T > 512\) \{ launch_gemm_wgr_t256sd_tq2_g128_lat_n128_k128_sm_90a_f32\(/); // N = 128 (q, o): 256-token tiles only beyond 512 tokens
  });
  it('every tile variant keeps its ring aligned and in shared memory, and reloads a slot only after the wgmma that read it', () => {
    for (const v of Object.keys(GEMM_RS_VARIANTS) as GemmRsVariantName[]) {
      const p = gemmWgmmaRsPlan({ format: f, n: 4096, k: 4096, arch: 'sm_90a' }, v);
      expect(p.slot % 1024).toBe(0);
      expect(p.ahead).toBe(p.stages - 2); // after step g's barrier wgmma(g − 2) is done in both warpgroups
      expect(p.smemBytes).toBeLessThanOrEqual(CUDA_ARCHS.sm_90a.maxSmemPerBlock);
      const src = gemmWgmmaRsKernel({ format: f, n: 4096, k: 4096, arch: 'sm_90a' }, v).source();
      // two steps an iteration, 4 k32 steps a group: BT/128 m64n128k32 each
      const operands = /wgmma\.mma_async\.sync\.aligned\.m64n128k32\.s32\.s8\.u8 \{[^}]*\}, \{%64, %65, %66, %67\}, %68/g;
      // a tail-split variant also holds its half-height tiles' body
      const tail = p.tail ? 2 * 4 : 0;
      expect(src.match(operands)).toHaveLength(2 * 4 * (p.bt / 128) + tail);
      expect(src.match(/wgmma\.mma_async/g)).toHaveLength(2 * 4 * (p.bt / 128) + tail);
    }
  });
  it.skipIf(!GXX)('t256sd: its blocks cover every (feature, token) once, the last partial wave split in half-height tiles only when they fit in one wave (the launcher\'s and kernel\'s own index code, on the host)', async () => {
    const k = gemmWgmmaRsKernel({ format: f, n: 11008, k: 4096, arch: 'sm_90a' }, 't256sd');
    const src = k.source();
    const helpers = src.slice(src.indexOf('__host__ __device__ inline int'), src.indexOf('extern "C" __global__'));
    const nm = k.name;
    const out = await runHostProgram(`#include <cstdio>
#include <vector>
#define __host__
#define __device__
${helpers}
int main() {
  const int NT = 86, smsList[] = {132, 114, 10, 7, 1};
  long cases = 0;
  for (int sms : smsList) {
    long blocksSum = 0;
    for (int T = 1; T <= 1100; ++T) {
      const int blocks = ${nm}_blocks_for(T, sms);
      blocksSum += blocks;
      std::vector<int> cov((size_t)NT * T, 0);
      for (int b = 0; b < blocks; ++b) {
        int n0 = -1, m0 = -1;
        const int bt = ${nm}_tile(b, blocks, T, &n0, &m0);
        if (bt == 0) continue;
        if ((bt != 256 && bt != 128) || n0 % 128 || n0 < 0 || n0 >= NT * 128 || m0 < 0 || m0 >= T) { printf("bad tile b=%d T=%d sms=%d\\n", b, T, sms); return 0; }
        for (int r = m0; r < m0 + bt && r < T; ++r) cov[(size_t)(n0 / 128) * T + r]++;
      }
      for (size_t i = 0; i < cov.size(); ++i)
        if (cov[i] != 1) { printf("T=%d sms=%d: feature tile %d token %d covered %d times\\n", T, sms, (int)(i / T), (int)(i % T), cov[i]); return 0; }
      ++cases;
    }
    printf("sms %d blocks %ld\\n", sms, blocksSum);
  }
  printf("ok %ld\\n", cases);
}
`);
    expect(out).toMatch(/^ok 5500$/m);
    // the launcher's block counts are the TS rule's
    for (const sms of [132, 114, 10, 7, 1]) {
      let sum = 0;
      for (let T = 1; T <= 1100; T++) {
        const tiles = 86 * Math.ceil(T / 256);
        sum += tiles + gemmRsTailSplit(tiles, sms);
      }
      expect(out).toContain(`sms ${sms} blocks ${sum}\n`);
    }
    // e.g. 2048 tokens of 11008 features on 132 SMs: 688 tiles = 5 waves + 28, the 28 split
    expect(gemmRsTailSplit(86 * 8, 132)).toBe(28);
    expect(gemmRsTailSplit(32 * 16, 132)).toBe(0); // 4096² at 4096 tokens: 116 in the last wave, halves would not fit
  });
  it('builds A fragments from the code bytes: byte lane%4 of each word, through the group table (the kernel\'s PRMTs, emulated against the reference decoder)', () => {
    const src = gemmWgmmaRsKernel({ format: f, n: 128, k: 256, arch: 'sm_90a' }, 't128').source();
    expect([...src.matchAll(/__byte_perm\(s01, s23, (0x[0-9a-f]+)\)/g)].map((m) => Number(m[1]))).toEqual([0x40, 0x51, 0x62, 0x73]);
    expect(src).toMatch(/selq = \(uint32_t\)q \| \(\(uint32_t\)\(4 \+ q\) << 4\)/);
    const r = rng(11);
    const N = 16, K = 256, ng = K / 128;
    const t = Int8Array.from({ length: N * K }, () => Math.floor(r() * 3) - 1);
    const sc = Float64Array.from({ length: N * ng }, () => 0.01 + 0.04 * r());
    const sh = Float64Array.from({ length: N * ng }, () => 0.01 * (r() - 0.5));
    const units: number[] = [];
    for (let n = 0; n < N; n++) {
      snapRowToLattice(sc, sh, n, ng);
      // the row's unit (lattice-rows.ts computes it from the stored values at load)
      let m2 = 0;
      for (let g = 0; g < ng; g++) m2 = Math.max(m2, Math.abs(sc[n * ng + g]) + Math.abs(sh[n * ng + g]));
      units.push(latticeUnit(m2));
    }
    const w = encodeTernary(f, N, K, t, sc, sh);
    const ref = decodeTernary(w);
    const word = (n: number, g: number, j: number) => { const o = (n * ng + g) * 32 + 4 * j; return (w.codes[o] | (w.codes[o + 1] << 8) | (w.codes[o + 2] << 16) | (w.codes[o + 3] << 24)) >>> 0; };
    const expand4 = (x: number, table: number) => {
      const s01 = ((x & 0x03030303) | ((x << 2) & 0x30303030)) >>> 0, s23 = (((x >>> 4) & 0x03030303) | ((x >>> 2) & 0x30303030)) >>> 0;
      return [0x40, 0x51, 0x62, 0x73].map((sel) => bytePerm(table, 0, bytePerm(s01, s23, sel) & 0xffff));
    };
    let bad = 0;
    for (let lane = 0; lane < 32; lane++) {
      const q = lane & 3, selq = q | ((4 + q) << 4);
      for (const row of [lane >> 2, (lane >> 2) + 8]) {
        const u = units[row];
        for (let g = 0; g < ng; g++) {
          const si = Math.round(sc[row * ng + g] / u), zi = Math.round(sh[row * ng + g] / u);
          const table = ((((zi - si) & 0xff) << 8) | ((zi & 0xff) << 16) | (((zi + si) & 0xff) << 24)) >>> 0;
          for (const half of [0, 1]) {
            const W = [0, 1, 2, 3].map((j) => word(row, g, 4 * half + j));
            const x = bytePerm(bytePerm(W[0], W[1], selq), bytePerm(W[2], W[3], selq), 0x5410);
            const out = expand4(x, table); // out[b]: weights of code byte q of word 4·half + b
            for (let b = 0; b < 4; b++) {
              const st = 2 * half + (b >> 1); // k32 step; b odd: the +16 half (a2/a3)
              for (let e = 0; e < 4; e++) {
                const k = g * 128 + 32 * st + 16 * (b & 1) + 4 * q + e; // the m16n8k32 A layout
                const v = ((out[b] >>> (8 * e)) << 24) >> 24;
                if (v * u !== ref[row * K + k]) bad++;
              }
            }
          }
        }
      }
    }
    expect(bad).toBe(0);
  });
});

describe.skipIf(!NVCC)('nvcc compiles every kernel kind (compile only)', () => {
  if (!NVCC) it.skip('nvcc not found at /usr/local/bin/nvcc: CUDA compile test skipped', () => {});
  it('sm_80 and sm_90a: host program + model + representative GEMVs', async () => {
    const dir = mkdtempSync(join(tmpdir(), 'twlac-cuda-nvcc-'));
    try {
      const archs = ['sm_80', 'sm_90a'] as const;
      // two blocks: 8-bit sites (int8 GEMVs, the prefill GEMM: the lattice kernel on sm_90a) and 16-bit sites
      const m = syntheticManifest({ ...tiny, layers: 2 }, ternaryFormat('trit5', 128, true, true), 8);
      m.blocks[1].acts = syntheticManifest(tiny, ternaryFormat('trit5', 128), 16).blocks[0].acts;
      m.blocks[1].attention.scale = 0.1; // a program query scale: its own attention kernels
      withBias(m, m.blocks[1].q); // and a bias add
      withQkNorm(m, 1); // and q/k norms
      m.blocks[0].attention.window = 16; // a sliding window (scalar prefill kernel)
      m.blocks[1].mlp.activation = 'gelu-tanh';
      m.blocks[1].residualScale = { attn: 0.7, mlp: 1.3 };
      m.program.rope.rotaryDim = 32;
      m.program.embedScale = 2;
      m.program.logitScale = 0.5;
      emitCuda(m, dir, archs, CUDA_EMITTABLE);
      expect(readFileSync(join(dir, 'sm_90a', 'twlac_model.cuh'), 'utf8')).toMatch(/launch_gemm_wgr_t128_tq2_g128_lat_n256_k128_sm_90a_f32\(/);
      expect(readFileSync(join(dir, 'sm_80', 'twlac_model.cuh'), 'utf8')).not.toMatch(/gemm_wgr_/);
      const extra = (arch: (typeof archs)[number]) =>
        [
          gemvKernel({ format: ternaryFormat('trit5', 384, false), n: 64, k: 384, m: 4, arch }),
          gemvKernel({ format: ternaryFormat('bit2', 128, true), n: 64, k: 4096, m: 1, arch }),
          gemvKernel({ format: ternaryFormat('bit2', 100, false), n: 64, k: 450, m: 16, arch }),
          gemvA8Kernel({ format: ternaryFormat('bit2', 128, true), n: 64, k: 11008, m: 16, arch }),
          gemvStreamKernel({ format: ternaryFormat('bit2', 96, true), n: 70, k: 1000 - 8, m: 3, arch }, 'f16'),
          gemvStreamKernel({ format: ternaryFormat('bit2', 48, false), n: 70, k: 400, m: 2, arch }, 'u8', { rows: 2, warps: 4, wk: 2, ub: 2 }),
          gemvStreamGroupKernel([4096, 1024].map((n) => ({ format: ternaryFormat('bit2', 128), n, k: 4096, m: 4, arch })), 'f16'),
          // bulk loads on sm_90a (register streaming on sm_80): one and three phases, grouped
          gemvStreamKernel({ format: ternaryFormat('bit2', 128, true), n: 4096, k: 11008, m: 1, arch }, 'u8'),
          gemvStreamGroupKernel([4096, 1024].map((n) => ({ format: ternaryFormat('bit2', 128, false), n, k: 4096, m: 1, arch })), 'u8'),
          // activations by bulk copy (sm_90a only: bulk copies), three phases and a partial last run
          ...(arch === 'sm_90a'
            ? [
                gemvStreamKernel({ format: ternaryFormat('bit2', 128, true), n: 4096, k: 11008, m: 1, arch }, 'u8', { rows: 4, warps: 4, wk: 2, ub: 1, bulk: 3, xbulk: true }),
                gemvStreamKernel({ format: ternaryFormat('bit2', 128, false), n: 200, k: 4000, m: 1, arch }, 'u8', { rows: 2, warps: 4, wk: 1, ub: 1, bulk: 2, xbulk: true }),
              ]
            : []),
          gemmA8Kernel({ format: ternaryFormat('bit2', 128, true), n: 256, k: 4096, arch }),
          gemmA8Kernel({ format: ternaryFormat('bit2', 128, false), n: 128, k: 128, arch }),
          ...(arch === 'sm_90a'
            ? [
                gemmWgmmaKernel({ format: ternaryFormat('bit2', 128, true), n: 256, k: 128 * 6, arch }),
                gemmWgmmaRsKernel({ format: ternaryFormat('bit2', 128, false, true), n: 256, k: 128 * 7, arch }, 't256sd'), // odd group count: scalar scale loads
              ]
            : []),
          denseGemvKernel(64, 100, 2, 'float32', arch),
          transcodeKernel(48),
          latticeRowsKernel(64),
          gemvTcKernel({ format: ternaryFormat('bit2', 64, false), n: 70, k: 448, m: 5, arch }),
          gemvTcKernel({ format: ternaryFormat('bit2', 256, true), n: 100, k: 1024, m: 16, arch }),
          gemvTcKernel({ format: ternaryFormat('bit2', 384, false), n: 64, k: 768, m: 16, arch }),
          gemvTcKernel({ format: ternaryFormat('bit2', 192, true), n: 48, k: 576, m: 4, arch }),
          gemvTcKernel({ format: ternaryFormat('bit2', 128, true), n: 4096, k: 11008, m: 64, arch }),
          actKernel({ source: 'swiglu', dim: 256, transform: { l: 16, r: 16 }, eps: 1e-5 }),
        ]
          .map((k) => k.source() + k.launcher())
          .join('\n');
      await Promise.all(
        archs.map(async (a) => {
          writeFileSync(join(dir, a, 'extra.cuh'), extra(a));
          writeFileSync(join(dir, a, 'all.cu'), '#include "twlac_model.cuh"\n#include "extra.cuh"\n#include "../twlac_cuda_main.cu"\n');
          await run(NVCC!, ['-c', '-O1', '-std=c++17', ...CUDA_ARCHS[a].gencode.split(' '), '-I', join(dir, a), '-o', join(dir, a, 'all.o'), join(dir, a, 'all.cu')], { maxBuffer: 1 << 24 });
          expect(existsSync(join(dir, a, 'all.o'))).toBe(true);
        }),
      );
    } finally {
      rmSync(dir, { recursive: true, force: true });
    }
  }, 600_000);
  it('sm_90a: GPT-2 / GPT-NeoX-like and Gemma / OLMo-2 / StableLM-like models, without warnings', async () => {
    const dir = mkdtempSync(join(tmpdir(), 'twlac-cuda-gpt-'));
    try {
      // LayerNorm with β, learned positions, no RoPE, parallel residual, ungated GELU(tanh) and gated GELU(erf) MLPs
      const m = syntheticManifest({ ...tiny, layers: 2 }, ternaryFormat('bit2', 128), 8);
      const gate = m.blocks[1].gate;
      gpt2Like(m);
      m.blocks[1].gate = gate;
      m.blocks[1].mlp = { activation: 'gelu', gated: true };
      m.program.residual = 'parallel';
      // post-norms, no pre-norm, soft-caps, a layer's own θ, whole-width and per-head-own LayerNorm q/k norms
      const g = syntheticManifest({ ...tiny, layers: 2 }, ternaryFormat('bit2', 128), 16);
      g.blocks.forEach((b, i) => {
        b.postNorm = { attn: { gamma: addVector(g, `blocks.${i}.attn_post_norm`, 128), eps: 1e-6 }, mlp: { gamma: null, eps: 1e-6 } };
        b.attention.softcap = 50;
      });
      g.blocks[0].preNorm = false;
      g.blocks[1].attention.ropeTheta = 1e6;
      g.blocks[0].attention.qkNorm = { q: { gamma: addVector(g, 'q_all', 128), eps: 1e-6 }, k: { gamma: addVector(g, 'k_all', 64), eps: 1e-6 }, span: 'all' };
      g.blocks[1].attention.qkNorm = { q: { gamma: addVector(g, 'q_own', 128), eps: 1e-6 }, k: { gamma: null, eps: 1e-6 }, span: 'head-own', kind: 'layer' };
      g.program.logitSoftcap = 30;
      emitCuda(m, dir, ['sm_90a'], CUDA_EMITTABLE);
      emitCuda(g, join(dir, 'gemma'), ['sm_90a'], CUDA_EMITTABLE);
      const h = readFileSync(join(dir, 'sm_90a', 'twlac_model.cuh'), 'utf8');
      for (const k of ['act_layer_norm_d128', 'act_gelu_tanh_d256', 'act_geglu_erf_d256', 'kv_append_kv1_d64', 'embed_h128_f16_pos']) expect(h).toContain(`launch_${k}(`);
      const gh = readFileSync(join(dir, 'gemma', 'sm_90a', 'twlac_model.cuh'), 'utf8');
      for (const k of ['post_norm_add_n128_e19932', 'post_norm_add_n128_e19932_nog', 'softcap_n256_c30000000', 'attn_prefill_h2_kv1_d64_c50000000', 'rope_kv_h2_kv1_d64_t1000000', 'head_norm_h1_d128', 'head_norm_h2_d64_own_ln', 'head_norm_h1_d64_ln_nog']) expect(gh).toContain(`launch_${k}(`);
      const gemma = run(NVCC!, ['-c', '-O1', '-std=c++17', ...CUDA_ARCHS.sm_90a.gencode.split(' '), '-I', join(dir, 'gemma', 'sm_90a'), '-o', join(dir, 'gemma.o'), join(dir, 'gemma', 'twlac_cuda_main.cu')], { maxBuffer: 1 << 24 });
      // the same sources behind an online transform (the act kernel's other body)
      const extra = [
        actKernel({ source: 'layer_norm', dim: 256, transform: { l: 16, r: 16 }, eps: 1e-5 }),
        actKernel({ source: 'gelu', dim: 256, transform: { l: 16, r: 16 }, eps: 1e-5 }),
        actKernel({ source: 'geglu_erf', dim: 256, transform: { l: 16, r: 16 }, eps: 1e-5 }),
      ]
        .map((k) => k.source() + k.launcher())
        .join('\n');
      writeFileSync(join(dir, 'sm_90a', 'extra.cuh'), extra);
      writeFileSync(join(dir, 'sm_90a', 'all.cu'), '#include "twlac_model.cuh"\n#include "extra.cuh"\n#include "../twlac_cuda_main.cu"\n');
      const { stderr } = await run(NVCC!, ['-c', '-O1', '-std=c++17', ...CUDA_ARCHS.sm_90a.gencode.split(' '), '-I', join(dir, 'sm_90a'), '-o', join(dir, 'all.o'), join(dir, 'sm_90a', 'all.cu')], { maxBuffer: 1 << 24 });
      expect(stderr).not.toMatch(/warning/i);
      expect((await gemma).stderr).not.toMatch(/warning/i);
      expect(existsSync(join(dir, 'all.o')) && existsSync(join(dir, 'gemma.o'))).toBe(true);
    } finally {
      rmSync(dir, { recursive: true, force: true });
    }
  }, 600_000);
  it('sm_90a wgmma prefill GEMM: ptxas keeps the wgmma asynchronous (no serialisation, no injected waits, no spills at 4096)', async () => {
    const dir = mkdtempSync(join(tmpdir(), 'twlac-cuda-wgmma-'));
    try {
      const shape = { format: ternaryFormat('bit2', 128, true), n: 4096, k: 4096, arch: 'sm_90a' } as const;
      const ks = [gemmWgmmaKernel(shape), ...(Object.keys(GEMM_RS_VARIANTS) as GemmRsVariantName[]).map((v) => gemmWgmmaRsKernel({ ...shape, format: ternaryFormat('bit2', 128, true, true) }, v))];
      writeFileSync(join(dir, 'k.cu'), [cudaPrelude().text, packingHelpers().text, ...ks.map((k) => k.source() + k.launcher())].join('\n'));
      const { stderr, stdout } = await run(NVCC!, ['-c', '-O3', '-std=c++17', ...CUDA_ARCHS.sm_90a.gencode.split(' '), '-Xptxas', '-v', '-o', join(dir, 'k.o'), join(dir, 'k.cu')], { maxBuffer: 1 << 24 });
      const log = stdout + stderr;
      expect(log).toMatch(/Compiling entry function 'gemm_wg_/);
      const variants = Object.keys(GEMM_RS_VARIANTS).length;
      expect(log.match(/Compiling entry function 'gemm_wgr_/g)).toHaveLength(variants);
      expect(log).not.toMatch(/C751[2479]/); // serialised wgmma (C7512/C7514), injected warpgroup.wait/arrive (C7517/C7519)
      expect(log.match(/ 0 bytes spill stores/g)).toHaveLength(1 + variants);
    } finally {
      rmSync(dir, { recursive: true, force: true });
    }
  }, 300_000);
});

describe('lattice GEMM, decoupled warpgroups (t256sd, t128d): the ring protocol, simulated', () => {
  // The two warpgroups' K loops as the kernel runs them (gemm-wgmma-rs.ts, decoupled variants),
  // interleaved at random; mbarriers as phase counters. Checks: no deadlock, every expand and
  // wgmma reads the group it expects, a slot is reloaded only after both warpgroups' wgmma that
  // read it are done, and no parity wait is ever two phases behind (it would alias).
  it('no deadlock, no early reload, no aliased parity wait, for every ring size, K length and interleaving', () => {
    // the generated kernel uses the protocol simulated below
    const src = gemmWgmmaRsKernel({ format: ternaryFormat('bit2', 128, true, true), n: 256, k: 4096, arch: 'sm_90a' }, 't256sd').source();
    for (const piece of [
      'mbarrier.init.shared::cta.b64 [%0], 256;', // full: every thread's copies
      'mbarrier.init.shared::cta.b64 [%0], 8;', // empty: every warp's wgmma
      'if (g + 3 >= 5) { uint32_t done_ = 0;', // the loader waits for the slot's previous group …
      '"r"(emptyb + 8 * sl), "r"(phl ^ 1)', // … one phase behind the group it loads
      'cp.async.mbarrier.arrive.noinc.shared::cta.b64 [%0];" :: "r"(fullb + 8 * sl)',
      'if (g >= 1 && lane == 0) asm volatile("{ .reg .b64 st; mbarrier.arrive.shared::cta.b64 st, [%0]; }" :: "r"(emptyb + 8 * sp)',
      '"r"(fullb + 8 * sg1), "r"(ph ^ (sg1 == 0 ? 1 : 0))',
      'sp = sg;\n    if (sg1 == 0) ph ^= 1;\n    if (sl + 1 == 5) phl ^= 1;',
    ])
      expect(src).toContain(piece);
    expect(src).not.toContain('__syncthreads(); // A(g)');
    const rnd = rng(99);
    for (const SA of [5, 6]) {
      const AHEAD = SA - 2;
      for (const KT of [1, 2, 3, 4, 5, 7, 8, 11, 32, 33]) {
        for (let trial = 0; trial < 40; trial++) {
          type Bar = { done: number; got: number; need: number };
          const mk = (need: number): Bar[] => Array.from({ length: SA }, () => ({ done: 0, got: 0, need }));
          const full = mk(2), empty = mk(2); // per warpgroup arrivals stand for its 128 threads / 4 warps
          const arrive = (b: Bar) => {
            if (++b.got === b.need) { b.got = 0; b.done++; }
          };
          const errors: string[] = [];
          // wait for the phase of parity `par` that the caller means to be phase n: true once done
          const ready = (b: Bar, par: number, n: number) => {
            if (b.done >= n + 2) errors.push(`aliased wait: phase ${n}, ${b.done} done`);
            if ((n & 1) !== par) errors.push(`parity ${par} is not phase ${n}'s`);
            return b.done > n;
          };
          const slotGroup = Array.from({ length: SA }, () => -1);
          const readers = Array.from({ length: SA }, () => new Set<number>()); // warpgroups whose wgmma reads the slot's group
          const wgs = [0, 1].map((w) => ({ w, g: 0, pc: 0, sg: 0, sl: AHEAD % SA, sp: 0, ph: 0, phl: 0, inflight: [] as number[], fin: false }));
          // prologue, both warpgroups: groups 0…AHEAD−1 into slots 0…AHEAD−1
          for (const wg of wgs) for (let st = 0; st < AHEAD && st < KT; st++) { slotGroup[st] = st; arrive(full[st]); }
          const firstWait = wgs.map(() => false);
          let steps = 0;
          while (wgs.some((x) => !x.fin) && steps++ < 100000 && !errors.length) {
            const live = wgs.filter((x) => !x.fin);
            const wg = live[Math.floor(rnd() * live.length)];
            const w = wg.w;
            if (!firstWait[w]) { if (ready(full[0], 0, 0)) firstWait[w] = true; continue; } // expand(0)
            const g = wg.g;
            const sg1 = wg.sg + 1 === SA ? 0 : wg.sg + 1;
            if (wg.pc === 0) { // load group g + AHEAD into slot sl
              if (g + AHEAD < KT) {
                if (g + AHEAD >= SA && !ready(empty[wg.sl], wg.phl ^ 1, Math.floor((g + AHEAD) / SA) - 1)) continue;
                if (readers[wg.sl].size) errors.push(`slot ${wg.sl} reloaded while group ${slotGroup[wg.sl]} is read by ${[...readers[wg.sl]]}`);
                const before = g + AHEAD - SA; // the group the slot held (−1: none yet)
                if (slotGroup[wg.sl] !== g + AHEAD && slotGroup[wg.sl] !== (before < 0 ? -1 : before)) errors.push(`slot ${wg.sl} held ${slotGroup[wg.sl]} before ${g + AHEAD}`);
                slotGroup[wg.sl] = g + AHEAD;
                arrive(full[wg.sl]);
              }
              wg.pc = 1;
            } else if (wg.pc === 1) { // issue wgmma(g) on slot sg, wait for wgmma(g − 1), arrive on its slot's empty barrier
              if (slotGroup[wg.sg] !== g) errors.push(`wgmma(${g}) of ${w} reads slot ${wg.sg} holding ${slotGroup[wg.sg]}`);
              readers[wg.sg].add(w);
              wg.inflight.push(wg.sg);
              if (wg.inflight.length > 1) {
                const s = wg.inflight.shift()!;
                readers[s].delete(w);
                if (g >= 1) arrive(empty[wg.sp]);
                if (s !== wg.sp) errors.push(`empty arrival on ${wg.sp}, wgmma read ${s}`);
              }
              wg.pc = 2;
            } else { // expand(g + 1): wait for its slot to be full
              if (g + 1 < KT) {
                if (!ready(full[sg1], wg.ph ^ (sg1 === 0 ? 1 : 0), Math.floor((g + 1) / SA))) continue;
                if (slotGroup[sg1] !== g + 1) errors.push(`expand(${g + 1}) of ${w} reads slot ${sg1} holding ${slotGroup[sg1]}`);
              }
              wg.sp = wg.sg;
              if (sg1 === 0) wg.ph ^= 1;
              if (wg.sl + 1 === SA) wg.phl ^= 1;
              wg.sg = sg1;
              wg.sl = wg.sl + 1 === SA ? 0 : wg.sl + 1;
              wg.pc = 0;
              if (++wg.g === KT) { wg.fin = true; for (const s of wg.inflight) readers[s].delete(w); }
            }
          }
          expect(errors.slice(0, 3), `SA ${SA} KT ${KT}`).toEqual([]);
          expect(wgs.every((x) => x.fin), `deadlock: SA ${SA} KT ${KT}`).toBe(true);
        }
      }
    }
  });
});
