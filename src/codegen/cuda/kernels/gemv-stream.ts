// Streaming decode GEMV (M = 1…4 tokens) for bit2 codes in 16-code words, with fp16
// activations ('f16') or the act kernel's u8 codes with per-token (s, z) ('u8'):
//   y[m, n] (=|+=) Σ_g scale[n,g] · Σ_{k∈g} t[n,k] · x[m,k]  +  shift[n,g] · Σ_{k∈g} x[m,k]
// (for 'u8', x = (q − z)·s, so y = s · (Σ_g sc·Σ t·(q − z) + sh·Σ (q − z))).
//
// Why a second GEMV: the staged kernel (gemv.ts) copies the activations into shared memory
// behind a barrier before the first weight byte is requested and decodes each digit pair with
// four instructions; at M = 1 that left it latency-bound, far from DRAM peak. Here nothing
// waits on anything before the weight loads: every lane issues 16-byte loads for all its chunks of R rows at once (UB chunks deep),
// and the activations come straight from global memory (they are a few KB, L1/L2-resident),
// re-ordered in registers by byte permutes shared by the R rows:
// - f16: pair p of a word holds digits (p, p+8); masking the digit in place and OR-ing the
//   fp16 exponent of 1024 gives 1024 + d·4^p exactly (p < 5; p ≥ 5 from w >> 10), and one
//   HFMA2 by (4^-p, −(1024·4^-p + 2)) turns it into the trit t = d − 2 exactly; one HFMA2 more
//   meets the activations (≤ 16 fp16 products a word, then fp32 with the group's scale).
// - u8: (w & 0x03030303·4^p) holds digits p, p+4, p+8, p+12 times 4^p in its bytes; one dp4a
//   against the matching activation bytes (a 4×4 byte transpose of the 16 activations, by
//   PRMT) adds 4^p·Σ d·q exactly; the four partial sums are re-scaled by shifts at the end of
//   the chunk. Σ d comes from two popcounts, Σ q from dp4a by ones.
// Bulk plans (int8 activations at M = 1 up to 20 MB of codes, sm_90+) fetch each block's rows
// differently: before waiting for the previous kernel, the block requests its whole slice of
// codes, scales and shifts with cp.async.bulk into shared memory, landing in phases along K
// (one mbarrier each); the lanes then read their chunks from shared memory as the phases land.
// Inside a CUDA graph with programmatic dependent launch the slice arrives while the previous
// kernel still runs. Beyond K = 8192 the activations come the same way, after the grid wait
// (xbulk). Figures: docs/performance.md, decode GEMV.
import { CODE_PACKINGS, groupsPerRow } from '../../../formats/ternary.ts';
import { Code, code, join } from '../../common/fragments.ts';
import { BIT2_FP16_CONSTANTS, BIT2_FP16_PAIRED_X, sumWordActivations } from './bit2-fp16.ts';
import { rowOffsets, zeroAccumulators } from './reduce.ts';
import { defineKernel, type CudaKernel, type CudaParam } from '../kernel.ts';
import { CUDA_ARCHS } from '../arch.ts';
import { GEMV_TAIL_ARGS, gemvWeightArgs, type GemvShape } from './gemv.ts';

export type StreamAct = 'f16' | 'u8';

/** Largest M the streaming GEMV is generated for (beyond it the staged kernel reuses weights better). */
export const STREAM_MAX_M = 4;

/** Why a shape cannot use the streaming GEMV, or null. */
export function gemvStreamUnsupported(s: Pick<GemvShape, 'format' | 'k' | 'm'>): string | null {
  if (s.format.packing !== 'bit2' || s.format.group % 16) return `format ${s.format.id} is not bit2 with groups of 16k`;
  if (s.k % 16) return `K=${s.k} is not a multiple of 16`;
  if (!Number.isInteger(s.m) || s.m < 1 || s.m > STREAM_MAX_M) return `M=${s.m} outside 1…${STREAM_MAX_M}`;
  return null;
}

export interface StreamTuning {
  /** Rows a warp keeps in flight. */
  rows: number;
  /** Warps a block. */
  warps: number;
  /** Warps that split one row's K range (partials summed in shared memory). */
  wk: number;
  /** Chunks a lane loads before it decodes any (memory-level parallelism). */
  ub: number;
  /** 0, or: bulk-copy the block's rows (codes, scales, shifts) into shared memory with
   *  cp.async.bulk, requested before the grid wait (sm_90+), landing in this many phases
   *  along K (one mbarrier each), so that decoding starts when the first phase has landed. */
  bulk: number;
  /** Bulk plans at M = 1: the int8 activations also come by cp.async.bulk into shared memory,
   *  requested after the grid wait by thread 0, one copy a weight phase's K range with an
   *  mbarrier each. Every block reads the activations from L2 once, with no block barrier and
   *  no thread copying them. The default of bulk plans beyond XBULK_DEFAULT_MIN_K. */
  xbulk?: boolean;
}

/** Default tuning by activation kind and shape, from the sweep on the H100 (scripts/device/
 *  gen-gemv-bench.ts; bench/results/cuda-h100-decode-e2e.json `gemvSweep`): the u8 kernel is bound by
 *  memory and prefers two rows a warp unless the grid stays ≥ 640 blocks with four; the f16
 *  kernel is bound by instructions and prefers more rows (the activation loads and permutes
 *  are shared by the rows), eight for wide short linears, and K split over 2 warps at N ≤ 4096. */
const STREAM_DEFAULTS: Record<StreamAct, (n: number, k: number) => StreamTuning> = {
  u8: (n) => ({ warps: 4, rows: Math.ceil(n / 16) >= 640 ? 4 : 2, wk: 1, ub: 2, bulk: 0 }),
  f16: (n, k) => (n >= 11008 && k <= 8192 ? { warps: 4, rows: 8, wk: 1, ub: 1, bulk: 0 } : { warps: 4, rows: 4, wk: n <= 4096 ? 2 : 1, ub: n <= 4096 ? 1 : 2, bulk: 0 }),
};

/** Largest shared-memory slice a bulk-loading block takes (static shared memory). */
const BULK_MAX_BYTES = 40 * 1024;

/** Default plan of the u8 kernel at M = 1 for linears of at most BULK_DEFAULT_CODE_BYTES of
 *  codes: each block bulk-loads 8 (N ≤ 4096) or 16 rows into shared memory before its grid
 *  wait, one phase a chunk batch. Larger linears (the 70B shapes) keep the register-streaming
 *  plan, which already reaches the copy bandwidth there. */
const BULK_DEFAULT_CODE_BYTES = 20 << 20;
const bulkDefault = (n: number, k: number): StreamTuning => ({ warps: 4, rows: 4, wk: n <= 4096 ? 2 : 1, ub: 1, bulk: 8, xbulk: k > XBULK_DEFAULT_MIN_K });
/** Bulk plans take the activations by bulk copy too (xbulk) beyond this K, where it fits: the
 *  long rows' activation reads are a large share of such a launch, while at smaller K the
 *  plain loads were as fast or faster. */
const XBULK_DEFAULT_MIN_K = 8192;

/** Rows of blocks below which the plan splits K over warps (2 blocks an SM on a 132-SM GPU). */
const MIN_BLOCKS = 264;

/** Kernel name; explicit tunings (benchmark sweeps) are spelled into it. */
function gemvStreamKernelName(s: GemvShape, act: StreamAct, tune: Partial<StreamTuning> = {}): string {
  const base = `gemv_s${act === 'u8' ? 'a8' : ''}_${s.format.id}_n${s.n}_k${s.k}_m${s.m}_${s.arch}`;
  if (!Object.keys(tune).length) return base;
  const p = gemvStreamPlan(s, act, tune);
  return `${base}_r${p.rows}w${p.warps}k${p.wk}u${p.ub}${p.bulk ? `b${p.bulk}` : ''}${p.xbulk ? 'xb' : ''}`;
}

export function gemvStreamPlan(s: GemvShape, act: StreamAct, tune: Partial<StreamTuning> = {}) {
  const why = gemvStreamUnsupported(s);
  if (why) throw new Error(`CUDA streaming GEMV: ${why}`);
  if (s.n < 1) throw new Error(`CUDA streaming GEMV: empty shape ${s.n}x${s.k}`);
  // int8 activations at M = 1 without an explicit plan: the bulk default where its slice fits
  // (size, 16-byte alignment, bulk copies on the arch) and the linear is small enough
  if (act === 'u8' && s.m === 1 && !Object.keys(tune).length) {
    const p = streamPlanFrom(s, tune, bulkDefault(s.n, s.k), act);
    if (p.bulk && s.n * p.rowBytes <= BULK_DEFAULT_CODE_BYTES) return p;
  }
  return streamPlanFrom(s, tune, STREAM_DEFAULTS[act](s.n, s.k), act);
}

/** The plan of a valid shape: `tune`'s fields, the rest from the defaults `d`. */
function streamPlanFrom(s: GemvShape, tune: Partial<StreamTuning>, d: StreamTuning, act: StreamAct) {
  const G = s.format.group;
  const bpg = CODE_PACKINGS.bit2.bytesPerGroup(G);
  const ng = groupsPerRow(s.format, s.k);
  const rowBytes = ng * bpg;
  const vec = bpg % 16 === 0 ? 16 : bpg % 8 === 0 ? 8 : 4; // chunk bytes: never straddles a group
  const nw = vec / 4; // 16-code words a chunk
  const cpr = rowBytes / vec; // chunks a row
  const warps = tune.warps ?? d.warps;
  let rows = tune.rows ?? (s.m === 1 ? d.rows : Math.min(d.rows, 2));
  let wk = tune.wk ?? d.wk;
  while (tune.rows === undefined && rows > 1 && Math.ceil(s.n / ((warps / wk) * rows)) < MIN_BLOCKS) rows /= 2;
  while (tune.wk === undefined && wk < warps && Math.ceil(s.n / ((warps / wk) * rows)) < MIN_BLOCKS / 2 && cpr >= 64 * wk) wk *= 2;
  if (warps % wk) throw new Error(`CUDA streaming GEMV: ${wk} K-splits do not divide ${warps} warps`);
  const wr = warps / wk;
  const iters = Math.ceil(cpr / (32 * wk)); // chunk iterations a lane
  const ub = Math.max(1, Math.min(tune.ub ?? d.ub, iters));
  const rowsPerBlock = wr * rows;
  // Bulk copies move 16-byte multiples between 16-byte aligned addresses: the block's slices of
  // codes and scales (and the last block's, when N is not a multiple of its rows) must be so.
  const scaleRowBytes = ng * 2;
  const sliceBytes = rowsPerBlock * (rowBytes + scaleRowBytes * (s.format.shift ? 2 : 1));
  const bulkOk =
    CUDA_ARCHS[s.arch].bulkCopy &&
    vec === 16 && (rowsPerBlock * scaleRowBytes) % 16 === 0 && (scaleRowBytes % 16 === 0 || s.n % rowsPerBlock === 0) && sliceBytes <= BULK_MAX_BYTES;
  if (tune.bulk && !bulkOk) throw new Error(`CUDA streaming GEMV: bulk loads need sm_90+, 16-byte chunks, 16-byte aligned scale slices and ≤ ${BULK_MAX_BYTES} B a block (${s.n}x${s.k}, ${rowsPerBlock} rows)`);
  const batches = Math.ceil(iters / ub);
  const bulk = bulkOk ? Math.min(tune.bulk ?? d.bulk, batches) : 0;
  if (!Number.isInteger(bulk) || bulk < 0) throw new Error(`CUDA streaming GEMV: ${tune.bulk} bulk phases`);
  /** First chunk of bulk phase i (i = 0…bulk): phases are whole chunk batches, batch bt in
   *  phase ⌊((bt + 1)·bulk − 1) / batches⌋. */
  const phaseStart = (i: number) => Math.min(cpr, 32 * wk * ub * Math.floor((i * batches) / bulk));
  const xbulkFits = sliceBytes + s.k <= 46 * 1024;
  const xbulk = tune.xbulk ?? (!!d.xbulk && act === 'u8' && s.m === 1 && bulk > 0 && xbulkFits);
  if (xbulk && (act !== 'u8' || s.m !== 1 || !bulk)) throw new Error(`CUDA streaming GEMV: activations by bulk copy need int8 activations, M = 1 and a bulk plan (${s.n}x${s.k})`);
  if (xbulk && !xbulkFits) throw new Error(`CUDA streaming GEMV: the slice and the activations need ${sliceBytes + s.k} B of shared memory, more than 46 KB (${s.n}x${s.k})`);
  const xbulkBytes = xbulk ? s.k : 0;
  return { xbulk, xbulkBytes, G, bpg, ng, rowBytes, vec, nw, cpr, warps, wk, wr, rows, iters, ub, batches, rowsPerBlock, blocks: Math.ceil(s.n / rowsPerBlock), bulk, scaleRowBytes, sliceBytes, phaseStart };
}


/** Per-activation-kind pieces: kernel arguments, per-token setup, one word's work. */
interface ActDecl {
  args: readonly CudaParam[];
  /** Declarations once per kernel. */
  setup(M: number): Code;
  /** Load and reshape the activations of word `kq` for token m (shared by the R rows). */
  loadX(K: number, xbulk?: boolean): Code;
  /** Work of one word `w` of row r into the chunk partials. */
  word(r: number): Code;
  /** Chunk partials declared per row before its words. */
  chunkStart(r: number): Code;
  /** Fold a row's chunk partials (scale sc, shift sh, `nwl` live words) into acc[r][m]. */
  chunkEnd(r: number, shift: boolean): Code;
  /** Output value of row r, token m (before the store). */
  out: Code;
}

const ACTS: Record<StreamAct, ActDecl> = {
  f16: {
    args: [{ name: 'a', type: 'const __half*' }],
    setup: () => code`${BIT2_FP16_CONSTANTS}`,
    loadX: (K) => code`          const uint4 xa = __ldg(reinterpret_cast<const uint4*>(a + (size_t)m * ${K} + kq));
          const uint4 xb = __ldg(reinterpret_cast<const uint4*>(a + (size_t)m * ${K} + kq + 8));
${BIT2_FP16_PAIRED_X}
${sumWordActivations(code`xsum[m]`)}`,
    chunkStart: (r) => code`        float pc${r}[${STREAM_MAX_M}] = {0.f, 0.f, 0.f, 0.f};`,
    word: (r) => code`          { const uint32_t w = wd[${r}], wh = w >> 10;
            __half2 part = __float2half2_rn(0.f);
            #pragma unroll
            for (int p = 0; p < 8; ++p) {
              const uint32_t src = p < 5 ? w : wh;
              const int pp = p < 5 ? p : p - 5;
              const uint32_t bits = (src & (0x00030003u << (2 * pp))) | 0x64006400u; // fp16 1024 + d·4^pp
              const __half2 t = __hfma2(*reinterpret_cast<const __half2*>(&bits), c1[pp], c2[pp]); // exact trit
              part = __hfma2(t, *reinterpret_cast<const __half2*>(&xw[p]), part);
            }
            const float2 f = __half22float2(part);
            pc${r}[m] += f.x + f.y; }`,
    chunkEnd: (r, shift) =>
      shift
        ? code`        #pragma unroll
        for (int m = 0; m < M_; ++m) acc[${r}][m] += sc[${r}] * pc${r}[m] + sh[${r}] * xsum[m];`
        : code`        #pragma unroll
        for (int m = 0; m < M_; ++m) acc[${r}][m] += sc[${r}] * pc${r}[m];`,
    out: code`acc[r][m]`,
  },
  u8: {
    args: [
      { name: 'a', type: 'const uint8_t*' },
      { name: 'ap', type: 'const float*' },
    ],
    setup: (M) => code`  float sq[${M}], zq[${M}];
  #pragma unroll
  for (int m = 0; m < ${M}; ++m) { sq[m] = m < T ? ap[2 * m] : 0.f; zq[m] = m < T ? ap[2 * m + 1] : 0.f; }`,
    loadX: (K, xbulk) => code`          const uint4 xv = ${xbulk ? code`*reinterpret_cast<const uint4*>(${XBULK.buf} + kq)` : code`__ldg(reinterpret_cast<const uint4*>(a + (size_t)m * ${K} + kq))`};
          const uint32_t lo01 = __byte_perm(xv.x, xv.y, 0x5140), hi01 = __byte_perm(xv.x, xv.y, 0x7362);
          const uint32_t lo23 = __byte_perm(xv.z, xv.w, 0x5140), hi23 = __byte_perm(xv.z, xv.w, 0x7362);
          const uint32_t xw[4] = {__byte_perm(lo01, lo23, 0x5410), __byte_perm(lo01, lo23, 0x7632), __byte_perm(hi01, hi23, 0x5410), __byte_perm(hi01, hi23, 0x7632)};
          qsum[m] += __dp4a(xv.x, 0x01010101u, __dp4a(xv.y, 0x01010101u, __dp4a(xv.z, 0x01010101u, __dp4a(xv.w, 0x01010101u, 0u))));`,
    chunkStart: (r) => code`        unsigned d${r}[${STREAM_MAX_M}][4] = {};
        int cs${r} = 0;`,
    word: (r) => code`          { const uint32_t w = wd[${r}];
            if (m == 0) cs${r} += __popc(w & 0x55555555u) + 2 * __popc(w & 0xaaaaaaaau);
            d${r}[m][0] = __dp4a(w & 0x03030303u, xw[0], d${r}[m][0]);
            d${r}[m][1] = __dp4a(w & 0x0c0c0c0cu, xw[1], d${r}[m][1]);
            d${r}[m][2] = __dp4a(w & 0x30303030u, xw[2], d${r}[m][2]);
            d${r}[m][3] = __dp4a(w & 0xc0c0c0c0u, xw[3], d${r}[m][3]); }`,
    // Σ t·(q − z) = Σ d·q − 2·Σ q − z·(Σ d − 2·count); Σ (q − z) = Σ q − z·count.
    chunkEnd: (r, shift) => code`        #pragma unroll
        for (int m = 0; m < M_; ++m) {
          const int dq = (int)(d${r}[m][0] + (d${r}[m][1] >> 2) + (d${r}[m][2] >> 4) + (d${r}[m][3] >> 6));
          const float dot = (float)(dq - 2 * (int)qsum[m]) - zq[m] * (float)(cs${r} - 32 * nwl);
          acc[${r}][m] += sc[${r}] * dot${shift ? code` + sh[${r}] * ((float)qsum[m] - zq[m] * (float)(16 * nwl))` : code``};
        }`,
    out: code`sq[m] * acc[r][m]`,
  },
};

/** Names one segment's body reads: block index, weight tensors and output. */
interface SegmentNames {
  bid: Code;
  codes: Code;
  scales: Code;
  shifts: Code;
  y: Code;
}

/** The kernel's shared weight slice and its mbarriers (bulk plans), declared once a kernel
 *  so that the segments of a grouped launch share them. */
const BULK_SMEM = { buf: code`twlac_wsm`, bar: code`twlac_wbar` };
const XBULK = { buf: code`twlac_xbk`, bar: code`twlac_xbar` };
function xbulkDeclarations(bytes: number, phases: number): Code {
  return code`  __shared__ __align__(128) uint8_t ${XBULK.buf}[${bytes}];
  __shared__ __align__(8) uint64_t ${XBULK.bar}[${phases}];`;
}
/** xbulk plans, after the grid wait (xbar: bulkRequest's): thread 0 requests each phase's K range of the activations
 *  (one cp.async.bulk a phase, on the phase's own mbarrier, armed with its bytes). The layout is
 *  plain (byte k at k), so the lanes' 16-byte reads of consecutive 64-byte chunks conflict 4-way
 *  in the banks: a few dozen cycles a batch, cheaper than one bulk copy a 128-byte run with
 *  padding (many small copies a block). */
function xbulkRequest(p: ReturnType<typeof gemvStreamPlan>, K: number): Code {
  const { bulk: P, phaseStart } = p;
  const kStart = (i: number) => Math.min(K, 64 * phaseStart(i)); // chunks are 64 codes (16-byte code chunks)
  return code`  if (threadIdx.x == 0) {
    const uint32_t xs = (uint32_t)__cvta_generic_to_shared(${XBULK.buf});
${join(
  Array.from({ length: P }, (_, i) => {
    const k0 = kStart(i), bytes = kStart(i + 1) - k0;
    return code`    asm volatile("{ .reg .b64 st; mbarrier.arrive.expect_tx.shared::cta.b64 st, [%0], %1; }" :: "r"(xbar + ${8 * i}), "r"(${bytes}u) : "memory");${
      bytes > 0
        ? code`
    asm volatile("cp.async.bulk.shared::cluster.global.mbarrier::complete_tx::bytes [%0], [%1], %2, [%3];" :: "r"(xs + ${k0}u), "l"(a + ${k0}), "r"(${bytes}u), "r"(xbar + ${8 * i}) : "memory");`
        : code``
    }`;
  }),
)}
  }`;
}

function bulkDeclarations(sliceBytes: number, phases: number): Code {
  return code`  __shared__ __align__(128) uint8_t ${BULK_SMEM.buf}[${sliceBytes}];
  __shared__ __align__(8) uint64_t ${BULK_SMEM.bar}[${phases}];`;
}

/** Bulk plans, before the grid wait. Thread 0 initialises one mbarrier a phase and arms each
 *  with its byte count (phase 0 also carries the scales and shifts); then the lanes of warp 0
 *  request phase i of row r (chunks phaseStart(i)… of the row) and the scale and shift rows
 *  with one cp.async.bulk each. Weights are immutable, so the copies overlap the previous
 *  kernel. Defines the slice pointers wc/wsc/wsh. */
function bulkRequest(p: ReturnType<typeof gemvStreamPlan>, N: number, shift: boolean, nm: SegmentNames): Code {
  const { rowsPerBlock: rpb, rowBytes, scaleRowBytes, ng, bulk: P, phaseStart, vec } = p;
  const copy = (dst: Code, src: Code, bytes: Code, bar: Code) =>
    code`asm volatile("cp.async.bulk.shared::cluster.global.mbarrier::complete_tx::bytes [%0], [%1], %2, [%3];" :: "r"(${dst}), "l"(${src}), "r"(${bytes}), "r"(${bar}) : "memory");`;
  const starts = Array.from({ length: P + 1 }, (_, i) => phaseStart(i) * vec);
  const phaseBytes = (i: number) => starts[i + 1] - starts[i];
  // phase i's first byte of a row and its length, by a switch over the (constant) phases
  const sel = (f: (i: number) => number) =>
    Array.from({ length: P }, (_, i) => i).reduceRight<Code>((acc, i) => (i === P - 1 ? code`${f(i)}u` : code`(ph == ${i} ? ${f(i)}u : ${acc})`), code``);
  return code`  const int brow0 = ${nm.bid} * ${rpb};
  const uint32_t bar = (uint32_t)__cvta_generic_to_shared(${BULK_SMEM.bar});
  const uint32_t slice = (uint32_t)__cvta_generic_to_shared(${BULK_SMEM.buf});${p.xbulk ? code`
  const uint32_t xbar = (uint32_t)__cvta_generic_to_shared(${XBULK.bar}); // the activations' phases (xbulk)` : code``}
  const uint32_t bnr = (uint32_t)min(${rpb}, ${N} - brow0);
  if (threadIdx.x == 0) {
    #pragma unroll
    for (int i = 0; i < ${P}; ++i) asm volatile("mbarrier.init.shared::cta.b64 [%0], 1;" :: "r"(bar + 8 * i) : "memory");${
      p.xbulk
        ? code`
    #pragma unroll
    for (int i = 0; i < ${P}; ++i) asm volatile("mbarrier.init.shared::cta.b64 [%0], 1;" :: "r"(xbar + 8 * i) : "memory");`
        : code``
    }
    asm volatile("fence.proxy.async.shared::cta;" ::: "memory");
${join(
  Array.from({ length: P }, (_, i) => {
    const bytes = i === 0 ? code`bnr * ${phaseBytes(0) + scaleRowBytes * (shift ? 2 : 1)}u` : code`bnr * ${phaseBytes(i)}u`;
    return code`    asm volatile("{ .reg .b64 st; mbarrier.arrive.expect_tx.shared::cta.b64 st, [%0], %1; }" :: "r"(bar + ${8 * i}), "r"(${bytes}) : "memory");`;
  }),
)}
  }
  __syncwarp();
  if (threadIdx.x < 32) {
    for (uint32_t j = threadIdx.x; j < ${P} * bnr; j += 32) {
      const uint32_t ph = j / bnr, r = j - ph * bnr, off = ${sel((i) => starts[i])};
      ${copy(code`slice + r * ${rowBytes}u + off`, code`${nm.codes} + (size_t)(brow0 + r) * ${rowBytes} + off`, sel((i) => phaseBytes(i)), code`bar + 8 * ph`)}
    }
    if (threadIdx.x == 31) {
      ${copy(code`slice + ${rpb * rowBytes}u`, code`${nm.scales} + (size_t)brow0 * ${ng}`, code`bnr * ${scaleRowBytes}u`, code`bar`)}
      ${shift ? copy(code`slice + ${rpb * (rowBytes + scaleRowBytes)}u`, code`${nm.shifts} + (size_t)brow0 * ${ng}`, code`bnr * ${scaleRowBytes}u`, code`bar`) : code``}
    }
  }
  __syncthreads(); // the mbarriers are initialised before any thread waits on them
  const uint8_t* const wc = ${BULK_SMEM.buf};
  const __half* const wsc = reinterpret_cast<const __half*>(${BULK_SMEM.buf} + ${rpb * rowBytes});
  const __half* const wsh = reinterpret_cast<const __half*>(${BULK_SMEM.buf} + ${rpb * (rowBytes + scaleRowBytes)});
  int landed = 0; // phases this thread has seen land`;
}

/** Bulk plans, before batch bt: wait until every phase up to the batch's own has landed. A
 *  phase's mbarrier completes once, so each is waited on with parity 0. */
function bulkWait(p: ReturnType<typeof gemvStreamPlan>): Code {
  const { batches, bulk: P, xbulk } = p;
  const waitPhase = (bars: string) => code`while (!done)
          asm volatile("{ .reg .pred p; mbarrier.try_wait.parity.shared::cta.b64 p, [%1], 0; selp.u32 %0, 1, 0, p; }" : "=r"(done) : "r"(${new Code(bars)} + 8 * landed) : "memory");`;
  return code`    {
      const int need = ((bt + 1) * ${P} - 1) / ${batches}; // the phase of batch bt
      for (; landed <= need; ++landed) {
        uint32_t done = 0;
        ${waitPhase('bar')}${
          xbulk
            ? code`
        done = 0; // and the phase's activations
        ${waitPhase('xbar')}`
            : code``
        }
      }
    }`;
}

/** The work of one linear: rows of block `bid`. Only L2 prefetches of weights come before
 *  TWLAC_GRID_WAIT() (weights are immutable; activations and outputs come after it). */
function streamBody(s: GemvShape, act: StreamAct, tune: Partial<StreamTuning>, nm: SegmentNames): Code {
  const p = gemvStreamPlan(s, act, tune);
  const { G, bpg, ng, rowBytes, vec, nw, cpr, warps, wk, wr, rows: R, iters, ub } = p;
  const M = s.m;
  const N = s.n;
  const K = s.k;
  const A = ACTS[act];
  const shift = s.format.shift;
  const vtype = new Code(vec === 16 ? 'uint4' : vec === 8 ? 'uint2' : 'uint32_t');
  const fields = vec === 16 ? ['x', 'y', 'z', 'w'] : vec === 8 ? ['x', 'y'] : [''];
  const partialWords = K < ng * G; // the last group is partial: words at k ≥ K are skipped
  const stride = 32 * wk;
  const { batches } = p;
  const guard = stride * batches * ub > cpr; // some lanes run past the row in the last batch
  const { bid, y } = nm;
  // Bulk plans read the block's slice in shared memory (plain loads), others global memory.
  const { bulk } = p;
  const codes = bulk ? code`wc` : nm.codes;
  const scales = bulk ? code`wsc` : nm.scales;
  const shifts = bulk ? code`wsh` : nm.shifts;
  const ld = (ptr: Code) => (bulk ? code`*(${ptr})` : code`__ldg(${ptr})`);

  // Batch `bt` of chunks of the R rows into raw (chunks past the row's end read as zero words).
  const loadBatch = code`    #pragma unroll
    for (int b = 0; b < ${ub}; ++b) {
      const int c = lane + ${stride} * (bt * ${ub} + b) + 32 * wkk;
${join(
  Array.from({ length: R }, (_, r) =>
    vec === 4
      ? code`      raw[b][${r}][0] = c < ${cpr} ? ${ld(code`reinterpret_cast<const uint32_t*>(${codes} + rowB[${r}]) + c`)} : 0u;`
      : code`      { const ${vtype} v = c < ${cpr} ? ${ld(code`reinterpret_cast<const ${vtype}*>(${codes} + rowB[${r}]) + c`)} : ${vtype}{};
${join(fields.map((f, i) => code`        raw[b][${r}][${i}] = v.${new Code(f)};`))} }`,
  ),
)}
    }`;

  return code`  {
  constexpr int M_ = ${M};
  const int warp = threadIdx.x >> 5, lane = threadIdx.x & 31;
  const int wrow = warp / ${wk}, wkk = warp - wrow * ${wk};
  const int row0 = (${bid} * ${wr} + wrow) * ${R};
${
  bulk
    ? code`${bulkRequest(p, N, shift, nm)}
${rowOffsets(R, N, rowBytes, ng, code`brow0`)}
  TWLAC_GRID_WAIT();${p.xbulk ? code`
${xbulkRequest(p, K)}` : code``}
  TWLAC_GRID_TRIGGER();
${A.setup(M)}`
    : code`${rowOffsets(R, N, rowBytes, ng)}
  // Before waiting for the previous kernel: pull this lane's first chunks into L2 (weights are
  // immutable), so the loads below meet L2 instead of DRAM when the activations are ready.
  #pragma unroll
  for (int b = 0; b < ${ub}; ++b) {
    const int c = lane + ${stride} * b + 32 * wkk;
    #pragma unroll
    for (int r = 0; r < ${R}; ++r)
      if (c < ${cpr}) asm volatile("prefetch.global.L2 [%0];" :: "l"(${codes} + rowB[r] + (size_t)c * ${vec}));
  }
  TWLAC_GRID_WAIT();
  TWLAC_GRID_TRIGGER();
${A.setup(M)}`
}
${zeroAccumulators(R, M)}
  #pragma unroll 1
  for (int bt = 0; bt < ${batches}; ++bt) {
    // Issue every load of this batch first: ${ub} chunk(s) × ${R} rows of ${vec} B a lane.
    uint32_t raw[${ub}][${R}][${nw}];
${bulk ? code`${bulkWait(p)}
` : code``}${loadBatch}
    #pragma unroll
    for (int b = 0; b < ${ub}; ++b) {
      const int c = lane + ${stride} * (bt * ${ub} + b) + 32 * wkk;
      ${guard ? code`if (c >= ${cpr}) continue;` : code``}
      const int g = (c * ${vec}) / ${bpg};
      const int kc = g * ${G} + ((c * ${vec}) % ${bpg}) * 4; // first k of the chunk
      float sc[${R}]${shift ? code`, sh[${R}]` : code``};
      #pragma unroll
      for (int r = 0; r < ${R}; ++r) {
        sc[r] = __half2float(${scales}[rowG[r] + g]);
        ${shift ? code`sh[r] = __half2float(${shifts}[rowG[r] + g]);` : code``}
      }
      ${act === 'u8' ? code`unsigned qsum[${STREAM_MAX_M}] = {0u, 0u, 0u, 0u};` : code`float xsum[${STREAM_MAX_M}] = {0.f, 0.f, 0.f, 0.f};`}
      int nwl = 0;
${join(Array.from({ length: R }, (_, r) => A.chunkStart(r)))}
      #pragma unroll
      for (int q = 0; q < ${nw}; ++q) {
        const int kq = kc + 16 * q;
        ${partialWords ? code`if (kq >= ${K}) break;` : code``}
        ++nwl;
        #pragma unroll
        for (int m = 0; m < ${M}; ++m) {
          if (m >= T) break;
${A.loadX(K, p.xbulk)}
          uint32_t wd[${R}];
          #pragma unroll
          for (int r = 0; r < ${R}; ++r) wd[r] = raw[b][r][q];
${join(Array.from({ length: R }, (_, r) => A.word(r)))}
        }
      }
${join(Array.from({ length: R }, (_, r) => A.chunkEnd(r, shift)))}
    }
  }
  // Sum the lanes (and the K-split warps) of each row.
  #pragma unroll
  for (int r = 0; r < ${R}; ++r)
    #pragma unroll
    for (int m = 0; m < ${M}; ++m)
      #pragma unroll
      for (int o = 16; o > 0; o >>= 1) acc[r][m] += __shfl_xor_sync(0xffffffffu, acc[r][m], o);
${
  wk > 1
    ? code`  __shared__ float red[${warps}][${R}][${M}];
  if (lane == 0)
    #pragma unroll
    for (int r = 0; r < ${R}; ++r)
      #pragma unroll
      for (int m = 0; m < ${M}; ++m) red[warp][r][m] = acc[r][m];
  __syncthreads();
  if (wkk != 0 || lane != 0) return;
  #pragma unroll
  for (int w = 1; w < ${wk}; ++w)
    #pragma unroll
    for (int r = 0; r < ${R}; ++r)
      #pragma unroll
      for (int m = 0; m < ${M}; ++m) acc[r][m] += red[warp + w][r][m];`
    : code`  if (lane != 0) return;`
}
  #pragma unroll
  for (int r = 0; r < ${R}; ++r) {
    const int row = row0 + r;
    #pragma unroll
    for (int m = 0; m < ${M}; ++m) {
      if (row < ${N} && m < T) {
        const float v = ${A.out};
        float* dst = ${y} + (size_t)m * ${N} + row;
        *dst = accumulate ? *dst + v : v;
      }
    }
  }
  }`;
}


export function gemvStreamKernel(s: GemvShape, act: StreamAct, tune: Partial<StreamTuning> = {}): CudaKernel {
  const p = gemvStreamPlan(s, act, tune);
  const names: SegmentNames = { bid: code`(int)blockIdx.x`, codes: code`codes`, scales: code`scales`, shifts: code`shifts`, y: code`y` };
  return defineKernel({
    name: gemvStreamKernelName(s, act, tune),
    params: { format: s.format.id, n: s.n, k: s.k, m: s.m, arch: s.arch, act, vec: p.vec, rows: p.rows, warps: p.warps, wk: p.wk, ub: p.ub, ...(p.bulk ? { bulk: p.bulk } : {}), ...(p.xbulk ? { xbulk: 1 } : {}) },
    args: [...ACTS[act].args, ...gemvWeightArgs(), ...GEMV_TAIL_ARGS],
    block: p.warps * 32,
    grid: [code`${p.blocks}`, code`1`, code`1`],
    pdl: 'manual',
    body: join([...(p.bulk ? [bulkDeclarations(p.sliceBytes, p.bulk)] : []), ...(p.xbulk ? [xbulkDeclarations(p.xbulkBytes, p.bulk)] : []), streamBody(s, act, tune, names)]),
  });
}

function gemvStreamGroupKernelName(segs: readonly GemvShape[], act: StreamAct): string {
  const s = segs[0];
  return `gemv_s${act === 'u8' ? 'a8' : ''}g_${s.format.id}_n${segs.map((x) => x.n).join('_')}_k${s.k}_m${s.m}_${s.arch}`;
}

/** Linears that read the same activations (q/k/v, gate/up) in one launch: the grid is the
 *  concatenation of their grids, and each block runs the body of the linear it falls in. */
export function gemvStreamGroupKernel(segs: readonly GemvShape[], act: StreamAct): CudaKernel {
  if (segs.length < 2) throw new Error('CUDA streaming GEMV group: fewer than two linears');
  const s0 = segs[0];
  for (const s of segs) {
    if (s.format.id !== s0.format.id || s.k !== s0.k || s.m !== s0.m || s.arch !== s0.arch) throw new Error(`CUDA streaming GEMV group: ${s.format.id} K=${s.k} M=${s.m} differs from ${s0.format.id} K=${s0.k} M=${s0.m}`);
  }
  const plans = segs.map((s) => gemvStreamPlan(s, act));
  const warps = plans[0].warps;
  if (plans.some((p) => p.warps !== warps)) throw new Error('CUDA streaming GEMV group: plans differ in block size');
  const bulkSlice = Math.max(0, ...plans.filter((p) => p.bulk).map((p) => p.sliceBytes));
  const bulkPhases = Math.max(0, ...plans.map((p) => p.bulk));
  const xbulkBytes = Math.max(0, ...plans.map((p) => p.xbulkBytes));
  const xbulkPhases = Math.max(0, ...plans.filter((p) => p.xbulk).map((p) => p.bulk));
  let start = 0;
  const branches = segs.map((s, i) => {
    const end = start + plans[i].blocks;
    const names: SegmentNames = { bid: code`((int)blockIdx.x - ${start})`, codes: code`codes${i}`, scales: code`scales${i}`, shifts: code`shifts${i}`, y: code`y${i}` };
    const b = code`  ${i ? code`else ` : code``}if ((int)blockIdx.x < ${end}) ${streamBody(s, act, {}, names)}`;
    start = end;
    return b;
  });
  return defineKernel({
    name: gemvStreamGroupKernelName(segs, act),
    params: { format: s0.format.id, ns: segs.map((s) => s.n).join('_'), k: s0.k, m: s0.m, arch: s0.arch, act, plans: plans.map((p) => `${p.rows}x${p.wk}x${p.ub}${p.bulk ? `b${p.bulk}` : ''}`).join('_') },
    args: [...ACTS[act].args, ...segs.flatMap((_, i) => gemvWeightArgs(String(i))), ...GEMV_TAIL_ARGS],
    block: warps * 32,
    grid: [code`${start}`, code`1`, code`1`],
    pdl: 'manual',
    body: join([...(bulkSlice > 0 ? [bulkDeclarations(bulkSlice, bulkPhases)] : []), ...(xbulkBytes > 0 ? [xbulkDeclarations(xbulkBytes, xbulkPhases)] : []), ...branches]),
  });
}
