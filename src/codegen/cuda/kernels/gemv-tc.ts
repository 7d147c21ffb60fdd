// Skinny GEMM (M = 2…64 tokens: prefill slices, small batches) with fp16 activations on tensor
// cores, for bit2 codes in groups of 64k:
//   y[m, n] (=|+=) Σ_g scale[n,g]·Σ_{k∈g} t·x[m,k] + shift[n,g]·Σ_{k∈g} x[m,k].
//
// Why: the CUDA-core kernels spend their instructions per token (the streaming kernel decodes
// and multiplies every pair for every token; the staged kernel multiplies every pair for every
// token), so a 16-token prefill chunk costs ~15 decode steps. Here each digit pair is decoded
// once (mask + FMA to an exact fp16 trit) and mma.sync m16n8k16 multiplies it with 8 tokens at
// a time in fp32, so 16 tokens cost about one decode step. (At M = 1 the streaming kernel stays
// faster.)
//
// Layout: a warp owns 16 rows (A rows g and g+8 for lane g = lane/4) and a range of groups; the
// four lanes t = lane%4 of a quad take the four quarters of a group (G/4 codes, G/64 words of
// 16 codes each, one contiguous load a row). The dot product over a group is a sum over k in
// any order shared by A and B, so a lane's A registers for one mma are the digit pairs (p, p+8)
// of one of its own words and its B registers the matching activations of token g of the tile
// (permuted into the same pairs with byte permutes). One group = G/16 mma a token tile; its fp32
// result is scaled by the group's scale per row, and the shift term uses Σx of the group.
import { CODE_PACKINGS, groupsPerRow } from '../../../formats/ternary.ts';
import { Code, code, join } from '../../common/fragments.ts';
import { defineKernel, type CudaKernel } from '../kernel.ts';
import { BIT2_FP16_CONSTANTS, BIT2_FP16_PAIRED_X, sumWordActivations } from './bit2-fp16.ts';
import { GEMV_F16_ARGS, type GemvShape } from './gemv.ts';

/** Most tokens a launch takes (8 token tiles of the mma's n: prefill slices of fp16 sites). */
export const TC_MAX_M = 64;

/** Why a shape cannot use the tensor-core skinny GEMM, or null. */
export function gemvTcUnsupported(s: Pick<GemvShape, 'format' | 'k' | 'm'>): string | null {
  if (s.format.packing !== 'bit2' || s.format.group % 64) return `format ${s.format.id} is not bit2 with groups of 64k`;
  if (s.k % s.format.group) return `K=${s.k} is not a multiple of the group ${s.format.group}`;
  if (!Number.isInteger(s.m) || s.m < 1 || s.m > TC_MAX_M) return `M=${s.m} outside 1…${TC_MAX_M}`;
  return null;
}

function gemvTcKernelName(s: GemvShape): string {
  return `gemv_tc_${s.format.id}_n${s.n}_k${s.k}_m${s.m}_${s.arch}`;
}

/** Blocks below which K is split over more warps (2 an SM on a 132-SM GPU). */
const MIN_BLOCKS = 264;

export function gemvTcPlan(s: GemvShape) {
  const why = gemvTcUnsupported(s);
  if (why) throw new Error(`CUDA tensor-core GEMV: ${why}`);
  const G = s.format.group;
  const bpg = CODE_PACKINGS.bit2.bytesPerGroup(G);
  const ng = groupsPerRow(s.format, s.k);
  const wpl = G / 64; // 16-code words a lane takes of a group row
  const tiles = Math.ceil(s.n / 16);
  const nt = Math.ceil(s.m / 8); // token tiles of 8 (the mma's n)
  // Warps of a block split the groups of one 16-row tile (4 by default, 8 on small grids).
  let wk = 4;
  while (wk < 8 && tiles < MIN_BLOCKS && ng >= 2 * wk) wk *= 2;
  while (wk > 1 && ng < wk) wk /= 2;
  const gpw = Math.ceil(ng / wk); // groups a warp
  const ub = Math.max(1, Math.min(Math.floor(8 / wpl), gpw)); // groups loaded before decoding
  return { G, bpg, ng, wpl, tiles, nt, wk, gpw, ub, rowBytes: ng * bpg };
}


export function gemvTcKernel(s: GemvShape): CudaKernel {
  const p = gemvTcPlan(s);
  const { G, bpg, ng, wpl, tiles, nt: NT, wk, gpw, ub, rowBytes } = p;
  const M = s.m;
  const N = s.n;
  const K = s.k;
  const shift = s.format.shift;
  // A lane's 4·wpl code bytes of a group row in the widest aligned vectors (the offsets t·4·wpl
  // and the group starts, multiples of 16·wpl, share that alignment).
  const lb = 4 * wpl;
  const vec = lb % 16 === 0 ? { b: 16, t: 'uint4', f: ['x', 'y', 'z', 'w'] } : lb % 8 === 0 ? { b: 8, t: 'uint2', f: ['x', 'y'] } : { b: 4, t: 'uint32_t', f: [''] };
  const loadWords = (dst: string, ptr: string) =>
    join(
      Array.from({ length: lb / vec.b }, (_, i) =>
        vec.b === 4
          ? code`${new Code(dst)}[${i}] = __ldg(reinterpret_cast<const uint32_t*>(${new Code(ptr)}) + ${i});`
          : code`{ const ${new Code(vec.t)} v = __ldg(reinterpret_cast<const ${new Code(vec.t)}*>(${new Code(ptr)}) + ${i}); ${join(
              vec.f.map((f, j) => code`${new Code(dst)}[${i * vec.f.length + j}] = v.${new Code(f)};`),
              ' ',
            )} }`,
      ),
      ' ',
    );
  const body = code`  const int warp = threadIdx.x >> 5, lane = threadIdx.x & 31, g = lane >> 2, t = lane & 3;
  const int tile = blockIdx.x;
  const int ra = min(tile * 16 + g, ${N - 1}), rb = min(tile * 16 + g + 8, ${N - 1});
  const uint8_t* ca = codes + (size_t)ra * ${rowBytes} + t * ${4 * wpl};
  const uint8_t* cb = codes + (size_t)rb * ${rowBytes} + t * ${4 * wpl};
  const int g0 = warp * ${gpw}, g1 = min(g0 + ${gpw}, ${ng});
  if (g0 < g1) {
    asm volatile("prefetch.global.L2 [%0];" :: "l"(ca + (size_t)g0 * ${bpg}));
    asm volatile("prefetch.global.L2 [%0];" :: "l"(cb + (size_t)g0 * ${bpg}));
  }
  TWLAC_GRID_WAIT();
  TWLAC_GRID_TRIGGER();
${BIT2_FP16_CONSTANTS}
  float acc[${NT}][4]; // token tile × (row g, row g+8) × (tokens 2t, 2t+1 of the tile)
  #pragma unroll
  for (int n = 0; n < ${NT}; ++n) acc[n][0] = acc[n][1] = acc[n][2] = acc[n][3] = 0.f;
  #pragma unroll 1
  for (int gb = g0; gb < g1; gb += ${ub}) {
    uint32_t wa[${ub}][${wpl}], wb[${ub}][${wpl}];
    #pragma unroll
    for (int u = 0; u < ${ub}; ++u) {
      const int gi = min(gb + u, g1 - 1);
      ${loadWords('wa[u]', `ca + (size_t)gi * ${bpg}`)}
      ${loadWords('wb[u]', `cb + (size_t)gi * ${bpg}`)}
    }
    #pragma unroll
    for (int u = 0; u < ${ub}; ++u) {
      const int gi = gb + u;
      if (gi >= g1) break;
      float d[${NT}][4];
      float xs[${NT}];
      #pragma unroll
      for (int n = 0; n < ${NT}; ++n) { d[n][0] = d[n][1] = d[n][2] = d[n][3] = 0.f; xs[n] = 0.f; }
      #pragma unroll
      for (int q = 0; q < ${wpl}; ++q) {
        const uint32_t wA = wa[u][q], wAh = wA >> 10, wB = wb[u][q], wBh = wB >> 10;
        uint32_t ta[8], tb[8]; // exact fp16 trits of pairs (p, p+8), rows g and g+8
        #pragma unroll
        for (int pp = 0; pp < 8; ++pp) {
          const int sh = pp < 5 ? pp : pp - 5;
          const uint32_t ba = ((pp < 5 ? wA : wAh) & (0x00030003u << (2 * sh))) | 0x64006400u;
          const uint32_t bb = ((pp < 5 ? wB : wBh) & (0x00030003u << (2 * sh))) | 0x64006400u;
          const __half2 va = __hfma2(*reinterpret_cast<const __half2*>(&ba), c1[sh], c2[sh]);
          const __half2 vb = __hfma2(*reinterpret_cast<const __half2*>(&bb), c1[sh], c2[sh]);
          ta[pp] = *reinterpret_cast<const uint32_t*>(&va);
          tb[pp] = *reinterpret_cast<const uint32_t*>(&vb);
        }
        #pragma unroll
        for (int n = 0; n < ${NT}; ++n) {
          // activations of this word's 16 codes for token 8n + g, paired as the digits: (p, p+8)
          const int m = 8 * n + g;
          uint4 xa = make_uint4(0u, 0u, 0u, 0u), xb = make_uint4(0u, 0u, 0u, 0u);
          if (m < T) {
            const __half* xp = a + (size_t)m * ${K} + (size_t)gi * ${G} + t * ${16 * wpl} + 16 * q;
            xa = __ldg(reinterpret_cast<const uint4*>(xp));
            xb = __ldg(reinterpret_cast<const uint4*>(xp + 8));
          }
${BIT2_FP16_PAIRED_X}
${sumWordActivations(code`xs[n]`)}
          #pragma unroll
          for (int j = 0; j < 4; ++j)
            asm volatile("mma.sync.aligned.m16n8k16.row.col.f32.f16.f16.f32 {%0,%1,%2,%3}, {%4,%5,%6,%7}, {%8,%9}, {%0,%1,%2,%3};"
                         : "+f"(d[n][0]), "+f"(d[n][1]), "+f"(d[n][2]), "+f"(d[n][3])
                         : "r"(ta[2 * j]), "r"(tb[2 * j]), "r"(ta[2 * j + 1]), "r"(tb[2 * j + 1]), "r"(xw[2 * j]), "r"(xw[2 * j + 1]));
        }
      }
      const float sa = __half2float(scales[(size_t)ra * ${ng} + gi]), sb = __half2float(scales[(size_t)rb * ${ng} + gi]);
      ${shift ? code`const float ha = __half2float(shifts[(size_t)ra * ${ng} + gi]), hb = __half2float(shifts[(size_t)rb * ${ng} + gi]);` : code`const float ha = 0.f, hb = 0.f;`}
      #pragma unroll
      for (int n = 0; n < ${NT}; ++n) {
        // Σx of the group for token 8n + g (the quad's four quarters), then for tokens 2t, 2t+1.
        float x = xs[n];
        x += __shfl_xor_sync(0xffffffffu, x, 1);
        x += __shfl_xor_sync(0xffffffffu, x, 2);
        const float x0 = __shfl_sync(0xffffffffu, x, 8 * t), x1 = __shfl_sync(0xffffffffu, x, 8 * t + 4);
        acc[n][0] += sa * d[n][0] + ha * x0;
        acc[n][1] += sa * d[n][1] + ha * x1;
        acc[n][2] += sb * d[n][2] + hb * x0;
        acc[n][3] += sb * d[n][3] + hb * x1;
      }
    }
  }
  // Sum the K-split warps: red[warp][row 0…15][token].
  __shared__ float red[${wk}][16][${8 * NT}];
  #pragma unroll
  for (int n = 0; n < ${NT}; ++n) {
    red[warp][g][8 * n + 2 * t] = acc[n][0];
    red[warp][g][8 * n + 2 * t + 1] = acc[n][1];
    red[warp][g + 8][8 * n + 2 * t] = acc[n][2];
    red[warp][g + 8][8 * n + 2 * t + 1] = acc[n][3];
  }
  __syncthreads();
  for (int i = threadIdx.x; i < ${16 * M}; i += blockDim.x) {
    const int r = i / ${M}, m = i - r * ${M};
    const int row = tile * 16 + r;
    if (row >= ${N} || m >= T) continue;
    float v = 0.f;
    #pragma unroll
    for (int w = 0; w < ${wk}; ++w) v += red[w][r][m];
    float* dst = y + (size_t)m * ${N} + row;
    *dst = accumulate ? *dst + v : v;
  }`;
  return defineKernel({
    name: gemvTcKernelName(s),
    params: { format: s.format.id, n: N, k: K, m: M, arch: s.arch, wk, ub },
    args: GEMV_F16_ARGS,
    block: wk * 32,
    grid: [code`${tiles}`, code`1`, code`1`],
    pdl: 'manual',
    body,
  });
}
