import { describe, expect, it } from 'vitest';
import { gptq, outputError, relativeOutputError, type BlockContext, type ColumnBlockQuantizer } from '../../src/quant/gptq.ts';
import { dampedUpperCholeskyOfInverse, gaussian, rng, syntheticHessian } from '../../src/quant/linalg.ts';

function randW(N: number, K: number, seed: number): Float64Array {
  const g = gaussian(rng(seed));
  return Float64Array.from({ length: N * K }, () => 0.05 * g());
}

/** Ternary rounding with a per-(row, block) absmean scale fitted at block begin. */
function ternaryQuantizer(withEnd = false): ColumnBlockQuantizer & { scales: number[][] } {
  let scale = new Float64Array(0);
  const scales: number[][] = [];
  return {
    scales,
    begin(w: Float64Array, ctx: BlockContext) {
      scale = new Float64Array(ctx.rows);
      for (let n = 0; n < ctx.rows; n++) {
        let s = 0;
        for (let j = 0; j < ctx.width; j++) s += Math.abs(w[n * ctx.width + j]);
        scale[n] = s / ctx.width;
      }
      scales.push(Array.from(scale));
    },
    column(_j, col, q) {
      for (let n = 0; n < col.length; n++) q[n] = scale[n] * Math.max(-1, Math.min(1, Math.round(col[n] / scale[n])));
    },
    end: withEnd
      ? (_ws, q, ctx) => {
          // shrink the block's values a little (a stand-in for a μ/α refit)
          for (let i = 0; i < ctx.rows * ctx.width; i++) q[i] *= 0.97;
        }
      : undefined,
  };
}

/** Float64 reference of GPTQ's column loop without lazy batching: every column's error is
 *  pushed onto all later columns at once. `begin` is called at block starts as in gptq(). */
function referenceGptq(w0: Float64Array, N: number, K: number, h: Float64Array, qz: ColumnBlockQuantizer, B: number): Float64Array {
  const { u } = dampedUpperCholeskyOfInverse(h, K);
  const w = Float64Array.from(w0);
  const q = new Float64Array(N * K);
  const col = new Float64Array(N), qc = new Float64Array(N);
  for (let c0 = 0; c0 < K; c0 += B) {
    const width = Math.min(B, K - c0);
    const blk = new Float64Array(N * width);
    for (let n = 0; n < N; n++) for (let j = 0; j < width; j++) blk[n * width + j] = w[n * K + c0 + j];
    const hBlock = new Float64Array(width * width);
    for (let i = 0; i < width; i++) for (let j = 0; j < width; j++) hBlock[i * width + j] = h[(c0 + i) * K + c0 + j];
    const ctx: BlockContext = { c0, width, rows: N, hBlock, uDiag: new Float64Array(width), schur: null };
    qz.begin(blk, ctx);
    const snapshot = Float64Array.from(w);
    const push = (j: number) => {
      for (let n = 0; n < N; n++) {
        const e = (w[n * K + j] - q[n * K + j]) / u[j * K + j];
        for (let c = j + 1; c < K; c++) w[n * K + c] -= e * u[j * K + c];
      }
    };
    for (let j = c0; j < c0 + width; j++) {
      for (let n = 0; n < N; n++) col[n] = w[n * K + j];
      qz.column(j - c0, col, qc);
      for (let n = 0; n < N; n++) q[n * K + j] = qc[n];
      push(j);
    }
    if (qz.end) {
      const qb = new Float64Array(N * width);
      for (let n = 0; n < N; n++) for (let j = 0; j < width; j++) qb[n * width + j] = q[n * K + c0 + j];
      qz.end(blk, qb, ctx);
      for (let n = 0; n < N; n++) for (let j = 0; j < width; j++) q[n * K + c0 + j] = qb[n * width + j];
      // redo the block's propagation from the state at its start, with the final Q fixed
      w.set(snapshot);
      for (let j = c0; j < c0 + width; j++) push(j);
    }
  }
  return q;
}

describe('GPTQ', () => {
  it('an identity quantizer gives W back with zero loss', () => {
    const N = 17, K = 300;
    const w = randW(N, K, 1);
    const r = gptq(w, N, K, syntheticHessian(K, 1), { begin() {}, column(_j, c, q) { q.set(c); } });
    expect(r.loss).toBe(0);
    for (let i = 0; i < N * K; i++) expect(r.q[i]).toBe(w[i]);
  });

  for (const withEnd of [false, true]) {
    it(`lazy batched GPTQ equals the plain float64 column loop${withEnd ? ' (with a block refit in end)' : ''}`, () => {
      const N = 23, K = 290; // partial last block
      const w = randW(N, K, 2);
      const h = syntheticHessian(K, 2);
      const a = gptq(w, N, K, h, ternaryQuantizer(withEnd), { blockSize: 128 });
      const b = referenceGptq(w, N, K, h, ternaryQuantizer(withEnd), 128);
      let m = 0, mx = 0;
      for (let i = 0; i < N * K; i++) { m = Math.max(m, Math.abs(a.q[i] - b[i])); mx = Math.max(mx, Math.abs(b[i])); }
      expect(mx).toBeGreaterThan(0.01);
      expect(m).toBeLessThan(1e-9);
    });
  }

  it('beats plain rounding with the same quantizer on ‖(W−Ŵ)Xᵀ‖², on several seeds', () => {
    const N = 64, K = 384;
    for (let seed = 1; seed <= 4; seed++) {
      const w = randW(N, K, 10 + seed);
      const h = syntheticHessian(K, 20 + seed);
      const g = gptq(w, N, K, h, ternaryQuantizer());
      // plain: same quantizer, blocks fitted on the untouched W, no feedback
      const qz = ternaryQuantizer();
      const plain = new Float64Array(N * K);
      const col = new Float64Array(N), qc = new Float64Array(N);
      for (let c0 = 0; c0 < K; c0 += 128) {
        const blk = new Float64Array(N * 128);
        for (let n = 0; n < N; n++) for (let j = 0; j < 128; j++) blk[n * 128 + j] = w[n * K + c0 + j];
        qz.begin(blk, { c0, width: 128, rows: N, hBlock: new Float64Array(0), uDiag: new Float64Array(0), schur: null });
        for (let j = 0; j < 128; j++) {
          for (let n = 0; n < N; n++) col[n] = w[n * K + c0 + j];
          qz.column(j, col, qc);
          for (let n = 0; n < N; n++) plain[n * K + c0 + j] = qc[n];
        }
      }
      const eg = outputError(w, g.q, N, K, h), ep = outputError(w, plain, N, K, h);
      expect(eg).toBeLessThan(0.8 * ep);
    }
  });
});

describe('relative output error (the report\'s per-linear figure)', () => {
  const N = 40, K = 64;
  const g = gaussian(rng(5));
  const w = Float64Array.from({ length: N * K }, () => g());
  const wq = w.map((x, i) => x + 0.1 * (i % 7 === 0 ? 1 : -0.3) * g());
  const h = syntheticHessian(K, 9);
  it('is exact when the budget covers every row', () => {
    const r = relativeOutputError(w, wq, N, K, h, Infinity);
    expect(r.rows).toBe(N);
    expect(r.error).toBeCloseTo(outputError(w, wq, N, K, h) / outputError(w, new Float64Array(N * K), N, K, h), 12);
  });
  it('on a small budget, is the same ratio over evenly spaced rows', () => {
    const r = relativeOutputError(w, wq, N, K, h, 2 * K * K * 5);
    expect(r.rows).toBe(5);
    const ids = [0, 8, 16, 24, 32];
    const pick = (a: Float64Array) => Float64Array.from(ids.flatMap((n) => [...a.subarray(n * K, (n + 1) * K)]));
    expect(r.error).toBeCloseTo(outputError(pick(w), pick(wq), 5, K, h) / outputError(pick(w), new Float64Array(5 * K), 5, K, h), 12);
  });
});
