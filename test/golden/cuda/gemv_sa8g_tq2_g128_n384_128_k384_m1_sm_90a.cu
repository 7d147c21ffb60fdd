// twlac kernel gemv_sa8g_tq2_g128_n384_128_k384_m1_sm_90a(format=tq2_g128,ns=384_128,k=384,m=1,arch=sm_90a,act=u8,plans=1x1x1_1x1x1)

extern "C" __global__ void __launch_bounds__(128) gemv_sa8g_tq2_g128_n384_128_k384_m1_sm_90a(const uint8_t* __restrict__ a, const float* __restrict__ ap, const uint8_t* __restrict__ codes0, const __half* __restrict__ scales0, const __half* __restrict__ shifts0, float* __restrict__ y0, const uint8_t* __restrict__ codes1, const __half* __restrict__ scales1, const __half* __restrict__ shifts1, float* __restrict__ y1, int T, int accumulate) {

  if ((int)blockIdx.x < 96)   {
  constexpr int M_ = 1;
  const int warp = threadIdx.x >> 5, lane = threadIdx.x & 31;
  const int wrow = warp / 1, wkk = warp - wrow * 1;
  const int row0 = (((int)blockIdx.x - 0) * 4 + wrow) * 1;
  size_t rowB[1];
  int rowG[1];
  #pragma unroll
  for (int r = 0; r < 1; ++r) {
    const int row = min(row0 + r, 383);
    rowB[r] = (size_t)row * 96;
    rowG[r] = row * 3;
  }
  // Before waiting for the previous kernel: pull this lane's first chunks into L2 (weights are
  // immutable), so the loads below meet L2 instead of DRAM when the activations are ready.
  #pragma unroll
  for (int b = 0; b < 1; ++b) {
    const int c = lane + 32 * b + 32 * wkk;
    #pragma unroll
    for (int r = 0; r < 1; ++r)
      if (c < 6) asm volatile("prefetch.global.L2 [%0];" :: "l"(codes0 + rowB[r] + (size_t)c * 16));
  }
  TWLAC_GRID_WAIT();
  TWLAC_GRID_TRIGGER();
  float sq[1], zq[1];
  #pragma unroll
  for (int m = 0; m < 1; ++m) { sq[m] = m < T ? ap[2 * m] : 0.f; zq[m] = m < T ? ap[2 * m + 1] : 0.f; }
  float acc[1][1];
  #pragma unroll
  for (int r = 0; r < 1; ++r)
    #pragma unroll
    for (int m = 0; m < 1; ++m) acc[r][m] = 0.f;
  #pragma unroll 1
  for (int bt = 0; bt < 1; ++bt) {
    // Issue every load of this batch first: 1 chunk(s) × 1 rows of 16 B a lane.
    uint32_t raw[1][1][4];
    #pragma unroll
    for (int b = 0; b < 1; ++b) {
      const int c = lane + 32 * (bt * 1 + b) + 32 * wkk;
      { const uint4 v = c < 6 ? __ldg(reinterpret_cast<const uint4*>(codes0 + rowB[0]) + c) : uint4{};
        raw[b][0][0] = v.x;
        raw[b][0][1] = v.y;
        raw[b][0][2] = v.z;
        raw[b][0][3] = v.w; }
    }
    #pragma unroll
    for (int b = 0; b < 1; ++b) {
      const int c = lane + 32 * (bt * 1 + b) + 32 * wkk;
      if (c >= 6) continue;
      const int g = (c * 16) / 32;
      const int kc = g * 128 + ((c * 16) % 32) * 4; // first k of the chunk
      float sc[1], sh[1];
      #pragma unroll
      for (int r = 0; r < 1; ++r) {
        sc[r] = __half2float(scales0[rowG[r] + g]);
        sh[r] = __half2float(shifts0[rowG[r] + g]);
      }
      unsigned qsum[4] = {0u, 0u, 0u, 0u};
      int nwl = 0;
        unsigned d0[4][4] = {};
        int cs0 = 0;
      #pragma unroll
      for (int q = 0; q < 4; ++q) {
        const int kq = kc + 16 * q;
        
        ++nwl;
        #pragma unroll
        for (int m = 0; m < 1; ++m) {
          if (m >= T) break;
          const uint4 xv = __ldg(reinterpret_cast<const uint4*>(a + (size_t)m * 384 + kq));
          const uint32_t lo01 = __byte_perm(xv.x, xv.y, 0x5140), hi01 = __byte_perm(xv.x, xv.y, 0x7362);
          const uint32_t lo23 = __byte_perm(xv.z, xv.w, 0x5140), hi23 = __byte_perm(xv.z, xv.w, 0x7362);
          const uint32_t xw[4] = {__byte_perm(lo01, lo23, 0x5410), __byte_perm(lo01, lo23, 0x7632), __byte_perm(hi01, hi23, 0x5410), __byte_perm(hi01, hi23, 0x7632)};
          qsum[m] += __dp4a(xv.x, 0x01010101u, __dp4a(xv.y, 0x01010101u, __dp4a(xv.z, 0x01010101u, __dp4a(xv.w, 0x01010101u, 0u))));
          uint32_t wd[1];
          #pragma unroll
          for (int r = 0; r < 1; ++r) wd[r] = raw[b][r][q];
          { const uint32_t w = wd[0];
            if (m == 0) cs0 += __popc(w & 0x55555555u) + 2 * __popc(w & 0xaaaaaaaau);
            d0[m][0] = __dp4a(w & 0x03030303u, xw[0], d0[m][0]);
            d0[m][1] = __dp4a(w & 0x0c0c0c0cu, xw[1], d0[m][1]);
            d0[m][2] = __dp4a(w & 0x30303030u, xw[2], d0[m][2]);
            d0[m][3] = __dp4a(w & 0xc0c0c0c0u, xw[3], d0[m][3]); }
        }
      }
        #pragma unroll
        for (int m = 0; m < M_; ++m) {
          const int dq = (int)(d0[m][0] + (d0[m][1] >> 2) + (d0[m][2] >> 4) + (d0[m][3] >> 6));
          const float dot = (float)(dq - 2 * (int)qsum[m]) - zq[m] * (float)(cs0 - 32 * nwl);
          acc[0][m] += sc[0] * dot + sh[0] * ((float)qsum[m] - zq[m] * (float)(16 * nwl));
        }
    }
  }
  // Sum the lanes (and the K-split warps) of each row.
  #pragma unroll
  for (int r = 0; r < 1; ++r)
    #pragma unroll
    for (int m = 0; m < 1; ++m)
      #pragma unroll
      for (int o = 16; o > 0; o >>= 1) acc[r][m] += __shfl_xor_sync(0xffffffffu, acc[r][m], o);
  if (lane != 0) return;
  #pragma unroll
  for (int r = 0; r < 1; ++r) {
    const int row = row0 + r;
    #pragma unroll
    for (int m = 0; m < 1; ++m) {
      if (row < 384 && m < T) {
        const float v = sq[m] * acc[r][m];
        float* dst = y0 + (size_t)m * 384 + row;
        *dst = accumulate ? *dst + v : v;
      }
    }
  }
  }
  else if ((int)blockIdx.x < 128)   {
  constexpr int M_ = 1;
  const int warp = threadIdx.x >> 5, lane = threadIdx.x & 31;
  const int wrow = warp / 1, wkk = warp - wrow * 1;
  const int row0 = (((int)blockIdx.x - 96) * 4 + wrow) * 1;
  size_t rowB[1];
  int rowG[1];
  #pragma unroll
  for (int r = 0; r < 1; ++r) {
    const int row = min(row0 + r, 127);
    rowB[r] = (size_t)row * 96;
    rowG[r] = row * 3;
  }
  // Before waiting for the previous kernel: pull this lane's first chunks into L2 (weights are
  // immutable), so the loads below meet L2 instead of DRAM when the activations are ready.
  #pragma unroll
  for (int b = 0; b < 1; ++b) {
    const int c = lane + 32 * b + 32 * wkk;
    #pragma unroll
    for (int r = 0; r < 1; ++r)
      if (c < 6) asm volatile("prefetch.global.L2 [%0];" :: "l"(codes1 + rowB[r] + (size_t)c * 16));
  }
  TWLAC_GRID_WAIT();
  TWLAC_GRID_TRIGGER();
  float sq[1], zq[1];
  #pragma unroll
  for (int m = 0; m < 1; ++m) { sq[m] = m < T ? ap[2 * m] : 0.f; zq[m] = m < T ? ap[2 * m + 1] : 0.f; }
  float acc[1][1];
  #pragma unroll
  for (int r = 0; r < 1; ++r)
    #pragma unroll
    for (int m = 0; m < 1; ++m) acc[r][m] = 0.f;
  #pragma unroll 1
  for (int bt = 0; bt < 1; ++bt) {
    // Issue every load of this batch first: 1 chunk(s) × 1 rows of 16 B a lane.
    uint32_t raw[1][1][4];
    #pragma unroll
    for (int b = 0; b < 1; ++b) {
      const int c = lane + 32 * (bt * 1 + b) + 32 * wkk;
      { const uint4 v = c < 6 ? __ldg(reinterpret_cast<const uint4*>(codes1 + rowB[0]) + c) : uint4{};
        raw[b][0][0] = v.x;
        raw[b][0][1] = v.y;
        raw[b][0][2] = v.z;
        raw[b][0][3] = v.w; }
    }
    #pragma unroll
    for (int b = 0; b < 1; ++b) {
      const int c = lane + 32 * (bt * 1 + b) + 32 * wkk;
      if (c >= 6) continue;
      const int g = (c * 16) / 32;
      const int kc = g * 128 + ((c * 16) % 32) * 4; // first k of the chunk
      float sc[1], sh[1];
      #pragma unroll
      for (int r = 0; r < 1; ++r) {
        sc[r] = __half2float(scales1[rowG[r] + g]);
        sh[r] = __half2float(shifts1[rowG[r] + g]);
      }
      unsigned qsum[4] = {0u, 0u, 0u, 0u};
      int nwl = 0;
        unsigned d0[4][4] = {};
        int cs0 = 0;
      #pragma unroll
      for (int q = 0; q < 4; ++q) {
        const int kq = kc + 16 * q;
        
        ++nwl;
        #pragma unroll
        for (int m = 0; m < 1; ++m) {
          if (m >= T) break;
          const uint4 xv = __ldg(reinterpret_cast<const uint4*>(a + (size_t)m * 384 + kq));
          const uint32_t lo01 = __byte_perm(xv.x, xv.y, 0x5140), hi01 = __byte_perm(xv.x, xv.y, 0x7362);
          const uint32_t lo23 = __byte_perm(xv.z, xv.w, 0x5140), hi23 = __byte_perm(xv.z, xv.w, 0x7362);
          const uint32_t xw[4] = {__byte_perm(lo01, lo23, 0x5410), __byte_perm(lo01, lo23, 0x7632), __byte_perm(hi01, hi23, 0x5410), __byte_perm(hi01, hi23, 0x7632)};
          qsum[m] += __dp4a(xv.x, 0x01010101u, __dp4a(xv.y, 0x01010101u, __dp4a(xv.z, 0x01010101u, __dp4a(xv.w, 0x01010101u, 0u))));
          uint32_t wd[1];
          #pragma unroll
          for (int r = 0; r < 1; ++r) wd[r] = raw[b][r][q];
          { const uint32_t w = wd[0];
            if (m == 0) cs0 += __popc(w & 0x55555555u) + 2 * __popc(w & 0xaaaaaaaau);
            d0[m][0] = __dp4a(w & 0x03030303u, xw[0], d0[m][0]);
            d0[m][1] = __dp4a(w & 0x0c0c0c0cu, xw[1], d0[m][1]);
            d0[m][2] = __dp4a(w & 0x30303030u, xw[2], d0[m][2]);
            d0[m][3] = __dp4a(w & 0xc0c0c0c0u, xw[3], d0[m][3]); }
        }
      }
        #pragma unroll
        for (int m = 0; m < M_; ++m) {
          const int dq = (int)(d0[m][0] + (d0[m][1] >> 2) + (d0[m][2] >> 4) + (d0[m][3] >> 6));
          const float dot = (float)(dq - 2 * (int)qsum[m]) - zq[m] * (float)(cs0 - 32 * nwl);
          acc[0][m] += sc[0] * dot + sh[0] * ((float)qsum[m] - zq[m] * (float)(16 * nwl));
        }
    }
  }
  // Sum the lanes (and the K-split warps) of each row.
  #pragma unroll
  for (int r = 0; r < 1; ++r)
    #pragma unroll
    for (int m = 0; m < 1; ++m)
      #pragma unroll
      for (int o = 16; o > 0; o >>= 1) acc[r][m] += __shfl_xor_sync(0xffffffffu, acc[r][m], o);
  if (lane != 0) return;
  #pragma unroll
  for (int r = 0; r < 1; ++r) {
    const int row = row0 + r;
    #pragma unroll
    for (int m = 0; m < 1; ++m) {
      if (row < 128 && m < T) {
        const float v = sq[m] * acc[r][m];
        float* dst = y1 + (size_t)m * 128 + row;
        *dst = accumulate ? *dst + v : v;
      }
    }
  }
  }
}
