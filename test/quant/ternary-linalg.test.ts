import { describe, expect, it } from 'vitest';
import {
  choleskyInPlace,
  dampedUpperCholeskyOfInverse,
  gaussian,
  rng,
  solveSmall,
  spdInverse,
  syntheticHessian,
} from '../../src/quant/linalg.ts';

function randSpd(n: number, seed: number): Float64Array {
  const g = gaussian(rng(seed));
  const x = Float64Array.from({ length: n * 2 * n }, g); // [2n × n]
  const a = new Float64Array(n * n);
  for (let i = 0; i < n; i++)
    for (let j = 0; j < n; j++) {
      let s = 0;
      for (let t = 0; t < 2 * n; t++) s += x[t * n + i] * x[t * n + j];
      a[i * n + j] = s;
    }
  return a;
}

function matmul(a: Float64Array, b: Float64Array, n: number): Float64Array {
  const c = new Float64Array(n * n);
  for (let i = 0; i < n; i++) for (let k = 0; k < n; k++) for (let j = 0; j < n; j++) c[i * n + j] += a[i * n + k] * b[k * n + j];
  return c;
}
function transpose(a: Float64Array, n: number): Float64Array {
  const t = new Float64Array(n * n);
  for (let i = 0; i < n; i++) for (let j = 0; j < n; j++) t[j * n + i] = a[i * n + j];
  return t;
}
function maxAbsDiffIdentity(a: Float64Array, n: number): number {
  let m = 0;
  for (let i = 0; i < n; i++) for (let j = 0; j < n; j++) m = Math.max(m, Math.abs(a[i * n + j] - (i === j ? 1 : 0)));
  return m;
}

describe('linalg', () => {
  it('Cholesky reconstructs A = L Lᵀ and rejects an indefinite matrix', () => {
    const n = 37;
    const a = randSpd(n, 1);
    const l = Float64Array.from(a);
    expect(choleskyInPlace(l, n)).toBe(true);
    for (let i = 0; i < n; i++) for (let j = i + 1; j < n; j++) expect(l[i * n + j]).toBe(0);
    const r = matmul(l, transpose(l, n), n);
    for (let i = 0; i < n * n; i++) expect(Math.abs(r[i] - a[i])).toBeLessThan(1e-9 * Math.abs(a[0]));
    const bad = Float64Array.from(a);
    bad[5 * n + 5] = -1;
    expect(choleskyInPlace(bad, n)).toBe(false);
  });

  it('spdInverse gives A·A⁻¹ = I', () => {
    const n = 41;
    const a = randSpd(n, 2);
    expect(maxAbsDiffIdentity(matmul(a, spdInverse(a, n), n), n)).toBeLessThan(1e-9);
  });

  it('upper Cholesky factor of the damped inverse: U upper, UᵀU (H+λI) = I, λ = 1% mean diag', () => {
    const n = 53;
    const h = syntheticHessian(n, 3);
    const { u, damp, dead } = dampedUpperCholeskyOfInverse(h, n);
    let md = 0;
    for (let i = 0; i < n; i++) md += h[i * n + i];
    expect(damp).toBeCloseTo((0.01 * md) / n, 12);
    expect(dead).toEqual([]);
    for (let i = 0; i < n; i++) {
      expect(u[i * n + i]).toBeGreaterThan(0);
      for (let j = 0; j < i; j++) expect(u[i * n + j]).toBe(0);
    }
    const hd = Float64Array.from(h);
    for (let i = 0; i < n; i++) hd[i * n + i] += damp;
    expect(maxAbsDiffIdentity(matmul(matmul(transpose(u, n), u, n), hd, n), n)).toBeLessThan(1e-8);
    // Same factor as the textbook route: invert, then upper Cholesky (= transpose of lower
    // Cholesky of the inverse). Uniqueness of Cholesky makes them equal.
    const inv = spdInverse(hd, n);
    const l = Float64Array.from(inv);
    choleskyInPlace(l, n);
    const uRef = transpose(l, n);
    let m = 0;
    for (let i = 0; i < n * n; i++) m = Math.max(m, Math.abs(u[i] - uRef[i]));
    expect(m).toBeLessThan(1e-9 * Math.abs(uRef[0]));
  });

  it('handles a rank-deficient H with dead inputs (zero diagonal) by damping', () => {
    const n = 20;
    const g = gaussian(rng(4));
    const x = Float64Array.from({ length: 3 * n }, g); // rank 3
    const h = new Float64Array(n * n);
    for (let i = 0; i < n; i++)
      for (let j = 0; j < n; j++) {
        if (i === 7 || j === 7) continue;
        let s = 0;
        for (let t = 0; t < 3; t++) s += x[t * n + i] * x[t * n + j];
        h[i * n + j] = s;
      }
    const { u, dead } = dampedUpperCholeskyOfInverse(h, n);
    expect(dead).toEqual([7]);
    for (const v of u) expect(Number.isFinite(v)).toBe(true);
  });

  it('solveSmall solves a pivoting-requiring system and reports singular ones', () => {
    const a = Float64Array.from([0, 2, 1, 1, 1, 0, 2, 0, 3]);
    const x = new Float64Array(3);
    expect(solveSmall(Float64Array.from(a), Float64Array.from([5, 3, 11]), 3, x)).toBe(true);
    // check A x = b
    const b = [5, 3, 11];
    for (let i = 0; i < 3; i++) expect(a[i * 3] * x[0] + a[i * 3 + 1] * x[1] + a[i * 3 + 2] * x[2]).toBeCloseTo(b[i], 12);
    expect(solveSmall(Float64Array.from([1, 2, 2, 4]), Float64Array.from([1, 2]), 2, new Float64Array(2))).toBe(false);
  });
});
