// CUDA decode snippets per code packing (src/formats/ternary.ts). The table is checked with
// `satisfies Record<CodePacking, ...>`: a new packing without CUDA support does not compile.
//
// Every packing decodes a "unit" of code bytes into one 32-bit word of 2-bit digits laid out
// so that `(w >> 2p) & 0x00030003` holds the digits of pair p in its two 16-bit halves; the
// trit is digit − bias. OR-ing 0x6400 into a half gives the fp16 value 1024 + digit, so one
// subtraction yields both trits of a pair as exact fp16 (−1, 0, +1). A slot that holds no
// trit of the group decodes to some digit but meets a zero activation (the stager zeroes it).
import type { CodePacking } from '../../formats/ternary.ts';
import { CODE_PACKINGS } from '../../formats/ternary.ts';
import { code, type Code } from '../common/fragments.ts';

/** How one group size is decoded: the unit of bytes that becomes one digit word. */
export interface CudaUnitDecl {
  /** Short tag for kernel names and cache keys. */
  tag: string;
  /** Code bytes decoded into one digit word (units never straddle a group). */
  unitBytes: 1 | 2 | 4;
  /** Digit pairs per unit. */
  pairs: number;
  /** trit = digit − bias. */
  bias: number;
  /** C++ expression for the 256-entry shared LUT `lut` (byte value `v` → digit word bits), or null. */
  lutEntry: ((v: Code) => Code) | null;
  /** C++ expression: the digit word of a unit whose raw bytes are the low bytes of `raw`. */
  digits(raw: Code): Code;
  /** C++ expression: index within its group of the trit in pair `p`, half `h` of unit `j`;
   *  a slot that holds no trit yields an index ≥ G. */
  tritIndex(j: Code, p: Code, h: Code): Code;
}

export interface CudaPackingDecl {
  /** The unit used for group size G (wider units where the group's byte count allows). */
  unit(G: number): CudaUnitDecl;
  /** C++ expression (host): trit k of a group starting at byte pointer `g`. */
  hostTrit(g: Code, k: Code): Code;
  /** C++ expression (device): a valid code byte from 32 random bits `h`. */
  randomByte(h: Code): Code;
}

const trit5Digits = (v: Code, i: number): Code => code`((${v}) / ${3 ** i}u % 3u)`;

const TRIT5_PAIR: CudaUnitDecl = {
  tag: 'u2',
  unitBytes: 2,
  pairs: 5,
  bias: 1,
  // byte → its 5 digits at bits 2i
  lutEntry: (v) => code`(${trit5Digits(v, 0)} | ${trit5Digits(v, 1)} << 2 | ${trit5Digits(v, 2)} << 4 | ${trit5Digits(v, 3)} << 6 | ${trit5Digits(v, 4)} << 8)`,
  digits: (raw) => code`((uint32_t)lut[(${raw}) & 0xffu] | ((uint32_t)lut[((${raw}) >> 8) & 0xffu] << 16))`,
  tritIndex: (j, p, h) => code`((2 * (${j}) + (${h})) * 5 + (${p}))`,
};

const TRIT5_BYTE: CudaUnitDecl = {
  tag: 'u1',
  unitBytes: 1,
  pairs: 3,
  bias: 1,
  // byte → digits 0,1,2 in the low half, 3,4 in the high half
  lutEntry: (v) => code`(${trit5Digits(v, 0)} | ${trit5Digits(v, 1)} << 2 | ${trit5Digits(v, 2)} << 4 | ${trit5Digits(v, 3)} << 16 | ${trit5Digits(v, 4)} << 18)`,
  digits: (raw) => code`lut[(${raw}) & 0xffu]`,
  tritIndex: (j, p, h) => code`((${h}) == 0 ? 5 * (${j}) + (${p}) : ((${p}) < 2 ? 5 * (${j}) + 3 + (${p}) : 1 << 30))`,
};

const BIT2_WORD: CudaUnitDecl = {
  tag: 'u4',
  unitBytes: 4,
  pairs: 8,
  bias: 2,
  lutEntry: null,
  digits: (raw) => code`((uint32_t)(${raw}))`,
  tritIndex: (j, p, h) => code`(16 * (${j}) + 8 * (${h}) + (${p}))`,
};

const BIT2_BYTE: CudaUnitDecl = {
  tag: 'u1',
  unitBytes: 1,
  pairs: 2,
  bias: 2,
  lutEntry: null,
  digits: (raw) => code`(((uint32_t)(${raw}) & 0xfu) | (((uint32_t)(${raw}) >> 4) & 0xfu) << 16)`,
  tritIndex: (j, p, h) => code`(4 * (${j}) + 2 * (${h}) + (${p}))`,
};

export const CUDA_PACKINGS = {
  trit5: {
    unit: (G) => (CODE_PACKINGS.trit5.bytesPerGroup(G) % 2 === 0 ? TRIT5_PAIR : TRIT5_BYTE),
    hostTrit: (g, k) => code`((int)((${g})[(${k}) / 5] / twlac_pow3[(${k}) % 5] % 3) - 1)`,
    randomByte: (h) => code`(uint8_t)((${h}) % 243u)`,
  },
  bit2: {
    unit: (G) => (CODE_PACKINGS.bit2.bytesPerGroup(G) % 4 === 0 ? BIT2_WORD : BIT2_BYTE),
    hostTrit: (g, k) => code`((int)(((${g})[(${k}) >> 2] >> (2 * ((${k}) & 3))) & 3) - 2)`,
    randomByte: (h) => code`(uint8_t)(((${h}) % 3u + 1u) | (((${h}) >> 8) % 3u + 1u) << 2 | (((${h}) >> 16) % 3u + 1u) << 4 | (((${h}) >> 24) % 3u + 1u) << 6)`,
  },
} satisfies Record<CodePacking, CudaPackingDecl>;
