// The hand-written block backward against central finite differences (float64 oracle of the
// float32 forward's loss), with every piece of the block present: γ norms, Kronecker
// transforms at all four sites, GQA, RoPE, SwiGLU and biases.
import { describe, expect, it } from 'vitest';
import { BLOCK_LINEARS, type BlockLinearRole } from '../../src/artifact/build.ts';
import { blockBackward, blockForward, cosineLoss, headLogProbs, logitKlLoss, mmAB, mmABt, type BlockDims, type BlockParams, type HeadParams, type KronT } from '../../src/quant/block-grad.ts';
import { mulberry32 } from '../../src/util/prng.ts';

const dims: BlockDims = { hidden: 8, heads: 4, kvHeads: 2, headDim: 2, intermediate: 12, ropeTheta: 10000, normEps: 1e-5 };
const rand = mulberry32(7);
const randn = (n: number, s = 1) => Float32Array.from({ length: n }, () => (rand() * 2 - 1) * s);
const kronT = (l: number, r: number): KronT => ({ l, r, C: Float64Array.from(randn(l * l)), B: Float64Array.from(randn(r * r)) });
const shapes: Record<BlockLinearRole, [number, number]> = { q: [8, 8], k: [4, 8], v: [4, 8], o: [8, 8], gate: [12, 8], up: [12, 8], down: [8, 12] };

export function tinyBlock(): BlockParams {
  return {
    attnNorm: Float32Array.from(randn(8), (v) => 1 + 0.3 * v),
    mlpNorm: Float32Array.from(randn(8), (v) => 1 + 0.3 * v),
    W: Object.fromEntries(BLOCK_LINEARS.map((r) => [r, randn(shapes[r][0] * shapes[r][1], 0.6)])) as BlockParams['W'],
    bias: { q: randn(8, 0.1), down: randn(8, 0.1) },
    T: { attn: kronT(2, 4), o: kronT(4, 2), mlp: kronT(4, 2), down: kronT(3, 4) },
  };
}

describe('block backward', () => {
  it('matmul helpers agree with a float64 product', () => {
    const A = randn(5 * 7), B = randn(6 * 7), Bt = randn(7 * 6);
    const c1 = mmABt(A, B, 5, 7, 6);
    const c2 = mmAB(A, Bt, 5, 7, 6);
    for (let m = 0; m < 5; m++) for (let n = 0; n < 6; n++) {
      let s1 = 0, s2 = 0;
      for (let k = 0; k < 7; k++) { s1 += A[m * 7 + k] * B[n * 7 + k]; s2 += A[m * 7 + k] * Bt[k * 6 + n]; }
      expect(c1[m * 6 + n]).toBeCloseTo(s1, 5);
      expect(c2[m * 6 + n]).toBeCloseTo(s2, 5);
    }
  });

  it('∂(1 − cos)/∂W of every linear and ∂(1 − cos)/∂x match central finite differences', () => {
    const p = tinyBlock();
    const S = 5;
    const x = randn(S * 8);
    const target = randn(S * 8);
    const loss = () => cosineLoss(blockForward(p, dims, x, S).out, target, S, 8, false).loss;
    const { out, cache } = blockForward(p, dims, x, S);
    const l = cosineLoss(out, target, S, 8, true);
    const dW = Object.fromEntries(BLOCK_LINEARS.map((r) => [r, new Float32Array(p.W[r].length)])) as Record<BlockLinearRole, Float32Array>;
    const dx = blockBackward(p, dims, cache, l.dOut!, dW);
    let worstX = 0, scaleX = 0;
    for (let i = 0; i < x.length; i++) {
      const x0 = x[i];
      x[i] = x0 + 1e-2;
      const lp = loss();
      x[i] = x0 - 1e-2;
      const lm = loss();
      x[i] = x0;
      const fd = (lp - lm) / 2e-2;
      worstX = Math.max(worstX, Math.abs(fd - dx[i]));
      scaleX = Math.max(scaleX, Math.abs(fd));
    }
    expect(worstX / scaleX, 'x').toBeLessThan(2e-2);
    for (const r of BLOCK_LINEARS) {
      let worst = 0, scale = 0;
      for (let i = 0; i < p.W[r].length; i++) {
        const w0 = p.W[r][i];
        const h = 1e-2;
        p.W[r][i] = w0 + h;
        const lp = loss();
        p.W[r][i] = w0 - h;
        const lm = loss();
        p.W[r][i] = w0;
        const fd = (lp - lm) / (2 * h);
        worst = Math.max(worst, Math.abs(fd - dW[r][i]));
        scale = Math.max(scale, Math.abs(fd));
      }
      expect(scale, r).toBeGreaterThan(1e-4);
      expect(worst / scale, r).toBeLessThan(2e-2);
    }
  });

  it('∂KL(teacher ‖ student)/∂x through the final norm and head matches central finite differences (float64 sums)', () => {
    const S = 4, H = 8, V = 11;
    const head: HeadParams = { norm: Float32Array.from(randn(H), (v) => 1 + 0.3 * v), W: randn(V * H, 0.8), bias: randn(V, 0.1), vocab: V };
    const x = randn(S * H);
    const teacher = headLogProbs(head, randn(S * H), S, H, 1e-5);
    // The loss in float64, written out: Σ_s Σ_v p_t (log p_t − log p_s) / S.
    const kl64 = (): number => {
      let loss = 0;
      for (let s = 0; s < S; s++) {
        let ss = 0;
        for (let i = 0; i < H; i++) ss += x[s * H + i] ** 2;
        const inv = 1 / Math.sqrt(ss / H + 1e-5);
        const z = Array.from({ length: V }, (_, v) => {
          let y = head.bias![v];
          for (let i = 0; i < H; i++) y += head.W[v * H + i] * x[s * H + i] * inv * head.norm![i];
          return y;
        });
        const m = Math.max(...z);
        const lse = m + Math.log(z.reduce((a, y) => a + Math.exp(y - m), 0));
        for (let v = 0; v < V; v++) loss += Math.exp(teacher[s * V + v]) * (teacher[s * V + v] - (z[v] - lse));
      }
      return loss / S;
    };
    const r = logitKlLoss(head, x, teacher, S, H, 1e-5, true);
    expect(r.loss).toBeCloseTo(kl64(), 5);
    expect(r.loss).toBeGreaterThan(1e-3);
    let worst = 0, scale = 0;
    for (let i = 0; i < x.length; i++) {
      const x0 = x[i];
      x[i] = x0 + 1e-2;
      const lp = kl64();
      x[i] = x0 - 1e-2;
      const lm = kl64();
      x[i] = x0;
      const fd = (lp - lm) / 2e-2;
      worst = Math.max(worst, Math.abs(fd - r.dX![i]));
      scale = Math.max(scale, Math.abs(fd));
    }
    expect(worst / scale).toBeLessThan(1e-2);
    // The teacher against itself: no divergence, no gradient.
    const self = logitKlLoss(head, x, headLogProbs(head, x, S, H, 1e-5), S, H, 1e-5, true);
    expect(Math.abs(self.loss)).toBeLessThan(1e-6);
  });
});
