// Find the decoder-only transformer in an ONNX graph from its structure alone (no tensor
// names): linears, norms, attention cores, the SwiGLU MLPs, and the residual stream that
// chains them:
//   x₀ = Embed(ids);  hᵢ = xᵢ + o(attn(norm(xᵢ)));  xᵢ₊₁ = hᵢ + down(silu(gate(m)) ⊙ up(m)), m = norm(hᵢ)
//   logits = lm_head(norm(x_L))
// and the GPT-2 / GPT-NeoX / Phi-2 variations of it: LayerNorm, ungated MLPs down(σ(up(m)))
// with σ named by what it computes (patterns/activation.ts), parallel residual blocks
// x' = x + o(attn(n₁(x))) + down(·(n₂(x))) (n₂ may be n₁ itself, as in Phi-2), and learned
// absolute positions x₀ = E[ids] + P[positions].
// Blocks may also normalise what they add (post-norms: Gemma-2/3 hᵢ = xᵢ + norm(o(attn(norm(xᵢ))))),
// or only that (OLMo-2: hᵢ = xᵢ + norm(o(attn(xᵢ))), no norm before the attention or the MLP).
// Skip norms (SkipSimplifiedLayerNormalization) compute the residual Add themselves; the
// walk along the stream accepts either form. Config numbers come from the graph (weight
// shapes, the reshape into heads, the RoPE inverse frequencies); config.json beside the
// model only fills what the graph does not state.
import type { ModelConfig } from './model-config.ts';
import type { MlpActivation, QkNormKind, QkNormSpan } from '../program/block-program.ts';
import { UserError } from '../errors.ts';
import { readConfigJson } from './config-json.ts';
import type { Model, Node, Value } from './ir.ts';
import type { DType } from './tensor.ts';
import {
  PASS_THROUGH,
  matchFusedAttention,
  matchSoftmaxAttention,
  type AttentionCore,
  type LinearIndex,
} from './patterns/attention.ts';
import { constTensor, findLinears, linearName, type Linear, type LinearRole } from './patterns/linear.ts';
import { findNorms, normStream, stripCasts, type Norm } from './patterns/norm.ts';
import { findRopeFrequencySets, fitRopeTheta, type RopeFrequencies } from './patterns/rope.ts';
import { pointwiseActivation } from './patterns/activation.ts';

export type { Linear, LinearRole, WeightLayout } from './patterns/linear.ts';
export { weightRows, biasVector, linearName, constTensor } from './patterns/linear.ts';
export type { Norm, NormKind } from './patterns/norm.ts';
export { normStream } from './patterns/norm.ts';
export type { AttentionCore } from './patterns/attention.ts';

export interface Embedding {
  node: Node;
  /** The [vocab, hidden] table. */
  table: Value;
  /** The token ids (a graph input, maybe behind a Cast). */
  ids: Value;
  output: Value;
}

export type { MlpActivation } from '../program/block-program.ts';

/** A learned absolute position table added to the token embedding (GPT-2's wpe). */
export interface PositionEmbedding {
  node: Node;
  /** The [positions, hidden] table. */
  table: Value;
  /** The position ids it is gathered by. */
  ids: Value;
}

export interface Block {
  index: number;
  /** The norms the attention and the MLP read through; both absent where they read the stream itself (OLMo-2). */
  attnNorm: Norm | undefined;
  mlpNorm: Norm | undefined;
  /** Norms of the attention and MLP outputs before the residual add (Gemma-2/3, OLMo-2). */
  postNorm?: { attn: Norm; mlp: Norm };
  q: Linear;
  k: Linear;
  v: Linear;
  o: Linear;
  /** Absent in an ungated MLP down(σ(up(m))) (GPT-2's c_fc, GPT-NeoX's dense_h_to_4h as `up`). */
  gate?: Linear;
  up: Linear;
  down: Linear;
  /** The MLP reads the block input, not h: x' = x + attn(attnNorm(x)) + mlp(mlpNorm(x)) (mlpNorm may be attnNorm). */
  parallel: boolean;
  attention: AttentionCore;
  /** Norms of q and k before RoPE (block-program.ts QkNormSpan), resolved once the head size is known. */
  qkNorm?: { q: QkSideNorm; k: QkSideNorm; span: QkNormSpan; kind: QkNormKind };
  /** The RoPE θ of this block's q and k, where the graph holds several frequency sets (Gemma-3). */
  ropeTheta?: number;
  activation: MlpActivation;
  /** The gate·up product that `down` reads (ungated: σ(up)). */
  product: Value;
  /** xᵢ: the stream entering the block (undefined only for a Skip norm whose sum output is unused). */
  residualIn: Value | undefined;
  /** hᵢ = xᵢ + attention output (parallel blocks: the block's output, there is no hᵢ). */
  residualMid: Value;
  /** xᵢ₊₁ = hᵢ + MLP output; undefined when a following Skip norm computes it without exposing it. */
  residualOut: Value | undefined;
  /** h = x + residualScale.attn · o(·), x' = h + residualScale.mlp · down(·) (Granite's residual multiplier). */
  residualScale: { attn: number; mlp: number };
  /** The value the MLP adds to the stream (down's output, after any residual scale). */
  mlpDelta: Value;
  /** Explicit residual Add nodes; absent where a Skip norm fuses the Add. */
  attnAdd?: Node;
  mlpAdd?: Node;
}

/** The norm of q or of k: one norm node, or one per head (StableLM), with γ gathered into one vector. */
export interface QkSideNorm {
  norms: Norm[];
  /** γ [headDim] or [heads·headDim] as QkNormSpan says; null where no norm has one. */
  gamma: Float32Array | null;
  eps: number;
}

export type InputSite = 'attn' | 'o' | 'mlp' | 'down' | 'head';

/** Linears that read one activation: they share calibration data and (for KOTMS) one transform. */
export interface InputGroup {
  site: InputSite;
  /** Block index, -1 for the head. */
  block: number;
  /** The shared activation (the norm output, or the value feeding the linear). */
  value: Value;
  norm?: Norm;
  linears: Linear[];
}

export type ConfigSource = 'graph' | 'config.json' | 'default';

export interface TransformerStructure {
  model: Model;
  embedding: Embedding;
  /** Learned positions added to the embedding before block 0. */
  positionEmbedding?: PositionEmbedding;
  blocks: Block[];
  finalNorm: Norm | undefined;
  lmHead: Linear;
  /** Embedding table and lm_head weight are one tensor. */
  tiedEmbeddings: boolean;
  /** Every role-bearing linear: block by block q,k,v,o,gate,up,down, then lm_head. */
  linears: Linear[];
  /** Block by block attnNorm, mlpNorm (where present), the post-norms, then the final norm. */
  norms: Norm[];
  inputGroups: InputGroup[];
  config: ModelConfig;
  /** Where each config number not read off weight shapes came from. */
  configSources: { headDim: ConfigSource; ropeTheta: ConfigSource; normEps: ConfigSource; maxPositions: ConfigSource };
  /** Where the RoPE frequencies were read (inv_freq constant or cos cache). */
  rope: { source?: Value; kind?: 'inv-freq' | 'cache'; rotaryDim?: number };
  /** x₀ = embedScale · E[ids]; logits = softcap(logitScale · lm_head(·)), softcap(z) = cap·tanh(z/cap). */
  embedScale: number;
  logitScale: number;
  logitSoftcap?: number;
  /** Norm kind shared by the blocks (for reports; mixed graphs list the first). */
  normKind: Norm['kind'];
  /** Things noticed but not fatal. */
  notes: string[];
}

export interface RecognizeOptions {
  /** Look for config.json next to the model (default true). */
  readConfigJson?: boolean;
  /** Default when neither the graph nor config.json states it. */
  defaultMaxPositions?: number;
}

const DEFAULT_MAX_POSITIONS = 2048;

/** Follow data movement back from a value (Reshape/Cast/... input 0). */
function sourceOf(v: Value): Value {
  for (;;) {
    const p = v.producer();
    if (!p || !PASS_THROUGH.has(p.opType) || p.opType === 'Transpose' || !p.input(0) || p.domain !== '') return v;
    v = p.input(0)!;
  }
}

function scalarConst(v: Value | undefined): number | undefined {
  const t = constTensor(v);
  return t && t.numel === 1 ? t.toFloat32()[0] : undefined;
}

/**
 * Follow a value back through data movement and multiplications / divisions by constant
 * scalars: the value they scale, and the factor (y = scale · value).
 */
export function scaledSource(v: Value): { value: Value; scale: number } {
  let scale = 1;
  for (;;) {
    v = sourceOf(v);
    const p = v.producer();
    if (!p || p.domain !== '' || !p.input(0) || !p.input(1)) return { value: v, scale };
    const [c0, c1] = [scalarConst(p.input(0)), scalarConst(p.input(1))];
    if (p.opType === 'Mul' && (c0 === undefined) !== (c1 === undefined)) {
      scale *= c1 ?? c0!;
      v = c1 !== undefined ? p.input(0)! : p.input(1)!;
    } else if (p.opType === 'Div' && c1 !== undefined && c0 === undefined) {
      scale /= c1;
      v = p.input(0)!;
    } else {
      return { value: v, scale };
    }
  }
}

/**
 * The logits' source: the lm_head output, its scale, and Gemma-2's final soft-capping
 * cap·tanh(z/cap) where the graph has it (the factor after the Tanh is the cap; the ones before
 * it scale z by 1/cap).
 */
function logitsSource(out: Value): { value: Value; scale: number; softcap?: number } {
  const outer = scaledSource(out);
  const tanh = outer.value.producer();
  if (!tanh || tanh.opType !== 'Tanh' || tanh.domain !== '' || !tanh.input(0)) return outer;
  const inner = scaledSource(tanh.input(0)!);
  return { value: inner.value, scale: inner.scale * outer.scale, softcap: outer.scale };
}

/** Follow a value forward through one consumer at a time that multiplies or divides it by a constant scalar. */
function scaledForward(v: Value): { value: Value; scale: number } {
  let scale = 1;
  for (;;) {
    const c = v.consumers();
    if (c.length !== 1 || c[0].domain !== '' || !c[0].input(1)) return { value: v, scale };
    const n = c[0];
    const other = scalarConst(n.input(0) === v ? n.input(1) : n.input(0));
    if (n.opType === 'Mul' && other !== undefined) scale *= other;
    else if (n.opType === 'Div' && n.input(0) === v && other !== undefined) scale /= other;
    else return { value: v, scale };
    v = forwardOf(n.output(0));
  }
}

/** Follow data movement forward while a value has exactly one consumer. */
function forwardOf(v: Value): Value {
  for (;;) {
    const c = v.consumers();
    if (c.length !== 1 || !PASS_THROUGH.has(c[0].opType) || c[0].opType === 'Transpose' || c[0].input(0) !== v) return v;
    v = c[0].output(0);
  }
}

/** Each node's position in a topological order (Kahn's algorithm; the node list may be in any order). */
function topologicalRank(nodes: readonly Node[]): Map<Node, number> {
  const inGraph = new Set(nodes);
  const waiting = new Map<Node, number>();
  for (const n of nodes) waiting.set(n, new Set(n.inputs.map((v) => v?.producer()).filter((p) => p && inGraph.has(p))).size);
  const rank = new Map<Node, number>();
  const ready = nodes.filter((n) => waiting.get(n) === 0);
  while (ready.length) {
    const n = ready.pop()!;
    rank.set(n, rank.size);
    for (const c of new Set(n.outputs.flatMap((o) => o.consumers()))) {
      if (!inGraph.has(c)) continue;
      const left = waiting.get(c)! - new Set(c.inputs.filter((v) => v?.producer() === n)).size;
      waiting.set(c, left);
      if (left === 0) ready.push(c);
    }
  }
  return rank;
}

const sameValue = (a: Value | undefined, b: Value | undefined): boolean =>
  !!a && !!b && (a === b || stripCasts(a) === stripCasts(b) || sourceOf(a) === sourceOf(b));

function num(o: Record<string, unknown> | undefined, ...keys: string[]): number | undefined {
  for (const k of keys) {
    let cur: unknown = o;
    for (const part of k.split('.')) cur = cur && typeof cur === 'object' ? (cur as Record<string, unknown>)[part] : undefined;
    if (typeof cur === 'number' && Number.isFinite(cur)) return cur;
  }
  return undefined;
}

/** SiLU/GELU applied to `v`: returns the activation's output. */
function activationOf(v: Value): { kind: MlpActivation; out: Value } | undefined {
  for (const c of v.consumers()) {
    if (c.opType === 'Sigmoid' && c.domain === '') {
      const mul = c.output(0).consumers().find((m) => m.opType === 'Mul' && m.inputs.includes(v));
      if (mul) return { kind: 'silu', out: mul.output(0) };
    }
    if (c.opType === 'Swish' && (c.attr('alpha', 'float') ?? 1) === 1) return { kind: 'silu', out: c.output(0) };
    if (c.opType === 'QuickGelu' && c.domain === 'com.microsoft' && c.attr('alpha', 'float') === 1) return { kind: 'silu', out: c.output(0) };
    if (c.opType === 'FastGelu' && c.input(0) === v) return { kind: 'gelu-tanh', out: c.output(0) };
    if (c.opType === 'Gelu' && c.input(0) === v) return { kind: c.attr('approximate', 'string') === 'tanh' ? 'gelu-tanh' : 'gelu', out: c.output(0) };
  }
  return undefined;
}

/** Elementwise ops a decomposed activation may use, evaluated on one number. */
const SCALAR_OPS: Record<string, (a: number, b: number) => number> = {
  Mul: (a, b) => a * b,
  Add: (a, b) => a + b,
  Sub: (a, b) => a - b,
  Div: (a, b) => a / b,
  Pow: (a, b) => a ** b,
  Tanh: (a) => Math.tanh(a),
  Cast: (a) => a,
};

/**
 * `out` as a function of `g` alone: an evaluator over the ops between them (elementwise ops of
 * SCALAR_OPS and scalar constants only), or undefined when `out` depends on anything else.
 */
function scalarFunction(out: Value, g: Value): ((x: number) => number) | undefined {
  const nodes = new Map<Value, (x: number) => number>();
  const build = (w: Value, depth: number): ((x: number) => number) | undefined => {
    if (w === g) return (x) => x;
    const c = scalarConst(w);
    if (c !== undefined) return () => c;
    const known = nodes.get(w);
    if (known) return known;
    const p = w.producer();
    const op = p && p.domain === '' ? SCALAR_OPS[p.opType] : undefined;
    if (!p || !op || depth > 16 || p.inputs.length > 2 || p.inputs.some((i) => !i)) return undefined;
    const args = p.inputs.map((i) => build(i!, depth + 1));
    if (args.some((a) => !a)) return undefined;
    const [a, b] = args as ((x: number) => number)[];
    const f = (x: number) => op(a(x), b ? b(x) : 0);
    nodes.set(w, f);
    return f;
  };
  return build(out, 0);
}

const geluTanh = (x: number) => 0.5 * x * (1 + Math.tanh(Math.sqrt(2 / Math.PI) * (x + 0.044715 * x ** 3)));

/**
 * GELU(tanh) as the exporters decompose it, 0.5·g·(1 + tanh(√(2/π)·(g + 0.044715·g³))) with its
 * factors in any order: the value that multiplies up's output, when it is a function of `g`
 * alone that agrees with GELU(tanh) at sample points (to float32 rounding of its constants).
 */
function decomposedGeluTanh(g: Value, up: Value): { kind: MlpActivation; out: Value } | undefined {
  for (const prod of up.consumers()) {
    if (prod.opType !== 'Mul' || prod.domain !== '' || prod.inputs.length !== 2) continue;
    const out = prod.inputs.find((x) => x !== up);
    if (!out || out === g) continue;
    const f = scalarFunction(out, g);
    if (f && [-4, -1.5, -0.3, 0.2, 1, 3].every((x) => Math.abs(f(x) - geluTanh(x)) < 1e-5 * (1 + Math.abs(x)))) return { kind: 'gelu-tanh', out };
  }
  return undefined;
}

function findEmbedding(model: Model, x0Hint: Value | undefined): Embedding | undefined {
  const cands: Embedding[] = [];
  for (const n of model.graph.nodes) {
    if (n.opType !== 'Gather' || n.domain !== '' || (n.attr('axis', 'int') ?? 0) !== 0) continue;
    const t = constTensor(n.input(0));
    const ids = n.input(1);
    if (!t || t.dims.length !== 2 || !ids || constTensor(ids)) continue;
    cands.push({ node: n, table: n.input(0)!, ids: stripCasts(ids), output: n.output(0) });
  }
  if (x0Hint) {
    const hit = cands.find((e) => sameValue(e.output, x0Hint) || sameValue(forwardOf(e.output), x0Hint));
    if (hit) return hit;
  }
  return cands.find((e) => model.graph.inputs.includes(e.ids)) ?? cands[0];
}

/**
 * The head size as the graph states it: the last entry of the first Reshape after the
 * linear that splits its features (a Reshape that only restores [batch, seq, out] after a
 * 2-D Gemm is passed through).
 */
function reshapeTail(l: Linear): number | undefined {
  let frontier = [l.output];
  for (let depth = 0; depth < 4 && frontier.length; depth++) {
    const next: Value[] = [];
    for (const w of frontier) {
      for (const c of w.consumers()) {
        if (c.opType === 'Cast') next.push(c.output(0));
        if (c.opType !== 'Reshape' || c.input(0) !== w) continue;
        const s = c.input(1);
        const t = constTensor(s);
        const cat = s?.producer();
        const tail = t ? t.toNumbers().at(-1) : cat?.opType === 'Concat' ? constTensor(cat.inputs.at(-1))?.toNumbers().at(-1) : undefined;
        if (tail !== undefined && tail > 0 && tail < l.outFeatures && l.outFeatures % tail === 0) return tail;
        next.push(c.output(0));
      }
    }
    frontier = next;
  }
  return undefined;
}

/** The group's value is the linears' common input when they share one Value, else what they reshape. */
function group(site: InputSite, block: number, linears: Linear[], norm?: Norm): InputGroup {
  const same = linears.every((l) => l.input === linears[0].input);
  return { site, block, value: same ? linears[0].input : sourceOf(linears[0].input), norm, linears };
}

function blockError(i: number, msg: string): UserError {
  return new UserError(`block ${i}: ${msg}`);
}

export function recognize(model: Model, opts: RecognizeOptions = {}): TransformerStructure {
  const g = model.graph;
  const notes: string[] = [];
  const linearsAll = findLinears(g.nodes);
  const normsAll = findNorms(g.nodes);
  const idx: LinearIndex = { byOutput: new Map(), byNode: new Map(), normOutputs: new Set() };
  for (const l of linearsAll) {
    idx.byNode.set(l.node, l);
    idx.byOutput.set(l.node.output(0), l);
    idx.byOutput.set(l.output, l);
  }
  const normByOutput = new Map<Value, Norm>();
  for (const n of normsAll) {
    normByOutput.set(n.output, n);
    idx.normOutputs.add(n.output);
  }
  // Linears grouped by the activation they read (after reshapes/casts).
  const bySource = new Map<Value, Linear[]>();
  for (const l of linearsAll) {
    const s = sourceOf(l.input);
    bySource.set(s, [...(bySource.get(s) ?? []), l]);
  }
  const feeding = normsAll.filter((n) => bySource.has(n.output));
  if (feeding.length === 0) {
    throw new UserError(
      `no transformer blocks recognised: found ${feeding.length} RMSNorm/LayerNorm nodes feeding linears (${normsAll.length} norms, ${linearsAll.length} linears in the graph)`,
    );
  }

  // Attention cores, in graph order.
  const cores: AttentionCore[] = [];
  const coreFailures: string[] = [];
  for (const n of g.nodes) {
    const r = n.opType === 'Softmax' ? matchSoftmaxAttention(n, idx) : matchFusedAttention(n, idx);
    if (!r) continue;
    if (r.ok) cores.push(r.core);
    else coreFailures.push(`${r.anchor.opType} ${r.anchor.name}: ${r.reason}`);
  }
  if (cores.length === 0) {
    throw new UserError(
      `no transformer blocks recognised: no attention found (${coreFailures.length ? coreFailures[0] : 'no Softmax or fused attention op'})`,
    );
  }
  for (const f of coreFailures) notes.push(`not an attention: ${f}`);
  const qOf = new Map<Linear, AttentionCore>(cores.map((c) => [c.q, c]));

  // Blocks in stream order: by the topological rank of each core's q projection.
  const pos = topologicalRank(g.nodes);
  cores.sort((a, b) => pos.get(a.q.node)! - pos.get(b.q.node)!);
  const blocks: Block[] = [];
  for (const [i, core] of cores.entries()) blocks.push(recognizeBlock(i, core, bySource, normByOutput, normsAll, qOf));

  // Chain check: each block reads the stream the previous one wrote.
  for (let i = 1; i < blocks.length; i++) {
    const prev = blocks[i - 1];
    const n = blocks[i].attnNorm;
    const ok = n?.skip
      ? sameValue(n.input, prev.mlpDelta) || sameValue(n.skip, prev.mlpDelta)
      : sameValue(n ? n.input : blocks[i].residualIn, prev.residualOut);
    if (!ok) {
      const why = coreFailures.length ? ` (an attention was not recognised: ${coreFailures[0]})` : '';
      throw blockError(i, `its attention norm does not read the residual stream written by block ${i - 1}${why}`);
    }
  }

  // lm_head: the linear producing the logits output.
  const outs = g.outputs;
  const logitsOut = outs.find((o) => o.name === 'logits') ?? outs[0];
  if (!logitsOut) throw new UserError('could not find the lm_head: the graph has no outputs');
  const logits = logitsSource(logitsOut);
  const lmHead = idx.byOutput.get(logits.value);
  if (!lmHead) throw new UserError(`could not find the lm_head: graph output "${logitsOut.name}" is not produced by a linear`);
  const last = blocks[blocks.length - 1];
  const finalNorm = normByOutput.get(sourceOf(lmHead.input));
  // Every runtime normalises before the lm_head; a graph without that norm would run differently.
  if (!finalNorm) throw new UserError(`no final norm before the lm_head (it reads ${sourceOf(lmHead.input).producer()?.qualifiedOp ?? 'a graph input'}): not supported`);
  {
    const ok = finalNorm.skip
      ? sameValue(finalNorm.input, last.mlpDelta) || sameValue(finalNorm.skip, last.mlpDelta)
      : sameValue(finalNorm.input, last.residualOut);
    if (!ok) throw new UserError(`the final norm does not read the residual stream written by block ${last.index}`);
    finalNorm.role = 'final';
    finalNorm.block = -1;
  }
  lmHead.role = 'lm_head';
  lmHead.block = -1;

  // x₀ = embedScale · E[ids] (Gemma's √hidden, Granite's embedding multiplier) (+ P[positions], GPT-2)
  const stream0 = blocks[0].residualIn ?? blocks[0].attnNorm!.input;
  const positions = positionEmbeddingOf(stream0);
  const x0 = scaledSource(positions ? positions.token : stream0);
  const embedding = findEmbedding(model, x0.value);
  if (!embedding) throw new UserError('could not find the token embedding: no Gather from a constant [vocab, hidden] table');
  if (!sameValue(embedding.output, x0.value) && !sameValue(forwardOf(embedding.output), x0.value)) {
    throw new UserError(`the embedding output reaches block 0 through ${x0.value.producer()?.qualifiedOp ?? 'a graph input'}, which is not understood`);
  }
  if (x0.scale !== 1) notes.push(`the embedding is scaled by ${x0.scale} before block 0`);
  if (logits.scale !== 1) notes.push(`the logits are scaled by ${logits.scale}`);
  if (logits.softcap !== undefined) notes.push(`the logits are soft-capped at ${logits.softcap}`);
  const tiedEmbeddings = stripCasts(lmHead.weight) === stripCasts(embedding.table);

  // Config.
  const cfgJson = opts.readConfigJson === false ? undefined : readConfigJson(model.baseDir);
  const [vocab, hidden] = constTensor(embedding.table)!.dims;
  const b0 = blocks[0];
  if (b0.q.inFeatures !== hidden) throw blockError(0, `q reads ${b0.q.inFeatures} features but the embedding is ${hidden} wide`);
  if (lmHead.outFeatures !== vocab) notes.push(`lm_head has ${lmHead.outFeatures} outputs, embedding table has ${vocab} rows`);
  const ropeSets = findRopeFrequencySets(model, embedding.node);
  const ropeOf = ropeSets.length > 1 ? ropeSetOfBlocks(blocks, ropeSets) : undefined;
  // The model-wide set: config.json's rope_theta where one set is that θ (Gemma-3's global layers),
  // else the one most blocks use; the others' θ is stated per block.
  const cfgTheta = num(cfgJson, 'rope_theta', 'rope_parameters.rope_theta');
  const rope = ropeOf
    ? (ropeSets.find((f) => cfgTheta !== undefined && fitRopeTheta(f, cfgTheta).theta === cfgTheta) ?? ropeSets.reduce((a, f) => (count(ropeOf, f) > count(ropeOf, a) ? f : a)))
    : ropeSets[0];
  const configSources: TransformerStructure['configSources'] = {
    headDim: 'graph',
    ropeTheta: 'graph',
    normEps: 'graph',
    maxPositions: 'config.json',
  };
  let headDim: number | undefined;
  if (b0.attention.numHeads) headDim = b0.q.outFeatures / b0.attention.numHeads;
  // v is read before any q/k norm or RoPE, so its Reshape to heads is the first op after it
  headDim ??= reshapeTail(b0.q) ?? reshapeTail(b0.v);
  if (headDim === undefined) {
    // config.json before the RoPE table: the table spans only the rotated dims (partial rotary)
    const heads = num(cfgJson, 'num_attention_heads');
    const fromConfig = num(cfgJson, 'head_dim') ?? (heads ? hidden / heads : undefined);
    if (fromConfig !== undefined) {
      configSources.headDim = 'config.json';
      headDim = fromConfig;
    } else if (rope) {
      headDim = 2 * rope.inv.length;
      notes.push(`head size ${headDim} read from the RoPE frequencies (no head reshape in the graph, no config.json): it assumes RoPE spans the whole head`);
    }
  }
  if (!headDim || b0.q.outFeatures % headDim !== 0 || b0.k.outFeatures % headDim !== 0) {
    throw new UserError(`could not determine the attention head size (q has ${b0.q.outFeatures} outputs, k ${b0.k.outFeatures})`);
  }
  const heads = b0.q.outFeatures / headDim;
  const kvHeads = b0.k.outFeatures / headDim;
  if (heads % kvHeads !== 0) throw new UserError(`${heads} query heads are not a multiple of ${kvHeads} key/value heads`);
  let theta: number;
  let rotaryDim: number | undefined;
  if (rope) {
    const fit = fitRopeTheta(rope, cfgTheta);
    if (!fit.consistent) {
      throw new UserError(`the RoPE frequencies (${rope.source.name}) are not θ^(-2i/d): scaled RoPE is not supported`);
    }
    theta = fit.theta;
    rotaryDim = 2 * rope.inv.length;
    for (const [b, f] of ropeOf ?? []) {
      if (f === rope) continue;
      const own = fitRopeTheta(f, undefined);
      if (!own.consistent) throw blockError(b.index, `the RoPE frequencies (${f.source.name}) are not θ^(-2i/d): scaled RoPE is not supported`);
      if (f.inv.length !== rope.inv.length) throw blockError(b.index, `RoPE over ${2 * f.inv.length} dims where other blocks rotate ${2 * rope.inv.length}: not supported`);
      b.ropeTheta = own.theta;
    }
    const thetas = [...new Set(blocks.map((b) => b.ropeTheta))].filter((t) => t !== undefined);
    if (thetas.length) notes.push(`RoPE θ ${theta}, and ${thetas.join(', ')} in ${blocks.filter((b) => b.ropeTheta !== undefined).length} blocks`);
    if (rotaryDim !== headDim) notes.push(`partial rotary embedding: ${rotaryDim} of ${headDim} dims`);
  } else if (positions) {
    // Learned positions and no rotary frequencies: no RoPE (rotaryDim 0); θ is unused.
    theta = 10000;
    rotaryDim = 0;
    configSources.ropeTheta = 'default';
    notes.push('learned absolute position embeddings, no RoPE');
  } else if (cfgTheta !== undefined) {
    theta = cfgTheta;
    configSources.ropeTheta = 'config.json';
  } else {
    theta = 10000;
    configSources.ropeTheta = 'default';
    notes.push('no RoPE frequencies found in the graph; θ = 10000 assumed');
  }
  let maxPositions = positions ? constTensor(positions.table)!.dims[0] : num(cfgJson, 'max_position_embeddings', 'n_positions');
  if (positions) configSources.maxPositions = 'graph';
  if (maxPositions === undefined && rope?.positions) {
    maxPositions = rope.positions;
    configSources.maxPositions = 'graph';
  }
  if (maxPositions === undefined) {
    maxPositions = opts.defaultMaxPositions ?? DEFAULT_MAX_POSITIONS;
    configSources.maxPositions = 'default';
  }
  const config: ModelConfig = {
    arch: 'llama',
    vocab,
    hidden,
    layers: blocks.length,
    heads,
    kvHeads,
    headDim,
    intermediate: b0.up.outFeatures,
    ropeTheta: theta,
    normEps: (b0.attnNorm ?? b0.postNorm?.attn ?? finalNorm).eps,
    maxPositions,
  };
  for (const b of blocks) {
    const shapes: [string, number, number][] = [
      ['q', b.q.outFeatures, heads * headDim],
      ['k', b.k.outFeatures, kvHeads * headDim],
      ['v', b.v.outFeatures, kvHeads * headDim],
      ['o', b.o.inFeatures, heads * headDim],
      ...(b.gate ? [['gate', b.gate.outFeatures, config.intermediate] as [string, number, number]] : []),
      ['up', b.up.outFeatures, config.intermediate],
      ['down', b.down.inFeatures, config.intermediate],
    ];
    for (const [role, got, want] of shapes) if (got !== want) throw blockError(b.index, `${role} has ${got} features where block 0 has ${want}`);
  }
  const normKind = (b0.attnNorm ?? b0.postNorm?.attn ?? finalNorm).kind;
  // The program has one ε for the block and final norms (q/k norms and post-norms carry their own).
  const odd = [...blocks.flatMap((b) => [b.attnNorm, b.mlpNorm]), finalNorm].find((n) => n && Math.abs(n.eps - config.normEps) > 1e-6 * config.normEps);
  if (odd) throw new UserError(`the ${odd.role ?? ''} norm of block ${odd.block} has ε = ${odd.eps} where block 0's first norm has ${config.normEps}: norms with different ε are not supported yet`);
  // One norm kind, one residual layout and one MLP gating for the whole model (the program states them once).
  const blockNorms = [...blocks.flatMap((b) => [b.attnNorm, b.mlpNorm, b.postNorm?.attn, b.postNorm?.mlp]), finalNorm].filter((n): n is Norm => n !== undefined);
  const rms = blockNorms[0].rms;
  if (blockNorms.some((n) => n.rms !== rms)) throw new UserError('the model mixes RMSNorm and LayerNorm: not supported');
  // Post-norms are RMSNorms in the program (γ and ε, no β) and are not composed with a parallel residual.
  if (!rms && blocks.some((b) => b.postNorm)) throw new UserError('LayerNorm after the attention and the MLP (post-norms): not supported');
  if (blocks.some((b) => b.parallel && b.postNorm)) throw new UserError('a parallel residual block with norms after the attention and the MLP (post-norms): not supported');
  if (blocks.some((b) => b.parallel !== b0.parallel)) throw new UserError('the model mixes parallel and sequential residual blocks: not supported');
  if (blocks.some((b) => !b.gate !== !b0.gate)) throw new UserError('the model mixes gated and ungated MLPs: not supported');
  if (!rms) notes.push('LayerNorm blocks (mean-subtracting, with β): not a LLaMA RMSNorm');
  if (blocks.some((b) => b.postNorm)) notes.push(blocks.some((b) => !b.attnNorm) ? 'norms after the attention and the MLP only (OLMo-2 style)' : 'norms before and after the attention and the MLP (Gemma-2/3 style)');
  if (!b0.gate) notes.push(`ungated ${b0.activation} MLP down(σ(up(m))): not a LLaMA SwiGLU`);
  else if (blocks.some((b) => b.activation !== 'silu')) notes.push('GELU-gated MLP: not a LLaMA SwiGLU');
  if (b0.parallel) notes.push(`parallel residual: attention and MLP read the block input${b0.mlpNorm === b0.attnNorm ? ' through one shared norm' : ''}`);
  for (const b of blocks) resolveAttention(b, normByOutput, headDim);
  const qk = blocks.find((b) => b.qkNorm)?.qkNorm;
  if (qk) notes.push(`q/k are normalised ${{ head: 'per head', 'head-own': 'per head, each head with its own γ', all: 'over the whole projection' }[qk.span]}${qk.kind === 'layer' ? ' by LayerNorms' : ''} (QK-norm): not a LLaMA attention`);
  const windows = [...new Set(blocks.map((b) => b.attention.window).filter((w) => w !== undefined))];
  if (windows.length) notes.push(`sliding-window attention: ${windows.join(', ')} keys`);

  const linears: Linear[] = [];
  const norms: Norm[] = [];
  const inputGroups: InputGroup[] = [];
  for (const b of blocks) {
    const gateUp = b.gate ? [b.gate, b.up] : [b.up];
    linears.push(b.q, b.k, b.v, b.o, ...gateUp, b.down);
    for (const n of [b.attnNorm, b.mlpNorm === b.attnNorm ? undefined : b.mlpNorm, b.postNorm?.attn, b.postNorm?.mlp]) if (n) norms.push(n);
    inputGroups.push(
      group('attn', b.index, [b.q, b.k, b.v], b.attnNorm),
      group('o', b.index, [b.o]),
      group('mlp', b.index, gateUp, b.mlpNorm),
      group('down', b.index, [b.down]),
    );
  }
  linears.push(lmHead);
  if (finalNorm) norms.push(finalNorm);
  inputGroups.push(group('head', -1, [lmHead], finalNorm));
  const unused = linearsAll.filter((l) => l.role === undefined);
  if (unused.length) notes.push(`${unused.length} linear(s) outside the recognised roles: ${unused.map(linearName).join(', ')}`);

  return {
    model,
    embedding,
    ...(positions ? { positionEmbedding: { node: positions.node, table: positions.table, ids: positions.ids } } : {}),
    blocks,
    finalNorm,
    lmHead,
    tiedEmbeddings,
    linears,
    norms,
    inputGroups,
    config,
    configSources,
    rope: { source: rope?.source, kind: rope?.kind, rotaryDim },
    embedScale: x0.scale,
    logitScale: logits.scale,
    ...(logits.softcap !== undefined ? { logitSoftcap: logits.softcap } : {}),
    normKind,
    notes,
  };
}

/**
 * x₀ = token + P[positions] (GPT-2's wte(ids) + wpe(position_ids)): the Gather from a constant
 * [positions, hidden] table by ids computed from a Range or read from a position_ids input.
 */
function positionEmbeddingOf(x0: Value): (PositionEmbedding & { token: Value }) | undefined {
  const add = sourceOf(x0).producer();
  if (!add || add.opType !== 'Add' || add.domain !== '' || !add.input(0) || !add.input(1)) return undefined;
  for (const [token, pos] of [[add.input(0)!, add.input(1)!], [add.input(1)!, add.input(0)!]]) {
    const g = sourceOf(pos).producer();
    if (!g || g.opType !== 'Gather' || g.domain !== '' || (g.attr('axis', 'int') ?? 0) !== 0) continue;
    const t = constTensor(g.input(0));
    const ids = g.input(1);
    if (!t || t.dims.length !== 2 || !ids || constTensor(ids) || !isPositionIds(ids)) continue;
    return { node: g, table: g.input(0)!, ids, token };
  }
  return undefined;
}

/** Ids computed from a Range (arange of positions), or a graph input named for positions. */
function isPositionIds(ids: Value): boolean {
  const seen = new Set<Value>();
  const queue = [ids];
  while (queue.length && seen.size < 40) {
    const w = queue.shift()!;
    if (seen.has(w)) continue;
    seen.add(w);
    const p = w.producer();
    if (!p) {
      if (/position|cache_pos/i.test(w.name)) return true;
      continue;
    }
    if (p.opType === 'Range') return true;
    for (const i of p.inputs) if (i && !constTensor(i)) queue.push(i);
  }
  return false;
}

/**
 * The q/k norms and the default attention scale. A side's norm is one node, per head with γ
 * [headDim] (Qwen3) or over the projection before the split into heads with γ [out] (OLMo-2);
 * or one node per head (StableLM's LayerNorm per head): the heads cut one by one off the
 * head axis by a Split, each normalised with its own γ, and concatenated back in order on
 * the same axis: γ [heads·headDim], head h's at h·headDim.
 */
function resolveAttention(b: Block, normByOutput: Map<Value, Norm>, headDim: number): void {
  const core = b.attention;
  core.scale ??= 1 / Math.sqrt(headDim);
  if (!core.qkNorm) return;
  const gammaOf = (n: Norm, which: string): Float32Array | null => {
    if (!n.gamma) return null;
    const g = constTensor(n.gamma);
    if (!g) throw blockError(b.index, `the ${which} norm's γ is not a constant`);
    return g.toFloat32();
  };
  const side = (outs: Value[], which: string, l: Linear): { side: QkSideNorm; span: QkNormSpan; kind: QkNormKind } => {
    const ns = outs.map((o) => normByOutput.get(o)!);
    if (!ns.length) throw blockError(b.index, `only one of the query and the key is normalised before the scores (the ${which} is not): not supported`);
    const kinds = new Set(ns.map((n) => (n.rms ? 'rms' : 'layer') as QkNormKind));
    if (kinds.size !== 1) throw blockError(b.index, `the ${which} norms mix RMSNorm and LayerNorm`);
    const kind = [...kinds][0];
    // a zero β (a LayerNormalization's constant bias input) is no β
    const hasBeta = (n: Norm) => !!n.beta && !(constTensor(n.beta)?.toFloat32().every((x) => x === 0) ?? false);
    if (ns.some(hasBeta)) throw blockError(b.index, `the ${which} LayerNorm has a β (q/k LayerNorms without β are supported)`);
    const eps = ns[0].eps;
    if (ns.some((n) => Math.abs(n.eps - eps) > 1e-6 * eps)) throw blockError(b.index, `the ${which} norms of the heads have different ε`);
    if (ns.length > 1) {
      const ordered = perHeadNorms(ns, l.outFeatures / headDim);
      if (typeof ordered === 'string') throw blockError(b.index, `the ${which} crosses ${ns.length} norms on its way to the scores, ${ordered}`);
      const gammas = ordered.map((n) => gammaOf(n, which));
      if (gammas.some((g) => g && g.length !== headDim)) throw blockError(b.index, `the ${which} norms of the heads are not ${headDim} wide`);
      const gamma = gammas.every((g) => !g) ? null : new Float32Array(l.outFeatures);
      gammas.forEach((g, h) => gamma?.set(g ?? new Float32Array(headDim).fill(1), h * headDim));
      return { side: { norms: ordered, gamma, eps }, span: 'head-own', kind };
    }
    const n = ns[0];
    const gamma = gammaOf(n, which);
    // per head (γ [headDim]) or over the projection before the split into heads (γ [out])
    const width = gamma ? gamma.length : stripCasts(n.input) === l.output ? l.outFeatures : headDim;
    let span: QkNormSpan;
    if (width === headDim) span = 'head';
    else if (width === l.outFeatures && stripCasts(n.input) === l.output) span = 'all';
    else throw blockError(b.index, `the ${l.role} norm spans ${width} features: neither one head of ${headDim} nor the whole ${l.outFeatures}-wide projection`);
    return { side: { norms: [n], gamma, eps }, span, kind };
  };
  const q = side(core.qNorms, 'query', b.q);
  const k = side(core.kNorms, 'key', b.k);
  // One head (multi-query keys, OLMo-2 with one kv head): a norm over the whole projection reads
  // as one per head, and is the same maths; it takes the other side's span.
  for (const [a, o, l] of [[q, k, b.q], [k, q, b.k]] as const) if (a.span === 'head' && o.span === 'all' && l.outFeatures === headDim) a.span = 'all';
  if (q.span !== k.span) throw blockError(b.index, `the query norm spans '${q.span}' and the key norm '${k.span}' (block-program.ts QkNormSpan): not supported`);
  if (q.kind !== k.kind) throw blockError(b.index, 'the query and key norms are of different kinds (RMSNorm and LayerNorm): not supported');
  b.qkNorm = { q: q.side, k: k.side, span: q.span, kind: q.kind };
}

/**
 * Norms that normalise one head each, in head order: each reads output h of one Split (sizes
 * all 1) of the head axis, directly or through Casts, and one Concat on the same axis joins
 * their outputs in the same order; or why not.
 */
function perHeadNorms(ns: Norm[], heads: number): Norm[] | string {
  const split = stripCasts(ns[0].input).producer();
  if (!split || split.opType !== 'Split' || split.domain !== '') return 'not one per head cut off by a Split';
  if (split.outputs.length !== heads || ns.length !== heads) return `not one for each of the ${heads} heads`;
  const sizes = constTensor(split.input(1))?.toNumbers() ?? split.attr('split', 'ints');
  if (sizes && sizes.some((x) => x !== 1)) return 'cut by a Split into parts of more than one head';
  const byPart = split.outputs.map((o) => ns.find((n) => stripCasts(n.input) === o));
  if (byPart.some((n) => !n)) return 'not each on its own part of one Split';
  const concat = byPart[0]!.output.consumers().find((c) => c.opType === 'Concat' && c.domain === '');
  const axis = split.attr('axis', 'int') ?? 0;
  if (!concat || concat.attr('axis', 'int') !== axis || concat.inputs.length !== heads || concat.inputs.some((v, h) => v !== byPart[h]!.output)) {
    return 'not concatenated back in head order on the axis the Split cut';
  }
  return byPart as Norm[];
}

const count = (m: Map<Block, RopeFrequencies>, f: RopeFrequencies): number => [...m.values()].filter((g) => g === f).length;

/**
 * The frequency set each block's query is rotated with, where the graph holds several (Gemma-3's
 * local and global layers): the set whose constant the search back from the scores' query side
 * reaches without crossing a linear. A block that reaches none, or several, is refused.
 */
function ropeSetOfBlocks(blocks: Block[], sets: RopeFrequencies[]): Map<Block, RopeFrequencies> {
  const out = new Map<Block, RopeFrequencies>();
  const stops = new Set(blocks.flatMap((b) => [b.q, b.k, b.v, b.o].map((l) => l.output)));
  for (const b of blocks) {
    const start = b.attention.scores?.input(0);
    if (!start) throw blockError(b.index, `the graph holds ${sets.length} RoPE frequency sets and this block's attention is a fused op: per-layer RoPE θ is read from decomposed attention only`);
    const reached = new Set<Value>();
    const seen = new Set<Value>();
    const queue = [start];
    while (queue.length && seen.size < 600) {
      const w = queue.shift()!;
      if (seen.has(w) || stops.has(w)) continue;
      seen.add(w);
      if (constTensor(w)) {
        reached.add(w);
        continue;
      }
      for (const i of w.producer()?.inputs ?? []) if (i) queue.push(i);
    }
    const hit = sets.filter((f) => f.sources.some((v) => reached.has(v)));
    if (hit.length !== 1) throw blockError(b.index, `the graph holds ${sets.length} RoPE frequency sets and the query reaches ${hit.length} of them`);
    out.set(b, hit[0]);
  }
  return out;
}

/** A linear whose output reaches a TopK within a few ops: an MoE router (Mixtral, Qwen-MoE). */
function routesExperts(l: Linear): boolean {
  let frontier = [l.output];
  for (let depth = 0; depth < 4 && frontier.length; depth++) {
    const next: Value[] = [];
    for (const v of frontier) {
      for (const c of v.consumers()) {
        if (c.opType === 'TopK') return true;
        next.push(...c.outputs);
      }
    }
    frontier = next;
  }
  return false;
}

/** A norm that reads a block output (o_proj's or down_proj's) and feeds no linear: a post-norm (Gemma-2/3, OLMo-2). */
function postNormOf(out: Value, norms: Norm[], bySource: Map<Value, Linear[]>): Norm | undefined {
  return norms.find((n) => !n.skip && sameValue(n.input, out) && !bySource.has(n.output));
}

function recognizeBlock(
  i: number,
  core: AttentionCore,
  bySource: Map<Value, Linear[]>,
  normByOutput: Map<Value, Norm>,
  norms: Norm[],
  qOf: Map<Linear, AttentionCore>,
): Block {
  const { q, k, v, o } = core;
  if (q === k || k === v || q === v) throw blockError(i, `q, k and v come from one packed linear (${linearName(q === k ? q : v)}); separate projections are required`);
  const qkvIn = sourceOf(q.input);
  if (sourceOf(k.input) !== qkvIn || sourceOf(v.input) !== qkvIn) throw blockError(i, 'q, k and v do not read the same input');
  // Without a norm (OLMo-2) q/k/v read the stream itself: the residual Add below and the chain
  // check in recognize() (or the embedding, for block 0) confirm that it is the stream.
  const attnNorm = normByOutput.get(qkvIn);
  const residualIn = attnNorm ? normStream(attnNorm) : qkvIn;
  const attnPost = postNormOf(forwardOf(o.output), norms, bySource);
  const attnDelta = scaledForward(attnPost ? forwardOf(attnPost.output) : forwardOf(o.output));
  const oOut = attnDelta.value;

  // h = x + o(·): an Add, or a Skip norm that adds and normalises at once. Without an h that
  // an MLP norm reads, the block may be parallel: the MLP norm reads x itself.
  let residualMid: Value | undefined;
  let mlpNorm: Norm | undefined;
  let attnAdd = oOut.consumers().find((c) => c.opType === 'Add' && c.domain === '' && sameValue(c.inputs.find((x) => x !== oOut), residualIn));
  if (!attnAdd && !attnNorm) throw blockError(i, 'the q/k/v input is not produced by an RMSNorm/LayerNorm, nor is it the residual stream that the attention output is added to');
  if (attnAdd) {
    residualMid = attnAdd.output(0);
    mlpNorm = norms.find((n) => !n.skip && sameValue(n.input, residualMid) && bySource.has(n.output));
  }
  const parallelNorm = mlpNorm || !attnNorm ? undefined : parallelMlpNorm(attnNorm, residualIn, bySource, norms, qOf);
  if (parallelNorm) {
    mlpNorm = parallelNorm;
    attnAdd = undefined;
  } else if (!attnAdd) {
    mlpNorm = norms.find(
      (n) => n.skip && ((n.input === oOut && sameValue(n.skip, residualIn)) || (n.skip === oOut && sameValue(n.input, residualIn))),
    );
    if (!mlpNorm) throw blockError(i, 'could not find the residual Add after the attention output projection');
    if (!mlpNorm.residualOut) throw blockError(i, `${mlpNorm.kind} after the attention does not output the residual sum`);
    residualMid = mlpNorm.residualOut;
  }
  if (!mlpNorm && attnNorm) throw blockError(i, 'could not find the MLP norm after the attention residual');
  if (mlpNorm && !attnNorm) throw blockError(i, 'the MLP reads a norm but the attention reads the stream itself: not supported');
  const parallel = !!parallelNorm;
  const group = (bySource.get(mlpNorm ? mlpNorm.output : residualMid!) ?? []).filter((l) => l !== q && l !== k && l !== v);
  if (group.some((l) => qOf.has(l))) throw blockError(i, 'could not find the MLP: the post-attention stream goes straight to the next attention');
  if (group.some(routesExperts)) {
    throw blockError(i, `mixture-of-experts MLP (a router picks experts with TopK) is not supported yet`);
  }
  const { gate, up, activation, product } = group.length === 1 ? ungatedMlp(i, group[0]) : gatedMlp(i, group);
  const down = bySource.get(product)?.[0];
  if (!down) throw blockError(i, 'could not find the down projection');
  const mlpPost = postNormOf(forwardOf(down.output), norms, bySource);
  if (!!mlpPost !== !!attnPost) throw blockError(i, `a norm after the ${attnPost ? 'attention' : 'MLP'} but none after the ${attnPost ? 'MLP' : 'attention'}: not supported`);
  if (!attnNorm && !attnPost) throw blockError(i, 'the q/k/v input is not produced by an RMSNorm/LayerNorm');
  const mlpDelta = scaledForward(mlpPost ? forwardOf(mlpPost.output) : forwardOf(down.output));
  const downOut = mlpDelta.value;
  let mlpAdd: Node | undefined;
  let residualOut: Value | undefined;
  if (parallel) {
    mlpAdd = parallelSum(oOut, [residualIn!, oOut, downOut]);
    if (!mlpAdd) throw blockError(i, 'parallel block: could not find the sum of the block input, the attention output and the MLP output');
    residualOut = residualMid = mlpAdd.output(0);
  } else {
    mlpAdd = downOut.consumers().find((c) => c.opType === 'Add' && c.domain === '' && sameValue(c.inputs.find((x) => x !== downOut), residualMid));
    residualOut = mlpAdd?.output(0);
    if (!mlpAdd) {
      const next = norms.find((n) => n.skip && (n.input === downOut || n.skip === downOut));
      if (!next) throw blockError(i, 'could not find the residual Add after the down projection');
      residualOut = next.residualOut;
    }
  }
  for (const [role, l] of [['q', q], ['k', k], ['v', v], ['o', o], ['gate', gate], ['up', up], ['down', down]] as const) {
    if (!l) continue;
    if (l.role !== undefined && (l.role !== role || l.block !== i)) throw blockError(i, `${role} is already the ${l.role} of block ${l.block}`);
    l.role = role;
    l.block = i;
  }
  for (const [role, n] of [['attn', attnNorm], ['mlp', mlpNorm === attnNorm ? undefined : mlpNorm], ['attn-post', attnPost], ['mlp-post', mlpPost]] as const) {
    if (!n) continue;
    n.role = role;
    n.block = i;
  }
  return {
    index: i,
    attnNorm,
    mlpNorm,
    q,
    k,
    v,
    o,
    gate,
    up,
    down,
    parallel,
    ...(attnPost && mlpPost ? { postNorm: { attn: attnPost, mlp: mlpPost } } : {}),
    attention: core,
    activation,
    product,
    residualIn,
    residualMid: residualMid!,
    residualOut,
    attnAdd,
    mlpAdd,
    residualScale: { attn: attnDelta.scale, mlp: mlpDelta.scale },
    mlpDelta: downOut,
  };
}

interface Mlp {
  gate?: Linear;
  up: Linear;
  activation: MlpActivation;
  /** What `down` reads. */
  product: Value;
}

/** down(σ(gate(m)) ⊙ up(m)): σ on exactly one of the two linears, then their product. */
function gatedMlp(i: number, group: Linear[]): Mlp {
  if (group.length !== 2) {
    throw blockError(i, `could not find the MLP gate/up projections: the post-attention norm feeds ${group.length} linear(s), not 2`);
  }
  let gate: Linear | undefined;
  let up: Linear | undefined;
  let act: ReturnType<typeof activationOf>;
  const actOf = (g: Linear, u: Linear) => activationOf(forwardOf(g.output)) ?? decomposedGeluTanh(forwardOf(g.output), forwardOf(u.output));
  for (const [a, b] of [[group[0], group[1]], [group[1], group[0]]]) {
    const ac = actOf(a, b);
    if (ac && !actOf(b, a)) [gate, up, act] = [a, b, ac];
  }
  if (!gate || !up || !act) throw blockError(i, 'could not tell the gate projection from up (no SiLU on exactly one of them)');
  const upOut = forwardOf(up.output);
  const prod = act.out.consumers().find((c) => c.opType === 'Mul' && c.inputs.some((x) => sameValue(x, upOut)));
  if (!prod) throw blockError(i, 'could not find the gate·up product');
  return { gate, up, activation: act.kind, product: prod.output(0) };
}

/** down(σ(up(m))) with σ a GELU or SiLU, however it is spelled (GPT-2 c_fc, GPT-NeoX dense_h_to_4h, Phi-2 fc1). */
function ungatedMlp(i: number, up: Linear): Mlp {
  const act = pointwiseActivation(forwardOf(up.output));
  if (!act) throw blockError(i, `could not find the MLP: the post-attention norm feeds one linear (${linearName(up)}), not a gate/up pair, and no GELU or SiLU follows it as in an ungated MLP`);
  return { up, activation: act.kind, product: act.out };
}

/**
 * The MLP norm of a parallel block: a norm of the block input other than the attention's
 * (GPT-NeoX's post_attention_layernorm), or the attention norm itself when it also feeds
 * linears other than q/k/v (Phi-2's one input_layernorm).
 */
function parallelMlpNorm(attnNorm: Norm, x: Value | undefined, bySource: Map<Value, Linear[]>, norms: Norm[], qOf: Map<Linear, AttentionCore>): Norm | undefined {
  if (!x || attnNorm.skip) return undefined;
  const mlpLinears = (n: Norm) => (bySource.get(n.output) ?? []).filter((l) => !qOf.has(l) && !isQkv(l, qOf));
  const own = norms.find((n) => n !== attnNorm && !n.skip && sameValue(n.input, x) && mlpLinears(n).length > 0);
  if (own) return own;
  return mlpLinears(attnNorm).length > 0 ? attnNorm : undefined;
}

function isQkv(l: Linear, qOf: Map<Linear, AttentionCore>): boolean {
  for (const c of qOf.values()) if (c.k === l || c.v === l) return true;
  return false;
}

/** The Add (within two Adds of `from`) whose operands, through Adds, are exactly `terms`. */
function parallelSum(from: Value, terms: Value[]): Node | undefined {
  const leaves = (v: Value, depth: number): Value[] => {
    const t = terms.find((x) => sameValue(x, v));
    if (t) return [t];
    const p = v.producer();
    if (depth > 0 && p && p.opType === 'Add' && p.domain === '') return [...leaves(p.input(0)!, depth - 1), ...leaves(p.input(1)!, depth - 1)];
    return [v];
  };
  const adds = (v: Value) => v.consumers().filter((c) => c.opType === 'Add' && c.domain === '');
  for (const a of adds(from)) {
    for (const n of [a, ...adds(a.output(0))]) {
      const got = leaves(n.output(0), 2);
      if (got.length === terms.length && terms.every((t) => got.includes(t))) return n;
    }
  }
  return undefined;
}

export interface LinearJSON {
  role: LinearRole | undefined;
  block: number | undefined;
  node: string;
  op: Linear['op'];
  weight: string;
  weightDtype: DType;
  in: number;
  out: number;
  layout: Linear['layout'];
  weightPath: string[];
  bias: string | null;
  input: string;
  output: string;
}

export interface NormJSON {
  kind: Norm['kind'];
  role: Norm['role'];
  gamma: string | null;
  beta: string | null;
  eps: number;
  input: string;
  skip: string | null;
  output: string;
}

function linearJSON(l: Linear): LinearJSON {
  return {
    role: l.role,
    block: l.block,
    node: l.node.name,
    op: l.op,
    weight: l.weight.name,
    weightDtype: l.weightDtype,
    in: l.inFeatures,
    out: l.outFeatures,
    layout: l.layout,
    weightPath: l.weightPath.map((n) => n.opType),
    bias: l.bias?.name ?? null,
    input: l.input.name,
    output: l.output.name,
  };
}

function normJSON(n: Norm): NormJSON {
  return {
    kind: n.kind,
    role: n.role,
    gamma: n.gamma?.name ?? null,
    beta: n.beta?.name ?? null,
    eps: n.eps,
    input: n.input.name,
    skip: n.skip?.name ?? null,
    output: n.output.name,
  };
}

/** A plain-data view of the structure (value and node names), for `twlac inspect --json`. */
export function structureToJSON(s: TransformerStructure) {
  const table = constTensor(s.embedding.table)!;
  return {
    config: s.config,
    configSources: s.configSources,
    normKind: s.normKind,
    embedding: { node: s.embedding.node.name, table: s.embedding.table.name, dims: [...table.dims], dtype: table.dtype, ids: s.embedding.ids.name },
    tiedEmbeddings: s.tiedEmbeddings,
    embedScale: s.embedScale,
    logitScale: s.logitScale,
    logitSoftcap: s.logitSoftcap ?? null,
    rope: { source: s.rope.source?.name ?? null, kind: s.rope.kind ?? null, rotaryDim: s.rope.rotaryDim ?? null },
    blocks: s.blocks.map((b) => ({
      index: b.index,
      attnNorm: b.attnNorm ? normJSON(b.attnNorm) : null,
      mlpNorm: b.mlpNorm ? normJSON(b.mlpNorm) : null,
      postNorm: b.postNorm ? { attn: normJSON(b.postNorm.attn), mlp: normJSON(b.postNorm.mlp) } : null,
      attention: {
        ...(b.attention.fused ? { fused: b.attention.fused.qualifiedOp } : { softmax: b.attention.softmax?.name ?? null }),
        scale: b.attention.scale ?? null,
        window: b.attention.window ?? null,
        softcap: b.attention.softcap ?? null,
        qkNorm: b.qkNorm ? { q: b.qkNorm.q.norms.map(normJSON), k: b.qkNorm.k.norms.map(normJSON), span: b.qkNorm.span, kind: b.qkNorm.kind } : null,
        ropeTheta: b.ropeTheta ?? null,
      },
      residualScale: b.residualScale,
      activation: b.activation,
      linears: [b.q, b.k, b.v, b.o, ...(b.gate ? [b.gate] : []), b.up, b.down].map(linearJSON),
      parallel: b.parallel,
      residual: { in: b.residualIn?.name ?? null, mid: b.residualMid.name, out: b.residualOut?.name ?? null },
    })),
    finalNorm: s.finalNorm ? normJSON(s.finalNorm) : null,
    lmHead: linearJSON(s.lmHead),
    inputGroups: s.inputGroups.map((g) => ({
      site: g.site,
      block: g.block,
      value: g.value.name,
      linears: g.linears.map((l) => l.role),
    })),
    notes: s.notes,
  };
}

export type StructureJSON = ReturnType<typeof structureToJSON>;
