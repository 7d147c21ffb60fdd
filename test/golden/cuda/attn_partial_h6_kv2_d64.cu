// twlac kernel attn_partial_h6_kv2_d64(heads=6,kvHeads=2,d=64,chunk=64)

extern "C" __global__ void __launch_bounds__(128) attn_partial_h6_kv2_d64(const float* __restrict__ q, const __half* __restrict__ kcache, const __half* __restrict__ vcache, float* __restrict__ pm, float* __restrict__ pl, float* __restrict__ pacc, const int* __restrict__ posp, unsigned long long seq, int T, int splits) {
  TWLAC_GRID_WAIT();
  TWLAC_GRID_TRIGGER();
  __shared__ float qs[64];
  __shared__ float sc[64];
  __shared__ float scratch[32];
  const int th = blockIdx.x, t = th / 6, h = th - t * 6, kh = h / 3;
  const int len = (seq ? posp[t] : *posp + t) + 1;
  kcache += t * seq;
  vcache += t * seq;
  const int p0 = blockIdx.y * 64, p1 = min(p0 + 64, len);
  const size_t slot = (size_t)th * splits + blockIdx.y;
  if (p0 >= p1) {
    if (threadIdx.x == 0) { pm[slot] = -INFINITY; pl[slot] = 0.f; }
    for (int i = threadIdx.x; i < 64; i += blockDim.x) pacc[slot * 64 + i] = 0.f;
    return;
  }
  for (int i = threadIdx.x; i < 64; i += blockDim.x) qs[i] = q[(size_t)t * 384 + h * 64 + i] * 1.250000000e-1f;
  __syncthreads();
  // Scores: two threads a position, each a half of the head's dims in 16-byte loads.
  {
    const int pl_ = threadIdx.x >> 1, hf = threadIdx.x & 1, p = p0 + pl_;
    float acc = 0.f;
    if (p < p1) {
      const uint4* kr = reinterpret_cast<const uint4*>(kcache + (size_t)p * 128 + kh * 64 + hf * 32);
      #pragma unroll
      for (int j = 0; j < 4; ++j) {
        const uint4 u = kr[j];
        const __half2* hv = reinterpret_cast<const __half2*>(&u);
        #pragma unroll
        for (int e = 0; e < 4; ++e) {
          const float2 f = __half22float2(hv[e]);
          acc += qs[hf * 32 + 8 * j + 2 * e] * f.x + qs[hf * 32 + 8 * j + 2 * e + 1] * f.y;
        }
      }
    }
    acc += __shfl_xor_sync(0xffffffffu, acc, 1);
    if (hf == 0 && p < p1) sc[pl_] = acc;
  }
  __syncthreads();
  float mx = -INFINITY;
  for (int p = threadIdx.x; p < p1 - p0; p += blockDim.x) mx = fmaxf(mx, sc[p]);
  mx = twlac_block_reduce<true>(mx, scratch);
  float sum = 0.f;
  for (int p = threadIdx.x; p < p1 - p0; p += blockDim.x) { const float e = expf(sc[p] - mx); sc[p] = e; sum += e; }
  sum = twlac_block_reduce<false>(sum, scratch);
  // Σ_p e_p·v_p: a thread a dim pair and every 4th position, then the groups summed.
  {
    constexpr int NG = 4;
    __shared__ float2 vs[NG][32];
    const int j = threadIdx.x % 32, gi = threadIdx.x / 32;
    float2 acc = make_float2(0.f, 0.f);
    #pragma unroll 8
    for (int p = p0 + gi; p < p1; p += NG) {
      const float2 f = __half22float2(reinterpret_cast<const __half2*>(vcache + (size_t)p * 128 + kh * 64)[j]);
      const float e = sc[p - p0];
      acc.x += e * f.x;
      acc.y += e * f.y;
    }
    vs[gi][j] = acc;
    __syncthreads();
    if (gi == 0) {
      #pragma unroll
      for (int g = 1; g < NG; ++g) { acc.x += vs[g][j].x; acc.y += vs[g][j].y; }
      pacc[slot * 64 + 2 * j] = acc.x;
      pacc[slot * 64 + 2 * j + 1] = acc.y;
    }
  }
  if (threadIdx.x == 0) { pm[slot] = mx; pl[slot] = sum; }
}
