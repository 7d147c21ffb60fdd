// Biases that onnxruntime's optimizer folds into FastGelu / BiasGelu / Skip(Simplified)LayerNormalization
// are taken out before recognition (unfuse-bias.ts): the same function under onnxruntime, and
// the linears are found with their biases.
import * as ort from 'onnxruntime-node';
import { describe, expect, it } from 'vitest';
import type { Model } from '../../src/graph/ir.ts';
import { encodeModel } from '../../src/graph/onnx.ts';
import { constTensor, recognize } from '../../src/graph/recognize.ts';
import { unfuseBiases } from '../../src/passes/unfuse-bias.ts';
import { makeTinyLlama, type TinyLlamaOptions } from '../fixtures/make-fixtures.ts';
import { relErr } from '../runtime/compare.ts';

async function logits(m: Model): Promise<Float32Array> {
  const s = await ort.InferenceSession.create(encodeModel(m));
  const ids = BigInt64Array.from([5n, 9n, 200n, 17n, 3n, 64n]);
  const out = await s.run({ input_ids: new ort.Tensor('int64', ids, [1, ids.length]) });
  await s.release();
  return out.logits.data as Float32Array;
}

/** Fold each bias Add that feeds one of `ops` into that op's bias input, as onnxruntime's optimizer does. */
function fuseBiases(m: Model, ops: Record<string, { bias: number; as: string }>): number {
  let n = 0;
  for (const node of [...m.graph.nodes]) {
    const f = ops[node.opType];
    const add = node.input(0)?.producer();
    if (!f || add?.opType !== 'Add') continue;
    const bias = add.inputs.find((v) => constTensor(v));
    const x = add.inputs.find((v) => !constTensor(v));
    if (!bias || !x || node.input(0)!.consumers().length !== 1) continue;
    node.setInput(0, x);
    node.setInput(f.bias, bias);
    node.opType = f.as;
    node.domain = 'com.microsoft';
    n++;
  }
  m.graph.removeDeadNodes();
  return n;
}

describe('unfuseBiases', () => {
  const cases: [string, TinyLlamaOptions, Record<string, { bias: number; as: string }>][] = [
    ['FastGelu(x, b) of an ungated MLP', { mlp: 'ungated', activation: 'gelu-tanh', linear: 'matmul-bias', norm: 'layernorm', kvHeads: 4, seed: 41 }, { FastGelu: { bias: 1, as: 'FastGelu' } }],
    ['BiasGelu(x, b) of an ungated MLP', { mlp: 'ungated', activation: 'gelu', linear: 'matmul-bias', norm: 'layernorm', kvHeads: 4, seed: 42 }, { Gelu: { bias: 1, as: 'BiasGelu' } }],
    ['SkipSimplifiedLayerNormalization(x, skip, γ, b)', { norm: 'skip-simplified', linear: 'matmul-bias', seed: 43 }, { SkipSimplifiedLayerNormalization: { bias: 3, as: 'SkipSimplifiedLayerNormalization' } }],
  ];
  for (const [what, opts, ops] of cases) {
    it(`${what}: same function, the linears keep their biases`, async () => {
      const m = makeTinyLlama(opts);
      const want = await logits(m);
      expect(fuseBiases(m, ops)).toBeGreaterThan(0);
      expect(relErr(await logits(m), want)).toBeLessThan(1e-6);
      const fusedCount = unfuseBiases(m);
      expect(fusedCount).toBeGreaterThan(0);
      expect(relErr(await logits(m), want)).toBeLessThan(1e-6);
      const s = recognize(m);
      expect(s.linears.filter((l) => l.role !== 'lm_head').every((l) => l.bias)).toBe(true);
    });
  }
});
