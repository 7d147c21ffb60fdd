// Generates the device inputs of the int8 prefill GEMM check + benchmark under .device/gemm/
// (ignored by git, carried to the GPU machine):
//   gemm_kernels.cuh  generated kernels for the check cases and the LLaMA-2-7B benchmark shapes
//   case_<i>.bin      check cases: [codes][scales u16][shifts u16][q u8 T*K][(s, z) f32 T*2]
//                     [y f64 T*N], y = s·Σ_k W[n,k]·(q − z) in float64 with W from the format's
//                     reference decoder (decodeTernary)
// Usage: npx tsx scripts/device/gen-gemm-bench.ts [--arch sm_90a] [--rs] [--variants t256sd,t128] [--m 512,1024]
//   --rs: only the lattice formats' register-weight kernels (gemm-wgmma-rs.ts), all variants
import { mkdirSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { decodeTernary, ternaryFormat, type TernaryFormat } from '../../src/formats/ternary.ts';
import { randomTernaryLinear, rng } from '../../src/artifact/random.ts';
import { gemmA8Kernel, type GemmShape } from '../../src/codegen/cuda/kernels/gemm-a8.ts';
import { gemmTakesRows } from '../../src/codegen/cuda/kernels/gemm.ts';
import { gemmWgmmaKernel, gemmWgmmaUnsupported } from '../../src/codegen/cuda/kernels/gemm-wgmma.ts';
import { GEMM_RS_VARIANTS, gemmWgmmaRsKernel, gemmWgmmaRsUnsupported, type GemmRsVariantName } from '../../src/codegen/cuda/kernels/gemm-wgmma-rs.ts';
import type { CudaKernel } from '../../src/codegen/cuda/kernel.ts';
import { latticeRowsKernel } from '../../src/codegen/cuda/kernels/lattice-rows.ts';
import { cudaPrelude, packingHelpers, PACKING_IDS } from '../../src/codegen/cuda/prelude.ts';
import type { CudaArch } from '../../src/codegen/cuda/arch.ts';

const arch = (process.argv.includes('--arch') ? process.argv[process.argv.indexOf('--arch') + 1] : 'sm_90a') as CudaArch;
const dir = '.device/gemm';
mkdirSync(dir, { recursive: true });

const tq2 = ternaryFormat('bit2', 128, true);
const tq2ns = ternaryFormat('bit2', 128, false);
const tq2lat = ternaryFormat('bit2', 128, true, true);
const tq2nslat = ternaryFormat('bit2', 128, false, true);
// Partial token tiles (T not a multiple of 128), several K tiles (more groups than stages),
// one K tile (fewer groups than stages), no-shift format, a LLaMA row length; the lattice
// formats (whose GEMM also takes the others' kernels) likewise, one with fractional zero points.
const checks: { f: TernaryFormat; n: number; k: number; t: number; fracZ?: boolean }[] = [
  { f: tq2, n: 256, k: 1024, t: 200 },
  { f: tq2, n: 512, k: 4096, t: 64 },
  { f: tq2ns, n: 128, k: 2048, t: 130 },
  { f: tq2, n: 128, k: 128, t: 77 },
  { f: tq2, n: 256, k: 11008, t: 96 },
  { f: tq2lat, n: 256, k: 1024, t: 200 },
  { f: tq2lat, n: 512, k: 4096, t: 64, fracZ: true },
  { f: tq2nslat, n: 128, k: 2048, t: 130 },
  { f: tq2lat, n: 128, k: 128, t: 77 },
  { f: tq2lat, n: 256, k: 11008, t: 96 },
  // 133 feature tiles × one 256-token tile on a 132-SM GPU: t256sd runs 132 whole tiles and
  // splits the last in two half-height tiles (the small cases above are all split)
  { f: tq2lat, n: 17024, k: 256, t: 160 },
  // whole 256-token tiles and a partial last one (the decoupled variants' one-address copies in
  // whole tiles, per-row checks in the last)
  { f: tq2lat, n: 256, k: 1024, t: 600 },
];
// LLaMA-2-7B (4096, 11008) and LLaMA-3-70B-like (8192, 28672) linears, N×K
const benchShapes: [number, number][] = [[4096, 4096], [11008, 4096], [4096, 11008], [8192, 8192], [28672, 8192], [8192, 28672]];
// --m a,b: token counts to time (default 128, 512, 2048, 4096)
const benchM = process.argv.includes('--m') ? process.argv[process.argv.indexOf('--m') + 1].split(',').map(Number) : [128, 512, 2048, 4096];
for (const m of benchM) if (!Number.isInteger(m) || m < 1) throw new Error(`--m: ${m} is not a token count`);

// Every generated kernel that takes the shape, checked and timed in the same run: the mma.sync
// one (gemm-a8.ts) and, where the arch has wgmma (sm_90a), the warpgroup one (gemm-wgmma.ts)
// and for lattice formats the fold-free one (gemm-wgmma-rs.ts) in each of its tile variants.
const kernels = new Map<string, { shape: GemmShape; k: CudaKernel }>();
const rsOnly = process.argv.includes('--rs');
// --variants a,b: only these register-weight variants (default: all)
const rsVariants = process.argv.includes('--variants')
  ? (process.argv[process.argv.indexOf('--variants') + 1].split(',') as GemmRsVariantName[])
  : (Object.keys(GEMM_RS_VARIANTS) as GemmRsVariantName[]);
for (const v of rsVariants) if (!(v in GEMM_RS_VARIANTS)) throw new Error(`unknown variant ${v}; known: ${Object.keys(GEMM_RS_VARIANTS).join(', ')}`);
const add = (shape: GemmShape): string[] => {
  const ks = [
    ...(rsOnly ? [] : [gemmA8Kernel(shape)]),
    ...(rsOnly || gemmWgmmaUnsupported(shape) ? [] : [gemmWgmmaKernel(shape)]),
    ...(gemmWgmmaRsUnsupported(shape) ? [] : rsVariants.map((v) => gemmWgmmaRsKernel(shape, v))),
  ];
  for (const k of ks) kernels.set(k.name, { shape, k });
  return ks.map((k) => k.name);
};
const checkKernels = checks.flatMap((c, i) => add({ format: c.f, n: c.n, k: c.k, arch }).map((name) => ({ name, t: c.t, i })));
const benchNames = benchShapes.flatMap(([n, k]) => [...(rsOnly ? [] : add({ format: tq2, n, k, arch })), ...add({ format: tq2lat, n, k, arch })]);
const table = [...kernels.values()].map(({ shape: s, k }) => `  {"${k.name}", "${s.format.id}", ${PACKING_IDS[s.format.packing]}, ${s.n}, ${s.k}, ${s.format.group}, ${s.format.shift ? 1 : 0}, ${s.format.lattice ? 1 : 0}, bench_${k.name}},`);
// one launch signature for all: the lattice kernels also take their row constants (lattice-rows.ts)
const wrapper = (k: CudaKernel) => {
  const rows = gemmTakesRows(k);
  return `static void bench_${k.name}(const uint8_t* a, const float* ap, const uint8_t* c, const __half* sc, const __half* sh, const int2* rows, __half* y, int T, cudaStream_t s) { ${
    rows ? '' : '(void)rows; '
  }launch_${k.name}(a, ap, c, sc, sh, ${rows ? 'rows, ' : ''}y, T, s); }`;
};
const rowsKernel = latticeRowsKernel(128);
const header = [
  cudaPrelude().text,
  packingHelpers().text,
  rowsKernel.source() + rowsKernel.launcher(),
  ...[...kernels.values()].map(({ k }) => k.source() + k.launcher() + wrapper(k)),
  'typedef void (*twlac_gemm_launch)(const uint8_t*, const float*, const uint8_t*, const __half*, const __half*, const int2*, __half*, int, cudaStream_t);',
  'struct TwlacGemm { const char* name; const char* format; int packing; int n, k, group, shift, lattice; twlac_gemm_launch launch; };',
  'static const TwlacGemm twlac_gemms[] = {',
  ...table,
  '};',
  `static const int twlac_gemm_count = ${kernels.size};`,
  `static const char* twlac_check_kernels[] = {${checkKernels.map((c) => `"${c.name}"`).join(', ')}};`,
  `static const int twlac_check_t[] = {${checkKernels.map((c) => c.t).join(', ')}};`,
  `static const int twlac_check_case[] = {${checkKernels.map((c) => c.i).join(', ')}};`,
  `static const int twlac_check_count = ${checkKernels.length};`,
  `static const char* twlac_bench_kernels[] = {${benchNames.map((n) => `"${n}"`).join(', ')}};`,
  `static const int twlac_bench_count = ${benchNames.length};`,
  `static const int twlac_bench_m[] = {${benchM.join(', ')}};`,
  `static const int twlac_bench_m_count = ${benchM.length};`,
  '',
].join('\n');
writeFileSync(join(dir, 'gemm_kernels.cuh'), header);

const rand = rng(4321);
checks.forEach((c, i) => {
  const lin = randomTernaryLinear('q', c.n, c.k, c.f, rand).ternary!;
  const w = decodeTernary(lin);
  const q = Uint8Array.from({ length: c.t * c.k }, () => Math.floor(rand() * 256));
  const ap = new Float32Array(c.t * 2);
  for (let m = 0; m < c.t; m++) {
    ap[2 * m] = 0.01 + 0.02 * rand();
    ap[2 * m + 1] = c.fracZ ? rand() * 256 : Math.floor(rand() * 256);
  }
  const y = new Float64Array(c.t * c.n);
  const xc = new Float64Array(c.k);
  for (let m = 0; m < c.t; m++) {
    for (let k = 0; k < c.k; k++) xc[k] = q[m * c.k + k] - ap[2 * m + 1];
    for (let n = 0; n < c.n; n++) {
      let s = 0;
      const o = n * c.k;
      for (let k = 0; k < c.k; k++) s += w[o + k] * xc[k];
      y[m * c.n + n] = s * ap[2 * m];
    }
  }
  const parts = [lin.codes, new Uint8Array(lin.scales.buffer), lin.shifts ? new Uint8Array(lin.shifts.buffer) : new Uint8Array(0), q, new Uint8Array(ap.buffer), new Uint8Array(y.buffer)];
  writeFileSync(join(dir, `case_${i}.bin`), Buffer.concat(parts));
});
console.log(`wrote ${kernels.size} kernels and ${checks.length} check cases to ${dir}`);
