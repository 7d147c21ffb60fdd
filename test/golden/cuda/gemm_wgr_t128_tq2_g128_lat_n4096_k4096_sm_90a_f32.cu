// twlac kernel gemm_wgr_t128_tq2_g128_lat_n4096_k4096_sm_90a_f32(format=tq2_g128_lat,n=4096,k=4096,arch=sm_90a,act=u8,out=f32,bf=128,variant=t128,mma=wgmma.m64n128k32.s8.u8.rs)
__device__ __forceinline__ void gemm_wgr_t128_tq2_g128_lat_n4096_k4096_sm_90a_f32_cp16(uint32_t dst, const void* src, bool full) {
  asm volatile("cp.async.cg.shared.global [%0], [%1], 16, %2;" :: "r"(dst), "l"(src), "r"(full ? 16 : 0));
}
__device__ __forceinline__ void gemm_wgr_t128_tq2_g128_lat_n4096_k4096_sm_90a_f32_cp16f(uint32_t dst, const void* src) {
  asm volatile("cp.async.cg.shared.global [%0], [%1], 16;" :: "r"(dst), "l"(src));
}
// SWIZZLE_128B K-major matrix descriptor: start address, LBO 1 (unused), SBO 1024 B (8 rows of 128 B)
__device__ __forceinline__ uint64_t gemm_wgr_t128_tq2_g128_lat_n4096_k4096_sm_90a_f32_desc(uint32_t addr) {
  return (uint64_t)((addr & 0x3FFFFu) >> 4) | (1ull << 16) | ((uint64_t)(1024 >> 4) << 32) | (1ull << 62);
}
__device__ __forceinline__ uint4 gemm_wgr_t128_tq2_g128_lat_n4096_k4096_sm_90a_f32_expand(uint32_t w, uint32_t table) {
  const uint32_t s01 = (w & 0x03030303u) | ((w << 2) & 0x30303030u);
  const uint32_t s23 = ((w >> 4) & 0x03030303u) | ((w >> 2) & 0x30303030u);
  // the lookups by PRMT directly: the selectors' nibbles are codes (0…3), so their sign bits are
  // clear, and __byte_perm's own masking of a variable selector (one LOP3 each) is not needed
  uint32_t r[4];
  const uint32_t sel[4] = {__byte_perm(s01, s23, 0x40), __byte_perm(s01, s23, 0x51), __byte_perm(s01, s23, 0x62), __byte_perm(s01, s23, 0x73)};
  #pragma unroll
  for (int i = 0; i < 4; ++i) asm("prmt.b32 %0, %1, 0, %2;" : "=r"(r[i]) : "r"(table), "r"(sel[i]));
  return make_uint4(r[0], r[1], r[2], r[3]);
}

extern "C" __global__ void __launch_bounds__(256) gemm_wgr_t128_tq2_g128_lat_n4096_k4096_sm_90a_f32(const uint8_t* __restrict__ a, const float* __restrict__ ap, const uint8_t* __restrict__ codes, const __half* __restrict__ scales, const __half* __restrict__ shifts, const int2* __restrict__ rows, float* __restrict__ y, int T, int acc) {
  TWLAC_GRID_WAIT();
  TWLAC_GRID_TRIGGER();
  extern __shared__ __align__(1024) unsigned char smem_raw[];
  const uint32_t raw = (uint32_t)__cvta_generic_to_shared(smem_raw);
  const uint32_t base = (raw + 1023u) & ~1023u; // swizzled tiles need 1024-byte alignment
  unsigned char* sm = smem_raw + (base - raw);
  const int tid = threadIdx.x, warp = tid >> 5, lane = tid & 31, q = lane & 3;
  const int f0 = (warp >> 2) * 64 + (warp & 3) * 16 + (lane >> 2); // features f0 and f0 + 8 of the tile
  const int n0 = blockIdx.x * 128, m0 = blockIdx.y * 128;
  const int er = tid >> 1, eh = tid & 1; // this thread's codes to load: feature er, bytes 16·eh…
  const size_t cs0 = (size_t)(n0 + f0) * 32, cs1 = cs0 + 8 * 32;
  auto load_stage = [&](int slot, int grp) {
    const uint32_t sa = base + (uint32_t)(slot * 20480);
    #pragma unroll
    for (int u = 0; u < 4; ++u) {
      const int i = tid + u * 256, r = i >> 3, c = i & 7, row = m0 + r;
      const bool ok = row < T;
      gemm_wgr_t128_tq2_g128_lat_n4096_k4096_sm_90a_f32_cp16(sa + r * 128 + ((c ^ (r & 7)) << 4), a + (size_t)(ok ? row : 0) * 4096 + grp * 128 + c * 16, ok);
    }
    gemm_wgr_t128_tq2_g128_lat_n4096_k4096_sm_90a_f32_cp16(sa + 16384 + er * 32 + eh * 16, codes + (size_t)(n0 + er) * 1024 + grp * 32 + eh * 16, true);
  };
  #pragma unroll
  for (int st = 0; st < 4; ++st) {
    if (st < 32) load_stage(st, st);
    asm volatile("cp.async.commit_group;" ::: "memory");
  }
  // scales and shifts (half2 bits) of rows f0 and f0 + 8: [sc f0, sh f0, sc f0+8, sh f0+8]
  unsigned pa[4] = {0u, 0u, 0u, 0u}, pb[4] = {0u, 0u, 0u, 0u};
  pa[0] = __ldg(reinterpret_cast<const unsigned*>(scales + cs0 + 0)); pa[2] = __ldg(reinterpret_cast<const unsigned*>(scales + cs1 + 0)); pa[1] = __ldg(reinterpret_cast<const unsigned*>(shifts + cs0 + 0)); pa[3] = __ldg(reinterpret_cast<const unsigned*>(shifts + cs1 + 0));
  if (32 > 2) { pb[0] = __ldg(reinterpret_cast<const unsigned*>(scales + cs0 + 2)); pb[2] = __ldg(reinterpret_cast<const unsigned*>(scales + cs1 + 2)); pb[1] = __ldg(reinterpret_cast<const unsigned*>(shifts + cs0 + 2)); pb[3] = __ldg(reinterpret_cast<const unsigned*>(shifts + cs1 + 2)); }
  // rows f0 and f0 + 8: E = Σ_k w and the lattice unit u (float bits), computed at load (lattice-rows.ts)
  const int2 ri0 = __ldg(rows + n0 + f0), ri1 = __ldg(rows + n0 + f0 + 8);
  const int e0 = ri0.x, e1 = ri1.x;
  const float u0 = __int_as_float(ri0.y), u1 = __int_as_float(ri1.y);
  const float iu0 = 1.f / u0, iu1 = 1.f / u1; // exact: powers of two
  // byte table of a group: bytes 1, 2, 3 = z' − s', z', z' + s' (codes t + 2)
  auto table_of = [](float sc, float sh, float iu) -> uint32_t {
    // exact integers below 2^22: the 1.5·2^23 bias leaves them in the low mantissa bits (no F2I)
    const int si = __float_as_int(fmaf(sc, iu, 12582912.f)) - 0x4B400000, zi = __float_as_int(fmaf(sh, iu, 12582912.f)) - 0x4B400000;
    // bytes [0, z' − s', z', z' + s'] by two byte permutes
    return __byte_perm(__byte_perm((uint32_t)(zi - si) << 8, (uint32_t)zi, 0x0410), (uint32_t)(zi + si), 0x4210);
  };
  const uint32_t selq = (uint32_t)q | ((uint32_t)(4 + q) << 4); // byte q of a word pair
  // A fragments of group grp into frag[4 steps][a0 a1 a2 a3]: a0/a2 row f0 at k 4q… and 16 + 4q…
  // of the step (bytes q of code words 2·st and 2·st + 1), a1/a3 the same of row f0 + 8
  auto expand = [&](int slotE, uint32_t (&frag)[4][4], uint32_t tb0, uint32_t tb1) {
    const unsigned char* cb = sm + slotE * 20480 + 16384;
    #pragma unroll
    for (int r = 0; r < 2; ++r) {
      const uint4 lo = *reinterpret_cast<const uint4*>(cb + (f0 + 8 * r) * 32);
      const uint4 hi = *reinterpret_cast<const uint4*>(cb + (f0 + 8 * r) * 32 + 16);
      const uint32_t xlo = __byte_perm(__byte_perm(lo.x, lo.y, selq), __byte_perm(lo.z, lo.w, selq), 0x5410);
      const uint32_t xhi = __byte_perm(__byte_perm(hi.x, hi.y, selq), __byte_perm(hi.z, hi.w, selq), 0x5410);
      const uint4 wl = gemm_wgr_t128_tq2_g128_lat_n4096_k4096_sm_90a_f32_expand(xlo, r ? tb1 : tb0), wh = gemm_wgr_t128_tq2_g128_lat_n4096_k4096_sm_90a_f32_expand(xhi, r ? tb1 : tb0);
      frag[0][r] = wl.x; frag[0][2 + r] = wl.y; frag[1][r] = wl.z; frag[1][2 + r] = wl.w;
      frag[2][r] = wh.x; frag[2][2 + r] = wh.y; frag[3][r] = wh.z; frag[3][2 + r] = wh.w;
    }
  };
  int accum0[64];
  #pragma unroll
  for (int i = 0; i < 64; ++i) accum0[i] = 0;
  uint32_t fa[4][4], fb[4][4];
  asm volatile("cp.async.wait_group 3;" ::: "memory");
  expand(0, fa, table_of(__half2float(__ushort_as_half((unsigned short)(pa[0] >> 0))), __half2float(__ushort_as_half((unsigned short)(pa[1] >> 0))), iu0), table_of(__half2float(__ushort_as_half((unsigned short)(pa[2] >> 0))), __half2float(__ushort_as_half((unsigned short)(pa[3] >> 0))), iu1));
  asm volatile("fence.proxy.async.shared::cta;" ::: "memory");
  // two K steps an iteration, so that each register set has a fixed name. The loop's unrolling
  // is nvcc's own (a `#pragma unroll 1` measured no faster).
  int sg = 0, sl = 4;
  for (int g0 = 0; g0 < 32; g0 += 2) {
    { const int g = g0; {
    const int sg1 = sg + 1 == 6 ? 0 : sg + 1;
    __syncthreads(); // A(g) landed and fenced in every thread; wgmma(g − 2) done in both warpgroups
    if (g + 4 < 32) load_stage(sl, g + 4);
    asm volatile("cp.async.commit_group;" ::: "memory");
    {
      const uint32_t sa = base + (uint32_t)(sg * 20480);
      asm volatile("wgmma.fence.sync.aligned;" ::: "memory");
      asm volatile("{\n.reg .pred p;\nsetp.ne.b32 p, 1, 0;\n"
      "wgmma.mma_async.sync.aligned.m64n128k32.s32.s8.u8 {%0, %1, %2, %3, %4, %5, %6, %7, %8, %9, %10, %11, %12, %13, %14, %15, %16, %17, %18, %19, %20, %21, %22, %23, %24, %25, %26, %27, %28, %29, %30, %31, %32, %33, %34, %35, %36, %37, %38, %39, %40, %41, %42, %43, %44, %45, %46, %47, %48, %49, %50, %51, %52, %53, %54, %55, %56, %57, %58, %59, %60, %61, %62, %63}, {%64, %65, %66, %67}, %68, p;\n}\n"
      : "+r"(accum0[0]), "+r"(accum0[1]), "+r"(accum0[2]), "+r"(accum0[3]), "+r"(accum0[4]), "+r"(accum0[5]), "+r"(accum0[6]), "+r"(accum0[7]), "+r"(accum0[8]), "+r"(accum0[9]), "+r"(accum0[10]), "+r"(accum0[11]), "+r"(accum0[12]), "+r"(accum0[13]), "+r"(accum0[14]), "+r"(accum0[15]), "+r"(accum0[16]), "+r"(accum0[17]), "+r"(accum0[18]), "+r"(accum0[19]), "+r"(accum0[20]), "+r"(accum0[21]), "+r"(accum0[22]), "+r"(accum0[23]), "+r"(accum0[24]), "+r"(accum0[25]), "+r"(accum0[26]), "+r"(accum0[27]), "+r"(accum0[28]), "+r"(accum0[29]), "+r"(accum0[30]), "+r"(accum0[31]), "+r"(accum0[32]), "+r"(accum0[33]), "+r"(accum0[34]), "+r"(accum0[35]), "+r"(accum0[36]), "+r"(accum0[37]), "+r"(accum0[38]), "+r"(accum0[39]), "+r"(accum0[40]), "+r"(accum0[41]), "+r"(accum0[42]), "+r"(accum0[43]), "+r"(accum0[44]), "+r"(accum0[45]), "+r"(accum0[46]), "+r"(accum0[47]), "+r"(accum0[48]), "+r"(accum0[49]), "+r"(accum0[50]), "+r"(accum0[51]), "+r"(accum0[52]), "+r"(accum0[53]), "+r"(accum0[54]), "+r"(accum0[55]), "+r"(accum0[56]), "+r"(accum0[57]), "+r"(accum0[58]), "+r"(accum0[59]), "+r"(accum0[60]), "+r"(accum0[61]), "+r"(accum0[62]), "+r"(accum0[63])
      : "r"(fa[0][0]), "r"(fa[0][1]), "r"(fa[0][2]), "r"(fa[0][3]), "l"(gemm_wgr_t128_tq2_g128_lat_n4096_k4096_sm_90a_f32_desc(sa + 0u) + 0));
      asm volatile("{\n.reg .pred p;\nsetp.ne.b32 p, 1, 0;\n"
      "wgmma.mma_async.sync.aligned.m64n128k32.s32.s8.u8 {%0, %1, %2, %3, %4, %5, %6, %7, %8, %9, %10, %11, %12, %13, %14, %15, %16, %17, %18, %19, %20, %21, %22, %23, %24, %25, %26, %27, %28, %29, %30, %31, %32, %33, %34, %35, %36, %37, %38, %39, %40, %41, %42, %43, %44, %45, %46, %47, %48, %49, %50, %51, %52, %53, %54, %55, %56, %57, %58, %59, %60, %61, %62, %63}, {%64, %65, %66, %67}, %68, p;\n}\n"
      : "+r"(accum0[0]), "+r"(accum0[1]), "+r"(accum0[2]), "+r"(accum0[3]), "+r"(accum0[4]), "+r"(accum0[5]), "+r"(accum0[6]), "+r"(accum0[7]), "+r"(accum0[8]), "+r"(accum0[9]), "+r"(accum0[10]), "+r"(accum0[11]), "+r"(accum0[12]), "+r"(accum0[13]), "+r"(accum0[14]), "+r"(accum0[15]), "+r"(accum0[16]), "+r"(accum0[17]), "+r"(accum0[18]), "+r"(accum0[19]), "+r"(accum0[20]), "+r"(accum0[21]), "+r"(accum0[22]), "+r"(accum0[23]), "+r"(accum0[24]), "+r"(accum0[25]), "+r"(accum0[26]), "+r"(accum0[27]), "+r"(accum0[28]), "+r"(accum0[29]), "+r"(accum0[30]), "+r"(accum0[31]), "+r"(accum0[32]), "+r"(accum0[33]), "+r"(accum0[34]), "+r"(accum0[35]), "+r"(accum0[36]), "+r"(accum0[37]), "+r"(accum0[38]), "+r"(accum0[39]), "+r"(accum0[40]), "+r"(accum0[41]), "+r"(accum0[42]), "+r"(accum0[43]), "+r"(accum0[44]), "+r"(accum0[45]), "+r"(accum0[46]), "+r"(accum0[47]), "+r"(accum0[48]), "+r"(accum0[49]), "+r"(accum0[50]), "+r"(accum0[51]), "+r"(accum0[52]), "+r"(accum0[53]), "+r"(accum0[54]), "+r"(accum0[55]), "+r"(accum0[56]), "+r"(accum0[57]), "+r"(accum0[58]), "+r"(accum0[59]), "+r"(accum0[60]), "+r"(accum0[61]), "+r"(accum0[62]), "+r"(accum0[63])
      : "r"(fa[1][0]), "r"(fa[1][1]), "r"(fa[1][2]), "r"(fa[1][3]), "l"(gemm_wgr_t128_tq2_g128_lat_n4096_k4096_sm_90a_f32_desc(sa + 0u) + 2));
      asm volatile("{\n.reg .pred p;\nsetp.ne.b32 p, 1, 0;\n"
      "wgmma.mma_async.sync.aligned.m64n128k32.s32.s8.u8 {%0, %1, %2, %3, %4, %5, %6, %7, %8, %9, %10, %11, %12, %13, %14, %15, %16, %17, %18, %19, %20, %21, %22, %23, %24, %25, %26, %27, %28, %29, %30, %31, %32, %33, %34, %35, %36, %37, %38, %39, %40, %41, %42, %43, %44, %45, %46, %47, %48, %49, %50, %51, %52, %53, %54, %55, %56, %57, %58, %59, %60, %61, %62, %63}, {%64, %65, %66, %67}, %68, p;\n}\n"
      : "+r"(accum0[0]), "+r"(accum0[1]), "+r"(accum0[2]), "+r"(accum0[3]), "+r"(accum0[4]), "+r"(accum0[5]), "+r"(accum0[6]), "+r"(accum0[7]), "+r"(accum0[8]), "+r"(accum0[9]), "+r"(accum0[10]), "+r"(accum0[11]), "+r"(accum0[12]), "+r"(accum0[13]), "+r"(accum0[14]), "+r"(accum0[15]), "+r"(accum0[16]), "+r"(accum0[17]), "+r"(accum0[18]), "+r"(accum0[19]), "+r"(accum0[20]), "+r"(accum0[21]), "+r"(accum0[22]), "+r"(accum0[23]), "+r"(accum0[24]), "+r"(accum0[25]), "+r"(accum0[26]), "+r"(accum0[27]), "+r"(accum0[28]), "+r"(accum0[29]), "+r"(accum0[30]), "+r"(accum0[31]), "+r"(accum0[32]), "+r"(accum0[33]), "+r"(accum0[34]), "+r"(accum0[35]), "+r"(accum0[36]), "+r"(accum0[37]), "+r"(accum0[38]), "+r"(accum0[39]), "+r"(accum0[40]), "+r"(accum0[41]), "+r"(accum0[42]), "+r"(accum0[43]), "+r"(accum0[44]), "+r"(accum0[45]), "+r"(accum0[46]), "+r"(accum0[47]), "+r"(accum0[48]), "+r"(accum0[49]), "+r"(accum0[50]), "+r"(accum0[51]), "+r"(accum0[52]), "+r"(accum0[53]), "+r"(accum0[54]), "+r"(accum0[55]), "+r"(accum0[56]), "+r"(accum0[57]), "+r"(accum0[58]), "+r"(accum0[59]), "+r"(accum0[60]), "+r"(accum0[61]), "+r"(accum0[62]), "+r"(accum0[63])
      : "r"(fa[2][0]), "r"(fa[2][1]), "r"(fa[2][2]), "r"(fa[2][3]), "l"(gemm_wgr_t128_tq2_g128_lat_n4096_k4096_sm_90a_f32_desc(sa + 0u) + 4));
      asm volatile("{\n.reg .pred p;\nsetp.ne.b32 p, 1, 0;\n"
      "wgmma.mma_async.sync.aligned.m64n128k32.s32.s8.u8 {%0, %1, %2, %3, %4, %5, %6, %7, %8, %9, %10, %11, %12, %13, %14, %15, %16, %17, %18, %19, %20, %21, %22, %23, %24, %25, %26, %27, %28, %29, %30, %31, %32, %33, %34, %35, %36, %37, %38, %39, %40, %41, %42, %43, %44, %45, %46, %47, %48, %49, %50, %51, %52, %53, %54, %55, %56, %57, %58, %59, %60, %61, %62, %63}, {%64, %65, %66, %67}, %68, p;\n}\n"
      : "+r"(accum0[0]), "+r"(accum0[1]), "+r"(accum0[2]), "+r"(accum0[3]), "+r"(accum0[4]), "+r"(accum0[5]), "+r"(accum0[6]), "+r"(accum0[7]), "+r"(accum0[8]), "+r"(accum0[9]), "+r"(accum0[10]), "+r"(accum0[11]), "+r"(accum0[12]), "+r"(accum0[13]), "+r"(accum0[14]), "+r"(accum0[15]), "+r"(accum0[16]), "+r"(accum0[17]), "+r"(accum0[18]), "+r"(accum0[19]), "+r"(accum0[20]), "+r"(accum0[21]), "+r"(accum0[22]), "+r"(accum0[23]), "+r"(accum0[24]), "+r"(accum0[25]), "+r"(accum0[26]), "+r"(accum0[27]), "+r"(accum0[28]), "+r"(accum0[29]), "+r"(accum0[30]), "+r"(accum0[31]), "+r"(accum0[32]), "+r"(accum0[33]), "+r"(accum0[34]), "+r"(accum0[35]), "+r"(accum0[36]), "+r"(accum0[37]), "+r"(accum0[38]), "+r"(accum0[39]), "+r"(accum0[40]), "+r"(accum0[41]), "+r"(accum0[42]), "+r"(accum0[43]), "+r"(accum0[44]), "+r"(accum0[45]), "+r"(accum0[46]), "+r"(accum0[47]), "+r"(accum0[48]), "+r"(accum0[49]), "+r"(accum0[50]), "+r"(accum0[51]), "+r"(accum0[52]), "+r"(accum0[53]), "+r"(accum0[54]), "+r"(accum0[55]), "+r"(accum0[56]), "+r"(accum0[57]), "+r"(accum0[58]), "+r"(accum0[59]), "+r"(accum0[60]), "+r"(accum0[61]), "+r"(accum0[62]), "+r"(accum0[63])
      : "r"(fa[3][0]), "r"(fa[3][1]), "r"(fa[3][2]), "r"(fa[3][3]), "l"(gemm_wgr_t128_tq2_g128_lat_n4096_k4096_sm_90a_f32_desc(sa + 0u) + 6));
      asm volatile("wgmma.commit_group.sync.aligned;" ::: "memory");
    }
    asm volatile("wgmma.wait_group.sync.aligned 1;" ::: "memory");
    if (g + 1 < 32) {
      asm volatile("cp.async.wait_group 3;" ::: "memory");
      expand(sg1, fb, table_of(__half2float(__ushort_as_half((unsigned short)(pa[0] >> 16))), __half2float(__ushort_as_half((unsigned short)(pa[1] >> 16))), iu0), table_of(__half2float(__ushort_as_half((unsigned short)(pa[2] >> 16))), __half2float(__ushort_as_half((unsigned short)(pa[3] >> 16))), iu1));
      asm volatile("fence.proxy.async.shared::cta;" ::: "memory");
      
    }
    sg = sg1;
    sl = sl + 1 == 6 ? 0 : sl + 1;
  } }
    if (g0 + 1 < 32) { const int g = g0 + 1; {
    const int sg1 = sg + 1 == 6 ? 0 : sg + 1;
    __syncthreads(); // A(g) landed and fenced in every thread; wgmma(g − 2) done in both warpgroups
    if (g + 4 < 32) load_stage(sl, g + 4);
    asm volatile("cp.async.commit_group;" ::: "memory");
    {
      const uint32_t sa = base + (uint32_t)(sg * 20480);
      asm volatile("wgmma.fence.sync.aligned;" ::: "memory");
      asm volatile("{\n.reg .pred p;\nsetp.ne.b32 p, 1, 0;\n"
      "wgmma.mma_async.sync.aligned.m64n128k32.s32.s8.u8 {%0, %1, %2, %3, %4, %5, %6, %7, %8, %9, %10, %11, %12, %13, %14, %15, %16, %17, %18, %19, %20, %21, %22, %23, %24, %25, %26, %27, %28, %29, %30, %31, %32, %33, %34, %35, %36, %37, %38, %39, %40, %41, %42, %43, %44, %45, %46, %47, %48, %49, %50, %51, %52, %53, %54, %55, %56, %57, %58, %59, %60, %61, %62, %63}, {%64, %65, %66, %67}, %68, p;\n}\n"
      : "+r"(accum0[0]), "+r"(accum0[1]), "+r"(accum0[2]), "+r"(accum0[3]), "+r"(accum0[4]), "+r"(accum0[5]), "+r"(accum0[6]), "+r"(accum0[7]), "+r"(accum0[8]), "+r"(accum0[9]), "+r"(accum0[10]), "+r"(accum0[11]), "+r"(accum0[12]), "+r"(accum0[13]), "+r"(accum0[14]), "+r"(accum0[15]), "+r"(accum0[16]), "+r"(accum0[17]), "+r"(accum0[18]), "+r"(accum0[19]), "+r"(accum0[20]), "+r"(accum0[21]), "+r"(accum0[22]), "+r"(accum0[23]), "+r"(accum0[24]), "+r"(accum0[25]), "+r"(accum0[26]), "+r"(accum0[27]), "+r"(accum0[28]), "+r"(accum0[29]), "+r"(accum0[30]), "+r"(accum0[31]), "+r"(accum0[32]), "+r"(accum0[33]), "+r"(accum0[34]), "+r"(accum0[35]), "+r"(accum0[36]), "+r"(accum0[37]), "+r"(accum0[38]), "+r"(accum0[39]), "+r"(accum0[40]), "+r"(accum0[41]), "+r"(accum0[42]), "+r"(accum0[43]), "+r"(accum0[44]), "+r"(accum0[45]), "+r"(accum0[46]), "+r"(accum0[47]), "+r"(accum0[48]), "+r"(accum0[49]), "+r"(accum0[50]), "+r"(accum0[51]), "+r"(accum0[52]), "+r"(accum0[53]), "+r"(accum0[54]), "+r"(accum0[55]), "+r"(accum0[56]), "+r"(accum0[57]), "+r"(accum0[58]), "+r"(accum0[59]), "+r"(accum0[60]), "+r"(accum0[61]), "+r"(accum0[62]), "+r"(accum0[63])
      : "r"(fb[0][0]), "r"(fb[0][1]), "r"(fb[0][2]), "r"(fb[0][3]), "l"(gemm_wgr_t128_tq2_g128_lat_n4096_k4096_sm_90a_f32_desc(sa + 0u) + 0));
      asm volatile("{\n.reg .pred p;\nsetp.ne.b32 p, 1, 0;\n"
      "wgmma.mma_async.sync.aligned.m64n128k32.s32.s8.u8 {%0, %1, %2, %3, %4, %5, %6, %7, %8, %9, %10, %11, %12, %13, %14, %15, %16, %17, %18, %19, %20, %21, %22, %23, %24, %25, %26, %27, %28, %29, %30, %31, %32, %33, %34, %35, %36, %37, %38, %39, %40, %41, %42, %43, %44, %45, %46, %47, %48, %49, %50, %51, %52, %53, %54, %55, %56, %57, %58, %59, %60, %61, %62, %63}, {%64, %65, %66, %67}, %68, p;\n}\n"
      : "+r"(accum0[0]), "+r"(accum0[1]), "+r"(accum0[2]), "+r"(accum0[3]), "+r"(accum0[4]), "+r"(accum0[5]), "+r"(accum0[6]), "+r"(accum0[7]), "+r"(accum0[8]), "+r"(accum0[9]), "+r"(accum0[10]), "+r"(accum0[11]), "+r"(accum0[12]), "+r"(accum0[13]), "+r"(accum0[14]), "+r"(accum0[15]), "+r"(accum0[16]), "+r"(accum0[17]), "+r"(accum0[18]), "+r"(accum0[19]), "+r"(accum0[20]), "+r"(accum0[21]), "+r"(accum0[22]), "+r"(accum0[23]), "+r"(accum0[24]), "+r"(accum0[25]), "+r"(accum0[26]), "+r"(accum0[27]), "+r"(accum0[28]), "+r"(accum0[29]), "+r"(accum0[30]), "+r"(accum0[31]), "+r"(accum0[32]), "+r"(accum0[33]), "+r"(accum0[34]), "+r"(accum0[35]), "+r"(accum0[36]), "+r"(accum0[37]), "+r"(accum0[38]), "+r"(accum0[39]), "+r"(accum0[40]), "+r"(accum0[41]), "+r"(accum0[42]), "+r"(accum0[43]), "+r"(accum0[44]), "+r"(accum0[45]), "+r"(accum0[46]), "+r"(accum0[47]), "+r"(accum0[48]), "+r"(accum0[49]), "+r"(accum0[50]), "+r"(accum0[51]), "+r"(accum0[52]), "+r"(accum0[53]), "+r"(accum0[54]), "+r"(accum0[55]), "+r"(accum0[56]), "+r"(accum0[57]), "+r"(accum0[58]), "+r"(accum0[59]), "+r"(accum0[60]), "+r"(accum0[61]), "+r"(accum0[62]), "+r"(accum0[63])
      : "r"(fb[1][0]), "r"(fb[1][1]), "r"(fb[1][2]), "r"(fb[1][3]), "l"(gemm_wgr_t128_tq2_g128_lat_n4096_k4096_sm_90a_f32_desc(sa + 0u) + 2));
      asm volatile("{\n.reg .pred p;\nsetp.ne.b32 p, 1, 0;\n"
      "wgmma.mma_async.sync.aligned.m64n128k32.s32.s8.u8 {%0, %1, %2, %3, %4, %5, %6, %7, %8, %9, %10, %11, %12, %13, %14, %15, %16, %17, %18, %19, %20, %21, %22, %23, %24, %25, %26, %27, %28, %29, %30, %31, %32, %33, %34, %35, %36, %37, %38, %39, %40, %41, %42, %43, %44, %45, %46, %47, %48, %49, %50, %51, %52, %53, %54, %55, %56, %57, %58, %59, %60, %61, %62, %63}, {%64, %65, %66, %67}, %68, p;\n}\n"
      : "+r"(accum0[0]), "+r"(accum0[1]), "+r"(accum0[2]), "+r"(accum0[3]), "+r"(accum0[4]), "+r"(accum0[5]), "+r"(accum0[6]), "+r"(accum0[7]), "+r"(accum0[8]), "+r"(accum0[9]), "+r"(accum0[10]), "+r"(accum0[11]), "+r"(accum0[12]), "+r"(accum0[13]), "+r"(accum0[14]), "+r"(accum0[15]), "+r"(accum0[16]), "+r"(accum0[17]), "+r"(accum0[18]), "+r"(accum0[19]), "+r"(accum0[20]), "+r"(accum0[21]), "+r"(accum0[22]), "+r"(accum0[23]), "+r"(accum0[24]), "+r"(accum0[25]), "+r"(accum0[26]), "+r"(accum0[27]), "+r"(accum0[28]), "+r"(accum0[29]), "+r"(accum0[30]), "+r"(accum0[31]), "+r"(accum0[32]), "+r"(accum0[33]), "+r"(accum0[34]), "+r"(accum0[35]), "+r"(accum0[36]), "+r"(accum0[37]), "+r"(accum0[38]), "+r"(accum0[39]), "+r"(accum0[40]), "+r"(accum0[41]), "+r"(accum0[42]), "+r"(accum0[43]), "+r"(accum0[44]), "+r"(accum0[45]), "+r"(accum0[46]), "+r"(accum0[47]), "+r"(accum0[48]), "+r"(accum0[49]), "+r"(accum0[50]), "+r"(accum0[51]), "+r"(accum0[52]), "+r"(accum0[53]), "+r"(accum0[54]), "+r"(accum0[55]), "+r"(accum0[56]), "+r"(accum0[57]), "+r"(accum0[58]), "+r"(accum0[59]), "+r"(accum0[60]), "+r"(accum0[61]), "+r"(accum0[62]), "+r"(accum0[63])
      : "r"(fb[2][0]), "r"(fb[2][1]), "r"(fb[2][2]), "r"(fb[2][3]), "l"(gemm_wgr_t128_tq2_g128_lat_n4096_k4096_sm_90a_f32_desc(sa + 0u) + 4));
      asm volatile("{\n.reg .pred p;\nsetp.ne.b32 p, 1, 0;\n"
      "wgmma.mma_async.sync.aligned.m64n128k32.s32.s8.u8 {%0, %1, %2, %3, %4, %5, %6, %7, %8, %9, %10, %11, %12, %13, %14, %15, %16, %17, %18, %19, %20, %21, %22, %23, %24, %25, %26, %27, %28, %29, %30, %31, %32, %33, %34, %35, %36, %37, %38, %39, %40, %41, %42, %43, %44, %45, %46, %47, %48, %49, %50, %51, %52, %53, %54, %55, %56, %57, %58, %59, %60, %61, %62, %63}, {%64, %65, %66, %67}, %68, p;\n}\n"
      : "+r"(accum0[0]), "+r"(accum0[1]), "+r"(accum0[2]), "+r"(accum0[3]), "+r"(accum0[4]), "+r"(accum0[5]), "+r"(accum0[6]), "+r"(accum0[7]), "+r"(accum0[8]), "+r"(accum0[9]), "+r"(accum0[10]), "+r"(accum0[11]), "+r"(accum0[12]), "+r"(accum0[13]), "+r"(accum0[14]), "+r"(accum0[15]), "+r"(accum0[16]), "+r"(accum0[17]), "+r"(accum0[18]), "+r"(accum0[19]), "+r"(accum0[20]), "+r"(accum0[21]), "+r"(accum0[22]), "+r"(accum0[23]), "+r"(accum0[24]), "+r"(accum0[25]), "+r"(accum0[26]), "+r"(accum0[27]), "+r"(accum0[28]), "+r"(accum0[29]), "+r"(accum0[30]), "+r"(accum0[31]), "+r"(accum0[32]), "+r"(accum0[33]), "+r"(accum0[34]), "+r"(accum0[35]), "+r"(accum0[36]), "+r"(accum0[37]), "+r"(accum0[38]), "+r"(accum0[39]), "+r"(accum0[40]), "+r"(accum0[41]), "+r"(accum0[42]), "+r"(accum0[43]), "+r"(accum0[44]), "+r"(accum0[45]), "+r"(accum0[46]), "+r"(accum0[47]), "+r"(accum0[48]), "+r"(accum0[49]), "+r"(accum0[50]), "+r"(accum0[51]), "+r"(accum0[52]), "+r"(accum0[53]), "+r"(accum0[54]), "+r"(accum0[55]), "+r"(accum0[56]), "+r"(accum0[57]), "+r"(accum0[58]), "+r"(accum0[59]), "+r"(accum0[60]), "+r"(accum0[61]), "+r"(accum0[62]), "+r"(accum0[63])
      : "r"(fb[3][0]), "r"(fb[3][1]), "r"(fb[3][2]), "r"(fb[3][3]), "l"(gemm_wgr_t128_tq2_g128_lat_n4096_k4096_sm_90a_f32_desc(sa + 0u) + 6));
      asm volatile("wgmma.commit_group.sync.aligned;" ::: "memory");
    }
    asm volatile("wgmma.wait_group.sync.aligned 1;" ::: "memory");
    if (g + 1 < 32) {
      asm volatile("cp.async.wait_group 3;" ::: "memory");
      expand(sg1, fa, table_of(__half2float(__ushort_as_half((unsigned short)(pb[0] >> 0))), __half2float(__ushort_as_half((unsigned short)(pb[1] >> 0))), iu0), table_of(__half2float(__ushort_as_half((unsigned short)(pb[2] >> 0))), __half2float(__ushort_as_half((unsigned short)(pb[3] >> 0))), iu1));
      asm volatile("fence.proxy.async.shared::cta;" ::: "memory");
      #pragma unroll
      for (int i = 0; i < 4; ++i) pa[i] = pb[i];
      if (g + 3 < 32) { pb[0] = __ldg(reinterpret_cast<const unsigned*>(scales + cs0 + g + 3)); pb[2] = __ldg(reinterpret_cast<const unsigned*>(scales + cs1 + g + 3)); pb[1] = __ldg(reinterpret_cast<const unsigned*>(shifts + cs0 + g + 3)); pb[3] = __ldg(reinterpret_cast<const unsigned*>(shifts + cs1 + g + 3)); }
    }
    sg = sg1;
    sl = sl + 1 == 6 ? 0 : sl + 1;
  } }
  }
  asm volatile("wgmma.wait_group.sync.aligned 0;" ::: "memory");
  #pragma unroll
    for (int i = 0; i < 64; ++i) asm volatile("" : "+r"(accum0[i]) :: "memory");
  // y = sa·u·(D − za·E); za's integer part in int32 (exact, no cancellation), any fraction after
  #pragma unroll
  for (int j = 0; j < 16; ++j) {
    #pragma unroll
    for (int c = 0; c < 2; ++c) {
      const int row = m0 + 0 + 8 * j + 2 * q + c;
      if (row < T) {
        const float sq = ap[2 * row], zq = ap[2 * row + 1];
        const float zr = rintf(zq), zf = zq - zr;
        const int zi = (int)zr;
        {
          float* p = y + (size_t)(row) * 4096 + (n0 + f0);
          *p = acc ? *p + (sq * u0 * ((float)(accum0[4 * j + c] - zi * e0) - zf * (float)e0)) : (sq * u0 * ((float)(accum0[4 * j + c] - zi * e0) - zf * (float)e0));
        }
        {
          float* p = y + (size_t)(row) * 4096 + (n0 + f0 + 8);
          *p = acc ? *p + (sq * u1 * ((float)(accum0[4 * j + 2 + c] - zi * e1) - zf * (float)e1)) : (sq * u1 * ((float)(accum0[4 * j + 2 + c] - zi * e1) - zf * (float)e1));
        }
      }
    }
  }
}
