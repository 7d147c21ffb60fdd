// The block program: one backend-neutral description of the decoder, derived once from
// recognition and the compile context, written into manifest.json, and read by every
// backend (the float64 reference, the WGSL plan and runtime, the CUDA emitter). Per token:
//   x₀ = embedScale · embed[id]
//   for each block (residual 'sequential', norm 'rms'):
//     a = act(rms(x, attnNorm), 'attn')
//     q, k, v = q(a), k(a), v(a)                     (+ bias where the linear has one)
//     q, k = headRms(q, qNorm), headRms(k, kNorm)    (qkNorm: per head, before RoPE)
//     q, k = rope(q), rope(k)                        (rotate_half on the first rotaryDim dims)
//     o = attention(q, k, v)                         softmax(scale · q·kᵀ) over the keys t with
//                                                    pos − window < t ≤ pos (window null: 0 ≤ t)
//     h = x + ra · o(act(o, 'o'))                   ra, rm: residualScale (Granite)
//     m = act(rms(h, mlpNorm), 'mlp')
//     x = h + rm · down(act(σ(gate(m)) ⊙ up(m), 'down'))  σ = mlp.activation
//   logits = logitScale · lmHead(rms(x_L, finalNorm))
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
  'qk-norm': 'per-head RMSNorm of q and k before RoPE (Qwen3)',
  'sliding-window': 'sliding-window attention (Mistral)',
  'query-scale': 'attention scale other than 1/√headDim',
  'partial-rotary': 'RoPE on a fraction of the head dims',
  'gelu-mlp': 'GELU(erf)-gated MLP',
  'gelu-tanh-mlp': 'GELU(tanh)-gated MLP (GeGLU)',
  'attn-softcap': 'attention logit soft-capping',
  'embed-scale': 'embedding multiplied by a constant (Gemma √hidden, Granite)',
  'logit-scale': 'logits multiplied by a constant (Granite logits_scaling)',
  'residual-scale': 'attention and MLP outputs multiplied by a constant before the residual add (Granite)',
} as const satisfies Record<Feature, string>;

/** Which features a backend implements exactly. */
export type FeatureTable = Record<Feature, boolean>;

export type MlpActivation = 'silu' | 'gelu' | 'gelu-tanh';

/** RMSNorm over each head of q (or k) before RoPE; γ has headDim entries. */
export interface HeadNorm<G = string | null> {
  /** γ (in the manifest: a float32 [headDim] tensor name); null when the norm has none. */
  gamma: G;
  eps: number;
}

/** G is how γ is held: a tensor name in the manifest, the values in an ArtifactModel. */
export interface AttentionProgram<G = string | null> {
  /** Multiplies q·kᵀ before the softmax. */
  scale: number;
  /** Keys visible to the query at pos: pos − window < t ≤ pos; null: every t ≤ pos. */
  window: number | null;
  qkNorm: { q: HeadNorm<G>; k: HeadNorm<G> } | null;
  /** Scores become cap·tanh(scores/cap) before the softmax; null: none. */
  softcap: number | null;
}

export interface BlockProgram<G = string | null> {
  attention: AttentionProgram<G>;
  /** x ← x + attn · o(·) and x ← x + mlp · down(·) (Granite's residual multiplier; 1 for LLaMA). */
  residualScale: { attn: number; mlp: number };
  mlp: { activation: MlpActivation };
}

/**
 * The steps of a block, in order. Every backend walks `blockOps(b)` with one handler per step
 * (a `Record<BlockOp, …>`), so a new step fails to typecheck until each backend has one:
 *   attn-in        a = act(rms(x, attnNorm), 'attn')
 *   qkv            q, k, v = q(a), k(a), v(a)
 *   qk-norm        q, k = headRms(q, qNorm), headRms(k, kNorm)      (only with attention.qkNorm)
 *   rope-kv        q, k = rope(q), rope(k); k and v appended to the cache at pos
 *   attention      o = attention(q, cache)
 *   o-residual     x = x + ra · o(act(o, 'o'))
 *   mlp-in         m = act(rms(x, mlpNorm), 'mlp')
 *   gate-up        g, u = gate(m), up(m)
 *   down-residual  x = x + rm · down(act(σ(g) ⊙ u, 'down'))
 */
export const BLOCK_OPS = ['attn-in', 'qkv', 'qk-norm', 'rope-kv', 'attention', 'o-residual', 'mlp-in', 'gate-up', 'down-residual'] as const;
export type BlockOp = (typeof BLOCK_OPS)[number];

export function blockOps(b: BlockProgram<unknown>): BlockOp[] {
  return BLOCK_OPS.filter((op) => op !== 'qk-norm' || b.attention.qkNorm !== null);
}

/** Model-wide parts of the program (the per-block parts live in each manifest block). */
export interface ModelProgram {
  residual: 'sequential';
  norm: 'rms';
  /** x₀ = embedScale · embed[id] (Gemma's √hidden, Granite's embedding multiplier). */
  embedScale: number;
  /** logits = logitScale · lmHead(·) (Granite's 1/logits_scaling). */
  logitScale: number;
  rope: { kind: 'rotate-half'; theta: number; rotaryDim: number };
}

/** The program a plain LLaMA of this shape has (random artifacts, tests). */
export function llamaBlockProgram(headDim: number): BlockProgram<never> {
  return { attention: { scale: 1 / Math.sqrt(headDim), window: null, qkNorm: null, softcap: null }, mlp: { activation: 'silu' }, residualScale: { attn: 1, mlp: 1 } };
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
  use('rms-norm', -1);
  use('rope-rotate-half', -1);
  if (p.config.kvHeads !== p.config.heads) use('gqa', -1);
  if (p.program.rope.rotaryDim !== p.config.headDim) use('partial-rotary', -1);
  if (p.program.embedScale !== 1) use('embed-scale', -1);
  if (p.program.logitScale !== 1) use('logit-scale', -1);
  const linear = (l: LinearEntry, block: number) => {
    use(linearFormat(l).kind === 'dense' ? 'dense-linear' : 'ternary-linear', block);
    if (l.bias) use('linear-bias', block);
    if (l.order2) use('order2-linear', block);
  };
  p.blocks.forEach((b, i) => {
    for (const r of BLOCK_LINEAR_ROLES) linear(b[r], i);
    for (const s of Object.values(b.acts)) {
      if (s.bits < 16) use('act-quant', i);
      if (s.transform) use('online-transform', i);
    }
    const a = b.attention;
    if (a.qkNorm) use('qk-norm', i);
    if (a.window !== null) use('sliding-window', i);
    if (!isDefaultScale(a.scale, p.config.headDim)) use('query-scale', i);
    if (a.softcap !== null) use('attn-softcap', i);
    if (b.residualScale.attn !== 1 || b.residualScale.mlp !== 1) use('residual-scale', i);
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
