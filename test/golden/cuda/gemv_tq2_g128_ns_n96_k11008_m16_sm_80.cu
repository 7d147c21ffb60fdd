// twlac kernel gemv_tq2_g128_ns_n96_k11008_m16_sm_80(format=tq2_g128_ns,n=96,k=11008,m=16,arch=sm_80,unit=u4,vec=16,tu=140,rows=1,warps=8,wk=8)

extern "C" __global__ void __launch_bounds__(256) gemv_tq2_g128_ns_n96_k11008_m16_sm_80(const __half* __restrict__ a, const uint8_t* __restrict__ codes, const __half* __restrict__ scales, const __half* __restrict__ shifts, float* __restrict__ y, int T, int accumulate) {
  TWLAC_GRID_WAIT();
  TWLAC_GRID_TRIGGER();
  extern __shared__ __align__(16) unsigned char smem[];
  __half2* xp = reinterpret_cast<__half2*>(smem);
  float* xs = reinterpret_cast<float*>(smem + 71680);

  const __half2 bias2 = __halves2half2(__ushort_as_half((unsigned short)25602), __ushort_as_half((unsigned short)25602));
  __shared__ float red[8][1][16];
  const int warp = threadIdx.x >> 5, lane = threadIdx.x & 31;
  const int wrow = warp / 8, wkk = warp - wrow * 8;

  for (int rb = blockIdx.x; rb < 96; rb += gridDim.x) {
  const int row0 = (rb * 1 + wrow) * 1;
  size_t rowB[1];
  int rowG[1];
  #pragma unroll
  for (int r = 0; r < 1; ++r) {
    const int row = min(row0 + r, 95);
    rowB[r] = (size_t)row * 2752;
    rowG[r] = row * 86;
  }
  float acc[1][16];
  #pragma unroll
  for (int r = 0; r < 1; ++r)
    #pragma unroll
    for (int m = 0; m < 16; ++m) acc[r][m] = 0.f;

  for (int t0 = 0; t0 < 688; t0 += 140) { // t0: first unit of this K-tile
    const int tu = min(140, 688 - t0);
    const int nch = tu / 4;
    __syncthreads();
    // Stage activations of this tile as fp16 pairs in digit-word order.
    #pragma unroll 8
    for (int i = threadIdx.x; i < 16 * tu * 8; i += 256) {
      const int m = i / (tu * 8);
      const int rem = i - m * tu * 8;
      const int u = rem / 8;
      const int pr = rem - u * 8;
      const int gl = (t0 + u) / 8, j = t0 + u - gl * 8;
      const int kg = gl * 128;
      const int i0 = (16 * (j) + 8 * (0) + (pr));
      const int i1 = (16 * (j) + 8 * (1) + (pr));
      const bool live = m < T;
      const __half zero = __float2half(0.f);
      const __half x0 = (live && i0 < 128 && kg + i0 < 11008) ? a[m * 11008 + kg + i0] : zero;
      const __half x1 = (live && i1 < 128 && kg + i1 < 11008) ? a[m * 11008 + kg + i1] : zero;
      const int c = u / 4, q = u - c * 4;
      xp[((m * 8 + pr) * 4 + q) * 35 + c] = __halves2half2(x0, x1);
    }
    __syncthreads();
    #pragma unroll 4
    for (int i = threadIdx.x; i < 16 * tu; i += 256) {
      const int m = i / tu, u = i - m * tu;
      const int c = u / 4, q = u - c * 4;
      float s = 0.f;
      for (int pr = 0; pr < 8; ++pr) {
        const float2 f = __half22float2(xp[((m * 8 + pr) * 4 + q) * 35 + c]);
        s += f.x + f.y;
      }
      xs[(m * 4 + q) * 35 + c] = s;
    }
    __syncthreads();

    size_t rowOff[1];
    #pragma unroll
    for (int r = 0; r < 1; ++r) rowOff[r] = rowB[r] + (size_t)t0 * 4;
    uint32_t raw[1][4];
    int c = lane + 32 * wkk;
    if (c < nch) {
      { const uint4 v = __ldg(reinterpret_cast<const uint4*>(codes + rowOff[0]) + c);
        raw[0][0] = v.x;
        raw[0][1] = v.y;
        raw[0][2] = v.z;
        raw[0][3] = v.w;
      }
    }
    for (; c < nch; c += 256) {
      uint32_t nxt[1][4];
      const int cn = min(c + 256, nch - 1);
      { const uint4 v = __ldg(reinterpret_cast<const uint4*>(codes + rowOff[0]) + cn);
        nxt[0][0] = v.x;
        nxt[0][1] = v.y;
        nxt[0][2] = v.z;
        nxt[0][3] = v.w;
      }
      { // unit 0 of the vector
        const int g = (t0 + c * 4 + 0) / 8;
        const uint32_t d0 = ((uint32_t)(raw[0][0]));
        const float sc0 = __half2float(scales[rowG[0] + g]);

        #pragma unroll
        for (int m = 0; m < 16; ++m) {
          const float xsum = xs[(m * 4 + 0) * 35 + c];
          __half2 part0 = __float2half2_rn(0.f);
          #pragma unroll
          for (int pr = 0; pr < 8; ++pr) {
            const __half2 xv = xp[((m * 8 + pr) * 4 + 0) * 35 + c];
            { const uint32_t w = ((d0 >> (2 * pr)) & 0x00030003u) | 0x64006400u; // two fp16 1024+digit
              part0 = __hfma2(__hsub2(*reinterpret_cast<const __half2*>(&w), bias2), xv, part0); }
          }
          { const float2 f = __half22float2(part0);
            acc[0][m] += sc0 * (f.x + f.y); (void)xsum; }
        }
      }
      { // unit 1 of the vector
        const int g = (t0 + c * 4 + 1) / 8;
        const uint32_t d0 = ((uint32_t)(raw[0][1]));
        const float sc0 = __half2float(scales[rowG[0] + g]);

        #pragma unroll
        for (int m = 0; m < 16; ++m) {
          const float xsum = xs[(m * 4 + 1) * 35 + c];
          __half2 part0 = __float2half2_rn(0.f);
          #pragma unroll
          for (int pr = 0; pr < 8; ++pr) {
            const __half2 xv = xp[((m * 8 + pr) * 4 + 1) * 35 + c];
            { const uint32_t w = ((d0 >> (2 * pr)) & 0x00030003u) | 0x64006400u; // two fp16 1024+digit
              part0 = __hfma2(__hsub2(*reinterpret_cast<const __half2*>(&w), bias2), xv, part0); }
          }
          { const float2 f = __half22float2(part0);
            acc[0][m] += sc0 * (f.x + f.y); (void)xsum; }
        }
      }
      { // unit 2 of the vector
        const int g = (t0 + c * 4 + 2) / 8;
        const uint32_t d0 = ((uint32_t)(raw[0][2]));
        const float sc0 = __half2float(scales[rowG[0] + g]);

        #pragma unroll
        for (int m = 0; m < 16; ++m) {
          const float xsum = xs[(m * 4 + 2) * 35 + c];
          __half2 part0 = __float2half2_rn(0.f);
          #pragma unroll
          for (int pr = 0; pr < 8; ++pr) {
            const __half2 xv = xp[((m * 8 + pr) * 4 + 2) * 35 + c];
            { const uint32_t w = ((d0 >> (2 * pr)) & 0x00030003u) | 0x64006400u; // two fp16 1024+digit
              part0 = __hfma2(__hsub2(*reinterpret_cast<const __half2*>(&w), bias2), xv, part0); }
          }
          { const float2 f = __half22float2(part0);
            acc[0][m] += sc0 * (f.x + f.y); (void)xsum; }
        }
      }
      { // unit 3 of the vector
        const int g = (t0 + c * 4 + 3) / 8;
        const uint32_t d0 = ((uint32_t)(raw[0][3]));
        const float sc0 = __half2float(scales[rowG[0] + g]);

        #pragma unroll
        for (int m = 0; m < 16; ++m) {
          const float xsum = xs[(m * 4 + 3) * 35 + c];
          __half2 part0 = __float2half2_rn(0.f);
          #pragma unroll
          for (int pr = 0; pr < 8; ++pr) {
            const __half2 xv = xp[((m * 8 + pr) * 4 + 3) * 35 + c];
            { const uint32_t w = ((d0 >> (2 * pr)) & 0x00030003u) | 0x64006400u; // two fp16 1024+digit
              part0 = __hfma2(__hsub2(*reinterpret_cast<const __half2*>(&w), bias2), xv, part0); }
          }
          { const float2 f = __half22float2(part0);
            acc[0][m] += sc0 * (f.x + f.y); (void)xsum; }
        }
      }
      #pragma unroll
      for (int r = 0; r < 1; ++r)
        #pragma unroll
        for (int w = 0; w < 4; ++w) raw[r][w] = nxt[r][w];
    }
  }
  #pragma unroll
  for (int r = 0; r < 1; ++r) {
    #pragma unroll
    for (int m = 0; m < 16; ++m) {
      float v = acc[r][m];
      #pragma unroll
      for (int o = 16; o > 0; o >>= 1) v += __shfl_xor_sync(0xffffffffu, v, o);
      if (lane == 0) red[warp][r][m] = v;
    }
  }
  __syncthreads();
  for (int i = threadIdx.x; i < 16; i += blockDim.x) {
    const int wr_ = i / 16, r = (i / 16) % 1, m = i % 16;
    float v = 0.f;
    #pragma unroll
    for (int w = 0; w < 8; ++w) v += red[wr_ * 8 + w][r][m];
    const int row = (rb * 1 + wr_) * 1 + r;
    if (row < 96 && m < T) {
      float* dst = y + (size_t)m * 96 + row;
      *dst = accumulate ? *dst + v : v;
    }
  }
  __syncthreads();
  }
}
