// Packed linears cut before recognition: the cut model computes the packed one's function
// (onnxruntime on both), and the packed fixture equals the unpacked one drawn from the same seed.
import * as ort from 'onnxruntime-node';
import { describe, expect, it } from 'vitest';
import { encodeModel } from '../../src/graph/onnx.ts';
import type { Model } from '../../src/graph/ir.ts';
import { recognize } from '../../src/graph/recognize.ts';
import { splitPackedLinears } from '../../src/passes/split-packed.ts';
import { makeTinyLlama } from '../fixtures/make-fixtures.ts';

async function logits(m: Model): Promise<Float32Array> {
  const s = await ort.InferenceSession.create(encodeModel(m));
  const ids = BigInt64Array.from([5n, 9n, 200n, 17n, 3n, 64n]);
  const out = await s.run({ input_ids: new ort.Tensor('int64', ids, [1, ids.length]) });
  await s.release();
  return out.logits.data as Float32Array;
}

function maxRel(a: Float32Array, b: Float32Array): number {
  let d = 0, m = 0;
  for (let i = 0; i < a.length; i++) {
    d = Math.max(d, Math.abs(a[i] - b[i]));
    m = Math.max(m, Math.abs(b[i]));
  }
  return d / m;
}

describe('splitPackedLinears', () => {
  for (const weightDtype of ['float32', 'float16'] as const) {
    it(`cuts qkv (three Slices) and gate_up (a Split) into separate linears, same function (${weightDtype} weights, biases)`, async () => {
      const opts = { packed: true, linear: 'matmul-bias', weightDtype, seed: 17 } as const;
      expect(() => recognize(makeTinyLlama(opts))).toThrow(/packed linear|could not find the MLP/);
      const m = makeTinyLlama(opts);
      const before = await logits(makeTinyLlama(opts));
      const count = (op: string) => m.graph.nodes.filter((n) => n.opType === op).length;
      const slices = count('Slice');
      expect(splitPackedLinears(m)).toBe(4);
      expect([count('Split'), slices - count('Slice')]).toEqual([0, 6]);
      const s = recognize(m);
      expect(s.blocks.map((b) => [b.q, b.k, b.v, b.gate!, b.up].map((l) => l.outFeatures))).toEqual([[64, 32, 32, 128, 128], [64, 32, 32, 128, 128]]);
      expect(maxRel(await logits(m), before)).toBeLessThan(1e-6);
      // the same weights unpacked (same seed, same draw order)
      expect(maxRel(await logits(makeTinyLlama({ ...opts, packed: false })), before)).toBeLessThan(1e-5);
    });
  }

  it('leaves a linear alone when anything but a feature-axis cut reads it', () => {
    const m = makeTinyLlama();
    expect(splitPackedLinears(m)).toBe(0);
  });
});
