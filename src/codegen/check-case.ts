// Check data for a ternary linear kernel: a random linear in a format, fp16-representable
// activations for T tokens, and the expected output y = W·x in float64 with W from the format's
// reference decoder, the oracle every generated kernel is checked against. The device
// benchmarks (scripts/device/gen-gemv-bench.ts) and `twlac kernels` write it as
//   [codes][scales fp16][shifts fp16, if the format has them][x fp16, T×K][y float64, T×N]
// (little-endian), which their harnesses read back.
import { randomTernaryLinear } from '../artifact/random.ts';
import { decodeTernary, type TernaryFormat, type TernaryWeights } from '../formats/ternary.ts';
import { floatToHalf, halfToFloat } from '../graph/tensor.ts';

export interface CheckCase {
  weights: TernaryWeights;
  /** Activations [T, K] as fp16 bits. */
  xHalf: Uint16Array;
  /** Expected output [T, N], float64. */
  y: Float64Array;
}

export function ternaryCheckCase(f: TernaryFormat, n: number, k: number, t: number, rand: () => number): CheckCase {
  const weights = randomTernaryLinear('q', n, k, f, rand).ternary!;
  const w = decodeTernary(weights);
  const xHalf = new Uint16Array(t * k);
  for (let j = 0; j < xHalf.length; j++) xHalf[j] = floatToHalf((rand() * 2 - 1) * 2);
  const y = new Float64Array(t * n);
  for (let m = 0; m < t; m++) {
    for (let r = 0; r < n; r++) {
      let s = 0;
      for (let c = 0; c < k; c++) s += w[r * k + c] * halfToFloat(xHalf[m * k + c]);
      y[m * n + r] = s;
    }
  }
  return { weights, xHalf, y };
}

/** The case file's bytes (layout above). */
export function checkCaseBytes(c: CheckCase): Buffer {
  const { codes, scales, shifts } = c.weights;
  return Buffer.concat([codes, new Uint8Array(scales.buffer, scales.byteOffset, scales.byteLength), shifts ? new Uint8Array(shifts.buffer, shifts.byteOffset, shifts.byteLength) : new Uint8Array(0), new Uint8Array(c.xHalf.buffer), new Uint8Array(c.y.buffer)]);
}
