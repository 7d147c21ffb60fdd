// The activation quantiser: the TS reference against a float64 restatement of the formula,
// its ONNX lowering against the reference bit for bit in onnxruntime, and the clip search
// against a brute-force evaluation of the output error.
import * as ort from 'onnxruntime-node';
import { describe, expect, it } from 'vitest';
import { GraphBuilder } from '../../src/graph/builder.ts';
import { encodeModel } from '../../src/graph/onnx.ts';
import { actQuantRows, CLIP_GRID, emitActQuant, emitActQuantWith, roundHalfEven, searchClip } from '../../src/quant/act-quant.ts';
import { Tensor } from '../../src/graph/tensor.ts';
import { seededRandom } from '../../src/quant/kotms.ts';

function gaussian(n: number, rand: () => number): Float32Array {
  return Float32Array.from({ length: n }, () => Math.sqrt(-2 * Math.log(Math.max(rand(), 1e-300))) * Math.cos(2 * Math.PI * rand()));
}

/** Rows that exercise the edge cases, then random heavy-tailed rows. */
function testRows(n: number, rows: number, rand: () => number): Float32Array {
  const x = gaussian(rows * n, rand);
  for (let i = 0; i < x.length; i++) if (i % 37 === 0) x[i] *= 20; // outliers
  x.fill(0.75, 0, n); // constant row: s = 0, passes through
  for (let j = 0; j < n; j++) x[n + j] = (j % 31) - 1; // at 4 bits, clip 1: s = 2, so x/s and −lo/s = 0.5 are exact ties
  for (let j = 0; j < n; j++) x[2 * n + j] = 1 + Math.abs(x[2 * n + j]); // all positive: z < 0
  x.fill(0, 3 * n, 4 * n); // all zero
  return x;
}

describe('roundHalfEven', () => {
  it('rounds ties to even like ONNX Round', () => {
    expect([0.5, 1.5, 2.5, -0.5, -1.5, -2.5, 2.4999, -2.5001, 3].map(roundHalfEven)).toEqual([0, 2, 2, -0, -2, -2, 2, -3, 3]);
  });
});

describe('actQuantRows', () => {
  it('follows the formula (float64 restatement, to float32 rounding)', () => {
    const rand = seededRandom(5);
    const n = 64;
    const rows = 12;
    const x = testRows(n, rows, rand);
    for (const bits of [2, 4, 6, 8]) {
      const clip = 0.9;
      const got = actQuantRows(x, rows, n, bits, clip);
      for (let t = 4; t < rows; t++) {
        const row = Array.from(x.subarray(t * n, (t + 1) * n));
        const lo = clip * Math.min(...row);
        const hi = clip * Math.max(...row);
        const L = 2 ** bits - 1;
        const s = (hi - lo) / L;
        const z = Math.round(-lo / s);
        let maxDiff = 0;
        let levels = new Set<number>();
        for (let j = 0; j < n; j++) {
          const q = Math.min(L, Math.max(0, Math.round(row[j] / s) + z));
          levels.add(q);
          maxDiff = Math.max(maxDiff, Math.abs(got[t * n + j] - (q - z) * s));
        }
        expect(maxDiff).toBeLessThan(1e-5 * (hi - lo)); // float32 arithmetic vs float64
        expect(levels.size).toBeLessThanOrEqual(L + 1);
      }
      // the constant rows pass through
      expect(Array.from(got.subarray(0, n))).toEqual(Array.from(x.subarray(0, n)));
      expect(Array.from(got.subarray(3 * n, 4 * n))).toEqual(new Array(n).fill(0));
    }
  });

  it('loses less at more bits', () => {
    const rand = seededRandom(6);
    const x = gaussian(64 * 128, rand);
    const err = (bits: number) => {
      const q = actQuantRows(x, 64, 128, bits, 1);
      let s = 0;
      for (let i = 0; i < x.length; i++) s += (q[i] - x[i]) ** 2;
      return s;
    };
    expect(err(8)).toBeLessThan(err(6));
    expect(err(6)).toBeLessThan(err(4));
    expect(err(4)).toBeLessThan(err(2));
  });
});

describe('emitActQuant in onnxruntime', () => {
  it('matches the reference bit for bit (float32)', async () => {
    const rand = seededRandom(9);
    const n = 96;
    const rows = 40;
    const x = testRows(n, rows, rand);
    for (const bits of [2, 4, 6, 8]) {
      for (const clip of [1, 0.855, 0.5]) {
        const b = new GraphBuilder();
        const xin = b.input('x', { dtype: 'float32', shape: [2, rows / 2, n] });
        b.output(emitActQuant(b, xin, bits, clip), 'y');
        const s = await ort.InferenceSession.create(encodeModel(b.model(18)));
        const y = (await s.run({ x: new ort.Tensor('float32', x, [2, rows / 2, n]) })).y.data as Float32Array;
        const want = actQuantRows(x, rows, n, bits, clip);
        let mismatches = 0;
        for (let i = 0; i < want.length; i++) if (!Object.is(y[i], want[i]) && !(y[i] === 0 && want[i] === 0)) mismatches++;
        expect(mismatches, `bits ${bits} clip ${clip}`).toBe(0);
        if (bits === 4 && clip === 1) {
          // the tie row exercised half-to-even: x = −1, 0, 1, 2, 3, 4 with s = 2 gives x/s = −½, 0, ½, 1, 3⁄2, 2
          // → −0, 0, 0, 1, 2, 2 (half-up would give 0, 0, 1, 1, 2, 2), and z = round(½) = 0
          expect(Array.from(want.subarray(n, n + 6))).toEqual([0, 0, 0, 2, 4, 4]);
        }
        // and the quantiser is not the identity
        let changed = 0;
        for (let i = 4 * n; i < want.length; i++) if (want[i] !== x[i]) changed++;
        expect(changed).toBeGreaterThan(0);
      }
    }
  });
});

describe('emitActQuantWith in onnxruntime', () => {
  it('with levels as a graph input and ρ broadcast over a leading axis, every slice matches the reference', async () => {
    const rand = seededRandom(10);
    const n = 48;
    const rows = 12;
    const x = testRows(n, rows, rand);
    const grid = [0.5, 0.73, 0.855, 0.995, 1];
    const b = new GraphBuilder();
    const xin = b.input('x', { dtype: 'float32', shape: [1, rows, n] });
    const levels = b.input('levels', { dtype: 'float32', shape: [] });
    const rho = b.init('rho', Tensor.fromFloat32([grid.length, 1, 1], Float32Array.from(grid)));
    b.output(emitActQuantWith(b, xin, levels, rho), 'y');
    const s = await ort.InferenceSession.create(encodeModel(b.model(18)));
    for (const bits of [2, 4, 6, 8]) {
      const y = (
        await s.run({ x: new ort.Tensor('float32', x, [1, rows, n]), levels: new ort.Tensor('float32', Float32Array.of(2 ** bits - 1), []) })
      ).y.data as Float32Array;
      expect(y.length).toBe(grid.length * rows * n);
      grid.forEach((clip, g) => {
        const want = actQuantRows(x, rows, n, bits, clip);
        const got = y.subarray(g * rows * n, (g + 1) * rows * n);
        let mismatches = 0;
        for (let i = 0; i < want.length; i++) if (got[i] !== want[i]) mismatches++;
        expect(mismatches, `bits ${bits} clip ${clip}`).toBe(0);
      });
    }
  });
});

describe('searchClip', () => {
  it('finds the grid minimum of Σ‖W(x̂ − x)‖² (both metric forms), and clipping helps at 2 bits', () => {
    const rand = seededRandom(12);
    const inDim = 32;
    const tokens = 24;
    const X = gaussian(tokens * inDim, rand);
    for (let i = 0; i < X.length; i++) if (i % 29 === 0) X[i] *= 15;
    for (const outDim of [8, 48]) {
      // two linears sharing the input; outDim 8 → stacked-W form (16 < 32), 48 → Gram form
      const lins = [0, 1].map(() => ({ weight: gaussian(outDim * inDim, rand), outDim }));
      for (const bits of [2, 4]) {
        const res = searchClip(X, tokens, inDim, lins, bits);
        // brute force: quantise, apply each W, sum squared output errors
        const brute = (rho: number) => {
          const xq = actQuantRows(X, tokens, inDim, bits, rho);
          let s = 0;
          for (const l of lins)
            for (let t = 0; t < tokens; t++)
              for (let o = 0; o < outDim; o++) {
                let e = 0;
                for (let i = 0; i < inDim; i++) e += l.weight[o * inDim + i] * (xq[t * inDim + i] - X[t * inDim + i]);
                s += e * e;
              }
          return s / tokens;
        };
        const errs = CLIP_GRID.map(brute);
        const k = errs.indexOf(Math.min(...errs));
        const full = searchClip(X, tokens, inDim, lins, bits, { strategy: 'exhaustive' });
        expect(full.evaluated).toBe(101);
        expect(res.evaluated).toBe(29);
        for (const r of [res, full]) {
          expect(r.clip).toBe(CLIP_GRID[k]);
          expect(r.mse).toBeCloseTo(errs[k], 6);
          expect(r.mseNoClip).toBeCloseTo(errs[errs.length - 1], 6);
        }
        if (bits === 2) expect(res.clip).toBeLessThan(1);
      }
    }
  });
});
