// Refuse weights that are not finite: NaN or ±Inf in a linear, norm or embedding would
// silently poison every later pass (Hessians, fits, clip searches).
import { UserError } from '../errors.ts';
import { definePass } from '../graph/pass.ts';
import { constTensor, type TransformerStructure } from '../graph/recognize.ts';
import type { Value } from '../graph/ir.ts';
import type { CompileContext } from './context.ts';

function firstNonFinite(v: Value | undefined): number {
  const t = constTensor(v);
  if (!t) return -1;
  const a = t.toFloat32();
  for (let i = 0; i < a.length; i++) if (!Number.isFinite(a[i])) return i;
  return -1;
}

function checkWeights(s: TransformerStructure): void {
  const named: [string, Value | undefined][] = [
    ['embedding', s.embedding.table],
    ...s.linears.map((l): [string, Value | undefined] => [`${l.block! >= 0 ? `block ${l.block} ` : ''}${l.role} weight ${l.weight.name}`, l.weight]),
    ...s.linears.filter((l) => l.bias).map((l): [string, Value | undefined] => [`${l.role} bias ${l.bias!.name}`, l.bias]),
    ...s.norms.map((n): [string, Value | undefined] => [`norm γ ${n.gamma?.name ?? ''}`, n.gamma]),
  ];
  for (const [what, v] of named) {
    const i = firstNonFinite(v);
    if (i >= 0) throw new UserError(`${what} has a non-finite value (NaN or Inf) at flat index ${i}`);
  }
}

export const checkWeightsPass = definePass<CompileContext>({
  name: 'check-weights',
  run(model, ctx) {
    checkWeights(ctx.structure);
    return { model, modified: false };
  },
});
