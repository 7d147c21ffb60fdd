// The one entry point the ternary rewrite pass calls per linear: W [rows=out, cols=in]
// (row-major float32) and the proxy Hessian H = 2XᵀX/n [cols×cols] (or null) in, the
// dequantized weights, the stored form (kernel/rtn structures) and true storage bits out.
// With H null, GPTQ and the X-domain stage are off whatever the options say.
import { bitsPerWeight, storageBytes, type CodePacking, type TernaryWeights } from '../formats/ternary.ts';
import { UserError } from '../errors.ts';
import { relativeOutputError, type RestUpdate } from './gptq.ts';
import { quantizeKernelStructure, rtnTernary, type PreparedHessian } from './structure-kernel.ts';
import { quantizeTwlaStructure } from './structure-twla.ts';

export type WeightStructure = 'twla' | 'kernel' | 'rtn';

export interface QuantizeLinearOptions {
  structure: WeightStructure;
  /** Group size G of the kernel structure (default 128). */
  group?: number;
  /** Kernel structure stores a per-group shift μ (default true). */
  shift?: boolean;
  /** Kernel structure code packing (default trit5). */
  packing?: CodePacking;
  /** Kernel structure: scales and shifts on each row's int8 lattice (`_lat` formats). */
  lattice?: boolean;
  gptq: boolean;
  xDomain: boolean;
  /** Kernel structure: refit (μ, α) once a block's trits are final (default: xDomain). */
  refit?: boolean;
  /** Kernel structure: further GPTQ passes per block (see KernelStructureOptions.passes). */
  passes?: number[];
  /** Kernel structure: trit coordinate-descent sweeps per block (see KernelStructureOptions.sweeps). */
  sweeps?: number;
  /** Kernel structure: whole-row refinement rounds after GPTQ (see KernelStructureOptions). */
  globalRounds?: number;
  /** Kernel structure: act-order inside each group. */
  actOrder?: boolean;
  /** TWLA structure: largest number of order-2 columns per block searched (default 64). */
  order2Cols?: number;
  onProgress?: (done: number, total: number) => void;
  /** Also measure the relative output error through H: every row, or a row sample of about this many multiply-adds (see relativeOutputError). */
  measure?: boolean | { budget: number };
  /** Kernel structure: where GPTQ's lazy batch update runs (default: float64 on the CPU). */
  restUpdate?: RestUpdate;
  /** Kernel structure with GPTQ: H's act-order permutation and factor, made once for every
   *  linear reading the same input (prepareKernelHessian). */
  prepared?: PreparedHessian;
}

export interface QuantizeLinearStats {
  structure: WeightStructure;
  bitsPerWeight: number;
  /** ‖(W − Ŵ)Xᵀ‖² / ‖W Xᵀ‖² through H (null without H or without `measure`). */
  relOutputError: number | null;
  /** Rows the output error was measured on (all, or an even sample). */
  outputErrorRows?: number;
  /** ‖W − Ŵ‖² / ‖W‖². */
  relWeightError: number;
  seconds: number;
  gptqLoss?: number;
  salientPerBlock?: number[];
  splitPerBlock?: number[];
}

export interface QuantizeLinearResult {
  dequant: Float32Array;
  weights?: TernaryWeights;
  storageBits: number;
  stats: QuantizeLinearStats;
}

export function quantizeLinear(
  w: Float32Array,
  rows: number,
  cols: number,
  h: Float64Array | null,
  opts: QuantizeLinearOptions,
): QuantizeLinearResult {
  if (w.length !== rows * cols) throw new UserError(`weight has ${w.length} values, expected ${rows}×${cols}`);
  if (h && h.length !== cols * cols) throw new UserError(`Hessian has ${h.length} values, expected ${cols}×${cols}`);
  const t0 = performance.now();
  const hh = h ?? null;
  const useGptq = opts.gptq && hh !== null;
  const useX = opts.xDomain && hh !== null;
  let dq: Float64Array;
  let weights: TernaryWeights | undefined;
  let storageBits: number;
  const extra: Partial<QuantizeLinearStats> = {};
  switch (opts.structure) {
    case 'rtn': {
      const r = rtnTernary(w, rows, cols);
      dq = r.dequant;
      weights = r.weights;
      storageBits = storageBytes(weights.format, rows, cols) * 8;
      break;
    }
    case 'kernel': {
      const r = quantizeKernelStructure(w, rows, cols, hh, {
        group: opts.group ?? 128,
        shift: opts.shift ?? true,
        packing: opts.packing,
        lattice: opts.lattice,
        gptq: useGptq,
        xDomain: useX,
        refit: (opts.refit ?? true) && useX,
        passes: opts.passes,
        sweeps: opts.sweeps,
        globalRounds: opts.globalRounds,
        actOrder: opts.actOrder,
        onProgress: opts.onProgress,
        restUpdate: opts.restUpdate,
        prepared: opts.prepared,
      });
      dq = r.dequant;
      weights = r.weights;
      storageBits = storageBytes(weights.format, rows, cols) * 8;
      extra.gptqLoss = r.gptqLoss;
      break;
    }
    case 'twla': {
      const r = quantizeTwlaStructure(w, rows, cols, hh, {
        gptq: useGptq,
        xDomain: useX,
        maxSalient: opts.order2Cols,
        onProgress: opts.onProgress,
      });
      dq = r.dequant;
      storageBits = r.storageBits;
      Object.assign(extra, { gptqLoss: r.gptqLoss, salientPerBlock: r.salientPerBlock, splitPerBlock: r.splitPerBlock });
      break;
    }
    default:
      throw new UserError(`unknown weight structure '${String(opts.structure)}' (expected twla, kernel or rtn)`);
  }
  const seconds = (performance.now() - t0) / 1000;
  // errors of the float32 weights returned (what mergeRowFits measures too)
  const dequant = Float32Array.from(dq);
  const out = hh && opts.measure ? relativeOutputError(w, dequant, rows, cols, hh, opts.measure === true ? Infinity : opts.measure.budget) : null;
  const bpw = weights ? bitsPerWeight(weights.format, rows, cols) : storageBits / (rows * cols);
  return {
    dequant,
    weights,
    storageBits,
    stats: {
      structure: opts.structure,
      bitsPerWeight: bpw,
      relOutputError: out?.error ?? null,
      ...(out ? { outputErrorRows: out.rows } : {}),
      relWeightError: relWeightError(w, dequant),
      seconds,
      ...extra,
    },
  };
}

/** ‖W − Ŵ‖² / ‖W‖² (0 for an all-zero W). */
export function relWeightError(w: ArrayLike<number>, dq: ArrayLike<number>): number {
  let dw = 0, ww = 0;
  for (let i = 0; i < w.length; i++) {
    dw += (w[i] - dq[i]) ** 2;
    ww += w[i] * w[i];
  }
  return ww > 0 ? dw / ww : 0;
}

/**
 * Row ranges [r0, r1) that split a linear of `rows` rows into `parts` slices of nearly equal
 * size (at most one a row). The kernel structure's fit is row-separable: each row's GPTQ
 * updates, refits and lattice depend on its own weights and the shared H only, so fitting the
 * slices and joining them (mergeRowFits) writes the bytes one fit of the whole writes. A
 * linear far larger than the rest of its block (the down projection) then spreads over
 * threads instead of leaving them idle.
 */
export function rowSlices(rows: number, parts: number): [number, number][] {
  const p = Math.max(1, Math.min(rows, Math.floor(parts)));
  return Array.from({ length: p }, (_, i) => [Math.floor((i * rows) / p), Math.floor(((i + 1) * rows) / p)] as [number, number]);
}

/** The fit of W [rows × cols] from the fits of its row slices (rowSlices order, fitted without `measure`); the output error is measured here as quantizeLinear measures it. */
export function mergeRowFits(
  w: Float32Array,
  rows: number,
  cols: number,
  h: Float64Array | null,
  parts: QuantizeLinearResult[],
  measure: QuantizeLinearOptions['measure'],
): QuantizeLinearResult {
  const ws = parts.map((p) => p.weights);
  if (ws.some((x) => !x)) throw new Error('mergeRowFits: only stored (kernel or rtn) fits join by rows');
  const first = ws[0]!;
  const join = <T extends Uint8Array | Uint16Array>(get: (x: TernaryWeights) => T | undefined, make: (n: number) => T): T | undefined => {
    const arrs = ws.map((x) => get(x!));
    if (arrs.some((a) => !a)) return undefined;
    const out = make(arrs.reduce((n, a) => n + a!.length, 0));
    let o = 0;
    for (const a of arrs) {
      out.set(a!, o);
      o += a!.length;
    }
    return out;
  };
  const weights: TernaryWeights = {
    format: first.format,
    rows: ws.reduce((n, x) => n + x!.rows, 0),
    cols,
    codes: join((x) => x.codes, (n) => new Uint8Array(n))!,
    scales: join((x) => x.scales, (n) => new Uint16Array(n))!,
    shifts: join((x) => x.shifts, (n) => new Uint16Array(n)),
  };
  if (weights.rows !== rows || ws.some((x) => x!.format.id !== first.format.id || x!.cols !== cols)) throw new Error('mergeRowFits: slices do not make the linear');
  const dequant = new Float32Array(rows * cols);
  let o = 0;
  for (const p of parts) {
    dequant.set(p.dequant, o);
    o += p.dequant.length;
  }
  const out = h && measure ? relativeOutputError(w, dequant, rows, cols, h, measure === true ? Infinity : measure.budget) : null;
  const losses = parts.map((p) => p.stats.gptqLoss);
  return {
    dequant,
    weights,
    storageBits: storageBytes(weights.format, rows, cols) * 8,
    stats: {
      structure: parts[0].stats.structure,
      bitsPerWeight: bitsPerWeight(weights.format, rows, cols),
      relOutputError: out?.error ?? null,
      ...(out ? { outputErrorRows: out.rows } : {}),
      relWeightError: relWeightError(w, dequant),
      seconds: parts.reduce((t, p) => t + p.stats.seconds, 0),
      ...(losses.every((l) => l !== undefined) ? { gptqLoss: losses.reduce((a, l) => a + l!, 0) } : {}),
    },
  };
}
