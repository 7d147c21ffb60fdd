// WGSL kernels of the manifest's block program (src/artifact/manifest.ts), as data.
// Activations are f32 row-major [ntok, width]; `step` (pos0, ntok, row0) is the per-call
// uniform. Weights arrive as u32 words: fp16 values are unpacked with unpack2x16float (no
// shader-f16 needed), ternary codes are read a byte at a time and decoded through the
// per-packing table below.
//
// Linears compute y[m, n] = Σ_k W[n, k] x[m, k] (+ b[n]) with one thread per output row
// and a tile of TM tokens, so each weight byte is fetched and decoded once per TM tokens:
// TM = 1 is the decode GEMV, TM = 8 the prefill GEMM. For a ternary row,
//   y = Σ_g ( scale_g · Σ_{k∈g} t_k x_k + shift_g · Σ_{k∈g} x_k ).
import { CODE_PACKINGS, groupsPerRow, type CodePacking, type TernaryFormat } from '../../formats/ternary.ts';
import { isDefaultScale } from '../../program/block-program.ts';
import {
  Code,
  defineKernel,
  f32,
  join,
  NO_FEATURES,
  u32,
  wgsl,
  type Binding,
  type WgslFeatures,
  type WgslKernel,
} from './fragments.ts';

const WG = 64;

/** How WGSL decodes one packed byte of a code packing into trits. */
interface WgslPackingDecl {
  /** Trits per byte. */
  perByte: number;
  /** f32 expression of trit `i` of the byte held in `b` (a u32 in [0, 255]). */
  trit(b: Code, i: number): Code;
}

const POW3 = [1, 3, 9, 27, 81];

export const WGSL_PACKINGS = {
  trit5: { perByte: 5, trit: (b, i) => wgsl`(f32((${b} / ${u32(POW3[i])}) % 3u) - 1.0)` },
  bit2: { perByte: 4, trit: (b, i) => wgsl`(f32((${b} >> ${u32(2 * i)}) & 3u) - 2.0)` },
} satisfies Record<CodePacking, WgslPackingDecl>;

/** Word layout of a ternary linear's GPU buffer: codes, then scales, then shifts. */
export interface TernaryLayout {
  ng: number;
  bytesPerGroup: number;
  codeBytes: number;
  scaleWord0: number;
  shiftWord0: number;
  words: number;
}

export function ternaryLayout(f: TernaryFormat, rows: number, cols: number): TernaryLayout {
  const ng = groupsPerRow(f, cols);
  const bytesPerGroup = CODE_PACKINGS[f.packing].bytesPerGroup(f.group);
  if (bytesPerGroup !== Math.ceil(f.group / WGSL_PACKINGS[f.packing].perByte)) {
    throw new Error(`WGSL packing table disagrees with the format declaration of ${f.packing}`);
  }
  const codeBytes = rows * ng * bytesPerGroup;
  const scaleWord0 = Math.ceil(codeBytes / 4);
  const scaleWords = Math.ceil((rows * ng) / 2);
  const shiftWord0 = scaleWord0 + scaleWords;
  return { ng, bytesPerGroup, codeBytes, scaleWord0, shiftWord0, words: shiftWord0 + (f.shift ? scaleWords : 0) };
}

const f32buf = (name: string, access: Binding['access'] = 'read'): Binding => ({ name, elem: 'f32', access });
const u32buf = (name: string): Binding => ({ name, elem: 'u32', access: 'read' });

/** Workgroup reduction of `count` per-thread values `acc[i]` (sum or max). The result for
 *  value i is in red[i * WG] for every thread after the call's final barrier. */
function reduceDecl(count: number): Code {
  return wgsl`var<workgroup> red: array<f32, ${count * WG}>;`;
}

function reduce(count: number, acc: (i: Code) => Code, op: 'sum' | 'max', feats: WgslFeatures): Code {
  const combine = (a: Code, b: Code) => (op === 'sum' ? wgsl`${a} + ${b}` : wgsl`max(${a}, ${b})`);
  if (feats.subgroups) {
    const sgOp = op === 'sum' ? new Code('subgroupAdd') : new Code('subgroupMax');
    return wgsl`  for (var ri = 0u; ri < ${u32(count)}; ri++) {
    let sv = ${sgOp}(${acc(new Code('ri'))});
    if (sg_lane == 0u) { red[ri * ${u32(WG)} + lid / sg_size] = sv; }
  }
  workgroupBarrier();
  if (lid < ${u32(count)}) {
    var tot = red[lid * ${u32(WG)}];
    for (var si = 1u; si < ${u32(WG)} / sg_size; si++) { tot = ${combine(new Code('tot'), new Code(`red[lid * ${WG}u + si]`))}; }
    red[lid * ${u32(WG)}] = tot;
  }
  workgroupBarrier();`;
  }
  // Serial combine by `count` threads: as fast as a tree at WG = 64 on the adapters we
  // target, and far cheaper to compile on software ones.
  return wgsl`  for (var ri = 0u; ri < ${u32(count)}; ri++) { red[ri * ${u32(WG)} + lid] = ${acc(new Code('ri'))}; }
  workgroupBarrier();
  if (lid < ${u32(count)}) {
    var tot = red[lid * ${u32(WG)}];
    for (var si = 1u; si < ${u32(WG)}; si++) { tot = ${combine(new Code('tot'), new Code(`red[lid * ${WG}u + si]`))}; }
    red[lid * ${u32(WG)}] = tot;
  }
  workgroupBarrier();`;
}

const tileCount = (ntok: number, tm: number) => Math.ceil(ntok / tm);

/** Shared skeleton of the linears: one thread per output row and TM-token tile, so no
 *  barriers and no workgroup reductions (these dominate on software adapters, where a
 *  barrier is a fiber switch); the row's weight bytes are read once per tile. */
function rowKernel(o: {
  name: string;
  params: Record<string, string | number | boolean>;
  rows: number;
  cols: number;
  tm: number;
  bias: boolean;
  feats: WgslFeatures;
  module: Code;
  /** Walk row n, adding into acc[mm] for mm < mcount. */
  loop: Code;
}): WgslKernel {
  const { tm, rows, cols } = o;
  return defineKernel({
    name: o.name,
    params: { ...o.params, N: rows, K: cols, TM: tm, bias: o.bias },
    bindings: [u32buf('W'), f32buf('X'), ...(o.bias ? [f32buf('bias')] : []), f32buf('Y', 'read_write')],
    usesStep: true,
    workgroupSize: WG,
    features: o.feats,
    module: o.module,
    body: wgsl`  let n = wid.x * ${u32(WG)} + lid;
  let m0 = wid.y * ${u32(tm)};
  if (n >= ${u32(rows)} || m0 >= step.ntok) { return; }
  let mcount = min(${u32(tm)}, step.ntok - m0);
  var acc: array<f32, ${tm}>;
${o.loop}
  for (var mm = 0u; mm < mcount; mm++) {
    Y[(m0 + mm) * ${u32(rows)} + n] = acc[mm]${o.bias ? wgsl` + bias[n]` : wgsl``};
  }`,
    dispatch: (ntok) => [Math.ceil(rows / WG), tileCount(ntok, tm), 1],
  });
}

/** Ternary linear (GEMV at tm = 1, token-tiled GEMM at tm > 1). Bindings: W, X, [bias], Y, step. */
export function ternaryLinearKernel(f: TernaryFormat, rows: number, cols: number, tm: number, bias: boolean, feats: WgslFeatures = NO_FEATURES): WgslKernel {
  const L = ternaryLayout(f, rows, cols);
  const P = WGSL_PACKINGS[f.packing];
  const b = new Code('byte');
  const trits = Array.from({ length: P.perByte }, (_, i) => wgsl`      let t${i} = ${P.trit(b, i)};`);
  // Trit i of a byte is column k0 + i; it exists when it is inside the group and the row.
  const terms = Array.from({ length: P.perByte }, (_, i) =>
    wgsl`        if (${u32(i)} < valid) { let xv = X[xrow + k0 + ${u32(i)}]; st[mm] += t${i} * xv;${f.shift ? wgsl` sx[mm] += xv;` : wgsl``} }`,
  );
  // Word path: when a group's codes are whole u32 words and every byte holds perByte trits
  // of the group, full groups read a word at a time with no bounds checks (4x fewer loads);
  // the row's last, partial group takes the checked byte path.
  // Otherwise full groups read byte by byte, still unchecked: floor(G / perByte) full bytes,
  // then (when perByte does not divide G) one byte of G mod perByte trits.
  const wordPath = L.bytesPerGroup % 4 === 0 && f.group % P.perByte === 0;
  const fullGroups = Math.floor(cols / f.group);
  const wordBytes = Array.from({ length: 4 }, (_, b) => wgsl`      let b${b} = (word >> ${u32(8 * b)}) & 0xffu;`);
  const wordTrits = Array.from({ length: 4 * P.perByte }, (_, i) =>
    wgsl`        d += ${P.trit(wgsl`b${Math.floor(i / P.perByte)}`, i % P.perByte)} * X[xk + ${u32(i)}];`,
  );
  const wordSums = f.shift ? Array.from({ length: 4 * P.perByte }, (_, i) => wgsl`        e += X[xk + ${u32(i)}];`) : [];
  const groupEnd = wgsl`    let s = half_at(${u32(L.scaleWord0)}, n * ${u32(L.ng)} + g);
    ${f.shift ? wgsl`let z = half_at(${u32(L.shiftWord0)}, n * ${u32(L.ng)} + g);` : wgsl``}
    for (var mm = 0u; mm < mcount; mm++) { acc[mm] += s * st[mm]${f.shift ? wgsl` + z * sx[mm]` : wgsl``}; }`;
  const accDecl = wgsl`    var st = array<f32, ${tm}>();
    ${f.shift ? wgsl`var sx = array<f32, ${tm}>();` : wgsl``}`;
  const wordLoop = !wordPath ? wgsl`` : wgsl`  for (var g = 0u; g < ${u32(fullGroups)}; g++) {
${accDecl}
    let w0 = ((n * ${u32(L.ng)} + g) * ${u32(L.bytesPerGroup)}) >> 2u;
    for (var j = 0u; j < ${u32(L.bytesPerGroup / 4)}; j++) {
      let word = W[w0 + j];
${join(wordBytes)}
      for (var mm = 0u; mm < mcount; mm++) {
        let xk = (m0 + mm) * ${u32(cols)} + g * ${u32(f.group)} + j * ${u32(4 * P.perByte)};
        var d = 0.0;
        ${f.shift ? wgsl`var e = 0.0;` : wgsl``}
${join(wordTrits)}
${join(wordSums)}
        st[mm] += d;
        ${f.shift ? wgsl`sx[mm] += e;` : wgsl``}
      }
    }
${groupEnd}
  }`;
  const fullBytes = Math.floor(f.group / P.perByte);
  const remTrits = f.group - fullBytes * P.perByte;
  /** One byte `j` of a full group with `count` trits, no checks. */
  const uncheckedByte = (j: Code, count: number) => wgsl`      let byte = (W[(r0 + ${j}) >> 2u] >> (((r0 + ${j}) & 3u) * 8u)) & 0xffu;
      for (var mm = 0u; mm < mcount; mm++) {
        let xk = (m0 + mm) * ${u32(cols)} + g * ${u32(f.group)} + ${j} * ${u32(P.perByte)};
        var d = 0.0;
        ${f.shift ? wgsl`var e = 0.0;` : wgsl``}
${join(Array.from({ length: count }, (_, i) => wgsl`        d += ${P.trit(b, i)} * X[xk + ${u32(i)}];${f.shift ? wgsl` e += X[xk + ${u32(i)}];` : wgsl``}`))}
        st[mm] += d;
        ${f.shift ? wgsl`sx[mm] += e;` : wgsl``}
      }`;
  const byteLoop = wordPath ? wgsl`` : wgsl`  for (var g = 0u; g < ${u32(fullGroups)}; g++) {
${accDecl}
    let r0 = (n * ${u32(L.ng)} + g) * ${u32(L.bytesPerGroup)};
    for (var j = 0u; j < ${u32(fullBytes)}; j++) {
${uncheckedByte(wgsl`j`, P.perByte)}
    }
    ${remTrits ? wgsl`{
${uncheckedByte(u32(fullBytes), remTrits)}
    }` : wgsl``}
${groupEnd}
  }`;
  return rowKernel({
    name: `ternary_linear_${f.packing}`,
    params: { fmt: f.id },
    rows,
    cols,
    tm,
    bias,
    feats,
    module: wgsl`fn half_at(word0: u32, i: u32) -> f32 { return unpack2x16float(W[word0 + (i >> 1u)])[i & 1u]; }`,
    // The explicit zero constructors matter: Dawn + SwiftShader does not re-zero a bare
    // `var st: array<f32, N>;` on each loop iteration (the ternary kernel tests caught it).
    loop: wgsl`${wordLoop}${byteLoop}
  for (var g = ${u32(fullGroups)}; g < ${u32(L.ng)}; g++) {
${accDecl}
    for (var j = 0u; j < ${u32(L.bytesPerGroup)}; j++) {
      let bi = (n * ${u32(L.ng)} + g) * ${u32(L.bytesPerGroup)} + j;
      let byte = (W[bi >> 2u] >> ((bi & 3u) * 8u)) & 0xffu;
      let k0 = g * ${u32(f.group)} + j * ${u32(P.perByte)};
      let valid = min(min(${u32(P.perByte)}, ${u32(f.group)} - j * ${u32(P.perByte)}), select(0u, ${u32(cols)} - k0, k0 < ${u32(cols)}));
${join(trits)}
      for (var mm = 0u; mm < mcount; mm++) {
        let xrow = (m0 + mm) * ${u32(cols)};
${join(terms)}
      }
    }
${groupEnd}
  }`,
  });
}

/** Threads of the workgroup-per-row GEMV: one workgroup per output row and token. */
export const GEMV_WG = 64;
/** Rows per dispatch slice of the workgroup-per-row GEMV (wid.x + ROW_FOLD · wid.z), so any
 *  row count stays under the 65535 workgroups a dimension allows. */
const ROW_FOLD = 32768;

/** Workgroup sum of each thread's `acc`, written by thread 0 as `out(total)`: subgroupAdd and
 *  one partial per subgroup when the adapter offers subgroups, else a shared-memory tree. */
function workgroupSum(out: (total: Code) => Code, feats: WgslFeatures): Code {
  if (feats.subgroups) {
    return wgsl`  let sv = subgroupAdd(acc);
  if (sg_lane == 0u) { red[lid / sg_size] = sv; }
  workgroupBarrier();
  if (lid == 0u) {
    var tot = 0.0;
    for (var si = 0u; si < (${u32(GEMV_WG)} + sg_size - 1u) / sg_size; si++) { tot += red[si]; }
${out(wgsl`tot`)}
  }`;
  }
  const steps: Code[] = [];
  for (let s = GEMV_WG / 2; s >= 1; s >>= 1) {
    steps.push(wgsl`  if (lid < ${u32(s)}) { red[lid] += red[lid + ${u32(s)}]; }
  workgroupBarrier();`);
  }
  return wgsl`  red[lid] = acc;
  workgroupBarrier();
${join(steps)}
  if (lid == 0u) {
${out(wgsl`red[0]`)}
  }`;
}

/**
 * Ternary GEMV shaped for GPUs: one workgroup of GEMV_WG threads per output row n (and token
 * m = wid.y). Thread t reads the row's u32 code words t, t + WG, …, so neighbouring threads
 * load consecutive words. Rows and groups need not be word-aligned (trit5 g128 has 26-byte
 * groups): each byte finds its group g and first column k0 from its offset in the row, adds
 * s_g · Σ t_k x_k + z_g · Σ x_k over its valid trits (none for bytes of the neighbouring
 * rows that share the row's first and last words), and the per-thread sums are reduced across
 * the workgroup. Bindings as ternaryLinearKernel: W, X, [bias], Y, step.
 */
export function ternaryGemvWorkgroupKernel(f: TernaryFormat, rows: number, cols: number, bias: boolean, feats: WgslFeatures = NO_FEATURES): WgslKernel {
  const L = ternaryLayout(f, rows, cols);
  const P = WGSL_PACKINGS[f.packing];
  const rowBytes = L.ng * L.bytesPerGroup;
  const byteTerm = (b: number) => {
    const c = new Code('c');
    const trits = Array.from({ length: P.perByte }, (_, i) =>
      wgsl`      { let xv = select(0.0, X[xr + min(k0 + ${u32(i)}, ${u32(cols - 1)})], ${u32(i)} < v); d += ${P.trit(c, i)} * xv;${f.shift ? wgsl` e += xv;` : wgsl``} }`,
    );
    // A byte of the next row has g = ng - 1 and j >= bytesPerGroup, so k0 >= ng · G >= K; one
    // of the previous row wraps bi (and k0) past 2^31: k0 < K alone keeps both out.
    return wgsl`    {
      let bi = wb + ${u32(b)} - rb;
      let c = (word >> ${u32(8 * b)}) & 0xffu;
      let g = min(bi / ${u32(L.bytesPerGroup)}, ${u32(L.ng - 1)});
      let j = bi - g * ${u32(L.bytesPerGroup)};
      let k0 = g * ${u32(f.group)} + j * ${u32(P.perByte)};
      let v = select(0u, min(min(${u32(P.perByte)}, ${u32(f.group)} - min(j * ${u32(P.perByte)}, ${u32(f.group)})), ${u32(cols)} - k0), k0 < ${u32(cols)});
      var d = 0.0;
      ${f.shift ? wgsl`var e = 0.0;` : wgsl``}
${join(trits)}
      acc += half_at(${u32(L.scaleWord0)}, gr + g) * d${f.shift ? wgsl` + half_at(${u32(L.shiftWord0)}, gr + g) * e` : wgsl``};
    }`;
  };
  return defineKernel({
    name: `ternary_gemv_wg_${f.packing}`,
    params: { fmt: f.id, N: rows, K: cols, bias, WG: GEMV_WG },
    bindings: [u32buf('W'), f32buf('X'), ...(bias ? [f32buf('bias')] : []), f32buf('Y', 'read_write')],
    usesStep: true,
    workgroupSize: GEMV_WG,
    features: feats,
    module: wgsl`var<workgroup> red: array<f32, ${GEMV_WG}>;
fn half_at(word0: u32, i: u32) -> f32 { return unpack2x16float(W[word0 + (i >> 1u)])[i & 1u]; }`,
    // Every early exit depends on workgroup ids only, so barriers stay in uniform control flow.
    body: wgsl`  let n = wid.x + wid.z * ${u32(ROW_FOLD)};
  let m = wid.y;
  if (n >= ${u32(rows)} || m >= step.ntok) { return; }
  let xr = m * ${u32(cols)};
  let gr = n * ${u32(L.ng)};
  let rb = n * ${u32(rowBytes)};
  let w1 = (rb + ${u32(rowBytes + 3)}) >> 2u;
  var acc = 0.0;
  for (var w = (rb >> 2u) + lid; w < w1; w += ${u32(GEMV_WG)}) {
    let word = W[w];
    let wb = w * 4u;
${join(Array.from({ length: 4 }, (_, b) => byteTerm(b)))}
  }
${workgroupSum((t) => wgsl`    Y[m * ${u32(rows)} + n] = ${t}${bias ? wgsl` + bias[n]` : wgsl``};`, feats)}`,
    dispatch: (ntok) => [Math.min(rows, ROW_FOLD), ntok, Math.ceil(rows / ROW_FOLD)],
  });
}

export type DenseDtype = 'float16' | 'float32';

/** Dense linear (lm_head): W [rows, cols] as fp16 pairs or f32 bits in u32 words, read
 *  UNROLL words per iteration. */
export function denseLinearKernel(dtype: DenseDtype, rows: number, cols: number, tm: number, bias: boolean, feats: WgslFeatures = NO_FEATURES): WgslKernel {
  if (dtype === 'float16' && cols % 2) throw new Error(`fp16 dense linear needs an even column count, got ${cols}`);
  const per = dtype === 'float16' ? 2 : 1;
  const words = cols / per;
  const unroll = words % 4 === 0 ? 4 : 1;
  const terms = Array.from({ length: unroll }, (_, u) => {
    const w = wgsl`W[wr + j + ${u32(u)}]`;
    const xo = u32(u * per);
    return dtype === 'float16'
      ? wgsl`      let w${u} = unpack2x16float(${w});
      d += w${u}.x * X[xb + ${xo}] + w${u}.y * X[xb + ${xo} + 1u];`
      : wgsl`      d += bitcast<f32>(${w}) * X[xb + ${xo}];`;
  });
  return rowKernel({
    name: `dense_linear_${dtype}`,
    params: {},
    rows,
    cols,
    tm,
    bias,
    feats,
    module: wgsl``,
    loop: wgsl`  let wr = n * ${u32(words)};
  for (var mm = 0u; mm < mcount; mm++) {
    var d = 0.0;
    for (var j = 0u; j < ${u32(words)}; j += ${u32(unroll)}) {
      let xb = (m0 + mm) * ${u32(cols)} + j * ${u32(per)};
${join(terms)}
    }
    acc[mm] = d;
  }`,
  });
}

/** Embedding gather from an fp16 table [vocab, hidden]. Bindings: ids, E, X, step. */
export function embedKernel(vocab: number, hidden: number, scale = 1): WgslKernel {
  if (hidden % 2) throw new Error(`embedding gather needs an even hidden size, got ${hidden}`);
  const pairs = hidden / 2;
  return defineKernel({
    name: 'embed_gather',
    params: { vocab, hidden, ...(scale === 1 ? {} : { scale }) },
    bindings: [u32buf('ids'), u32buf('E'), f32buf('X', 'read_write')],
    usesStep: true,
    workgroupSize: WG,
    body: wgsl`  let m = wid.x;
  let id = min(ids[m], ${u32(vocab - 1)});
  for (var p = lid; p < ${u32(pairs)}; p += ${u32(WG)}) {
    let v = unpack2x16float(E[id * ${u32(pairs)} + p])${scale === 1 ? wgsl`` : wgsl` * ${f32(scale)}`};
    X[m * ${u32(hidden)} + 2u * p] = v.x;
    X[m * ${u32(hidden)} + 2u * p + 1u] = v.y;
  }`,
    dispatch: (ntok) => [ntok, 1, 1],
  });
}

/** RMSNorm of rows row0 + m into rows m: y = x / sqrt(mean(x²) + eps) · γ. Bindings: X, [gamma], Y, step. */
export function rmsNormKernel(hidden: number, eps: number, gamma: boolean, feats: WgslFeatures = NO_FEATURES): WgslKernel {
  return defineKernel({
    name: 'rms_norm',
    params: { hidden, eps, gamma },
    bindings: [f32buf('X'), ...(gamma ? [f32buf('gamma')] : []), f32buf('Y', 'read_write')],
    usesStep: true,
    workgroupSize: WG,
    features: feats,
    module: reduceDecl(1),
    body: wgsl`  let m = wid.x;
  let src = (step.row0 + m) * ${u32(hidden)};
  var ss = 0.0;
  for (var i = lid; i < ${u32(hidden)}; i += ${u32(WG)}) { let v = X[src + i]; ss += v * v; }
${reduce(1, () => wgsl`ss`, 'sum', feats)}
  let inv = inverseSqrt(red[0] / ${f32(hidden)} + ${f32(eps)});
  for (var i = lid; i < ${u32(hidden)}; i += ${u32(WG)}) {
    Y[m * ${u32(hidden)} + i] = X[src + i] * inv${gamma ? wgsl` * gamma[i]` : wgsl``};
  }`,
    dispatch: (ntok) => [ntok, 1, 1],
  });
}

/** First half of the online transform: T[m, a, j] = Σ_b X[m, a, b] · B[j, b]. Bindings: X, B, T, step. */
export function kronRightKernel(l: number, r: number): WgslKernel {
  return defineKernel({
    name: 'kron_right',
    params: { l, r },
    bindings: [f32buf('X'), f32buf('B'), f32buf('T', 'read_write')],
    usesStep: true,
    workgroupSize: WG,
    body: wgsl`  let e = wid.x * ${u32(WG)} + lid;
  if (e >= ${u32(l * r)}) { return; }
  let base = wid.y * ${u32(l * r)};
  let a = e / ${u32(r)};
  let j = e % ${u32(r)};
  var s = 0.0;
  for (var b = 0u; b < ${u32(r)}; b++) { s += X[base + a * ${u32(r)} + b] * B[j * ${u32(r)} + b]; }
  T[base + e] = s;`,
    dispatch: (ntok) => [Math.ceil((l * r) / WG), ntok, 1],
  });
}

/** Second half: Y[m, i, j] = Σ_a C[i, a] · T[m, a, j]. Bindings: T, C, Y, step. */
export function kronLeftKernel(l: number, r: number): WgslKernel {
  return defineKernel({
    name: 'kron_left',
    params: { l, r },
    bindings: [f32buf('T'), f32buf('C'), f32buf('Y', 'read_write')],
    usesStep: true,
    workgroupSize: WG,
    body: wgsl`  let e = wid.x * ${u32(WG)} + lid;
  if (e >= ${u32(l * r)}) { return; }
  let base = wid.y * ${u32(l * r)};
  let i = e / ${u32(r)};
  let j = e % ${u32(r)};
  var s = 0.0;
  for (var a = 0u; a < ${u32(l)}; a++) { s += C[i * ${u32(l)} + a] * T[base + a * ${u32(r)} + j]; }
  Y[base + e] = s;`,
    dispatch: (ntok) => [Math.ceil((l * r) / WG), ntok, 1],
  });
}

/**
 * Per-token asymmetric fake quantisation in place, as src/quant/act-quant.ts defines it:
 * lo = clip·min(x), hi = clip·max(x), scale = (hi − lo) / (2^bits − 1), zero = round(−lo / scale),
 * x̂ = (clamp(round(x / scale) + zero, 0, 2^bits − 1) − zero) · scale, round half to even
 * (WGSL round), rows with scale = 0 unchanged. Bindings: Y, step.
 */
export function actQuantKernel(width: number, bits: number, clip: number, feats: WgslFeatures = NO_FEATURES): WgslKernel {
  if (!Number.isInteger(bits) || bits < 1 || bits > 15) throw new Error(`act-quant: unsupported bit width ${bits}`);
  if (!(clip > 0 && clip <= 1)) throw new Error(`act-quant: clip ratio ${clip} not in (0, 1]`);
  const qmax = 2 ** bits - 1;
  return defineKernel({
    name: 'act_quant',
    params: { width, bits, clip },
    bindings: [f32buf('Y', 'read_write')],
    usesStep: true,
    workgroupSize: WG,
    features: feats,
    module: reduceDecl(2),
    body: wgsl`  let base = wid.x * ${u32(width)};
  var lo = 3.0e38;
  var hi = -3.0e38;
  for (var i = lid; i < ${u32(width)}; i += ${u32(WG)}) { let v = Y[base + i]; lo = min(lo, v); hi = max(hi, v); }
  lo = -lo;
${reduce(2, (i) => wgsl`select(hi, lo, ${i} == 1u)`, 'max', feats)}
  let cmax = red[0] * ${f32(clip)};
  let cmin = -red[${u32(WG)}] * ${f32(clip)};
  let scale = (cmax - cmin) / ${f32(qmax)};
  if (scale > 0.0) {
    let zero = round(-cmin / scale);
    for (var i = lid; i < ${u32(width)}; i += ${u32(WG)}) {
      let q = clamp(round(Y[base + i] / scale) + zero, 0.0, ${f32(qmax)});
      Y[base + i] = (q - zero) * scale;
    }
  }`,
    dispatch: (ntok) => [ntok, 1, 1],
  });
}

/**
 * RoPE on q (in place) and k, and the KV-cache write of token m at position pos0 + m.
 * rope holds (cos, sin) pairs [maxPos][d/2], computed in float64 on the host.
 * Bindings: Q, K, V, rope, Kc, Vc, step.
 */
/** rms(·, γ, ε) over each head of X [ntok, heads·d] in place (q/k norm before RoPE); one
 *  workgroup per (token, head). Bindings: X, gamma?. */
export function headRmsNormKernel(heads: number, d: number, eps: number, gamma: boolean, feats: WgslFeatures = NO_FEATURES): WgslKernel {
  return defineKernel({
    name: 'head_rms_norm',
    params: { heads, d, eps, gamma },
    bindings: [f32buf('X', 'read_write'), ...(gamma ? [f32buf('gamma')] : [])],
    usesStep: false,
    workgroupSize: WG,
    features: feats,
    module: reduceDecl(1),
    body: wgsl`  let o = wid.x * ${u32(heads * d)} + wid.y * ${u32(d)};
  var ss = 0.0;
  for (var i = lid; i < ${u32(d)}; i += ${u32(WG)}) { let v = X[o + i]; ss += v * v; }
${reduce(1, () => wgsl`ss`, 'sum', feats)}
  let inv = inverseSqrt(red[0] / ${f32(d)} + ${f32(eps)});
  for (var i = lid; i < ${u32(d)}; i += ${u32(WG)}) { X[o + i] = X[o + i] * inv${gamma ? wgsl` * gamma[i]` : wgsl``}; }`,
    dispatch: (ntok) => [ntok, heads, 1],
  });
}

export function ropeKvKernel(heads: number, kvHeads: number, d: number, maxPos: number, rotaryDim = d): WgslKernel {
  // Pairs (i, i + r/2) for i < r/2 rotate; dims r… of q stay, of k are copied to the cache.
  const r = rotaryDim;
  const half = r / 2;
  const kvd = kvHeads * d;
  return defineKernel({
    name: 'rope_kv',
    params: { heads, kvHeads, d, maxPos, ...(r === d ? {} : { rotaryDim: r }) },
    bindings: [f32buf('Q', 'read_write'), f32buf('K'), f32buf('V'), f32buf('rope'), f32buf('Kc', 'read_write'), f32buf('Vc', 'read_write')],
    usesStep: true,
    workgroupSize: WG,
    body: wgsl`  let m = wid.x;
  let pos = step.pos0 + m;
  if (pos >= ${u32(maxPos)}) { return; }
  for (var e = lid; e < ${u32((heads + kvHeads) * half)}; e += ${u32(WG)}) {
    let hh = e / ${u32(half)};
    let i = e % ${u32(half)};
    let cs = vec2f(rope[(pos * ${u32(half)} + i) * 2u], rope[(pos * ${u32(half)} + i) * 2u + 1u]);
    if (hh < ${u32(heads)}) {
      let o = m * ${u32(heads * d)} + hh * ${u32(d)} + i;
      let x0 = Q[o];
      let x1 = Q[o + ${u32(half)}];
      Q[o] = x0 * cs.x - x1 * cs.y;
      Q[o + ${u32(half)}] = x1 * cs.x + x0 * cs.y;
    } else {
      let kh = hh - ${u32(heads)};
      let o = m * ${u32(kvd)} + kh * ${u32(d)} + i;
      let c = pos * ${u32(kvd)} + kh * ${u32(d)} + i;
      let x0 = K[o];
      let x1 = K[o + ${u32(half)}];
      Kc[c] = x0 * cs.x - x1 * cs.y;
      Kc[c + ${u32(half)}] = x1 * cs.x + x0 * cs.y;
    }
  }
${r === d ? wgsl`` : wgsl`  for (var e = lid; e < ${u32(kvHeads * (d - r))}; e += ${u32(WG)}) {
    let o = (e / ${u32(d - r)}) * ${u32(d)} + ${u32(r)} + e % ${u32(d - r)};
    Kc[pos * ${u32(kvd)} + o] = K[m * ${u32(kvd)} + o];
  }
`}  for (var e = lid; e < ${u32(kvd)}; e += ${u32(WG)}) { Vc[pos * ${u32(kvd)} + e] = V[m * ${u32(kvd)} + e]; }`,
    dispatch: (ntok) => [ntok, 1, 1],
  });
}

/** cap·tanh(s/cap) with tanh written with exp (exact at ±∞, as GELU_TANH). */
function softcapExpr(s: Code, cap: number): Code {
  return wgsl`${f32(cap)} * (1.0 - 2.0 / (exp(2.0 * ${s} / ${f32(cap)}) + 1.0))`;
}

/** Causal GQA attention over the KV cache with a chunked online softmax; one workgroup
 *  per (head, token). softmax(cap·tanh(scale · q·kᵀ / cap)) over the keys pos − window < t ≤ pos
 *  (window null: every t ≤ pos; softcap null: no tanh). Bindings: Q, Kc, Vc, O, step. */
export function attentionKernel(heads: number, kvHeads: number, d: number, scale: number, window: number | null, feats: WgslFeatures = NO_FEATURES, softcap: number | null = null): WgslKernel {
  if (heads % kvHeads) throw new Error(`attention: ${heads} heads are not a multiple of ${kvHeads} KV heads`);
  const CH = 256;
  const dpt = Math.ceil(d / WG);
  const kvd = kvHeads * d;
  return defineKernel({
    name: 'attention',
    // The default scale keeps the default key (and text); windowed kernels are keyed by window.
    params: { heads, kvHeads, d, ...(isDefaultScale(scale, d) ? {} : { scale }), ...(window === null ? {} : { window }), ...(softcap === null ? {} : { softcap }) },
    bindings: [f32buf('Q'), f32buf('Kc'), f32buf('Vc'), f32buf('O', 'read_write')],
    usesStep: true,
    workgroupSize: WG,
    features: feats,
    module: join([reduceDecl(1), wgsl`var<workgroup> sc: array<f32, ${CH}>;`]),
    body: wgsl`  let h = wid.x;
  let m = wid.y;
  let kh = h / ${u32(heads / kvHeads)};
  let last = step.pos0 + m;
  let qo = m * ${u32(heads * d)} + h * ${u32(d)};
  let scale = ${f32(isDefaultScale(scale, d) ? 1 / Math.sqrt(d) : scale)};
  var mrun = -3.0e38;
  var lrun = 0.0;
  var acc: array<f32, ${dpt}>;
  for (var c0 = ${window === null ? wgsl`0u` : wgsl`select(0u, last + 1u - ${u32(window)}, last + 1u > ${u32(window)})`}; c0 <= last; c0 += ${u32(CH)}) {
    let cn = min(${u32(CH)}, last + 1u - c0);
    var cmax = -3.0e38;
    for (var t = lid; t < cn; t += ${u32(WG)}) {
      let ko = (c0 + t) * ${u32(kvd)} + kh * ${u32(d)};
      var s = 0.0;
      for (var i = 0u; i < ${u32(d)}; i++) { s += Q[qo + i] * Kc[ko + i]; }
      s *= scale;
${softcap === null ? wgsl`` : wgsl`      s = ${softcapExpr(wgsl`s`, softcap)};
`}      sc[t] = s;
      cmax = max(cmax, s);
    }
${reduce(1, () => wgsl`cmax`, 'max', feats)}
    let mnew = max(mrun, red[0]);
    workgroupBarrier();
    var csum = 0.0;
    for (var t = lid; t < cn; t += ${u32(WG)}) { let p = exp(sc[t] - mnew); sc[t] = p; csum += p; }
${reduce(1, () => wgsl`csum`, 'sum', feats)}
    let alpha = exp(mrun - mnew);
    lrun = lrun * alpha + red[0];
    for (var di = 0u; di < ${u32(dpt)}; di++) {
      let i = lid + di * ${u32(WG)};
      if (i < ${u32(d)}) {
        var s = acc[di] * alpha;
        for (var t = 0u; t < cn; t++) { s += sc[t] * Vc[(c0 + t) * ${u32(kvd)} + kh * ${u32(d)} + i]; }
        acc[di] = s;
      }
    }
    mrun = mnew;
    workgroupBarrier();
  }
  for (var di = 0u; di < ${u32(dpt)}; di++) {
    let i = lid + di * ${u32(WG)};
    if (i < ${u32(d)}) { O[qo + i] = acc[di] / lrun; }
  }`,
    dispatch: (ntok) => [heads, ntok, 1],
  });
}

/** y = silu(g) · u, elementwise over [ntok, width]. Bindings: G, U, Y, step. */
/** GELU(tanh) as 0.5·g·(1 + tanh(√(2/π)·(g + 0.044715·g³))), tanh written with exp (exact at ±∞). */
const GELU_TANH = wgsl`let t = ${f32(Math.sqrt(2 / Math.PI))} * (g + ${f32(0.044715)} * g * g * g);
  Y[e] = 0.5 * g * (2.0 - 2.0 / (exp(2.0 * t) + 1.0)) * U[e];`;

/** The gated MLP product y = σ(g) · u elementwise over [ntok, width], σ the program's
 *  activation: SiLU (SwiGLU) or tanh GELU (GeGLU). Bindings: G, U, Y, step. */
export function swigluKernel(width: number, activation: 'silu' | 'gelu-tanh' = 'silu'): WgslKernel {
  return defineKernel({
    name: activation === 'silu' ? 'swiglu' : 'geglu_tanh',
    params: { width },
    bindings: [f32buf('G'), f32buf('U'), f32buf('Y', 'read_write')],
    usesStep: true,
    workgroupSize: WG,
    body: wgsl`  let i = wid.x * ${u32(WG)} + lid;
  if (i >= ${u32(width)}) { return; }
  let e = wid.y * ${u32(width)} + i;
  let g = G[e];
  ${activation === 'silu' ? wgsl`Y[e] = g / (1.0 + exp(-g)) * U[e];` : GELU_TANH}`,
    dispatch: (ntok) => [Math.ceil(width / WG), ntok, 1],
  });
}

/** X ← cap·tanh(X/cap) elementwise over [ntok, width] (the program's logit soft-capping). Bindings: X, step. */
export function softcapKernel(width: number, cap: number): WgslKernel {
  return defineKernel({
    name: 'softcap',
    params: { width, cap },
    bindings: [f32buf('X', 'read_write')],
    usesStep: true,
    workgroupSize: WG,
    body: wgsl`  let i = wid.x * ${u32(WG)} + lid;
  if (i >= ${u32(width)}) { return; }
  let e = wid.y * ${u32(width)} + i;
  X[e] = ${softcapExpr(wgsl`X[e]`, cap)};`,
    dispatch: (ntok) => [Math.ceil(width / WG), ntok, 1],
  });
}

/** Y ← X elementwise over [ntok, width] (a block input without a pre-norm, before its in-place quantiser). Bindings: X, Y, step. */
export function copyKernel(width: number): WgslKernel {
  return defineKernel({
    name: 'copy',
    params: { width },
    bindings: [f32buf('X'), f32buf('Y', 'read_write')],
    usesStep: true,
    workgroupSize: WG,
    body: wgsl`  let i = wid.x * ${u32(WG)} + lid;
  if (i >= ${u32(width)}) { return; }
  let e = wid.y * ${u32(width)} + i;
  Y[e] = X[e];`,
    dispatch: (ntok) => [Math.ceil(width / WG), ntok, 1],
  });
}

/** X += D, elementwise over [ntok, width]. Bindings: D, X, step. */
/** X ← s · X elementwise over [ntok, width] (the program's logit scale). Bindings: X, step. */
export function scaleKernel(width: number, s: number): WgslKernel {
  return defineKernel({
    name: 'scale',
    params: { width, s },
    bindings: [f32buf('X', 'read_write')],
    usesStep: true,
    workgroupSize: WG,
    body: wgsl`  let i = wid.x * ${u32(WG)} + lid;
  if (i >= ${u32(width)}) { return; }
  let e = wid.y * ${u32(width)} + i;
  X[e] = X[e] * ${f32(s)};`,
    dispatch: (ntok) => [Math.ceil(width / WG), ntok, 1],
  });
}

export function residualAddKernel(width: number, scale = 1): WgslKernel {
  return defineKernel({
    name: 'residual_add',
    params: { width, ...(scale === 1 ? {} : { scale }) },
    bindings: [f32buf('D'), f32buf('X', 'read_write')],
    usesStep: true,
    workgroupSize: WG,
    body: wgsl`  let i = wid.x * ${u32(WG)} + lid;
  if (i >= ${u32(width)}) { return; }
  let e = wid.y * ${u32(width)} + i;
  X[e] = X[e] + D[e]${scale === 1 ? wgsl`` : wgsl` * ${f32(scale)}`};`,
    dispatch: (ntok) => [Math.ceil(width / WG), ntok, 1],
  });
}
