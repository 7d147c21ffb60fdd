// The contract between the TF.js emitter (src/codegen/tfjs/) and the runtime that executes
// its graphs: one custom GraphDef op for a ternary linear, y = x · Wᵀ, W [rows, cols]
// decoded by the format's reference decoder (src/formats/ternary.ts).
//
// Inputs, in order:
//   x       float32 [..., cols]
//   codes   int32 [ceil(codeBytes / 4)]: the format's packed code bytes, unchanged, read
//           little-endian four to a word (TF.js has no uint8 tensors); the last word is
//           zero-padded
//   scales  float32 [rows · ng]   (stored fp16 in the weight shard)
//   shifts  float32 [rows · ng]   (formats with a shift only)
// Attributes: format (format id, e.g. tq1_g128), rows, cols. Output float32 [..., rows].

export const TERNARY_MATMUL_OP = 'TwlacTernaryMatMul';

export interface TernaryMatMulAttrs {
  format: string;
  rows: number;
  cols: number;
}
