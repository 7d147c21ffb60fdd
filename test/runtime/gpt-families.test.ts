// GPT-2 / GPT-NeoX (Pythia) / Phi-2 / StableLM shaped tiny models (synthetic-llama.ts
// GPT_FAMILY_VARIANTS: LayerNorm with β, biases everywhere, ungated GELU MLPs in several
// spellings, packed qkv in GPT-2's and GPT-NeoX's layouts, parallel residual with one or two
// norms, learned positions, partial rotary), compiled by twlac's default pipeline (norm
// folding, KOTMS rotation, GPTQ) at ILA-AMP mp:4 activations. On the same out/model.onnx, the
// reference runtime and the WebGPU runtime against stock onnxruntime; the transformed but
// unquantised graph against the source model (the folds and rotations are exact); each
// family's features shown to matter; the CUDA backend refusing each by name. The same for
// small GPT-2, GPT-NeoX and Phi-2 modules exported by torch's TorchScript exporter
// (test/fixtures/gpt-shapes, made by scripts/export-gpt-shapes.py).
import { copyFileSync, mkdirSync, mkdtempSync, rmSync } from 'node:fs';
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
import { GPT_FAMILY_VARIANTS, makeTinyLlama } from '../fixtures/make-fixtures.ts';
import { ortLogitsAndGreedy, relErr } from './compare.ts';

const { dev, skip } = await testDevice();
const root = mkdtempSync(join(tmpdir(), 'twlac-gpt-families-'));
afterAll(() => rmSync(root, { recursive: true, force: true }));

const GREEDY = 12;
const TORCH_EXPORTS = join(import.meta.dirname, '../fixtures/gpt-shapes');

interface Family {
  /** Write the source model to this path. */
  source: (path: string) => void;
  vocab: number;
  /** The features the program must name. */
  features: Feature[];
  /** A change that removes one of them (to show it matters). */
  without: (a: LoadedArtifact) => void;
}

/** The features each family's program must name, and a change that removes one. */
const GPT_FEATURES: Record<string, Pick<Family, 'features' | 'without'>> = {
  gpt2: { features: ['layer-norm', 'ungated-mlp', 'gelu-tanh-mlp', 'learned-positions', 'no-rope', 'linear-bias'], without: (a) => void delete a.manifest.positionEmbed },
  'gpt2-kv': { features: ['layer-norm', 'ungated-mlp', 'learned-positions', 'no-rope'], without: (a) => void delete a.manifest.positionEmbed },
  'gpt2-dynamo': { features: ['layer-norm', 'ungated-mlp', 'gelu-tanh-mlp', 'learned-positions', 'no-rope'], without: (a) => void (a.manifest.program.norm = 'rms') },
  neox: { features: ['layer-norm', 'parallel-residual', 'partial-rotary', 'ungated-mlp', 'gelu-mlp'], without: (a) => void (a.manifest.program.residual = 'sequential') },
  'neox-split': { features: ['layer-norm', 'parallel-residual', 'partial-rotary', 'ungated-mlp', 'gelu-mlp'], without: (a) => void (a.manifest.program.norm = 'rms') },
  phi2: { features: ['layer-norm', 'parallel-residual', 'partial-rotary', 'ungated-mlp', 'gelu-tanh-mlp'], without: (a) => void (a.manifest.program.residual = 'sequential') },
  stablelm: { features: ['layer-norm', 'partial-rotary', 'swiglu', 'linear-bias'], without: (a) => void (a.manifest.program.norm = 'rms') },
};

const FAMILIES: Record<string, Family> = {
  ...Object.fromEntries(Object.entries(GPT_FAMILY_VARIANTS).map(([name, opts]) => [name, { source: (path: string) => saveModel(makeTinyLlama(opts), path), vocab: 256, ...GPT_FEATURES[name] }])),
  'gpt2 (torch.onnx.export, opset 14)': {
    source: (path) => copyFileSync(join(TORCH_EXPORTS, 'gpt2-ts14.onnx'), path),
    vocab: 32,
    features: ['layer-norm', 'ungated-mlp', 'gelu-tanh-mlp', 'learned-positions', 'no-rope', 'linear-bias'],
    without: (a) => void delete a.manifest.positionEmbed,
  },
  'gpt-neox (torch.onnx.export, opset 14)': {
    source: (path) => copyFileSync(join(TORCH_EXPORTS, 'neox-ts14.onnx'), path),
    vocab: 32,
    features: ['layer-norm', 'parallel-residual', 'partial-rotary', 'ungated-mlp', 'gelu-mlp', 'linear-bias'],
    without: (a) => void (a.manifest.program.residual = 'sequential'),
  },
  'phi-2 (torch.onnx.export, opset 17)': {
    source: (path) => copyFileSync(join(TORCH_EXPORTS, 'phi2-ts17.onnx'), path),
    vocab: 32,
    features: ['layer-norm', 'parallel-residual', 'partial-rotary', 'ungated-mlp', 'gelu-tanh-mlp', 'linear-bias'],
    without: (a) => void (a.manifest.program.norm = 'rms'),
  },
};

describe.each(Object.entries(FAMILIES))('GPT-style family %s compiled by twlac (TWLA, rotation, mp:4)', (name, fam) => {
  const dir = join(root, name.replace(/[^a-z0-9-]+/gi, '_'));
  const src = join(dir, 'model.onnx');
  const out = join(dir, 'out');
  // 14 prompt tokens; calibration segments of the model's own vocabulary within its 32 positions (the torch exports' tables).
  const PROMPT = [3, 17, 42, 99, 5, 8, 200, 13, 77, 1, 64, 250, 31, 9].map((t) => t % fam.vocab);
  const CALIB = [0, 1, 2, 3, 4, 5].map((s) => Int32Array.from({ length: 32 }, (_, i) => (i * (37 + 2 * s) + 11 * s) % fam.vocab));
  const ortRun = (path: string) => ortLogitsAndGreedy(path, PROMPT, GREEDY);
  let want: { logits: Float32Array; greedy: number[] };
  beforeAll(async () => {
    mkdirSync(dir, { recursive: true });
    fam.source(src);
    await compileToDir(src, out, { calib: CALIB, acts: { kind: 'mp', budget: 4 } });
    want = await ortRun(join(out, 'model.onnx'));
  }, 120_000);

  it('folding and rotation are exact: the transformed, unquantised graph matches the source under ORT', async () => {
    const source = await ortRun(src);
    const model = loadModel(src);
    const ctx = createContext(model, { calib: CALIB });
    await new PassManager([checkModelPass, foldNormsPass, rotatePass]).run(model, ctx);
    expect(ctx.sites.filter((s) => s.group.norm).every((s) => s.gammaFolded)).toBe(true);
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

  it('reference runtime: logits match ORT, greedy tokens identical; without the feature it does not match', () => {
    const a = readArtifact(out);
    expect(relErr(referenceLogits(a, PROMPT), want.logits)).toBeLessThan(1e-5);
    expect(referenceGreedy(a, PROMPT, GREEDY)).toEqual(want.greedy);
    fam.without(a);
    expect(relErr(referenceLogits(a, PROMPT), want.logits)).toBeGreaterThan(1e-3);
  });

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
