// GPT-2's and GPT-NeoX's packed qkv cut before recognition (split-packed.ts): GPT-2's c_attn
// cut by a Split on the feature axis, GPT-NeoX's query_key_value viewed as [heads, 3·headDim]
// and cut by Slices (or, transposed, by one Split): the cut model computes the packed one's
// function under onnxruntime, and partial RoPE's Slices of a head are not taken for a packing.
import * as ort from 'onnxruntime-node';
import { describe, expect, it } from 'vitest';
import { encodeModel } from '../../src/graph/onnx.ts';
import type { Model } from '../../src/graph/ir.ts';
import { recognize } from '../../src/graph/recognize.ts';
import { splitPackedLinears } from '../../src/passes/split-packed.ts';
import { GPT_FAMILY_VARIANTS, makeTinyLlama } from '../fixtures/make-fixtures.ts';
import { relErr } from '../runtime/compare.ts';

async function logits(m: Model): Promise<Float32Array> {
  const s = await ort.InferenceSession.create(encodeModel(m));
  const ids = BigInt64Array.from([5n, 9n, 200n, 17n, 3n, 64n]);
  const out = await s.run({ input_ids: new ort.Tensor('int64', ids, [1, ids.length]) });
  await s.release();
  return out.logits.data as Float32Array;
}

describe('splitPackedLinears on GPT-style packed qkv', () => {
  for (const name of ['gpt2', 'neox', 'neox-split'] as const) {
    it(`${name}: one packed linear a block becomes q, k, v of one head each row block; same function`, async () => {
      const opts = GPT_FAMILY_VARIANTS[name];
      expect(() => recognize(makeTinyLlama(opts))).toThrow(/packed linear/);
      const m = makeTinyLlama(opts);
      const before = await logits(makeTinyLlama(opts));
      expect(splitPackedLinears(m)).toBe(2);
      const s = recognize(m);
      for (const b of s.blocks) expect([b.q, b.k, b.v].map((l) => [l.outFeatures, l.inFeatures])).toEqual([[64, 64], [64, 64], [64, 64]]);
      expect(s.config.headDim).toBe(16);
      // Rows copied bit for bit: only the summation order of the bias Add may differ.
      expect(relErr(await logits(m), before)).toBeLessThan(1e-6);
    });
  }

  it('a per-head Reshape cut by partial RoPE (Slices [0, r) and [r, d)) is not a packing', () => {
    const m = makeTinyLlama({ ...GPT_FAMILY_VARIANTS.stablelm, rotaryDim: 8 });
    expect(splitPackedLinears(m)).toBe(0);
    expect(recognize(m).rope.rotaryDim).toBe(8);
  });
});
