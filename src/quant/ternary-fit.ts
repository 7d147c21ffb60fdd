// E2M-ATQ ternary fitting primitives (METHOD.md §2). All work on one segment of values
// v[off .. off+len) (a row, or a row's group), float64, and write trits into t[tOff ..].
//
// Order 1:  w ≈ μ·1 + α·t,  t ∈ {−1,0,1}^len
//   init      μ = mean(w); Δ = 0.75·mean|w−μ|; t = sign(w−μ)·[|w−μ| > Δ]; α = Σt(w−μ)/Σ|t|
//   Euclidean 15 × { μ += mean(w − μ − αt); recompute Δ, t, α }
//   The thresholding step is a heuristic, so the squared error is not monotone over the
//   iterations; we return the best iterate seen (the last one unless an earlier was better).
// X domain (manifold stage): t frozen, minimise r S rᵀ with r = w − Σ_j p_j b_j over the
//   parameters p (μ's and α's) of one row of a column block, S = XᵀX (∝ H) of the block.
//   That is linear least squares: (Bᵀ S B) p = Bᵀ S w. The reference iterates 15 times
//   with t frozen; the iteration's fixed point is this closed-form solution, so we solve it
//   once, exactly.
// Order 2:  w ≈ μ + α₀t₀ + α₁t₁ (9 candidate values): init t₀ by order 1, t₁ by the same
//   threshold rule on the residual; then 15 × { LS for (μ, α₀, α₁) given the trits;
//   reassign every entry to the nearest of the 9 candidates }. Both steps are exact
//   minimisations of the squared error, so it never increases.
import { solveSmall } from './linalg.ts';

const EUCLID_ITERS = 15;
const ORDER2_ITERS = 15;
const DELTA_FACTOR = 0.75;

export interface Order1Fit {
  mu: number;
  alpha: number;
  /** Squared Euclidean error Σ (w − μ − αt)². */
  err: number;
}

/** Threshold assignment of t for fixed μ (μ = 0 for no-shift fits); returns α. */
function assign(v: Float64Array, off: number, len: number, mu: number, t: Int8Array, tOff: number): number {
  let absSum = 0;
  for (let i = 0; i < len; i++) absSum += Math.abs(v[off + i] - mu);
  const delta = (DELTA_FACTOR * absSum) / len;
  let num = 0;
  let cnt = 0;
  for (let i = 0; i < len; i++) {
    const d = v[off + i] - mu;
    if (d > delta) {
      t[tOff + i] = 1;
      num += d;
      cnt++;
    } else if (d < -delta) {
      t[tOff + i] = -1;
      num -= d;
      cnt++;
    } else t[tOff + i] = 0;
  }
  return cnt ? num / cnt : 0;
}

function sqErr1(v: Float64Array, off: number, len: number, mu: number, alpha: number, t: Int8Array, tOff: number): number {
  let e = 0;
  for (let i = 0; i < len; i++) {
    const r = v[off + i] - mu - alpha * t[tOff + i];
    e += r * r;
  }
  return e;
}

/**
 * E2M-ATQ order-1 Euclidean fit of v[off..off+len). With `shift` false, μ is fixed at 0
 * (scale-only format) and the iterations only re-threshold (a fixed point after one).
 * `scratch` must hold ≥ len trits (the best iterate is kept in t, candidates in scratch).
 */
export function fitOrder1(
  v: Float64Array,
  off: number,
  len: number,
  t: Int8Array,
  tOff: number,
  scratch: Int8Array,
  shift = true,
  iters = EUCLID_ITERS,
): Order1Fit {
  if (len === 0) return { mu: 0, alpha: 0, err: 0 };
  let mu = 0;
  if (shift) {
    for (let i = 0; i < len; i++) mu += v[off + i];
    mu /= len;
  }
  let alpha = assign(v, off, len, mu, t, tOff);
  let best: Order1Fit = { mu, alpha, err: sqErr1(v, off, len, mu, alpha, t, tOff) };
  if (!shift) return best;
  let curT = scratch; // iterate trits live in scratch; copied into t when they are the best
  curT.set(t.subarray(tOff, tOff + len), 0);
  for (let it = 0; it < iters; it++) {
    let r = 0;
    for (let i = 0; i < len; i++) r += v[off + i] - mu - alpha * curT[i];
    mu += r / len;
    alpha = assign(v, off, len, mu, curT, 0);
    const err = sqErr1(v, off, len, mu, alpha, curT, 0);
    if (err < best.err) {
      best = { mu, alpha, err };
      t.set(curT.subarray(0, len), tOff);
    }
  }
  return best;
}

export interface Order2Fit {
  mu: number;
  a0: number;
  a1: number;
  err: number;
}

function sqErr2(v: Float64Array, off: number, len: number, f: { mu: number; a0: number; a1: number }, t0: Int8Array, t1: Int8Array, tOff: number): number {
  let e = 0;
  for (let i = 0; i < len; i++) {
    const r = v[off + i] - f.mu - f.a0 * t0[tOff + i] - f.a1 * t1[tOff + i];
    e += r * r;
  }
  return e;
}

/**
 * Order-2 fit (two ternary planes). Trits go to t0/t1 at tOff. `scratch` holds ≥ len
 * entries (used for the residual). `errTrace`, if given, receives the error after each
 * iteration (for tests of monotonicity).
 */
export function fitOrder2(
  v: Float64Array,
  off: number,
  len: number,
  t0: Int8Array,
  t1: Int8Array,
  tOff: number,
  scratch: Float64Array,
  iters = ORDER2_ITERS,
  errTrace?: number[],
): Order2Fit {
  if (len === 0) return { mu: 0, a0: 0, a1: 0, err: 0 };
  const tmp = new Int8Array(len);
  const f1 = fitOrder1(v, off, len, t0, tOff, tmp, true);
  for (let i = 0; i < len; i++) scratch[i] = v[off + i] - f1.mu - f1.alpha * t0[tOff + i];
  const a1 = assign(scratch, 0, len, 0, t1, tOff);
  const f: Order2Fit = { mu: f1.mu, a0: f1.alpha, a1, err: 0 };
  f.err = sqErr2(v, off, len, f, t0, t1, tOff);
  errTrace?.push(f.err);
  const A = new Float64Array(9);
  const b = new Float64Array(3);
  const x = new Float64Array(3);
  for (let it = 0; it < iters; it++) {
    // LS for (μ, α₀, α₁) given the trits: normal equations of the basis (1, t0, t1).
    let n = 0, s0 = 0, s1 = 0, s00 = 0, s11 = 0, s01 = 0, y = 0, y0 = 0, y1 = 0;
    for (let i = 0; i < len; i++) {
      const a = t0[tOff + i], c = t1[tOff + i], w = v[off + i];
      n++; s0 += a; s1 += c; s00 += a * a; s11 += c * c; s01 += a * c;
      y += w; y0 += a * w; y1 += c * w;
    }
    A.set([n, s0, s1, s0, s00, s01, s1, s01, s11]);
    b.set([y, y0, y1]);
    if (solveSmall(A, b, 3, x, 1e-10)) {
      f.mu = x[0]; f.a0 = x[1]; f.a1 = x[2];
    } else {
      // Collinear planes (e.g. t1 ≡ 0 or t1 = ±t0): keep α's, refit μ only.
      let r = 0;
      for (let i = 0; i < len; i++) r += v[off + i] - f.a0 * t0[tOff + i] - f.a1 * t1[tOff + i];
      f.mu = r / len;
    }
    // Nearest of the 9 candidates μ + α₀a + α₁c.
    for (let i = 0; i < len; i++) {
      const d = v[off + i] - f.mu;
      let bestE = Infinity, ba = 0, bc = 0;
      for (let a = -1; a <= 1; a++) {
        for (let c = -1; c <= 1; c++) {
          const e = Math.abs(d - f.a0 * a - f.a1 * c);
          if (e < bestE) { bestE = e; ba = a; bc = c; }
        }
      }
      t0[tOff + i] = ba;
      t1[tOff + i] = bc;
    }
    f.err = sqErr2(v, off, len, f, t0, t1, tOff);
    errTrace?.push(f.err);
  }
  return f;
}

/**
 * X-domain least squares for one row of a B-column block: minimise r S rᵀ with
 * r = target − Σ_j p_j·basis_j, basis [m][B] row-major, S [B×B]. Writes p (length m).
 * Basis vectors with zero S-norm (e.g. an α whose trits are all zero) keep `fallback[j]`
 * (their contribution is subtracted from the target first). If the remaining system is
 * singular (collinear basis, e.g. t = 1), a ridge of 1e-9·max diag makes it solvable;
 * any minimiser is then returned. `sb` is scratch [m*B]. Returns the objective value when
 * `wantObjective` (an extra B² pass), else NaN. `fixedSb[j]`, when given, is S·basis_j
 * precomputed (basis vectors shared by all rows, such as a group's all-ones vector);
 * `normal`, when given, receives the normal equations (Gram m×m and right-hand side m).
 */
export function xDomainRefitRow(
  s: Float64Array,
  B: number,
  target: Float64Array,
  tOffset: number,
  basis: Float64Array,
  m: number,
  p: Float64Array,
  fallback: ArrayLike<number>,
  sb: Float64Array,
  wantObjective = false,
  fixedSb?: readonly (Float64Array | null)[],
  normal?: { gram: Float64Array; rhs: Float64Array },
): number {
  // sb_j = S · basis_j = Σ_k basis_j[k] · S[k, :] (S symmetric): contiguous row updates,
  // skipping zero entries (trit planes are sparse).
  sb.fill(0, 0, m * B);
  for (let j = 0; j < m; j++) {
    const bo = j * B;
    const fixed = fixedSb?.[j];
    if (fixed) {
      sb.set(fixed.subarray(0, B), bo);
      continue;
    }
    for (let k = 0; k < B; k++) {
      const bk = basis[bo + k];
      if (bk === 0) continue;
      const rk = k * B;
      if (bk === 1) for (let i = 0; i < B; i++) sb[bo + i] += s[rk + i];
      else if (bk === -1) for (let i = 0; i < B; i++) sb[bo + i] -= s[rk + i];
      else for (let i = 0; i < B; i++) sb[bo + i] += bk * s[rk + i];
    }
  }
  const gram = normal?.gram ?? new Float64Array(m * m);
  const rhs = normal?.rhs ?? new Float64Array(m);
  for (let a = 0; a < m; a++) {
    for (let c = a; c < m; c++) {
      let d = 0;
      for (let i = 0; i < B; i++) d += basis[a * B + i] * sb[c * B + i];
      gram[a * m + c] = d;
      gram[c * m + a] = d;
    }
    let r = 0;
    for (let i = 0; i < B; i++) r += target[tOffset + i] * sb[a * B + i];
    rhs[a] = r;
  }
  let maxDiag = 0;
  for (let a = 0; a < m; a++) maxDiag = Math.max(maxDiag, gram[a * m + a]);
  const active: number[] = [];
  for (let a = 0; a < m; a++) {
    if (gram[a * m + a] > 1e-14 * maxDiag) active.push(a);
    else p[a] = fallback[a];
  }
  const ma = active.length;
  if (ma > 0) {
    const A = new Float64Array(ma * ma);
    const b = new Float64Array(ma);
    const x = new Float64Array(ma);
    for (let a = 0; a < ma; a++) {
      const ja = active[a];
      let r = rhs[ja];
      for (let c = 0; c < m; c++) if (gram[c * m + c] <= 1e-14 * maxDiag) r -= gram[ja * m + c] * p[c];
      b[a] = r;
      for (let c = 0; c < ma; c++) A[a * ma + c] = gram[ja * m + active[c]];
    }
    const A2 = Float64Array.from(A), b2 = Float64Array.from(b);
    if (!solveSmall(A, b, ma, x, 1e-11)) {
      for (let a = 0; a < ma; a++) A2[a * ma + a] += 1e-9 * maxDiag;
      if (!solveSmall(A2, b2, ma, x, 0)) throw new Error('xDomainRefitRow: singular system');
    }
    for (let a = 0; a < ma; a++) p[active[a]] = x[a];
  }
  if (!wantObjective) return NaN;
  const r = new Float64Array(B);
  for (let i = 0; i < B; i++) {
    let q = 0;
    for (let j = 0; j < m; j++) q += p[j] * basis[j * B + i];
    r[i] = target[tOffset + i] - q;
  }
  let obj = 0;
  for (let i = 0; i < B; i++) {
    let d = 0;
    for (let k = 0; k < B; k++) d += s[i * B + k] * r[k];
    obj += r[i] * d;
  }
  return obj;
}
