// twlac kernel gemv_a8_tq2_g128_n4096_k4096_m1_sm_90a(format=tq2_g128,n=4096,k=4096,m=1,arch=sm_90a,act=i8,vec=16,tu=256,rows=1,warps=8)

extern "C" __global__ void __launch_bounds__(256) gemv_a8_tq2_g128_n4096_k4096_m1_sm_90a(const uint8_t* __restrict__ a, const float* __restrict__ ap, const uint8_t* __restrict__ codes, const __half* __restrict__ scales, const __half* __restrict__ shifts, float* __restrict__ y, int T, int accumulate) {
  TWLAC_GRID_WAIT();
  TWLAC_GRID_TRIGGER();
  extern __shared__ __align__(16) unsigned char smem[];
  uint32_t* qw = reinterpret_cast<uint32_t*>(smem);
  int* qs = reinterpret_cast<int*>(smem + 4096);
  __shared__ float red[8][1][1];
  __shared__ float zq[1], sq[1];
  if (threadIdx.x < 1) {
    const bool live = (int)threadIdx.x < T;
    sq[threadIdx.x] = live ? ap[2 * threadIdx.x] : 0.f;
    zq[threadIdx.x] = live ? ap[2 * threadIdx.x + 1] : 0.f;
  }
  const int warp = threadIdx.x >> 5, lane = threadIdx.x & 31;
  { const int t0 = 0, tu = 256, nch = 64;
    __syncthreads();
    // Stage codes of this tile: word (m, p, unit) packs q at k = 16j + p + 4b in byte b.
    #pragma unroll 4
    for (int i = threadIdx.x; i < 1 * tu * 4; i += 256) {
      const int m = i / (tu * 4);
      const int rem = i - m * tu * 4;
      const int u = rem >> 2, pr = rem & 3;
      const int gl = (t0 + u) / 8, j = t0 + u - gl * 8;
      const int k0 = gl * 128 + 16 * j + pr;
      uint32_t wv = 0;
      if (m < T) {
        #pragma unroll
        for (int b = 0; b < 4; ++b) wv |= (uint32_t)a[(size_t)m * 4096 + k0 + 4 * b] << (8 * b);
      }
      const int c = u / 4, q = u - c * 4;
      qw[((m * 4 + pr) * 4 + q) * 64 + c] = wv;
    }
    __syncthreads();
    for (int i = threadIdx.x; i < 1 * tu; i += 256) {
      const int m = i / tu, u = i - m * tu;
      const int c = u / 4, q = u - c * 4;
      unsigned s = 0u;
      #pragma unroll
      for (int pr = 0; pr < 4; ++pr) s = __dp4a(qw[((m * 4 + pr) * 4 + q) * 64 + c], 0x01010101u, s);
      qs[(m * 4 + q) * 64 + c] = (int)s;
    }
    __syncthreads();
  }
  for (int rb = blockIdx.x; rb < 512; rb += gridDim.x) {
  const int row0 = (rb * 8 + warp) * 1;
  size_t rowB[1];
  int rowG[1];
  #pragma unroll
  for (int r = 0; r < 1; ++r) {
    const int row = min(row0 + r, 4095);
    rowB[r] = (size_t)row * 1024;
    rowG[r] = row * 32;
  }
  float acc[1][1];
  #pragma unroll
  for (int r = 0; r < 1; ++r)
    #pragma unroll
    for (int m = 0; m < 1; ++m) acc[r][m] = 0.f;
  for (int t0 = 0; t0 < 256; t0 += 256) {
    const int tu = min(256, 256 - t0);
    const int nch = tu / 4;

    size_t rowOff[1];
    #pragma unroll
    for (int r = 0; r < 1; ++r) rowOff[r] = rowB[r] + (size_t)t0 * 4;
    uint32_t raw[1][4];
    int c = lane;
    if (c < nch) {
      { const uint4 v = __ldg(reinterpret_cast<const uint4*>(codes + rowOff[0]) + c);
        raw[0][0] = v.x;
        raw[0][1] = v.y;
        raw[0][2] = v.z;
        raw[0][3] = v.w;
      }
    }
    for (; c < nch; c += 32) {
      uint32_t nxt[1][4];
      const int cn = min(c + 32, nch - 1);
      { const uint4 v = __ldg(reinterpret_cast<const uint4*>(codes + rowOff[0]) + cn);
        nxt[0][0] = v.x;
        nxt[0][1] = v.y;
        nxt[0][2] = v.z;
        nxt[0][3] = v.w;
      }
      { // word 0 of the vector
        const int g = (t0 + c * 4 + 0) / 8;
        const uint32_t w0 = raw[0][0];
        const int csum0 = __popc(w0 & 0x55555555u) + 2 * __popc(w0 & 0xaaaaaaaau);
        const float sc0 = __half2float(scales[rowG[0] + g]);
        const float sh0 = __half2float(shifts[rowG[0] + g]);
        #pragma unroll
        for (int m = 0; m < 1; ++m) {
          const int qsum = qs[(m * 4 + 0) * 64 + c];
          const float z = zq[m];
          unsigned cq0 = 0u;
          #pragma unroll
          for (int pr = 0; pr < 4; ++pr) {
            const unsigned qv = qw[((m * 4 + pr) * 4 + 0) * 64 + c];
            cq0 = __dp4a((w0 >> (2 * pr)) & 0x03030303u, qv, cq0); // unsigned bytes: q is 0…255
          }
          { const float dot = (float)((int)cq0 - 2 * qsum) - z * (float)(csum0 - 32);
            acc[0][m] += sc0 * dot + sh0 * ((float)qsum - 16.f * z); }
        }
      }
      { // word 1 of the vector
        const int g = (t0 + c * 4 + 1) / 8;
        const uint32_t w0 = raw[0][1];
        const int csum0 = __popc(w0 & 0x55555555u) + 2 * __popc(w0 & 0xaaaaaaaau);
        const float sc0 = __half2float(scales[rowG[0] + g]);
        const float sh0 = __half2float(shifts[rowG[0] + g]);
        #pragma unroll
        for (int m = 0; m < 1; ++m) {
          const int qsum = qs[(m * 4 + 1) * 64 + c];
          const float z = zq[m];
          unsigned cq0 = 0u;
          #pragma unroll
          for (int pr = 0; pr < 4; ++pr) {
            const unsigned qv = qw[((m * 4 + pr) * 4 + 1) * 64 + c];
            cq0 = __dp4a((w0 >> (2 * pr)) & 0x03030303u, qv, cq0); // unsigned bytes: q is 0…255
          }
          { const float dot = (float)((int)cq0 - 2 * qsum) - z * (float)(csum0 - 32);
            acc[0][m] += sc0 * dot + sh0 * ((float)qsum - 16.f * z); }
        }
      }
      { // word 2 of the vector
        const int g = (t0 + c * 4 + 2) / 8;
        const uint32_t w0 = raw[0][2];
        const int csum0 = __popc(w0 & 0x55555555u) + 2 * __popc(w0 & 0xaaaaaaaau);
        const float sc0 = __half2float(scales[rowG[0] + g]);
        const float sh0 = __half2float(shifts[rowG[0] + g]);
        #pragma unroll
        for (int m = 0; m < 1; ++m) {
          const int qsum = qs[(m * 4 + 2) * 64 + c];
          const float z = zq[m];
          unsigned cq0 = 0u;
          #pragma unroll
          for (int pr = 0; pr < 4; ++pr) {
            const unsigned qv = qw[((m * 4 + pr) * 4 + 2) * 64 + c];
            cq0 = __dp4a((w0 >> (2 * pr)) & 0x03030303u, qv, cq0); // unsigned bytes: q is 0…255
          }
          { const float dot = (float)((int)cq0 - 2 * qsum) - z * (float)(csum0 - 32);
            acc[0][m] += sc0 * dot + sh0 * ((float)qsum - 16.f * z); }
        }
      }
      { // word 3 of the vector
        const int g = (t0 + c * 4 + 3) / 8;
        const uint32_t w0 = raw[0][3];
        const int csum0 = __popc(w0 & 0x55555555u) + 2 * __popc(w0 & 0xaaaaaaaau);
        const float sc0 = __half2float(scales[rowG[0] + g]);
        const float sh0 = __half2float(shifts[rowG[0] + g]);
        #pragma unroll
        for (int m = 0; m < 1; ++m) {
          const int qsum = qs[(m * 4 + 3) * 64 + c];
          const float z = zq[m];
          unsigned cq0 = 0u;
          #pragma unroll
          for (int pr = 0; pr < 4; ++pr) {
            const unsigned qv = qw[((m * 4 + pr) * 4 + 3) * 64 + c];
            cq0 = __dp4a((w0 >> (2 * pr)) & 0x03030303u, qv, cq0); // unsigned bytes: q is 0…255
          }
          { const float dot = (float)((int)cq0 - 2 * qsum) - z * (float)(csum0 - 32);
            acc[0][m] += sc0 * dot + sh0 * ((float)qsum - 16.f * z); }
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
  for (int i = threadIdx.x; i < 8; i += 256) {
    const int w_ = i / 1, r = (i / 1) % 1, m = i % 1;
    const int row = (rb * 8 + w_) * 1 + r;
    if (row < 4096 && m < T) {
      const float v = sq[m] * red[w_][r][m];
      float* dst = y + (size_t)m * 4096 + row;
      *dst = accumulate ? *dst + v : v;
    }
  }
  __syncthreads();
  }
}
