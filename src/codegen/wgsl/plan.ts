// The kernels a manifest needs, per block and per role: one plan shared by the WebGPU
// runtime (which dispatches them) and `emitWgsl` (which writes their source), so the two
// can never disagree. Validation happens here, before any source is generated.
import type { ActSite, ArtifactManifest, LinearEntry } from '../../artifact/manifest.ts';
import { linearFormat, ternaryFormatOf } from '../../formats/linear-format.ts';
import type { TernaryFormat } from '../../formats/ternary.ts';
import { UserError } from '../../errors.ts';
import { NO_FEATURES, type WgslFeatures, type WgslKernel } from './fragments.ts';
import { refuseMissing, type FeatureTable, type HeadNorm, type MlpActivation } from '../../program/block-program.ts';
import {
  actQuantKernel,
  attentionKernel,
  denseLinearKernel,
  embedKernel,
  headRmsNormKernel,
  kronLeftKernel,
  kronRightKernel,
  residualAddKernel,
  scaleKernel,
  rmsNormKernel,
  ropeKvKernel,
  swigluKernel,
  ternaryGemvWorkgroupKernel,
  ternaryLinearKernel,
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
  'gelu-mlp': false,
  'gelu-tanh-mlp': true,
  'attn-softcap': false,
  'embed-scale': true,
  'logit-scale': true,
  'residual-scale': true,
} as const satisfies FeatureTable;

/** Token tile of the prefill GEMM. */
export const PREFILL_TILE = 8;

/**
 * The two shapes of the ternary decode GEMV (M = 1). 'thread-per-row' walks K serially in
 * one thread per output row: no barriers, what software adapters (a barrier is a fiber
 * switch there) run fastest, but latency-bound on a GPU (bench/results/wgsl-h100.json).
 * 'workgroup-per-row' strides a workgroup over the row's code
 * words with coalesced loads and a reduction (ternaryGemvWorkgroupKernel).
 */
export type GemvVariant = 'thread-per-row' | 'workgroup-per-row';

/** What runs the kernels: a CPU implementation of WebGPU, or a GPU (discrete or integrated). */
export type AdapterKind = 'software' | 'gpu';

/** The one place the GEMV shape is chosen; the runtime and `emitWgsl` both plan through it. */
export const GEMV_BY_ADAPTER = {
  software: 'thread-per-row',
  gpu: 'workgroup-per-row',
} as const satisfies Record<AdapterKind, GemvVariant>;

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
}

export function gemvVariant(o: PlanOptions): GemvVariant {
  return o.gemv ?? GEMV_BY_ADAPTER[o.adapter ?? 'gpu'];
}

export interface LinearKernels {
  entry: LinearEntry;
  /** M = 1 (decode). */
  gemv: WgslKernel;
  /** M > 1 (prefill), PREFILL_TILE tokens per weight fetch. */
  gemm: WgslKernel;
  /** An order-2 linear's second plane (formats/order2.ts): its GEMV and GEMM in the plane's
   *  format (no bias), into a scratch buffer that `add` then adds to the first plane's output. */
  order2?: { gemv: WgslKernel; gemm: WgslKernel; add: WgslKernel };
}

export interface ActKernels {
  site: ActSite;
  width: number;
  right?: WgslKernel;
  left?: WgslKernel;
  quant?: WgslKernel;
}

export interface BlockKernels {
  attnNorm: WgslKernel;
  attnAct: ActKernels;
  q: LinearKernels;
  k: LinearKernels;
  v: LinearKernels;
  /** Per-head q/k norms (program qkNorm), before RoPE. */
  qNorm?: WgslKernel;
  kNorm?: WgslKernel;
  ropeKv: WgslKernel;
  attention: WgslKernel;
  oAct: ActKernels;
  o: LinearKernels;
  mlpNorm: WgslKernel;
  mlpAct: ActKernels;
  gate: LinearKernels;
  up: LinearKernels;
  swiglu: WgslKernel;
  downAct: ActKernels;
  down: LinearKernels;
  /** x ← x + residualScale · delta, after the attention and after the MLP. */
  attnResidual: WgslKernel;
  mlpResidual: WgslKernel;
}

export interface ModelKernels {
  embed: WgslKernel;
  blocks: BlockKernels[];
  finalNorm: WgslKernel;
  lmHead: LinearKernels;
  /** logits ← logitScale · logits, when the program scales them. */
  logitScale?: WgslKernel;
}

export function linearKernelsOf(l: LinearEntry, feats: WgslFeatures, gemv: GemvVariant): LinearKernels {
  const bias = !!l.bias;
  const lf = linearFormat(l);
  if (lf.kind === 'dense') {
    return {
      entry: l,
      gemv: denseLinearKernel(lf.dtype, l.rows, l.cols, 1, bias, feats),
      gemm: denseLinearKernel(lf.dtype, l.rows, l.cols, PREFILL_TILE, bias, feats),
    };
  }
  const ternary = (f: TernaryFormat, withBias: boolean) => ({
    gemv: gemv === 'workgroup-per-row' ? ternaryGemvWorkgroupKernel(f, l.rows, l.cols, withBias, feats) : ternaryLinearKernel(f, l.rows, l.cols, 1, withBias, feats),
    gemm: ternaryLinearKernel(f, l.rows, l.cols, PREFILL_TILE, withBias, feats),
  });
  const plane = l.order2 && ternaryFormatOf({ name: l.name, format: l.order2.format });
  return {
    entry: l,
    ...ternary(lf.format, bias),
    ...(plane ? { order2: { ...ternary(plane, false), add: residualAddKernel(l.rows) } } : {}),
  };
}

function actKernels(site: ActSite, width: number, feats: WgslFeatures): ActKernels {
  const out: ActKernels = { site, width };
  if (site.transform) {
    const { l, r } = site.transform;
    if (l * r !== width) throw new UserError(`online transform ${l}x${r} does not match its input width ${width}`);
    out.right = kronRightKernel(l, r);
    out.left = kronLeftKernel(l, r);
  }
  if (site.bits < 16) out.quant = actQuantKernel(width, site.bits, site.clip, feats);
  return out;
}

/** The gate activations the kernels have; GELU(erf) is refused by WGSL_FEATURES first. */
function gatedActivation(a: MlpActivation): 'silu' | 'gelu-tanh' {
  if (a === 'gelu') throw new Error('WGSL plan: GELU(erf) reached the planner although WGSL_FEATURES refuses it');
  return a;
}

export function planModel(m: ArtifactManifest, opts: PlanOptions = {}): ModelKernels {
  const feats = opts.features ?? NO_FEATURES;
  const gemv = gemvVariant(opts);
  const linearKernels = (l: LinearEntry) => linearKernelsOf(l, feats, gemv);
  const c = m.config;
  refuseMissing('the WGSL backend', WGSL_FEATURES, m);
  const rotaryDim = m.program.rope.rotaryDim;
  if (rotaryDim % 2 || rotaryDim > c.headDim) throw new UserError(`WGSL backend: RoPE over ${rotaryDim} of ${c.headDim} head dims (must be even and at most the head size)`);
  const qd = c.heads * c.headDim;
  const headNorm = (heads: number, n: HeadNorm) => headRmsNormKernel(heads, c.headDim, n.eps, n.gamma !== null, feats);
  const blocks = m.blocks.map((b): BlockKernels => ({
    attnNorm: rmsNormKernel(c.hidden, c.normEps, b.attnNorm !== null, feats),
    attnAct: actKernels(b.acts.attn, c.hidden, feats),
    q: linearKernels(b.q),
    k: linearKernels(b.k),
    v: linearKernels(b.v),
    ...(b.attention.qkNorm ? { qNorm: headNorm(c.heads, b.attention.qkNorm.q), kNorm: headNorm(c.kvHeads, b.attention.qkNorm.k) } : {}),
    ropeKv: ropeKvKernel(c.heads, c.kvHeads, c.headDim, c.maxPositions, rotaryDim),
    attention: attentionKernel(c.heads, c.kvHeads, c.headDim, b.attention.scale, b.attention.window, feats),
    oAct: actKernels(b.acts.o, qd, feats),
    o: linearKernels(b.o),
    mlpNorm: rmsNormKernel(c.hidden, c.normEps, b.mlpNorm !== null, feats),
    mlpAct: actKernels(b.acts.mlp, c.hidden, feats),
    gate: linearKernels(b.gate),
    up: linearKernels(b.up),
    swiglu: swigluKernel(c.intermediate, gatedActivation(b.mlp.activation)),
    downAct: actKernels(b.acts.down, c.intermediate, feats),
    down: linearKernels(b.down),
    attnResidual: residualAddKernel(c.hidden, b.residualScale.attn),
    mlpResidual: residualAddKernel(c.hidden, b.residualScale.mlp),
  }));
  return {
    embed: embedKernel(c.vocab, c.hidden, m.program.embedScale),
    blocks,
    finalNorm: rmsNormKernel(c.hidden, c.normEps, m.finalNorm !== null, feats),
    lmHead: linearKernels(m.lmHead),
    ...(m.program.logitScale === 1 ? {} : { logitScale: scaleKernel(c.vocab, m.program.logitScale) }),
  };
}

/** Every distinct kernel of a plan, by cache key. */
export function distinctKernels(p: ModelKernels): WgslKernel[] {
  const all = new Map<string, WgslKernel>();
  const add = (k: WgslKernel | undefined) => k && all.set(k.cacheKey, k);
  const lin = (l: LinearKernels) => (add(l.gemv), add(l.gemm), add(l.order2?.gemv), add(l.order2?.gemm), add(l.order2?.add));
  const act = (a: ActKernels) => (add(a.right), add(a.left), add(a.quant));
  add(p.embed);
  for (const b of p.blocks) {
    [b.attnNorm, b.qNorm, b.kNorm, b.ropeKv, b.attention, b.mlpNorm, b.swiglu, b.attnResidual, b.mlpResidual].forEach(add);
    [b.attnAct, b.oAct, b.mlpAct, b.downAct].forEach(act);
    [b.q, b.k, b.v, b.o, b.gate, b.up, b.down].forEach(lin);
  }
  add(p.finalNorm);
  lin(p.lmHead);
  add(p.logitScale);
  return [...all.values()];
}
