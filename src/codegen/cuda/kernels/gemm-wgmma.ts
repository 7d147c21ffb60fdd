// Prefill GEMM (M ≥ 64 tokens) on Hopper's warpgroup tensor cores (wgmma, sm_90a): the same
// maths as gemm-a8.ts (u8 activation codes q with per-token (s, z); bit2 weight digits
// c = t + 2 ∈ {1, 2, 3} in groups of G = 128 with fp16 scale sc and shift sh):
//   Σ_{k∈g} (sc·t + sh)(q − z) = sc·D + β·Q − z·(sc·C + G·β),   β = sh − 2sc,
// D = Σ c·q (int32 from the tensor cores, exact), Q = Σ q (per token), C = Σ c (per feature).
//
// Block: 128 tokens × 128 features, three warpgroups (384 threads), specialised:
//   - the producer (warpgroup 0, registers lowered by setmaxnreg) owns tile row t = thread:
//     per group of 128 k (one K step) it copies token row t of the activations (128 B,
//     cp.async) and feature row t's codes (32 B) into a ring slot, LEAD groups ahead; then it
//     sums Q of row t (dp4a), expands feature t's codes to digit bytes (15 ALU ops per 16
//     weights: 4 shift+mask planes and a 4×4 byte transpose of 8 PRMT), stores (sc, β),
//     fences the generic-proxy stores for the tensor cores and arrives on the slot's FULL
//     mbarrier. Tiles are 128-byte swizzled (16-byte chunk c of row r at c ^ (r & 7)), the
//     layout of wgmma's SWIZZLE_128B descriptors.
//   - two consumer warpgroups, 64 tokens each, compute their 64×128 as two halves of 64
//     features, X and Y, each 4 × wgmma.m64n64k32.s32.u8.u8 into 32 int32 registers (scale-d
//     = 0 on the first k32: no reset). The halves alternate so the tensor cores run one while
//     the threads fold the other: fold X(g) | Y(g) runs; issue X(g+1); fold Y(g) | X(g+1) runs;
//     release the slot (EMPTY mbarrier); issue Y(g+1). The fold: the int32 D (< 2^23) OR the
//     bits of 2^23 reads as the float 2^23 + D, so D costs a LOP and an FADD (no I2F); then
//     acc += sc·D + β·Q (2 FFMA). Every UNROLL K steps the tensor cores drain: ptxas cannot
//     follow asynchronous accumulators across a loop's back edge (it serialises every wgmma,
//     C7514), so none may be in flight there. (Two full 64×128 register sets would need 192
//     accumulator registers: ptxas serialised them for lack of registers.)
// The z term (E = Σ_g sc·C + G·β per feature, from the producer) is applied once at the end:
// y = s·(acc − z·E), fp16.
import { CODE_PACKINGS } from '../../../formats/ternary.ts';
import { Code, code, join } from '../../common/fragments.ts';
import { CUDA_ARCHS } from '../arch.ts';
import { defineKernel, type CudaKernel } from '../kernel.ts';
import type { GemmShape } from './gemm-a8.ts';

const G = 128;
const BM = 128;
const BN = 128;
/** Ring slots. */
const STAGES = 5;
/** Groups whose copies the producer keeps in flight ahead of the one it expands. */
const LEAD = 3;
/** K steps between drains of the tensor cores. */
const UNROLL = 4;
/** Two producer warpgroups (two threads a tile row), two consumer warpgroups. */
const PRODUCERS = 256;
const THREADS = PRODUCERS + 256;
/** setmaxnreg targets: PRODUCERS·PRODUCER_REGS + 256·CONSUMER_REGS ≤ 65536. */
const PRODUCER_REGS = 40;
const CONSUMER_REGS = 216;

/** Why a linear cannot use the wgmma prefill GEMM, or null. */
export function gemmWgmmaUnsupported(s: Pick<GemmShape, 'format' | 'k' | 'n' | 'arch'>): string | null {
  if (CUDA_ARCHS[s.arch].int8Mma !== 'wgmma.m64nNk32.s8') return `${s.arch} has no wgmma`;
  if (s.format.packing !== 'bit2' || s.format.group !== G) return `format ${s.format.id} is not bit2 with groups of ${G}`;
  if (s.k % G) return `K=${s.k} is not a multiple of ${G}`;
  if (s.n % BN) return `N=${s.n} is not a multiple of the tile width ${BN}`;
  return null;
}

export function gemmWgmmaKernelName(s: GemmShape): string {
  return `gemm_wg_${s.format.id}_n${s.n}_k${s.k}_${s.arch}`;
}

export function gemmWgmmaPlan(s: GemmShape) {
  const why = gemmWgmmaUnsupported(s);
  if (why) throw new Error(`CUDA wgmma prefill GEMM: ${why}`);
  const codeBytes = CODE_PACKINGS.bit2.bytesPerGroup(G); // 32
  const aOff = 0;
  const bOff = BM * G; // 128-byte rows
  const cOff = bOff + BN * G;
  const sbOff = cOff + BN * codeBytes; // (sc, β) fp32 per feature
  const qOff = sbOff + BN * 8; // Q fp32 per token
  const hOff = qOff + BM * 4; // the 4-byte words holding each feature's fp16 scale and shift
  const slotBytes = Math.ceil((hOff + BN * 8) / 1024) * 1024; // slots keep the 1024-byte swizzle alignment
  const eOff = STAGES * slotBytes;
  const barOff = eOff + BN * 4;
  const smemBytes = 1024 + barOff + 2 * STAGES * 8; // alignment slack + ring + E + mbarriers
  const arch = CUDA_ARCHS[s.arch];
  if (smemBytes > arch.maxSmemPerBlock) throw new Error(`CUDA wgmma prefill GEMM: ${smemBytes} B of shared memory exceed ${s.arch}'s ${arch.maxSmemPerBlock}`);
  if (PRODUCER_REGS * PRODUCERS + CONSUMER_REGS * 256 > 65536) throw new Error('CUDA wgmma prefill GEMM: setmaxnreg targets exceed the register file');
  return { codeBytes, aOff, bOff, cOff, sbOff, qOff, hOff, slotBytes, eOff, barOff, smemBytes, kt: s.k / G, rowBytes: (s.k / G) * codeBytes };
}

/** wgmma.m64n64k32 u8×u8 → s32 into the 32 registers `set[0..31]`; scale-d 0 overwrites. */
function wgmmaU8(set: string, accumulate: boolean, descA: Code, descB: Code): Code {
  const regs = Array.from({ length: 32 }, (_, i) => `%${i}`).join(', ');
  const outs = Array.from({ length: 32 }, (_, i) => `"+r"(${set}[${i}])`).join(', ');
  return new Code(`asm volatile("{\\n.reg .pred p;\\nsetp.ne.b32 p, ${accumulate ? 1 : 0}, 0;\\n"
      "wgmma.mma_async.sync.aligned.m64n64k32.s32.u8.u8 {${regs}}, %32, %33, p;\\n}\\n"
      : ${outs}
      : "l"(${descA.text}), "l"(${descB.text}));`);
}

/** Pins the registers of `set` at this point of the instruction stream: without it the
 *  compiler may move the fold's reads of an asynchronous accumulator above the wgmma wait
 *  (asm statements keep their order, plain register reads need not). */
function pin(set: string, count: number): Code {
  return new Code(`#pragma unroll
    for (int i = 0; i < ${count}; ++i) asm volatile("" : "+r"(${set}[i]) :: "memory");`);
}

export function gemmWgmmaKernel(s: GemmShape): CudaKernel {
  const p = gemmWgmmaPlan(s);
  const { bOff, cOff, sbOff, qOff, hOff, slotBytes, eOff, barOff, smemBytes, kt: KT, rowBytes, codeBytes: CB } = p;
  const K = s.k;
  const name = gemmWgmmaKernelName(s);
  const n = new Code(name);
  const prelude = code`__device__ __forceinline__ void ${n}_cp16(uint32_t dst, const void* src, bool full) {
  asm volatile("cp.async.cg.shared.global [%0], [%1], 16, %2;" :: "r"(dst), "l"(src), "r"(full ? 16 : 0) : "memory");
}
__device__ __forceinline__ void ${n}_cp4(uint32_t dst, const void* src) {
  asm volatile("cp.async.ca.shared.global [%0], [%1], 4;" :: "r"(dst), "l"(src) : "memory");
}
// SWIZZLE_128B K-major matrix descriptor: start address, LBO 1 (unused), SBO 1024 B (8 rows of 128 B)
__device__ __forceinline__ uint64_t ${n}_desc(uint32_t addr) {
  return (uint64_t)((addr & 0x3FFFFu) >> 4) | (1ull << 16) | ((uint64_t)(1024 >> 4) << 32) | (1ull << 62);
}
__device__ __forceinline__ void ${n}_bar_init(uint32_t bar, uint32_t count) {
  asm volatile("mbarrier.init.shared::cta.b64 [%0], %1;" :: "r"(bar), "r"(count) : "memory");
}
__device__ __forceinline__ void ${n}_bar_arrive(uint32_t bar) {
  asm volatile("{\\n.reg .b64 st;\\nmbarrier.arrive.shared::cta.b64 st, [%0];\\n}" :: "r"(bar) : "memory");
}
__device__ __forceinline__ void ${n}_bar_wait(uint32_t bar, uint32_t parity) {
  uint32_t done = 0;
  while (!done)
    asm volatile("{\\n.reg .pred p;\\nmbarrier.try_wait.parity.shared::cta.b64 p, [%1], %2;\\nselp.u32 %0, 1, 0, p;\\n}" : "=r"(done) : "r"(bar), "r"(parity) : "memory");
}
// 16 bit2 codes (byte b holds codes 4b…4b+3, code j at bits 2j) → 16 digit bytes in k order:
// planes p_j = (w >> 2j) & 0x03030303 hold code 4b + j in byte b; a 4×4 byte transpose gives
// word b = codes 4b…4b+3.
__device__ __forceinline__ uint4 ${n}_expand(uint32_t w) {
  const uint32_t p0 = w & 0x03030303u, p1 = (w >> 2) & 0x03030303u, p2 = (w >> 4) & 0x03030303u, p3 = (w >> 6) & 0x03030303u;
  const uint32_t t0 = __byte_perm(p0, p1, 0x5140), t1 = __byte_perm(p0, p1, 0x7362);
  const uint32_t t2 = __byte_perm(p2, p3, 0x5140), t3 = __byte_perm(p2, p3, 0x7362);
  return make_uint4(__byte_perm(t0, t2, 0x5410), __byte_perm(t0, t2, 0x7632), __byte_perm(t1, t3, 0x5410), __byte_perm(t1, t3, 0x7632));
}
`;
  const slot = (g: string) => new Code(`((${g}) % ${STAGES})`);
  const parity = (g: string) => new Code(`(((${g}) / ${STAGES}) & 1)`);
  // ---- consumer fragments ----
  // Issue the 4 k32 steps of half `half` (features 64·half …) of group `g` into `set`.
  const issue = (set: string, half: number, g: string) =>
    join(
      [
        code`{
      const uint32_t s0 = base + (uint32_t)(${slot(g)} * ${slotBytes});
      const uint64_t da = ${n}_desc(s0 + (uint32_t)(wg * ${(BM / 2) * G})), db = ${n}_desc(s0 + ${bOff + half * 64 * G}u);
      ${pin(set, 32)}
      asm volatile("wgmma.fence.sync.aligned;" ::: "memory");`,
        ...[0, 1, 2, 3].map((st) => wgmmaU8(set, st > 0, new Code(`da + ${2 * st}`), new Code(`db + ${2 * st}`))),
        code`      asm volatile("wgmma.commit_group.sync.aligned;" ::: "memory");
    }`,
      ],
      '\n      ',
    );
  // Fold `set` (half `half` of group g) into acc.
  const fold = (setName: string, half: number) => {
    const set = new Code(setName);
    return code`{
      ${pin(setName, 32)}
      const float4* sb4 = reinterpret_cast<const float4*>(sm + ${slot('g')} * ${slotBytes} + ${sbOff});
      #pragma unroll
      for (int j = 0; j < 8; ++j) {
        const float4 f = sb4[${half * 32} + 4 * j + tq]; // (sc, β) of features 64·half + 8j + 2tq, + 1
        acc[${half * 32} + 4 * j + 0] = fmaf(f.x, __int_as_float(${set}[4 * j + 0] | 0x4B000000) - 8388608.f, fmaf(f.y, Qa, acc[${half * 32} + 4 * j + 0]));
        acc[${half * 32} + 4 * j + 1] = fmaf(f.z, __int_as_float(${set}[4 * j + 1] | 0x4B000000) - 8388608.f, fmaf(f.w, Qa, acc[${half * 32} + 4 * j + 1]));
        acc[${half * 32} + 4 * j + 2] = fmaf(f.x, __int_as_float(${set}[4 * j + 2] | 0x4B000000) - 8388608.f, fmaf(f.y, Qb, acc[${half * 32} + 4 * j + 2]));
        acc[${half * 32} + 4 * j + 3] = fmaf(f.z, __int_as_float(${set}[4 * j + 3] | 0x4B000000) - 8388608.f, fmaf(f.w, Qb, acc[${half * 32} + 4 * j + 3]));
      }
    }`;
  };
  // One K step g (X(g) and Y(g) in flight); a block's last step issues nothing and drains.
  const step = (last: boolean) => code`{
    const float* sQ = reinterpret_cast<const float*>(sm + ${slot('g')} * ${slotBytes} + ${qOff});
    const float Qa = sQ[r0], Qb = sQ[r0 + 8];
    asm volatile("wgmma.wait_group.sync.aligned 1;" ::: "memory");
    ${fold('dx', 0)}
    ${last ? code`asm volatile("wgmma.wait_group.sync.aligned 0;" ::: "memory");` : code`${n}_bar_wait(barFull + 8 * ${slot('g + 1')}, ${parity('g + 1')});
    ${issue('dx', 0, 'g + 1')}
    asm volatile("wgmma.wait_group.sync.aligned 1;" ::: "memory");`}
    ${fold('dy', 1)}
    ${n}_bar_arrive(barEmpty + 8 * ${slot('g')});
    ${last ? code`` : issue('dy', 1, 'g + 1')}
  }`;
  const block = (count: number) =>
    join(
      [
        code`${n}_bar_wait(barFull + 8 * ${slot('g0')}, ${parity('g0')});
      ${issue('dx', 0, 'g0')}
      ${issue('dy', 1, 'g0')}`,
        ...Array.from(
          { length: count },
          (_, u) => code`{
        const int g = g0 + ${u};
        ${step(u === count - 1)}
      }`,
        ),
      ],
      '\n      ',
    );
  const body = code`  extern __shared__ __align__(1024) unsigned char smem_raw[];
  const uint32_t raw = (uint32_t)__cvta_generic_to_shared(smem_raw);
  const uint32_t base = (raw + 1023u) & ~1023u; // swizzled tiles need 1024-byte alignment
  unsigned char* sm = smem_raw + (base - raw);
  const uint32_t barFull = base + ${barOff}u, barEmpty = barFull + ${STAGES * 8}u;
  float* sE = reinterpret_cast<float*>(sm + ${eOff});
  const int tid = threadIdx.x, warp = tid >> 5, lane = tid & 31;
  const int m0 = blockIdx.y * ${BM}, n0 = blockIdx.x * ${BN};
  if (tid == 0) {
    #pragma unroll
    for (int i = 0; i < ${STAGES}; ++i) {
      ${n}_bar_init(barFull + 8 * i, ${PRODUCERS}); // the producers' threads
      ${n}_bar_init(barEmpty + 8 * i, 256); // the consumers' threads
    }
  }
  __syncthreads();
  if (warp < ${PRODUCERS / 32}) {
    // ---- producers: tile row t (token m0 + t, feature n0 + t), half h of its chunks ----
    asm volatile("setmaxnreg.dec.sync.aligned.u32 ${PRODUCER_REGS};");
    const int t = tid >> 1, h = tid & 1;
    const bool rowOk = m0 + t < T;
    const uint8_t* arow = a + (size_t)(rowOk ? m0 + t : 0) * ${K} + h * 64;
    const uint8_t* crow = codes + (size_t)(n0 + t) * ${rowBytes} + h * 16;
    const size_t srow = (size_t)(n0 + t) * ${KT};
    auto load = [&](int j) {
      if (j >= ${STAGES}) ${n}_bar_wait(barEmpty + 8 * ${slot('j')}, ${parity('j')} ^ 1);
      const uint32_t s0 = base + (uint32_t)(${slot('j')} * ${slotBytes});
      #pragma unroll
      for (int c = 0; c < 4; ++c) ${n}_cp16(s0 + t * ${G} + (((4 * h + c) ^ (t & 7)) << 4), arow + j * ${G} + c * 16, rowOk);
      ${n}_cp16(s0 + ${cOff} + t * ${CB} + h * 16, crow + j * ${CB}, true);
      // the aligned 4-byte word holding this group's fp16 scale (h = 0) or shift (h = 1)
      ${s.format.shift ? code`${n}_cp4(s0 + ${hOff} + t * 8 + h * 4, reinterpret_cast<const char*>(h ? shifts : scales) + ((srow + j) * 2 & ~(size_t)3));` : code`if (h == 0) ${n}_cp4(s0 + ${hOff} + t * 8, reinterpret_cast<const char*>(scales) + ((srow + j) * 2 & ~(size_t)3));`}
    };
    float E = 0.f;
    #pragma unroll
    for (int j = 0; j < ${LEAD}; ++j) {
      if (j < ${KT}) load(j);
      asm volatile("cp.async.commit_group;" ::: "memory");
    }
    #pragma unroll 1
    for (int j = 0; j < ${KT}; ++j) {
      if (j + ${LEAD} < ${KT}) load(j + ${LEAD});
      asm volatile("cp.async.commit_group;" ::: "memory");
      asm volatile("cp.async.wait_group ${LEAD};" ::: "memory");
      unsigned char* s0 = sm + ${slot('j')} * ${slotBytes};
      unsigned q0 = 0u, q1 = 0u;
      #pragma unroll
      for (int c = 0; c < 4; ++c) {
        const uint4 x = *reinterpret_cast<const uint4*>(s0 + t * ${G} + (((4 * h + c) ^ (t & 7)) << 4));
        q0 = __dp4a(x.x, 0x01010101u, __dp4a(x.y, 0x01010101u, q0));
        q1 = __dp4a(x.z, 0x01010101u, __dp4a(x.w, 0x01010101u, q1));
      }
      unsigned q = q0 + q1;
      q += __shfl_xor_sync(0xffffffffu, q, 1);
      const uint4 w = *reinterpret_cast<const uint4*>(s0 + ${cOff} + t * ${CB} + h * 16);
      const uint32_t ws[4] = {w.x, w.y, w.z, w.w};
      unsigned csum = 0u;
      #pragma unroll
      for (int i = 0; i < 4; ++i) {
        const uint4 d = ${n}_expand(ws[i]);
        const int c = h * 4 + i;
        *reinterpret_cast<uint4*>(s0 + ${bOff} + t * ${G} + ((c ^ (t & 7)) << 4)) = d;
        csum = __dp4a(d.x + d.y + d.z + d.w, 0x01010101u, csum); // ≤ 12 a byte: no carries
      }
      csum += __shfl_xor_sync(0xffffffffu, csum, 1);
      if (h == 0) {
        const uint2 hw = *reinterpret_cast<const uint2*>(s0 + ${hOff} + t * 8);
        const int hi = (int)((srow + j) & 1) * 16; // the fp16 value's half of its word
        const float sc = __half2float(__ushort_as_half((unsigned short)(hw.x >> hi)));
        const float beta = ${s.format.shift ? code`__half2float(__ushort_as_half((unsigned short)(hw.y >> hi)))` : code`0.f`} - 2.f * sc;
        reinterpret_cast<float*>(s0 + ${qOff})[t] = (float)q;
        reinterpret_cast<float2*>(s0 + ${sbOff})[t] = make_float2(sc, beta);
        E += sc * (float)csum + ${G}.f * beta;
      }
      asm volatile("fence.proxy.async.shared::cta;" ::: "memory");
      ${n}_bar_arrive(barFull + 8 * ${slot('j')});
    }
    if (h == 0) sE[t] = E;
    asm volatile("bar.sync 1, ${THREADS};" ::: "memory");
  } else {
    // ---- consumers: warpgroup wg owns tokens 64·wg … 64·wg + 63 of the tile ----
    asm volatile("setmaxnreg.inc.sync.aligned.u32 ${CONSUMER_REGS};");
    const int cw = warp - ${PRODUCERS / 32}, wg = cw >> 2, tq = lane & 3;
    const int r0 = cw * 16 + (lane >> 2); // this thread's accumulator rows r0 and r0 + 8
    float acc[64];
    int dx[32], dy[32];
    #pragma unroll
    for (int i = 0; i < 64; ++i) acc[i] = 0.f;
    #pragma unroll
    for (int i = 0; i < 32; ++i) dx[i] = dy[i] = 0; // defined before the first wgmma (scale-d 0 ignores them)
    #pragma unroll 1
    for (int g0 = 0; g0 < ${KT - (KT % UNROLL)}; g0 += ${UNROLL}) {
      ${block(UNROLL)}
    }
    ${KT % UNROLL ? code`{
      const int g0 = ${KT - (KT % UNROLL)};
      ${block(KT % UNROLL)}
    }` : code``}
    asm volatile("bar.sync 1, ${THREADS};" ::: "memory");
    // y = s·(acc − z·E), fp16
    #pragma unroll
    for (int r = 0; r < 2; ++r) {
      const int row = m0 + r0 + 8 * r;
      if (row < T) {
        const float sq = ap[2 * row], zq = ap[2 * row + 1];
        #pragma unroll
        for (int j = 0; j < 16; ++j) {
          const int col = 8 * j + 2 * tq;
          const __half2 v = __floats2half2_rn(sq * (acc[4 * j + 2 * r] - zq * sE[col]), sq * (acc[4 * j + 2 * r + 1] - zq * sE[col + 1]));
          *reinterpret_cast<__half2*>(y + (size_t)row * ${s.n} + n0 + col) = v;
        }
      }
    }
  }`;
  return defineKernel({
    name,
    params: { format: s.format.id, n: s.n, k: K, arch: s.arch, act: 'u8', bm: BM, bn: BN, stages: STAGES, lead: LEAD, unroll: UNROLL, mma: 'wgmma.m64n64k32.u8.u8', specialised: true },
    args: [
      { name: 'a', type: 'const uint8_t*' },
      { name: 'ap', type: 'const float*' },
      { name: 'codes', type: 'const uint8_t*' },
      { name: 'scales', type: 'const __half*' },
      { name: 'shifts', type: 'const __half*' },
      { name: 'y', type: '__half*' },
      { name: 'T', type: 'int' },
    ],
    block: THREADS,
    minBlocksPerSm: 1,
    grid: [code`${s.n / BN}`, code`(T + ${BM - 1}) / ${BM}`, code`1`],
    smemBytes,
    prelude,
    body,
  });
}
