// twlac kernel attn_partial_h6_kv2_d64(heads=6,kvHeads=2,d=64,chunk=64)

extern "C" __global__ void __launch_bounds__(128) attn_partial_h6_kv2_d64(const float* __restrict__ q, const __half* __restrict__ kcache, const __half* __restrict__ vcache, float* __restrict__ pm, float* __restrict__ pl, float* __restrict__ pacc, const int* __restrict__ posp, int T, int splits) {
  TWLAC_GRID_WAIT();
  TWLAC_GRID_TRIGGER();
  __shared__ float qs[64];
  __shared__ float sc[64];
  __shared__ float scratch[32];
  const int th = blockIdx.x, t = th / 6, h = th - t * 6, kh = h / 3;
  const int len = *posp + t + 1;
  const int p0 = blockIdx.y * 64, p1 = min(p0 + 64, len);
  const size_t slot = (size_t)th * splits + blockIdx.y;
  if (p0 >= p1) {
    if (threadIdx.x == 0) { pm[slot] = -INFINITY; pl[slot] = 0.f; }
    for (int i = threadIdx.x; i < 64; i += blockDim.x) pacc[slot * 64 + i] = 0.f;
    return;
  }
  for (int i = threadIdx.x; i < 64; i += blockDim.x) qs[i] = q[(size_t)t * 384 + h * 64 + i] * 1.250000000e-1f;
  __syncthreads();
  const int warp = threadIdx.x >> 5, lane = threadIdx.x & 31;
  #pragma unroll 4
  for (int p = p0 + warp; p < p1; p += 4) {
    const __half2* kr = reinterpret_cast<const __half2*>(kcache + (size_t)p * 128 + kh * 64);
    float acc = 0.f;
    #pragma unroll
    for (int j = lane; j < 32; j += 32) { const float2 kv = __half22float2(kr[j]); acc += qs[2 * j] * kv.x + qs[2 * j + 1] * kv.y; }
    #pragma unroll
    for (int o = 16; o > 0; o >>= 1) acc += __shfl_xor_sync(0xffffffffu, acc, o);
    if (lane == 0) sc[p - p0] = acc;
  }
  __syncthreads();
  float mx = -INFINITY;
  for (int p = threadIdx.x; p < p1 - p0; p += blockDim.x) mx = fmaxf(mx, sc[p]);
  mx = twlac_block_reduce<true>(mx, scratch);
  float sum = 0.f;
  for (int p = threadIdx.x; p < p1 - p0; p += blockDim.x) { const float e = expf(sc[p] - mx); sc[p] = e; sum += e; }
  sum = twlac_block_reduce<false>(sum, scratch);
  for (int i = threadIdx.x; i < 64; i += blockDim.x) {
    float acc = 0.f;
    #pragma unroll 8
    for (int p = p0; p < p1; ++p) acc += sc[p - p0] * __half2float(vcache[(size_t)p * 128 + kh * 64 + i]);
    pacc[slot * 64 + i] = acc;
  }
  if (threadIdx.x == 0) { pm[slot] = mx; pl[slot] = sum; }
}
