// The compile pipeline: take biases out of fused ops, fold constant norm weights, split packed linears → recognise → check → [fold norms → rotate] → ternary → [refine] →
// [activation precision] → storage precision → lower for onnxruntime. `compile` works on an in-memory Model (the library
// API for other ONNX toolchains); `compileToDir` is what the CLI runs.
import { writeFileSync } from 'node:fs';
import { createRequire } from 'node:module';
import { basename, join, relative, resolve } from 'node:path';
import type { Model } from './graph/ir.ts';
import { PassManager, type Pass, type Progress, silentProgress } from './graph/pass.ts';
import { constTensor, recognize } from './graph/recognize.ts';
import { loadModel, saveModel } from './graph/onnx.ts';
import { artifactModel } from './artifact/from-structure.ts';
import { TWLAC_VERSION, writeArtifact, type ArtifactModel } from './artifact/build.ts';
import type { ArtifactManifest } from './artifact/manifest.ts';
import { checkModelPass } from './passes/check-model.ts';
import { checkWeightsPass } from './passes/check-weights.ts';
import { ternaryPass } from './passes/ternary.ts';
import { foldNormsPass } from './passes/fold-norms.ts';
import { rotatePass } from './passes/rotate.ts';
import { refinePass } from './passes/refine.ts';
import { actPrecisionPass } from './passes/act-precision.ts';
import { lowerOrtPass } from './passes/lower-ort.ts';
import { storagePrecisionPass } from './passes/storage-precision.ts';
import { splitPackedLinears } from './passes/split-packed.ts';
import { unfuseBiases } from './passes/unfuse-bias.ts';
import { foldVectorConstants } from './passes/fold-vector-constants.ts';
import { type CompileContext, type CompileOptions, linearId, quantizedLinears, siteId } from './passes/context.ts';
import { renderReport } from './report.ts';
import { checkOutputPlace, withAtomicDir } from './util/atomic-dir.ts';
import { UserError } from './errors.ts';
import { Checkpoint, checkpointDirFor } from './util/checkpoint.ts';
import { runningCodeDigest } from './util/code-digest.ts';
import { checkpointKey, describeResume } from './passes/resume.ts';
import { checkTargetShapes, emitTargets, type TargetSpec } from './codegen/targets.ts';
import { renderHtmlReport } from './report-html.ts';
import { pplVsBits, type EvalRequest } from './eval/ppl-vs-bits.ts';
import { checkTokenizerFitsModel, readTokenizerFile } from './eval/tokenizer.ts';
import { checkOrtLoads } from './eval/ort-session.ts';
import { describeAdapter, selectDevice } from './gpu/device.ts';

export type { CompileOptions } from './passes/context.ts';

export const DEFAULT_OPTIONS: CompileOptions = {
  weights: 'twla',
  structure: 'kernel',
  // The lattice variant of tq1_g128 (formats/ternary.ts): the same bytes, no worse fixture
  // perplexity, and the CUDA prefill GEMM needs no per-group fold (docs/performance.md).
  format: 'tq1_g128_lat',
  acts: { kind: 'none' },
  rotate: true,
  fuse: true,
  gptq: true,
  xDomain: true,
};

/** The passes for a set of options, in order. */
export function pipeline(opts: CompileOptions): Pass<CompileContext>[] {
  const passes: Pass<CompileContext>[] = [checkModelPass, checkWeightsPass];
  if (opts.weights === 'twla') {
    passes.push(foldNormsPass);
    if (opts.rotate) passes.push(rotatePass);
  }
  passes.push(ternaryPass);
  if (opts.refine) passes.push(refinePass);
  if (opts.acts.kind !== 'none') passes.push(actPrecisionPass);
  passes.push(storagePrecisionPass, lowerOrtPass);
  return passes;
}

export interface CompileResult {
  /** The lowered model (runs in stock onnxruntime). */
  model: Model;
  ctx: CompileContext;
  timings: { pass: string; seconds: number }[];
}

/**
 * The state twlac's passes share, for `model` (its biases taken out of fused ops, its norm weights
 * computed from constants folded, and its packed q/k/v and gate/up linears cut into one linear
 * each first, which recognition needs): its recognised structure, the options (over
 * {@link DEFAULT_OPTIONS}) and empty per-linear and per-site records. Run any of the passes
 * with it through a {@link PassManager}.
 */
export function createContext(model: Model, opts: Partial<CompileOptions> = {}, progress: Progress = silentProgress): CompileContext {
  unfuseBiases(model);
  foldVectorConstants(model);
  splitPackedLinears(model);
  const structure = recognize(model);
  return {
    progress,
    opts: { ...DEFAULT_OPTIONS, ...opts },
    structure,
    linears: new Map(quantizedLinears(structure).map((l) => [l, { id: linearId(l) }])),
    sites: structure.inputGroups.filter((g) => g.site !== 'head').map((g) => ({ id: siteId(g), group: g })),
  };
}

/** Compile an in-memory model. The model is rewritten in place and returned. */
export async function compile(model: Model, opts: Partial<CompileOptions> = {}, progress: Progress = silentProgress): Promise<CompileResult> {
  return runPipeline(model, createContext(model, opts, progress));
}

/** Run the options' pipeline over a model and the context made for it. */
async function runPipeline(model: Model, ctx: CompileContext): Promise<CompileResult> {
  const o = ctx.opts;
  const progress = ctx.progress;
  // Only the twla fit has GPU work (Gram matrices, GPTQ); rtn needs no device.
  const { gpu, note } = selectDevice(o.weights === 'twla' ? (o.device ?? 'cpu') : 'cpu');
  if (o.device && o.device !== 'cpu') progress.log(note);
  if (gpu) ctx.gpu = gpu;
  const passes = pipeline(o);
  // twlac's preconditions are about the options and the recognised structure, which no pass
  // changes: all are checked before the first pass, so a bad flag is refused before hours of work.
  for (const p of passes) {
    const why = p.requires?.(model, ctx);
    if (why) throw new UserError(`pass ${p.name}: ${why}`);
  }
  const pm = new PassManager(passes);
  const r = await pm.run(model, ctx).finally(() => gpu?.close());
  return { model: r.model, ctx, timings: pm.timings.map((t) => ({ pass: t.pass, seconds: t.seconds })) };
}

export interface CompileFileResult {
  manifest: ArtifactManifest;
  outDir: string;
  /** Seconds per pass (kept out of out/, which is byte-identical from run to run). */
  timings: { pass: string; seconds: number }[];
}

export interface CompileFileExtras {
  /** Kernel and model targets written under out/ (see {@link parseTargets}). */
  targets?: TargetSpec[];
  /** Perplexity against bits on held-out text: the source, an RTN-ternary compile and this one. */
  eval?: EvalRequest;
  /** Record seconds per pass in the manifest and reports (out/ then differs from run to run). */
  timings?: boolean;
  /** A tokenizer.json to check against the model's vocabulary and copy into out/. */
  tokenizer?: string;
  /** Replace an earlier twlac output at outDir. */
  force?: boolean;
  /** Continue from the checkpoint an interrupted compile to outDir left (`<outDir>.twlac-resume/`). */
  resume?: boolean;
  /** How the compile was asked for (CLI flags, calibration source), recorded in the manifest. */
  invocation?: Record<string, unknown>;
}

/**
 * Load, compile and write `outDir` atomically: model.onnx (+ data), weights.bin, manifest.json,
 * report.md, report.html, and kernels/<target>/ for each of `extra.targets` (see {@link parseTargets}).
 * What the long passes finish (rotations, ternary blocks, refined blocks, activation precision:
 * passes/resume.ts) is kept in `<outDir>.twlac-resume/`
 * until the compile succeeds; `extra.resume` continues from there (a checkpoint found without it
 * is refused, as one made from other inputs or options is).
 */
export async function compileToDir(
  modelPath: string,
  outDir: string,
  opts: Partial<CompileOptions> = {},
  progress: Progress = silentProgress,
  extra: CompileFileExtras = {},
): Promise<CompileFileResult> {
  const t0 = performance.now();
  const output = { inputs: [modelPath, ...(extra.tokenizer ? [extra.tokenizer] : [])], force: extra.force };
  checkOutputPlace(outDir, output);
  progress.start(`loading ${basename(modelPath)}`);
  const model = loadModel(modelPath);
  progress.done();
  // Keyed by the model's files as loaded, before the passes rewrite its initializers.
  const key = checkpointKey({ version: TWLAC_VERSION, code: runningCodeDigest() }, modelPath, model, { ...DEFAULT_OPTIONS, ...opts });
  // Recognised once, before the compile (which can take minutes), so that the tokenizer is checked
  // first: its ids must index the model's embedding.
  const context = createContext(model, opts, progress);
  const tokenizer = extra.tokenizer ? readTokenizerFile(extra.tokenizer) : undefined;
  if (tokenizer) checkTokenizerFitsModel(tokenizer, context.structure.config.vocab);
  if (extra.targets?.length) await checkTargetShapes(context.structure.config, extra.targets);
  const checkpoint = Checkpoint.open(checkpointDirFor(resolve(outDir)), key, !!extra.resume);
  context.checkpoint = checkpoint;
  if (extra.resume) progress.log(describeResume(checkpoint, context, pipeline(context.opts).includes(rotatePass)));
  // Refused input can never finish: its checkpoint goes with it. Anything else (an internal or
  // file-system error, a kill) leaves the checkpoint for --resume.
  const result = await withAtomicDir(outDir, async (dir) => {
    const { model: out, ctx, timings } = await runPipeline(model, context);
    progress.start('writing model.onnx');
    const saved = saveModel(out, join(dir, 'model.onnx'));
    progress.done();
    progress.start('checking that onnxruntime loads model.onnx');
    await checkOrtLoads(join(dir, 'model.onnx'), 'the compiled model (the source model is likely malformed)');
    progress.done();
    const files: Record<string, number> = {};
    for (const [f, n] of Object.entries(saved.files)) files[relative(dir, f) || f] = n;
    if (tokenizer) {
      writeFileSync(join(dir, 'tokenizer.json'), tokenizer.text);
      files['tokenizer.json'] = Buffer.byteLength(tokenizer.text);
    }
    const am: ArtifactModel = artifactModel(ctx, modelPath);
    // Wall times only on request (--timings): without them the same inputs give the same bytes.
    const timed = <T>(x: T): T => (extra.timings ? x : withoutSeconds(x));
    am.method = { ...describeMethod(ctx.opts), ...(ctx.amp ? { ilaAmp: ctx.amp } : {}), ...(ctx.refine ? { refine: timed(ctx.refine) } : {}) };
    // Fitted on the GPU path: equal to the CPU path's output only within the stated tolerances.
    if (ctx.gpu) am.method.device = `gpu: ${describeAdapter(ctx.gpu.info)}`;
    const manifest = writeArtifact(dir, am, files);
    manifest.producer = producer(extra.invocation);
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
      const op = lowered === undefined ? `dense ${constTensor(l.weight)!.dtype}` : st.order2 ? '2 × com.microsoft::MatMulNBits bits=2, added (order 2)' : 'com.microsoft::MatMulNBits bits=2';
      linears[st.id] = { op, bitsPerWeight: (bytes * 8) / n, bytes };
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
    // Timings only on request: without them the same model, options and seed give the same bytes.
    if (extra.timings) manifest.timings = timings;
    manifest.errors = Object.fromEntries(
      [...ctx.linears.values()]
        .filter((st) => st.stats?.relWeightError !== undefined)
        .map(({ id, stats: s }) => [id, { weight: s!.relWeightError, ...(s!.relOutputError !== undefined ? { output: s!.relOutputError, outputRows: s!.outputErrorRows } : {}) }]),
    );
    if (extra.eval) {
      manifest.eval = timed(await pplVsBits(extra.eval, modelPath, { onnx: join(dir, 'model.onnx'), bitsPerWeight: manifest.bitsPerWeight }, (rtnDir) => compileToDir(modelPath, rtnDir, { weights: 'rtn-ternary' }).then((r) => r.manifest), progress));
    }
    if (extra.targets?.length) Object.assign(manifest.files, await emitTargets(dir, manifest, extra.targets, progress));
    const info = { seconds: extra.timings ? (performance.now() - t0) / 1000 : 0, notes: ctx.structure.notes };
    const report = renderReport(manifest, info);
    writeFileSync(join(dir, 'report.md'), report);
    manifest.files['report.md'] = Buffer.byteLength(report);
    // The page embeds the manifest as it stands before the page's own entry is added.
    const html = renderHtmlReport(manifest, info);
    writeFileSync(join(dir, 'report.html'), html);
    manifest.files['report.html'] = Buffer.byteLength(html);
    writeFileSync(join(dir, 'manifest.json'), JSON.stringify(manifest, null, 1));
    return { manifest, outDir, timings };
  }, output).catch((e: unknown) => {
    if (e instanceof UserError) checkpoint.remove();
    throw e;
  });
  checkpoint.remove();
  return result;
}

/** A copy of plain data with every `seconds` field left out. */
function withoutSeconds<T>(x: T): T {
  return JSON.parse(JSON.stringify(x, (k, v) => (k === 'seconds' ? undefined : v)));
}

/** What produced an artifact: versions of twlac and of the libraries whose behaviour shapes the bytes, and the invocation. */
function producer(invocation: Record<string, unknown> | undefined): NonNullable<ArtifactManifest['producer']> {
  const require = createRequire(import.meta.url);
  const version = (pkg: string): string => (require(`${pkg}/package.json`) as { version: string }).version;
  return {
    twlac: TWLAC_VERSION,
    node: process.versions.node,
    onnxruntime: version('onnxruntime-node'),
    protobufjs: version('protobufjs'),
    ...(invocation ? { invocation } : {}),
  };
}

function describeMethod(o: CompileOptions): Record<string, unknown> {
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
