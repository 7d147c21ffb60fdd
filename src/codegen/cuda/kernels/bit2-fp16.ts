// fp16 pieces shared by the kernels that meet bit2 codes with fp16 activations (the streaming
// GEMV and the tensor-core skinny GEMM): digit pairs (p, p+8) of a 16-code word decode to exact
// fp16 trits by masking the digits in place under the exponent of 1024 (1024 + d·4^p, p < 5;
// p ≥ 5 from w >> 10) and one HFMA2 by (4^-p, −(1024·4^-p + 2)); the activations of the word
// (uint4 xa = x[0..7], xb = x[8..15]) are paired the same way by byte permutes.
import { floatToHalf } from '../../../graph/tensor.ts';
import { code, join, type Code } from '../../common/fragments.ts';

const h2 = (x: number) => {
  const b = floatToHalf(x);
  return code`__halves2half2(__ushort_as_half((unsigned short)${b}), __ushort_as_half((unsigned short)${b}))`;
};

/** `c1[5]`, `c2[5]`: the decode FMA's factors by p (mod 5). */
export const BIT2_FP16_CONSTANTS: Code = code`  const __half2 c1[5] = {${join([1, 1 / 4, 1 / 16, 1 / 64, 1 / 256].map(h2), ', ')}};
  const __half2 c2[5] = {${join([1, 1 / 4, 1 / 16, 1 / 64, 1 / 256].map((c) => h2(-(1024 * c + 2))), ', ')}};`;

/** `xw[8]`: the word's activations as the half pairs (x_p, x_{p+8}). */
export const BIT2_FP16_PAIRED_X: Code = code`          const uint32_t xw[8] = {__byte_perm(xa.x, xb.x, 0x5410), __byte_perm(xa.x, xb.x, 0x7632), __byte_perm(xa.y, xb.y, 0x5410), __byte_perm(xa.y, xb.y, 0x7632),
                                  __byte_perm(xa.z, xb.z, 0x5410), __byte_perm(xa.z, xb.z, 0x7632), __byte_perm(xa.w, xb.w, 0x5410), __byte_perm(xa.w, xb.w, 0x7632)};`;

/** Adds the word's 16 activations (summed in fp16 pairs, then fp32) to `target`. */
export function sumWordActivations(target: Code): Code {
  return code`          __half2 xs2 = __hadd2(__hadd2(__hadd2(*reinterpret_cast<const __half2*>(&xa.x), *reinterpret_cast<const __half2*>(&xa.y)), __hadd2(*reinterpret_cast<const __half2*>(&xa.z), *reinterpret_cast<const __half2*>(&xa.w))),
                                __hadd2(__hadd2(*reinterpret_cast<const __half2*>(&xb.x), *reinterpret_cast<const __half2*>(&xb.y)), __hadd2(*reinterpret_cast<const __half2*>(&xb.z), *reinterpret_cast<const __half2*>(&xb.w))));
          const float2 xsf = __half22float2(xs2);
          ${target} += xsf.x + xsf.y;`;
}
