// The ternary matmul on packed codes as a tfjs WebGPU program: one thread per output
// element y[m, n], walking row n group by group,
//   y[m, n] = Σ_g ( scale[n, g] · Σ_{k∈g} t[n, k] x[m, k] + shift[n, g] · Σ_{k∈g} x[m, k] ).
// Codes arrive as i32 words holding the packed bytes little-endian; a byte is decoded into
// trits by the WGSL packing table that the manifest runtime's kernels use
// (codegen/wgsl/kernels.ts), so both GPU paths read one decoder per packing.
// tfjs supplies the buffer bindings (named by variableNames), the uniforms and the entry
// point, which calls main(index) with the flat output index.
import { CODE_PACKINGS, groupsPerRow, type TernaryFormat } from '../../formats/ternary.ts';
import { WGSL_PACKINGS } from '../../codegen/wgsl/kernels.ts';
import { join, u32, wgsl, type Code } from '../../codegen/wgsl/fragments.ts';

const WG = 64;

/** The program object tfjs's WebGPU backend runs (its WebGPUProgram interface). */
export interface TernaryMatMulProgram {
  variableNames: string[];
  outputShape: number[];
  shaderKey: string;
  dispatchLayout: { x: number[] };
  dispatch: [number, number, number];
  workgroupSize: [number, number, number];
  size: boolean;
  getUserCode(): string;
}

export function ternaryMatMulProgram(f: TernaryFormat, rows: number, cols: number, m: number): TernaryMatMulProgram {
  const G = f.group;
  const ng = groupsPerRow(f, cols);
  const bpg = CODE_PACKINGS[f.packing].bytesPerGroup(G);
  const per = WGSL_PACKINGS[f.packing].perByte;
  if (bpg !== Math.ceil(G / per)) throw new Error(`WGSL packing table disagrees with the format declaration of ${f.packing}`);
  const b = wgsl`b`;
  // Trit i of byte j of the group, for columns inside the group and the matrix.
  const trits: Code[] = Array.from({ length: per }, (_, i) =>
    wgsl`    if (j * ${per} + ${i} < kl) {
      let xv = X[xo + j * ${per} + ${i}];
      dot += ${WGSL_PACKINGS[f.packing].trit(b, i)} * xv;
      xs += xv;
    }`,
  );
  const shift = f.shift ? wgsl` + Shifts[row + g] * xs` : wgsl``;
  const body = wgsl`fn main(index: i32) {
  if (index >= uniforms.size) { return; }
  let mi = index / ${rows};
  let n = index % ${rows};
  let row = n * ${ng};
  var acc = 0.0;
  for (var g = 0; g < ${ng}; g++) {
    let k0 = g * ${G};
    let kl = min(${G}, ${cols} - k0);
    let xo = mi * ${cols} + k0;
    var dot = 0.0;
    var xs = 0.0;
    for (var j = 0; j < ${bpg}; j++) {
      let bi = (row + g) * ${bpg} + j;
      let ${b} = (bitcast<u32>(Codes[bi >> 2u]) >> (u32(bi & 3) * 8u)) & ${u32(255)};
${join(trits)}
    }
    acc += Scales[row + g] * dot${shift};
  }
  setOutputAtIndex(index, acc);
}`;
  const size = m * rows;
  return {
    variableNames: f.shift ? ['X', 'Codes', 'Scales', 'Shifts'] : ['X', 'Codes', 'Scales'],
    outputShape: [m, rows],
    shaderKey: `twlacTernaryMatMul_${f.id}_${rows}_${cols}`,
    dispatchLayout: { x: [0, 1] },
    // tfjs folds a dispatch wider than the device limit into more dimensions itself.
    dispatch: [Math.ceil(size / WG), 1, 1],
    workgroupSize: [WG, 1, 1],
    size: true,
    getUserCode: () => body.text,
  };
}
