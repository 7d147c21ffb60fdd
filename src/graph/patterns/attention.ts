// Attention cores, found from the Softmax outward, never from tensor names:
//   scores = MatMul(q', k'ᵀ) (· scale, + mask)  →  Softmax  →  MatMul(p, v')  →  … → o
// q' and k' reach back to the q and k linears through reshape/transpose/RoPE (and a KV-cache
// Concat); v' reaches back to v. The output reaches forward through transpose/reshape to o.
// Fused cores (GroupQueryAttention, MultiHeadAttention, opset-23 Attention) name q/k/v by input slot.
import type { Node, Value } from '../ir.ts';
import { constTensor, type Linear } from './linear.ts';
import { staticScalar } from './static-scalar.ts';

export interface AttentionCore {
  q: Linear;
  k: Linear;
  v: Linear;
  o: Linear;
  softmax?: Node;
  scores?: Node;
  pv?: Node;
  /** A fused attention op, when the graph has one instead of Softmax. */
  fused?: Node;
  /** q or k is normalised per head between its projection and the scores (QK-norm). */
  qkNorm: boolean;
  /** Norm outputs crossed on the way from the scores back to q, and to k. */
  qNorms: Value[];
  kNorms: Value[];
  /** The factor q·kᵀ is multiplied by before the softmax (the product of every scalar on the way). */
  scale?: number;
  /** Scores pass through cap·tanh(·/cap) before the softmax. */
  softcap?: number;
  /** Keys visible to the query at pos: pos − window < t ≤ pos (read off the mask). */
  window?: number;
  /** Head counts stated by a fused op's attributes. */
  numHeads?: number;
  kvNumHeads?: number;
}

/** Ops that only move or retype data: safe to look through when following an activation. */
export const PASS_THROUGH = new Set(['Reshape', 'Flatten', 'Cast', 'Identity', 'Squeeze', 'Unsqueeze', 'Transpose']);

export interface LinearIndex {
  /** A linear by its node output or by its biased output. */
  byOutput: Map<Value, Linear>;
  /** A linear by its node. */
  byNode: Map<Node, Linear>;
  /** Norm outputs: a search that crosses one on the way to q or k has met a QK-norm. */
  normOutputs: Set<Value>;
}

/**
 * Where activations never flow: shapes, and the RoPE tables (an exporter may compute the
 * angles as MatMul(positions, inv_freq), which looks like a 1-input linear).
 */
const POSITIONAL = new Set(['Shape', 'Size', 'Cos', 'Sin', 'Range']);

/** Linears that `v` is computed from, searching backwards through any op but positional ones; norm outputs crossed go to `crossed`. */
function linearsUpstream(v: Value, idx: LinearIndex, crossed?: Set<Value>, limit = 400): Linear[] {
  const found = new Set<Linear>();
  const seen = new Set<Value>();
  const queue = [v];
  while (queue.length && seen.size < limit) {
    const w = queue.shift()!;
    if (seen.has(w)) continue;
    seen.add(w);
    const l = idx.byOutput.get(w);
    if (l) {
      found.add(l);
      continue;
    }
    if (idx.normOutputs.has(w)) crossed?.add(w);
    if (constTensor(w)) continue;
    const p = w.producer();
    if (!p || POSITIONAL.has(p.opType)) continue;
    for (const i of p.inputs) if (i) queue.push(i);
  }
  return [...found];
}

/** The linear that reads `v` after data movement only. */
function linearDownstream(v: Value, idx: LinearIndex, limit = 50): Linear[] {
  const found = new Set<Linear>();
  const queue = [v];
  const seen = new Set<Value>();
  while (queue.length && seen.size < limit) {
    const w = queue.shift()!;
    if (seen.has(w)) continue;
    seen.add(w);
    for (const u of w.uses()) {
      const l = idx.byNode.get(u.node);
      if (l && u.index === 0) found.add(l);
      else if (PASS_THROUGH.has(u.node.opType) && u.index === 0) queue.push(u.node.output(0));
    }
  }
  return [...found];
}

function bfsBack(v: Value, pred: (n: Node) => boolean, maxDepth: number): Node | undefined {
  let frontier = [v];
  for (let d = 0; d < maxDepth && frontier.length; d++) {
    const next: Value[] = [];
    for (const w of frontier) {
      const p = w.producer();
      if (!p) continue;
      if (pred(p)) return p;
      for (const i of p.inputs) if (i && !constTensor(i)) next.push(i);
    }
    frontier = next;
  }
  return undefined;
}

function bfsForward(v: Value, pred: (n: Node, w: Value) => boolean, maxDepth: number): Node | undefined {
  let frontier = [v];
  for (let d = 0; d < maxDepth && frontier.length; d++) {
    const next: Value[] = [];
    for (const w of frontier) {
      for (const c of w.consumers()) {
        if (pred(c, w)) return c;
        next.push(...c.outputs);
      }
    }
    frontier = next;
  }
  return undefined;
}

const isDynMatMul = (n: Node): boolean =>
  n.opType === 'MatMul' && !!n.input(0) && !!n.input(1) && !constTensor(n.input(0)) && !constTensor(n.input(1));

export type AttentionResult = { ok: true; core: AttentionCore } | { ok: false; reason: string; anchor: Node };

function one(ls: Linear[], what: string): Linear | string {
  if (ls.length === 1) return ls[0];
  return ls.length === 0 ? `no linear produces ${what}` : `${ls.length} linears produce ${what}`;
}

/** Match the attention core around one Softmax. */
export function matchSoftmaxAttention(sm: Node, idx: LinearIndex): AttentionResult {
  const bad = (reason: string): AttentionResult => ({ ok: false, reason, anchor: sm });
  const scores = bfsBack(sm.input(0)!, isDynMatMul, 10);
  if (!scores) return bad('no Q·Kᵀ MatMul before the Softmax');
  const pv = bfsForward(sm.output(0), (n, w) => isDynMatMul(n) && n.input(0) === w, 4);
  if (!pv) return bad('no P·V MatMul after the Softmax');
  const qCrossed = new Set<Value>();
  const kCrossed = new Set<Value>();
  const q = one(linearsUpstream(scores.input(0)!, idx, qCrossed), 'the query');
  const k = one(linearsUpstream(scores.input(1)!, idx, kCrossed), 'the key');
  const v = one(linearsUpstream(pv.input(1)!, idx), 'the value');
  const o = one(linearDownstream(pv.output(0), idx), 'nothing: no output projection reads the attention output');
  for (const r of [q, k, v, o]) if (typeof r === 'string') return bad(r);
  const path = scoresToSoftmax(sm, scores);
  if (typeof path === 'string') return bad(path);
  if (!path.masks.length) return bad('no mask between the Q·Kᵀ MatMul and the Softmax: non-causal attention is not supported');
  const bias = positionBias(path.masks);
  if (bias) return bad(bias);
  const window = slidingWindow(path.masks);
  if (typeof window === 'string') return bad(window);
  const scale = path.scale * scalarFactors(scores.input(0)!) * scalarFactors(scores.input(1)!);
  return {
    ok: true,
    core: {
      q: q as Linear,
      k: k as Linear,
      v: v as Linear,
      o: o as Linear,
      softmax: sm,
      scores,
      pv,
      qkNorm: qCrossed.size + kCrossed.size > 0,
      qNorms: [...qCrossed],
      kNorms: [...kCrossed],
      scale,
      softcap: path.softcap,
      window,
    },
  };
}

const FUSED = new Set(['GroupQueryAttention', 'MultiHeadAttention', 'Attention']);

/** Match a fused attention op whose q, k, v arrive as separate inputs. */
export function matchFusedAttention(n: Node, idx: LinearIndex): AttentionResult | undefined {
  if (!FUSED.has(n.opType)) return undefined;
  if (n.opType === 'Attention' && n.domain === 'com.microsoft') {
    return { ok: false, reason: 'com.microsoft::Attention packs the q/k/v weights inside the op (not supported)', anchor: n };
  }
  const bad = (reason: string): AttentionResult => ({ ok: false, reason, anchor: n });
  const [qi, ki, vi] = [n.input(0), n.input(1), n.input(2)];
  if (!qi || !ki || !vi) return bad(`${n.opType} with packed QKV (not supported)`);
  const qCrossed = new Set<Value>();
  const kCrossed = new Set<Value>();
  const q = one(linearsUpstream(qi, idx, qCrossed), 'the query');
  const k = one(linearsUpstream(ki, idx, kCrossed), 'the key');
  const v = one(linearsUpstream(vi, idx), 'the value');
  const o = one(linearDownstream(n.output(0), idx), 'nothing: no output projection reads the attention output');
  for (const r of [q, k, v, o]) if (typeof r === 'string') return bad(r);
  const heads = n.attr('num_heads', 'int') ?? n.attr('q_num_heads', 'int');
  const kvHeads = n.attr('kv_num_heads', 'int') ?? heads;
  if ((n.attr('local_window_size', 'int') ?? -1) >= 0) return bad(`${n.opType} with local_window_size (a sliding window) is not supported yet`);
  // The runtimes compute causal attention: a fused op must say it is causal, with no mask of its own.
  if (n.opType === 'Attention' && n.input(3)) return bad('Attention with an explicit attn_mask is not supported yet');
  if (n.opType === 'Attention' && n.attr('is_causal', 'int') !== 1) return bad('Attention without is_causal = 1 (non-causal attention) is not supported');
  if (n.opType === 'MultiHeadAttention' && (n.input(4) || n.input(5))) return bad('MultiHeadAttention with a key padding mask or attention bias is not supported yet');
  if (n.opType === 'MultiHeadAttention' && n.attr('unidirectional', 'int') !== 1) return bad('MultiHeadAttention without unidirectional = 1 (non-causal attention) is not supported');
  const scaleAttr = n.attr('scale', 'float');
  const softcap = n.attr('softcap', 'float');
  return {
    ok: true,
    core: {
      q: q as Linear,
      k: k as Linear,
      v: v as Linear,
      o: o as Linear,
      fused: n,
      numHeads: heads,
      kvNumHeads: kvHeads,
      qkNorm: qCrossed.size + kCrossed.size > 0,
      qNorms: [...qCrossed],
      kNorms: [...kCrossed],
      // 0 or absent: the op's default 1/√headDim, filled in by recognition once headDim is known
      scale: scaleAttr ? scaleAttr : undefined,
      softcap: softcap ? softcap : undefined,
    },
  };
}

function scalarConst(v: Value | undefined): number | undefined {
  const t = constTensor(v);
  return t && t.numel === 1 ? t.toFloat32()[0] : undefined;
}

/** Does `v` depend on `target` (a bounded search back through non-constant inputs)? */
function reaches(v: Value, target: Value, limit = 64): boolean {
  const seen = new Set<Value>();
  const queue = [v];
  while (queue.length && seen.size < limit) {
    const w = queue.shift()!;
    if (w === target) return true;
    if (seen.has(w) || constTensor(w)) continue;
    seen.add(w);
    for (const i of w.producer()?.inputs ?? []) if (i) queue.push(i);
  }
  return false;
}

const MOVES = new Set(['Cast', 'Identity', 'Reshape', 'Transpose', 'Unsqueeze', 'Squeeze', 'Expand']);

/** The product of the scalar Mul/Div factors on a q or k path, walking back through data movement. */
function scalarFactors(v: Value): number {
  let f = 1;
  for (;;) {
    const p = v.producer();
    if (!p) return f;
    const c0 = staticScalar(p.input(0));
    const c1 = staticScalar(p.input(1));
    if (p.opType === 'Mul' && (c0 !== undefined || c1 !== undefined)) {
      f *= c1 ?? c0!;
      v = c1 !== undefined ? p.input(0)! : p.input(1)!;
    } else if (p.opType === 'Div' && c1 !== undefined) {
      f /= c1;
      v = p.input(0)!;
    } else if (MOVES.has(p.opType) && p.input(0)) {
      v = p.input(0)!;
    } else {
      return f;
    }
  }
}

/**
 * From the Softmax input back to the Q·Kᵀ MatMul: scalar Mul/Div (the scale, maybe computed from
 * a static shape: static-scalar.ts), Add or Where of
 * a mask, Cast, and cap·tanh(·/cap) (soft-capping). Any other op there is not understood.
 */
function scoresToSoftmax(sm: Node, scores: Node): { scale: number; softcap?: number; masks: Value[] } | string {
  const target = scores.output(0);
  let v = sm.input(0)!;
  let scale = 1;
  let softcap: number | undefined;
  const masks: Value[] = [];
  while (v !== target) {
    const p = v.producer();
    if (!p) return 'the Softmax input does not come from the Q·Kᵀ MatMul';
    const c0 = staticScalar(p.input(0));
    const c1 = staticScalar(p.input(1));
    // A Reshape there only regroups heads (GPT-NeoX's baddbmm scores [b·h, q, k] viewed as [b, h, q, k]).
    if ((p.opType === 'Cast' || p.opType === 'Identity' || p.opType === 'Reshape') && p.input(0)) v = p.input(0)!;
    else if (p.opType === 'Mul' && (c0 !== undefined || c1 !== undefined)) {
      scale *= c1 ?? c0!;
      v = c1 !== undefined ? p.input(0)! : p.input(1)!;
    } else if (p.opType === 'Div' && c1 !== undefined) {
      scale /= c1;
      v = p.input(0)!;
    } else if (p.opType === 'Tanh' && softcap === undefined && p.input(0)) {
      // cap·tanh(s/cap): the factor after the Tanh is the cap; the ones before scale s.
      softcap = scale;
      scale = 1;
      v = p.input(0)!;
    } else if (p.opType === 'Add' && p.input(0) && p.input(1)) {
      const [a, b] = [p.input(0)!, p.input(1)!];
      const toScores = reaches(a, target) ? a : b;
      masks.push(toScores === a ? b : a);
      v = toScores;
    } else if (p.opType === 'Where' && p.input(1) && p.input(2)) {
      const toScores = reaches(p.input(1)!, target) ? p.input(1)! : p.input(2)!;
      masks.push(p.input(0)!);
      v = toScores;
    } else {
      return `${p.opType} between the Q·Kᵀ MatMul and the Softmax is not understood`;
    }
  }
  return { scale: softcap === undefined ? scale : scale * softcap, softcap, masks };
}

/**
 * Why a term added to the scores is a position bias rather than a mask, or undefined. Masks hold 0
 * and a large negative number, built from comparisons, Trilu and Where (and positions counted by
 * a CumSum of the attention mask); ALiBi (Falcon-RW, BLOOM, MPT) adds slope_h · position, positions
 * times a constant vector of per-head slopes, which no mask multiplies by. The program has no such
 * step, so a model with one is refused rather than run without it.
 */
function positionBias(terms: Value[]): string | undefined {
  const seen = new Set<Value>();
  const queue = [...terms];
  while (queue.length && seen.size < 400) {
    const w = queue.shift()!;
    if (seen.has(w) || constTensor(w)) continue;
    seen.add(w);
    const p = w.producer();
    // a mask's sizes come from Shape ops of q and k: the activations behind them are no part of it
    if (!p || p.opType === 'Shape' || p.opType === 'Size') continue;
    const slopes = p.opType === 'Mul' && p.inputs.some((i) => {
      const t = constTensor(i);
      // float values: a shape computation's integer vectors are no slopes
      return !!t && t.dtype.startsWith('float') && t.numel > 1 && new Set(t.toFloat32()).size > 1;
    });
    if (slopes) return 'a position bias added to the attention scores (ALiBi: positions times per-head slopes) is not supported';
    for (const i of p.inputs) if (i) queue.push(i);
  }
  return undefined;
}

const COMPARE = new Set(['Greater', 'GreaterOrEqual', 'Less', 'LessOrEqual']);

/** `a − c` for a constant scalar c (Sub(a, c) or Add(a, −c)), else undefined. */
function offsetOf(v: Value | undefined): number | undefined {
  const p = v?.producer();
  if (!p) return undefined;
  const c = scalarConst(p.input(1));
  if (c === undefined || c === 0 || scalarConst(p.input(0)) !== undefined) return undefined;
  if (p.opType === 'Sub') return c;
  if (p.opType === 'Add') return -c;
  return undefined;
}

/**
 * The sliding window a mask states, as the exporters write it: `k > q − w` (Greater(k, Sub(q, w))
 * or Less(Sub(q, w), k); ≥ / ≤ allow w + 1 keys), or `q − k < w` on a difference of positions.
 * Undefined for a mask without one; a reason when a position offset appears in a form not
 * understood, so that a window is never dropped silently.
 */
function slidingWindow(masks: Value[]): number | undefined | string {
  const found = new Set<number>();
  const seen = new Set<Value>();
  const queue = [...masks];
  while (queue.length && seen.size < 400) {
    const w = queue.shift()!;
    if (seen.has(w) || constTensor(w)) continue;
    seen.add(w);
    const p = w.producer();
    if (!p) continue;
    for (const i of p.inputs) if (i) queue.push(i);
    if (p.opType === 'Trilu') {
      // tril(ones, −w) marks the keys w or more behind the query (older transformers' Gemma-2 window);
      // triu(·, 1) is the causal mask itself.
      const k = scalarConst(p.input(1)) ?? 0;
      const upper = (p.attr('upper', 'int') ?? 1) === 1;
      if (!upper && k < 0) found.add(-k);
      else if (!(upper && k === 1)) return `the attention mask uses ${upper ? 'triu' : 'tril'} with diagonal ${k}, which is not understood`;
      continue;
    }
    if (!COMPARE.has(p.opType)) continue;
    const [a, b] = [p.input(0), p.input(1)];
    const inclusive = p.opType.endsWith('OrEqual') ? 1 : 0;
    const greater = p.opType.startsWith('Greater');
    const offA = offsetOf(a);
    const offB = offsetOf(b);
    const cA = scalarConst(a);
    const cB = scalarConst(b);
    const diff = (v: Value | undefined) => v?.producer()?.opType === 'Sub' && offsetOf(v) === undefined;
    if (offB !== undefined && offA === undefined && greater) found.add(offB + inclusive); // k > q − w
    else if (offA !== undefined && offB === undefined && !greater) found.add(offA + inclusive); // q − w < k
    else if (cB !== undefined && diff(a) && !greater) found.add(cB + inclusive); // q − k < w
    else if (cA !== undefined && diff(b) && greater) found.add(cA + inclusive); // w > q − k
    else if (offA !== undefined || offB !== undefined || ((cA !== undefined || cB !== undefined) && (diff(a) || diff(b)))) {
      return `the attention mask compares positions with an offset in a form not understood (${p.opType} ${p.name})`;
    }
  }
  if (found.size > 1) return `the attention mask states several windows (${[...found].join(', ')})`;
  const [w] = found;
  if (w !== undefined && (!Number.isInteger(w) || w < 1)) return `the attention mask states a window of ${w} keys`;
  return w;
}
