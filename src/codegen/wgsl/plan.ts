// The kernels a manifest needs, per block and per role: one plan shared by the WebGPU
// runtime (which dispatches them) and `emitWgsl` (which writes their source), so the two
// can never disagree. Validation happens here, before any source is generated.
import type { ActSite, ArtifactManifest, LinearEntry } from '../../artifact/manifest.ts';
import { linearFormat, ternaryFormatOf } from '../../formats/linear-format.ts';
import { ternaryFormat, type TernaryFormat } from '../../formats/ternary.ts';
import { UserError } from '../../errors.ts';
import { NO_FEATURES, type WgslFeatures, type WgslKernel } from './fragments.ts';
import { qkNormShape, refuseMissing, type FeatureTable, type HeadNorm, type MlpActivation, type QkNorm } from '../../program/block-program.ts';
import {
  actQuantKernel,
  argmaxTokenKernel,
  attentionCombineKernel,
  attentionPartialKernel,
  attentionSplits,
  denseGemvRowsKernel,
  denseLinearKernel,
  embedKernel,
  headNormKernel,
  kronLeftKernel,
  layerNormKernel,
  mlpActivationKernel,
  mlpActQuantKernel,
  positionAddKernel,
  kronRightKernel,
  residualAddKernel,
  scaleKernel,
  rmsNormKernel,
  ropeKvKernel,
  swigluKernel,
  gemvRowsUnsupported,
  ternaryGemvA8Kernel,
  ternaryGemvRowsKernel,
  softcapKernel,
  copyKernel,
  ternaryGemvWorkgroupKernel,
  ternaryLinearKernel,
  type A8Prologue,
  type GemvA8Shape,
  type KvStorage,
  type LinearOut,
  a8PrologueUnsupported,
  type RowQuant,
  GEMV_ROWS_DEFAULT,
} from './kernels.ts';

/** The program features the WGSL kernels implement exactly (runtime and emitter alike). */
export const WGSL_FEATURES = {
  'rms-norm': true,
  gqa: true,
  'rope-rotate-half': true,
  swiglu: true,
  'ternary-linear': true,
  'order2-linear': true,
  'dense-linear': true,
  'act-quant': true,
  'online-transform': true,
  'linear-bias': true,
  'qk-norm': true,
  'sliding-window': true,
  'query-scale': true,
  'partial-rotary': true,
  'gelu-mlp': true,
  'gelu-tanh-mlp': true,
  'attn-softcap': true,
  'embed-scale': true,
  'logit-scale': true,
  'residual-scale': true,
  'layer-norm': true,
  'ungated-mlp': true,
  'parallel-residual': true,
  'learned-positions': true,
  'no-rope': true,
  'post-norm': true,
  'no-pre-norm': true,
  'qk-norm-full': true,
  'logit-softcap': true,
  'rope-theta-per-layer': true,
  'qk-norm-head-own': true,
  'qk-layer-norm': true,
} as const satisfies FeatureTable;

/** Token tile of the prefill GEMM. */
export const PREFILL_TILE = 8;

/**
 * The two shapes of the ternary decode GEMV (M = 1). 'thread-per-row' walks K serially in
 * one thread per output row: no barriers, what software adapters (a barrier is a fiber
 * switch there) run fastest, but latency-bound on a GPU (bench/results/wgsl-h100.json).
 * 'workgroup-per-row' strides a workgroup over the row's code
 * words with coalesced loads and a reduction (ternaryGemvWorkgroupKernel).
 * 'rows-per-workgroup' gives several rows a workgroup and reads 16-byte words of bit2 codes
 * (ternaryGemvRowsKernel); trit5 codes whose groups are multiples of 64 are transcoded to
 * bit2 when uploaded (LinearKernels.codes), other formats fall back to 'workgroup-per-row'.
 * 'rows-a8' is 'rows-per-workgroup' where a linear's input is a float, and where its act site
 * quantises to 8 bits or fewer, the integer GEMV (ternaryGemvA8Kernel) on the site's bytes:
 * four code-activation products an instruction (dot4U8Packed) and a quarter of the x traffic.
 */
export type GemvVariant = 'thread-per-row' | 'workgroup-per-row' | 'rows-per-workgroup' | 'rows-a8';

/** What runs the kernels: a CPU implementation of WebGPU, or a GPU (discrete or integrated). */
export type AdapterKind = 'software' | 'gpu';

/** The one place the GEMV shape is chosen; the runtime and `emitWgsl` both plan through it. */
export const GEMV_BY_ADAPTER = {
  software: 'thread-per-row',
  gpu: 'rows-a8',
} as const satisfies Record<AdapterKind, GemvVariant>;

/**
 * The KV cache's storage by adapter: fp16 on GPUs (as the CUDA runtime's; the attention reads half
 * the bytes), f32 on software adapters (where bandwidth is not the limit and the tests hold the
 * runtime to the float64 reference at f32 precision).
 */
export const KV_BY_ADAPTER = {
  software: 'f32',
  gpu: 'f16',
} as const satisfies Record<AdapterKind, KvStorage>;

/**
 * The integer GEMV's thread shape, by measurement (H100 through Dawn/Vulkan,
 * bench/results/wgsl-h100.json): 2 rows a thread; 64 threads a row where N ≤ 4096 (more
 * workgroups for few rows: 9.5 against 11.1 µs at 4096×11008), 32 otherwise (30.1 against
 * 32.4 µs at 28672×8192).
 */
export function gemvA8Shape(rows: number): GemvA8Shape {
  return { threadsPerRow: rows <= 4096 ? 64 : 32, rowsPerThread: 2 };
}

/**
 * The shape of an integer GEMV that makes its input in its prologue (A8Prologue). Every
 * workgroup re-reads the prologue's source from L2, so the rows a workgroup amortise it: 4 rows a
 * thread (32 rows a workgroup) where the source is more than the row itself (the RMS pre-norm
 * reads x and γ, the gated MLP activation g and u) or the linear is longer than 4096 rows; a plain
 * x at 4096 rows or fewer keeps 2. Measured on the H100 (docs/performance.md, 2026-12-07): with x
 * as the source, 32×4 took 11.97 µs at 12288×4096 and 20.3 µs at 22016×4096 against 14.06 and
 * 21.3 for 32×2; 32×2 took 7.48 µs at 4096² against 9.48 for 32×4 and 8.18 for gemvA8Shape's 64×2,
 * and 13.4 µs at 4096×11008 against 17.5 for 64×2 (32×4: 13.5, with a source a quarter of the
 * gated activation's).
 */
export function prologueGemvShape(rows: number, p: A8Prologue): GemvA8Shape {
  const heavy = (p.source === 'rms-norm' && p.gamma) || (p.source === 'mlp-act' && p.gated);
  return { threadsPerRow: 32, rowsPerThread: heavy || rows > 4096 ? 4 : 2 };
}

/** The kind of an adapter from its GPUAdapterInfo (CPU implementations report themselves as
 *  fallback adapters, or name themselves: SwiftShader, llvmpipe, lavapipe, WARP). */
export function adapterKind(info: { vendor?: string; architecture?: string; device?: string; description?: string; isFallbackAdapter?: boolean }): AdapterKind {
  if (info.isFallbackAdapter) return 'software';
  const text = [info.vendor, info.architecture, info.device, info.description].join(' ');
  return /swiftshader|llvmpipe|lavapipe|softpipe|microsoft basic render|\bcpu\b/i.test(text) ? 'software' : 'gpu';
}

export interface PlanOptions {
  /** Optional adapter features the kernels may use. Default none. */
  features?: WgslFeatures;
  /** The adapter the kernels are for. Default 'gpu' (what emitted kernels are deployed on). */
  adapter?: AdapterKind;
  /** Force a GEMV shape regardless of the adapter (tests, benchmarks). */
  gemv?: GemvVariant;
  /** Run the linears that share an input (q|k|v, gate|up) as one stacked linear where their
   *  formats allow (groupLinears). Default true. */
  group?: boolean;
  /** Let decode GEMVs make their input themselves where they can (A8Prologue). Default true. */
  prologue?: boolean;
  /** The shape of integer GEMVs with a prologue (benchmarks): default prologueGemvShape's; 'gemv'
   *  the plain GEMV's (gemvA8Shape). */
  prologueShape?: GemvA8Shape | 'gemv';
  /** At decode, let the split attention rotate q and the new key and append the key and value to
   *  the cache itself (BlockKernels.attentionDecode) instead of a rope_kv launch. Default true. */
  ropeInAttention?: boolean;
  /** Positions the KV cache holds (the attention's splits). Default: the model's maxPositions. */
  context?: number;
  /** The KV cache's storage. Default KV_BY_ADAPTER of the adapter. */
  kv?: KvStorage;
}

export function kvStorage(o: PlanOptions): KvStorage {
  return o.kv ?? KV_BY_ADAPTER[o.adapter ?? 'gpu'];
}

export function gemvVariant(o: PlanOptions): GemvVariant {
  return o.gemv ?? GEMV_BY_ADAPTER[o.adapter ?? 'gpu'];
}

export interface LinearKernels {
  /** The linear; for a group, one entry standing for the stacked linears (rows = Σ members' rows). */
  entry: LinearEntry;
  /** A group of linears that read the same input (q|k|v, gate|up): their weights are stacked
   *  into one linear at upload and its kernels write member i's rows to output i (LinearOut.split). */
  members?: LinearEntry[];
  /** The GEMV reads the act site's integer form (XQ, XP) instead of x (ternaryGemvA8Kernel);
   *  the GEMM still reads x. */
  gemvA8?: boolean;
  /** The format of the codes the kernels read, when it differs from the manifest's (trit5
   *  transcoded to bit2 at upload: same trits, scales and shifts). */
  codes?: TernaryFormat;
  /** M = 1 (decode). */
  gemv: WgslKernel;
  /** M > 1 (prefill), PREFILL_TILE tokens per weight fetch. */
  gemm: WgslKernel;
  /** An order-2 linear's second plane (formats/order2.ts): its GEMV and GEMM in the plane's
   *  format (no bias), into a scratch buffer that `add` then adds to the first plane's output. */
  order2?: { gemv: WgslKernel; gemm: WgslKernel; add?: WgslKernel };
  /** The kernels add into the output (y += W·x): the block's residual add is in their epilogue. */
  accumulate?: boolean;
  /** The GEMV makes its input from this source in its prologue (ternaryGemvA8Kernel): it binds
   *  the source's buffers (A8Prologue) instead of the site's XQ/XP. */
  prologue?: A8Prologue;
}

export interface ActKernels {
  site: ActSite;
  width: number;
  right?: WgslKernel;
  left?: WgslKernel;
  quant?: WgslKernel;
  /** The quant kernel also writes x̂'s integer form for the integer GEMVs (actQuantKernel pack). */
  packed?: boolean;
  /** The site's quantiser runs in the kernel before it, the pre-norm's (rmsNormKernel with quant)
   *  or the MLP activation's (mlpActQuantKernel): no quant kernel of its own. */
  fused?: boolean;
  /** Every decode GEMV reading the site makes its input itself from this source (A8Prologue):
   *  the site's kernels (with the pre-norm or MLP activation they are fused into) run for
   *  prefill only. */
  prologue?: A8Prologue;
}

export interface BlockKernels {
  /** rms(x, attnNorm), or a copy of x where the block has no pre-norm (OLMo-2); the same for
   *  mlpNorm. With the site's quantiser fused in where attnAct.fused. */
  attnNorm: WgslKernel;
  attnAct: ActKernels;
  q: LinearKernels;
  k: LinearKernels;
  v: LinearKernels;
  /** What the runtime launches for q, k and v (groupLinears): one stacked linear, or each alone. */
  qkv: LinearKernels[];
  /** The q/k norms (program qkNorm), before RoPE. */
  qNorm?: WgslKernel;
  kNorm?: WgslKernel;
  ropeKv: WgslKernel;
  /** Attention split by context: the splits' partial softmax sums, then their merge. */
  attention: WgslKernel;
  /** At decode (one token a launch): the split attention with ropeKv's work in it (attentionPartialKernel
   *  with rope); ropeKv and attention then run for prefill only. Absent under ropeInAttention false. */
  attentionDecode?: WgslKernel;
  attentionCombine: WgslKernel;
  oAct: ActKernels;
  o: LinearKernels;
  mlpNorm: WgslKernel;
  mlpAct: ActKernels;
  /** Absent in an ungated MLP. */
  gate?: LinearKernels;
  up: LinearKernels;
  /** What the runtime launches for gate and up (groupLinears). */
  gateUp: LinearKernels[];
  /** σ(g) ⊙ u, or σ(u) in an ungated MLP; with the down site's quantiser where downAct.fused. */
  swiglu: WgslKernel;
  downAct: ActKernels;
  down: LinearKernels;
  /** rms(·, postNorm) of the attention and MLP outputs before the residual add (Gemma-2/3, OLMo-2). */
  attnPost?: WgslKernel;
  mlpPost?: WgslKernel;
  /** x ← x + residualScale · delta, after the attention and after the MLP; absent where o (down)
   *  adds into the stream itself (LinearKernels.accumulate: scale 1, no post-norm). */
  attnResidual?: WgslKernel;
  mlpResidual?: WgslKernel;
}

export interface ModelKernels {
  embed: WgslKernel;
  /** x += P[pos] (program with learned positions). */
  positions?: WgslKernel;
  blocks: BlockKernels[];
  finalNorm: WgslKernel;
  lmHead: LinearKernels;
  /** logits ← logitScale · logits, when the program scales them. */
  logitScale?: WgslKernel;
  /** logits ← cap·tanh(logits/cap), when the program soft-caps them. */
  logitSoftcap?: WgslKernel;
  /** The greedy next token on the device (greedy decode without reading logits back). */
  argmax: WgslKernel;
}

/**
 * `packedInput`: the linear's act site writes the integer form of its input (ActKernels.packed).
 * `accumulate`: every kernel adds into its output instead of writing it (a residual add in the
 * linear's epilogue, LinearKernels.accumulate); an order-2 linear's second plane then adds there
 * too, with no add kernel.
 */
export interface LinearOptions {
  /** The linear's act site writes the integer form of its input (ActKernels.packed). */
  packedInput?: boolean;
  /** Every kernel adds into its output (LinearKernels.accumulate). */
  accumulate?: boolean;
  /** A group's rows a member (LinearKernels.members). */
  split?: readonly number[];
  /** The integer GEMV makes its input itself (LinearKernels.prologue), where it runs. */
  prologue?: A8Prologue;
  /** The shape of integer GEMVs with a prologue instead of prologueGemvShape's ('gemv': the plain
   *  GEMV's, gemvA8Shape; benchmarks). */
  prologueShape?: GemvA8Shape | 'gemv';
}

export function linearKernelsOf(l: LinearEntry, feats: WgslFeatures, gemv: GemvVariant, o: LinearOptions = {}): LinearKernels {
  const { packedInput = false, accumulate = false, split, prologue, prologueShape } = o;
  const bias = !!l.bias;
  const lf = linearFormat(l);
  const acc = accumulate ? { accumulate: true } : {};
  const out: LinearOut = split ? { split } : { accumulate };
  if (lf.kind === 'dense') {
    // on GPUs an fp16 row's 16-byte words are read by a row's threads together (the lm_head)
    const rowsGemv = (gemv === 'rows-per-workgroup' || gemv === 'rows-a8') && lf.dtype === 'float16' && l.cols % 8 === 0;
    return {
      entry: l,
      ...acc,
      gemv: rowsGemv ? denseGemvRowsKernel(l.rows, l.cols, bias, feats, GEMV_ROWS_DEFAULT, out) : denseLinearKernel(lf.dtype, l.rows, l.cols, 1, bias, feats, out),
      gemm: denseLinearKernel(lf.dtype, l.rows, l.cols, PREFILL_TILE, bias, feats, out),
    };
  }
  const f = lf.format;
  const ternary = (tf: TernaryFormat, withBias: boolean) => ({
    gemv: gemv === 'thread-per-row' ? ternaryLinearKernel(tf, l.rows, l.cols, 1, withBias, feats, out) : ternaryGemvWorkgroupKernel(tf, l.rows, l.cols, withBias, feats, out),
    gemm: ternaryLinearKernel(tf, l.rows, l.cols, PREFILL_TILE, withBias, feats, out),
  });
  // an order-2 linear's second plane: its own GEMV/GEMM (as stored), then added to the output
  const plane = l.order2 && ternaryFormatOf({ name: l.name, format: l.order2.format });
  const order2 = plane ? { order2: { ...ternary(plane, false), ...(accumulate ? {} : { add: residualAddKernel(l.rows) }) } } : {};
  if (gemv === 'rows-per-workgroup' || gemv === 'rows-a8') {
    const df = ternaryFormat('bit2', f.group, f.shift, f.lattice);
    if (!gemvRowsUnsupported(df, l.cols)) {
      const a8 = gemv === 'rows-a8' && packedInput;
      // with a prologue: its own shape where it fits beside the reduction array, else the plain
      // GEMV's shape if the prologue fits there, else no prologue
      const wants = a8 && !l.order2 && prologue ? prologue : undefined;
      const proShape = wants && (prologueShape === 'gemv' ? gemvA8Shape(l.rows) : (prologueShape ?? prologueGemvShape(l.rows, wants)));
      const fits = (sh: GemvA8Shape) => !!wants && !a8PrologueUnsupported(l.cols, wants.quant, sh.rowsPerThread);
      const shape = proShape && fits(proShape) ? proShape : gemvA8Shape(l.rows);
      const pro = fits(shape) ? wants : undefined;
      return {
        entry: l,
        ...acc,
        ...(df.packing !== f.packing ? { codes: df } : {}),
        ...(a8 ? { gemvA8: true } : {}),
        ...(pro ? { prologue: pro } : {}),
        gemv: a8 ? ternaryGemvA8Kernel(df, l.rows, l.cols, bias, feats, shape, out, pro) : ternaryGemvRowsKernel(df, l.rows, l.cols, bias, feats, GEMV_ROWS_DEFAULT, out),
        gemm: ternaryLinearKernel(df, l.rows, l.cols, PREFILL_TILE, bias, feats, out),
        ...order2,
      };
    }
  }
  return {
    entry: l,
    ...acc,
    ...ternary(f, bias),
    ...order2,
  };
}

/**
 * The launches of linears that read the same input: one stacked linear (LinearKernels.members)
 * of the members that allow it, the others alone. Stackable: ternary of one format and width,
 * all with a bias or none, no second plane. One launch instead of several, and a longer GEMV
 * (a 7B model's q|k|v is 12288 rows, its gate|up 22016) keeps more of the GPU busy.
 */
export function groupLinears(members: readonly LinearEntry[], feats: WgslFeatures, gemv: GemvVariant, o: LinearOptions, group = true): LinearKernels[] {
  const first = members[0];
  const stackable = (l: LinearEntry) => !!ternaryFormatOf(l) && !l.order2 && l.format === first.format && l.cols === first.cols && !!l.bias === !!first.bias;
  const stack = group && ternaryFormatOf(first) ? members.filter(stackable) : [];
  if (stack.length < 2) return members.map((l) => linearKernelsOf(l, feats, gemv, o));
  const rows = stack.map((l) => l.rows);
  const entry: LinearEntry = { ...first, name: stack.map((l) => l.name).join('+'), rows: rows.reduce((a, r) => a + r, 0) };
  return [{ ...linearKernelsOf(entry, feats, gemv, { ...o, split: rows }), members: stack }, ...members.filter((l) => !stack.includes(l)).map((l) => linearKernelsOf(l, feats, gemv, o))];
}

/** A site's kernels; with `pack` (the 'rows-a8' GEMV) a site of 8 bits or fewer also writes its integer form. */
function actKernels(site: ActSite, width: number, feats: WgslFeatures, pack: boolean): ActKernels {
  const out: ActKernels = { site, width };
  if (site.transform) {
    const { l, r } = site.transform;
    if (l * r !== width) throw new UserError(`online transform ${l}x${r} does not match its input width ${width}`);
    out.right = kronRightKernel(l, r);
    out.left = kronLeftKernel(l, r);
  }
  if (site.bits < 16) {
    out.packed = pack && site.bits <= 8 && width % 16 === 0;
    out.quant = actQuantKernel(width, site.bits, site.clip, feats, out.packed);
  }
  return out;
}


export function planModel(m: ArtifactManifest, opts: PlanOptions = {}): ModelKernels {
  const feats = opts.features ?? NO_FEATURES;
  const gemv = gemvVariant(opts);
  const pack = gemv === 'rows-a8';
  const prologueShape = opts.prologueShape;
  const linearKernels = (l: LinearEntry, site?: ActKernels, accumulate = false, prologue?: A8Prologue) => linearKernelsOf(l, feats, gemv, { packedInput: !!site?.packed, accumulate, prologue, prologueShape });
  const c = m.config;
  refuseMissing('the WGSL backend', WGSL_FEATURES, m);
  const rotaryDim = m.program.rope.rotaryDim;
  if (rotaryDim % 2 || rotaryDim > c.headDim) throw new UserError(`WGSL backend: RoPE over ${rotaryDim} of ${c.headDim} head dims (must be even and at most the head size)`);
  const qd = c.heads * c.headDim;
  const splits = attentionSplits(opts.context ?? c.maxPositions);
  const kv = kvStorage(opts);
  if (kv === 'f16' && c.headDim % 2) throw new UserError(`WGSL backend: an fp16 KV cache needs an even head size, not ${c.headDim}`);
  // q/k norms per head, or over the whole projection as one head (span 'all')
  const headNorm = (heads: number, qk: QkNorm, n: HeadNorm) => {
    const { groups, width, sharedGamma } = qkNormShape(qk, heads, c.headDim);
    return headNormKernel(groups, width, n.eps, qk.kind ?? 'rms', n.gamma === null ? 'none' : sharedGamma ? 'shared' : 'own', feats);
  };
  const norm = (gamma: string | null, beta: string | null | undefined) =>
    m.program.norm === 'layer' ? layerNormKernel(c.hidden, c.normEps, gamma !== null, !!beta, feats) : rmsNormKernel(c.hidden, c.normEps, gamma !== null, feats);
  // without pre-norms (OLMo-2) the attention and the MLP read a copy of the stream
  const preNorm = (pre: boolean | undefined, gamma: string | null, beta: string | null | undefined) => (pre === false ? copyKernel(c.hidden) : norm(gamma, beta));
  // post-norms are RMSNorms whatever program.norm is (block-program.ts)
  const postNorm = (n: HeadNorm) => rmsNormKernel(c.hidden, n.eps, n.gamma !== null, feats);
  const blocks = m.blocks.map((b): BlockKernels => {
    const attnAct = actKernels(b.acts.attn, c.hidden, feats, pack);
    const oAct = actKernels(b.acts.o, qd, feats, pack);
    const mlpAct = actKernels(b.acts.mlp, c.hidden, feats, pack);
    const downAct = actKernels(b.acts.down, c.intermediate, feats, pack);
    // x += o(·) and x += down(·) in the linears' epilogues where nothing comes between
    const fuseAttnResidual = b.residualScale.attn === 1 && !b.postNorm;
    const fuseMlpResidual = b.residualScale.mlp === 1 && !b.postNorm;
    // A plain quantiser (no online transform) moves into the kernel before it: the site loses its
    // quant kernel and is marked fused; the quantiser's settings go to that kernel.
    const fuseQuant = (ak: ActKernels): RowQuant | undefined => {
      if (!ak.quant || ak.site.transform) return undefined;
      ak.quant = undefined;
      ak.fused = true;
      return { bits: ak.site.bits, clip: ak.site.clip, pack: !!ak.packed };
    };
    // ... an RMS pre-norm's
    const normAndAct = (ak: ActKernels, gamma: string | null, beta: string | null | undefined): WgslKernel => {
      const q = b.preNorm !== false && m.program.norm === 'rms' ? fuseQuant(ak) : undefined;
      return q ? rmsNormKernel(c.hidden, c.normEps, gamma !== null, feats, q) : preNorm(b.preNorm, gamma, beta);
    };
    // ... and the MLP activation's
    const mlpActivation = (): WgslKernel => {
      const q = fuseQuant(downAct);
      if (q) return mlpActQuantKernel(c.intermediate, b.mlp.activation, b.mlp.gated, feats, q);
      return b.mlp.gated ? swigluKernel(c.intermediate, b.mlp.activation) : mlpActivationKernel(c.intermediate, b.mlp.activation);
    };
    const attnNorm = normAndAct(attnAct, b.attnNorm, b.attnNormBias);
    const mlpNorm = normAndAct(mlpAct, b.mlpNorm, b.mlpNormBias);
    const swiglu = mlpActivation();
    // Decode GEMVs that make their input themselves (A8Prologue): offered where the site's
    // quantiser is plain and packs (fused into the pre-norm or the MLP activation, or the o
    // site's own); taken only where every launch reading the site runs it, and then the site's
    // kernels run for prefill only (ActKernels.prologue).
    const quantOf = (ak: ActKernels): RowQuant => ({ bits: ak.site.bits, clip: ak.site.clip, pack: true });
    const source = {
      attn: attnAct.fused && attnAct.packed ? { source: 'rms-norm' as const, quant: quantOf(attnAct), eps: c.normEps, gamma: b.attnNorm !== null } : undefined,
      o: oAct.quant && oAct.packed && !oAct.site.transform ? { source: 'x' as const, quant: quantOf(oAct) } : undefined,
      mlp: mlpAct.fused && mlpAct.packed ? { source: 'rms-norm' as const, quant: quantOf(mlpAct), eps: c.normEps, gamma: b.mlpNorm !== null } : undefined,
      down: downAct.fused && downAct.packed ? { source: 'mlp-act' as const, quant: quantOf(downAct), activation: b.mlp.activation, gated: b.mlp.gated } : undefined,
    };
    const withPrologue = (ak: ActKernels, pro: A8Prologue | undefined, launches: (pro?: A8Prologue) => LinearKernels[]): LinearKernels[] => {
      const taken = pro && (opts.prologue ?? true) ? launches(pro) : undefined;
      if (!taken?.every((l) => l.prologue)) return launches();
      ak.prologue = pro;
      return taken;
    };
    const group = opts.group ?? true;
    const qkv = withPrologue(attnAct, source.attn, (pro) => groupLinears([b.q, b.k, b.v], feats, gemv, { packedInput: !!attnAct.packed, prologue: pro, prologueShape }, group));
    const gateUp = withPrologue(mlpAct, source.mlp, (pro) => groupLinears(b.gate ? [b.gate, b.up] : [b.up], feats, gemv, { packedInput: !!mlpAct.packed, prologue: pro, prologueShape }, group));
    const [o] = withPrologue(oAct, source.o, (pro) => [linearKernels(b.o, oAct, fuseAttnResidual, pro)]);
    const [down] = withPrologue(downAct, source.down, (pro) => [linearKernels(b.down, downAct, fuseMlpResidual, pro)]);
    return {
      attnNorm,
      attnAct,
      q: linearKernels(b.q, attnAct),
      k: linearKernels(b.k, attnAct),
      v: linearKernels(b.v, attnAct),
      qkv,
      ...(b.attention.qkNorm ? { qNorm: headNorm(c.heads, b.attention.qkNorm, b.attention.qkNorm.q), kNorm: headNorm(c.kvHeads, b.attention.qkNorm, b.attention.qkNorm.k) } : {}),
      ropeKv: ropeKvKernel(c.heads, c.kvHeads, c.headDim, c.maxPositions, rotaryDim, kv),
      attention: attentionPartialKernel(c.heads, c.kvHeads, c.headDim, b.attention.scale, b.attention.window, splits, feats, b.attention.softcap, kv),
      ...(opts.ropeInAttention ?? true ? { attentionDecode: attentionPartialKernel(c.heads, c.kvHeads, c.headDim, b.attention.scale, b.attention.window, splits, feats, b.attention.softcap, kv, { rotaryDim }) } : {}),
      attentionCombine: attentionCombineKernel(c.heads, c.headDim, splits, feats),
      oAct,
      o,
      mlpNorm,
      mlpAct,
      ...(b.gate ? { gate: linearKernels(b.gate, mlpAct) } : {}),
      up: linearKernels(b.up, mlpAct),
      gateUp,
      swiglu,
      downAct,
      down,
      ...(b.postNorm ? { attnPost: postNorm(b.postNorm.attn), mlpPost: postNorm(b.postNorm.mlp) } : {}),
      ...(fuseAttnResidual ? {} : { attnResidual: residualAddKernel(c.hidden, b.residualScale.attn) }),
      ...(fuseMlpResidual ? {} : { mlpResidual: residualAddKernel(c.hidden, b.residualScale.mlp) }),
    };
  });
  return {
    embed: embedKernel(c.vocab, c.hidden, m.program.embedScale),
    ...(m.positionEmbed ? { positions: positionAddKernel(c.hidden, m.tensors[m.positionEmbed].dims[0]) } : {}),
    blocks,
    finalNorm: norm(m.finalNorm, m.finalNormBias),
    lmHead: linearKernels(m.lmHead),
    ...(m.program.logitScale === 1 ? {} : { logitScale: scaleKernel(c.vocab, m.program.logitScale) }),
    ...(m.program.logitSoftcap === undefined ? {} : { logitSoftcap: softcapKernel(c.vocab, m.program.logitSoftcap) }),
    argmax: argmaxTokenKernel(c.vocab),
  };
}

/** Every distinct kernel of a plan, by cache key. */
export function distinctKernels(p: ModelKernels): WgslKernel[] {
  const all = new Map<string, WgslKernel>();
  const add = (k: WgslKernel | undefined) => k && all.set(k.cacheKey, k);
  const lin = (l: LinearKernels) => (add(l.gemv), add(l.gemm), add(l.order2?.gemv), add(l.order2?.gemm), add(l.order2?.add));
  const act = (a: ActKernels) => (add(a.right), add(a.left), add(a.quant));
  add(p.embed);
  add(p.positions);
  for (const b of p.blocks) {
    [b.attnNorm, b.qNorm, b.kNorm, b.ropeKv, b.attention, b.attentionDecode, b.attentionCombine, b.mlpNorm, b.swiglu, b.attnPost, b.mlpPost, b.attnResidual, b.mlpResidual].forEach(add);
    [b.attnAct, b.oAct, b.mlpAct, b.downAct].forEach(act);
    [...b.qkv, b.o, ...b.gateUp, b.down].forEach(lin);
  }
  add(p.finalNorm);
  lin(p.lmHead);
  add(p.logitScale);
  add(p.logitSoftcap);
  add(p.argmax);
  return [...all.values()];
}
