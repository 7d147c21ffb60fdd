// Dual Learnable Ternarization's gradients (quant/dlt.ts) against central finite differences of
// a float64 loss of the decoded weight, for one plane and for both planes of an order-2 linear
// (formats/order2.ts); the order-2 linear's steps move the second plane's scales only when it
// learns them, and what it encodes decodes to what it trained; a linear restored from another's
// state (a compile's checkpoint) takes the same steps, bit for bit.
import { describe, expect, it } from 'vitest';
import { decodeOrder2, order2PlaneFormat } from '../../src/formats/order2.ts';
import { encodeTernary, ternaryFormat, type TernaryWeights } from '../../src/formats/ternary.ts';
import { DltLinear, DltOrder2Linear } from '../../src/quant/dlt.ts';
import { mulberry32 } from '../../src/util/prng.ts';

const rand = mulberry32(11);
const R = 3, K = 16, G = 8;
const trits = () => Int8Array.from({ length: R * K }, () => Math.floor(rand() * 3) - 1);
const values = (n: number, lo: number, hi: number) => Float64Array.from({ length: n }, () => lo + rand() * (hi - lo));
const baseFormat = ternaryFormat('trit5', G, true, false);
const base = (): TernaryWeights => encodeTernary(baseFormat, R, K, trits(), values(R * 2, 0.2, 0.6), values(R * 2, -0.1, 0.1));
const plane = (): TernaryWeights => encodeTernary(order2PlaneFormat(baseFormat), R, K, trits(), values(R * 2, 0.05, 0.15));

// A smooth loss of the weight: Σ c·W + ½ Σ d·W², ∂/∂W = c + d·W.
const c = values(R * K, -1, 1), d = values(R * K, 0.5, 2);
const loss = (W: ArrayLike<number>) => {
  let l = 0;
  for (let i = 0; i < W.length; i++) l += c[i] * W[i] + 0.5 * d[i] * W[i] * W[i];
  return l;
};
const dLoss = (W: ArrayLike<number>) => Float32Array.from(W, (w, i) => c[i] + d[i] * w);

/** Largest |analytic − central difference| over params, relative to the largest difference. */
function fdError(params: Float64Array, analytic: Float64Array, weight: () => ArrayLike<number>): number {
  let worst = 0, scale = 0;
  for (let i = 0; i < params.length; i++) {
    const p0 = params[i], h = 1e-4;
    params[i] = p0 + h;
    const lp = loss(weight());
    params[i] = p0 - h;
    const lm = loss(weight());
    params[i] = p0;
    const fd = (lp - lm) / (2 * h);
    worst = Math.max(worst, Math.abs(fd - analytic[i]));
    scale = Math.max(scale, Math.abs(fd));
  }
  expect(scale).toBeGreaterThan(1e-2);
  return worst / scale;
}

describe('DLT gradients', () => {
  it('one plane: ∂loss/∂α and ∂loss/∂γ match finite differences', () => {
    const l = new DltLinear(base(), 'keep');
    const g = l.grads(dLoss(l.weight()));
    expect(fdError(l.alpha, g.dA, () => l.weight())).toBeLessThan(1e-3);
    expect(fdError(l.gamma!, g.dG, () => l.weight())).toBeLessThan(1e-3);
  });

  it('order-2 linear: each plane’s ∂loss/∂α (and the first plane’s ∂loss/∂γ) from ∂loss/∂W of the sum match finite differences', () => {
    const l = new DltOrder2Linear(base(), plane(), 'keep', 'learn');
    const dW = dLoss(l.weight());
    const g0 = l.base.grads(dW), g1 = l.plane.grads(dW);
    expect(l.plane.gamma).toBeUndefined();
    expect(fdError(l.base.alpha, g0.dA, () => l.weight())).toBeLessThan(1e-3);
    expect(fdError(l.base.gamma!, g0.dG, () => l.weight())).toBeLessThan(1e-3);
    expect(fdError(l.plane.alpha, g1.dA, () => l.weight())).toBeLessThan(1e-3);
  });

  it('steps lower the loss; a fixed second plane keeps its scales; the encoded planes decode to the trained weight', () => {
    for (const mode of ['learn', 'fixed'] as const) {
      const l = new DltOrder2Linear(base(), plane(), 'keep', mode);
      const a1 = Float64Array.from(l.plane.alpha);
      const before = loss(l.weight());
      for (let s = 0; s < 50; s++) l.step(dLoss(l.weight()), 1e-2, 0);
      expect(loss(l.weight())).toBeLessThan(before);
      const moved = l.plane.alpha.some((v, i) => v !== a1[i]);
      expect(moved, mode).toBe(mode === 'learn');
      const w = l.weight();
      const dec = decodeOrder2({ base: l.base.encode(), plane: l.plane.encode() });
      // fp16 scales and shifts: within a few fp16 ulps of each term
      for (let i = 0; i < w.length; i++) expect(Math.abs(dec[i] - w[i])).toBeLessThan(2e-3);
      expect(l.flipped()).toBe(0);
    }
  });

  it('restored from the state after some steps, takes the same further steps bit for bit (one plane, order 2, kept and STE trits)', () => {
    const bits = (x: Float64Array | Float32Array) => Array.from(new Uint32Array(x.buffer, x.byteOffset, x.byteLength / 4));
    for (const tritMode of ['keep', 'ste'] as const) {
      const b0 = base(), p0 = plane();
      const make = () => [new DltLinear(b0, tritMode), new DltOrder2Linear(b0, p0, tritMode, 'learn')] as const;
      const run = (l: DltLinear | DltOrder2Linear, steps: number) => {
        for (let s = 0; s < steps; s++) l.step(dLoss(l.weight()), 5e-2, 0.3);
      };
      const [whole1, whole2] = make();
      run(whole1, 20);
      run(whole2, 20);
      const [cut1, cut2] = make();
      run(cut1, 7);
      run(cut2, 7);
      // A round trip through structured cloning, as the checkpoint's V8 serialisation does.
      const [resumed1, resumed2] = make();
      resumed1.restore(structuredClone(cut1.state()));
      resumed2.restore(structuredClone(cut2.state()));
      run(resumed1, 13);
      run(resumed2, 13);
      expect(bits(resumed1.weight()), tritMode).toEqual(bits(whole1.weight()));
      expect(bits(resumed2.weight()), tritMode).toEqual(bits(whole2.weight()));
      expect(resumed1.flipped()).toBe(whole1.flipped());
      if (tritMode === 'ste') expect(whole1.flipped(), 'the STE steps flip trits, so the latents are exercised').toBeGreaterThan(0);
      // From the learnt values alone (no Adam moments, step count or latents), the same further steps go elsewhere.
      const [restarted] = make();
      restarted.alpha.set(cut1.alpha);
      restarted.gamma!.set(cut1.gamma!);
      if (tritMode === 'ste') restarted.t.set(cut1.t);
      run(restarted, 13);
      expect(bits(restarted.weight())).not.toEqual(bits(whole1.weight()));
    }
    expect(() => new DltLinear(base(), 'keep').restore({ ...new DltLinear(base(), 'keep').state(), alpha: new Float64Array(1) })).toThrow(/refinement state of 1 values where the linear has 6/);
  });
});
