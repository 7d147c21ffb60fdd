// One compile, one model: weights.bin stores the embedding table and every dense (not
// ternary) linear in fp16 (artifact/build.ts), so model.onnx must hold the same values.
// Each such tensor is rounded to fp16 in place, keeping its element type:  W ← fp16(W).
// Without this, ORT multiplies fp32 weights while the kernels multiply their fp16 copies,
// and a low-bit activation quantiser downstream turns that last-bit difference into a
// different code (logits relL2 0.15 between the two at 4-bit sites).
import { definePass } from '../graph/pass.ts';
import { constTensor, weightRows } from '../graph/recognize.ts';
import { roundToHalf } from '../graph/tensor.ts';
import type { CompileContext } from './context.ts';
import { encodeFloats, setLinearWeight } from './weights.ts';

const roundAll = (a: ArrayLike<number>): Float32Array => Float32Array.from(a, roundToHalf);

function differs(a: ArrayLike<number>, b: ArrayLike<number>): boolean {
  for (let i = 0; i < a.length; i++) if (a[i] !== b[i]) return true;
  return false;
}

export const storagePrecisionPass = definePass<CompileContext>({
  name: 'storage-precision',
  run(model, ctx) {
    const s = ctx.structure;
    let modified = false;
    const table = s.embedding.table;
    const t = constTensor(table);
    if (t && t.dtype !== 'float16') {
      const v = t.toFloat32();
      const r = roundAll(v);
      if (differs(v, r)) {
        if (!table.constValue) throw new Error(`storage-precision: the embedding table ${table.name} is not an initializer`);
        table.constValue = encodeFloats(t.dtype, t.dims, r);
        modified = true;
      }
    }
    for (const l of s.linears) {
      if (ctx.linears.get(l)?.ternary) continue;
      const W = weightRows(l);
      const r = roundAll(W);
      if (!differs(W, r)) continue;
      setLinearWeight(l, r);
      modified = true;
    }
    return { model, modified };
  },
});
