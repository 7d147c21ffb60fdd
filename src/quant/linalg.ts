// Dense float64 linear algebra for weight fitting: Cholesky, SPD inverse, and the upper
// Cholesky factor of H⁻¹ that GPTQ propagates errors through. Matrices are row-major
// Float64Array [n*n]. Loops run over contiguous rows (dot products of two rows) so that
// n = 1024 stays well under a second in JS.
//
// Upper factor of H⁻¹ without forming H⁻¹: with P the index reversal, let L' = chol(P H P).
// Then H = V Vᵀ with V = P L' P upper triangular, so H⁻¹ = V⁻ᵀ V⁻¹ = Uᵀ U with
// U = V⁻¹ = P L'⁻¹ P, upper with a positive diagonal, hence the (unique) upper Cholesky
// factor of H⁻¹. Cost: one Cholesky and one triangular inverse (n³/3) instead of three.

import { mulberry32 } from '../util/prng.ts';

/** Σ_{k<len} a[ao+k]·b[bo+k], unrolled by 4 with independent accumulators. */
export function dot(a: Float64Array, ao: number, b: Float64Array, bo: number, len: number): number {
  let s0 = 0, s1 = 0, s2 = 0, s3 = 0;
  let k = 0;
  for (; k + 3 < len; k += 4) {
    s0 += a[ao + k] * b[bo + k];
    s1 += a[ao + k + 1] * b[bo + k + 1];
    s2 += a[ao + k + 2] * b[bo + k + 2];
    s3 += a[ao + k + 3] * b[bo + k + 3];
  }
  for (; k < len; k++) s0 += a[ao + k] * b[bo + k];
  return s0 + s1 + (s2 + s3);
}

/** In-place lower Cholesky A = L Lᵀ (upper triangle is zeroed). Returns false if A is not
 *  numerically positive definite (A is then garbage). */
export function choleskyInPlace(a: Float64Array, n: number): boolean {
  for (let i = 0; i < n; i++) {
    const ri = i * n;
    for (let j = 0; j <= i; j++) {
      const rj = j * n;
      let s = a[ri + j] - dot(a, ri, a, rj, j);
      if (j === i) {
        if (!(s > 0)) return false;
        a[ri + i] = Math.sqrt(s);
      } else {
        a[ri + j] = s / a[rj + j];
      }
    }
    for (let j = i + 1; j < n; j++) a[ri + j] = 0;
  }
  return true;
}

/** Inverse of a lower-triangular L, returned transposed: T = (L⁻¹)ᵀ (upper triangular).
 *  Row j of T is column j of L⁻¹, found by forward substitution with contiguous dots. */
function lowerInverseTransposed(l: Float64Array, n: number): Float64Array {
  const t = new Float64Array(n * n);
  for (let j = 0; j < n; j++) {
    const x = t.subarray(j * n, j * n + n); // x[k] = (L⁻¹)[k, j], zero for k < j
    x[j] = 1 / l[j * n + j];
    for (let i = j + 1; i < n; i++) {
      const ri = i * n;
      x[i] = -dot(l, ri + j, t, j * n + j, i - j) / l[ri + i];
    }
  }
  return t;
}

/** Inverse of an SPD matrix via Cholesky (A⁻¹ = L⁻ᵀ L⁻¹). Throws if A is not PD. */
export function spdInverse(a: Float64Array, n: number): Float64Array {
  const l = Float64Array.from(a);
  if (!choleskyInPlace(l, n)) throw new Error('spdInverse: matrix is not positive definite');
  const t = lowerInverseTransposed(l, n); // t = L⁻ᵀ, row-major upper
  // A⁻¹[i][j] = Σ_k L⁻ᵀ[i][k] L⁻¹[k][j] = Σ_{k ≥ max(i,j)} t[i][k] t[j][k]
  const out = new Float64Array(n * n);
  for (let i = 0; i < n; i++) {
    for (let j = 0; j <= i; j++) {
      let s = 0;
      for (let k = i; k < n; k++) s += t[i * n + k] * t[j * n + k];
      out[i * n + j] = s;
      out[j * n + i] = s;
    }
  }
  return out;
}

export interface DampedFactor {
  /** Upper Cholesky factor U of (H + λI)⁻¹, row-major [n*n]. */
  u: Float64Array;
  /** The damping λ actually added to the diagonal. */
  damp: number;
  /** Columns whose diagonal was zero (never-activated inputs); their diagonal was set to 1. */
  dead: number[];
}

/**
 * GPTQ's factor: U upper with UᵀU = (H + λI)⁻¹, λ = percdamp·mean(diag H). Zero-diagonal
 * columns get diagonal 1 first (as GPTQ does). If the damped matrix is still not
 * positive definite, λ is multiplied by 10 and the factorisation retried.
 */
export function dampedUpperCholeskyOfInverse(h: Float64Array, n: number, percdamp = 0.01): DampedFactor {
  const base = Float64Array.from(h);
  const dead: number[] = [];
  let meanDiag = 0;
  for (let i = 0; i < n; i++) {
    if (base[i * n + i] === 0) {
      base[i * n + i] = 1;
      dead.push(i);
    }
    meanDiag += base[i * n + i];
  }
  meanDiag /= n;
  if (!(meanDiag > 0) || !Number.isFinite(meanDiag)) throw new Error(`Hessian diagonal mean is ${meanDiag}`);
  let damp = percdamp * meanDiag;
  const r = new Float64Array(n * n);
  for (let attempt = 0; attempt < 8; attempt++, damp *= 10) {
    // r = P (H + λI) P
    for (let i = 0; i < n; i++) {
      const src = (n - 1 - i) * n;
      for (let j = 0; j < n; j++) r[i * n + j] = base[src + (n - 1 - j)];
      r[i * n + i] += damp;
    }
    if (!choleskyInPlace(r, n)) continue;
    const t = lowerInverseTransposed(r, n); // t[j][i] = L'⁻¹[i][j]
    // U[a][b] = L'⁻¹[n-1-a][n-1-b] = t[n-1-b][n-1-a]
    const u = new Float64Array(n * n);
    for (let b = 0; b < n; b++) {
      const tr = (n - 1 - b) * n;
      for (let a = 0; a <= b; a++) u[a * n + b] = t[tr + (n - 1 - a)];
    }
    return { u, damp, dead };
  }
  throw new Error('Hessian is not positive definite even after heavy damping');
}

/** Solve the small dense SPD-ish system A x = b (A [m*m], overwritten) by Gaussian elimination
 *  with partial pivoting. Returns false if singular (|pivot| ≤ tol·max|A|). */
export function solveSmall(a: Float64Array, b: Float64Array, m: number, x: Float64Array, tol = 1e-12): boolean {
  let amax = 0;
  for (let i = 0; i < m * m; i++) amax = Math.max(amax, Math.abs(a[i]));
  if (amax === 0) return false;
  for (let c = 0; c < m; c++) {
    let p = c;
    for (let r = c + 1; r < m; r++) if (Math.abs(a[r * m + c]) > Math.abs(a[p * m + c])) p = r;
    if (Math.abs(a[p * m + c]) <= tol * amax) return false;
    if (p !== c) {
      for (let k = 0; k < m; k++) {
        const tmp = a[c * m + k];
        a[c * m + k] = a[p * m + k];
        a[p * m + k] = tmp;
      }
      const tb = b[c];
      b[c] = b[p];
      b[p] = tb;
    }
    const piv = a[c * m + c];
    for (let r = c + 1; r < m; r++) {
      const f = a[r * m + c] / piv;
      if (f === 0) continue;
      for (let k = c; k < m; k++) a[r * m + k] -= f * a[c * m + k];
      b[r] -= f * b[c];
    }
  }
  for (let r = m - 1; r >= 0; r--) {
    let s = b[r];
    for (let k = r + 1; k < m; k++) s -= a[r * m + k] * x[k];
    x[r] = s / a[r * m + r];
  }
  return true;
}

/** Quadratic form vᵀ S v for a B×B row-major S and v of length B at `off` in `v`. */
export function quadForm(s: Float64Array, v: Float64Array, off: number, b: number): number {
  let acc = 0;
  for (let i = 0; i < b; i++) {
    const vi = v[off + i];
    if (vi === 0) continue;
    const ri = i * b;
    let d = 0;
    for (let j = 0; j < b; j++) d += s[ri + j] * v[off + j];
    acc += vi * d;
  }
  return acc;
}

/** The project's seeded PRNG (src/util/prng.ts), for tests and benches. */
export const rng = mulberry32;

/** Standard normal sampler on top of a uniform generator (Box–Muller). */
export function gaussian(u: () => number): () => number {
  return () => Math.sqrt(-2 * Math.log(1 - u())) * Math.cos(2 * Math.PI * u());
}

/**
 * A synthetic, correlated proxy Hessian for tests and benches, shaped like real ones:
 * H = D (0.05·I + V Vᵀ / r + T) D with T[i][j] = 0.5^|i−j| (neighbour correlation),
 * V [K×r] Gaussian (shared factors), D log-normal channel scales (outlier channels).
 */
export function syntheticHessian(K: number, seed: number, r = 8): Float64Array {
  const g = gaussian(rng(seed));
  const v = new Float64Array(K * r);
  for (let i = 0; i < v.length; i++) v[i] = g();
  const d = new Float64Array(K);
  for (let i = 0; i < K; i++) d[i] = Math.exp(0.7 * g());
  const h = new Float64Array(K * K);
  for (let i = 0; i < K; i++) {
    for (let j = 0; j <= i; j++) {
      let s = 0;
      for (let a = 0; a < r; a++) s += v[i * r + a] * v[j * r + a];
      s = s / r + 0.5 ** (i - j) + (i === j ? 0.05 : 0);
      s *= d[i] * d[j];
      h[i * K + j] = s;
      h[j * K + i] = s;
    }
  }
  return h;
}
