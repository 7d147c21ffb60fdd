// Kronecker-factored orthogonal transforms (the shape side of KOTMS, METHOD §1).
//
// A linear y = W x with W [out, in] (row-major). Factor in = l·r and take orthogonal
// B (r×r) and C (l×l). The transform is K = C ⊗ B, i.e. K[a·r+b, c·r+d] = C[a,c]·B[b,d].
//
//   input       x' = K x            = C · X · Bᵀ   on the row-major [l, r] view X of x
//   weight      W' = W Kᵀ           (row i of W' is K w_i, again C · (w_i as [l,r]) · Bᵀ)
//   invariance  W' x' = W Kᵀ K x = W x            (K orthogonal)
//   producer    if x = P z (P [in, k], no non-linearity between), then rotating x is
//               P' = K P, computed column-wise on the [l, r, k] view: P'[a,b,:] = Σ C[a,c] B[b,d] P[c,d,:]
//   inverse     K⁻¹ = Kᵀ = Cᵀ ⊗ Bᵀ (pass transposed factors to any function below)
//
// Weights stored transposed, as exporters write them (MatMul(x, Wt), Wt = Wᵀ [in, out]),
// rotate as Wt' = K Wt: that is `kronMulCols`, the same operation as folding into a producer.
//
// Shape rule: r is the largest divisor of `in` with r ≤ floor(sqrt(out·in/64)), l = in/r.
// The rule keeps the transform's r² + l² parameters near 1/64 of the weights it is fitted
// to. For a shared-input group (q/k/v after one RMSNorm, gate/up after another) there is
// one transform per input, fitted to the concatenation of the group's weights, so `out`
// is the SUM of the group's output dims (`groupOutDim`). On the fixture (in 384/1024):
//   q or o (384×384) → r 48, l 8      k or v (128×384) → r 24, l 16
//   gate or up (1024×384) → r 64, l 6 down (384×1024) → r 64, l 16
//   q/k/v group (out 640) → r 48, l 8 gate/up group (out 2048) → r 96, l 4
// Cost per token: in·(l + r) multiply-adds instead of in².
import { UserError } from '../errors.ts';

export interface KronShape {
  /** Rows of the [l, r] view; C is l×l. */
  l: number;
  /** Columns of the [l, r] view; B is r×r. */
  r: number;
}

type Floats = Float64Array | Float32Array;

/** r = largest divisor of `inDim` that is ≤ floor(sqrt(outDim·inDim/64)); l = inDim / r. */
export function kronFactorShape(inDim: number, outDim: number): KronShape {
  if (!Number.isInteger(inDim) || !Number.isInteger(outDim) || inDim < 1 || outDim < 1) {
    throw new UserError(`kronFactorShape: dims must be positive integers, got in=${inDim} out=${outDim}`);
  }
  const cap = Math.max(1, Math.floor(Math.sqrt((outDim * inDim) / 64)));
  let r = 1;
  for (let d = Math.min(cap, inDim); d >= 1; d--) {
    if (inDim % d === 0) {
      r = d;
      break;
    }
  }
  return { l: inDim / r, r };
}

/** The `out` used for a shared-input group: the sum of its linears' output dims (one transform, fitted to the concatenated weights). */
export function groupOutDim(outDims: readonly number[]): number {
  return outDims.reduce((a, b) => a + b, 0);
}

/** Transpose of a square n×n matrix (Kᵀ = Cᵀ ⊗ Bᵀ: pass transposed factors for the inverse). */
export function transposeSquare(m: Floats, n: number): Float64Array {
  const t = new Float64Array(n * n);
  for (let i = 0; i < n; i++) for (let j = 0; j < n; j++) t[j * n + i] = m[i * n + j];
  return t;
}

/**
 * Each row v (length l·r) of a [rows, l·r] matrix becomes K v = C · V · Bᵀ on its [l, r] view.
 * Used for activations (rows = tokens) and for weights (W' = W Kᵀ: rows of W are rotated).
 */
export function kronMulRows(x: Floats, rows: number, shape: KronShape, B: Floats, C: Floats): Float64Array {
  const { l, r } = shape;
  const n = l * r;
  if (x.length !== rows * n) throw new Error(`kronMulRows: expected ${rows}×${n} values, got ${x.length}`);
  checkFactors(shape, B, C);
  const out = new Float64Array(rows * n);
  const t = new Float64Array(n);
  for (let p = 0; p < rows; p++) {
    const xo = p * n;
    // t = V · Bᵀ: t[c, b] = Σ_d V[c, d] B[b, d]
    for (let c = 0; c < l; c++) {
      for (let b = 0; b < r; b++) {
        let s = 0;
        for (let d = 0; d < r; d++) s += x[xo + c * r + d] * B[b * r + d];
        t[c * r + b] = s;
      }
    }
    // out = C · t: out[a, :] = Σ_c C[a, c] t[c, :]
    for (let a = 0; a < l; a++) {
      const oo = xo + a * r;
      for (let c = 0; c < l; c++) {
        const k = C[a * l + c];
        const to = c * r;
        for (let b = 0; b < r; b++) out[oo + b] += k * t[to + b];
      }
    }
  }
  return out;
}

/** W' = W Kᵀ for W [out, in] (row-major): every row is rotated. */
export function rotateWeight(W: Floats, outDim: number, shape: KronShape, B: Floats, C: Floats): Float64Array {
  return kronMulRows(W, outDim, shape, B, C);
}

/**
 * K P for P [l·r, cols] (row-major): every column is rotated. This folds the input
 * rotation of a consumer into its producer's output rows (y = P z feeds x: P' = K P),
 * and rotates a transposed-stored weight Wt = Wᵀ (Wt' = K Wt).
 */
export function kronMulCols(P: Floats, cols: number, shape: KronShape, B: Floats, C: Floats): Float64Array {
  const { l, r } = shape;
  const n = l * r;
  if (P.length !== n * cols) throw new Error(`kronMulCols: expected ${n}×${cols} values, got ${P.length}`);
  checkFactors(shape, B, C);
  // Y[c, b, :] = Σ_d B[b, d] P[c, d, :]
  const Y = new Float64Array(n * cols);
  for (let c = 0; c < l; c++) {
    for (let b = 0; b < r; b++) {
      const yo = (c * r + b) * cols;
      for (let d = 0; d < r; d++) {
        const k = B[b * r + d];
        if (k === 0) continue;
        const po = (c * r + d) * cols;
        for (let j = 0; j < cols; j++) Y[yo + j] += k * P[po + j];
      }
    }
  }
  // P'[a, b, :] = Σ_c C[a, c] Y[c, b, :]
  const out = new Float64Array(n * cols);
  for (let a = 0; a < l; a++) {
    for (let c = 0; c < l; c++) {
      const k = C[a * l + c];
      if (k === 0) continue;
      for (let b = 0; b < r; b++) {
        const oo = (a * r + b) * cols;
        const yo = (c * r + b) * cols;
        for (let j = 0; j < cols; j++) out[oo + j] += k * Y[yo + j];
      }
    }
  }
  return out;
}

/** max |QᵀQ − I| of a square matrix: 0 for an exactly orthogonal one. */
export function orthogonalityError(Q: Floats, n: number): number {
  let worst = 0;
  for (let i = 0; i < n; i++) {
    for (let j = 0; j < n; j++) {
      let s = 0;
      for (let k = 0; k < n; k++) s += Q[k * n + i] * Q[k * n + j];
      worst = Math.max(worst, Math.abs(s - (i === j ? 1 : 0)));
    }
  }
  return worst;
}

function checkFactors(shape: KronShape, B: Floats, C: Floats): void {
  if (B.length !== shape.r * shape.r) throw new Error(`kron: B must be ${shape.r}×${shape.r}, has ${B.length} values`);
  if (C.length !== shape.l * shape.l) throw new Error(`kron: C must be ${shape.l}×${shape.l}, has ${C.length} values`);
}
