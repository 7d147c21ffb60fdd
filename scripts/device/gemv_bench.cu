// GEMV check and benchmark, run on the GPU machine (scripts/device/run-gemv.sh builds it).
// Kernels and check data come from scripts/device/gen-gemv-bench.ts (.device/cuda/).
//  1. Check cases: generated kernels vs the float64 output of the format's reference decoder
//     (computed in TypeScript from the same bytes).
//  2. Benchmark: decode GEMV (M=1) vs cuBLAS fp16 cublasGemmEx on the same shapes, side by
//     side, timed with CUDA graphs over rotating buffers (no L2 reuse), median of replays;
//     plus a spot check of each benchmark kernel against a host float64 decode.
#include "gemv_kernels.cuh"
#include <cublas_v2.h>
#include <algorithm>
#include <map>
#include <cmath>
#include <string>
#include <vector>

#define CUBLAS(x) do { cublasStatus_t s_ = (x); if (s_ != CUBLAS_STATUS_SUCCESS) { fprintf(stderr, "cuBLAS error %d at %s:%d\n", (int)s_, __FILE__, __LINE__); exit(1); } } while (0)

static const TwlacGemv* find(const char* name) {
  for (int i = 0; i < twlac_gemv_count; i++) if (std::string(twlac_gemvs[i].name) == name) return &twlac_gemvs[i];
  fprintf(stderr, "no kernel %s\n", name); exit(1);
}
static size_t bpg_of(const TwlacGemv& g) { return g.packing == 0 ? (g.group + 4) / 5 : (g.group + 3) / 4; }
static size_t ng_of(const TwlacGemv& g) { return (g.k + g.group - 1) / g.group; }
static int host_trit(const TwlacGemv& g, const uint8_t* grp, int k) { return g.packing == 0 ? twlac_host_trit_trit5(grp, k) : twlac_host_trit_bit2(grp, k); }

__global__ void fill_codes(uint8_t* p, size_t n, int packing, uint32_t seed) {
  for (size_t i = blockIdx.x * (size_t)blockDim.x + threadIdx.x; i < n; i += (size_t)gridDim.x * blockDim.x) {
    uint32_t h = (uint32_t)i * 2654435761u ^ seed; h ^= h >> 15; h *= 2246822519u; h ^= h >> 13; h *= 3266489917u; h ^= h >> 16;
    p[i] = packing == 0 ? twlac_random_byte_trit5(h) : twlac_random_byte_bit2(h);
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

static std::vector<uint8_t> read_file(const std::string& path) {
  FILE* f = fopen(path.c_str(), "rb");
  if (!f) { fprintf(stderr, "cannot open %s\n", path.c_str()); exit(1); }
  fseek(f, 0, SEEK_END); long n = ftell(f); fseek(f, 0, SEEK_SET);
  std::vector<uint8_t> b(n);
  if (fread(b.data(), 1, n, f) != (size_t)n) { fprintf(stderr, "short read %s\n", path.c_str()); exit(1); }
  fclose(f);
  return b;
}

__global__ void twlac_empty_kernel() {}
// Streaming kernels (the runtime's decode path, any plan) are also timed with programmatic
// dependent launch on, as inside the model: a launch overlaps the previous one's tail.
static bool is_streaming(const char* name) {
  return std::string(name).rfind("gemv_s", 0) == 0;
}
template <class T> static T* dalloc(size_t n) { T* p; TWLAC_CUDA(cudaMalloc(&p, n * sizeof(T))); return p; }

// Median time (µs) of one launch: a graph of `iters` launches of fn(i) replayed `reps` times.
template <class F> static double time_graph(cudaStream_t s, int iters, int reps, F fn) {
  cudaGraph_t g; cudaGraphExec_t ge;
  TWLAC_CUDA(cudaStreamBeginCapture(s, cudaStreamCaptureModeGlobal));
  for (int i = 0; i < iters; i++) fn(i);
  TWLAC_CUDA(cudaStreamEndCapture(s, &g));
  TWLAC_CUDA(cudaGraphInstantiate(&ge, g, 0));
  for (int i = 0; i < 3; i++) TWLAC_CUDA(cudaGraphLaunch(ge, s));
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

// Weights of one benchmark shape, copied over ≥ rot bytes (2…128 buffers) so that back-to-back
// launches never find them in L2; random codes of the packing, scales and shifts.
struct Rotating { int n; std::vector<uint8_t*> dc; std::vector<__half*> ds, dh; };
static Rotating rotating(size_t codesB, size_t scN, bool shift, int packing, size_t rot, cudaStream_t s) {
  const size_t bytes = codesB + scN * 2 * (shift ? 2 : 1);
  Rotating r;
  r.n = (int)std::min<size_t>(128, std::max<size_t>(2, (rot + bytes - 1) / bytes));
  r.dc.resize(r.n); r.ds.resize(r.n); r.dh.resize(r.n);
  for (int i = 0; i < r.n; i++) {
    r.dc[i] = dalloc<uint8_t>(codesB); r.ds[i] = dalloc<__half>(scN); r.dh[i] = shift ? dalloc<__half>(scN) : nullptr;
    fill_codes<<<1024, 256, 0, s>>>(r.dc[i], codesB, packing, 77u + i);
    fill_half<<<256, 256, 0, s>>>(r.ds[i], scN, 0.005f, 0.01f, 11u + i);
    if (r.dh[i]) fill_half<<<256, 256, 0, s>>>(r.dh[i], scN, 0.001f, 0.f, 13u + i);
  }
  return r;
}
static void free_rotating(Rotating& r) {
  for (int i = 0; i < r.n; i++) { cudaFree(r.dc[i]); cudaFree(r.ds[i]); if (r.dh[i]) cudaFree(r.dh[i]); }
}
// Median µs of `launch(buffer)` over the rotating buffers; streaming kernels (default plan) also
// with programmatic dependent launch on (usPdl, else −1).
template <class F> static void time_ours(cudaStream_t s, const char* name, int nbuf, F launch, double& us, double& usPdl) {
  us = time_graph(s, 2 * nbuf, 15, [&](int i) { launch(i % nbuf); });
  usPdl = -1;
  if (is_streaming(name)) {
    twlac_pdl_force = 1;
    usPdl = time_graph(s, 2 * nbuf, 15, [&](int i) { launch(i % nbuf); });
    twlac_pdl_force = 0;
  }
}

int main(int argc, char** argv) {
  std::string dir = argc > 1 ? argv[1] : ".device/cuda";
  std::string out = argc > 2 ? argv[2] : "gemv.json";
  const std::string only = argc > 3 ? argv[3] : ""; // profile runs: just the benchmark kernels whose name contains this
  const bool checksOnly = getenv("CHECKS_ONLY") != nullptr;
  // Launches are timed without programmatic dependent launch unless time_ours asks for it,
  // whatever TWLAC_PDL says (before fc23029, 2026-12-05, an unset TWLAC_PDL left it on for the "off"
  // timing of the first streaming kernel of a run).
  twlac_pdl_force = 0;
  cudaDeviceProp prop; TWLAC_CUDA(cudaGetDeviceProperties(&prop, 0));
  printf("device: %s, %d SMs, L2 %d MB\n", prop.name, prop.multiProcessorCount, prop.l2CacheSize >> 20);
  cudaStream_t s; TWLAC_CUDA(cudaStreamCreate(&s));
  FILE* js = fopen(out.c_str(), "w");
  fprintf(js, "{\n \"device\": \"%s\",\n \"checks\": [\n", prop.name);

  // ---- 1. checks against the reference decoder ----
  int failures = 0;
  for (int c = 0; c < (only.empty() ? twlac_check_count : 0); c++) {
    const TwlacGemv& g = *find(twlac_check_kernels[c]);
    const int T = twlac_check_t[c];
    std::vector<uint8_t> b = read_file(dir + "/case_" + std::to_string(c) + ".bin");
    size_t ng = ng_of(g), codesB = (size_t)g.n * ng * bpg_of(g), scB = (size_t)g.n * ng * 2, shB = g.shift ? scB : 0;
    size_t xB = (size_t)T * g.k * 2, yB = (size_t)T * g.n * 8;
    if (b.size() != codesB + scB + shB + xB + yB) { fprintf(stderr, "case %d: size %zu != expected\n", c, b.size()); return 1; }
    uint8_t* dc = dalloc<uint8_t>(codesB); __half* ds = dalloc<__half>(scB / 2); __half* dh = g.shift ? dalloc<__half>(shB / 2) : nullptr;
    __half* dx = dalloc<__half>((size_t)T * g.k); float* dy = dalloc<float>((size_t)T * g.n);
    TWLAC_CUDA(cudaMemcpy(dc, b.data(), codesB, cudaMemcpyHostToDevice));
    TWLAC_CUDA(cudaMemcpy(ds, b.data() + codesB, scB, cudaMemcpyHostToDevice));
    if (dh) TWLAC_CUDA(cudaMemcpy(dh, b.data() + codesB + scB, shB, cudaMemcpyHostToDevice));
    TWLAC_CUDA(cudaMemcpy(dx, b.data() + codesB + scB + shB, xB, cudaMemcpyHostToDevice));
    const double* ref = reinterpret_cast<const double*>(b.data() + codesB + scB + shB + xB);
    // Poison the output, run once overwriting, then once accumulating onto the first result.
    TWLAC_CUDA(cudaMemset(dy, 0xff, (size_t)T * g.n * 4));
    g.launch(dx, dc, ds, dh, dy, T, 0, s);
    TWLAC_CUDA(cudaStreamSynchronize(s));
    std::vector<float> y((size_t)T * g.n), y2((size_t)T * g.n);
    TWLAC_CUDA(cudaMemcpy(y.data(), dy, y.size() * 4, cudaMemcpyDeviceToHost));
    g.launch(dx, dc, ds, dh, dy, T, 1, s);
    TWLAC_CUDA(cudaMemcpy(y2.data(), dy, y2.size() * 4, cudaMemcpyDeviceToHost));
    double num = 0, den = 0, maxd = 0, maxr = 0, accErr = 0; bool nan = false;
    for (size_t i = 0; i < y.size(); i++) {
      if (!std::isfinite(y[i])) nan = true;
      double d = y[i] - ref[i]; num += d * d; den += ref[i] * ref[i];
      maxd = std::max(maxd, std::fabs(d)); maxr = std::max(maxr, std::fabs(ref[i]));
      accErr = std::max(accErr, std::fabs((double)y2[i] - 2.0 * y[i]));
    }
    double rel = std::sqrt(num / den), relmax = maxd / maxr;
    bool ok = !nan && rel < 2e-3 && relmax < 1e-2 && accErr <= 1e-5 * maxr * 2;
    failures += !ok;
    printf("check %-44s T=%2d  relL2 %.2e  max|d|/max|ref| %.2e  %s\n", g.name, T, rel, relmax, ok ? "ok" : "FAIL");
    fprintf(js, "  {\"kernel\": \"%s\", \"T\": %d, \"relL2\": %.3e, \"relMax\": %.3e, \"ok\": %s},\n", g.name, T, rel, relmax, ok ? "true" : "false");
    cudaFree(dc); cudaFree(ds); if (dh) cudaFree(dh); cudaFree(dx); cudaFree(dy);
  }
  fprintf(js, "  null\n ],\n");

  // ---- copy bandwidth ----
  {
    size_t n = (size_t)1 << 30; uint8_t* a = dalloc<uint8_t>(n); uint8_t* bb = dalloc<uint8_t>(n);
    double us = time_graph(s, 5, 9, [&](int) { TWLAC_CUDA(cudaMemcpyAsync(bb, a, n, cudaMemcpyDeviceToDevice, s)); });
    double gbs = 2.0 * n / (us * 1e3);
    printf("device-to-device copy: %.0f GB/s (read + write)\n", gbs);
    fprintf(js, " \"copyGBs\": %.1f,\n", gbs);
    cudaFree(a); cudaFree(bb);
  }

  // ---- 2. benchmark vs cuBLAS fp16 ----
  {
    const double us = time_graph(s, 200, 15, [&](int) { twlac_empty_kernel<<<1, 32, 0, s>>>(); });
    printf("empty kernel in the graph: %.2f us a launch\n", us);
    fprintf(js, " \"emptyKernelUs\": %.3f,\n", us);
  }
  cublasHandle_t h; CUBLAS(cublasCreate(&h)); CUBLAS(cublasSetStream(h, s));
  const size_t ROT = (size_t)400 << 20; // rotate over ≥ 400 MB so L2 (50 MB) never holds the weights
  // cuBLAS fp16 GEMV (M = 1) per shape, measured once a shape in this run and reused.
  std::map<std::pair<int, int>, double> cublasCache;
  auto cublas_us = [&](int n, int k) -> double {
    auto it = cublasCache.find({n, k});
    if (it != cublasCache.end()) return it->second;
    size_t wB = (size_t)n * k * 2;
    int nw = (int)std::min<size_t>(64, std::max<size_t>(2, (ROT + wB - 1) / wB));
    std::vector<__half*> dw(nw);
    for (int i = 0; i < nw; i++) { dw[i] = dalloc<__half>((size_t)n * k); fill_half<<<1024, 256, 0, s>>>(dw[i], (size_t)n * k, 0.02f, 0.f, 17u + i); }
    __half* dx = dalloc<__half>(k); __half* dyh = dalloc<__half>(n);
    fill_half<<<64, 256, 0, s>>>(dx, k, 1.f, 0.f, 5u);
    float alpha = 1.f, beta = 0.f;
    double us = time_graph(s, 2 * nw, 15, [&](int i) {
      CUBLAS(cublasGemmEx(h, CUBLAS_OP_T, CUBLAS_OP_N, n, 1, k, &alpha, dw[i % nw], CUDA_R_16F, k, dx, CUDA_R_16F, k, &beta, dyh, CUDA_R_16F, n, CUBLAS_COMPUTE_32F, CUBLAS_GEMM_DEFAULT));
    });
    for (int i = 0; i < nw; i++) cudaFree(dw[i]);
    cudaFree(dx); cudaFree(dyh);
    cublasCache[{n, k}] = us;
    return us;
  };
  fprintf(js, " \"gemv\": [\n");
  printf("\n%-40s %9s %9s %8s %8s %7s %9s\n", "kernel (M=1)", "ours us", "cublas us", "speedup", "GB/s", "%copy", "relL2");
  for (int bi = 0; bi < (checksOnly ? 0 : twlac_bench_count); bi++) {
    const TwlacGemv& g = *find(twlac_bench_kernels[bi]);
    if (!only.empty() && std::string(g.name).find(only) == std::string::npos) continue;
    size_t ng = ng_of(g), codesB = (size_t)g.n * ng * bpg_of(g), scN = (size_t)g.n * ng;
    size_t bytes = codesB + scN * 2 * (g.shift ? 2 : 1);
    Rotating rw = rotating(codesB, scN, g.shift, g.packing, ROT, s);
    const int nbuf = rw.n;
    const std::vector<uint8_t*>& dc = rw.dc; const std::vector<__half*>& ds = rw.ds; const std::vector<__half*>& dh = rw.dh;
    __half* dx = dalloc<__half>(g.k); float* dy = dalloc<float>(g.n);
    fill_half<<<64, 256, 0, s>>>(dx, g.k, 1.f, 0.f, 5u);
    TWLAC_CUDA(cudaGetLastError());
    double ours, oursPdl;
    time_ours(s, g.name, nbuf, [&](int j) { g.launch(dx, dc[j], ds[j], dh[j], dy, 1, 0, s); }, ours, oursPdl);
    // spot check buffer 0 on 16 rows against a host float64 decode
    g.launch(dx, dc[0], ds[0], dh[0], dy, 1, 0, s);
    TWLAC_CUDA(cudaStreamSynchronize(s));
    std::vector<float> y(g.n); TWLAC_CUDA(cudaMemcpy(y.data(), dy, g.n * 4, cudaMemcpyDeviceToHost));
    std::vector<__half> hx(g.k); TWLAC_CUDA(cudaMemcpy(hx.data(), dx, g.k * 2, cudaMemcpyDeviceToHost));
    double num = 0, den = 0;
    size_t rowB = ng * bpg_of(g);
    std::vector<uint8_t> rc(rowB); std::vector<__half> rs(ng), rh(ng);
    for (int t = 0; t < 16; t++) {
      int n = (int)((t * 2654435761u) % g.n);
      TWLAC_CUDA(cudaMemcpy(rc.data(), dc[0] + (size_t)n * rowB, rowB, cudaMemcpyDeviceToHost));
      TWLAC_CUDA(cudaMemcpy(rs.data(), ds[0] + (size_t)n * ng, ng * 2, cudaMemcpyDeviceToHost));
      if (g.shift) TWLAC_CUDA(cudaMemcpy(rh.data(), dh[0] + (size_t)n * ng, ng * 2, cudaMemcpyDeviceToHost));
      double ref = 0;
      for (int k = 0; k < g.k; k++) {
        int gi = k / g.group;
        int tr = host_trit(g, rc.data() + gi * bpg_of(g), k % g.group);
        double w = (double)__half2float(rs[gi]) * tr + (g.shift ? (double)__half2float(rh[gi]) : 0.0);
        ref += w * (double)__half2float(hx[k]);
      }
      num += (y[n] - ref) * (y[n] - ref); den += ref * ref;
    }
    double rel = std::sqrt(num / den);
    free_rotating(rw);
    // cuBLAS fp16 on the same shape: y[N] = W[N,K] · x[K]
    double cub = cublas_us(g.n, g.k);
    cudaFree(dx); cudaFree(dy);
    double gbs = (bytes + g.k * 2.0 + g.n * 4.0) / (ours * 1e3);
    printf("%-40s %9.2f %9.2f %7.2fx %8.0f %9.2e", g.name, ours, cub, cub / ours, gbs, rel);
    if (oursPdl > 0) printf("   with PDL %.2f us %.2fx", oursPdl, cub / oursPdl);
    printf("\n");
    fprintf(js, "  {\"kernel\": \"%s\", \"format\": \"%s\", \"n\": %d, \"k\": %d, \"m\": 1, \"bytes\": %zu, \"us\": %.3f, \"cublasFp16Us\": %.3f, \"speedup\": %.3f, \"GBs\": %.1f, \"spotRelL2\": %.3e, \"usWithPdl\": %.3f},\n",
            g.name, g.format, g.n, g.k, bytes, ours, cub, cub / ours, gbs, rel, oursPdl);
    if (!(rel < 2e-3)) failures++;
  }
  fprintf(js, "  null\n ],\n");

  // ---- 3. int8-activation GEMV: checks vs the float64 oracle, then the benchmark shapes ----
  fprintf(js, " \"a8Checks\": [\n");
  for (int c = 0; c < (only.empty() ? twlac_check_a8_count : 0); c++) {
    const TwlacGemvA8* gp = nullptr;
    for (int i = 0; i < twlac_gemv_a8_count; i++) if (std::string(twlac_gemvs_a8[i].name) == twlac_check_a8_kernels[c]) gp = &twlac_gemvs_a8[i];
    const TwlacGemvA8& g = *gp;
    const int T = twlac_check_a8_t[c];
    std::vector<uint8_t> b = read_file(dir + "/case_a8_" + std::to_string(c) + ".bin");
    size_t ng = (g.k + g.group - 1) / g.group, codesB = (size_t)g.n * ng * ((g.group + 3) / 4), scB = (size_t)g.n * ng * 2, shB = g.shift ? scB : 0;
    size_t qB = (size_t)T * g.k, apB = (size_t)T * 8, yB = (size_t)T * g.n * 8;
    if (b.size() != codesB + scB + shB + qB + apB + yB) { fprintf(stderr, "a8 case %d: size mismatch\n", c); return 1; }
    uint8_t* dc = dalloc<uint8_t>(codesB); __half* ds = dalloc<__half>(scB / 2); __half* dh = g.shift ? dalloc<__half>(shB / 2) : nullptr;
    uint8_t* dq = dalloc<uint8_t>(qB); float* dap = dalloc<float>(T * 2); float* dy = dalloc<float>((size_t)T * g.n);
    size_t o = 0;
    TWLAC_CUDA(cudaMemcpy(dc, b.data() + o, codesB, cudaMemcpyHostToDevice)); o += codesB;
    TWLAC_CUDA(cudaMemcpy(ds, b.data() + o, scB, cudaMemcpyHostToDevice)); o += scB;
    if (dh) TWLAC_CUDA(cudaMemcpy(dh, b.data() + o, shB, cudaMemcpyHostToDevice)); o += shB;
    TWLAC_CUDA(cudaMemcpy(dq, b.data() + o, qB, cudaMemcpyHostToDevice)); o += qB;
    TWLAC_CUDA(cudaMemcpy(dap, b.data() + o, apB, cudaMemcpyHostToDevice)); o += apB;
    const double* ref = reinterpret_cast<const double*>(b.data() + o);
    TWLAC_CUDA(cudaMemset(dy, 0xff, (size_t)T * g.n * 4));
    g.launch(dq, dap, dc, ds, dh, dy, T, 0, s);
    TWLAC_CUDA(cudaStreamSynchronize(s));
    std::vector<float> y((size_t)T * g.n);
    TWLAC_CUDA(cudaMemcpy(y.data(), dy, y.size() * 4, cudaMemcpyDeviceToHost));
    double num = 0, den = 0, maxd = 0, maxr = 0; bool nan = false;
    for (size_t i = 0; i < y.size(); i++) {
      if (!std::isfinite(y[i])) nan = true;
      double d = y[i] - ref[i]; num += d * d; den += ref[i] * ref[i];
      maxd = std::max(maxd, std::fabs(d)); maxr = std::max(maxr, std::fabs(ref[i]));
    }
    double rel = std::sqrt(num / den), relmax = maxd / maxr;
    bool ok = !nan && rel < 1e-4 && relmax < 1e-3; // integer sums are exact: only fp32 rounding remains
    failures += !ok;
    printf("check %-44s T=%2d  relL2 %.2e  max|d|/max|ref| %.2e  %s\n", g.name, T, rel, relmax, ok ? "ok" : "FAIL");
    fprintf(js, "  {\"kernel\": \"%s\", \"T\": %d, \"relL2\": %.3e, \"relMax\": %.3e, \"ok\": %s},\n", g.name, T, rel, relmax, ok ? "true" : "false");
    cudaFree(dc); cudaFree(ds); if (dh) cudaFree(dh); cudaFree(dq); cudaFree(dap); cudaFree(dy);
  }
  fprintf(js, "  null\n ],\n \"gemvA8\": [\n");
  printf("\n%-40s %9s %9s %8s %8s\n", "int8-activation kernel (M=1)", "ours us", "cublas us", "speedup", "GB/s");
  for (int bi = 0; bi < (checksOnly ? 0 : twlac_bench_a8_count); bi++) {
    const TwlacGemvA8* gp = nullptr;
    for (int i = 0; i < twlac_gemv_a8_count; i++) if (std::string(twlac_gemvs_a8[i].name) == twlac_bench_a8_kernels[bi]) gp = &twlac_gemvs_a8[i];
    const TwlacGemvA8& g = *gp;
    if (!only.empty() && std::string(g.name).find(only) == std::string::npos) continue;
    size_t ng = (g.k + g.group - 1) / g.group, codesB = (size_t)g.n * ng * ((g.group + 3) / 4), scN = (size_t)g.n * ng;
    size_t bytes = codesB + scN * 2 * (g.shift ? 2 : 1);
    Rotating rw = rotating(codesB, scN, g.shift, g.packing, ROT, s);
    const int nbuf = rw.n;
    const std::vector<uint8_t*>& dc = rw.dc; const std::vector<__half*>& ds = rw.ds; const std::vector<__half*>& dh = rw.dh;
    uint8_t* dq = dalloc<uint8_t>(g.k); float* dap = dalloc<float>(2); float* dy = dalloc<float>(g.n);
    fill_u8<<<64, 256, 0, s>>>(dq, g.k, 5u);
    const float aph[2] = {0.02f, 128.f};
    TWLAC_CUDA(cudaMemcpy(dap, aph, 8, cudaMemcpyHostToDevice));
    double ours, oursPdl;
    time_ours(s, g.name, nbuf, [&](int j) { g.launch(dq, dap, dc[j], ds[j], dh[j], dy, 1, 0, s); }, ours, oursPdl);
    free_rotating(rw);
    double cub = cublas_us(g.n, g.k);
    cudaFree(dq); cudaFree(dap); cudaFree(dy);
    double gbs = (bytes + g.k + g.n * 4.0) / (ours * 1e3);
    printf("%-40s %9.2f %9.2f %7.2fx %8.0f", g.name, ours, cub, cub / ours, gbs);
    if (oursPdl > 0) printf("   with PDL %.2f us %.2fx", oursPdl, cub / oursPdl);
    printf("\n");
    fprintf(js, "  {\"kernel\": \"%s\", \"format\": \"%s\", \"n\": %d, \"k\": %d, \"m\": 1, \"bytes\": %zu, \"us\": %.3f, \"cublasFp16Us\": %.3f, \"speedup\": %.3f, \"GBs\": %.1f, \"usWithPdl\": %.3f},\n",
            g.name, g.format, g.n, g.k, bytes, ours, cub, cub / ours, gbs, oursPdl);
  }
  fprintf(js, "  null\n ],\n \"failures\": %d\n}\n", failures);
  fclose(js);
  printf("\nfailures: %d\n", failures);
  return failures ? 2 : 0;
}
