// The contract between the compiler and every runtime (CUDA, WGSL, the report):
// `out/manifest.json` describes the model as a decoder-only transformer program over
// named tensors stored in `out/weights.bin`. Runtimes never parse ONNX; they read this.
//
// Version 2 carries the block program (src/program/block-program.ts, which states its steps):
// `program` (model-wide: residual layout, norm kind, RoPE, embedding and logit scales), each
// block's `attention`, `mlp` and `residualScale`, and `features`, the program's features by
// name. Runtimes read these and refuse features they lack.
//
// Per token position, with act(x, site) meaning: apply the site's online transform
// (x → C·X·Bᵀ on the [l, r] view of x, if present), then per-token asymmetric activation
// quantisation to site.bits (16 = none) with clip ratio site.clip:
//   x₀ = embedScale · embed[id] (+ positionEmbed[pos])
//   h = x + ra · post( o( act(attention(rope(qn(q(a))), rope(kn(k(a))), v(a)), 'o') ), postNorm.attn ),   a = act(pre(x, attnNorm), 'attn')
//   x' = h + rm · post( down( act(σ(gate(m)) * up(m), 'down') ), postNorm.mlp ),                          m = act(pre(h, mlpNorm), 'mlp')
// and logits = softcap(logitScale · lmHead(norm(x_L, finalNorm))). pre is norm, or the identity
// where block.preNorm is false (OLMo-2); post is the identity without block.postNorm (Gemma-2/3,
// OLMo-2 have one). Norm weights that were folded into the next linears are `null` (plain RMS
// normalisation, no γ).
//
// Exact semantics every runtime must follow (the ONNX lowering computes the same):
// - norm(x, γ) = x / sqrt(mean(x²) + normEps) · γ            (RMSNorm, fp32 accumulation)
//   program.norm 'layer': (x − μ) / sqrt(mean((x − μ)²) + normEps) · γ + β, μ = mean(x)
// - program.residual 'parallel': x' = x + ra·o(·) + rm·down(·), m = act(norm(x, mlpNorm), 'mlp')
// - mlp.gated false: down(act(σ(up(m)), 'down')), no gate linear
// - linear(x) = W x (+ bias), W [rows, cols] decoded by the format's reference decoder
// - q/k norm (block.attention.qkNorm): norm(·, γ, its own ε) of q and of k before RoPE, an RMSNorm,
//   or a LayerNorm without β where qkNorm.kind is 'layer'; over each head with one γ [headDim]
//   (span absent or 'head'), over each head with γ [heads·headDim], head h's at h·headDim
//   ('head-own'), or over all of q and all of k ('all') (block-program.ts qkNormShape)
// - post-norm (block.postNorm): rms(·, γ, its own ε) of the o_proj and down_proj outputs
// - rope (HF "rotate_half"): d = program.rope.rotaryDim, θ = block.attention.ropeTheta ?? program.rope.theta,
//   for i < d/2: f_i = θ^(−2i/d), a = pos·f_i,
//   y_i = x_i cos a − x_{i+d/2} sin a,  y_{i+d/2} = x_{i+d/2} cos a + x_i sin a; dims ≥ d unchanged
// - attention: causal, softmax(s) over keys pos − window < t ≤ pos (block.attention), s = scale · q·kᵀ,
//   or softcap·tanh(scale · q·kᵀ / softcap) where attention.softcap is set;
//   query head h reads KV head
//   floor(h / (heads / kvHeads)) (GQA); the head outputs are concatenated in head order
// - σ = mlp.activation: silu(g) = g · sigmoid(g); gelu-tanh(g) = ½g(1 + tanh(√(2/π)(g + 0.044715g³)));
//   gelu(g) = ½g(1 + erf(g/√2))
// - act-quant: src/quant/act-quant.ts is the reference (per-token, asymmetric, clipped)
// - softcap(z) = cap · tanh(z / cap) with cap = program.logitSoftcap; the identity without it
import type { ModelConfig } from '../graph/model-config.ts';
import type { DType } from '../graph/tensor.ts';
import type { BlockProgram, Feature, ModelProgram } from '../program/block-program.ts';

export const MANIFEST_VERSION = 2;

export interface TensorEntry {
  /** Byte offset in weights.bin (aligned to 64). */
  offset: number;
  bytes: number;
  dtype: DType;
  dims: number[];
}

/** Per-token asymmetric activation quantisation of one linear input site. */
export interface ActSite {
  /** 2, 4, 6, 8, or 16 (= unquantised). */
  bits: number;
  /** Clip ratio in (0, 1]: the range [min, max] is shrunk to clip·[min, max] before quantising. */
  clip: number;
  /** Online Kronecker transform x' = C·X·Bᵀ on the row-major [l, r] view of x; absent when folded or not rotated. */
  transform?: { l: number; r: number; C: string; B: string };
  /** A rotation folded into the producer's weights (no online op at run time), for the report. */
  folded?: string;
}

export interface LinearEntry {
  /** Name in the source graph (for reports). */
  name: string;
  role: LinearRole;
  /** out features (N). */
  rows: number;
  /** in features (K). */
  cols: number;
  /** A ternary format id (see src/formats/ternary.ts), or 'float16' / 'float32' for dense weights. */
  format: string;
  /** Ternary: tensor names of codes (uint8), scales (fp16 as uint16), shifts (fp16 as uint16, optional). */
  codes?: string;
  scales?: string;
  shifts?: string;
  /** Order-2 linear (src/formats/order2.ts): the second plane's format id and tensors (codes
   *  uint8, scales fp16 as uint16); the linear's W is the sum of both planes' decoded weights. */
  order2?: { format: string; codes: string; scales: string };
  /** Dense: weight tensor [rows, cols] (row-major, i.e. W in y = W x). */
  weight?: string;
  bias?: string;
  /** From the bytes written for this linear (codes + scales + shifts of every plane, or the dense weight). */
  bitsPerWeight: number;
}

export type LinearRole = 'q' | 'k' | 'v' | 'o' | 'gate' | 'up' | 'down' | 'lm_head';

export interface BlockEntry extends BlockProgram {
  attnNorm: string | null;
  mlpNorm: string | null;
  /** LayerNorm β (program.norm 'layer'); absent or null: none (folded into the next linears' biases). */
  attnNormBias?: string | null;
  mlpNormBias?: string | null;
  q: LinearEntry;
  k: LinearEntry;
  v: LinearEntry;
  o: LinearEntry;
  /** Absent when mlp.gated is false. */
  gate?: LinearEntry;
  up: LinearEntry;
  down: LinearEntry;
  acts: { attn: ActSite; o: ActSite; mlp: ActSite; down: ActSite };
}

export interface ArtifactManifest {
  kind: 'twlac-artifact';
  version: typeof MANIFEST_VERSION;
  twlac: string;
  source: { path: string; inputs: string[]; outputs: string[] };
  config: ModelConfig;
  program: ModelProgram;
  /** Every feature of the program (block-program.ts programFeatures), for readers and reports. */
  features: Feature[];
  weightsFile: string;
  tensors: Record<string, TensorEntry>;
  /** Embedding table [vocab, hidden]. */
  embed: string;
  /** Learned absolute positions [maxPositions, hidden] (float32), added after the embedding scale: x₀ = embedScale·embed[id] + positionEmbed[pos]. */
  positionEmbed?: string;
  finalNorm: string | null;
  finalNormBias?: string | null;
  lmHead: LinearEntry;
  blocks: BlockEntry[];
  /** Method summary: weights method, structure, activation spec. */
  method: Record<string, unknown>;
  /** Bits per weight over all quantised linears, from bytes written. */
  bitsPerWeight: number;
  /** Every artifact file and its size in bytes. */
  files: Record<string, number>;
  /** The ONNX lowering: how each quantised linear is stored in model.onnx, with bits per weight from the bytes of its initializers. */
  onnx?: { file: string; linears: Record<string, { op: string; bitsPerWeight: number; bytes: number }>; bitsPerWeight: number };
  /** For structures stored dense (no packed writer yet): their storage counted field by field. */
  countedBitsPerWeight?: number;
  /** Compile time per pass, seconds (artifacts before 2026-12-06; compiles now leave it out so that out/ is reproducible). */
  timings?: { pass: string; seconds: number }[];
  /** What quantisation cost each quantised linear (keyed blocks.<i>.<role>), for the report. */
  errors?: Record<string, LinearError>;
  /** Perplexity against bits on held-out text (`--eval TEXT`). */
  eval?: PplVsBits;
  /** What produced the artifact: versions and the invocation (options, calibration source, seed). */
  producer?: { twlac: string; node: string; onnxruntime: string; protobufjs: string; invocation?: Record<string, unknown> };
}

export interface LinearError {
  /** ‖W − Ŵ‖² / ‖W‖² (in the rotated basis where the linear was rotated). */
  weight: number;
  /** ‖(W − Ŵ)Xᵀ‖² / ‖W Xᵀ‖² on the calibration inputs X, through their Gram matrix; absent where no calibration ran. */
  output?: number;
  /** Rows the output error was measured on: all, or an even sample of large linears. */
  outputRows?: number;
}

/** Perplexity (EVAL.md protocol, onnxruntime) of the source, an RTN-ternary compile and this compile on the same held-out windows. */
export interface PplVsBits {
  /** The held-out text (file name). */
  text: string;
  windows: number;
  windowSize: number;
  /** Predicted positions (windows × windowSize). */
  tokens: number;
  /** Wall time of the three evaluations and the RTN compile (only with --timings). */
  seconds?: number;
  points: { model: 'source' | 'rtn-ternary' | 'compiled'; bitsPerWeight: number; ppl: number }[];
}
