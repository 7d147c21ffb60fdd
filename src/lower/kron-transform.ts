// Online Kronecker transform as standard ONNX ops:
//   x' = (C ⊗ B) x   ⇔   X' = C · X · Bᵀ  on the row-major [l, r] view of each token's x.
// Emitted as  Shape(x) → Reshape(x, [-1, l, r]) → MatMul(·, Bᵀ) → MatMul(C, ·) → Reshape(·, shape).
import type { Node, Value } from '../graph/ir.ts';
import type { Rewriter } from '../graph/rewriter.ts';
import { floatToHalf, Tensor } from '../graph/tensor.ts';

export interface KronFactors {
  l: number;
  r: number;
  /** [l, l] row-major. */
  C: Float64Array;
  /** [r, r] row-major. */
  B: Float64Array;
}

function transpose(a: Float64Array, n: number): Float64Array {
  const t = new Float64Array(n * n);
  for (let i = 0; i < n; i++) for (let j = 0; j < n; j++) t[j * n + i] = a[i * n + j];
  return t;
}

function floatInit(rw: Rewriter, name: string, dims: number[], a: Float64Array, dtype: 'float32' | 'float16'): Value {
  if (dtype === 'float32') return rw.init(name, Tensor.fromFloat32(dims, Float32Array.from(a)));
  return rw.init(name, Tensor.fromBytes('float16', dims, new Uint8Array(Uint16Array.from(a, floatToHalf).buffer)));
}

/** Insert the transform of `x` before `anchor`; returns the transformed value. */
export function emitKronTransform(rw: Rewriter, anchor: Node, x: Value, f: KronFactors, prefix: string, dtype: 'float32' | 'float16'): Value {
  const { l, r } = f;
  const shape = rw.opBefore(anchor, 'Shape', [x]);
  const view = rw.opBefore(anchor, 'Reshape', [x, rw.init(`${prefix}.view`, Tensor.fromInt64([3], [-1, l, r]))]);
  const xb = rw.opBefore(anchor, 'MatMul', [view, floatInit(rw, `${prefix}.Bt`, [r, r], transpose(f.B, r), dtype)]);
  const cxb = rw.opBefore(anchor, 'MatMul', [floatInit(rw, `${prefix}.C`, [l, l], f.C, dtype), xb]);
  return rw.opBefore(anchor, 'Reshape', [cxb, shape]);
}
