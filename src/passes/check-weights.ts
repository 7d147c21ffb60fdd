// Refuse weights that are not finite: NaN or ±Inf in a linear, norm or embedding would
// silently poison every later pass (Hessians, fits, clip searches). Values beyond float16's
// range are refused too: the artifact stores embeddings, scales and dense weights as
// float16, where they would become ±Inf (and the compiled model's outputs NaN).
import { UserError } from '../errors.ts';
import { definePass } from '../graph/pass.ts';
import { constTensor, type TransformerStructure } from '../graph/recognize.ts';
import type { Value } from '../graph/ir.ts';
import type { CompileContext } from './context.ts';

/** Largest finite float16. */
export const FLOAT16_MAX = 65504;

/** The first value that is not finite or lies beyond float16's range, with its index; undefined when all are fine. */
function firstUnstorable(v: Value | undefined): { i: number; x: number } | undefined {
  const t = constTensor(v);
  if (!t) return undefined;
  const a = t.toFloat32();
  for (let i = 0; i < a.length; i++) if (!(Math.abs(a[i]) <= FLOAT16_MAX)) return { i, x: a[i] };
  return undefined;
}

function checkWeights(s: TransformerStructure): void {
  const named: [string, Value | undefined][] = [
    ['embedding', s.embedding.table],
    ...s.linears.map((l): [string, Value | undefined] => [`${l.block! >= 0 ? `block ${l.block} ` : ''}${l.role} weight ${l.weight.name}`, l.weight]),
    ...s.linears.filter((l) => l.bias).map((l): [string, Value | undefined] => [`${l.role} bias ${l.bias!.name}`, l.bias]),
    ...s.norms.map((n): [string, Value | undefined] => [`norm γ ${n.gamma?.name ?? ''}`, n.gamma]),
  ];
  for (const [what, v] of named) {
    const bad = firstUnstorable(v);
    if (!bad) continue;
    if (!Number.isFinite(bad.x)) throw new UserError(`${what} has a non-finite value (NaN or Inf) at flat index ${bad.i}`);
    throw new UserError(`${what} has the value ${bad.x} at flat index ${bad.i}, beyond float16's range (±${FLOAT16_MAX}) in which twlac stores weights`);
  }
}

export const checkWeightsPass = definePass<CompileContext>({
  name: 'check-weights',
  run(model, ctx) {
    checkWeights(ctx.structure);
    return { model, modified: false };
  },
});
