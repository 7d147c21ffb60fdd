// The GPU path of the compile's linear algebra (src/gpu) against float64 on the CPU, on the
// software adapter CI has (SwiftShader). Shapes are deliberately not multiples of the 64×64
// tile or the 16-deep K step. Tolerances come from the fp32 error bound of a sequential
// dot product: entrywise |Ĉ − C| ≤ γ_n·(|β||C₀| + |α|·|A||B|) with γ_n = nu/(1 − nu), u = 2⁻²⁴
// and n = K + 2 (one fma per k, then α·acc + β·c). Summed in squares this gives the relative
// Frobenius bound ‖Ĉ − C‖_F / ‖C‖_F ≤ γ_n·‖|β||C₀| + |α||A||B|‖_F / ‖C‖_F, computed per case.
// The tests check both and that the Frobenius bound is itself tight enough to mean something.
import { afterAll, describe, expect, it } from 'vitest';
import { GpuDevice, isSoftwareAdapter, selectDevice } from '../../src/gpu/device.ts';
import { GpuGram, GpuRestUpdate, gemmOp, gpuMatmul } from '../../src/gpu/ops.ts';
import { gptq, type ColumnBlockQuantizer } from '../../src/quant/gptq.ts';
import { gaussian, rng, syntheticHessian } from '../../src/quant/linalg.ts';
import { quantizeLinear } from '../../src/quant/quantize-linear.ts';
import { testDevice } from '../codegen/wgsl-harness.ts';

const { skip } = await testDevice();
const dev = skip ? undefined : GpuDevice.open();
afterAll(() => dev?.close());

const U = 2 ** -24;
const gamma = (n: number) => (n * U) / (1 - n * U);

/** Fresh inputs every run (the seed is printed on failure through the test name's data). */
const seed = (Date.now() ^ (process.pid << 8)) >>> 0;
const normal = gaussian(rng(seed));
const randn = (n: number, scale = 1) => Float32Array.from({ length: n }, () => scale * normal());

/** Reference C = β·C₀ + α·op(A)·op(B) in float64 and the entrywise error scale |β||C₀| + |α||A||B|. */
function reference(a: Float32Array, b: Float32Array, c0: Float32Array | null, m: number, n: number, k: number, tA: boolean, tB: boolean, alpha: number, beta: number) {
  const c = new Float64Array(m * n), scale = new Float64Array(m * n);
  for (let i = 0; i < m; i++) {
    for (let j = 0; j < n; j++) {
      let s = 0, sa = 0;
      for (let p = 0; p < k; p++) {
        const x = tA ? a[p * m + i] : a[i * k + p];
        const y = tB ? b[j * k + p] : b[p * n + j];
        s += x * y;
        sa += Math.abs(x * y);
      }
      const prior = c0 ? c0[i * n + j] : 0;
      c[i * n + j] = beta * prior + alpha * s;
      scale[i * n + j] = Math.abs(beta * prior) + Math.abs(alpha) * sa;
    }
  }
  return { c, scale };
}

/** Checks the entrywise bound and returns the relative Frobenius error and its bound. */
function compare(got: ArrayLike<number>, ref: Float64Array, scale: Float64Array, n: number) {
  const g = gamma(n);
  let err2 = 0, ref2 = 0, bound2 = 0, worst = 0;
  for (let i = 0; i < ref.length; i++) {
    const e = Math.abs(got[i] - ref[i]);
    worst = Math.max(worst, e / (g * scale[i] + Number.MIN_VALUE));
    err2 += e * e;
    ref2 += ref[i] * ref[i];
    bound2 += (g * scale[i]) ** 2;
  }
  return { rel: Math.sqrt(err2 / ref2), bound: Math.sqrt(bound2 / ref2), worst };
}

describe.skipIf(!!skip)(`GPU linear algebra on the test adapter (seed ${seed})`, () => {
  it('reports what adapter it runs on; auto never picks a software one', () => {
    expect(dev!.info.description.length + dev!.info.architecture.length).toBeGreaterThan(0);
    const auto = selectDevice('auto');
    if (isSoftwareAdapter(dev!.info)) expect(auto.gpu).toBeNull();
    expect(auto.note).toMatch(/^device: /);
    auto.gpu?.close();
    expect(selectDevice('cpu').gpu).toBeNull();
  });

  for (const [tA, tB] of [[false, false], [false, true], [true, false], [true, true]] as const) {
    it(`GEMM ${tA ? 'Aᵀ' : 'A'}·${tB ? 'Bᵀ' : 'B'} with α, β matches float64 within γ_(K+2)`, () => {
      const [m, n, k] = [70, 131, 45];
      const a = randn(m * k), b = randn(k * n), c0 = randn(m * n);
      const [alpha, beta] = [-0.75, 1.5];
      const ids = [dev!.alloc(a.length * 4), dev!.alloc(b.length * 4), dev!.alloc(c0.length * 4)] as [number, number, number];
      dev!.run([
        { op: 'write', id: ids[0], offset: 0, data: a },
        { op: 'write', id: ids[1], offset: 0, data: b },
        { op: 'write', id: ids[2], offset: 0, data: c0 },
        gemmOp({ transA: tA, transB: tB, upper: false }, ids, { m, n, k, lda: tA ? m : k, ldb: tB ? k : n, ldc: n, alpha, beta }),
      ]);
      const got = dev!.readF32(ids[2], 0, m * n);
      dev!.free(...ids);
      const { c, scale } = reference(a, b, c0, m, n, k, tA, tB, alpha, beta);
      const r = compare(got, c, scale, k + 2);
      expect(r.worst).toBeLessThanOrEqual(1);
      expect(r.rel).toBeLessThanOrEqual(r.bound);
      expect(r.bound).toBeLessThan(1e-4);
    });
  }

  it('matmul X·Wᵀ (a calibration linear) matches float64', () => {
    const [m, k, n] = [33, 200, 77];
    const x = randn(m * k), w = randn(n * k, 1 / Math.sqrt(k));
    const got = gpuMatmul(dev!, x, w, m, k, n, true);
    const { c, scale } = reference(x, w, null, m, n, k, false, true, 1, 0);
    const r = compare(got, c, scale, k + 2);
    expect(r.worst).toBeLessThanOrEqual(1);
    expect(r.rel).toBeLessThanOrEqual(r.bound);
  });

  it('Gram H = Σ x xᵀ over uneven chunks, with outlier channels, matches float64', () => {
    const width = 150;
    const chunks = [57, 128, 19];
    const outliers = new Set([3, 77, 149]);
    const gram = new GpuGram(dev!, width);
    const all: Float32Array[] = [];
    for (const t of chunks) {
      const x = randn(t * width);
      for (let r = 0; r < t; r++) for (const o of outliers) x[r * width + o] *= 40;
      all.push(x);
      gram.add(x, t);
    }
    const got = gram.read();
    gram.release();
    const T = chunks.reduce((s, t) => s + t, 0);
    const X = new Float32Array(T * width);
    let off = 0;
    for (const x of all) {
      X.set(x, off);
      off += x.length;
    }
    const { c, scale } = reference(X, X, null, width, width, T, true, false, 1, 0);
    // Each chunk's sum is added to the running fp32 sum once: n = T + 2·chunks.
    const r = compare(got, c, scale, T + 2 * chunks.length);
    expect(gram.tokens).toBe(T);
    expect(r.worst).toBeLessThanOrEqual(1);
    expect(r.rel).toBeLessThanOrEqual(r.bound);
    // symmetric by construction (mirrored upper triangle)
    expect(got[5 * width + 140]).toBe(got[140 * width + 5]);
  });

  it("GPTQ's rank-B update of the later columns matches the float64 loop", () => {
    const [N, K, B] = [41, 300, 128];
    const wt = Float64Array.from(randn(K * N));
    const u = new Float64Array(K * K);
    for (let i = 0; i < K; i++) for (let j = i; j < K; j++) u[i * K + j] = Math.fround(normal() / Math.sqrt(K));
    const err = Float64Array.from(randn(B * N));
    const upd = new GpuRestUpdate(dev!);
    upd.begin(wt, u, N, K);
    const got = Float64Array.from(wt);
    const c0 = 0, c1 = B;
    upd.apply(c0, B, err, got, B);
    // second block: the update must land on the GPU's copy, not on the host's stale one
    const err2 = Float64Array.from(randn(B * N));
    const got2 = Float64Array.from(got);
    upd.apply(B, B, err2, got2, K - 2 * B);
    upd.end();
    const ref = Float64Array.from(wt.map(Math.fround));
    const scale = new Float64Array(K * N).map((_, i) => Math.abs(ref[i]));
    for (const [e, s0] of [[err, 0], [err2, B]] as const) {
      for (let c = s0 + B; c < K; c++) {
        for (let n = 0; n < N; n++) {
          let s = 0, sa = 0;
          for (let j = 0; j < B; j++) {
            const p = u[(s0 + j) * K + c] * Math.fround(e[j * N + n]);
            s += p;
            sa += Math.abs(p);
          }
          ref[c * N + n] -= s;
          scale[c * N + n] += sa;
        }
      }
    }
    // columns of the first update that the host received, and the second update's columns
    const rows = (a: Float64Array, from: number, to: number) => a.subarray(from * N, to * N);
    const r1 = compare(rows(got, c1, 2 * B), rows(ref, c1, 2 * B), rows(scale, c1, 2 * B), B + 2);
    // after two updates the error bound composes: n = 2(B + 2)
    const r2 = compare(rows(got2, 2 * B, K), rows(ref, 2 * B, K), rows(scale, 2 * B, K), 2 * (B + 2));
    for (const r of [r1, r2]) {
      expect(r.worst).toBeLessThanOrEqual(1);
      expect(r.rel).toBeLessThanOrEqual(r.bound);
    }
  });

  it('GPTQ with the update on the GPU: same quantiser, output error within 1% of the CPU path', () => {
    const [rows, cols] = [24, 200];
    const w = randn(rows * cols, 0.05);
    const h = syntheticHessian(cols, seed);
    const opts = { structure: 'kernel' as const, group: 64, gptq: true, xDomain: true, measure: true };
    const cpu = quantizeLinear(w, rows, cols, h, opts);
    const gpu = quantizeLinear(w, rows, cols, h, { ...opts, restUpdate: new GpuRestUpdate(dev!) });
    expect(Math.abs(gpu.stats.relOutputError! - cpu.stats.relOutputError!) / cpu.stats.relOutputError!).toBeLessThan(0.01);
  });

  it('GPTQ with a linear quantiser: GPU and CPU results agree to fp32 accuracy', () => {
    // q = col/2 makes no discrete decision, so the two paths differ only by fp32 rounding of
    // the lazy updates: each column gets at most ⌈K/B⌉ of them, each within γ_(B+2) of its
    // entries' magnitudes, which for these sizes is below 1e-5 relative.
    const [rows, cols] = [16, 260];
    const w = Float64Array.from(randn(rows * cols));
    const h = syntheticHessian(cols, seed + 1);
    const half: ColumnBlockQuantizer = { begin() {}, column: (_j, col, q) => col.forEach((v, i) => (q[i] = v / 2)) };
    const cpu = gptq(w, rows, cols, h, half);
    const gpu = gptq(w, rows, cols, h, half, { restUpdate: new GpuRestUpdate(dev!) });
    let d = 0, n = 0;
    for (let i = 0; i < cpu.q.length; i++) {
      d += (gpu.q[i] - cpu.q[i]) ** 2;
      n += cpu.q[i] ** 2;
    }
    expect(Math.sqrt(d / n)).toBeLessThan(1e-5);
    expect(Math.sqrt(d / n)).toBeGreaterThan(0); // the GPU path ran (fp32 differs from float64)
  });
});
