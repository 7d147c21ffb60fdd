// The GPT-style features (LayerNorm with β, ungated MLPs, parallel residual, learned positions)
// and the Gemma-2/3 / OLMo-2 ones (post-norms, blocks without pre-norms, whole-width q/k norms,
// soft-capping) in one model, combinations no family has: compiled by twlac's default pipeline
// (TWLA, rotation, mp:4), the reference and WebGPU runtimes against stock onnxruntime on the same
// out/model.onnx, and the program names the features of both sets. The combinations the program
// does not state (post-norms in a parallel block, LayerNorm post-norms) are refused by name.
import { mkdirSync, mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, describe, expect, it } from 'vitest';
import { readArtifact } from '../../src/artifact/weights.ts';
import { compileToDir, createContext } from '../../src/compile.ts';
import { generate } from '../../src/eval/generate.ts';
import { forward, openModel } from '../../src/eval/ort-session.ts';
import { saveModel } from '../../src/graph/onnx.ts';
import type { Feature } from '../../src/program/block-program.ts';
import { referenceGreedy, referenceLogits } from '../../src/runtime/reference.ts';
import { WebgpuModel } from '../../src/runtime/webgpu/runtime.ts';
import { testDevice } from '../codegen/wgsl-harness.ts';
import { makeTinyLlama, type TinyLlamaOptions } from '../fixtures/make-fixtures.ts';
import { relErr } from './compare.ts';

const { dev, skip } = await testDevice();
const root = mkdtempSync(join(tmpdir(), 'twlac-composed-'));
afterAll(() => rmSync(root, { recursive: true, force: true }));

const PROMPT = [3, 17, 42, 99, 5, 8, 200, 13, 77, 1, 64, 250, 31, 9];
const GREEDY = 12;
const CALIB = [0, 1, 2, 3, 4, 5].map((s) => Int32Array.from({ length: 32 }, (_, i) => (i * (37 + 2 * s) + 11 * s) % 256));

const COMPOSED: Record<string, { opts: Partial<TinyLlamaOptions>; features: Feature[] }> = {
  // OLMo-2's blocks with GPT-2's MLP, biases and positions, and Gemma-2's final soft-cap
  'post-only norms, ungated MLP, learned positions': {
    opts: { blockNorms: 'post', qkNorm: 'all', normEps: 1e-6, linear: 'matmul-bias', mlp: 'ungated', activation: 'gelu-tanh-ops', positions: 'learned', logitSoftcap: 3, seed: 41 },
    features: ['post-norm', 'no-pre-norm', 'qk-norm-full', 'logit-softcap', 'ungated-mlp', 'learned-positions', 'no-rope', 'linear-bias'],
  },
  // Gemma-2's sandwich norms around an ungated GELU(erf) MLP
  'sandwich norms, ungated MLP': {
    opts: { blockNorms: 'sandwich', attnSoftcap: 2, normEps: 1e-6, mlp: 'ungated', activation: 'gelu-ops', seed: 42 },
    features: ['post-norm', 'attn-softcap', 'ungated-mlp', 'gelu-mlp'],
  },
  // GPT-NeoX's LayerNorm parallel blocks with OLMo-2's q/k norms and Gemma-2's soft-caps
  'LayerNorm parallel blocks, whole-width q/k norms, soft-caps': {
    opts: { kvHeads: 4, norm: 'layernorm', linear: 'matmul-bias', mlp: 'ungated', activation: 'gelu-ops', residual: 'parallel', rotaryDim: 4, qkNorm: 'all', attnSoftcap: 2, logitSoftcap: 3, seed: 43 },
    features: ['layer-norm', 'parallel-residual', 'partial-rotary', 'qk-norm-full', 'attn-softcap', 'logit-softcap'],
  },
};

describe.each(Object.entries(COMPOSED))('%s, compiled by twlac (TWLA, rotation, mp:4)', (name, c) => {
  const dir = join(root, name.replace(/[^a-z0-9-]+/gi, '_'));
  const out = join(dir, 'out');
  let want: { logits: Float32Array; greedy: number[] };

  it('the program names the features of both sets; reference runtime logits match ORT, greedy tokens identical', async () => {
    mkdirSync(dir, { recursive: true });
    saveModel(makeTinyLlama(c.opts), join(dir, 'model.onnx'));
    await compileToDir(join(dir, 'model.onnx'), out, { calib: CALIB, acts: { kind: 'mp', budget: 4 } });
    const ort = await openModel(join(out, 'model.onnx'));
    try {
      want = { logits: (await forward(ort, PROMPT, 1, PROMPT.length)).logits, greedy: Array.from(await generate(ort, PROMPT, GREEDY)) };
    } finally {
      await ort.session.release();
    }
    const a = readArtifact(out);
    expect(a.manifest.features).toEqual(expect.arrayContaining(c.features));
    expect(relErr(referenceLogits(a, PROMPT), want.logits)).toBeLessThan(1e-5);
    expect(referenceGreedy(a, PROMPT, GREEDY)).toEqual(want.greedy);
  }, 120_000);

  it.skipIf(!!skip)('WebGPU runtime: chunked prefill logits match ORT, greedy tokens identical', async () => {
    const model = await WebgpuModel.create(dev!.device, readArtifact(out), { capacity: 4 });
    try {
      // 4-bit codes may flip on last-bit differences of f32 sums (families.test.ts): bounded well below A4 noise
      expect(relErr(await model.logitsOf(PROMPT), want.logits)).toBeLessThan(2e-3);
      expect(await model.greedy(PROMPT, GREEDY)).toEqual(want.greedy);
    } finally {
      model.destroy();
    }
  }, 120_000);
});

describe('combinations the block program does not state are refused by name', () => {
  it('post-norms in a parallel-residual block', () => {
    const m = makeTinyLlama({ kvHeads: 4, linear: 'matmul-bias', mlp: 'ungated', activation: 'gelu-ops', residual: 'parallel', blockNorms: 'sandwich', seed: 44 });
    expect(() => createContext(m)).toThrow(/^a parallel residual block with norms after the attention and the MLP \(post-norms\): not supported$/);
  });
  it('LayerNorm post-norms', () => {
    const m = makeTinyLlama({ norm: 'layernorm', linear: 'matmul-bias', blockNorms: 'sandwich', seed: 45 });
    expect(() => createContext(m)).toThrow(/^LayerNorm after the attention and the MLP \(post-norms\): not supported$/);
  });
});
