// The block program: one backend-neutral description of the decoder, derived once from
// recognition and the compile context, written into manifest.json, and read by every
// backend (the float64 reference, the WGSL plan and runtime, the CUDA emitter). Per token:
//   x₀ = embedScale · embed[id]
//   for each block (residual 'sequential', norm 'rms'):
//     a = act(pre(x, attnNorm), 'attn')              pre = rms, or identity without preNorm (OLMo-2)
//     q, k, v = q(a), k(a), v(a)                     (+ bias where the linear has one)
//     q, k = qkn(q, qNorm), qkn(k, kNorm)            (qkNorm, before RoPE: RMSNorm or LayerNorm
//                                                    (qkNorm.kind), per head or over the whole
//                                                    projection, γ shared by the heads or each
//                                                    head's own (qkNorm.span, qkNormShape))
//     q, k = rope(q), rope(k)                        (rotate_half on the first rotaryDim dims,
//                                                    θ = attention.ropeTheta ?? program.rope.theta)
//     o = attention(q, k, v)                         softmax(cap·tanh(scale · q·kᵀ / cap)) over the
//                                                    keys t with pos − window < t ≤ pos (window
//                                                    null: 0 ≤ t; softcap null: no tanh)
//     h = x + ra · post(o(act(o, 'o')), postNorm.attn)   ra, rm: residualScale (Granite);
//                                                    post = rms with postNorm (Gemma-2/3, OLMo-2), else identity
//     m = act(pre(h, mlpNorm), 'mlp')
//     x = h + rm · post(down(act(σ(gate(m)) ⊙ up(m), 'down')), postNorm.mlp)  σ = mlp.activation
//   logits = softcap(logitScale · lmHead(rms(x_L, finalNorm)))   softcap(z) = cap·tanh(z/cap), cap = logitSoftcap
// GPT-2 / GPT-NeoX / Phi-2 / StableLM (program.norm 'layer', program.residual 'parallel',
// mlp.gated false, learned positions, rope 'none') vary this as blockOps and the manifest state.
// Post-norms are RMSNorms whatever program.norm is (the pre-norms' kind); a LayerNorm post-norm
// is not recognised, so no model reaches a runtime with one.
// LayerNorm stays a norm kind, its mean subtraction computed by every runtime, rather than being
// turned into RMSNorm by centring every writer of the residual stream: centring needs o/down
// weights whose columns sum to zero, which ternary weights do not keep, so a quantised model's
// stream would drift off zero mean and the RMSNorm would no longer be its LayerNorm. Kept, it is
// exact for the float and the quantised model alike; γ and β still fold into the next linears
// (passes/fold-norms.ts), and KOTMS, a per-site online transform here, needs no RMSNorm.
// A feature is a part of this program that a backend either implements exactly or refuses by
// name. Each backend declares a table `satisfies FeatureTable`, so adding a feature here
// fails to typecheck until every backend has decided.
import type { ArtifactManifest, LinearEntry } from '../artifact/manifest.ts';
import { UserError } from '../errors.ts';
import { linearFormat } from '../formats/linear-format.ts';

const BLOCK_LINEAR_ROLES = ['q', 'k', 'v', 'o', 'gate', 'up', 'down'] as const;

export const FEATURES = [
  'rms-norm',
  'gqa',
  'rope-rotate-half',
  'swiglu',
  'ternary-linear',
  'order2-linear',
  'dense-linear',
  'act-quant',
  'online-transform',
  'linear-bias',
  'qk-norm',
  'sliding-window',
  'query-scale',
  'partial-rotary',
  'gelu-mlp',
  'gelu-tanh-mlp',
  'attn-softcap',
  'embed-scale',
  'logit-scale',
  'residual-scale',
  'layer-norm',
  'ungated-mlp',
  'parallel-residual',
  'learned-positions',
  'no-rope',
  'post-norm',
  'no-pre-norm',
  'qk-norm-full',
  'logit-softcap',
  'rope-theta-per-layer',
  'qk-norm-head-own',
  'qk-layer-norm',
] as const;

export type Feature = (typeof FEATURES)[number];

/** What each feature means, for refusals and the report. */
export const FEATURE_TEXT = {
  'rms-norm': 'RMSNorm x/√(mean(x²)+ε)·γ',
  gqa: 'grouped-query attention (fewer K/V heads than Q heads)',
  'rope-rotate-half': 'RoPE, rotate_half pairing',
  swiglu: 'SiLU-gated MLP',
  'ternary-linear': 'ternary-weight linears',
  'order2-linear': 'order-2 ternary linears (a second ternary plane on every column, formats/order2.ts)',
  'dense-linear': 'fp16/fp32 dense linears',
  'act-quant': 'per-token activation quantisation below 16 bits',
  'online-transform': 'online Kronecker transform of a linear input',
  'linear-bias': 'bias on a linear (Qwen2 q/k/v)',
  'qk-norm': 'norm of each head of q and k before RoPE, one γ for every head (Qwen3, Gemma-3)',
  'sliding-window': 'sliding-window attention (Mistral)',
  'query-scale': 'attention scale other than 1/√headDim',
  'partial-rotary': 'RoPE on a fraction of the head dims',
  'gelu-mlp': 'GELU(erf) MLP activation',
  'gelu-tanh-mlp': 'GELU(tanh)-gated MLP (GeGLU)',
  'attn-softcap': 'attention logit soft-capping',
  'embed-scale': 'embedding multiplied by a constant (Gemma √hidden, Granite)',
  'logit-scale': 'logits multiplied by a constant (Granite logits_scaling)',
  'residual-scale': 'attention and MLP outputs multiplied by a constant before the residual add (Granite)',
  'layer-norm': 'LayerNorm (x − mean)/√(var+ε)·γ + β (GPT-2, GPT-NeoX, Phi-2, StableLM)',
  'ungated-mlp': 'MLP without a gate: down(σ(up(m))) (GPT-2 / GPT-NeoX / Phi-2 fc1, fc2)',
  'parallel-residual': 'attention and MLP both read the block input: x + attn(n₁(x)) + mlp(n₂(x)) (GPT-NeoX, Phi-2)',
  'learned-positions': 'a learned absolute position embedding added to the token embedding (GPT-2 wpe)',
  'no-rope': 'attention without rotary position embedding',
  'post-norm': 'RMSNorm of the attention and MLP outputs before the residual add (Gemma-2/3, OLMo-2)',
  'no-pre-norm': 'attention and MLP read the residual stream without a norm (OLMo-2)',
  'qk-norm-full': 'norm of q and k over the whole projection before the split into heads (OLMo-2)',
  'logit-softcap': 'final logit soft-capping cap·tanh(z/cap) (Gemma-2)',
  'rope-theta-per-layer': 'a RoPE θ of its own in some layers (Gemma-3 local layers)',
  'qk-norm-head-own': 'norm of each head of q and k before RoPE, each head with a γ of its own (StableLM qk_layernorm)',
  'qk-layer-norm': 'the q/k norm is a LayerNorm (x − μ)/√(var+ε)·γ without β, not an RMSNorm (StableLM qk_layernorm)',
} as const satisfies Record<Feature, string>;

/** Which features a backend implements exactly. */
export type FeatureTable = Record<Feature, boolean>;

export type MlpActivation = 'silu' | 'gelu' | 'gelu-tanh';

/** A norm with its own γ and ε: of q or k (γ as QkNormSpan says), or of a block's attention or
 *  MLP output (an RMSNorm, γ [hidden]). */
export interface HeadNorm<G = string | null> {
  /** γ (in the manifest: a float32 tensor name); null when the norm has none. */
  gamma: G;
  eps: number;
}

/**
 * Where the q/k norm normalises and what its γ covers (q: heads·headDim wide; k: kvHeads·headDim):
 *   head      each head, one γ [headDim] for every head (Qwen3, Gemma-3)
 *   head-own  each head, γ [heads·headDim]: a γ of its own per head (StableLM qk_layernorm)
 *   all       the whole projection at once, γ [heads·headDim] (OLMo-2)
 */
export type QkNormSpan = 'head' | 'head-own' | 'all';

/** The q/k norm: RMSNorm x/√(mean(x²)+ε)·γ, or LayerNorm (x − μ)/√(mean((x − μ)²)+ε)·γ (no β). */
export type QkNormKind = 'rms' | 'layer';

/** The q/k norm of one block, with γ held as G. Absent span: 'head'; absent kind: 'rms'. */
export interface QkNorm<G = string | null> {
  q: HeadNorm<G>;
  k: HeadNorm<G>;
  span?: QkNormSpan;
  kind?: QkNormKind;
}

/**
 * The q/k norm as every backend computes it on a projection of `heads` heads: `groups` runs of
 * `width` features, each normalised on its own; γ of element i of a group is γ[i] when the
 * groups share it, else γ[group·width + i].
 */
export function qkNormShape(n: QkNorm<unknown>, heads: number, headDim: number): { groups: number; width: number; sharedGamma: boolean } {
  const span = n.span ?? 'head';
  return span === 'all' ? { groups: 1, width: heads * headDim, sharedGamma: false } : { groups: heads, width: headDim, sharedGamma: span === 'head' };
}

/** G is how γ is held: a tensor name in the manifest, the values in an ArtifactModel. */
export interface AttentionProgram<G = string | null> {
  /** Multiplies q·kᵀ before the softmax. */
  scale: number;
  /** Keys visible to the query at pos: pos − window < t ≤ pos; null: every t ≤ pos. */
  window: number | null;
  qkNorm: QkNorm<G> | null;
  /** Scores become cap·tanh(scores/cap) before the softmax; null: none. */
  softcap: number | null;
  /** RoPE θ of this layer where it differs from program.rope.theta (Gemma-3 local layers). */
  ropeTheta?: number;
}

export interface BlockProgram<G = string | null> {
  attention: AttentionProgram<G>;
  /** x ← x + attn · o(·) and x ← x + mlp · down(·) (Granite's residual multiplier; 1 for LLaMA). */
  residualScale: { attn: number; mlp: number };
  /** gated: down(σ(gate(m)) ⊙ up(m)); not gated (GPT-2 fc1/fc2): down(σ(up(m))), and the block has no gate linear. */
  mlp: { activation: MlpActivation; gated: boolean };
  /** RMSNorms of the attention and MLP outputs before the residual add; absent: none. */
  postNorm?: { attn: HeadNorm<G>; mlp: HeadNorm<G> };
  /** false: the attention and MLP read the stream itself (OLMo-2); absent: true (attnNorm, mlpNorm apply). */
  preNorm?: boolean;
}

/**
 * The steps of a block, in order. Every backend walks `blockOps(b)` with one handler per step
 * (a `Record<BlockOp, …>`), so a new step fails to typecheck until each backend has one:
 *   attn-in        a = act(pre(x, attnNorm), 'attn')                 (pre: rms, identity without preNorm)
 *   qkv            q, k, v = q(a), k(a), v(a)
 *   qk-norm        q, k = qkn(q, qNorm), qkn(k, kNorm)              (only with attention.qkNorm: see qkNormShape)
 *   rope-kv        q, k = rope(q), rope(k); k and v appended to the cache at pos
 *   attention      o = attention(q, cache)
 *   o-residual     x = x + ra · post(o(act(o, 'o')), postNorm.attn)  (post: rms with postNorm, else identity)
 *   mlp-in         m = act(pre(x, mlpNorm), 'mlp')
 *   gate-up        g, u = gate(m), up(m)                            (ungated: u = up(m) only)
 *   down-residual  x = x + rm · post(down(act(σ(g) ⊙ u, 'down')), postNorm.mlp)   (ungated: σ(u))
 * With program.residual 'parallel' (GPT-NeoX, Phi-2) the MLP reads the block input, not h:
 * mlp-in and gate-up run before o-residual, while x is still the block input, so that
 *   x' = x + ra · post(o(·)) + rm · post(down(·)),  m = act(pre(x, mlpNorm), 'mlp')
 * with the same buffers and handlers as the sequential walk.
 */
export const BLOCK_OPS = ['attn-in', 'qkv', 'qk-norm', 'rope-kv', 'attention', 'o-residual', 'mlp-in', 'gate-up', 'down-residual'] as const;
export type BlockOp = (typeof BLOCK_OPS)[number];

const PARALLEL_ORDER: readonly BlockOp[] = ['attn-in', 'qkv', 'qk-norm', 'rope-kv', 'attention', 'mlp-in', 'gate-up', 'o-residual', 'down-residual'];

export function blockOps(b: BlockProgram<unknown>, residual: ModelProgram['residual']): BlockOp[] {
  return (residual === 'parallel' ? PARALLEL_ORDER : BLOCK_OPS).filter((op) => op !== 'qk-norm' || b.attention.qkNorm !== null);
}

/** Model-wide parts of the program (the per-block parts live in each manifest block). */
export interface ModelProgram {
  /** parallel: x' = x + attn(n₁(x)) + mlp(n₂(x)) (GPT-NeoX, Phi-2; see blockOps). */
  residual: 'sequential' | 'parallel';
  /** layer: (x − mean(x))/√(var(x) + ε)·γ + β, β stored beside γ (the manifest's *NormBias). */
  norm: 'rms' | 'layer';
  /** x₀ = embedScale · embed[id] (Gemma's √hidden, Granite's embedding multiplier). */
  embedScale: number;
  /** logits = logitScale · lmHead(·) (Granite's 1/logits_scaling). */
  logitScale: number;
  /** logits ← cap·tanh(logits/cap) after the scale (Gemma-2); absent: none. */
  logitSoftcap?: number;
  /** kind 'none' (GPT-2: positions come from manifest.positionEmbed): rotaryDim 0, no rotation. */
  rope: { kind: 'rotate-half' | 'none'; theta: number; rotaryDim: number };
}

/** The program a plain LLaMA of this shape has (random artifacts, tests). */
export function llamaBlockProgram(headDim: number): BlockProgram<never> {
  return { attention: { scale: 1 / Math.sqrt(headDim), window: null, qkNorm: null, softcap: null }, mlp: { activation: 'silu', gated: true }, residualScale: { attn: 1, mlp: 1 } };
}

export function llamaProgram(c: { ropeTheta: number; headDim: number }): ModelProgram {
  return { residual: 'sequential', norm: 'rms', embedScale: 1, logitScale: 1, rope: { kind: 'rotate-half', theta: c.ropeTheta, rotaryDim: c.headDim } };
}

/** Scales within float32 rounding of 1/√d are the default scale. */
export function isDefaultScale(scale: number, headDim: number): boolean {
  return Math.abs(scale * Math.sqrt(headDim) - 1) < 1e-6;
}

/** Every feature the program uses, each with the first block that uses it (-1: model-wide). */
export function programFeatures(p: ArtifactManifest): Map<Feature, number> {
  const used = new Map<Feature, number>();
  const use = (f: Feature, block: number) => used.has(f) || used.set(f, block);
  use(p.program.norm === 'layer' ? 'layer-norm' : 'rms-norm', -1);
  if (p.program.rope.kind === 'none') use('no-rope', -1);
  else use('rope-rotate-half', -1);
  if (p.program.residual === 'parallel') use('parallel-residual', -1);
  if (p.positionEmbed) use('learned-positions', -1);
  if (p.config.kvHeads !== p.config.heads) use('gqa', -1);
  if (p.program.rope.kind !== 'none' && p.program.rope.rotaryDim !== p.config.headDim) use('partial-rotary', -1);
  if (p.program.embedScale !== 1) use('embed-scale', -1);
  if (p.program.logitScale !== 1) use('logit-scale', -1);
  if (p.program.logitSoftcap !== undefined) use('logit-softcap', -1);
  const linear = (l: LinearEntry, block: number) => {
    use(linearFormat(l).kind === 'dense' ? 'dense-linear' : 'ternary-linear', block);
    if (l.bias) use('linear-bias', block);
    if (l.order2) use('order2-linear', block);
  };
  p.blocks.forEach((b, i) => {
    for (const r of BLOCK_LINEAR_ROLES) if (b[r]) linear(b[r], i);
    for (const s of Object.values(b.acts)) {
      if (s.bits < 16) use('act-quant', i);
      if (s.transform) use('online-transform', i);
    }
    const a = b.attention;
    if (a.qkNorm) {
      use(({ head: 'qk-norm', 'head-own': 'qk-norm-head-own', all: 'qk-norm-full' } as const)[a.qkNorm.span ?? 'head'], i);
      if (a.qkNorm.kind === 'layer') use('qk-layer-norm', i);
    }
    if (a.ropeTheta !== undefined && a.ropeTheta !== p.program.rope.theta) use('rope-theta-per-layer', i);
    if (b.postNorm) use('post-norm', i);
    if (b.preNorm === false) use('no-pre-norm', i);
    if (a.window !== null) use('sliding-window', i);
    if (!isDefaultScale(a.scale, p.config.headDim)) use('query-scale', i);
    if (a.softcap !== null) use('attn-softcap', i);
    if (b.residualScale.attn !== 1 || b.residualScale.mlp !== 1) use('residual-scale', i);
    if (!b.mlp.gated) use('ungated-mlp', i);
    use(({ silu: 'swiglu', gelu: 'gelu-mlp', 'gelu-tanh': 'gelu-tanh-mlp' } as const)[b.mlp.activation], i);
  });
  linear(p.lmHead, -1);
  return used;
}

/**
 * Throw one line naming the first feature of the manifest's program that the backend lacks,
 * and where the program uses it. Names in `manifest.features` that this build does not know
 * (a manifest from a newer twlac) are refused by name too.
 */
export function refuseMissing(backend: string, table: FeatureTable, m: ArtifactManifest): void {
  for (const f of m.features ?? []) {
    if (!(f in table)) throw new UserError(`${backend} does not implement feature '${f}' (unknown to this twlac)`);
  }
  for (const [f, block] of programFeatures(m)) {
    if (table[f]) continue;
    const where = block >= 0 ? ` (block ${block})` : '';
    throw new UserError(`${backend} does not implement feature '${f}' (${FEATURE_TEXT[f]})${where}`);
  }
}
