// The ternary matmul on packed codes, in plain JavaScript: tfjs's CPU backend kernel.
// For each row n and group g (columns k0 .. k0+G):
//   y[m, n] += scale[n, g] · Σ_k t[n, k] x[m, k]  +  shift[n, g] · Σ_k x[m, k]
// The trits of a group are decoded once per row through the format declaration's own group
// decoder and reused for every token; sums run in float64.
import { CODE_PACKINGS, groupsPerRow, type TernaryFormat } from '../../formats/ternary.ts';

export interface PackedTernary {
  format: TernaryFormat;
  rows: number;
  cols: number;
  /** The packed code bytes (a view of the int32 codes tensor). */
  codes: Uint8Array;
  scales: Float32Array;
  shifts?: Float32Array;
}

/** y [m, rows] = x [m, cols] · Wᵀ for the packed W. */
export function ternaryMatMul(x: Float32Array, m: number, w: PackedTernary): Float32Array {
  const { format: f, rows, cols } = w;
  const G = f.group;
  const ng = groupsPerRow(f, cols);
  const bpg = CODE_PACKINGS[f.packing].bytesPerGroup(G);
  // Σ_k x[m, k] per (token, group): the shift term.
  const xsum = new Float64Array(m * ng);
  if (w.shifts) {
    for (let i = 0; i < m; i++) {
      for (let k = 0; k < cols; k++) xsum[i * ng + Math.floor(k / G)] += x[i * cols + k];
    }
  }
  const y = new Float64Array(m * rows);
  const t = new Int8Array(G);
  for (let n = 0; n < rows; n++) {
    for (let g = 0; g < ng; g++) {
      CODE_PACKINGS[f.packing].decodeGroup(w.codes, (n * ng + g) * bpg, G, t);
      const k0 = g * G;
      const kl = Math.min(G, cols - k0);
      const s = w.scales[n * ng + g];
      const z = w.shifts ? w.shifts[n * ng + g] : 0;
      for (let i = 0; i < m; i++) {
        const xo = i * cols + k0;
        let dot = 0;
        for (let k = 0; k < kl; k++) dot += t[k] * x[xo + k];
        y[i * rows + n] += s * dot + z * xsum[i * ng + g];
      }
    }
  }
  return Float32Array.from(y);
}
