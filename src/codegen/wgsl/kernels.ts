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
import { isDefaultScale, type MlpActivation, type QkNormKind } from '../../program/block-program.ts';
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
const u32buf = (name: string, access: Binding['access'] = 'read'): Binding => ({ name, elem: 'u32', access });

/** Workgroup reduction of `count` per-thread values `acc[i]` (sum or max). The result for
 *  value i is in red[i * WG] for every thread after the call's final barrier. */
function reduceDecl(count: number, threads = WG): Code {
  return wgsl`var<workgroup> red: array<f32, ${count * threads}>;`;
}

/** Threads of a per-token row kernel (norms, act-quant): 256 for rows of 1024 or more, so a
 *  decode token's one workgroup walks a 4096-wide row in 16 steps instead of 64. */
export function rowThreads(width: number): number {
  return width >= 1024 ? 256 : WG;
}

function reduce(count: number, acc: (i: Code) => Code, op: 'sum' | 'max', feats: WgslFeatures, threads = WG): Code {
  const combine = (a: Code, b: Code) => (op === 'sum' ? wgsl`${a} + ${b}` : wgsl`max(${a}, ${b})`);
  if (feats.subgroups) {
    const sgOp = op === 'sum' ? new Code('subgroupAdd') : new Code('subgroupMax');
    return wgsl`  for (var ri = 0u; ri < ${u32(count)}; ri++) {
    let sv = ${sgOp}(${acc(new Code('ri'))});
    if (sg_lane == 0u) { red[ri * ${u32(threads)} + lid / sg_size] = sv; }
  }
  workgroupBarrier();
  if (lid < ${u32(count)}) {
    var tot = red[lid * ${u32(threads)}];
    for (var si = 1u; si < ${u32(threads)} / sg_size; si++) { tot = ${combine(new Code('tot'), new Code(`red[lid * ${threads}u + si]`))}; }
    red[lid * ${u32(threads)}] = tot;
  }
  workgroupBarrier();`;
  }
  // Serial combine by `count` threads: as fast as a tree at WG = 64 on the adapters we
  // target, and far cheaper to compile on software ones.
  return wgsl`  for (var ri = 0u; ri < ${u32(count)}; ri++) { red[ri * ${u32(threads)} + lid] = ${acc(new Code('ri'))}; }
  workgroupBarrier();
  if (lid < ${u32(count)}) {
    var tot = red[lid * ${u32(threads)}];
    for (var si = 1u; si < ${u32(threads)}; si++) { tot = ${combine(new Code('tot'), new Code(`red[lid * ${threads}u + si]`))}; }
    red[lid * ${u32(threads)}] = tot;
  }
  workgroupBarrier();`;
}

const tileCount = (ntok: number, tm: number) => Math.ceil(ntok / tm);

/**
 * Where a linear writes. `accumulate`: y += W·x (the block's residual add in the epilogue).
 * `split`: a group of linears that share their input (q|k|v, gate|up) run as one linear of
 * Σ split rows, their weights stacked; rows [Σ_{j<i} split_j, Σ_{j≤i} split_j) go to the
 * group's output i (binding Y<i>, [ntok, split_i] row-major), so one dispatch serves them all.
 * A boolean is `accumulate`.
 */
export interface LinearOut {
  accumulate?: boolean;
  split?: readonly number[];
}

function linearOut(out: boolean | LinearOut, rows: number): LinearOut {
  const o = typeof out === 'boolean' ? { accumulate: out } : out;
  if (o.split) {
    if (o.accumulate) throw new Error('a split linear output does not accumulate');
    if (o.split.length < 2 || o.split.some((r) => !Number.isInteger(r) || r < 1) || o.split.reduce((a, r) => a + r, 0) !== rows) {
      throw new Error(`split output [${o.split.join(', ')}] does not divide ${rows} rows`);
    }
  }
  return o;
}

/** The output bindings: Y, or Y0, Y1, … of a split output. */
function outBindings(o: LinearOut): Binding[] {
  return o.split ? o.split.map((_, i) => f32buf(`Y${i}`, 'read_write')) : [f32buf('Y', 'read_write')];
}

/** What the output adds to a kernel's parameters (its cache key). */
function outParams(o: LinearOut): Record<string, string | boolean> {
  return { ...(o.accumulate ? { accumulate: true } : {}), ...(o.split ? { split: o.split.join('+') } : {}) };
}

/** A linear's store of output row n, token m: y = v, y += v, or into the split output holding row n. */
function storeY(o: LinearOut, m: Code, n: Code, rows: number, value: Code): Code {
  if (!o.split) {
    const index = wgsl`${m} * ${u32(rows)} + ${n}`;
    return o.accumulate ? wgsl`Y[${index}] = Y[${index}] + (${value});` : wgsl`Y[${index}] = ${value};`;
  }
  let r0 = 0;
  const parts = o.split.map((r, i) => {
    const store = wgsl`Y${new Code(String(i))}[${m} * ${u32(r)} + ${n} - ${u32(r0)}] = ${value};`;
    r0 += r;
    return i === o.split!.length - 1 ? wgsl`{ ${store} }` : wgsl`if (${n} < ${u32(r0)}) { ${store} }`;
  });
  return join(parts, ' else ');
}

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
  out: boolean | LinearOut;
}): WgslKernel {
  const { tm, rows, cols } = o;
  const out = linearOut(o.out, rows);
  return defineKernel({
    name: o.name,
    params: { ...o.params, N: rows, K: cols, TM: tm, bias: o.bias, ...outParams(out) },
    bindings: [u32buf('W'), f32buf('X'), ...(o.bias ? [f32buf('bias')] : []), ...outBindings(out)],
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
    ${storeY(out, wgsl`(m0 + mm)`, wgsl`n`, rows, wgsl`acc[mm]${o.bias ? wgsl` + bias[n]` : wgsl``}`)}
  }`,
    dispatch: (ntok) => [Math.ceil(rows / WG), tileCount(ntok, tm), 1],
  });
}

/** Ternary linear (GEMV at tm = 1, token-tiled GEMM at tm > 1). Bindings: W, X, [bias], Y, step. */
export function ternaryLinearKernel(f: TernaryFormat, rows: number, cols: number, tm: number, bias: boolean, feats: WgslFeatures = NO_FEATURES, out: boolean | LinearOut = false): WgslKernel {
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
    out,
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
export function ternaryGemvWorkgroupKernel(f: TernaryFormat, rows: number, cols: number, bias: boolean, feats: WgslFeatures = NO_FEATURES, output: boolean | LinearOut = false): WgslKernel {
  const out = linearOut(output, rows);
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
    params: { fmt: f.id, N: rows, K: cols, bias, WG: GEMV_WG, ...outParams(out) },
    bindings: [u32buf('W'), f32buf('X'), ...(bias ? [f32buf('bias')] : []), ...outBindings(out)],
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
${workgroupSum((t) => wgsl`    ${storeY(out, wgsl`m`, wgsl`n`, rows, wgsl`${t}${bias ? wgsl` + bias[n]` : wgsl``}`)}`, feats)}`,
    dispatch: (ntok) => [Math.min(rows, ROW_FOLD), ntok, Math.ceil(rows / ROW_FOLD)],
  });
}

/** fp16 value i of the words from word0 on, in a W of vec4<u32> words (scales and shifts). */
const HALF_AT_VEC4 = wgsl`fn half_at(word0: u32, i: u32) -> f32 {
  let w = word0 + (i >> 1u);
  return unpack2x16float(W[w >> 2u][w & 3u])[i & 1u];
}`;

/** The bindings of a rows-per-workgroup GEMV: W and X as vec4 words, [bias], the output(s). */
function rowsBindings(bias: boolean, out: LinearOut): Binding[] {
  return [{ name: 'W', elem: 'vec4<u32>', access: 'read' }, { name: 'X', elem: 'vec4<f32>', access: 'read' }, ...(bias ? [f32buf('bias')] : []), ...outBindings(out)];
}

/** The start of a rows-per-workgroup GEMV: row r of the workgroup's R, thread t of its TPR, output row n, token m. */
function rowsHead(rows: number, R: number, TPR: number): Code {
  return wgsl`  let r = lid / ${u32(TPR)};
  let t = lid - r * ${u32(TPR)};
  let n = (wid.x + wid.z * ${u32(ROW_FOLD)}) * ${u32(R)} + r;
  let m = wid.y;
  let live = n < ${u32(rows)} && m < step.ntok;
  var acc = 0.0;`;
}

/**
 * The end of a rows-per-workgroup GEMV (rows of TPR threads, each thread's sum in `acc`, row r,
 * thread t of the row, row n of the output, token m, `live`): the row's sums added (one
 * subgroupAdd partial a subgroup where a row is whole subgroups, else every thread's through
 * workgroup memory `red`), then its first thread stores y[m, n] (+ bias).
 */
function rowSumAndStore(out: LinearOut, rows: number, TPR: number, bias: boolean, feats: WgslFeatures): Code {
  const partials = feats.subgroups
    ? wgsl`  let sv = subgroupAdd(acc);
  let whole = sg_size <= ${u32(TPR)} && ${u32(TPR)} % sg_size == 0u;
  if (whole) {
    if (sg_lane == 0u) { red[lid / sg_size] = sv; }
  } else {
    red[lid] = acc;
  }
  workgroupBarrier();
  let parts = select(${u32(TPR)}, ${u32(TPR)} / sg_size, whole);`
    : wgsl`  red[lid] = acc;
  workgroupBarrier();
  let parts = ${u32(TPR)};`;
  return wgsl`${partials}
  if (t == 0u && live) {
    var tot = 0.0;
    for (var i = 0u; i < parts; i++) { tot += red[r * parts + i]; }
    ${storeY(out, wgsl`m`, wgsl`n`, rows, wgsl`tot${bias ? wgsl` + bias[n]` : wgsl``}`)}
  }`;
}

/** Shape of the rows-per-workgroup GEMV: rows a workgroup (R) and threads a row (TPR). */
export interface GemvRowsShape {
  rows: number;
  threadsPerRow: number;
}

/** The default shape: 8 rows of 32 threads (one subgroup a row on 32-wide adapters). */
export const GEMV_ROWS_DEFAULT: GemvRowsShape = { rows: 8, threadsPerRow: 32 };

/** Why the rows-per-workgroup GEMV does not take this format and K, or null. It reads a row's
 *  codes as 16-byte words of 64 bit2 codes that never straddle a group. */
export function gemvRowsUnsupported(f: TernaryFormat, cols: number): string | null {
  if (f.packing !== 'bit2') return `${f.id}: codes are not bit2`;
  if (f.group % 64) return `${f.id}: group ${f.group} is not a multiple of 64 codes`;
  if (cols % f.group) return `K=${cols} is not a multiple of the group ${f.group}`;
  return null;
}

/**
 * Ternary GEMV for GPUs, bit2 codes in groups that are multiples of 64: a workgroup takes R rows
 * of one token, TPR threads a row. Thread t of a row reads the row's 16-byte code words t,
 * t + TPR, … (64 codes each, one group's) and the 64 activations under them as four vec4 per
 * u32, so neighbouring threads load consecutive words. A code c becomes the trit c − 2 in two
 * ALU operations: its bits ORed into the mantissa of 2^23, minus 2^23 + 2 (exact in f32). Per
 * word the thread adds s_g · Σ t·x + z_g · Σ x; a row's TPR partial sums are added by
 * subgroupAdd where offered, else through workgroup memory. Bindings: W (vec4 words: codes,
 * then scales, then shifts, as ternaryLayout), X (vec4 rows of K), [bias], Y, step.
 */
export function ternaryGemvRowsKernel(f: TernaryFormat, rows: number, cols: number, bias: boolean, feats: WgslFeatures = NO_FEATURES, shape: GemvRowsShape = GEMV_ROWS_DEFAULT, output: boolean | LinearOut = false): WgslKernel {
  const out = linearOut(output, rows);
  const why = gemvRowsUnsupported(f, cols);
  if (why) throw new Error(`rows-per-workgroup GEMV: ${why}`);
  const { rows: R, threadsPerRow: TPR } = shape;
  const wg = R * TPR;
  if (!Number.isInteger(R) || !Number.isInteger(TPR) || R < 1 || TPR < 1 || wg > 256) throw new Error(`rows-per-workgroup GEMV: ${R} rows × ${TPR} threads`);
  const L = ternaryLayout(f, rows, cols);
  const words = cols / 64; // 16-byte code words a row
  const wordsPerGroup = f.group / 64;
  const groups = Math.ceil(rows / R);
  const code4 = (j: number, c: number) =>
    join(
      Array.from({ length: 4 }, (_, i) => {
        const bit = 2 * (4 * c + i);
        return wgsl`      d += (bitcast<f32>(((q[${u32(j)}] >> ${u32(bit)}) & 3u) | 0x4b000000u) - 8388610.0) * xv${c}.${new Code('xyzw'[i])};`;
      }),
    );
  const word = (j: number) => wgsl`    {
${join(Array.from({ length: 4 }, (_, c) => wgsl`      let xv${c} = X[xb + ${u32(4 * j + c)}];`))}
${join(Array.from({ length: 4 }, (_, c) => code4(j, c)))}
${f.shift ? wgsl`      e += dot(xv0 + xv1 + xv2 + xv3, vec4<f32>(1.0));` : wgsl``}
    }`;
  return defineKernel({
    name: `ternary_gemv_rows_${f.packing}`,
    params: { fmt: f.id, N: rows, K: cols, bias, R, TPR, ...outParams(out) },
    bindings: rowsBindings(bias, out),
    usesStep: true,
    workgroupSize: wg,
    features: feats,
    module: join([wgsl`var<workgroup> red: array<f32, ${wg}>;`, HALF_AT_VEC4]),
    // Barriers stay in uniform control flow: rows past N and tokens past ntok skip the loop only.
    body: wgsl`${rowsHead(rows, R, TPR)}
  if (live) {
    for (var v = t; v < ${u32(words)}; v += ${u32(TPR)}) {
      let q = W[n * ${u32(words)} + v];
      let g = n * ${u32(L.ng)} + v / ${u32(wordsPerGroup)};
      let xb = m * ${u32(cols / 4)} + v * 16u;
      var d = 0.0;
      ${f.shift ? wgsl`var e = 0.0;` : wgsl``}
${join(Array.from({ length: 4 }, (_, j) => word(j)))}
      acc += half_at(${u32(L.scaleWord0)}, g) * d${f.shift ? wgsl` + half_at(${u32(L.shiftWord0)}, g) * e` : wgsl``};
    }
  }
${rowSumAndStore(out, rows, TPR, bias, feats)}`,
    dispatch: (ntok) => [Math.min(groups, ROW_FOLD), ntok, Math.ceil(groups / ROW_FOLD)],
  });
}

/** Shape of the integer-activation GEMV: threads a row (TPR) and rows a thread (RPT). */
export interface GemvA8Shape {
  threadsPerRow: number;
  rowsPerThread: number;
}

/** The default: 32 threads a row (a subgroup on 32-wide adapters), 2 rows a thread. */
export const GEMV_A8_DEFAULT: GemvA8Shape = { threadsPerRow: 32, rowsPerThread: 2 };

/** Threads of the integer-activation GEMV's workgroup. */
const GEMV_A8_WG = 256;

/**
 * The integer GEMV's input made in its own prologue instead of read from an act site's XQ/XP:
 * every workgroup computes its token's row (x, rms(x)·γ, or the MLP activation act(g)·u /
 * act(u)), its quantiser's (scale, zero) and its bytes (in XQ's order) into workgroup memory,
 * exactly as the site's kernels would (rmsNormKernel with quant, actQuantKernel,
 * mlpActQuantKernel). At decode the site's own kernels then need not run: a dispatch fewer
 * for each. The row is re-read from L2 by every workgroup; it is K floats against the
 * workgroup's share of the weights.
 */
export type A8Prologue =
  | { source: 'x'; quant: RowQuant }
  | { source: 'rms-norm'; quant: RowQuant; eps: number; gamma: boolean }
  | { source: 'mlp-act'; quant: RowQuant; activation: MlpActivation; gated: boolean };

/** Workgroup memory a kernel may use by default in WebGPU (maxComputeWorkgroupStorageSize). */
const WORKGROUP_BYTES = 16384;

/** Floats of the integer GEMV's reduction array: a value a row of each thread, and at least the
 *  two a thread that the prologue's (min, max) reduction takes. */
function a8RedFloats(rowsPerThread: number, prologue: boolean): number {
  return GEMV_A8_WG * Math.max(rowsPerThread, prologue ? 2 : 1);
}

/** Why a prologue cannot make this row's bytes beside the reduction array of `rowsPerThread`
 *  rows a thread, or null. */
export function a8PrologueUnsupported(cols: number, q: RowQuant, rowsPerThread: number): string | null {
  if (!q.pack || q.bits > 8 || cols % 16) return `${q.bits}-bit codes of width ${cols} do not pack`;
  const room = WORKGROUP_BYTES - 4 * a8RedFloats(rowsPerThread, true);
  if (cols > room) return `a row of ${cols} bytes exceeds the ${room} bytes of workgroup memory the prologue has at ${rowsPerThread} rows a thread`;
  return null;
}

function prologueBindings(p: A8Prologue): Binding[] {
  if (p.source === 'x') return [f32buf('X')];
  if (p.source === 'rms-norm') return [f32buf('X'), ...(p.gamma ? [f32buf('gamma')] : [])];
  return [...(p.gated ? [f32buf('G')] : []), f32buf('U')];
}

/**
 * The prologue's body: its token's row into registers in one pass over the source (thread t holds
 * the elements of the byte words t, t + T, … that it will pack: word w holds elements k0 + 4b,
 * k0 = 16·⌊w/4⌋ + w mod 4), the row's statistics by workgroup reductions, its bytes into xs;
 * (scale, zero) into sx, z.
 */
function prologueCode(p: A8Prologue, cols: number, feats: WgslFeatures): Code {
  const T = GEMV_A8_WG;
  const qmax = 2 ** p.quant.bits - 1;
  const words = cols / 4;
  const NW = Math.ceil(words / T);
  const raw = (k: Code) => (p.source === 'mlp-act' ? (p.gated ? wgsl`act(G[xo + ${k}]) * U[xo + ${k}]` : wgsl`act(U[xo + ${k}])`) : wgsl`X[xo + ${k}]`);
  /** Every held element: `body` sees j (word slot), b (byte), k (element index), e (register). */
  const each = (body: Code) => wgsl`  for (var j = 0u; j < ${u32(NW)}; j++) {
    let wi = lid + j * ${u32(T)};
    if (wi < ${u32(words)}) {
      let k0 = (wi >> 2u) * 16u + (wi & 3u);
      for (var b = 0u; b < 4u; b++) {
        let k = k0 + 4u * b;
        let e = 4u * j + b;
        ${body}
      }
    }
  }`;
  return wgsl`  let xo = m * ${u32(cols)};
  var xv: array<f32, ${u32(4 * NW)}>;
${each(wgsl`xv[e] = ${raw(wgsl`k`)};`)}
${
  p.source === 'rms-norm'
    ? wgsl`  var ss = 0.0;
${each(wgsl`ss += xv[e] * xv[e];`)}
${reduce(1, () => wgsl`ss`, 'sum', feats, T)}
  let inv = inverseSqrt(red[0] / ${f32(cols)} + ${f32(p.eps)});
  workgroupBarrier();
${each(wgsl`xv[e] = xv[e] * inv${p.gamma ? wgsl` * gamma[k]` : wgsl``};`)}`
    : wgsl``
}
  var lo = 3.0e38;
  var hi = -3.0e38;
${each(wgsl`lo = min(lo, xv[e]); hi = max(hi, xv[e]);`)}
  lo = -lo;
${reduce(2, (i) => wgsl`select(hi, lo, ${i} == 1u)`, 'max', feats, T)}
  let cmax = red[0] * ${f32(p.quant.clip)};
  let cmin = -red[${u32(T)}] * ${f32(p.quant.clip)};
  let scale = (cmax - cmin) / ${f32(qmax)};
  // a constant row (scale 0): bytes 1 and zero 0, so that x̂ = sx = the row's value (as quantiseRow)
  var sx = ${p.source === 'rms-norm' ? wgsl`X[xo] * inv${p.gamma ? wgsl` * gamma[0]` : wgsl``}` : raw(wgsl`0u`)};
  var zf = 0.0;
  if (scale > 0.0) {
    sx = scale;
    zf = round(-cmin / scale);
  }
  for (var j = 0u; j < ${u32(NW)}; j++) {
    let wi = lid + j * ${u32(T)};
    if (wi < ${u32(words)}) {
      var word = 0x01010101u;
      if (scale > 0.0) {
        word = 0u;
        for (var b = 0u; b < 4u; b++) { word |= u32(clamp(round(xv[4u * j + b] / scale) + zf, 0.0, ${f32(qmax)})) << (8u * b); }
      }
      xs[wi >> 2u][wi & 3u] = word;
    }
  }
  let z = i32(zf);
  workgroupBarrier();`;
}

/**
 * Ternary GEMV on quantised activations, bit2 codes in groups that are multiples of 64: the
 * input is the act-quant kernel's integer form of x̂ (actQuantKernel with `pack`): per token,
 * codes q ∈ [0, 2^bits − 1] as bytes and (scale, zero), x̂ = (q − zero)·scale, bits ≤ 8. The
 * bytes are stored in the order the codes are: byte b of word j of a 16-element chunk holds
 * element j + 4b, so that (w >> 2j) & 0x03030303 puts the codes of the same four elements in
 * the four bytes of a u32, and one dot4U8Packed multiplies and adds them. For a 64-code word
 * of codes c (trit c − 2), Σ t·(q − z) = Σ c·q − 2·Σq − z·Σc + 128·z: Σc by two popcounts, Σq
 * by dot products with 0x01010101 (shared by the thread's rows). The sums are exact integers;
 * each word adds s_g·(that) [+ z_g·(Σq − 64·z)] in f32 and the row's total is scaled once.
 * A thread takes RPT rows and strides over the row's 16-byte code words with the row's other
 * TPR − 1 threads; each x word it loads serves its RPT rows. Bindings: W (vec4 words: codes,
 * scales, shifts as ternaryLayout), XQ (vec4 words, K/16 a token), XP (scale, zero a token),
 * [bias], Y, step.
 */
export function ternaryGemvA8Kernel(f: TernaryFormat, rows: number, cols: number, bias: boolean, feats: WgslFeatures = NO_FEATURES, shape: GemvA8Shape = GEMV_A8_DEFAULT, output: boolean | LinearOut = false, prologue?: A8Prologue): WgslKernel {
  const out = linearOut(output, rows);
  const { threadsPerRow: TPR, rowsPerThread: RPT } = shape;
  const why = gemvRowsUnsupported(f, cols) ?? (prologue ? a8PrologueUnsupported(cols, checkRowQuant(cols, prologue.quant), RPT) : null);
  if (why) throw new Error(`integer-activation GEMV: ${why}`);
  if (!Number.isInteger(TPR) || !Number.isInteger(RPT) || TPR < 1 || RPT < 1 || GEMV_A8_WG % TPR || RPT > 8) throw new Error(`integer-activation GEMV: ${TPR} threads a row, ${RPT} rows a thread`);
  const L = ternaryLayout(f, rows, cols);
  const words = cols / 64;
  const wordsPerGroup = f.group / 64;
  const rowsPerWg = (GEMV_A8_WG / TPR) * RPT;
  const groups = Math.ceil(rows / rowsPerWg);
  const R = Array.from({ length: RPT }, (_, i) => i);
  const id = (i: number) => new Code(String(i));
  const rowTerm = (i: number) => wgsl`      {
        let n = min(nb + ${u32(i)}, ${u32(rows - 1)});
        let q = W[n * ${u32(words)} + v];
        var d = 0u;
${join(
  Array.from({ length: 4 }, (_, w) =>
    join(Array.from({ length: 4 }, (_, j) => wgsl`        d += dot4U8Packed(${j ? wgsl`(q[${u32(w)}] >> ${u32(2 * j)})` : wgsl`q[${u32(w)}]`} & 0x03030303u, x${id(w)}[${u32(j)}]);`)),
  ),
)}
        let cs = countOneBits(q.x & 0x55555555u) + countOneBits(q.y & 0x55555555u) + countOneBits(q.z & 0x55555555u) + countOneBits(q.w & 0x55555555u)
          + 2u * (countOneBits(q.x & 0xaaaaaaaau) + countOneBits(q.y & 0xaaaaaaaau) + countOneBits(q.z & 0xaaaaaaaau) + countOneBits(q.w & 0xaaaaaaaau));
        let dot = i32(d) - 2 * sq - z * i32(cs) + 128 * z;
        let g = n * ${u32(L.ng)} + v / ${u32(wordsPerGroup)};
        acc${id(i)} += half_at(${u32(L.scaleWord0)}, g) * f32(dot)${f.shift ? wgsl` + half_at(${u32(L.shiftWord0)}, g) * f32(sq - 64 * z)` : wgsl``};
      }`;
  const partial = (i: number) =>
    feats.subgroups
      ? wgsl`  { let sv = subgroupAdd(acc${id(i)}); if (whole) { if (sg_lane == 0u) { red[(lid / sg_size) * ${u32(RPT)} + ${u32(i)}] = sv; } } else { red[lid * ${u32(RPT)} + ${u32(i)}] = acc${id(i)}; } }`
      : wgsl`  red[lid * ${u32(RPT)} + ${u32(i)}] = acc${id(i)};`;
  return defineKernel({
    name: `ternary_gemv_a8_${f.packing}${prologue ? `_${prologue.source.replace('-', '_')}` : ''}`,
    params: {
      fmt: f.id, N: rows, K: cols, bias, TPR, RPT, ...outParams(out),
      ...(prologue ? { prologue: prologue.source, bits: prologue.quant.bits, clip: prologue.quant.clip, ...('eps' in prologue ? { eps: prologue.eps, gamma: prologue.gamma } : {}), ...('activation' in prologue ? { activation: prologue.activation, gated: prologue.gated } : {}) } : {}),
    },
    bindings: [
      { name: 'W', elem: 'vec4<u32>', access: 'read' },
      ...(prologue ? prologueBindings(prologue) : [{ name: 'XQ', elem: 'vec4<u32>', access: 'read' } as Binding, f32buf('XP')]),
      ...(bias ? [f32buf('bias')] : []),
      ...outBindings(out),
    ],
    usesStep: true,
    workgroupSize: GEMV_A8_WG,
    features: feats,
    module: join([
      wgsl`var<workgroup> red: array<f32, ${u32(a8RedFloats(RPT, !!prologue))}>;`,
      HALF_AT_VEC4,
      ...(prologue ? [wgsl`var<workgroup> xs: array<vec4<u32>, ${u32(cols / 16)}>;`] : []),
      ...(prologue?.source === 'mlp-act' ? [ACT_FN[prologue.activation]] : []),
    ]),
    // Barriers stay in uniform control flow: rows past N and tokens past ntok skip the loop only.
    body: wgsl`  let r = lid / ${u32(TPR)};
  let t = lid - r * ${u32(TPR)};
  let nb = (wid.x + wid.z * ${u32(ROW_FOLD)}) * ${u32(rowsPerWg)} + r * ${u32(RPT)};
  let m = wid.y;
  let live = nb < ${u32(rows)} && m < step.ntok;
${prologue ? prologueCode(prologue, cols, feats) : wgsl``}
${join(R.map((i) => wgsl`  var acc${id(i)} = 0.0;`))}
  if (live) {
    ${prologue ? wgsl`` : wgsl`let z = i32(XP[2u * m + 1u]);`}
    for (var v = t; v < ${u32(words)}; v += ${u32(TPR)}) {
      let xb = ${prologue ? wgsl`4u * v` : wgsl`m * ${u32(cols / 16)} + 4u * v`};
${join(Array.from({ length: 4 }, (_, w) => wgsl`      let x${id(w)} = ${prologue ? wgsl`xs` : wgsl`XQ`}[xb + ${u32(w)}];`))}
      var sqa = 0u;
${join(Array.from({ length: 4 }, (_, w) => wgsl`      sqa += dot4U8Packed(x${id(w)}.x, 0x01010101u) + dot4U8Packed(x${id(w)}.y, 0x01010101u) + dot4U8Packed(x${id(w)}.z, 0x01010101u) + dot4U8Packed(x${id(w)}.w, 0x01010101u);`))}
      let sq = i32(sqa);
${join(R.map(rowTerm))}
    }
  }
${feats.subgroups ? wgsl`  let whole = sg_size <= ${u32(TPR)} && ${u32(TPR)} % sg_size == 0u;
  let parts = select(${u32(TPR)}, ${u32(TPR)} / sg_size, whole);` : wgsl`  let parts = ${u32(TPR)};`}
${join(R.map(partial))}
  workgroupBarrier();
  if (t == 0u && m < step.ntok) {
    ${prologue ? wgsl`` : wgsl`let sx = XP[2u * m];`}
${join(
  R.map(
    (i) => wgsl`    if (nb + ${u32(i)} < ${u32(rows)}) {
      var tot = 0.0;
      for (var p = 0u; p < parts; p++) { tot += red[(r * parts + p) * ${u32(RPT)} + ${u32(i)}]; }
      ${storeY(out, wgsl`m`, wgsl`nb + ${u32(i)}`, rows, wgsl`sx * tot${bias ? wgsl` + bias[nb + ${u32(i)}]` : wgsl``}`)}
    }`,
  ),
)}
  }`,
    dispatch: (ntok) => [Math.min(groups, ROW_FOLD), ntok, Math.ceil(groups / ROW_FOLD)],
  });
}

export type DenseDtype = 'float16' | 'float32';

/** Dense linear (lm_head): W [rows, cols] as fp16 pairs or f32 bits in u32 words, read
 *  UNROLL words per iteration. */
export function denseLinearKernel(dtype: DenseDtype, rows: number, cols: number, tm: number, bias: boolean, feats: WgslFeatures = NO_FEATURES, out: boolean | LinearOut = false): WgslKernel {
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
    out,
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

/**
 * Dense fp16 GEMV for GPUs (the lm_head at decode): a workgroup takes R rows of one token, TPR
 * threads a row; thread t reads the row's 16-byte words t, t + TPR, … (8 weights each) and the
 * 8 activations under them as two vec4, so neighbouring threads load consecutive words; the row's
 * partial sums are added by subgroupAdd where offered, else through workgroup memory. K must be
 * a multiple of 8. Bindings: W (vec4 words of fp16 pairs), X (vec4 rows of K), [bias], Y, step.
 */
export function denseGemvRowsKernel(rows: number, cols: number, bias: boolean, feats: WgslFeatures = NO_FEATURES, shape: GemvRowsShape = GEMV_ROWS_DEFAULT, output: boolean | LinearOut = false): WgslKernel {
  if (cols % 8) throw new Error(`dense fp16 GEMV: K=${cols} is not a multiple of 8`);
  const out = linearOut(output, rows);
  const { rows: R, threadsPerRow: TPR } = shape;
  const wg = R * TPR;
  const words = cols / 8;
  const groups = Math.ceil(rows / R);
  return defineKernel({
    name: 'dense_gemv_rows_float16',
    params: { N: rows, K: cols, bias, R, TPR, ...outParams(out) },
    bindings: rowsBindings(bias, out),
    usesStep: true,
    workgroupSize: wg,
    features: feats,
    module: wgsl`var<workgroup> red: array<f32, ${wg}>;`,
    body: wgsl`${rowsHead(rows, R, TPR)}
  if (live) {
    for (var v = t; v < ${u32(words)}; v += ${u32(TPR)}) {
      let q = W[n * ${u32(words)} + v];
      let xa = X[m * ${u32(cols / 4)} + 2u * v];
      let xb = X[m * ${u32(cols / 4)} + 2u * v + 1u];
      let w0 = unpack2x16float(q.x);
      let w1 = unpack2x16float(q.y);
      let w2 = unpack2x16float(q.z);
      let w3 = unpack2x16float(q.w);
      acc += dot(vec4<f32>(w0, w1), xa) + dot(vec4<f32>(w2, w3), xb);
    }
  }
${rowSumAndStore(out, rows, TPR, bias, feats)}`,
    dispatch: (ntok) => [Math.min(groups, ROW_FOLD), ntok, Math.ceil(groups / ROW_FOLD)],
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
export function rmsNormKernel(hidden: number, eps: number, gamma: boolean, feats: WgslFeatures = NO_FEATURES, quant?: RowQuant): WgslKernel {
  const T = rowThreads(hidden);
  if (quant) checkRowQuant(hidden, quant);
  const y = wgsl`X[src + i] * inv${gamma ? wgsl` * gamma[i]` : wgsl``}`;
  return defineKernel({
    name: quant ? (quant.pack ? 'rms_norm_quant_pack' : 'rms_norm_quant') : 'rms_norm',
    params: { hidden, eps, gamma, ...(quant ? { bits: quant.bits, clip: quant.clip, pack: quant.pack } : {}) },
    bindings: [f32buf('X'), ...(gamma ? [f32buf('gamma')] : []), f32buf('Y', 'read_write'), ...(quant ? quantBindings(quant) : [])],
    usesStep: true,
    workgroupSize: T,
    features: feats,
    module: reduceDecl(quant ? 2 : 1, T),
    body: wgsl`  let m = wid.x;
  let src = (step.row0 + m) * ${u32(hidden)};
  var ss = 0.0;
  for (var i = lid; i < ${u32(hidden)}; i += ${u32(T)}) { let v = X[src + i]; ss += v * v; }
${reduce(1, () => wgsl`ss`, 'sum', feats, T)}
  let inv = inverseSqrt(red[0] / ${f32(hidden)} + ${f32(eps)});
${
  quant
    ? wgsl`  workgroupBarrier();
  let base = m * ${u32(hidden)};
  var lo = 3.0e38;
  var hi = -3.0e38;
  for (var i = lid; i < ${u32(hidden)}; i += ${u32(T)}) {
    let v = ${y};
    Y[base + i] = v;
    lo = min(lo, v);
    hi = max(hi, v);
  }
${quantiseRow(hidden, quant, T, feats)}`
    : wgsl`  for (var i = lid; i < ${u32(hidden)}; i += ${u32(T)}) {
    Y[m * ${u32(hidden)} + i] = ${y};
  }`
}`,
    dispatch: (ntok) => [ntok, 1, 1],
  });
}

/**
 * LayerNorm of rows row0 + m into rows m: y = (x − μ) / sqrt(mean((x − μ)²) + eps) · γ + β,
 * two reductions (μ, then the centred sum of squares). Bindings: X, [gamma], [beta], Y, step.
 */
export function layerNormKernel(hidden: number, eps: number, gamma: boolean, beta: boolean, feats: WgslFeatures = NO_FEATURES): WgslKernel {
  const T = rowThreads(hidden);
  return defineKernel({
    name: 'layer_norm',
    params: { hidden, eps, gamma, beta },
    bindings: [f32buf('X'), ...(gamma ? [f32buf('gamma')] : []), ...(beta ? [f32buf('beta')] : []), f32buf('Y', 'read_write')],
    usesStep: true,
    workgroupSize: T,
    features: feats,
    module: reduceDecl(1, T),
    body: wgsl`  let m = wid.x;
  let src = (step.row0 + m) * ${u32(hidden)};
  var s = 0.0;
  for (var i = lid; i < ${u32(hidden)}; i += ${u32(T)}) { s += X[src + i]; }
${reduce(1, () => wgsl`s`, 'sum', feats, T)}
  let mean = red[0] / ${f32(hidden)};
  workgroupBarrier();
  var ss = 0.0;
  for (var i = lid; i < ${u32(hidden)}; i += ${u32(T)}) { let d = X[src + i] - mean; ss += d * d; }
${reduce(1, () => wgsl`ss`, 'sum', feats, T)}
  let inv = inverseSqrt(red[0] / ${f32(hidden)} + ${f32(eps)});
  for (var i = lid; i < ${u32(hidden)}; i += ${u32(T)}) {
    Y[m * ${u32(hidden)} + i] = (X[src + i] - mean) * inv${gamma ? wgsl` * gamma[i]` : wgsl``}${beta ? wgsl` + beta[i]` : wgsl``};
  }`,
    dispatch: (ntok) => [ntok, 1, 1],
  });
}

/** X[m] += P[pos0 + m], the learned absolute positions (GPT-2's wpe). Bindings: P, X, step. */
export function positionAddKernel(hidden: number, maxPos: number): WgslKernel {
  return defineKernel({
    name: 'position_add',
    params: { hidden, maxPos },
    bindings: [f32buf('P'), f32buf('X', 'read_write')],
    usesStep: true,
    workgroupSize: WG,
    body: wgsl`  let i = wid.x * ${u32(WG)} + lid;
  let pos = step.pos0 + wid.y;
  if (i >= ${u32(hidden)} || pos >= ${u32(maxPos)}) { return; }
  X[wid.y * ${u32(hidden)} + i] += P[pos * ${u32(hidden)} + i];`,
    dispatch: (ntok) => [Math.ceil(hidden / WG), ntok, 1],
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
 * (WGSL round), rows with scale = 0 unchanged. Bindings: Y, step. With `pack` (bits ≤ 8) the
 * kernel also writes x̂'s integer form for ternaryGemvA8Kernel: XQ, the codes q as bytes in
 * the order of bit2 code words (byte b of word j of a 16-element chunk is element j + 4b), and
 * XP, (scale, zero) a token; a row with scale = 0 (all x equal to v) becomes q = 1, (v, 0).
 */
export function actQuantKernel(width: number, bits: number, clip: number, feats: WgslFeatures = NO_FEATURES, pack = false): WgslKernel {
  const q = checkRowQuant(width, { bits, clip, pack });
  const T = rowThreads(width);
  return defineKernel({
    name: pack ? 'act_quant_pack' : 'act_quant',
    params: { width, bits, clip, ...(pack ? { pack } : {}) },
    bindings: [f32buf('Y', 'read_write'), ...quantBindings(q)],
    usesStep: true,
    workgroupSize: T,
    features: feats,
    module: reduceDecl(2, T),
    body: wgsl`  let base = wid.x * ${u32(width)};
  var lo = 3.0e38;
  var hi = -3.0e38;
  for (var i = lid; i < ${u32(width)}; i += ${u32(T)}) { let v = Y[base + i]; lo = min(lo, v); hi = max(hi, v); }
${quantiseRow(width, q, T, feats)}`,
    dispatch: (ntok) => [ntok, 1, 1],
  });
}

/**
 * Activation codes (one byte each, rows of `cols`) in the order actQuantKernel with pack writes
 * them and ternaryGemvA8Kernel reads them: byte b of word j of each 16-element chunk holds
 * element j + 4b. The host-side statement of the layout (tests, benchmarks).
 */
export function packActBytes(q: Uint8Array, cols: number): Uint32Array {
  const out = new Uint32Array(q.length / 4);
  for (let i = 0; i < q.length; i++) {
    const row = Math.floor(i / cols), k = i % cols, e = k % 16;
    out[(row * cols) / 4 + 4 * Math.floor(k / 16) + (e % 4)] |= q[i] << (8 * Math.floor(e / 4));
  }
  return out;
}

/** An act site's quantiser as a row kernel applies it (actQuantKernel, or fused after a norm). */
export interface RowQuant {
  bits: number;
  clip: number;
  /** Also write the integer form for the integer GEMVs (XQ, XP). */
  pack: boolean;
}

function checkRowQuant(width: number, q: RowQuant): RowQuant {
  if (!Number.isInteger(q.bits) || q.bits < 1 || q.bits > 15) throw new Error(`act-quant: unsupported bit width ${q.bits}`);
  if (!(q.clip > 0 && q.clip <= 1)) throw new Error(`act-quant: clip ratio ${q.clip} not in (0, 1]`);
  if (q.pack && (q.bits > 8 || width % 16)) throw new Error(`act-quant: ${q.bits}-bit codes of width ${width} do not pack into bytes of 16-element chunks`);
  return q;
}

function quantBindings(q: RowQuant): Binding[] {
  return q.pack ? [{ name: 'XQ', elem: 'u32', access: 'read_write' }, f32buf('XP', 'read_write')] : [];
}

/**
 * The act-quant of row wid.x of Y in place (Y[base …]), given each thread's lo/hi over the
 * elements it visited: the clip range from their reduction, then x̂ (and with pack its bytes
 * and (scale, zero)). A thread's quantise loop reads elements other threads wrote when packing,
 * so the row is behind a storage barrier first.
 */
function quantiseRow(width: number, q: RowQuant, T: number, feats: WgslFeatures): Code {
  const qmax = 2 ** q.bits - 1;
  const body = q.pack
    ? wgsl`  let xq0 = wid.x * ${u32(width / 4)};
  if (scale > 0.0) {
    let zero = round(-cmin / scale);
    for (var wi = lid; wi < ${u32(width / 4)}; wi += ${u32(T)}) {
      let k0 = (wi >> 2u) * 16u + (wi & 3u);
      var word = 0u;
      for (var b = 0u; b < 4u; b++) {
        let k = base + k0 + 4u * b;
        let q = clamp(round(Y[k] / scale) + zero, 0.0, ${f32(qmax)});
        Y[k] = (q - zero) * scale;
        word |= u32(q) << (8u * b);
      }
      XQ[xq0 + wi] = word;
    }
    if (lid == 0u) { XP[2u * wid.x] = scale; XP[2u * wid.x + 1u] = zero; }
  } else {
    for (var wi = lid; wi < ${u32(width / 4)}; wi += ${u32(T)}) { XQ[xq0 + wi] = 0x01010101u; }
    if (lid == 0u) { XP[2u * wid.x] = Y[base]; XP[2u * wid.x + 1u] = 0.0; }
  }`
    : wgsl`  if (scale > 0.0) {
    let zero = round(-cmin / scale);
    for (var i = lid; i < ${u32(width)}; i += ${u32(T)}) {
      let q = clamp(round(Y[base + i] / scale) + zero, 0.0, ${f32(qmax)});
      Y[base + i] = (q - zero) * scale;
    }
  }`;
  return wgsl`  lo = -lo;
${reduce(2, (i) => wgsl`select(hi, lo, ${i} == 1u)`, 'max', feats, T)}
  let cmax = red[0] * ${f32(q.clip)};
  let cmin = -red[${u32(T)}] * ${f32(q.clip)};
  let scale = (cmax - cmin) / ${f32(qmax)};
  storageBarrier();
${body}`;
}

/**
 * The q/k norm before RoPE, in place on X [ntok, groups·d]: each run of d features (a head, or
 * the whole projection as one run) normalised on its own, RMSNorm or LayerNorm (no β), times γ
 * shared by the runs (γ[i]) or each run's own (γ[run·d + i]); one workgroup per (token, run).
 * Bindings: X, gamma?.
 */
export function headNormKernel(groups: number, d: number, eps: number, kind: QkNormKind, gamma: 'none' | 'shared' | 'own', feats: WgslFeatures = NO_FEATURES): WgslKernel {
  const centred = kind === 'layer';
  const g = gamma === 'own' ? wgsl` * gamma[wid.y * ${u32(d)} + i]` : gamma === 'shared' ? wgsl` * gamma[i]` : wgsl``;
  return defineKernel({
    name: 'head_norm',
    params: { groups, d, eps, kind, gamma },
    bindings: [f32buf('X', 'read_write'), ...(gamma !== 'none' ? [f32buf('gamma')] : [])],
    usesStep: false,
    workgroupSize: WG,
    features: feats,
    module: reduceDecl(1),
    body: wgsl`  let o = wid.x * ${u32(groups * d)} + wid.y * ${u32(d)};
  var mean = 0.0;
${
  centred
    ? wgsl`  var s = 0.0;
  for (var i = lid; i < ${u32(d)}; i += ${u32(WG)}) { s += X[o + i]; }
${reduce(1, () => wgsl`s`, 'sum', feats)}
  mean = red[0] / ${f32(d)};
  workgroupBarrier();`
    : wgsl``
}
  var ss = 0.0;
  for (var i = lid; i < ${u32(d)}; i += ${u32(WG)}) { let v = X[o + i] - mean; ss += v * v; }
${reduce(1, () => wgsl`ss`, 'sum', feats)}
  let inv = inverseSqrt(red[0] / ${f32(d)} + ${f32(eps)});
  for (var i = lid; i < ${u32(d)}; i += ${u32(WG)}) { X[o + i] = (X[o + i] - mean) * inv${g}; }`,
    dispatch: (ntok) => [ntok, groups, 1],
  });
}

/**
 * RoPE on q (in place) and k, and the KV-cache write of token m at position pos0 + m.
 * rope holds (cos, sin) pairs [maxPos][d/2], computed in float64 on the host.
 * Bindings: Q, K, V, rope, Kc, Vc, step.
 */
/**
 * WGSL functions rot_B(o, i, pos) for each buffer B of `bufs`: dim i of the head vector at o of B
 * rotated to position pos by the rope table (pairs (j, j + r/2) for j < r/2 rotate, dims r… stay;
 * r = 0: no rotation). The one spelling of the rotation that ropeKvKernel's fp16 cache write and
 * the decode attention's (attentionPartialKernel with rope) share, so their keys are the same bits.
 */
function ropeFns(rotaryDim: number, bufs: readonly string[]): Code {
  const r = rotaryDim;
  const half = r / 2;
  const rot = (B: Code) =>
    r === 0
      ? wgsl`fn rot_${B}(o: u32, i: u32, pos: u32) -> f32 { return ${B}[o + i]; }`
      : wgsl`fn rot_${B}(o: u32, i: u32, pos: u32) -> f32 {
  if (i < ${u32(half)}) { let cs = ropeAt(pos, i); return ${B}[o + i] * cs.x - ${B}[o + i + ${u32(half)}] * cs.y; }
  if (i < ${u32(r)}) { let cs = ropeAt(pos, i - ${u32(half)}); return ${B}[o + i] * cs.x + ${B}[o + i - ${u32(half)}] * cs.y; }
  return ${B}[o + i];
}`;
  return join([
    ...(r === 0
      ? []
      : [
          wgsl`fn ropeAt(pos: u32, i: u32) -> vec2f {
  let j = (pos * ${u32(half)} + i) * 2u;
  return vec2f(rope[j], rope[j + 1u]);
}`,
        ]),
    ...bufs.map((B) => rot(new Code(B))),
  ]);
}

export function ropeKvKernel(heads: number, kvHeads: number, d: number, maxPos: number, rotaryDim = d, kv: KvStorage = 'f32'): WgslKernel {
  // Pairs (i, i + r/2) for i < r/2 rotate; dims r… of q stay, of k are copied to the cache.
  // r = 0 (no RoPE: learned positions) only copies k and v. One workgroup a (token, head):
  // heads of q first, then the KV heads, which also write their v to the cache. With an fp16
  // cache a KV head's thread writes whole words: dims 2j and 2j + 1, each rotated on its own.
  const r = rotaryDim;
  const half = r / 2;
  const kvd = kvHeads * d;
  // dim i's (cos, sin) at pos, and a q head's pair (i, i + r/2) rotated in place by it
  const ropeCs = wgsl`let cs = vec2f(rope[(pos * ${u32(half)} + i) * 2u], rope[(pos * ${u32(half)} + i) * 2u + 1u]);`;
  const rotateQ = wgsl`      let o = m * ${u32(heads * d)} + hh * ${u32(d)} + i;
      let x0 = Q[o];
      let x1 = Q[o + ${u32(half)}];
      Q[o] = x0 * cs.x - x1 * cs.y;
      Q[o + ${u32(half)}] = x1 * cs.x + x0 * cs.y;`;
  if (kv === 'f16') {
    if (d % 2) throw new Error(`fp16 KV cache: head dim ${d} is odd`);
    return defineKernel({
      name: 'rope_kv_f16',
      params: { heads, kvHeads, d, maxPos, ...(r === d ? {} : { rotaryDim: r }) },
      bindings: [f32buf('Q', 'read_write'), f32buf('K'), f32buf('V'), f32buf('rope'), u32buf('Kc', 'read_write'), u32buf('Vc', 'read_write')],
      usesStep: true,
      workgroupSize: WG,
      module: ropeFns(r, ['K']),
      body: wgsl`  let m = wid.x;
  let hh = wid.y;
  let pos = step.pos0 + m;
  if (pos >= ${u32(maxPos)}) { return; }
  if (hh < ${u32(heads)}) {
    for (var i = lid; i < ${u32(half)}; i += ${u32(WG)}) {
      ${ropeCs}
${rotateQ}
    }
    return;
  }
  let kh = hh - ${u32(heads)};
  let ko = m * ${u32(kvd)} + kh * ${u32(d)};
  let c = (pos * ${u32(kvd)} + kh * ${u32(d)}) / 2u;
  for (var j = lid; j < ${u32(d / 2)}; j += ${u32(WG)}) {
    let e = 2u * j;
    Kc[c + j] = pack2x16float(vec2f(rot_K(ko, e, pos), rot_K(ko, e + 1u, pos)));
    Vc[c + j] = pack2x16float(vec2f(V[ko + e], V[ko + e + 1u]));
  }`,
      dispatch: (ntok) => [ntok, heads + kvHeads, 1],
    });
  }
  const rotate = wgsl`  for (var i = lid; i < ${u32(half)}; i += ${u32(WG)}) {
    ${ropeCs}
    if (hh < ${u32(heads)}) {
${rotateQ}
    } else {
      let o = m * ${u32(kvd)} + kh * ${u32(d)} + i;
      let c = pos * ${u32(kvd)} + kh * ${u32(d)} + i;
      let x0 = K[o];
      let x1 = K[o + ${u32(half)}];
      Kc[c] = x0 * cs.x - x1 * cs.y;
      Kc[c + ${u32(half)}] = x1 * cs.x + x0 * cs.y;
    }
  }
`;
  return defineKernel({
    name: 'rope_kv',
    params: { heads, kvHeads, d, maxPos, ...(r === d ? {} : { rotaryDim: r }) },
    bindings: [f32buf('Q', 'read_write'), f32buf('K'), f32buf('V'), f32buf('rope'), f32buf('Kc', 'read_write'), f32buf('Vc', 'read_write')],
    usesStep: true,
    workgroupSize: WG,
    body: wgsl`  let m = wid.x;
  let hh = wid.y;
  let pos = step.pos0 + m;
  if (pos >= ${u32(maxPos)}) { return; }
  let kh = hh - min(hh, ${u32(heads)});
${half ? rotate : wgsl``}  if (hh >= ${u32(heads)}) {
${r === d ? wgsl`` : wgsl`    for (var e = ${u32(r)} + lid; e < ${u32(d)}; e += ${u32(WG)}) { Kc[pos * ${u32(kvd)} + kh * ${u32(d)} + e] = K[m * ${u32(kvd)} + kh * ${u32(d)} + e]; }
`}    for (var e = lid; e < ${u32(d)}; e += ${u32(WG)}) { Vc[pos * ${u32(kvd)} + kh * ${u32(d)} + e] = V[m * ${u32(kvd)} + kh * ${u32(d)} + e]; }
  }`,
    dispatch: (ntok) => [ntok, heads + kvHeads, 1],
  });
}

/** cap·tanh(s/cap) with tanh written with exp (exact at ±∞, as GELU_TANH). */
function softcapExpr(s: Code, cap: number): Code {
  return wgsl`${f32(cap)} * (1.0 - 2.0 / (exp(2.0 * ${s} / ${f32(cap)}) + 1.0))`;
}

/** y = silu(g) · u, elementwise over [ntok, width]. Bindings: G, U, Y, step. */
/** GELU(tanh) as 0.5·g·(1 + tanh(√(2/π)·(g + 0.044715·g³))), tanh written with exp (exact at ±∞). */
const GELU_TANH = wgsl`let t = ${f32(Math.sqrt(2 / Math.PI))} * (g + ${f32(0.044715)} * g * g * g);
  Y[e] = 0.5 * g * (2.0 - 2.0 / (exp(2.0 * t) + 1.0)) * U[e];`;

/**
 * σ as a WGSL function `act`: GELU(erf) with erf from Abramowitz & Stegun 7.1.26 (|error| ≤
 * 1.5e-7, below f32 rounding of the GELU), tanh GELU and SiLU as the gated kernels write them.
 */
const ACT_FN: Record<MlpActivation, Code> = {
  gelu: wgsl`fn act(g: f32) -> f32 {
  let x = abs(g) * ${f32(Math.SQRT1_2)};
  let t = 1.0 / (1.0 + 0.3275911 * x);
  let erf = 1.0 - ((((1.061405429 * t - 1.453152027) * t + 1.421413741) * t - 0.284496736) * t + 0.254829592) * t * exp(-x * x);
  return 0.5 * g * (1.0 + sign(g) * erf);
}`,
  'gelu-tanh': wgsl`fn act(g: f32) -> f32 {
  let t = ${f32(Math.sqrt(2 / Math.PI))} * (g + ${f32(0.044715)} * g * g * g);
  return 0.5 * g * (2.0 - 2.0 / (exp(2.0 * t) + 1.0));
}`,
  silu: wgsl`fn act(g: f32) -> f32 { return g / (1.0 + exp(-g)); }`,
};

/** How the KV cache stores keys and values: f32, or fp16 pairs in u32 words (half the bytes the
 *  attention reads; unpacked with unpack2x16float, so no shader-f16 is needed). */
export type KvStorage = 'f32' | 'f16';

/** Key positions one workgroup of the split attention takes (attentionPartialKernel). */
export const ATTN_SPLIT = 64;
/** Threads of the split attention's workgroup: 4 a key position in the scores. */
const ATTN_THREADS = 256;

/** Splits of the attention over a KV cache of `context` positions. */
export function attentionSplits(context: number): number {
  return Math.ceil(context / ATTN_SPLIT);
}

/**
 * Decode attention split by context (flash-decoding): workgroup (h, m, s) takes query head h of
 * token m over the key positions [s·S, (s+1)·S) ∩ [window start, pos0 + m] (S = ATTN_SPLIT) and
 * writes its running max m_s, Σ exp(score − m_s) and Σ exp(score − m_s)·v to PM, PL, PA
 * [token][head][split]; attentionCombineKernel merges the splits. A split with no position
 * writes m_s = −3e38, l_s = 0. So the work of a long context is spread over heads × splits
 * workgroups instead of one workgroup a head. Scores are cap·tanh(scale·q·kᵀ/cap) (softcap null: no
 * tanh), causal (window null: every key up to the token's position). Bindings: Q, Kc, Vc, PM,
 * PL, PA, step.
 *
 * With `rope` (decode only: one token a launch) the kernel also does ropeKvKernel's work: it reads
 * q, k and v as the q|k|v linear wrote them (Q, K, V) and the rope table, rotates q itself, and the
 * workgroups of the split holding the token's own position rotate its key (rounded to fp16 with an
 * fp16 cache) into workgroup memory and use it, and its value, for that position; the first query
 * head of each KV head also appends them to the cache, which no other workgroup of the launch reads
 * at that position. The arithmetic is ropeKvKernel's, so the cache and the sums are the same.
 * Bindings then: Q, K, V, rope, Kc, Vc, PM, PL, PA, step.
 */
export function attentionPartialKernel(heads: number, kvHeads: number, d: number, scale: number, window: number | null, splits: number, feats: WgslFeatures = NO_FEATURES, softcap: number | null = null, kv: KvStorage = 'f32', rope?: { rotaryDim: number }): WgslKernel {
  if (heads % kvHeads) throw new Error(`attention: ${heads} heads are not a multiple of ${kvHeads} KV heads`);
  const f16 = kv === 'f16';
  if (f16 && d % 2) throw new Error(`fp16 KV cache: head dim ${d} is odd`);
  /** Element `i` of a cache (f32, or half i & 1 of word i >> 1). */
  const at = (buf: string, i: Code) => (f16 ? wgsl`unpack2x16float(${new Code(buf)}[(${i}) >> 1u])[(${i}) & 1u]` : wgsl`${new Code(buf)}[${i}]`);
  const S = ATTN_SPLIT;
  const T = ATTN_THREADS;
  const TPP = T / S; // threads a key position in the scores, each a strided share of the dims
  const PG = Math.max(1, Math.floor(T / d)); // position groups in the weighted sum of v (one dim a thread)
  const kvd = kvHeads * d;
  const r = rope?.rotaryDim ?? 0;
  if (rope && (r % 2 || r > d)) throw new Error(`attention: rotary dims ${r} of a ${d}-dim head`);
  const cacheBuf = (name: string) => (f16 ? u32buf(name, rope ? 'read_write' : 'read') : f32buf(name, rope ? 'read_write' : 'read'));
  const r16 = (x: Code) => (f16 ? wgsl`unpack2x16float(pack2x16float(vec2f(${x}, 0.0))).x` : x);
  /** Key (or value) element i of position c0 + t: the new one from workgroup memory under `rope`. */
  const cached = (buf: string, fresh: string, t: Code, index: Code, i: Code, acc: (x: Code) => Code) =>
    rope ? wgsl`if (c0 + ${t} == last) { ${acc(wgsl`${new Code(fresh)}[${i}]`)} } else { ${acc(at(buf, index))} }` : acc(at(buf, index));
  const qScale = f32(isDefaultScale(scale, d) ? 1 / Math.sqrt(d) : scale);
  const loadQ = rope
    ? wgsl`  for (var i = lid; i < ${u32(d)}; i += ${u32(T)}) { qs[i] = rot_Q(qo, i, last) * ${qScale}; }
  // the token's own key and value, in the split that holds its position
  let fresh = c1 == last + 1u;
  let kvo = m * ${u32(kvd)} + kh * ${u32(d)};
  if (fresh) {
    for (var i = lid; i < ${u32(d)}; i += ${u32(T)}) {
      kn[i] = ${r16(wgsl`rot_K(kvo, i, last)`)};
      vn[i] = ${r16(wgsl`V[kvo + i]`)};
    }
  }
  workgroupBarrier();
  // the KV head's first query head appends them to the cache
  if (fresh && h % ${u32(heads / kvHeads)} == 0u) {
${f16 ? wgsl`    let c = (last * ${u32(kvd)} + kh * ${u32(d)}) / 2u;
    for (var j = lid; j < ${u32(d / 2)}; j += ${u32(T)}) {
      Kc[c + j] = pack2x16float(vec2f(kn[2u * j], kn[2u * j + 1u]));
      Vc[c + j] = pack2x16float(vec2f(vn[2u * j], vn[2u * j + 1u]));
    }` : wgsl`    let c = last * ${u32(kvd)} + kh * ${u32(d)};
    for (var i = lid; i < ${u32(d)}; i += ${u32(T)}) { Kc[c + i] = kn[i]; Vc[c + i] = vn[i]; }`}
  }`
    : wgsl`  for (var i = lid; i < ${u32(d)}; i += ${u32(T)}) { qs[i] = Q[qo + i] * ${qScale}; }
  workgroupBarrier();`;
  const name = `attention_partial${rope ? '_rope' : ''}${f16 ? '_f16' : ''}`;
  return defineKernel({
    name,
    params: { heads, kvHeads, d, splits, ...(isDefaultScale(scale, d) ? {} : { scale }), ...(window === null ? {} : { window }), ...(softcap === null ? {} : { softcap }), ...(f16 ? { kv } : {}), ...(rope ? { rotaryDim: r } : {}) },
    bindings: [f32buf('Q'), ...(rope ? [f32buf('K'), f32buf('V'), f32buf('rope')] : []), cacheBuf('Kc'), cacheBuf('Vc'), f32buf('PM', 'read_write'), f32buf('PL', 'read_write'), f32buf('PA', 'read_write')],
    usesStep: true,
    workgroupSize: T,
    features: feats,
    module: join([
      reduceDecl(1, T),
      wgsl`var<workgroup> sc: array<f32, ${u32(S)}>;
var<workgroup> qs: array<f32, ${u32(d)}>;
var<workgroup> part: array<f32, ${u32(Math.max(T, PG * d))}>;`,
      ...(rope
        ? [
            wgsl`var<workgroup> kn: array<f32, ${u32(d)}>;
var<workgroup> vn: array<f32, ${u32(d)}>;`,
            ropeFns(r, ['Q', 'K']),
          ]
        : []),
    ]),
    // Every early exit depends on workgroup ids and the step only: barriers stay uniform.
    body: wgsl`  let h = wid.x;
  let m = wid.y;
  let sp = wid.z;
  if (m >= step.ntok) { return; }
  let kh = h / ${u32(heads / kvHeads)};
  let last = step.pos0 + m;
  let lo = ${window === null ? wgsl`0u` : wgsl`select(0u, last + 1u - ${u32(window)}, last + 1u > ${u32(window)})`};
  let c0 = max(sp * ${u32(S)}, lo);
  let c1 = min(sp * ${u32(S)} + ${u32(S)}, last + 1u);
  let slot = (m * ${u32(heads)} + h) * ${u32(splits)} + sp;
  if (c0 >= c1) {
    if (lid == 0u) { PM[slot] = -3.0e38; PL[slot] = 0.0; }
    for (var i = lid; i < ${u32(d)}; i += ${u32(T)}) { PA[slot * ${u32(d)} + i] = 0.0; }
    return;
  }
  let qo = m * ${u32(heads * d)} + h * ${u32(d)};
${loadQ}
  let cn = c1 - c0;
  // scores: TPP threads a position, the dims strided between them (neighbours read neighbouring floats)
  {
    let p = lid / ${u32(TPP)};
    let tp = lid % ${u32(TPP)};
    var s = 0.0;
    if (p < cn) {
      let ko = (c0 + p) * ${u32(kvd)} + kh * ${u32(d)};
      for (var i = tp; i < ${u32(d)}; i += ${u32(TPP)}) { ${cached('Kc', 'kn', wgsl`p`, wgsl`ko + i`, wgsl`i`, (x) => wgsl`s += qs[i] * ${x};`)} }
    }
    part[lid] = s;
  }
  workgroupBarrier();
  var cmax = -3.0e38;
  if (lid < cn) {
    var s = 0.0;
    for (var j = 0u; j < ${u32(TPP)}; j++) { s += part[lid * ${u32(TPP)} + j]; }
${softcap === null ? wgsl`` : wgsl`    s = ${softcapExpr(wgsl`s`, softcap)};
`}    sc[lid] = s;
    cmax = s;
  }
${reduce(1, () => wgsl`cmax`, 'max', feats, T)}
  let mx = red[0];
  workgroupBarrier();
  var csum = 0.0;
  if (lid < cn) { let e = exp(sc[lid] - mx); sc[lid] = e; csum = e; }
${reduce(1, () => wgsl`csum`, 'sum', feats, T)}
  if (lid == 0u) { PM[slot] = mx; PL[slot] = red[0]; }
  // Σ e·v: a thread a dim, PG groups of positions, then the groups added
${PG > 1 ? wgsl`  {
    let i = lid % ${u32(d)};
    let g = lid / ${u32(d)};
    if (g < ${u32(PG)}) {
      var a = 0.0;
      for (var t = g; t < cn; t += ${u32(PG)}) { ${cached('Vc', 'vn', wgsl`t`, wgsl`(c0 + t) * ${u32(kvd)} + kh * ${u32(d)} + i`, wgsl`i`, (x) => wgsl`a += sc[t] * ${x};`)} }
      part[g * ${u32(d)} + i] = a;
    }
  }
  workgroupBarrier();
  if (lid < ${u32(d)}) {
    var a = 0.0;
    for (var g = 0u; g < ${u32(PG)}; g++) { a += part[g * ${u32(d)} + lid]; }
    PA[slot * ${u32(d)} + lid] = a;
  }` : wgsl`  for (var i = lid; i < ${u32(d)}; i += ${u32(T)}) {
    var a = 0.0;
    for (var t = 0u; t < cn; t++) { ${cached('Vc', 'vn', wgsl`t`, wgsl`(c0 + t) * ${u32(kvd)} + kh * ${u32(d)} + i`, wgsl`i`, (x) => wgsl`a += sc[t] * ${x};`)} }
    PA[slot * ${u32(d)} + i] = a;
  }`}`,
    // the splits up to the last token's position: the rest would only write empty partials
    dispatch: (ntok, pos0 = splits * S) => [heads, ntok, Math.min(splits, Math.ceil((pos0 + ntok) / S))],
  });
}

/** Split weights the merge keeps in workgroup memory (8 KiB: 131072 positions); past that it recomputes them. */
const COMBINE_MAX_SPLITS = 2048;

/**
 * Merge the splits of attentionPartialKernel: O = Σ_s e^(m_s − M)·a_s / Σ_s e^(m_s − M)·l_s over
 * the splits up to the token's last position. One workgroup a (head, chunk of DC dims, token):
 * the split weights e^(m_s − M) once into workgroup memory, then SG groups of threads each add
 * every SG-th split for the chunk's dims, and their sums are added, so a long context's splits are
 * walked SG at a time by many workgroups rather than one by one by a head's. Bindings: PM, PL,
 * PA, O, step.
 */
export function attentionCombineKernel(heads: number, d: number, splits: number, feats: WgslFeatures = NO_FEATURES): WgslKernel {
  const S = ATTN_SPLIT;
  const T = ATTN_THREADS;
  const DC = d % 32 === 0 ? 32 : d > T ? 1 : d; // dims a workgroup
  const chunks = d / DC;
  const SG = Math.floor(T / DC); // split groups
  const keep = splits <= COMBINE_MAX_SPLITS;
  const w = (sIdx: Code) => (keep ? wgsl`ws[${sIdx}]` : wgsl`exp(PM[base + ${sIdx}] - mx)`);
  return defineKernel({
    name: 'attention_combine',
    params: { heads, d, splits },
    bindings: [f32buf('PM'), f32buf('PL'), f32buf('PA'), f32buf('O', 'read_write')],
    usesStep: true,
    workgroupSize: T,
    features: feats,
    module: join([reduceDecl(1, T), wgsl`var<workgroup> part: array<f32, ${u32(SG * DC)}>;`, ...(keep ? [wgsl`var<workgroup> ws: array<f32, ${u32(splits)}>;`] : [])]),
    // Every early exit depends on workgroup ids and the step only: barriers stay uniform.
    body: wgsl`  let h = wid.x / ${u32(chunks)};
  let c = wid.x - h * ${u32(chunks)};
  let m = wid.y;
  if (m >= step.ntok) { return; }
  let ns = min((step.pos0 + m) / ${u32(S)} + 1u, ${u32(splits)});
  let base = (m * ${u32(heads)} + h) * ${u32(splits)};
  var pmx = -3.0e38;
  for (var s = lid; s < ns; s += ${u32(T)}) { pmx = max(pmx, PM[base + s]); }
${reduce(1, () => wgsl`pmx`, 'max', feats, T)}
  let mx = red[0];
  workgroupBarrier();
  var pl = 0.0;
  for (var s = lid; s < ns; s += ${u32(T)}) {
    let e = exp(PM[base + s] - mx);
    ${keep ? wgsl`ws[s] = e;` : wgsl``}
    pl += e * PL[base + s];
  }
${reduce(1, () => wgsl`pl`, 'sum', feats, T)}
  let l = red[0];
  let g = lid / ${u32(DC)};
  let i = lid - g * ${u32(DC)};
  let dim = c * ${u32(DC)} + i;
  if (g < ${u32(SG)}) {
    var a = 0.0;
    for (var s = g; s < ns; s += ${u32(SG)}) { a += ${w(wgsl`s`)} * PA[(base + s) * ${u32(d)} + dim]; }
    part[g * ${u32(DC)} + i] = a;
  }
  workgroupBarrier();
  if (lid < ${u32(DC)}) {
    var a = 0.0;
    for (var q = 0u; q < ${u32(SG)}; q++) { a += part[q * ${u32(DC)} + lid]; }
    O[m * ${u32(heads * d)} + h * ${u32(d)} + dim] = a / l;
  }`,
    dispatch: (ntok) => [heads * chunks, ntok, 1],
  });
}

/** The gated MLP product y = σ(g) · u elementwise over [ntok, width], σ the program's
 *  activation: SiLU (SwiGLU), tanh GELU (GeGLU) or GELU(erf). Bindings: G, U, Y, step. */
export function swigluKernel(width: number, activation: MlpActivation = 'silu'): WgslKernel {
  return defineKernel({
    name: activation === 'silu' ? 'swiglu' : activation === 'gelu' ? 'geglu_erf' : 'geglu_tanh',
    params: { width },
    bindings: [f32buf('G'), f32buf('U'), f32buf('Y', 'read_write')],
    usesStep: true,
    workgroupSize: WG,
    ...(activation === 'gelu' ? { module: ACT_FN.gelu } : {}),
    body: wgsl`  let i = wid.x * ${u32(WG)} + lid;
  if (i >= ${u32(width)}) { return; }
  let e = wid.y * ${u32(width)} + i;
  let g = G[e];
  ${activation === 'silu' ? wgsl`Y[e] = g / (1.0 + exp(-g)) * U[e];` : activation === 'gelu' ? wgsl`Y[e] = act(g) * U[e];` : GELU_TANH}`,
    dispatch: (ntok) => [Math.ceil(width / WG), ntok, 1],
  });
}

/**
 * The MLP activation, act(g)·u (gated) or act(u), with the down site's quantiser in the same
 * kernel: one workgroup a token writes the row, then quantises it as actQuantKernel does (and
 * with pack writes its integer form). Bindings: [G], U, Y, [XQ, XP], step.
 */
export function mlpActQuantKernel(width: number, activation: MlpActivation, gated: boolean, feats: WgslFeatures, quant: RowQuant): WgslKernel {
  checkRowQuant(width, quant);
  const T = rowThreads(width);
  return defineKernel({
    name: `${gated ? 'glu' : 'mlp'}_${activation.replace('-', '_')}_quant${quant.pack ? '_pack' : ''}`,
    params: { width, gated, bits: quant.bits, clip: quant.clip, pack: quant.pack },
    bindings: [...(gated ? [f32buf('G')] : []), f32buf('U'), f32buf('Y', 'read_write'), ...quantBindings(quant)],
    usesStep: true,
    workgroupSize: T,
    features: feats,
    module: join([ACT_FN[activation], reduceDecl(2, T)]),
    body: wgsl`  let base = wid.x * ${u32(width)};
  var lo = 3.0e38;
  var hi = -3.0e38;
  for (var i = lid; i < ${u32(width)}; i += ${u32(T)}) {
    let v = ${gated ? wgsl`act(G[base + i]) * U[base + i]` : wgsl`act(U[base + i])`};
    Y[base + i] = v;
    lo = min(lo, v);
    hi = max(hi, v);
  }
${quantiseRow(width, quant, T, feats)}`,
    dispatch: (ntok) => [ntok, 1, 1],
  });
}

/** The ungated MLP activation y = σ(u) elementwise over [ntok, width] (GPT-2 / GPT-NeoX / Phi-2). Bindings: U, Y, step. */
export function mlpActivationKernel(width: number, activation: MlpActivation): WgslKernel {
  return defineKernel({
    name: `mlp_${activation.replace('-', '_')}`,
    params: { width },
    bindings: [f32buf('U'), f32buf('Y', 'read_write')],
    usesStep: true,
    workgroupSize: WG,
    module: ACT_FN[activation],
    body: wgsl`  let i = wid.x * ${u32(WG)} + lid;
  if (i >= ${u32(width)}) { return; }
  let e = wid.y * ${u32(width)} + i;
  Y[e] = act(U[e]);`,
    dispatch: (ntok) => [Math.ceil(width / WG), ntok, 1],
  });
}

/** One thread an element of [ntok, width]; `statement` sets element e. Bindings as given, then step. */
function elementwiseKernel(name: string, width: number, params: Record<string, number>, bindings: Binding[], statement: Code): WgslKernel {
  return defineKernel({
    name,
    params: { width, ...params },
    bindings,
    usesStep: true,
    workgroupSize: WG,
    body: wgsl`  let i = wid.x * ${u32(WG)} + lid;
  if (i >= ${u32(width)}) { return; }
  let e = wid.y * ${u32(width)} + i;
  ${statement}`,
    dispatch: (ntok) => [Math.ceil(width / WG), ntok, 1],
  });
}

/** X ← cap·tanh(X/cap) elementwise over [ntok, width] (the program's logit soft-capping). Bindings: X, step. */
export function softcapKernel(width: number, cap: number): WgslKernel {
  return elementwiseKernel('softcap', width, { cap }, [f32buf('X', 'read_write')], wgsl`X[e] = ${softcapExpr(wgsl`X[e]`, cap)};`);
}

/** Y ← X elementwise over [ntok, width] (a block input without a pre-norm, before its in-place quantiser). Bindings: X, Y, step. */
export function copyKernel(width: number): WgslKernel {
  return elementwiseKernel('copy', width, {}, [f32buf('X'), f32buf('Y', 'read_write')], wgsl`Y[e] = X[e];`);
}

/** X ← s · X elementwise over [ntok, width] (the program's logit scale). Bindings: X, step. */
export function scaleKernel(width: number, s: number): WgslKernel {
  return elementwiseKernel('scale', width, { s }, [f32buf('X', 'read_write')], wgsl`X[e] = X[e] * ${f32(s)};`);
}

/** X += scale · D elementwise over [ntok, width] (the residual add). Bindings: D, X, step. */
export function residualAddKernel(width: number, scale = 1): WgslKernel {
  return elementwiseKernel('residual_add', width, scale === 1 ? {} : { scale }, [f32buf('D'), f32buf('X', 'read_write')], wgsl`X[e] = X[e] + D[e]${scale === 1 ? wgsl`` : wgsl` * ${f32(scale)}`};`);
}

/** Threads of the greedy-token kernel (one workgroup). */
const ARGMAX_WG = 256;

/**
 * The greedy next token on the device: the first index of the largest of the last token's
 * logits (row 0 of L, as the last-token ops write it; ties go to the lower index, as the
 * host's argmax), written to ids[0] (what the next step's embedding gather reads) and to
 * T[step.pos0] (the token after position pos0, for the host to read when it likes). One
 * workgroup: each thread scans a strided slice in increasing index order, then a tree of
 * (value, index) pairs. Bindings: L, ids, T, step.
 */
export function argmaxTokenKernel(vocab: number): WgslKernel {
  const T = ARGMAX_WG;
  return defineKernel({
    name: 'argmax_token',
    params: { vocab },
    bindings: [f32buf('L'), { name: 'ids', elem: 'u32', access: 'read_write' }, { name: 'T', elem: 'u32', access: 'read_write' }],
    usesStep: true,
    workgroupSize: T,
    module: wgsl`var<workgroup> bv: array<f32, ${u32(T)}>;
var<workgroup> bi: array<u32, ${u32(T)}>;`,
    body: wgsl`  var v = L[min(lid, ${u32(vocab - 1)})];
  var b = min(lid, ${u32(vocab - 1)});
  for (var i = lid + ${u32(T)}; i < ${u32(vocab)}; i += ${u32(T)}) { let x = L[i]; if (x > v) { v = x; b = i; } }
  bv[lid] = v;
  bi[lid] = b;
  workgroupBarrier();
  for (var s = ${u32(T / 2)}; s > 0u; s >>= 1u) {
    if (lid < s) {
      let ov = bv[lid + s];
      let oi = bi[lid + s];
      if (ov > bv[lid] || (ov == bv[lid] && oi < bi[lid])) { bv[lid] = ov; bi[lid] = oi; }
    }
    workgroupBarrier();
  }
  if (lid == 0u) { ids[0] = bi[0]; T[step.pos0] = bi[0]; }`,
    dispatch: () => [1, 1, 1],
  });
}
