// Attention cores, found from the Softmax outward, never from tensor names:
//   scores = MatMul(q', k'ᵀ) (· scale, + mask)  →  Softmax  →  MatMul(p, v')  →  … → o
// q' and k' reach back to the q and k linears through reshape/transpose/RoPE (and a KV-cache
// Concat); v' reaches back to v. The output reaches forward through transpose/reshape to o.
// Fused cores (GroupQueryAttention, MultiHeadAttention, opset-23 Attention) name q/k/v by input slot.
import type { Node, Value } from '../ir.ts';
import { constTensor, type Linear } from './linear.ts';

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
  const scores = bfsBack(sm.input(0)!, isDynMatMul, 6);
  if (!scores) return bad('no Q·Kᵀ MatMul before the Softmax');
  const pv = bfsForward(sm.output(0), (n, w) => isDynMatMul(n) && n.input(0) === w, 4);
  if (!pv) return bad('no P·V MatMul after the Softmax');
  const crossed = new Set<Value>();
  const q = one(linearsUpstream(scores.input(0)!, idx, crossed), 'the query');
  const k = one(linearsUpstream(scores.input(1)!, idx, crossed), 'the key');
  const v = one(linearsUpstream(pv.input(1)!, idx), 'the value');
  const o = one(linearDownstream(pv.output(0), idx), 'nothing: no output projection reads the attention output');
  for (const r of [q, k, v, o]) if (typeof r === 'string') return bad(r);
  return { ok: true, core: { q: q as Linear, k: k as Linear, v: v as Linear, o: o as Linear, softmax: sm, scores, pv, qkNorm: crossed.size > 0 } };
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
  const crossed = new Set<Value>();
  const q = one(linearsUpstream(qi, idx, crossed), 'the query');
  const k = one(linearsUpstream(ki, idx, crossed), 'the key');
  const v = one(linearsUpstream(vi, idx), 'the value');
  const o = one(linearDownstream(n.output(0), idx), 'nothing: no output projection reads the attention output');
  for (const r of [q, k, v, o]) if (typeof r === 'string') return bad(r);
  const heads = n.attr('num_heads', 'int') ?? n.attr('q_num_heads', 'int');
  const kvHeads = n.attr('kv_num_heads', 'int') ?? heads;
  return {
    ok: true,
    core: { q: q as Linear, k: k as Linear, v: v as Linear, o: o as Linear, fused: n, numHeads: heads, kvNumHeads: kvHeads, qkNorm: crossed.size > 0 },
  };
}
