// Ternary weight storage formats, declared once (after ggml's type traits). Every
// consumer -- the ONNX lowering, the CUDA and WGSL generators, the report -- reads the
// declaration below; a backend that forgets a code packing fails to compile because its
// table is checked with `satisfies Record<CodePacking, ...>`.
//
// A ternary linear W [N rows = out, K cols = in] is stored per (row, group of G columns):
//   W[n, k] = scale[n, g] * t[n, k] + shift[n, g],   t ∈ {-1, 0, +1},  g = floor(k / G)
// Storage is structure-of-arrays, row-major:
//   codes  [N][ceil(K/G)][bytesPerGroup]   (the packing below)
//   scales [N][ceil(K/G)]                  fp16
//   shifts [N][ceil(K/G)]                  fp16 (absent when the format has no shift)
// A final partial group (K not a multiple of G) is padded with t = 0 codes.
// Lattice formats (`_lat`) store the same fp16 scales and shifts under one more rule: in each
// row, every scale and shift is an integer multiple of one power of two u = 2^e (the row's
// lattice unit, latticeUnit) with |scale| + |shift| ≤ LATTICE_MAX·u. Then scale·t + shift is
// u times an int8 for every trit, so an int8 GEMM can accumulate a whole row in int32 and
// scale once (kernels/gemm-wgmma-rs.ts) instead of folding every group. Every other
// consumer reads the fp16 values as before.
import { floatToHalf, halfToFloat } from '../util/half.ts';

export type CodePacking = 'trit5' | 'bit2';

export interface CodePackingDecl {
  /** Human description for reports. */
  describe: string;
  /** Bytes used by the codes of one group of G weights. */
  bytesPerGroup(G: number): number;
  /** Encode trits t (∈ -1,0,1) of one group into `out` at `off`. */
  encodeGroup(t: ArrayLike<number>, G: number, out: Uint8Array, off: number): void;
  /** Decode one group's trits into `t`. */
  decodeGroup(src: Uint8Array, off: number, G: number, t: Int8Array | number[]): void;
}

/** The code packings. `trit5`: 5 trits per byte, base 3, first trit least significant
 *  (byte = Σ (t_i + 1)·3^i, i < 5); a group of G uses ceil(G/5) bytes, the last byte holding
 *  G mod 5 trits when G is not a multiple of 5. `bit2`: 4 codes per byte, first code in the
 *  low bits, code = t + 2 ∈ {1,2,3}, as com.microsoft::MatMulNBits bits=2 with its default
 *  zero point 2 expects. */
export const CODE_PACKINGS = {
  trit5: {
    describe: '5 trits per byte (base 3)',
    bytesPerGroup: (G) => Math.ceil(G / 5),
    encodeGroup(t, G, out, off) {
      for (let b = 0; b * 5 < G; b++) {
        let v = 0;
        for (let i = Math.min(4, G - 1 - b * 5); i >= 0; i--) v = v * 3 + (t[b * 5 + i] + 1);
        out[off + b] = v;
      }
    },
    decodeGroup(src, off, G, t) {
      for (let b = 0; b * 5 < G; b++) {
        let v = src[off + b];
        for (let i = 0; i < 5 && b * 5 + i < G; i++) {
          t[b * 5 + i] = (v % 3) - 1;
          v = Math.floor(v / 3);
        }
      }
    },
  },
  bit2: {
    describe: '2-bit codes, 4 per byte (MatMulNBits layout)',
    bytesPerGroup: (G) => Math.ceil(G / 4),
    encodeGroup(t, G, out, off) {
      for (let b = 0; b * 4 < G; b++) {
        let v = 0;
        for (let i = 0; i < 4 && b * 4 + i < G; i++) v |= (t[b * 4 + i] + 2) << (2 * i);
        out[off + b] = v;
      }
    },
    decodeGroup(src, off, G, t) {
      for (let k = 0; k < G; k++) t[k] = ((src[off + (k >> 2)] >> (2 * (k & 3))) & 3) - 2;
    },
  },
} satisfies Record<CodePacking, CodePackingDecl>;

export interface TernaryFormat {
  /** e.g. `tq1_g128` (trit5, G=128, scale+shift), `tq2_g128_ns` (bit2, no shift) or
   *  `tq2_g128_lat` (bit2, scales and shifts on a per-row int8 lattice). */
  id: string;
  packing: CodePacking;
  group: number;
  shift: boolean;
  /** Scales and shifts lie on the row's int8 lattice (see the header). */
  lattice: boolean;
}

/** Largest |scale| + |shift| of a lattice format, in lattice units: scale·t + shift is an int8. */
export const LATTICE_MAX = 127;
/** Smallest lattice unit: 2^-24, fp16's subnormal step, so that every lattice value is exact in fp16. */
export const LATTICE_MIN_EXP = -24;

/** The lattice unit of a row whose largest |scale| + |shift| is `maxAbs`: the smallest power of
 *  two u (≥ 2^-24) with maxAbs ≤ LATTICE_MAX·u. Any values that are multiples of a larger power
 *  of two within the same bound are multiples of this one too, so the unit can be recomputed
 *  from stored values (the CUDA GEMM does). */
export function latticeUnit(maxAbs: number): number {
  if (!(maxAbs > 0)) return 2 ** LATTICE_MIN_EXP;
  let e = Math.ceil(Math.log2(maxAbs / LATTICE_MAX));
  if (maxAbs > LATTICE_MAX * 2 ** e) e++; // log2 rounding, either way
  else if (maxAbs <= LATTICE_MAX * 2 ** (e - 1)) e--;
  return 2 ** Math.max(LATTICE_MIN_EXP, e);
}

/** The lattice unit of row n of scale/shift arrays [rows·ng]: latticeUnit of its largest
 *  |scale| + |shift|. */
function rowLatticeUnit(scale: ArrayLike<number>, shift: ArrayLike<number> | undefined, n: number, ng: number): number {
  let mx = 0;
  for (let g = 0; g < ng; g++) mx = Math.max(mx, Math.abs(scale[n * ng + g]) + (shift ? Math.abs(shift[n * ng + g]) : 0));
  return latticeUnit(mx);
}

/** Snaps row n's scales and shifts (float arrays [rows·ng], in place) to the row's lattice:
 *  the unit from the row's largest |scale| + |shift|, each value rounded to a multiple, the
 *  shift pulled in where rounding would break the bound. */
export function snapRowToLattice(scale: Float64Array | Float32Array, shift: Float64Array | Float32Array | undefined, n: number, ng: number): number {
  const u = rowLatticeUnit(scale, shift, n, ng);
  for (let g = 0; g < ng; g++) {
    const i = n * ng + g;
    const s = Math.max(-LATTICE_MAX, Math.min(LATTICE_MAX, Math.round(scale[i] / u)));
    scale[i] = s * u;
    if (shift) {
      const lim = LATTICE_MAX - Math.abs(s);
      shift[i] = Math.max(-lim, Math.min(lim, Math.round(shift[i] / u))) * u;
    }
  }
  return u;
}

/** Why row n of stored (decoded fp16) scales/shifts breaks the lattice rule, or null. */
function latticeViolation(scale: Float64Array, shift: Float64Array | undefined, n: number, ng: number): string | null {
  const u = rowLatticeUnit(scale, shift, n, ng);
  for (let g = 0; g < ng; g++) {
    for (const v of [scale[n * ng + g], shift ? shift[n * ng + g] : 0]) {
      if (!Number.isInteger(v / u)) return `row ${n} group ${g}: ${v} is not a multiple of the row's lattice unit 2^${Math.log2(u)}`;
    }
  }
  return null;
}

const PACKING_TAG: Record<CodePacking, string> = { trit5: 'tq1', bit2: 'tq2' };

export function ternaryFormat(packing: CodePacking, group: number, shift = true, lattice = false): TernaryFormat {
  if (!Number.isInteger(group) || group < 4 || group > 4096) throw new Error(`group size ${group} out of range`);
  return { id: `${PACKING_TAG[packing]}_g${group}${shift ? '' : '_ns'}${lattice ? '_lat' : ''}`, packing, group, shift, lattice };
}

export function parseFormatId(id: string): TernaryFormat {
  const m = /^(tq1|tq2)_g(\d+)(_ns)?(_lat)?$/.exec(id);
  if (!m) throw new Error(`unknown weight format '${id}' (expected tq1_g<G> or tq2_g<G>, optionally _ns, then optionally _lat)`);
  return ternaryFormat(m[1] === 'tq1' ? 'trit5' : 'bit2', Number(m[2]), !m[3], !!m[4]);
}

export interface TernaryWeights {
  format: TernaryFormat;
  rows: number;
  cols: number;
  codes: Uint8Array;
  /** fp16 bit patterns. */
  scales: Uint16Array;
  shifts?: Uint16Array;
}

export function groupsPerRow(f: TernaryFormat, cols: number): number {
  return Math.ceil(cols / f.group);
}

/** Exact bytes the format stores for a rows×cols matrix. */
export function storageBytes(f: TernaryFormat, rows: number, cols: number): number {
  const ng = groupsPerRow(f, cols);
  const codeBytes = rows * ng * CODE_PACKINGS[f.packing].bytesPerGroup(f.group);
  return codeBytes + rows * ng * 2 * (f.shift ? 2 : 1);
}

/** Bits per weight for a rows×cols matrix, from the bytes the format stores. */
export function bitsPerWeight(f: TernaryFormat, rows: number, cols: number): number {
  return (storageBytes(f, rows, cols) * 8) / (rows * cols);
}

/** Byte size of an encoded object (what a writer puts on disk). */
export function encodedBytes(w: TernaryWeights): number {
  return w.codes.byteLength + w.scales.byteLength + (w.shifts?.byteLength ?? 0);
}

/**
 * Reference encoder: trits t [rows*cols] (row-major, values -1/0/1), scale and shift per
 * (row, group) as float arrays [rows*ngroups]. Scales and shifts are rounded to fp16.
 */
export function encodeTernary(
  f: TernaryFormat,
  rows: number,
  cols: number,
  t: Int8Array,
  scale: ArrayLike<number>,
  shift?: ArrayLike<number>,
): TernaryWeights {
  const G = f.group;
  const ng = groupsPerRow(f, cols);
  const bpg = CODE_PACKINGS[f.packing].bytesPerGroup(G);
  const codes = new Uint8Array(rows * ng * bpg);
  const grp = new Int8Array(G);
  for (let n = 0; n < rows; n++) {
    for (let g = 0; g < ng; g++) {
      grp.fill(0);
      const k0 = g * G;
      for (let k = k0; k < Math.min(cols, k0 + G); k++) {
        const v = t[n * cols + k];
        if (v !== -1 && v !== 0 && v !== 1) throw new Error(`trit out of range at [${n},${k}]: ${v}`);
        grp[k - k0] = v;
      }
      CODE_PACKINGS[f.packing].encodeGroup(grp, G, codes, (n * ng + g) * bpg);
    }
  }
  const scales = Uint16Array.from({ length: rows * ng }, (_, i) => floatToHalf(scale[i]));
  if (f.shift && !shift) throw new Error(`format ${f.id} needs shifts`);
  const shifts = f.shift ? Uint16Array.from({ length: rows * ng }, (_, i) => floatToHalf(shift![i])) : undefined;
  if (f.lattice) {
    const sf = Float64Array.from(scales, halfToFloat);
    const hf = shifts ? Float64Array.from(shifts, halfToFloat) : undefined;
    for (let n = 0; n < rows; n++) {
      const why = latticeViolation(sf, hf, n, ng);
      if (why) throw new Error(`format ${f.id}: ${why} (snap with snapRowToLattice first)`);
    }
  }
  return { format: f, rows, cols, codes, scales, shifts };
}

/** Reference decoder: the trits, row-major [rows*cols]. */
export function decodeTrits(w: TernaryWeights): Int8Array {
  const { format: f, rows, cols } = w;
  const G = f.group;
  const ng = groupsPerRow(f, cols);
  const bpg = CODE_PACKINGS[f.packing].bytesPerGroup(G);
  const out = new Int8Array(rows * cols);
  const grp = new Int8Array(G);
  for (let n = 0; n < rows; n++) {
    for (let g = 0; g < ng; g++) {
      CODE_PACKINGS[f.packing].decodeGroup(w.codes, (n * ng + g) * bpg, G, grp);
      const k0 = g * G;
      for (let k = k0; k < Math.min(cols, k0 + G); k++) out[n * cols + k] = grp[k - k0];
    }
  }
  return out;
}

/** Reference decoder: the dequantized weights in float64, row-major [rows*cols]. This is the oracle every kernel is tested against. */
export function decodeTernary(w: TernaryWeights): Float64Array {
  const { format: f, rows, cols } = w;
  const ng = groupsPerRow(f, cols);
  const t = decodeTrits(w);
  const out = new Float64Array(rows * cols);
  for (let n = 0; n < rows; n++) {
    for (let k = 0; k < cols; k++) {
      const gi = n * ng + Math.floor(k / f.group);
      const s = halfToFloat(w.scales[gi]);
      const z = w.shifts ? halfToFloat(w.shifts[gi]) : 0;
      out[n * cols + k] = s * t[n * cols + k] + z;
    }
  }
  return out;
}

/**
 * The codes of `groups` groups re-packed from one packing to another (same group size: the
 * trits are unchanged, so scales and shifts stay valid). Runtimes use it to give a kernel the
 * packing it reads (e.g. trit5 on disk, bit2 for the GPU GEMVs).
 */
export function transcodeCodes(codes: Uint8Array, from: TernaryFormat, to: TernaryFormat, groups: number): Uint8Array {
  if (from.group !== to.group) throw new Error(`transcode ${from.id} -> ${to.id}: group sizes differ`);
  const G = from.group;
  const src = CODE_PACKINGS[from.packing];
  const dst = CODE_PACKINGS[to.packing];
  const sb = src.bytesPerGroup(G);
  const db = dst.bytesPerGroup(G);
  if (codes.length < groups * sb) throw new Error(`transcode ${from.id} -> ${to.id}: ${codes.length} bytes hold fewer than ${groups} groups`);
  const out = new Uint8Array(groups * db);
  const t = new Int8Array(G);
  for (let g = 0; g < groups; g++) {
    src.decodeGroup(codes, g * sb, G, t);
    dst.encodeGroup(t, G, out, g * db);
  }
  return out;
}
