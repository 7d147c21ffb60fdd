// Kronecker transforms against the explicit Kronecker product, built naively in float64.
import { describe, expect, it } from 'vitest';
import {
  groupOutDim,
  kronFactorShape,
  kronMulCols,
  kronMulRows,
  orthogonalityError,
  rotateWeight,
  transposeSquare,
  type KronShape,
} from '../../src/quant/kron.ts';
import { randomOrthogonal, seededRandom } from '../../src/quant/kotms.ts';

/** K = C ⊗ B, explicitly: K[a·r+b, c·r+d] = C[a,c]·B[b,d]. */
function explicitKron(shape: KronShape, B: Float64Array, C: Float64Array): Float64Array {
  const { l, r } = shape;
  const n = l * r;
  const K = new Float64Array(n * n);
  for (let a = 0; a < l; a++)
    for (let b = 0; b < r; b++)
      for (let c = 0; c < l; c++) for (let d = 0; d < r; d++) K[(a * r + b) * n + c * r + d] = C[a * l + c] * B[b * r + d];
  return K;
}

function matmul(A: Float64Array, Bm: Float64Array, m: number, k: number, n: number): Float64Array {
  const out = new Float64Array(m * n);
  for (let i = 0; i < m; i++) for (let j = 0; j < n; j++) {
    let s = 0;
    for (let t = 0; t < k; t++) s += A[i * k + t] * Bm[t * n + j];
    out[i * n + j] = s;
  }
  return out;
}

function transpose(A: Float64Array, m: number, n: number): Float64Array {
  const t = new Float64Array(m * n);
  for (let i = 0; i < m; i++) for (let j = 0; j < n; j++) t[j * m + i] = A[i * n + j];
  return t;
}

function maxAbsDiff(a: Float64Array, b: Float64Array): number {
  expect(a.length).toBe(b.length);
  let m = 0;
  for (let i = 0; i < a.length; i++) m = Math.max(m, Math.abs(a[i] - b[i]));
  return m;
}

function gaussian(n: number, rand: () => number): Float64Array {
  return Float64Array.from({ length: n }, () => {
    const u = Math.max(rand(), 1e-300);
    return Math.sqrt(-2 * Math.log(u)) * Math.cos(2 * Math.PI * rand());
  });
}

describe('kronFactorShape', () => {
  it('gives the fixture shapes of the rule (r = largest divisor of in ≤ floor(sqrt(out·in/64)))', () => {
    expect(kronFactorShape(384, 384)).toEqual({ l: 8, r: 48 }); // q, o: cap 48
    expect(kronFactorShape(384, 128)).toEqual({ l: 16, r: 24 }); // k, v: cap 27
    expect(kronFactorShape(384, 1024)).toEqual({ l: 6, r: 64 }); // gate, up: cap 78
    expect(kronFactorShape(1024, 384)).toEqual({ l: 16, r: 64 }); // down: cap 78
    expect(kronFactorShape(384, groupOutDim([384, 128, 128]))).toEqual({ l: 8, r: 48 }); // q/k/v: cap 61
    expect(kronFactorShape(384, groupOutDim([1024, 1024]))).toEqual({ l: 4, r: 96 }); // gate/up: cap 110
    expect(kronFactorShape(7, 7)).toEqual({ l: 7, r: 1 }); // prime in below the cap: B is 1×1
  });
});

describe('Kronecker transforms', () => {
  const rand = seededRandom(7);
  const shape: KronShape = { l: 3, r: 4 };
  const n = shape.l * shape.r;
  const B = randomOrthogonal(shape.r, rand);
  const C = randomOrthogonal(shape.l, rand);
  const K = explicitKron(shape, B, C);

  it('K = C ⊗ B is orthogonal', () => {
    expect(orthogonalityError(K, n)).toBeLessThan(1e-13);
  });

  it('x′ = C·X·Bᵀ per token equals K x', () => {
    const tokens = 5;
    const X = gaussian(tokens * n, rand);
    const want = transpose(matmul(K, transpose(X, tokens, n), n, n, tokens), n, tokens);
    expect(maxAbsDiff(kronMulRows(X, tokens, shape, B, C), want)).toBeLessThan(1e-13);
  });

  it('W′ = W Kᵀ, and W′ x′ = W x', () => {
    const out = 6;
    const tokens = 4;
    const W = gaussian(out * n, rand);
    const X = gaussian(tokens * n, rand);
    const Wr = rotateWeight(W, out, shape, B, C);
    expect(maxAbsDiff(Wr, matmul(W, transpose(K, n, n), out, n, n))).toBeLessThan(1e-13);
    const Xr = kronMulRows(X, tokens, shape, B, C);
    const y = matmul(W, transpose(X, tokens, n), out, n, tokens);
    const yr = matmul(Wr, transpose(Xr, tokens, n), out, n, tokens);
    expect(maxAbsDiff(yr, y)).toBeLessThan(1e-12);
    // and not by accident: the unrotated weight on rotated inputs differs
    expect(maxAbsDiff(matmul(W, transpose(Xr, tokens, n), out, n, tokens), y)).toBeGreaterThan(1e-2);
  });

  it('folding into a producer: P′ = K P, and the inverse uses the transposed factors', () => {
    const k = 5;
    const P = gaussian(n * k, rand);
    const Pr = kronMulCols(P, k, shape, B, C);
    expect(maxAbsDiff(Pr, matmul(K, P, n, n, k))).toBeLessThan(1e-13);
    const back = kronMulCols(Pr, k, shape, transposeSquare(B, shape.r), transposeSquare(C, shape.l));
    expect(maxAbsDiff(back, P)).toBeLessThan(1e-13);
    // a transposed-stored weight Wt = Wᵀ rotates the same way as a producer: Wt′ = K Wt = (W Kᵀ)ᵀ
    const out = 3;
    const W = gaussian(out * n, rand);
    const Wt = transpose(W, out, n);
    expect(maxAbsDiff(kronMulCols(Wt, out, shape, B, C), transpose(rotateWeight(W, out, shape, B, C), out, n))).toBeLessThan(1e-13);
  });
});
