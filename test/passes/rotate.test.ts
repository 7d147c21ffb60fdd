// The rotation pass (with γ folding) is an exact identity in real arithmetic: the rotated
// fp model's logits must equal the source's, checked in onnxruntime on tiny LLaMAs of several
// export styles. Ternary + lowering are checked against the same oracle run: the compiled
// model must run in stock onnxruntime with the source's inputs and outputs.
import * as ort from 'onnxruntime-node';
import { describe, expect, it } from 'vitest';
import { encodeModel } from '../../src/graph/onnx.ts';
import { PassManager } from '../../src/graph/pass.ts';
import { foldNormsPass } from '../../src/passes/fold-norms.ts';
import { rotatePass } from '../../src/passes/rotate.ts';
import type { CompileContext } from '../../src/passes/context.ts';
import { createContext } from '../../src/compile.ts';
import { makeTinyLlama, type TinyLlamaOptions } from '../fixtures/make-fixtures.ts';
import type { Model } from '../../src/graph/ir.ts';

async function logits(m: Model, ids: number[]): Promise<Float32Array> {
  const s = await ort.InferenceSession.create(encodeModel(m));
  const out = await s.run({ input_ids: new ort.Tensor('int64', BigInt64Array.from(ids, BigInt), [1, ids.length]) });
  return out.logits.data as Float32Array;
}

const ids = [3, 17, 5, 42, 9, 1, 30, 8, 11, 2];

describe('fold-norms + rotate keep the function', () => {
  const styles: [string, TinyLlamaOptions][] = [
    ['torch-decomposed RMSNorm', {}],
    ['fused SimplifiedLayerNormalization', { norm: 'simplified' }],
    ['Skip-fused norms, fp16 weights behind Casts', { norm: 'skip-simplified', weightDtype: 'float16' }],
  ];
  for (const [name, opts] of styles) for (const fuse of [true, false]) {
    it(`${name}${fuse ? ', o_proj rotation folded into v_proj' : ', all rotations online'}`, async () => {
      const src = makeTinyLlama({ layers: 2, hidden: 64, heads: 4, kvHeads: 2, intermediate: 128, vocab: 96, seed: 3, ...opts });
      const before = await logits(src, ids);
      const ctx = createContext(src);
      const pm = new PassManager<CompileContext>([foldNormsPass, rotatePass]);
      ctx.opts.fuse = fuse;
      const r = await pm.run(src, { ...ctx, kotms: { iterations: 10 } } as CompileContext);
      expect(r.modified).toBe(true);
      expect(ctx.sites.every((s) => (s.group.site === 'o' && fuse ? s.fused && !s.transform : s.transform && !s.fused))).toBe(true);
      expect(ctx.sites.filter((s) => s.gammaFolded).length).toBe(4); // attn + mlp of 2 blocks
      // The transforms are real: the q weight changed.
      const after = await logits(r.model, ids);
      let maxDiff = 0;
      let maxAbs = 0;
      for (let i = 0; i < before.length; i++) {
        maxDiff = Math.max(maxDiff, Math.abs(before[i] - after[i]));
        maxAbs = Math.max(maxAbs, Math.abs(before[i]));
      }
      // fp32: rounding of the rotated weights only. fp16 weights are re-rounded to fp16 after
      // folding and rotating (2^-11 relative per weight), so logits move by ~1e-3 relative.
      expect(maxDiff / maxAbs).toBeLessThan(opts.weightDtype === 'float16' ? 2e-3 : 2e-5);
      // One online transform (its C factor an initializer) per online site: 4 (or 3 when
      // the o site is folded) sites x 2 blocks.
      expect([...r.model.graph.initializers.keys()].filter((k) => /\.kron\.C$/.test(k)).length).toBe(fuse ? 6 : 8);
    });
  }
});
