// The rest of the block program (src/artifact/manifest.ts), in fp32 with fp16 storage where
// the GEMVs read it:
//   embed      x[t] = E[id_t] (+ P[pos0 + t], learned positions)  (fp16 table → fp32 stream)
//   act        a[t] = quant(transform(src[t]))  → fp16, src one of
//                norm:   x·rsqrt(mean(x²)+eps)·γ      plain: x
//                layer_norm: (x − μ)·rsqrt(mean((x − μ)²)+eps)·γ + β
//                an MLP's σ(g)·u (swiglu, geglu: GELU(tanh), geglu_erf) or σ(u) (ungated:
//                silu, gelu_tanh, gelu), σ as MLP_SIGMA
//              transform x' = C·X·Bᵀ on the [l, r] view; quant = src/quant/act-quant.ts
//              (fp32 step by step, round half to even, s = 0 passes through)
//   rope_kv    HF rotate_half RoPE on q and k (angles in float64), k and v appended to the
//              fp16 KV cache at positions pos0 + t (kv_append: the same without RoPE)
//   head_norm  the q/k norm (RMSNorm or LayerNorm without β) of each head or of the whole
//              projection, before RoPE
//   attention  causal GQA softmax(cap·tanh(scale·q·kᵀ/cap))·v (no tanh without a soft-cap),
//              split over chunks of positions (flash-decoding) and combined with the
//              log-sum-exp rule
//   post_norm_add  x += s·rms(r)·γ: a block output's post-norm and the residual add
//   softcap    logits ← cap·tanh(logits/cap)
//   dense      y = W x for the fp16/fp32 lm_head
import { UserError } from '../../../errors.ts';
import { Code, code, ident } from '../../common/fragments.ts';
import { CUDA_ARCHS, type CudaArch } from '../arch.ts';
import { cudaFloat, defineKernel, type CudaKernel, type CudaParam } from '../kernel.ts';
import type { MlpActivation } from '../../../program/block-program.ts';

const BLOCK_REDUCE = code`
template <bool MAX>
static __device__ __forceinline__ float twlac_block_reduce(float v, float* scratch) {
  #pragma unroll
  for (int o = 16; o > 0; o >>= 1) { const float w = __shfl_xor_sync(0xffffffffu, v, o); v = MAX ? fmaxf(v, w) : v + w; }
  const int warp = threadIdx.x >> 5, lane = threadIdx.x & 31, nw = blockDim.x >> 5;
  __syncthreads();
  if (lane == 0) scratch[warp] = v;
  __syncthreads();
  // Every warp combines the warp partials with shuffles (no serial chain over shared memory).
  v = lane < nw ? scratch[lane] : (MAX ? -INFINITY : 0.f);
  #pragma unroll
  for (int o = 16; o > 0; o >>= 1) { const float w = __shfl_xor_sync(0xffffffffu, v, o); v = MAX ? fmaxf(v, w) : v + w; }
  return v;
}
`;

/** Helpers shared by the block kernels; emitted once per file. */
export function blockHelpers(): Code {
  return BLOCK_REDUCE;
}

/**
 * Where a forward's T tokens sit: one sequence at positions *posp + t (seq = 0: prefill and
 * single-sequence decode), or a batch of T sequences with one token each (batched decode):
 * token t at position posp[t], its K/V cache `seq` elements after token t − 1's (the caches of
 * a batch sit one after another, `seq` = layers · maxPos · kvHeads · d apart).
 */
export const SEQ_ARGS: CudaParam[] = [
  { name: 'posp', type: 'const int*' },
  { name: 'seq', type: 'unsigned long long' },
];
/** Token t's position under SEQ_ARGS. */
const TOKEN_POS = code`(seq ? posp[t] : *posp + t)`;

const POSITION_ARGS: CudaParam[] = [{ name: 'ptable', type: 'const float*' }, ...SEQ_ARGS];

/** x[t] = scale · E[id_t] (scale: the program's embedScale; 1 leaves the text as it was), plus
 *  with `positions` the learned position row P[pos0 + t] (float32 [maxPositions][hidden], GPT-2's wpe). */
export function embedKernel(hidden: number, dtype: 'float16' | 'float32', scale = 1, positions = false): CudaKernel {
  const name = `embed_h${hidden}_${dtype === 'float16' ? 'f16' : 'f32'}${scale === 1 ? '' : `_s${Math.round(scale * 1e6)}`}${positions ? '_pos' : ''}`;
  const row = dtype === 'float16' ? code`__half2float(reinterpret_cast<const __half*>(table)[(size_t)id * ${hidden} + i])` : code`reinterpret_cast<const float*>(table)[(size_t)id * ${hidden} + i]`;
  const scaled = scale === 1 ? row : code`${row} * ${cudaFloat(scale)}`;
  const load = positions ? code`${scaled} + ptable[(size_t)${TOKEN_POS} * ${hidden} + i]` : scaled;
  return defineKernel({
    name,
    params: { hidden, dtype, ...(scale === 1 ? {} : { scale }), ...(positions ? { positions } : {}) },
    args: [
      { name: 'ids', type: 'const int*' },
      { name: 'table', type: 'const uint8_t*' },
      ...(positions ? POSITION_ARGS : []),
      { name: 'x', type: 'float*' },
      { name: 'T', type: 'int' },
    ],
    block: 256,
    grid: [code`T`, code`1`, code`1`],
    body: code`  const int t = blockIdx.x;
  const int id = ids[t];
  for (int i = threadIdx.x; i < ${hidden}; i += blockDim.x) x[(size_t)t * ${hidden} + i] = ${load};`,
  });
}

/** y[t][i] += bias[i] for the T rows of a linear's fp32 output (after its GEMV/GEMM, which may have accumulated into y). */
export function biasAddKernel(n: number): CudaKernel {
  return rowsKernel(`bias_add_n${n}`, { n }, [{ name: 'bias', type: 'const float*' }, { name: 'y', type: 'float*' }], n, code`y[(size_t)t * ${n} + i] += bias[i];`);
}

/** x[t][i] += s · r[t][i]: a residual add with the program's residual multiplier (Granite). */
export function residualAddKernel(n: number, scale: number): CudaKernel {
  return rowsKernel(`residual_add_n${n}_s${Math.round(scale * 1e6)}`, { n, scale }, [{ name: 'r', type: 'const float*' }, { name: 'x', type: 'float*' }], n, code`x[(size_t)t * ${n} + i] += ${cudaFloat(scale)} * r[(size_t)t * ${n} + i];`);
}

/** y[t][i] *= s over T rows of n (the program's logit scale). */
export function scaleKernel(n: number, scale: number): CudaKernel {
  return rowsKernel(`scale_n${n}_s${Math.round(scale * 1e6)}`, { n, scale }, [{ name: 'y', type: 'float*' }], n, code`y[(size_t)t * ${n} + i] *= ${cudaFloat(scale)};`);
}

/** One block a row of T rows of n, 256 threads striding over the row; `statement` updates element i of row t. */
function rowsKernel(name: string, params: Record<string, number>, args: CudaParam[], n: number, statement: Code): CudaKernel {
  return defineKernel({
    name,
    params,
    args: [...args, { name: 'T', type: 'int' }],
    block: 256,
    grid: [code`T`, code`1`, code`1`],
    body: code`  const int t = blockIdx.x;
  for (int i = threadIdx.x; i < ${n}; i += blockDim.x) ${statement}`,
  });
}

/** Shape of a q/k norm (block-program.ts qkNormShape): `groups` runs of `width` features of
 *  each token's row, γ shared by the runs or each run's own, RMSNorm or LayerNorm (no β). */
export interface HeadNormShape {
  groups: number;
  width: number;
  sharedGamma: boolean;
  kind: 'rms' | 'layer';
}

/**
 * The program's q/k norm of x [T][groups·width] in place, before RoPE: each run of width
 * features normalised on its own (per head, or the whole projection); one block per (token, run).
 * The default shape (per head, shared γ, RMSNorm) keeps its name.
 */
export function headNormKernel(n: HeadNormShape, eps: number, gamma: boolean): CudaKernel {
  const { groups, width } = n;
  const own = !n.sharedGamma && groups > 1;
  const source = n.kind === 'layer' ? 'layer_norm' : 'norm';
  const threads = width >= 1024 ? 256 : 64;
  const g = gamma ? code` * gamma[${own ? code`blockIdx.y * ${width} + ` : code``}i]` : code``;
  return defineKernel({
    name: `head_norm_h${groups}_d${width}${own ? '_own' : ''}${n.kind === 'layer' ? '_ln' : ''}${gamma ? '' : '_nog'}`,
    params: { heads: groups, d: width, eps, gamma, ...(own ? { own } : {}), ...(n.kind === 'layer' ? { kind: n.kind } : {}) },
    args: [
      { name: 'x', type: 'float*' },
      { name: 'gamma', type: 'const float*' },
      { name: 'T', type: 'int' },
    ],
    block: threads,
    grid: [code`T`, code`${groups}`, code`1`],
    body: code`  __shared__ float scratch[32];
  float* row = x + ((size_t)blockIdx.x * ${groups} + blockIdx.y) * ${width};
${normStats(source, width, threads, eps, (i) => code`row[${i}]`)}
  for (int i = threadIdx.x; i < ${width}; i += ${threads}) row[i] = ${source === 'layer_norm' ? code`(row[i] - mu)` : code`row[i]`} * inv${g};`,
  });
}

/** y[t][i] = cap·tanh(y[t][i]/cap) over T rows of n (the program's final logit soft-cap, Gemma-2). */
export function softcapKernel(n: number, cap: number): CudaKernel {
  return rowsKernel(`softcap_n${n}_c${Math.round(cap * 1e6)}`, { n, cap }, [{ name: 'y', type: 'float*' }], n, code`y[(size_t)t * ${n} + i] = ${cudaFloat(cap)} * tanhf(y[(size_t)t * ${n} + i] / ${cudaFloat(cap)});`);
}

/**
 * x[t] += s · rms(r[t])·γ: a block output's post-norm (RMSNorm with its own γ and ε, Gemma-2/3,
 * OLMo-2) and the residual add with the program's multiplier s; one block per token.
 */
export function postNormAddKernel(n: number, scale: number, eps: number, gamma: boolean): CudaKernel {
  const threads = 256;
  return defineKernel({
    name: `post_norm_add_n${n}${scale === 1 ? '' : `_s${Math.round(scale * 1e6)}`}_e${Math.round(-Math.log2(eps) * 1e3)}${gamma ? '' : '_nog'}`,
    params: { n, scale, eps, gamma },
    args: [
      { name: 'r', type: 'const float*' },
      { name: 'gamma', type: 'const float*' },
      { name: 'x', type: 'float*' },
      { name: 'T', type: 'int' },
    ],
    block: threads,
    grid: [code`T`, code`1`, code`1`],
    body: code`  __shared__ float scratch[32];
  const int t = blockIdx.x;
${normStats('norm', n, threads, eps, (i) => code`r[(size_t)t * ${n} + ${i}]`)}
  for (int i = threadIdx.x; i < ${n}; i += ${threads}) x[(size_t)t * ${n} + i] += ${scale === 1 ? code`` : code`${cudaFloat(scale)} * `}(r[(size_t)t * ${n} + i] * inv${gamma ? code` * gamma[i]` : code``});`,
  });
}

/** σ of each MLP activation as a CUDA expression of g, as the reference computes it (reference.ts GATES). */
const MLP_SIGMA: Record<MlpActivation, (g: Code) => Code> = {
  silu: (g) => code`(${g} / (1.f + expf(-${g})))`,
  // GELU(tanh): 0.5·g·(1 + tanh(√(2/π)·(g + 0.044715·g³)))
  'gelu-tanh': (g) => code`(0.5f * ${g} * (1.f + tanhf(0.7978845608028654f * (${g} + 0.044715f * ${g} * ${g} * ${g}))))`,
  // GELU(erf): 0.5·g·(1 + erf(g/√2))
  gelu: (g) => code`(0.5f * ${g} * (1.f + erff(${g} * 0.7071067811865476f)))`,
};

/** The act sources of an MLP's down input, by kernel name: σ(g)·u of a gated MLP (src = g,
 *  src2 = u), σ(u) of an ungated one (src = u). */
const MLP_SOURCES = {
  swiglu: { activation: 'silu', gated: true },
  geglu: { activation: 'gelu-tanh', gated: true },
  geglu_erf: { activation: 'gelu', gated: true },
  silu: { activation: 'silu', gated: false },
  gelu_tanh: { activation: 'gelu-tanh', gated: false },
  gelu: { activation: 'gelu', gated: false },
} as const satisfies Record<string, { activation: MlpActivation; gated: boolean }>;
type MlpSource = keyof typeof MLP_SOURCES;

/** The act source of a block's MLP (block-program.ts BlockProgram.mlp). */
export function mlpSource(mlp: { activation: MlpActivation; gated: boolean }): MlpSource {
  return (Object.keys(MLP_SOURCES) as MlpSource[]).find((k) => MLP_SOURCES[k].activation === mlp.activation && MLP_SOURCES[k].gated === mlp.gated)!;
}

/** norm: RMSNorm; layer_norm: LayerNorm with β (program.norm 'layer'); plain: src itself; or an MLP source. */
export type ActSource = 'norm' | 'layer_norm' | 'plain' | MlpSource;

/** σ(g)·u or σ(u) of an MLP source as a CUDA expression of src and src2 (null for the other sources). */
function mlpValue(source: ActSource, src: Code, src2: Code): Code | null {
  if (!(source in MLP_SOURCES)) return null;
  const { activation, gated } = MLP_SOURCES[source as MlpSource];
  const sigma = MLP_SIGMA[activation](src);
  return gated ? code`(${sigma} * ${src2})` : sigma;
}

/**
 * The norm statistics of a token's row `x(i)` (D wide) over a block of `threads`: RMSNorm's
 * inv = 1/√(mean(x²) + ε); LayerNorm's mean mu, then inv over x − mu (two passes, as the
 * reference computes it, not E[x²] − μ²).
 */
function normStats(source: 'norm' | 'layer_norm', D: number, threads: number, eps: number, x: (i: Code) => Code): Code {
  const centred = source === 'layer_norm';
  return code`${
    centred
      ? code`  float mu = 0.f;
  for (int i = threadIdx.x; i < ${D}; i += ${threads}) mu += ${x(code`i`)};
  mu = twlac_block_reduce<false>(mu, scratch) / ${D}.0f;
`
      : code``
  }  float ss = 0.f;
  for (int i = threadIdx.x; i < ${D}; i += ${threads}) { const float v = ${x(code`i`)}${centred ? code` - mu` : code``}; ss += v * v; }
  ss = twlac_block_reduce<false>(ss, scratch);
  const float inv = rsqrtf(ss / ${D}.0f + ${cudaFloat(eps)});`;
}

/** Element i of the norm of x (after normStats): ·γ where given, + β where LayerNorm has one. */
function normValue(source: 'norm' | 'layer_norm', x: Code): Code {
  return source === 'layer_norm' ? code`(${x} - mu) * inv * (gamma ? gamma[i] : 1.f) + (beta ? beta[i] : 0.f)` : code`${x} * inv * (gamma ? gamma[i] : 1.f)`;
}

const isNorm = (s: ActSource): s is 'norm' | 'layer_norm' => s === 'norm' || s === 'layer_norm';

export interface ActKernelSpec {
  source: ActSource;
  dim: number;
  /** Kronecker transform factors (l·r = dim), when the site has one online. */
  transform?: { l: number; r: number };
  eps: number;
}

/** Threads of an act kernel (one block per token: at decode the whole kernel is one block). */
const ACT_BLOCK = 1024;

function actKernelName(s: ActKernelSpec): string {
  return `act_${s.source}_d${s.dim}${s.transform ? `_kron${s.transform.l}x${s.transform.r}` : ''}`;
}

/**
 * One block per token. Arguments: src (fp32 [T][dim]; for a gated MLP the gate), src2 (gated
 * MLP: up), gamma (norms: fp32 [dim] or null), beta (layer_norm: fp32 [dim] or null), C, B
 * (transform, fp32), out (fp16 [T][dim]),
 * q8/qp (bits ≤ 8, optional: the codes q [T][dim] and (s, z) per token for the int8 GEMV),
 * T, bits (16 = no quantisation), clip.
 */
/** The per-token quantiser of src/quant/act-quant.ts from the block's mn/mx, one float32
 *  operation at a time: L, s and (when s ≠ 0, inside the opened branch) z. */
const ACT_QUANT_PARAMS = code`    mn = -twlac_block_reduce<true>(-mn, scratch);
    mx = twlac_block_reduce<true>(mx, scratch);
    const float L = (float)((1 << bits) - 1);
    const float lo = __fmul_rn(mn, clip), hi = __fmul_rn(mx, clip);
    const float s = __fdiv_rn(__fsub_rn(hi, lo), L);
    if (s != 0.f) {
      const float z = rintf(__fdiv_rn(-lo, s));`;

/** Elements a block of the sliced act kernel writes (sites without a transform). */
const ACT_SLICE = 2048;
const ACT_SLICE_BLOCK = 1024;
/** From this many tokens on (prefill), one block a token covers its whole vector: the grid is
 *  full anyway, and slicing would make each of a token's blocks re-read and re-evaluate the
 *  whole vector for its statistics. */
const ACT_UNSLICED_T = 128;

/**
 * Sites without an online transform: the token's vector is cut into slices of ACT_SLICE, one
 * block each (grid T × slices), so that a decode step is not one block on one SM (below
 * ACT_UNSLICED_T tokens; from there on a block takes the whole vector). Every block
 * computes the token's statistics itself (Σx² for the norm; min and max of the values for the
 * quantiser) from the whole vector, which is a few KB in L2, in the same float32 operations as
 * the reference (src/quant/act-quant.ts), then quantises and writes only its slice.
 */
function actSlicedKernel(s: ActKernelSpec): CudaKernel {
  const D = s.dim;
  const slices = Math.ceil(D / ACT_SLICE);
  const x = (i: Code) => code`src[(size_t)t * ${D} + ${i}]`;
  const value = isNorm(s.source) ? normValue(s.source, x(code`i`)) : (mlpValue(s.source, x(code`i`), code`src2[(size_t)t * ${D} + i]`) ?? x(code`i`));
  return defineKernel({
    name: actKernelName(s),
    params: { source: s.source, dim: D, l: 0, r: 0, eps: s.eps, slice: ACT_SLICE },
    args: ACT_ARGS,
    block: ACT_SLICE_BLOCK,
    grid: [code`T`, code`(T >= ${ACT_UNSLICED_T} ? 1 : ${slices})`, code`1`],
    body: code`  __shared__ float scratch[32];
  const int slice = gridDim.y == 1 ? ${D} : ${ACT_SLICE};
  const int t = blockIdx.x, i0 = blockIdx.y * slice, i1 = min(i0 + slice, ${D});
${isNorm(s.source) ? normStats(s.source, D, ACT_SLICE_BLOCK, s.eps, x) : code``}
  if (bits < 16) {
    float mn = INFINITY, mx = -INFINITY;
    for (int i = threadIdx.x; i < ${D}; i += ${ACT_SLICE_BLOCK}) { const float v = ${value}; mn = fminf(mn, v); mx = fmaxf(mx, v); }
${ACT_QUANT_PARAMS}
      for (int i = i0 + threadIdx.x; i < i1; i += ${ACT_SLICE_BLOCK}) {
        const float q = fminf(L, fmaxf(0.f, __fadd_rn(rintf(__fdiv_rn(${value}, s)), z)));
        out[(size_t)t * ${D} + i] = __float2half_rn(__fmul_rn(__fsub_rn(q, z), s));
        if (q8) q8[(size_t)t * ${D} + i] = (uint8_t)q;
      }
      if (q8 && blockIdx.y == 0 && threadIdx.x == 0) { qp[2 * t] = s; qp[2 * t + 1] = z; }
    } else {
      const float v0 = mx; // every value equals it
      for (int i = i0 + threadIdx.x; i < i1; i += ${ACT_SLICE_BLOCK}) {
        out[(size_t)t * ${D} + i] = __float2half_rn(v0);
        if (q8) q8[(size_t)t * ${D} + i] = 0;
      }
      if (q8 && blockIdx.y == 0 && threadIdx.x == 0) { qp[2 * t] = v0; qp[2 * t + 1] = -1.f; }
    }
    return;
  }
  for (int i = i0 + threadIdx.x; i < i1; i += ${ACT_SLICE_BLOCK}) out[(size_t)t * ${D} + i] = __float2half_rn(${value});`,
  });
}

const ACT_ARGS = [
  { name: 'src', type: 'const float*' },
  { name: 'src2', type: 'const float*' },
  { name: 'gamma', type: 'const float*' },
  { name: 'beta', type: 'const float*' },
  { name: 'C', type: 'const float*' },
  { name: 'B', type: 'const float*' },
  { name: 'out', type: '__half*' },
  { name: 'q8', type: 'uint8_t*' },
  { name: 'qp', type: 'float*' },
  { name: 'T', type: 'int' },
  { name: 'bits', type: 'int' },
  { name: 'clip', type: 'float' },
] as const;

export function actKernel(s: ActKernelSpec): CudaKernel {
  if (!s.transform) return actSlicedKernel(s);
  const D = s.dim;
  if (s.transform && s.transform.l * s.transform.r !== D) throw new Error(`act kernel: transform ${s.transform.l}x${s.transform.r} does not cover ${D}`);
  const smemBytes = D * 4 * (s.transform ? 2 : 1);
  const x = (i: Code) => code`src[(size_t)t * ${D} + ${i}]`;
  const load = isNorm(s.source)
    ? code`${normStats(s.source, D, ACT_BLOCK, s.eps, x)}
  for (int i = threadIdx.x; i < ${D}; i += ${ACT_BLOCK}) buf[i] = ${normValue(s.source, x(code`i`))};`
    : code`  for (int i = threadIdx.x; i < ${D}; i += ${ACT_BLOCK}) buf[i] = ${mlpValue(s.source, x(code`i`), code`src2[(size_t)t * ${D} + i]`) ?? x(code`i`)};`;
  const transform = s.transform
    ? code`  __syncthreads();
  { // x' = C·X·Bᵀ, X = buf as [${s.transform.l}][${s.transform.r}]: tmp = X·Bᵀ, then buf = C·tmp
    float* tmp = buf + ${D};
    for (int e = threadIdx.x; e < ${D}; e += blockDim.x) {
      const int a = e / ${s.transform.r}, j = e - a * ${s.transform.r};
      float acc = 0.f;
      for (int b = 0; b < ${s.transform.r}; ++b) acc += buf[a * ${s.transform.r} + b] * B[j * ${s.transform.r} + b];
      tmp[e] = acc;
    }
    __syncthreads();
    for (int e = threadIdx.x; e < ${D}; e += blockDim.x) {
      const int i = e / ${s.transform.r}, j = e - i * ${s.transform.r};
      float acc = 0.f;
      for (int a = 0; a < ${s.transform.l}; ++a) acc += C[i * ${s.transform.l} + a] * tmp[a * ${s.transform.r} + j];
      buf[e] = acc;
    }
  }`
    : code``;
  return defineKernel({
    name: actKernelName(s),
    params: { source: s.source, dim: D, l: s.transform?.l ?? 0, r: s.transform?.r ?? 0, eps: s.eps },
    args: ACT_ARGS,
    block: ACT_BLOCK,
    grid: [code`T`, code`1`, code`1`],
    smemBytes,
    body: code`  extern __shared__ __align__(16) float buf[];
  __shared__ float scratch[32];
  const int t = blockIdx.x;
${load}
${transform}
  __syncthreads();
  if (bits < 16) {
    // src/quant/act-quant.ts, one float32 operation at a time.
    float mn = INFINITY, mx = -INFINITY;
    for (int i = threadIdx.x; i < ${D}; i += ${ACT_BLOCK}) { mn = fminf(mn, buf[i]); mx = fmaxf(mx, buf[i]); }
${ACT_QUANT_PARAMS}
      for (int i = threadIdx.x; i < ${D}; i += ${ACT_BLOCK}) {
        const float q = fminf(L, fmaxf(0.f, __fadd_rn(rintf(__fdiv_rn(buf[i], s)), z)));
        buf[i] = __fmul_rn(__fsub_rn(q, z), s);
        if (q8) q8[(size_t)t * ${D} + i] = (uint8_t)q;
      }
      if (q8 && threadIdx.x == 0) { qp[2 * t] = s; qp[2 * t + 1] = z; }
    } else if (q8) { // one value v: codes 0 with z = −1 and s = v reproduce it
      for (int i = threadIdx.x; i < ${D}; i += ${ACT_BLOCK}) q8[(size_t)t * ${D} + i] = 0;
      if (threadIdx.x == 0) { qp[2 * t] = buf[0]; qp[2 * t + 1] = -1.f; }
    }
  }
  for (int i = threadIdx.x; i < ${D}; i += ${ACT_BLOCK}) out[(size_t)t * ${D} + i] = __float2half_rn(buf[i]);`,
  });
}

export interface AttnShape {
  heads: number;
  kvHeads: number;
  headDim: number;
  maxPositions: number;
  ropeTheta: number;
  /** The softmax scale of q·kᵀ when it is not 1/√headDim (the program's attention.scale). */
  scale?: number;
  /** Keys visible to the query at pos: pos − window < t ≤ pos (the program's attention.window). */
  window?: number;
  /** Dims of a head that RoPE rotates (the program's rope.rotaryDim) when fewer than headDim. */
  rotaryDim?: number;
  /** Scores become cap·tanh(scores/cap) before the softmax (the program's attention.softcap). */
  softcap?: number;
}

/** The scale the attention kernels multiply q by. */
export function attnScale(a: AttnShape): number {
  return a.scale ?? 1 / Math.sqrt(a.headDim);
}

/** Kernel-name suffix and params of a non-default scale and of a sliding window (none for the
 *  defaults: names and text unchanged). */
export function attnScaleTag(a: AttnShape): { suffix: string; params: { scale?: number; window?: number; softcap?: number } } {
  const suffix = (a.scale === undefined ? '' : `_s${Math.round(a.scale * 1e8)}`) + (a.window === undefined ? '' : `_w${a.window}`) + (a.softcap === undefined ? '' : `_c${Math.round(a.softcap * 1e6)}`);
  return { suffix, params: { ...(a.scale === undefined ? {} : { scale: a.scale }), ...(a.window === undefined ? {} : { window: a.window }), ...(a.softcap === undefined ? {} : { softcap: a.softcap }) } };
}

/** A scaled score as the softmax takes it: cap·tanh(s/cap) with a soft-cap, else s itself. */
function softcapped(a: AttnShape, s: Code): Code {
  return a.softcap === undefined ? s : code`${cudaFloat(a.softcap)} * tanhf(${s} / ${cudaFloat(a.softcap)})`;
}

/**
 * RoPE on q and k (rotate_half pairing on the first rotaryDim dims of each head, frequencies
 * ropeTheta^(−2i/rotaryDim); the other dims pass through), then k and v appended to this
 * layer's fp16 cache [maxPos][kvHeads·d]. `layerTheta`: θ is a layer's own (Gemma-3 local
 * layers), named in the kernel's name.
 */
export function ropeKvKernel(a: AttnShape, layerTheta = false): CudaKernel {
  const d = a.headDim;
  const rd = a.rotaryDim ?? d;
  if (rd % 2 || rd > d || rd < 2) throw new UserError(`CUDA target: rotary dims ${rd} of head dim ${d}`);
  const qd = a.heads * d;
  const kvd = a.kvHeads * d;
  const name = `rope_kv_h${a.heads}_kv${a.kvHeads}_d${d}${rd === d ? '' : `_r${rd}`}${layerTheta ? `_t${Math.round(a.ropeTheta)}` : ''}`;
  // the dims past rotaryDim: k's go to the cache unrotated (q's stay where they are)
  const pass =
    rd === d
      ? code``
      : code`
    if (hh >= ${a.heads}) {
      const int kh = hh - ${a.heads};
      for (int e = ${rd} + threadIdx.x; e < ${d}; e += blockDim.x) kcache[(size_t)pos * ${kvd} + kh * ${d} + e] = __float2half_rn(k[(size_t)t * ${kvd} + kh * ${d} + e]);
    }`;
  return defineKernel({
    name,
    params: { heads: a.heads, kvHeads: a.kvHeads, d, theta: a.ropeTheta, maxPos: a.maxPositions, ...(rd === d ? {} : { rotaryDim: rd }) },
    args: [
      { name: 'q', type: 'float*' },
      { name: 'k', type: 'const float*' },
      { name: 'v', type: 'const float*' },
      { name: 'kcache', type: '__half*' },
      { name: 'vcache', type: '__half*' },
      ...SEQ_ARGS,
      { name: 'T', type: 'int' },
    ],
    block: d / 2,
    grid: [code`T`, code`${a.heads + a.kvHeads}`, code`1`],
    // inverse frequencies ropeTheta^(−2i/rotaryDim), computed in float64 by the generator
    prelude: code`static __device__ const double ${ident(name + '_inv_freq')}[${rd / 2}] = {${new Code(Array.from({ length: rd / 2 }, (_, i) => Math.pow(a.ropeTheta, (-2 * i) / rd).toExponential(17)).join(', '))}};`,
    body: code`  const double* inv_freq = ${ident(name + '_inv_freq')};
  // One block per (token, head of q or k), one thread per pair of dims (rotated up to
  // rotaryDim); k-head blocks also append that head's v to the cache.
  const int t = blockIdx.x, pos = ${TOKEN_POS};
  kcache += t * seq;
  vcache += t * seq;
  {
    const int hh = blockIdx.y, i = threadIdx.x;${rd === d ? code`` : code`
    if (i < ${rd / 2}) {`}
    const double ang = (double)pos * inv_freq[i];
    const float red = (float)(ang - 6.283185307179586 * rint(ang * 0.15915494309189535));
    float s, c;
    sincosf(red, &s, &c);
    if (hh < ${a.heads}) {
      float* p = q + (size_t)t * ${qd} + hh * ${d};
      const float x0 = p[i], x1 = p[i + ${rd / 2}];
      p[i] = x0 * c - x1 * s;
      p[i + ${rd / 2}] = x1 * c + x0 * s;
    } else {
      const int kh = hh - ${a.heads};
      const float* p = k + (size_t)t * ${kvd} + kh * ${d};
      const float x0 = p[i], x1 = p[i + ${rd / 2}];
      __half* dst = kcache + (size_t)pos * ${kvd} + kh * ${d};
      dst[i] = __float2half_rn(x0 * c - x1 * s);
      dst[i + ${rd / 2}] = __float2half_rn(x1 * c + x0 * s);
    }${rd === d ? code`` : code`
    }`}${pass}
  }
  if (blockIdx.y >= ${a.heads}) {
    const int kh = blockIdx.y - ${a.heads};
    for (int e = threadIdx.x; e < ${d}; e += blockDim.x) vcache[(size_t)pos * ${kvd} + kh * ${d} + e] = __float2half_rn(v[(size_t)t * ${kvd} + kh * ${d} + e]);
  }`,
  });
}

/**
 * k and v appended to this layer's fp16 cache at positions pos0 + t, without RoPE (program
 * rope 'none': GPT-2's learned positions). Its arguments are ropeKvKernel's, so the block
 * step launches either the same way; q passes through untouched.
 */
export function kvAppendKernel(a: AttnShape): CudaKernel {
  const d = a.headDim;
  const kvd = a.kvHeads * d;
  return defineKernel({
    name: `kv_append_kv${a.kvHeads}_d${d}`,
    params: { kvHeads: a.kvHeads, d, maxPos: a.maxPositions },
    args: [
      { name: 'q', type: 'float*' },
      { name: 'k', type: 'const float*' },
      { name: 'v', type: 'const float*' },
      { name: 'kcache', type: '__half*' },
      { name: 'vcache', type: '__half*' },
      ...SEQ_ARGS,
      { name: 'T', type: 'int' },
    ],
    block: 64,
    grid: [code`T`, code`${a.kvHeads}`, code`1`],
    body: code`  // One block per (token, KV head).
  (void)q;
  const int t = blockIdx.x, pos = ${TOKEN_POS};
  kcache += t * seq;
  vcache += t * seq;
  const size_t src = (size_t)t * ${kvd} + blockIdx.y * ${d}, dst = (size_t)pos * ${kvd} + blockIdx.y * ${d};
  for (int e = threadIdx.x; e < ${d}; e += blockDim.x) {
    kcache[dst + e] = __float2half_rn(k[src + e]);
    vcache[dst + e] = __float2half_rn(v[src + e]);
  }`,
  });
}

/** Positions per attention split (one block each): the partial kernel's 128 threads score them
 *  two a position (longer splits, scored in passes, decoded slower). */
export const ATTN_CHUNK = 64;
/** Most attention splits the combine kernel takes (ATTN_MAX_SPLITS · ATTN_CHUNK positions). */
export const ATTN_MAX_SPLITS = 1024;

/** Head dim, query heads a KV head and KV row width; the head dims the attention kernels take. */
export function attnGeometry(a: AttnShape): { d: number; group: number; kvd: number } {
  const d = a.headDim;
  const group = a.heads / a.kvHeads;
  if (!Number.isInteger(group)) throw new UserError(`CUDA target: attention: ${a.heads} heads not a multiple of ${a.kvHeads} KV heads`);
  if (d % 64 || 128 % (d / 2)) throw new UserError(`CUDA target: attention: head dim ${d} is not 64, 128 or 256`);
  return { d, group, kvd: a.kvHeads * d };
}

/**
 * Partial attention of query (t, h) over positions [s·CH, min((s+1)·CH, pos0+t+1)): writes the
 * chunk's max score m, Σ exp(score − m) and Σ exp(score − m)·v. Grid (T·heads, splits).
 */
export function attnPartialKernel(a: AttnShape): CudaKernel {
  const { d, group, kvd } = attnGeometry(a);
  return defineKernel({
    name: `attn_partial_h${a.heads}_kv${a.kvHeads}_d${d}${attnScaleTag(a).suffix}`,
    params: { heads: a.heads, kvHeads: a.kvHeads, d, chunk: ATTN_CHUNK, ...attnScaleTag(a).params },
    args: [
      { name: 'q', type: 'const float*' },
      { name: 'kcache', type: 'const __half*' },
      { name: 'vcache', type: 'const __half*' },
      { name: 'pm', type: 'float*' },
      { name: 'pl', type: 'float*' },
      { name: 'pacc', type: 'float*' },
      ...SEQ_ARGS,
      { name: 'T', type: 'int' },
      { name: 'splits', type: 'int' },
    ],
    block: 128,
    grid: [code`T * ${a.heads}`, code`splits`, code`1`],
    body: code`  __shared__ float qs[${d}];
  __shared__ float sc[${ATTN_CHUNK}];
  __shared__ float scratch[32];
  const int th = blockIdx.x, t = th / ${a.heads}, h = th - t * ${a.heads}, kh = h / ${group};
  const int len = ${TOKEN_POS} + 1;
  kcache += t * seq;
  vcache += t * seq;
${
  a.window === undefined
    ? code`  const int p0 = blockIdx.y * ${ATTN_CHUNK}, p1 = min(p0 + ${ATTN_CHUNK}, len);`
    : code`  // keys pos − window < p ≤ pos: the split's chunk from the window's first position on
  const int p0 = max(blockIdx.y * ${ATTN_CHUNK}, len - ${a.window}), p1 = min(blockIdx.y * ${ATTN_CHUNK} + ${ATTN_CHUNK}, len);`
}
  const size_t slot = (size_t)th * splits + blockIdx.y;
  if (p0 >= p1) {
    if (threadIdx.x == 0) { pm[slot] = -INFINITY; pl[slot] = 0.f; }
    for (int i = threadIdx.x; i < ${d}; i += blockDim.x) pacc[slot * ${d} + i] = 0.f;
    return;
  }
  for (int i = threadIdx.x; i < ${d}; i += blockDim.x) qs[i] = q[(size_t)t * ${a.heads * d} + h * ${d} + i] * ${cudaFloat(attnScale(a))};
  __syncthreads();
  // Scores: two threads a position, each a half of the head's dims in 16-byte loads.
  {
    const int pl_ = threadIdx.x >> 1, hf = threadIdx.x & 1, p = p0 + pl_;
    float acc = 0.f;
    if (p < p1) {
      const uint4* kr = reinterpret_cast<const uint4*>(kcache + (size_t)p * ${kvd} + kh * ${d} + hf * ${d / 2});
      #pragma unroll
      for (int j = 0; j < ${d / 16}; ++j) {
        const uint4 u = kr[j];
        const __half2* hv = reinterpret_cast<const __half2*>(&u);
        #pragma unroll
        for (int e = 0; e < 4; ++e) {
          const float2 f = __half22float2(hv[e]);
          acc += qs[hf * ${d / 2} + 8 * j + 2 * e] * f.x + qs[hf * ${d / 2} + 8 * j + 2 * e + 1] * f.y;
        }
      }
    }
    acc += __shfl_xor_sync(0xffffffffu, acc, 1);
    if (hf == 0 && p < p1) sc[pl_] = ${softcapped(a, code`acc`)};
  }
  __syncthreads();
  float mx = -INFINITY;
  for (int p = threadIdx.x; p < p1 - p0; p += blockDim.x) mx = fmaxf(mx, sc[p]);
  mx = twlac_block_reduce<true>(mx, scratch);
  float sum = 0.f;
  for (int p = threadIdx.x; p < p1 - p0; p += blockDim.x) { const float e = expf(sc[p] - mx); sc[p] = e; sum += e; }
  sum = twlac_block_reduce<false>(sum, scratch);
  // Σ_p e_p·v_p: a thread a dim pair and every ${128 / (d / 2)}th position, then the groups summed.
  {
    constexpr int NG = ${128 / (d / 2)};
    __shared__ float2 vs[NG][${d / 2}];
    const int j = threadIdx.x % ${d / 2}, gi = threadIdx.x / ${d / 2};
    float2 acc = make_float2(0.f, 0.f);
    #pragma unroll 8
    for (int p = p0 + gi; p < p1; p += NG) {
      const float2 f = __half22float2(reinterpret_cast<const __half2*>(vcache + (size_t)p * ${kvd} + kh * ${d})[j]);
      const float e = sc[p - p0];
      acc.x += e * f.x;
      acc.y += e * f.y;
    }
    vs[gi][j] = acc;
    __syncthreads();
    if (gi == 0) {
      #pragma unroll
      for (int g = 1; g < NG; ++g) { acc.x += vs[g][j].x; acc.y += vs[g][j].y; }
      pacc[slot * ${d} + 2 * j] = acc.x;
      pacc[slot * ${d} + 2 * j + 1] = acc.y;
    }
  }
  if (threadIdx.x == 0) { pm[slot] = mx; pl[slot] = sum; }`,
  });
}

export function attnCombineKernel(a: AttnShape): CudaKernel {
  const d = a.headDim;
  return defineKernel({
    name: `attn_combine_h${a.heads}_d${d}`,
    params: { heads: a.heads, d },
    args: [
      { name: 'pm', type: 'const float*' },
      { name: 'pl', type: 'const float*' },
      { name: 'pacc', type: 'const float*' },
      { name: 'out', type: 'float*' },
      { name: 'T', type: 'int' },
      { name: 'splits', type: 'int' },
    ],
    block: 128,
    grid: [code`T * ${a.heads}`, code`1`, code`1`],
    // Split weights exp(m_s − m) once into shared memory (up to ATTN_MAX_SPLITS splits), then
    // every dim sums its splits with independent loads.
    body: code`  __shared__ float scratch[32];
  __shared__ float w[${ATTN_MAX_SPLITS}];
  const int th = blockIdx.x;
  float m = -INFINITY;
  for (int s = threadIdx.x; s < splits; s += blockDim.x) m = fmaxf(m, pm[(size_t)th * splits + s]);
  m = twlac_block_reduce<true>(m, scratch);
  float l = 0.f;
  for (int s = threadIdx.x; s < splits; s += blockDim.x) {
    const float ms = pm[(size_t)th * splits + s];
    const float e = ms == -INFINITY ? 0.f : expf(ms - m);
    w[s] = e;
    l += pl[(size_t)th * splits + s] * e;
  }
  l = twlac_block_reduce<false>(l, scratch);
  for (int i = threadIdx.x; i < ${d}; i += blockDim.x) {
    float acc = 0.f;
    #pragma unroll 4
    for (int s = 0; s < splits; ++s) acc += pacc[((size_t)th * splits + s) * ${d} + i] * w[s];
    out[(size_t)th * ${d} + i] = acc / l;
  }`,
  });
}

/** Queries and key positions a block of the prefill attention kernel takes at a time. */
const ATTN_PREFILL_Q = 16;
const ATTN_PREFILL_KV = 64;

/** Arguments of the prefill attention kernels (this one and kernels/attn-prefill-tc.ts): q fp32
 *  [T][heads·d], the layer's fp16 K/V cache [pos][kvHeads·d], out fp32 [T][heads·d], the first
 *  position, T. */
export const ATTN_PREFILL_ARGS = [
  { name: 'q', type: 'const float*' },
  { name: 'kcache', type: 'const __half*' },
  { name: 'vcache', type: 'const __half*' },
  { name: 'out', type: 'float*' },
  { name: 'posp', type: 'const int*' },
  { name: 'T', type: 'int' },
] as const;

/**
 * Causal attention of T > 1 queries (prefill chunks) in one pass: a block takes 16 queries of
 * one head and walks the key positions up to its last query's, 64 at a time, with an online
 * softmax, so each K/V tile is read once per 16 queries (the split kernels read the prefix once
 * per query). 128 threads, 8 a query: each scores 8 positions, then accumulates d/8 dims of
 * the output. Grid (⌈T/16⌉, heads); out [T][heads·d] fp32.
 */
export function attnPrefillKernel(a: AttnShape): CudaKernel {
  const { d, group, kvd } = attnGeometry(a);
  const QN = ATTN_PREFILL_Q;
  const KN = ATTN_PREFILL_KV;
  const TPQ = 128 / QN; // threads a query (a power of two ≤ 32: the row's lanes share a warp)
  const PPT = KN / TPQ; // key positions a thread scores per tile
  if (!Number.isInteger(PPT) || 32 % TPQ || (d / 8) % TPQ) throw new Error(`attention prefill: ${QN} queries × ${KN} positions do not fit 128 threads and head dim ${d}`);
  const qStride = d + 4; // floats a query row (padded: the 4 rows a warp reads sit in different banks)
  const kStride = d + 8; // halfs a key row (padded: the 8 rows a warp reads sit in different banks)
  const smemBytes = QN * qStride * 4 + KN * kStride * 2 + KN * d * 2 + QN * KN * 4;
  const chunks = d / 8; // 16-byte chunks of a row of halfs
  return defineKernel({
    name: `attn_prefill_h${a.heads}_kv${a.kvHeads}_d${d}${attnScaleTag(a).suffix}`,
    params: { heads: a.heads, kvHeads: a.kvHeads, d, qn: QN, kn: KN, ...attnScaleTag(a).params },
    args: ATTN_PREFILL_ARGS,
    block: 128,
    grid: [code`(T + ${QN - 1}) / ${QN}`, code`${a.heads}`, code`1`],
    smemBytes,
    body: code`  extern __shared__ __align__(16) unsigned char smem[];
  float* qs = reinterpret_cast<float*>(smem);                     // [${QN}][${qStride}]
  __half* ks = reinterpret_cast<__half*>(qs + ${QN * qStride});    // [${KN}][${kStride}]
  __half* vs = ks + ${KN * kStride};                              // [${KN}][${d}]
  float* ps = reinterpret_cast<float*>(vs + ${KN * d});          // [${QN}][${KN}]
  const int h = blockIdx.y, kh = h / ${group}, t0 = blockIdx.x * ${QN};
  const int pos0 = *posp;
  const int qi = threadIdx.x / ${TPQ}, l8 = threadIdx.x % ${TPQ};
  const int tq = min(t0 + qi, T - 1);          // rows past T repeat the last query (not stored)
  const int last = pos0 + min(t0 + ${QN}, T) - 1; // last key position any query here sees
  const int mine = pos0 + tq;                    // this row's last key position${a.window === undefined ? code`` : code`
  const int first = mine - ${a.window} + 1;          // this row's first key position (sliding window)`}
  for (int i = threadIdx.x; i < ${QN * d}; i += 128) {
    const int r = i / ${d}, c = i - r * ${d};
    qs[r * ${qStride} + c] = q[(size_t)min(t0 + r, T - 1) * ${a.heads * d} + h * ${d} + c] * ${cudaFloat(attnScale(a))};
  }
  float m = -INFINITY, l = 0.f;
  float o[${d / TPQ}];
  #pragma unroll
  for (int i = 0; i < ${d / TPQ}; ++i) o[i] = 0.f;
  for (int p0 = ${a.window === undefined ? code`0` : code`max(0, pos0 + t0 - ${a.window} + 1) / ${KN} * ${KN}`}; p0 <= last; p0 += ${KN}) {
    __syncthreads(); // the previous tile is consumed (and qs written, on the first pass)
    for (int i = threadIdx.x; i < ${KN * chunks}; i += 128) {
      const int r = i / ${chunks}, c = i - r * ${chunks}, p = min(p0 + r, last);
      reinterpret_cast<uint4*>(ks + r * ${kStride})[c] = reinterpret_cast<const uint4*>(kcache + (size_t)p * ${kvd} + kh * ${d})[c];
      reinterpret_cast<uint4*>(vs + r * ${d})[c] = reinterpret_cast<const uint4*>(vcache + (size_t)p * ${kvd} + kh * ${d})[c];
    }
    __syncthreads();
    // scores of positions p0 + l8 + ${TPQ}j, j < ${PPT}
    float sc[${PPT}];
    #pragma unroll
    for (int j = 0; j < ${PPT}; ++j) sc[j] = 0.f;
    #pragma unroll 4
    for (int c = 0; c < ${chunks}; ++c) {
      const float4 qa = *reinterpret_cast<const float4*>(qs + qi * ${qStride} + 8 * c);
      const float4 qb = *reinterpret_cast<const float4*>(qs + qi * ${qStride} + 8 * c + 4);
      #pragma unroll
      for (int j = 0; j < ${PPT}; ++j) {
        const uint4 u = reinterpret_cast<const uint4*>(ks + (l8 + ${TPQ} * j) * ${kStride})[c];
        const __half2* hv = reinterpret_cast<const __half2*>(&u);
        const float2 f0 = __half22float2(hv[0]), f1 = __half22float2(hv[1]), f2 = __half22float2(hv[2]), f3 = __half22float2(hv[3]);
        sc[j] += qa.x * f0.x + qa.y * f0.y + qa.z * f1.x + qa.w * f1.y + qb.x * f2.x + qb.y * f2.y + qb.z * f3.x + qb.w * f3.y;
      }
    }
    float mt = -INFINITY;
    #pragma unroll
    for (int j = 0; j < ${PPT}; ++j) {${a.softcap === undefined ? code`` : code`
      sc[j] = ${softcapped(a, code`sc[j]`)};`}
      if (p0 + l8 + ${TPQ} * j > mine${a.window === undefined ? code`` : code` || p0 + l8 + ${TPQ} * j < first`}) sc[j] = -INFINITY; // causal (and past the tile's last position)${a.window === undefined ? code`` : code`, in the window`}
      mt = fmaxf(mt, sc[j]);
    }
    #pragma unroll
    for (int o2 = 1; o2 < ${TPQ}; o2 *= 2) mt = fmaxf(mt, __shfl_xor_sync(0xffffffffu, mt, o2));
${
      a.window === undefined
        ? code`    const float mn = fmaxf(m, mt); // finite: position 0 is in every row's first tile
    const float alpha = expf(m - mn);`
        : code`    // a row's window may start past this tile: nothing seen yet leaves m = mn = −∞
    const float mn = fmaxf(m, mt);
    const float alpha = mn == -INFINITY ? 1.f : expf(m - mn);`
    }
    float sum = 0.f;
    #pragma unroll
    for (int j = 0; j < ${PPT}; ++j) {
      const float e = ${a.window === undefined ? code`expf(sc[j] - mn)` : code`sc[j] == -INFINITY ? 0.f : expf(sc[j] - mn)`};
      ps[qi * ${KN} + l8 + ${TPQ} * j] = e;
      sum += e;
    }
    #pragma unroll
    for (int o2 = 1; o2 < ${TPQ}; o2 *= 2) sum += __shfl_xor_sync(0xffffffffu, sum, o2);
    l = l * alpha + sum;
    m = mn;
    __syncwarp();
    // o = o·alpha + Σ_p e_p·v_p over this thread's dims: chunks l8 + ${TPQ}i of the row
    #pragma unroll
    for (int i = 0; i < ${d / TPQ}; ++i) o[i] *= alpha;
    #pragma unroll 4
    for (int pj = 0; pj < ${KN}; ++pj) {
      const float e = ps[qi * ${KN} + pj];
      #pragma unroll
      for (int i = 0; i < ${chunks / TPQ}; ++i) {
        const uint4 u = reinterpret_cast<const uint4*>(vs + pj * ${d})[l8 + ${TPQ} * i];
        const __half2* hv = reinterpret_cast<const __half2*>(&u);
        #pragma unroll
        for (int e2 = 0; e2 < 4; ++e2) {
          const float2 f = __half22float2(hv[e2]);
          o[8 * i + 2 * e2] += e * f.x;
          o[8 * i + 2 * e2 + 1] += e * f.y;
        }
      }
    }
  }
  if (t0 + qi < T) {
    float* dst = out + (size_t)(t0 + qi) * ${a.heads * d} + h * ${d};
    const float inv = 1.f / l;
    #pragma unroll
    for (int i = 0; i < ${chunks / TPQ}; ++i)
      #pragma unroll
      for (int e2 = 0; e2 < 8; e2 += 4)
        *reinterpret_cast<float4*>(dst + 8 * (l8 + ${TPQ} * i) + e2) = make_float4(o[8 * i + e2] * inv, o[8 * i + e2 + 1] * inv, o[8 * i + e2 + 2] * inv, o[8 * i + e2 + 3] * inv);
  }`,
  });
}

/** y[m, n] (=|+=) Σ_k W[n, k] a[m, k] with a dense row-major fp16 or fp32 weight. */
export function denseGemvKernel(n: number, k: number, m: number, dtype: 'float16' | 'float32', arch: CudaArch): CudaKernel {
  const R = m <= 4 ? 2 : 1;
  const warps = 8;
  const rowsPerBlock = warps * R;
  const f16 = dtype === 'float16';
  const vecElems = f16 ? 8 : 4;
  const vec = k % vecElems === 0;
  const smemBytes = m * k * 2;
  if (smemBytes > CUDA_ARCHS[arch].maxSmemPerBlock) throw new Error(`dense GEMV ${n}x${k} M=${m}: activations exceed the shared memory of ${arch}`);
  const inner = vec
    ? f16
      ? code`      for (int c = lane; c < ${k / 8}; c += 32) {
        const uint4 w = __ldg(reinterpret_cast<const uint4*>(W + (size_t)row * ${k * 2}) + c);
        const __half2* wh = reinterpret_cast<const __half2*>(&w);
        #pragma unroll
        for (int mm = 0; mm < ${m}; ++mm) {
          const uint4 xv = reinterpret_cast<const uint4*>(xs + mm * ${k})[c];
          const __half2* xh = reinterpret_cast<const __half2*>(&xv);
          #pragma unroll
          for (int e = 0; e < 4; ++e) { const float2 w2 = __half22float2(wh[e]), x2 = __half22float2(xh[e]); acc[r][mm] += w2.x * x2.x + w2.y * x2.y; }
        }
      }`
      : code`      for (int c = lane; c < ${k / 4}; c += 32) {
        const float4 w = __ldg(reinterpret_cast<const float4*>(W + (size_t)row * ${k * 4}) + c);
        #pragma unroll
        for (int mm = 0; mm < ${m}; ++mm) {
          const float2 x0 = __half22float2(reinterpret_cast<const __half2*>(xs + mm * ${k})[2 * c]);
          const float2 x1 = __half22float2(reinterpret_cast<const __half2*>(xs + mm * ${k})[2 * c + 1]);
          acc[r][mm] += w.x * x0.x + w.y * x0.y + w.z * x1.x + w.w * x1.y;
        }
      }`
    : code`      for (int c = lane; c < ${k}; c += 32) {
        const float w = ${f16 ? code`__half2float(reinterpret_cast<const __half*>(W + (size_t)row * ${k * 2})[c])` : code`reinterpret_cast<const float*>(W + (size_t)row * ${k * 4})[c]`};
        #pragma unroll
        for (int mm = 0; mm < ${m}; ++mm) acc[r][mm] += w * __half2float(xs[mm * ${k} + c]);
      }`;
  return defineKernel({
    name: `dense_${f16 ? 'f16' : 'f32'}_n${n}_k${k}_m${m}_${arch}`,
    params: { n, k, m, dtype, arch, rows: R },
    args: [
      { name: 'a', type: 'const __half*' },
      { name: 'W', type: 'const uint8_t*' },
      { name: 'y', type: 'float*' },
      { name: 'T', type: 'int' },
      { name: 'accumulate', type: 'int' },
    ],
    block: warps * 32,
    grid: [code`${Math.ceil(n / rowsPerBlock)}`, code`1`, code`1`],
    smemBytes,
    body: code`  extern __shared__ __align__(16) __half xs[];
  for (int i = threadIdx.x; i < ${m * k}; i += blockDim.x) xs[i] = i / ${k} < T ? a[i] : __float2half(0.f);
  __syncthreads();
  const int warp = threadIdx.x >> 5, lane = threadIdx.x & 31;
  const int row0 = (blockIdx.x * ${warps} + warp) * ${R};
  float acc[${R}][${m}];
  #pragma unroll
  for (int r = 0; r < ${R}; ++r)
    #pragma unroll
    for (int mm = 0; mm < ${m}; ++mm) acc[r][mm] = 0.f;
  #pragma unroll
  for (int r = 0; r < ${R}; ++r) {
    const int row = min(row0 + r, ${n - 1});
${inner}
  }
  #pragma unroll
  for (int r = 0; r < ${R}; ++r)
    #pragma unroll
    for (int mm = 0; mm < ${m}; ++mm) {
      float v = acc[r][mm];
      #pragma unroll
      for (int o = 16; o > 0; o >>= 1) v += __shfl_xor_sync(0xffffffffu, v, o);
      if (lane == 0 && row0 + r < ${n} && mm < T) {
        float* dst = y + (size_t)mm * ${n} + row0 + r;
        *dst = accumulate ? *dst + v : v;
      }
    }`,
  });
}
