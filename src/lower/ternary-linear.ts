// Lower a ternary linear to com.microsoft::MatMulNBits (bits = 2), which stock
// onnxruntime runs. MatMulNBits computes Y = A · Bᵀ with
//   B[n, k] = (code[n, k] − zp[n, g]) · scale[n, g],   g = floor(k / block_size),
// codes packed 4 per byte, first code in the low bits, [N][k_blocks][block_size/4].
// Our formats store W[n, k] = s·t + z with t = code − 2, hence
//   scale = s,  zp = 2 − z/s                 (float zero points; default 2 when z = 0)
// A group with s = 0 and z ≠ 0 (all weights equal z) is re-coded as codes 2, scale z, zp 1.
import { CODE_PACKINGS, decodeTrits, groupsPerRow, type TernaryWeights } from '../formats/ternary.ts';
import type { Node, Value } from '../graph/ir.ts';
import type { AttrInput } from '../graph/builder.ts';
import type { Rewriter } from '../graph/rewriter.ts';
import { order2Mismatch } from '../formats/order2.ts';
import { floatToHalf, halfToFloat, Tensor } from '../graph/tensor.ts';

export interface LinearSite {
  /** The MatMul/Gemm node computing this linear (replaced in place). */
  node: Node;
  /** The activation input. */
  input: Value;
  bias?: Value;
  rows: number;
  cols: number;
  /** Element type of the activation (MatMulNBits' scales must match it). */
  actDtype: 'float32' | 'float16';
}

/** MatMulNBits block size for a format group G: the largest power of two ≤ 256 dividing G (each ONNX block then lies inside one group). */
function onnxBlockSize(G: number): number {
  for (let b = 256; b >= 16; b /= 2) if (G % b === 0) return b;
  throw new Error(`group size ${G} has no power-of-two divisor >= 16, so MatMulNBits cannot hold it`);
}

/** The MatMulNBits tensors for `w` (codes re-packed to 2-bit codes in blocks of `onnxBlockSize(G)`). */
export function matmulNBitsTensors(w: TernaryWeights, actDtype: 'float32' | 'float16') {
  const G = w.format.group;
  const B = onnxBlockSize(G);
  const N = w.rows;
  const K = w.cols;
  const ng = groupsPerRow(w.format, K);
  const nb = Math.ceil(K / B);
  const blob = B / 4;
  let codes: Uint8Array;
  if (w.format.packing === 'bit2' && B === G) {
    codes = w.codes.slice();
  } else {
    const t = decodeTrits(w);
    codes = new Uint8Array(N * nb * blob);
    const grp = new Int8Array(B);
    for (let n = 0; n < N; n++) {
      for (let j = 0; j < nb; j++) {
        grp.fill(0);
        for (let k = j * B; k < Math.min(K, (j + 1) * B); k++) grp[k - j * B] = t[n * K + k];
        CODE_PACKINGS.bit2.encodeGroup(grp, B, codes, (n * nb + j) * blob);
      }
    }
  }
  const scale = new Float32Array(N * nb);
  const zp = w.shifts ? new Float32Array(N * nb) : undefined;
  for (let n = 0; n < N; n++) {
    for (let j = 0; j < nb; j++) {
      const i = n * nb + j;
      const gi = n * ng + Math.floor((j * B) / G);
      const s = halfToFloat(w.scales[gi]);
      const z = w.shifts ? halfToFloat(w.shifts[gi]) : 0;
      if (!zp) {
        scale[i] = s;
      } else if (s === 0) {
        // Every weight of the group is z: codes 2, scale z, zero point 1.
        codes.fill(0xaa, i * blob, (i + 1) * blob);
        scale[i] = z;
        zp[i] = 1;
      } else {
        scale[i] = s;
        zp[i] = 2 - z / s;
      }
    }
  }
  const floatTensor = (a: Float32Array) =>
    actDtype === 'float32'
      ? Tensor.fromFloat32([a.length], a)
      : Tensor.fromBytes('float16', [a.length], new Uint8Array(Uint16Array.from(a, floatToHalf).buffer));
  return {
    codes: Tensor.fromBytes('uint8', [N, nb, blob], codes),
    scales: floatTensor(scale),
    zeroPoints: zp ? floatTensor(zp) : undefined,
    attrs: { K, N, bits: 2, block_size: B, accuracy_level: 0 },
  };
}

/** Name of the MatMulNBits codes initializer of linear `id`; the TF.js target reads the id
 *  back from it to find the linear's packed weights in the manifest. */
export const qweightName = (id: string): string => `${id}.qweight`;

/** The linear id of a MatMulNBits codes initializer written by this lowering, or undefined. */
export function linearIdOfQweight(name: string): string | undefined {
  return name.endsWith('.qweight') ? name.slice(0, -'.qweight'.length) : undefined;
}

/** Replace the site's MatMul/Gemm by MatMulNBits (+ Add for a bias). An order-2 linear
 *  (formats/order2.ts) gets a second MatMulNBits on the same input for its second plane, and
 *  an Add of the two. Returns the bytes of the initializers written. */
export function lowerTernaryLinear(rw: Rewriter, site: LinearSite, w: TernaryWeights, prefix: string, plane?: TernaryWeights): number {
  if (w.rows !== site.rows || w.cols !== site.cols) throw new Error(`${prefix}: weights ${w.rows}x${w.cols} do not match the linear ${site.rows}x${site.cols}`);
  if (plane) {
    const why = order2Mismatch(w, plane);
    if (why) throw new Error(`${prefix}: ${why}`);
  }
  let bytes = 0;
  const matmul = (weights: TernaryWeights, name: string) => {
    const t = matmulNBitsTensors(weights, site.actDtype);
    const B = rw.init(qweightName(name), t.codes);
    const S = rw.init(`${name}.scales`, t.scales);
    const Z = t.zeroPoints ? rw.init(`${name}.zero_points`, t.zeroPoints) : undefined;
    bytes += t.codes.byteLength + t.scales.byteLength + (t.zeroPoints?.byteLength ?? 0);
    return { inputs: Z ? [site.input, B, S, Z] : [site.input, B, S], attrs: t.attrs };
  };
  const first = matmul(w, prefix);
  // The terms whose sum is the linear's output; the last op replaces the site's node.
  const terms: [string, (Value | undefined)[], Record<string, AttrInput>, string][] = [['MatMulNBits', first.inputs, first.attrs, 'com.microsoft']];
  if (plane) {
    const second = matmul(plane, order2Prefix(prefix));
    terms.push(['MatMulNBits', second.inputs, second.attrs, 'com.microsoft']);
  }
  if (site.bias) bytes += site.bias.constValue?.byteLength ?? 0;
  const addends = terms.length + (site.bias ? 1 : 0);
  if (addends === 1) {
    rw.replace(site.node, ...terms[0]);
    return bytes;
  }
  const values: Value[] = terms.map((t) => rw.opBefore(site.node, ...t));
  if (site.bias) values.push(site.bias);
  let acc = values[0];
  for (let i = 1; i < values.length - 1; i++) acc = rw.opBefore(site.node, 'Add', [acc, values[i]]);
  rw.replace(site.node, 'Add', [acc, values[values.length - 1]]);
  return bytes;
}

/** Initializer prefix of an order-2 linear's second plane. */
export const order2Prefix = (id: string): string => `${id}.o2`;
