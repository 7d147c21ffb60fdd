// Load-time check of the lattice formats (`_lat`, formats/ternary.ts) in the CUDA host program:
// the int8 prefill GEMM of those formats (kernels/gemm-wgmma-rs.ts) rounds every scale and
// shift to its row's lattice unit, so a weights.bin whose values are off the lattice (edited, or
// written by another tool) would run with silently changed weights. The host program reads the
// scales and shifts of every lattice linear back after loading and refuses the file, naming the
// linear and the row. Plain C++ on fp16 bits (no CUDA headers), so that the tests compile it with
// g++ and compare it with the reference encoder's own rule (encodeTernary refuses such rows).
import { LATTICE_MAX, LATTICE_MIN_EXP } from '../../formats/ternary.ts';
import { Code, code } from '../common/fragments.ts';

/** `twlac_lattice_bad_row(sc, sh, rows, groups)`: the first row of fp16 scales/shifts
 *  [rows·groups] (sh may be null) with a value that is not finite or not an integer multiple of
 *  the row's lattice unit (latticeUnit of its largest |scale| + |shift|), or −1. */
export function latticeCheckFunctions(): Code {
  const minExp = new Code(String(LATTICE_MIN_EXP)); // fragments take non-negative integers only
  return code`#include <cmath>
static inline double twlac_half_value(uint16_t h) {
  const int e = (h >> 10) & 0x1f, m = h & 0x3ff;
  const double v = e == 0 ? std::ldexp((double)m, -24) : e == 31 ? (m ? NAN : INFINITY) : std::ldexp((double)(m | 0x400), e - 25);
  return (h & 0x8000) ? -v : v;
}
// formats/ternary.ts latticeUnit: the smallest power of two u ≥ 2^${minExp} with mx ≤ ${LATTICE_MAX}·u
// (the same rule as the lattice GEMM's load-time row constants, kernels/lattice-rows.ts)
static inline double twlac_lattice_unit(double mx) {
  int ex;
  std::frexp(mx, &ex); // mx in [2^(ex−1), 2^ex): 2^(ex−7) or its double is the smallest
  double u = std::ldexp(1.0, ex - 7);
  if (mx > ${LATTICE_MAX}.0 * u) u *= 2.0;
  return mx > 0 ? std::fmax(u, std::ldexp(1.0, ${minExp})) : std::ldexp(1.0, ${minExp});
}
static int twlac_lattice_bad_row(const uint16_t* sc, const uint16_t* sh, int rows, int groups) {
  for (int r = 0; r < rows; ++r) {
    double mx = 0;
    for (int g = 0; g < groups; ++g) {
      const double s = twlac_half_value(sc[(size_t)r * groups + g]), z = sh ? twlac_half_value(sh[(size_t)r * groups + g]) : 0.0;
      if (!std::isfinite(s) || !std::isfinite(z)) return r;
      mx = std::fmax(mx, std::fabs(s) + std::fabs(z));
    }
    const double u = twlac_lattice_unit(mx);
    for (int g = 0; g < groups; ++g) {
      const double s = twlac_half_value(sc[(size_t)r * groups + g]) / u, z = sh ? twlac_half_value(sh[(size_t)r * groups + g]) / u : 0.0;
      if (s != std::trunc(s) || z != std::trunc(z)) return r;
    }
  }
  return -1;
}`;
}
