// The kernels a manifest needs, per block and per role: one plan shared by the WebGPU
// runtime (which dispatches them) and `emitWgsl` (which writes their source), so the two
// can never disagree. Validation happens here, before any source is generated.
import type { ActSite, ArtifactManifest, LinearEntry } from '../../artifact/manifest.ts';
import { parseFormatId } from '../../formats/ternary.ts';
import { UserError } from '../../errors.ts';
import { NO_FEATURES, type WgslFeatures, type WgslKernel } from './fragments.ts';
import {
  actQuantKernel,
  attentionKernel,
  denseLinearKernel,
  embedKernel,
  kronLeftKernel,
  kronRightKernel,
  residualAddKernel,
  rmsNormKernel,
  ropeKvKernel,
  swigluKernel,
  ternaryLinearKernel,
} from './kernels.ts';

/** Token tile of the prefill GEMM. */
export const PREFILL_TILE = 8;

export interface LinearKernels {
  entry: LinearEntry;
  /** M = 1 (decode). */
  gemv: WgslKernel;
  /** M > 1 (prefill), PREFILL_TILE tokens per weight fetch. */
  gemm: WgslKernel;
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
  residualHidden: WgslKernel;
}

export interface ModelKernels {
  embed: WgslKernel;
  blocks: BlockKernels[];
  finalNorm: WgslKernel;
  lmHead: LinearKernels;
}

function linearKernels(l: LinearEntry, feats: WgslFeatures): LinearKernels {
  const bias = !!l.bias;
  if (l.format === 'float16' || l.format === 'float32') {
    return {
      entry: l,
      gemv: denseLinearKernel(l.format, l.rows, l.cols, 1, bias, feats),
      gemm: denseLinearKernel(l.format, l.rows, l.cols, PREFILL_TILE, bias, feats),
    };
  }
  let f;
  try {
    f = parseFormatId(l.format);
  } catch (e) {
    throw new UserError(`${l.name}: ${(e as Error).message}`);
  }
  return {
    entry: l,
    gemv: ternaryLinearKernel(f, l.rows, l.cols, 1, bias, feats),
    gemm: ternaryLinearKernel(f, l.rows, l.cols, PREFILL_TILE, bias, feats),
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

export function planModel(m: ArtifactManifest, feats: WgslFeatures = NO_FEATURES): ModelKernels {
  const c = m.config;
  if (c.arch !== 'llama') throw new UserError(`WGSL backend: unsupported architecture '${c.arch}'`);
  if (c.headDim % 2) throw new UserError(`WGSL backend: head dim ${c.headDim} must be even for RoPE`);
  const qd = c.heads * c.headDim;
  const blocks = m.blocks.map((b): BlockKernels => ({
    attnNorm: rmsNormKernel(c.hidden, c.normEps, b.attnNorm !== null, feats),
    attnAct: actKernels(b.acts.attn, c.hidden, feats),
    q: linearKernels(b.q, feats),
    k: linearKernels(b.k, feats),
    v: linearKernels(b.v, feats),
    ropeKv: ropeKvKernel(c.heads, c.kvHeads, c.headDim, c.maxPositions),
    attention: attentionKernel(c.heads, c.kvHeads, c.headDim, feats),
    oAct: actKernels(b.acts.o, qd, feats),
    o: linearKernels(b.o, feats),
    mlpNorm: rmsNormKernel(c.hidden, c.normEps, b.mlpNorm !== null, feats),
    mlpAct: actKernels(b.acts.mlp, c.hidden, feats),
    gate: linearKernels(b.gate, feats),
    up: linearKernels(b.up, feats),
    swiglu: swigluKernel(c.intermediate),
    downAct: actKernels(b.acts.down, c.intermediate, feats),
    down: linearKernels(b.down, feats),
    residualHidden: residualAddKernel(c.hidden),
  }));
  return {
    embed: embedKernel(c.vocab, c.hidden),
    blocks,
    finalNorm: rmsNormKernel(c.hidden, c.normEps, m.finalNorm !== null, feats),
    lmHead: linearKernels(m.lmHead, feats),
  };
}

/** Every distinct kernel of a plan, by cache key. */
export function distinctKernels(p: ModelKernels): WgslKernel[] {
  const all = new Map<string, WgslKernel>();
  const add = (k: WgslKernel | undefined) => k && all.set(k.cacheKey, k);
  const lin = (l: LinearKernels) => (add(l.gemv), add(l.gemm));
  const act = (a: ActKernels) => (add(a.right), add(a.left), add(a.quant));
  add(p.embed);
  for (const b of p.blocks) {
    [b.attnNorm, b.ropeKv, b.attention, b.mlpNorm, b.swiglu, b.residualHidden].forEach(add);
    [b.attnAct, b.oAct, b.mlpAct, b.downAct].forEach(act);
    [b.q, b.k, b.v, b.o, b.gate, b.up, b.down].forEach(lin);
  }
  add(p.finalNorm);
  lin(p.lmHead);
  return [...all.values()];
}
