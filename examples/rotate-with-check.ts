// twlac's passes inside another toolchain: fold the RMSNorm γ into the linears, rotate
// (KOTMS), and nothing else, with two passes of our own around the rotation. A rotation
// W' = W·Kᵀ with orthogonal K keeps every weight's Frobenius norm, so `recordNorms` notes
// ‖W‖_F after fold-norms and `checkNorms` refuses the result if rotate changed one by more
// than `tolerance` (relative). The model still computes the same function; it is not quantised.
//
//   npx tsx examples/rotate-with-check.ts model.onnx rotated.onnx
import { pathToFileURL } from 'node:url';
import { loadModel, saveModel, type Model } from 'twlac';
import { PassManager, createContext, definePass, foldNormsPass, rotatePass, weightRows, type CompileContext, type Pass } from 'twlac/passes';

/** The shared context, plus what our passes hand each other. */
export type Ctx = CompileContext & { normsBefore?: Map<string, number> };

/** ‖W‖_F of every linear that twlac would quantise, by id (`blocks.3.q_proj`, ...). */
export function weightNorms(ctx: CompileContext): Map<string, number> {
  const norms = new Map<string, number>();
  for (const [linear, state] of ctx.linears) {
    let s = 0;
    for (const w of weightRows(linear)) s += w * w;
    norms.set(state.id, Math.sqrt(s));
  }
  return norms;
}

export const recordNorms = definePass<Ctx>({
  name: 'record-norms',
  run(model, ctx) {
    ctx.normsBefore = weightNorms(ctx);
    return { model, modified: false };
  },
});

export function checkNorms(tolerance = 1e-4): Pass<Ctx> {
  return definePass<Ctx>({
    name: 'check-norms',
    run: (model) => ({ model, modified: false }),
    ensures(_model, ctx) {
      for (const [id, after] of weightNorms(ctx)) {
        const before = ctx.normsBefore?.get(id);
        if (before === undefined) return `no norm recorded for ${id}`;
        const rel = Math.abs(after - before) / before;
        if (rel > tolerance) return `${id}: ‖W‖_F changed by ${rel.toExponential(2)} (${before} → ${after})`;
      }
      return undefined;
    },
  });
}

/** fold-norms → record-norms → rotate → check-norms; returns the rewritten model and the pass order. */
export async function rotateWithCheck(model: Model): Promise<{ model: Model; passes: string[] }> {
  const pm = new PassManager<Ctx>([foldNormsPass, recordNorms, rotatePass, checkNorms()]);
  const r = await pm.run(model, createContext(model));
  return { model: r.model, passes: pm.timings.map((t) => t.pass) };
}

if (import.meta.url === pathToFileURL(process.argv[1] ?? '').href) {
  const [input, output] = process.argv.slice(2);
  if (!input || !output) throw new Error('usage: rotate-with-check.ts MODEL.onnx OUT.onnx');
  const r = await rotateWithCheck(loadModel(input));
  saveModel(r.model, output);
  console.log(`${r.passes.join(' → ')}: wrote ${output}`);
}
