// Generates the device GEMV check + benchmark inputs under .device/cuda/ (ignored by git,
// carried to the GPU machine):
//   gemv_kernels.cuh  generated kernels for the check cases and the benchmark shapes
//   case_<i>.bin      check cases: codes, scales, shifts, activations and the expected output
//                     computed here in float64 by the format's reference decoder (decodeTernary)
// Usage: npx tsx scripts/device/gen-gemv-bench.ts [--arch sm_90a] [--a8-tune]
//   --a8-tune: benchmark only the streaming GEMV: int8 activations with the default plan and
//   nearby plans per shape (bulk-loading ones among them), fp16 activations with the default
//   plan with and without bulk loads (the checks stay whole).
import { mkdirSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { decodeTernary, ternaryFormat, type TernaryFormat } from '../../src/formats/ternary.ts';
import { randomTernaryLinear, rng } from '../../src/artifact/random.ts';
import { gemvKernel, type GemvShape } from '../../src/codegen/cuda/kernels/gemv.ts';
import { gemvA8Kernel } from '../../src/codegen/cuda/kernels/gemv-a8.ts';
import { gemvStreamKernel, type StreamTuning } from '../../src/codegen/cuda/kernels/gemv-stream.ts';
import { gemvTcKernel } from '../../src/codegen/cuda/kernels/gemv-tc.ts';
import { cudaPrelude, packingHelpers, PACKING_IDS } from '../../src/codegen/cuda/prelude.ts';
import { checkCaseBytes, ternaryCheckCase } from '../../src/codegen/check-case.ts';
import type { CudaArch } from '../../src/codegen/cuda/arch.ts';

const a8Tune = process.argv.includes('--a8-tune');
const arch = (process.argv.includes('--arch') ? process.argv[process.argv.indexOf('--arch') + 1] : 'sm_90a') as CudaArch;
const dir = '.device/cuda';
mkdirSync(dir, { recursive: true });

const tq1 = ternaryFormat('trit5', 128, true);
const tq2 = ternaryFormat('bit2', 128, true);
const tq2ns = ternaryFormat('bit2', 128, false);
const tq1g40 = ternaryFormat('trit5', 40, true);

// Check cases: aligned (16 B vectors), unaligned rows (4 B vectors), partial final group,
// rows not a multiple of the block's rows, K-tiling (M=16 with long rows), M = 1…16.
const checks: { f: TernaryFormat; n: number; k: number; m: number; t: number }[] = [
  { f: tq1, n: 256, k: 4096, m: 1, t: 1 },
  { f: tq1, n: 256, k: 4096, m: 4, t: 3 },
  { f: tq1, n: 96, k: 11008, m: 16, t: 16 },
  { f: tq1, n: 200, k: 1000, m: 2, t: 2 },
  { f: tq1g40, n: 130, k: 640, m: 8, t: 5 },
  { f: tq2, n: 256, k: 4096, m: 1, t: 1 },
  { f: tq2, n: 96, k: 11008, m: 16, t: 13 },
  { f: tq2ns, n: 300, k: 2048, m: 2, t: 2 },
  { f: ternaryFormat('trit5', 384, false), n: 384, k: 384, m: 4, t: 3 },
  { f: ternaryFormat('trit5', 1024, false), n: 100, k: 1024, m: 16, t: 16 },
  { f: ternaryFormat('bit2', 100, true), n: 64, k: 450, m: 1, t: 1 },
  { f: ternaryFormat('trit5', 4096, false), n: 64, k: 4096, m: 16, t: 9 },
];
// Streaming GEMV (gemv-stream.ts) checks: M = 1…4 with T < M, K-split warps, partial last
// group (K % G ≠ 0), 8- and 4-byte chunks (G = 96, 48), no shift.
const tq2g96 = ternaryFormat('bit2', 96, true);
const tq2g48ns = ternaryFormat('bit2', 48, false);
const checksStream: { f: TernaryFormat; n: number; k: number; m: number; t: number; tune?: Partial<StreamTuning> }[] = [
  { f: tq2, n: 256, k: 4096, m: 1, t: 1 },
  { f: tq2, n: 96, k: 11008, m: 4, t: 3 },
  { f: tq2, n: 40, k: 8192, m: 2, t: 2, tune: { rows: 2, warps: 4, wk: 4, ub: 2 } },
  { f: tq2ns, n: 300, k: 2048, m: 1, t: 1, tune: { rows: 8, warps: 2, wk: 1, ub: 1 } },
  { f: tq2g96, n: 130, k: 1000 - 8, m: 4, t: 4 },
  { f: tq2g48ns, n: 70, k: 400, m: 3, t: 2 },
  { f: tq2, n: 64, k: 4096, m: 1, t: 1, tune: { rows: 4, warps: 4, wk: 2, ub: 1 } },
  // bulk plans (the block's slice through shared memory): a partial last block, K split over
  // warps, M = 4 with T < M and a partial chunk iteration, no shift
  { f: tq2, n: 300, k: 4096, m: 1, t: 1, tune: { rows: 2, warps: 4, wk: 1, ub: 1, bulk: 2 } },
  { f: tq2, n: 40, k: 8192, m: 2, t: 2, tune: { rows: 2, warps: 4, wk: 2, ub: 1, bulk: 2 } },
  { f: tq2, n: 96, k: 11008, m: 4, t: 3, tune: { rows: 1, warps: 4, wk: 1, ub: 2, bulk: 3 } },
  { f: tq2ns, n: 301, k: 2048, m: 1, t: 1, tune: { rows: 4, warps: 4, wk: 2, ub: 1, bulk: 1 } },
  // activations by bulk copy (xbulk): the 7B down projection's plan on a partial last block;
  // a partial last group (K = 4000: the last 128-byte run is 32 bytes) over two phases, no shift
  { f: tq2, n: 296, k: 11008, m: 1, t: 1, tune: { rows: 4, warps: 4, wk: 2, ub: 1, bulk: 3, xbulk: true } },
  { f: tq2ns, n: 200, k: 4000, m: 1, t: 1, tune: { rows: 2, warps: 4, wk: 1, ub: 1, bulk: 2, xbulk: true } },
];
const benchShapes: [number, number][] = [
  [4096, 4096], [11008, 4096], [4096, 11008], [8192, 8192], [28672, 8192], [8192, 28672],
];
const benchFormats = [tq1, tq2];
// int8-activation GEMV (bit2 words): checks and the same benchmark shapes.
const checksA8: { f: TernaryFormat; n: number; k: number; m: number; t: number }[] = [
  { f: tq2, n: 256, k: 4096, m: 1, t: 1 },
  { f: tq2ns, n: 300, k: 2048, m: 4, t: 3 },
  { f: tq2, n: 96, k: 11008, m: 16, t: 16 },
];

const kernels = new Map<string, { shape: GemvShape; k: ReturnType<typeof gemvKernel> }>();
const add = (shape: GemvShape) => {
  const k = gemvKernel(shape);
  kernels.set(k.name, { shape, k });
  return k.name;
};
const addStream = (shape: GemvShape, act: 'f16' | 'u8', tune?: Partial<StreamTuning>) => {
  const k = gemvStreamKernel(shape, act, tune);
  (act === 'f16' ? kernels : kernelsA8).set(k.name, { shape, k: k as ReturnType<typeof gemvKernel> });
  return k.name;
};
const checkNames = checks.map((c) => add({ format: c.f, n: c.n, k: c.k, m: c.m, arch }));
const benchNames = a8Tune ? [] : benchFormats.flatMap((f) => benchShapes.map(([n, k]) => add({ format: f, n, k, m: 1, arch })));
const kernelsA8 = new Map<string, { shape: GemvShape; k: ReturnType<typeof gemvA8Kernel> }>();
const addA8 = (shape: GemvShape) => {
  const k = gemvA8Kernel(shape);
  kernelsA8.set(k.name, { shape, k });
  return k.name;
};
const checkA8Names = checksA8.map((c) => addA8({ format: c.f, n: c.n, k: c.k, m: c.m, arch }));
const benchA8Names = a8Tune ? [] : benchShapes.map(([n, k]) => addA8({ format: tq2, n, k, m: 1, arch }));
// Streaming GEMV: the same checks for both activation kinds, and a tuning sweep at M = 1.
// (activations by bulk copy are an int8-only plan)
const checksStreamF16 = checksStream.filter((c) => !c.tune?.xbulk);
checks.push(...checksStreamF16);
checkNames.push(...checksStreamF16.map((c) => addStream({ format: c.f, n: c.n, k: c.k, m: c.m, arch }, 'f16', c.tune)));
checksA8.push(...checksStream);
checkA8Names.push(...checksStream.map((c) => addStream({ format: c.f, n: c.n, k: c.k, m: c.m, arch }, 'u8', c.tune)));
const sweep: (Partial<StreamTuning> | undefined)[] = [undefined, { rows: 2, warps: 4, wk: 1, ub: 2 }, { rows: 4, warps: 4, wk: 1, ub: 2 }, { rows: 4, warps: 8, wk: 1, ub: 1 }, { rows: 2, warps: 8, wk: 1, ub: 4 }, { rows: 8, warps: 4, wk: 1, ub: 1 }, { rows: 4, warps: 4, wk: 2, ub: 2 }];
// Tensor-core skinny GEMM (gemv-tc.ts, prefill chunks): M up to 16 with T ≤ M, groups 64/128/256,
// no shift, small and large grids.
const checksTc: { f: TernaryFormat; n: number; k: number; m: number; t: number }[] = [
  { f: tq2, n: 256, k: 4096, m: 16, t: 16 },
  { f: tq2, n: 96, k: 11008, m: 4, t: 3 },
  { f: ternaryFormat('bit2', 64, false), n: 70, k: 448, m: 16, t: 11 },
  { f: ternaryFormat('bit2', 256, true), n: 100, k: 1024, m: 8, t: 7 },
  { f: tq2, n: 1024, k: 4096, m: 16, t: 9 },
  { f: ternaryFormat('bit2', 384, false), n: 64, k: 768, m: 16, t: 16 }, // 24-byte lane quarters
  { f: ternaryFormat('bit2', 192, true), n: 48, k: 576, m: 4, t: 2 }, // 12-byte lane quarters
  { f: tq2, n: 512, k: 4096, m: 64, t: 50 }, // prefill slices: 8 token tiles, T not a multiple of 8
  { f: ternaryFormat('bit2', 64, false), n: 70, k: 448, m: 32, t: 32 },
];
for (const c of checksTc) {
  const k = gemvTcKernel({ format: c.f, n: c.n, k: c.k, m: c.m, arch });
  kernels.set(k.name, { shape: { format: c.f, n: c.n, k: c.k, m: c.m, arch }, k: k as ReturnType<typeof gemvKernel> });
  checks.push(c);
  checkNames.push(k.name);
}
// More K-split and fewer-row plans for the LLaMA-2-7B shapes (small grids: latency-bound)
const sweepSmall: Partial<StreamTuning>[] = [{ rows: 2, warps: 4, wk: 2, ub: 2 }, { rows: 1, warps: 4, wk: 4, ub: 2 }, { rows: 2, warps: 8, wk: 4, ub: 2 }, { rows: 1, warps: 8, wk: 2, ub: 2 }, { rows: 2, warps: 4, wk: 2, ub: 4 }, { rows: 1, warps: 4, wk: 2, ub: 4 }];
// --a8-tune: only the streaming GEMV at the benchmark shapes: int8 activations with the default
// plan and the candidates below, fp16 activations with and without bulk loads (confirmation runs).
const bk = (rows: number, warps: number, wk: number, ub: number, bulk: number): Partial<StreamTuning> => ({ rows, warps, wk, ub, bulk });
// the register-streaming plans at the 70B shapes, and activations by bulk copy (xbulk) on
// other bulk plans
const xb = (t: Partial<StreamTuning>): Partial<StreamTuning> => ({ ...t, xbulk: true });
const a8Candidates: Record<string, Partial<StreamTuning>[]> = {
  '4096x4096': [xb(bk(4, 4, 2, 1, 8))],
  '11008x4096': [xb(bk(4, 4, 1, 1, 8))],
  // the default takes xbulk here (K > 8192); bk(4, 4, 2, 1, 8) is the same plan without it
  '4096x11008': [bk(4, 4, 2, 1, 8), xb(bk(4, 4, 2, 2, 2)), xb(bk(2, 4, 2, 1, 3)), xb(bk(4, 8, 4, 1, 2))],
  '8192x8192': [xb(bk(4, 4, 1, 1, 8))],
  '28672x8192': [bk(4, 4, 1, 2, 0)],
  '8192x28672': [bk(2, 4, 1, 2, 0)],
};
if (a8Tune) {
  for (const [n, k] of benchShapes) {
    for (const t of [undefined, ...(a8Candidates[`${n}x${k}`] ?? [])]) {
      const u8 = addStream({ format: tq2, n, k, m: 1, arch }, 'u8', t);
      if (!benchA8Names.includes(u8)) benchA8Names.push(u8);
    }
    // fp16 activations: the default plan, with and without bulk loads where the slice fits
    for (const t of [undefined, { bulk: 1 }]) {
      try {
        const f16 = addStream({ format: tq2, n, k, m: 1, arch }, 'f16', t);
        if (!benchNames.includes(f16)) benchNames.push(f16);
      } catch (e) {
        console.log(`skip f16 ${n}x${k} bulk: ${(e as Error).message}`);
      }
    }
  }
}
for (const [n, k] of a8Tune ? [] : benchShapes) {
  for (const t of n * k <= 11008 * 4096 ? [...sweep, ...sweepSmall] : sweep) {
    const f16 = addStream({ format: tq2, n, k, m: 1, arch }, 'f16', t);
    const u8 = addStream({ format: tq2, n, k, m: 1, arch }, 'u8', t);
    if (!benchNames.includes(f16)) benchNames.push(f16);
    if (!benchA8Names.includes(u8)) benchA8Names.push(u8);
  }
}
// --diag (with --a8-tune): speed-only copies of the default int8 plan at the 7B shapes with one
// part of the work removed, to see which part bounds a launch (their results are wrong, so they
// are benchmarked but never checked): nopopc (no Σ d per chunk), noload (no bulk copies: the
// phases complete at once over stale shared memory), noact (activations not read), nomath (the
// dot products reduced to XORs). H100, 2026-12-05 at 32d9042 (bench/archive/cuda-h100-logs/gemv-2026-12-05-32d9042/
// d*.log), chained launches with PDL at 4096×11008: default 7.39 µs, noload 4.8–5.0, noact
// 6.0, nomath 7.3, nopopc 7.8–7.9: the activation loads, one L2 round trip a batch, are what
// that shape pays beyond 11008×4096 (5.95 µs, where noact changes nothing).
const DIAGS: Record<string, (src: string) => string> = {
  nopopc: (src) => src.replace(/\n\s*if \(m == 0\) cs\d+ \+= __popc[^\n]*/g, ''),
  noload: (src) =>
    src
      .replace(/\n[^\n]*cp\.async\.bulk\.shared[^\n]*/g, '')
      .replace(/mbarrier\.arrive\.expect_tx\.shared::cta\.b64 st, \[%0\], %1;/g, 'mbarrier.arrive.shared::cta.b64 st, [%0];'),
  noact: (src) => src.replace(/__ldg\(reinterpret_cast<const uint4\*>\(a \+ \(size_t\)m \* \d+ \+ kq\)\)/g, 'make_uint4(kq, kq + 1, kq + 2, kq + 3)'),
  nomath: (src) => DIAGS.nopopc(src).replace(/__dp4a\(w & 0x[0-9a-f]+u, xw\[\d\], (d\d\[m\]\[\d\])\)/g, '($1 ^ w)'),
};
if (a8Tune && process.argv.includes('--diag')) {
  for (const [n, k] of [[4096, 11008], [11008, 4096], [4096, 4096], [8192, 8192]]) {
    const base = gemvStreamKernel({ format: tq2, n, k, m: 1, arch }, 'u8');
    for (const [d, edit] of Object.entries(DIAGS)) {
      const name = `${base.name}_d${d}`;
      const rename = (t: string) => t.split(base.name).join(name);
      const src = edit(rename(base.source()));
      if (src === rename(base.source())) throw new Error(`diag ${d} changed nothing in ${base.name}`);
      kernelsA8.set(name, { shape: { format: tq2, n, k, m: 1, arch }, k: { ...base, name, source: () => src, launcher: () => rename(base.launcher()) } });
      benchA8Names.push(name);
    }
  }
}
const tableA8 = [...kernelsA8.values()].map(({ shape: s, k }) => `  {"${k.name}", "${s.format.id}", ${PACKING_IDS[s.format.packing]}, ${s.n}, ${s.k}, ${s.m}, ${s.format.group}, ${s.format.shift ? 1 : 0}, launch_${k.name}},`);

const table = [...kernels.values()].map(({ shape: s, k }) => {
  const f = s.format;
  return `  {"${k.name}", "${f.id}", ${PACKING_IDS[f.packing]}, ${s.n}, ${s.k}, ${s.m}, ${f.group}, ${f.shift ? 1 : 0}, launch_${k.name}},`;
});
const header = [
  cudaPrelude().text,
  packingHelpers().text,
  ...[...kernels.values(), ...kernelsA8.values()].map(({ k }) => k.source() + k.launcher()),
  'typedef void (*twlac_gemv_launch)(const __half*, const uint8_t*, const __half*, const __half*, float*, int, int, cudaStream_t);',
  'struct TwlacGemv { const char* name; const char* format; int packing; int n, k, m, group, shift; twlac_gemv_launch launch; };',
  'static const TwlacGemv twlac_gemvs[] = {',
  ...table,
  '};',
  `static const int twlac_gemv_count = ${kernels.size};`,
  `static const char* twlac_check_kernels[] = {${checkNames.map((n) => `"${n}"`).join(', ')}};`,
  `static const int twlac_check_t[] = {${checks.map((c) => c.t).join(', ')}};`,
  `static const int twlac_check_count = ${checks.length};`,
  `static const char* twlac_bench_kernels[] = {${benchNames.map((n) => `"${n}"`).join(', ')}};`,
  `static const int twlac_bench_count = ${benchNames.length};`,
  'typedef void (*twlac_gemv_a8_launch)(const uint8_t*, const float*, const uint8_t*, const __half*, const __half*, float*, int, int, cudaStream_t);',
  'struct TwlacGemvA8 { const char* name; const char* format; int packing; int n, k, m, group, shift; twlac_gemv_a8_launch launch; };',
  'static const TwlacGemvA8 twlac_gemvs_a8[] = {',
  ...tableA8,
  '};',
  `static const int twlac_gemv_a8_count = ${kernelsA8.size};`,
  `static const char* twlac_check_a8_kernels[] = {${checkA8Names.map((n) => `"${n}"`).join(', ')}};`,
  `static const int twlac_check_a8_t[] = {${checksA8.map((c) => c.t).join(', ')}};`,
  `static const int twlac_check_a8_count = ${checksA8.length};`,
  `static const char* twlac_bench_a8_kernels[] = {${benchA8Names.map((n) => `"${n}"`).join(', ')}};`,
  `static const int twlac_bench_a8_count = ${benchA8Names.length};`,
  '',
].join('\n');
writeFileSync(join(dir, 'gemv_kernels.cuh'), header);

// Case files (src/codegen/check-case.ts): [codes][scales u16][shifts u16][x fp16 T*K][y f64 T*N].
const rand = rng(1234);
checks.forEach((c, i) => writeFileSync(join(dir, `case_${i}.bin`), checkCaseBytes(ternaryCheckCase(c.f, c.n, c.k, c.t, rand))));
// A8 case files: [codes][scales][shifts][q u8 T*K][(s, z) f32 T*2][y f64 T*N], y = s·Σ W (q − z).
checksA8.forEach((c, i) => {
  const lin = randomTernaryLinear('q', c.n, c.k, c.f, rand).ternary!;
  const w = decodeTernary(lin);
  const q = Uint8Array.from({ length: c.t * c.k }, () => Math.floor(rand() * 256));
  const ap = new Float32Array(c.t * 2);
  for (let m = 0; m < c.t; m++) {
    ap[2 * m] = 0.01 + 0.02 * rand();
    ap[2 * m + 1] = Math.floor(rand() * 256);
  }
  const y = new Float64Array(c.t * c.n);
  for (let m = 0; m < c.t; m++) {
    for (let n = 0; n < c.n; n++) {
      let s = 0;
      for (let k = 0; k < c.k; k++) s += w[n * c.k + k] * (q[m * c.k + k] - ap[2 * m + 1]);
      y[m * c.n + n] = s * ap[2 * m];
    }
  }
  const parts = [lin.codes, new Uint8Array(lin.scales.buffer), lin.shifts ? new Uint8Array(lin.shifts.buffer) : new Uint8Array(0), q, new Uint8Array(ap.buffer), new Uint8Array(y.buffer)];
  writeFileSync(join(dir, `case_a8_${i}.bin`), Buffer.concat(parts));
});
console.log(`wrote ${kernels.size} kernels and ${checks.length} check cases to ${dir}`);
