// Int8 prefill GEMM check and benchmark, run on the GPU machine (scripts/device/run-gemm.sh).
// Kernels and check data come from scripts/device/gen-gemm-bench.ts (.device/gemm/).
//  1. Check cases: generated kernels vs the float64 output of the format's reference decoder
//     (computed in TypeScript from the same bytes), fp16 output.
//  2. Benchmark at M = 128…4096 on the LLaMA-2-7B shapes vs cuBLAS fp16 cublasGemmEx (and
//     cuBLAS int8 → int32 for reference) side by side: CUDA graphs over rotating buffers,
//     median of replays; plus a spot check of each benchmark run against a host float64 decode.
#include "gemm_kernels.cuh"
#include <cublas_v2.h>
#include <algorithm>
#include <cmath>
#include <cstring>
#include <string>
#include <vector>

#define CUBLAS(x) do { cublasStatus_t s_ = (x); if (s_ != CUBLAS_STATUS_SUCCESS) { fprintf(stderr, "cuBLAS error %d at %s:%d\n", (int)s_, __FILE__, __LINE__); exit(1); } } while (0)

static const TwlacGemm* find(const char* name) {
  for (int i = 0; i < twlac_gemm_count; i++) if (std::string(twlac_gemms[i].name) == name) return &twlac_gemms[i];
  fprintf(stderr, "no kernel %s\n", name); exit(1);
}

__global__ void fill_codes(uint8_t* p, size_t n, uint32_t seed) {
  for (size_t i = blockIdx.x * (size_t)blockDim.x + threadIdx.x; i < n; i += (size_t)gridDim.x * blockDim.x) {
    uint32_t h = (uint32_t)i * 2654435761u ^ seed; h ^= h >> 15; h *= 2246822519u; h ^= h >> 13; h *= 3266489917u; h ^= h >> 16;
    p[i] = twlac_random_byte_bit2(h);
  }
}
__global__ void fill_u8(uint8_t* p, size_t n, uint32_t seed) {
  for (size_t i = blockIdx.x * (size_t)blockDim.x + threadIdx.x; i < n; i += (size_t)gridDim.x * blockDim.x) {
    uint32_t h = (uint32_t)i * 2654435761u ^ seed; h ^= h >> 15; h *= 2246822519u; h ^= h >> 13;
    p[i] = (uint8_t)(h >> 24);
  }
}
__global__ void fill_half(__half* p, size_t n, float scale, float offset, uint32_t seed) {
  for (size_t i = blockIdx.x * (size_t)blockDim.x + threadIdx.x; i < n; i += (size_t)gridDim.x * blockDim.x) {
    uint32_t h = (uint32_t)i * 747796405u + seed; h ^= h >> 16; h *= 2246822519u; h ^= h >> 13; h *= 3266489917u; h ^= h >> 16;
    p[i] = __float2half(offset + scale * ((h >> 8) * (1.0f / 16777216.0f) * 2.f - 1.f));
  }
}

// Rounds each row's random scales and shifts to the row's int8 lattice, for the lattice
// formats' kernels (the rule of formats/ternary.ts snapRowToLattice).
__global__ void snap_lattice(__half* sc, __half* sh, int rows, int ng) {
  const int n = blockIdx.x * blockDim.x + threadIdx.x;
  if (n >= rows) return;
  double mx = 0;
  for (int g = 0; g < ng; g++) mx = fmax(mx, fabs((double)__half2float(sc[(size_t)n * ng + g])) + fabs((double)__half2float(sh[(size_t)n * ng + g])));
  double u = 0x1p-24;
  while (127.0 * u < mx) u *= 2;
  for (int g = 0; g < ng; g++) {
    const size_t i = (size_t)n * ng + g;
    const double s = fmin(127.0, fmax(-127.0, rint(__half2float(sc[i]) / u))), lim = 127.0 - fabs(s);
    sc[i] = __double2half(s * u);
    sh[i] = __double2half(fmin(lim, fmax(-lim, rint(__half2float(sh[i]) / u))) * u);
  }
}

static std::vector<uint8_t> read_file(const std::string& path) {
  FILE* f = fopen(path.c_str(), "rb");
  if (!f) { fprintf(stderr, "cannot open %s\n", path.c_str()); exit(1); }
  fseek(f, 0, SEEK_END); long n = ftell(f); fseek(f, 0, SEEK_SET);
  std::vector<uint8_t> b(n);
  if (fread(b.data(), 1, n, f) != (size_t)n) { fprintf(stderr, "short read %s\n", path.c_str()); exit(1); }
  fclose(f);
  return b;
}

template <class T> static T* dalloc(size_t n) { T* p; TWLAC_CUDA(cudaMalloc(&p, n * sizeof(T))); return p; }

// Median time (µs) of one launch: a graph of `iters` launches of fn(i) replayed `reps` times.
template <class F> static double time_graph(cudaStream_t s, int iters, int reps, F fn) {
  cudaGraph_t g; cudaGraphExec_t ge;
  TWLAC_CUDA(cudaStreamBeginCapture(s, cudaStreamCaptureModeGlobal));
  for (int i = 0; i < iters; i++) fn(i);
  TWLAC_CUDA(cudaStreamEndCapture(s, &g));
  TWLAC_CUDA(cudaGraphInstantiate(&ge, g, 0));
  for (int i = 0; i < 2; i++) TWLAC_CUDA(cudaGraphLaunch(ge, s));
  cudaEvent_t a, b; cudaEventCreate(&a); cudaEventCreate(&b);
  std::vector<double> ts;
  for (int r = 0; r < reps; r++) {
    cudaEventRecord(a, s); TWLAC_CUDA(cudaGraphLaunch(ge, s)); cudaEventRecord(b, s); TWLAC_CUDA(cudaEventSynchronize(b));
    float ms; cudaEventElapsedTime(&ms, a, b); ts.push_back(ms * 1000.0 / iters);
  }
  std::sort(ts.begin(), ts.end());
  cudaGraphExecDestroy(ge); cudaGraphDestroy(g);
  return ts[ts.size() / 2];
}

static int host_trit(const uint8_t* grp, int k) { return twlac_host_trit_bit2(grp, k); }

int main(int argc, char** argv) {
  std::string dir = argc > 1 ? argv[1] : ".device/gemm";
  std::string out = argc > 2 ? argv[2] : "gemm.json";
  // optional filters: only benchmark kernels whose name contains argv[3]; at M = argv[4] only,
  // without the checks (profiling runs)
  const std::string only = argc > 3 ? argv[3] : "";
  const int onlyM = argc > 4 ? atoi(argv[4]) : 0;
  cudaDeviceProp prop; TWLAC_CUDA(cudaGetDeviceProperties(&prop, 0));
  printf("device: %s, %d SMs\n", prop.name, prop.multiProcessorCount);
  cudaStream_t s; TWLAC_CUDA(cudaStreamCreate(&s));
  FILE* js = fopen(out.c_str(), "w");
  fprintf(js, "{\n \"device\": \"%s\",\n \"checks\": [\n", prop.name);
  int failures = 0;

  // ---- 1. checks against the reference decoder ----
  for (int c = 0; c < twlac_check_count && onlyM == 0; c++) {
    const TwlacGemm& g = *find(twlac_check_kernels[c]);
    const int T = twlac_check_t[c];
    std::vector<uint8_t> b = read_file(dir + "/case_" + std::to_string(twlac_check_case[c]) + ".bin");
    size_t ng = g.k / g.group, codesB = (size_t)g.n * ng * (g.group / 4), scB = (size_t)g.n * ng * 2, shB = g.shift ? scB : 0;
    size_t qB = (size_t)T * g.k, apB = (size_t)T * 8, yB = (size_t)T * g.n * 8;
    if (b.size() != codesB + scB + shB + qB + apB + yB) { fprintf(stderr, "case %d: size mismatch\n", c); return 1; }
    uint8_t* dc = dalloc<uint8_t>(codesB); __half* ds = dalloc<__half>(scB / 2); __half* dh = g.shift ? dalloc<__half>(shB / 2) : nullptr;
    uint8_t* dq = dalloc<uint8_t>(qB); float* dap = dalloc<float>(T * 2); __half* dy = dalloc<__half>((size_t)T * g.n + 64);
    int2* dr = g.lattice ? dalloc<int2>(g.n) : nullptr; // the lattice GEMM's row constants (E, u)
    size_t o = 0;
    TWLAC_CUDA(cudaMemcpy(dc, b.data() + o, codesB, cudaMemcpyHostToDevice)); o += codesB;
    TWLAC_CUDA(cudaMemcpy(ds, b.data() + o, scB, cudaMemcpyHostToDevice)); o += scB;
    if (dh) TWLAC_CUDA(cudaMemcpy(dh, b.data() + o, shB, cudaMemcpyHostToDevice)); o += shB;
    TWLAC_CUDA(cudaMemcpy(dq, b.data() + o, qB, cudaMemcpyHostToDevice)); o += qB;
    TWLAC_CUDA(cudaMemcpy(dap, b.data() + o, apB, cudaMemcpyHostToDevice)); o += apB;
    const double* ref = reinterpret_cast<const double*>(b.data() + o);
    if (dr) launch_lattice_rows_g128(dc, ds, dh, dr, g.n, (int)ng, s);
    // Poison the output and a guard past its end: rows ≥ T must not be written.
    TWLAC_CUDA(cudaMemset(dy, 0xff, ((size_t)T * g.n + 64) * 2));
    g.launch(dq, dap, dc, ds, dh, dr, dy, T, s);
    TWLAC_CUDA(cudaStreamSynchronize(s));
    std::vector<__half> y((size_t)T * g.n + 64);
    TWLAC_CUDA(cudaMemcpy(y.data(), dy, y.size() * 2, cudaMemcpyDeviceToHost));
    double num = 0, den = 0, maxd = 0, maxr = 0; bool nan = false, guard = true;
    for (size_t i = 0; i < (size_t)T * g.n; i++) {
      double v = __half2float(y[i]);
      if (!std::isfinite(v)) nan = true;
      double d = v - ref[i]; num += d * d; den += ref[i] * ref[i];
      maxd = std::max(maxd, std::fabs(d)); maxr = std::max(maxr, std::fabs(ref[i]));
    }
    for (int i = 0; i < 64; i++) { uint16_t raw; memcpy(&raw, &y[(size_t)T * g.n + i], 2); guard &= raw == 0xffff; }
    double rel = std::sqrt(num / den), relmax = maxd / maxr;
    // fp16 output: each value carries ≤ 2^-11 relative rounding; fp32 sums add far less.
    bool ok = !nan && guard && rel < 1e-3 && relmax < 1e-3;
    failures += !ok;
    printf("check %-40s T=%4d  relL2 %.2e  max|d|/max|ref| %.2e  guard %s  %s\n", g.name, T, rel, relmax, guard ? "intact" : "OVERWRITTEN", ok ? "ok" : "FAIL");
    fprintf(js, "  {\"kernel\": \"%s\", \"T\": %d, \"relL2\": %.3e, \"relMax\": %.3e, \"ok\": %s},\n", g.name, T, rel, relmax, ok ? "true" : "false");
    cudaFree(dc); cudaFree(ds); if (dh) cudaFree(dh); if (dr) cudaFree(dr); cudaFree(dq); cudaFree(dap); cudaFree(dy);
  }
  fprintf(js, "  null\n ],\n \"bench\": [\n");

  // ---- 2. benchmark vs cuBLAS ----
  cublasHandle_t h; CUBLAS(cublasCreate(&h)); CUBLAS(cublasSetStream(h, s));
  const size_t ROT = (size_t)200 << 20; // ≥ 200 MB rotated: L2 (50 MB) holds no previous launch's data
  printf("\n%-36s %5s %9s %9s %9s %8s %8s %8s %8s %9s\n", "kernel", "M", "ours us", "fp16 us", "int8 us", "ours T/s", "fp16 T/s", "vs fp16", "vs int8", "spot relL2");
  for (int bi = 0; bi < twlac_bench_count; bi++) {
    const TwlacGemm& g = *find(twlac_bench_kernels[bi]);
    if (!only.empty() && std::string(g.name).find(only) == std::string::npos) continue;
    for (int mi = 0; mi < twlac_bench_m_count; mi++) {
      const int M = twlac_bench_m[mi];
      if (onlyM && M != onlyM) continue;
      size_t ng = g.k / g.group, codesB = (size_t)g.n * ng * (g.group / 4), scN = (size_t)g.n * ng, qB = (size_t)M * g.k;
      size_t bytes = codesB + scN * 4 + qB;
      int nbuf = (int)std::min<size_t>(16, std::max<size_t>(2, (ROT + bytes - 1) / bytes));
      std::vector<uint8_t*> dc(nbuf), dq(nbuf); std::vector<__half*> ds(nbuf), dh(nbuf); std::vector<int2*> dr(nbuf, nullptr);
      for (int i = 0; i < nbuf; i++) {
        dc[i] = dalloc<uint8_t>(codesB); ds[i] = dalloc<__half>(scN); dh[i] = dalloc<__half>(scN); dq[i] = dalloc<uint8_t>(qB);
        fill_codes<<<1024, 256, 0, s>>>(dc[i], codesB, 77u + i);
        fill_half<<<256, 256, 0, s>>>(ds[i], scN, 0.005f, 0.01f, 11u + i);
        fill_half<<<256, 256, 0, s>>>(dh[i], scN, 0.001f, 0.f, 13u + i);
        if (g.lattice) {
          snap_lattice<<<(g.n + 127) / 128, 128, 0, s>>>(ds[i], dh[i], g.n, (int)ng);
          dr[i] = dalloc<int2>(g.n);
          launch_lattice_rows_g128(dc[i], ds[i], dh[i], dr[i], g.n, (int)ng, s); // at load in the runtime: not timed
        }
        fill_u8<<<1024, 256, 0, s>>>(dq[i], qB, 5u + i);
      }
      std::vector<float> aph(2 * M);
      for (int m = 0; m < M; m++) { aph[2 * m] = 0.01f + 0.0001f * (m % 97); aph[2 * m + 1] = (float)((m * 37) % 256); }
      float* dap = dalloc<float>(2 * M); TWLAC_CUDA(cudaMemcpy(dap, aph.data(), 8 * M, cudaMemcpyHostToDevice));
      __half* dy = dalloc<__half>((size_t)M * g.n);
      TWLAC_CUDA(cudaGetLastError());
      double ours = time_graph(s, 2 * nbuf, 9, [&](int i) { int j = i % nbuf; g.launch(dq[j], dap, dc[j], ds[j], dh[j], dr[j], dy, M, s); });
      // spot check buffer 0 at 24 (token, feature) points against a host float64 decode
      g.launch(dq[0], dap, dc[0], ds[0], dh[0], dr[0], dy, M, s);
      TWLAC_CUDA(cudaStreamSynchronize(s));
      double num = 0, den = 0;
      {
        size_t rowB = ng * (g.group / 4);
        std::vector<uint8_t> rc(rowB), rq(g.k); std::vector<__half> rs(ng), rh(ng);
        for (int t = 0; t < 24; t++) {
          int n = (int)((t * 2654435761u) % g.n), m = (int)((t * 40503u + 7) % M);
          TWLAC_CUDA(cudaMemcpy(rc.data(), dc[0] + (size_t)n * rowB, rowB, cudaMemcpyDeviceToHost));
          TWLAC_CUDA(cudaMemcpy(rs.data(), ds[0] + (size_t)n * ng, ng * 2, cudaMemcpyDeviceToHost));
          TWLAC_CUDA(cudaMemcpy(rh.data(), dh[0] + (size_t)n * ng, ng * 2, cudaMemcpyDeviceToHost));
          TWLAC_CUDA(cudaMemcpy(rq.data(), dq[0] + (size_t)m * g.k, g.k, cudaMemcpyDeviceToHost));
          __half yv; TWLAC_CUDA(cudaMemcpy(&yv, dy + (size_t)m * g.n + n, 2, cudaMemcpyDeviceToHost));
          double ref = 0;
          for (int k = 0; k < g.k; k++) {
            int gi = k / g.group;
            double w = (double)__half2float(rs[gi]) * host_trit(rc.data() + gi * (g.group / 4), k % g.group) + (double)__half2float(rh[gi]);
            ref += w * ((double)rq[k] - aph[2 * m + 1]);
          }
          ref *= aph[2 * m];
          double d = __half2float(yv) - ref; num += d * d; den += ref * ref;
        }
      }
      double rel = std::sqrt(num / den);
      if (!(rel < 1e-3)) failures++;
      for (int i = 0; i < nbuf; i++) { cudaFree(dc[i]); cudaFree(ds[i]); cudaFree(dh[i]); cudaFree(dq[i]); if (dr[i]) cudaFree(dr[i]); }
      cudaFree(dap); cudaFree(dy);
      // cuBLAS fp16: Y[M,N] = X[M,K]·W[N,K]ᵀ (column-major: Yᵀ[N,M] = W·Xᵀ)
      size_t fB = ((size_t)g.n * g.k + (size_t)M * g.k) * 2;
      int nf = (int)std::min<size_t>(16, std::max<size_t>(2, (ROT + fB - 1) / fB));
      std::vector<__half*> dw(nf), dx(nf);
      for (int i = 0; i < nf; i++) {
        dw[i] = dalloc<__half>((size_t)g.n * g.k); dx[i] = dalloc<__half>((size_t)M * g.k);
        fill_half<<<1024, 256, 0, s>>>(dw[i], (size_t)g.n * g.k, 0.02f, 0.f, 17u + i);
        fill_half<<<1024, 256, 0, s>>>(dx[i], (size_t)M * g.k, 1.f, 0.f, 19u + i);
      }
      __half* dyh = dalloc<__half>((size_t)M * g.n);
      float alpha = 1.f, beta = 0.f;
      double fp16 = time_graph(s, 2 * nf, 9, [&](int i) {
        CUBLAS(cublasGemmEx(h, CUBLAS_OP_T, CUBLAS_OP_N, g.n, M, g.k, &alpha, dw[i % nf], CUDA_R_16F, g.k, dx[i % nf], CUDA_R_16F, g.k, &beta, dyh, CUDA_R_16F, g.n, CUBLAS_COMPUTE_32F, CUBLAS_GEMM_DEFAULT));
      });
      for (int i = 0; i < nf; i++) { cudaFree(dw[i]); cudaFree(dx[i]); }
      cudaFree(dyh);
      // cuBLAS int8 × int8 → int32 (reference for what int8 tensor cores give through cuBLAS)
      size_t iB = (size_t)g.n * g.k + (size_t)M * g.k;
      int ni = (int)std::min<size_t>(16, std::max<size_t>(2, (ROT + iB - 1) / iB));
      std::vector<int8_t*> iw(ni), ix(ni);
      for (int i = 0; i < ni; i++) {
        iw[i] = dalloc<int8_t>((size_t)g.n * g.k); ix[i] = dalloc<int8_t>((size_t)M * g.k);
        fill_u8<<<1024, 256, 0, s>>>((uint8_t*)iw[i], (size_t)g.n * g.k, 23u + i);
        fill_u8<<<1024, 256, 0, s>>>((uint8_t*)ix[i], (size_t)M * g.k, 29u + i);
      }
      int32_t* iy = dalloc<int32_t>((size_t)M * g.n);
      int32_t ia = 1, ib = 0;
      double int8 = -1;
      if (cublasGemmEx(h, CUBLAS_OP_T, CUBLAS_OP_N, g.n, M, g.k, &ia, iw[0], CUDA_R_8I, g.k, ix[0], CUDA_R_8I, g.k, &ib, iy, CUDA_R_32I, g.n, CUBLAS_COMPUTE_32I, CUBLAS_GEMM_DEFAULT) == CUBLAS_STATUS_SUCCESS) {
        TWLAC_CUDA(cudaStreamSynchronize(s));
        int8 = time_graph(s, 2 * ni, 9, [&](int i) {
          CUBLAS(cublasGemmEx(h, CUBLAS_OP_T, CUBLAS_OP_N, g.n, M, g.k, &ia, iw[i % ni], CUDA_R_8I, g.k, ix[i % ni], CUDA_R_8I, g.k, &ib, iy, CUDA_R_32I, g.n, CUBLAS_COMPUTE_32I, CUBLAS_GEMM_DEFAULT));
        });
      }
      for (int i = 0; i < ni; i++) { cudaFree(iw[i]); cudaFree(ix[i]); }
      cudaFree(iy);
      double ops = 2.0 * M * g.n * g.k;
      printf("%-36s %5d %9.2f %9.2f %9.2f %8.1f %8.1f %7.2fx %7.2fx %9.2e\n", g.name, M, ours, fp16, int8, ops / ours * 1e-6, ops / fp16 * 1e-6, fp16 / ours, int8 > 0 ? int8 / ours : 0.0, rel);
      fprintf(js, "  {\"kernel\": \"%s\", \"format\": \"%s\", \"m\": %d, \"n\": %d, \"k\": %d, \"us\": %.3f, \"cublasFp16Us\": %.3f, \"cublasInt8Us\": %.3f, \"TOPs\": %.1f, \"cublasFp16TFLOPs\": %.1f, \"cublasInt8TOPs\": %.1f, \"speedupVsFp16\": %.3f, \"speedupVsInt8\": %.3f, \"spotRelL2\": %.3e},\n",
              g.name, g.format, M, g.n, g.k, ours, fp16, int8, ops / ours * 1e-6, ops / fp16 * 1e-6, int8 > 0 ? ops / int8 * 1e-6 : 0.0, fp16 / ours, int8 > 0 ? int8 / ours : 0.0, rel);
      fflush(js); fflush(stdout);
    }
  }
  fprintf(js, "  null\n ],\n \"failures\": %d\n}\n", failures);
  fclose(js);
  printf("\nfailures: %d\n", failures);
  return failures ? 2 : 0;
}
