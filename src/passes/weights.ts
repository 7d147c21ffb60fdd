// Replace a recognised linear's weight with new values, written back in the stored
// initializer's own layout and element type, so the model stays what its exporter made
// (MatMul against [in, out], Gemm with transB, fp16 behind a Cast, ...).
import { constTensor, type Linear } from '../graph/patterns/linear.ts';
import { floatToHalf, Tensor } from '../graph/tensor.ts';
import type { Rewriter } from '../graph/rewriter.ts';
import { activationDtype } from './lower-ort.ts';

/** W row-major [out, in] (alpha already applied: y = W x + b). */
export function setLinearWeight(l: Linear, W: Float32Array | Float64Array): void {
  const N = l.outFeatures;
  const K = l.inFeatures;
  if (W.length !== N * K) throw new Error(`setLinearWeight: ${W.length} values for a ${N}x${K} linear`);
  const stored = new Float64Array(N * K);
  const a = l.alpha;
  if (l.layout === 'out_in') {
    for (let i = 0; i < N * K; i++) stored[i] = W[i] / a;
  } else {
    for (let n = 0; n < N; n++) for (let k = 0; k < K; k++) stored[k * N + n] = W[n * K + k] / a;
  }
  const old = constTensor(l.weight);
  if (!old) throw new Error(`setLinearWeight: ${l.weight.name} is not a constant`);
  setLinearWeightTensor(l, encodeFloats(old.dtype, old.dims, stored));
}

/** Put `t` where the linear's weight is stored: its initializer, or the Constant node that makes it. */
export function setLinearWeightTensor(l: Linear, t: Tensor): void {
  if (l.weight.constValue) {
    l.weight.constValue = t;
  } else {
    const p = l.weight.producer();
    if (!p || p.opType !== 'Constant') throw new Error(`setLinearWeight: cannot rewrite ${l.weight.name}`);
    p.setAttr('value', { type: 'tensor', value: t });
  }
}

/** Replace a linear's bias (beta already applied: y = W x + b). */
export function setLinearBias(l: Linear, b: Float32Array | Float64Array): void {
  if (!l.bias) throw new Error('setLinearBias: the linear has no bias');
  const old = constTensor(l.bias)!;
  const stored = Float64Array.from(b, (x) => x / l.beta);
  l.bias.constValue = encodeFloats(old.dtype, old.dims, stored);
}

/** Give a linear without a bias the bias b (in its activations' element type): Gemm's C input, or an Add after the MatMul that its readers then read. */
export function addLinearBias(rw: Rewriter, l: Linear, b: Float32Array | Float64Array): void {
  if (l.bias) throw new Error('addLinearBias: the linear has a bias');
  const name = rw.graph.uniqueName(`${l.weight.name || l.node.name}.folded_bias`);
  const bias = rw.init(name, encodeFloats(activationDtype(l), [b.length], Float32Array.from(b, (x) => x / l.beta)));
  l.bias = bias;
  if (l.op === 'Gemm') {
    l.node.setInput(2, bias);
    return;
  }
  const y = l.output;
  const first = rw.graph.nodes.find((n) => n.inputs.includes(y));
  if (!first) throw new Error(`addLinearBias: ${name}: the linear's output has no reader`);
  const out = rw.opBefore(first, 'Add', [y, bias]);
  const add = out.producer()!;
  rw.redirect(y, out, [add]);
  l.biasAdd = add;
  l.output = out;
}

export function encodeFloats(dtype: string, dims: readonly number[], v: ArrayLike<number>): Tensor {
  switch (dtype) {
    case 'float32':
      return Tensor.fromFloat32(dims, Float32Array.from(v));
    case 'float16':
      return Tensor.fromBytes('float16', dims, new Uint8Array(Uint16Array.from(v, floatToHalf).buffer));
    case 'float64':
      return Tensor.fromBytes('float64', dims, new Uint8Array(Float64Array.from(v).buffer));
    case 'bfloat16': {
      const f = Float32Array.from(v);
      const u = new Uint32Array(f.buffer);
      const h = Uint16Array.from(u, (x) => (x + 0x7fff + ((x >>> 16) & 1)) >>> 16);
      return Tensor.fromBytes('bfloat16', dims, new Uint8Array(h.buffer));
    }
    default:
      throw new Error(`cannot write float values into a ${dtype} tensor`);
  }
}
