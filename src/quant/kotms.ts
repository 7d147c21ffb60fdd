// KOTMS: learning the Kronecker-factored orthogonal input transform of a linear (METHOD §1).
//
// Shapes and applying the transform live in kron.ts (K = C ⊗ B, W' = W Kᵀ, x' = C·X·Bᵀ).
// This file learns B (r×r) and C (l×l) for one input: a single linear, or a group of
// linears that read the same input (q/k/v, gate/up), whose rows are then concatenated so
// the objective is summed over the group.
//
// Parametrisation (exactly orthogonal by construction):
//   B = B₀ · cay(A_B),   C = C₀ · cay(A_C),   cay(A) = (I − A)(I + A)⁻¹,  A = U − Uᵀ
//   where U holds the parameters on its strict upper triangle. B₀, C₀ are seeded Haar-random
//   orthogonal factors by default (`init: 'random'`); `init: 'identity'` is the plain Cayley
//   start at A = 0. Both reach the same ternary weight error, but only the random start
//   spreads activation outliers (bench/kotms-acts.ts; docs/performance.md). Gradient through
//   the Cayley map:
//   with S = (I + A)⁻¹, Q = cay(A) = 2S − I and dQ = −(I + Q) dA S = −2 S dA S, so
//   ∂L/∂A = −2 Sᵀ (∂L/∂Q) Sᵀ
//   and ∂L/∂U_ij = (∂L/∂A)_ij − (∂L/∂A)_ji for i < j.
//
// Objective (the METHOD's trigauss): for each row w of W' (length n = in)
//   v = w − mean(w),  c = mean|v|,  u = v / c           (the row, centred and standardised)
//   f(u) = −log Σ_k π_k 𝒩(u; m_k, s²),  m = (−1, 0, +1),  s = 0.25     (σ = 0.25·c in v units)
//   π = softmax(ζ), ζ ∈ ℝ³ learnable, shared by all rows of the site
//   L = (1/E) Σ_entries f(u) + λ · KL(U₃ ‖ π),  λ = 0.1,  KL(U₃‖π) = Σ_k (1/3) log(1 / (3 π_k))
//   The balance term is a log-barrier on the mixing weights: it is 0 at π uniform and → ∞
//   as any π_k → 0, so the zero component cannot take all the mass (nor can the ±c ones).
//   The likelihood is of u, i.e. σ is measured in units of c: the v-space density would
//   add Σ_rows n·log c, which rewards rows with a small L1/L2 ratio (sparse rows with a few
//   outliers), the opposite of what ternary rounding wants.
//   ∂f/∂u = Σ_k γ_k (u − m_k)/s² with responsibilities γ_k; ∂L/∂ζ_k = π_k − mean(γ_k) + λ(π_k − 1/3).
//   Through the standardisation: ∂/∂v_j = g_j/c − sign(v_j)·(Σ_i g_i u_i)/(n c); ∂/∂w = ∂/∂v − mean(∂/∂v).
//
// Optimiser: Adam (β 0.9/0.999, ε 1e-8), 100 iterations, lr 1e-2. Rows are visited in
// minibatches of at most `maxEntriesPerStep` weights (default 32768; a seeded permutation,
// cycled), which bounds the cost of a step; Infinity gives full-batch steps (the trade-off is
// measured by bench/kotms.ts, docs/performance.md).
// Cost of a step over N rows: 2·N·in·r + 3·N·in·l multiply-adds (the r-terms are two GEMMs).
//
import { UserError } from '../errors.ts';
import { mulberry32 } from '../util/prng.ts';
import { kronFactorShape, type KronShape } from './kron.ts';

type Floats = Float64Array | Float32Array;

export interface KotmsOptions {
  iterations?: number;
  lr?: number;
  /** λ of the balance term. */
  balanceWeight?: number;
  /** σ / c of each mixture component. */
  sigmaRatio?: number;
  /** Starting factors B₀, C₀: identity (Cayley at A = 0) or seeded random orthogonal. */
  init?: 'identity' | 'random';
  seed?: number;
  /** Cap on weights (rows × in) per Adam step; rows beyond it are visited in later steps. */
  maxEntriesPerStep?: number;
  /** Override the shape rule (tests; per-head transforms). */
  shape?: KronShape;
  /** Keep C = I (only B is learned): a per-block transform I ⊗ B, which can be folded into a producer that writes the blocks independently (e.g. v_proj's per-head output rows). */
  fixC?: boolean;
}

export const KOTMS_DEFAULTS = {
  iterations: 100,
  lr: 1e-2,
  balanceWeight: 0.1,
  sigmaRatio: 0.25,
  init: 'random' as 'identity' | 'random',
  seed: 1,
  maxEntriesPerStep: 32768,
};

/** One linear of a site: W [outDim, in], row-major. */
export interface KotmsLinear {
  weight: Floats;
  outDim: number;
}

export interface KotmsResult {
  shape: KronShape;
  /** r×r orthogonal, row-major. */
  B: Float64Array;
  /** l×l orthogonal, row-major. */
  C: Float64Array;
  /** Learned mixing weights π (−c, 0, +c). */
  mixing: [number, number, number];
  /** Full-data objective at the start (factors B₀, C₀) and at the end. */
  objectiveBefore: number;
  objectiveAfter: number;
  /** Minibatch objective per step. */
  history: number[];
  ms: number;
}

/** The trainable state: skew parameters (strict upper triangles) and mixture logits. */
export interface KotmsParams {
  aB: Float64Array;
  aC: Float64Array;
  logits: Float64Array;
  B0: Float64Array;
  C0: Float64Array;
}

export interface KotmsLossOptions {
  balanceWeight: number;
  sigmaRatio: number;
}

export interface KotmsLoss {
  loss: number;
  gaB: Float64Array;
  gaC: Float64Array;
  gLogits: Float64Array;
}

/**
 * Learn B and C for the input shared by `linears` (all with the same `in`). The shape is
 * `kronFactorShape(in, Σ outDim)` unless `opts.shape` overrides it.
 */
export function optimiseKotms(inDim: number, linears: readonly KotmsLinear[], opts: KotmsOptions = {}): KotmsResult {
  const o = { ...KOTMS_DEFAULTS, ...opts };
  const t0 = performance.now();
  if (!linears.length) throw new UserError('KOTMS: a site needs at least one linear');
  let rows = 0;
  for (const lin of linears) {
    if (lin.weight.length !== lin.outDim * inDim) {
      throw new UserError(`KOTMS: weight has ${lin.weight.length} values, expected ${lin.outDim}×${inDim}`);
    }
    rows += lin.outDim;
  }
  const shape = opts.shape ?? kronFactorShape(inDim, rows);
  if (shape.l * shape.r !== inDim) throw new UserError(`KOTMS: shape ${shape.l}×${shape.r} does not factor in=${inDim}`);
  const W = new Float64Array(rows * inDim);
  let off = 0;
  for (const lin of linears) {
    W.set(lin.weight, off);
    off += lin.weight.length;
  }

  const rand = seededRandom(o.seed);
  const params = initialParams(shape, o.init, rand);
  if (o.fixC) params.C0 = identity(shape.l);
  const lossOpts: KotmsLossOptions = { balanceWeight: o.balanceWeight, sigmaRatio: o.sigmaRatio };
  const objectiveBefore = kotmsLoss(W, rows, shape, params, lossOpts, false).loss;

  const perStep = Math.max(1, Math.min(rows, Math.floor(o.maxEntriesPerStep / inDim)));
  const order = permutation(rows, rand);
  const batch = perStep === rows ? W : new Float64Array(perStep * inDim);
  let cursor = 0;
  const adam = [params.aB, params.aC, params.logits].map((p) => new AdamState(p.length));
  const ws = new KotmsWorkspace(perStep * inDim);
  const history: number[] = [];
  for (let it = 0; it < o.iterations; it++) {
    if (batch !== W) {
      for (let i = 0; i < perStep; i++) {
        const src = order[cursor];
        cursor = (cursor + 1) % rows;
        batch.set(W.subarray(src * inDim, (src + 1) * inDim), i * inDim);
      }
    }
    const g = kotmsLoss(batch, perStep, shape, params, lossOpts, true, ws);
    history.push(g.loss);
    adam[0].step(params.aB, g.gaB, o.lr);
    if (!o.fixC) adam[1].step(params.aC, g.gaC, o.lr);
    adam[2].step(params.logits, g.gLogits, o.lr);
  }
  const objectiveAfter = kotmsLoss(W, rows, shape, params, lossOpts, false).loss;
  const { B, C } = factorsOf(shape, params);
  const pi = softmax3(params.logits);
  return { shape, B, C, mixing: [pi[0], pi[1], pi[2]], objectiveBefore, objectiveAfter, history, ms: performance.now() - t0 };
}

/** The starting state: zero skew parameters, uniform mixture, B₀/C₀ per `init`. */
export function initialParams(shape: KronShape, init: 'identity' | 'random', rand: () => number): KotmsParams {
  const { l, r } = shape;
  return {
    aB: new Float64Array((r * (r - 1)) / 2),
    aC: new Float64Array((l * (l - 1)) / 2),
    logits: new Float64Array(3),
    B0: init === 'random' ? randomOrthogonal(r, rand) : identity(r),
    C0: init === 'random' ? randomOrthogonal(l, rand) : identity(l),
  };
}

/** B = B₀·cay(A_B), C = C₀·cay(A_C). */
function factorsOf(shape: KronShape, p: KotmsParams): { B: Float64Array; C: Float64Array } {
  return {
    B: matmulSquare(p.B0, cayley(p.aB, shape.r).Q, shape.r),
    C: matmulSquare(p.C0, cayley(p.aC, shape.l).Q, shape.l),
  };
}

/**
 * The objective over `rows` rows of W [rows, l·r] (row-major), and (if `wantGrad`) its
 * gradient with respect to the skew parameters and the mixture logits.
 */
export function kotmsLoss(
  W: Float64Array,
  rows: number,
  shape: KronShape,
  p: KotmsParams,
  opts: KotmsLossOptions,
  wantGrad: boolean,
  ws: KotmsWorkspace = new KotmsWorkspace(rows * shape.l * shape.r),
): KotmsLoss {
  const { l, r } = shape;
  const n = l * r;
  const N = rows * l; // rows of the [rows·l, r] view
  const cb = cayley(p.aB, r);
  const cc = cayley(p.aC, l);
  const B = matmulSquare(p.B0, cb.Q, r);
  const C = matmulSquare(p.C0, cc.Q, l);

  // T = M·Bᵀ on the [rows·l, r] view; W' = C·T per row.
  const T = ws.get(0, rows * n);
  gemmABt(W, B, T, N, r, r);
  const Wp = ws.get(1, rows * n).fill(0);
  for (let q = 0; q < rows; q++) {
    const o = q * n;
    for (let a = 0; a < l; a++) {
      for (let c = 0; c < l; c++) {
        const k = C[a * l + c];
        const to = o + c * r;
        const wo = o + a * r;
        for (let b = 0; b < r; b++) Wp[wo + b] += k * T[to + b];
      }
    }
  }

  // Elementwise objective; G = ∂L/∂W' is written over Wp.
  const gLogits = new Float64Array(3);
  const loss = trigaussRows(Wp, rows, n, p.logits, opts, wantGrad, gLogits);
  const gaB = new Float64Array(p.aB.length);
  const gaC = new Float64Array(p.aC.length);
  if (!wantGrad) return { loss, gaB, gaC, gLogits };
  const G = Wp;

  // ∂L/∂C = Σ_rows G_q T_qᵀ ;  ∂L/∂T_q = Cᵀ G_q
  const GC = new Float64Array(l * l);
  const GT = ws.get(2, rows * n).fill(0);
  for (let q = 0; q < rows; q++) {
    const o = q * n;
    for (let a = 0; a < l; a++) {
      const go = o + a * r;
      for (let c = 0; c < l; c++) {
        const to = o + c * r;
        let s = 0;
        for (let b = 0; b < r; b++) s += G[go + b] * T[to + b];
        GC[a * l + c] += s;
        const k = C[a * l + c];
        for (let b = 0; b < r; b++) GT[to + b] += k * G[go + b];
      }
    }
  }
  // ∂L/∂B = Σ GTᵀ M over the [N, r] views, as a GEMM of the transposes ([r, N]·[r, N]ᵀ).
  const GTt = transposeRect(GT, N, r, ws.get(3, rows * n));
  const Mt = transposeRect(W, N, r, ws.get(4, rows * n));
  const GB = new Float64Array(r * r);
  gemmABt(GTt, Mt, GB, r, r, N);

  cayleyParamGrad(matmulSquareTA(p.B0, GB, r), cb, r, gaB);
  cayleyParamGrad(matmulSquareTA(p.C0, GC, l), cc, l, gaC);
  return { loss, gaB, gaC, gLogits };
}

/** Scratch buffers of a KOTMS step, reused across steps (no allocation in the loop). */
class KotmsWorkspace {
  private bufs: Float64Array[] = [];
  constructor(private readonly size: number) {}
  get(slot: number, length: number): Float64Array {
    if (length > this.size) throw new Error(`KotmsWorkspace: ${length} values requested, ${this.size} reserved`);
    this.bufs[slot] ??= new Float64Array(this.size);
    return this.bufs[slot].subarray(0, length);
  }
}

function trigaussRows(
  Wp: Float64Array,
  rows: number,
  n: number,
  logits: Float64Array,
  opts: KotmsLossOptions,
  wantGrad: boolean,
  gLogits: Float64Array,
): number {
  const pi = softmax3(logits);
  const logPi = [Math.log(pi[0]), Math.log(pi[1]), Math.log(pi[2])];
  const s = opts.sigmaRatio;
  const inv2s2 = 1 / (2 * s * s);
  const invS2 = 1 / (s * s);
  const E = rows * n;
  const gam = [0, 0, 0];
  const gu = new Float64Array(n);
  const u = new Float64Array(n);
  let total = 0;
  for (let q = 0; q < rows; q++) {
    const o = q * n;
    let mean = 0;
    for (let j = 0; j < n; j++) mean += Wp[o + j];
    mean /= n;
    let c = 0;
    for (let j = 0; j < n; j++) c += Math.abs(Wp[o + j] - mean);
    c /= n;
    if (!(c > 0)) {
      // A constant row: nothing to shape; it contributes its value at u = 0 and no gradient.
      for (let j = 0; j < n; j++) Wp[o + j] = 0;
      total += n * -logSumExp3(logPi[0] - inv2s2, logPi[1], logPi[2] - inv2s2);
      continue;
    }
    let sumGu = 0;
    for (let j = 0; j < n; j++) {
      const uj = (Wp[o + j] - mean) / c;
      u[j] = uj;
      const e0 = logPi[0] - (uj + 1) * (uj + 1) * inv2s2;
      const e1 = logPi[1] - uj * uj * inv2s2;
      const e2 = logPi[2] - (uj - 1) * (uj - 1) * inv2s2;
      const m = e0 > e1 ? (e0 > e2 ? e0 : e2) : e1 > e2 ? e1 : e2;
      const x0 = Math.exp(e0 - m);
      const x1 = Math.exp(e1 - m);
      const x2 = Math.exp(e2 - m);
      const sum = x0 + x1 + x2;
      total -= m + Math.log(sum);
      if (wantGrad) {
        const g0 = x0 / sum;
        const g1 = x1 / sum;
        const g2 = x2 / sum;
        gam[0] += g0;
        gam[1] += g1;
        gam[2] += g2;
        const g = (g0 * (uj + 1) + g1 * uj + g2 * (uj - 1)) * invS2;
        gu[j] = g;
        sumGu += g * uj;
      }
    }
    if (!wantGrad) continue;
    // ∂/∂v_j = g_j/c − sign(v_j)·Σ g u /(n c); then remove the mean (the centring).
    const k = sumGu / (n * c);
    let gMean = 0;
    for (let j = 0; j < n; j++) {
      const gv = gu[j] / c - Math.sign(u[j]) * k;
      gu[j] = gv;
      gMean += gv;
    }
    gMean /= n;
    for (let j = 0; j < n; j++) Wp[o + j] = (gu[j] - gMean) / E;
  }
  const lam = opts.balanceWeight;
  let balance = 0;
  for (let k = 0; k < 3; k++) balance += (1 / 3) * Math.log(1 / (3 * pi[k]));
  if (wantGrad) for (let k = 0; k < 3; k++) gLogits[k] = pi[k] - gam[k] / E + lam * (pi[k] - 1 / 3);
  return total / E + lam * balance;
}

// ---------------------------------------------------------------------------------------
// Cayley transform

export interface CayleyResult {
  /** Q = (I − A)(I + A)⁻¹ */
  Q: Float64Array;
  /** S = (I + A)⁻¹ */
  S: Float64Array;
}

/** The skew matrix A = U − Uᵀ from its strict upper triangle (row by row). */
function skewFromParams(a: Floats, n: number): Float64Array {
  if (a.length !== (n * (n - 1)) / 2) throw new Error(`skew: ${a.length} parameters do not fill a ${n}×${n} upper triangle`);
  const A = new Float64Array(n * n);
  let k = 0;
  for (let i = 0; i < n; i++) {
    for (let j = i + 1; j < n; j++) {
      A[i * n + j] = a[k];
      A[j * n + i] = -a[k];
      k++;
    }
  }
  return A;
}

/**
 * Q = (I − A)(I + A)⁻¹ for skew A: orthogonal (I + A is always invertible for skew A).
 * Since (I − A) = 2I − (I + A), Q = 2S − I with S = (I + A)⁻¹: one inverse, no product.
 */
export function cayley(a: Floats, n: number): CayleyResult {
  const IpA = skewFromParams(a, n);
  for (let i = 0; i < n; i++) IpA[i * n + i] += 1;
  const S = invert(IpA, n);
  const Q = new Float64Array(n * n);
  for (let i = 0; i < n * n; i++) Q[i] = 2 * S[i];
  for (let i = 0; i < n; i++) Q[i * n + i] -= 1;
  return { Q, S };
}

/**
 * ∂L/∂a from ∂L/∂Q (GQ), for Q = cay(A(a)): ∂L/∂A = −(I + Q)ᵀ GQ Sᵀ = −2 Sᵀ GQ Sᵀ
 * (I + Q = 2S), folded onto the upper triangle.
 */
function cayleyParamGrad(GQ: Float64Array, cr: CayleyResult, n: number, out: Float64Array): void {
  const St = transposeRect(cr.S, n, n);
  const GA = matmulSquare(matmulSquare(St, GQ, n), St, n);
  let k = 0;
  for (let i = 0; i < n; i++) {
    for (let j = i + 1; j < n; j++) out[k++] = -2 * (GA[i * n + j] - GA[j * n + i]);
  }
}

// ---------------------------------------------------------------------------------------
// Ternary error (the measure KOTMS is judged by)

/**
 * Relative Frobenius error ‖W − Ŵ‖/‖W‖ of per-row ternary rounding of W [rows, n]:
 * - `absmean`: BitNet's RTN, s = mean|w|, Ŵ = s·clamp(round(w/s), −1, 1) (no centring);
 * - `e2m-init`: E2M-ATQ's starting point, Ŵ = μ + α t with μ the row mean, Δ = 0.75·mean|w − μ|.
 */
export function ternaryRelError(W: Floats, rows: number, n: number, quantiser: 'absmean' | 'e2m-init' = 'absmean'): number {
  let err = 0;
  let norm = 0;
  for (let q = 0; q < rows; q++) {
    const o = q * n;
    let mu = 0;
    if (quantiser === 'e2m-init') {
      for (let j = 0; j < n; j++) mu += W[o + j];
      mu /= n;
    }
    let s = 0;
    for (let j = 0; j < n; j++) s += Math.abs(W[o + j] - mu);
    s /= n;
    let alpha = s;
    const delta = quantiser === 'absmean' ? s / 2 : 0.75 * s;
    if (quantiser === 'e2m-init') {
      let st = 0;
      let cnt = 0;
      for (let j = 0; j < n; j++) {
        const x = Math.abs(W[o + j] - mu);
        if (x > delta) {
          st += x;
          cnt++;
        }
      }
      alpha = cnt ? st / cnt : 0;
    }
    for (let j = 0; j < n; j++) {
      const x = W[o + j] - mu;
      const t = Math.abs(x) > delta ? Math.sign(x) : 0;
      err += (x - alpha * t) ** 2;
      norm += W[o + j] * W[o + j];
    }
  }
  return norm > 0 ? Math.sqrt(err / norm) : 0;
}

// ---------------------------------------------------------------------------------------
// Small dense helpers (float64, row-major)

/** out[m, n] = A[m, k] · B[n, k]ᵀ, register-blocked 4×2 (the two GEMMs of a KOTMS step). */
export function gemmABt(A: Float64Array, B: Float64Array, out: Float64Array, m: number, n: number, k: number): void {
  const m4 = m - (m % 4);
  const n2 = n - (n % 2);
  for (let i = 0; i < m4; i += 4) {
    const a0 = i * k, a1 = a0 + k, a2 = a1 + k, a3 = a2 + k;
    for (let j = 0; j < n2; j += 2) {
      const b0 = j * k, b1 = b0 + k;
      let s00 = 0, s01 = 0, s10 = 0, s11 = 0, s20 = 0, s21 = 0, s30 = 0, s31 = 0;
      for (let t = 0; t < k; t++) {
        const x0 = B[b0 + t], x1 = B[b1 + t];
        const y0 = A[a0 + t], y1 = A[a1 + t], y2 = A[a2 + t], y3 = A[a3 + t];
        s00 += y0 * x0; s01 += y0 * x1;
        s10 += y1 * x0; s11 += y1 * x1;
        s20 += y2 * x0; s21 += y2 * x1;
        s30 += y3 * x0; s31 += y3 * x1;
      }
      out[i * n + j] = s00; out[i * n + j + 1] = s01;
      out[(i + 1) * n + j] = s10; out[(i + 1) * n + j + 1] = s11;
      out[(i + 2) * n + j] = s20; out[(i + 2) * n + j + 1] = s21;
      out[(i + 3) * n + j] = s30; out[(i + 3) * n + j + 1] = s31;
    }
    for (let j = n2; j < n; j++) for (let ii = i; ii < i + 4; ii++) out[ii * n + j] = dot(A, ii * k, B, j * k, k);
  }
  for (let i = m4; i < m; i++) for (let j = 0; j < n; j++) out[i * n + j] = dot(A, i * k, B, j * k, k);
}

function dot(A: Float64Array, ao: number, B: Float64Array, bo: number, k: number): number {
  let s = 0;
  for (let t = 0; t < k; t++) s += A[ao + t] * B[bo + t];
  return s;
}

function transposeRect(A: Float64Array, m: number, n: number, t: Float64Array = new Float64Array(m * n)): Float64Array {
  for (let i = 0; i < m; i++) {
    const o = i * n;
    for (let j = 0; j < n; j++) t[j * m + i] = A[o + j];
  }
  return t;
}

function matmulSquare(A: Float64Array, B: Float64Array, n: number): Float64Array {
  const out = new Float64Array(n * n);
  for (let i = 0; i < n; i++) {
    for (let t = 0; t < n; t++) {
      const a = A[i * n + t];
      if (a === 0) continue;
      for (let j = 0; j < n; j++) out[i * n + j] += a * B[t * n + j];
    }
  }
  return out;
}

/** Aᵀ · B for square n×n. */
function matmulSquareTA(A: Float64Array, B: Float64Array, n: number): Float64Array {
  return matmulSquare(transposeRect(A, n, n), B, n);
}

function identity(n: number): Float64Array {
  const I = new Float64Array(n * n);
  for (let i = 0; i < n; i++) I[i * n + i] = 1;
  return I;
}

/** Inverse by Gauss–Jordan elimination with partial pivoting. */
function invert(M: Float64Array, n: number): Float64Array {
  const a = Float64Array.from(M);
  const inv = identity(n);
  for (let col = 0; col < n; col++) {
    let piv = col;
    for (let i = col + 1; i < n; i++) if (Math.abs(a[i * n + col]) > Math.abs(a[piv * n + col])) piv = i;
    const pv = a[piv * n + col];
    if (pv === 0) throw new Error('invert: singular matrix');
    if (piv !== col) {
      for (let j = 0; j < n; j++) {
        [a[col * n + j], a[piv * n + j]] = [a[piv * n + j], a[col * n + j]];
        [inv[col * n + j], inv[piv * n + j]] = [inv[piv * n + j], inv[col * n + j]];
      }
    }
    const d = 1 / a[col * n + col];
    for (let j = 0; j < n; j++) {
      a[col * n + j] *= d;
      inv[col * n + j] *= d;
    }
    for (let i = 0; i < n; i++) {
      if (i === col) continue;
      const f = a[i * n + col];
      if (f === 0) continue;
      for (let j = 0; j < n; j++) {
        a[i * n + j] -= f * a[col * n + j];
        inv[i * n + j] -= f * inv[col * n + j];
      }
    }
  }
  return inv;
}

function softmax3(z: Float64Array): number[] {
  const m = Math.max(z[0], z[1], z[2]);
  const e = [Math.exp(z[0] - m), Math.exp(z[1] - m), Math.exp(z[2] - m)];
  const s = e[0] + e[1] + e[2];
  return [e[0] / s, e[1] / s, e[2] / s];
}

function logSumExp3(a: number, b: number, c: number): number {
  const m = Math.max(a, b, c);
  return m + Math.log(Math.exp(a - m) + Math.exp(b - m) + Math.exp(c - m));
}

class AdamState {
  private m: Float64Array;
  private v: Float64Array;
  private t = 0;
  constructor(size: number) {
    this.m = new Float64Array(size);
    this.v = new Float64Array(size);
  }
  step(p: Float64Array, g: Float64Array, lr: number, b1 = 0.9, b2 = 0.999, eps = 1e-8): void {
    this.t++;
    const c1 = 1 - b1 ** this.t;
    const c2 = 1 - b2 ** this.t;
    for (let i = 0; i < p.length; i++) {
      this.m[i] = b1 * this.m[i] + (1 - b1) * g[i];
      this.v[i] = b2 * this.v[i] + (1 - b2) * g[i] * g[i];
      p[i] -= (lr * (this.m[i] / c1)) / (Math.sqrt(this.v[i] / c2) + eps);
    }
  }
}

// ---------------------------------------------------------------------------------------
// Seeded randomness (reproducible compiles)

/** The project's seeded PRNG (src/util/prng.ts). */
export const seededRandom = mulberry32;

function permutation(n: number, rand: () => number): Int32Array {
  const p = Int32Array.from({ length: n }, (_, i) => i);
  for (let i = n - 1; i > 0; i--) {
    const j = Math.floor(rand() * (i + 1));
    [p[i], p[j]] = [p[j], p[i]];
  }
  return p;
}

/** A Haar-random n×n orthogonal matrix: Gaussian entries, then Gram–Schmidt twice on the rows. */
export function randomOrthogonal(n: number, rand: () => number): Float64Array {
  const Q = new Float64Array(n * n);
  for (let i = 0; i < n * n; i += 2) {
    const u = Math.max(rand(), 1e-300);
    const rad = Math.sqrt(-2 * Math.log(u));
    const th = 2 * Math.PI * rand();
    Q[i] = rad * Math.cos(th);
    if (i + 1 < n * n) Q[i + 1] = rad * Math.sin(th);
  }
  for (let pass = 0; pass < 2; pass++) {
    for (let i = 0; i < n; i++) {
      for (let j = 0; j < i; j++) {
        const d = dot(Q, i * n, Q, j * n, n);
        for (let k = 0; k < n; k++) Q[i * n + k] -= d * Q[j * n + k];
      }
      const norm = Math.sqrt(dot(Q, i * n, Q, i * n, n));
      for (let k = 0; k < n; k++) Q[i * n + k] /= norm;
    }
  }
  return Q;
}
