// `twlac MODEL -o OUT [...]`: flags → CompileOptions, calibration text → token segments,
// then compileToDir (atomic output).
import { existsSync, readFileSync, statSync } from 'node:fs';
import { UserError } from '../errors.ts';
import { compileToDir } from '../compile.ts';
import type { ActSpec, CompileOptions } from '../passes/context.ts';
import { parseFormatId } from '../formats/ternary.ts';
import { findTokenizer, loadTokenizer } from '../eval/tokenizer.ts';
import { calibrationSegmentsFromText } from '../calib/data.ts';
import { makeProgress } from './progress.ts';
import { DEFAULT_REFINE } from '../passes/refine.ts';
import { emitTargets, parseTargets } from './targets.ts';

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
  refine?: boolean;
  refineSteps?: number;
  refineTrits?: 'keep' | 'ste';
  refineE2eSteps?: number;
  target?: string[];
  quiet?: boolean;
}

export function parseActs(spec: string): ActSpec {
  const s = spec.trim();
  if (s === '16') return { kind: 'none' };
  if (/^(2|4|6|8)$/.test(s)) return { kind: 'uniform', bits: Number(s) };
  const m = /^mp:(\d+(?:\.\d+)?)$/.exec(s);
  if (m && Number(m[1]) >= 2 && Number(m[1]) <= 8) return { kind: 'mp', budget: Number(m[1]) };
  throw new UserError(`--acts '${spec}' is not one of 16, 8, 6, 4, 2, mp:<mean bits between 2 and 8>`);
}

export async function compileCommand(model: string, f: CompileFlags): Promise<void> {
  if (!existsSync(model)) throw new UserError(`model file not found: ${model}`);
  try {
    parseFormatId(f.format);
  } catch (e) {
    throw new UserError(`--format: ${(e as Error).message}`);
  }
  const acts = parseActs(f.acts);
  if (f.order2Cols !== undefined && (f.weights !== 'twla' || f.structure !== 'twla')) throw new UserError('--order2-cols needs --weights twla --structure twla');
  if ((f.refineSteps !== undefined || f.refineTrits !== undefined || f.refineE2eSteps !== undefined) && !f.refine) throw new UserError('--refine-steps, --refine-trits and --refine-e2e-steps need --refine');
  if (f.refine && (f.weights !== 'twla' || f.structure !== 'kernel')) throw new UserError('--refine needs --weights twla --structure kernel');
  const targets = parseTargets(f.target ?? []);
  const progress = makeProgress({ quiet: f.quiet });
  const needsCalib = f.weights === 'twla' || acts.kind !== 'none';
  let calib: Int32Array[] | undefined;
  let tokenizerPath: string | undefined;
  try {
    tokenizerPath = f.tokenizer ?? findTokenizer(model);
  } catch (e) {
    if (needsCalib) throw e;
  }
  if (needsCalib) {
    if (!f.calib) throw new UserError(`--weights ${f.weights}${acts.kind !== 'none' ? ` with --acts ${f.acts}` : ''} needs calibration text: pass --calib <file>`);
    const tok = loadTokenizer(tokenizerPath!);
    if (!existsSync(f.calib) || !statSync(f.calib).isFile()) throw new UserError(`calibration text not found: ${f.calib}`);
    progress.start('sampling calibration segments');
    calib = calibrationSegmentsFromText(readFileSync(f.calib, 'utf8'), tok.encode, { samples: f.calibSamples, seq: f.seq, seed: f.seed });
    progress.done(`${calib.length} × ${f.seq} tokens`);
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
    refine: f.refine ? { ...DEFAULT_REFINE, ...(f.refineSteps !== undefined ? { steps: f.refineSteps } : {}), ...(f.refineTrits ? { trits: f.refineTrits } : {}), ...(f.refineE2eSteps !== undefined ? { e2eSteps: f.refineE2eSteps } : {}) } : undefined,
  };
  const r = await compileToDir(model, f.out, opts, progress, {
    tokenizer: tokenizerPath,
    targets: targets.length ? (dir, manifest) => emitTargets(dir, manifest, targets, progress) : undefined,
  });
  const m = r.manifest;
  progress.log(
    `wrote ${f.out}: ${m.blocks.length * 7} ternary linears, ${m.bitsPerWeight.toFixed(3)} bits/weight in weights.bin` +
      (m.onnx ? `, ${m.onnx.bitsPerWeight.toFixed(3)} in model.onnx` : ''),
  );
}
