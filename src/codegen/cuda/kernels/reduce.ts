// Reductions shared by the GEMV kernels: each warp sums its lanes' accumulators
// acc[R][M] with butterfly shuffles, lane 0 stores the warp's partial in shared
// red[warp][R][M], and the block synchronises before the partials are combined.
import { code, type Code } from '../../common/fragments.ts';

export function warpSumsToShared(R: number, M: number): Code {
  return code`  #pragma unroll
  for (int r = 0; r < ${R}; ++r) {
    #pragma unroll
    for (int m = 0; m < ${M}; ++m) {
      float v = acc[r][m];
      #pragma unroll
      for (int o = 16; o > 0; o >>= 1) v += __shfl_xor_sync(0xffffffffu, v, o);
      if (lane == 0) red[warp][r][m] = v;
    }
  }
  __syncthreads();`;
}
