import { describe, expect, it } from 'vitest';
import { decodeTernary, decodeTrits, encodeTernary, LATTICE_MAX, latticeUnit, parseFormatId, snapRowToLattice, ternaryFormat } from '../../src/formats/ternary.ts';
import { UserError } from '../../src/errors.ts';
import { halfToFloat, floatToHalf } from '../../src/graph/tensor.ts';
import { outputError } from '../../src/quant/gptq.ts';
import { gaussian, rng, syntheticHessian } from '../../src/quant/linalg.ts';
import { mergeRowFits, quantizeLinear, rowSlices } from '../../src/quant/quantize-linear.ts';
import { prepareKernelHessian, quantizeKernelStructure, rtnTernary } from '../../src/quant/structure-kernel.ts';
import { quantizeTwlaStructure, twlaStorageBits } from '../../src/quant/structure-twla.ts';

const N = 48, K = 256;
const g = gaussian(rng(5));
const W = Float32Array.from({ length: N * K }, () => 0.05 * g() * (1 + 0.3 * g() ** 2));
const H = syntheticHessian(K, 6);
const rel = (dq: ArrayLike<number>) => outputError(W, dq, N, K, H) / outputError(W, new Float64Array(N * K), N, K, H);

describe('kernel structure', () => {
  it('stores exactly what GPTQ fitted (fp16 scale/shift during fitting) and decodes with the reference decoder', () => {
    for (const [group, shift] of [[128, true], [64, false], [256, true]] as const) {
      const r = quantizeKernelStructure(W, N, K, H, { group, shift, gptq: true, xDomain: true, refit: true });
      expect(r.weights.format.id).toBe(`tq1_g${group}${shift ? '' : '_ns'}`);
      expect(r.weights.shifts === undefined).toBe(!shift);
      let m = 0;
      for (let i = 0; i < N * K; i++) m = Math.max(m, Math.abs(r.fitted![i] - r.dequant[i]));
      expect(m).toBeLessThan(1e-12);
      const ref = decodeTernary(r.weights);
      let d = 0;
      for (let i = 0; i < N * K; i++) d = Math.max(d, Math.abs(ref[i] - r.dequant[i]));
      expect(d).toBe(0);
    }
  });

  it('reproduces a matrix that is exactly in the format, with and without GPTQ', () => {
    const f = ternaryFormat('trit5', 64, true);
    const r = rng(9);
    const t = Int8Array.from({ length: N * K }, () => Math.floor(r() * 3) - 1);
    const ng = K / 64;
    const sc = Float64Array.from({ length: N * ng }, () => halfToFloat(floatToHalf(0.02 + 0.05 * r())));
    const sh = Float64Array.from({ length: N * ng }, () => halfToFloat(floatToHalf(0.01 * (r() - 0.5))));
    const exact = Float32Array.from(decodeTernary(encodeTernary(f, N, K, t, sc, sh)));
    for (const gptq of [false, true]) {
      const q = quantizeKernelStructure(exact, N, K, H, { group: 64, shift: true, gptq, xDomain: true, refit: true });
      let m = 0;
      for (let i = 0; i < N * K; i++) m = Math.max(m, Math.abs(q.dequant[i] - exact[i]));
      expect(m).toBeLessThan(1e-6);
    }
  });

  it('each stage lowers the output error: Euclidean > +X-domain > GPTQ+X-domain; all far below RTN', () => {
    const euclid = rel(quantizeKernelStructure(W, N, K, null, { group: 128, shift: true, gptq: false, xDomain: false }).dequant);
    const xdom = rel(quantizeKernelStructure(W, N, K, H, { group: 128, shift: true, gptq: false, xDomain: true }).dequant);
    const full = rel(quantizeKernelStructure(W, N, K, H, { group: 128, shift: true, gptq: true, xDomain: true, refit: true }).dequant);
    const rtn = rel(rtnTernary(W, N, K).dequant);
    expect(xdom).toBeLessThan(euclid);
    expect(full).toBeLessThan(0.8 * xdom);
    expect(euclid).toBeLessThan(rtn);
  });
});

describe('lattice formats (_lat)', () => {
  it('parse, name and keep the fp16 storage of their base format', () => {
    const f = parseFormatId('tq2_g128_ns_lat');
    expect(f).toEqual({ id: 'tq2_g128_ns_lat', packing: 'bit2', group: 128, shift: false, lattice: true });
    expect(parseFormatId('tq1_g64').lattice).toBe(false);
    expect(() => parseFormatId('tq2_g128_lat_ns')).toThrow(/unknown weight format/);
  });
  it('latticeUnit is the smallest power of two u ≥ 2^-24 with max ≤ 127·u', () => {
    const r = rng(5);
    for (let i = 0; i < 2000; i++) {
      const mx = Math.exp(-20 * r()) * (i % 7 === 0 ? 127 * 2 ** -10 : 1); // includes exact 127·2^e
      const u = latticeUnit(mx);
      expect(Number.isInteger(Math.log2(u))).toBe(true);
      expect(mx).toBeLessThanOrEqual(LATTICE_MAX * u);
      if (u > 2 ** -24) expect(mx).toBeGreaterThan((LATTICE_MAX * u) / 2);
    }
    expect(latticeUnit(0)).toBe(2 ** -24);
  });
  it('snapped rows encode (scale·t + shift is the unit times an int8) and off-lattice rows are refused', () => {
    const f = ternaryFormat('bit2', 64, true, true);
    const r = rng(3);
    const t = Int8Array.from({ length: N * K }, () => Math.floor(r() * 3) - 1);
    const ng = K / 64;
    const sc = Float64Array.from({ length: N * ng }, () => 0.01 + 0.05 * r());
    const sh = Float64Array.from({ length: N * ng }, () => 0.02 * (r() - 0.5));
    expect(() => encodeTernary(f, N, K, t, sc, sh)).toThrow(/lattice unit/);
    const sc0 = Float64Array.from(sc), sh0 = Float64Array.from(sh);
    for (let n = 0; n < N; n++) {
      const u = snapRowToLattice(sc, sh, n, ng);
      for (let g = 0; g < ng; g++) {
        const i = n * ng + g;
        expect(Math.abs(sc[i] - sc0[i])).toBeLessThanOrEqual(u / 2);
        expect(Math.abs(sc[i] / u) + Math.abs(sh[i] / u)).toBeLessThanOrEqual(LATTICE_MAX);
      }
    }
    const w = encodeTernary(f, N, K, t, sc, sh);
    const dq = decodeTernary(w), tr = decodeTrits(w);
    for (let n = 0; n < N; n++) {
      let mx = 0;
      for (let g = 0; g < ng; g++) mx = Math.max(mx, Math.abs(sc[n * ng + g]) + Math.abs(sh[n * ng + g]));
      const u = latticeUnit(mx);
      for (let k = 0; k < K; k++) {
        const q = dq[n * K + k] / u;
        expect(Number.isInteger(q) && Math.abs(q) <= 127).toBe(true);
        expect(q).toBe(Math.round(sc[n * ng + (k >> 6)] / u) * tr[n * K + k] + Math.round(sh[n * ng + (k >> 6)] / u));
      }
    }
  });
  it('the kernel structure fits lattice rows at a small cost in output error', () => {
    const plain = quantizeKernelStructure(W, N, K, H, { group: 128, shift: true, packing: 'bit2', gptq: true, xDomain: true, refit: true });
    const lat = quantizeKernelStructure(W, N, K, H, { group: 128, shift: true, packing: 'bit2', lattice: true, gptq: true, xDomain: true, refit: true });
    expect(lat.weights.format.id).toBe('tq2_g128_lat');
    expect(rel(lat.dequant)).toBeLessThan(1.02 * rel(plain.dequant));
  });
});

describe('rtnTernary', () => {
  it('is per-row absmean round-to-nearest in format tq1_g<K>_ns', () => {
    const r = rtnTernary(W, N, K);
    expect(r.weights.format.id).toBe(`tq1_g${K}_ns`);
    for (let n = 0; n < N; n++) {
      let s = 0;
      for (let k = 0; k < K; k++) s += Math.abs(W[n * K + k]);
      const a = halfToFloat(floatToHalf(s / K));
      for (let k = 0; k < K; k++) {
        const t = Math.max(-1, Math.min(1, Math.round(W[n * K + k] / (s / K))));
        expect(r.dequant[n * K + k]).toBe(a * t + 0);
      }
    }
  });
});

describe('rtnTernary on long rows', () => {
  it('rows longer than 4096 keep one per-row α, repeated over groups of 4096', () => {
    const Kl = 5000;
    const w = Float32Array.from({ length: 2 * Kl }, (_, i) => Math.sin(i * 0.37) * 0.1);
    const r = rtnTernary(w, 2, Kl);
    expect(r.weights.format.id).toBe('tq1_g4096_ns');
    expect(r.weights.scales[0]).toBe(r.weights.scales[1]);
    let s = 0;
    for (let k = 0; k < Kl; k++) s += Math.abs(w[k]);
    expect(halfToFloat(r.weights.scales[0])).toBe(halfToFloat(floatToHalf(s / Kl)));
  });
});

describe('TWLA reference structure', () => {
  it('counts bits: codes 1.6/trit (2 on salient), mask 1/non-salient weight, indices, fp16 params', () => {
    // one block of 128 columns, 10 rows, k = 8: trits 1.6·10·136, mask 10·120, idx min(56,128)+8, params 10·16·7
    expect(twlaStorageBits(10, 128, [8])).toBeCloseTo(1.6 * 1360 + 1200 + 56 + 8 + 1120, 9);
    expect(twlaStorageBits(10, 128, [0])).toBeCloseTo(1.6 * 1280 + 1280 + 8 + 640, 9);
    // k = 64: the 128-bit bitmap is cheaper than 64 indices of 7 bits
    expect(twlaStorageBits(1, 128, [64])).toBeCloseTo(1.6 * 192 + 64 + 128 + 8 + 112, 9);
  });

  it('uses at most 6 values per row on ordinary columns and 9 on salient ones, and beats the kernel structure at ~4 bits', () => {
    const r = quantizeTwlaStructure(W, N, K, H, { gptq: true, xDomain: true });
    expect(r.salientPerBlock.length).toBe(2);
    const bpw = r.storageBits / (N * K);
    expect(bpw).toBeGreaterThan(2.9);
    expect(bpw).toBeLessThan(4.2);
    for (let n = 0; n < N; n++) {
      const vals = new Set<number>();
      for (let k = 0; k < 128; k++) vals.add(r.dequant[n * K + k]);
      expect(vals.size).toBeLessThanOrEqual(6 + 9);
    }
    const kernel = rel(quantizeKernelStructure(W, N, K, H, { group: 128, shift: true, gptq: true, xDomain: true, refit: true }).dequant);
    expect(rel(r.dequant)).toBeLessThan(kernel);
  });
});

describe('quantizeLinear', () => {
  it('turns GPTQ and the X-domain stage off without H, and reports true bits', () => {
    const a = quantizeLinear(W, N, K, null, { structure: 'kernel', gptq: true, xDomain: true });
    const b = quantizeKernelStructure(W, N, K, null, { group: 128, shift: true, gptq: false, xDomain: false });
    expect(Array.from(a.dequant)).toEqual(Array.from(Float32Array.from(b.dequant)));
    expect(a.stats.relOutputError).toBeNull();
    // trit5: ceil(128/5) = 26 bytes per group + 2·2 bytes fp16 → (26+4)·8/128
    expect(a.stats.bitsPerWeight).toBeCloseTo((30 * 8) / 128, 12);
    expect(a.storageBits).toBe(N * (K / 128) * 30 * 8);
    const t = quantizeLinear(W, N, K, H, { structure: 'twla', gptq: true, xDomain: true, measure: true });
    expect(t.stats.relOutputError).toBeGreaterThan(0);
    expect(t.stats.relOutputError).toBeCloseTo(rel(t.dequant), 4);
  });

  it('a fit in row slices (rowSlices, mergeRowFits) with the shared GPTQ factor (prepareKernelHessian) writes the bytes and stats of one whole fit', () => {
    for (const lattice of [false, true]) {
      const opts = { structure: 'kernel' as const, group: 64, shift: true, lattice, gptq: true, xDomain: true, measure: { budget: 2 ** 22 } };
      const whole = quantizeLinear(W, N, K, H, opts);
      const prepared = prepareKernelHessian(H, K, 64);
      expect(Array.from(prepared.perm.slice(0, 64)).sort((a, b) => a - b)).toEqual(Array.from({ length: 64 }, (_, i) => i));
      const withFactor = quantizeLinear(W, N, K, H, { ...opts, prepared });
      expect(Buffer.from(withFactor.weights!.codes).equals(Buffer.from(whole.weights!.codes))).toBe(true);
      const slices = rowSlices(N, 3);
      expect(slices).toEqual([[0, 16], [16, 32], [32, 48]]);
      const parts = slices.map(([r0, r1]) => quantizeLinear(W.slice(r0 * K, r1 * K), r1 - r0, K, H, { ...opts, measure: false, prepared }));
      const merged = mergeRowFits(W, N, K, H, parts, opts.measure);
      for (const k of ['codes', 'scales', 'shifts'] as const) expect(Buffer.from(merged.weights![k]!.buffer).equals(Buffer.from(whole.weights![k]!.buffer)), k).toBe(true);
      expect(Buffer.from(merged.dequant.buffer).equals(Buffer.from(whole.dequant.buffer))).toBe(true);
      expect(merged.storageBits).toBe(whole.storageBits);
      const { seconds: _a, gptqLoss: la, ...ms } = merged.stats;
      const { seconds: _b, gptqLoss: lb, ...ws } = whole.stats;
      expect(ms).toEqual(ws);
      expect(la).toBeCloseTo(lb!, 6);
    }
    // a factor made for another group size is refused
    expect(() => quantizeLinear(W, N, K, H, { structure: 'kernel', group: 128, gptq: true, xDomain: true, prepared: prepareKernelHessian(H, K, 64) })).toThrow(/prepared Hessian for group 64/);
    expect(rowSlices(5, 8)).toHaveLength(5);
  });

  it('rejects shape mismatches with a UserError', () => {
    expect(() => quantizeLinear(W, N, K + 1, null, { structure: 'rtn', gptq: false, xDomain: false })).toThrow(UserError);
    expect(() => quantizeLinear(W, N, K, new Float64Array(4), { structure: 'rtn', gptq: false, xDomain: false })).toThrow(UserError);
  });
});

describe('kernel structure: twlac additions', () => {
  it('the per-row pass search never raises GPTQ loss on a single block', () => {
    const Kb = 128;
    const w = W.subarray(0, N * Kb).map((_, i) => W[Math.floor(i / Kb) * K + (i % Kb)]);
    const h = syntheticHessian(Kb, 12);
    const one = quantizeKernelStructure(w, N, Kb, h, { group: 128, shift: true, gptq: true, xDomain: true, passes: [] });
    const many = quantizeKernelStructure(w, N, Kb, h, { group: 128, shift: true, gptq: true, xDomain: true, passes: [1, 0.9, 1.1] });
    expect(many.gptqLoss!).toBeLessThanOrEqual(one.gptqLoss! * (1 + 1e-12));
    expect(many.gptqLoss!).toBeLessThan(one.gptqLoss!);
  });

  it('trit coordinate descent lowers GPTQ loss on a single block', () => {
    const Kb = 128;
    const w = W.subarray(0, N * Kb).map((_, i) => W[Math.floor(i / Kb) * K + (i % Kb)]);
    const h = syntheticHessian(Kb, 13);
    const base = { group: 128, shift: true, gptq: true, xDomain: true, passes: [] as number[] };
    const none = quantizeKernelStructure(w, N, Kb, h, { ...base, sweeps: 0 });
    const cd = quantizeKernelStructure(w, N, Kb, h, { ...base, sweeps: 4 });
    expect(cd.gptqLoss!).toBeLessThan(0.98 * none.gptqLoss!);
  });

  it('whole-row refinement under the full H lowers the layer output error', () => {
    const base = { group: 128, shift: true, gptq: true, xDomain: true };
    const r0 = rel(quantizeKernelStructure(W, N, K, H, { ...base, globalRounds: 0 }).dequant);
    const r2 = rel(quantizeKernelStructure(W, N, K, H, { ...base, globalRounds: 2 }).dequant);
    expect(r2).toBeLessThan(0.99 * r0);
  });

  it('act-order keeps the format: codes decode to what was fitted, in original column order', () => {
    for (const actOrder of [false, true]) {
      const r = quantizeKernelStructure(W, N, K, H, { group: 64, shift: true, gptq: true, xDomain: true, actOrder });
      let m = 0;
      for (let i = 0; i < N * K; i++) m = Math.max(m, Math.abs(r.fitted![i] - r.dequant[i]));
      expect(m).toBe(0);
    }
  });
});
