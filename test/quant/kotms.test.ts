// KOTMS: gradients against central finite differences, exact orthogonality, and on a real
// fixture weight that the learned transform lowers the ternary rounding error.
import { existsSync } from 'node:fs';
import { resolve } from 'node:path';
import { describe, expect, it } from 'vitest';
import { loadModel } from '../../src/graph/onnx.ts';
import { orthogonalityError, rotateWeight, type KronShape } from '../../src/quant/kron.ts';
import {
  cayley,
  initialParams,
  kotmsLoss,
  optimiseKotms,
  seededRandom,
  ternaryRelError,
  type KotmsLossOptions,
  type KotmsParams,
} from '../../src/quant/kotms.ts';

function gaussian(n: number, rand: () => number): Float64Array {
  return Float64Array.from({ length: n }, () => Math.sqrt(-2 * Math.log(Math.max(rand(), 1e-300))) * Math.cos(2 * Math.PI * rand()));
}

describe('Cayley transform', () => {
  it('is orthogonal to 1e-10 for large parameters', () => {
    const rand = seededRandom(3);
    for (const n of [2, 7, 48, 96]) {
      const a = gaussian((n * (n - 1)) / 2, rand).map((x) => 3 * x);
      expect(orthogonalityError(cayley(a, n).Q, n)).toBeLessThan(1e-10);
    }
  });
});

describe('KOTMS gradient', () => {
  const shape: KronShape = { l: 3, r: 4 };
  const rows = 5;
  const n = shape.l * shape.r;

  for (const init of ['identity', 'random'] as const) {
    it(`matches central finite differences (${init} start)`, () => {
      const rand = seededRandom(11);
      // heavy-tailed rows
      const W = gaussian(rows * n, rand).map((x, i) => x * (i % 5 === 0 ? 3 : 1) + 0.1);
      const p = initialParams(shape, init, rand);
      for (const a of [p.aB, p.aC]) for (let i = 0; i < a.length; i++) a[i] = 0.3 * gaussian(1, rand)[0];
      p.logits.set([0.2, -0.1, 0.4]);
      const opts: KotmsLossOptions = { balanceWeight: 0.1, sigmaRatio: 0.25 };
      const g = kotmsLoss(W, rows, shape, p, opts, true);
      const fd = (key: 'aB' | 'aC' | 'logits', i: number): number => {
        const h = 1e-6;
        const plus: KotmsParams = { ...p, [key]: Float64Array.from(p[key]) };
        const minus: KotmsParams = { ...p, [key]: Float64Array.from(p[key]) };
        plus[key][i] += h;
        minus[key][i] -= h;
        return (kotmsLoss(W, rows, shape, plus, opts, false).loss - kotmsLoss(W, rows, shape, minus, opts, false).loss) / (2 * h);
      };
      let checked = 0;
      const cases: ['aB' | 'aC' | 'logits', Float64Array][] = [['aB', g.gaB], ['aC', g.gaC], ['logits', g.gLogits]];
      let scale = 0;
      for (const [, grad] of cases) for (const x of grad) scale = Math.max(scale, Math.abs(x));
      expect(scale).toBeGreaterThan(1e-4);
      for (const [key, grad] of cases) {
        for (let i = 0; i < grad.length; i++) {
          expect(Math.abs(grad[i] - fd(key, i))).toBeLessThan(1e-6 * Math.max(1, scale));
          checked++;
        }
      }
      expect(checked).toBeGreaterThan(8);
    });
  }
});

const fixtureDir = resolve(import.meta.dirname, '../../../shared/models/pydocs-llama-12m');
const haveFixture = existsSync(`${fixtureDir}/model.onnx`);
if (!haveFixture) console.warn(`skipping KOTMS fixture test: ${fixtureDir} is missing`);

describe.skipIf(!haveFixture)('KOTMS on a fixture weight', () => {
  it('learns orthogonal factors, lowers the objective and the ternary error of block 0 k_proj', () => {
    const model = loadModel(`${fixtureDir}/model.onnx`);
    // block 0's k_proj: MatMul(x, Wt) with Wt = Wᵀ stored [in 384, out 128]
    const t = model.graph.initializers.get('val_99')!.constValue!;
    expect(t.dims).toEqual([384, 128]);
    const Wt = t.toFloat32();
    const W = new Float64Array(128 * 384);
    for (let i = 0; i < 384; i++) for (let o = 0; o < 128; o++) W[o * 384 + i] = Wt[i * 128 + o];

    const res = optimiseKotms(384, [{ weight: W, outDim: 128 }]);
    expect(res.shape).toEqual({ l: 16, r: 24 });
    expect(orthogonalityError(res.B, 24)).toBeLessThan(1e-10);
    expect(orthogonalityError(res.C, 16)).toBeLessThan(1e-10);
    expect(res.objectiveAfter).toBeLessThan(res.objectiveBefore - 0.05);
    const before = ternaryRelError(W, 128, 384);
    const after = ternaryRelError(rotateWeight(W, 128, res.shape, res.B, res.C), 128, 384);
    console.log(`k_proj ternary rel. error ${before.toFixed(4)} → ${after.toFixed(4)}; objective ${res.objectiveBefore.toFixed(4)} → ${res.objectiveAfter.toFixed(4)} in ${res.ms.toFixed(0)} ms`);
    expect(after).toBeLessThan(before);
  });
});
