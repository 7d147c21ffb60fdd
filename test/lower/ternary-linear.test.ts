// The MatMulNBits lowering against a float64 dequantize-then-matmul oracle (the format's reference decoder).
import * as ort from 'onnxruntime-node';
import { describe, expect, it } from 'vitest';
import { decodeTernary, encodeTernary, groupsPerRow, parseFormatId } from '../../src/formats/ternary.ts';
import { GraphBuilder } from '../../src/graph/builder.ts';
import { encodeModel } from '../../src/graph/onnx.ts';
import { Rewriter } from '../../src/graph/rewriter.ts';
import { Tensor } from '../../src/graph/tensor.ts';
import { lowerTernaryLinear } from '../../src/lower/ternary-linear.ts';
import { decodeOrder2, order2PlaneFormat } from '../../src/formats/order2.ts';
import { rng } from '../../src/artifact/random.ts';

async function runLowered(formatId: string, rows: number, cols: number, tokens: number, zeroScaleGroup = false, order2 = false) {
  const f = parseFormatId(formatId);
  const rand = rng(7);
  const t = Int8Array.from({ length: rows * cols }, () => Math.floor(rand() * 3) - 1);
  const ng = groupsPerRow(f, cols);
  const scale = Float32Array.from({ length: rows * ng }, () => 0.01 + 0.1 * rand());
  const shift = Float32Array.from({ length: rows * ng }, () => 0.05 * (rand() - 0.5));
  if (zeroScaleGroup) scale[1] = 0;
  const w = encodeTernary(f, rows, cols, t, scale, f.shift ? shift : undefined);
  const pf = order2PlaneFormat(f);
  const plane = order2
    ? encodeTernary(pf, rows, cols, Int8Array.from({ length: rows * cols }, () => Math.floor(rand() * 3) - 1), Float32Array.from({ length: rows * groupsPerRow(pf, cols) }, () => 0.005 + 0.03 * rand()))
    : undefined;
  const b = new GraphBuilder();
  const x = b.input('x', { dtype: 'float32', shape: [1, tokens, cols] });
  // torch style: MatMul(x, Wᵀ) with a placeholder weight that the lowering replaces.
  const wt = b.f32('w', [cols, rows], new Float32Array(rows * cols));
  const y = b.op('MatMul', [x, wt]);
  b.output(y, 'y');
  const model = b.model(18, [{ domain: 'com.microsoft', version: 1 }]);
  const node = y.producer()!;
  lowerTernaryLinear(new Rewriter(model.graph), { node, input: x, rows, cols, actDtype: 'float32' }, w, 'lin', plane);
  model.graph.removeDeadNodes();
  const xs = Float32Array.from({ length: tokens * cols }, () => rand() * 2 - 1);
  const s = await ort.InferenceSession.create(encodeModel(model));
  const out = (await s.run({ x: new ort.Tensor('float32', xs, [1, tokens, cols]) })).y.data as Float32Array;
  const W = plane ? decodeOrder2({ base: w, plane }) : decodeTernary(w);
  let maxRel = 0;
  for (let i = 0; i < tokens; i++) {
    for (let n = 0; n < rows; n++) {
      let acc = 0;
      let mag = 0;
      for (let k = 0; k < cols; k++) {
        acc += W[n * cols + k] * xs[i * cols + k];
        mag += Math.abs(W[n * cols + k] * xs[i * cols + k]);
      }
      maxRel = Math.max(maxRel, Math.abs(out[i * rows + n] - acc) / mag);
    }
  }
  return { maxRel, ops: model.graph.nodes.map((n) => n.opType) };
}

describe('MatMulNBits lowering of ternary linears', () => {
  for (const id of ['tq1_g128', 'tq2_g64', 'tq2_g128_ns', 'tq1_g256', 'tq1_g384_ns']) {
    it(`${id}: matches the float64 reference decoder to 1e-5 relative`, async () => {
      const { maxRel, ops } = await runLowered(id, 48, 384, 5);
      expect(ops).toEqual(['MatMulNBits']);
      expect(maxRel).toBeLessThan(1e-5);
    });
  }
  it('an order-2 linear: two MatMulNBits on the same input, added, match decodeOrder2 to 1e-5 relative', async () => {
    const { maxRel, ops } = await runLowered('tq1_g128', 48, 384, 5, false, true);
    expect(ops.sort()).toEqual(['Add', 'MatMulNBits', 'MatMulNBits']);
    expect(maxRel).toBeLessThan(1e-5);
  });
  it('a group with zero scale and non-zero shift is re-coded exactly', async () => {
    const { maxRel } = await runLowered('tq1_g128', 8, 256, 3, true);
    expect(maxRel).toBeLessThan(1e-5);
  });
});
