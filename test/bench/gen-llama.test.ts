// The scaling models' generator (bench/scripts/gen-llama.ts) at its tiny size: the streamed
// export loads and is recognised as the LLaMA it describes, onnxruntime runs it and agrees
// with the float64 forward of the recognised structure, and its weights are exactly those of
// the same options built in memory (the stream writes what the graph says).
import { mkdirSync, mkdtempSync, readFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, describe, expect, it } from 'vitest';
import { LLAMA_SHAPES, OUTLIERS, generateLlama, llamaOptions, parameterCount } from '../../bench/scripts/gen-llama.ts';
import { forward, openModel } from '../../src/eval/ort-session.ts';
import { loadModel, saveModel } from '../../src/graph/onnx.ts';
import { constTensor, recognize } from '../../src/graph/recognize.ts';
import { makeTinyLlama } from '../fixtures/make-fixtures.ts';
import { referenceLogits } from '../fixtures/reference-forward.ts';

const dir = mkdtempSync(join(tmpdir(), 'twlac-gen-llama-'));
afterAll(() => rmSync(dir, { recursive: true, force: true }));

describe('gen-llama', () => {
  const shape = LLAMA_SHAPES.tiny;
  const files = generateLlama(shape, join(dir, 'streamed'), 3);

  it('writes a model with external data whose structure is the shape asked for', () => {
    expect(Object.keys(files).sort()).toEqual(['model.onnx', 'model.onnx.data']);
    const s = recognize(loadModel(join(dir, 'streamed', 'model.onnx')));
    expect(s.blocks.length).toBe(shape.layers);
    const quantised = s.linears.filter((l) => l.role !== 'lm_head');
    expect(quantised.length).toBe(7 * shape.layers);
    const params = s.linears.reduce((a, l) => a + l.outFeatures * l.inFeatures, 0) + shape.vocab * shape.hidden + (2 * shape.layers + 1) * shape.hidden;
    expect(params).toBe(parameterCount(shape));
    expect(s.linears.find((l) => l.role === 'down')!.inFeatures).toBe(shape.intermediate);
    expect(constTensor(s.linears[0].weight)!.dtype).toBe('float16');
    // outlier channels: the same OUTLIERS.count channels of every γ are about OUTLIERS.scale× the rest
    const g = constTensor(s.blocks[0].attnNorm!.gamma!)!.toFloat32();
    const big = [...g.keys()].filter((i) => Math.abs(g[i]) > OUTLIERS.scale / 3);
    expect(big.length).toBe(OUTLIERS.count);
    const g1 = constTensor(s.blocks[1].mlpNorm!.gamma!)!.toFloat32();
    expect(big.every((i) => Math.abs(g1[i]) > OUTLIERS.scale / 3)).toBe(true);
  });

  it('the streamed data file is byte-identical to the model built in memory', () => {
    mkdirSync(join(dir, 'memory'));
    saveModel(makeTinyLlama(llamaOptions(shape, 3)), join(dir, 'memory', 'model.onnx'));
    for (const f of ['model.onnx', 'model.onnx.data']) {
      expect(readFileSync(join(dir, 'streamed', f)).equals(readFileSync(join(dir, 'memory', f)))).toBe(true);
    }
  });

  it('runs in onnxruntime and matches the float64 forward of its recognised structure', async () => {
    const path = join(dir, 'streamed', 'model.onnx');
    const ids = [1, 17, 300, 42, 511, 7, 99, 256];
    const om = await openModel(path);
    const { logits, vocab } = await forward(om, ids, 1, ids.length);
    await om.session.release();
    const ref = referenceLogits(recognize(loadModel(path)), ids);
    let d = 0, n = 0;
    for (let t = 0; t < ids.length; t++) {
      for (let v = 0; v < vocab; v++) {
        d += (logits[t * vocab + v] - ref[t][v]) ** 2;
        n += ref[t][v] ** 2;
      }
    }
    // fp32 onnxruntime against float64 over a few hundred-term dot products per layer
    expect(Math.sqrt(d / n)).toBeLessThan(1e-4);
  });
});
