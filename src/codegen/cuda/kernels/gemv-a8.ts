// Decode GEMV / skinny GEMM with ternary weights and int8 activations (A ≤ 8 bits):
// the act kernel leaves per token the codes q ∈ [0, 2^b − 1] and (s, z) with
// x̂ = (q − z)·s (src/quant/act-quant.ts), and
//   y[m, n] (=|+=) s_m · Σ_g ( scale[n,g] · Σ_{k∈g} t·(q − z_m) + shift[n,g] · Σ_{k∈g} (q − z_m) )
// which equals W·x̂ exactly up to fp32 rounding of the final products (the integer sums are
// exact). For bit2 words (groups of 16k, K a multiple of 16): with digits c = t + 2,
//   Σ t·(q − z) = Σ c·q − 2·Σ q − z·(Σ c − 32)   over the 16 codes of a word,
// Σ c·q by four __dp4a on bytes (w >> 2p) & 0x03030303 (codes p, p+4, p+8, p+12) against
// the activations staged in that byte order, Σ c by two popcounts: ~1 instruction a weight
// instead of ~2.6 for fp16 activations.
import { rowOffsets, warpSumsToShared, zeroAccumulators } from './reduce.ts';
import { CODE_PACKINGS, groupsPerRow } from '../../../formats/ternary.ts';
import { Code, code, join } from '../../common/fragments.ts';
import { CUDA_ARCHS } from '../arch.ts';
import { defineKernel, type CudaKernel } from '../kernel.ts';
import { CUDA_PACKINGS } from '../packing.ts';
import { GEMV_TAIL_ARGS, gemvWeightArgs, type GemvShape } from './gemv.ts';

/** Why a linear cannot use the int8-activation GEMV, or null. */
export function gemvA8Unsupported(s: Pick<GemvShape, 'format' | 'k'>): string | null {
  if (s.format.packing !== 'bit2' || CUDA_PACKINGS.bit2.unit(s.format.group).unitBytes !== 4) return `format ${s.format.id} is not bit2 with groups of 16k`;
  if (s.k % 16) return `K=${s.k} is not a multiple of 16`;
  return null;
}

function gemvA8KernelName(s: GemvShape): string {
  return `gemv_a8_${s.format.id}_n${s.n}_k${s.k}_m${s.m}_${s.arch}`;
}

const MIN_ROW_BLOCKS = 264;

function gemvA8Plan(s: GemvShape) {
  const why = gemvA8Unsupported(s);
  if (why) throw new Error(`CUDA A8 GEMV: ${why}`);
  if (!Number.isInteger(s.m) || s.m < 1 || s.m > 16) throw new Error(`CUDA A8 GEMV: M=${s.m} outside 1…16`);
  const arch = CUDA_ARCHS[s.arch];
  const f = s.format;
  const bpg = CODE_PACKINGS.bit2.bytesPerGroup(f.group);
  const ng = groupsPerRow(f, s.k);
  const rowBytes = ng * bpg;
  const upg = bpg / 4; // 16-code words per group
  const upr = ng * upg;
  const vec = rowBytes % 16 === 0 ? 16 : rowBytes % 8 === 0 ? 8 : 4;
  const upc = vec / 4;
  const perUnit = s.m * (4 * 4 + 4); // four byte-packed words and Σq
  const fit = Math.floor(arch.gemvSmemBudget / perUnit / upc) * upc;
  if (fit < upc) throw new Error(`CUDA A8 GEMV: ${gemvA8KernelName(s)} needs more shared memory than ${s.arch} offers`);
  const tu = Math.min(upr, fit);
  const nch = tu / upc;
  const warps = arch.gemvWarps;
  let r = arch.gemvRowsPerWarp(s.m);
  while (r > 1 && Math.ceil(s.n / (warps * r)) < MIN_ROW_BLOCKS) r /= 2;
  const rowsPerBlock = warps * r;
  const rowBlocks = Math.ceil(s.n / rowsPerBlock);
  const singleTile = tu === upr;
  return { bpg, ng, rowBytes, upg, upr, vec, upc, tu, nch, warps, r, rowBlocks, singleTile, smemBytes: s.m * tu * (4 * 4 + 4) };
}

export function gemvA8Kernel(s: GemvShape): CudaKernel {
  const p = gemvA8Plan(s);
  const { ng, rowBytes, upg, upr, vec, upc, tu, nch, warps, r: R, rowBlocks, singleTile, smemBytes } = p;
  const M = s.m;
  const N = s.n;
  const K = s.k;
  const G = s.format.group;
  const shifts = s.format.shift;
  const nWords = vec / 4;
  const vtype = vec === 16 ? 'uint4' : vec === 8 ? 'uint2' : 'uint32_t';
  const fields = vec === 16 ? ['x', 'y', 'z', 'w'] : vec === 8 ? ['x', 'y'] : [''];
  const loadRaw = (dst: string, c: string) =>
    join(
      Array.from({ length: R }, (_, r) =>
        nWords === 1
          ? code`      ${new Code(dst)}[${r}][0] = __ldg(reinterpret_cast<const uint32_t*>(codes + rowOff[${r}]) + ${new Code(c)});`
          : join([
              code`      { const ${new Code(vtype)} v = __ldg(reinterpret_cast<const ${new Code(vtype)}*>(codes + rowOff[${r}]) + ${new Code(c)});`,
              ...fields.map((fl, i) => code`        ${new Code(dst)}[${r}][${i}] = v.${new Code(fl)};`),
              code`      }`,
            ]),
      ),
    );
  const perUnit = join(
    Array.from({ length: upc }, (_, q) =>
      join([
        code`      { // word ${q} of the vector
        const int g = (t0 + c * ${upc} + ${q}) / ${upg};`,
        ...Array.from({ length: R }, (_, r) =>
          join([
            code`        const uint32_t w${r} = raw[${r}][${q}];`,
            code`        const int csum${r} = __popc(w${r} & 0x55555555u) + 2 * __popc(w${r} & 0xaaaaaaaau);`,
            code`        const float sc${r} = __half2float(scales[rowG[${r}] + g]);`,
            shifts ? code`        const float sh${r} = __half2float(shifts[rowG[${r}] + g]);` : code``,
          ]),
        ),
        code`        #pragma unroll
        for (int m = 0; m < ${M}; ++m) {
          const int qsum = qs[(m * ${upc} + ${q}) * ${nch} + c];
          const float z = zq[m];`,
        ...Array.from({ length: R }, (_, r) => code`          unsigned cq${r} = 0u;`),
        code`          #pragma unroll
          for (int pr = 0; pr < 4; ++pr) {
            const unsigned qv = qw[((m * 4 + pr) * ${upc} + ${q}) * ${nch} + c];`,
        ...Array.from({ length: R }, (_, r) => code`            cq${r} = __dp4a((w${r} >> (2 * pr)) & 0x03030303u, qv, cq${r}); // unsigned bytes: q is 0…255`),
        code`          }`,
        ...Array.from({ length: R }, (_, r) =>
          join([
            code`          { const float dot = (float)((int)cq${r} - 2 * qsum) - z * (float)(csum${r} - 32);`,
            shifts
              ? code`            acc[${r}][m] += sc${r} * dot + sh${r} * ((float)qsum - 16.f * z); }`
              : code`            acc[${r}][m] += sc${r} * dot; }`,
          ]),
        ),
        code`        }
      }`,
      ]),
    ),
  );
  const stage = code`    __syncthreads();
    // Stage codes of this tile: word (m, p, unit) packs q at k = 16j + p + 4b in byte b.
    #pragma unroll 4
    for (int i = threadIdx.x; i < ${M} * tu * 4; i += ${warps * 32}) {
      const int m = i / (tu * 4);
      const int rem = i - m * tu * 4;
      const int u = rem >> 2, pr = rem & 3;
      const int gl = (t0 + u) / ${upg}, j = t0 + u - gl * ${upg};
      const int k0 = gl * ${G} + 16 * j + pr;
      uint32_t wv = 0;
      if (m < T) {
        #pragma unroll
        for (int b = 0; b < 4; ++b) wv |= (uint32_t)a[(size_t)m * ${K} + k0 + 4 * b] << (8 * b);
      }
      const int c = u / ${upc}, q = u - c * ${upc};
      qw[((m * 4 + pr) * ${upc} + q) * ${nch} + c] = wv;
    }
    __syncthreads();
    for (int i = threadIdx.x; i < ${M} * tu; i += ${warps * 32}) {
      const int m = i / tu, u = i - m * tu;
      const int c = u / ${upc}, q = u - c * ${upc};
      unsigned s = 0u;
      #pragma unroll
      for (int pr = 0; pr < 4; ++pr) s = __dp4a(qw[((m * 4 + pr) * ${upc} + q) * ${nch} + c], 0x01010101u, s);
      qs[(m * ${upc} + q) * ${nch} + c] = (int)s;
    }
    __syncthreads();
`;
  const body = code`  extern __shared__ __align__(16) unsigned char smem[];
  uint32_t* qw = reinterpret_cast<uint32_t*>(smem);
  int* qs = reinterpret_cast<int*>(smem + ${M * tu * 16});
  __shared__ float red[${warps}][${R}][${M}];
  __shared__ float zq[${M}], sq[${M}];
  if (threadIdx.x < ${M}) {
    const bool live = (int)threadIdx.x < T;
    sq[threadIdx.x] = live ? ap[2 * threadIdx.x] : 0.f;
    zq[threadIdx.x] = live ? ap[2 * threadIdx.x + 1] : 0.f;
  }
  const int warp = threadIdx.x >> 5, lane = threadIdx.x & 31;
${singleTile ? code`  { const int t0 = 0, tu = ${tu}, nch = ${nch};
${stage}  }` : code``}
  for (int rb = blockIdx.x; rb < ${rowBlocks}; rb += gridDim.x) {
  const int row0 = (rb * ${warps} + warp) * ${R};
${rowOffsets(R, N, rowBytes, ng)}
${zeroAccumulators(R, M)}
  for (int t0 = 0; t0 < ${upr}; t0 += ${tu}) {
    const int tu = min(${tu}, ${upr} - t0);
    const int nch = tu / ${upc};
${singleTile ? code`` : stage}
    size_t rowOff[${R}];
    #pragma unroll
    for (int r = 0; r < ${R}; ++r) rowOff[r] = rowB[r] + (size_t)t0 * 4;
    uint32_t raw[${R}][${nWords}];
    int c = lane;
    if (c < nch) {
${loadRaw('raw', 'c')}
    }
    for (; c < nch; c += 32) {
      uint32_t nxt[${R}][${nWords}];
      const int cn = min(c + 32, nch - 1);
${loadRaw('nxt', 'cn')}
${perUnit}
      #pragma unroll
      for (int r = 0; r < ${R}; ++r)
        #pragma unroll
        for (int w = 0; w < ${nWords}; ++w) raw[r][w] = nxt[r][w];
    }
  }
${warpSumsToShared(R, M)}
  for (int i = threadIdx.x; i < ${warps * R * M}; i += ${warps * 32}) {
    const int w_ = i / ${R * M}, r = (i / ${M}) % ${R}, m = i % ${M};
    const int row = (rb * ${warps} + w_) * ${R} + r;
    if (row < ${N} && m < T) {
      const float v = sq[m] * red[w_][r][m];
      float* dst = y + (size_t)m * ${N} + row;
      *dst = accumulate ? *dst + v : v;
    }
  }
  __syncthreads();
  }`;
  return defineKernel({
    name: gemvA8KernelName(s),
    params: { format: s.format.id, n: N, k: K, m: M, arch: s.arch, act: 'i8', vec, tu, rows: R, warps },
    args: [
      { name: 'a', type: 'const uint8_t*' },
      { name: 'ap', type: 'const float*' },
      ...gemvWeightArgs(),
      ...GEMV_TAIL_ARGS,
    ],
    block: warps * 32,
    grid: [code`${rowBlocks}`, code`1`, code`1`],
    smemBytes,
    gridLimitByOccupancy: singleTile,
    body,
  });
}
