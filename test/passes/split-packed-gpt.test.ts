// GPT-2's and GPT-NeoX's packed qkv cut before recognition (split-packed.ts): GPT-2's c_attn
// cut by a Split on the feature axis, GPT-NeoX's query_key_value viewed as [heads, 3·headDim]
// and cut by Slices (or, transposed, by one Split): the cut model computes the packed one's
// function under onnxruntime, and partial RoPE's Slices of a head are not taken for a packing.
// Falcon's query_key_value packed per kv group ([q…, k, v] slots of a head each, cut by Slices and
// Gathers on the slot axis), in the TorchScript exports of test/fixtures/torch-families (made by
// scripts/families/export-stablelm-falcon.py): multi-query (one kv group) and two kv groups.
import * as ort from 'onnxruntime-node';
import { describe, expect, it } from 'vitest';
import { join } from 'node:path';
import { encodeModel, loadModel } from '../../src/graph/onnx.ts';
import type { Model } from '../../src/graph/ir.ts';
import { recognize } from '../../src/graph/recognize.ts';
import { splitPackedLinears } from '../../src/passes/split-packed.ts';
import { GPT_FAMILY_VARIANTS, makeTinyLlama } from '../fixtures/make-fixtures.ts';
import { relErr } from '../runtime/compare.ts';

async function logits(m: Model, ids = BigInt64Array.from([5n, 9n, 200n, 17n, 3n, 64n])): Promise<Float32Array> {
  const s = await ort.InferenceSession.create(encodeModel(m));
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

  const falcon = (name: string) => loadModel(join(import.meta.dirname, '../fixtures/torch-families', `${name}.onnx`));
  for (const [name, kvHeads] of [['falcon-mq', 1], ['falcon-gqa', 2]] as const) {
    it(`${name}: query_key_value packed per kv group (${kvHeads} kv head(s)) becomes q, k, v; same function`, async () => {
      expect(() => recognize(falcon(name))).toThrow(/packed linear/);
      const m = falcon(name);
      const ids = BigInt64Array.from([5n, 9n, 60n, 17n, 3n, 41n, 22n]);
      const before = await logits(falcon(name), ids);
      expect(splitPackedLinears(m)).toBe(2);
      const s = recognize(m);
      expect([s.config.heads, s.config.kvHeads, s.config.headDim]).toEqual([4, kvHeads, 8]);
      for (const b of s.blocks) expect([b.q, b.k, b.v].map((l) => l.outFeatures)).toEqual([32, 8 * kvHeads, 8 * kvHeads]);
      expect(relErr(await logits(m, ids), before)).toBeLessThan(1e-6);
    });
  }
});
