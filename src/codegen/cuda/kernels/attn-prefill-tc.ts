// Prefill attention on tensor cores: the flash-attention forward with mma.sync m16n8k16 (fp16
// operands, fp32 accumulation), for the runtime's prefill beyond 16 tokens. Same arguments and
// layout as attnPrefillKernel (kernels/block.ts: q fp32 [T][heads·d], the layer's fp16 K/V
// cache [pos][kvHeads·d], out fp32 [T][heads·d]), same causal rule (query t sees positions
// ≤ pos0 + t), GQA by kv head h / group.
//
// Block: 64 queries of one head, 4 warps of 16 rows. Q is scaled by log2(e)·scale (scale 1/√d
// unless the block program states another), rounded to
// fp16 and kept as A fragments in registers. Per tile of 64 key positions (cp.async, two
// stages): S = Q·Kᵀ from ldmatrix'd K rows, the causal mask, the online softmax in base 2 (row
// max over the quad), P rounded to fp16 and reused in place as the A fragments of O += P·V
// (V by ldmatrix.trans). Each thread keeps partial row sums; the quad adds them at the end.
// Precision: fp16 Q, K, V and P with fp32 sums, as flash attention; the CUDA-core kernel keeps
// Q and P in fp32 (compare the fixture's perplexities in bench/results).
import { Code, code, join } from '../../common/fragments.ts';
import { cudaFloat, defineKernel, type CudaKernel } from '../kernel.ts';
import { ATTN_PREFILL_ARGS, attnGeometry, attnScale, attnScaleTag, type AttnShape } from './block.ts';

const QB = 64; // queries a block
const KB = 64; // key positions a tile
const THREADS = 128;

/** Why the tensor-core prefill attention does not take this shape, or null. */
export function attnPrefillTcUnsupported(a: AttnShape): string | null {
  const { d } = attnGeometry(a);
  if (a.window !== undefined) return 'sliding-window attention is in the scalar prefill kernel only';
  if (a.softcap !== undefined) return 'soft-capped scores are in the scalar prefill kernel only';
  return d > 128 ? `head dim ${d} needs more registers than the tensor-core prefill attention keeps (≤ 128)` : null;
}

const mma = (c: string, a: string, b0: string, b1: string) =>
  new Code(`asm volatile("mma.sync.aligned.m16n8k16.row.col.f32.f16.f16.f32 {%0, %1, %2, %3}, {%4, %5, %6, %7}, {%8, %9}, {%0, %1, %2, %3};"
        : "+f"(${c}[0]), "+f"(${c}[1]), "+f"(${c}[2]), "+f"(${c}[3])
        : "r"(${a}[0]), "r"(${a}[1]), "r"(${a}[2]), "r"(${a}[3]), "r"(${b0}), "r"(${b1}));`);

export function attnPrefillTcKernel(a: AttnShape): CudaKernel {
  const why = attnPrefillTcUnsupported(a);
  if (why) throw new Error(`CUDA prefill attention: ${why}`);
  const { d, group, kvd } = attnGeometry(a);
  const KS = d + 8; // halfs a K/V row in shared memory (16-byte pad: ldmatrix's 8 rows hit 8 bank groups)
  const DK = d / 16; // k16 chunks of the head dim (S = Q·Kᵀ)
  const DN = d / 8; // n8 blocks of the head dim (O)
  const stage = 2 * KB * KS; // halfs: K then V
  const smemBytes = 2 * stage * 2;
  const chunks = d / 8;
  const name = `attn_prefill_tc_h${a.heads}_kv${a.kvHeads}_d${d}${attnScaleTag(a).suffix}`;
  const n = new Code(name);
  const prelude = code`__device__ __forceinline__ uint32_t ${n}_pack(float x, float y) {
  const __half2 h = __floats2half2_rn(x, y); // x in the low half
  return *reinterpret_cast<const uint32_t*>(&h);
}
__device__ __forceinline__ void ${n}_ldm4(uint32_t (&r)[4], uint32_t addr) {
  asm volatile("ldmatrix.sync.aligned.m8n8.x4.shared.b16 {%0, %1, %2, %3}, [%4];" : "=r"(r[0]), "=r"(r[1]), "=r"(r[2]), "=r"(r[3]) : "r"(addr));
}
__device__ __forceinline__ void ${n}_ldm4t(uint32_t (&r)[4], uint32_t addr) {
  asm volatile("ldmatrix.sync.aligned.m8n8.x4.trans.shared.b16 {%0, %1, %2, %3}, [%4];" : "=r"(r[0]), "=r"(r[1]), "=r"(r[2]), "=r"(r[3]) : "r"(addr));
}
__device__ __forceinline__ void ${n}_cp16(uint32_t dst, const void* src) {
  asm volatile("cp.async.cg.shared.global [%0], [%1], 16;" :: "r"(dst), "l"(src));
}
`;
  const body = code`  extern __shared__ __align__(16) unsigned char smem[];
  const uint32_t sbase = (uint32_t)__cvta_generic_to_shared(smem);
  const int h = blockIdx.y, kh = h / ${group}, t0 = blockIdx.x * ${QB};
  const int warp = threadIdx.x >> 5, lane = threadIdx.x & 31, g = lane >> 2, tq = lane & 3;
  const int pos0 = *posp;
  const int last = pos0 + min(t0 + ${QB}, T) - 1; // last key position any query here sees
  const int ra = t0 + warp * 16 + g, rb = ra + 8;  // this thread's rows (past T: the last row, not stored)
  const int qpa = pos0 + min(ra, T - 1), qpb = pos0 + min(rb, T - 1);
  // Q (× log2(e)/√d) as fp16 A fragments: rows ra/rb, k = 16kc + 2tq (+1) and + 8
  uint32_t qa[${DK}][4];
  {
    const float* qra = q + (size_t)min(ra, T - 1) * ${a.heads * d} + h * ${d};
    const float* qrb = q + (size_t)min(rb, T - 1) * ${a.heads * d} + h * ${d};
    const float sc = ${cudaFloat(a.scale === undefined ? Math.LOG2E / Math.sqrt(d) : Math.LOG2E * attnScale(a))};
    #pragma unroll
    for (int kc = 0; kc < ${DK}; ++kc) {
      const int c = 16 * kc + 2 * tq;
      const float2 x0 = *reinterpret_cast<const float2*>(qra + c), x1 = *reinterpret_cast<const float2*>(qrb + c);
      const float2 x2 = *reinterpret_cast<const float2*>(qra + c + 8), x3 = *reinterpret_cast<const float2*>(qrb + c + 8);
      qa[kc][0] = ${n}_pack(x0.x * sc, x0.y * sc); qa[kc][1] = ${n}_pack(x1.x * sc, x1.y * sc);
      qa[kc][2] = ${n}_pack(x2.x * sc, x2.y * sc); qa[kc][3] = ${n}_pack(x3.x * sc, x3.y * sc);
    }
  }
  float o[${DN}][4];
  #pragma unroll
  for (int i = 0; i < ${DN}; ++i) o[i][0] = o[i][1] = o[i][2] = o[i][3] = 0.f;
  float ma = -INFINITY, mb = -INFINITY, la = 0.f, lb = 0.f;
  // K and V rows p0 … p0 + ${KB - 1} (clamped to last: the mask hides them) into stage st
  auto load_tile = [&](int st, int p0) {
    for (int i = threadIdx.x; i < ${KB * chunks}; i += ${THREADS}) {
      const int r = i / ${chunks}, c = i - r * ${chunks}, p = min(p0 + r, last);
      const uint32_t dk = sbase + (uint32_t)((st * ${stage} + r * ${KS} + 8 * c) * 2);
      ${n}_cp16(dk, kcache + (size_t)p * ${kvd} + kh * ${d} + 8 * c);
      ${n}_cp16(dk + ${KB * KS * 2}u, vcache + (size_t)p * ${kvd} + kh * ${d} + 8 * c);
    }
  };
  const int tiles = last / ${KB} + 1;
  load_tile(0, 0);
  asm volatile("cp.async.commit_group;" ::: "memory");
  // ldmatrix lane roles: matrix mi = lane / 8, its row lane % 8
  const int mi = lane >> 3, mr = lane & 7;
  for (int it = 0; it < tiles; ++it) {
    const int p0 = it * ${KB}, st = it & 1;
    if (it + 1 < tiles) load_tile(st ^ 1, p0 + ${KB});
    asm volatile("cp.async.commit_group;" ::: "memory");
    asm volatile("cp.async.wait_group 1;" ::: "memory");
    __syncthreads();
    const uint32_t kb = sbase + (uint32_t)(st * ${stage} * 2), vb = kb + ${KB * KS * 2}u;
    // S = Q·Kᵀ: s[nb] covers positions p0 + 8nb + 2tq (+1), rows ra (0, 1) and rb (2, 3)
    float s[${KB / 8}][4];
    #pragma unroll
    for (int i = 0; i < ${KB / 8}; ++i) s[i][0] = s[i][1] = s[i][2] = s[i][3] = 0.f;
    #pragma unroll
    for (int kc = 0; kc < ${DK}; ++kc) {
      #pragma unroll
      for (int nb2 = 0; nb2 < ${KB / 16}; ++nb2) {
        // matrices: (positions 16nb2 + 8(mi/2) …, dims 16kc + 8(mi%2) …)
        uint32_t b[4];
        ${n}_ldm4(b, kb + (uint32_t)(((16 * nb2 + 8 * (mi >> 1) + mr) * ${KS} + 16 * kc + 8 * (mi & 1)) * 2));
        ${mma('s[2 * nb2]', 'qa[kc]', 'b[0]', 'b[1]')}
        ${mma('s[2 * nb2 + 1]', 'qa[kc]', 'b[2]', 'b[3]')}
      }
    }
    // causal mask, online softmax (base 2)
    float xa = -INFINITY, xb = -INFINITY;
    #pragma unroll
    for (int nb = 0; nb < ${KB / 8}; ++nb) {
      #pragma unroll
      for (int e = 0; e < 2; ++e) {
        const int p = p0 + 8 * nb + 2 * tq + e;
        if (p > qpa) s[nb][e] = -INFINITY;
        if (p > qpb) s[nb][2 + e] = -INFINITY;
        xa = fmaxf(xa, s[nb][e]);
        xb = fmaxf(xb, s[nb][2 + e]);
      }
    }
    xa = fmaxf(xa, __shfl_xor_sync(0xffffffffu, xa, 1)); xa = fmaxf(xa, __shfl_xor_sync(0xffffffffu, xa, 2));
    xb = fmaxf(xb, __shfl_xor_sync(0xffffffffu, xb, 1)); xb = fmaxf(xb, __shfl_xor_sync(0xffffffffu, xb, 2));
    const float na = fmaxf(ma, xa), nb_ = fmaxf(mb, xb); // finite: position 0 is in every row's first tile
    const float aa = exp2f(ma - na), ab = exp2f(mb - nb_);
    ma = na; mb = nb_;
    float sa = 0.f, sb = 0.f;
    #pragma unroll
    for (int nb = 0; nb < ${KB / 8}; ++nb) {
      s[nb][0] = exp2f(s[nb][0] - na); s[nb][1] = exp2f(s[nb][1] - na);
      s[nb][2] = exp2f(s[nb][2] - nb_); s[nb][3] = exp2f(s[nb][3] - nb_);
      sa += s[nb][0] + s[nb][1];
      sb += s[nb][2] + s[nb][3];
    }
    la = la * aa + sa;
    lb = lb * ab + sb;
    #pragma unroll
    for (int i = 0; i < ${DN}; ++i) { o[i][0] *= aa; o[i][1] *= aa; o[i][2] *= ab; o[i][3] *= ab; }
    // O += P·V: P's accumulator layout is the A fragment of 16 positions
    #pragma unroll
    for (int kc = 0; kc < ${KB / 16}; ++kc) {
      const uint32_t pa[4] = {${n}_pack(s[2 * kc][0], s[2 * kc][1]), ${n}_pack(s[2 * kc][2], s[2 * kc][3]),
                              ${n}_pack(s[2 * kc + 1][0], s[2 * kc + 1][1]), ${n}_pack(s[2 * kc + 1][2], s[2 * kc + 1][3])};
      #pragma unroll
      for (int nd2 = 0; nd2 < ${DN / 2}; ++nd2) {
        // matrices (transposed): (positions 16kc + 8(mi%2) …, dims 16nd2 + 8(mi/2) …)
        uint32_t b[4];
        ${n}_ldm4t(b, vb + (uint32_t)(((16 * kc + 8 * (mi & 1) + mr) * ${KS} + 16 * nd2 + 8 * (mi >> 1)) * 2));
        ${mma('o[2 * nd2]', 'pa', 'b[0]', 'b[1]')}
        ${mma('o[2 * nd2 + 1]', 'pa', 'b[2]', 'b[3]')}
      }
    }
    __syncthreads(); // stage st is consumed before the next iteration's prefetch overwrites it
  }
  la += __shfl_xor_sync(0xffffffffu, la, 1); la += __shfl_xor_sync(0xffffffffu, la, 2);
  lb += __shfl_xor_sync(0xffffffffu, lb, 1); lb += __shfl_xor_sync(0xffffffffu, lb, 2);
  ${join(
    (['a', 'b'] as const).map(
      (r, i) => code`if (${new Code('r' + r)} < T) {
    float* dst = out + (size_t)${new Code('r' + r)} * ${a.heads * d} + h * ${d} + 2 * tq;
    const float inv = 1.f / ${new Code('l' + r)};
    #pragma unroll
    for (int nd = 0; nd < ${DN}; ++nd) *reinterpret_cast<float2*>(dst + 8 * nd) = make_float2(o[nd][${2 * i}] * inv, o[nd][${2 * i + 1}] * inv);
  }`,
    ),
    '\n  ',
  )}`;
  return defineKernel({
    name,
    params: { heads: a.heads, kvHeads: a.kvHeads, d, qb: QB, kb: KB, mma: 'm16n8k16.f16', ...attnScaleTag(a).params },
    args: ATTN_PREFILL_ARGS,
    block: THREADS,
    grid: [code`(T + ${QB - 1}) / ${QB}`, code`${a.heads}`, code`1`],
    smemBytes,
    prelude,
    body,
  });
}
