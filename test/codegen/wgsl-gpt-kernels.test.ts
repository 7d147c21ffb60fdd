// The WGSL kernels of the GPT-2 / GPT-NeoX / Phi-2 program features on the Node WebGPU adapter
// against the float64 reference runtime's functions: LayerNorm (γ, β, an input far from zero
// mean), the ungated MLP activations (GELU(erf) through its f32 erf, tanh GELU, SiLU), the
// GELU(erf) gate, learned positions added at pos0 + m, and RoPE over 0 dims (k and v copied).
import { describe, expect, it } from 'vitest';
import { rng } from '../../src/artifact/random.ts';
import { NO_FEATURES, type WgslFeatures } from '../../src/codegen/wgsl/fragments.ts';
import * as K from '../../src/codegen/wgsl/kernels.ts';
import { layerNorm } from '../../src/runtime/reference.ts';
import { POINTWISE } from '../../src/graph/patterns/activation.ts';
import { runKernel, testDevice } from './wgsl-harness.ts';

const { dev, skip } = await testDevice();
const rand = rng(29);
const randn = (n: number, s = 1, mean = 0) => Float32Array.from({ length: n }, () => mean + s * (rand() * 2 - 1));

function expectClose(got: ArrayLike<number>, want: ArrayLike<number>, tol: number) {
  expect(got.length).toBe(want.length);
  let worst = 0;
  for (let i = 0; i < want.length; i++) worst = Math.max(worst, Math.abs(got[i] - want[i]) / (1 + Math.abs(want[i])));
  expect(worst).toBeLessThan(tol);
}

describe.skipIf(!!skip)('WGSL kernels of the GPT-style features', () => {
  const device = dev!.device;
  const sg: WgslFeatures[] = device.features.has('subgroups') ? [NO_FEATURES, { subgroups: true }] : [NO_FEATURES];

  it('LayerNorm with γ and β (and without), rows from row0, input mean 30 ≫ its spread, with and without subgroup reductions', async () => {
    const hidden = 70, ntok = 2, row0 = 1;
    const x = randn(3 * hidden, 1, 30);
    const gamma = randn(hidden, 0.2, 1);
    const beta = randn(hidden, 0.1);
    const rows = (g: Float32Array | null, b: Float32Array | null) =>
      [1, 2].flatMap((m) => Array.from(layerNorm(Float64Array.from(x.subarray(m * hidden, (m + 1) * hidden)), g && Float64Array.from(g), b && Float64Array.from(b), 1e-5)));
    for (const feats of sg) {
      const r = await runKernel(device, K.layerNormKernel(hidden, 1e-5, true, true, feats), [x, gamma, beta, new Float32Array(ntok * hidden)], ntok, { row0 });
      expectClose(r.Y, rows(gamma, beta), 2e-5);
      const plain = await runKernel(device, K.layerNormKernel(hidden, 1e-5, false, false, feats), [x, new Float32Array(ntok * hidden)], ntok, { row0 });
      expectClose(plain.Y, rows(null, null), 2e-5);
    }
  });

  it('ungated MLP activations σ(u) and the GELU(erf) gate σ(g)·u', async () => {
    const width = 300, ntok = 2;
    const u = randn(ntok * width, 6);
    const g = randn(ntok * width, 6);
    for (const a of ['gelu', 'gelu-tanh', 'silu'] as const) {
      const r = await runKernel(device, K.mlpActivationKernel(width, a), [u, new Float32Array(ntok * width)], ntok);
      expectClose(r.Y, Array.from(u, POINTWISE[a]), 3e-6);
    }
    const gated = await runKernel(device, K.swigluKernel(width, 'gelu'), [g, u, new Float32Array(ntok * width)], ntok);
    expectClose(gated.Y, Array.from(g, (gv, i) => POINTWISE.gelu(gv) * u[i]), 3e-6);
  });

  it('learned positions: X[m] += P[pos0 + m]', async () => {
    const hidden = 70, ntok = 3, pos0 = 4, maxPos = 8;
    const P = randn(maxPos * hidden);
    const x = randn(ntok * hidden);
    const r = await runKernel(device, K.positionAddKernel(hidden, maxPos), [P, x], ntok, { pos0 });
    expectClose(r.X, Array.from(x, (v, i) => v + P[(pos0 + Math.floor(i / hidden)) * hidden + (i % hidden)]), 1e-7);
  });

  it('RoPE over 0 dims (no RoPE): q unchanged, k and v copied into the caches at pos', async () => {
    const heads = 2, kvHeads = 2, d = 8, maxPos = 4, pos0 = 2, ntok = 1;
    const q = randn(heads * d), k = randn(kvHeads * d), v = randn(kvHeads * d);
    const r = await runKernel(device, K.ropeKvKernel(heads, kvHeads, d, maxPos, 0), [q, k, v, new Float32Array(4), new Float32Array(maxPos * kvHeads * d), new Float32Array(maxPos * kvHeads * d)], ntok, { pos0 });
    expect(Array.from(r.Q)).toEqual(Array.from(q));
    expect(Array.from(r.Kc.subarray(pos0 * kvHeads * d, (pos0 + 1) * kvHeads * d))).toEqual(Array.from(k));
    expect(Array.from(r.Vc.subarray(pos0 * kvHeads * d, (pos0 + 1) * kvHeads * d))).toEqual(Array.from(v));
  });
});
