// Order-2 residual on a column subset S of a ternary linear (after the kernel structure's fit):
//   Ŵ[n, k] = base[n, k] + [k ∈ S] · β[n, h(k)] · t₂[n, k],   t₂ ∈ {−1, 0, +1}
// with h(k) the residual group of k (groups of G₂ consecutive entries of S). The salient columns
// thus get a second ternary plane (the order-2 variant of E2M-ATQ, 9 levels per entry), every
// other column keeps the one-plane kernel structure.
//
// Fit, per row, on the layer's output error through H (what GPTQ minimises): with the base's
// error e = w − base, the best correction supported on S is the OBS update
//   δ = H_SS⁻¹ (H e)_S,
// which is what GPTQ would push onto S were S quantized last. δ is then ternarised, β·t₂ ≈ δ
// under the metric H_SS: Euclidean order-1 init per group, then alternating coordinate descent
// on t₂ and a closed-form refit of the β's, each step lowering (δ − β t₂)ᵀ H_SS (δ − β t₂).
import { decodeTernary, encodeTernary, type TernaryWeights } from '../formats/ternary.ts';
import { decodeOrder2, order2PlaneFormat, type Order2Weights } from '../formats/order2.ts';
import { outputError } from './gptq.ts';
import { refitKernelWeights } from './structure-kernel.ts';
import { floatToHalf, halfToFloat } from '../util/half.ts';
import { choleskyInPlace, dot, solveSmall } from './linalg.ts';
import { fitOrder1 } from './ternary-fit.ts';

const toHalf = (v: number): number => halfToFloat(floatToHalf(v));
/** Rounds of refitting the first plane to w minus the second, then the second (fitOrder2Linear). */
const ORDER2_ALTERNATIONS = 4;
/** Rounds of (trit descent, β refit). */
const ROUNDS = 4;
/** Starting points of the descent: the Euclidean init (1), then nearest rounding of δ at the
 *  init's β times each other factor (single-trit descent stops in local minima). */
const STARTS = [1, 0.6, 0.8, 1.25, 1.6];

export interface Order2Residual {
  /** The salient columns, ascending. */
  cols: Int32Array;
  /** Residual group size G₂ (entries of `cols` per scale). */
  group: number;
  /** Trits [N][cols.length]. */
  t: Int8Array;
  /** fp16-exact scales [N][ceil(cols.length / group)]. */
  scale: Float64Array;
}

/** Fit the residual plane on `cols` to w − base under H (see the header). */
export function fitOrder2Residual(
  w: ArrayLike<number>,
  base: ArrayLike<number>,
  N: number,
  K: number,
  H: Float64Array,
  cols: Int32Array,
  group: number,
): Order2Residual {
  const k = cols.length;
  const ng = Math.ceil(k / group);
  // H_SS, damped as GPTQ damps H, and its Cholesky factor for δ.
  const A = new Float64Array(k * k);
  let meanDiag = 0;
  for (let i = 0; i < k; i++) meanDiag += H[cols[i] * K + cols[i]] / k;
  for (let i = 0; i < k; i++) for (let j = 0; j < k; j++) A[i * k + j] = H[cols[i] * K + cols[j]];
  for (let i = 0; i < k; i++) A[i * k + i] += 0.01 * meanDiag;
  const L = Float64Array.from(A);
  if (!choleskyInPlace(L, k)) throw new Error('order-2 residual: H_SS is not positive definite');
  const t = new Int8Array(N * k);
  const scale = new Float64Array(N * ng);
  const e = new Float64Array(K), delta = new Float64Array(k), y = new Float64Array(k);
  const r = new Float64Array(k), g = new Float64Array(k), scratch = new Int8Array(group);
  const gram = new Float64Array(ng * ng), rhs = new Float64Array(ng);
  const beta = new Float64Array(ng), beta0 = new Float64Array(ng), bestBeta = new Float64Array(ng);
  const cur = new Int8Array(k), best = new Int8Array(k);
  for (let n = 0; n < N; n++) {
    for (let j = 0; j < K; j++) e[j] = w[n * K + j] - base[n * K + j];
    // δ = A⁻¹ (H e)_S by forward and back substitution on L.
    for (let i = 0; i < k; i++) {
      const b = dot(H, cols[i] * K, e, 0, K);
      y[i] = (b - dot(L, i * k, y, 0, i)) / L[i * k + i];
    }
    for (let i = k - 1; i >= 0; i--) {
      let s = y[i];
      for (let j = i + 1; j < k; j++) s -= L[j * k + i] * delta[j];
      delta[i] = s / L[i * k + i];
    }
    const tn = t.subarray(n * k, n * k + k);
    for (let h = 0; h < ng; h++) {
      const off = h * group, len = Math.min(group, k - off);
      beta0[h] = fitOrder1(delta, off, len, tn, off, scratch, false).alpha;
    }
    // Descent from the Euclidean init and from nearest rounding at scaled β's; the best wins.
    let bestLoss = Infinity;
    for (const m of STARTS) {
      for (let h = 0; h < ng; h++) beta[h] = beta0[h] * m;
      if (m !== 1) {
        for (let i = 0; i < k; i++) {
          const b = beta[Math.floor(i / group)];
          cur[i] = b === 0 ? 0 : Math.max(-1, Math.min(1, Math.round(delta[i] / b)));
        }
      } else cur.set(tn);
      const loss = descend(A, k, group, ng, delta, cur, beta, r, g, gram, rhs);
      if (loss < bestLoss) {
        bestLoss = loss;
        best.set(cur);
        bestBeta.set(beta);
      }
    }
    tn.set(best);
    beta.set(bestBeta);
    for (let h = 0; h < ng; h++) scale[n * ng + h] = toHalf(beta[h]);
  }
  return { cols, group, t, scale };
}

/** The second plane of an order-2 linear (formats/order2.ts) over every column of `base`, fitted
 *  to w − decode(base) under H: S = all columns (δ is then e, up to GPTQ's damping), residual
 *  groups = the base's groups. */
export function fitOrder2Plane(w: ArrayLike<number>, baseDequant: ArrayLike<number>, base: TernaryWeights, H: Float64Array): TernaryWeights {
  const { rows: N, cols: K } = base;
  const f = order2PlaneFormat(base.format);
  const r = fitOrder2Residual(w, baseDequant, N, K, H, Int32Array.from({ length: K }, (_, j) => j), f.group);
  return encodeTernary(f, N, K, r.t, r.scale);
}

/**
 * An order-2 linear from a fitted first plane: the second plane fitted to its error, then
 * `alternations` rounds of refitting the first plane to w minus the second
 * (refitKernelWeights) and the second to the new error. Each round is kept only if it lowers
 * the output error (w − Ŵ) H (w − Ŵ)ᵀ.
 */
export function fitOrder2Linear(w: ArrayLike<number>, base: TernaryWeights, H: Float64Array, alternations = ORDER2_ALTERNATIONS): Order2Weights {
  const { rows: N, cols: K } = base;
  const fitFrom = (b: TernaryWeights): Order2Weights & { error: number } => {
    const plane = fitOrder2Plane(w, decodeTernary(b), b, H);
    return { base: b, plane, error: outputError(w, decodeOrder2({ base: b, plane }), N, K, H) };
  };
  let best = fitFrom(base);
  for (let i = 0; i < alternations; i++) {
    const p = decodeTernary(best.plane);
    const target = Float64Array.from({ length: N * K }, (_, j) => w[j] - p[j]);
    const next = fitFrom(refitKernelWeights(best.base, target, H));
    if (!(next.error < best.error)) break;
    best = next;
  }
  return { base: best.base, plane: best.plane };
}

/** Alternate trit descent and β refit under A from (t, β); returns (δ − βt)ᵀ A (δ − βt). */
function descend(
  A: Float64Array,
  k: number,
  group: number,
  ng: number,
  delta: Float64Array,
  tn: Int8Array,
  beta: Float64Array,
  r: Float64Array,
  g: Float64Array,
  gram: Float64Array,
  rhs: Float64Array,
): number {
  const residual = () => {
    for (let i = 0; i < k; i++) r[i] = delta[i] - beta[Math.floor(i / group)] * tn[i];
    for (let i = 0; i < k; i++) g[i] = dot(A, i * k, r, 0, k);
  };
  for (let round = 0; round < ROUNDS; round++) {
    residual();
    let moved = false;
    for (let i = 0; i < k; i++) {
      const b = beta[Math.floor(i / group)], ti = tn[i];
      let bestD = 0, bestT = ti;
      for (let c = -1; c <= 1; c++) {
        if (c === ti) continue;
        const dq = b * (c - ti);
        const d = -2 * dq * g[i] + dq * dq * A[i * k + i];
        if (d < bestD - 1e-15 * Math.abs(g[i] * dq)) { bestD = d; bestT = c; }
      }
      if (bestT === ti) continue;
      const dq = b * (bestT - ti);
      tn[i] = bestT;
      for (let j = 0; j < k; j++) g[j] -= dq * A[i * k + j];
      moved = true;
    }
    // β refit: minimise (δ − Σ_h β_h t_h)ᵀ A (δ − Σ_h β_h t_h) over the β's.
    gram.fill(0);
    rhs.fill(0);
    for (let i = 0; i < k; i++) {
      if (tn[i] === 0) continue;
      const hi = Math.floor(i / group);
      for (let j = 0; j < k; j++) {
        const a = A[i * k + j] * tn[i];
        rhs[hi] += a * delta[j];
        if (tn[j] !== 0) gram[hi * ng + Math.floor(j / group)] += a * tn[j];
      }
    }
    for (let h = 0; h < ng; h++) if (gram[h * ng + h] === 0) gram[h * ng + h] = 1; // an all-zero group keeps β = 0
    const x = new Float64Array(ng);
    if (solveSmall(Float64Array.from(gram), Float64Array.from(rhs), ng, x)) beta.set(x);
    for (let h = 0; h < ng; h++) beta[h] = toHalf(beta[h]);
    if (!moved && round > 0) break;
  }
  residual();
  return dot(r, 0, g, 0, k);
}
