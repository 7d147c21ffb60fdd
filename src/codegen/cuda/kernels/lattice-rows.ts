// Load-time row constants of the lattice formats' prefill GEMM (gemm-wgmma-rs.ts). That GEMM
// computes y = sa·u·(D − za·E) with the row's lattice unit u and E = Σ_k w, the sum of the row's
// int8 weights w = weight/u. Both depend on the weights only, so the host program computes them
// once after loading (one int2 a row: E, and u's float bits) instead of every GEMM tile
// recomputing them (a scan of the row's scales and shifts at each tile's start, and 16 dp4a a
// thread a K step).
// The per-row function is plain C++ on fp16 bits (__host__ __device__), so the tests run it on
// the CPU against the reference decoder (test/codegen/cuda.test.ts).
import { CODE_PACKINGS, LATTICE_MAX, LATTICE_MIN_EXP } from '../../../formats/ternary.ts';
import { code, ident, Code } from '../../common/fragments.ts';
import { defineKernel, type CudaKernel } from '../kernel.ts';

/** C++ for `twlac_lattice_row_g<G>(codes, sc, sh, groups, &e, &u)`: one row of bit2 codes with
 *  fp16 scales/shifts (bits; sh may be null) → E = Σ_k w (int) and the lattice unit u. */
export function latticeRowFunction(G: number): Code {
  const bytes = CODE_PACKINGS.bit2.bytesPerGroup(G);
  if (bytes % 4) throw new Error(`lattice rows: a group of ${G} codes is not whole 32-bit words`);
  const minExp = new Code(String(-LATTICE_MIN_EXP)); // fragments take non-negative integers only
  return code`__host__ __device__ inline void ${ident(`twlac_lattice_row_g${G}`)}(const uint8_t* codes, const uint16_t* sc, const uint16_t* sh, int groups, int* esum, float* unit) {
  auto half = [](uint16_t h) -> float {
    const int e = (h >> 10) & 0x1f, m = h & 0x3ff;
    const float v = e == 0 ? ldexpf((float)m, -24) : e == 31 ? (m ? NAN : INFINITY) : ldexpf((float)(m | 0x400), e - 25);
    return (h & 0x8000) ? -v : v;
  };
  auto popc = [](uint32_t x) -> int {
#ifdef __CUDA_ARCH__
    return __popc(x);
#else
    return __builtin_popcount(x);
#endif
  };
  // the unit: the smallest power of two u ≥ 2^-${minExp} with max |scale| + |shift| ≤ ${LATTICE_MAX}·u (formats/ternary.ts latticeUnit)
  float mx = 0.f;
  for (int g = 0; g < groups; ++g) mx = fmaxf(mx, fabsf(half(sc[g])) + (sh ? fabsf(half(sh[g])) : 0.f));
  int ex;
  frexpf(mx, &ex);
  float u = ldexpf(1.f, ex - 7);
  if (mx > ${LATTICE_MAX}.f * u) u *= 2.f;
  u = mx > 0.f ? fmaxf(u, ldexpf(1.f, -${minExp})) : ldexpf(1.f, -${minExp});
  const float iu = 1.f / u; // exact: a power of two
  // E: codes 1, 2, 3 (t = −1, 0, 1) weigh z' − s', z', z' + s' (the GEMM's byte table), code 0 nothing
  int e = 0;
  for (int g = 0; g < groups; ++g) {
    const int s = (int)rintf(half(sc[g]) * iu), z = sh ? (int)rintf(half(sh[g]) * iu) : 0;
    int n1 = 0, n2 = 0, n3 = 0;
    for (int i = 0; i < ${bytes}; i += 4) {
      const uint8_t* p = codes + (size_t)g * ${bytes} + i;
      const uint32_t w = (uint32_t)p[0] | ((uint32_t)p[1] << 8) | ((uint32_t)p[2] << 16) | ((uint32_t)p[3] << 24);
      const uint32_t lo = w & 0x55555555u, hi = (w >> 1) & 0x55555555u;
      n1 += popc(lo & ~hi);
      n2 += popc(hi & ~lo);
      n3 += popc(lo & hi);
    }
    e += n1 * (z - s) + n2 * z + n3 * (z + s);
  }
  *esum = e;
  *unit = u;
}`;
}

/** `lattice_rows_g<G>`: one thread a row, rows[r] = (E, float bits of u). */
export function latticeRowsKernel(G: number): CudaKernel {
  const bytes = CODE_PACKINGS.bit2.bytesPerGroup(G);
  const fn = ident(`twlac_lattice_row_g${G}`);
  return defineKernel({
    name: `lattice_rows_g${G}`,
    params: { group: G },
    args: [
      { name: 'codes', type: 'const uint8_t*' },
      { name: 'scales', type: 'const __half*' },
      { name: 'shifts', type: 'const __half*' },
      { name: 'rows', type: 'int2*' },
      { name: 'n', type: 'int' },
      { name: 'groups', type: 'int' },
    ],
    block: 128,
    grid: [code`(n + 127) / 128`, code`1`, code`1`],
    prelude: latticeRowFunction(G),
    body: code`  const int r = blockIdx.x * blockDim.x + threadIdx.x;
  if (r >= n) return;
  const size_t o = (size_t)r * groups;
  int e;
  float u;
  ${fn}(codes + o * ${bytes}, reinterpret_cast<const uint16_t*>(scales) + o, shifts ? reinterpret_cast<const uint16_t*>(shifts) + o : nullptr, groups, &e, &u);
  rows[r] = make_int2(e, __float_as_int(u));`,
  });
}
