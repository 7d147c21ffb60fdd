// Prefill GEMM (M ≥ 64 tokens) on Hopper's warpgroup tensor cores (wgmma, sm_90a): the same
// maths as gemm-a8.ts (u8 activation codes q with per-token (s, z); bit2 weight digits
// c = t + 2 ∈ {1, 2, 3} in groups of G = 128 with fp16 scale sc and shift sh):
//   Σ_{k∈g} (sc·t + sh)(q − z) = sc·D + β·Q − z·(sc·C + G·β),   β = sh − 2sc,
// D = Σ c·q (int32 from the tensor cores, exact), Q = Σ q (per token), C = Σ c (per feature).
//
// Block: 128 tokens × 128 features, two warpgroups of 64 tokens each (256 threads). Per group
// of 128 k (one 128-byte row of each tile, so one group is one K step):
//   - cp.async brings the activation tile (128 rows × 128 B) and the packed codes (128 × 32 B)
//     into a ring of STAGES slots; the activation rows land 128-byte swizzled (16-byte chunk
//     c of row r at chunk c ^ (r & 7)), the layout wgmma's SWIZZLE_128B descriptors read;
//   - all threads expand the codes of the next group to digit bytes into the slot's B tile
//     (same swizzle; 15 ALU ops per 16 weights: 4 shift+mask planes, then a 4×4 byte
//     transpose with 8 PRMT) and store (sc, β) per feature, then fence.proxy.async so the
//     tensor cores see the generic-proxy stores;
//   - each warpgroup computes its 64×128 as two halves of 64 features, X and Y, each
//     4 × wgmma.m64n64k32.s32.u8.u8 into its own 32 int32 registers (scale-d = 0 on the first
//     k32, so no reset). The halves alternate so that the tensor cores run one while the
//     threads fold the other: fold X(g) | Y(g) runs; issue X(g+1); fold Y(g) | X(g+1) runs;
//     issue Y(g+1). (Two full 64×128 sets would need 192 accumulator registers and ptxas
//     serialises the wgmmas for lack of registers.)
//   - the fold: the int32 D (< 2^23) OR the bits of 2^23 reads as the float 2^23 + D, so D
//     costs one LOP + one FADD (no I2F); then acc += sc·D + β·Q (2 FFMA). Q comes from the
//     activation tile (dp4a, 4 lanes a row).
// The z term (E = Σ_g sc·C + G·β per feature) is applied once at the end: y = s·(acc − z·E).
import { CODE_PACKINGS } from '../../../formats/ternary.ts';
import { Code, code, join } from '../../common/fragments.ts';
import { CUDA_ARCHS } from '../arch.ts';
import { defineKernel, type CudaKernel } from '../kernel.ts';
import { gemmArgs, gemmShapeUnsupported, gemmStore, GEMM_GROUP as G, type GemmShape } from './gemm.ts';

const BM = 128;
const BN = 128;
const STAGES = 4;
const THREADS = 256;
/** K steps between drains of the tensor cores (see `step`). */
const UNROLL = 4;

/** Why a linear cannot use the wgmma prefill GEMM, or null. */
export function gemmWgmmaUnsupported(s: Pick<GemmShape, 'format' | 'k' | 'n' | 'arch'>): string | null {
  if (CUDA_ARCHS[s.arch].int8Mma !== 'wgmma.m64nNk32.s8') return `${s.arch} has no wgmma`;
  return gemmShapeUnsupported(s, BN, 'the tile width');
}

function gemmWgmmaKernelName(s: GemmShape): string {
  return `gemm_wg_${s.format.id}_n${s.n}_k${s.k}_${s.arch}${s.out === 'f32' ? '_f32' : ''}`;
}

export function gemmWgmmaPlan(s: GemmShape) {
  const why = gemmWgmmaUnsupported(s);
  if (why) throw new Error(`CUDA wgmma prefill GEMM: ${why}`);
  const codeBytes = CODE_PACKINGS.bit2.bytesPerGroup(G); // 32
  const aBytes = BM * G; // 128-byte rows
  const bBytes = BN * G;
  const cBytes = BN * codeBytes;
  const sbBytes = BN * 8; // (sc, β) fp32 per feature
  const slotBytes = aBytes + bBytes + cBytes + sbBytes;
  if (slotBytes % 1024) throw new Error('CUDA wgmma prefill GEMM: slot size must keep the 1024-byte swizzle alignment');
  const smemBytes = 1024 + STAGES * slotBytes + BN * 4; // alignment slack + ring + E
  const arch = CUDA_ARCHS[s.arch];
  if (smemBytes > arch.maxSmemPerBlock) throw new Error(`CUDA wgmma prefill GEMM: ${smemBytes} B of shared memory exceed ${s.arch}'s ${arch.maxSmemPerBlock}`);
  return { codeBytes, aBytes, bBytes, cBytes, sbBytes, slotBytes, smemBytes, kt: s.k / G, rowBytes: (s.k / G) * codeBytes };
}

/** Device helpers of the wgmma GEMMs, named after the kernel `n`: `n_cp16` (a 16-byte
 *  cp.async, zero-filling when !full) and `n_desc` (the SWIZZLE_128B K-major descriptor of a
 *  tile of 128-byte rows). */
export function wgmmaHelpers(n: Code): Code {
  return code`__device__ __forceinline__ void ${n}_cp16(uint32_t dst, const void* src, bool full) {
  asm volatile("cp.async.cg.shared.global [%0], [%1], 16, %2;" :: "r"(dst), "l"(src), "r"(full ? 16 : 0));
}
__device__ __forceinline__ void ${n}_cp16f(uint32_t dst, const void* src) {
  asm volatile("cp.async.cg.shared.global [%0], [%1], 16;" :: "r"(dst), "l"(src));
}
// SWIZZLE_128B K-major matrix descriptor: start address, LBO 1 (unused), SBO 1024 B (8 rows of 128 B)
__device__ __forceinline__ uint64_t ${n}_desc(uint32_t addr) {
  return (uint64_t)((addr & 0x3FFFFu) >> 4) | (1ull << 16) | ((uint64_t)(1024 >> 4) << 32) | (1ull << 62);
}`;
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
 *  compiler may move the fold's reads of an asynchronous accumulator across the wgmma wait
 *  (the asm statements order each other, plain register reads they do not), and ptxas then
 *  serialises every wgmma (C7514). */
export function pin(set: string, count: number): Code {
  return new Code(`#pragma unroll
    for (int i = 0; i < ${count}; ++i) asm volatile("" : "+r"(${set}[i]) :: "memory");`);
}

/** \`load_stage(slot, grp)\` of the wgmma GEMMs: cp.async of group grp's activation rows
 *  m0 … m0 + rows − 1 (128-byte swizzled, zero-filled past T) and of the tile's packed codes
 *  (feature er = tid / 2, code bytes 16·eh …, eh = tid % 2) into the slot at cOff. Uses base,
 *  tid, m0, n0, er and eh of the block; ${THREADS} threads. */
export function wgmmaLoadStage(n: Code, p: { rows: number; k: number; slotBytes: number; cOff: number; codeBytes: number; rowBytes: number; oneAddress?: boolean }): Code {
  const { rows, k: K, slotBytes, cOff: C_OFF, codeBytes: CB, rowBytes } = p;
  const rowsPerPass = THREADS / 8;
  if (!p.oneAddress)
    return code`auto load_stage = [&](int slot, int grp) {
    const uint32_t sa = base + (uint32_t)(slot * ${slotBytes});
    #pragma unroll
    for (int u = 0; u < ${rows / rowsPerPass}; ++u) {
      const int i = tid + u * ${THREADS}, r = i >> 3, c = i & 7, row = m0 + r;
      const bool ok = row < T;
      ${n}_cp16(sa + r * ${G} + ((c ^ (r & 7)) << 4), a + (size_t)(ok ? row : 0) * ${K} + grp * ${G} + c * 16, ok);
    }
    ${n}_cp16(sa + ${C_OFF} + er * ${CB} + eh * 16, codes + (size_t)(n0 + er) * ${rowBytes} + grp * ${CB} + eh * 16, true);
  };`;
  // oneAddress: thread tid copies chunk c = tid & 7 of rows lr + 32·u of the activation tile, and
  // its swizzled place (c ^ (row & 7)) is the same for every u, so the destinations and, in whole
  // tiles, the sources are one address each plus a constant offset a copy (immediates in the
  // copies); tiles past the last token check each row. The decoupled variants take it; the
  // block-synchronised ones keep the per-copy addresses, which measured faster for them
  // (docs/performance.md, prefill GEMM).
  return code`const int lr = tid >> 3, lc = tid & 7;
  const uint32_t ldst = (uint32_t)(lr * ${G} + ((lc ^ (lr & 7)) << 4));
  const size_t lsrc = (size_t)(m0 + lr) * ${K} + lc * 16; // row m0 + lr, chunk lc
  const bool lfull = m0 + ${rows} <= T;
  const uint8_t* const csrc = codes + (size_t)(n0 + er) * ${rowBytes} + eh * 16;
  auto load_stage = [&](int slot, int grp) {
    const uint32_t sa = base + (uint32_t)(slot * ${slotBytes});
    if (lfull) {
      const uint8_t* const src = a + lsrc + grp * ${G};
      #pragma unroll
      for (int u = 0; u < ${rows / rowsPerPass}; ++u) ${n}_cp16f(sa + ldst + u * ${rowsPerPass * G}, src + (size_t)u * ${rowsPerPass * K});
    } else {
      #pragma unroll
      for (int u = 0; u < ${rows / rowsPerPass}; ++u) {
        const bool ok = m0 + lr + ${rowsPerPass} * u < T;
        ${n}_cp16(sa + ldst + u * ${rowsPerPass * G}, ok ? a + lsrc + grp * ${G} + (size_t)u * ${rowsPerPass * K} : a, ok);
      }
    }
    ${n}_cp16f(sa + ${C_OFF} + er * ${CB} + eh * 16, csrc + grp * ${CB});
  };`;
}

/** The opening of this kernel's block of ${BM} tokens × ${BN} features (${THREADS} threads): the
 *  1024-byte aligned shared ring \`sm\` at \`base\`, the thread's indices (warpgroup wg,
 *  accumulator rows r0 and r0 + 8, expansion feature er and code half eh) and load_stage. */
function wgmmaBlockSetup(n: Code, p: { k: number; kt: number; slotBytes: number; cOff: number; codeBytes: number; rowBytes: number }): Code {
  return code`  extern __shared__ __align__(1024) unsigned char smem_raw[];
  const uint32_t raw = (uint32_t)__cvta_generic_to_shared(smem_raw);
  const uint32_t base = (raw + 1023u) & ~1023u; // swizzled tiles need 1024-byte alignment
  unsigned char* sm = smem_raw + (base - raw);
  const int tid = threadIdx.x, warp = tid >> 5, lane = tid & 31, tq = lane & 3;
  const int wg = warp >> 2;              // warpgroup: tokens 64·wg … 64·wg + 63 of the tile
  const int r0 = warp * 16 + (lane >> 2); // this thread's accumulator rows r0 and r0 + 8
  const int m0 = blockIdx.y * ${BM}, n0 = blockIdx.x * ${BN};
  const int er = tid >> 1, eh = tid & 1;  // expansion: feature er of the tile, code bytes 16·eh…
  const size_t colScale = (size_t)(n0 + er) * ${p.kt};
  ${wgmmaLoadStage(n, { rows: BM, ...p })}`;
}

export function gemmWgmmaKernel(s: GemmShape): CudaKernel {
  const p = gemmWgmmaPlan(s);
  const { aBytes, bBytes, cBytes, slotBytes, smemBytes, kt: KT, rowBytes, codeBytes: CB } = p;
  const K = s.k;
  const name = gemmWgmmaKernelName(s);
  const n = new Code(name);
  const B_OFF = aBytes;
  const C_OFF = aBytes + bBytes;
  const SB_OFF = aBytes + bBytes + cBytes;
  const E_OFF = STAGES * slotBytes;
  const prelude = code`${wgmmaHelpers(n)}
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
  // Issue the 4 k32 steps of half `half` (features 64·half …) of slot `slotExpr` into `set`.
  const issue = (set: string, half: number, slotExpr: string) =>
    join(
      [
        code`{
      const uint32_t s0 = base + (uint32_t)((${new Code(slotExpr)}) * ${slotBytes});
      const uint64_t da = ${n}_desc(s0 + (uint32_t)(wg * ${(BM / 2) * G})), db = ${n}_desc(s0 + ${B_OFF + half * 64 * G}u);
      ${pin(set, 32)}
      asm volatile("wgmma.fence.sync.aligned;" ::: "memory");`,
        ...[0, 1, 2, 3].map((st) => wgmmaU8(set, st > 0, new Code(`da + ${2 * st}`), new Code(`db + ${2 * st}`))),
        code`      asm volatile("wgmma.commit_group.sync.aligned;" ::: "memory");
    }`,
      ],
      '\n      ',
    );
  // Q of rows r0 and r0 + 8 for slot g % STAGES (from its activation tile)
  const qsum = code`unsigned qa = 0u, qb = 0u;
    {
      const unsigned char* sA = sm + (g % ${STAGES}) * ${slotBytes};
      #pragma unroll
      for (int h = 0; h < 2; ++h) {
        const int c = 2 * tq + h;
        const uint4 xa = *reinterpret_cast<const uint4*>(sA + r0 * ${G} + ((c ^ (r0 & 7)) << 4));
        const uint4 xb = *reinterpret_cast<const uint4*>(sA + (r0 + 8) * ${G} + ((c ^ ((r0 + 8) & 7)) << 4));
        qa = __dp4a(xa.x, 0x01010101u, __dp4a(xa.y, 0x01010101u, __dp4a(xa.z, 0x01010101u, __dp4a(xa.w, 0x01010101u, qa))));
        qb = __dp4a(xb.x, 0x01010101u, __dp4a(xb.y, 0x01010101u, __dp4a(xb.z, 0x01010101u, __dp4a(xb.w, 0x01010101u, qb))));
      }
      qa += __shfl_xor_sync(0xffffffffu, qa, 1);
      qa += __shfl_xor_sync(0xffffffffu, qa, 2);
      qb += __shfl_xor_sync(0xffffffffu, qb, 1);
      qb += __shfl_xor_sync(0xffffffffu, qb, 2);
    }
    const float Qa = (float)qa, Qb = (float)qb;`;
  // Fold `set` (half `half` of group g) into acc.
  const fold = (setName: string, half: number) => {
    const set = new Code(setName);
    return code`{
      const float4* sb4 = reinterpret_cast<const float4*>(sm + (g % ${STAGES}) * ${slotBytes} + ${SB_OFF});
      #pragma unroll
      for (int j = 0; j < 8; ++j) {
        const float4 f = sb4[${half * 32} + 4 * j + tq]; // (sc, β) of features 64·half + 8j + 2tq, + 1
        accum[${half * 32} + 4 * j + 0] = fmaf(f.x, __int_as_float(${set}[4 * j + 0] | 0x4B000000) - 8388608.f, fmaf(f.y, Qa, accum[${half * 32} + 4 * j + 0]));
        accum[${half * 32} + 4 * j + 1] = fmaf(f.z, __int_as_float(${set}[4 * j + 1] | 0x4B000000) - 8388608.f, fmaf(f.w, Qa, accum[${half * 32} + 4 * j + 1]));
        accum[${half * 32} + 4 * j + 2] = fmaf(f.x, __int_as_float(${set}[4 * j + 2] | 0x4B000000) - 8388608.f, fmaf(f.y, Qb, accum[${half * 32} + 4 * j + 2]));
        accum[${half * 32} + 4 * j + 3] = fmaf(f.z, __int_as_float(${set}[4 * j + 3] | 0x4B000000) - 8388608.f, fmaf(f.w, Qb, accum[${half * 32} + 4 * j + 3]));
      }
    }`;
  };
  // One K step g (X(g) and Y(g) in flight): tiles of g + 1 landed → load group
  // g + STAGES − 1 → expand g + 1 → fold X(g) while Y(g) runs → issue X(g + 1) → fold Y(g)
  // while X(g + 1) runs → issue Y(g + 1). A block's last step issues nothing and drains the
  // tensor cores: ptxas cannot follow asynchronous accumulators across a loop's back edge
  // (it then serialises every wgmma, C7514), so none may be in flight there.
  const step = (last: boolean) => code`{
    asm volatile("cp.async.wait_group ${new Code(String(STAGES - 3))};" ::: "memory");
    __syncthreads();
    if (g + ${STAGES - 1} < ${KT}) load_stage((g + ${STAGES - 1}) % ${STAGES}, g + ${STAGES - 1});
    asm volatile("cp.async.commit_group;" ::: "memory");
    if (g + 1 < ${KT}) {
      expand_stage((g + 1) % ${STAGES}, scN, shN);
      if (g + 2 < ${KT} && eh == 0) { scN = __half2float(scales[colScale + g + 2]); shN = ${shiftLoad(s.format.shift, 'g + 2')}; }
      asm volatile("fence.proxy.async.shared::cta;" ::: "memory");
    }
    ${qsum}
    asm volatile("wgmma.wait_group.sync.aligned 1;" ::: "memory");
    ${pin('dx', 32)}
    ${fold('dx', 0)}
    ${last ? code`asm volatile("wgmma.wait_group.sync.aligned 0;" ::: "memory");` : code`__syncthreads();
    ${issue('dx', 0, '(g + 1) % ' + STAGES)}
    asm volatile("wgmma.wait_group.sync.aligned 1;" ::: "memory");`}
    ${pin('dy', 32)}
    ${fold('dy', 1)}
    ${last ? code`` : issue('dy', 1, '(g + 1) % ' + STAGES)}
  }`;
  // A block of `count` K steps from g0: group g0's tiles are expanded (barrier), X(g0) and
  // Y(g0) issued, then the steps; the last drains.
  const block = (count: number) =>
    join([
      code`__syncthreads();
    ${issue('dx', 0, 'g0 % ' + STAGES)}
    ${issue('dy', 1, 'g0 % ' + STAGES)}`,
      ...Array.from({ length: count }, (_, u) => code`{
      const int g = g0 + ${u};
      ${step(u === count - 1)}
    }`),
    ], '\n    ');
  const body = code`${wgmmaBlockSetup(n, { k: K, kt: KT, slotBytes, cOff: C_OFF, codeBytes: CB, rowBytes })}
  float Eacc = 0.f;
  auto expand_stage = [&](int slot, float sc, float sh) {
    unsigned char* s0 = sm + slot * ${slotBytes};
    const uint4 w = *reinterpret_cast<const uint4*>(s0 + ${C_OFF} + er * ${CB} + eh * 16);
    const uint32_t ws[4] = {w.x, w.y, w.z, w.w};
    unsigned csum = 0u;
    #pragma unroll
    for (int i = 0; i < 4; ++i) {
      const uint4 d = ${n}_expand(ws[i]);
      const int c = eh * 4 + i;
      *reinterpret_cast<uint4*>(s0 + ${B_OFF} + er * ${G} + ((c ^ (er & 7)) << 4)) = d;
      csum = __dp4a(d.x + d.y + d.z + d.w, 0x01010101u, csum); // ≤ 12 a byte: no carries
    }
    csum += __shfl_xor_sync(0xffffffffu, csum, 1);
    if (eh == 0) {
      const float beta = sh - 2.f * sc;
      *reinterpret_cast<float2*>(s0 + ${SB_OFF} + er * 8) = make_float2(sc, beta);
      Eacc += sc * (float)csum + ${G}.f * beta;
    }
  };
  float accum[64];
  int dx[32], dy[32];
  #pragma unroll
  for (int i = 0; i < 64; ++i) accum[i] = 0.f;
  #pragma unroll
  for (int i = 0; i < 32; ++i) dx[i] = dy[i] = 0; // defined before the first wgmma (scale-d 0 ignores them)
  // prologue: groups 0 … STAGES − 2 in flight, group 0 expanded
  #pragma unroll
  for (int st = 0; st < ${STAGES - 1}; ++st) {
    if (st < ${KT}) load_stage(st, st);
    asm volatile("cp.async.commit_group;" ::: "memory");
  }
  float scN = 0.f, shN = 0.f;
  {
    const float sc0 = eh == 0 ? __half2float(scales[colScale]) : 0.f;
    const float sh0 = eh == 0 ? ${shiftLoad(s.format.shift, '0')} : 0.f;
    if (${KT} > 1 && eh == 0) { scN = __half2float(scales[colScale + 1]); shN = ${shiftLoad(s.format.shift, '1')}; }
    asm volatile("cp.async.wait_group ${new Code(String(STAGES - 2))};" ::: "memory");
    __syncthreads();
    expand_stage(0, sc0, sh0);
    asm volatile("fence.proxy.async.shared::cta;" ::: "memory");
  }
  // blocks of ${UNROLL} K steps, then the remaining ${KT % UNROLL}
  #pragma unroll 1
  for (int g0 = 0; g0 < ${KT - (KT % UNROLL)}; g0 += ${UNROLL}) {
    ${block(UNROLL)}
  }
  ${KT % UNROLL ? code`{
    const int g0 = ${KT - (KT % UNROLL)};
    ${block(KT % UNROLL)}
  }` : code``}
  // y = s·(acc − z·E)
  float* sE = reinterpret_cast<float*>(sm + ${E_OFF});
  if (eh == 0) sE[er] = Eacc;
  __syncthreads();
  #pragma unroll
  for (int r = 0; r < 2; ++r) {
    const int row = m0 + r0 + 8 * r;
    if (row < T) {
      const float sq = ap[2 * row], zq = ap[2 * row + 1];
      #pragma unroll
      for (int j = 0; j < 16; ++j) {
        const int col = 8 * j + 2 * tq;
        ${gemmStore(s, code`row`, code`n0 + col`, code`sq * (accum[4 * j + 2 * r] - zq * sE[col])`, code`sq * (accum[4 * j + 2 * r + 1] - zq * sE[col + 1])`)}
      }
    }
  }`;
  return defineKernel({
    name,
    params: { format: s.format.id, n: s.n, k: K, arch: s.arch, act: 'u8', out: s.out ?? 'f16', bm: BM, bn: BN, stages: STAGES, unroll: UNROLL, mma: 'wgmma.m64n64k32.u8.u8' },
    args: gemmArgs(s),
    block: THREADS,
    grid: [code`${s.n / BN}`, code`(T + ${BM - 1}) / ${BM}`, code`1`],
    smemBytes,
    prelude,
    body,
  });
}

function shiftLoad(shift: boolean, grp: string): Code {
  return shift ? new Code(`__half2float(shifts[colScale + ${grp}])`) : new Code('0.f');
}
