// Order-2 linears (formats/order2.ts, `--order2`) end to end: a tiny LLaMA compiled by the
// default pipeline with second planes on every v and on block 1's down; the reference runtime (the format's
// reference decoder) and the WebGPU runtime against stock onnxruntime on the same
// out/model.onnx; the planes matter (dropping them no longer matches); bits per weight from the
// bytes written; the CUDA backend refuses the feature by name.
import { existsSync, mkdirSync, mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, describe, expect, it } from 'vitest';
import { relErr } from './compare.ts';
import { readArtifact } from '../../src/artifact/weights.ts';
import { CUDA_FEATURES, cudaModelSource } from '../../src/codegen/cuda/emit.ts';
import { compileToDir } from '../../src/compile.ts';
import { silentProgress } from '../../src/graph/pass.ts';
import { generate } from '../../src/eval/generate.ts';
import { forward, openModel } from '../../src/eval/ort-session.ts';
import { order2StorageBytes } from '../../src/formats/order2.ts';
import { parseFormatId, storageBytes } from '../../src/formats/ternary.ts';
import { saveModel } from '../../src/graph/onnx.ts';
import { referenceGreedy, referenceLogits } from '../../src/runtime/reference.ts';
import { WebgpuModel } from '../../src/runtime/webgpu/runtime.ts';
import { testDevice } from '../codegen/wgsl-harness.ts';
import { makeTinyLlama } from '../fixtures/make-fixtures.ts';

const { dev, skip } = await testDevice();
const root = mkdtempSync(join(tmpdir(), 'twlac-order2-'));
afterAll(() => rmSync(root, { recursive: true, force: true }));
const PROMPT = [3, 17, 42, 99, 5, 8, 200, 13, 77, 1, 64, 250, 31, 9];
const GREEDY = 10;

describe('order-2 linears (--order2 v,blocks.1.down)', () => {
  it('reference and WebGPU runtimes match ORT on out/model.onnx; the planes matter; bits from the bytes; CUDA refuses them', async () => {
    mkdirSync(join(root, 'src'));
    const src = join(root, 'src', 'model.onnx');
    saveModel(makeTinyLlama({ seed: 31 }), src);
    const calib = [0, 1, 2, 3].map((s) => Int32Array.from({ length: 48 }, (_, i) => (i * (37 + 2 * s) + 11 * s) % 256));
    const out = join(root, 'out');
    // refused before any pass runs (not after the rotation, an hour at 7B)
    const phases: string[] = [];
    const progress = { ...silentProgress, phase: (_i: number, name: string) => void phases.push(name) };
    await expect(compileToDir(src, join(root, 'bad'), { calib, order2: ['v', 'blocks.9.v'] }, progress)).rejects.toThrow(/--order2: the model has no linear 'blocks\.9\.v'/);
    expect(phases).toEqual([]);
    // refused input leaves no checkpoint behind (a rerun with a corrected flag starts clean)
    expect(existsSync(`${join(root, 'bad')}.twlac-resume`)).toBe(false);
    await compileToDir(src, out, { calib, order2: ['v', 'blocks.1.down'] });
    const a = readArtifact(out);
    const m = a.manifest;
    expect(m.features).toContain('order2-linear');
    const f = parseFormatId(m.blocks[0].v.format);
    let bits = 0, weights = 0;
    for (const b of m.blocks) {
      expect(b.q.order2).toBeUndefined();
      for (const r of ['q', 'k', 'v', 'o', 'gate', 'up', 'down'] as const) {
        const l = b[r]!; // a LLaMA block: every linear present
        expect(!!l.order2).toBe(r === 'v' || (r === 'down' && b === m.blocks[1]));
        if (l.order2) expect(l.order2.format).toBe(`tq1_g${f.group}_ns`);
        const bytes = (l.order2 ? order2StorageBytes(f, l.rows, l.cols) : storageBytes(f, l.rows, l.cols));
        expect(l.bitsPerWeight).toBeCloseTo((bytes * 8) / (l.rows * l.cols), 12);
        const written = [l.codes, l.scales, l.shifts, l.order2?.codes, l.order2?.scales].reduce((x, n) => x + (n ? m.tensors[n].bytes : 0), 0);
        expect(written).toBe(bytes);
        bits += bytes * 8;
        weights += l.rows * l.cols;
      }
    }
    expect(m.bitsPerWeight).toBeCloseTo(bits / weights, 12);

    const ort = await openModel(join(out, 'model.onnx'));
    let want: { logits: Float32Array; greedy: number[] };
    try {
      want = { logits: (await forward(ort, PROMPT, 1, PROMPT.length)).logits, greedy: Array.from(await generate(ort, PROMPT, GREEDY)) };
    } finally {
      await ort.session.release();
    }
    expect(relErr(referenceLogits(a, PROMPT), want.logits)).toBeLessThan(1e-5);
    expect(referenceGreedy(a, PROMPT, GREEDY)).toEqual(want.greedy);

    const without = readArtifact(out);
    for (const b of without.manifest.blocks) delete b.v.order2;
    without.manifest.features = without.manifest.features.filter((x) => x !== 'order2-linear');
    expect(relErr(referenceLogits(without, PROMPT), want.logits)).toBeGreaterThan(1e-3);

    expect(() => cudaModelSource(m, 'sm_90a', { ...CUDA_FEATURES, 'order2-linear': false })).toThrow(/^the CUDA backend does not implement feature 'order2-linear' \(.*\) \(block 0\)$/);

    if (skip) return;
    const model = await WebgpuModel.create(dev!.device, a, { capacity: 4 });
    try {
      expect(relErr(await model.logitsOf(PROMPT), want.logits)).toBeLessThan(1e-5);
      expect(await model.greedy(PROMPT, GREEDY)).toEqual(want.greedy);
    } finally {
      model.destroy();
    }
  }, 180_000);
});
