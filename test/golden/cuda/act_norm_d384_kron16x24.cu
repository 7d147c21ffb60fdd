// twlac kernel act_norm_d384_kron16x24(source=norm,dim=384,l=16,r=24,eps=0.00001)

extern "C" __global__ void __launch_bounds__(1024) act_norm_d384_kron16x24(const float* __restrict__ src, const float* __restrict__ src2, const float* __restrict__ gamma, const float* __restrict__ beta, const float* __restrict__ C, const float* __restrict__ B, __half* __restrict__ out, uint8_t* __restrict__ q8, float* __restrict__ qp, int T, int bits, float clip) {
  TWLAC_GRID_WAIT();
  TWLAC_GRID_TRIGGER();
  extern __shared__ __align__(16) float buf[];
  __shared__ float scratch[32];
  const int t = blockIdx.x;
  float ss = 0.f;
  for (int i = threadIdx.x; i < 384; i += 1024) { const float v = src[(size_t)t * 384 + i]; ss += v * v; }
  ss = twlac_block_reduce<false>(ss, scratch);
  const float inv = rsqrtf(ss / 384.0f + 1.000000000e-5f);
  for (int i = threadIdx.x; i < 384; i += 1024) buf[i] = src[(size_t)t * 384 + i] * inv * (gamma ? gamma[i] : 1.f);
  __syncthreads();
  { // x' = C·X·Bᵀ, X = buf as [16][24]: tmp = X·Bᵀ, then buf = C·tmp
    float* tmp = buf + 384;
    for (int e = threadIdx.x; e < 384; e += blockDim.x) {
      const int a = e / 24, j = e - a * 24;
      float acc = 0.f;
      for (int b = 0; b < 24; ++b) acc += buf[a * 24 + b] * B[j * 24 + b];
      tmp[e] = acc;
    }
    __syncthreads();
    for (int e = threadIdx.x; e < 384; e += blockDim.x) {
      const int i = e / 24, j = e - i * 24;
      float acc = 0.f;
      for (int a = 0; a < 16; ++a) acc += C[i * 16 + a] * tmp[a * 24 + j];
      buf[e] = acc;
    }
  }
  __syncthreads();
  if (bits < 16) {
    // src/quant/act-quant.ts, one float32 operation at a time.
    float mn = INFINITY, mx = -INFINITY;
    for (int i = threadIdx.x; i < 384; i += 1024) { mn = fminf(mn, buf[i]); mx = fmaxf(mx, buf[i]); }
    mn = -twlac_block_reduce<true>(-mn, scratch);
    mx = twlac_block_reduce<true>(mx, scratch);
    const float L = (float)((1 << bits) - 1);
    const float lo = __fmul_rn(mn, clip), hi = __fmul_rn(mx, clip);
    const float s = __fdiv_rn(__fsub_rn(hi, lo), L);
    if (s != 0.f) {
      const float z = rintf(__fdiv_rn(-lo, s));
      for (int i = threadIdx.x; i < 384; i += 1024) {
        const float q = fminf(L, fmaxf(0.f, __fadd_rn(rintf(__fdiv_rn(buf[i], s)), z)));
        buf[i] = __fmul_rn(__fsub_rn(q, z), s);
        if (q8) q8[(size_t)t * 384 + i] = (uint8_t)q;
      }
      if (q8 && threadIdx.x == 0) { qp[2 * t] = s; qp[2 * t + 1] = z; }
    } else if (q8) { // one value v: codes 0 with z = −1 and s = v reproduce it
      for (int i = threadIdx.x; i < 384; i += 1024) q8[(size_t)t * 384 + i] = 0;
      if (threadIdx.x == 0) { qp[2 * t] = buf[0]; qp[2 * t + 1] = -1.f; }
    }
  }
  for (int i = threadIdx.x; i < 384; i += 1024) out[(size_t)t * 384 + i] = __float2half_rn(buf[i]);
}
