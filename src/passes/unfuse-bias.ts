// onnxruntime's transformer optimizer folds a linear's bias into the op after it:
//   FastGelu(x, b)                       (com.microsoft, tanh GELU of x + b)
//   BiasGelu(x, b)                       (com.microsoft, erf GELU of x + b)
//   SkipLayerNormalization(x, s, γ, β, b) and SkipSimplifiedLayerNormalization(x, s, γ, b)
//                                        (the residual sum x + s + b, normalised)
// which hides the bias from the linear (a MatMul whose output goes straight into the fused op).
// Before recognition each becomes the plain op on Add(x, b): the same function, with the bias
// where recognition finds linear biases (patterns/linear.ts).
import type { Model, Value } from '../graph/ir.ts';
import { Rewriter } from '../graph/rewriter.ts';

/** Which input holds the bias, and the op that remains once it is taken out. */
const FUSED: Record<string, { bias: number; becomes: string }> = {
  FastGelu: { bias: 1, becomes: 'FastGelu' },
  BiasGelu: { bias: 1, becomes: 'Gelu' },
  SkipLayerNormalization: { bias: 4, becomes: 'SkipLayerNormalization' },
  SkipSimplifiedLayerNormalization: { bias: 3, becomes: 'SkipSimplifiedLayerNormalization' },
};

/** Take the bias out of every fused op; returns how many were rewritten. */
export function unfuseBiases(model: Model): number {
  const rw = new Rewriter(model.graph);
  let count = 0;
  for (const n of [...model.graph.nodes]) {
    const f = FUSED[n.opType];
    const bias: Value | undefined = f && n.domain === 'com.microsoft' ? n.input(f.bias) : undefined;
    if (!f || !bias || !n.input(0)) continue;
    const x = rw.opBefore(n, 'Add', [n.input(0)!, bias]);
    // The bias input is the last one each op has: the new node simply has one input fewer.
    const inputs = [x, ...n.inputs.slice(1, f.bias)];
    rw.replace(n, f.becomes, inputs, Object.fromEntries(n.attributes), 'com.microsoft');
    count++;
  }
  return count;
}
