// The compile pipeline: recognise → check → [fold norms → rotate] → ternary → [refine] → [activation
// precision] → lower for onnxruntime. `compile` works on an in-memory Model (the library
// API for other ONNX toolchains); `compileToDir` is what the CLI runs.
import { readFileSync, writeFileSync } from 'node:fs';
import { basename, join, relative } from 'node:path';
import type { Model } from './graph/ir.ts';
import { PassManager, type Pass, type Progress, silentProgress } from './graph/pass.ts';
import { constTensor, recognize } from './graph/recognize.ts';
import { loadModel, saveModel } from './graph/onnx.ts';
import { artifactModel } from './artifact/from-structure.ts';
import { writeArtifact, type ArtifactModel } from './artifact/build.ts';
import type { ArtifactManifest } from './artifact/manifest.ts';
import { checkWeightsPass } from './passes/check-weights.ts';
import { ternaryPass } from './passes/ternary.ts';
import { foldNormsPass } from './passes/fold-norms.ts';
import { rotatePass } from './passes/rotate.ts';
import { refinePass } from './passes/refine.ts';
import { actPrecisionPass } from './passes/act-precision.ts';
import { lowerOrtPass } from './passes/lower-ort.ts';
import { type CompileContext, type CompileOptions, linearId, quantizedLinears, siteId } from './passes/context.ts';
import { renderReport } from './report.ts';
import { withAtomicDir } from './cli/atomic-dir.ts';

export type { CompileOptions } from './passes/context.ts';

export const DEFAULT_OPTIONS: CompileOptions = {
  weights: 'twla',
  structure: 'kernel',
  // The lattice variant of tq1_g128 (formats/ternary.ts): the same bytes, fixture perplexity
  // 40.95 / 42.38 at A16 / ILA-AMP mean 4 bits against 41.04 / 42.43 (all dev windows,
  // bench/results/accuracy.md), and the CUDA prefill GEMM needs no per-group fold (7B prefill
  // of 2048 tokens on the H100: 0.073 s against 0.099 s in one session-6 run).
  format: 'tq1_g128_lat',
  acts: { kind: 'none' },
  rotate: true,
  fuse: true,
  gptq: true,
  xDomain: true,
};

/** The passes for a set of options, in order. */
export function pipeline(opts: CompileOptions): Pass<CompileContext>[] {
  const passes: Pass<CompileContext>[] = [checkWeightsPass];
  if (opts.weights === 'twla') {
    passes.push(foldNormsPass);
    if (opts.rotate) passes.push(rotatePass);
  }
  passes.push(ternaryPass);
  if (opts.refine) passes.push(refinePass);
  if (opts.acts.kind !== 'none') passes.push(actPrecisionPass);
  passes.push(lowerOrtPass);
  return passes;
}

export interface CompileResult {
  /** The lowered model (runs in stock onnxruntime). */
  model: Model;
  ctx: CompileContext;
  timings: { pass: string; seconds: number }[];
}

/** Compile an in-memory model. The model is rewritten in place and returned. */
export async function compile(model: Model, opts: Partial<CompileOptions> = {}, progress: Progress = silentProgress): Promise<CompileResult> {
  const o: CompileOptions = { ...DEFAULT_OPTIONS, ...opts };
  const structure = recognize(model);
  const ctx: CompileContext = {
    progress,
    opts: o,
    structure,
    linears: new Map(quantizedLinears(structure).map((l) => [l, { id: linearId(l) }])),
    sites: structure.inputGroups.filter((g) => g.site !== 'head').map((g) => ({ id: siteId(g), group: g })),
  };
  const pm = new PassManager(pipeline(o));
  const r = await pm.run(model, ctx);
  return { model: r.model, ctx, timings: pm.timings.map((t) => ({ pass: t.pass, seconds: t.seconds })) };
}

export interface CompileFileResult {
  manifest: ArtifactManifest;
  outDir: string;
}

/** Load, compile and write `outDir` atomically: model.onnx (+ data), weights.bin, manifest.json, report.md. */
export async function compileToDir(
  modelPath: string,
  outDir: string,
  opts: Partial<CompileOptions> = {},
  progress: Progress = silentProgress,
  extra: { targets?: (dir: string, manifest: ArtifactManifest) => Promise<Record<string, number>>; tokenizer?: string } = {},
): Promise<CompileFileResult> {
  const t0 = performance.now();
  progress.start(`loading ${basename(modelPath)}`);
  const model = loadModel(modelPath);
  progress.done();
  return withAtomicDir(outDir, async (dir) => {
    const { model: out, ctx, timings } = await compile(model, opts, progress);
    progress.start('writing model.onnx');
    const saved = saveModel(out, join(dir, 'model.onnx'));
    progress.done();
    const files: Record<string, number> = {};
    for (const [f, n] of Object.entries(saved.files)) files[relative(dir, f) || f] = n;
    if (extra.tokenizer) {
      const tok = readFileSync(extra.tokenizer);
      writeFileSync(join(dir, 'tokenizer.json'), tok);
      files['tokenizer.json'] = tok.byteLength;
    }
    const am: ArtifactModel = artifactModel(ctx, modelPath);
    am.method = { ...describeMethod(ctx.opts), ...(ctx.amp ? { ilaAmp: ctx.amp } : {}), ...(ctx.refine ? { refine: ctx.refine } : {}) };
    const manifest = writeArtifact(dir, am, files);
    // ONNX-side accounting, from the bytes of the MatMulNBits initializers.
    const linears: NonNullable<ArtifactManifest['onnx']>['linears'] = {};
    let bits = 0;
    let weights = 0;
    for (const [l, st] of ctx.linears) {
      // Lowered linears: their MatMulNBits initializers; the rest keep a dense weight.
      const lowered = st.stats?.onnxBytes;
      const bytes = lowered ?? constTensor(l.weight)?.byteLength;
      if (bytes === undefined) continue;
      const n = l.outFeatures * l.inFeatures;
      linears[st.id] = { op: lowered !== undefined ? 'com.microsoft::MatMulNBits bits=2' : `dense ${constTensor(l.weight)!.dtype}`, bitsPerWeight: (bytes * 8) / n, bytes };
      bits += bytes * 8;
      weights += n;
    }
    manifest.onnx = { file: 'model.onnx', linears, bitsPerWeight: weights ? bits / weights : 0 };
    // Structures without a packed writer (the TWLA reference structure) are stored dense;
    // their own storage is counted field by field (codes, masks, indices, fp16 parameters).
    const counted = [...ctx.linears.values()].filter((st) => !st.ternary && st.storageBits !== undefined);
    if (counted.length) {
      const n = [...ctx.linears].filter(([, st]) => !st.ternary).reduce((a, [l]) => a + l.outFeatures * l.inFeatures, 0);
      manifest.countedBitsPerWeight = counted.reduce((a, st) => a + st.storageBits!, 0) / n;
    }
    manifest.timings = timings;
    if (extra.targets) Object.assign(manifest.files, await extra.targets(dir, manifest));
    const report = renderReport(manifest, { seconds: (performance.now() - t0) / 1000, notes: ctx.structure.notes });
    writeFileSync(join(dir, 'report.md'), report);
    manifest.files['report.md'] = Buffer.byteLength(report);
    writeFileSync(join(dir, 'manifest.json'), JSON.stringify(manifest, null, 1));
    return { manifest, outDir };
  });
}

export function describeMethod(o: CompileOptions): Record<string, unknown> {
  return {
    weights: o.weights,
    structure: o.weights === 'twla' ? o.structure : 'per-row absmean',
    format: o.weights === 'twla' && o.structure === 'kernel' ? o.format : undefined,
    acts: o.acts,
    rotate: o.weights === 'twla' ? o.rotate : false,
    fuse: o.weights === 'twla' && o.rotate ? o.fuse : false,
    gptq: o.weights === 'twla' ? o.gptq : false,
    xDomain: o.weights === 'twla' ? o.xDomain : false,
    calibrationSegments: o.calib?.length ?? 0,
    calibrationSeq: o.calib?.[0]?.length ?? 0,
  };
}
