// The order-2 ternary linear, declared once: E2M-ATQ's order-2 variant (two ternary planes)
// on every column of a linear, for the few linears where the second plane buys the most
// perplexity per bit (v_proj on the fixture: bench/results/order2-select.json):
//   W[n, k] = (α₀[n, g]·t₀[n, k] + μ[n, g]) + α₁[n, g]·t₁[n, k],   g = floor(k / G)
// The first plane is a TernaryWeights in the linear's own format; the second is a TernaryWeights
// of `order2PlaneFormat(first)`: trit5 codes, the same group G, one fp16 scale per group, no
// shift and no lattice. Each plane is stored as its format says (formats/ternary.ts), so every
// backend runs the second plane with the kernel it has for the first and adds the two outputs.
import { decodeTernary, storageBytes, ternaryFormat, type TernaryFormat, type TernaryWeights } from './ternary.ts';

export interface Order2Weights {
  base: TernaryWeights;
  plane: TernaryWeights;
}

/** The format of the second plane of a linear whose first plane is stored as `base`. */
export function order2PlaneFormat(base: TernaryFormat): TernaryFormat {
  return ternaryFormat('trit5', base.group, false, false);
}

/** Exact bytes of both planes of a rows×cols linear. */
export function order2StorageBytes(base: TernaryFormat, rows: number, cols: number): number {
  return storageBytes(base, rows, cols) + storageBytes(order2PlaneFormat(base), rows, cols);
}

/** Checks that `plane` can be the second plane of `base`; the reason, or null. */
export function order2Mismatch(base: TernaryWeights, plane: TernaryWeights): string | null {
  const want = order2PlaneFormat(base.format).id;
  if (plane.format.id !== want) return `the second plane is ${plane.format.id}, the first plane ${base.format.id} needs ${want}`;
  if (plane.rows !== base.rows || plane.cols !== base.cols) return `the second plane is ${plane.rows}x${plane.cols}, the first ${base.rows}x${base.cols}`;
  return null;
}

/** Reference decoder: both planes summed, float64 row-major [rows*cols]. The oracle of every backend. */
export function decodeOrder2(w: Order2Weights): Float64Array {
  const why = order2Mismatch(w.base, w.plane);
  if (why) throw new Error(`order-2 linear: ${why}`);
  const out = decodeTernary(w.base);
  const p = decodeTernary(w.plane);
  for (let i = 0; i < out.length; i++) out[i] += p[i];
  return out;
}
