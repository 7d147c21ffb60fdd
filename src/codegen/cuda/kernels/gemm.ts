// What the int8 prefill GEMMs (gemm-a8.ts: mma.sync; gemm-wgmma.ts and, for the lattice
// formats, gemm-wgmma-rs.ts: wgmma) share: the shape, the shapes they take, their arguments and
// their output stores.
import type { TernaryFormat } from '../../../formats/ternary.ts';
import { Code, code } from '../../common/fragments.ts';
import type { CudaArch } from '../arch.ts';
import type { CudaKernel, CudaParam } from '../kernel.ts';

export interface GemmShape {
  format: TernaryFormat;
  /** Output features. */
  n: number;
  /** Input features. */
  k: number;
  arch: CudaArch;
  /** Output: fp16 [T][N] (default), or fp32 [T][N] added to y when the launch's acc is set (the
   *  runtime's linears, which write the residual stream in place). */
  out?: 'f16' | 'f32';
}

/** Weight group of the prefill GEMMs: one group is one K step of 128 bytes of activations. */
export const GEMM_GROUP = 128;

/** Why a linear cannot use a prefill GEMM with block tiles `tileN` features wide, or null. */
export function gemmShapeUnsupported(s: Pick<GemmShape, 'format' | 'k' | 'n'>, tileN: number, tileWhat: string): string | null {
  const G = GEMM_GROUP;
  if (s.format.packing !== 'bit2' || s.format.group !== G) return `format ${s.format.id} is not bit2 with groups of ${G}`;
  if (s.k % G) return `K=${s.k} is not a multiple of ${G}`;
  if (s.n % tileN) return `N=${s.n} is not a multiple of ${tileWhat} ${tileN}`;
  return null;
}

/** Arguments: u8 codes a [T][K] with (s, z) per token in ap, the weight (with `rows`, also its
 *  load-time row constants: kernels/lattice-rows.ts), y, T, and for fp32 output the accumulate flag. */
export function gemmArgs(s: GemmShape, rows = false): CudaParam[] {
  return [
    { name: 'a', type: 'const uint8_t*' },
    { name: 'ap', type: 'const float*' },
    { name: 'codes', type: 'const uint8_t*' },
    { name: 'scales', type: 'const __half*' },
    { name: 'shifts', type: 'const __half*' },
    ...(rows ? ([{ name: 'rows', type: 'const int2*' }] as const) : []),
    ...(s.out === 'f32' ? ([{ name: 'y', type: 'float*' }, { name: 'T', type: 'int' }, { name: 'acc', type: 'int' }] as const) : ([{ name: 'y', type: '__half*' }, { name: 'T', type: 'int' }] as const)),
  ];
}

/** Whether a GEMM takes the `rows` argument of gemmArgs (its launch passes the row constants). */
export function gemmTakesRows(k: Pick<CudaKernel, 'params'>): boolean {
  return k.params.some((p) => p.name === 'rows');
}

/** The store of the pair (v0, v1) at (row, col) of y [T][n]. */
export function gemmStore(s: GemmShape, row: Code, col: Code, v0: Code, v1: Code): Code {
  return s.out === 'f32'
    ? code`{
          float2* p = reinterpret_cast<float2*>(y + (size_t)(${row}) * ${s.n} + (${col}));
          float2 v = make_float2(${v0}, ${v1});
          if (acc) { const float2 o = *p; v.x += o.x; v.y += o.y; }
          *p = v;
        }`
    : code`*reinterpret_cast<__half2*>(y + (size_t)(${row}) * ${s.n} + (${col})) = __floats2half2_rn(${v0}, ${v1});`;
}

/** The store of one value v at (row, col) of y [T][n] (kernels whose registers run along tokens). */
export function gemmStore1(s: GemmShape, row: Code, col: Code, v: Code): Code {
  return s.out === 'f32'
    ? code`{
          float* p = y + (size_t)(${row}) * ${s.n} + (${col});
          *p = acc ? *p + (${v}) : (${v});
        }`
    : code`y[(size_t)(${row}) * ${s.n} + (${col})] = __float2half_rn(${v});`;
}
