import { describe, expect, it } from 'vitest';
import { gaussian, rng, syntheticHessian } from '../../src/quant/linalg.ts';
import { fitOrder1, fitOrder2, xDomainRefitRow } from '../../src/quant/ternary-fit.ts';

// Straightforward oracle of METHOD.md's order-1 init + 15 Euclidean iterations (plain arrays).
function oracleOrder1(w: number[]): { mu: number; alpha: number; t: number[]; err: number } {
  const n = w.length;
  const fit = (mu: number) => {
    const delta = (0.75 * w.reduce((s, x) => s + Math.abs(x - mu), 0)) / n;
    const t = w.map((x) => (Math.abs(x - mu) > delta ? Math.sign(x - mu) : 0));
    const cnt = t.reduce((s, x) => s + Math.abs(x), 0);
    const alpha = cnt ? t.reduce((s, x, i) => s + x * (w[i] - mu), 0) / cnt : 0;
    const err = w.reduce((s, x, i) => s + (x - mu - alpha * t[i]) ** 2, 0);
    return { mu, alpha, t, err };
  };
  let cur = fit(w.reduce((s, x) => s + x, 0) / n);
  let best = cur;
  for (let it = 0; it < 15; it++) {
    const r = w.reduce((s, x, i) => s + x - cur.mu - cur.alpha * cur.t[i], 0) / n;
    cur = fit(cur.mu + r);
    if (cur.err < best.err) best = cur;
  }
  return best;
}

function randRow(seed: number, n: number, skew = 0.02): Float64Array {
  const g = gaussian(rng(seed));
  return Float64Array.from({ length: n }, () => g() * 0.05 + skew * g() ** 2);
}

describe('E2M-ATQ order 1 (Euclidean)', () => {
  it('matches the plain-array oracle of METHOD.md on random rows', () => {
    for (let seed = 1; seed <= 20; seed++) {
      const w = randRow(seed, 128);
      const t = new Int8Array(128);
      const f = fitOrder1(w, 0, 128, t, 0, new Int8Array(128));
      const o = oracleOrder1(Array.from(w));
      // μ converges geometrically, so iterates whose errors tie to rounding differ slightly
      expect(Math.abs(f.mu - o.mu)).toBeLessThan(1e-7 * Math.abs(o.alpha));
      expect(Math.abs(f.alpha - o.alpha)).toBeLessThan(1e-7 * Math.abs(o.alpha));
      expect(Array.from(t)).toEqual(o.t);
      expect(Math.abs(f.err - o.err)).toBeLessThan(1e-10 * o.err);
    }
  });

  it('works on an offset segment and never returns worse than the initialisation', () => {
    const w = randRow(99, 300);
    const t = new Int8Array(300);
    const f = fitOrder1(w, 100, 64, t, 100, new Int8Array(64));
    const init = fitOrder1(w, 100, 64, new Int8Array(300), 100, new Int8Array(64), true, 0);
    expect(f.err).toBeLessThanOrEqual(init.err);
    expect(t.subarray(0, 100).every((x) => x === 0)).toBe(true);
    expect(t.subarray(164).every((x) => x === 0)).toBe(true);
  });

  it('recovers an exactly ternary row (μ + αt)', () => {
    const r = rng(7);
    for (let trial = 0; trial < 10; trial++) {
      const n = 128;
      const mu = (r() - 0.5) * 0.1, alpha = 0.01 + r() * 0.1;
      const tt = Int8Array.from({ length: n }, () => Math.floor(r() * 3) - 1);
      const w = Float64Array.from(tt, (x) => mu + alpha * x);
      const t = new Int8Array(n);
      const f = fitOrder1(w, 0, n, t, 0, new Int8Array(n));
      expect(f.err).toBeLessThan(1e-24);
      expect(f.mu).toBeCloseTo(mu, 12);
      expect(f.alpha).toBeCloseTo(alpha, 12);
      expect(Array.from(t)).toEqual(Array.from(tt));
    }
  });

  it('no-shift fit keeps μ = 0', () => {
    const w = randRow(5, 64);
    const f = fitOrder1(w, 0, 64, new Int8Array(64), 0, new Int8Array(64), false);
    expect(f.mu).toBe(0);
    expect(f.alpha).toBeGreaterThan(0);
  });
});

describe('E2M-ATQ order 2', () => {
  it('error never increases over the iterations and beats order 1', () => {
    for (let seed = 1; seed <= 10; seed++) {
      const w = randRow(seed, 48);
      const trace: number[] = [];
      const t0 = new Int8Array(48), t1 = new Int8Array(48);
      const f = fitOrder2(w, 0, 48, t0, t1, 0, new Float64Array(48), 15, trace);
      expect(trace.length).toBe(16);
      for (let i = 1; i < trace.length; i++) expect(trace[i]).toBeLessThanOrEqual(trace[i - 1] * (1 + 1e-12) + 1e-30);
      const f1 = fitOrder1(w, 0, 48, new Int8Array(48), 0, new Int8Array(48));
      expect(f.err).toBeLessThan(f1.err);
      // reported error is the error of the reported parameters and trits
      let e = 0;
      for (let i = 0; i < 48; i++) e += (w[i] - f.mu - f.a0 * t0[i] - f.a1 * t1[i]) ** 2;
      expect(f.err).toBeCloseTo(e, 14);
    }
  });

  it('recovers an exactly order-1 ternary row with zero error', () => {
    const r = rng(3);
    const tt = Int8Array.from({ length: 64 }, () => Math.floor(r() * 3) - 1);
    const w = Float64Array.from(tt, (x) => 0.01 + 0.05 * x);
    const f = fitOrder2(w, 0, 64, new Int8Array(64), new Int8Array(64), 0, new Float64Array(64));
    expect(f.err).toBeLessThan(1e-24);
  });
});

// Oracle for the X-domain refit: least squares on the tall system X·B p ≈ X·w by modified
// Gram–Schmidt QR (never forms S), with S = XᵀX.
function lsViaQr(x: Float64Array, T: number, B: number, basis: Float64Array, m: number, w: Float64Array): Float64Array {
  const A = new Float64Array(T * m), y = new Float64Array(T);
  for (let t = 0; t < T; t++) {
    for (let j = 0; j < m; j++) {
      let s = 0;
      for (let k = 0; k < B; k++) s += x[t * B + k] * basis[j * B + k];
      A[t * m + j] = s;
    }
    let s = 0;
    for (let k = 0; k < B; k++) s += x[t * B + k] * w[k];
    y[t] = s;
  }
  const R = new Float64Array(m * m);
  for (let j = 0; j < m; j++) {
    for (let i = 0; i < j; i++) {
      let d = 0;
      for (let t = 0; t < T; t++) d += A[t * m + i] * A[t * m + j];
      R[i * m + j] = d;
      for (let t = 0; t < T; t++) A[t * m + j] -= d * A[t * m + i];
    }
    let nrm = 0;
    for (let t = 0; t < T; t++) nrm += A[t * m + j] ** 2;
    nrm = Math.sqrt(nrm);
    R[j * m + j] = nrm;
    for (let t = 0; t < T; t++) A[t * m + j] /= nrm;
  }
  const qy = new Float64Array(m);
  for (let j = 0; j < m; j++) for (let t = 0; t < T; t++) qy[j] += A[t * m + j] * y[t];
  const p = new Float64Array(m);
  for (let j = m - 1; j >= 0; j--) {
    let s = qy[j];
    for (let k = j + 1; k < m; k++) s -= R[j * m + k] * p[k];
    p[j] = s / R[j * m + j];
  }
  return p;
}

describe('X-domain (manifold) refit', () => {
  const B = 32, T = 200;
  const g = gaussian(rng(11));
  const x = new Float64Array(T * B);
  for (let t = 0; t < T; t++) {
    const common = g();
    for (let k = 0; k < B; k++) x[t * B + k] = g() + 0.8 * common; // correlated inputs
  }
  const s = new Float64Array(B * B);
  for (let i = 0; i < B; i++) for (let j = 0; j < B; j++) for (let t = 0; t < T; t++) s[i * B + j] += x[t * B + i] * x[t * B + j];
  const objective = (w: Float64Array, basis: Float64Array, m: number, p: ArrayLike<number>) => {
    let o = 0;
    for (let t = 0; t < T; t++) {
      let d = 0;
      for (let k = 0; k < B; k++) {
        let q = 0;
        for (let j = 0; j < m; j++) q += p[j] * basis[j * B + k];
        d += x[t * B + k] * (w[k] - q);
      }
      o += d * d;
    }
    return o;
  };

  it('closed-form (μ, α) equals a QR least-squares solve and beats the Euclidean fit', () => {
    for (let seed = 1; seed <= 5; seed++) {
      const w = randRow(seed + 100, B);
      const t = new Int8Array(B);
      const e = fitOrder1(w, 0, B, t, 0, new Int8Array(B));
      const basis = new Float64Array(2 * B);
      for (let k = 0; k < B; k++) { basis[k] = 1; basis[B + k] = t[k]; }
      const p = new Float64Array(2);
      const obj = xDomainRefitRow(s, B, w, 0, basis, 2, p, [e.mu, e.alpha], new Float64Array(2 * B), true);
      const ref = lsViaQr(x, T, B, basis, 2, w);
      expect(p[0]).toBeCloseTo(ref[0], 10);
      expect(p[1]).toBeCloseTo(ref[1], 10);
      expect(obj).toBeCloseTo(objective(w, basis, 2, ref), 10);
      expect(obj).toBeLessThanOrEqual(objective(w, basis, 2, [e.mu, e.alpha]));
    }
  });

  it('is the fixed point of 15 alternating μ/α iterations, whose objective never increases', () => {
    const w = randRow(7, B);
    const t = new Int8Array(B);
    const e = fitOrder1(w, 0, B, t, 0, new Int8Array(B));
    const basis = new Float64Array(2 * B);
    for (let k = 0; k < B; k++) { basis[k] = 1; basis[B + k] = t[k]; }
    const p = new Float64Array(2);
    const best = xDomainRefitRow(s, B, w, 0, basis, 2, p, [e.mu, e.alpha], new Float64Array(2 * B), true);
    // coordinate descent: exact 1-D minimisation in μ, then α
    const quad = (a: Float64Array, b: Float64Array) => { let r = 0; for (let i = 0; i < B; i++) for (let j = 0; j < B; j++) r += a[i] * s[i * B + j] * b[j]; return r; };
    const one = basis.subarray(0, B), tt = basis.subarray(B);
    let mu = e.mu, al = e.alpha, prev = objective(w, basis, 2, [mu, al]);
    for (let it = 0; it < 15; it++) {
      const r1 = Float64Array.from(w, (v, k) => v - al * tt[k]);
      mu = quad(one, r1) / quad(one, one);
      const r2 = Float64Array.from(w, (v) => v - mu);
      al = quad(tt, r2) / quad(tt, tt);
      const o = objective(w, basis, 2, [mu, al]);
      expect(o).toBeLessThanOrEqual(prev * (1 + 1e-12));
      expect(o).toBeGreaterThanOrEqual(best * (1 - 1e-9));
      prev = o;
    }
  });

  it('degenerate cases: all-zero trits keep α, constant trits still give the μ-only optimum', () => {
    const w = randRow(8, B);
    const basis = new Float64Array(2 * B);
    for (let k = 0; k < B; k++) basis[k] = 1;
    const p = new Float64Array(2);
    xDomainRefitRow(s, B, w, 0, basis, 2, p, [0, 0.123], new Float64Array(2 * B));
    expect(p[1]).toBe(0.123);
    const muOnly = lsViaQr(x, T, B, basis, 1, w);
    expect(p[0]).toBeCloseTo(muOnly[0], 10);
    // t ≡ 1: basis collinear; any minimiser is fine, objective must equal the μ-only optimum
    for (let k = 0; k < B; k++) basis[B + k] = 1;
    const obj = xDomainRefitRow(s, B, w, 0, basis, 2, p, [0, 0], new Float64Array(2 * B), true);
    expect(obj).toBeCloseTo(objective(w, basis, 1, muOnly), 8);
  });

  it('joint refit over several groups of a block with a real-shaped H', () => {
    const K = 64, G = 16, m = 2 * (K / G);
    const h = syntheticHessian(K, 5);
    const w = randRow(9, K);
    const t = new Int8Array(K);
    const basis = new Float64Array(m * K);
    const fb: number[] = [];
    for (let gi = 0; gi < K / G; gi++) {
      const f = fitOrder1(w, gi * G, G, t, gi * G, new Int8Array(G));
      fb.push(f.mu, f.alpha);
      for (let k = gi * G; k < (gi + 1) * G; k++) { basis[2 * gi * K + k] = 1; basis[(2 * gi + 1) * K + k] = t[k]; }
    }
    const p = new Float64Array(m);
    const obj = xDomainRefitRow(h, K, w, 0, basis, m, p, fb, new Float64Array(m * K), true);
    // compare with perturbations: the optimum is a stationary point
    const objAt = (pp: ArrayLike<number>) => {
      const r = Float64Array.from(w, (v, k) => { let q = 0; for (let j = 0; j < m; j++) q += pp[j] * basis[j * K + k]; return v - q; });
      let o = 0; for (let i = 0; i < K; i++) for (let j = 0; j < K; j++) o += r[i] * h[i * K + j] * r[j];
      return o;
    };
    expect(obj).toBeCloseTo(objAt(p), 12);
    expect(obj).toBeLessThan(objAt(fb));
    // precomputed S·1_g for the shared all-ones vectors gives the same solution, and the
    // normal equations it reports give the objective as wᵀSw − 2pᵀb + pᵀGp
    const fixed = Array.from({ length: m }, (_, j) => (j % 2 === 0 ? Float64Array.from({ length: K }, (_, i) => { let v = 0; for (let k = 0; k < K; k++) v += h[i * K + k] * basis[j * K + k]; return v; }) : null));
    const p2 = new Float64Array(m);
    const normal = { gram: new Float64Array(m * m), rhs: new Float64Array(m) };
    xDomainRefitRow(h, K, w, 0, basis, m, p2, fb, new Float64Array(m * K), false, fixed, normal);
    for (let j = 0; j < m; j++) expect(p2[j]).toBeCloseTo(p[j], 12);
    let wSw = 0;
    for (let i = 0; i < K; i++) for (let j = 0; j < K; j++) wSw += w[i] * h[i * K + j] * w[j];
    let viaNormal = wSw;
    for (let a = 0; a < m; a++) { let gp = 0; for (let c = 0; c < m; c++) gp += normal.gram[a * m + c] * p2[c]; viaNormal += p2[a] * (gp - 2 * normal.rhs[a]); }
    expect(viaNormal).toBeCloseTo(obj, 10);
    for (let j = 0; j < m; j++) for (const d of [1e-4, -1e-4]) {
      const pp = Float64Array.from(p); pp[j] += d;
      expect(objAt(pp)).toBeGreaterThan(obj);
    }
  });
});
