// twlac CUDA host program (copied verbatim into out/kernels/cuda/; the model-specific part
// is <arch>/twlac_model.cuh, generated from manifest.json).
//
//   twlac_cuda (--weights DIR | --random SEED) MODE
//   modes:
//     --prompt 1,2,3 --max-tokens N   greedy decode; prints the generated ids
//     --ids 1,2,3 --logits-out F      logits [n][vocab] float32 of the ids (prefill) to file F
//     --ppl F [--windows N]           perplexity over int32 token ids in F (../shared/EVAL.md:
//                                     windows of 256, each predicting 256 next tokens)
//     --bench-decode CTX [--steps N] [--batch B]
//                                     decode tokens/s after a CTX-token prefill (CUDA graph); with
//                                     B > 1 (≤ TWLAC_MAX_BATCH), B sequences of different prompts
//                                     decode together, one token each a step, and the greedy tokens
//                                     of the first and last are checked against decoding each alone
//     --profile-decode CTX            milliseconds of each op of one decode step (events, no graph)
// Weights: DIR/weights.bin as described by the generated index, or synthesised on the GPU
// (--random: random codes/scales in the model's formats, for speed runs of large shapes).
// Environment: TWLAC_PDL=0 turns programmatic dependent launch off; TWLAC_PREFILL_CHUNK=N
// prefills N tokens a forward (default TWLAC_MAX_CHUNK; 16 keeps prefill on the GEMVs; the
// token buffers are sized by it, so a smaller N also takes less memory).
#include "twlac_model.cuh"
#include <algorithm>
#include <chrono>
#include <cmath>
#include <string>
#include <vector>
#include <map>

// Batched decode: at most this many sequences (one token each in a forward of T = B tokens, which
// stays on the GEMVs and the split attention), each with its own K/V cache, TWLAC_SEQ_KV apart.
#define TWLAC_MAX_BATCH TWLAC_SPLIT_MAX_T
#define TWLAC_SEQ_KV ((unsigned long long)TWLAC_LAYERS * TWLAC_MAX_POS * TWLAC_KV_HEADS * TWLAC_HEAD_DIM)

static void usage() {
  fprintf(stderr, "usage: twlac_cuda (--weights DIR | --random SEED) (--prompt IDS --max-tokens N | --ids IDS --logits-out FILE | --ppl FILE [--windows N] | --bench-decode CTX [--steps N] [--batch B] | --profile-decode CTX)\n");
  fprintf(stderr, "environment: TWLAC_PREFILL_CHUNK=N (1..%d, default %d) tokens a prefill forward; its token buffers, and so part of the GPU memory, scale with it. TWLAC_PDL=0 turns programmatic dependent launch off.\n", TWLAC_MAX_CHUNK, TWLAC_MAX_CHUNK);
  exit(2);
}

__global__ void twlac_fill(uint8_t* W, unsigned long long off, unsigned long long bytes, int fill, float a, float b, float c, uint32_t seed) {
  const unsigned long long stride = (unsigned long long)gridDim.x * blockDim.x;
  for (unsigned long long i = blockIdx.x * (unsigned long long)blockDim.x + threadIdx.x; ; i += stride) {
    const unsigned long long n = (fill == TWLAC_FILL_CODES_TRIT5 || fill == TWLAC_FILL_CODES_BIT2) ? bytes : (fill == TWLAC_FILL_HALF || fill == TWLAC_FILL_HALF_LATTICE) ? bytes / 2 : bytes / 4;
    if (i >= n) break;
    uint32_t h = (uint32_t)(i * 2654435761ull) ^ (seed * 0x9e3779b9u) ^ (uint32_t)(off >> 6);
    h ^= h >> 15; h *= 2246822519u; h ^= h >> 13; h *= 3266489917u; h ^= h >> 16;
    const float u = (h >> 8) * (2.0f / 16777216.0f) - 1.0f;
    if (fill == TWLAC_FILL_CODES_TRIT5) W[off + i] = twlac_random_byte_trit5(h);
    else if (fill == TWLAC_FILL_CODES_BIT2) W[off + i] = twlac_random_byte_bit2(h);
    else if (fill == TWLAC_FILL_HALF) reinterpret_cast<__half*>(W + off)[i] = __float2half(a + b * u);
    else if (fill == TWLAC_FILL_HALF_LATTICE) reinterpret_cast<__half*>(W + off)[i] = __float2half(rintf((a + b * u) / c) * c); // c: the lattice unit
    else if (fill == TWLAC_FILL_FLOAT) reinterpret_cast<float*>(W + off)[i] = a + b * u;
    else { const int d = (int)a; reinterpret_cast<float*>(W + off)[i] = (i / d == i % d) ? 1.f : 0.f; }
  }
}

// The first largest of the vocab's logits in `l` (ties to the lower index), in thread 0 of a
// block of 1024 threads.
__device__ int twlac_block_argmax(const float* l) {
  __shared__ float bv[1024];
  __shared__ int bi[1024];
  float v = -INFINITY; int idx = 0;
  for (int i = threadIdx.x; i < TWLAC_VOCAB; i += blockDim.x) if (l[i] > v) { v = l[i]; idx = i; }
  bv[threadIdx.x] = v; bi[threadIdx.x] = idx;
  __syncthreads();
  for (int o = blockDim.x / 2; o > 0; o >>= 1) {
    if (threadIdx.x < o) {
      const float w = bv[threadIdx.x + o]; const int j = bi[threadIdx.x + o];
      if (w > bv[threadIdx.x] || (w == bv[threadIdx.x] && j < bi[threadIdx.x])) { bv[threadIdx.x] = w; bi[threadIdx.x] = j; }
    }
    __syncthreads();
  }
  return bi[0];
}

// Greedy step on device: ids[0] = argmax(logits[0]); out[*step] = ids[0]; ++*step; *pos += 1.
__global__ void twlac_argmax_advance(const float* logits, int* ids, int* out, int* step, int* pos) {
  const int id = twlac_block_argmax(logits);
  if (threadIdx.x == 0) { ids[0] = id; out[*step] = id; *step += 1; *pos += 1; }
}

// Greedy step of a batch (block b, sequence b): ids[b] = argmax(logits[b]); out[b][pos[b] − start] = ids[b]; pos[b] += 1.
__global__ void twlac_argmax_advance_batch(const float* logits, int* ids, int* out, int outStride, int start, int* pos) {
  const int id = twlac_block_argmax(logits + (size_t)blockIdx.x * TWLAC_VOCAB);
  if (threadIdx.x == 0) {
    const int k = pos[blockIdx.x] - start;
    ids[blockIdx.x] = id;
    if (k >= 0 && k < outStride) out[(size_t)blockIdx.x * outStride + k] = id;
    pos[blockIdx.x] += 1;
  }
}

static std::vector<int> parse_ids(const std::string& s) {
  std::vector<int> v; size_t p = 0;
  while (p < s.size()) { size_t q = s.find(',', p); if (q == std::string::npos) q = s.size(); if (q > p) v.push_back(std::stoi(s.substr(p, q - p))); p = q + 1; }
  return v;
}

template <class T> static T* dalloc(size_t n) { T* p; TWLAC_CUDA(cudaMalloc(&p, std::max<size_t>(n, 1) * sizeof(T))); return p; }

// A synthetic prompt of max(n, 1) ids for the speed runs (--bench-decode, --profile-decode);
// `variant` gives each sequence of a batch its own.
static std::vector<int> synthetic_ids(int n, int variant = 0) {
  std::vector<int> p(std::max(n, 1));
  for (size_t i = 0; i < p.size(); i++) p[i] = (int)(((i + 7919u * (unsigned)variant) * 2654435761u) % TWLAC_VOCAB);
  return p;
}

struct Runtime {
  uint8_t* W = nullptr;
  uint8_t* staging = nullptr; // trit5 codes on their way to bit2 (load time only)
  TwlacBuffers b{};
  int* ids = nullptr;
  cudaStream_t s{};
  float latticeRowsMs = 0.f; // the last lattice_rows() (load time)
  int batch = 1;               // sequences with a K/V cache of their own
  __half *kcache0 = nullptr, *vcache0 = nullptr;
  void init(int batchSeqs = 1) {
    batch = batchSeqs;
    TWLAC_CUDA(cudaStreamCreate(&s));
    const size_t C = prefill_chunk(); // token buffers for the largest forward (TWLAC_PREFILL_CHUNK caps it, and the memory)
    b.x = dalloc<float>(C * TWLAC_HIDDEN);
    b.r = dalloc<float>(C * TWLAC_HIDDEN);
    b.q = dalloc<float>(C * TWLAC_HEADS * TWLAC_HEAD_DIM);
    b.k = dalloc<float>(C * TWLAC_KV_HEADS * TWLAC_HEAD_DIM);
    b.v = dalloc<float>(C * TWLAC_KV_HEADS * TWLAC_HEAD_DIM);
    b.att = dalloc<float>(C * TWLAC_HEADS * TWLAC_HEAD_DIM);
    b.g = dalloc<float>(C * TWLAC_INTERMEDIATE);
    b.u = dalloc<float>(C * TWLAC_INTERMEDIATE);
    b.logits = dalloc<float>(C * TWLAC_VOCAB);
    b.pm = dalloc<float>(TWLAC_SPLIT_MAX_T * TWLAC_HEADS * TWLAC_ATTN_SPLITS); // split attention: T ≤ TWLAC_SPLIT_MAX_T
    b.pl = dalloc<float>(TWLAC_SPLIT_MAX_T * TWLAC_HEADS * TWLAC_ATTN_SPLITS);
    b.pacc = dalloc<float>(TWLAC_SPLIT_MAX_T * TWLAC_HEADS * TWLAC_ATTN_SPLITS * TWLAC_HEAD_DIM);
    b.a16 = dalloc<__half>(C * TWLAC_MAX_ACT);
    b.q8 = dalloc<uint8_t>(C * TWLAC_MAX_ACT);
    b.qp = dalloc<float>(C * 2);
    b.kcache = kcache0 = dalloc<__half>(TWLAC_SEQ_KV * batch);
    b.vcache = vcache0 = dalloc<__half>(TWLAC_SEQ_KV * batch);
    b.pos = dalloc<int>(TWLAC_MAX_BATCH);
    b.seq = 0;
    ids = dalloc<int>(std::max<size_t>(C, TWLAC_MAX_BATCH));
    W = dalloc<uint8_t>(TWLAC_DEVICE_BYTES);
    staging = TWLAC_STAGING_BYTES ? dalloc<uint8_t>(TWLAC_STAGING_BYTES) : nullptr;
  }
  // Tensors in file order: straight to their device place, or (trit5 codes) through the staging
  // buffer and transcoded into place; the staging buffer is freed afterwards.
  void load(const std::string& dir) {
    const std::string path = dir + "/weights.bin";
    FILE* f = fopen(path.c_str(), "rb");
    if (!f) { fprintf(stderr, "twlac: cannot open %s\n", path.c_str()); exit(1); }
    std::vector<uint8_t> buf((size_t)64 << 20);
    for (int i = 0; i < twlac_tensor_count; i++) {
      const TwlacTensor& t = twlac_tensors[i];
      uint8_t* dst = t.device == TWLAC_STAGED ? staging : W + t.device;
      if (fseek(f, (long)t.offset, SEEK_SET) != 0) { fprintf(stderr, "twlac: cannot seek %s to %llu\n", path.c_str(), t.offset); exit(1); }
      for (size_t done = 0; done < t.bytes;) {
        const size_t want = std::min(buf.size(), (size_t)(t.bytes - done));
        const size_t got = fread(buf.data(), 1, want, f);
        if (got != want) { fprintf(stderr, "twlac: %s is shorter than the %llu bytes the model index needs\n", path.c_str(), TWLAC_WEIGHTS_BYTES); exit(1); }
        TWLAC_CUDA(cudaMemcpy(dst + done, buf.data(), got, cudaMemcpyHostToDevice));
        done += got;
      }
      if (t.device == TWLAC_STAGED) { twlac_place(i, staging, W, s); TWLAC_CUDA(cudaStreamSynchronize(s)); }
    }
    fclose(f);
    release_staging();
    check_lattice(path);
    lattice_rows();
  }
  // Lattice formats: the prefill GEMM rounds each scale and shift to its row's lattice unit, so
  // values off the lattice (a weights.bin edited or written by another tool) are refused here.
  void check_lattice(const std::string& path) {
    std::vector<uint16_t> sc, sh;
    for (int i = 0; i < twlac_lattice_linear_count; i++) {
      const TwlacLatticeLinear& l = twlac_lattice_linears[i];
      const size_t n = (size_t)l.rows * l.groups;
      sc.resize(n);
      TWLAC_CUDA(cudaMemcpy(sc.data(), W + l.scales, n * 2, cudaMemcpyDeviceToHost));
      if (l.shifts != TWLAC_NO_TENSOR) { sh.resize(n); TWLAC_CUDA(cudaMemcpy(sh.data(), W + l.shifts, n * 2, cudaMemcpyDeviceToHost)); }
      const int bad = twlac_lattice_bad_row(sc.data(), l.shifts != TWLAC_NO_TENSOR ? sh.data() : nullptr, l.rows, l.groups);
      if (bad >= 0) { fprintf(stderr, "twlac: %s: linear %s row %d: a scale or shift is not finite or not a multiple of the row's lattice unit, which format %s requires\n", path.c_str(), l.name, bad, l.format); exit(1); }
    }
  }
  void randomize(uint32_t seed) {
    for (int i = 0; i < twlac_tensor_count; i++) {
      const TwlacTensor& t = twlac_tensors[i];
      const bool st = t.device == TWLAC_STAGED;
      twlac_fill<<<1024, 256, 0, s>>>(st ? staging : W, st ? 0ull : t.device, t.bytes, t.fill, t.a, t.b, t.c, seed + i);
      TWLAC_CUDA(cudaGetLastError());
      if (st) twlac_place(i, staging, W, s);
    }
    TWLAC_CUDA(cudaStreamSynchronize(s));
    release_staging();
    lattice_rows();
  }
  // The lattice GEMM's per-row constants, from the weights now on the device.
  void lattice_rows() {
    cudaEvent_t a, e;
    TWLAC_CUDA(cudaEventCreate(&a));
    TWLAC_CUDA(cudaEventCreate(&e));
    TWLAC_CUDA(cudaEventRecord(a, s));
    twlac_lattice_rows(W, s);
    TWLAC_CUDA(cudaGetLastError());
    TWLAC_CUDA(cudaEventRecord(e, s));
    TWLAC_CUDA(cudaEventSynchronize(e));
    TWLAC_CUDA(cudaEventElapsedTime(&latticeRowsMs, a, e));
    cudaEventDestroy(a);
    cudaEventDestroy(e);
  }
  void release_staging() {
    if (staging) TWLAC_CUDA(cudaFree(staging));
    staging = nullptr;
  }
  void set_pos(int p) { TWLAC_CUDA(cudaMemcpyAsync(b.pos, &p, sizeof(int), cudaMemcpyHostToDevice, s)); }
  // Milliseconds of `steps` launches of a decode step captured once as a CUDA graph, after one
  // untimed launch (a warm-up that advances the decode like the others).
  template <class Step> float time_steps(int steps, Step step) {
    cudaGraph_t g; cudaGraphExec_t ge;
    TWLAC_CUDA(cudaStreamBeginCapture(s, cudaStreamCaptureModeGlobal));
    step();
    TWLAC_CUDA(cudaStreamEndCapture(s, &g));
    TWLAC_CUDA(cudaGraphInstantiate(&ge, g, 0));
    TWLAC_CUDA(cudaGraphLaunch(ge, s));
    TWLAC_CUDA(cudaStreamSynchronize(s));
    cudaEvent_t a, e; TWLAC_CUDA(cudaEventCreate(&a)); TWLAC_CUDA(cudaEventCreate(&e));
    TWLAC_CUDA(cudaEventRecord(a, s));
    for (int t = 0; t < steps; t++) TWLAC_CUDA(cudaGraphLaunch(ge, s));
    TWLAC_CUDA(cudaEventRecord(e, s));
    TWLAC_CUDA(cudaEventSynchronize(e));
    float ms; TWLAC_CUDA(cudaEventElapsedTime(&ms, a, e));
    cudaEventDestroy(a); cudaEventDestroy(e); cudaGraphExecDestroy(ge); cudaGraphDestroy(g);
    return ms;
  }
  // Forwards from here on are sequence `q`'s alone (its cache; positions *b.pos + t).
  void use_sequence(int q) {
    b.seq = 0;
    b.kcache = kcache0 + TWLAC_SEQ_KV * q;
    b.vcache = vcache0 + TWLAC_SEQ_KV * q;
  }
  // Forwards from here on take one token of each of the `batch` sequences (positions b.pos[t]).
  void use_batch() {
    b.seq = TWLAC_SEQ_KV;
    b.kcache = kcache0;
    b.vcache = vcache0;
  }
  // Prefill `n` ids from position `pos`, in chunks; the logits of every token go to `out` when non-null.
  // TWLAC_PREFILL_CHUNK=N (1…TWLAC_MAX_CHUNK) caps the tokens of one forward, e.g. 16 to keep
  // prefill on the GEMV kernels and compare with the prefill GEMM in the same run.
  static int prefill_chunk() {
    static int c = 0;
    if (!c) {
      const char* e = getenv("TWLAC_PREFILL_CHUNK");
      c = TWLAC_MAX_CHUNK;
      if (e) {
        char* end = nullptr;
        const long v = strtol(e, &end, 10);
        if (end == e || *end || v < 1 || v > TWLAC_MAX_CHUNK) { fprintf(stderr, "twlac: TWLAC_PREFILL_CHUNK=%s is not a token count in 1…%d\n", e, TWLAC_MAX_CHUNK); exit(2); }
        c = (int)v;
      }
    }
    return c;
  }
  void prefill(const int* hids, int n, int pos, float* out) {
    const int C = prefill_chunk();
    for (int c0 = 0; c0 < n; c0 += C) {
      const int T = std::min(C, n - c0);
      set_pos(pos + c0);
      TWLAC_CUDA(cudaMemcpyAsync(ids, hids + c0, T * sizeof(int), cudaMemcpyHostToDevice, s));
      twlac_forward(W, b, ids, T, s, out ? T : 1); // without `out`, only the last token's logits
      if (out) TWLAC_CUDA(cudaMemcpyAsync(out + (size_t)c0 * TWLAC_VOCAB, b.logits, (size_t)T * TWLAC_VOCAB * 4, cudaMemcpyDeviceToHost, s));
    }
    TWLAC_CUDA(cudaStreamSynchronize(s));
  }
};

int main(int argc, char** argv) {
  std::string weights, prompt, idsArg, logitsOut, pplFile;
  long seed = -1; int maxTokens = 32, windows = -1, benchCtx = -1, steps = 128, profileCtx = -1, batch = 1;
  bool batchGiven = false; // --batch 1 runs the batched path with one sequence
  for (int i = 1; i < argc; i++) {
    std::string a = argv[i];
    auto next = [&]() -> std::string { if (i + 1 >= argc) usage(); return argv[++i]; };
    if (a == "--weights") weights = next();
    else if (a == "--random") seed = std::stol(next());
    else if (a == "--prompt") prompt = next();
    else if (a == "--max-tokens") maxTokens = std::stoi(next());
    else if (a == "--ids") idsArg = next();
    else if (a == "--logits-out") logitsOut = next();
    else if (a == "--ppl") pplFile = next();
    else if (a == "--windows") windows = std::stoi(next());
    else if (a == "--bench-decode") benchCtx = std::stoi(next());
    else if (a == "--profile-decode") profileCtx = std::stoi(next());
    else if (a == "--steps") steps = std::stoi(next());
    else if (a == "--batch") { batch = std::stoi(next()); batchGiven = true; }
    else usage();
  }
  if (weights.empty() == (seed < 0)) usage();
  if (batch < 1 || batch > TWLAC_MAX_BATCH || (batchGiven && benchCtx < 0)) { fprintf(stderr, "twlac: --batch takes 1…%d and goes with --bench-decode\n", TWLAC_MAX_BATCH); return 2; }
  Runtime rt; rt.init(batch);
  if (seed >= 0) rt.randomize((uint32_t)seed); else rt.load(weights);

  if (!prompt.empty()) {
    std::vector<int> p = parse_ids(prompt);
    if (p.empty() || (int)p.size() + maxTokens > TWLAC_MAX_POS) { fprintf(stderr, "twlac: prompt empty or too long\n"); return 1; }
    // Prefill all but the last token, then run the last one through the decode graph path.
    rt.prefill(p.data(), (int)p.size() - 1, 0, nullptr);
    int* out = dalloc<int>(maxTokens + 1); int* step = dalloc<int>(1);
    TWLAC_CUDA(cudaMemset(step, 0, sizeof(int)));
    rt.set_pos((int)p.size() - 1);
    TWLAC_CUDA(cudaMemcpyAsync(rt.ids, &p.back(), sizeof(int), cudaMemcpyHostToDevice, rt.s));
    for (int t = 0; t < maxTokens; t++) {
      twlac_forward(rt.W, rt.b, rt.ids, 1, rt.s);
      twlac_argmax_advance<<<1, 1024, 0, rt.s>>>(rt.b.logits, rt.ids, out, step, rt.b.pos);
    }
    std::vector<int> h(maxTokens);
    TWLAC_CUDA(cudaMemcpy(h.data(), out, maxTokens * sizeof(int), cudaMemcpyDeviceToHost));
    for (int t = 0; t < maxTokens; t++) printf("%d%c", h[t], t + 1 < maxTokens ? ' ' : '\n');
    return 0;
  }
  if (!idsArg.empty()) {
    std::vector<int> p = parse_ids(idsArg);
    std::vector<float> logits(p.size() * (size_t)TWLAC_VOCAB);
    rt.prefill(p.data(), (int)p.size(), 0, logits.data());
    FILE* f = fopen(logitsOut.c_str(), "wb");
    if (!f) { fprintf(stderr, "twlac: cannot write %s\n", logitsOut.c_str()); return 1; }
    fwrite(logits.data(), 4, logits.size(), f); fclose(f);
    printf("wrote logits [%zu][%d] to %s\n", p.size(), TWLAC_VOCAB, logitsOut.c_str());
    return 0;
  }
  if (!pplFile.empty()) {
    FILE* f = fopen(pplFile.c_str(), "rb");
    if (!f) { fprintf(stderr, "twlac: cannot open %s\n", pplFile.c_str()); return 1; }
    fseek(f, 0, SEEK_END); long n = ftell(f) / 4; fseek(f, 0, SEEK_SET);
    std::vector<int> tok(n);
    if (fread(tok.data(), 4, n, f) != (size_t)n) { fprintf(stderr, "twlac: short read %s\n", pplFile.c_str()); return 1; }
    fclose(f);
    const int WIN = 256;
    int nw = (int)((n - 1) / WIN);
    if (windows > 0) nw = std::min(nw, windows);
    std::vector<float> logits((size_t)WIN * TWLAC_VOCAB);
    double nll = 0; long count = 0;
    auto t0 = std::chrono::steady_clock::now();
    for (int w = 0; w < nw; w++) {
      rt.prefill(tok.data() + (size_t)w * WIN, WIN, 0, logits.data());
      for (int i = 0; i < WIN; i++) {
        const float* l = logits.data() + (size_t)i * TWLAC_VOCAB;
        float mx = -INFINITY; for (int v = 0; v < TWLAC_VOCAB; v++) mx = std::max(mx, l[v]);
        double se = 0; for (int v = 0; v < TWLAC_VOCAB; v++) se += std::exp((double)l[v] - mx);
        const int target = tok[(size_t)w * WIN + i + 1];
        nll += (std::log(se) + mx) - l[target]; count++;
      }
    }
    const double secs = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
    printf("{\"ppl\": %.4f, \"tokens\": %ld, \"windows\": %d, \"seconds\": %.2f}\n", std::exp(nll / count), count, nw, secs);
    return 0;
  }
  if (profileCtx >= 0) {
    // Time of every op of one decode step (T = 1) after a profileCtx-token prefill: an event
    // after each op (no graph, no overlap), summed over the layers by tag; median of 5 steps.
    if (profileCtx + 8 > TWLAC_MAX_POS) { fprintf(stderr, "twlac: context %d exceeds %d positions\n", profileCtx, TWLAC_MAX_POS); return 1; }
    const std::vector<int> p = synthetic_ids(profileCtx);
    rt.prefill(p.data(), profileCtx, 0, nullptr);
    static std::vector<std::pair<std::string, cudaEvent_t>> marks;
    twlac_mark_hook = [](cudaStream_t st, const char* tag) { cudaEvent_t e; TWLAC_CUDA(cudaEventCreate(&e)); TWLAC_CUDA(cudaEventRecord(e, st)); marks.push_back({tag, e}); };
    std::map<std::string, std::vector<double>> byTag;
    std::vector<double> totals;
    for (int rep = 0; rep < 6; rep++) {
      marks.clear();
      rt.set_pos(profileCtx);
      cudaEvent_t e0; TWLAC_CUDA(cudaEventCreate(&e0)); TWLAC_CUDA(cudaEventRecord(e0, rt.s));
      twlac_forward(rt.W, rt.b, rt.ids, 1, rt.s);
      TWLAC_CUDA(cudaStreamSynchronize(rt.s));
      if (rep > 0) { // rep 0 warms up
        std::map<std::string, double> step;
        cudaEvent_t prev = e0; double tot = 0;
        for (auto& m : marks) { float ms; cudaEventElapsedTime(&ms, prev, m.second); step[m.first] += ms; tot += ms; prev = m.second; }
        for (auto& kv : step) byTag[kv.first].push_back(kv.second);
        totals.push_back(tot);
      }
      TWLAC_CUDA(cudaEventDestroy(e0));
      for (auto& m : marks) TWLAC_CUDA(cudaEventDestroy(m.second));
    }
    twlac_mark_hook = nullptr;
    auto med = [](std::vector<double> v) { std::sort(v.begin(), v.end()); return v[v.size() / 2]; };
    printf("{\"context\": %d, \"msPerStep\": %.4f, \"ops\": {", profileCtx, med(totals));
    bool first = true;
    for (auto& kv : byTag) { printf("%s\"%s\": %.4f", first ? "" : ", ", kv.first.c_str(), med(kv.second)); first = false; }
    printf("}}\n");
    return 0;
  }
  if (benchCtx >= 0 && batchGiven) {
    // B sequences, prompts of their own, prefilled one by one into their caches; then `steps`
    // decode steps of all B at once (forward of T = B in batch mode + batched argmax), as a graph.
    if (benchCtx + steps + 2 > TWLAC_MAX_POS) { fprintf(stderr, "twlac: context %d + %d steps exceeds %d positions\n", benchCtx, steps, TWLAC_MAX_POS); return 1; }
    auto t0 = std::chrono::steady_clock::now();
    std::vector<int> first(batch), posv(batch, benchCtx);
    for (int q = 0; q < batch; q++) {
      const std::vector<int> p = synthetic_ids(benchCtx, q);
      rt.use_sequence(q);
      rt.prefill(p.data(), benchCtx, 0, nullptr);
      first[q] = p[0];
    }
    const double prefillS = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
    const int outStride = steps + 1;
    int* out = dalloc<int>((size_t)batch * outStride);
    rt.use_batch();
    TWLAC_CUDA(cudaMemcpyAsync(rt.b.pos, posv.data(), batch * sizeof(int), cudaMemcpyHostToDevice, rt.s));
    TWLAC_CUDA(cudaMemcpyAsync(rt.ids, first.data(), batch * sizeof(int), cudaMemcpyHostToDevice, rt.s));
    // the warm-up step's tokens are the first of `out`
    const float ms = rt.time_steps(steps, [&] {
      twlac_forward(rt.W, rt.b, rt.ids, batch, rt.s);
      twlac_argmax_advance_batch<<<batch, 1024, 0, rt.s>>>(rt.b.logits, rt.ids, out, outStride, benchCtx, rt.b.pos);
    });
    size_t freeB, totalB; TWLAC_CUDA(cudaMemGetInfo(&freeB, &totalB));
    std::vector<int> hb((size_t)batch * outStride);
    TWLAC_CUDA(cudaMemcpy(hb.data(), out, hb.size() * sizeof(int), cudaMemcpyDeviceToHost));
    // The logits of one step of the batch (all at position benchCtx, their first ids) against
    // the same step of the first and the last sequence alone: the largest difference, beside
    // the largest logit and the top-2 margin of the single-sequence logits.
    std::vector<float> lb((size_t)batch * TWLAC_VOCAB), l1(TWLAC_VOCAB);
    TWLAC_CUDA(cudaMemcpyAsync(rt.b.pos, posv.data(), batch * sizeof(int), cudaMemcpyHostToDevice, rt.s));
    TWLAC_CUDA(cudaMemcpyAsync(rt.ids, first.data(), batch * sizeof(int), cudaMemcpyHostToDevice, rt.s));
    twlac_forward(rt.W, rt.b, rt.ids, batch, rt.s);
    TWLAC_CUDA(cudaMemcpy(lb.data(), rt.b.logits, lb.size() * 4, cudaMemcpyDeviceToHost));
    double maxDiff = 0, maxLogit = 0, minMargin = INFINITY;
    for (int q : {0, batch - 1}) {
      rt.use_sequence(q);
      rt.set_pos(benchCtx);
      TWLAC_CUDA(cudaMemcpyAsync(rt.ids, &first[q], sizeof(int), cudaMemcpyHostToDevice, rt.s));
      twlac_forward(rt.W, rt.b, rt.ids, 1, rt.s);
      TWLAC_CUDA(cudaMemcpy(l1.data(), rt.b.logits, l1.size() * 4, cudaMemcpyDeviceToHost));
      float a = -INFINITY, b2 = -INFINITY;
      for (int v = 0; v < TWLAC_VOCAB; v++) {
        maxDiff = std::max(maxDiff, (double)std::fabs(l1[v] - lb[(size_t)q * TWLAC_VOCAB + v]));
        maxLogit = std::max(maxLogit, (double)std::fabs(l1[v]));
        if (l1[v] > a) { b2 = a; a = l1[v]; } else if (l1[v] > b2) b2 = l1[v];
      }
      minMargin = std::min(minMargin, (double)(a - b2));
    }
    // The check: the first and the last sequence decoded alone (T = 1, the single-sequence
    // kernels' path) from the same prompt give the same greedy tokens as in the batch.
    const int checkSteps = std::min(16, outStride);
    int* out1 = dalloc<int>(checkSteps); int* step1 = dalloc<int>(1);
    int mismatches = 0;
    for (int q : {0, batch - 1}) {
      const std::vector<int> p = synthetic_ids(benchCtx, q);
      rt.use_sequence(q);
      rt.prefill(p.data(), benchCtx, 0, nullptr);
      rt.set_pos(benchCtx);
      TWLAC_CUDA(cudaMemsetAsync(step1, 0, sizeof(int), rt.s));
      TWLAC_CUDA(cudaMemcpyAsync(rt.ids, &p[0], sizeof(int), cudaMemcpyHostToDevice, rt.s));
      for (int t = 0; t < checkSteps; t++) {
        twlac_forward(rt.W, rt.b, rt.ids, 1, rt.s);
        twlac_argmax_advance<<<1, 1024, 0, rt.s>>>(rt.b.logits, rt.ids, out1, step1, rt.b.pos);
      }
      std::vector<int> h1(checkSteps);
      TWLAC_CUDA(cudaMemcpy(h1.data(), out1, checkSteps * sizeof(int), cudaMemcpyDeviceToHost));
      for (int t = 0; t < checkSteps; t++) mismatches += h1[t] != hb[(size_t)q * outStride + t];
    }
    printf("{\"arch\": \"%s\", \"context\": %d, \"batch\": %d, \"steps\": %d, \"msPerStep\": %.4f, \"msPerToken\": %.4f, \"tokensPerSecond\": %.2f, \"prefillSeconds\": %.3f, \"gpuMemUsedBytes\": %zu, \"greedyCheck\": {\"sequences\": [0, %d], \"steps\": %d, \"mismatches\": %d, \"firstStepMaxLogitDiff\": %.5g, \"maxAbsLogit\": %.5g, \"minTop2Margin\": %.5g}}\n",
           TWLAC_ARCH, benchCtx, batch, steps, ms / steps, ms / steps / batch, 1000.0 * steps * batch / ms, prefillS, totalB - freeB, batch - 1, checkSteps, mismatches, maxDiff, maxLogit, minMargin);
    return mismatches ? 3 : 0;
  }
  if (benchCtx >= 0) {
    if (benchCtx + steps + 1 > TWLAC_MAX_POS) { fprintf(stderr, "twlac: context %d + %d steps exceeds %d positions\n", benchCtx, steps, TWLAC_MAX_POS); return 1; }
    const std::vector<int> p = synthetic_ids(benchCtx);
    auto t0 = std::chrono::steady_clock::now();
    rt.prefill(p.data(), benchCtx, 0, nullptr);
    const double prefillS = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
    int* out = dalloc<int>(steps + 16); int* step = dalloc<int>(1);
    TWLAC_CUDA(cudaMemset(step, 0, sizeof(int)));
    rt.set_pos(benchCtx);
    TWLAC_CUDA(cudaMemcpyAsync(rt.ids, p.data(), sizeof(int), cudaMemcpyHostToDevice, rt.s));
    // One decode step = forward(T=1) + on-device argmax/advance.
    const float ms = rt.time_steps(steps, [&] {
      twlac_forward(rt.W, rt.b, rt.ids, 1, rt.s);
      twlac_argmax_advance<<<1, 1024, 0, rt.s>>>(rt.b.logits, rt.ids, out, step, rt.b.pos);
    });
    size_t freeB, totalB; TWLAC_CUDA(cudaMemGetInfo(&freeB, &totalB));
    printf("{\"arch\": \"%s\", \"context\": %d, \"steps\": %d, \"msPerToken\": %.4f, \"tokensPerSecond\": %.2f, \"prefillSeconds\": %.3f, \"weightsBytes\": %llu, \"deviceWeightsBytes\": %llu, \"gpuMemUsedBytes\": %zu, \"latticeRowsMs\": %.3f}\n",
           TWLAC_ARCH, benchCtx, steps, ms / steps, 1000.0 * steps / ms, prefillS, TWLAC_WEIGHTS_BYTES, TWLAC_DEVICE_BYTES, totalB - freeB, rt.latticeRowsMs);
    return 0;
  }
  usage();
}
