// Prefill GEMM of the lattice formats (`_lat`, formats/ternary.ts) on Hopper's warpgroup
// tensor cores (wgmma, sm_90a). In a lattice format every scale s and shift z of weight row n
// is an integer multiple of the row's unit u_n = 2^e, with |s| + |z| ≤ 127 units, so each
// weight s·t + z is u_n times an int8 w = s'·t + z'. With u8 activation codes q and per-token
// (sa, za):
//   y[m, n] = sa·u_n·(D − za·E),   D = Σ_k q·w over the whole row (int32, tensor cores),
//                                  E = Σ_k w (per feature, int32).
// So there is no per-group fold (gemm-wgmma.ts spends 4 instructions per output per group on
// it): the accumulators stay with the tensor cores for all of K, and this is an int8 GEMM
// whose B operand is expanded on chip.
//
// Block: 128 tokens × 128 features, two warpgroups of 64 tokens each (256 threads); each
// issues wgmma.m64n128k32.s32.u8.s8 into its 64 int32 registers. Two rings in shared memory:
// A slots (a group's activation tile and packed codes, by cp.async) and B slots (expanded
// weight tiles). K step g (one group of 128 k):
//   barrier → cp.async group g + AHEAD into a free A slot → issue wgmma(g) → wait until
//   inFlight wgmma steps remain → expand group g + 1's codes into its B slot →
//   fence.proxy.async → load group g + 3's scales and shifts into registers.
// A slot is free once the wgmma that read it is done in both warpgroups, which the barrier
// after every thread's wait establishes (hence the ring sizes checked in the plan).
// The expansion maps the 2-bit codes (c = t + 2) through a per-(feature, group) byte table
// with PRMT: table bytes 1, 2, 3 = z' − s', z', z' + s'. 13 ALU ops per 16 weights (the code
// pairs become PRMT selector nibbles), plus 4 dp4a for E. The unit u_n is recomputed in the
// prologue from the row's fp16 scales and shifts by the format's rule (latticeUnit), while the
// first tiles are in flight.
import { Code, code, join } from '../../common/fragments.ts';
import { CUDA_ARCHS } from '../arch.ts';
import { defineKernel, type CudaKernel } from '../kernel.ts';
import { gemmArgs, gemmShapeUnsupported, gemmStore, GEMM_GROUP as G, type GemmShape } from './gemm.ts';
import { pin, wgmmaBlockSetup, wgmmaHelpers } from './gemm-wgmma.ts';

const BM = 128;
const BN = 128;
const THREADS = 256;

/** Pipeline shape, measured against the others on the device (gen-gemm-bench.ts benchmarks
 *  them side by side): wgmma steps in flight while the threads expand the next group, the A
 *  and B ring sizes, and the blocks that must share an SM (2 needs ≤ 128 registers and half
 *  the shared memory). */
export interface GemmLatVariant {
  inFlight: 0 | 1 | 2;
  stagesA: number;
  stagesB: number;
  blocksPerSm: 1 | 2;
}
export const GEMM_LAT_VARIANTS = {
  deep: { inFlight: 2, stagesA: 6, stagesB: 4, blocksPerSm: 1 },
  twoPerSm: { inFlight: 1, stagesA: 3, stagesB: 3, blocksPerSm: 2 },
  shallow: { inFlight: 1, stagesA: 3, stagesB: 3, blocksPerSm: 1 },
  deeper: { inFlight: 2, stagesA: 7, stagesB: 4, blocksPerSm: 1 },
  twoPerSmSync: { inFlight: 0, stagesA: 3, stagesB: 2, blocksPerSm: 2 },
} as const satisfies Record<string, GemmLatVariant>;
export type GemmLatVariantName = keyof typeof GEMM_LAT_VARIANTS;
export const GEMM_LAT_DEFAULT: GemmLatVariantName = 'deep';

/** Why a linear cannot use the lattice wgmma GEMM, or null. */
export function gemmWgmmaLatUnsupported(s: Pick<GemmShape, 'format' | 'k' | 'n' | 'arch'>): string | null {
  if (!s.format.lattice) return `format ${s.format.id} is not a lattice format`;
  if (CUDA_ARCHS[s.arch].int8Mma !== 'wgmma.m64nNk32.s8') return `${s.arch} has no wgmma`;
  return gemmShapeUnsupported(s, BN, 'the tile width');
}

export function gemmWgmmaLatKernelName(s: GemmShape, variant: GemmLatVariantName = GEMM_LAT_DEFAULT): string {
  const tag = variant === GEMM_LAT_DEFAULT ? '' : `_${variant}`;
  return `gemm_wgl${tag}_${s.format.id}_n${s.n}_k${s.k}_${s.arch}${s.out === 'f32' ? '_f32' : ''}`;
}

export function gemmWgmmaLatPlan(s: GemmShape, variant: GemmLatVariantName = GEMM_LAT_DEFAULT) {
  const why = gemmWgmmaLatUnsupported(s);
  if (why) throw new Error(`CUDA lattice wgmma prefill GEMM: ${why}`);
  const v: GemmLatVariant = GEMM_LAT_VARIANTS[variant];
  // a slot's next use must wait for the wgmma that read it: after the barrier of step g the
  // wgmmas up to g − 1 − inFlight are done in both warpgroups
  const ahead = v.stagesA - 1 - v.inFlight; // activation groups in flight ahead of the current one
  if (ahead < 1) throw new Error(`CUDA lattice wgmma prefill GEMM: ${v.stagesA} A slots leave no group in flight`);
  if (v.stagesB < 2 + v.inFlight) throw new Error(`CUDA lattice wgmma prefill GEMM: ${v.stagesB} B slots are fewer than ${2 + v.inFlight}`);
  const codeBytes = G / 4;
  const aSlot = BM * G + BN * codeBytes; // activations, then codes
  const bSlot = BN * G;
  if (aSlot % 1024 || bSlot % 1024) throw new Error('CUDA lattice wgmma prefill GEMM: slots must keep the 1024-byte swizzle alignment');
  const bOff = v.stagesA * aSlot;
  const ueOff = bOff + v.stagesB * bSlot;
  const smemBytes = 1024 + ueOff + BN * 8; // alignment slack + rings + (u, E) per feature
  const arch = CUDA_ARCHS[s.arch];
  if (smemBytes * v.blocksPerSm > arch.maxSmemPerBlock) throw new Error(`CUDA lattice wgmma prefill GEMM: ${v.blocksPerSm} × ${smemBytes} B of shared memory exceed ${s.arch}'s ${arch.maxSmemPerBlock}`);
  return { ...v, ahead, codeBytes, aSlot, bSlot, bOff, ueOff, smemBytes, kt: s.k / G, rowBytes: (s.k / G) * codeBytes };
}

/** \`n_expand(w, table)\`: 16 bit2 codes (byte b of w holds codes 4b…4b+3, code j at bits 2j)
 *  → 16 int8 weights in k order, word b = table[codes of byte b]: s01/s23 byte b holds codes
 *  (4b, 4b+1)/(4b+2, 4b+3) as nibbles, one PRMT joins byte b of both into the selector of
 *  word b, a second looks it up (13 ALU ops). The table's bytes 1, 2, 3 are the weights of
 *  codes 1, 2, 3 (t = −1, 0, 1). */
export function latticeExpand(n: Code): Code {
  return code`__device__ __forceinline__ uint4 ${n}_expand(uint32_t w, uint32_t table) {
  const uint32_t s01 = (w & 0x03030303u) | ((w << 2) & 0x30303030u);
  const uint32_t s23 = ((w >> 4) & 0x03030303u) | ((w >> 2) & 0x30303030u);
  return make_uint4(__byte_perm(table, 0u, __byte_perm(s01, s23, 0x40)), __byte_perm(table, 0u, __byte_perm(s01, s23, 0x51)),
                    __byte_perm(table, 0u, __byte_perm(s01, s23, 0x62)), __byte_perm(table, 0u, __byte_perm(s01, s23, 0x73)));
}
`;
}

/** wgmma.m64n128k32 u8 (activations) × s8 (weights) → s32, accumulating into accum[0..63]. */
function wgmmaU8S8(descA: Code, descB: Code): Code {
  const regs = Array.from({ length: 64 }, (_, i) => `%${i}`).join(', ');
  const outs = Array.from({ length: 64 }, (_, i) => `"+r"(accum[${i}])`).join(', ');
  return new Code(`asm volatile("{\\n.reg .pred p;\\nsetp.ne.b32 p, 1, 0;\\n"
      "wgmma.mma_async.sync.aligned.m64n128k32.s32.u8.s8 {${regs}}, %64, %65, p;\\n}\\n"
      : ${outs}
      : "l"(${descA.text}), "l"(${descB.text}));`);
}

export function gemmWgmmaLatKernel(s: GemmShape, variant: GemmLatVariantName = GEMM_LAT_DEFAULT): CudaKernel {
  const p = gemmWgmmaLatPlan(s, variant);
  const { aSlot, bSlot, bOff, ueOff, smemBytes, kt: KT, rowBytes, codeBytes: CB, stagesA: SA, stagesB: SB, ahead: AHEAD } = p;
  const name = gemmWgmmaLatKernelName(s, variant);
  const n = new Code(name);
  const C_OFF = BM * G;
  const PENDING = new Code(String(AHEAD - 1)); // cp.async groups that may stay pending once g + 1 must have landed
  const prelude = code`${wgmmaHelpers(n)}
${latticeExpand(n)}`;
  const shiftAt = (grp: string) => (s.format.shift ? new Code(`__half2float(shifts[colScale + ${grp}])`) : new Code('0.f'));
  const body = code`${wgmmaBlockSetup(n, { k: s.k, kt: KT, slotBytes: aSlot, cOff: C_OFF, codeBytes: CB, rowBytes })}
  // prologue: A slots of groups 0 … ${AHEAD - 1} in flight
  #pragma unroll
  for (int st = 0; st < ${AHEAD}; ++st) {
    if (st < ${KT}) load_stage(st, st);
    asm volatile("cp.async.commit_group;" ::: "memory");
  }
  // scales and shifts of groups g + 1 and g + 2 in registers (loaded two steps ahead, after
  // the step's proxy fence, which would otherwise wait for them)
  float sc1 = 0.f, sh1 = 0.f, sc2 = 0.f, sh2 = 0.f;
  const float sc0 = __half2float(scales[colScale]), sh0 = ${shiftAt('0')};
  if (${KT} > 1) { sc1 = __half2float(scales[colScale + 1]); sh1 = ${shiftAt('1')}; }
  if (${KT} > 2) { sc2 = __half2float(scales[colScale + 2]); sh2 = ${shiftAt('2')}; }
  // the lattice unit u of feature er: the smallest power of two (≥ 2^-24) with
  // max |s| + |z| ≤ 127·u over the row (formats/ternary.ts latticeUnit); the sums are exact
  // for lattice values
  float mx = 0.f;
  #pragma unroll 4
  for (int g = eh; g < ${KT}; g += 2) mx = fmaxf(mx, fabsf(__half2float(scales[colScale + g])) + fabsf(${shiftAt('g')}));
  mx = fmaxf(mx, __shfl_xor_sync(0xffffffffu, mx, 1));
  int ex;
  frexpf(mx, &ex);
  float u = ldexpf(1.f, ex - 7);
  if (mx > 127.f * u) u *= 2.f;
  u = mx > 0.f ? fmaxf(u, 0x1p-24f) : 0x1p-24f;
  const float iu = 1.f / u; // exact: a power of two
  // byte table of a group: bytes 1, 2, 3 = z' − s', z', z' + s' (codes t + 2)
  auto table_of = [&](float sc, float sh) -> uint32_t {
    const int si = __float2int_rn(sc * iu), zi = __float2int_rn(sh * iu);
    return (((uint32_t)(zi - si) & 0xffu) << 8) | (((uint32_t)zi & 0xffu) << 16) | (((uint32_t)(zi + si) & 0xffu) << 24);
  };
  int esum = 0; // Σ w over this thread's codes
  // expand group grp (its A slot holds the codes) into its B slot
  auto expand = [&](int grp, uint32_t table) {
    const uint4 w = *reinterpret_cast<const uint4*>(sm + (grp % ${SA}) * ${aSlot} + ${C_OFF} + er * ${CB} + eh * 16);
    unsigned char* sB = sm + ${bOff} + (grp % ${SB}) * ${bSlot};
    const uint32_t ws[4] = {w.x, w.y, w.z, w.w};
    #pragma unroll
    for (int i = 0; i < 4; ++i) {
      const uint4 d = ${n}_expand(ws[i], table);
      const int c = eh * 4 + i;
      *reinterpret_cast<uint4*>(sB + er * ${G} + ((c ^ (er & 7)) << 4)) = d;
      esum = __dp4a((int)d.x, 0x01010101, __dp4a((int)d.y, 0x01010101, __dp4a((int)d.z, 0x01010101, __dp4a((int)d.w, 0x01010101, esum))));
    }
  };
  int accum[64];
  #pragma unroll
  for (int i = 0; i < 64; ++i) accum[i] = 0;
  asm volatile("cp.async.wait_group ${PENDING};" ::: "memory");
  expand(0, table_of(sc0, sh0));
  asm volatile("fence.proxy.async.shared::cta;" ::: "memory");
  #pragma unroll 1
  for (int g = 0; g < ${KT}; ++g) {
    __syncthreads(); // B(g) expanded and A(g) landed in every thread; wgmma(g − ${p.inFlight + 1}) done in both warpgroups
    if (g + ${AHEAD} < ${KT}) load_stage((g + ${AHEAD}) % ${SA}, g + ${AHEAD});
    asm volatile("cp.async.commit_group;" ::: "memory");
    {
      const uint64_t da = ${n}_desc(base + (uint32_t)((g % ${SA}) * ${aSlot} + wg * ${(BM / 2) * G}));
      const uint64_t db = ${n}_desc(base + (uint32_t)(${bOff} + (g % ${SB}) * ${bSlot}));
      asm volatile("wgmma.fence.sync.aligned;" ::: "memory");
      ${join([0, 1, 2, 3].map((st) => wgmmaU8S8(new Code(`da + ${2 * st}`), new Code(`db + ${2 * st}`))), '\n      ')}
      asm volatile("wgmma.commit_group.sync.aligned;" ::: "memory");
    }
    asm volatile("wgmma.wait_group.sync.aligned ${new Code(String(p.inFlight))};" ::: "memory");
    if (g + 1 < ${KT}) {
      asm volatile("cp.async.wait_group ${PENDING};" ::: "memory");
      expand(g + 1, table_of(sc1, sh1));
      asm volatile("fence.proxy.async.shared::cta;" ::: "memory");
      sc1 = sc2; sh1 = sh2;
      if (g + 3 < ${KT}) { sc2 = __half2float(scales[colScale + g + 3]); sh2 = ${shiftAt('g + 3')}; }
    }
  }
  asm volatile("wgmma.wait_group.sync.aligned 0;" ::: "memory");
  ${pin('accum', 64)}
  // y = sa·u·(D − za·E); za's integer part in int32 (exact, no cancellation), any fraction after
  esum += __shfl_xor_sync(0xffffffffu, esum, 1);
  float* sU = reinterpret_cast<float*>(sm + ${ueOff});
  int* sE = reinterpret_cast<int*>(sm + ${ueOff + BN * 4});
  if (eh == 0) { sU[er] = u; sE[er] = esum; }
  __syncthreads();
  #pragma unroll
  for (int r = 0; r < 2; ++r) {
    const int row = m0 + r0 + 8 * r;
    if (row < T) {
      const float sq = ap[2 * row], zq = ap[2 * row + 1];
      const float zr = rintf(zq), zf = zq - zr;
      const int zi = (int)zr;
      #pragma unroll
      for (int j = 0; j < 16; ++j) {
        const int col = 8 * j + 2 * tq;
        ${gemmStore(
          s,
          code`row`,
          code`n0 + col`,
          code`sq * sU[col] * ((float)(accum[4 * j + 2 * r] - zi * sE[col]) - zf * (float)sE[col])`,
          code`sq * sU[col + 1] * ((float)(accum[4 * j + 2 * r + 1] - zi * sE[col + 1]) - zf * (float)sE[col + 1])`,
        )}
      }
    }
  }`;
  return defineKernel({
    name,
    params: { format: s.format.id, n: s.n, k: s.k, arch: s.arch, act: 'u8', out: s.out ?? 'f16', bm: BM, bn: BN, variant, mma: 'wgmma.m64n128k32.u8.s8' },
    args: gemmArgs(s),
    block: THREADS,
    minBlocksPerSm: p.blocksPerSm,
    grid: [code`${s.n / BN}`, code`(T + ${BM - 1}) / ${BM}`, code`1`],
    smemBytes,
    prelude,
    body,
  });
}
