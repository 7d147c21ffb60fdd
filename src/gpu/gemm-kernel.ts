// The one fp32 GEMM the compiler's heavy linear algebra runs on the GPU, as data:
//
//   C[m, n] ← β·C[m, n] + α·Σ_k A(m, k)·B(k, n),   m < M, n < N, k < K
//
// with A(m, k) = a[offA + m·lda + k] (or a[offA + k·lda + m] when `transA`) and likewise B
// (b[offB + k·ldb + n], or b[offB + n·ldb + k] when `transB`); C is row-major with stride ldc.
// Its three uses (src/gpu/ops.ts):
//   Gram       H += XᵀX          transA, X [tokens × width]; `upper`: only tiles on or above
//                                the diagonal are computed (H is symmetric; the host mirrors);
//   matmul     Y = X·Wᵀ or X·W   a calibration forward's linear;
//   GPTQ       W_rest −= Uᵀ·E    the rank-B update of the columns after a block (α = −1, β = 1).
//
// Tiling: a workgroup of 16×16 invocations owns a 64×64 tile of C, each invocation a 4×4
// register block at rows ty + 16i and columns tx + 16j (so neighbouring invocations touch
// neighbouring addresses). K is walked 16 at a time through workgroup memory; loads are
// laid out along the operand's contiguous axis. Every load and store is bounds-checked, so
// M, N and K need not be multiples of the tile. Each invocation accumulates its dot products
// sequentially over k in fp32: entrywise |Ĉ − C| ≤ γ_{K+2}·(|β||C| + |α|·|A||B|), γ_n = nu/(1−nu),
// u = 2⁻²⁴, the bound the tests check.
import { code, Code, ident, join } from '../codegen/common/fragments.ts';

/** Tile edge of C per workgroup and the K step. */
export const GEMM_TILE = 64;
export const GEMM_K_STEP = 16;

export interface GemmVariant {
  transA: boolean;
  transB: boolean;
  /** Skip tiles strictly below the diagonal (symmetric results, M = N). */
  upper: boolean;
}

/** The uniform's fields in order (u32 unless named in GEMM_FLOAT_FIELDS). */
export const GEMM_UNIFORM = ['m', 'n', 'k', 'lda', 'ldb', 'ldc', 'offA', 'offB', 'offC', 'alpha', 'beta', 'pad'] as const;
export type GemmUniform = Record<(typeof GEMM_UNIFORM)[number], number>;
const GEMM_FLOAT_FIELDS = new Set(['alpha', 'beta']);

export interface GemmKernel {
  name: string;
  cacheKey: string;
  /** Storage bindings in order: a (read), b (read), c (read_write); the uniform follows. */
  source(): string;
  /** Workgroups for an M×N result. */
  dispatch(m: number, n: number): [number, number, number];
  /** The uniform's bytes. */
  uniform(u: GemmUniform): Uint32Array;
}

export function gemmKernel(v: GemmVariant): GemmKernel {
  const name = `gemm_${v.transA ? 't' : 'n'}${v.transB ? 't' : 'n'}${v.upper ? '_upper' : ''}`;
  return {
    name,
    cacheKey: `${name}(tile=${GEMM_TILE},k=${GEMM_K_STEP})`,
    source: () => gemmSource(v, name).text,
    dispatch: (m, n) => [Math.ceil(n / GEMM_TILE), Math.ceil(m / GEMM_TILE), 1],
    uniform: (u) => {
      const out = new Uint32Array(GEMM_UNIFORM.length);
      const f = new Float32Array(out.buffer);
      GEMM_UNIFORM.forEach((k, i) => {
        if (GEMM_FLOAT_FIELDS.has(k)) f[i] = u[k];
        else {
          if (!Number.isInteger(u[k]) || u[k] < 0 || u[k] > 0xffffffff) throw new Error(`${name}: ${k} = ${u[k]} is not a u32`);
          out[i] = u[k];
        }
      });
      return out;
    },
  };
}

/** A tile load of one operand: 16×64 values into `dst[kk·64 + i]`, 4 per invocation. `along`
 *  is the operand's contiguous axis: 'tile' (the M or N index) or 'k'. */
function tileLoad(dst: string, src: string, off: string, ld: string, tile0: string, limit: string, along: 'tile' | 'k'): Code {
  const idx = along === 'tile' ? code`let kk = e / 64u; let i = e % 64u;` : code`let i = e / 16u; let kk = e % 16u;`;
  const addr = along === 'tile' ? code`s.${ident(off)} + (k0 + kk) * s.${ident(ld)} + ${ident(tile0)} + i` : code`s.${ident(off)} + (${ident(tile0)} + i) * s.${ident(ld)} + k0 + kk`;
  return code`for (var r = 0u; r < 4u; r++) {
    let e = lid + r * 256u;
    ${idx}
    var val = 0.0;
    if (${ident(tile0)} + i < s.${ident(limit)} && k0 + kk < s.k) { val = ${ident(src)}[${addr}]; }
    ${ident(dst)}[kk * 64u + i] = val;
  }`;
}

function gemmSource(v: GemmVariant, name: string): Code {
  const fields = GEMM_UNIFORM.map((f) => code`${ident(f)}: ${new Code(GEMM_FLOAT_FIELDS.has(f) ? 'f32' : 'u32')},`);
  const skip = v.upper ? code`if (wid.y > wid.x) { return; }` : code``;
  return code`// twlac ${ident(name)}: C = beta*C + alpha*op(A)*op(B), 64x64 tiles
struct Shape { ${join(fields, ' ')} }
@group(0) @binding(0) var<storage, read> a: array<f32>;
@group(0) @binding(1) var<storage, read> b: array<f32>;
@group(0) @binding(2) var<storage, read_write> c: array<f32>;
@group(0) @binding(3) var<uniform> s: Shape;
var<workgroup> at: array<f32, 1024>;
var<workgroup> bt: array<f32, 1024>;
@compute @workgroup_size(16, 16)
fn main(@builtin(workgroup_id) wid: vec3u, @builtin(local_invocation_id) lid3: vec3u, @builtin(local_invocation_index) lid: u32) {
  ${skip}
  let m0 = wid.y * 64u;
  let n0 = wid.x * 64u;
  var acc: array<f32, 16>;
  for (var k0 = 0u; k0 < s.k; k0 += 16u) {
    ${tileLoad('at', 'a', 'offA', 'lda', 'm0', 'm', v.transA ? 'tile' : 'k')}
    ${tileLoad('bt', 'b', 'offB', 'ldb', 'n0', 'n', v.transB ? 'k' : 'tile')}
    workgroupBarrier();
    for (var kk = 0u; kk < 16u; kk++) {
      var av: array<f32, 4>;
      var bv: array<f32, 4>;
      for (var i = 0u; i < 4u; i++) {
        av[i] = at[kk * 64u + lid3.y + 16u * i];
        bv[i] = bt[kk * 64u + lid3.x + 16u * i];
      }
      for (var i = 0u; i < 4u; i++) {
        for (var j = 0u; j < 4u; j++) { acc[i * 4u + j] = fma(av[i], bv[j], acc[i * 4u + j]); }
      }
    }
    workgroupBarrier();
  }
  for (var i = 0u; i < 4u; i++) {
    let m = m0 + lid3.y + 16u * i;
    if (m >= s.m) { continue; }
    for (var j = 0u; j < 4u; j++) {
      let n = n0 + lid3.x + 16u * j;
      if (n >= s.n) { continue; }
      let at_c = s.offC + m * s.ldc + n;
      if (s.beta == 0.0) { c[at_c] = s.alpha * acc[i * 4u + j]; }
      else { c[at_c] = fma(s.alpha, acc[i * 4u + j], s.beta * c[at_c]); }
    }
  }
}
`;
}
