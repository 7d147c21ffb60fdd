// Gemma-2, Gemma-3 and OLMo-2 as torch.onnx.export (TorchScript) writes them: the tiny models of
// test/fixtures/torch-families/, made by scripts/families/export-postnorm.py from hand-written
// modules that follow the Hugging Face modelling code (decomposed (1 + w) RMSNorm in float32,
// decomposed tanh GELU, soft-capping as Div/Tanh/Mul, the window mask as tril(ones, −w) or as
// position comparisons, q/k norm over the whole projection). Each is compiled by twlac; the
// reference and WebGPU runtimes must match stock onnxruntime on out/model.onnx.
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, describe, expect, it } from 'vitest';
import { readArtifact } from '../../src/artifact/weights.ts';
import { compileToDir } from '../../src/compile.ts';
import { generate } from '../../src/eval/generate.ts';
import { forward, openModel } from '../../src/eval/ort-session.ts';
import type { Feature } from '../../src/program/block-program.ts';
import { referenceGreedy, referenceLogits } from '../../src/runtime/reference.ts';
import { WebgpuModel } from '../../src/runtime/webgpu/runtime.ts';
import { testDevice } from '../codegen/wgsl-harness.ts';
import { relErr } from './compare.ts';

const { dev, skip } = await testDevice();
const root = mkdtempSync(join(tmpdir(), 'twlac-torch-families-'));
afterAll(() => rmSync(root, { recursive: true, force: true }));
const fixtures = join(import.meta.dirname, '..', 'fixtures', 'torch-families');

// 14 tokens of a 64-token vocabulary: past the windows of 4 keys.
const PROMPT = [3, 17, 42, 9, 5, 8, 20, 13, 57, 1, 63, 50, 31, 9];
const GREEDY = 10;

/** What recognition must find in each export: features, windows, and per-block RoPE θ. */
const EXPECT: Record<string, { features: Feature[]; windows: (number | null)[]; ropeTheta?: (number | undefined)[]; softcap?: number }> = {
  'gemma2-tril': { features: ['post-norm', 'attn-softcap', 'logit-softcap', 'sliding-window', 'query-scale', 'gelu-tanh-mlp', 'embed-scale'], windows: [4, null], softcap: 3 },
  'gemma2-compare': { features: ['post-norm', 'attn-softcap', 'logit-softcap', 'sliding-window', 'query-scale', 'gelu-tanh-mlp', 'embed-scale'], windows: [4, null], softcap: 3 },
  gemma3: { features: ['post-norm', 'qk-norm', 'sliding-window', 'rope-theta-per-layer', 'gelu-tanh-mlp'], windows: [4, 4, null], ropeTheta: [undefined, undefined, 1000000] },
  olmo2: { features: ['post-norm', 'no-pre-norm', 'qk-norm-full', 'swiglu'], windows: [null, null] },
};

describe.each(Object.entries(EXPECT))('torch export %s compiled by twlac', (name, want) => {
  it('is recognised with its features; the reference and WebGPU runtimes match ORT on out/model.onnx', async () => {
    const out = join(root, name);
    await compileToDir(join(fixtures, `${name}.onnx`), out, { weights: 'rtn-ternary' });
    const a = readArtifact(out);
    const m = a.manifest;
    expect(m.features).toEqual(expect.arrayContaining(want.features));
    expect(m.blocks.map((b) => b.attention.window)).toEqual(want.windows);
    if (want.ropeTheta) expect(m.blocks.map((b) => b.attention.ropeTheta)).toEqual(want.ropeTheta);
    expect(m.program.logitSoftcap).toBe(want.softcap);
    const ort = await openModel(join(out, 'model.onnx'));
    let logits: Float32Array, greedy: number[];
    try {
      logits = (await forward(ort, PROMPT, 1, PROMPT.length)).logits;
      greedy = Array.from(await generate(ort, PROMPT, GREEDY));
    } finally {
      await ort.session.release();
    }
    expect(relErr(referenceLogits(a, PROMPT), logits)).toBeLessThan(1e-5);
    expect(referenceGreedy(a, PROMPT, GREEDY)).toEqual(greedy);
    if (skip) return;
    const model = await WebgpuModel.create(dev!.device, a, { capacity: 4 });
    try {
      expect(relErr(await model.logitsOf(PROMPT), logits)).toBeLessThan(1e-5);
      expect(await model.greedy(PROMPT, GREEDY)).toEqual(greedy);
    } finally {
      model.destroy();
    }
  }, 120_000);
});
