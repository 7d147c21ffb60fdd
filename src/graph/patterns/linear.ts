// Linear layers as exporters write them: y = W x (+ b), W is [out, in].
//   MatMul(x, B)            B = [in, out] constant, or Transpose([out, in] constant), either maybe behind Cast
//   MatMul(x, B) → Add(·, b) b a constant vector of length out
//   Gemm(x, B, C)           transB = 1 stores [out, in]; alpha scales W, beta scales C
// The weight orientation is recorded for the stored initializer, so a rewrite can read it
// without copying; `weightRows` materialises W row-major [out, in] when asked.
import type { Node, Value } from '../ir.ts';
import type { DType } from '../tensor.ts';
import { Tensor } from '../tensor.ts';

/** Layout of the stored initializer: `in_out` is [in, out] (x·W), `out_in` is [out, in] (x·Wᵀ). */
export type WeightLayout = 'in_out' | 'out_in';

export type LinearRole = 'q' | 'k' | 'v' | 'o' | 'gate' | 'up' | 'down' | 'lm_head';

export interface Linear {
  node: Node;
  op: 'MatMul' | 'Gemm';
  /** The activation input (node input 0). */
  input: Value;
  /** The constant holding W (an initializer or a Constant node's output). */
  weight: Value;
  /** Cast/Transpose/Identity nodes between `weight` and `node`, from the weight onwards. */
  weightPath: Node[];
  layout: WeightLayout;
  weightDtype: DType;
  inFeatures: number;
  outFeatures: number;
  /** Gemm's alpha (1 for MatMul): y = alpha·W x + beta·b. */
  alpha: number;
  beta: number;
  bias?: Value;
  /** The Add node that applies the bias after a MatMul; absent for Gemm's C input. */
  biasAdd?: Node;
  /** The linear's result, bias included. */
  output: Value;
  /** Set by recognition. */
  role?: LinearRole;
  /** Block index, -1 for the lm_head. */
  block?: number;
}

export type Match<T> = { ok: true; value: T } | { ok: false; reason: string };
const fail = (reason: string): { ok: false; reason: string } => ({ ok: false, reason });

/** The constant tensor a value holds: an initializer or a Constant node's `value`. */
export function constTensor(v: Value | undefined): Tensor | undefined {
  if (!v) return undefined;
  if (v.constValue) return v.constValue;
  const p = v.producer();
  if (p && p.opType === 'Constant' && (p.domain === '' || p.domain === 'ai.onnx')) {
    const a = p.attributes.get('value');
    if (a?.type === 'tensor') return a.value;
  }
  return undefined;
}

/** Follow Cast/Identity/Transpose back to a constant; returns it, the path, and how many 2-D transposes were crossed. */
function traceWeight(v: Value): { weight: Value; tensor: Tensor; path: Node[]; flips: number } | undefined {
  const path: Node[] = [];
  let flips = 0;
  for (let cur: Value = v; ; ) {
    const t = constTensor(cur);
    if (t) return { weight: cur, tensor: t, path: path.reverse(), flips };
    const p = cur.producer();
    if (!p || p.domain !== '' || !p.input(0)) return undefined;
    if (p.opType === 'Transpose') {
      const perm = p.attr('perm', 'ints');
      if (perm && !(perm.length === 2 && perm[0] === 1 && perm[1] === 0)) return undefined;
      flips++;
    } else if (p.opType !== 'Cast' && p.opType !== 'Identity') {
      return undefined;
    }
    path.push(p);
    cur = p.input(0)!;
  }
}

/** Is `v` a constant vector of `n` elements (shape [n] or [1, …, 1, n])? */
function isBiasVector(v: Value | undefined, n: number): boolean {
  const t = constTensor(v);
  return !!t && t.numel === n && t.dims.length >= 1 && t.dims[t.dims.length - 1] === n;
}

function matchLinear(node: Node): Match<Linear> {
  if (node.domain !== '' && node.domain !== 'ai.onnx') return fail('not an ONNX-domain op');
  if (node.opType !== 'MatMul' && node.opType !== 'Gemm') return fail(`${node.opType} is not MatMul/Gemm`);
  const x = node.input(0);
  const b = node.input(1);
  if (!x || !b) return fail('missing input');
  if (constTensor(x)) return fail('activation input is a constant');
  const w = traceWeight(b);
  if (!w) return fail('second input is not a constant weight');
  if (w.tensor.dims.length !== 2) return fail(`weight is ${w.tensor.dims.length}-D, not 2-D`);
  let flips = w.flips;
  let alpha = 1;
  let beta = 1;
  if (node.opType === 'Gemm') {
    if ((node.attr('transA', 'int') ?? 0) !== 0) return fail('Gemm with transA=1');
    if ((node.attr('transB', 'int') ?? 0) !== 0) flips++;
    alpha = node.attr('alpha', 'float') ?? 1;
    beta = node.attr('beta', 'float') ?? 1;
  }
  const [d0, d1] = w.tensor.dims;
  // Even flips: the stored tensor is the effective [in, out] operand.
  const layout: WeightLayout = flips % 2 === 0 ? 'in_out' : 'out_in';
  const inFeatures = layout === 'in_out' ? d0 : d1;
  const outFeatures = layout === 'in_out' ? d1 : d0;
  let bias: Value | undefined;
  let biasAdd: Node | undefined;
  let output = node.output(0);
  if (node.opType === 'Gemm') {
    const c = node.input(2);
    if (c) {
      if (!isBiasVector(c, outFeatures)) return fail('Gemm C is not a bias vector');
      bias = c;
    }
  } else {
    const cons = output.consumers();
    const add = cons.length === 1 ? cons[0] : undefined;
    if (add && add.opType === 'Add' && add.domain === '') {
      const other = add.input(0) === output ? add.input(1) : add.input(0);
      if (isBiasVector(other, outFeatures)) {
        bias = other;
        biasAdd = add;
        output = add.output(0);
      }
    }
  }
  return {
    ok: true,
    value: {
      node,
      op: node.opType,
      input: x,
      weight: w.weight,
      weightPath: w.path,
      layout,
      weightDtype: w.tensor.dtype,
      inFeatures,
      outFeatures,
      alpha,
      beta,
      bias,
      biasAdd,
      output,
    },
  };
}

/** All linears of a graph, in node order. */
export function findLinears(nodes: readonly Node[]): Linear[] {
  const out: Linear[] = [];
  for (const n of nodes) {
    const m = matchLinear(n);
    if (m.ok) out.push(m.value);
  }
  return out;
}

/** W as row-major [out, in] float32, alpha applied (y = W x + b). Reads external data once. */
export function weightRows(l: Linear): Float32Array {
  const src = constTensor(l.weight)!.toFloat32();
  const { inFeatures: K, outFeatures: N } = l;
  let out: Float32Array;
  if (l.layout === 'out_in') {
    out = src;
  } else {
    out = new Float32Array(N * K);
    for (let k = 0; k < K; k++) {
      const row = k * N;
      for (let n = 0; n < N; n++) out[n * K + k] = src[row + n];
    }
  }
  if (l.alpha !== 1) for (let i = 0; i < out.length; i++) out[i] *= l.alpha;
  return out;
}

/** The bias as float32 (beta applied), or undefined. */
export function biasVector(l: Linear): Float32Array | undefined {
  if (!l.bias) return undefined;
  const b = constTensor(l.bias)!.toFloat32();
  if (l.beta !== 1) for (let i = 0; i < b.length; i++) b[i] *= l.beta;
  return b;
}

/** A readable name: the weight initializer's name, else the node's. */
export function linearName(l: Linear): string {
  return l.weight.name || l.node.name;
}
