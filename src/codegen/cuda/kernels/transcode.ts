// Load-time transcoding of trit5 codes (5 trits a byte, 1.6 bits a trit: the smallest file) to
// bit2 codes (4 digits a byte, the layout the streaming GEMVs decode with one mask a pair).
// Exact: every trit keeps its value, scales and shifts are shared. One thread a group; the
// per-group function is __host__ __device__ so the tests run it on the CPU against the
// reference encoder (test/codegen/cuda.test.ts).
import { CODE_PACKINGS } from '../../../formats/ternary.ts';
import { code, ident, type Code } from '../../common/fragments.ts';
import { defineKernel, type CudaKernel } from '../kernel.ts';

/** C++ for `transcode_trit5_bit2_g<G>_group(const uint8_t* src, uint8_t* dst)`: one group. */
export function transcodeGroupFunction(G: number): Code {
  if (G % 4) throw new Error(`transcode: group ${G} is not a multiple of 4`);
  const inB = CODE_PACKINGS.trit5.bytesPerGroup(G);
  const outB = CODE_PACKINGS.bit2.bytesPerGroup(G);
  return code`__host__ __device__ __forceinline__ void ${ident(`transcode_trit5_bit2_g${G}_group`)}(const uint8_t* src, uint8_t* dst) {
  // trit5 digit d5 = t + 1 (base 3, least significant first); bit2 digit d2 = t + 2 = d5 + 1.
  uint32_t acc = 0u;
  int k = 0;
  for (int i = 0; i < ${inB}; ++i) {
    uint32_t v = src[i];
    for (int j = 0; j < 5 && k < ${G}; ++j, ++k) {
      acc |= (v % 3u + 1u) << (2 * (k & 15));
      v /= 3u;
      if ((k & 15) == 15) { for (int b = 0; b < 4; ++b) dst[(k >> 2) - 3 + b] = (uint8_t)(acc >> (8 * b)); acc = 0u; }
    }
  }
  for (int b = 0; b < ${outB} - ((${G} >> 4) << 2); ++b) dst[((${G} >> 4) << 2) + b] = (uint8_t)(acc >> (8 * b));
}`;
}

export function transcodeKernel(G: number): CudaKernel {
  const inB = CODE_PACKINGS.trit5.bytesPerGroup(G);
  const outB = CODE_PACKINGS.bit2.bytesPerGroup(G);
  const fn = ident(`transcode_trit5_bit2_g${G}_group`);
  return defineKernel({
    name: `transcode_trit5_bit2_g${G}`,
    params: { group: G },
    args: [
      { name: 'src', type: 'const uint8_t*' },
      { name: 'dst', type: 'uint8_t*' },
      { name: 'groups', type: 'int' },
    ],
    block: 256,
    grid: [code`(groups + 255) / 256`, code`1`, code`1`],
    prelude: transcodeGroupFunction(G),
    body: code`  const int g = blockIdx.x * blockDim.x + threadIdx.x;
  if (g < groups) ${fn}(src + (size_t)g * ${inB}, dst + (size_t)g * ${outB});`,
  });
}
