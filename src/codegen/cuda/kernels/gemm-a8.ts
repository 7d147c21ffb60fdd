// Prefill GEMM (M ≥ 64 tokens) on int8 tensor cores: activations are the act kernel's
// per-token codes q ∈ [0, 255] with (s, z), x̂ = (q − z)·s (src/quant/act-quant.ts), weights
// bit2 codes (digit c = t + 2 ∈ {1, 2, 3}) in groups of G = 128 with fp16 scale and shift.
// The digits go to the tensor cores as they are (u8), so no subtraction is spent on them:
// per group g with D = Σ_{k∈g} c·q (one int32 accumulator per group, mma.sync m16n8k32
// u8×u8), Q = Σ_{k∈g} q (per token) and C = Σ_{k∈g} c (per feature),
//   Σ_{k∈g} (sc·t + sh)(q − z) = sc·D + (sh − 2sc)·Q − z·(sc·C + G·(sh − 2sc))
// exactly (all integer sums are exact; K % G = 0 so every group is full). The first two
// terms are folded in fp32 after each group; the z term is collected per feature over the
// groups and applied once at the end: y = s·(acc − z·E). Output fp16 [T][N].
//
// Tiles come from the arch table (CUDA_ARCHS[arch].prefill): a block computes bm tokens ×
// bn features; warps own 64×32 (4 m16 × 4 n8 fragments). Per group (BK = G = 128) the
// activation tile (bm × 128 bytes, rows padded to 144 B) and the code tile (bn × 32 bytes)
// arrive by cp.async in a ring of `stages` buffers. Fragments are read straight from shared
// memory: the dot product is over k, so any k order shared by A and B is correct, and each
// thread (group g = lane/4, quad t = lane%4) takes the 32 consecutive k = 32t…32t+31 of the
// group: two 16-byte loads a row for A, one 8-byte code load a feature for B, where 8 code
// bytes (32 digits) expand to the 8 B registers of 4 k32 steps (~3.75 ALU ops per 4 weights).
import { CODE_PACKINGS } from '../../../formats/ternary.ts';
import { Code, code, join } from '../../common/fragments.ts';
import { CUDA_ARCHS } from '../arch.ts';
import { defineKernel, type CudaKernel } from '../kernel.ts';
import { gemmArgs, gemmShapeUnsupported, gemmStore, GEMM_GROUP as G, type GemmShape } from './gemm.ts';

export type { GemmShape } from './gemm.ts';

/** Why a linear cannot use this int8 prefill GEMM, or null. */
export function gemmA8Unsupported(s: Pick<GemmShape, 'format' | 'k' | 'n' | 'arch'>): string | null {
  return gemmShapeUnsupported(s, CUDA_ARCHS[s.arch].prefill.bn, `the ${s.arch} tile width`);
}

function gemmA8KernelName(s: GemmShape): string {
  return `gemm_a8_${s.format.id}_n${s.n}_k${s.k}_${s.arch}${s.out === 'f32' ? '_f32' : ''}`;
}

export function gemmA8Plan(s: GemmShape) {
  const why = gemmA8Unsupported(s);
  if (why) throw new Error(`CUDA A8 prefill GEMM: ${why}`);
  const arch = CUDA_ARCHS[s.arch];
  const { bm, bn, warpsM, warpsN, stages } = arch.prefill;
  const wm = bm / warpsM;
  const wn = bn / warpsN;
  if (wm !== 64 || wn !== 32) throw new Error(`CUDA A8 prefill GEMM: warp tile ${wm}×${wn} (only 64×32 is generated)`);
  const aStride = G + 16; // bytes a row of the activation tile: 16 B pad, conflict-free 16 B loads
  const codeBytes = CODE_PACKINGS.bit2.bytesPerGroup(G); // 32
  const stageBytes = bm * aStride + bn * codeBytes;
  const smemBytes = stages * stageBytes;
  if (smemBytes > arch.maxSmemPerBlock) throw new Error(`CUDA A8 prefill GEMM: ${smemBytes} B of shared memory exceed ${s.arch}'s ${arch.maxSmemPerBlock}`);
  const kt = s.k / G;
  return { bm, bn, warpsM, warpsN, stages, wm, wn, mt: wm / 16, nt: wn / 8, aStride, codeBytes, stageBytes, smemBytes, kt, rowBytes: kt * codeBytes, threads: warpsM * warpsN * 32 };
}

// ---- typed PTX fragments ----
type Reg = Code;
/** d += a·b, m16n8k32, A row-major u8 (4 regs), B col-major u8 (2 regs), int32 accumulators. */
function mmaU8(d: readonly [Reg, Reg, Reg, Reg], a: readonly [Reg, Reg, Reg, Reg], b: readonly [Reg, Reg]): Code {
  return code`asm volatile("mma.sync.aligned.m16n8k32.row.col.s32.u8.u8.s32 {%0,%1,%2,%3}, {%4,%5,%6,%7}, {%8,%9}, {%0,%1,%2,%3};"
            : "+r"(${d[0]}), "+r"(${d[1]}), "+r"(${d[2]}), "+r"(${d[3]})
            : "r"(${a[0]}), "r"(${a[1]}), "r"(${a[2]}), "r"(${a[3]}), "r"(${b[0]}), "r"(${b[1]}));`;
}
const reg = (s: string) => new Code(s);

export function gemmA8Kernel(s: GemmShape): CudaKernel {
  const p = gemmA8Plan(s);
  const { bm, bn, warpsN, stages: S, wm: WM, wn: WN, mt: MT, nt: NT, aStride: AS, codeBytes: CB, stageBytes, smemBytes, kt: KT, rowBytes, threads } = p;
  const K = s.k;
  const name = gemmA8KernelName(s);
  const shift = s.format.shift;
  const prelude = code`__device__ __forceinline__ void ${new Code(name)}_cp16(void* dst, const void* src, bool full) {
  const unsigned d = (unsigned)__cvta_generic_to_shared(dst);
  asm volatile("cp.async.cg.shared.global [%0], [%1], 16, %2;" :: "r"(d), "l"(src), "r"(full ? 16 : 0));
}
// 4 bit2 codes of byte j of a code word w → 4 digit bytes (c ∈ 0…3 each), from the word's low
// nibbles e0 = w & 0x0f0f0f0f and high nibbles e1 = (w >> 4) & 0x0f0f0f0f (shared by the 4
// bytes): v holds byte j's low nibble in byte 0 and its high nibble in byte 2, so digits 0 and
// 2 sit in place and digits 1 and 3 are 6 bits short of theirs (PRMT, SHF, LOP3 a word).
__device__ __forceinline__ uint32_t ${new Code(name)}_digits(uint32_t e0, uint32_t e1, int j) {
  const uint32_t v = __byte_perm(e0, e1, (uint32_t)(j | (j << 4) | ((4 + j) << 8) | ((4 + j) << 12)));
  return (v & 0x00030003u) | ((v << 6) & 0x03000300u);
}
`;
  const cp = code`${new Code(name)}_cp16`;
  const dig = code`${new Code(name)}_digits`;
  const mmas = join(
    [0, 1].map((step) => {
      const [x, y] = step === 0 ? ['x', 'y'] : ['z', 'w'];
      return mmaU8(
        [reg('d[mt][nt][0]'), reg('d[mt][nt][1]'), reg('d[mt][nt][2]'), reg('d[mt][nt][3]')],
        [reg(`lo.${x}`), reg(`hi.${x}`), reg(`lo.${y}`), reg(`hi.${y}`)],
        [reg(`b[nt][${2 * step}]`), reg(`b[nt][${2 * step + 1}]`)],
      );
    }),
    '\n        ',
  );
  const body = code`  extern __shared__ __align__(16) unsigned char smem[];
  const int warp = threadIdx.x >> 5, lane = threadIdx.x & 31, g = lane >> 2, tq = lane & 3;
  const int wr = (warp / ${warpsN}) * ${WM}, wc = (warp % ${warpsN}) * ${WN};
  const int m0 = blockIdx.y * ${bm}, n0 = blockIdx.x * ${bn};
  auto load_stage = [&](int buf, int kt) {
    unsigned char* sA = smem + buf * ${stageBytes};
    unsigned char* sB = sA + ${bm * AS};
    #pragma unroll
    for (int i = threadIdx.x; i < ${bm * (G / 16)}; i += ${threads}) {
      const int r = i >> 3, c = i & 7, row = m0 + r;
      const bool ok = row < T;
      ${cp}(sA + r * ${AS} + c * 16, a + (size_t)(ok ? row : 0) * ${K} + kt * ${G} + c * 16, ok);
    }
    #pragma unroll
    for (int i = threadIdx.x; i < ${bn * (CB / 16)}; i += ${threads}) {
      const int r = i >> 1, c = i & 1;
      ${cp}(sB + r * ${CB} + c * 16, codes + (size_t)(n0 + r) * ${rowBytes} + kt * ${CB} + c * 16, true);
    }
  };
  float accum[${MT}][${NT}][4];
  float E[${NT}][2];
  #pragma unroll
  for (int mt = 0; mt < ${MT}; ++mt)
    #pragma unroll
    for (int nt = 0; nt < ${NT}; ++nt)
      #pragma unroll
      for (int i = 0; i < 4; ++i) accum[mt][nt][i] = 0.f;
  #pragma unroll
  for (int nt = 0; nt < ${NT}; ++nt) E[nt][0] = E[nt][1] = 0.f;
  #pragma unroll
  for (int st = 0; st < ${S - 1}; ++st) {
    if (st < ${KT}) load_stage(st, st);
    asm volatile("cp.async.commit_group;");
  }
  for (int kt = 0; kt < ${KT}; ++kt) {
    asm volatile("cp.async.wait_group ${new Code(String(S - 2))};");
    __syncthreads();
    if (kt + ${S - 1} < ${KT}) load_stage((kt + ${S - 1}) % ${S}, kt + ${S - 1});
    asm volatile("cp.async.commit_group;");
    const unsigned char* sA = smem + (kt % ${S}) * ${stageBytes};
    const unsigned char* sB = sA + ${bm * AS};
    // this group's scale (and shift) of the thread's accumulator columns, used after the MMAs
    float sc[${NT}][2], sh[${NT}][2];
    #pragma unroll
    for (int nt = 0; nt < ${NT}; ++nt)
      #pragma unroll
      for (int j = 0; j < 2; ++j) {
        const size_t gi = (size_t)(n0 + wc + nt * 8 + tq * 2 + j) * ${KT} + kt;
        sc[nt][j] = __half2float(scales[gi]);
        sh[nt][j] = ${shift ? code`__half2float(shifts[gi])` : code`0.f`};
      }
    // codes of feature wc + nt·8 + g, k = 32·tq … 32·tq + 31; C = Σ digits over the group
    uint2 cw[${NT}];
    int csum[${NT}];
    #pragma unroll
    for (int nt = 0; nt < ${NT}; ++nt) {
      cw[nt] = *reinterpret_cast<const uint2*>(sB + (wc + nt * 8 + g) * ${CB} + tq * 8);
      int c = __popc(cw[nt].x & 0x55555555u) + 2 * __popc(cw[nt].x & 0xaaaaaaaau) + __popc(cw[nt].y & 0x55555555u) + 2 * __popc(cw[nt].y & 0xaaaaaaaau);
      c += __shfl_xor_sync(0xffffffffu, c, 1);
      c += __shfl_xor_sync(0xffffffffu, c, 2);
      csum[nt] = c;
    }
    int d[${MT}][${NT}][4];
    unsigned qs[${MT}][2];
    #pragma unroll
    for (int mt = 0; mt < ${MT}; ++mt) {
      qs[mt][0] = qs[mt][1] = 0u;
      #pragma unroll
      for (int nt = 0; nt < ${NT}; ++nt)
        #pragma unroll
        for (int i = 0; i < 4; ++i) d[mt][nt][i] = 0x4B000000; // the bits of 2^23 as fp32: see the fold
    }
    #pragma unroll
    for (int h = 0; h < 2; ++h) { // k32 steps 2h and 2h + 1
      uint32_t b[${NT}][4];
      #pragma unroll
      for (int nt = 0; nt < ${NT}; ++nt) {
        const uint32_t w = h ? cw[nt].y : cw[nt].x;
        const uint32_t e0 = w & 0x0f0f0f0fu, e1 = (w >> 4) & 0x0f0f0f0fu;
        #pragma unroll
        for (int j = 0; j < 4; ++j) b[nt][j] = ${dig}(e0, e1, j);
      }
      #pragma unroll
      for (int mt = 0; mt < ${MT}; ++mt) {
        const uint4 lo = *reinterpret_cast<const uint4*>(sA + (wr + mt * 16 + g) * ${AS} + tq * 32 + h * 16);
        const uint4 hi = *reinterpret_cast<const uint4*>(sA + (wr + mt * 16 + g + 8) * ${AS} + tq * 32 + h * 16);
        qs[mt][0] = __dp4a(lo.x, 0x01010101u, __dp4a(lo.y, 0x01010101u, __dp4a(lo.z, 0x01010101u, __dp4a(lo.w, 0x01010101u, qs[mt][0]))));
        qs[mt][1] = __dp4a(hi.x, 0x01010101u, __dp4a(hi.y, 0x01010101u, __dp4a(hi.z, 0x01010101u, __dp4a(hi.w, 0x01010101u, qs[mt][1]))));
        #pragma unroll
        for (int nt = 0; nt < ${NT}; ++nt) {
        ${mmas}
        }
      }
    }
    // fold the group: acc += sc·D + (sh − 2sc)·Q;  E += sc·C + G·(sh − 2sc). The int32 sums
    // started at the bits of 2^23, so with 0 ≤ D ≤ ${G}·3·255 < 2^23 the register read as fp32
    // is exactly 2^23 + D: one FADD gives D as float (I2F runs at 16 a clock an SM on sm_80/90,
    // an eighth of FADD, and was the busiest pipe of this loop). FADD + 2 FFMA an accumulator.
    float beta[${NT}][2];
    #pragma unroll
    for (int nt = 0; nt < ${NT}; ++nt)
      #pragma unroll
      for (int j = 0; j < 2; ++j) {
        const int c = __shfl_sync(0xffffffffu, csum[nt], (tq * 2 + j) * 4);
        beta[nt][j] = sh[nt][j] - 2.f * sc[nt][j];
        E[nt][j] += sc[nt][j] * (float)c + ${G}.f * beta[nt][j];
      }
    #pragma unroll
    for (int mt = 0; mt < ${MT}; ++mt) {
      #pragma unroll
      for (int r = 0; r < 2; ++r) {
        unsigned q = qs[mt][r];
        q += __shfl_xor_sync(0xffffffffu, q, 1);
        q += __shfl_xor_sync(0xffffffffu, q, 2);
        const float qf = (float)q;
        #pragma unroll
        for (int nt = 0; nt < ${NT}; ++nt)
          #pragma unroll
          for (int j = 0; j < 2; ++j)
            accum[mt][nt][2 * r + j] = fmaf(sc[nt][j], __int_as_float(d[mt][nt][2 * r + j]) - 8388608.f, fmaf(beta[nt][j], qf, accum[mt][nt][2 * r + j]));
      }
    }
  }
  // y = s·(acc − z·E), fp16
  #pragma unroll
  for (int mt = 0; mt < ${MT}; ++mt)
    #pragma unroll
    for (int r = 0; r < 2; ++r) {
      const int row = m0 + wr + mt * 16 + g + 8 * r;
      if (row < T) {
        const float sq = ap[2 * row], zq = ap[2 * row + 1];
        #pragma unroll
        for (int nt = 0; nt < ${NT}; ++nt) {
          const int col = n0 + wc + nt * 8 + tq * 2;
          ${gemmStore(s, code`row`, code`col`, code`sq * (accum[mt][nt][2 * r] - zq * E[nt][0])`, code`sq * (accum[mt][nt][2 * r + 1] - zq * E[nt][1])`)}
        }
      }
    }`;
  return defineKernel({
    name,
    params: { format: s.format.id, n: s.n, k: K, arch: s.arch, act: 'u8', out: s.out ?? 'f16', bm, bn, wm: WM, wn: WN, stages: S, mma: 'm16n8k32.u8.u8' },
    args: gemmArgs(s),
    block: threads,
    grid: [code`${s.n / bn}`, code`(T + ${bm - 1}) / ${bm}`, code`1`],
    smemBytes,
    prelude,
    body,
  });
}
