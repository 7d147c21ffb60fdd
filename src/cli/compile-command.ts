// `twlac MODEL -o OUT [...]`: flags → CompileOptions, calibration text → token segments,
// then compileToDir (atomic output).
import { createHash } from 'node:crypto';
import { existsSync, realpathSync, statSync } from 'node:fs';
import { basename } from 'node:path';
import { UserError } from '../errors.ts';
import { compileToDir } from '../compile.ts';
import type { ActSpec, CompileOptions, RefineOptions } from '../passes/context.ts';
import { parseFormatId } from '../formats/ternary.ts';
import { findTokenizer, loadTokenizer, tokenizeText } from '../eval/tokenizer.ts';
import { calibrationSegmentsFromText } from '../calib/data.ts';
import { DEFAULT_WINDOW, windowCount } from '../eval/perplexity.ts';
import { makeProgress } from './progress.ts';
import { parseTargets } from '../codegen/targets.ts';
import { checkOutputPlace } from '../util/atomic-dir.ts';
import { MiB, readTextFile, statRegularFile } from '../util/files.ts';
import type { DeviceChoice } from '../gpu/device.ts';
import { DEFAULT_REFINE } from '../passes/refine.ts';

export interface CompileFlags {
  out: string;
  weights: 'twla' | 'rtn-ternary';
  structure: 'kernel' | 'twla';
  format: string;
  acts: string;
  calib?: string;
  tokenizer?: string;
  calibSamples: number;
  seq: number;
  seed: number;
  rotate: boolean;
  fuse: boolean;
  gptq: boolean;
  xdomain: boolean;
  order2Cols?: number;
  order2?: string[];
  refine?: boolean;
  refineSteps?: number;
  refineTrits?: 'keep' | 'ste';
  refineE2eSteps?: number;
  refineE2ePieces?: number;
  refineE2eLr?: number;
  refineE2eLoss?: 'hidden' | 'logits';
  refineE2eSchedule?: 'constant' | 'cosine';
  refineOrder2Plane?: 'learn' | 'fixed';
  target?: string[];
  eval?: string;
  evalWindows?: number;
  device: DeviceChoice;
  threads?: number;
  quiet?: boolean;
  force?: boolean;
  resume?: boolean;
  timings?: boolean;
}

/** Calibration text files larger than this are refused unread (sampling reads only a few MB of it). */
const MAX_CALIB_BYTES = 1024 * MiB;

export function parseActs(spec: string): ActSpec {
  const s = spec.trim();
  if (s === '16') return { kind: 'none' };
  if (/^(2|4|6|8)$/.test(s)) return { kind: 'uniform', bits: Number(s) };
  const m = /^mp:(\d+(?:\.\d+)?)$/.exec(s);
  if (m && Number(m[1]) >= 2 && Number(m[1]) <= 8) return { kind: 'mp', budget: Number(m[1]) };
  throw new UserError(`--acts '${spec}' is not one of 16, 8, 6, 4, 2, mp:<mean bits between 2 and 8>`);
}

/** The refinement's flags: each sets one RefineOptions field and needs --refine. */
const REFINE_FLAGS = [
  ['refineSteps', 'steps', '--refine-steps'],
  ['refineTrits', 'trits', '--refine-trits'],
  ['refineE2eSteps', 'e2eSteps', '--refine-e2e-steps'],
  ['refineE2ePieces', 'e2ePieces', '--refine-e2e-pieces'],
  ['refineE2eLr', 'e2eLr', '--refine-e2e-lr'],
  ['refineE2eLoss', 'e2eLoss', '--refine-e2e-loss'],
  ['refineE2eSchedule', 'e2eSchedule', '--refine-e2e-schedule'],
  ['refineOrder2Plane', 'order2Plane', '--refine-order2-plane'],
] as const satisfies readonly (readonly [keyof CompileFlags, keyof RefineOptions, string])[];

export async function compileCommand(model: string, f: CompileFlags): Promise<void> {
  if (!existsSync(model)) throw new UserError(`model file not found: ${model}`);
  try {
    parseFormatId(f.format);
  } catch (e) {
    throw new UserError(`--format: ${(e as Error).message}`);
  }
  const acts = parseActs(f.acts);
  if (f.order2Cols !== undefined && (f.weights !== 'twla' || f.structure !== 'twla')) throw new UserError('--order2-cols needs --weights twla --structure twla');
  const refineFlags = REFINE_FLAGS.filter(([flag]) => f[flag] !== undefined);
  const names = REFINE_FLAGS.map(([, , name]) => name);
  if (refineFlags.length && !f.refine) throw new UserError(`${names.slice(0, -1).join(', ')} and ${names.at(-1)} need --refine`);
  if (f.refine && (f.weights !== 'twla' || f.structure !== 'kernel')) throw new UserError('--refine needs --weights twla --structure kernel');
  if (f.order2?.length && (f.weights !== 'twla' || f.structure !== 'kernel')) throw new UserError('--order2 needs --weights twla --structure kernel');
  const targets = parseTargets(f.target ?? []);
  const needsCalib = f.weights === 'twla' || acts.kind !== 'none';
  if (needsCalib && !f.calib) throw new UserError(`--weights ${f.weights}${acts.kind !== 'none' ? ` with --acts ${f.acts}` : ''} needs calibration text: pass --calib <file>`);
  // The tokenizer: needed to cut calibration text; otherwise only copied into out/ when the
  // model has one that is a regular file (a FIFO or device there is skipped, not read).
  let tokenizerPath: string | undefined = f.tokenizer ?? findTokenizer(model, !needsCalib);
  const skipped: string[] = [];
  if (!needsCalib && f.tokenizer === undefined && tokenizerPath !== undefined) {
    try {
      statRegularFile(tokenizerPath, 'tokenizer file');
    } catch (e) {
      if (!(e instanceof UserError)) throw e;
      skipped.push(`not copying the tokenizer into ${f.out}: ${e.message}`);
      tokenizerPath = undefined;
    }
  }
  // Refuse an unsafe -o before any work is done.
  const inputs = [model, ...(tokenizerPath ? [tokenizerPath] : []), ...(f.calib ? [f.calib] : [])];
  checkOutputPlace(f.out, { inputs, force: f.force });
  const progress = makeProgress({ quiet: f.quiet });
  for (const note of skipped) progress.log(note);
  let calib: Int32Array[] | undefined;
  let calibSource: Record<string, unknown> | undefined;
  let calibText: string | undefined;
  if (needsCalib) {
    const tok = loadTokenizer(tokenizerPath!);
    if (!existsSync(f.calib!)) throw new UserError(`calibration text not found: ${f.calib}`);
    const text = (calibText = readTextFile(f.calib!, 'calibration text', MAX_CALIB_BYTES));
    progress.start('sampling calibration segments');
    calib = calibrationSegmentsFromText(text, tok.encode, { samples: f.calibSamples, seq: f.seq, seed: f.seed });
    progress.done(`${calib.length} × ${f.seq} tokens`);
    calibSource = { file: f.calib, sha256: createHash('sha256').update(text).digest('hex'), samples: f.calibSamples, seq: f.seq, seed: f.seed };
  }
  // Checked before the compile starts, so that a bad --eval never costs a compile.
  let evalIds: Int32Array | undefined;
  if (f.eval !== undefined) {
    if (!existsSync(f.eval) || !statSync(f.eval).isFile()) throw new UserError(`evaluation text not found: ${f.eval}`);
    const text = readTextFile(f.eval, 'evaluation text', MAX_CALIB_BYTES);
    if (f.calib && (realpathSync(f.eval) === realpathSync(f.calib) || text === (calibText ?? readTextFile(f.calib, 'calibration text', MAX_CALIB_BYTES)))) {
      throw new UserError(`--eval ${f.eval} is the calibration text: perplexity must be measured on held-out text`);
    }
    if (!tokenizerPath) throw new UserError(`--eval needs a tokenizer: pass --tokenizer <tokenizer.json>`);
    evalIds = tokenizeText(loadTokenizer(tokenizerPath), text);
    if (windowCount(evalIds.length, DEFAULT_WINDOW) < 1) throw new UserError(`--eval ${f.eval} is too short: ${evalIds.length} tokens, a window of ${DEFAULT_WINDOW} needs ${DEFAULT_WINDOW + 1}`);
  }
  const opts: Partial<CompileOptions> = {
    weights: f.weights,
    structure: f.structure,
    format: f.format,
    acts,
    calib,
    rotate: f.rotate,
    fuse: f.fuse,
    gptq: f.gptq,
    xDomain: f.xdomain,
    order2Cols: f.order2Cols,
    ...(f.order2?.length ? { order2: f.order2 } : {}),
    device: f.device,
    ...(f.threads !== undefined ? { threads: f.threads } : {}),
    refine: f.refine ? { ...DEFAULT_REFINE, ...Object.fromEntries(refineFlags.map(([flag, option]) => [option, f[flag]])) } : undefined,
  };
  // flags that cannot change out/ stay out of the recorded invocation
  const { out: _out, quiet: _quiet, force: _force, resume: _resume, timings: _timings, threads: _threads, ...flags } = f;
  const r = await compileToDir(model, f.out, opts, progress, {
    tokenizer: tokenizerPath,
    targets,
    eval: evalIds ? { ids: evalIds, text: basename(f.eval!), maxWindows: f.evalWindows } : undefined,
    timings: f.timings,
    force: f.force,
    resume: f.resume,
    invocation: { model, flags, ...(calibSource ? { calibration: calibSource } : {}) },
  });
  const m = r.manifest;
  progress.log(`pass seconds: ${r.timings.map((t) => `${t.pass} ${t.seconds.toFixed(1)}`).join(', ')}`);
  progress.log(
    `wrote ${f.out}: ${m.blocks.length * 7} ternary linears, ${m.bitsPerWeight.toFixed(3)} bits/weight in weights.bin` +
      (m.onnx ? `, ${m.onnx.bitsPerWeight.toFixed(3)} in model.onnx` : ''),
  );
}
