// Refuse models whose compile would "succeed" into something wrong: an output onnxruntime
// cannot load (an operator set it does not implement, an unknown operator domain), or
// numbers that poison every runtime (a NaN norm ε or RoPE θ, a context length of 1e308, a
// norm weight that is boolean or of the wrong width), and calibration token ids past the
// model's vocabulary. Recognition found the structure; this pass checks that it is sane
// before any pass computes with it. Weight values are check-weights' job.
import { UserError } from '../errors.ts';
import { definePass } from '../graph/pass.ts';
import type { Graph, Model, Value } from '../graph/ir.ts';
import { constTensor, type Norm, type TransformerStructure } from '../graph/recognize.ts';
import type { DType } from '../graph/tensor.ts';
import type { CompileContext } from './context.ts';

/** ai.onnx versions the bundled onnxruntime implements (it refuses 27 and up; below 7 it has no kernels). */
export const ORT_OPSETS = { min: 7, max: 26 } as const;

/** Operator domains onnxruntime's CPU provider knows, and the versions of each it accepts. */
const KNOWN_DOMAINS: Record<string, { min: number; max: number }> = {
  '': ORT_OPSETS,
  'ai.onnx': ORT_OPSETS,
  'ai.onnx.ml': { min: 1, max: 5 },
  'com.microsoft': { min: 1, max: 1 },
};

const FLOAT_TYPES = new Set<DType>(['float32', 'float16', 'bfloat16', 'float64']);

/** Largest context length a runtime is asked to plan for (16 M positions). */
const MAX_POSITIONS = 1 << 24;

const canonical = (domain: string) => (domain === 'ai.onnx' ? '' : domain);

function checkOpsets(model: Model): void {
  for (const o of model.opsetImports) {
    const d = KNOWN_DOMAINS[o.domain];
    if (!d) continue; // an imported but unused domain harms nothing; a node using it is refused below
    if (o.version < d.min || o.version > d.max) {
      throw new UserError(`the model imports operator set ${o.domain || 'ai.onnx'} version ${o.version}; onnxruntime runs versions ${d.min} to ${d.max}`);
    }
  }
  if (model.opset('') === undefined) throw new UserError('the model imports no ai.onnx operator set');
  const imported = new Set(model.opsetImports.map((o) => canonical(o.domain)));
  const visit = (g: Graph): void => {
    for (const n of g.nodes) {
      const d = canonical(n.domain);
      if (!(n.domain in KNOWN_DOMAINS)) throw new UserError(`node '${n.name}' (${n.opType}) is in operator domain '${n.domain}', which onnxruntime does not know`);
      if (!imported.has(d)) throw new UserError(`node '${n.name}' (${n.opType}) is in operator domain '${n.domain}', which the model does not import`);
      for (const a of n.attributes.values()) if (a.type === 'graph') visit(a.value);
    }
  };
  visit(model.graph);
}

function checkTensorType(what: string, v: Value | undefined, width?: number): void {
  const t = constTensor(v);
  if (!v || !t) return;
  if (!FLOAT_TYPES.has(t.dtype)) throw new UserError(`${what} ${v.name} is ${t.dtype}; twlac needs floating-point weights`);
  if (width !== undefined && t.numel !== width) throw new UserError(`${what} ${v.name} has ${t.numel} elements where the model is ${width} wide`);
}

function checkNorm(n: Norm, hidden: number, where: string): void {
  if (!Number.isFinite(n.eps) || n.eps < 0 || n.eps >= 1) throw new UserError(`${where} norm has ε = ${n.eps}; it must be a finite number in [0, 1)`);
  checkTensorType(`${where} norm γ`, n.gamma, hidden);
  checkTensorType(`${where} norm β`, n.beta, hidden);
}

/**
 * NaN in any constant (NaN is never a meaningful model constant), and NaN or ±Inf in the
 * constants that feed Cos/Sin (the RoPE angles, which recognition may not have matched).
 * The linear weights and the embedding are check-weights' (large; read once there).
 */
function checkConstants(s: TransformerStructure): void {
  const model = s.model;
  const big = new Set<Value | undefined>([s.embedding.table, ...s.linears.map((l) => l.weight)]);
  const values = (t: ReturnType<typeof constTensor>) => (t && FLOAT_TYPES.has(t.dtype) ? t.toFloat32() : undefined);
  for (const v of model.graph.initializers.values()) {
    if (big.has(v)) continue;
    if (values(constTensor(v))?.some((x) => Number.isNaN(x))) throw new UserError(`constant ${v.name} holds a NaN`);
  }
  const seen = new Set<Value>();
  const queue = model.graph.nodes.filter((n) => (n.opType === 'Cos' || n.opType === 'Sin') && n.domain === '').map((n) => n.input(0)!);
  while (queue.length && seen.size < 200) {
    const w = queue.shift()!;
    if (!w || seen.has(w)) continue;
    seen.add(w);
    const t = constTensor(w);
    if (t) {
      if (values(t)?.some((x) => !Number.isFinite(x))) throw new UserError(`constant ${w.name}, which feeds the RoPE angles, holds a NaN or Inf`);
      continue;
    }
    const p = w.producer();
    if (p && p.opType !== 'Shape') queue.push(...p.inputs.filter((i): i is Value => !!i));
  }
}

export function checkModel(s: TransformerStructure, calib: Int32Array[] | undefined): void {
  checkOpsets(s.model);
  checkConstants(s);
  const c = s.config;
  for (const k of ['vocab', 'hidden', 'layers', 'heads', 'kvHeads', 'headDim', 'intermediate'] as const) {
    if (!Number.isSafeInteger(c[k]) || c[k] < 1) throw new UserError(`the model's ${k} is ${c[k]}; it must be a positive integer`);
  }
  if (!Number.isFinite(c.ropeTheta) || c.ropeTheta <= 0) throw new UserError(`the RoPE base θ is ${c.ropeTheta}${s.rope.source ? ` (from ${s.rope.source.name})` : ''}; it must be a finite positive number`);
  if (!Number.isSafeInteger(c.maxPositions) || c.maxPositions < 1 || c.maxPositions > MAX_POSITIONS) {
    throw new UserError(`the context length (max positions) is ${c.maxPositions}; it must be an integer from 1 to ${MAX_POSITIONS}`);
  }
  if (s.rope.source) {
    const t = constTensor(s.rope.source);
    if (t && FLOAT_TYPES.has(t.dtype) && t.toFloat32().some((x) => !Number.isFinite(x))) throw new UserError(`the RoPE frequencies ${s.rope.source.name} hold a NaN or Inf`);
  }
  for (const b of s.blocks) {
    for (const [n, what] of [[b.attnNorm, 'attention'], [b.mlpNorm, 'MLP'], [b.postNorm?.attn, 'attention output'], [b.postNorm?.mlp, 'MLP output']] as const) {
      if (n) checkNorm(n, c.hidden, `block ${b.index} ${what}`);
    }
  }
  if (s.finalNorm) checkNorm(s.finalNorm, c.hidden, 'final');
  checkTensorType('the embedding table', s.embedding.table);
  for (const l of s.linears) {
    checkTensorType(`${l.block !== undefined && l.block >= 0 ? `block ${l.block} ` : ''}${l.role} weight`, l.weight);
    checkTensorType(`${l.role} bias`, l.bias, l.outFeatures);
  }
  // Position tables (GPT-2's wpe, RoPE cos/sin caches) end at maxPositions: longer segments would index past them.
  const longest = Math.max(0, ...(calib ?? []).map((seg) => seg.length));
  if (s.configSources.maxPositions === 'graph' && longest > c.maxPositions) {
    throw new UserError(`calibration segments of ${longest} tokens are longer than the ${c.maxPositions} positions the model's position tables hold; use shorter segments`);
  }
  for (const seg of calib ?? []) {
    for (const id of seg) {
      if (id < 0 || id >= c.vocab) throw new UserError(`calibration token id ${id} is outside the model's vocabulary of ${c.vocab}: is the tokenizer the model's own?`);
    }
  }
}

export const checkModelPass = definePass<CompileContext>({
  name: 'check-model',
  run(model, ctx) {
    checkModel(ctx.structure, ctx.opts.calib);
    return { model, modified: false };
  },
});
