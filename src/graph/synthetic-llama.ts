// Tiny LLaMA-family ONNX models made with the graph builder, in several export styles, with
// seeded random weights so that they compute something onnxruntime can check:
//   x₀ = E[ids];  hᵢ = xᵢ + o(attn(rope(q(a)), rope(k(a)), v(a))), a = norm(xᵢ)
//   xᵢ₊₁ = hᵢ + down(silu(gate(m)) ⊙ up(m)), m = norm(hᵢ);  logits = lm_head(norm(x_L))
// with causal softmax attention, GQA (k/v heads repeated), RoPE θ^(-2i/d) via Cos/Sin.
// The weights depend only on (seed, sizes), drawn in the same order whatever the style, so two
// styles with the same seed compute the same function (up to fp16 weight rounding and, for
// LayerNorm, its β and mean subtraction).
//
// The demo model and the test fixtures (test/fixtures/make-fixtures.ts) are built here.
import { GraphBuilder } from './builder.ts';
import type { Model, Value } from './ir.ts';
import { Tensor, floatToHalf } from './tensor.ts';

export type NormStyle =
  /** Pow/ReduceMean/Add/Sqrt/Reciprocal/Mul·γ, as torch.onnx.export(dynamo=True) writes RMSNorm. */
  | 'decomposed'
  /** Div(x, Sqrt(·)) instead of Mul(x, Reciprocal(Sqrt(·))), squares as Mul(x, x). */
  | 'decomposed-div'
  /** SimplifiedLayerNormalization for every norm (onnxruntime's fused RMSNorm). */
  | 'simplified'
  /** SimplifiedLayerNormalization for the first norm, com.microsoft::SkipSimplifiedLayerNormalization (residual Add fused) after. */
  | 'skip-simplified'
  /** LayerNormalization with γ and β (not RMS). */
  | 'layernorm'
  /** LayerNorm as torch's TorchScript exporter decomposes it below opset 17: Sub(x, ReduceMean x), Pow 2, ReduceMean, Add ε, Sqrt, Div, Mul γ, Add β. */
  | 'layernorm-decomposed'
  /** RMSNormalization (opset 23). */
  | 'rmsnorm23';

export type LinearStyle =
  /** MatMul(x, Wᵀ) with the initializer stored [in, out] (torch dynamo). */
  | 'matmul'
  /** MatMul(x, Transpose(W)) with W stored [out, in]. */
  | 'matmul-transposed'
  /** MatMul(x, Wᵀ) then Add(bias). */
  | 'matmul-bias'
  /** Reshape to 2-D, Gemm(x, W [out, in], b, transB=1), Reshape back. */
  | 'gemm';

export type NameStyle = 'hf' | 'anonymous' | 'misleading';

export interface TinyLlamaOptions {
  layers?: number;
  hidden?: number;
  heads?: number;
  kvHeads?: number;
  intermediate?: number;
  vocab?: number;
  seed?: number;
  ropeTheta?: number;
  normEps?: number;
  norm?: NormStyle;
  linear?: LinearStyle;
  /** Linear weights stored as fp16 behind a Cast (activations stay fp32). */
  weightDtype?: 'float32' | 'float16';
  names?: NameStyle;
  /**
   * RoPE angles as Mul(positions, inv_freq), as MatMul(positions [s,1], inv_freq [1,d/2]) (looks
   * like a 1-input linear), or as constant cos/sin caches [cachePositions, d] gathered by position.
   */
  ropeFreqs?: 'mul' | 'matmul' | 'cache';
  /** Rows of the cos/sin caches (ropeFreqs 'cache'). */
  cachePositions?: number;
  /**
   * Attention as Softmax/MatMul ops, or as one com.microsoft::GroupQueryAttention (rotary
   * inside, cos/sin caches [cachePositions, d/2]) as onnxruntime's LLaMA builders write it.
   */
  attention?: 'decomposed' | 'gqa';
  /**
   * A KV-cache decoder as deployment exporters write it: inputs input_ids, attention_mask
   * [batch, total], position_ids, past_key_values.{i}.key|value [batch, kvHeads, past, d];
   * outputs logits and present.{i}.key|value (decomposed attention only).
   */
  kvCache?: boolean;
  /** RMSNorm of q and k before RoPE: true or 'head' over each head (Qwen3, Gemma-3), 'all' over the
   *  whole projection before the split into heads (OLMo-2). */
  qkNorm?: boolean | 'head' | 'all';
  /**
   * Norms around the attention and the MLP: 'pre' x + f(norm(x)) (LLaMA), 'sandwich'
   * x + norm(f(norm(x))) (Gemma-2/3: post_attention_layernorm, pre/post_feedforward_layernorm),
   * 'post' x + norm(f(x)) (OLMo-2). Decomposed or fused norms, not Skip norms.
   */
  blockNorms?: 'pre' | 'sandwich' | 'post';
  /** Gemma's (1 + w) norms unfolded, as exporters leave them past their constant folder's size
   *  limit: each block and final norm γ stored as w = γ − 1 and multiplied as Add(Cast(w), 1). */
  unitOffsetNorms?: boolean;
  /** Scores become cap·tanh(scores/cap) before the mask (Gemma-2's attn_logit_softcapping); 0 = none. */
  attnSoftcap?: number;
  /** logits = cap·tanh(logits/cap) (Gemma-2's final_logit_softcapping); 0 = none. */
  logitSoftcap?: number;
  /** With slidingWindow: layer l is global (no window) when (l + 1) % pattern = 0, as Gemma-2 (2) and
   *  Gemma-3 (6: five local layers, one global) place them; 0 = every layer windowed. */
  slidingPattern?: number;
  /** RoPE θ of the windowed (local) layers, from its own inv_freq (Gemma-3's rope_local_base_freq); 0 = ropeTheta. */
  localRopeTheta?: number;
  /** Sliding-window attention as transformers' masks write it: key k is visible to query q
   *  when k ≤ q and k > q − window (decomposed attention only; 0 = none). */
  slidingWindow?: number;
  /** Phi-3 style: q/k/v as one qkv_proj cut by three Slices, gate/up as one gate_up_proj cut by a Split (matmul linear styles). */
  packed?: boolean;
  /** softmax(scale · q·kᵀ) (Granite's attention_multiplier, Gemma's query_pre_attn_scalar); default 1/√headDim. */
  attentionScale?: number;
  /** h = x + r·o(·), x' = h + r·down(·) (Granite's residual_multiplier as a Mul); default 1 (no op). */
  residualScale?: number;
  /** x₀ = embedScale · E[ids] (Gemma's √hidden normaliser as a Mul); default 1 (no op). */
  embedScale?: number;
  /** logits = lm_head(·) / logitDivisor (Granite's logits_scaling as a Div); default 1 (no op). */
  logitDivisor?: number;
  /** RoPE on the first rotaryDim dims of each head only (partial rotary, as GPT-NeoX/Phi); default the head size. */
  rotaryDim?: number;
  /**
   * MLP gate activation: SiLU (LLaMA), com.microsoft::FastGelu (tanh GELU, Gemma's GeGLU) or
   * com.microsoft::Gelu (erf); or GELU written out in elementary ops as the exporters write it:
   * 'gelu-ops' x·½·(1 + Erf(x/√2)) (TorchScript's aten::gelu), 'gelu-tanh-ops' GPT-2's NewGELU
   * ½x(1 + Tanh(√(2/π)(x + 0.044715·Pow(x, 3)))), 'gelu-tanh-decomposed' tanh GELU as TorchScript
   * writes Gemma's: 0.5·(g·(1 + tanh(√(2/π)·(g + 0.044715·g·g·g)))).
   */
  activation?: 'silu' | 'gelu-tanh' | 'gelu' | 'gelu-ops' | 'gelu-tanh-ops' | 'gelu-tanh-decomposed';
  /** 'ungated': down(σ(up(m))), GPT-2's c_fc/c_proj, GPT-NeoX's dense_h_to_4h/dense_4h_to_h, Phi-2's fc1/fc2 (the gate weights are drawn, unused). */
  mlp?: 'gated' | 'ungated';
  /** 'parallel': x' = x + attn(ln₁(x)) + mlp(ln₂(x)) (GPT-NeoX); 'parallel-shared': one norm for both (Phi-2). */
  residual?: 'sequential' | 'parallel' | 'parallel-shared';
  /** 'learned': GPT-2's wpe [cachePositions, hidden] gathered by position and added to the embedding, no RoPE. */
  positions?: 'rope' | 'learned';
  /**
   * q/k/v as one linear (heads = kvHeads): 'gpt2' c_attn [in, 3·hidden] cut by Split on the last
   * axis; 'neox' query_key_value with rows interleaved per head [heads, 3, headDim], reshaped to
   * [batch, seq, heads, 3·headDim] and cut by three Slices ('neox-split': transposed to
   * [batch, heads, seq, 3·headDim] and cut by one Split, as transformers ≥ 4.48 writes it).
   */
  packedQkv?: 'gpt2' | 'neox' | 'neox-split';
  /** lm_head reads the embedding table through a Transpose (tied weights). */
  tiedEmbeddings?: boolean;
  /** Leave out block `n`'s MLP entirely (for recognition error tests). */
  dropMlpOfBlock?: number;
  /**
   * Multiply `count` channels of every norm's γ by `scale` (the same channels everywhere), as
   * real LLMs have a few large-magnitude activation channels. Drawn from their own stream,
   * so the other weights do not depend on the option.
   */
  outliers?: { count: number; scale: number };
  /**
   * Where each weight tensor goes once made (embedding, γ, linear weights, lm_head): the
   * default keeps it in memory; bench/scripts/gen-llama.ts writes it to external data and
   * returns a tensor that points there, so a model of any size streams to disk.
   */
  store?: (t: Tensor) => Tensor;
}

type Optional = 'dropMlpOfBlock' | 'rotaryDim' | 'outliers' | 'store' | 'packedQkv';
type Resolved = Required<Omit<TinyLlamaOptions, Optional>> & Pick<TinyLlamaOptions, Optional>;

const DEFAULT_TINY_LLAMA: Resolved = {
  layers: 2,
  hidden: 64,
  heads: 4,
  kvHeads: 2,
  intermediate: 128,
  vocab: 256,
  seed: 1,
  ropeTheta: 10000,
  normEps: 1e-5,
  norm: 'decomposed',
  linear: 'matmul',
  weightDtype: 'float32',
  names: 'hf',
  ropeFreqs: 'mul',
  cachePositions: 128,
  attention: 'decomposed',
  kvCache: false,
  qkNorm: false,
  blockNorms: 'pre',
  unitOffsetNorms: false,
  attnSoftcap: 0,
  logitSoftcap: 0,
  slidingPattern: 0,
  localRopeTheta: 0,
  slidingWindow: 0,
  packed: false,
  attentionScale: 0,
  residualScale: 1,
  embedScale: 1,
  logitDivisor: 1,
  activation: 'silu',
  tiedEmbeddings: false,
  mlp: 'gated',
  residual: 'sequential',
  positions: 'rope',
};

/**
 * Family-shaped variants: the features each family adds to the LLaMA block, built the same
 * way (Qwen2: q/k/v biases; Qwen3: per-head q/k RMSNorm; Mistral: a sliding window shorter
 * than the test prompts).
 */
export const FAMILY_VARIANTS: Record<string, TinyLlamaOptions> = {
  qwen2: { linear: 'matmul-bias', seed: 11 },
  qwen3: { qkNorm: true, normEps: 1e-6, seed: 12 },
  mistral: { slidingWindow: 5, seed: 13 },
  'mistral-kv': { slidingWindow: 4, kvCache: true, ropeFreqs: 'cache', seed: 14 },
  /** RoPE on half of each head (GPT-NeoX / Phi-2 rotary fraction), otherwise LLaMA. */
  'partial-rotary': { rotaryDim: 8, seed: 15 },
  /** Gemma's √hidden embedding normaliser and Granite's logits_scaling divisor. */
  'scaled-embed-logits': { embedScale: 8, logitDivisor: 4, seed: 16 },
  /** Phi-3's packed qkv_proj and gate_up_proj (with biases, to check they are cut too). */
  packed: { packed: true, linear: 'matmul-bias', seed: 17 },
  /** Granite's multipliers: embedding, residual, attention (a query scale) and logits. */
  granite: { embedScale: 12, residualScale: 0.22, attentionScale: 0.1, logitDivisor: 8, seed: 18 },
  /** Gemma's GeGLU (tanh GELU gate) and √hidden embedding normaliser. */
  'gemma-geglu': { activation: 'gelu-tanh', embedScale: 8, seed: 19 },
  /** Gemma-2: norms before and after the attention and the MLP, attention and final logit soft-capping
   *  (caps small enough to bite on random weights), local and global layers alternating, a query scale
   *  from query_pre_attn_scalar, GeGLU and the √hidden embedding normaliser. */
  gemma2: { blockNorms: 'sandwich', attnSoftcap: 2, logitSoftcap: 3, slidingWindow: 5, slidingPattern: 2, attentionScale: 0.2, activation: 'gelu-tanh', embedScale: 8, normEps: 1e-6, seed: 24 },
  /** Gemma-2 as a KV-cache graph with cos/sin caches, its norms fused (RMSNormalization, opset 23). */
  'gemma2-kv': { blockNorms: 'sandwich', attnSoftcap: 2, logitSoftcap: 3, slidingWindow: 4, slidingPattern: 2, attentionScale: 0.2, activation: 'gelu-tanh', embedScale: 8, normEps: 1e-6, kvCache: true, ropeFreqs: 'cache', norm: 'rmsnorm23', seed: 27 },
  /** Gemma-3: sandwich norms, per-head q/k RMSNorm, two local layers to one global, the local layers with their own RoPE θ. */
  gemma3: { blockNorms: 'sandwich', qkNorm: 'head', layers: 3, slidingWindow: 4, slidingPattern: 3, ropeTheta: 1000000, localRopeTheta: 10000, activation: 'gelu-tanh', embedScale: 8, normEps: 1e-6, seed: 25 },
  /** OLMo-2: norms after the attention and the MLP only, q/k RMSNorm over the whole projection. */
  olmo2: { blockNorms: 'post', qkNorm: 'all', normEps: 1e-6, seed: 26 },
  /** OLMo-2 with one kv head: the key norm over the whole k projection is one head wide. */
  'olmo2-mq': { blockNorms: 'post', qkNorm: 'all', kvHeads: 1, normEps: 1e-6, seed: 28 },
};

/**
 * GPT-2 / GPT-NeoX (Pythia) / Phi-2 / StableLM shapes: LayerNorm with β, biases on every linear,
 * ungated GELU MLPs, packed qkv, parallel residual, learned positions, partial rotary. One
 * KV head per query head, as these families have.
 */
export const GPT_FAMILY_VARIANTS: Record<string, TinyLlamaOptions> = {
  /** GPT-2 as TorchScript exports it (opset < 17): decomposed LayerNorm, Split c_attn, NewGELU in ops, wpe, tied lm_head. */
  gpt2: { kvHeads: 4, norm: 'layernorm-decomposed', linear: 'matmul-bias', mlp: 'ungated', activation: 'gelu-tanh-ops', positions: 'learned', packedQkv: 'gpt2', tiedEmbeddings: true, seed: 31 },
  /** GPT-2 as a KV-cache decoder: wpe gathered by the position_ids input. */
  'gpt2-kv': { kvHeads: 4, norm: 'layernorm', linear: 'matmul-bias', mlp: 'ungated', activation: 'gelu-tanh-ops', positions: 'learned', packedQkv: 'gpt2', kvCache: true, tiedEmbeddings: true, seed: 37 },
  /** GPT-2 as the dynamo exporter writes it: LayerNormalization, Gemm linears, fused tanh GELU. */
  'gpt2-dynamo': { kvHeads: 4, norm: 'layernorm', linear: 'gemm', mlp: 'ungated', activation: 'gelu-tanh', positions: 'learned', tiedEmbeddings: true, seed: 32 },
  /** Pythia: packed query_key_value interleaved per head, parallel residual, erf GELU, RoPE on a quarter of each head. */
  neox: { kvHeads: 4, norm: 'layernorm', linear: 'matmul-bias', mlp: 'ungated', activation: 'gelu-ops', residual: 'parallel', packedQkv: 'neox', rotaryDim: 4, seed: 33 },
  /** transformers ≥ 4.48's GPT-NeoX: view, transpose, then chunk(3) as one Split. */
  'neox-split': { kvHeads: 4, norm: 'layernorm-decomposed', linear: 'matmul-bias', mlp: 'ungated', activation: 'gelu', residual: 'parallel', packedQkv: 'neox-split', rotaryDim: 8, seed: 34 },
  /** Phi-2: one LayerNorm for attention and MLP in parallel, tanh GELU fc1/fc2, lm_head with bias, partial rotary. */
  phi2: { kvHeads: 4, norm: 'layernorm', linear: 'matmul-bias', mlp: 'ungated', activation: 'gelu-tanh-ops', residual: 'parallel-shared', rotaryDim: 8, seed: 35 },
  /** StableLM-2: LayerNorm with β, SwiGLU, partial rotary. */
  stablelm: { norm: 'layernorm', rotaryDim: 4, seed: 36 },
};

/** mulberry32 uniform stream with Box–Muller normals: small, seeded, the same everywhere. */
export class Rng {
  private s: number;
  constructor(seed: number) {
    this.s = seed >>> 0 || 1;
  }
  uniform(): number {
    let t = (this.s = (this.s + 0x6d2b79f5) >>> 0);
    t = Math.imul(t ^ (t >>> 15), t | 1);
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
  }
  normal(): number {
    const u = Math.max(this.uniform(), 1e-12);
    return Math.sqrt(-2 * Math.log(u)) * Math.cos(2 * Math.PI * this.uniform());
  }
  array(n: number, scale: number, mean = 0): Float32Array {
    const a = new Float32Array(n);
    for (let i = 0; i < n; i++) a[i] = mean + scale * this.normal();
    return a;
  }
}

/** Per-layer weights, W row-major [out, in]. */
interface LayerWeights {
  attnGamma: Float32Array;
  attnBeta: Float32Array;
  mlpGamma: Float32Array;
  mlpBeta: Float32Array;
  w: Record<'q' | 'k' | 'v' | 'o' | 'gate' | 'up' | 'down', { W: Float32Array; b: Float32Array; out: number; inp: number }>;
}

/**
 * The weights in the order they are drawn from one stream: the embedding, then layer by
 * layer, then the final norm and the head. `layer(l)` and `tail()` draw when first called,
 * in that order, so only one layer's weights need be in memory at a time.
 */
function drawWeights(o: Resolved): { embed: Float32Array; layer(l: number): LayerWeights; tail(): { finalGamma: Float32Array; finalBeta: Float32Array; head: Float32Array; headBias: Float32Array } } {
  const rng = new Rng(o.seed);
  const D = o.hidden / o.heads;
  const embed = rng.array(o.vocab * o.hidden, 1);
  const lin = (out: number, inp: number) => ({ W: rng.array(out * inp, 1 / Math.sqrt(inp)), b: rng.array(out, 0.05), out, inp });
  const outlierChannels: number[] = [];
  if (o.outliers) {
    const pick = new Rng(o.seed + 104729);
    while (outlierChannels.length < Math.min(o.outliers.count, o.hidden)) {
      const c = Math.floor(pick.uniform() * o.hidden);
      if (!outlierChannels.includes(c)) outlierChannels.push(c);
    }
  }
  const boost = (gamma: Float32Array): Float32Array => {
    for (const c of outlierChannels) gamma[c] *= o.outliers!.scale;
    return gamma;
  };
  let drawn = 0;
  const layer = (l: number): LayerWeights => {
    if (l !== drawn++) throw new Error(`drawWeights: layer ${l} drawn out of order`);
    return {
      attnGamma: boost(rng.array(o.hidden, 0.1, 1)),
      attnBeta: rng.array(o.hidden, 0.05),
      mlpGamma: boost(rng.array(o.hidden, 0.1, 1)),
      mlpBeta: rng.array(o.hidden, 0.05),
      w: {
        q: lin(o.heads * D, o.hidden),
        k: lin(o.kvHeads * D, o.hidden),
        v: lin(o.kvHeads * D, o.hidden),
        o: lin(o.hidden, o.heads * D),
        gate: lin(o.intermediate, o.hidden),
        up: lin(o.intermediate, o.hidden),
        down: lin(o.hidden, o.intermediate),
      },
    };
  };
  const tail = () => {
    if (drawn !== o.layers) throw new Error('drawWeights: the head is drawn after every layer');
    const finalGamma = boost(rng.array(o.hidden, 0.1, 1));
    const finalBeta = rng.array(o.hidden, 0.05);
    const head = rng.array(o.vocab * o.hidden, 1 / Math.sqrt(o.hidden));
    const headBias = rng.array(o.vocab, 0.05);
    return { finalGamma, finalBeta, head, headBias };
  };
  return { embed, layer, tail };
}

function transpose(W: Float32Array, rows: number, cols: number): Float32Array {
  const t = new Float32Array(W.length);
  for (let r = 0; r < rows; r++) for (let c = 0; c < cols; c++) t[c * rows + r] = W[r * cols + c];
  return t;
}

function halfTensor(dims: number[], a: Float32Array): Tensor {
  const h = new Uint16Array(a.length);
  for (let i = 0; i < a.length; i++) h[i] = floatToHalf(a[i]);
  return Tensor.fromBytes('float16', dims, new Uint8Array(h.buffer));
}

function namer(style: NameStyle): (layer: number, what: string) => string {
  let n = 0;
  // Misleading: every block's tensors carry another role's name.
  const lie: Record<string, string> = {
    q_proj: 'mlp.down_proj',
    k_proj: 'mlp.up_proj',
    v_proj: 'mlp.gate_proj',
    o_proj: 'self_attn.q_proj',
    gate_proj: 'self_attn.o_proj',
    up_proj: 'self_attn.v_proj',
    down_proj: 'self_attn.k_proj',
    input_layernorm: 'post_attention_layernorm',
    post_attention_layernorm: 'input_layernorm',
  };
  return (layer, what) => {
    if (style === 'anonymous') return `t${n++}`;
    const m = /^(?:(?:self_attn|mlp)\.)?([a-z_]+)\.(weight|bias)$/.exec(what);
    const name = style === 'misleading' && m && lie[m[1]] ? `${lie[m[1]]}.${m[2]}` : what;
    return layer < 0 ? `model.${name}` : `model.layers.${layer}.${name}`;
  };
}

/** A tiny LLaMA (by default exactly as torch's dynamo exporter writes one) with random weights. */
export function makeTinyLlama(opts: TinyLlamaOptions = {}): Model {
  const o: Resolved = { ...DEFAULT_TINY_LLAMA, ...opts };
  if (o.hidden % o.heads !== 0 || o.heads % o.kvHeads !== 0) throw new Error('makeTinyLlama: heads must divide hidden, kvHeads must divide heads');
  const D = o.hidden / o.heads;
  if (D % 2 !== 0) throw new Error('makeTinyLlama: head size must be even for RoPE');
  if (o.kvCache && o.attention === 'gqa') throw new Error('makeTinyLlama: kvCache is for decomposed attention');
  if (o.slidingWindow && o.attention === 'gqa') throw new Error('makeTinyLlama: slidingWindow is for decomposed attention');
  const weights = drawWeights(o);
  const name = namer(o.names);
  const b = new GraphBuilder();
  const g = b.graph;
  g.name = 'tiny_llama';
  const f32 = (n: string, dims: number[], data: Float32Array | number[]): Value => b.f32(n, dims, data);
  const store = o.store ?? ((t: Tensor) => t);
  const weight = (n: string, t: Tensor): Value => b.init(n, store(t));
  const i64 = (n: string, data: number[]): Value => b.i64(n, data);
  const scalarF = (n: string, v: number): Value => b.f32(n, [], [v]);

  const ids = b.input('input_ids', { dtype: 'int64', shape: ['batch', 'sequence'] });
  const table = weight(name(-1, 'embed_tokens.weight'), Tensor.fromFloat32([o.vocab, o.hidden], weights.embed));
  const gathered = b.op('Gather', [table, ids], { attrs: { axis: 0 } });
  const scaled = o.embedScale === 1 ? gathered : b.op('Mul', [gathered, b.f32('normalizer', [], [o.embedScale])]);
  const kv = o.kvCache
    ? {
        attentionMask: b.input('attention_mask', { dtype: 'int64', shape: ['batch', 'total'] }),
        positionIds: b.input('position_ids', { dtype: 'int64', shape: ['batch', 'sequence'] }),
        past: Array.from({ length: o.layers }, (_, l) =>
          (['key', 'value'] as const).map((w) => b.input(`past_key_values.${l}.${w}`, { dtype: 'float32', shape: ['batch', o.kvHeads, 'past', D] })),
        ),
      }
    : undefined;

  // Positions 0..s-1 (or position_ids), RoPE tables [s, D] (or [b, 1, s, D]) and the additive causal mask [s, s] (or [b, 1, s, total]).
  const idsShape = b.op('Shape', [ids]);
  const seqLen = b.op('Squeeze', [b.op('Slice', [idsShape, i64('one', [1]), i64('two', [2])]), i64('zero', [0])]);
  const pos = b.op('Range', [b.i64('start', [0], []), seqLen, b.i64('delta', [1], [])]);
  const ropePos = kv ? kv.positionIds : pos;
  // Learned positions (GPT-2's wpe), drawn from their own stream so that the other weights do not depend on the option.
  const x0 =
    o.positions === 'learned'
      ? b.op('Add', [scaled, b.op('Gather', [f32(name(-1, 'wpe.weight'), [o.cachePositions, o.hidden], new Rng(o.seed + 6151).array(o.cachePositions * o.hidden, 0.3)), ropePos], { attrs: { axis: 0 } })])
      : scaled;
  // RoPE over the first R dims of a head: frequencies θ^(−2i/R), i < R/2 (none with learned positions; the tables below are then dead).
  const R = o.positions === 'learned' ? 0 : (o.rotaryDim ?? D);
  if (R % 2 || R > D || (R < D && o.attention === 'gqa')) throw new Error('makeTinyLlama: rotaryDim must be even, at most the head size, with decomposed attention');
  // RT: the width the (dead) tables are drawn at when there is no RoPE.
  const RT = R || D;
  const invFreqOf = (theta: number) => Float32Array.from({ length: RT / 2 }, (_, i) => 1 / theta ** ((2 * i) / RT));
  const invFreq = invFreqOf(o.ropeTheta);
  let cos: Value;
  let sin: Value;
  if (o.localRopeTheta && (o.ropeFreqs === 'cache' || o.attention === 'gqa' || !o.slidingWindow)) throw new Error('makeTinyLlama: localRopeTheta is for windowed layers with ropeFreqs mul/matmul');
  /** cos, sin [s, R] (or [b, 1, s, R]) of the angles pos · inv. */
  const ropeTables = (inv: Float32Array, tag: string): [Value, Value] => {
    const posCol = b.op('Unsqueeze', [b.op('Cast', [ropePos], { attrs: { to: 1 } }), i64('axis_last', [-1])]);
    const freqs = b.op(o.ropeFreqs === 'matmul' ? 'MatMul' : 'Mul', [posCol, f32(`inv_freq${tag}`, [1, RT / 2], inv)]);
    const emb = b.op('Concat', [freqs, freqs], { attrs: { axis: -1 } });
    const t: [Value, Value] = [b.op('Cos', [emb]), b.op('Sin', [emb])];
    return kv ? [b.op('Unsqueeze', [t[0], i64('axis1', [1])]), b.op('Unsqueeze', [t[1], i64('axis1', [1])])] : t;
  };
  if (o.ropeFreqs === 'cache') {
    const P = o.cachePositions;
    const [c, s] = [new Float32Array(P * RT), new Float32Array(P * RT)];
    for (let p = 0; p < P; p++) {
      for (let i = 0; i < RT; i++) {
        const ang = p / o.ropeTheta ** ((2 * (i % (RT / 2))) / RT);
        c[p * RT + i] = Math.cos(ang);
        s[p * RT + i] = Math.sin(ang);
      }
    }
    cos = b.op('Gather', [f32('cos_cached', [P, RT], c), ropePos], { attrs: { axis: 0 } });
    sin = b.op('Gather', [f32('sin_cached', [P, RT], s), ropePos], { attrs: { axis: 0 } });
  } else {
    [cos, sin] = ropeTables(invFreq, '');
  }
  const localRope = o.localRopeTheta ? ropeTables(invFreqOf(o.localRopeTheta), '_local') : undefined;
  // k ≤ q, and k > q − window when there is one.
  const windowed = (k: Value, q: Value, window: number): Value => {
    const causal = b.op('LessOrEqual', [k, q]);
    if (!window) return causal;
    return b.op('And', [causal, b.op('Greater', [k, b.op('Sub', [q, b.i64('window', [window], [])])])]);
  };
  /** The additive mask of a window (0: causal only). */
  if (kv && o.ropeFreqs === 'cache') {
    cos = b.op('Unsqueeze', [cos, i64('axis1', [1])]);
    sin = b.op('Unsqueeze', [sin, i64('axis1', [1])]);
  }
  const maskOf = (window: number): Value => {
    let allowed: Value;
    if (kv) {
      // Query i sits at absolute position past + i and sees keys j ≤ past + i that the attention mask keeps.
      const pastLen = b.op('Squeeze', [b.op('Slice', [b.op('Shape', [kv.past[0][0]]), i64('two', [2]), i64('three', [3])]), i64('zero', [0])]);
      const total = b.op('Squeeze', [b.op('Slice', [b.op('Shape', [kv.attentionMask]), i64('one', [1]), i64('two', [2])]), i64('zero', [0])]);
      const qPos = b.op('Add', [pos, pastLen]);
      const kPos = b.op('Range', [b.i64('start', [0], []), total, b.i64('delta', [1], [])]);
      const [k, q] = [b.op('Unsqueeze', [kPos, i64('axis0', [0])]), b.op('Unsqueeze', [qPos, i64('axis1', [1])])];
      const keep = b.op('Unsqueeze', [b.op('Cast', [kv.attentionMask], { attrs: { to: 9 } }), i64('axes12', [1, 2])]);
      allowed = b.op('And', [windowed(k, q, window), keep]);
    } else {
      allowed = windowed(b.op('Unsqueeze', [pos, i64('axis0', [0])]), b.op('Unsqueeze', [pos, i64('axis1', [1])]), window);
    }
    return b.op('Where', [allowed, scalarF('zero_f', 0), scalarF('min_f', -3.4028234663852886e38)]);
  };
  const mask = maskOf(o.slidingWindow);
  const globalMask = o.slidingPattern && o.slidingWindow ? maskOf(0) : mask;
  /** Gemma-2/3 place a global layer where (l + 1) % pattern = 0. */
  const isGlobal = (l: number): boolean => !!o.slidingPattern && (l + 1) % o.slidingPattern === 0;

  // Shape [batch, seq] for reshaping Gemm outputs back to 3-D.
  const outShapes = new Map<number, Value>();
  const outShape = (n: number): Value => {
    let v = outShapes.get(n);
    if (!v) outShapes.set(n, (v = b.op('Concat', [idsShape, i64('features', [n])], { attrs: { axis: 0 } })));
    return v;
  };

  const linear = (x: Value, wName: string, w: { W: Float32Array; b: Float32Array; out: number; inp: number }): Value => {
    const { W, out, inp } = w;
    const stored = o.linear === 'matmul' || o.linear === 'matmul-bias' ? transpose(W, out, inp) : W;
    const dims = o.linear === 'matmul' || o.linear === 'matmul-bias' ? [inp, out] : [out, inp];
    let wv: Value;
    if (o.weightDtype === 'float16') {
      wv = weight(wName, halfTensor(dims, stored));
      wv = b.op('Cast', [wv], { attrs: { to: 1 } });
    } else {
      wv = weight(wName, Tensor.fromFloat32(dims, stored));
    }
    const biasName = wName.replace(/weight$/, 'bias') + (o.names === 'anonymous' ? '_b' : '');
    switch (o.linear) {
      case 'matmul':
        return b.op('MatMul', [x, wv]);
      case 'matmul-transposed':
        return b.op('MatMul', [x, b.op('Transpose', [wv], { attrs: { perm: [1, 0] } })]);
      case 'matmul-bias':
        return b.op('Add', [b.op('MatMul', [x, wv]), f32(biasName, [out], w.b)]);
      case 'gemm': {
        const x2 = b.op('Reshape', [x, i64('rows', [-1, inp])]);
        const y2 = b.op('Gemm', [x2, wv, f32(biasName, [out], w.b)], { attrs: { transB: 1 } });
        return b.op('Reshape', [y2, outShape(out)]);
      }
    }
  };

  /** Row blocks of several [out, in] weights as one (their outputs concatenated). */
  const packedWeights = (ws: { W: Float32Array; b: Float32Array; out: number; inp: number }[]) => {
    const concat = (arrays: Float32Array[]) => {
      const r = new Float32Array(arrays.reduce((n, a) => n + a.length, 0));
      let at = 0;
      for (const a of arrays) r.set(a, (at += a.length) - a.length);
      return r;
    };
    return { W: concat(ws.map((w) => w.W)), b: concat(ws.map((w) => w.b)), out: ws.reduce((n, w) => n + w.out, 0), inp: ws[0].inp };
  };

  /** GPT-NeoX's query_key_value: per head, the q, k and v rows of that head ([heads, 3, D] rows). */
  const interleavedWeights = (ws: { W: Float32Array; b: Float32Array; out: number; inp: number }[], d: number) => {
    const inp = ws[0].inp;
    const heads = ws[0].out / d;
    const W = new Float32Array(3 * ws[0].out * inp);
    const bias = new Float32Array(3 * ws[0].out);
    for (let h = 0; h < heads; h++) {
      ws.forEach((w, j) => {
        const row = (h * 3 + j) * d;
        W.set(w.W.subarray(h * d * inp, (h + 1) * d * inp), row * inp);
        bias.set(w.b.subarray(h * d, (h + 1) * d), row);
      });
    }
    return { W, b: bias, out: 3 * ws[0].out, inp };
  };

  /** σ(g) as the option spells it. */
  const activate = (g: Value): Value => {
    switch (o.activation) {
      case 'silu':
        return b.op('Mul', [g, b.op('Sigmoid', [g])]);
      case 'gelu':
      case 'gelu-tanh':
        return b.op(o.activation === 'gelu' ? 'Gelu' : 'FastGelu', [g], { domain: 'com.microsoft' });
      case 'gelu-ops':
        return b.op('Mul', [b.op('Mul', [g, b.op('Add', [b.op('Erf', [b.op('Div', [g, scalarF('sqrt2', Math.SQRT2)])]), scalarF('one_f', 1)])]), scalarF('half_f', 0.5)]);
      case 'gelu-tanh-decomposed': {
        const cube = b.op('Mul', [g, b.op('Mul', [g, g])]);
        const inner = b.op('Mul', [scalarF('sqrt_2_over_pi', Math.sqrt(2 / Math.PI)), b.op('Add', [g, b.op('Mul', [scalarF('gelu_c', 0.044715), cube])])]);
        return b.op('Mul', [scalarF('half_f', 0.5), b.op('Mul', [g, b.op('Add', [scalarF('one_f', 1), b.op('Tanh', [inner])])])]);
      }
      case 'gelu-tanh-ops': {
        const inner = b.op('Add', [g, b.op('Mul', [scalarF('gelu_c', 0.044715), b.op('Pow', [g, scalarF('three_f', 3)])])]);
        const t = b.op('Tanh', [b.op('Mul', [scalarF('sqrt_2_pi', Math.sqrt(2 / Math.PI)), inner])]);
        return b.op('Mul', [b.op('Mul', [scalarF('half_f', 0.5), g]), b.op('Add', [scalarF('one_f', 1), t])]);
      }
    }
  };

  /** fc2(σ(fc1(m))): the up weights as fc1, down as fc2. */
  const ungatedMlp = (m: Value, l: number, L: LayerWeights): Value =>
    linear(activate(linear(m, name(l, 'mlp.fc1.weight'), L.w.up)), name(l, 'mlp.fc2.weight'), L.w.down);

  // Norms. `skipFrom` carries (delta, residual) into the next Skip norm when the residual Add is fused.
  let pending: { delta: Value; resid: Value } | undefined;
  const norm = (x: Value | undefined, layer: number, what: string, gamma: Float32Array, beta: Float32Array): { out: Value; stream: Value } => {
    const gv = o.unitOffsetNorms
      ? b.op('Add', [b.op('Cast', [weight(name(layer, `${what}.weight`), Tensor.fromFloat32([o.hidden], gamma.map((g) => g - 1)))], { attrs: { to: 1 } }), scalarF('one_f', 1)])
      : weight(name(layer, `${what}.weight`), Tensor.fromFloat32([o.hidden], gamma));
    const eps = o.normEps;
    if (o.norm === 'skip-simplified' && pending) {
      const [out, , , sum] = b.node('SkipSimplifiedLayerNormalization', [pending.delta, pending.resid, gv], {
        domain: 'com.microsoft',
        outputs: 4,
        attrs: { epsilon: { type: 'float', value: eps } },
      });
      pending = undefined;
      return { out, stream: sum };
    }
    if (!x) throw new Error('norm without input');
    switch (o.norm) {
      case 'decomposed':
      case 'decomposed-div': {
        const div = o.norm === 'decomposed-div';
        const sq = div ? b.op('Mul', [x, x]) : b.op('Pow', [x, scalarF('two_f', 2)]);
        const ms = b.op('ReduceMean', [sq, i64('last', [-1])], { attrs: { keepdims: 1 } });
        const rms = b.op('Sqrt', [b.op('Add', [ms, scalarF('eps', eps)])]);
        const normed = div ? b.op('Div', [x, rms]) : b.op('Mul', [x, b.op('Reciprocal', [rms])]);
        return { out: b.op('Mul', [gv, normed]), stream: x };
      }
      case 'simplified':
      case 'skip-simplified':
        return { out: b.op('SimplifiedLayerNormalization', [x, gv], { attrs: { axis: -1, epsilon: { type: 'float', value: eps } } }), stream: x };
      case 'rmsnorm23':
        return { out: b.op('RMSNormalization', [x, gv], { attrs: { axis: -1, epsilon: { type: 'float', value: eps } } }), stream: x };
      case 'layernorm': {
        const bv = f32(name(layer, `${what}.bias`), [o.hidden], beta);
        return { out: b.op('LayerNormalization', [x, gv, bv], { attrs: { axis: -1, epsilon: { type: 'float', value: eps } } }), stream: x };
      }
      case 'layernorm-decomposed': {
        const bv = f32(name(layer, `${what}.bias`), [o.hidden], beta);
        const d = b.op('Sub', [x, b.op('ReduceMean', [x, i64('last', [-1])], { attrs: { keepdims: 1 } })]);
        const v = b.op('ReduceMean', [b.op('Pow', [d, scalarF('two_f', 2)]), i64('last', [-1])], { attrs: { keepdims: 1 } });
        const normed = b.op('Div', [d, b.op('Sqrt', [b.op('Add', [v, scalarF('eps', eps)])])]);
        return { out: b.op('Add', [b.op('Mul', [normed, gv]), bv]), stream: x };
      }
    }
  };
  const residual = (resid: Value, delta: Value): Value | undefined => {
    if (o.residualScale !== 1) delta = b.op('Mul', [delta, b.f32('residual_multiplier', [], [o.residualScale])]);
    if (o.norm === 'skip-simplified') {
      pending = { delta, resid };
      return undefined;
    }
    return b.op('Add', [resid, delta]);
  };

  const rope = (t: Value, [cos, sin]: [Value, Value]): Value => {
    if (R === 0) return t;
    const axes = i64('axes_last', [-1]);
    const tr = R === D ? t : b.op('Slice', [t, i64('s0', [0]), i64('sR', [R]), axes]);
    const x1 = b.op('Slice', [tr, i64('s0', [0]), i64('sh', [R / 2]), axes]);
    const x2 = b.op('Slice', [tr, i64('sh', [R / 2]), i64('sR', [R]), axes]);
    const rot = b.op('Concat', [b.op('Neg', [x2]), x1], { attrs: { axis: -1 } });
    const rotated = b.op('Add', [b.op('Mul', [tr, cos]), b.op('Mul', [rot, sin])]);
    return R === D ? rotated : b.op('Concat', [rotated, b.op('Slice', [t, i64('sR', [R]), i64('sD', [D]), axes])], { attrs: { axis: -1 } });
  };
  const heads = (t: Value, n: number): Value =>
    b.op('Transpose', [b.op('Reshape', [t, i64('heads', [0, 0, n, D])])], { attrs: { perm: [0, 2, 1, 3] } });
  const rep = o.heads / o.kvHeads;
  const repeatKv = (t: Value): Value =>
    rep === 1
      ? t
      : b.op('Reshape', [b.op('Expand', [b.op('Unsqueeze', [t, i64('axis2', [2])]), i64('rep', [1, 1, rep, 1, 1])]), i64('merged', [0, o.heads, -1, D])]);

  // GroupQueryAttention's extra inputs: per-batch last position (int32) and total length, half-width caches.
  let gqa: { seqlensK: Value; totalLen: Value; cos: Value; sin: Value } | undefined;
  if (o.attention === 'gqa') {
    const P = o.cachePositions;
    const [c, s] = [new Float32Array((P * D) / 2), new Float32Array((P * D) / 2)];
    for (let p = 0; p < P; p++) {
      for (let i = 0; i < D / 2; i++) {
        c[(p * D) / 2 + i] = Math.cos(p * invFreq[i]);
        s[(p * D) / 2 + i] = Math.sin(p * invFreq[i]);
      }
    }
    const batch = b.op('Slice', [idsShape, i64('zero', [0]), i64('one', [1])]);
    const last = b.op('Cast', [b.op('Sub', [seqLen, b.i64('one_s', [1], [])])], { attrs: { to: 6 } });
    gqa = {
      seqlensK: b.op('Expand', [last, batch]),
      totalLen: b.op('Cast', [seqLen], { attrs: { to: 6 } }),
      cos: f32('cos_cache', [P, D / 2], c),
      sin: f32('sin_cache', [P, D / 2], s),
    };
  }

  // QK-norm γ drawn after every other weight, so the other weights do not depend on the option.
  const qkRng = new Rng(o.seed + 7919);
  const headGamma = (n = D): Float32Array => qkRng.array(n, 0.1, 1);
  // So are the post-norm γ of 'sandwich' blocks (OLMo-2's 'post' blocks reuse the pre-norm draws).
  const postRng = new Rng(o.seed + 15485863);
  if (o.blockNorms !== 'pre' && o.norm === 'skip-simplified') throw new Error('makeTinyLlama: post-norms are not built with Skip norms');
  if ((o.attnSoftcap || o.qkNorm === 'all' || o.slidingPattern) && o.attention === 'gqa') throw new Error('makeTinyLlama: soft-capping, whole-width q/k norms and local/global layers are for decomposed attention');
  const dropGamma = o.blockNorms === 'sandwich' ? () => postRng.array(o.hidden, 0.1, 1) : undefined;
  /** x + f(·): 'post' and 'sandwich' blocks normalise the output first. */
  const postNormed = (delta: Value, layer: number, what: string, gamma: Float32Array, beta: Float32Array): Value =>
    o.blockNorms === 'pre' ? delta : norm(delta, layer, what, dropGamma ? dropGamma() : gamma, beta).out;
  const presents: [Value, string][] = [];
  let x: Value | undefined = x0;
  let stream: Value = x0;
  for (let l = 0; l < o.layers; l++) {
    const L = weights.layer(l);
    const a = o.blockNorms === 'post' ? { out: x!, stream: x! } : norm(x, l, 'input_layernorm', L.attnGamma, L.attnBeta);
    stream = a.stream;
    const local = !!o.slidingWindow && !isGlobal(l);
    const ropeCs: [Value, Value] = local && localRope ? localRope : [cos, sin];
    let qLin: Value | undefined, kLin: Value | undefined, vLin: Value | undefined;
    /** q, k, v already split into heads [batch, heads, seq, D] (GPT-NeoX's packed layout). */
    let qkvHeads: Value[] | undefined;
    if (o.packedQkv) {
      if (o.kvHeads !== o.heads || o.attention !== 'decomposed') throw new Error('makeTinyLlama: packedQkv needs kvHeads = heads and decomposed attention');
      const parts = [L.w.q, L.w.k, L.w.v];
      if (o.packedQkv === 'gpt2') {
        const qkv = linear(a.out, name(l, 'attn.c_attn.weight'), packedWeights(parts));
        [qLin, kLin, vLin] = b.node('Split', [qkv, i64('thirds', [o.hidden, o.hidden, o.hidden])], { outputs: 3, attrs: { axis: -1 } });
      } else {
        const qkv = linear(a.out, name(l, 'attention.query_key_value.weight'), interleavedWeights(parts, D));
        const r = b.op('Reshape', [qkv, i64('qkv_heads', [0, 0, o.packedQkv === 'neox' ? o.heads : -1, 3 * D])]);
        if (o.packedQkv === 'neox') {
          const cut = (from: number) => b.op('Transpose', [b.op('Slice', [r, i64(`c${from}`, [from]), i64(`c${from + D}`, [from + D]), i64('axes_last', [-1])])], { attrs: { perm: [0, 2, 1, 3] } });
          qkvHeads = [cut(0), cut(D), cut(2 * D)];
        } else {
          const t = b.op('Transpose', [r], { attrs: { perm: [0, 2, 1, 3] } });
          qkvHeads = b.node('Split', [t, i64('head_thirds', [D, D, D])], { outputs: 3, attrs: { axis: -1 } });
        }
      }
    } else if (o.packed) {
      const qkv = linear(a.out, name(l, 'self_attn.qkv_proj.weight'), packedWeights([L.w.q, L.w.k, L.w.v]));
      const cut = (from: number, to: number) => b.op('Slice', [qkv, i64('p0', [from]), i64('p1', [to]), i64('axes_last', [-1])]);
      const [qd, kvd] = [L.w.q.out, L.w.k.out];
      [qLin, kLin, vLin] = [cut(0, qd), cut(qd, qd + kvd), cut(qd + kvd, qd + 2 * kvd)];
    } else {
      qLin = linear(a.out, name(l, 'self_attn.q_proj.weight'), L.w.q);
      kLin = linear(a.out, name(l, 'self_attn.k_proj.weight'), L.w.k);
      vLin = linear(a.out, name(l, 'self_attn.v_proj.weight'), L.w.v);
    }
    let merged: Value;
    if (o.attention === 'gqa') {
      merged = b.node('GroupQueryAttention', [qLin!, kLin!, vLin!, undefined, undefined, gqa!.seqlensK, gqa!.totalLen, gqa!.cos, gqa!.sin], {
        domain: 'com.microsoft',
        outputs: 3,
        attrs: { num_heads: o.heads, kv_num_heads: o.kvHeads, do_rotary: 1, rotary_interleaved: 0 },
      })[0];
    } else {
      const rms = (t: Value, what: string, width: number): Value => {
        const ms = b.op('ReduceMean', [b.op('Pow', [t, scalarF('two_f', 2)]), i64('last', [-1])], { attrs: { keepdims: 1 } });
        const normed = b.op('Mul', [t, b.op('Reciprocal', [b.op('Sqrt', [b.op('Add', [ms, scalarF('eps', o.normEps)])])])]);
        return b.op('Mul', [f32(name(l, `self_attn.${what}.weight`), [width], headGamma(width)), normed]);
      };
      // per head after the split, or (OLMo-2) over the whole projection before it
      const perHead = o.qkNorm === true || o.qkNorm === 'head';
      const headNorm = (t: Value, what: string): Value => (perHead ? rms(t, what, D) : t);
      const fullNorm = (t: Value, what: string, n: number): Value => (o.qkNorm === 'all' ? rms(t, what, n * D) : t);
      if (qkvHeads && o.qkNorm === 'all') throw new Error("makeTinyLlama: qkNorm 'all' needs q and k before the split into heads (not packedQkv 'neox')");
      const [qH, kH, vH] = qkvHeads ?? [heads(fullNorm(qLin!, 'q_norm', o.heads), o.heads), heads(fullNorm(kLin!, 'k_norm', o.kvHeads), o.kvHeads), heads(vLin!, o.kvHeads)];
      const q = rope(headNorm(qH, 'q_norm'), ropeCs);
      let kAll = rope(headNorm(kH, 'k_norm'), ropeCs);
      let vAll = vH;
      if (kv) {
        kAll = b.op('Concat', [kv.past[l][0], kAll], { attrs: { axis: 2 } });
        vAll = b.op('Concat', [kv.past[l][1], vAll], { attrs: { axis: 2 } });
        presents.push([kAll, `present.${l}.key`], [vAll, `present.${l}.value`]);
      }
      const k = repeatKv(kAll);
      const v = repeatKv(vAll);
      let scaled = b.op('Mul', [b.op('MatMul', [q, b.op('Transpose', [k], { attrs: { perm: [0, 1, 3, 2] } })]), scalarF('scale', o.attentionScale || 1 / Math.sqrt(D))]);
      if (o.attnSoftcap) scaled = b.op('Mul', [b.op('Tanh', [b.op('Div', [scaled, scalarF('attn_softcap', o.attnSoftcap)])]), scalarF('attn_softcap', o.attnSoftcap)]);
      const scores = b.op('Add', [scaled, local ? mask : globalMask]);
      const ctx = b.op('MatMul', [b.op('Softmax', [scores], { attrs: { axis: -1 } }), v]);
      merged = b.op('Reshape', [b.op('Transpose', [ctx], { attrs: { perm: [0, 2, 1, 3] } }), i64('merge', [0, 0, o.heads * D])]);
    }
    const attnOut = linear(merged, name(l, 'self_attn.o_proj.weight'), L.w.o);
    if (o.residual !== 'sequential') {
      // GPT-NeoX: mlp + attn + x; Phi-2: attn + mlp + x over its one norm.
      // (sandwich post-norms too, a combination no family has, to test that it is refused)
      if (o.residualScale !== 1 || o.norm === 'skip-simplified' || o.mlp !== 'ungated' || o.blockNorms === 'post') throw new Error('makeTinyLlama: a parallel residual is built with an ungated MLP, pre-norms and no residual scale');
      const shared = o.residual === 'parallel-shared';
      const mIn = shared ? a.out : norm(stream, l, 'post_attention_layernorm', L.mlpGamma, L.mlpBeta).out;
      const attnDelta = postNormed(attnOut, l, 'attn_output_norm', L.attnGamma, L.attnBeta);
      const mlpOut = postNormed(ungatedMlp(mIn, l, L), l, 'mlp_output_norm', L.mlpGamma, L.mlpBeta);
      x = b.op('Add', [shared ? b.op('Add', [attnDelta, mlpOut]) : b.op('Add', [mlpOut, attnDelta]), stream]);
      continue;
    }
    let h = residual(stream, postNormed(attnOut, l, 'post_attention_layernorm', L.attnGamma, L.attnBeta));
    if (l === o.dropMlpOfBlock) {
      x = h;
      continue;
    }
    const m = o.blockNorms === 'post' ? { out: h!, stream: h! } : norm(h, l, o.blockNorms === 'sandwich' ? 'pre_feedforward_layernorm' : 'post_attention_layernorm', L.mlpGamma, L.mlpBeta);
    h = m.stream;
    if (o.mlp === 'ungated') {
      x = residual(h, postNormed(ungatedMlp(m.out, l, L), l, 'post_feedforward_layernorm', L.mlpGamma, L.mlpBeta));
      continue;
    }
    const gateUp = o.packed
      ? b.node('Split', [linear(m.out, name(l, 'mlp.gate_up_proj.weight'), packedWeights([L.w.gate, L.w.up])), i64('halves', [o.intermediate, o.intermediate])], { outputs: 2, attrs: { axis: -1 } })
      : undefined;
    const gate = gateUp ? gateUp[0] : linear(m.out, name(l, 'mlp.gate_proj.weight'), L.w.gate);
    const act = activate(gate);
    const up = gateUp ? gateUp[1] : linear(m.out, name(l, 'mlp.up_proj.weight'), L.w.up);
    const down = linear(b.op('Mul', [act, up]), name(l, 'mlp.down_proj.weight'), L.w.down);
    x = residual(h, postNormed(down, l, 'post_feedforward_layernorm', L.mlpGamma, L.mlpBeta));
  }
  const tail = weights.tail();
  const fin = norm(x, -1, 'norm', tail.finalGamma, tail.finalBeta);
  const headW = { W: tail.head, b: tail.headBias, out: o.vocab, inp: o.hidden };
  let logits = o.tiedEmbeddings
    ? b.op('MatMul', [fin.out, b.op('Transpose', [table], { attrs: { perm: [1, 0] } })])
    : linear(fin.out, o.names === 'anonymous' ? name(-1, 'x') : 'lm_head.weight', headW);
  if (o.logitDivisor !== 1) logits = b.op('Div', [logits, b.f32('logits_scaling', [], [o.logitDivisor])]);
  if (o.logitSoftcap) logits = b.op('Mul', [b.op('Tanh', [b.op('Div', [logits, b.f32('final_logit_softcapping', [], [o.logitSoftcap])])]), b.f32('final_logit_softcapping', [], [o.logitSoftcap])]);
  b.output(logits, 'logits');
  logits.type = { dtype: 'float32', shape: ['batch', 'sequence', o.vocab] };
  for (const [v, n] of presents) {
    b.output(v, n);
    v.type = { dtype: 'float32', shape: ['batch', o.kvHeads, 'total', D] };
  }
  // Styles that do not use the shared RoPE tables or mask leave them dead.
  g.removeDeadNodes();
  const extra = o.norm === 'skip-simplified' || o.attention === 'gqa' || o.activation === 'gelu' || o.activation === 'gelu-tanh' ? [{ domain: 'com.microsoft', version: 1 }] : [];
  return b.model(o.norm === 'rmsnorm23' ? 23 : 18, extra);
}
