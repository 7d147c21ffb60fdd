// The onnxruntime clip search against the float64 JS search of src/quant/act-quant.ts
// (exhaustive over the same grid): the same ratio, and errors that agree.
import { describe, expect, it } from 'vitest';
import { ClipSearcher } from '../../src/calib/clip-search.ts';
import { searchClip } from '../../src/quant/act-quant.ts';
import { rng } from '../../src/artifact/random.ts';

describe('ClipSearcher', () => {
  it('matches the exhaustive float64 search on heavy-tailed activations', async () => {
    const rand = rng(11);
    const T = 64;
    const K = 48;
    const X = new Float32Array(T * K);
    // Gaussian-ish rows with a few outlier channels, as real activations have.
    for (let i = 0; i < X.length; i++) X[i] = (rand() + rand() + rand() - 1.5) * (i % K < 3 ? 12 : 1);
    const lins = [24, 8].map((out) => ({ outDim: out, weight: Float32Array.from({ length: out * K }, () => rand() * 2 - 1) }));
    const s = await ClipSearcher.create();
    for (const bits of [2, 4, 8]) {
      const a = await s.search(X, T, K, lins, bits);
      const b = searchClip(X, T, K, lins, bits, { strategy: 'exhaustive' });
      expect(a.clip).toBe(b.clip);
      expect(a.mse).toBeCloseTo(b.mse, 3);
      expect(Math.abs(a.mse - b.mse) / b.mse).toBeLessThan(1e-4);
    }
    await s.release();
  });
});
