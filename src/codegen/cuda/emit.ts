// `--target cuda[:sm_90a,sm_80]`: writes out/kernels/cuda/
//   <arch>/twlac_model.cuh  every kernel the model needs, specialised to its shapes, formats
//                           and the architecture; their launchers; the tensor index of
//                           weights.bin; and `twlac_forward`, the block program as launches
//   twlac_cuda_main.cu      the host program (static; src/codegen/cuda/runtime/main.cu):
//                           load weights (or synthesise them on the GPU), prefill, greedy
//                           decode with a KV cache, perplexity, decode benchmark
//   Makefile                `make ARCH=sm_90a` builds ./twlac_cuda_sm_90a
// Linear kernels by tokens M and site (gemvChoice): the streaming GEMVs at M = 1 (fp16) or
// M ≤ 4 (u8 codes at sites with ≤ 8 bits), q/k/v and gate/up grouped into one launch; up to 16
// tokens the tensor-core skinny GEMM on fp16 activations (the dequantised copy at ≤ 8-bit
// sites); the staged GEMVs where a format allows neither. Prefill forwards of more tokens
// (beyondBuckets): the int8 prefill GEMM at ≤ 8-bit sites, the skinny GEMM in slices of
// TC_MAX_M tokens, and the prefill attention kernel. tq1 codes are transcoded to bit2 at load
// (transcode.ts) so that the default format runs on the same kernels. Sites with a transform
// or bits < 16 go through the act kernel (RMSNorm or LayerNorm / the MLP's σ, Kronecker
// transform, quantiser).
import { UserError } from '../../errors.ts';
import { mkdirSync, readFileSync, writeFileSync } from 'node:fs';
import { dirname, join as pjoin } from 'node:path';
import { fileURLToPath } from 'node:url';
import type { ActSite, ArtifactManifest, BlockEntry, LinearEntry, TensorEntry } from '../../artifact/manifest.ts';
import type { ModelConfig } from '../../graph/model-config.ts';
import { CODE_PACKINGS, groupsPerRow, latticeUnit, ternaryFormat } from '../../formats/ternary.ts';
import { linearFormat, ternaryFormatOf } from '../../formats/linear-format.ts';
import { Code, code, comment, ident, join } from '../common/fragments.ts';
import { CUDA_ARCHS, type CudaArch } from './arch.ts';
import type { CudaKernel } from './kernel.ts';
import { cudaFloat } from './kernel.ts';
import { actKernel, attnCombineKernel, biasAddKernel, headNormKernel, attnPartialKernel, attnPrefillKernel, blockHelpers, denseGemvKernel, embedKernel, kvAppendKernel, mlpSource, postNormAddKernel, residualAddKernel, ropeKvKernel, scaleKernel, softcapKernel, attnScale, attnGeometry, ATTN_CHUNK, ATTN_MAX_SPLITS, type ActSource, type AttnShape } from './kernels/block.ts';
import { prefillGemmKernels, prefillGemmUnsupported } from './kernels/prefill-gemm.ts';
import { gemmTakesRows } from './kernels/gemm.ts';
import { attnPrefillTcKernel, attnPrefillTcUnsupported } from './kernels/attn-prefill-tc.ts';
import { gemvKernel } from './kernels/gemv.ts';
import { gemvA8Kernel, gemvA8Unsupported } from './kernels/gemv-a8.ts';
import { gemvStreamGroupKernel, gemvStreamKernel, gemvStreamUnsupported } from './kernels/gemv-stream.ts';
import { gemvTcKernel, gemvTcUnsupported, TC_MAX_M } from './kernels/gemv-tc.ts';
import { transcodeKernel } from './kernels/transcode.ts';
import { gemmWgmmaRsUnsupported } from './kernels/gemm-wgmma-rs.ts';
import { latticeRowsKernel } from './kernels/lattice-rows.ts';
import { cudaPrelude, packingHelpers, PACKING_IDS } from './prelude.ts';
import { latticeCheckFunctions } from './lattice-check.ts';
import { blockOps, isDefaultScale, qkNormShape, refuseMissing, type AttentionProgram, type BlockOp, type Feature, type FeatureTable, type HeadNorm } from '../../program/block-program.ts';

/** Token counts the GEMVs are specialised for; a forward of T tokens uses the smallest M ≥ T. */
const GEMV_M_BUCKETS = [1, 4, 16] as const;
const GEMV_MAX_M = GEMV_M_BUCKETS[GEMV_M_BUCKETS.length - 1];
/** Most tokens one forward call takes (prefill runs in chunks of this many); beyond GEMV_MAX_M
 *  tokens the linears take the kernels of beyondBuckets. */
const MAX_CHUNK = 2048;

const RUNTIME_MAIN = pjoin(dirname(fileURLToPath(import.meta.url)), 'runtime', 'main.cu');

class KernelSet {
  readonly byName = new Map<string, CudaKernel>();
  add(k: CudaKernel): string {
    const prev = this.byName.get(k.name);
    if (prev && prev.cacheKey !== k.cacheKey) throw new Error(`CUDA emit: kernel name clash ${k.name}`);
    this.byName.set(k.name, k);
    return k.name;
  }
}

/** Random-fill kinds understood by the host program (runtime/main.cu). */
const FILL = { codesTrit5: 0, codesBit2: 1, half: 2, float: 3, identity: 4, halfLattice: 5 } as const;

interface FillSpec {
  kind: number;
  a: number;
  b: number;
  /** halfLattice: the unit the values are rounded to. */
  c?: number;
}

/** The program features the generated CUDA implements; the rest are refused by name. */
export const CUDA_FEATURES = {
  'rms-norm': true,
  gqa: true,
  'rope-rotate-half': true,
  swiglu: true,
  'ternary-linear': true,
  'order2-linear': true,
  'dense-linear': true,
  'act-quant': true,
  'online-transform': true,
  'linear-bias': true,
  'qk-norm': true,
  'sliding-window': true,
  'query-scale': true,
  'partial-rotary': true,
  'gelu-mlp': true,
  'gelu-tanh-mlp': true,
  'embed-scale': true,
  'logit-scale': true,
  'residual-scale': true,
  'layer-norm': true,
  'ungated-mlp': true,
  'parallel-residual': true,
  'learned-positions': true,
  'no-rope': true,
  'attn-softcap': true,
  'post-norm': true,
  'no-pre-norm': true,
  'qk-norm-full': true,
  'logit-softcap': true,
  'rope-theta-per-layer': true,
  'qk-norm-head-own': true,
  'qk-layer-norm': true,
} as const satisfies FeatureTable;

/**
 * Features the emitter generates (the host tests pin where each launch goes and nvcc compiles
 * them) that have not yet been checked on a GPU against the float64 reference runtime by
 * scripts/device/run-e2e.sh. A compile refuses them until that check has passed; the device
 * check itself and the tests generate them through {@link CUDA_EMITTABLE}. Empty since the
 * H100 run of 2026-12-07 (bench/results/cuda-e2e-features.json: the 14 rand12m-* variants that
 * cover every feature above).
 */
export const CUDA_UNVERIFIED: readonly Feature[] = [];

/** What the emitter can generate: {@link CUDA_FEATURES} and the features still to be checked on a GPU. */
export const CUDA_EMITTABLE: FeatureTable = { ...CUDA_FEATURES, ...Object.fromEntries(CUDA_UNVERIFIED.map((f) => [f, true])) };

/**
 * Refuse, by name, a model shape the kernels cannot take: head sizes other than 64, 128 and 256,
 * contexts past ATTN_MAX_SPLITS chunks. Compiles run it before their passes (codegen/targets.ts),
 * so a model is refused in seconds, not after its fitting.
 */
export function checkCudaShape(c: Pick<ModelConfig, 'heads' | 'kvHeads' | 'headDim' | 'maxPositions' | 'ropeTheta'>): void {
  attnGeometry({ heads: c.heads, kvHeads: c.kvHeads, headDim: c.headDim, maxPositions: c.maxPositions, ropeTheta: c.ropeTheta });
  if (Math.ceil(c.maxPositions / ATTN_CHUNK) > ATTN_MAX_SPLITS) throw new UserError(`CUDA target: ${c.maxPositions} positions exceed the ${ATTN_MAX_SPLITS * ATTN_CHUNK} the attention kernels take`);
}

/** What tells one block's attention kernels from another's. */
function attnKey(a: Pick<AttentionProgram, 'scale' | 'window' | 'softcap'>): string {
  return `${a.scale}|${a.window}|${a.softcap}`;
}

/** Generate the model header for one architecture: refuse what `features` lacks, then walk the program. */
export function cudaModelSource(m: ArtifactManifest, arch: CudaArch, features: FeatureTable = CUDA_FEATURES): string {
  refuseMissing('the CUDA backend', features, m);
  return new ModelEmitter(m, arch).source();
}

/**
 * Where every tensor lives in the device blob. trit5 codes (1.6 bits a trit on disk) whose
 * groups are whole 16-code words are transcoded at load to bit2 codes, so that the linear
 * runs on the streaming GEMVs (the trits, scales and shifts are unchanged: exact); their
 * trit5 bytes pass through a staging buffer and take no room on the device. Every other
 * tensor is placed in file order, then the transcoded codes, then the lattice GEMM's row
 * constants (E, u), an int2 a row computed after loading (twlac_lattice_rows), keyed by the
 * device codes.
 */
interface DeviceLayout {
  /** Each linear as the device holds it (format and codes after transcoding). */
  view: Map<LinearEntry, LinearEntry>;
  transcodes: { src: string; dstName: string; groups: number; group: number }[];
  /** Tensors read from the staging buffer (trit5 codes). */
  staged: Set<string>;
  offsets: Map<string, number>;
  bytes: number;
  rowsOf: Map<string, { l: LinearEntry; name: string }>;
  stagingBytes: number;
  weightsBytes: number;
  /** weights.bin's tensors by offset. */
  fileOrder: [string, TensorEntry][];
}

const secondPlanes = new WeakMap<LinearEntry, LinearEntry>();
/**
 * The second plane of an order-2 linear (formats/order2.ts) as a linear of its own: same shape,
 * its own format and tensors, no bias. The device runs it with the kernels of its format and
 * adds its output to the first plane's (y = W₀x + W₁x), so it needs no kernel of its own.
 */
function secondPlane(l: LinearEntry): LinearEntry | undefined {
  if (!l.order2) return undefined;
  let p = secondPlanes.get(l);
  if (!p) {
    p = { ...l, name: `${l.name}.o2`, format: l.order2.format, codes: l.order2.codes, scales: l.order2.scales, shifts: undefined, bias: undefined, order2: undefined };
    secondPlanes.set(l, p);
  }
  return p;
}

function deviceLayout(m: ArtifactManifest, arch: CudaArch): DeviceLayout {
  const view = new Map<LinearEntry, LinearEntry>();
  const transcodes: DeviceLayout['transcodes'] = [];
  const linears = [...m.blocks.flatMap((b) => [b.q, b.k, b.v, b.o, ...(b.gate ? [b.gate] : []), b.up, b.down]), m.lmHead];
  for (const l of linears.flatMap((l) => [l, ...(secondPlane(l) ? [secondPlane(l)!] : [])])) {
    let d = l;
    const f = ternaryFormatOf(l);
    if (f && l.codes) {
      const to = ternaryFormat('bit2', f.group, f.shift, f.lattice);
      if (f.packing === 'trit5' && !gemvStreamUnsupported({ format: to, k: l.cols, m: 1 })) {
        const dstName = `${l.codes}@bit2`;
        transcodes.push({ src: l.codes, dstName, groups: l.rows * groupsPerRow(f, l.cols), group: f.group });
        d = { ...l, format: to.id, codes: dstName };
      }
    }
    view.set(l, d);
  }
  const staged = new Set(transcodes.map((t) => t.src));
  const offsets = new Map<string, number>();
  let bytes = 0;
  const place = (name: string, n: number) => {
    offsets.set(name, bytes);
    bytes += Math.ceil(n / 256) * 256;
  };
  const fileOrder = Object.entries(m.tensors).sort((x, y) => x[1].offset - y[1].offset);
  for (const [name, e] of fileOrder) if (!staged.has(name)) place(name, e.bytes);
  for (const t of transcodes) place(t.dstName, t.groups * CODE_PACKINGS.bit2.bytesPerGroup(t.group));
  const rowsOf = new Map<string, { l: LinearEntry; name: string }>();
  for (const d of view.values()) {
    const f = ternaryFormatOf(d);
    if (!f || !d.codes || rowsOf.has(d.codes)) continue;
    if (gemmWgmmaRsUnsupported({ format: f, n: d.rows, k: d.cols, arch })) continue;
    const name = `${d.codes}@rows`;
    rowsOf.set(d.codes, { l: d, name });
    place(name, d.rows * 8);
  }
  return {
    view,
    transcodes,
    staged,
    offsets,
    bytes,
    rowsOf,
    stagingBytes: Math.max(0, ...transcodes.map((t) => m.tensors[t.src].bytes)),
    weightsBytes: fileOrder.reduce((a, [, e]) => Math.max(a, e.offset + e.bytes), 0),
    fileOrder,
  };
}

/**
 * One model header: the device layout, the kernels and linear dispatchers the block steps
 * need (collected as the steps are emitted), `twlac_forward` as one walk over the program,
 * and the tables the host program reads.
 */
class ModelEmitter {
  private readonly c: ModelConfig;
  private readonly ks = new KernelSet();
  private readonly fills = new Map<string, FillSpec>();
  private readonly layout: DeviceLayout;
  /** Linear dispatchers by name (one per shape and activation kind). */
  private readonly linearFns = new Map<string, Code>();
  private readonly attn: AttnShape;
  private readonly splits: number;
  /** Kernels every model has, by name: embedding (+ learned positions), RoPE + cache write (the
   *  cache write alone with rope 'none'), the attention combine. */
  private readonly kern: { embed: string; kv: string; comb: string };
  /** RoPE + cache write kernels of the layers whose θ is their own (Gemma-3 local layers), by θ. */
  private readonly kvByTheta = new Map<number, string>();
  /** Decode (split) and prefill attention kernels by softmax scale, window and soft-cap (block attention). */
  private readonly attnByKey = new Map<string, { part: string; pre: string }>();

  constructor(
    private readonly m: ArtifactManifest,
    private readonly arch: CudaArch,
  ) {
    this.c = m.config;
    this.layout = deviceLayout(m, arch);
    const c = this.c;
    const rd = m.program.rope.rotaryDim;
    const rope = m.program.rope.kind !== 'none';
    this.attn = { heads: c.heads, kvHeads: c.kvHeads, headDim: c.headDim, maxPositions: c.maxPositions, ropeTheta: m.program.rope.theta, ...(!rope || rd === c.headDim ? {} : { rotaryDim: rd }) };
    checkCudaShape(c);
    this.splits = Math.ceil(c.maxPositions / ATTN_CHUNK);
    const e = m.tensors[m.embed];
    if (e.dtype !== 'float16' && e.dtype !== 'float32') throw new UserError(`CUDA target: embedding dtype ${e.dtype} not supported`);
    this.setFill(m.embed, e.dtype === 'float16' ? { kind: FILL.half, a: 0, b: 1 } : { kind: FILL.float, a: 0, b: 1 });
    const ks = this.ks;
    if (m.positionEmbed) {
      const p = m.tensors[m.positionEmbed];
      if (p.dtype !== 'float32' || p.bytes < c.maxPositions * c.hidden * 4) throw new UserError(`CUDA target: the position table ${m.positionEmbed} is not float32 [${c.maxPositions}][${c.hidden}]`);
      this.setFill(m.positionEmbed, { kind: FILL.float, a: 0, b: 0.1 });
    }
    const embed = ks.add(embedKernel(c.hidden, e.dtype, m.program.embedScale, !!m.positionEmbed));
    const kv = ks.add(rope ? ropeKvKernel(this.attn) : kvAppendKernel(this.attn));
    // block 0's attention kernels (the combine depends on neither scale, window nor soft-cap), in header order
    const a0 = m.blocks[0]?.attention ?? { scale: attnScale(this.attn), window: null, softcap: null };
    const shape0 = this.attnShape(a0);
    const part = ks.add(attnPartialKernel(shape0));
    this.kern = { embed, kv, comb: ks.add(attnCombineKernel(this.attn)) };
    this.attnByKey.set(attnKey(a0), { part, pre: ks.add(this.prefillAttnKernel(shape0)) });
  }

  private attnShape(a: Pick<AttentionProgram, 'scale' | 'window' | 'softcap'>): AttnShape {
    const { scale, window, softcap } = a;
    return { ...this.attn, ...(isDefaultScale(scale, this.c.headDim) ? {} : { scale }), ...(window === null ? {} : { window }), ...(softcap === null ? {} : { softcap }) };
  }

  /** The RoPE + cache write kernel of a block: the model's, or one of the block's own θ. */
  private kvKernel(a: AttentionProgram): string {
    const theta = a.ropeTheta;
    if (theta === undefined || theta === this.attn.ropeTheta || this.m.program.rope.kind === 'none') return this.kern.kv;
    let k = this.kvByTheta.get(theta);
    if (!k) this.kvByTheta.set(theta, (k = this.ks.add(ropeKvKernel({ ...this.attn, ropeTheta: theta }, true))));
    return k;
  }

  /** Tensor-core flash attention where the head dim allows it (kernels/attn-prefill-tc.ts). */
  private prefillAttnKernel(a: AttnShape): CudaKernel {
    return attnPrefillTcUnsupported(a) ? attnPrefillKernel(a) : attnPrefillTcKernel(a);
  }

  /** The split-decode and prefill attention kernels for one softmax scale, window and soft-cap. */
  private attnKernels(attention: AttentionProgram): { part: string; pre: string } {
    const key = attnKey(attention);
    let k = this.attnByKey.get(key);
    if (!k) {
      const a = this.attnShape(attention);
      this.attnByKey.set(key, (k = { part: this.ks.add(attnPartialKernel(a)), pre: this.ks.add(this.prefillAttnKernel(a)) }));
    }
    return k;
  }

  private setFill(name: string | undefined | null, f: FillSpec): void {
    if (name) this.fills.set(name, f);
  }

  private onDevice(l: LinearEntry): LinearEntry {
    return this.layout.view.get(l) ?? l;
  }

  private tensorRef(name: string | null | undefined, type: string): Code {
    if (!name) return code`nullptr`;
    const dev = this.layout.offsets.get(name);
    if (dev === undefined) throw new Error(`CUDA emit: tensor ${name} has no place on the device`);
    return code`reinterpret_cast<${new Code(type)}>(W + ${dev}ull)`;
  }

  private useA8(l: LinearEntry, actBits: number): boolean {
    const f = ternaryFormatOf(l);
    return !!f && actBits <= 8 && !gemvA8Unsupported({ format: f, k: l.cols });
  }

  private streamable(l: LinearEntry, M: number): boolean {
    const f = ternaryFormatOf(l);
    return !!f && !gemvStreamUnsupported({ format: f, k: l.cols, m: M });
  }

  /**
   * The kernel of a (device) linear for M tokens: int8 activations take the streaming kernel
   * up to STREAM_MAX_M and the staged one beyond; fp16 activations take the streaming kernel at
   * M = 1 and the tensor-core skinny GEMM for 2…16 tokens where the format allows. (int8 sites
   * beyond STREAM_MAX_M, i.e. prefill chunks, multiply the act kernel's fp16 copy of the
   * dequantised activations on tensor cores.)
   */
  private gemvChoice(l: LinearEntry, M: number, a8: boolean): 'stream' | 'tc' | 'staged' {
    if (a8 && this.streamable(l, M)) return 'stream';
    if (M === 1 && this.streamable(l, M)) return 'stream';
    if (!gemvTcUnsupported({ format: ternaryFormatOf(l)!, k: l.cols, m: M })) return 'tc';
    return this.streamable(l, M) ? 'stream' : 'staged';
  }

  /** The dispatcher of a linear shape and activation kind: picks the M bucket for T, and the kernel for the bucket. */
  private linearFn(l: LinearEntry, a8: boolean): string {
    const { arch, ks } = this;
    const lf = linearFormat(l);
    const dense = lf.kind === 'dense';
    const fnName = `linear_${a8 ? 'a8_' : ''}${l.format}_n${l.rows}_k${l.cols}`;
    if (this.linearFns.has(fnName)) return fnName;
    const branches = GEMV_M_BUCKETS.map((M) => {
      if (lf.kind === 'dense') {
        const k = denseGemvKernel(l.rows, l.cols, M, lf.dtype, arch);
        ks.add(k);
        return code`  if (T <= ${M}) { launch_${ident(k.name)}(a, W, y, T, acc, s); return; }`;
      }
      const shape = { format: lf.format, n: l.rows, k: l.cols, m: M, arch };
      const choice = this.gemvChoice(l, M, a8);
      const k = choice === 'stream' ? gemvStreamKernel(shape, a8 ? 'u8' : 'f16') : choice === 'tc' ? gemvTcKernel(shape) : a8 ? gemvA8Kernel(shape) : gemvKernel(shape);
      ks.add(k);
      const act = a8 && choice !== 'tc' ? code`q, qp` : code`a`;
      return code`  if (T <= ${M}) { launch_${ident(k.name)}(${act}, codes, scales, shifts, y, T, acc, s); return; }`;
    });
    const sig = dense
      ? code`static void ${ident(fnName)}(const __half* a, const uint8_t* W, float* y, int T, int acc, cudaStream_t s) {`
      : code`static void ${ident(fnName)}(const __half* a, ${a8 ? code`const uint8_t* q, const float* qp, ` : code``}const uint8_t* codes, const __half* scales, const __half* shifts, const int2* rows, float* y, int T, int acc, cudaStream_t s) {`;
    this.linearFns.set(fnName, join([sig, ...branches, this.beyondBuckets(l, a8, fnName), code`}`]));
    return fnName;
  }

  /**
   * T beyond the GEMV buckets (prefill): the int8 prefill GEMM at ≤ 8-bit sites where it takes
   * the shape; else the tensor-core skinny GEMM on the fp16 activations (the dequantised copy at
   * ≤ 8-bit sites) in slices of TC_MAX_M tokens; else the dispatcher itself in slices of the
   * largest bucket.
   */
  private beyondBuckets(l: LinearEntry, a8: boolean, fnName: string): Code {
    const { arch, ks } = this;
    const slices = (m: number, call: Code) => code`  for (int t0 = 0; t0 < T; t0 += ${m})
    ${call}(a + (size_t)t0 * ${l.cols}, `;
    const rest = (m: number) => code`y + (size_t)t0 * ${l.rows}, min(T - t0, ${m}), acc, s);`;
    const lf = linearFormat(l);
    if (lf.kind === 'dense') return code`${slices(GEMV_MAX_M, ident(fnName))}W, ${rest(GEMV_MAX_M)}`;
    const format = lf.format;
    const gemm = { format, n: l.rows, k: l.cols, arch, out: 'f32' as const };
    if (a8 && !prefillGemmUnsupported(gemm)) {
      return join(
        prefillGemmKernels(gemm).map(({ kernel, beyondT }) => {
          const call = code`launch_${ident(ks.add(kernel))}(q, qp, codes, scales, shifts, ${gemmTakesRows(kernel) ? code`rows, ` : code``}y, T, acc, s);`;
          return beyondT > 0 ? code`  if (T > ${beyondT}) { ${call} return; }` : code`  ${call}`;
        }),
      );
    }
    const tc = { format, n: l.rows, k: l.cols, m: TC_MAX_M, arch };
    if (!gemvTcUnsupported(tc)) return code`${slices(TC_MAX_M, code`launch_${ident(ks.add(gemvTcKernel(tc)))}`)}codes, scales, shifts, ${rest(TC_MAX_M)}`;
    return code`${slices(GEMV_MAX_M, ident(fnName))}${a8 ? code`q + (size_t)t0 * ${l.cols}, qp + 2 * t0, ` : code``}codes, scales, shifts, rows, ${rest(GEMV_MAX_M)}`;
  }

  /** A ternary linear's device tensors (codes, scales, shifts, lattice rows), with their random fills. */
  private weightArgs(l: LinearEntry): Code {
    const f = ternaryFormatOf(l)!;
    const sc = 1 / Math.sqrt(l.cols * 0.6);
    this.setFill(l.codes, { kind: f.packing === 'trit5' ? FILL.codesTrit5 : FILL.codesBit2, a: 0, b: 0 });
    // lattice formats: values rounded to one power-of-two unit with |scale| + |shift| ≤ 127 units
    const unit = f.lattice ? latticeUnit(1.6 * sc) : 0; // ≥ the largest |scale| + |shift| (1.55·sc) plus rounding
    this.setFill(l.scales, { kind: f.lattice ? FILL.halfLattice : FILL.half, a: sc, b: 0.5 * sc, c: unit });
    this.setFill(l.shifts, { kind: f.lattice ? FILL.halfLattice : FILL.half, a: 0, b: 0.05 * sc, c: unit });
    const d = this.onDevice(l);
    const rows = d.codes ? this.layout.rowsOf.get(d.codes) : undefined;
    return code`${this.tensorRef(d.codes, 'const uint8_t*')}, ${this.tensorRef(d.scales, 'const __half*')}, ${this.tensorRef(d.shifts, 'const __half*')}, ${rows ? this.tensorRef(rows.name, 'const int2*') : code`nullptr`}`;
  }

  /**
   * One linear; sites quantised to ≤ 8 bits feed the int8-activation GEMVs (codes b.q8, (s, z) b.qp).
   * An order-2 linear is its first plane, then its second plane accumulated into the same output.
   */
  private linearCall(l: LinearEntry, a: Code, y: Code, accumulate: boolean, actBits = 16, tokens: Code = code`T`): Code {
    const plane = secondPlane(l);
    const first = this.planeCall(l, a, y, accumulate, actBits, tokens);
    return plane ? join([first, this.planeCall(plane, a, y, true, actBits, tokens)]) : first;
  }

  /** One launch of one weight plane (a dense weight, a ternary linear or an order-2 linear's plane). */
  private planeCall(l: LinearEntry, a: Code, y: Code, accumulate: boolean, actBits: number, tokens: Code): Code {
    const dl = this.onDevice(l);
    const fn = ident(this.linearFn(dl, this.useA8(dl, actBits)));
    const lf = linearFormat(l);
    if (lf.kind === 'dense') {
      this.setFill(l.weight, lf.dtype === 'float16' ? { kind: FILL.half, a: 0, b: 1 / Math.sqrt(l.cols) } : { kind: FILL.float, a: 0, b: 1 / Math.sqrt(l.cols) });
      return code`  ${fn}(${a}, ${this.tensorRef(l.weight, 'const uint8_t*')}, ${y}, ${tokens}, ${accumulate ? 1 : 0}, s);`;
    }
    return code`  ${fn}(${a}, ${this.useA8(dl, actBits) ? code`b.q8, b.qp, ` : code``}${this.weightArgs(l)}, ${y}, ${tokens}, ${accumulate ? 1 : 0}, s);`;
  }

  /** The bias of a linear added to its T output rows (none: no launch). */
  private biasCall(l: LinearEntry, y: Code, tokens: Code = code`T`): Code {
    if (!l.bias) return code``;
    this.setFill(l.bias, { kind: FILL.float, a: 0, b: 0.05 });
    const k = this.ks.add(biasAddKernel(l.rows));
    return code`
  launch_${ident(k)}(${this.tensorRef(l.bias, 'const float*')}, ${y}, ${tokens}, s);`;
  }

  /**
   * Linears that read the same activations (q/k/v, gate/up): one grouped streaming launch for
   * T ≤ STREAM_MAX_M when they share format and K, their own dispatchers otherwise.
   */
  private groupCall(src: readonly LinearEntry[], a: Code, ys: readonly Code[], actBits: number): Code {
    const ls = src.map((l) => this.onDevice(l));
    const l0 = ls[0];
    const a8 = this.useA8(l0, actBits);
    const same = ls.every((l) => l.format === l0.format && l.cols === l0.cols && this.useA8(l, actBits) === a8);
    const buckets = GEMV_M_BUCKETS.filter((M) => ls.every((l) => this.gemvChoice(l, M, a8) === 'stream'));
    if (!same || !buckets.length || src.some((l) => l.order2)) return join(src.map((l, i) => this.linearCall(l, a, ys[i], false, actBits)));
    const fnName = `group_${a8 ? 'a8_' : ''}${l0.format}_n${ls.map((l) => l.rows).join('_')}_k${l0.cols}`;
    if (!this.linearFns.has(fnName)) {
      const fallbacks = ls.map((l, i) => code`  ${ident(this.linearFn(l, a8))}(a, ${a8 ? code`q, qp, ` : code``}codes${i}, scales${i}, shifts${i}, rows${i}, y${i}, T, acc, s);`);
      const branches = buckets.map((M) => {
        const k = gemvStreamGroupKernel(
          ls.map((l) => ({ format: ternaryFormatOf(l)!, n: l.rows, k: l.cols, m: M, arch: this.arch })),
          a8 ? 'u8' : 'f16',
        );
        this.ks.add(k);
        return code`  if (T <= ${M}) { launch_${ident(k.name)}(${a8 ? code`q, qp` : code`a`}, ${join(ls.map((_, i) => code`codes${i}, scales${i}, shifts${i}, y${i}`), ', ')}, T, acc, s); return; }`;
      });
      this.linearFns.set(
        fnName,
        join([
          code`static void ${ident(fnName)}(const __half* a, ${a8 ? code`const uint8_t* q, const float* qp, ` : code``}${join(ls.map((_, i) => code`const uint8_t* codes${i}, const __half* scales${i}, const __half* shifts${i}, const int2* rows${i}, float* y${i}`), ', ')}, int T, int acc, cudaStream_t s) {`,
          ...branches,
          ...fallbacks,
          code`}`,
        ]),
      );
    }
    return code`  ${ident(fnName)}(${a}, ${a8 ? code`b.q8, b.qp, ` : code``}${join(src.map((l, i) => code`${this.weightArgs(l)}, ${ys[i]}`), ', ')}, T, 0, s);`;
  }

  /** act(·) of one site (norm, plain or MLP source; Kronecker transform; quantiser) into b.a16 (and b.q8/b.qp at ≤ 8 bits). */
  private actCall(source: ActSource, dim: number, site: ActSite | null, src: Code, src2: Code, gamma: string | null = null, beta: string | null = null): Code {
    const t = site?.transform;
    const k = actKernel({ source, dim, transform: t ? { l: t.l, r: t.r } : undefined, eps: this.c.normEps });
    this.ks.add(k);
    if (t) {
      this.setFill(t.C, { kind: FILL.identity, a: t.l, b: 0 });
      this.setFill(t.B, { kind: FILL.identity, a: t.r, b: 0 });
    }
    this.setFill(gamma, { kind: FILL.float, a: 1, b: 0.2 });
    this.setFill(beta, { kind: FILL.float, a: 0, b: 0.1 });
    const bits = site?.bits ?? 16;
    return code`  launch_${ident(k.name)}(${src}, ${src2}, ${this.tensorRef(gamma, 'const float*')}, ${this.tensorRef(beta, 'const float*')}, ${this.tensorRef(t?.C, 'const float*')}, ${this.tensorRef(t?.B, 'const float*')}, b.a16, ${bits <= 8 ? code`b.q8, b.qp` : code`nullptr, nullptr`}, T, ${bits}, ${cudaFloat(site?.clip ?? 1)}, s);`;
  }

  /** The program's norm (RMSNorm, or LayerNorm with its β) of the residual stream b.x, then act(·, site). */
  private normCall(site: ActSite | null, gamma: string | null, beta: string | null | undefined, preNorm = true): Code {
    if (!preNorm) return this.actCall('plain', this.c.hidden, site, code`b.x`, code`nullptr`);
    return this.m.program.norm === 'layer' ? this.actCall('layer_norm', this.c.hidden, site, code`b.x`, code`nullptr`, gamma, beta ?? null) : this.actCall('norm', this.c.hidden, site, code`b.x`, code`nullptr`, gamma);
  }

  /** Each op is followed by TWLAC_MARK(s, tag): a no-op unless the host program profiles a step
   *  (`--profile-decode`: an event after every op, time summed by tag). */
  private op(tag: string, c: Code): Code {
    return join([c, code`  TWLAC_MARK(s, ${new Code(JSON.stringify(ident(tag).text))});`]);
  }

  /** Layer i's K and V cache arguments. */
  private kvCache(i: number): Code {
    const kvd = this.c.kvHeads * this.c.headDim;
    return code`b.kcache + (size_t)${i} * ${this.c.maxPositions * kvd}, b.vcache + (size_t)${i} * ${this.c.maxPositions * kvd}`;
  }

  /**
   * x += scale · post(l(b.a16) + bias): accumulated into b.x when scale is 1 without a post-norm;
   * else into b.r, then added with the multiplier (Granite's residual_multiplier) after the
   * post-norm where the block has one (Gemma-2/3, OLMo-2).
   */
  private residualLinear(l: LinearEntry, actBits: number, scale: number, post: HeadNorm | undefined): Code {
    if (post) {
      this.setFill(post.gamma, { kind: FILL.float, a: 1, b: 0.2 });
      const k = this.ks.add(postNormAddKernel(this.c.hidden, scale, post.eps, post.gamma !== null));
      return code`${this.linearCall(l, code`b.a16`, code`b.r`, false, actBits)}${this.biasCall(l, code`b.r`)}
  launch_${ident(k)}(b.r, ${this.tensorRef(post.gamma, 'const float*')}, b.x, T, s);`;
    }
    if (scale === 1) return code`${this.linearCall(l, code`b.a16`, code`b.x`, true, actBits)}${this.biasCall(l, code`b.x`)}`;
    const k = this.ks.add(residualAddKernel(this.c.hidden, scale));
    return code`${this.linearCall(l, code`b.a16`, code`b.r`, false, actBits)}${this.biasCall(l, code`b.r`)}
  launch_${ident(k)}(b.r, b.x, T, s);`;
  }

  /** One handler per block step (block-program.ts BLOCK_OPS). */
  private readonly steps: Record<BlockOp, (b: BlockEntry, i: number) => Code> = {
    'attn-in': (b) => this.op('attn_act', this.normCall(b.acts.attn, b.attnNorm, b.attnNormBias, b.preNorm !== false)),
    qkv: (b) =>
      this.op(
        'qkv',
        code`${this.groupCall([b.q, b.k, b.v], code`b.a16`, [code`b.q`, code`b.k`, code`b.v`], b.acts.attn.bits)}${this.biasCall(b.q, code`b.q`)}${this.biasCall(b.k, code`b.k`)}${this.biasCall(b.v, code`b.v`)}`,
      ),
    'qk-norm': (b) => {
      const n = b.attention.qkNorm!;
      const { heads, kvHeads, headDim } = this.c;
      const call = (h: number, norm: { gamma: string | null; eps: number }, x: Code) => {
        this.setFill(norm.gamma, { kind: FILL.float, a: 1, b: 0.2 });
        const k = this.ks.add(headNormKernel({ ...qkNormShape(n, h, headDim), kind: n.kind ?? 'rms' }, norm.eps, norm.gamma !== null));
        return code`  launch_${ident(k)}(${x}, ${this.tensorRef(norm.gamma, 'const float*')}, T, s);`;
      };
      return this.op('qk_norm', join([call(heads, n.q, code`b.q`), call(kvHeads, n.k, code`b.k`)]));
    },
    'rope-kv': (b, i) => this.op('rope_kv', code`  launch_${ident(this.kvKernel(b.attention))}(b.q, b.k, b.v, ${this.kvCache(i)}, b.pos, b.seq, T, s);`),
    // up to GEMV_MAX_M tokens (decode): split over key positions, then combined; beyond
    // (prefill chunks): 16 queries a block over the whole prefix
    attention: (b, i) => {
      const { part, pre } = this.attnKernels(b.attention);
      const { comb } = this.kern;
      return join([
        this.op('attention', code`  if (T > ${GEMV_MAX_M}) launch_${ident(pre)}(b.q, ${this.kvCache(i)}, b.att, b.pos, T, s);
  else launch_${ident(part)}(b.q, ${this.kvCache(i)}, b.pm, b.pl, b.pacc, b.pos, b.seq, T, ${this.splits}, s);`),
        this.op('attn_combine', code`  if (T <= ${GEMV_MAX_M}) launch_${ident(comb)}(b.pm, b.pl, b.pacc, b.att, T, ${this.splits}, s);`),
      ]);
    },
    'o-residual': (b) =>
      join([
        this.op('o_act', this.actCall('plain', this.c.heads * this.c.headDim, b.acts.o, code`b.att`, code`nullptr`)),
        this.op('o', this.residualLinear(b.o, b.acts.o.bits, b.residualScale.attn, b.postNorm?.attn)),
      ]),
    // With the parallel residual (blockOps) mlp-in runs before o-residual: b.x is still the block input.
    'mlp-in': (b) => this.op('mlp_act', this.normCall(b.acts.mlp, b.mlpNorm, b.mlpNormBias, b.preNorm !== false)),
    // gated: g, u = gate(m), up(m) in one grouped launch; ungated: u = up(m)
    'gate-up': (b) =>
      b.gate
        ? this.op('gate_up', code`${this.groupCall([b.gate, b.up], code`b.a16`, [code`b.g`, code`b.u`], b.acts.mlp.bits)}${this.biasCall(b.gate, code`b.g`)}${this.biasCall(b.up, code`b.u`)}`)
        : this.op('up', code`${this.linearCall(b.up, code`b.a16`, code`b.u`, false, b.acts.mlp.bits)}${this.biasCall(b.up, code`b.u`)}`),
    // σ(g)·u (gated) or σ(u) (ungated) into the down linear's act
    'down-residual': (b) =>
      join([
        this.op('down_act', this.actCall(mlpSource(b.mlp), this.c.intermediate, b.acts.down, b.mlp.gated ? code`b.g` : code`b.u`, b.mlp.gated ? code`b.u` : code`nullptr`)),
        this.op('down', this.residualLinear(b.down, b.acts.down.bits, b.residualScale.mlp, b.postNorm?.mlp)),
      ]),
  };

  source(): string {
    const { m, c, ks, layout, arch } = this;
    // The forward first: emitting it collects the kernels, dispatchers and fills the tables list.
    const layers = m.blocks.map((b, i) => join([comment(`block ${i}`), ...blockOps(b, m.program.residual).map((op) => this.steps[op](b, i))]));
    const head = join([
      comment('final norm and lm_head'),
      this.op('final_act', this.normCall(null, m.finalNorm, m.finalNormBias)),
      // logits of the last nLogits tokens only (prefill that needs none computes the last one)
      this.op(
        'lm_head',
        code`${this.linearCall(m.lmHead, code`b.a16 + (size_t)(T - nLogits) * ${m.lmHead.cols}`, code`b.logits`, false, 16, code`nLogits`)}${this.biasCall(m.lmHead, code`b.logits`, code`nLogits`)}${
          m.program.logitScale === 1
            ? code``
            : code`
  launch_${ident(ks.add(scaleKernel(c.vocab, m.program.logitScale)))}(b.logits, nLogits, s);`
        }${
          m.program.logitSoftcap === undefined
            ? code``
            : code`
  launch_${ident(ks.add(softcapKernel(c.vocab, m.program.logitSoftcap)))}(b.logits, nLogits, s);`
        }`,
      ),
    ]);

    const transcodeKernels = new Map<number, CudaKernel>();
    for (const t of layout.transcodes) if (!transcodeKernels.has(t.group)) transcodeKernels.set(t.group, ks.byName.get(ks.add(transcodeKernel(t.group)))!);
    const rowsCalls = [...layout.rowsOf.values()].map(({ l, name }) => {
      const f = ternaryFormatOf(l)!;
      const k = ks.add(latticeRowsKernel(f.group));
      return code`  launch_${ident(k)}(${this.tensorRef(l.codes, 'const uint8_t*')}, ${this.tensorRef(l.scales, 'const __half*')}, ${this.tensorRef(l.shifts, 'const __half*')}, ${this.tensorRef(name, 'int2*')}, ${l.rows}, ${groupsPerRow(f, l.cols)}, s);`;
    });
    const kernels = [...ks.byName.values()];
    const tensorRows = layout.fileOrder.map(([name, e]) => {
      const f = this.fills.get(name) ?? { kind: FILL.float, a: 0, b: 0 };
      const dev = layout.staged.has(name) ? code`TWLAC_STAGED` : code`${layout.offsets.get(name)!}ull`;
      return code`  {${e.offset}ull, ${e.bytes}ull, ${dev}, ${f.kind}, ${cudaFloat(f.a)}, ${cudaFloat(f.b)}, ${cudaFloat(f.c ?? 0)}}, ${comment(name)}`;
    });
    // Staged tensor i (index in twlac_tensors) → its transcode into place.
    const placeCases = layout.fileOrder.flatMap(([name], i) => {
      const t = layout.transcodes.find((x) => x.src === name);
      if (!t) return [];
      return [code`    case ${i}: launch_${ident(transcodeKernels.get(t.group)!.name)}(staging, W + ${layout.offsets.get(t.dstName)!}ull, ${t.groups}, s); break;`];
    });
    const qd = c.heads * c.headDim;
    const maxAct = Math.max(c.hidden, qd, c.intermediate);
    // Lattice linears: their scales and shifts are checked against the lattice after loading.
    const latticeRows = [...layout.view.values()].flatMap((d) => {
      const f = ternaryFormatOf(d);
      if (!f || !d.scales || !f.lattice) return [];
      const dev = (t: string | null | undefined) => (t ? code`${layout.offsets.get(t)!}ull` : code`TWLAC_NO_TENSOR`);
      return [code`  {${new Code(JSON.stringify(d.name))}, ${new Code(JSON.stringify(f.id))}, ${dev(d.scales)}, ${dev(d.shifts)}, ${d.rows}, ${groupsPerRow(f, d.cols)}},`];
    });

    return join([
      comment(`twlac CUDA model for ${CUDA_ARCHS[arch].gencode}: generated from manifest.json, do not edit`),
      cudaPrelude(),
      packingHelpers(),
      blockHelpers(),
      code`#define TWLAC_VOCAB ${c.vocab}
#define TWLAC_HIDDEN ${c.hidden}
#define TWLAC_LAYERS ${c.layers}
#define TWLAC_HEADS ${c.heads}
#define TWLAC_KV_HEADS ${c.kvHeads}
#define TWLAC_HEAD_DIM ${c.headDim}
#define TWLAC_INTERMEDIATE ${c.intermediate}
#define TWLAC_MAX_POS ${c.maxPositions}
#define TWLAC_MAX_CHUNK ${MAX_CHUNK}
#define TWLAC_MAX_ACT ${maxAct}
#define TWLAC_ATTN_SPLITS ${this.splits}
#define TWLAC_SPLIT_MAX_T ${GEMV_MAX_M}
#define TWLAC_WEIGHTS_BYTES ${layout.weightsBytes}ull
#define TWLAC_DEVICE_BYTES ${layout.bytes}ull
#define TWLAC_STAGING_BYTES ${layout.stagingBytes}ull
#define TWLAC_STAGED (~0ull)
#define TWLAC_ARCH "${ident(arch)}"
#define TWLAC_FILL_CODES_TRIT5 ${FILL.codesTrit5}
#define TWLAC_FILL_CODES_BIT2 ${FILL.codesBit2}
#define TWLAC_FILL_HALF ${FILL.half}
#define TWLAC_FILL_FLOAT ${FILL.float}
#define TWLAC_FILL_IDENTITY ${FILL.identity}
#define TWLAC_FILL_HALF_LATTICE ${FILL.halfLattice}
static_assert(${PACKING_IDS.trit5} == 0 && ${PACKING_IDS.bit2} == 1, "packing ids");
// offset/bytes in weights.bin; device = offset in the device blob, or TWLAC_STAGED for codes
// that are transcoded from the staging buffer at load (twlac_place).
struct TwlacTensor { unsigned long long offset, bytes, device; int fill; float a, b, c; };
static void (*twlac_mark_hook)(cudaStream_t, const char*) = nullptr;
#define TWLAC_MARK(s, tag) do { if (twlac_mark_hook) twlac_mark_hook(s, tag); } while (0)
static const TwlacTensor twlac_tensors[] = {`,
      join(tensorRows),
      code`};
static const int twlac_tensor_count = ${Object.keys(m.tensors).length};
struct TwlacBuffers {
  float *x, *q, *k, *v, *att, *g, *u, *logits, *pm, *pl, *pacc;
  float* r; // [T][hidden]: a linear's output before a scaled residual add
  __half *a16, *kcache, *vcache;
  uint8_t* q8; // int8 activation codes [T][max act] and (s, z) per token, sites with ≤ 8 bits
  float* qp;
  int* pos; // device: position of the first token of this forward (seq = 0), or of each token (batched decode)
  // 0: the forward's tokens are one sequence's; else T ≤ ${GEMV_MAX_M} sequences, one token each, whose
  // K/V caches sit this many elements apart (TWLAC_SEQ_KV; block.ts SEQ_ARGS)
  unsigned long long seq;
};`,
      ...kernels.map((k) => new Code(k.source())),
      ...kernels.map((k) => new Code(k.launcher())),
      ...this.linearFns.values(),
      code`// A staged tensor (trit5 codes in \`staging\`) transcoded to its bit2 place in W.
static void twlac_place(int i, const uint8_t* staging, uint8_t* W, cudaStream_t s) {
  switch (i) {`,
      ...placeCases,
      code`    default: fprintf(stderr, "twlac: tensor %d is not staged\\n", i); exit(1);
  }
}`,
      latticeCheckFunctions(),
      code`#define TWLAC_NO_TENSOR (~0ull)
// Lattice linears (name, format, device offsets of scales and shifts, rows, groups a row).
struct TwlacLatticeLinear { const char* name; const char* format; unsigned long long scales, shifts; int rows, groups; };
static const TwlacLatticeLinear twlac_lattice_linears[] = {`,
      ...latticeRows,
      code`  {nullptr, nullptr, 0ull, 0ull, 0, 0}};
static const int twlac_lattice_linear_count = ${latticeRows.length};
// The lattice GEMM's row constants (E = Σ_k w, unit u) of its ${rowsCalls.length} linears, from the loaded weights.
static void twlac_lattice_rows(uint8_t* W, cudaStream_t s) {`,
      ...rowsCalls,
      code`  (void)W;
  (void)s;
}`,
      code`// The block program for T ≤ ${MAX_CHUNK} tokens at positions *b.pos … *b.pos + T − 1; logits
// [nLogits][${c.vocab}] of the last nLogits tokens (all T by default).
static void twlac_forward(const uint8_t* W, TwlacBuffers& b, const int* ids, int T, cudaStream_t s, int nLogits = -1) {
  if (nLogits < 1 || nLogits > T) nLogits = T;
  launch_${ident(this.kern.embed)}(ids, ${this.tensorRef(m.embed, 'const uint8_t*')}, ${m.positionEmbed ? code`${this.tensorRef(m.positionEmbed, 'const float*')}, b.pos, b.seq, ` : code``}b.x, T, s);
  TWLAC_MARK(s, "embed");`,
      ...layers,
      head,
      code`}`,
      code``,
    ]).text;
  }
}

/** Write the CUDA target into `dir` (out/kernels/cuda); returns written files and sizes (relative to dir). */
export function emitCuda(manifest: ArtifactManifest, dir: string, archs: readonly CudaArch[], features: FeatureTable = CUDA_FEATURES): Record<string, number> {
  if (!archs.length) throw new Error('CUDA target: no architecture given');
  const files: Record<string, number> = {};
  const write = (rel: string, text: string) => {
    const p = pjoin(dir, rel);
    mkdirSync(dirname(p), { recursive: true });
    writeFileSync(p, text);
    files[rel] = Buffer.byteLength(text);
  };
  for (const a of archs) write(`${a}/twlac_model.cuh`, cudaModelSource(manifest, a, features));
  write('twlac_cuda_main.cu', readFileSync(RUNTIME_MAIN, 'utf8'));
  write('Makefile', makefile(archs));
  return files;
}

function makefile(archs: readonly CudaArch[]): string {
  const lines = [
    '# Generated by twlac. `make` builds every architecture; `make ARCH=sm_90a` one of them.',
    'NVCC ?= nvcc',
    `ARCHS := ${archs.join(' ')}`,
    'ARCH ?= $(ARCHS)',
    'all: $(foreach a,$(ARCH),twlac_cuda_$(a))',
    ...archs.map((a) => `twlac_cuda_${a}: twlac_cuda_main.cu ${a}/twlac_model.cuh\n\t$(NVCC) -O3 -std=c++17 ${CUDA_ARCHS[a].gencode} -I${a} -o $@ twlac_cuda_main.cu`),
    '.PHONY: all',
    '',
  ];
  return lines.join('\n');
}
