// CPU reference of the manifest's block program (src/program/block-program.ts), in float64.
// It is the oracle for the WGSL and CUDA runtimes: it reads weights only through the
// format's reference decoder (decodeTernary) and follows the manifest's semantics line by
// line, with no fusion and no shortcuts:
//   a = act(pre(x, attnNorm), 'attn')                        (pre: norm, or x itself without preNorm)
//   h = x + ra · post( o( act(attention(rope(qn(q(a))), rope(kn(k(a))), v(a)), 'o') ), postNorm.attn )
//                                                            (qn, kn: q/k RMS- or LayerNorms, per head
//                                                             or whole-width, block-program.ts qkNormShape;
//                                                             post: RMSNorm with postNorm, else identity)
//   m = act(pre(h, mlpNorm), 'mlp')
//   x' = h + rm · post( down( act(σ(gate(m)) * up(m), 'down') ), postNorm.mlp )
//   logits = softcap(logitScale · lmHead(norm(x_L, finalNorm))),  x₀ = embedScale · embed[id] (+ positionEmbed[pos])
// walking the block steps (block-program.ts blockOps: the parallel residual reorders them) with
// one handler each. norm is RMSNorm or, for program.norm 'layer', LayerNorm with its β; an
// ungated MLP is down(act(σ(up(m)), 'down')).
// act(x, site) = per-token activation quantisation (src/quant/act-quant.ts, float32 as the
// ONNX lowering computes it) of the online Kronecker transform x → C·X·Bᵀ (X the row-major
// [l, r] view of x).
//
// No Node APIs are used here, so the WebGPU runtime and the browser demo share the
// tensor accessors below.
import type { ActSite, ArtifactManifest, LinearEntry } from '../artifact/manifest.ts';
import { blockOps, qkNormShape, refuseMissing, type BlockOp, type BlockProgram, type HeadNorm, type MlpActivation, type FeatureTable, type QkNormKind } from '../program/block-program.ts';
import { decodeTernary, type TernaryWeights } from '../formats/ternary.ts';
import { decodeOrder2 } from '../formats/order2.ts';
import { linearFormat, ternaryFormatOf } from '../formats/linear-format.ts';
import { halfToFloat } from '../graph/tensor.ts';
import { actQuantRows } from '../quant/act-quant.ts';
import { erf } from '../util/erf.ts';

/** An artifact in memory: the manifest and the bytes of weights.bin. */
export interface LoadedArtifact {
  manifest: ArtifactManifest;
  weights: Uint8Array;
}

/** Bytes of one tensor, copied so that typed views over them are aligned. */
export function tensorBytesCopy(a: LoadedArtifact, name: string): Uint8Array {
  const e = a.manifest.tensors[name];
  if (!e) throw new Error(`artifact has no tensor ${name}`);
  if (e.offset + e.bytes > a.weights.byteLength) throw new Error(`tensor ${name} lies past the end of weights.bin`);
  return a.weights.slice(e.offset, e.offset + e.bytes);
}

/** A float32/float16 tensor as float64 values. */
function tensorValues(a: LoadedArtifact, name: string): Float64Array {
  const e = a.manifest.tensors[name];
  const b = tensorBytesCopy(a, name);
  switch (e.dtype) {
    case 'float32':
      return Float64Array.from(new Float32Array(b.buffer, 0, b.byteLength / 4));
    case 'float16':
    case 'uint16': {
      const h = new Uint16Array(b.buffer, 0, b.byteLength / 2);
      return Float64Array.from(h, halfToFloat);
    }
    default:
      throw new Error(`tensor ${name}: dtype ${e.dtype} is not a float tensor`);
  }
}

/** One ternary plane's storage, as the format declaration describes it. */
function planeOf(a: LoadedArtifact, l: LinearEntry, p: { format: string; codes?: string; scales?: string; shifts?: string }): TernaryWeights {
  if (!p.codes || !p.scales) throw new Error(`${l.name}: format ${p.format} has no codes/scales tensors`);
  const format = ternaryFormatOf({ name: l.name, format: p.format });
  if (!format) throw new Error(`${l.name}: dense format ${p.format} has no ternary storage`);
  const u16 = (name: string) => {
    const b = tensorBytesCopy(a, name);
    return new Uint16Array(b.buffer, 0, b.byteLength / 2);
  };
  return {
    format,
    rows: l.rows,
    cols: l.cols,
    codes: tensorBytesCopy(a, p.codes),
    scales: u16(p.scales),
    shifts: p.shifts ? u16(p.shifts) : undefined,
  };
}

/** Dequantised weight of a linear, row-major [rows, cols], float64. */
export function linearWeight(a: LoadedArtifact, l: LinearEntry): Float64Array {
  if (linearFormat(l).kind === 'dense') {
    if (!l.weight) throw new Error(`${l.name}: dense linear without a weight tensor`);
    return tensorValues(a, l.weight);
  }
  const base = planeOf(a, l, l);
  return l.order2 ? decodeOrder2({ base, plane: planeOf(a, l, l.order2) }) : decodeTernary(base);
}

interface RefLinear {
  rows: number;
  cols: number;
  w: Float64Array;
  bias?: Float64Array;
}

interface RefSite {
  bits: number;
  clip: number;
  transform?: { l: number; r: number; C: Float64Array; B: Float64Array };
}

/** The program features this runtime implements exactly. */
export const REFERENCE_FEATURES = {
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
  'attn-softcap': true,
  'embed-scale': true,
  'logit-scale': true,
  'residual-scale': true,
  'layer-norm': true,
  'ungated-mlp': true,
  'parallel-residual': true,
  'learned-positions': true,
  'no-rope': true,
  'post-norm': true,
  'no-pre-norm': true,
  'qk-norm-full': true,
  'logit-softcap': true,
  'rope-theta-per-layer': true,
  'qk-norm-head-own': true,
  'qk-layer-norm': true,
} as const satisfies FeatureTable;

interface RefBlock extends BlockProgram<Float64Array | null> {
  attnNorm: Float64Array | null;
  mlpNorm: Float64Array | null;
  attnNormBias: Float64Array | null;
  mlpNormBias: Float64Array | null;
  q: RefLinear;
  k: RefLinear;
  v: RefLinear;
  o: RefLinear;
  gate?: RefLinear;
  up: RefLinear;
  down: RefLinear;
  acts: Record<'attn' | 'o' | 'mlp' | 'down', RefSite>;
}

export function rmsNorm(x: Float64Array, gamma: Float64Array | null, eps: number): Float64Array {
  let ss = 0;
  for (let i = 0; i < x.length; i++) ss += x[i] * x[i];
  const inv = 1 / Math.sqrt(ss / x.length + eps);
  return Float64Array.from(x, (v, i) => v * inv * (gamma ? gamma[i] : 1));
}

/** LayerNorm: (x − μ)/√(mean((x − μ)²) + ε) · γ + β. */
export function layerNorm(x: Float64Array, gamma: Float64Array | null, beta: Float64Array | null, eps: number): Float64Array {
  let mean = 0;
  for (let i = 0; i < x.length; i++) mean += x[i];
  mean /= x.length;
  const d = Float64Array.from(x, (v) => v - mean);
  const y = rmsNorm(d, gamma, eps);
  if (beta) for (let i = 0; i < y.length; i++) y[i] += beta[i];
  return y;
}

function matVec(l: RefLinear, x: Float64Array): Float64Array {
  const y = new Float64Array(l.rows);
  for (let n = 0; n < l.rows; n++) {
    let s = 0;
    const o = n * l.cols;
    for (let k = 0; k < l.cols; k++) s += l.w[o + k] * x[k];
    y[n] = s + (l.bias ? l.bias[n] : 0);
  }
  return y;
}

/** x' = C·X·Bᵀ on the row-major [l, r] view of x. */
export function kronTransform(x: Float64Array, l: number, r: number, C: Float64Array, B: Float64Array): Float64Array {
  if (x.length !== l * r) throw new Error(`transform ${l}x${r} applied to a vector of ${x.length}`);
  const xb = new Float64Array(l * r); // X·Bᵀ
  for (let a = 0; a < l; a++) {
    for (let j = 0; j < r; j++) {
      let s = 0;
      for (let b = 0; b < r; b++) s += x[a * r + b] * B[j * r + b];
      xb[a * r + j] = s;
    }
  }
  const y = new Float64Array(l * r);
  for (let i = 0; i < l; i++) {
    for (let a = 0; a < l; a++) {
      const c = C[i * l + a];
      if (c === 0) continue;
      for (let j = 0; j < r; j++) y[i * r + j] += c * xb[a * r + j];
    }
  }
  return y;
}

function applyAct(x: Float64Array, s: RefSite): Float64Array {
  const t = s.transform ? kronTransform(x, s.transform.l, s.transform.r, s.transform.C, s.transform.B) : x;
  return s.bits >= 16 ? t : Float64Array.from(actQuantRows(t, 1, t.length, s.bits, s.clip));
}

/** RoPE (HF rotate_half) on the first d dims of one head vector, in place (later dims unchanged). */
export function ropeInPlace(x: Float64Array, off: number, d: number, pos: number, theta: number): void {
  const half = d / 2;
  for (let i = 0; i < half; i++) {
    const a = pos * Math.pow(theta, (-2 * i) / d);
    const c = Math.cos(a);
    const s = Math.sin(a);
    const x0 = x[off + i];
    const x1 = x[off + i + half];
    x[off + i] = x0 * c - x1 * s;
    x[off + i + half] = x1 * c + x0 * s;
  }
}

/** The MLP activations σ. */
const GATES: Record<MlpActivation, (g: number) => number> = {
  silu: (g) => g / (1 + Math.exp(-g)),
  'gelu-tanh': (g) => 0.5 * g * (1 + Math.tanh(Math.sqrt(2 / Math.PI) * (g + 0.044715 * g ** 3))),
  gelu: (g) => 0.5 * g * (1 + erf(g / Math.SQRT2)),
};

/** cap·tanh(z/cap): soft-capping of attention scores and logits. */
function softcap(z: number, cap: number): number {
  return cap * Math.tanh(z / cap);
}

/** The q/k norm over each of `groups` runs of `width` features, in place; γ shared by the runs or one slice each. */
function qkNormInPlace(x: Float64Array, shape: { groups: number; width: number; sharedGamma: boolean }, kind: QkNormKind, n: HeadNorm<Float64Array | null>): void {
  const { groups, width, sharedGamma } = shape;
  for (let g = 0; g < groups; g++) {
    const run = x.subarray(g * width, (g + 1) * width);
    const gamma = n.gamma && (sharedGamma ? n.gamma : n.gamma.subarray(g * width, (g + 1) * width));
    x.set(kind === 'layer' ? layerNorm(run, gamma, null, n.eps) : rmsNorm(run, gamma, n.eps), g * width);
  }
}

/** A block output's post-norm (Gemma-2/3, OLMo-2), or the output itself. */
function post(y: Float64Array, n: HeadNorm<Float64Array | null> | undefined): Float64Array {
  return n ? rmsNorm(y, n.gamma, n.eps) : y;
}

/** The block program on the CPU with a KV cache: feed tokens in order, get their logits. */
export class ReferenceModel {
  private readonly blocks: RefBlock[];
  private readonly embed: Float64Array;
  private readonly positionEmbed: Float64Array | null;
  private readonly finalNorm: Float64Array | null;
  private readonly finalNormBias: Float64Array | null;
  private readonly lmHead: RefLinear;
  /** Per layer: K and V rows [pos][kvHeads*headDim]. */
  private kCache: Float64Array[][] = [];
  private vCache: Float64Array[][] = [];

  constructor(readonly artifact: LoadedArtifact) {
    const m = artifact.manifest;
    refuseMissing('the reference runtime', REFERENCE_FEATURES, m);
    const lin = (l: LinearEntry): RefLinear => ({
      rows: l.rows,
      cols: l.cols,
      w: linearWeight(artifact, l),
      bias: l.bias ? tensorValues(artifact, l.bias) : undefined,
    });
    const site = (s: ActSite): RefSite => ({
      bits: s.bits,
      clip: s.clip,
      transform: s.transform && {
        l: s.transform.l,
        r: s.transform.r,
        C: tensorValues(artifact, s.transform.C),
        B: tensorValues(artifact, s.transform.B),
      },
    });
    const norm = (n: string | null) => (n ? tensorValues(artifact, n) : null);
    this.embed = tensorValues(artifact, m.embed);
    this.positionEmbed = m.positionEmbed ? tensorValues(artifact, m.positionEmbed) : null;
    this.finalNorm = norm(m.finalNorm);
    this.finalNormBias = norm(m.finalNormBias ?? null);
    this.lmHead = lin(m.lmHead);
    this.blocks = m.blocks.map((b) => ({
      mlp: b.mlp,
      residualScale: b.residualScale,
      preNorm: b.preNorm,
      postNorm: b.postNorm && {
        attn: { eps: b.postNorm.attn.eps, gamma: norm(b.postNorm.attn.gamma) },
        mlp: { eps: b.postNorm.mlp.eps, gamma: norm(b.postNorm.mlp.gamma) },
      },
      attention: {
        ...b.attention,
        qkNorm: b.attention.qkNorm && {
          span: b.attention.qkNorm.span,
          kind: b.attention.qkNorm.kind,
          q: { eps: b.attention.qkNorm.q.eps, gamma: norm(b.attention.qkNorm.q.gamma) },
          k: { eps: b.attention.qkNorm.k.eps, gamma: norm(b.attention.qkNorm.k.gamma) },
        },
      },
      attnNorm: norm(b.attnNorm),
      mlpNorm: norm(b.mlpNorm),
      attnNormBias: norm(b.attnNormBias ?? null),
      mlpNormBias: norm(b.mlpNormBias ?? null),
      q: lin(b.q),
      k: lin(b.k),
      v: lin(b.v),
      o: lin(b.o),
      gate: b.gate && lin(b.gate),
      up: lin(b.up),
      down: lin(b.down),
      acts: { attn: site(b.acts.attn), o: site(b.acts.o), mlp: site(b.acts.mlp), down: site(b.acts.down) },
    }));
    this.reset();
  }

  /** Forget the KV cache (next token is position 0). */
  reset(): void {
    this.kCache = this.blocks.map(() => []);
    this.vCache = this.blocks.map(() => []);
  }

  get position(): number {
    return this.kCache[0]?.length ?? 0;
  }

  /** Run one token at the next position; returns its logits (float64, [vocab]). */
  step(id: number): Float64Array {
    const c = this.artifact.manifest.config;
    if (!Number.isInteger(id) || id < 0 || id >= c.vocab) throw new Error(`token id ${id} out of range [0, ${c.vocab})`);
    const pos = this.position;
    const { embedScale, logitScale } = this.artifact.manifest.program;
    const st: StepState = { x: this.embed.slice(id * c.hidden, (id + 1) * c.hidden).map((e) => e * embedScale), pos, layer: 0 } as StepState;
    if (this.positionEmbed) {
      if (pos >= c.maxPositions) throw new Error(`position ${pos} is past the position table (${c.maxPositions} rows)`);
      for (let i = 0; i < c.hidden; i++) st.x[i] += this.positionEmbed[pos * c.hidden + i];
    }
    const residual = this.artifact.manifest.program.residual;
    this.blocks.forEach((b, li) => {
      st.layer = li;
      for (const op of blockOps(b, residual)) this.ops[op](b, st);
    });
    const cap = this.artifact.manifest.program.logitSoftcap;
    return matVec(this.lmHead, this.norm(st.x, this.finalNorm, this.finalNormBias)).map((z) => (cap === undefined ? z * logitScale : softcap(z * logitScale, cap)));
  }

  /** The program's norm: RMSNorm, or LayerNorm with β. */
  private norm(x: Float64Array, gamma: Float64Array | null, beta: Float64Array | null): Float64Array {
    const eps = this.config.normEps;
    return this.artifact.manifest.program.norm === 'layer' ? layerNorm(x, gamma, beta, eps) : rmsNorm(x, gamma, eps);
  }

  /** One handler per block step (block-program.ts BLOCK_OPS), each reading and writing `st`. */
  private readonly ops: Record<BlockOp, (b: RefBlock, st: StepState) => void> = {
    'attn-in': (b, st) => void (st.a = applyAct(b.preNorm === false ? st.x : this.norm(st.x, b.attnNorm, b.attnNormBias), b.acts.attn)),
    qkv: (b, st) => Object.assign(st, { q: matVec(b.q, st.a), k: matVec(b.k, st.a), v: matVec(b.v, st.a) }),
    'qk-norm': (b, st) => {
      const { heads, kvHeads, headDim } = this.config;
      const n = b.attention.qkNorm!;
      qkNormInPlace(st.q, qkNormShape(n, heads, headDim), n.kind ?? 'rms', n.q);
      qkNormInPlace(st.k, qkNormShape(n, kvHeads, headDim), n.kind ?? 'rms', n.k);
    },
    'rope-kv': (b, st) => {
      const { heads, kvHeads, headDim: d } = this.config;
      const rope = this.artifact.manifest.program.rope;
      const theta = b.attention.ropeTheta ?? rope.theta;
      for (let h = 0; h < heads; h++) ropeInPlace(st.q, h * d, rope.rotaryDim, st.pos, theta);
      for (let h = 0; h < kvHeads; h++) ropeInPlace(st.k, h * d, rope.rotaryDim, st.pos, theta);
      this.kCache[st.layer].push(st.k);
      this.vCache[st.layer].push(st.v);
    },
    attention: (b, st) => {
      const { heads, kvHeads, headDim: d } = this.config;
      const { scale, window, softcap: cap } = b.attention;
      const [kc, vc, q, pos] = [this.kCache[st.layer], this.vCache[st.layer], st.q, st.pos];
      const att = (st.att = new Float64Array(heads * d));
      const scores = new Float64Array(pos + 1);
      // keys pos − window < t ≤ pos
      const first = window === null ? 0 : Math.max(0, pos - window + 1);
      for (let h = 0; h < heads; h++) {
        const kh = Math.floor(h / (heads / kvHeads));
        let max = -Infinity;
        for (let t = first; t <= pos; t++) {
          let s = 0;
          for (let i = 0; i < d; i++) s += q[h * d + i] * kc[t][kh * d + i];
          scores[t] = cap === null ? s * scale : softcap(s * scale, cap);
          max = Math.max(max, scores[t]);
        }
        let sum = 0;
        for (let t = first; t <= pos; t++) sum += scores[t] = Math.exp(scores[t] - max);
        for (let t = first; t <= pos; t++) {
          const p = scores[t] / sum;
          for (let i = 0; i < d; i++) att[h * d + i] += p * vc[t][kh * d + i];
        }
      }
    },
    'o-residual': (b, st) => {
      const o = post(matVec(b.o, applyAct(st.att, b.acts.o)), b.postNorm?.attn);
      st.x = Float64Array.from(st.x, (xv, i) => xv + b.residualScale.attn * o[i]);
    },
    'mlp-in': (b, st) => void (st.m = applyAct(b.preNorm === false ? st.x : this.norm(st.x, b.mlpNorm, b.mlpNormBias), b.acts.mlp)),
    'gate-up': (b, st) => Object.assign(st, { g: b.gate ? matVec(b.gate, st.m) : null, u: matVec(b.up, st.m) }),
    'down-residual': (b, st) => {
      const sigma = GATES[b.mlp.activation];
      const gu = st.g ? Float64Array.from(st.g, (gv, i) => sigma(gv) * st.u[i]) : st.u.map(sigma);
      const dn = post(matVec(b.down, applyAct(gu, b.acts.down)), b.postNorm?.mlp);
      st.x = Float64Array.from(st.x, (xv, i) => xv + b.residualScale.mlp * dn[i]);
    },
  };

  private get config() {
    return this.artifact.manifest.config;
  }
}

/** The values one token's block steps pass along (names as in BLOCK_OPS). */
interface StepState {
  pos: number;
  layer: number;
  x: Float64Array;
  a: Float64Array;
  q: Float64Array;
  k: Float64Array;
  v: Float64Array;
  att: Float64Array;
  m: Float64Array;
  /** null in an ungated MLP. */
  g: Float64Array | null;
  u: Float64Array;
}

/** Logits [seq, vocab] of a token sequence starting at position 0. */
export function referenceLogits(artifact: LoadedArtifact, ids: readonly number[]): Float32Array {
  const model = new ReferenceModel(artifact);
  const vocab = artifact.manifest.config.vocab;
  const out = new Float32Array(ids.length * vocab);
  ids.forEach((id, i) => out.set(model.step(id), i * vocab));
  return out;
}

/** Index of the largest value (first one on ties), the greedy choice every runtime makes. */
export function argmax(v: ArrayLike<number>, off = 0, n = v.length - off): number {
  let best = 0;
  for (let i = 1; i < n; i++) if (v[off + i] > v[off + best]) best = i;
  return best;
}

/** Greedy decode: the prompt's ids followed by `maxTokens` generated ids (generated ids only are returned). */
export function referenceGreedy(artifact: LoadedArtifact, promptIds: readonly number[], maxTokens: number): number[] {
  if (promptIds.length === 0) throw new Error('greedy decode needs at least one prompt token');
  const model = new ReferenceModel(artifact);
  let logits: Float64Array = new Float64Array(0);
  for (const id of promptIds) logits = model.step(id);
  const out: number[] = [];
  for (let i = 0; i < maxTokens; i++) {
    const next = argmax(logits);
    out.push(next);
    if (i + 1 < maxTokens) logits = model.step(next);
  }
  return out;
}
