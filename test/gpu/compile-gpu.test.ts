// The compile with --device gpu (on the software adapter) against the CPU path: the Gram
// matrices captured through the GPU against onnxruntime's, and the whole twla compile of a
// tiny LLaMA, whose compiled model must compute what the CPU-compiled one does up to the
// trits that fp32 rounding flips (often none: μ and α are stored in fp16, far coarser).
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, describe, expect, it, vi } from 'vitest';
import { captureSites } from '../../src/calib/capture.ts';
import { compile } from '../../src/compile.ts';
import { windowLogits, openModel } from '../../src/eval/ort-session.ts';
import { GpuDevice } from '../../src/gpu/device.ts';
import { GpuGram, GpuRestUpdate } from '../../src/gpu/ops.ts';
import { saveModel } from '../../src/graph/onnx.ts';
import { recognize } from '../../src/graph/recognize.ts';
import { makeTinyLlama } from '../fixtures/make-fixtures.ts';
import { testDevice } from '../codegen/wgsl-harness.ts';

const { skip } = await testDevice();
const dir = mkdtempSync(join(tmpdir(), 'twlac-gpu-compile-'));
afterAll(() => rmSync(dir, { recursive: true, force: true }));

const seed = Number(process.env.TWLAC_TEST_SEED ?? (Date.now() >>> 0) % 100000); // TWLAC_TEST_SEED reproduces a run
const segs = (n: number, seq: number, vocab: number, s: number) =>
  Array.from({ length: n }, (_, i) => Int32Array.from({ length: seq }, (_, t) => (s + i * 31 + t * 7 + ((t * t) % 13)) % vocab));
const tiny = { layers: 2, hidden: 96, heads: 4, kvHeads: 2, intermediate: 272, vocab: 64 };

describe.skipIf(!!skip)(`compile on the GPU path (seed ${seed})`, () => {
  it('Gram matrices accumulated on the GPU match onnxruntime within both fp32 sums’ bound', async () => {
    const m = makeTinyLlama({ ...tiny, seed: 5 + (seed % 7) });
    const sites = recognize(m)
      .inputGroups.filter((g) => g.site !== 'head')
      .map((g, i) => ({ id: `s${i}`, value: g.linears[0].node.input(0)!, width: g.linears[0].inFeatures }));
    const calib = segs(3, 20, tiny.vocab, seed);
    const dev = GpuDevice.open();
    try {
      const ort = await captureSites(m, sites, calib, { batch: 2, sampleRows: 60 });
      const gpu = await captureSites(m, sites, calib, { batch: 2, gram: (w) => new GpuGram(dev, w) });
      for (const s of sites) {
        const a = ort.get(s.id)!, b = gpu.get(s.id)!;
        expect(b.tokens).toBe(a.tokens);
        // Both are fp32 sums of T = 60 products per entry: |a − b| ≤ 2γ_(T+4)·(|X|ᵀ|X|).
        const K = s.width, T = a.sampleRows, x = a.samples!;
        const g = (2 * (T + 4) * 2 ** -24) / (1 - (T + 4) * 2 ** -24);
        for (let i = 0; i < K; i++) {
          for (let j = 0; j < K; j++) {
            let abs = 0;
            for (let t = 0; t < T; t++) abs += Math.abs(x[t * K + i] * x[t * K + j]);
            expect(Math.abs(a.gram[i * K + j] - b.gram[i * K + j])).toBeLessThanOrEqual(g * abs);
          }
        }
      }
    } finally {
      dev.close();
    }
  });

  it('twla compile with --device gpu quantises as well as the CPU path: its distance to the float model within 25% of the CPU-compiled model’s', async () => {
    const calib = segs(4, 32, tiny.vocab, seed);
    const paths: Record<string, string> = {};
    const gpuCalls = vi.spyOn(GpuDevice.prototype, 'run');
    // one fit thread: GPTQ's lazy update runs on the GPU; two (gpu2): the fits run in worker
    // threads on the CPU and only the Gram matrices on the GPU
    for (const [key, device, threads] of [['cpu', 'cpu', 1], ['gpu', 'gpu', 1], ['gpu2', 'gpu', 2]] as const) {
      const m = makeTinyLlama({ ...tiny, seed: 11 });
      // no rotation: this checks the GPU linear algebra, not KOTMS (and keeps the test short)
      gpuCalls.mockClear();
      const updates = vi.spyOn(GpuRestUpdate.prototype, 'apply');
      const r = await compile(m, { calib, device, rotate: false, threads });
      expect(gpuCalls.mock.calls.length > 0, key).toBe(device === 'gpu');
      expect(updates.mock.calls.length > 0, key).toBe(key === 'gpu');
      updates.mockRestore();
      paths[key] = join(dir, `${key}.onnx`);
      saveModel(r.model, paths[key]);
    }
    paths.float = join(dir, 'float.onnx');
    saveModel(makeTinyLlama({ ...tiny, seed: 11 }), paths.float);
    const windows = segs(2, 24, tiny.vocab, seed + 1);
    const logits: Record<string, Float32Array> = {};
    for (const [k, p] of Object.entries(paths)) {
      const om = await openModel(p);
      logits[k] = (await windowLogits(om, windows)).logits;
      await om.session.release();
    }
    const dist = (a: Float32Array, b: Float32Array) => Math.sqrt(a.reduce((s, v, i) => s + (v - b[i]) ** 2, 0));
    const quantErr = dist(logits.cpu, logits.float);
    const gpuErr = dist(logits.gpu, logits.float);
    expect(quantErr).toBeGreaterThan(0);
    // Not GPU ≈ CPU logits: ternary rounding is discontinuous and GPTQ feeds every decision
    // forward, so the fp32 Gram of the GPU path can flip a few codes that then cascade (seed
    // 64530 put the two models 21 apart with the CPU model 35 from the float one). What must
    // hold is that the GPU path quantises as well; the GEMM and Gram tests bound its arithmetic.
    console.log(`GPU path: distance to float ${gpuErr.toFixed(3)}, CPU path ${quantErr.toFixed(3)}, GPU to CPU ${dist(logits.gpu, logits.cpu).toFixed(3)}`);
    expect(gpuErr).toBeLessThan(1.25 * quantErr);
    expect(dist(logits.gpu2, logits.float)).toBeLessThan(1.25 * quantErr);
  });
});
