// Norm weights that the graph computes from constants, folded into one constant before
// recognition. Gemma's RMSNorm stores w and multiplies by (1 + w.float()); exporters fold that
// when their constant folder allows, but leave Add(Cast(w), 1) in the graph where the width
// passes the folder's size limit. Each Cast, Add, Sub or Mul whose inputs are all constants,
// one of them a vector (rank ≤ 1) and the other a scalar or a vector of the same length, becomes
// an initializer holding its result:
//   Cast(c) → c in the target type;  Add(a, b) → a + b;  Sub(a, b) → a − b;  Mul(a, b) → a · b
// computed in float32 and stored in the op's element type, as onnxruntime computes them. Large
// weight tensors (rank 2) are left as they are: their Casts are how linears state their type.
import type { Model, Node } from '../graph/ir.ts';
import { constTensor } from '../graph/patterns/linear.ts';
import { DTYPES, type DType } from '../graph/tensor.ts';
import { Rewriter } from '../graph/rewriter.ts';
import { encodeFloats } from './weights.ts';

const FLOATS = new Set<DType>(['float32', 'float16', 'float64', 'bfloat16']);
const BINARY: Record<string, (a: number, b: number) => number> = {
  Add: (a, b) => a + b,
  Sub: (a, b) => a - b,
  Mul: (a, b) => a * b,
};

const dtypeOfCode = (code: number | undefined): DType | undefined => (Object.keys(DTYPES) as DType[]).find((d) => DTYPES[d].code === code);

/** The folded value of one node, or undefined when it is not a foldable op on constant vectors. */
function folded(n: Node): { dtype: DType; dims: readonly number[]; values: Float32Array } | undefined {
  if (n.domain !== '' || n.outputs.length !== 1) return undefined;
  const ts = n.inputs.map((v) => constTensor(v));
  if (ts.length === 0 || ts.some((t) => !t || !FLOATS.has(t.dtype) || t.dims.length > 1)) return undefined;
  if (n.opType === 'Cast' && ts.length === 1) {
    const to = dtypeOfCode(n.attr('to', 'int'));
    return to && FLOATS.has(to) ? { dtype: to, dims: ts[0]!.dims, values: ts[0]!.toFloat32() } : undefined;
  }
  const op = BINARY[n.opType];
  if (!op || ts.length !== 2 || ts[0]!.dtype !== ts[1]!.dtype) return undefined;
  const [a, b] = [ts[0]!.toFloat32(), ts[1]!.toFloat32()];
  if (a.length !== b.length && a.length !== 1 && b.length !== 1) return undefined;
  const len = Math.max(a.length, b.length);
  const dims = a.length >= b.length ? ts[0]!.dims : ts[1]!.dims;
  const values = Float32Array.from({ length: len }, (_, i) => op(a[a.length === 1 ? 0 : i], b[b.length === 1 ? 0 : i]));
  return { dtype: ts[0]!.dtype, dims, values };
}

/** Fold every such op (repeatedly, so Add(Cast(w), 1) folds whole); returns how many nodes were folded. */
export function foldVectorConstants(model: Model): number {
  const g = model.graph;
  const rw = new Rewriter(g);
  let count = 0;
  for (let changed = true; changed; ) {
    changed = false;
    for (const n of [...g.nodes]) {
      const out = n.output(0);
      if (g.isOutput(out)) continue;
      const f = folded(n);
      if (!f) continue;
      rw.redirect(out, rw.init(g.uniqueName(`${out.name || n.opType}_folded`), encodeFloats(f.dtype, f.dims, f.values)));
      g.removeNode(n);
      count++;
      changed = true;
    }
  }
  return count;
}
