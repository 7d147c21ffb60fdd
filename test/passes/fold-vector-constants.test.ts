import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, describe, expect, it } from 'vitest';
import { readArtifact } from '../../src/artifact/weights.ts';
import { compileToDir } from '../../src/compile.ts';
import { forward, openModel } from '../../src/eval/ort-session.ts';
import { saveModel } from '../../src/graph/onnx.ts';
import { constTensor } from '../../src/graph/patterns/linear.ts';
import { recognize } from '../../src/graph/recognize.ts';
import { FAMILY_VARIANTS, makeTinyLlama } from '../../src/graph/synthetic-llama.ts';
import { foldVectorConstants } from '../../src/passes/fold-vector-constants.ts';
import { referenceLogits } from '../../src/runtime/reference.ts';
import { relErr } from '../runtime/compare.ts';

const root = mkdtempSync(join(tmpdir(), 'twlac-fold-vec-'));
afterAll(() => rmSync(root, { recursive: true, force: true }));

describe('foldVectorConstants', () => {
  const opts = { ...FAMILY_VARIANTS.gemma2, unitOffsetNorms: true };

  it("folds Gemma's unfolded (1 + w) norm weights into constants that recognition reads as γ, and nothing else", () => {
    const m = makeTinyLlama(opts);
    const nodes = m.graph.nodes.length;
    // Before: the pre-norms' γ is not a constant, so their outputs do not reach the linears through a recognised norm.
    expect(() => recognize(makeTinyLlama(opts))).toThrow();
    // 9 norms of 2 sandwich blocks and the final norm, each Cast then Add
    expect(foldVectorConstants(m)).toBe(2 * 9);
    expect(m.graph.nodes.length).toBe(nodes - 18);
    const s = recognize(m);
    const plain = recognize(makeTinyLlama(FAMILY_VARIANTS.gemma2));
    const gammas = (x: typeof s) => x.norms.map((n) => Array.from(constTensor(n.gamma)!.toFloat32()));
    // (γ − 1) + 1 in float32 is γ up to one rounding
    gammas(s).forEach((g, i) => g.forEach((v, j) => expect(Math.abs(v - gammas(plain)[i][j])).toBeLessThan(1e-6)));
  });

  it('the compiled model matches ORT on out/model.onnx in the reference runtime', async () => {
    const src = join(root, 'model.onnx');
    saveModel(makeTinyLlama(opts), src);
    const out = join(root, 'out');
    await compileToDir(src, out, { weights: 'rtn-ternary' });
    const ids = [3, 17, 42, 99, 5, 8, 200, 13, 77, 1];
    const ort = await openModel(join(out, 'model.onnx'));
    try {
      const { logits } = await forward(ort, ids, 1, ids.length);
      expect(relErr(referenceLogits(readArtifact(out), ids), logits)).toBeLessThan(1e-5);
    } finally {
      await ort.session.release();
    }
  });
});
