// Lowering for stock onnxruntime: each ternary linear becomes com.microsoft::MatMulNBits
// (bits = 2) over its recorded TernaryWeights (an order-2 linear: two, added); the dense weights, transposes and casts that
// fed the old MatMul/Gemm become dead and are removed. Online transforms and activation
// quantisers are already standard ops in the graph (inserted by their passes).
import { UserError } from '../errors.ts';
import { definePass } from '../graph/pass.ts';
import type { Linear } from '../graph/recognize.ts';
import { Rewriter } from '../graph/rewriter.ts';
import { lowerTernaryLinear } from '../lower/ternary-linear.ts';
import type { CompileContext } from './context.ts';
import { quantizedLinears } from './context.ts';

/** Element type of the activation a linear multiplies. */
export function activationDtype(l: Linear): 'float32' | 'float16' {
  const known = l.input.type?.dtype;
  if (known === 'float32' || known === 'float16') return known;
  const cast = [...l.weightPath].reverse().find((n) => n.opType === 'Cast');
  const to = cast?.attr('to', 'int');
  if (to === 1) return 'float32';
  if (to === 10) return 'float16';
  if (l.weightDtype === 'float16') return 'float16';
  if (l.weightDtype === 'float32') return 'float32';
  throw new UserError(`linear ${l.weight.name}: activations of type ${known ?? l.weightDtype} are not supported`);
}

export const lowerOrtPass = definePass<CompileContext>({
  name: 'lower-ort',
  run(model, ctx) {
    const rw = new Rewriter(model.graph);
    let modified = false;
    for (const l of quantizedLinears(ctx.structure)) {
      const st = ctx.linears.get(l)!;
      if (!st.ternary) continue;
      if (l.op === 'Gemm' && l.bias && l.beta !== 1) throw new UserError(`linear ${st.id}: Gemm with beta ${l.beta} is not supported`);
      const bytes = lowerTernaryLinear(
        rw,
        { node: l.node, input: l.node.input(0)!, bias: l.op === 'Gemm' ? l.bias : undefined, rows: l.outFeatures, cols: l.inFeatures, actDtype: activationDtype(l) },
        st.ternary,
        st.id,
        st.order2,
      );
      st.stats = { ...st.stats, onnxBytes: bytes };
      modified = true;
    }
    if (modified) {
      model.requireOpset('com.microsoft', 1);
      model.graph.removeDeadNodes();
    }
    return { model, modified };
  },
});
