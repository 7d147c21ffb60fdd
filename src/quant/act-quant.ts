// Activation quantiser of ILA-AMP (METHOD §3): per token, dynamic, asymmetric, b bits,
// with a per-layer clip ratio ρ. For each token row x (the last axis):
//
//   lo = ρ·min(x)    hi = ρ·max(x)    L = 2^b − 1
//   s  = (hi − lo) / L
//   z  = round(−lo / s)
//   q  = clamp(round(x / s) + z, 0, L)
//   x̂  = (q − z) · s
//
// Exactly as computed (the reference below and the ONNX lowering agree bit for bit):
// - every step is one float32 operation, rounded to float32 (ρ and L are float32 constants);
// - round() is round-half-to-even, as ONNX `Round` (0.5 → 0, 1.5 → 2, −2.5 → −2);
// - a row with s = 0 (all entries equal, or ρ·max = ρ·min) passes through unchanged: x̂ = x.
//   Such a row is one value, which a zero-range quantiser loses nothing on; the lowering
//   selects x there with Where(s = 0, x, x̂) so the inf/NaN of x/0 never escapes.
// Lowering (opset ≥ 18, axes as an input; attribute form below 18):
//   ReduceMin/ReduceMax(axis −1, keepdims) → Mul ρ → Sub → Div L → Neg/Div/Round (z)
//   → Div/Round/Add/Clip(0, L) (q) → Sub/Mul (x̂) → Equal(s, 0)/Where.
//
// Clip search: ρ ∈ {0.5, 0.505, …, 1.0} (101 ratios) minimising the output error of the
// linears that read x: Σ_tokens ‖W (x̂ − x)‖² = Σ_t eᵀ H e with H = Σ_linears WᵀW. Cost per
// ratio evaluated: tokens · in · min(in, Σ out) multiply-adds (H when Σ out ≥ in, else W
// itself); 29 ratios by default (coarse-to-fine), 101 with `strategy: 'exhaustive'`.
import type { GraphBuilder } from '../graph/builder.ts';
import type { Node, Value } from '../graph/ir.ts';
import { floatToHalf, Tensor } from '../graph/tensor.ts';
import { UserError } from '../errors.ts';
import { gemmABt } from './kotms.ts';


/** The clip ratios searched: 0.5 to 1.0 in steps of 0.005 (101 values). */
export const CLIP_GRID: readonly number[] = Array.from({ length: 101 }, (_, k) => (500 + 5 * k) / 1000);

const f = Math.fround;

/** Round half to even (ONNX `Round`, C's nearbyint in the default rounding mode). */
export function roundHalfEven(v: number): number {
  const r = Math.round(v); // half up
  return r - v === 0.5 && r % 2 !== 0 ? r - 1 : r;
}

function checkBits(bits: number): void {
  if (!(bits >= 1 && bits <= 16 && Number.isInteger(bits))) throw new UserError(`activation bits must be an integer in 1..16, got ${bits}`);
}

/**
 * Quantise-dequantise every row of x [rows, n] (row-major, float32 values) as the ONNX
 * lowering does, in float32 arithmetic. Returns x̂ as float32.
 */
export function actQuantRows(x: Float32Array | Float64Array, rows: number, n: number, bits: number, clip: number): Float32Array {
  checkBits(bits);
  if (x.length !== rows * n) throw new Error(`actQuantRows: expected ${rows}×${n} values, got ${x.length}`);
  const out = new Float32Array(rows * n);
  const rho = f(clip);
  const L = f(2 ** bits - 1);
  for (let t = 0; t < rows; t++) {
    const o = t * n;
    let mn = Infinity;
    let mx = -Infinity;
    for (let j = 0; j < n; j++) {
      const v = f(x[o + j]);
      if (v < mn) mn = v;
      if (v > mx) mx = v;
    }
    const lo = f(mn * rho);
    const hi = f(mx * rho);
    const s = f(f(hi - lo) / L);
    if (s === 0) {
      for (let j = 0; j < n; j++) out[o + j] = x[o + j];
      continue;
    }
    const z = roundHalfEven(f(-lo / s));
    for (let j = 0; j < n; j++) {
      const q = Math.min(L, Math.max(0, f(roundHalfEven(f(f(x[o + j]) / s)) + z)));
      out[o + j] = f(f(q - z) * s);
    }
  }
  return out;
}

export interface EmitActQuantOptions {
  /** Insert the nodes before this node (default: append). */
  before?: Node;
  /** Element type of x (constants are made to match). Default float32. */
  dtype?: 'float32' | 'float16';
  /** Opset of the model: 18+ passes reduce axes as an input, older ones as an attribute. */
  opset?: number;
  /** Name prefix of the constants and nodes. */
  prefix?: string;
}

/** Emit the quantise-dequantise of `x` (per token over the last axis) with standard ops; returns x̂. */
export function emitActQuant(b: GraphBuilder, x: Value, bits: number, clip: number, opts: EmitActQuantOptions = {}): Value {
  checkBits(bits);
  const prefix = opts.prefix ?? `actq${bits}`;
  const scalar = actScalar(b, prefix, opts.dtype ?? 'float32');
  return emitActQuantWith(b, x, scalar('levels', 2 ** bits - 1), scalar('clip', clip), opts);
}

/** A scalar constant of the activation's element type. */
function actScalar(b: GraphBuilder, prefix: string, dtype: 'float32' | 'float16') {
  return (name: string, v: number): Value =>
    dtype === 'float32'
      ? b.init(b.graph.uniqueName(`${prefix}.${name}`), Tensor.fromFloat32([], Float32Array.of(v)))
      : b.init(b.graph.uniqueName(`${prefix}.${name}`), Tensor.fromBytes('float16', [], new Uint8Array(Uint16Array.of(floatToHalf(v)).buffer)));
}

/**
 * The same quantiser with the number of levels L = 2^b − 1 and the clip ratio ρ given as
 * scalar values (constants, or graph inputs when a search feeds many settings to one session).
 */
export function emitActQuantWith(b: GraphBuilder, x: Value, levels: Value, rho: Value, opts: EmitActQuantOptions = {}): Value {
  const opset = opts.opset ?? 18;
  const prefix = opts.prefix ?? 'actq';
  const op = (type: string, inputs: Value[], attrs?: Record<string, number | number[]>): Value =>
    b.op(type, inputs, { before: opts.before, attrs, name: b.graph.uniqueName(`${prefix}/${type}`) });
  const reduce = (type: 'ReduceMin' | 'ReduceMax'): Value =>
    opset >= 18
      ? op(type, [x, b.init(b.graph.uniqueName(`${prefix}.axes`), Tensor.fromInt64([1], [-1]))], { keepdims: 1 })
      : op(type, [x], { axes: [-1], keepdims: 1 });
  const zeroC = actScalar(b, prefix, opts.dtype ?? 'float32')('zero', 0);
  const lo = op('Mul', [reduce('ReduceMin'), rho]);
  const hi = op('Mul', [reduce('ReduceMax'), rho]);
  const s = op('Div', [op('Sub', [hi, lo]), levels]);
  const z = op('Round', [op('Div', [op('Neg', [lo]), s])]);
  const q = op('Clip', [op('Add', [op('Round', [op('Div', [x, s])]), z]), zeroC, levels]);
  const xhat = op('Mul', [op('Sub', [q, z]), s]);
  return op('Where', [op('Equal', [s, zeroC]), x, xhat]);
}

/** H = WᵀW [in, in] of a linear W [out, in]; sum these over the linears that share an input. */
function gramOf(W: Float32Array | Float64Array, outDim: number, inDim: number): Float64Array {
  const Wt = new Float64Array(inDim * outDim);
  for (let o = 0; o < outDim; o++) for (let i = 0; i < inDim; i++) Wt[i * outDim + o] = W[o * inDim + i];
  const H = new Float64Array(inDim * inDim);
  gemmABt(Wt, Wt, H, inDim, inDim, outDim);
  return H;
}

export interface ClipSearchOptions {
  /** Ratios to choose from, ascending (default CLIP_GRID). */
  grid?: readonly number[];
  /**
   * `exhaustive` evaluates every ratio; `coarse-to-fine` (default) evaluates every 10th and
   * then the 19 around the best of those (29 of 101), which finds the grid minimum whenever
   * the error is unimodal at the coarse scale (it is in every case measured in the tests).
   */
  strategy?: 'exhaustive' | 'coarse-to-fine';
}

export interface ClipSearchResult {
  clip: number;
  /** Ratios evaluated. */
  evaluated: number;
  /** Σ_tokens ‖W(x̂ − x)‖² / tokens at the chosen ratio. */
  mse: number;
  /** The same error at ρ = 1 (no clipping), for reporting. */
  mseNoClip: number;
}

/**
 * The clip ratio of CLIP_GRID that minimises the output error of the linears W_i [out_i, in]
 * reading calibration activations X [tokens, in] quantised to `bits`.
 */
export function searchClip(
  X: Float32Array | Float64Array,
  tokens: number,
  inDim: number,
  linears: readonly { weight: Float32Array | Float64Array; outDim: number }[],
  bits: number,
  opts: ClipSearchOptions = {},
): ClipSearchResult {
  const grid = opts.grid ?? CLIP_GRID;
  if (X.length !== tokens * inDim) throw new Error(`searchClip: X must be ${tokens}×${inDim}`);
  const outTotal = linears.reduce((a, l) => a + l.outDim, 0);
  // The error metric as a matrix M with Σ‖M e‖² = Σ‖W e‖²: W itself (stacked) when it has
  // fewer rows than columns, else H = WᵀW (then the error is eᵀHe).
  let M: Float64Array;
  let useGram: boolean;
  if (outTotal < inDim) {
    M = new Float64Array(outTotal * inDim);
    let off = 0;
    for (const l of linears) {
      M.set(l.weight, off);
      off += l.weight.length;
    }
    useGram = false;
  } else {
    M = new Float64Array(inDim * inDim);
    for (const l of linears) {
      const H = gramOf(l.weight, l.outDim, inDim);
      for (let i = 0; i < H.length; i++) M[i] += H[i];
    }
    useGram = true;
  }
  const mRows = useGram ? inDim : outTotal;
  const E = new Float64Array(tokens * inDim);
  const F = new Float64Array(tokens * mRows);
  const errorAt = (rho: number): number => {
    const xq = actQuantRows(X, tokens, inDim, bits, rho);
    for (let i = 0; i < E.length; i++) E[i] = xq[i] - Math.fround(X[i]);
    gemmABt(E, M, F, tokens, mRows, inDim);
    let s = 0;
    if (useGram) for (let i = 0; i < E.length; i++) s += E[i] * F[i];
    else for (let i = 0; i < F.length; i++) s += F[i] * F[i];
    return s / tokens;
  };
  const cache = new Map<number, number>();
  const at = (rho: number): number => {
    let v = cache.get(rho);
    if (v === undefined) cache.set(rho, (v = errorAt(rho)));
    return v;
  };
  const argmin = (candidates: readonly number[]) => candidates.reduce((a, b) => (at(b) < at(a) ? b : a));
  let clip: number;
  if (opts.strategy === 'exhaustive') {
    clip = argmin(grid);
  } else {
    // every 10th ratio, then every ratio within 9 steps of the best of those
    const coarse = grid.filter((_, k) => k % 10 === 0 || k === grid.length - 1);
    const k0 = grid.indexOf(argmin(coarse));
    clip = argmin(grid.slice(Math.max(0, k0 - 9), k0 + 10));
  }
  const best = { clip, mse: at(clip), evaluated: cache.size };
  const mseNoClip = at(1);
  return { ...best, mseNoClip };
}
