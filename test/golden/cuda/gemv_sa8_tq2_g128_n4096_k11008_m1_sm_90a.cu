// twlac kernel gemv_sa8_tq2_g128_n4096_k11008_m1_sm_90a(format=tq2_g128,n=4096,k=11008,m=1,arch=sm_90a,act=u8,vec=16,rows=4,warps=4,wk=2,ub=1,bulk=3,xbulk=1)

extern "C" __global__ void __launch_bounds__(128) gemv_sa8_tq2_g128_n4096_k11008_m1_sm_90a(const uint8_t* __restrict__ a, const float* __restrict__ ap, const uint8_t* __restrict__ codes, const __half* __restrict__ scales, const __half* __restrict__ shifts, float* __restrict__ y, int T, int accumulate) {

  __shared__ __align__(128) uint8_t twlac_wsm[24768];
  __shared__ __align__(8) uint64_t twlac_wbar[3];
  __shared__ __align__(128) uint8_t twlac_xbk[11008];
  __shared__ __align__(8) uint64_t twlac_xbar[3];
  {
  constexpr int M_ = 1;
  const int warp = threadIdx.x >> 5, lane = threadIdx.x & 31;
  const int wrow = warp / 2, wkk = warp - wrow * 2;
  const int row0 = ((int)blockIdx.x * 2 + wrow) * 4;
  const int brow0 = (int)blockIdx.x * 8;
  const uint32_t bar = (uint32_t)__cvta_generic_to_shared(twlac_wbar);
  const uint32_t slice = (uint32_t)__cvta_generic_to_shared(twlac_wsm);
  const uint32_t xbar = (uint32_t)__cvta_generic_to_shared(twlac_xbar); // the activations' phases (xbulk)
  const uint32_t bnr = (uint32_t)min(8, 4096 - brow0);
  if (threadIdx.x == 0) {
    #pragma unroll
    for (int i = 0; i < 3; ++i) asm volatile("mbarrier.init.shared::cta.b64 [%0], 1;" :: "r"(bar + 8 * i) : "memory");
    #pragma unroll
    for (int i = 0; i < 3; ++i) asm volatile("mbarrier.init.shared::cta.b64 [%0], 1;" :: "r"(xbar + 8 * i) : "memory");
    asm volatile("fence.proxy.async.shared::cta;" ::: "memory");
    asm volatile("{ .reg .b64 st; mbarrier.arrive.expect_tx.shared::cta.b64 st, [%0], %1; }" :: "r"(bar + 0), "r"(bnr * 1368u) : "memory");
    asm volatile("{ .reg .b64 st; mbarrier.arrive.expect_tx.shared::cta.b64 st, [%0], %1; }" :: "r"(bar + 8), "r"(bnr * 1024u) : "memory");
    asm volatile("{ .reg .b64 st; mbarrier.arrive.expect_tx.shared::cta.b64 st, [%0], %1; }" :: "r"(bar + 16), "r"(bnr * 704u) : "memory");
  }
  __syncwarp();
  if (threadIdx.x < 32) {
    for (uint32_t j = threadIdx.x; j < 3 * bnr; j += 32) {
      const uint32_t ph = j / bnr, r = j - ph * bnr, off = (ph == 0 ? 0u : (ph == 1 ? 1024u : 2048u));
      asm volatile("cp.async.bulk.shared::cluster.global.mbarrier::complete_tx::bytes [%0], [%1], %2, [%3];" :: "r"(slice + r * 2752u + off), "l"(codes + (size_t)(brow0 + r) * 2752 + off), "r"((ph == 0 ? 1024u : (ph == 1 ? 1024u : 704u))), "r"(bar + 8 * ph) : "memory");
    }
    if (threadIdx.x == 31) {
      asm volatile("cp.async.bulk.shared::cluster.global.mbarrier::complete_tx::bytes [%0], [%1], %2, [%3];" :: "r"(slice + 22016u), "l"(scales + (size_t)brow0 * 86), "r"(bnr * 172u), "r"(bar) : "memory");
      asm volatile("cp.async.bulk.shared::cluster.global.mbarrier::complete_tx::bytes [%0], [%1], %2, [%3];" :: "r"(slice + 23392u), "l"(shifts + (size_t)brow0 * 86), "r"(bnr * 172u), "r"(bar) : "memory");
    }
  }
  __syncthreads(); // the mbarriers are initialised before any thread waits on them
  const uint8_t* const wc = twlac_wsm;
  const __half* const wsc = reinterpret_cast<const __half*>(twlac_wsm + 22016);
  const __half* const wsh = reinterpret_cast<const __half*>(twlac_wsm + 23392);
  int landed = 0; // phases this thread has seen land
  size_t rowB[4];
  int rowG[4];
  #pragma unroll
  for (int r = 0; r < 4; ++r) {
    const int row = min(row0 + r, 4095) - brow0;
    rowB[r] = (size_t)row * 2752;
    rowG[r] = row * 86;
  }
  TWLAC_GRID_WAIT();
  if (threadIdx.x == 0) {
    const uint32_t xs = (uint32_t)__cvta_generic_to_shared(twlac_xbk);
    asm volatile("{ .reg .b64 st; mbarrier.arrive.expect_tx.shared::cta.b64 st, [%0], %1; }" :: "r"(xbar + 0), "r"(4096u) : "memory");
    asm volatile("cp.async.bulk.shared::cluster.global.mbarrier::complete_tx::bytes [%0], [%1], %2, [%3];" :: "r"(xs + 0u), "l"(a + 0), "r"(4096u), "r"(xbar + 0) : "memory");
    asm volatile("{ .reg .b64 st; mbarrier.arrive.expect_tx.shared::cta.b64 st, [%0], %1; }" :: "r"(xbar + 8), "r"(4096u) : "memory");
    asm volatile("cp.async.bulk.shared::cluster.global.mbarrier::complete_tx::bytes [%0], [%1], %2, [%3];" :: "r"(xs + 4096u), "l"(a + 4096), "r"(4096u), "r"(xbar + 8) : "memory");
    asm volatile("{ .reg .b64 st; mbarrier.arrive.expect_tx.shared::cta.b64 st, [%0], %1; }" :: "r"(xbar + 16), "r"(2816u) : "memory");
    asm volatile("cp.async.bulk.shared::cluster.global.mbarrier::complete_tx::bytes [%0], [%1], %2, [%3];" :: "r"(xs + 8192u), "l"(a + 8192), "r"(2816u), "r"(xbar + 16) : "memory");
  }
  TWLAC_GRID_TRIGGER();
  float sq[1], zq[1];
  #pragma unroll
  for (int m = 0; m < 1; ++m) { sq[m] = m < T ? ap[2 * m] : 0.f; zq[m] = m < T ? ap[2 * m + 1] : 0.f; }
  float acc[4][1];
  #pragma unroll
  for (int r = 0; r < 4; ++r)
    #pragma unroll
    for (int m = 0; m < 1; ++m) acc[r][m] = 0.f;
  #pragma unroll 1
  for (int bt = 0; bt < 3; ++bt) {
    // Issue every load of this batch first: 1 chunk(s) × 4 rows of 16 B a lane.
    uint32_t raw[1][4][4];
    {
      const int need = ((bt + 1) * 3 - 1) / 3; // the phase of batch bt
      for (; landed <= need; ++landed) {
        uint32_t done = 0;
        while (!done)
          asm volatile("{ .reg .pred p; mbarrier.try_wait.parity.shared::cta.b64 p, [%1], 0; selp.u32 %0, 1, 0, p; }" : "=r"(done) : "r"(bar + 8 * landed) : "memory");
        done = 0; // and the phase's activations
        while (!done)
          asm volatile("{ .reg .pred p; mbarrier.try_wait.parity.shared::cta.b64 p, [%1], 0; selp.u32 %0, 1, 0, p; }" : "=r"(done) : "r"(xbar + 8 * landed) : "memory");
      }
    }
    #pragma unroll
    for (int b = 0; b < 1; ++b) {
      const int c = lane + 64 * (bt * 1 + b) + 32 * wkk;
      { const uint4 v = c < 172 ? *(reinterpret_cast<const uint4*>(wc + rowB[0]) + c) : uint4{};
        raw[b][0][0] = v.x;
        raw[b][0][1] = v.y;
        raw[b][0][2] = v.z;
        raw[b][0][3] = v.w; }
      { const uint4 v = c < 172 ? *(reinterpret_cast<const uint4*>(wc + rowB[1]) + c) : uint4{};
        raw[b][1][0] = v.x;
        raw[b][1][1] = v.y;
        raw[b][1][2] = v.z;
        raw[b][1][3] = v.w; }
      { const uint4 v = c < 172 ? *(reinterpret_cast<const uint4*>(wc + rowB[2]) + c) : uint4{};
        raw[b][2][0] = v.x;
        raw[b][2][1] = v.y;
        raw[b][2][2] = v.z;
        raw[b][2][3] = v.w; }
      { const uint4 v = c < 172 ? *(reinterpret_cast<const uint4*>(wc + rowB[3]) + c) : uint4{};
        raw[b][3][0] = v.x;
        raw[b][3][1] = v.y;
        raw[b][3][2] = v.z;
        raw[b][3][3] = v.w; }
    }
    #pragma unroll
    for (int b = 0; b < 1; ++b) {
      const int c = lane + 64 * (bt * 1 + b) + 32 * wkk;
      if (c >= 172) continue;
      const int g = (c * 16) / 32;
      const int kc = g * 128 + ((c * 16) % 32) * 4; // first k of the chunk
      float sc[4], sh[4];
      #pragma unroll
      for (int r = 0; r < 4; ++r) {
        sc[r] = __half2float(wsc[rowG[r] + g]);
        sh[r] = __half2float(wsh[rowG[r] + g]);
      }
      unsigned qsum[4] = {0u, 0u, 0u, 0u};
      int nwl = 0;
        unsigned d0[4][4] = {};
        int cs0 = 0;
        unsigned d1[4][4] = {};
        int cs1 = 0;
        unsigned d2[4][4] = {};
        int cs2 = 0;
        unsigned d3[4][4] = {};
        int cs3 = 0;
      #pragma unroll
      for (int q = 0; q < 4; ++q) {
        const int kq = kc + 16 * q;
        
        ++nwl;
        #pragma unroll
        for (int m = 0; m < 1; ++m) {
          if (m >= T) break;
          const uint4 xv = *reinterpret_cast<const uint4*>(twlac_xbk + kq);
          const uint32_t lo01 = __byte_perm(xv.x, xv.y, 0x5140), hi01 = __byte_perm(xv.x, xv.y, 0x7362);
          const uint32_t lo23 = __byte_perm(xv.z, xv.w, 0x5140), hi23 = __byte_perm(xv.z, xv.w, 0x7362);
          const uint32_t xw[4] = {__byte_perm(lo01, lo23, 0x5410), __byte_perm(lo01, lo23, 0x7632), __byte_perm(hi01, hi23, 0x5410), __byte_perm(hi01, hi23, 0x7632)};
          qsum[m] += __dp4a(xv.x, 0x01010101u, __dp4a(xv.y, 0x01010101u, __dp4a(xv.z, 0x01010101u, __dp4a(xv.w, 0x01010101u, 0u))));
          uint32_t wd[4];
          #pragma unroll
          for (int r = 0; r < 4; ++r) wd[r] = raw[b][r][q];
          { const uint32_t w = wd[0];
            if (m == 0) cs0 += __popc(w & 0x55555555u) + 2 * __popc(w & 0xaaaaaaaau);
            d0[m][0] = __dp4a(w & 0x03030303u, xw[0], d0[m][0]);
            d0[m][1] = __dp4a(w & 0x0c0c0c0cu, xw[1], d0[m][1]);
            d0[m][2] = __dp4a(w & 0x30303030u, xw[2], d0[m][2]);
            d0[m][3] = __dp4a(w & 0xc0c0c0c0u, xw[3], d0[m][3]); }
          { const uint32_t w = wd[1];
            if (m == 0) cs1 += __popc(w & 0x55555555u) + 2 * __popc(w & 0xaaaaaaaau);
            d1[m][0] = __dp4a(w & 0x03030303u, xw[0], d1[m][0]);
            d1[m][1] = __dp4a(w & 0x0c0c0c0cu, xw[1], d1[m][1]);
            d1[m][2] = __dp4a(w & 0x30303030u, xw[2], d1[m][2]);
            d1[m][3] = __dp4a(w & 0xc0c0c0c0u, xw[3], d1[m][3]); }
          { const uint32_t w = wd[2];
            if (m == 0) cs2 += __popc(w & 0x55555555u) + 2 * __popc(w & 0xaaaaaaaau);
            d2[m][0] = __dp4a(w & 0x03030303u, xw[0], d2[m][0]);
            d2[m][1] = __dp4a(w & 0x0c0c0c0cu, xw[1], d2[m][1]);
            d2[m][2] = __dp4a(w & 0x30303030u, xw[2], d2[m][2]);
            d2[m][3] = __dp4a(w & 0xc0c0c0c0u, xw[3], d2[m][3]); }
          { const uint32_t w = wd[3];
            if (m == 0) cs3 += __popc(w & 0x55555555u) + 2 * __popc(w & 0xaaaaaaaau);
            d3[m][0] = __dp4a(w & 0x03030303u, xw[0], d3[m][0]);
            d3[m][1] = __dp4a(w & 0x0c0c0c0cu, xw[1], d3[m][1]);
            d3[m][2] = __dp4a(w & 0x30303030u, xw[2], d3[m][2]);
            d3[m][3] = __dp4a(w & 0xc0c0c0c0u, xw[3], d3[m][3]); }
        }
      }
        #pragma unroll
        for (int m = 0; m < M_; ++m) {
          const int dq = (int)(d0[m][0] + (d0[m][1] >> 2) + (d0[m][2] >> 4) + (d0[m][3] >> 6));
          const float dot = (float)(dq - 2 * (int)qsum[m]) - zq[m] * (float)(cs0 - 32 * nwl);
          acc[0][m] += sc[0] * dot + sh[0] * ((float)qsum[m] - zq[m] * (float)(16 * nwl));
        }
        #pragma unroll
        for (int m = 0; m < M_; ++m) {
          const int dq = (int)(d1[m][0] + (d1[m][1] >> 2) + (d1[m][2] >> 4) + (d1[m][3] >> 6));
          const float dot = (float)(dq - 2 * (int)qsum[m]) - zq[m] * (float)(cs1 - 32 * nwl);
          acc[1][m] += sc[1] * dot + sh[1] * ((float)qsum[m] - zq[m] * (float)(16 * nwl));
        }
        #pragma unroll
        for (int m = 0; m < M_; ++m) {
          const int dq = (int)(d2[m][0] + (d2[m][1] >> 2) + (d2[m][2] >> 4) + (d2[m][3] >> 6));
          const float dot = (float)(dq - 2 * (int)qsum[m]) - zq[m] * (float)(cs2 - 32 * nwl);
          acc[2][m] += sc[2] * dot + sh[2] * ((float)qsum[m] - zq[m] * (float)(16 * nwl));
        }
        #pragma unroll
        for (int m = 0; m < M_; ++m) {
          const int dq = (int)(d3[m][0] + (d3[m][1] >> 2) + (d3[m][2] >> 4) + (d3[m][3] >> 6));
          const float dot = (float)(dq - 2 * (int)qsum[m]) - zq[m] * (float)(cs3 - 32 * nwl);
          acc[3][m] += sc[3] * dot + sh[3] * ((float)qsum[m] - zq[m] * (float)(16 * nwl));
        }
    }
  }
  // Sum the lanes (and the K-split warps) of each row.
  #pragma unroll
  for (int r = 0; r < 4; ++r)
    #pragma unroll
    for (int m = 0; m < 1; ++m)
      #pragma unroll
      for (int o = 16; o > 0; o >>= 1) acc[r][m] += __shfl_xor_sync(0xffffffffu, acc[r][m], o);
  __shared__ float red[4][4][1];
  if (lane == 0)
    #pragma unroll
    for (int r = 0; r < 4; ++r)
      #pragma unroll
      for (int m = 0; m < 1; ++m) red[warp][r][m] = acc[r][m];
  __syncthreads();
  if (wkk != 0 || lane != 0) return;
  #pragma unroll
  for (int w = 1; w < 2; ++w)
    #pragma unroll
    for (int r = 0; r < 4; ++r)
      #pragma unroll
      for (int m = 0; m < 1; ++m) acc[r][m] += red[warp + w][r][m];
  #pragma unroll
  for (int r = 0; r < 4; ++r) {
    const int row = row0 + r;
    #pragma unroll
    for (int m = 0; m < 1; ++m) {
      if (row < 4096 && m < T) {
        const float v = sq[m] * acc[r][m];
        float* dst = y + (size_t)m * 4096 + row;
        *dst = accumulate ? *dst + v : v;
      }
    }
  }
  }
}
