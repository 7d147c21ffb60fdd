// Harness of `twlac kernels --target cuda:<arch>`: every kernel of twlac_kernels.cuh against its
// check case (expected output from the format's reference decoder, in float64), then its time
// per launch. Prints one JSON object; exits 1 when a check fails.
//   ./twlac_kernels_harness [DIR]   (DIR holds the case files; default .)
#include "twlac_kernels.cuh"
#include <algorithm>
#include <cmath>
#include <string>
#include <vector>

static std::vector<uint8_t> read_file(const std::string& path) {
  FILE* f = fopen(path.c_str(), "rb");
  if (!f) { fprintf(stderr, "cannot open %s\n", path.c_str()); exit(1); }
  fseek(f, 0, SEEK_END); long n = ftell(f); fseek(f, 0, SEEK_SET);
  std::vector<uint8_t> b(n);
  if (fread(b.data(), 1, n, f) != (size_t)n) { fprintf(stderr, "short read %s\n", path.c_str()); exit(1); }
  fclose(f);
  return b;
}

int main(int argc, char** argv) {
  const std::string dir = argc > 1 ? argv[1] : ".";
  cudaDeviceProp prop; TWLAC_CUDA(cudaGetDeviceProperties(&prop, 0));
  cudaStream_t s; TWLAC_CUDA(cudaStreamCreate(&s));
  cudaEvent_t e0, e1; cudaEventCreate(&e0); cudaEventCreate(&e1);
  printf("{\"device\": \"%s\", \"kernels\": [\n", prop.name);
  int failures = 0;
  for (int i = 0; i < twlac_kernel_count; i++) {
    const TwlacKernel& g = twlac_kernels[i];
    const size_t ng = (g.k + g.group - 1) / g.group, bpg = g.packing == 0 ? (g.group + 4) / 5 : (g.group + 3) / 4;
    const size_t codesB = (size_t)g.n * ng * bpg, scB = (size_t)g.n * ng * 2, shB = g.shift ? scB : 0;
    const size_t xB = (size_t)g.t * g.k * 2, yN = (size_t)g.t * g.n;
    std::vector<uint8_t> b = read_file(dir + "/" + g.caseFile);
    if (b.size() != codesB + scB + shB + xB + yN * 8) { fprintf(stderr, "%s: %zu bytes, expected %zu\n", g.caseFile, b.size(), codesB + scB + shB + xB + yN * 8); return 1; }
    uint8_t* dc; __half *ds, *dh = nullptr, *dx; float* dy;
    TWLAC_CUDA(cudaMalloc(&dc, codesB)); TWLAC_CUDA(cudaMalloc(&ds, scB)); if (shB) TWLAC_CUDA(cudaMalloc(&dh, shB));
    TWLAC_CUDA(cudaMalloc(&dx, xB)); TWLAC_CUDA(cudaMalloc(&dy, yN * 4));
    TWLAC_CUDA(cudaMemcpy(dc, b.data(), codesB, cudaMemcpyHostToDevice));
    TWLAC_CUDA(cudaMemcpy(ds, b.data() + codesB, scB, cudaMemcpyHostToDevice));
    if (dh) TWLAC_CUDA(cudaMemcpy(dh, b.data() + codesB + scB, shB, cudaMemcpyHostToDevice));
    TWLAC_CUDA(cudaMemcpy(dx, b.data() + codesB + scB + shB, xB, cudaMemcpyHostToDevice));
    const double* ref = reinterpret_cast<const double*>(b.data() + codesB + scB + shB + xB);
    TWLAC_CUDA(cudaMemset(dy, 0xff, yN * 4)); // poison: the launch must overwrite every output
    g.launch(dx, dc, ds, dh, dy, g.t, 0, s);
    TWLAC_CUDA(cudaStreamSynchronize(s));
    std::vector<float> y(yN);
    TWLAC_CUDA(cudaMemcpy(y.data(), dy, yN * 4, cudaMemcpyDeviceToHost));
    double num = 0, den = 0, maxd = 0, maxr = 0; bool finite = true;
    for (size_t j = 0; j < yN; j++) {
      finite = finite && std::isfinite(y[j]);
      const double d = y[j] - ref[j];
      num += d * d; den += ref[j] * ref[j]; maxd = std::max(maxd, std::fabs(d)); maxr = std::max(maxr, std::fabs(ref[j]));
    }
    const double rel = std::sqrt(num / den), relMax = maxd / maxr;
    const bool ok = finite && rel < 2e-3 && relMax < 1e-2; // fp16 activations, fp32 accumulation
    failures += !ok;
    // Time: median of 15 runs of 100 back-to-back launches (weights stay in L2 when they fit).
    std::vector<double> us;
    for (int r = 0; r < 15; r++) {
      cudaEventRecord(e0, s);
      for (int it = 0; it < 100; it++) g.launch(dx, dc, ds, dh, dy, g.t, 0, s);
      cudaEventRecord(e1, s); TWLAC_CUDA(cudaEventSynchronize(e1));
      float ms; cudaEventElapsedTime(&ms, e0, e1); us.push_back(ms * 10.0);
    }
    std::sort(us.begin(), us.end());
    const double bytes = (double)(codesB + scB + shB + xB + yN * 4);
    printf("  {\"kernel\": \"%s\", \"n\": %d, \"k\": %d, \"relL2\": %.3e, \"relMax\": %.3e, \"ok\": %s, \"us\": %.3f, \"GBs\": %.1f}%s\n", g.name, g.n, g.k, rel, relMax,
           ok ? "true" : "false", us[us.size() / 2], bytes / (us[us.size() / 2] * 1e3), i + 1 < twlac_kernel_count ? "," : "");
    cudaFree(dc); cudaFree(ds); if (dh) cudaFree(dh); cudaFree(dx); cudaFree(dy);
  }
  printf("], \"failures\": %d}\n", failures);
  return failures ? 1 : 0;
}
