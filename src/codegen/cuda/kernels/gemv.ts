// Decode GEMV / skinny GEMM with ternary weights and fp16 activations:
//   y[m, n] (=|+=) Σ_g scale[n,g] · Σ_{k∈g} t[n,k] · a[m,k]  +  shift[n,g] · Σ_{k∈g} a[m,k]
// for m < T ≤ M (M tokens baked in; rows m ≥ T read as zero and are not written).
//
// Plan (memory-bound at small M): each warp owns R rows; lanes stream the rows' code bytes
// with the widest aligned vector load (16 B when the row length allows), so a warp reads
// contiguous memory. Activations of one K-tile are staged once per block into shared memory
// as fp16 pairs in the order the packing's digit word produces them ([m][pair][q][chunk],
// so consecutive lanes read consecutive words: no bank conflicts), plus Σa per unit for the
// shift term. Each unit's trits become exact fp16 (−1, 0, +1) by the 0x6400 trick
// (packing.ts) and meet the activations in HFMA2; the fp16 partial of one unit (≤ 16
// products) goes to an fp32 accumulator multiplied by the group's scale.
import { rowOffsets, warpSumsToShared, zeroAccumulators } from './reduce.ts';
import { CODE_PACKINGS, groupsPerRow, type TernaryFormat } from '../../../formats/ternary.ts';
import { Code, code, join } from '../../common/fragments.ts';
import { CUDA_ARCHS, type CudaArch } from '../arch.ts';
import { defineKernel, type CudaKernel, type CudaParam } from '../kernel.ts';
import { CUDA_PACKINGS } from '../packing.ts';

export interface GemvShape {
  format: TernaryFormat;
  /** Output features. */
  n: number;
  /** Input features. */
  k: number;
  /** Tokens the kernel is specialised for (1…16). */
  m: number;
  arch: CudaArch;
}

/** Vector widths a lane may load, widest first, with the C++ type and how to unpack words. */
const VECTORS = [
  { bytes: 16, type: 'uint4', words: ['x', 'y', 'z', 'w'] },
  { bytes: 8, type: 'uint2', words: ['x', 'y'] },
  { bytes: 4, type: 'uint32_t', words: [''] },
  { bytes: 2, type: 'uint16_t', words: [''] },
  { bytes: 1, type: 'uint8_t', words: [''] },
] as const;

/** A linear's weight tensors and output (named with `suffix` in grouped kernels). */
export const gemvWeightArgs = (suffix = ''): CudaParam[] => [
  { name: `codes${suffix}`, type: 'const uint8_t*' },
  { name: `scales${suffix}`, type: 'const __half*' },
  { name: `shifts${suffix}`, type: 'const __half*' },
  { name: `y${suffix}`, type: 'float*' },
];
/** Token count and accumulate flag, the last arguments of every GEMV. */
export const GEMV_TAIL_ARGS: readonly CudaParam[] = [
  { name: 'T', type: 'int' },
  { name: 'accumulate', type: 'int' },
];
/** Arguments of every fp16-activation GEMV (the runtime's linear dispatchers call them alike). */
export const GEMV_F16_ARGS: readonly CudaParam[] = [{ name: 'a', type: 'const __half*' }, ...gemvWeightArgs(), ...GEMV_TAIL_ARGS];

function gemvKernelName(s: GemvShape): string {
  return `gemv_${s.format.id}_n${s.n}_k${s.k}_m${s.m}_${s.arch}`;
}

/** Row blocks a GEMV should have at least (2 per SM on a 132-SM H100). */
const GEMV_MIN_BLOCKS = 264;

/** The tile plan for a shape; exported for tests. */
export function gemvPlan(s: GemvShape) {
  const f = s.format;
  const pk = CUDA_PACKINGS[f.packing].unit(f.group);
  if (!Number.isInteger(s.m) || s.m < 1 || s.m > 16) throw new Error(`CUDA GEMV: M=${s.m} outside 1…16`);
  if (s.n < 1 || s.k < 1) throw new Error(`CUDA GEMV: empty shape ${s.n}x${s.k}`);
  const arch = CUDA_ARCHS[s.arch];
  const G = f.group;
  const bpg = CODE_PACKINGS[f.packing].bytesPerGroup(G);
  const ng = groupsPerRow(f, s.k);
  const rowBytes = ng * bpg;
  const ub = pk.unitBytes;
  const upg = bpg / ub;
  const upr = ng * upg; // units per row
  const vec = VECTORS.find((v) => v.bytes % ub === 0 && rowBytes % v.bytes === 0) ?? VECTORS[VECTORS.length - 1];
  const upc = vec.bytes / ub; // units per vector
  const pp = pk.pairs + (pk.pairs % 2); // pairs padded to 8-byte alignment
  const perUnit = s.m * (pp * 4 + 4);
  const lutBytes = pk.lutEntry ? 1024 : 0;
  // A K-tile is a whole number of vectors; the last tile may be shorter.
  const fit = Math.floor((arch.gemvSmemBudget - lutBytes) / perUnit / upc) * upc;
  if (fit < upc) throw new Error(`CUDA GEMV: ${gemvKernelName(s)} needs more shared memory than ${s.arch} offers`);
  const tu = Math.min(upr, fit); // units per full tile
  const nch = tu / upc; // vectors per full tile
  const warps = arch.gemvWarps;
  // Rows per warp: the arch's choice for M, halved while that leaves too few row blocks to
  // spread over a large GPU. Warps split K (wk) only when rows alone cannot fill it.
  let r = arch.gemvRowsPerWarp(s.m);
  while (r > 1 && Math.ceil(s.n / (warps * r)) < GEMV_MIN_BLOCKS) r /= 2;
  let wk = 1;
  while (wk < warps && Math.ceil(s.n / ((warps / wk) * r)) < GEMV_MIN_BLOCKS / 2) wk *= 2;
  const wr = warps / wk;
  const rowsPerBlock = wr * r;
  const rowBlocks = Math.ceil(s.n / rowsPerBlock);
  // One K-tile: stage the activations once per block and loop over row blocks (persistent grid).
  const singleTile = tu === upr;
  const smemBytes = lutBytes + s.m * tu * pp * 4 + s.m * tu * 4;
  return { pk, G, bpg, ng, rowBytes, ub, upg, upr, vec, upc, tu, nch, pp, warps, wk, wr, r, rowsPerBlock, rowBlocks, singleTile, smemBytes, lutBytes };
}
export function gemvKernel(s: GemvShape): CudaKernel {
  const p = gemvPlan(s);
  const { pk, G, ng, rowBytes, ub, upg, upr, vec, upc, tu, nch, pp, warps, wk, wr, r: R, rowBlocks, singleTile, smemBytes, lutBytes } = p;
  const M = s.m;
  const N = s.n;
  const K = s.k;
  const name = gemvKernelName(s);
  const magic = 0x6400 + pk.bias; // fp16 bits of 1024 + bias
  const magic2 = code`__halves2half2(__ushort_as_half((unsigned short)${magic}), __ushort_as_half((unsigned short)${magic}))`;
  const shifts = s.format.shift;

  // Unpack the R raw vectors into 32-bit words; unit q of a vector sits at byte q·ub.
  const nWords = Math.max(1, vec.bytes / 4);
  // Load vector `c` of the R rows into `dst` (the next vector is fetched while this one is decoded).
  const loadRaw = (dst: Code, c: Code) =>
    vec.bytes >= 4
      ? join(
          Array.from({ length: R }, (_, r) => {
            const v = code`__ldg(reinterpret_cast<const ${new Code(vec.type)}*>(codes + rowOff[${r}]) + ${c})`;
            if (vec.bytes === 4) return code`      ${dst}[${r}][0] = ${v};`;
            return join([
              code`      { const ${new Code(vec.type)} v = ${v};`,
              ...vec.words.map((w, i) => code`        ${dst}[${r}][${i}] = v.${new Code(w)};`),
              code`      }`,
            ]);
          }),
        )
      : join(Array.from({ length: R }, (_, r) => code`      ${dst}[${r}][0] = __ldg(reinterpret_cast<const ${new Code(vec.type)}*>(codes + rowOff[${r}]) + ${c});`));

  const unitRaw = (r: number, q: number): Code => {
    const byte = q * ub;
    const w = Math.floor(byte / 4);
    const sh = (byte % 4) * 8;
    return sh ? code`(raw[${r}][${w}] >> ${sh})` : code`raw[${r}][${w}]`;
  };

  const perUnit = join(
    Array.from({ length: upc }, (_, q) =>
      join([
        code`      { // unit ${q} of the vector
        const int g = (t0 + c * ${upc} + ${q}) / ${upg};`,
        ...Array.from({ length: R }, (_, r) =>
          join([
            code`        const uint32_t d${r} = ${pk.digits(unitRaw(r, q))};`,
            code`        const float sc${r} = __half2float(scales[rowG[${r}] + g]);`,
            shifts ? code`        const float sh${r} = __half2float(shifts[rowG[${r}] + g]);` : code``,
          ]),
        ),
        code`        #pragma unroll
        for (int m = 0; m < ${M}; ++m) {
          const float xsum = xs[(m * ${upc} + ${q}) * ${nch} + c];`,
        ...Array.from({ length: R }, (_, r) => code`          __half2 part${r} = __float2half2_rn(0.f);`),
        code`          #pragma unroll
          for (int pr = 0; pr < ${pk.pairs}; ++pr) {
            const __half2 xv = xp[((m * ${pp} + pr) * ${upc} + ${q}) * ${nch} + c];`,
        ...Array.from(
          { length: R },
          (_, r) => code`            { const uint32_t w = ((d${r} >> (2 * pr)) & 0x00030003u) | 0x64006400u; // two fp16 1024+digit
              part${r} = __hfma2(__hsub2(*reinterpret_cast<const __half2*>(&w), bias2), xv, part${r}); }`,
        ),
        code`          }`,
        ...Array.from({ length: R }, (_, r) =>
          join([
            code`          { const float2 f = __half22float2(part${r});`,
            shifts
              ? code`            acc[${r}][m] += sc${r} * (f.x + f.y) + sh${r} * xsum; }`
              : code`            acc[${r}][m] += sc${r} * (f.x + f.y); (void)xsum; }`,
          ]),
        ),
        code`        }
      }`,
      ]),
    ),
  );

  const lut = pk.lutEntry
    ? code`  uint32_t* lut = reinterpret_cast<uint32_t*>(smem + ${smemBytes - lutBytes});
  for (int v = threadIdx.x; v < 256; v += blockDim.x) lut[v] = ${pk.lutEntry(code`(unsigned)v`)};`
    : code``;

  const stage = code`    __syncthreads();
    // Stage activations of this tile as fp16 pairs in digit-word order.
    #pragma unroll 8
    for (int i = threadIdx.x; i < ${M} * tu * ${pk.pairs}; i += ${warps * 32}) {
      const int m = i / (tu * ${pk.pairs});
      const int rem = i - m * tu * ${pk.pairs};
      const int u = rem / ${pk.pairs};
      const int pr = rem - u * ${pk.pairs};
      const int gl = (t0 + u) / ${upg}, j = t0 + u - gl * ${upg};
      const int kg = gl * ${G};
      const int i0 = ${pk.tritIndex(code`j`, code`pr`, code`0`)};
      const int i1 = ${pk.tritIndex(code`j`, code`pr`, code`1`)};
      const bool live = m < T;
      const __half zero = __float2half(0.f);
      const __half x0 = (live && i0 < ${G} && kg + i0 < ${K}) ? a[m * ${K} + kg + i0] : zero;
      const __half x1 = (live && i1 < ${G} && kg + i1 < ${K}) ? a[m * ${K} + kg + i1] : zero;
      const int c = u / ${upc}, q = u - c * ${upc};
      xp[((m * ${pp} + pr) * ${upc} + q) * ${nch} + c] = __halves2half2(x0, x1);
    }
    __syncthreads();
    #pragma unroll 4
    for (int i = threadIdx.x; i < ${M} * tu; i += ${warps * 32}) {
      const int m = i / tu, u = i - m * tu;
      const int c = u / ${upc}, q = u - c * ${upc};
      float s = 0.f;
      for (int pr = 0; pr < ${pk.pairs}; ++pr) {
        const float2 f = __half22float2(xp[((m * ${pp} + pr) * ${upc} + q) * ${nch} + c]);
        s += f.x + f.y;
      }
      xs[(m * ${upc} + q) * ${nch} + c] = s;
    }
    __syncthreads();
`;
  const body = code`  extern __shared__ __align__(16) unsigned char smem[];
  __half2* xp = reinterpret_cast<__half2*>(smem);
  float* xs = reinterpret_cast<float*>(smem + ${M * tu * pp * 4});
${lut}
  const __half2 bias2 = ${magic2};
  __shared__ float red[${warps}][${R}][${M}];
  const int warp = threadIdx.x >> 5, lane = threadIdx.x & 31;
  const int wrow = warp / ${wk}, wkk = warp - wrow * ${wk};
${singleTile ? code`  { const int t0 = 0, tu = ${tu}, nch = ${nch};
${stage}  }` : code``}
  for (int rb = blockIdx.x; rb < ${rowBlocks}; rb += gridDim.x) {
  const int row0 = (rb * ${wr} + wrow) * ${R};
${rowOffsets(R, N, rowBytes, ng)}
${zeroAccumulators(R, M)}

  for (int t0 = 0; t0 < ${upr}; t0 += ${tu}) { // t0: first unit of this K-tile
    const int tu = min(${tu}, ${upr} - t0);
    const int nch = tu / ${upc};
${singleTile ? code`` : stage}
    size_t rowOff[${R}];
    #pragma unroll
    for (int r = 0; r < ${R}; ++r) rowOff[r] = rowB[r] + (size_t)t0 * ${ub};
    uint32_t raw[${R}][${nWords}];
    int c = lane + 32 * wkk;
    if (c < nch) {
${loadRaw(code`raw`, code`c`)}
    }
    for (; c < nch; c += ${32 * wk}) {
      uint32_t nxt[${R}][${nWords}];
      const int cn = min(c + ${32 * wk}, nch - 1);
${loadRaw(code`nxt`, code`cn`)}
${perUnit}
      #pragma unroll
      for (int r = 0; r < ${R}; ++r)
        #pragma unroll
        for (int w = 0; w < ${nWords}; ++w) raw[r][w] = nxt[r][w];
    }
  }
${warpSumsToShared(R, M)}
  for (int i = threadIdx.x; i < ${wr * R * M}; i += blockDim.x) {
    const int wr_ = i / ${R * M}, r = (i / ${M}) % ${R}, m = i % ${M};
    float v = 0.f;
    #pragma unroll
    for (int w = 0; w < ${wk}; ++w) v += red[wr_ * ${wk} + w][r][m];
    const int row = (rb * ${wr} + wr_) * ${R} + r;
    if (row < ${N} && m < T) {
      float* dst = y + (size_t)m * ${N} + row;
      *dst = accumulate ? *dst + v : v;
    }
  }
  __syncthreads();
  }`;

  return defineKernel({
    name,
    params: { format: s.format.id, n: N, k: K, m: M, arch: s.arch, unit: pk.tag, vec: vec.bytes, tu, rows: R, warps, wk },
    args: GEMV_F16_ARGS,
    block: warps * 32,
    grid: [code`${rowBlocks}`, code`1`, code`1`],
    smemBytes,
    gridLimitByOccupancy: singleTile,
    body,
  });
}

