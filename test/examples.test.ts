// examples/rotate-with-check.ts, the guide's example (docs/api.md): twlac's fold-norms and
// rotate run alone with the example's own passes between them. Oracle: onnxruntime on the
// source model (the rotation keeps the function), and the example's check must catch a pass
// that is not a rotation.
import * as ort from 'onnxruntime-node';
import { describe, expect, it } from 'vitest';
import { encodeModel } from '../src/graph/onnx.ts';
import type { Model } from '../src/graph/ir.ts';
import { makeTinyLlama } from '../src/graph/synthetic-llama.ts';
import { PassManager, createContext, definePass, foldNormsPass, rotatePass, weightRows } from '../src/passes/index.ts';
import { setLinearWeight } from '../src/passes/weights.ts';
import { checkNorms, recordNorms, rotateWithCheck, type Ctx } from '../examples/rotate-with-check.ts';

async function logits(m: Model, ids: number[]): Promise<Float32Array> {
  const s = await ort.InferenceSession.create(encodeModel(m));
  const out = await s.run({ input_ids: new ort.Tensor('int64', BigInt64Array.from(ids, BigInt), [1, ids.length]) });
  return out.logits.data as Float32Array;
}

const tiny = () => makeTinyLlama({ layers: 2, hidden: 64, heads: 4, kvHeads: 2, intermediate: 128, vocab: 96, seed: 11 });
const ids = [4, 8, 15, 16, 23, 42, 7];

describe('examples/rotate-with-check.ts', () => {
  it('runs fold-norms → record-norms → rotate → check-norms and keeps the logits', async () => {
    const before = await logits(tiny(), ids);
    const r = await rotateWithCheck(tiny());
    expect(r.passes).toEqual(['fold-norms', 'record-norms', 'rotate', 'check-norms']);
    // Online transforms were inserted: the graph is not the source's.
    expect([...r.model.graph.initializers.keys()].some((k) => /\.kron\.C$/.test(k))).toBe(true);
    const after = await logits(r.model, ids);
    let diff = 0;
    let scale = 0;
    for (let i = 0; i < before.length; i++) {
      diff = Math.max(diff, Math.abs(before[i] - after[i]));
      scale = Math.max(scale, Math.abs(before[i]));
    }
    expect(diff / scale).toBeLessThan(2e-5);
  });

  it("check-norms names itself when a pass before it is not a rotation", async () => {
    const scaleOne = definePass<Ctx>({
      name: 'scale-one-linear',
      run(model, ctx) {
        const [linear] = ctx.linears.keys();
        setLinearWeight(linear, weightRows(linear).map((w) => w * 1.01));
        return { model, modified: true };
      },
    });
    const m = tiny();
    const pm = new PassManager<Ctx>([foldNormsPass, recordNorms, rotatePass, scaleOne, checkNorms()]);
    await expect(pm.run(m, createContext(m))).rejects.toThrow(/pass check-norms: postcondition failed: blocks\.0\.\w+: ‖W‖_F changed by 1\.00e-2/);
  });
});
