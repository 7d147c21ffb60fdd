import { describe, expect, it } from 'vitest';
import { outputError } from '../../src/quant/gptq.ts';
import { gaussian, rng, spdInverse, syntheticHessian } from '../../src/quant/linalg.ts';
import { quantizeKernelStructure } from '../../src/quant/structure-kernel.ts';
import { decodeTernary } from '../../src/formats/ternary.ts';
import { decodeOrder2, order2StorageBytes } from '../../src/formats/order2.ts';
import { fitOrder2Linear, fitOrder2Plane, fitOrder2Residual, type Order2Residual } from '../../src/quant/order2-residual.ts';

const N = 24, K = 128;
const g = gaussian(rng(11));
const W = Float32Array.from({ length: N * K }, () => 0.05 * g() * (1 + 0.3 * g() ** 2));
const H = syntheticHessian(K, 12);
const fit = quantizeKernelStructure(W, N, K, H, { group: 64, shift: true, gptq: true, xDomain: true });
const base = fit.dequant;
/** The columns of largest diag(H), ascending. */
const heaviest = (k: number) => Int32Array.from(Array.from({ length: K }, (_, j) => j).sort((a, b) => H[b * K + b] - H[a * K + a]).slice(0, k)).sort();
function apply(r: Order2Residual): Float64Array {
  const out = Float64Array.from(base);
  const k = r.cols.length;
  for (let n = 0; n < N; n++) for (let i = 0; i < k; i++) out[n * K + r.cols[i]] += r.scale[n * Math.ceil(k / r.group) + Math.floor(i / r.group)] * r.t[n * k + i];
  return out;
}

describe('order-2 residual on salient columns', () => {
  it('lowers the output error, more with more columns', () => {
    const err = (k: number) => {
      if (k === 0) return outputError(W, base, N, K, H);
      const r = fitOrder2Residual(W, base, N, K, H, heaviest(k), Math.min(k, 32));
      return outputError(W, apply(r), N, K, H);
    };
    const e0 = err(0), e8 = err(8), e32 = err(32);
    expect(e8).toBeLessThan(0.97 * e0);
    expect(e32).toBeLessThan(0.9 * e8);
  });

  it('a whole second plane: stored in the plane format, decoded by decodeOrder2 as base + plane, output error far below one plane', () => {
    const plane = fitOrder2Plane(W, base, fit.weights, H);
    expect(plane.format.id).toBe('tq1_g64_ns');
    const both = decodeOrder2({ base: fit.weights, plane });
    const p = decodeTernary(plane);
    for (let i = 0; i < N * K; i++) expect(both[i]).toBe(base[i] + p[i]);
    expect(outputError(W, both, N, K, H)).toBeLessThan(0.5 * outputError(W, base, N, K, H));
    expect(order2StorageBytes(fit.weights.format, N, K) * 8).toBe(N * K * (1.875 + 0.25) + N * K * (1.625 + 0.25));
  });

  it('alternating refits of the two planes lower the output error further (never raise it)', () => {
    const once = fitOrder2Linear(W, fit.weights, H, 0);
    const alt = fitOrder2Linear(W, fit.weights, H, 2);
    const e = (x: { base: typeof fit.weights; plane: typeof fit.weights }) => outputError(W, decodeOrder2(x), N, K, H);
    expect(decodeTernary(once.plane)).toEqual(decodeTernary(fitOrder2Plane(W, base, fit.weights, H)));
    expect(e(alt)).toBeLessThan(0.98 * e(once));
  });

  it('is near the brute-force optimum of β·t ≈ δ under the damped H_SS (4 columns, all 81 trit patterns)', () => {
    const cols = Int32Array.from([3, 40, 77, 100]);
    const k = cols.length;
    const r = fitOrder2Residual(W, base, N, K, H, cols, k);
    const A = new Float64Array(k * k);
    let mean = 0;
    for (let i = 0; i < k; i++) mean += H[cols[i] * K + cols[i]] / k;
    for (let i = 0; i < k; i++) for (let j = 0; j < k; j++) A[i * k + j] = H[cols[i] * K + cols[j]] + (i === j ? 0.01 * mean : 0);
    const Ainv = spdInverse(A, k);
    const quad = (v: number[]) => v.reduce((s, vi, i) => s + vi * v.reduce((t, vj, j) => t + A[i * k + j] * vj, 0), 0);
    for (let n = 0; n < N; n++) {
      const he = Array.from(cols, (c) => {
        let s = 0;
        for (let j = 0; j < K; j++) s += H[c * K + j] * (W[n * K + j] - base[n * K + j]);
        return s;
      });
      const delta = Array.from({ length: k }, (_, i) => he.reduce((s, v, j) => s + Ainv[i * k + j] * v, 0));
      let best = quad(delta);
      for (let code = 0; code < 81; code++) {
        const t = Array.from({ length: k }, (_, i) => (Math.floor(code / 3 ** i) % 3) - 1);
        const tAt = quad(t);
        if (tAt === 0) continue;
        const tAd = t.reduce((s, ti, i) => s + ti * delta.reduce((u, dj, j) => u + A[i * k + j] * dj, 0), 0);
        best = Math.min(best, quad(delta) - (tAd * tAd) / tAt);
      }
      const got = quad(delta.map((d, i) => d - r.scale[n] * r.t[n * k + i]));
      expect(got).toBeLessThanOrEqual(best * 1.01 + 1e-12 * quad(delta));
    }
  });
});
