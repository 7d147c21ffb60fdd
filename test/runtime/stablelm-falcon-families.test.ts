// StableLM with qk_layernorm and Falcon (multi-query, and the new decoder architecture's kv
// groups), as torch.onnx.export (TorchScript) writes tiny modules that follow the Hugging Face
// modelling code (test/fixtures/torch-families, made by scripts/families/export-stablelm-falcon.py):
// StableLM's LayerNorm per head, each head with its own γ, as Split → LayerNormalization per
// head → Concat; Falcon's query_key_value packed per kv group, cut by Slices and Gathers,
// parallel attention and GELU MLP from one LayerNorm or two. Each is compiled by twlac's default
// pipeline (norm folding, KOTMS rotation, GPTQ) at ILA-AMP mp:4 activations. The transformed but
// unquantised graph computes the source model under ORT; on the same out/model.onnx the
// reference and WebGPU runtimes match ORT; each family's features are shown to matter, and the
// CUDA backend refuses each by name. Falcon-RW's ALiBi, which no program step computes, is refused.
import { existsSync, mkdirSync, mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { readArtifact } from '../../src/artifact/weights.ts';
import { compileToDir, createContext } from '../../src/compile.ts';
import { CUDA_FEATURES, cudaModelSource } from '../../src/codegen/cuda/emit.ts';
import { loadModel, saveModel } from '../../src/graph/onnx.ts';
import { PassManager } from '../../src/graph/pass.ts';
import { checkModelPass } from '../../src/passes/check-model.ts';
import { foldNormsPass } from '../../src/passes/fold-norms.ts';
import { rotatePass } from '../../src/passes/rotate.ts';
import type { Feature } from '../../src/program/block-program.ts';
import { referenceGreedy, referenceLogits, type LoadedArtifact } from '../../src/runtime/reference.ts';
import { WebgpuModel } from '../../src/runtime/webgpu/runtime.ts';
import { testDevice } from '../codegen/wgsl-harness.ts';
import { ortLogitsAndGreedy, relErr } from './compare.ts';

const { dev, skip } = await testDevice();
const root = mkdtempSync(join(tmpdir(), 'twlac-stablelm-falcon-'));
afterAll(() => rmSync(root, { recursive: true, force: true }));
const fixtures = join(import.meta.dirname, '..', 'fixtures', 'torch-families');

// 14 tokens of the exports' 64-token vocabulary; calibration segments of 32 tokens.
const PROMPT = [3, 17, 42, 9, 5, 8, 20, 13, 57, 1, 63, 50, 31, 9];
const CALIB = [0, 1, 2, 3, 4, 5].map((s) => Int32Array.from({ length: 32 }, (_, i) => (i * (37 + 2 * s) + 11 * s) % 64));
const GREEDY = 10;

interface Family {
  /** The features the program must name. */
  features: Feature[];
  /** Changes that each remove one of them from the artifact (to show it matters). */
  without: Record<string, (a: LoadedArtifact) => void>;
  kvHeads: number;
}

const qkNorms = (a: LoadedArtifact) => a.manifest.blocks.map((b) => b.attention.qkNorm!);
const FAMILIES: Record<string, Family> = {
  'stablelm-qkln': {
    features: ['layer-norm', 'partial-rotary', 'swiglu', 'linear-bias', 'gqa', 'qk-norm-head-own', 'qk-layer-norm'],
    without: {
      'qk-layer-norm (an RMSNorm instead)': (a) => qkNorms(a).forEach((n) => delete n.kind),
      'qk-norm-head-own (head 0’s γ for every head)': (a) => qkNorms(a).forEach((n) => (n.span = 'head')),
    },
    kvHeads: 2,
  },
  'falcon-mq': {
    features: ['layer-norm', 'parallel-residual', 'ungated-mlp', 'gelu-mlp', 'gqa'],
    without: { 'parallel-residual': (a) => void (a.manifest.program.residual = 'sequential') },
    kvHeads: 1,
  },
  'falcon-gqa': {
    features: ['layer-norm', 'parallel-residual', 'ungated-mlp', 'gelu-mlp', 'gqa', 'linear-bias'],
    without: { 'parallel-residual': (a) => void (a.manifest.program.residual = 'sequential') },
    kvHeads: 2,
  },
};

describe.each(Object.entries(FAMILIES))('torch export %s compiled by twlac (TWLA, rotation, mp:4)', (name, fam) => {
  const dir = join(root, name);
  const src = join(fixtures, `${name}.onnx`);
  const out = join(dir, 'out');
  const ortRun = (path: string) => ortLogitsAndGreedy(path, PROMPT, GREEDY);
  let want: { logits: Float32Array; greedy: number[] };
  beforeAll(async () => {
    mkdirSync(dir, { recursive: true });
    await compileToDir(src, out, { calib: CALIB, acts: { kind: 'mp', budget: 4 } });
    want = await ortRun(join(out, 'model.onnx'));
  }, 120_000);

  it('folding and rotation are exact: the transformed, unquantised graph matches the source under ORT', async () => {
    const source = await ortRun(src);
    const model = loadModel(src);
    const ctx = createContext(model, { calib: CALIB });
    expect(ctx.structure.config.kvHeads).toBe(fam.kvHeads);
    await new PassManager([checkModelPass, foldNormsPass, rotatePass]).run(model, ctx);
    saveModel(model, join(dir, 'transformed.onnx'));
    const got = await ortRun(join(dir, 'transformed.onnx'));
    expect(relErr(got.logits, source.logits)).toBeLessThan(1e-5);
    expect(got.greedy).toEqual(source.greedy);
  }, 120_000);

  it('the program names the family features; a CUDA table without any one of them refuses it by name', () => {
    const m = readArtifact(out).manifest;
    expect(m.features).toEqual(expect.arrayContaining([...fam.features, 'act-quant', 'online-transform']));
    for (const f of fam.features) {
      const only = { ...CUDA_FEATURES, [f]: false };
      expect(() => cudaModelSource(m, 'sm_90a', only)).toThrow(new RegExp(`^the CUDA backend does not implement feature '${f}'`));
    }
  });

  it('reference runtime: logits match ORT, greedy tokens identical; without each feature it does not match', () => {
    const a = readArtifact(out);
    expect(relErr(referenceLogits(a, PROMPT), want.logits)).toBeLessThan(1e-5);
    expect(referenceGreedy(a, PROMPT, GREEDY)).toEqual(want.greedy);
    for (const [what, remove] of Object.entries(fam.without)) {
      const b = readArtifact(out);
      remove(b);
      expect(relErr(referenceLogits(b, PROMPT), want.logits), what).toBeGreaterThan(1e-3);
    }
  });

  it.skipIf(!!skip)('WebGPU runtime: chunked prefill logits match ORT, greedy tokens identical; without each feature it does not match', async () => {
    const run = async (a: LoadedArtifact, check: (model: WebgpuModel) => Promise<void>) => {
      const model = await WebgpuModel.create(dev!.device, a, { capacity: 4 });
      try {
        await check(model);
      } finally {
        model.destroy();
      }
    };
    // 4-bit codes may flip on last-bit differences of f32 sums (families.test.ts): bounded well below A4 noise
    await run(readArtifact(out), async (model) => {
      expect(relErr(await model.logitsOf(PROMPT), want.logits)).toBeLessThan(2e-3);
      expect(await model.greedy(PROMPT, GREEDY)).toEqual(want.greedy);
    });
    for (const [what, remove] of Object.entries(fam.without)) {
      const b = readArtifact(out);
      remove(b);
      await run(b, async (model) => expect(relErr(await model.logitsOf(PROMPT), want.logits), what).toBeGreaterThan(1e-2));
    }
  }, 120_000);
});

it('Falcon with ALiBi (falcon-rw) is refused at compile, naming the position bias, and leaves no output', async () => {
  const out = join(root, 'falcon-alibi');
  await expect(compileToDir(join(fixtures, 'falcon-alibi.onnx'), out, { weights: 'rtn-ternary' })).rejects.toThrow(/position bias added to the attention scores \(ALiBi/);
  expect(existsSync(out)).toBe(false);
});
