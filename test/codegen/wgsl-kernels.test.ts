// Each WGSL kernel on the Node WebGPU adapter (SwiftShader on CI) against a float64 oracle:
// linears against the format's reference decoder, the rest against src/runtime/reference.ts.
import { describe, expect, it } from 'vitest';
import { rng } from '../../src/artifact/random.ts';
import { NO_FEATURES, type WgslFeatures } from '../../src/codegen/wgsl/fragments.ts';
import * as K from '../../src/codegen/wgsl/kernels.ts';
import { CODE_PACKINGS, decodeTernary, encodeTernary, groupsPerRow, ternaryFormat, type CodePacking, type TernaryFormat } from '../../src/formats/ternary.ts';
import { floatToHalf, halfToFloat } from '../../src/graph/tensor.ts';
import { actQuantRows } from '../../src/quant/act-quant.ts';
import { kronTransform, rmsNorm, ropeInPlace } from '../../src/runtime/reference.ts';
import { runKernel, testDevice, type HostArray } from './wgsl-harness.ts';

const { dev, skip } = await testDevice();
const rand = rng(11);
const randn = (n: number, s = 1) => Float32Array.from({ length: n }, () => s * (rand() * 2 - 1));

function expectClose(got: ArrayLike<number>, want: ArrayLike<number>, tol: number) {
  expect(got.length).toBe(want.length);
  let worst = 0;
  let at = -1;
  for (let i = 0; i < want.length; i++) {
    const e = Math.abs(got[i] - want[i]) / (1 + Math.abs(want[i]));
    if (!(e <= worst)) (worst = e), (at = i);
  }
  expect(worst, `worst error at ${at}: got ${got[at]}, want ${want[at]}`).toBeLessThan(tol);
}

function randomTernary(f: TernaryFormat, rows: number, cols: number) {
  const t = Int8Array.from({ length: rows * cols }, () => Math.floor(rand() * 3) - 1);
  const ng = groupsPerRow(f, cols);
  return encodeTernary(f, rows, cols, t, randn(rows * ng, 0.5), f.shift ? randn(rows * ng, 0.1) : undefined);
}

function packTernary(f: TernaryFormat, w: ReturnType<typeof randomTernary>): Uint8Array {
  const L = K.ternaryLayout(f, w.rows, w.cols);
  const out = new Uint8Array(L.words * 4);
  out.set(w.codes, 0);
  out.set(new Uint8Array(w.scales.buffer), L.scaleWord0 * 4);
  if (w.shifts) out.set(new Uint8Array(w.shifts.buffer), L.shiftWord0 * 4);
  return out;
}

/** y[m, n] = Σ_k W[n, k] x[m, k] + b[n], float64. */
function matmulRef(W: ArrayLike<number>, rows: number, cols: number, x: Float32Array, ntok: number, bias?: Float32Array): Float64Array {
  const y = new Float64Array(ntok * rows);
  for (let m = 0; m < ntok; m++) {
    for (let n = 0; n < rows; n++) {
      let s = bias ? bias[n] : 0;
      for (let k = 0; k < cols; k++) s += W[n * cols + k] * x[m * cols + k];
      y[m * rows + n] = s;
    }
  }
  return y;
}

/** The inverse of K.packActBytes. */
function unpackActCodes(words: Uint32Array, cols: number): Uint8Array {
  const out = new Uint8Array(words.length * 4);
  for (let i = 0; i < out.length; i++) {
    const row = Math.floor(i / cols), k = i % cols, c = Math.floor(k / 16), e = k % 16;
    out[i] = (words[(row * cols) / 4 + 4 * c + (e % 4)] >>> (8 * Math.floor(e / 4))) & 0xff;
  }
  return out;
}

/** The split attention's two kernels in a row (partial sums, then their merge): O [ntok][heads·d]. */
async function splitAttention(heads: number, kvHeads: number, d: number, scale: number, window: number | null, softcap: number | null, splits: number, q: Float32Array, kc: HostArray, vc: HostArray, ntok: number, pos0: number, kv: K.KvStorage = 'f32') {
  const device = dev!.device;
  const n = ntok * heads * splits;
  const part = await runKernel(device, K.attentionPartialKernel(heads, kvHeads, d, scale, window, splits, NO_FEATURES, softcap, kv), [q, kc, vc, new Float32Array(n), new Float32Array(n), new Float32Array(n * d)], ntok, { pos0 });
  return runKernel(device, K.attentionCombineKernel(heads, d, splits), [part.PM, part.PL, part.PA, new Float32Array(ntok * heads * d)], ntok, { pos0 });
}

/** The XQ and XP outputs of a packing act-quant (empty without pack). */
function quantOutputs(ntok: number, width: number, pack: boolean): HostArray[] {
  return pack ? [new Uint32Array((ntok * width) / 4), new Float32Array(2 * ntok)] : [];
}

/** A packing act-quant's bytes and (scale, zero) give its x̂ back exactly, every code within 2^bits − 1. */
function expectPackedGivesBack(r: Record<string, Float32Array>, ntok: number, width: number, bits: number) {
  const codes = unpackActCodes(new Uint32Array(r.XQ.buffer, 0, (ntok * width) / 4), width);
  for (let i = 0; i < ntok * width; i++) {
    const m = Math.floor(i / width);
    expect(codes[i]).toBeLessThanOrEqual(2 ** bits - 1);
    expect(Math.fround((codes[i] - r.XP[2 * m + 1]) * r.XP[2 * m])).toBe(r.Y[i]);
  }
}

const FORMATS: Record<CodePacking, TernaryFormat[]> = {
  trit5: [ternaryFormat('trit5', 16), ternaryFormat('trit5', 20, false)], // g16: byte path, partial bytes; g20: word path
  bit2: [ternaryFormat('bit2', 8, false), ternaryFormat('bit2', 16)], // g8: byte path; g16: word path
};

describe.skipIf(!!skip)('WGSL kernels on the WebGPU adapter', () => {
  const device = dev!.device;
  const sg: WgslFeatures[] = device.features.has('subgroups') ? [NO_FEATURES, { subgroups: true }] : [NO_FEATURES];

  for (const packing of Object.keys(CODE_PACKINGS) as CodePacking[]) {
    for (const f of FORMATS[packing]) {
      it(`ternary GEMV and GEMM, ${f.id}, partial last group, vs the reference decoder`, async () => {
        const rows = 6, cols = 37;
        const w = randomTernary(f, rows, cols);
        const W = decodeTernary(w);
        const bias = randn(rows);
        const packed = packTernary(f, w);
        const x1 = randn(cols);
        const gemv = K.ternaryLinearKernel(f, rows, cols, 1, false);
        const r1 = await runKernel(device, gemv, [packed, x1, new Float32Array(rows)], 1);
        expectClose(r1.Y, matmulRef(W, rows, cols, x1, 1), 1e-5);
        const ntok = 11; // one full tile of 8 and a partial one
        const x = randn(ntok * cols);
        const gemm = K.ternaryLinearKernel(f, rows, cols, 8, true);
        const r = await runKernel(device, gemm, [packed, x, bias, new Float32Array(ntok * rows)], ntok);
        expectClose(r.Y, matmulRef(W, rows, cols, x, ntok, bias), 1e-5);
      });
    }
  }

  // Workgroup-per-row GEMV: rows and groups that are not word-aligned (trit5 g16: 4-byte groups
  // but 37 columns → 12-byte rows; g20; bit2 g8: 2-byte groups), words shared by two rows,
  // partial last groups, rows longer than one stride of the workgroup (K = 700), bias (the
  // last two shapes), a second token (K = 700), with the shared-memory tree and (when offered) subgroupAdd.
  const WG_SHAPES: [number, number][] = [[6, 37], [5, 700], [65, 19]];
  for (const packing of Object.keys(CODE_PACKINGS) as CodePacking[]) {
    for (const f of [...FORMATS[packing], ternaryFormat(packing, 128)]) {
      it(`workgroup-per-row ternary GEMV, ${f.id}, shapes ${WG_SHAPES.map((s) => s.join('x')).join(' ')}, vs the reference decoder`, async () => {
        for (const [si, [rows, cols]] of WG_SHAPES.entries()) {
          const w = randomTernary(f, rows, cols);
          const W = decodeTernary(w);
          const packed = packTernary(f, w);
          const bias = si > 0 ? randn(rows) : undefined;
          const ntok = si === 1 ? 2 : 1;
          const x = randn(ntok * cols);
          for (const feats of sg) {
            const k = K.ternaryGemvWorkgroupKernel(f, rows, cols, !!bias, feats);
            const r = await runKernel(device, k, [packed, x, ...(bias ? [bias] : []), new Float32Array(ntok * rows)], ntok);
            expectClose(r.Y, matmulRef(W, rows, cols, x, ntok, bias), 1e-5);
          }
        }
      });
    }
  }

  // Rows-per-workgroup GEMV (bit2, groups of 64 codes or more): a row count that leaves the last
  // workgroup partly empty (13), rows shorter and longer than one stride of the row's threads,
  // a second token, bias, and four workgroup shapes, with and without subgroupAdd.
  it('rows-per-workgroup ternary GEMV, bit2 g64/g128 with and without shifts, vs the reference decoder', async () => {
    const shapes: K.GemvRowsShape[] = [K.GEMV_ROWS_DEFAULT, { rows: 4, threadsPerRow: 64 }, { rows: 2, threadsPerRow: 16 }, { rows: 1, threadsPerRow: 256 }];
    for (const f of [ternaryFormat('bit2', 64), ternaryFormat('bit2', 128, false), ternaryFormat('bit2', 256)]) {
      for (const [rows, cols, ntok] of [[13, 128, 1], [9, 2560, 2], [3, 64 * Math.ceil(f.group / 64) * 3, 1]]) {
        if (K.gemvRowsUnsupported(f, cols)) continue;
        const w = randomTernary(f, rows, cols);
        const W = decodeTernary(w);
        const packed = packTernary(f, w);
        const bias = ntok > 1 ? randn(rows) : undefined;
        const x = randn(ntok * cols);
        for (const shape of shapes) {
          for (const feats of sg) {
            const k = K.ternaryGemvRowsKernel(f, rows, cols, !!bias, feats, shape);
            const r = await runKernel(device, k, [packed, x, ...(bias ? [bias] : []), new Float32Array(ntok * rows)], ntok);
            expectClose(r.Y, matmulRef(W, rows, cols, x, ntok, bias), 1e-5);
          }
        }
      }
    }
    expect(K.gemvRowsUnsupported(ternaryFormat('trit5', 128), 256)).toMatch(/not bit2/);
    expect(K.gemvRowsUnsupported(ternaryFormat('bit2', 32), 256)).toMatch(/multiple of 64/);
    expect(K.gemvRowsUnsupported(ternaryFormat('bit2', 128), 200)).toMatch(/K=200/);
  });

  // Integer-activation GEMV: x̂ = (q − zero)·scale given as bytes in the bit2 word order
  // (kernels.ts actQuantKernel with pack), zero points inside and outside [0, 2^bits − 1], rows
  // that leave the last workgroup partly empty, a second token, bias, four thread shapes.
  it('integer-activation ternary GEMV (dot4U8Packed), bit2 g64/g128/g256 with and without shifts, vs the reference decoder', async () => {
    const shapes: K.GemvA8Shape[] = [K.GEMV_A8_DEFAULT, { threadsPerRow: 16, rowsPerThread: 2 }, { threadsPerRow: 64, rowsPerThread: 1 }, { threadsPerRow: 8, rowsPerThread: 8 }];
    for (const f of [ternaryFormat('bit2', 64), ternaryFormat('bit2', 128, false), ternaryFormat('bit2', 256)]) {
      for (const [ci, [rows, cols, ntok, bits]] of [[13, 256, 1, 8], [70, 2560, 2, 4], [3, 64 * Math.ceil(f.group / 64) * 3, 1, 8]].entries()) {
        const w = randomTernary(f, rows, cols);
        const W = decodeTernary(w);
        const packed = packTernary(f, w);
        const bias = ntok > 1 ? randn(rows) : undefined;
        const qmax = 2 ** bits - 1;
        const q = Uint8Array.from({ length: ntok * cols }, () => Math.floor(rand() * (qmax + 1)));
        const xp = new Float32Array(2 * ntok);
        for (let m = 0; m < ntok; m++) (xp[2 * m] = 0.01 + rand() * 0.1), (xp[2 * m + 1] = m ? -3 : Math.floor(rand() * qmax));
        const x = Float32Array.from(q, (v, i) => (v - xp[2 * Math.floor(i / cols) + 1]) * xp[2 * Math.floor(i / cols)]);
        // two thread shapes a case, every shape over the cases (SwiftShader compiles each pipeline slowly)
        for (const shape of [shapes[ci % 4], shapes[(ci + 1 + (f.group >> 7)) % 4]]) {
          for (const feats of sg) {
            const k = K.ternaryGemvA8Kernel(f, rows, cols, !!bias, feats, shape);
            const r = await runKernel(device, k, [packed, K.packActBytes(q, cols), xp, ...(bias ? [bias] : []), new Float32Array(ntok * rows)], ntok);
            expectClose(r.Y, matmulRef(W, rows, cols, x, ntok, bias), 1e-5);
          }
        }
      }
    }
  });

  it('activation fake-quant with pack: x̂ as before, and its bytes and (scale, zero) give x̂ back exactly', async () => {
    for (const [width, bits] of [[64, 4], [2560, 8]]) {
      const ntok = 3, clip = 0.9;
      const x = randn(ntok * width, 2);
      x.fill(0.75, 2 * width, 3 * width); // a constant row: scale 0, left as it is
      const r = await runKernel(device, K.actQuantKernel(width, bits, clip, NO_FEATURES, true), [x.slice(), ...quantOutputs(ntok, width, true)], ntok);
      expectClose(r.Y, actQuantRows(x, ntok, width, bits, clip), 1e-5);
      expectPackedGivesBack(r, ntok, width, bits);
    }
    expect(() => K.actQuantKernel(40, 4, 1, NO_FEATURES, true)).toThrow(/width 40/);
    expect(() => K.actQuantKernel(64, 9, 1, NO_FEATURES, true)).toThrow(/9-bit/);
  });

  it('accumulate: every linear kernel adds into its output (the residual add in the epilogue), bias included', async () => {
    const f = ternaryFormat('bit2', 64);
    const rows = 9, cols = 128, ntok = 2;
    const w = randomTernary(f, rows, cols);
    const W = decodeTernary(w);
    const packed = packTernary(f, w);
    const bias = randn(rows);
    const q = Uint8Array.from({ length: ntok * cols }, () => Math.floor(rand() * 256));
    const xp = Float32Array.of(0.01, 100, 0.02, 90);
    const x = Float32Array.from(q, (v, i) => (v - xp[2 * Math.floor(i / cols) + 1]) * xp[2 * Math.floor(i / cols)]);
    const y0 = randn(ntok * rows, 3);
    const want = Array.from(matmulRef(W, rows, cols, x, ntok, bias), (v, i) => v + y0[i]);
    const h = Uint16Array.from(randn(rows * cols), floatToHalf);
    const wantDense = Array.from(matmulRef(Array.from(h, halfToFloat), rows, cols, x, ntok), (v, i) => v + y0[i]);
    const cases: [string, ReturnType<typeof K.ternaryLinearKernel>, HostArray[], number[]][] = [
      ['thread-per-row GEMM', K.ternaryLinearKernel(f, rows, cols, 8, true, NO_FEATURES, true), [packed, x, bias], want],
      ['workgroup-per-row', K.ternaryGemvWorkgroupKernel(f, rows, cols, true, NO_FEATURES, true), [packed, x, bias], want],
      ['rows-per-workgroup', K.ternaryGemvRowsKernel(f, rows, cols, true, NO_FEATURES, K.GEMV_ROWS_DEFAULT, true), [packed, x, bias], want],
      ['integer', K.ternaryGemvA8Kernel(f, rows, cols, true, NO_FEATURES, K.GEMV_A8_DEFAULT, true), [packed, K.packActBytes(q, cols), xp, bias], want],
      ['dense fp16', K.denseLinearKernel('float16', rows, cols, 1, false, NO_FEATURES, true), [new Uint8Array(h.buffer), x], wantDense],
    ];
    for (const [what, k, inputs, expected] of cases) {
      expect(k.cacheKey, what).toMatch(/accumulate/);
      const r = await runKernel(device, k, [...inputs, y0.slice()], ntok);
      expectClose(r.Y, expected, 1e-5);
    }
  });

  it('split output: every ternary linear kernel writes a stacked group\'s rows to one output a member (q|k|v of 5, 2, 2 rows), bias included', async () => {
    const f = ternaryFormat('bit2', 64);
    const split = [5, 2, 2];
    const rows = 9, cols = 128, ntok = 3;
    const w = randomTernary(f, rows, cols);
    const packed = packTernary(f, w);
    const bias = randn(rows);
    const q = Uint8Array.from({ length: ntok * cols }, () => Math.floor(rand() * 256));
    const xp = Float32Array.of(0.01, 100, 0.02, 90, 0.015, 120);
    const x = Float32Array.from(q, (v, i) => (v - xp[2 * Math.floor(i / cols) + 1]) * xp[2 * Math.floor(i / cols)]);
    const all = matmulRef(decodeTernary(w), rows, cols, x, ntok, bias);
    // member i's rows of every token, [ntok, split_i]
    const member = (i: number) => {
      const r0 = split.slice(0, i).reduce((a, r) => a + r, 0);
      return Array.from({ length: ntok * split[i] }, (_, e) => all[Math.floor(e / split[i]) * rows + r0 + (e % split[i])]);
    };
    const out = { split };
    const cases: [string, ReturnType<typeof K.ternaryLinearKernel>, HostArray[]][] = [
      ['thread-per-row GEMM', K.ternaryLinearKernel(f, rows, cols, 8, true, NO_FEATURES, out), [packed, x, bias]],
      ['thread-per-row GEMV', K.ternaryLinearKernel(f, rows, cols, 1, true, NO_FEATURES, out), [packed, x, bias]],
      ['workgroup-per-row', K.ternaryGemvWorkgroupKernel(f, rows, cols, true, NO_FEATURES, out), [packed, x, bias]],
      ['rows-per-workgroup', K.ternaryGemvRowsKernel(f, rows, cols, true, NO_FEATURES, K.GEMV_ROWS_DEFAULT, out), [packed, x, bias]],
      ['integer', K.ternaryGemvA8Kernel(f, rows, cols, true, NO_FEATURES, K.GEMV_A8_DEFAULT, out), [packed, K.packActBytes(q, cols), xp, bias]],
    ];
    for (const [what, k, inputs] of cases) {
      expect(k.bindings.slice(-3).map((b) => b.name), what).toEqual(['Y0', 'Y1', 'Y2']);
      const r = await runKernel(device, k, [...inputs, ...split.map((n) => new Float32Array(ntok * n))], ntok);
      split.forEach((_, i) => expectClose(r[`Y${i}`], member(i), 1e-5));
    }
    expect(() => K.ternaryLinearKernel(f, rows, cols, 1, true, NO_FEATURES, { split: [5, 2] })).toThrow(/does not divide 9 rows/);
    expect(() => K.ternaryLinearKernel(f, rows, cols, 1, true, NO_FEATURES, { split, accumulate: true })).toThrow(/does not accumulate/);
  });

  it('integer GEMV with its input made in the prologue (x, RMSNorm·γ, gated SiLU, ungated GELU; 8 and 4 bits; a constant row): the same outputs as the site kernel then the GEMV (bit for bit, but for the order of the RMS sum), and as float64 on x̂', async () => {
    const f = ternaryFormat('bit2', 128);
    const rows = 40, cols = 1152, ntok = 2; // 288 byte words: a second, partial slot a thread; the site kernels reduce over 256 threads as the prologue does
    const w = randomTernary(f, rows, cols);
    const W = decodeTernary(w);
    const packed = packTernary(f, w);
    const bias = randn(rows);
    const gamma = Float32Array.from(randn(cols), (v) => 1 + 0.2 * v);
    for (const bits of [8, 4]) {
      const quant = { bits, clip: 0.9, pack: true };
      const x = randn(ntok * cols);
      x.fill(0.75, cols); // token 1: a constant row (scale 0: bytes 1, x̂ = the row's value)
      const g = randn(ntok * cols), u = randn(ntok * cols);
      const cases: [K.A8Prologue, ReturnType<typeof K.actQuantKernel>, HostArray[], HostArray[]][] = [
        [{ source: 'x', quant }, K.actQuantKernel(cols, bits, 0.9, NO_FEATURES, true), [x.slice()], [x]],
        [{ source: 'rms-norm', quant, eps: 1e-5, gamma: true }, K.rmsNormKernel(cols, 1e-5, true, NO_FEATURES, quant), [x, gamma, new Float32Array(ntok * cols)], [x, gamma]],
        [{ source: 'mlp-act', quant, activation: 'silu', gated: true }, K.mlpActQuantKernel(cols, 'silu', true, NO_FEATURES, quant), [g, u, new Float32Array(ntok * cols)], [g, u]],
        [{ source: 'mlp-act', quant, activation: 'gelu', gated: false }, K.mlpActQuantKernel(cols, 'gelu', false, NO_FEATURES, quant), [u, new Float32Array(ntok * cols)], [u]],
      ];
      // 4-bit codes for the x and RMS sources only (the byte packing does not depend on the source)
      for (const [pro, site, siteIn, proIn] of bits === 8 ? cases : cases.slice(0, 2)) {
        const what = `${pro.source} ${bits} bits`;
        const s1 = await runKernel(device, site, [...siteIn, ...quantOutputs(ntok, cols, true)], ntok);
        const two = await runKernel(device, K.ternaryGemvA8Kernel(f, rows, cols, true, NO_FEATURES, K.GEMV_A8_DEFAULT), [packed, new Uint32Array(s1.XQ.buffer), s1.XP, bias, new Float32Array(ntok * rows)], ntok);
        const k = K.ternaryGemvA8Kernel(f, rows, cols, true, NO_FEATURES, K.GEMV_A8_DEFAULT, false, pro);
        expect(k.bindings.map((b) => b.name).join(), what).not.toMatch(/XQ|XP/);
        const one = await runKernel(device, k, [packed, ...proIn, bias, new Float32Array(ntok * rows)], ntok);
        // the RMS sum runs in another order (the prologue's registers hold each thread's bytes' elements): within f32 rounding
        if (pro.source === 'rms-norm') expectClose(one.Y, two.Y, 1e-5);
        else expect(Array.from(one.Y), what).toEqual(Array.from(two.Y));
        // and float64 on the site's x̂ (its float output, or x itself quantised in place)
        const xhat = Float32Array.from(s1.Y ?? s1.X);
        expectClose(one.Y, matmulRef(W, rows, cols, xhat, ntok, bias), 1e-5);
      }
    }
    const q8 = { bits: 8, clip: 1, pack: true };
    expect(() => K.ternaryGemvA8Kernel(f, rows, 16384, false, NO_FEATURES, K.GEMV_A8_DEFAULT, false, { source: 'x', quant: q8 })).toThrow(/exceeds the 14336 bytes of workgroup memory the prologue has at 2 rows a thread/);
    // the reduction array grows with the rows a thread: 11008 bytes fit beside 4 (4 KiB), not beside 8 (8 KiB)
    expect(K.a8PrologueUnsupported(11008, q8, 4)).toBeNull();
    expect(K.a8PrologueUnsupported(11008, q8, 8)).toMatch(/exceeds the 8192 bytes/);
  });

  it('greedy token on the device: the first largest logit (ties to the lower index, as the host argmax) into ids[0] and T[pos0]', async () => {
    for (const vocab of [1, 7, 256, 1000, 32000]) {
      const l = randn(vocab);
      if (vocab > 600) {
        // a tie between two far-apart indices, in different threads' slices
        const top = Math.max(...l) + 1;
        l[vocab - 3] = top;
        l[517] = top;
      }
      let want = 0;
      for (let i = 1; i < vocab; i++) if (l[i] > l[want]) want = i;
      const r = await runKernel(device, K.argmaxTokenKernel(vocab), [l, new Uint32Array(4), new Uint32Array(8)], 1, { pos0: 5 });
      expect(new Uint32Array(r.ids.buffer)[0], `vocab ${vocab}`).toBe(want);
      expect(Array.from(new Uint32Array(r.T.buffer).subarray(0, 8)), `vocab ${vocab}`).toEqual([0, 0, 0, 0, 0, want, 0, 0]);
    }
  });

  it('dense fp16 linear (lm_head) vs fp16-rounded weights, unrolled (K=24) and not (K=18)', async () => {
    for (const cols of [24, 18]) {
      const rows = 9, ntok = 3;
      const h = Uint16Array.from(randn(rows * cols), floatToHalf);
      const x = randn(ntok * cols);
      const r = await runKernel(device, K.denseLinearKernel('float16', rows, cols, 8, false), [new Uint8Array(h.buffer), x, new Float32Array(ntok * rows)], ntok);
      expectClose(r.Y, matmulRef(Array.from(h, halfToFloat), rows, cols, x, ntok), 1e-5);
    }
  });

  it('dense fp16 GEMV, rows a workgroup (the lm_head on GPUs), with and without subgroups, bias, K = 8 and 520, vs fp16-rounded weights', async () => {
    for (const [rows, cols, ntok] of [[37, 520, 2], [9, 8, 1]]) {
      const h = Uint16Array.from(randn(rows * cols), floatToHalf);
      const x = randn(ntok * cols);
      const bias = randn(rows);
      for (const feats of sg) {
        const r = await runKernel(device, K.denseGemvRowsKernel(rows, cols, true, feats), [new Uint8Array(h.buffer), x, bias, new Float32Array(ntok * rows)], ntok);
        expectClose(r.Y, matmulRef(Array.from(h, halfToFloat), rows, cols, x, ntok, bias), 1e-5);
      }
    }
    expect(() => K.denseGemvRowsKernel(4, 12, false)).toThrow(/K=12 is not a multiple of 8/);
  });

  it('RMSNorm with γ, reading rows from row0, with and without subgroup reductions', async () => {
    const hidden = 70, ntok = 2, row0 = 1;
    const x = randn(3 * hidden, 3);
    const gamma = randn(hidden);
    const want = [1, 2].flatMap((m) => Array.from(rmsNorm(Float64Array.from(x.subarray(m * hidden, (m + 1) * hidden)), Float64Array.from(gamma), 1e-5)));
    for (const feats of sg) {
      const r = await runKernel(device, K.rmsNormKernel(hidden, 1e-5, true, feats), [x, gamma, new Float32Array(ntok * hidden)], ntok, { row0 });
      expectClose(r.Y, want, 1e-5);
    }
  });

  it('RMSNorm with the site quantiser fused in: x̂ of the norm as act-quant gives it, and with pack its bytes (rows of 64 and 1024: 64 and 256 threads)', async () => {
    for (const [hidden, bits, pack] of [[64, 4, false], [1024, 8, true]] as const) {
      const ntok = 2, clip = 0.9;
      const x = randn(ntok * hidden, 3);
      const gamma = randn(hidden);
      const normed = Float32Array.from([0, 1].flatMap((m) => Array.from(rmsNorm(Float64Array.from(x.subarray(m * hidden, (m + 1) * hidden)), Float64Array.from(gamma), 1e-5))));
      const want = actQuantRows(normed, ntok, hidden, bits, clip);
      for (const feats of sg) {
        const k = K.rmsNormKernel(hidden, 1e-5, true, feats, { bits, clip, pack });
        const r = await runKernel(device, k, [x, gamma, new Float32Array(ntok * hidden), ...quantOutputs(ntok, hidden, pack)], ntok);
        expectClose(r.Y, want, 1e-5);
        if (pack) expectPackedGivesBack(r, ntok, hidden, bits);
      }
    }
  });

  it('MLP activation with the down site quantiser fused in: gated SiLU and ungated tanh-GELU, as the activation then act-quant give them', async () => {
    const width = 1040, ntok = 2, clip = 0.9;
    const g = randn(ntok * width, 3), u = randn(ntok * width, 2);
    const silu = (x: number) => x / (1 + Math.exp(-x));
    const geluTanh = (x: number) => 0.5 * x * (1 + Math.tanh(Math.sqrt(2 / Math.PI) * (x + 0.044715 * x ** 3)));
    for (const [gated, activation, bits, pack] of [[true, 'silu', 4, true], [false, 'gelu-tanh', 8, false]] as const) {
      const act = Float32Array.from(u, (uv, i) => (gated ? silu(g[i]) * uv : geluTanh(uv)));
      const want = actQuantRows(act, ntok, width, bits, clip);
      const k = K.mlpActQuantKernel(width, activation, gated, NO_FEATURES, { bits, clip, pack });
      const r = await runKernel(device, k, [...(gated ? [g] : []), u, new Float32Array(ntok * width), ...quantOutputs(ntok, width, pack)], ntok);
      expectClose(r.Y, want, 1e-5);
      if (pack) expectPackedGivesBack(r, ntok, width, bits);
    }
  });

  it('online Kronecker transform x → C·X·Bᵀ', async () => {
    const l = 3, r = 5, ntok = 2;
    const x = randn(ntok * l * r), C = randn(l * l), B = randn(r * r);
    const t = await runKernel(device, K.kronRightKernel(l, r), [x, B, new Float32Array(ntok * l * r)], ntok);
    const y = await runKernel(device, K.kronLeftKernel(l, r), [t.T, C, new Float32Array(ntok * l * r)], ntok);
    const want = [0, 1].flatMap((m) => Array.from(kronTransform(Float64Array.from(x.subarray(m * l * r, (m + 1) * l * r)), l, r, Float64Array.from(C), Float64Array.from(B))));
    expectClose(y.Y, want, 1e-5);
  });

  it('per-token asymmetric activation fake-quant (4 bits, clip 0.9) vs src/quant/act-quant.ts', async () => {
    const width = 50, ntok = 2, bits = 4, clip = 0.9;
    const x = randn(ntok * width, 2);
    const r = await runKernel(device, K.actQuantKernel(width, bits, clip), [x.slice()], ntok);
    const want = actQuantRows(x, ntok, width, bits, clip);
    expectClose(r.Y, want, 1e-5);
    // it really quantises: at most 16 distinct levels per token
    expect(new Set(Array.from(r.Y.subarray(0, width), (v) => v.toFixed(5))).size).toBeLessThanOrEqual(16);
  });

  for (const kv of ['f32', 'f16'] as const) {
    it(`RoPE + KV-cache write + causal GQA attention at pos0 = 2, ${kv} cache${kv === 'f16' ? ' (fp16 pairs in u32 words, vs float64 on fp16-rounded keys and values)' : ''}`, async () => {
      const heads = 4, kvHeads = 2, d = 8, maxPos = 16, ntok = 3, pos0 = 2, theta = 10000;
      const kvd = kvHeads * d;
      const f16 = kv === 'f16';
      const r16 = (x: number) => (f16 ? halfToFloat(floatToHalf(x)) : x);
      const q = randn(ntok * heads * d), k = randn(ntok * kvd), v = randn(ntok * kvd);
      const kc = randn(maxPos * kvd).map(r16), vc = randn(maxPos * kvd).map(r16); // positions 0, 1 already cached
      const asCache = (x: Float32Array): HostArray => (f16 ? new Uint8Array(Uint16Array.from(x, floatToHalf).buffer) : x);
      const fromCache = (x: Float32Array) => (f16 ? Float32Array.from(new Uint16Array(x.buffer, 0, maxPos * kvd), halfToFloat) : x);
      const rope = new Float32Array(maxPos * d);
      for (let p = 0; p < maxPos; p++) for (let i = 0; i < d / 2; i++) {
        const a = p * theta ** (-2 * i / d);
        rope[(p * d) / 2 * 2 + i * 2] = Math.cos(a);
        rope[(p * d) / 2 * 2 + i * 2 + 1] = Math.sin(a);
      }
      const r1 = await runKernel(device, K.ropeKvKernel(heads, kvHeads, d, maxPos, d, kv), [q, k, v, rope, asCache(kc), asCache(vc)], ntok, { pos0 });
      const r2 = await splitAttention(heads, kvHeads, d, 1 / Math.sqrt(d), null, null, K.attentionSplits(maxPos), r1.Q, asCache(fromCache(r1.Kc)), asCache(fromCache(r1.Vc)), ntok, pos0, kv);
      // float64 oracle (the new keys and values rounded to fp16 with an fp16 cache)
      const Q = Float64Array.from(q), Kc = Float64Array.from(kc), Vc = Float64Array.from(vc);
      for (let m = 0; m < ntok; m++) {
        for (let h = 0; h < heads; h++) ropeInPlace(Q, (m * heads + h) * d, d, pos0 + m, theta);
        const kr = Float64Array.from(k.subarray(m * kvd, (m + 1) * kvd));
        for (let h = 0; h < kvHeads; h++) ropeInPlace(kr, h * d, d, pos0 + m, theta);
        Kc.set(kr.map(r16), (pos0 + m) * kvd);
        Vc.set(v.subarray(m * kvd, (m + 1) * kvd).map(r16), (pos0 + m) * kvd);
      }
      // an fp16 key rounded from f32 rather than float64 may land one fp16 step away
      const tol = f16 ? 1e-3 : 1e-5;
      expectClose(fromCache(r1.Kc).subarray(0, (pos0 + ntok) * kvd), Kc.subarray(0, (pos0 + ntok) * kvd), tol);
      // values are stored as they come (rounded once to fp16 where the cache is)
      expect(Array.from(fromCache(r1.Vc).subarray(0, (pos0 + ntok) * kvd))).toEqual(Array.from(Vc.subarray(0, (pos0 + ntok) * kvd), (x) => Math.fround(x)));
      const O = new Float64Array(ntok * heads * d);
      for (let m = 0; m < ntok; m++) for (let h = 0; h < heads; h++) {
        const kh = Math.floor(h / (heads / kvHeads));
        const s = Array.from({ length: pos0 + m + 1 }, (_, t) => {
          let acc = 0;
          for (let i = 0; i < d; i++) acc += Q[(m * heads + h) * d + i] * Kc[t * kvd + kh * d + i];
          return acc / Math.sqrt(d);
        });
        const mx = Math.max(...s);
        const p = s.map((x) => Math.exp(x - mx));
        const sum = p.reduce((a, b) => a + b, 0);
        for (let i = 0; i < d; i++) O[(m * heads + h) * d + i] = p.reduce((a, pt, t) => a + (pt / sum) * Vc[t * kvd + kh * d + i], 0);
      }
      expectClose(r2.O, O, tol);
    });
  }

  it('fp16 KV cache write with partial and no rotary (rotary dims 4 and 0 of 8): the f32 kernel\'s cache, rounded to fp16', async () => {
    const heads = 2, kvHeads = 2, d = 8, maxPos = 8, ntok = 2, pos0 = 3;
    const kvd = kvHeads * d;
    for (const r of [4, 0]) {
      const q = randn(ntok * heads * d), k = randn(ntok * kvd), v = randn(ntok * kvd);
      const rope = Float32Array.from({ length: maxPos * Math.max(r, 2) }, (_, i) => Math.cos(0.3 * i + (i % 2) * 1.1));
      const f32 = await runKernel(device, K.ropeKvKernel(heads, kvHeads, d, maxPos, r, 'f32'), [q.slice(), k, v, rope, new Float32Array(maxPos * kvd), new Float32Array(maxPos * kvd)], ntok, { pos0 });
      const f16 = await runKernel(device, K.ropeKvKernel(heads, kvHeads, d, maxPos, r, 'f16'), [q.slice(), k, v, rope, new Uint32Array((maxPos * kvd) / 2), new Uint32Array((maxPos * kvd) / 2)], ntok, { pos0 });
      const halves = (x: Float32Array) => Array.from(new Uint16Array(x.buffer, 0, maxPos * kvd));
      expect(halves(f16.Kc), `rotary ${r}`).toEqual(Array.from(f32.Kc, floatToHalf));
      expect(halves(f16.Vc), `rotary ${r}`).toEqual(Array.from(f32.Vc, floatToHalf));
      expect(Array.from(f16.Q), `rotary ${r}`).toEqual(Array.from(f32.Q));
    }
  });

  // Decode with RoPE and the cache append in the split attention (plan.ts BlockKernels.attentionDecode):
  // against rope_kv then the plain split attention, at a position in the second split of three.
  it('split attention with RoPE and the cache append fused in (decode): the cache and partial sums of rope_kv then attention_partial, f32 and fp16 caches, GQA, full, partial and no rotary, a window', async () => {
    const heads = 4, kvHeads = 2, d = 16, maxPos = 150, pos0 = 70, splits = K.attentionSplits(maxPos);
    const kvd = kvHeads * d, n = heads * splits;
    for (const kv of ['f32', 'f16'] as const) {
      const f16 = kv === 'f16';
      const asCache = (x: Float32Array): HostArray => (f16 ? new Uint8Array(Uint16Array.from(x, floatToHalf).buffer) : x.slice());
      for (const [r, window] of [[16, null], [8, null], [0, null], [16, 40]] as const) {
        const q = randn(heads * d, 2), k = randn(kvd), v = randn(kvd);
        const kc = randn(maxPos * kvd), vc = randn(maxPos * kvd);
        const rope = Float32Array.from({ length: maxPos * Math.max(r, 2) }, (_, i) => Math.cos(0.37 * i + (i % 2) * 1.3));
        const parts = () => [new Float32Array(n), new Float32Array(n), new Float32Array(n * d)];
        const r1 = await runKernel(device, K.ropeKvKernel(heads, kvHeads, d, maxPos, r, kv), [q.slice(), k, v, rope, asCache(kc), asCache(vc)], 1, { pos0 });
        const want = await runKernel(device, K.attentionPartialKernel(heads, kvHeads, d, 0.3, window, splits, NO_FEATURES, null, kv), [r1.Q, r1.Kc, r1.Vc, ...parts()], 1, { pos0 });
        const fused = K.attentionPartialKernel(heads, kvHeads, d, 0.3, window, splits, NO_FEATURES, null, kv, { rotaryDim: r });
        expect(fused.bindings.map((b) => b.name)).toEqual(['Q', 'K', 'V', 'rope', 'Kc', 'Vc', 'PM', 'PL', 'PA']);
        const got = await runKernel(device, fused, [q, k, v, rope, asCache(kc), asCache(vc), ...parts()], 1, { pos0 });
        const what = `${kv} cache, rotary ${r}, window ${window}`;
        expect(Array.from(got.Kc), what).toEqual(Array.from(r1.Kc));
        expect(Array.from(got.Vc), what).toEqual(Array.from(r1.Vc));
        // splits past the token's position are not launched: compare the launched ones
        const live = (x: Float32Array, w: number) => Array.from({ length: heads }, (_, h) => Array.from(x.subarray(h * splits * w, (h * splits + 2) * w))).flat();
        expect(live(got.PM, 1), what).toEqual(live(want.PM, 1));
        expect(live(got.PL, 1), what).toEqual(live(want.PL, 1));
        expect(live(got.PA, d), what).toEqual(live(want.PA, d));
      }
    }
  });

  // Long contexts: keys over several splits of ATTN_SPLIT positions, empty splits after the
  // last position and (with a window) before the first, a non-default scale, a soft-cap.
  it('attention split by context: keys over many splits, windows, a soft-cap, head dims 16 and 288, a cache of 2188 splits, vs float64', async () => {
    const heads = 4, kvHeads = 2, ntok = 2, pos0 = 700;
    // d = 16: 16 groups of positions for Σ e·v; d = 288: one, and dims past the 256 threads; a
    // cache of 140000 positions has more splits than the merge keeps weights for (it recomputes them)
    for (const [d, window, softcap, scale, maxPos] of [[16, null, null, 0.25, 1000], [16, 300, 5, 0.3, 1000], [288, 100, null, 0.05, 1000], [16, null, null, 0.25, 140000]] as const) {
      const kvd = kvHeads * d;
      const q = randn(ntok * heads * d, 2), kc = randn(maxPos * kvd), vc = randn(maxPos * kvd);
      const r = await splitAttention(heads, kvHeads, d, scale, window, softcap, K.attentionSplits(maxPos), q, kc, vc, ntok, pos0);
      const O = new Float64Array(ntok * heads * d);
      for (let m = 0; m < ntok; m++) for (let h = 0; h < heads; h++) {
        const kh = Math.floor(h / (heads / kvHeads));
        const last = pos0 + m, lo = window === null ? 0 : Math.max(0, last + 1 - window);
        const s: number[] = [];
        for (let t = lo; t <= last; t++) {
          let acc = 0;
          for (let i = 0; i < d; i++) acc += q[(m * heads + h) * d + i] * kc[t * kvd + kh * d + i];
          acc *= scale;
          s.push(softcap === null ? acc : softcap * Math.tanh(acc / softcap));
        }
        const mx = Math.max(...s);
        const p = s.map((x) => Math.exp(x - mx));
        const sum = p.reduce((a, b) => a + b, 0);
        for (let i = 0; i < d; i++) O[(m * heads + h) * d + i] = p.reduce((a, pt, j) => a + (pt / sum) * vc[(lo + j) * kvd + kh * d + i], 0);
      }
      expectClose(r.O, O, 1e-5);
    }
    expect(K.attentionSplits(1000)).toBe(Math.ceil(1000 / K.ATTN_SPLIT));
  });

  it('SwiGLU, residual add and embedding gather', async () => {
    const width = 70, ntok = 2;
    const g = randn(ntok * width, 4), u = randn(ntok * width);
    const s = await runKernel(device, K.swigluKernel(width), [g, u, new Float32Array(ntok * width)], ntok);
    expectClose(s.Y, Array.from(g, (gv, i) => (gv / (1 + Math.exp(-gv))) * u[i]), 1e-5);
    const x = randn(ntok * width);
    const r = await runKernel(device, K.residualAddKernel(width), [u, x.slice()], ntok);
    expectClose(r.X, Array.from(x, (xv, i) => xv + u[i]), 1e-6);
    const vocab = 10, hidden = 6;
    const table = Uint16Array.from(randn(vocab * hidden), floatToHalf);
    const ids = new Uint32Array([7, 2]);
    const e = await runKernel(device, K.embedKernel(vocab, hidden), [ids, new Uint8Array(table.buffer), new Float32Array(ntok * hidden)], ntok);
    expect(Array.from(e.X)).toEqual([...ids].flatMap((id) => Array.from(table.subarray(id * hidden, (id + 1) * hidden), halfToFloat)));
  });
});
