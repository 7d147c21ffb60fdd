// The WebGPU runtime: runs an artifact's block program on a GPUDevice with the kernels of
// src/codegen/wgsl/plan.ts. Works wherever a GPUDevice exists (Dawn in Node, navigator.gpu
// in the browser); it has no Node imports.
//
// A forward call runs a chunk of up to `capacity` tokens at positions pos0.. (prefill when
// the chunk has several tokens, decode when it has one) in one compute pass, appending to the
// per-layer KV caches. Linears use the GEMV kernel for one token and the token-tiled GEMM
// otherwise.
import type { ArtifactManifest, BlockEntry, LinearEntry } from '../../artifact/manifest.ts';
import { blockOps as programBlockOps, type BlockOp } from '../../program/block-program.ts';
import { ternaryFormatOf } from '../../formats/linear-format.ts';
import { groupsPerRow, transcodeCodes, type TernaryFormat } from '../../formats/ternary.ts';
import { layoutEntries, type WgslFeatures, type WgslKernel } from '../../codegen/wgsl/fragments.ts';
import { attentionSplits, ternaryLayout, type GemvA8Shape, type KvStorage } from '../../codegen/wgsl/kernels.ts';
import { adapterKind, gemvVariant, kvStorage, planModel, type ActKernels, type AdapterKind, type BlockKernels, type GemvVariant, type LinearKernels } from '../../codegen/wgsl/plan.ts';
import { argmax, tensorBytesCopy, type LoadedArtifact } from '../reference.ts';
import type { TokenChooser } from '../../eval/sampling.ts';

export interface WebgpuModelOptions {
  /** Most tokens per forward chunk (activation buffers are sized for it). Default 64. */
  capacity?: number;
  /** Use subgroup reductions when the device has the 'subgroups' feature. Default true. */
  subgroups?: boolean;
  /** The adapter kind that picks the GEMV shape (plan.ts GEMV_BY_ADAPTER). Default: from
   *  device.adapterInfo, 'gpu' when the device has none. */
  adapter?: AdapterKind;
  /** Force a GEMV shape (tests, benchmarks). */
  gemv?: GemvVariant;
  /** Stack the linears that share an input into one launch (plan.ts groupLinears). Default true. */
  group?: boolean;
  /** Decode GEMVs make their input themselves where they can (plan.ts, A8Prologue). Default true. */
  prologue?: boolean;
  /** At decode the split attention does rope_kv's work itself (plan.ts, BlockKernels.attentionDecode). Default true. */
  ropeInAttention?: boolean;
  /** The shape of integer GEMVs with a prologue (plan.ts PlanOptions.prologueShape; benchmarks). */
  prologueShape?: GemvA8Shape | 'gemv';
  /** The KV cache's storage (plan.ts KV_BY_ADAPTER): default fp16 on GPUs, f32 on software adapters. */
  kv?: KvStorage;
  /** Positions the KV cache holds (prompt + generated tokens); default and most: the model's maxPositions. */
  context?: number;
}

/** One kernel launch: a kernel (or a GEMV/GEMM pair) with its bound buffers. */
interface Op {
  kernel: WgslKernel | LinearKernels;
  bind: GPUBindGroup;
  /** The GEMV's own bind group where its bindings differ from the GEMM's (LinearKernels.gemvA8). */
  bindGemv?: GPUBindGroup;
  /** Launch for one token only (final norm + lm_head of the last token). */
  last?: boolean;
  /** Launch only for chunks of several tokens: at decode the GEMVs after it make its output
   *  themselves (ActKernels.prologue). */
  prefill?: boolean;
  /** Launch only for one-token chunks (BlockKernels.attentionDecode, which stands for ops marked prefill). */
  decode?: boolean;
}

const STORAGE = 0x80 | 0x08 | 0x04; // STORAGE | COPY_DST | COPY_SRC (GPUBufferUsage, as numbers for Node)
const UNIFORM = 0x40 | 0x08;
const MAP_READ = 0x01 | 0x08;

/** What an act site hands its linears: x̂ as floats, whether the shared xq/xp buffers hold its
 *  integer form, and the buffers a GEMV prologue makes x̂ from (ActKernels.prologue). */
interface SiteInput {
  x: GPUBuffer;
  packed: boolean;
  prologue?: GPUBuffer[];
}

function isLinear(k: WgslKernel | LinearKernels): k is LinearKernels {
  return 'gemv' in k;
}

export class WebgpuModel {
  readonly features: WgslFeatures;
  readonly adapter: AdapterKind;
  /** The decode GEMV shape this model runs. */
  readonly gemv: GemvVariant;
  /** Linears sharing an input run as one stacked launch. */
  readonly group: boolean;
  /** Decode GEMVs make their input themselves where they can. */
  readonly prologue: boolean;
  /** At decode the split attention does rope_kv's work itself. */
  readonly ropeInAttention: boolean;
  private readonly prologueShape: GemvA8Shape | 'gemv' | undefined;
  /** The KV cache's storage. */
  readonly kv: KvStorage;
  private readonly pipelines = new Map<string, GPUComputePipeline>();
  private readonly ops: Op[] = [];
  private readonly buffers: GPUBuffer[] = [];
  private step!: GPUBuffer;
  private stepLast!: GPUBuffer;
  private ids!: GPUBuffer;
  private logits!: GPUBuffer;
  private readback!: GPUBuffer;
  private pos = 0;
  readonly capacity: number;
  /** Positions the KV cache holds. */
  readonly context: number;

  private constructor(
    readonly device: GPUDevice,
    readonly manifest: ArtifactManifest,
    opts: WebgpuModelOptions,
  ) {
    this.context = Math.max(1, Math.min(opts.context ?? manifest.config.maxPositions, manifest.config.maxPositions));
    this.capacity = Math.max(1, Math.min(opts.capacity ?? 64, this.context));
    this.features = { subgroups: (opts.subgroups ?? true) && device.features.has('subgroups') };
    const info = (device as GPUDevice & { adapterInfo?: GPUAdapterInfo }).adapterInfo;
    this.adapter = opts.adapter ?? (info ? adapterKind(info) : 'gpu');
    this.gemv = gemvVariant({ adapter: this.adapter, gemv: opts.gemv });
    this.group = opts.group ?? true;
    this.prologue = opts.prologue ?? true;
    this.ropeInAttention = opts.ropeInAttention ?? true;
    this.prologueShape = opts.prologueShape;
    this.kv = kvStorage({ adapter: this.adapter, kv: opts.kv });
  }

  /** Upload the artifact's weights and build every pipeline and bind group. */
  static async create(device: GPUDevice, artifact: LoadedArtifact, opts: WebgpuModelOptions = {}): Promise<WebgpuModel> {
    const m = new WebgpuModel(device, artifact.manifest, opts);
    device.pushErrorScope('validation');
    m.build(artifact);
    await m.compile();
    const err = await device.popErrorScope();
    if (err) throw new Error(`WebGPU validation error while building the model: ${err.message}`);
    return m;
  }

  /** Tokens in the KV cache (the next token's position). */
  get position(): number {
    return this.pos;
  }

  reset(): void {
    this.pos = 0;
  }

  destroy(): void {
    for (const b of this.buffers) b.destroy();
  }

  private buffer(bytes: number, usage = STORAGE): GPUBuffer {
    const b = this.device.createBuffer({ size: Math.max(16, Math.ceil(bytes / 16) * 16), usage });
    this.buffers.push(b);
    return b;
  }

  private upload(data: Uint8Array): GPUBuffer {
    const b = this.buffer(data.byteLength);
    const padded = new Uint8Array(Math.ceil(data.byteLength / 4) * 4);
    padded.set(data);
    this.device.queue.writeBuffer(b, 0, padded);
    return b;
  }

  private pipeline(k: WgslKernel): GPUComputePipeline {
    const p = this.pipelines.get(k.cacheKey);
    if (!p) throw new Error(`pipeline ${k.cacheKey} was not compiled`);
    return p;
  }

  private readonly pending = new Map<string, WgslKernel>();

  /** Compile every pipeline the ops use, concurrently (software adapters compile slowly). */
  private async compile(): Promise<void> {
    const todo = [...this.pending.values()].filter((k) => !this.pipelines.has(k.cacheKey));
    const made = await Promise.all(
      todo.map((k) => {
        const module = this.device.createShaderModule({ code: k.source(), label: k.cacheKey });
        const layout = this.device.createPipelineLayout({ bindGroupLayouts: [this.layout(k)] });
        return this.device.createComputePipelineAsync({ layout, compute: { module, entryPoint: 'main' }, label: k.cacheKey });
      }),
    );
    todo.forEach((k, i) => this.pipelines.set(k.cacheKey, made[i]));
    this.pending.clear();
  }

  /** The bind group layout of a kernel's bindings (+ the step uniform), shared by equal signatures. */
  private layout(k: WgslKernel): GPUBindGroupLayout {
    const entries = layoutEntries(k);
    const sig = entries.map((e) => e.buffer!.type).join(',');
    let l = this.layouts.get(sig);
    if (!l) {
      l = this.device.createBindGroupLayout({ entries });
      this.layouts.set(sig, l);
    }
    return l;
  }

  private readonly layouts = new Map<string, GPUBindGroupLayout>();

  /** A launch of `kernel` on `buffers` (a linear: its GEMM's, and its GEMV's unless `gemvBuffers` are given), appended to the forward's ops. */
  private op(kernel: WgslKernel | LinearKernels, buffers: GPUBuffer[], last = false, gemvBuffers?: GPUBuffer[]): void {
    this.ops.push(this.makeOp(kernel, buffers, last, gemvBuffers));
  }

  private makeOp(kernel: WgslKernel | LinearKernels, buffers: GPUBuffer[], last = false, gemvBuffers?: GPUBuffer[]): Op {
    const bind = (k: WgslKernel, bufs: GPUBuffer[]) => {
      if (bufs.length !== k.bindings.length) throw new Error(`${k.name}: ${k.bindings.length} bindings, ${bufs.length} buffers given`);
      const all = k.usesStep ? [...bufs, last ? this.stepLast : this.step] : bufs;
      this.pending.set(k.cacheKey, k);
      return this.device.createBindGroup({ layout: this.layout(k), entries: all.map((buffer, binding) => ({ binding, resource: { buffer } })) });
    };
    if (!isLinear(kernel)) return { kernel, bind: bind(kernel, buffers), last };
    // GEMV and GEMM of a linear have the same bindings (one bind group), unless the GEMV reads
    // the integer form of its input.
    this.pending.set(kernel.gemv.cacheKey, kernel.gemv);
    return { kernel, bind: bind(kernel.gemm, buffers), ...(gemvBuffers ? { bindGemv: bind(kernel.gemv, gemvBuffers) } : {}), last };
  }

  private linearWeights(a: LoadedArtifact, lk: LinearKernels): { w: GPUBuffer; bias?: GPUBuffer; order2?: GPUBuffer } {
    const l = lk.entry;
    // a group's bias and planes: its members', stacked in order (their rows are the group's)
    const members = lk.members ?? [l];
    const cat = (parts: Uint8Array[]) => {
      const all = new Uint8Array(parts.reduce((n, p) => n + p.byteLength, 0));
      parts.reduce((at, p) => (all.set(p, at), at + p.byteLength), 0);
      return all;
    };
    const bias = l.bias ? this.upload(cat(members.map((e) => tensorBytesCopy(a, e.bias!)))) : undefined;
    if (!ternaryFormatOf(l)) return { w: this.upload(tensorBytesCopy(a, l.weight!)), bias };
    const stored = ternaryFormatOf(l)!;
    const f = lk.codes ?? stored;
    const plane = cat(members.map((e) => this.codesOf(a, e, e.codes!, stored, f)));
    const scales = cat(members.map((e) => tensorBytesCopy(a, e.scales!)));
    const shifts = f.shift ? cat(members.map((e) => tensorBytesCopy(a, e.shifts!))) : undefined;
    return { w: this.planeWeights(f, l, plane, scales, shifts), bias, ...(l.order2 ? { order2: this.planeWeights(ternaryFormatOf({ name: l.name, format: l.order2.format })!, l, tensorBytesCopy(a, l.order2.codes), tensorBytesCopy(a, l.order2.scales)) } : {}) };
  }

  /** A linear's codes as stored, transcoded to `f` where the plan asks for another packing (LinearKernels.codes). */
  private codesOf(a: LoadedArtifact, l: LinearEntry, name: string, stored: TernaryFormat, f: TernaryFormat): Uint8Array {
    const codes = tensorBytesCopy(a, name);
    return f === stored ? codes : transcodeCodes(codes, stored, f, l.rows * groupsPerRow(stored, l.cols));
  }

  /** One ternary plane of format `f` packed as the kernels read it (wgsl/kernels.ts ternaryLayout). */
  private planeWeights(f: TernaryFormat, l: LinearEntry, codes: Uint8Array, scales: Uint8Array, shifts?: Uint8Array): GPUBuffer {
    const L = ternaryLayout(f, l.rows, l.cols);
    const packed = new Uint8Array(L.words * 4);
    packed.set(codes, 0);
    packed.set(scales, L.scaleWord0 * 4);
    if (shifts) packed.set(shifts, L.shiftWord0 * 4);
    return this.upload(packed);
  }

  private build(a: LoadedArtifact): void {
    const m = this.manifest;
    const c = m.config;
    const plan = planModel(m, { features: this.features, adapter: this.adapter, gemv: this.gemv, context: this.context, group: this.group, prologue: this.prologue, ropeInAttention: this.ropeInAttention, prologueShape: this.prologueShape, kv: this.kv });
    const cap = this.capacity;
    const qd = c.heads * c.headDim;
    const kvd = c.kvHeads * c.headDim;
    const wide = Math.max(c.hidden, qd, c.intermediate);
    const f4 = (n: number) => this.buffer(n * 4);

    this.step = this.buffer(16, UNIFORM);
    this.stepLast = this.buffer(16, UNIFORM);
    this.ids = f4(cap);
    const x = f4(cap * c.hidden);
    const nrm = f4(cap * wide);
    const tmp = f4(cap * wide);
    const planeOut = f4(cap * wide); // an order-2 linear's second-plane output (block linears only)
    const act = f4(cap * wide);
    const q = f4(cap * qd);
    const k = f4(cap * kvd);
    const v = f4(cap * kvd);
    const att = f4(cap * qd);
    // the attention's per-split partial sums (max, sum, weighted values) [token][head][split]
    const splits = attentionSplits(this.context);
    const pm = f4(cap * c.heads * splits);
    const pl = f4(cap * c.heads * splits);
    const pa = f4(cap * c.heads * splits * c.headDim);
    const y = f4(cap * c.hidden);
    const g = f4(cap * c.intermediate);
    const u = f4(cap * c.intermediate);
    const gu = f4(cap * c.intermediate);
    this.logits = f4(cap * c.vocab);
    this.readback = this.buffer(cap * c.vocab * 4, MAP_READ);

    // cos/sin of pos·θ^(−2i/r) for the r = rotaryDim rotated dims of a head, one table per θ (Gemma-3's local layers have their own)
    const { rotaryDim } = m.program.rope;
    const half = rotaryDim / 2;
    const ropeTables = new Map<number, GPUBuffer>();
    const ropeTable = (theta: number): GPUBuffer => {
      let buf = ropeTables.get(theta);
      if (buf) return buf;
      const rope = new Float32Array(this.context * half * 2);
      for (let p = 0; p < this.context; p++) {
        for (let i = 0; i < half; i++) {
          const ang = p * Math.pow(theta, (-2 * i) / rotaryDim);
          rope[(p * half + i) * 2] = Math.cos(ang);
          rope[(p * half + i) * 2 + 1] = Math.sin(ang);
        }
      }
      ropeTables.set(theta, (buf = this.upload(new Uint8Array(rope.buffer))));
      return buf;
    };
    const uploaded = new Map<string, GPUBuffer>();
    const t = (name: string) => {
      let b = uploaded.get(name);
      if (!b) uploaded.set(name, (b = this.upload(tensorBytesCopy(a, name))));
      return b;
    };
    /** Mark the op just added as prefill-only where `on` (a site whose decode GEMVs have prologues). */
    const prefillOnly = (on: unknown) => {
      if (on) this.ops[this.ops.length - 1].prefill = true;
    };

    // x̂'s integer form (ActKernels.packed): bytes and (scale, zero) a token, of one site at a time
    const xq = this.buffer(cap * wide);
    const xp = f4(cap * 2);
    /** act(x) for one site: the buffer the next linears read (x̂), and whether xq/xp hold it too. */
    const actOps = (ak: ActKernels, input: GPUBuffer): SiteInput => {
      let out = input;
      if (ak.site.transform) {
        this.op(ak.right!, [input, t(ak.site.transform.B), tmp]);
        this.op(ak.left!, [tmp, t(ak.site.transform.C), act]);
        out = act;
      }
      if (ak.quant) {
        this.op(ak.quant, ak.packed ? [out, xq, xp] : [out]);
        prefillOnly(ak.prologue);
      }
      return { x: out, packed: !!ak.packed, ...(ak.prologue ? { prologue: [out] } : {}) };
    };
    /** A linear's launch; a group (LinearKernels.members) writes one output a member. */
    const linearOp = (lk: LinearKernels, input: SiteInput | GPUBuffer, output: GPUBuffer | GPUBuffer[], last = false) => {
      const w = this.linearWeights(a, lk);
      const site = 'x' in input ? input : { x: input, packed: false };
      if (lk.gemvA8 && !site.packed) throw new Error(`${lk.entry.name}: the integer GEMV's input site does not pack`);
      if (lk.prologue && !site.prologue) throw new Error(`${lk.entry.name}: the GEMV's prologue has no input`);
      const bias = w.bias ? [w.bias] : [];
      const outs = Array.isArray(output) ? output : [output];
      const gemvIn = lk.prologue ? site.prologue! : [xq, xp];
      this.op(lk, [w.w, site.x, ...bias, ...outs], last, lk.gemvA8 ? [w.w, ...gemvIn, ...bias, ...outs] : undefined);
      if (lk.order2) {
        // output += second plane · input: added by its own kernels when they accumulate, else through
        // planeOut (groups have no second plane: groupLinears leaves order-2 linears alone)
        const add = lk.order2.add;
        this.op({ entry: lk.entry, gemv: lk.order2.gemv, gemm: lk.order2.gemm }, [w.order2!, site.x, add ? planeOut : outs[0]], last);
        if (add) this.op(add, [planeOut, outs[0]], last);
      }
    };
    // a kernel with a site's quantiser fused in (ActKernels.fused) also writes xq/xp when it packs
    const packOut = (kern: WgslKernel) => (kern.bindings.some((b) => b.name === 'XQ') ? [xq, xp] : []);
    const norm = (kern: WgslKernel, gamma: string | null, beta: string | null | undefined, input: GPUBuffer, output: GPUBuffer, last = false) =>
      this.op(kern, [input, ...(gamma ? [t(gamma)] : []), ...(beta ? [t(beta)] : []), output, ...packOut(kern)], last);

    /** The post-norm of a block output (into nrm, free by then), or the output itself. */
    const postOp = (kern: WgslKernel | undefined, gamma: string | null, out: GPUBuffer): GPUBuffer => {
      if (!kern) return out;
      norm(kern, gamma, null, out, nrm);
      return nrm;
    };

    this.op(plan.embed, [this.ids, t(m.embed), x]);
    if (plan.positions) this.op(plan.positions, [t(m.positionEmbed!), x]);
    // One handler per block step (block-program.ts BLOCK_OPS); activations live in the
    // buffers above, the KV cache per layer.
    let ai: SiteInput = { x: nrm, packed: false }; // the attention / MLP input after act(): nrm, or act when transformed
    let mi: SiteInput = ai;
    const blockOps: Record<BlockOp, (bk: BlockKernels, b: BlockEntry, kv: { kc: GPUBuffer; vc: GPUBuffer }) => void> = {
      'attn-in': (bk, b) => {
        norm(bk.attnNorm, b.preNorm === false ? null : b.attnNorm, b.preNorm === false ? null : b.attnNormBias, x, nrm);
        prefillOnly(bk.attnAct.prologue);
        ai = { ...actOps(bk.attnAct, nrm), ...(bk.attnAct.prologue ? { prologue: [x, ...(b.attnNorm ? [t(b.attnNorm)] : [])] } : {}) };
      },
      qkv: (bk, b) => {
        const out = new Map([[b.q, q], [b.k, k], [b.v, v]]);
        for (const lk of bk.qkv) linearOp(lk, ai, (lk.members ?? [lk.entry]).map((e) => out.get(e)!));
      },
      'qk-norm': (bk, b) => {
        const n = b.attention.qkNorm!;
        this.op(bk.qNorm!, [q, ...(n.q.gamma ? [t(n.q.gamma)] : [])]);
        this.op(bk.kNorm!, [k, ...(n.k.gamma ? [t(n.k.gamma)] : [])]);
      },
      'rope-kv': (bk, b, { kc, vc }) => {
        this.op(bk.ropeKv, [q, k, v, ropeTable(b.attention.ropeTheta ?? m.program.rope.theta), kc, vc]);
        prefillOnly(bk.attentionDecode);
      },
      attention: (bk, b, { kc, vc }) => {
        this.op(bk.attention, [q, kc, vc, pm, pl, pa]);
        prefillOnly(bk.attentionDecode);
        if (bk.attentionDecode) {
          this.op(bk.attentionDecode, [q, k, v, ropeTable(b.attention.ropeTheta ?? m.program.rope.theta), kc, vc, pm, pl, pa]);
          this.ops[this.ops.length - 1].decode = true;
        }
        this.op(bk.attentionCombine, [pm, pl, pa, att]);
      },
      'o-residual': (bk, b) => {
        // without a residual kernel, o adds into x itself (LinearKernels.accumulate)
        linearOp(bk.o, actOps(bk.oAct, att), bk.attnResidual ? y : x);
        if (bk.attnResidual) this.op(bk.attnResidual, [postOp(bk.attnPost, b.postNorm?.attn.gamma ?? null, y), x]);
      },
      'mlp-in': (bk, b) => {
        norm(bk.mlpNorm, b.preNorm === false ? null : b.mlpNorm, b.preNorm === false ? null : b.mlpNormBias, x, nrm);
        prefillOnly(bk.mlpAct.prologue);
        mi = { ...actOps(bk.mlpAct, nrm), ...(bk.mlpAct.prologue ? { prologue: [x, ...(b.mlpNorm ? [t(b.mlpNorm)] : [])] } : {}) };
      },
      'gate-up': (bk, b) => {
        const out = new Map([[b.up, u], ...(b.gate ? [[b.gate, g] as const] : [])]);
        for (const lk of bk.gateUp) linearOp(lk, mi, (lk.members ?? [lk.entry]).map((e) => out.get(e)!));
      },
      'down-residual': (bk, b) => {
        this.op(bk.swiglu, [...(bk.gate ? [g] : []), u, gu, ...packOut(bk.swiglu)]);
        prefillOnly(bk.downAct.prologue);
        const di = actOps(bk.downAct, gu);
        linearOp(bk.down, bk.downAct.prologue ? { ...di, prologue: [...(bk.gate ? [g] : []), u] } : di, bk.mlpResidual ? y : x);
        if (bk.mlpResidual) this.op(bk.mlpResidual, [postOp(bk.mlpPost, b.postNorm?.mlp.gamma ?? null, y), x]);
      },
    };
    plan.blocks.forEach((bk, li) => {
      const b = m.blocks[li];
      const kvBytes = this.context * kvd * (this.kv === 'f16' ? 2 : 4);
      const kv = { kc: this.buffer(kvBytes), vc: this.buffer(kvBytes) };
      for (const op of programBlockOps(b, m.program.residual)) blockOps[op](bk, b, kv);
    });
    // Final norm + lm_head twice: for every token (perplexity) and for the last one (decode).
    this.finalOps = this.ops.length;
    for (const last of [false, true]) {
      norm(plan.finalNorm, m.finalNorm, m.finalNormBias, x, nrm, last);
      linearOp(plan.lmHead, nrm, this.logits, last);
      if (plan.logitScale) this.op(plan.logitScale, [this.logits], last);
      if (plan.logitSoftcap) this.op(plan.logitSoftcap, [this.logits], last);
    }
    // greedy decode on the device: the last token's argmax into ids[0] and tokens[pos]
    this.tokens = this.buffer(this.context * 4);
    this.argmaxOp = this.makeOp(plan.argmax, [this.logits, this.ids, this.tokens], true);
    this.tokenRing = [0, 1].map(() => this.buffer(16, MAP_READ));
  }

  private tokens!: GPUBuffer;
  private argmaxOp!: Op;
  /** Two small read-back buffers a greedy decode alternates between (one is mapped while the other is written). */
  private tokenRing: GPUBuffer[] = [];

  private finalOps = 0;

  /**
   * Run `ids` at the next positions. Returns logits [ids.length, vocab] when allLogits,
   * else the last token's logits [vocab].
   */
  async forward(ids: readonly number[], allLogits = false): Promise<Float32Array> {
    const c = this.manifest.config;
    if (ids.length === 0) throw new Error('forward needs at least one token');
    this.checkIds(ids);
    const out = new Float32Array(allLogits ? ids.length * c.vocab : c.vocab);
    for (let s = 0; s < ids.length; s += this.capacity) {
      const chunk = ids.slice(s, s + this.capacity);
      const isLastChunk = s + this.capacity >= ids.length;
      const rows = await this.runChunk(chunk, allLogits || !isLastChunk ? (allLogits ? 'all' : 'none') : 'last');
      if (allLogits) out.set(rows, s * c.vocab);
      else if (isLastChunk) out.set(rows);
    }
    return out;
  }

  /** Refuse ids out of the vocabulary, or a context (these ids and `more` positions after them) past the KV cache. */
  private checkIds(ids: readonly number[], more = 0): void {
    const c = this.manifest.config;
    if (this.pos + ids.length + more > this.context) {
      throw new Error(`context of ${this.pos + ids.length + more} tokens exceeds ${this.context === c.maxPositions ? `maxPositions ${c.maxPositions}` : `the ${this.context} positions this model's KV cache holds`}`);
    }
    for (const id of ids) if (!Number.isInteger(id) || id < 0 || id >= c.vocab) throw new Error(`token id ${id} out of range [0, ${c.vocab})`);
  }

  /** Dispatches a forward of `tokens` tokens makes (default a decode step: one token, its logits). */
  dispatches(logits: 'all' | 'last' | 'none' = 'last', tokens = 1): number {
    return this.opsFor(logits, tokens).length;
  }

  /** The ops a forward runs: the blocks, then the final norm and lm_head for every token ('all'),
   *  the last one ('last') or none. */
  private opsFor(logits: 'all' | 'last' | 'none', tokens: number): Op[] {
    return this.ops.filter((op, i) => (i < this.finalOps ? !(op.prefill && tokens === 1) && !(op.decode && tokens > 1) : logits !== 'none' && (logits === 'last') === !!op.last));
  }

  /**
   * GPU time of every dispatch of one decode step of `id` (the step runs, the position advances):
   * each dispatch in a compute pass of its own, timestamped at its start and end, so the sum
   * leaves out the gaps between passes. Needs the device feature 'timestamp-query'.
   */
  async profileStep(id: number): Promise<{ kernel: string; us: number }[]> {
    const dev = this.device;
    if (!dev.features.has('timestamp-query')) throw new Error("profileStep: the device has no 'timestamp-query'");
    const ops = this.opsFor('last', 1);
    const set = dev.createQuerySet({ type: 'timestamp', count: 2 * ops.length });
    const resolve = dev.createBuffer({ size: 16 * ops.length, usage: 0x200 | 0x04 }); // QUERY_RESOLVE | COPY_SRC
    const read = dev.createBuffer({ size: 16 * ops.length, usage: MAP_READ });
    try {
      await this.runChunk([id], 'last', set);
      const enc = dev.createCommandEncoder();
      enc.resolveQuerySet(set, 0, 2 * ops.length, resolve, 0);
      enc.copyBufferToBuffer(resolve, 0, read, 0, 16 * ops.length);
      dev.queue.submit([enc.finish()]);
      await read.mapAsync(1);
      const t = new BigUint64Array(read.getMappedRange().slice(0));
      read.unmap();
      return ops.map((op, i) => ({ kernel: this.kernelOf(op, 1).name, us: Number(t[2 * i + 1] - t[2 * i]) / 1e3 }));
    } finally {
      set.destroy();
      resolve.destroy();
      read.destroy();
    }
  }

  private kernelOf(op: Op, tokens: number): WgslKernel {
    return isLinear(op.kernel) ? (tokens === 1 ? op.kernel.gemv : op.kernel.gemm) : op.kernel;
  }

  /** One forward of `ids` at the next positions; with `profile`, each dispatch in its own timestamped pass. */
  private async runChunk(ids: readonly number[], logits: 'all' | 'last' | 'none', profile?: GPUQuerySet): Promise<Float32Array> {
    const vocab = this.manifest.config.vocab;
    const rows = logits === 'all' ? ids.length : logits === 'last' ? 1 : 0;
    this.submitChunk(ids, logits, profile);
    if (!rows) {
      await this.device.queue.onSubmittedWorkDone();
      return new Float32Array(0);
    }
    await this.readback.mapAsync(1 /* GPUMapMode.READ */, 0, rows * vocab * 4);
    const res = new Float32Array(this.readback.getMappedRange(0, rows * vocab * 4).slice(0));
    this.readback.unmap();
    return res;
  }

  /**
   * Encode and submit one forward at the next positions, waiting for nothing. `ids`: the chunk's
   * tokens, or null for one token that is already in ids[0] on the device (the previous step's
   * argmax). With `greedy`, the last token's argmax follows (argmaxTokenKernel) and is copied
   * into that read-back buffer instead of the logits. Queue writes and submits run in order, so each submitted step
   * sees its own step uniforms.
   */
  private submitChunk(ids: readonly number[] | null, logits: 'all' | 'last' | 'none', profile?: GPUQuerySet, greedy?: GPUBuffer): void {
    const dev = this.device;
    const vocab = this.manifest.config.vocab;
    const n = ids ? ids.length : 1;
    dev.queue.writeBuffer(this.step, 0, new Uint32Array([this.pos, n, 0, 0]));
    dev.queue.writeBuffer(this.stepLast, 0, new Uint32Array([this.pos + n - 1, 1, n - 1, 0]));
    if (ids) dev.queue.writeBuffer(this.ids, 0, new Uint32Array(ids));
    const enc = dev.createCommandEncoder();
    const pass = profile ? undefined : enc.beginComputePass();
    const ops = greedy ? [...this.opsFor(logits, n), this.argmaxOp] : this.opsFor(logits, n);
    ops.forEach((op, i) => {
      const tokens = op.last ? 1 : n;
      const k = this.kernelOf(op, tokens);
      const p = pass ?? enc.beginComputePass({ timestampWrites: { querySet: profile!, beginningOfPassWriteIndex: 2 * i, endOfPassWriteIndex: 2 * i + 1 } });
      p.setPipeline(this.pipeline(k));
      p.setBindGroup(0, tokens === 1 && op.bindGemv ? op.bindGemv : op.bind);
      const [gx, gy, gz] = k.dispatch(tokens, op.last ? this.pos + n - 1 : this.pos);
      p.dispatchWorkgroups(gx, gy, gz);
      if (profile) p.end();
    });
    pass?.end();
    const rows = logits === 'all' ? n : logits === 'last' ? 1 : 0;
    if (rows && !greedy) enc.copyBufferToBuffer(this.logits, 0, this.readback, 0, rows * vocab * 4);
    if (greedy) enc.copyBufferToBuffer(this.tokens, (this.pos + n - 1) * 4, greedy, 0, 4);
    dev.queue.submit([enc.finish()]);
    this.pos += n;
  }

  /** Logits [ids.length, vocab] of a sequence from position 0 (perplexity). */
  async logitsOf(ids: readonly number[]): Promise<Float32Array> {
    this.reset();
    return this.forward(ids, true);
  }

  /**
   * Decode `maxTokens` ids after the prompt, greedy unless `choose` samples. `onToken` sees each
   * as it comes. Greedy decode stays on the device: each step's argmax feeds the next step's
   * embedding there, and step i + 1 is encoded and queued before token i is read back (4 bytes),
   * so the host's encoding overlaps the GPU's work and no logits cross the bus.
   */
  async greedy(promptIds: readonly number[], maxTokens: number, onToken?: (id: number) => void, choose: TokenChooser = argmax): Promise<number[]> {
    if (promptIds.length === 0) throw new Error('greedy decode needs at least one prompt token');
    if (choose !== argmax) return this.sampleOnHost(promptIds, maxTokens, onToken, choose);
    if (maxTokens <= 0) return [];
    this.reset();
    this.checkIds(promptIds, maxTokens - 1);
    const ring = this.tokenRing;
    for (let s = 0; s < promptIds.length; s += this.capacity) {
      const chunk = promptIds.slice(s, s + this.capacity);
      if (s + this.capacity < promptIds.length) await this.runChunk(chunk, 'none');
      else this.submitChunk(chunk, 'last', undefined, ring[0]);
    }
    const out: number[] = [];
    for (let i = 0; i < maxTokens; i++) {
      if (i + 1 < maxTokens) this.submitChunk(null, 'last', undefined, ring[(i + 1) % 2]);
      const r = ring[i % 2];
      await r.mapAsync(1 /* GPUMapMode.READ */, 0, 4);
      const id = new Uint32Array(r.getMappedRange(0, 4))[0];
      r.unmap();
      out.push(id);
      onToken?.(id);
    }
    return out;
  }

  /** The decode loop on the host: logits read back each token, `choose` picks the next. */
  private async sampleOnHost(promptIds: readonly number[], maxTokens: number, onToken: ((id: number) => void) | undefined, choose: TokenChooser): Promise<number[]> {
    this.reset();
    let logits = await this.forward(promptIds);
    const out: number[] = [];
    for (let i = 0; i < maxTokens; i++) {
      const next = choose(logits, 0, logits.length);
      out.push(next);
      onToken?.(next);
      if (i + 1 < maxTokens) logits = await this.forward([next]);
    }
    return out;
  }
}
