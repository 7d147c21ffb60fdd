// The refinement pass on a tiny LLaMA: it lowers the distillation loss of every block, the
// refined linears stay in their storage format (lattice rows, decodable, the graph holding
// the decoded values), and the hand-written block forward that it trains through computes
// what onnxruntime computes on the lowered model; the refined artifact runs unchanged through
// the reference runtime and WebGPU, order-2 linears (--order2) included.
import { mkdtempSync, readFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import * as ort from 'onnxruntime-node';
import { describe, expect, it } from 'vitest';
import { artifactModel } from '../../src/artifact/from-structure.ts';
import { BLOCK_LINEARS } from '../../src/artifact/build.ts';
import { compile, compileToDir, createContext } from '../../src/compile.ts';
import { PassManager } from '../../src/graph/pass.ts';
import { checkWeightsPass } from '../../src/passes/check-weights.ts';
import { foldNormsPass } from '../../src/passes/fold-norms.ts';
import { rotatePass } from '../../src/passes/rotate.ts';
import { ternaryPass } from '../../src/passes/ternary.ts';
import { readArtifact } from '../../src/artifact/weights.ts';
import { forward, openModel } from '../../src/eval/ort-session.ts';
import { referenceLogits } from '../../src/runtime/reference.ts';
import { WebgpuModel } from '../../src/runtime/webgpu/runtime.ts';
import { testDevice } from '../codegen/wgsl-harness.ts';
import { decodeTernary, encodeTernary, decodeTrits, groupsPerRow } from '../../src/formats/ternary.ts';
import { encodeModel, saveModel } from '../../src/graph/onnx.ts';
import { weightRows } from '../../src/graph/recognize.ts';
import { halfToFloat } from '../../src/graph/tensor.ts';
import { DEFAULT_REFINE, e2eStepSize, refinePass } from '../../src/passes/refine.ts';
import { blockForward, type BlockParams } from '../../src/quant/block-grad.ts';
import { mulberry32 } from '../../src/util/prng.ts';
import { FAMILY_VARIANTS, makeTinyLlama } from '../fixtures/make-fixtures.ts';

const dims = { layers: 2, hidden: 64, heads: 4, kvHeads: 2, intermediate: 128, vocab: 80, seed: 9 };
const rand = mulberry32(3);
const calib = Array.from({ length: 8 }, () => Int32Array.from({ length: 64 }, () => Math.floor(rand() * dims.vocab)));

describe('refine pass', () => {
  it('lowers every block’s 1 − cos loss and keeps the lattice format', async () => {
    const r = await compile(makeTinyLlama(dims), { calib, format: 'tq1_g32_lat', refine: { ...DEFAULT_REFINE, steps: 30, pieces: 8, seq: 32, lr: 5e-3 } });
    expect(r.timings.map((t) => t.pass)).toContain('refine');
    const stats = r.ctx.refine!.blocks;
    expect(stats.length).toBe(2);
    for (const b of stats) {
      expect(b.lossRefined).toBeLessThan(0.9 * b.lossPtq);
      expect(b.lossStored).toBeLessThan(b.lossPtq);
      expect(b.flipped).toBe(0);
    }
    for (const [l, st] of r.ctx.linears) {
      if (!st.ternary) continue;
      expect(st.fp).toBeUndefined();
      const w = st.ternary;
      // Re-encoding checks the lattice rule; the decoded values are what the graph held before lowering.
      const ng = groupsPerRow(w.format, w.cols);
      expect(() => encodeTernary(w.format, w.rows, w.cols, decodeTrits(w), Float64Array.from(w.scales, halfToFloat), Float64Array.from(w.shifts!, halfToFloat))).not.toThrow();
      expect(ng).toBe(w.cols / 32);
      void l;
    }
  });

  it('with --order2: learns both planes’ scales (or the first plane’s only) and lowers every block’s loss; the logits end-to-end stage lowers its KL', async () => {
    const order2 = ['v', 'blocks.1.o'];
    const refine = { ...DEFAULT_REFINE, steps: 30, pieces: 8, seq: 32, lr: 5e-3 };
    const ptq = await compile(makeTinyLlama(dims), { calib, format: 'tq1_g32_lat', order2 });
    const planeScales = (r: typeof ptq) => [...r.ctx.linears.values()].filter((st) => st.order2).map((st) => Array.from(st.order2!.scales));
    expect(planeScales(ptq).length).toBe(3);
    for (const mode of ['learn', 'fixed'] as const) {
      const r = await compile(makeTinyLlama(dims), { calib, format: 'tq1_g32_lat', order2, refine: { ...refine, order2Plane: mode, e2eSteps: 15, e2eLr: 5e-3, e2eLoss: 'logits' } });
      for (const b of r.ctx.refine!.blocks) {
        expect(b.lossRefined, mode).toBeLessThan(0.95 * b.lossPtq);
        expect(b.lossStored, mode).toBeLessThan(b.lossPtq);
      }
      const e2e = r.ctx.refine!.e2e!;
      expect(e2e.loss).toBe('logits');
      expect(e2e.lossStored, mode).toBeLessThan(0.95 * e2e.lossBefore);
      if (mode === 'fixed') expect(planeScales(r)).toEqual(planeScales(ptq));
      else expect(planeScales(r)).not.toEqual(planeScales(ptq));
    }
  });

  it('refuses a model whose blocks it does not compute, naming the feature (OLMo-2: no pre-norms; Gemma-2: its embedding scale)', async () => {
    const refine = { ...DEFAULT_REFINE, steps: 1, pieces: 1, seq: 32 };
    const olmo = { ...FAMILY_VARIANTS.olmo2, vocab: 80 };
    await expect(compile(makeTinyLlama(olmo), { calib, rotate: false, gptq: false, refine })).rejects.toThrow(/does not compute feature 'no-pre-norm'/);
    await expect(compile(makeTinyLlama({ ...FAMILY_VARIANTS.gemma2, vocab: 80 }), { calib, rotate: false, gptq: false, refine })).rejects.toThrow(/does not compute feature 'embed-scale'/);
  });

  it('the end-to-end stage on the final hidden state lowers the last block’s loss further', async () => {
    const r = await compile(makeTinyLlama(dims), { calib, refine: { ...DEFAULT_REFINE, steps: 10, pieces: 4, seq: 32, lr: 5e-3, e2eSteps: 15, e2eLr: 5e-3, e2eLoss: 'hidden' } });
    const e2e = r.ctx.refine!.e2e!;
    expect(e2e.lossStored).toBeLessThan(0.95 * e2e.lossBefore);
  });

  it('end to end over more pieces than the block-wise stage; a probe after step k sees what a k-step stage stores; the cosine schedule', async () => {
    const run = async (e2eSteps: number, probeAt?: number, e2eSchedule: 'constant' | 'cosine' = 'constant') => {
      const m = makeTinyLlama(dims);
      const ctx = createContext(m, { calib, refine: { ...DEFAULT_REFINE, steps: 2, pieces: 2, seq: 32, e2eSteps, e2eLr: 5e-3, e2ePieces: 6, e2eSchedule } });
      let probed: Float64Array[] | undefined;
      const weightsNow = () => [...ctx.linears.values()].map((st) => decodeTernary(st.ternary!));
      if (probeAt) ctx.refineProbe = { e2eSteps: [probeAt], at: async () => void (probed = weightsNow()) };
      await new PassManager([checkWeightsPass, foldNormsPass, rotatePass, ternaryPass, refinePass]).run(m, ctx);
      return { final: weightsNow(), probed, e2e: ctx.refine!.e2e! };
    };
    const short = await run(3);
    const long = await run(5, 3);
    expect(long.probed).toEqual(short.final);
    expect(long.final).not.toEqual(short.final);
    expect(short.e2e.lossStored).toBeLessThan(short.e2e.lossBefore);
    // Cosine decay: its first step is the constant stage's first step (full step size), later ones smaller.
    const cos = await run(5, 1, 'cosine');
    expect(cos.probed).toEqual((await run(1)).final);
    expect(cos.final).not.toEqual(long.final);
    expect(cos.e2e.lossStored).toBeLessThan(cos.e2e.lossBefore);
  });

  it('cosine end-to-end step sizes: e2eLr at step 0, half at mid-stage, decreasing, above 0 until the end', () => {
    const o = { e2eLr: 2e-3, e2eSteps: 8, e2eSchedule: 'cosine' as const };
    const lrs = Array.from({ length: 8 }, (_, k) => e2eStepSize(o, k));
    expect(lrs[0]).toBe(2e-3);
    expect(lrs[4]).toBeCloseTo(1e-3, 15);
    for (let k = 1; k < 8; k++) expect(lrs[k]).toBeLessThan(lrs[k - 1]);
    expect(lrs[7]).toBeGreaterThan(0);
    expect(e2eStepSize({ ...o, e2eSchedule: 'constant' }, 7)).toBe(2e-3);
  });

  it('block forward chain matches onnxruntime on the refined, lowered model', async () => {
    const m = makeTinyLlama(dims);
    const r = await compile(m, { calib, refine: { ...DEFAULT_REFINE, steps: 5, pieces: 4, seq: 32 } });
    const am = artifactModel(r.ctx, '');
    const c = am.config;
    const ids = Array.from(calib[0].subarray(0, 12));
    const S = ids.length;
    let x: Float32Array = new Float32Array(S * c.hidden);
    ids.forEach((id, s) => x.set(am.embed.subarray(id * c.hidden, (id + 1) * c.hidden), s * c.hidden));
    for (const b of am.blocks) {
      const p: BlockParams = {
        attnNorm: b.attnNorm,
        mlpNorm: b.mlpNorm,
        W: Object.fromEntries(BLOCK_LINEARS.map((role) => [role, Float32Array.from(decodeTernary(b.linears[role]!.ternary!))])) as BlockParams['W'],
        bias: {},
        T: { attn: b.acts.attn.transform, o: b.acts.o.transform, mlp: b.acts.mlp.transform, down: b.acts.down.transform },
      };
      x = blockForward(p, { ...c }, x, S).out;
    }
    const head = am.lmHead.dense ?? Float32Array.from(weightRows(r.ctx.structure.lmHead));
    const s = await ort.InferenceSession.create(encodeModel(r.model));
    const out = await s.run({ input_ids: new ort.Tensor('int64', BigInt64Array.from(ids.map(BigInt)), [1, S]) });
    const logits = out.logits.data as Float32Array;
    let worst = 0, scale = 0;
    for (let t = 0; t < S; t++) {
      let ss = 0;
      for (let i = 0; i < c.hidden; i++) ss += x[t * c.hidden + i] ** 2;
      const inv = 1 / Math.sqrt(ss / c.hidden + c.normEps);
      for (let v = 0; v < c.vocab; v++) {
        let y = 0;
        for (let i = 0; i < c.hidden; i++) y += head[v * c.hidden + i] * x[t * c.hidden + i] * inv * (am.finalNorm ? am.finalNorm[i] : 1);
        worst = Math.max(worst, Math.abs(y - logits[t * c.vocab + v]));
        scale = Math.max(scale, Math.abs(y));
      }
    }
    expect(worst / scale).toBeLessThan(2e-2);
  });
});

describe('refined artifact through every runtime', () => {
  it('reference runtime and WebGPU (where a device exists) agree with onnxruntime on out/model.onnx', async () => {
    const dir = mkdtempSync(join(tmpdir(), 'twlac-refine-'));
    try {
      saveModel(makeTinyLlama(dims), join(dir, 'src.onnx'));
      const out = join(dir, 'out');
      // order-2 linears included: both refined planes are what every runtime reads
      const r = await compileToDir(join(dir, 'src.onnx'), out, { calib, order2: ['v', 'blocks.0.down'], refine: { ...DEFAULT_REFINE, steps: 5, pieces: 4, seq: 32, e2eSteps: 2, e2eLoss: 'logits' } });
      expect(r.manifest.features).toContain('order2-linear');
      expect((r.manifest as unknown as { method: { refine?: unknown } }).method.refine).toBeDefined();
      // no wall times without --timings: the refinement's statistics leave manifest.json reproducible
      const written = readFileSync(join(out, 'manifest.json'), 'utf8');
      expect(written).toMatch(/"lossStored"/);
      expect(written).not.toMatch(/"seconds"/);
      const a = readArtifact(out);
      const ids = Array.from(calib[1].subarray(0, 10));
      const ref = referenceLogits(a, ids);
      const session = await openModel(join(out, 'model.onnx'));
      const want = (await forward(session, ids, 1, ids.length)).logits;
      await session.session.release();
      const relErr = (x: Float32Array, y: Float32Array) => {
        let d = 0, m = 0;
        for (let i = 0; i < y.length; i++) {
          d = Math.max(d, Math.abs(x[i] - y[i]));
          m = Math.max(m, Math.abs(y[i]));
        }
        return d / (1 + m);
      };
      expect(relErr(ref, want)).toBeLessThan(1e-3);
      const { dev } = await testDevice();
      if (dev) {
        const model = await WebgpuModel.create(dev.device, a, { capacity: 16 });
        try {
          expect(relErr(await model.logitsOf(ids), ref)).toBeLessThan(1e-4);
        } finally {
          model.destroy();
        }
      }
    } finally {
      rmSync(dir, { recursive: true, force: true });
    }
  }, 120_000);
});
