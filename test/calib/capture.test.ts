// Calibration statistics computed inside onnxruntime against a float64 oracle: the Gram
// matrix of each site equals Σ x xᵀ over the rows the same run returns. Also on the real
// fp16 export with an online transform in front of the site (values without types).
import { existsSync } from 'node:fs';
import { describe, expect, it } from 'vitest';
import { captureSites } from '../../src/calib/capture.ts';
import { loadModel } from '../../src/graph/onnx.ts';
import { recognize } from '../../src/graph/recognize.ts';
import { Rewriter } from '../../src/graph/rewriter.ts';
import { emitKronTransform } from '../../src/lower/kron-transform.ts';
import { randomOrthogonal, seededRandom } from '../../src/quant/kotms.ts';
import { makeTinyLlama } from '../fixtures/make-fixtures.ts';

const segs = (n: number, seq: number, vocab: number) => Array.from({ length: n }, (_, i) => Int32Array.from({ length: seq }, (_, t) => (i * 31 + t * 7) % vocab));

describe('captureSites', () => {
  it('Gram matrices equal Σ x xᵀ of the captured rows (float64 oracle)', async () => {
    const m = makeTinyLlama({ layers: 2, hidden: 32, heads: 4, kvHeads: 2, intermediate: 64, vocab: 50, seed: 5 });
    const s = recognize(m);
    const sites = s.inputGroups.filter((g) => g.site !== 'head').map((g, i) => ({ id: `s${i}`, value: g.linears[0].node.input(0)!, width: g.linears[0].inFeatures }));
    const seq = 12;
    const stats = await captureSites(m, sites, segs(3, seq, 50), { batch: 2, sampleRows: 3 * seq });
    for (const site of sites) {
      const st = stats.get(site.id)!;
      expect(st.tokens).toBe(3 * seq);
      expect(st.sampleRows).toBe(3 * seq);
      const K = site.width;
      let maxRel = 0;
      for (let i = 0; i < K; i++) {
        for (let j = 0; j < K; j++) {
          let g = 0;
          for (let t = 0; t < st.sampleRows; t++) g += st.samples![t * K + i] * st.samples![t * K + j];
          maxRel = Math.max(maxRel, Math.abs(g - st.gram[i * K + j]) / (Math.abs(g) + 1e-3));
        }
      }
      expect(maxRel).toBeLessThan(1e-4);
    }
  });

  const fused = '../shared/models/pydocs-llama-12m-fused-fp16/model.onnx';
  it.skipIf(!existsSync(fused))('works on fp16 activations behind an online transform (fused fp16 export)', async () => {
    const m = loadModel(fused);
    const s = recognize(m);
    const g = s.inputGroups.find((x) => x.site === 'attn' && x.block === 0)!;
    const K = g.linears[0].inFeatures;
    const rand = seededRandom(1);
    const y = emitKronTransform(new Rewriter(m.graph), g.linears[0].node, g.linears[0].node.input(0)!, { l: 8, r: 48, C: randomOrthogonal(8, rand), B: randomOrthogonal(48, rand) }, 't', 'float16');
    for (const l of g.linears) l.node.setInput(0, y);
    const stats = await captureSites(m, [{ id: 'a', value: y, width: K }], segs(2, 16, 4096));
    const st = stats.get('a')!;
    expect(st.tokens).toBe(32);
    // Symmetric with a positive diagonal: a real Gram matrix.
    for (let i = 0; i < K; i++) {
      expect(st.gram[i * K + i]).toBeGreaterThan(0);
      expect(st.gram[i * K + (K - 1 - i)]).toBeCloseTo(st.gram[(K - 1 - i) * K + i], 3);
    }
  });
});
