// twlac kernel gemv_tq1_g128_n256_k4096_m1_sm_90a(format=tq1_g128,n=256,k=4096,m=1,arch=sm_90a,unit=u2,vec=16,tu=416,rows=1,warps=8,wk=8)

extern "C" __global__ void __launch_bounds__(256) gemv_tq1_g128_n256_k4096_m1_sm_90a(const __half* __restrict__ a, const uint8_t* __restrict__ codes, const __half* __restrict__ scales, const __half* __restrict__ shifts, float* __restrict__ y, int T, int accumulate) {
  TWLAC_GRID_WAIT();
  TWLAC_GRID_TRIGGER();
  extern __shared__ __align__(16) unsigned char smem[];
  __half2* xp = reinterpret_cast<__half2*>(smem);
  float* xs = reinterpret_cast<float*>(smem + 9984);
  uint32_t* lut = reinterpret_cast<uint32_t*>(smem + 11648);
  for (int v = threadIdx.x; v < 256; v += blockDim.x) lut[v] = ((((unsigned)v) / 1u % 3u) | (((unsigned)v) / 3u % 3u) << 2 | (((unsigned)v) / 9u % 3u) << 4 | (((unsigned)v) / 27u % 3u) << 6 | (((unsigned)v) / 81u % 3u) << 8);
  const __half2 bias2 = __halves2half2(__ushort_as_half((unsigned short)25601), __ushort_as_half((unsigned short)25601));
  __shared__ float red[8][1][1];
  const int warp = threadIdx.x >> 5, lane = threadIdx.x & 31;
  const int wrow = warp / 8, wkk = warp - wrow * 8;
  { const int t0 = 0, tu = 416, nch = 52;
    __syncthreads();
    // Stage activations of this tile as fp16 pairs in digit-word order.
    #pragma unroll 8
    for (int i = threadIdx.x; i < 1 * tu * 5; i += 256) {
      const int m = i / (tu * 5);
      const int rem = i - m * tu * 5;
      const int u = rem / 5;
      const int pr = rem - u * 5;
      const int gl = (t0 + u) / 13, j = t0 + u - gl * 13;
      const int kg = gl * 128;
      const int i0 = ((2 * (j) + (0)) * 5 + (pr));
      const int i1 = ((2 * (j) + (1)) * 5 + (pr));
      const bool live = m < T;
      const __half zero = __float2half(0.f);
      const __half x0 = (live && i0 < 128 && kg + i0 < 4096) ? a[m * 4096 + kg + i0] : zero;
      const __half x1 = (live && i1 < 128 && kg + i1 < 4096) ? a[m * 4096 + kg + i1] : zero;
      const int c = u / 8, q = u - c * 8;
      xp[((m * 6 + pr) * 8 + q) * 52 + c] = __halves2half2(x0, x1);
    }
    __syncthreads();
    #pragma unroll 4
    for (int i = threadIdx.x; i < 1 * tu; i += 256) {
      const int m = i / tu, u = i - m * tu;
      const int c = u / 8, q = u - c * 8;
      float s = 0.f;
      for (int pr = 0; pr < 5; ++pr) {
        const float2 f = __half22float2(xp[((m * 6 + pr) * 8 + q) * 52 + c]);
        s += f.x + f.y;
      }
      xs[(m * 8 + q) * 52 + c] = s;
    }
    __syncthreads();
  }
  for (int rb = blockIdx.x; rb < 256; rb += gridDim.x) {
  const int row0 = (rb * 1 + wrow) * 1;
  size_t rowB[1];
  int rowG[1];
  #pragma unroll
  for (int r = 0; r < 1; ++r) {
    const int row = min(row0 + r, 255);
    rowB[r] = (size_t)row * 832;
    rowG[r] = row * 32;
  }
  float acc[1][1];
  #pragma unroll
  for (int r = 0; r < 1; ++r)
    #pragma unroll
    for (int m = 0; m < 1; ++m) acc[r][m] = 0.f;

  for (int t0 = 0; t0 < 416; t0 += 416) { // t0: first unit of this K-tile
    const int tu = min(416, 416 - t0);
    const int nch = tu / 8;

    size_t rowOff[1];
    #pragma unroll
    for (int r = 0; r < 1; ++r) rowOff[r] = rowB[r] + (size_t)t0 * 2;
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
        const int g = (t0 + c * 8 + 0) / 13;
        const uint32_t d0 = ((uint32_t)lut[(raw[0][0]) & 0xffu] | ((uint32_t)lut[((raw[0][0]) >> 8) & 0xffu] << 16));
        const float sc0 = __half2float(scales[rowG[0] + g]);
        const float sh0 = __half2float(shifts[rowG[0] + g]);
        #pragma unroll
        for (int m = 0; m < 1; ++m) {
          const float xsum = xs[(m * 8 + 0) * 52 + c];
          __half2 part0 = __float2half2_rn(0.f);
          #pragma unroll
          for (int pr = 0; pr < 5; ++pr) {
            const __half2 xv = xp[((m * 6 + pr) * 8 + 0) * 52 + c];
            { const uint32_t w = ((d0 >> (2 * pr)) & 0x00030003u) | 0x64006400u; // two fp16 1024+digit
              part0 = __hfma2(__hsub2(*reinterpret_cast<const __half2*>(&w), bias2), xv, part0); }
          }
          { const float2 f = __half22float2(part0);
            acc[0][m] += sc0 * (f.x + f.y) + sh0 * xsum; }
        }
      }
      { // unit 1 of the vector
        const int g = (t0 + c * 8 + 1) / 13;
        const uint32_t d0 = ((uint32_t)lut[((raw[0][0] >> 16)) & 0xffu] | ((uint32_t)lut[(((raw[0][0] >> 16)) >> 8) & 0xffu] << 16));
        const float sc0 = __half2float(scales[rowG[0] + g]);
        const float sh0 = __half2float(shifts[rowG[0] + g]);
        #pragma unroll
        for (int m = 0; m < 1; ++m) {
          const float xsum = xs[(m * 8 + 1) * 52 + c];
          __half2 part0 = __float2half2_rn(0.f);
          #pragma unroll
          for (int pr = 0; pr < 5; ++pr) {
            const __half2 xv = xp[((m * 6 + pr) * 8 + 1) * 52 + c];
            { const uint32_t w = ((d0 >> (2 * pr)) & 0x00030003u) | 0x64006400u; // two fp16 1024+digit
              part0 = __hfma2(__hsub2(*reinterpret_cast<const __half2*>(&w), bias2), xv, part0); }
          }
          { const float2 f = __half22float2(part0);
            acc[0][m] += sc0 * (f.x + f.y) + sh0 * xsum; }
        }
      }
      { // unit 2 of the vector
        const int g = (t0 + c * 8 + 2) / 13;
        const uint32_t d0 = ((uint32_t)lut[(raw[0][1]) & 0xffu] | ((uint32_t)lut[((raw[0][1]) >> 8) & 0xffu] << 16));
        const float sc0 = __half2float(scales[rowG[0] + g]);
        const float sh0 = __half2float(shifts[rowG[0] + g]);
        #pragma unroll
        for (int m = 0; m < 1; ++m) {
          const float xsum = xs[(m * 8 + 2) * 52 + c];
          __half2 part0 = __float2half2_rn(0.f);
          #pragma unroll
          for (int pr = 0; pr < 5; ++pr) {
            const __half2 xv = xp[((m * 6 + pr) * 8 + 2) * 52 + c];
            { const uint32_t w = ((d0 >> (2 * pr)) & 0x00030003u) | 0x64006400u; // two fp16 1024+digit
              part0 = __hfma2(__hsub2(*reinterpret_cast<const __half2*>(&w), bias2), xv, part0); }
          }
          { const float2 f = __half22float2(part0);
            acc[0][m] += sc0 * (f.x + f.y) + sh0 * xsum; }
        }
      }
      { // unit 3 of the vector
        const int g = (t0 + c * 8 + 3) / 13;
        const uint32_t d0 = ((uint32_t)lut[((raw[0][1] >> 16)) & 0xffu] | ((uint32_t)lut[(((raw[0][1] >> 16)) >> 8) & 0xffu] << 16));
        const float sc0 = __half2float(scales[rowG[0] + g]);
        const float sh0 = __half2float(shifts[rowG[0] + g]);
        #pragma unroll
        for (int m = 0; m < 1; ++m) {
          const float xsum = xs[(m * 8 + 3) * 52 + c];
          __half2 part0 = __float2half2_rn(0.f);
          #pragma unroll
          for (int pr = 0; pr < 5; ++pr) {
            const __half2 xv = xp[((m * 6 + pr) * 8 + 3) * 52 + c];
            { const uint32_t w = ((d0 >> (2 * pr)) & 0x00030003u) | 0x64006400u; // two fp16 1024+digit
              part0 = __hfma2(__hsub2(*reinterpret_cast<const __half2*>(&w), bias2), xv, part0); }
          }
          { const float2 f = __half22float2(part0);
            acc[0][m] += sc0 * (f.x + f.y) + sh0 * xsum; }
        }
      }
      { // unit 4 of the vector
        const int g = (t0 + c * 8 + 4) / 13;
        const uint32_t d0 = ((uint32_t)lut[(raw[0][2]) & 0xffu] | ((uint32_t)lut[((raw[0][2]) >> 8) & 0xffu] << 16));
        const float sc0 = __half2float(scales[rowG[0] + g]);
        const float sh0 = __half2float(shifts[rowG[0] + g]);
        #pragma unroll
        for (int m = 0; m < 1; ++m) {
          const float xsum = xs[(m * 8 + 4) * 52 + c];
          __half2 part0 = __float2half2_rn(0.f);
          #pragma unroll
          for (int pr = 0; pr < 5; ++pr) {
            const __half2 xv = xp[((m * 6 + pr) * 8 + 4) * 52 + c];
            { const uint32_t w = ((d0 >> (2 * pr)) & 0x00030003u) | 0x64006400u; // two fp16 1024+digit
              part0 = __hfma2(__hsub2(*reinterpret_cast<const __half2*>(&w), bias2), xv, part0); }
          }
          { const float2 f = __half22float2(part0);
            acc[0][m] += sc0 * (f.x + f.y) + sh0 * xsum; }
        }
      }
      { // unit 5 of the vector
        const int g = (t0 + c * 8 + 5) / 13;
        const uint32_t d0 = ((uint32_t)lut[((raw[0][2] >> 16)) & 0xffu] | ((uint32_t)lut[(((raw[0][2] >> 16)) >> 8) & 0xffu] << 16));
        const float sc0 = __half2float(scales[rowG[0] + g]);
        const float sh0 = __half2float(shifts[rowG[0] + g]);
        #pragma unroll
        for (int m = 0; m < 1; ++m) {
          const float xsum = xs[(m * 8 + 5) * 52 + c];
          __half2 part0 = __float2half2_rn(0.f);
          #pragma unroll
          for (int pr = 0; pr < 5; ++pr) {
            const __half2 xv = xp[((m * 6 + pr) * 8 + 5) * 52 + c];
            { const uint32_t w = ((d0 >> (2 * pr)) & 0x00030003u) | 0x64006400u; // two fp16 1024+digit
              part0 = __hfma2(__hsub2(*reinterpret_cast<const __half2*>(&w), bias2), xv, part0); }
          }
          { const float2 f = __half22float2(part0);
            acc[0][m] += sc0 * (f.x + f.y) + sh0 * xsum; }
        }
      }
      { // unit 6 of the vector
        const int g = (t0 + c * 8 + 6) / 13;
        const uint32_t d0 = ((uint32_t)lut[(raw[0][3]) & 0xffu] | ((uint32_t)lut[((raw[0][3]) >> 8) & 0xffu] << 16));
        const float sc0 = __half2float(scales[rowG[0] + g]);
        const float sh0 = __half2float(shifts[rowG[0] + g]);
        #pragma unroll
        for (int m = 0; m < 1; ++m) {
          const float xsum = xs[(m * 8 + 6) * 52 + c];
          __half2 part0 = __float2half2_rn(0.f);
          #pragma unroll
          for (int pr = 0; pr < 5; ++pr) {
            const __half2 xv = xp[((m * 6 + pr) * 8 + 6) * 52 + c];
            { const uint32_t w = ((d0 >> (2 * pr)) & 0x00030003u) | 0x64006400u; // two fp16 1024+digit
              part0 = __hfma2(__hsub2(*reinterpret_cast<const __half2*>(&w), bias2), xv, part0); }
          }
          { const float2 f = __half22float2(part0);
            acc[0][m] += sc0 * (f.x + f.y) + sh0 * xsum; }
        }
      }
      { // unit 7 of the vector
        const int g = (t0 + c * 8 + 7) / 13;
        const uint32_t d0 = ((uint32_t)lut[((raw[0][3] >> 16)) & 0xffu] | ((uint32_t)lut[(((raw[0][3] >> 16)) >> 8) & 0xffu] << 16));
        const float sc0 = __half2float(scales[rowG[0] + g]);
        const float sh0 = __half2float(shifts[rowG[0] + g]);
        #pragma unroll
        for (int m = 0; m < 1; ++m) {
          const float xsum = xs[(m * 8 + 7) * 52 + c];
          __half2 part0 = __float2half2_rn(0.f);
          #pragma unroll
          for (int pr = 0; pr < 5; ++pr) {
            const __half2 xv = xp[((m * 6 + pr) * 8 + 7) * 52 + c];
            { const uint32_t w = ((d0 >> (2 * pr)) & 0x00030003u) | 0x64006400u; // two fp16 1024+digit
              part0 = __hfma2(__hsub2(*reinterpret_cast<const __half2*>(&w), bias2), xv, part0); }
          }
          { const float2 f = __half22float2(part0);
            acc[0][m] += sc0 * (f.x + f.y) + sh0 * xsum; }
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
    for (int m = 0; m < 1; ++m) {
      float v = acc[r][m];
      #pragma unroll
      for (int o = 16; o > 0; o >>= 1) v += __shfl_xor_sync(0xffffffffu, v, o);
      if (lane == 0) red[warp][r][m] = v;
    }
  }
  __syncthreads();
  for (int i = threadIdx.x; i < 1; i += blockDim.x) {
    const int wr_ = i / 1, r = (i / 1) % 1, m = i % 1;
    float v = 0.f;
    #pragma unroll
    for (int w = 0; w < 8; ++w) v += red[wr_ * 8 + w][r][m];
    const int row = (rb * 1 + wr_) * 1 + r;
    if (row < 256 && m < T) {
      float* dst = y + (size_t)m * 256 + row;
      *dst = accumulate ? *dst + v : v;
    }
  }
  __syncthreads();
  }
}
