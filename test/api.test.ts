// The library API other ONNX toolchains use: compile an in-memory model and run it.
import * as ort from 'onnxruntime-node';
import { describe, expect, it } from 'vitest';
import { compile, encodeModel, lowerOrtPass, recognize } from '../src/index.ts';
import { makeTinyLlama } from './fixtures/make-fixtures.ts';

describe('library API', () => {
  it('compiles an in-memory model (rtn-ternary) that onnxruntime runs with the same interface', async () => {
    const m = makeTinyLlama({ layers: 2, hidden: 64, heads: 4, kvHeads: 2, intermediate: 128, vocab: 80, seed: 9 });
    const inputs = m.graph.inputs.map((v) => v.name);
    const outputs = m.graph.outputs.map((v) => v.name);
    const blocks = recognize(m).blocks.length;
    const r = await compile(m, { weights: 'rtn-ternary' });
    expect(r.timings.map((t) => t.pass)).toEqual(['check-model', 'check-weights', 'ternary', 'storage-precision', lowerOrtPass.name]);
    expect(r.model.graph.nodes.filter((n) => n.opType === 'MatMulNBits').length).toBe(7 * blocks);
    expect(r.model.graph.inputs.map((v) => v.name)).toEqual(inputs);
    expect(r.model.graph.outputs.map((v) => v.name)).toEqual(outputs);
    const s = await ort.InferenceSession.create(encodeModel(r.model));
    const out = await s.run({ input_ids: new ort.Tensor('int64', BigInt64Array.from([1n, 2n, 3n]), [1, 3]) });
    expect(out.logits.dims).toEqual([1, 3, 80]);
  });
});
