// Prefill GEMM of the lattice formats (`_lat`, formats/ternary.ts) on Hopper's warpgroup
// tensor cores (wgmma, sm_90a). In a lattice format every scale s and shift z of weight row n
// is an integer multiple of the row's unit u_n = 2^e, with |s| + |z| ≤ 127 units, so each
// weight s·t + z is u_n times an int8 w = s'·t + z'. With u8 activation codes q and per-token
// (sa, za):
//   y[m, n] = sa·u_n·(D − za·E),   D = Σ_k q·w over the whole row (int32, tensor cores),
//                                  E = Σ_k w (per feature, int32).
// u_n and E depend on the weights only: the host program computes them once after loading
// (kernels/lattice-rows.ts) and the kernel reads them (`rows`, one int2 a feature).
// So there is no per-group fold (gemm-wgmma.ts spends 4 instructions per output per group on
// it): the accumulators stay with the tensor cores for all of K.
//
// The weights are wgmma's A operand, expanded straight into registers (the per-(feature,
// group) byte table below), and the activation tile is its B operand in shared memory. The
// expanded weights never touch shared memory, and each activation byte the tensor cores read
// serves 64 features, so shared-memory traffic per MAC is well below that of the layout with
// the weights as the shared-memory operand (docs/performance.md, prefill GEMM).
//
// Block: 128 features × BT tokens (BT = 128 or 256), two warpgroups of 64 features (256
// threads); each issues wgmma.m64n128k32.s32.s8.u8 (BT/128 a k32 step) into 64·BT/128 int32
// registers. A thread's A fragment is features f0 = lane/4 and f0 + 8 of its warp's 16, at
// k = 4·(lane%4) … + 3 and + 16 of each k32 step (the m16n8k32 layout): byte lane%4 of every
// code word of the two rows. The quad's four lanes read the same 32 code bytes of a row from
// shared memory and each gathers its byte of 4 words with 3 PRMT before the table expansion.
// K step g: barrier → cp.async group g + AHEAD → issue wgmma(g) from register set g % 2 →
// wait for wgmma(g − 1) → expand group g + 1 into set (g + 1) % 2 → fence.proxy.async.
import { Code, code, join } from '../../common/fragments.ts';
import { CUDA_ARCHS } from '../arch.ts';
import { defineKernel, type CudaKernel } from '../kernel.ts';
import { gemmArgs, gemmShapeUnsupported, gemmStore1, GEMM_GROUP as G, type GemmShape } from './gemm.ts';
import { pin, wgmmaHelpers, wgmmaLoadStage } from './gemm-wgmma.ts';

/** \`n_expand(w, table)\`: 16 bit2 codes (byte b of w holds codes 4b…4b+3, code j at bits 2j)
 *  → 16 int8 weights in k order, word b = table[codes of byte b]: s01/s23 byte b holds codes
 *  (4b, 4b+1)/(4b+2, 4b+3) as nibbles, one PRMT joins byte b of both into the selector of
 *  word b, a second looks it up (13 ALU ops). The table's bytes 1, 2, 3 are the weights of
 *  codes 1, 2, 3 (t = −1, 0, 1). */
function latticeExpand(n: Code): Code {
  return code`__device__ __forceinline__ uint4 ${n}_expand(uint32_t w, uint32_t table) {
  const uint32_t s01 = (w & 0x03030303u) | ((w << 2) & 0x30303030u);
  const uint32_t s23 = ((w >> 4) & 0x03030303u) | ((w >> 2) & 0x30303030u);
  // the lookups by PRMT directly: the selectors' nibbles are codes (0…3), so their sign bits are
  // clear, and __byte_perm's own masking of a variable selector (one LOP3 each) is not needed
  uint32_t r[4];
  const uint32_t sel[4] = {__byte_perm(s01, s23, 0x40), __byte_perm(s01, s23, 0x51), __byte_perm(s01, s23, 0x62), __byte_perm(s01, s23, 0x73)};
  #pragma unroll
  for (int i = 0; i < 4; ++i) asm("prmt.b32 %0, %1, 0, %2;" : "=r"(r[i]) : "r"(table), "r"(sel[i]));
  return make_uint4(r[0], r[1], r[2], r[3]);
}
`;
}

const BF = 128;
const THREADS = 256;

export interface GemmRsVariant {
  /** Tokens a block (wgmma n = 128, BT/128 instructions a k32 step). */
  bt: 128 | 256;
  /** Activation ring slots (a slot is reloaded two steps after the wgmma that read it). */
  stages: number;
  /** Split the tiles of the last partial wave into two tiles of this half-height variant each,
   *  when the halves fit in one wave (gemmRsTailSplit): the wave ends sooner, as a half-height
   *  tile takes less time than a whole one. */
  tail?: 't128d';
  /** The two warpgroups run their K loops apart: no block barrier a step, but a full and an
   *  empty mbarrier a ring slot (cp.async.mbarrier.arrive.noinc by every thread when its copies
   *  of the slot land; each warp's arrival once its wgmma that read the slot is done), so that
   *  one warpgroup can expand while the other issues. */
  decoupled?: boolean;
}
/** The variants the runtime runs (t128d only as t256sd's half-height tail). Variants measured
 *  and dropped are in docs/performance.md. */
export const GEMM_RS_VARIANTS = {
  t128: { bt: 128, stages: 6 },
  t128d: { bt: 128, stages: 6, decoupled: true },
  t256sd: { bt: 256, stages: 5, tail: 't128d', decoupled: true },
} as const satisfies Record<string, GemmRsVariant>;
export type GemmRsVariantName = keyof typeof GEMM_RS_VARIANTS;
/** The runtime's variants of a linear, each with the token count beyond which it runs (its
 *  forwards take at most TWLAC_MAX_CHUNK = 2048 tokens). 128-token tiles by default: at small
 *  N and few tokens, 256-token tiles leave most SMs idle. From N = 8192 the 256-token tiles
 *  fill the GPU beyond 256 tokens; below it, beyond 512 tokens. The 256-token tiles run as
 *  t256sd: a short last wave split into half-height tiles, and the warpgroups synchronised by
 *  a ring slot's mbarriers rather than a block barrier a K step. */
export function gemmRsRuntimeVariants(n: number): { variant: GemmRsVariantName; beyondT: number }[] {
  return [{ variant: 't256sd', beyondT: n >= 8192 ? 256 : 512 }, { variant: 't128', beyondT: 0 }];
}
/** Tiles of a tail-split variant's last wave that run as two half-height tiles: all of the
 *  last partial wave's, when their halves fit in one wave of `sms` blocks (the launcher's rule). */
export function gemmRsTailSplit(tiles: number, sms: number): number {
  const r = tiles % sms;
  return r > 0 && 2 * r <= sms ? r : 0;
}
/** The variant the runtime uses at small token counts (every linear has it). */
export const GEMM_RS_RUNTIME: GemmRsVariantName = 't128';

/** Why a linear cannot use the register-weight lattice GEMM, or null. */
export function gemmWgmmaRsUnsupported(s: Pick<GemmShape, 'format' | 'k' | 'n' | 'arch'>): string | null {
  if (!s.format.lattice) return `format ${s.format.id} is not a lattice format`;
  if (CUDA_ARCHS[s.arch].int8Mma !== 'wgmma.m64nNk32.s8') return `${s.arch} has no wgmma`;
  return gemmShapeUnsupported(s, BF, 'the tile width');
}

function gemmWgmmaRsKernelName(s: GemmShape, variant: GemmRsVariantName): string {
  return `gemm_wgr_${variant}_${s.format.id}_n${s.n}_k${s.k}_${s.arch}${s.out === 'f32' ? '_f32' : ''}`;
}

export function gemmWgmmaRsPlan(s: GemmShape, variant: GemmRsVariantName) {
  const why = gemmWgmmaRsUnsupported(s);
  if (why) throw new Error(`CUDA register-weight prefill GEMM: ${why}`);
  const v: GemmRsVariant = GEMM_RS_VARIANTS[variant];
  const ahead = v.stages - 2; // after the barrier of step g, wgmma(g − 2) is done in both warpgroups
  if (ahead < 1) throw new Error(`CUDA register-weight prefill GEMM: ${v.stages} slots leave no group in flight`);
  const codeBytes = G / 4;
  const slot = v.bt * G + BF * codeBytes; // activation rows (128-byte swizzled), then codes
  if (slot % 1024) throw new Error('CUDA register-weight prefill GEMM: slots must keep the 1024-byte swizzle alignment');
  const smemBytes = 1024 + v.stages * slot;
  const arch = CUDA_ARCHS[s.arch];
  if (smemBytes > arch.maxSmemPerBlock) throw new Error(`CUDA register-weight prefill GEMM: ${smemBytes} B of shared memory exceed ${s.arch}'s ${arch.maxSmemPerBlock}`);
  if (v.tail) {
    const t: GemmRsVariant = GEMM_RS_VARIANTS[v.tail];
    if (!!t.decoupled !== !!v.decoupled) throw new Error(`CUDA register-weight prefill GEMM: ${variant} and its tail ${v.tail} synchronise differently`);
    if (2 * t.bt !== v.bt || t.tail) throw new Error(`CUDA register-weight prefill GEMM: ${v.tail} is not a half-height tile`);
    if (gemmWgmmaRsPlan(s, v.tail).smemBytes > smemBytes) throw new Error(`CUDA register-weight prefill GEMM: the ${v.tail} tail needs more shared memory than ${variant}`);
  }
  return { ...v, ahead, codeBytes, slot, cOff: v.bt * G, smemBytes, kt: s.k / G, rowBytes: (s.k / G) * codeBytes };
}

/** wgmma.m64n128k32 s8 (weights, registers a[0..3]) × u8 (activations) → s32 into acc[0..63]. */
function wgmmaRs(acc: string, a: string, descB: Code): Code {
  const r = 64;
  const regs = Array.from({ length: r }, (_, i) => `%${i}`).join(', ');
  const outs = Array.from({ length: r }, (_, i) => `"+r"(${acc}[${i}])`).join(', ');
  return new Code(`asm volatile("{\\n.reg .pred p;\\nsetp.ne.b32 p, 1, 0;\\n"
      "wgmma.mma_async.sync.aligned.m64n128k32.s32.s8.u8 {${regs}}, {%${r}, %${r + 1}, %${r + 2}, %${r + 3}}, %${r + 4}, p;\\n}\\n"
      : ${outs}
      : "r"(${a}[0]), "r"(${a}[1]), "r"(${a}[2]), "r"(${a}[3]), "l"(${descB.text}));`);
}

/** One tile's work: 128 features from n0, BT tokens from m0 (C++ expressions), in the kernel
 *  named `n` (its helpers). */
function rsTileBody(s: GemmShape, variant: GemmRsVariantName, n: Code, n0: Code, m0: Code): Code {
  const p = gemmWgmmaRsPlan(s, variant);
  const { bt: BT, stages: SA, ahead: AHEAD, slot, cOff: C_OFF, kt: KT, rowBytes, codeBytes: CB, decoupled: D = false } = p;
  const H = BT / BF; // 128-token halves of the tile
  // accumulator arrays: one a 128-token half, token half h, register i (0…63): accum<h>[i]
  const accSets = H;
  const accLen = 64;
  const accAt = (h: number, i: Code) => code`accum${h}[${i}]`;
  const K = s.k;
  const shiftAt = (row: string, grp: string) => (s.format.shift ? new Code(`__half2float(shifts[${row} + ${grp}])`) : new Code('0.f'));
  // issue step g's wgmmas from register set `set`
  const issue = (set: string) =>
    join(
      [0, 1, 2, 3].flatMap((st) => Array.from({ length: H }, (_, h) => wgmmaRs(`accum${h}`, `${set}[${st}]`, new Code(`${n}_desc(sa + ${h * BF * G}u) + ${2 * st}`)))),
      '\n      ',
    );
  // cp.async of group g + AHEAD into the slot wgmma(g − 2) read (free after the barrier of step g)
  const mbarWait = (bar: Code, parity: Code) => code`{ uint32_t done_ = 0; while (!done_) asm volatile("{ .reg .pred p; mbarrier.try_wait.parity.shared::cta.b64 p, [%1], %2; selp.u32 %0, 1, 0, p; }" : "=r"(done_) : "r"(${bar}), "r"(${parity}) : "memory"); }`;
  const load = D
    ? code`if (g + ${AHEAD} < ${KT}) {
      // slot sl last held group g + ${AHEAD} − ${SA}: wait until every warp's wgmma that read it is done
      if (g + ${AHEAD} >= ${SA}) ${mbarWait(code`emptyb + 8 * sl`, code`phl ^ 1`)}
      load_stage(sl, g + ${AHEAD});
      asm volatile("cp.async.mbarrier.arrive.noinc.shared::cta.b64 [%0];" :: "r"(fullb + 8 * sl) : "memory");
    }`
    : code`if (g + ${AHEAD} < ${KT}) load_stage(sl, g + ${AHEAD});
    asm volatile("cp.async.commit_group;" ::: "memory");`;
  // With an even group count, scales and shifts come two groups a load (half2, aligned): pa
  // holds groups (g0, g0 + 1) of the iteration's first step g0, pb (g0 + 2, g0 + 3); the first
  // step expands g0 + 1 from pa's high halves, the second g0 + 2 from pb's low halves, then pb
  // moves to pa and the pair (g0 + 4, g0 + 5) is loaded, two steps before its first use.
  const pairs = KT % 2 === 0;
  const loadPair = (reg: string, grp: string) =>
    code`${new Code(reg)}[0] = __ldg(reinterpret_cast<const unsigned*>(scales + cs0 + ${new Code(grp)})); ${new Code(reg)}[2] = __ldg(reinterpret_cast<const unsigned*>(scales + cs1 + ${new Code(grp)}));${
      s.format.shift
        ? code` ${new Code(reg)}[1] = __ldg(reinterpret_cast<const unsigned*>(shifts + cs0 + ${new Code(grp)})); ${new Code(reg)}[3] = __ldg(reinterpret_cast<const unsigned*>(shifts + cs1 + ${new Code(grp)}));`
        : code``
    }`;
  const tablesFromPair = (reg: string, shift: number) => {
    const h = (i: number) => new Code(`__half2float(__ushort_as_half((unsigned short)(${reg}[${i}] >> ${shift})))`);
    return code`table_of(${h(0)}, ${s.format.shift ? h(1) : new Code('0.f')}, iu0), table_of(${h(2)}, ${s.format.shift ? h(3) : new Code('0.f')}, iu1)`;
  };
  // one K step g with register sets cur (this step) and nxt (the next); second: the
  // iteration's second step
  // ring slots: sg = g % SA (read by wgmma(g)), sl = (g + AHEAD) % SA (loaded at step g), kept
  // as counters (a modulo by a non-power of two costs a dozen instructions a use)
  const step = (cur: string, nxt: string, second: boolean) => code`{
    const int sg1 = sg + 1 == ${SA} ? 0 : sg + 1;
    ${D ? code`` : code`__syncthreads(); // A(g) landed and fenced in every thread; wgmma(g − 2) done in both warpgroups
    `}${load}
    {
      const uint32_t sa = base + (uint32_t)(sg * ${slot});
      asm volatile("wgmma.fence.sync.aligned;" ::: "memory");
      ${issue(cur)}
      asm volatile("wgmma.commit_group.sync.aligned;" ::: "memory");
    }
    asm volatile("wgmma.wait_group.sync.aligned 1;" ::: "memory");
    ${
      D
        ? code`// this warp's wgmma(g − 1) is done: slot sp is free as far as it is concerned
    if (g >= 1 && lane == 0) asm volatile("{ .reg .b64 st; mbarrier.arrive.shared::cta.b64 st, [%0]; }" :: "r"(emptyb + 8 * sp) : "memory");
    `
        : code``
    }if (g + 1 < ${KT}) {
      ${D ? mbarWait(code`fullb + 8 * sg1`, code`ph ^ (sg1 == 0 ? 1 : 0)`) : code`asm volatile("cp.async.wait_group ${new Code(String(AHEAD - 1))};" ::: "memory");`}
      ${
        pairs
          ? code`expand(sg1, ${new Code(nxt)}, ${tablesFromPair(second ? 'pb' : 'pa', second ? 0 : 16)});
      asm volatile("fence.proxy.async.shared::cta;" ::: "memory");
      ${second ? code`#pragma unroll
      for (int i = 0; i < 4; ++i) pa[i] = pb[i];
      if (g + 3 < ${KT}) { ${loadPair('pb', 'g + 3')} }` : code``}`
          : code`expand(sg1, ${new Code(nxt)}, table_of(sc0a, sh0a, iu0), table_of(sc1a, sh1a, iu1));
      asm volatile("fence.proxy.async.shared::cta;" ::: "memory");
      sc0a = sc0b; sh0a = sh0b; sc1a = sc1b; sh1a = sh1b;
      if (g + 3 < ${KT}) { sc0b = __half2float(scales[cs0 + g + 3]); sh0b = ${shiftAt('cs0', 'g + 3')}; sc1b = __half2float(scales[cs1 + g + 3]); sh1b = ${shiftAt('cs1', 'g + 3')}; }`
      }
    }
    ${D ? code`sp = sg;
    if (sg1 == 0) ph ^= 1;
    if (sl + 1 == ${SA}) phl ^= 1;
    ` : code``}sg = sg1;
    sl = sl + 1 == ${SA} ? 0 : sl + 1;
  }`;
  return code`  extern __shared__ __align__(1024) unsigned char smem_raw[];
  const uint32_t raw = (uint32_t)__cvta_generic_to_shared(smem_raw);
  const uint32_t base = (raw + 1023u) & ~1023u; // swizzled tiles need 1024-byte alignment
  unsigned char* sm = smem_raw + (base - raw);
  const int tid = threadIdx.x, warp = tid >> 5, lane = tid & 31, q = lane & 3;
  const int f0 = (warp >> 2) * 64 + (warp & 3) * 16 + (lane >> 2); // features f0 and f0 + 8 of the tile
  const int n0 = ${n0}, m0 = ${m0};
  const int er = tid >> 1, eh = tid & 1; // this thread's codes to load: feature er, bytes 16·eh…
  const size_t cs0 = (size_t)(n0 + f0) * ${KT}, cs1 = cs0 + 8 * ${KT};
  ${wgmmaLoadStage(n, { rows: BT, k: K, slotBytes: slot, cOff: C_OFF, codeBytes: CB, rowBytes, oneAddress: D })}
  ${
    D
      ? code`// full[s]: the 256 threads' copies of the slot landed; empty[s]: the 8 warps' wgmma that read it done
  __shared__ __align__(8) uint64_t ${n}_full[${SA}], ${n}_empty[${SA}];
  const uint32_t fullb = (uint32_t)__cvta_generic_to_shared(${n}_full), emptyb = (uint32_t)__cvta_generic_to_shared(${n}_empty);
  if (tid == 0) {
    #pragma unroll
    for (int i = 0; i < ${SA}; ++i) {
      asm volatile("mbarrier.init.shared::cta.b64 [%0], ${new Code(String(THREADS))};" :: "r"(fullb + 8 * i) : "memory");
      asm volatile("mbarrier.init.shared::cta.b64 [%0], ${new Code(String(THREADS / 32))};" :: "r"(emptyb + 8 * i) : "memory");
    }
    asm volatile("fence.mbarrier_init.release.cluster;" ::: "memory");
  }
  __syncthreads();
  #pragma unroll
  for (int st = 0; st < ${AHEAD}; ++st)
    if (st < ${KT}) {
      load_stage(st, st);
      asm volatile("cp.async.mbarrier.arrive.noinc.shared::cta.b64 [%0];" :: "r"(fullb + 8 * st) : "memory");
    }`
      : code`#pragma unroll
  for (int st = 0; st < ${AHEAD}; ++st) {
    if (st < ${KT}) load_stage(st, st);
    asm volatile("cp.async.commit_group;" ::: "memory");
  }`
  }
  ${
    pairs
      ? code`// scales and shifts (half2 bits) of rows f0 and f0 + 8: [sc f0, sh f0, sc f0+8, sh f0+8]
  unsigned pa[4] = {0u, 0u, 0u, 0u}, pb[4] = {0u, 0u, 0u, 0u};
  ${loadPair('pa', '0')}
  if (${KT} > 2) { ${loadPair('pb', '2')} }`
      : code`// scales and shifts of rows f0 (0) and f0 + 8 (1) for groups g + 1 (a) and g + 2 (b)
  float sc0a = 0.f, sh0a = 0.f, sc1a = 0.f, sh1a = 0.f, sc0b = 0.f, sh0b = 0.f, sc1b = 0.f, sh1b = 0.f;
  if (${KT} > 1) { sc0a = __half2float(scales[cs0 + 1]); sh0a = ${shiftAt('cs0', '1')}; sc1a = __half2float(scales[cs1 + 1]); sh1a = ${shiftAt('cs1', '1')}; }
  if (${KT} > 2) { sc0b = __half2float(scales[cs0 + 2]); sh0b = ${shiftAt('cs0', '2')}; sc1b = __half2float(scales[cs1 + 2]); sh1b = ${shiftAt('cs1', '2')}; }`
  }
  // rows f0 and f0 + 8: E = Σ_k w and the lattice unit u (float bits), computed at load (lattice-rows.ts)
  const int2 ri0 = __ldg(rows + n0 + f0), ri1 = __ldg(rows + n0 + f0 + 8);
  const int e0 = ri0.x, e1 = ri1.x;
  const float u0 = __int_as_float(ri0.y), u1 = __int_as_float(ri1.y);
  const float iu0 = 1.f / u0, iu1 = 1.f / u1; // exact: powers of two
  // byte table of a group: bytes 1, 2, 3 = z' − s', z', z' + s' (codes t + 2)
  auto table_of = [](float sc, float sh, float iu) -> uint32_t {
    // exact integers below 2^22: the 1.5·2^23 bias leaves them in the low mantissa bits (no F2I)
    const int si = __float_as_int(fmaf(sc, iu, 12582912.f)) - 0x4B400000, zi = __float_as_int(fmaf(sh, iu, 12582912.f)) - 0x4B400000;
    // bytes [0, z' − s', z', z' + s'] by two byte permutes
    return __byte_perm(__byte_perm((uint32_t)(zi - si) << 8, (uint32_t)zi, 0x0410), (uint32_t)(zi + si), 0x4210);
  };
  const uint32_t selq = (uint32_t)q | ((uint32_t)(4 + q) << 4); // byte q of a word pair
  // A fragments of group grp into frag[4 steps][a0 a1 a2 a3]: a0/a2 row f0 at k 4q… and 16 + 4q…
  // of the step (bytes q of code words 2·st and 2·st + 1), a1/a3 the same of row f0 + 8
  auto expand = [&](int slotE, uint32_t (&frag)[4][4], uint32_t tb0, uint32_t tb1) {
    const unsigned char* cb = sm + slotE * ${slot} + ${C_OFF};
    #pragma unroll
    for (int r = 0; r < 2; ++r) {
      const uint4 lo = *reinterpret_cast<const uint4*>(cb + (f0 + 8 * r) * ${CB});
      const uint4 hi = *reinterpret_cast<const uint4*>(cb + (f0 + 8 * r) * ${CB} + 16);
      const uint32_t xlo = __byte_perm(__byte_perm(lo.x, lo.y, selq), __byte_perm(lo.z, lo.w, selq), 0x5410);
      const uint32_t xhi = __byte_perm(__byte_perm(hi.x, hi.y, selq), __byte_perm(hi.z, hi.w, selq), 0x5410);
      const uint4 wl = ${n}_expand(xlo, r ? tb1 : tb0), wh = ${n}_expand(xhi, r ? tb1 : tb0);
      frag[0][r] = wl.x; frag[0][2 + r] = wl.y; frag[1][r] = wl.z; frag[1][2 + r] = wl.w;
      frag[2][r] = wh.x; frag[2][2 + r] = wh.y; frag[3][r] = wh.z; frag[3][2 + r] = wh.w;
    }
  };
  ${join(Array.from({ length: accSets }, (_, h) => code`int accum${h}[${accLen}];
  #pragma unroll
  for (int i = 0; i < ${accLen}; ++i) accum${h}[i] = 0;`))}
  uint32_t fa[4][4], fb[4][4];
  ${D ? mbarWait(code`fullb`, code`0u`) : code`asm volatile("cp.async.wait_group ${new Code(String(AHEAD - 1))};" ::: "memory");`}
  expand(0, fa, ${pairs ? tablesFromPair('pa', 0) : code`table_of(__half2float(scales[cs0]), ${shiftAt('cs0', '0')}, iu0), table_of(__half2float(scales[cs1]), ${shiftAt('cs1', '0')}, iu1)`});
  asm volatile("fence.proxy.async.shared::cta;" ::: "memory");
  // two K steps an iteration, so that each register set has a fixed name. The loop's unrolling
  // is nvcc's own (a \`#pragma unroll 1\` measured no faster).
  int sg = 0, sl = ${AHEAD % SA};${D ? code`
  int sp = 0, ph = 0, phl = 0; // slot of g − 1; parities of the uses of sg (g / ${SA}) and of sl ((g + ${AHEAD}) / ${SA})` : code``}
  for (int g0 = 0; g0 < ${KT}; g0 += 2) {
    { const int g = g0; ${step('fa', 'fb', false)} }
    if (g0 + 1 < ${KT}) { const int g = g0 + 1; ${step('fb', 'fa', true)} }
  }
  asm volatile("wgmma.wait_group.sync.aligned 0;" ::: "memory");
  ${join(Array.from({ length: accSets }, (_, h) => pin(`accum${h}`, accLen)))}
  // y = sa·u·(D − za·E); za's integer part in int32 (exact, no cancellation), any fraction after
  ${join(
    Array.from(
      { length: H },
      (_, h) => code`#pragma unroll
  for (int j = 0; j < 16; ++j) {
    #pragma unroll
    for (int c = 0; c < 2; ++c) {
      const int row = m0 + ${h * BF} + 8 * j + 2 * q + c;
      if (row < T) {
        const float sq = ap[2 * row], zq = ap[2 * row + 1];
        const float zr = rintf(zq), zf = zq - zr;
        const int zi = (int)zr;
        ${gemmStore1(s, code`row`, code`n0 + f0`, code`sq * u0 * ((float)(${accAt(h, code`4 * j + c`)} - zi * e0) - zf * (float)e0)`)}
        ${gemmStore1(s, code`row`, code`n0 + f0 + 8`, code`sq * u1 * ((float)(${accAt(h, code`4 * j + 2 + c`)} - zi * e1) - zf * (float)e1)`)}
      }
    }
  }`,
    ),
  )}`;
}

export function gemmWgmmaRsKernel(s: GemmShape, variant: GemmRsVariantName): CudaKernel {
  const p = gemmWgmmaRsPlan(s, variant);
  const { bt: BT, smemBytes } = p;
  const name = gemmWgmmaRsKernelName(s, variant);
  const n = new Code(name);
  const NT = s.n / BF; // feature tiles
  let body: Code;
  let grid: readonly [Code, Code, Code];
  let prelude = code`${wgmmaHelpers(n)}
${latticeExpand(n)}`;
  if (p.tail) {
    // 1-D grid over the BT-token tiles (features fastest), the last `split` of them as two
    // half-height tiles each (gemmRsTailSplit); the block count tells the kernel the split
    body = code`  int tn0 = 0, tm0 = 0;
  const int bt = ${n}_tile((int)blockIdx.x, (int)gridDim.x, T, &tn0, &tm0);
  if (bt == ${BT}) {
${rsTileBody(s, variant, n, code`tn0`, code`tm0`)}
  } else if (bt == ${BT / 2}) {
${rsTileBody(s, p.tail, n, code`tn0`, code`tm0`)}
  }`;
    prelude = code`${prelude}
/** Blocks of ${n} for T tokens on \`sms\` SMs: its ${BT}-token tiles, plus one for each tile of
 *  the last partial wave split in two, when the halves fit in one wave. */
__host__ __device__ inline int ${n}_blocks_for(int T, int sms) {
  const int tiles = ${NT} * ((T + ${BT - 1}) / ${BT});
  const int r = tiles % sms; // tiles of the last wave
  return tiles + (r > 0 && 2 * r <= sms ? r : 0);
}
/** The tile of block b of \`blocks\`: its first feature n0 and token m0, and its height (${BT},
 *  ${BT / 2} for the halves of the split tiles, the last ones, or 0 for a half beyond T). */
__host__ __device__ inline int ${n}_tile(int b, int blocks, int T, int* n0, int* m0) {
  const int tiles = ${NT} * ((T + ${BT - 1}) / ${BT});
  const int full = tiles - (blocks - tiles);
  if (b < full) { *n0 = (b % ${NT}) * ${BF}; *m0 = (b / ${NT}) * ${BT}; return ${BT}; }
  const int j = b - full, t = full + (j >> 1);
  *n0 = (t % ${NT}) * ${BF};
  *m0 = (t / ${NT}) * ${BT} + (j & 1) * ${BT / 2};
  return *m0 < T ? ${BT / 2} : 0;
}`;
    grid = [code`${n}_blocks_for(T, twlac_sm_count())`, code`1`, code`1`];
  } else {
    body = rsTileBody(s, variant, n, code`blockIdx.x * ${BF}`, code`blockIdx.y * ${BT}`);
    grid = [code`${NT}`, code`(T + ${BT - 1}) / ${BT}`, code`1`];
  }
  return defineKernel({
    name,
    params: { format: s.format.id, n: s.n, k: s.k, arch: s.arch, act: 'u8', out: s.out ?? 'f16', bf: BF, variant, mma: 'wgmma.m64n128k32.s8.u8.rs', ...(p.tail ? { tail: p.tail } : {}), ...(p.decoupled ? { sync: 'mbarriers' } : {}) },
    args: gemmArgs(s, true),
    block: THREADS,
    grid,
    smemBytes,
    prelude,
    body,
  });
}
