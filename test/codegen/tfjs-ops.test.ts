// Rows of the ONNX → TF op table (src/codegen/tfjs/ops.ts) on small graphs built with the
// graph builder: each graph runs in stock onnxruntime and, translated, in tfjs on the CPU
// backend; every output must agree. The cases are the attribute forms where ONNX and TF
// differ: negative axes and steps, computed slice bounds, Reshape's 0, Expand's two-way
// broadcast, Shape's start/end, CumSum's negative axis, Constant nodes.
import '@tensorflow/tfjs-backend-cpu';
import * as tf from '@tensorflow/tfjs-core';
import { loadGraphModel } from '@tensorflow/tfjs-converter';
import * as ort from 'onnxruntime-node';
import { describe, expect, it } from 'vitest';
import { graphModelFiles } from '../../src/codegen/tfjs/graphdef.ts';
import { translateToTf } from '../../src/codegen/tfjs/translate.ts';
import { GraphBuilder } from '../../src/graph/builder.ts';
import type { Model, Value } from '../../src/graph/ir.ts';
import { encodeModel } from '../../src/graph/onnx.ts';
import { Tensor } from '../../src/graph/tensor.ts';

await tf.setBackend('cpu');

const I64_MAX = 2 ** 63;
const SHAPE = [2, 5, 6];
const X = Float32Array.from({ length: 60 }, (_, i) => Math.sin(i * 1.7) * 3);

/** Run the graph in ORT and, translated, in tfjs; compare every output. */
async function agree(build: (b: GraphBuilder, x: Value) => Value[]): Promise<void> {
  const b = new GraphBuilder();
  const x = b.input('x', { dtype: 'float32', shape: ['a', 'b', 6] });
  const outs = build(b, x).map((v, i) => b.output(v, `y${i}`));
  const model: Model = b.model(18, [{ domain: 'com.microsoft', version: 1 }]);
  const session = await ort.InferenceSession.create(encodeModel(model));
  const want = await session.run({ x: new ort.Tensor('float32', X, SHAPE) });
  const t = translateToTf(model, () => undefined);
  const { modelJson, shards } = graphModelFiles(t.graph, t, { generatedBy: 'test', convertedBy: 'test' });
  const j = JSON.parse(modelJson);
  const data = Buffer.concat(shards.map((s) => s.bytes));
  const gm = await loadGraphModel(tf.io.fromMemory({ modelTopology: j.modelTopology, weightSpecs: j.weightsManifest[0].weights, weightData: data.buffer.slice(data.byteOffset, data.byteOffset + data.byteLength) }));
  const got = gm.execute({ x: tf.tensor(X, SHAPE) }, outs.map((_, i) => `y${i}`)) as tf.Tensor[];
  outs.forEach((_, i) => {
    const w = want[`y${i}`];
    expect(got[i].shape, `y${i} shape`).toEqual(w.dims.map(Number));
    const wv = Array.from(w.data as ArrayLike<number | bigint>, Number);
    const gv = Array.from(got[i].dataSync());
    gv.forEach((v, k) => expect(v, `y${i}[${k}]`).toBeCloseTo(wv[k], 5));
  });
  await session.release();
}

describe('ONNX → TF op translations agree with onnxruntime', () => {
  it('Slice: negative axes with steps, several non-negative axes, negative steps to the start, bounds computed from Shape', () =>
    agree((b, x) => [
      b.op('Slice', [x, b.i64('s0', [1]), b.i64('e0', [I64_MAX]), b.i64('a0', [-1]), b.i64('st0', [2])]),
      b.op('Slice', [x, b.i64('s1', [1, 1]), b.i64('e1', [2, -1]), b.i64('a1', [0, 2])]),
      b.op('Slice', [x, b.i64('s2', [-1]), b.i64('e2', [-I64_MAX]), b.i64('a2', [1]), b.i64('st2', [-2])]),
      b.op('Slice', [x, b.i64('s3', [0]), b.op('Sub', [b.op('Shape', [x], { attrs: { start: 1, end: 2 } }), b.i64('one', [1])]), b.i64('a3', [-2])]),
    ]));

  it('Unsqueeze with several negative or non-negative axes, Squeeze, Reshape with a 0 (copy the dim), Transpose', () =>
    agree((b, x) => [
      b.op('Unsqueeze', [x, b.i64('u0', [-1, -3])]),
      b.op('Unsqueeze', [x, b.i64('u1', [0, 2])]),
      b.op('Squeeze', [b.op('Unsqueeze', [x, b.i64('u2', [1])]), b.i64('q2', [1])]),
      b.op('Reshape', [x, b.i64('r3', [0, -1])]),
      b.op('Transpose', [x], { attrs: { perm: [2, 0, 1] } }),
    ]));

  it('Expand both ways, Shape with start/end, CumSum on a negative axis (exclusive, reverse), Gather on axis 1, Range', () =>
    agree((b, x) => {
      const col = b.op('Slice', [x, b.i64('s', [0]), b.i64('e', [1]), b.i64('a', [2])]); // [2, 5, 1]
      return [
        b.op('Expand', [col, b.i64('sh0', [3, 1, 1, 4])]),
        b.op('Expand', [x, b.i64('sh1', [1, 1])]),
        b.op('Cast', [b.op('Shape', [x], { attrs: { start: -2 } })], { attrs: { to: 1 } }),
        b.op('CumSum', [x, b.i64('ax', [1], [])], { attrs: { exclusive: 1, reverse: 1 } }),
        b.op('CumSum', [x, b.init('axn', Tensor.fromInt64([], [-1]))]),
        b.op('Gather', [x, b.i64('gi', [4, 0, 2])], { attrs: { axis: 1 } }),
        b.op('Cast', [b.op('Range', [b.i64('r0', [1], []), b.op('Squeeze', [b.op('Shape', [x], { attrs: { start: 1, end: 2 } })]), b.i64('r2', [2], [])])], { attrs: { to: 1 } }),
      ];
    }));

  it('Constant and ConstantOfShape nodes, Clip with one bound, Where/Equal, Softmax, Max, ReduceMean, Sqrt/Reciprocal, Round (half to even)', () =>
    agree((b, x) => {
      const c = b.op('Constant', [], { attrs: { value: Tensor.fromFloat32([6], Float32Array.of(0.5, -1, 2, 0, 1.5, 3)) } });
      const axes = b.op('Constant', [], { attrs: { value_ints: [-1] } });
      const filled = b.op('ConstantOfShape', [b.op('Shape', [x])], { attrs: { value: Tensor.fromFloat32([1], Float32Array.of(0.25)) } });
      return [
        b.op('Mul', [x, c]),
        b.op('Add', [x, filled]),
        b.op('Clip', [x, b.f32('lo', [], [-1])]),
        b.op('Where', [b.op('Equal', [b.op('Round', [x]), b.f32('z', [], [0])]), x, c]),
        b.op('Softmax', [x], { attrs: { axis: -1 } }),
        b.op('Max', [x, c, b.f32('m', [], [0.1])]),
        b.op('Reciprocal', [b.op('Sqrt', [b.op('ReduceMean', [b.op('Mul', [x, x]), axes], { attrs: { keepdims: 1 } })])]),
        b.op('Round', [b.op('Mul', [c, b.f32('h', [], [5])])]),
      ];
    }));

  it('refuses what it cannot translate, naming the op and the target', () => {
    const refuse = (build: (b: GraphBuilder, x: Value) => Value, why: RegExp) => {
      const b = new GraphBuilder();
      b.output(build(b, b.input('x', { dtype: 'float32', shape: [2, 5, 6] })), 'y');
      expect(() => translateToTf(b.model(18), () => undefined)).toThrow(why);
    };
    refuse((b, x) => b.op('Tile', [x, b.i64('rep', [1, 2, 1])]), /^--target tfjs: ONNX op Tile \(node Tile\) has no TF\.js translation$/);
    refuse((b, x) => b.op('Softmax', [x], { attrs: { axis: 1 } }), /Softmax .* is not over the last axis/);
    refuse((b, x) => b.op('Unsqueeze', [x, b.i64('u', [-1, 0])]), /Unsqueeze .* mixes negative and non-negative axes/);
    refuse((b, x) => b.op('Gather', [x, b.i64('g', [-1])], { attrs: { axis: 1 } }), /Gather .* negative constant indices/);
    refuse((b, x) => b.op('MatMulNBits', [x, b.init('w.qweight', Tensor.fromBytes('uint8', [6, 1, 4], new Uint8Array(24))), b.f32('s', [6], [1, 1, 1, 1, 1, 1])], { domain: 'com.microsoft', attrs: { K: 6, N: 6, bits: 2, block_size: 16 } }), /MatMulNBits .* has no ternary linear in manifest\.json/);
  });
});
