// ILA-AMP's search against brute-force enumeration, and the measurement plan's bookkeeping.
import { describe, expect, it } from 'vitest';
import { allocateBits, ampObjective, AMP_BITS, costsFromMeasurements, measurementPlan, type AmpCosts } from '../../src/quant/ila-amp.ts';
import { seededRandom } from '../../src/quant/kotms.ts';

function randomCosts(n: number, rand: () => number): AmpCosts {
  // Δ₁ falls with bits (0 at 8), K is signed noise of comparable size (0 where a bit is 8)
  const single = Array.from({ length: n }, () => {
    const s6 = rand() * 0.05;
    const s4 = s6 + rand() * 0.3;
    return [s4 + rand() * 2, s4, s6, 0];
  });
  const pair = Array.from({ length: n }, (_, i) =>
    AMP_BITS.map((bp) => AMP_BITS.map((b) => (i === 0 || bp === 8 || b === 8 ? 0 : (rand() - 0.3) * 0.6))),
  );
  return { bits: AMP_BITS, single, pair };
}

function bruteForce(costs: AmpCosts, budget: number, beta: number): { bits: number[]; cost: number } | undefined {
  const n = costs.single.length;
  let best: { bits: number[]; cost: number } | undefined;
  const cur = new Array<number>(n);
  const rec = (i: number) => {
    if (i === n) {
      if (cur.reduce((a, b) => a + b, 0) > budget * n + 1e-9) return;
      const c = ampObjective(costs, cur, beta);
      if (!best || c < best.cost) best = { bits: [...cur], cost: c };
      return;
    }
    for (const b of costs.bits) {
      cur[i] = b;
      rec(i + 1);
    }
  };
  rec(0);
  return best;
}

describe('allocateBits', () => {
  it('equals brute-force enumeration on random costs (1–6 blocks, several budgets and β)', () => {
    const rand = seededRandom(21);
    let cases = 0;
    let mixed = 0;
    for (let trial = 0; trial < 40; trial++) {
      const n = 1 + (trial % 6);
      const costs = randomCosts(n, rand);
      for (const budget of [2, 3, 4, 4.5, 5, 6, 8]) {
        for (const beta of [0.5, 0, 1.5]) {
          const dp = allocateBits(costs, budget, beta);
          const bf = bruteForce(costs, budget, beta)!;
          expect(dp.cost).toBeCloseTo(bf.cost, 12);
          expect(ampObjective(costs, dp.bits, beta)).toBeCloseTo(dp.cost, 12);
          expect(dp.meanBits).toBeLessThanOrEqual(budget + 1e-12);
          if (new Set(dp.bits).size > 1) mixed++;
          cases++;
        }
      }
    }
    expect(cases).toBe(40 * 7 * 3);
    expect(mixed).toBeGreaterThan(100); // the budget binds and the answers are genuinely mixed
  });

  it('rejects a budget below the smallest width', () => {
    const costs = randomCosts(3, seededRandom(1));
    expect(() => allocateBits(costs, 1.5)).toThrow(/below the smallest bit-width/);
  });
});

describe('measurementPlan and costsFromMeasurements', () => {
  it('lists 1 + 3n + 9(n−1) runs, or 1 + 3n + 4(n−1) with pairs pruned to {2, 4}', () => {
    expect(measurementPlan(6).length).toBe(1 + 18 + 45);
    expect(measurementPlan(32).length).toBe(1 + 96 + 279);
    expect(measurementPlan(6, { pairBits: [2, 4] }).length).toBe(1 + 18 + 20);
    const p = measurementPlan(3).find((m) => m.kind === 'pair' && m.block === 2 && m.bits[0] === 4 && m.bits[1] === 2)!;
    expect(p.config).toEqual([8, 4, 2]);
  });

  it('recovers Δ₁ and K from the NLLs of an additive-plus-pairwise model', () => {
    const rand = seededRandom(4);
    const n = 5;
    const truth = randomCosts(n, rand);
    // a synthetic "model": NLL(config) = base + Σ Δ₁ + Σ K
    const nllOf = (config: number[]) => 3 + ampObjective(truth, config, 1);
    const plan = measurementPlan(n);
    const got = costsFromMeasurements(n, plan.map((m) => ({ m, nll: nllOf(m.config) })));
    for (let i = 0; i < n; i++) for (let k = 0; k < 4; k++) expect(got.single[i][k]).toBeCloseTo(truth.single[i][k], 12);
    for (let i = 1; i < n; i++) for (let a = 0; a < 4; a++) for (let b = 0; b < 4; b++) expect(got.pair[i][a][b]).toBeCloseTo(truth.pair[i][a][b], 12);
    // pruned to {2, 4}: pairs with a 6 are taken as independent (K = 0), the others are exact
    const pruned = costsFromMeasurements(n, measurementPlan(n, { pairBits: [2, 4] }).map((m) => ({ m, nll: nllOf(m.config) })));
    expect(pruned.pair[2][2][1]).toBe(0);
    expect(truth.pair[2][2][1]).not.toBe(0);
    expect(pruned.pair[2][0][1]).toBeCloseTo(truth.pair[2][0][1], 12);
  });
});
