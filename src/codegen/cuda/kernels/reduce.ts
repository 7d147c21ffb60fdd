// Fragments shared by the CUDA-core GEMV kernels (gemv.ts, gemv-a8.ts, gemv-stream.ts).
import { code, type Code } from '../../common/fragments.ts';

/** rowB[r] (byte offset of the row's codes) and rowG[r] (index of its first group) of the R
 *  rows from row0, clamped to the last row (clamped rows are loaded but never written);
 *  counted from row `base` when given (a block's slice in shared memory). */
export function rowOffsets(R: number, N: number, rowBytes: number, ng: number, base?: Code): Code {
  return code`  size_t rowB[${R}];
  int rowG[${R}];
  #pragma unroll
  for (int r = 0; r < ${R}; ++r) {
    const int row = min(row0 + r, ${N - 1})${base ? code` - ${base}` : code``};
    rowB[r] = (size_t)row * ${rowBytes};
    rowG[r] = row * ${ng};
  }`;
}

/** float acc[R][M], zeroed. */
export function zeroAccumulators(R: number, M: number): Code {
  return code`  float acc[${R}][${M}];
  #pragma unroll
  for (int r = 0; r < ${R}; ++r)
    #pragma unroll
    for (int m = 0; m < ${M}; ++m) acc[r][m] = 0.f;`;
}

/** Each warp sums its lanes' accumulators acc[R][M] with butterfly shuffles, lane 0 stores the
 *  warp's partial in shared red[warp][R][M], and the block synchronises. */
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
