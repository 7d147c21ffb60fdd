// Normalisation layers, fused or as torch decomposes them. RMSNorm:
//   y = γ ⊙ x / sqrt(mean(x²) + ε)
// decomposed as Pow(x, 2) | Mul(x, x) → ReduceMean(last axis) → Add(ε) → Sqrt → Reciprocal → Mul(x, ·)
// (or Div(x, Sqrt(·)), Div(1, Sqrt(·)), Pow(·, -0.5)), Casts allowed around it, then Mul by γ in either order (γ optional:
// a norm whose γ was folded away is still a norm). Fused forms: SimplifiedLayerNormalization,
// com.microsoft::SkipSimplifiedLayerNormalization (which also computes the residual sum
// input + skip as its 4th output), LayerNormalization, com.microsoft::SkipLayerNormalization,
// and RMSNormalization (opset 23). LayerNorm decomposed (TorchScript below opset 17):
//   d = Sub(x, ReduceMean(x)) → Pow(d, 2) → ReduceMean → Add(ε) → Sqrt → Div(d, ·) → Mul γ → Add β
// is the same chain on the centred d, with β after γ.
import type { Node, Value } from '../ir.ts';
import type { DType } from '../tensor.ts';
import { roundToHalf } from '../tensor.ts';
import { constTensor, type Match } from './linear.ts';

export type NormKind =
  | 'rms-decomposed'
  | 'ln-decomposed'
  | 'SimplifiedLayerNormalization'
  | 'SkipSimplifiedLayerNormalization'
  | 'RMSNormalization'
  | 'LayerNormalization'
  | 'SkipLayerNormalization';

export interface Norm {
  kind: NormKind;
  /** RMS normalisation (no mean subtraction, no β). */
  rms: boolean;
  /** Every node of the pattern; the last one produces `output`. */
  nodes: Node[];
  /** The normalised value (for Skip kinds: the first operand of the fused residual sum). */
  input: Value;
  /** Skip kinds: the second operand of the fused residual sum. */
  skip?: Value;
  /** Skip kinds: the residual sum input + skip, when the graph uses it. */
  residualOut?: Value;
  output: Value;
  gamma?: Value;
  beta?: Value;
  eps: number;
  /** Set by recognition. */
  role?: 'attn' | 'mlp' | 'attn-post' | 'mlp-post' | 'final';
  block?: number;
}

const fail = (reason: string): { ok: false; reason: string } => ({ ok: false, reason });
const isOnnx = (n: Node): boolean => n.domain === '' || n.domain === 'ai.onnx';
const isMs = (n: Node): boolean => n.domain === 'com.microsoft';

/** Strip Cast/Identity producers. */
export function stripCasts(v: Value): Value {
  for (;;) {
    const p = v.producer();
    if (!p || !isOnnx(p) || (p.opType !== 'Cast' && p.opType !== 'Identity') || !p.input(0)) return v;
    v = p.input(0)!;
  }
}

/**
 * The shortest decimal that rounds back to the same stored value: a float32 ε of 1e-5 is
 * 9.99999974737875e-6 in a double, but the model's author wrote 1e-5.
 */
function cleanFloat(x: number, dtype: DType = 'float32'): number {
  const round = dtype === 'float16' ? roundToHalf : dtype === 'float64' ? (y: number) => y : Math.fround;
  const stored = round(x);
  for (let p = 1; p <= 17; p++) {
    const y = Number(x.toPrecision(p));
    if (round(y) === stored) return y;
  }
  return x;
}

function scalarOf(v: Value | undefined): { value: number; dtype: DType } | undefined {
  const t = constTensor(v);
  if (!t || t.numel !== 1) return undefined;
  return { value: t.toFloat32()[0], dtype: t.dtype };
}

function only(v: Value, op: string, pred: (n: Node) => boolean = () => true): Node | undefined {
  return v.consumers().find((n) => n.opType === op && isOnnx(n) && pred(n));
}

function otherInput(n: Node, v: Value): Value | undefined {
  return n.input(0) === v ? n.input(1) : n.input(0);
}

function reduceAxes(n: Node): number[] | undefined {
  const a = n.attr('axes', 'ints');
  if (a) return a;
  const t = constTensor(n.input(1));
  return t ? t.toNumbers() : undefined;
}

/** Match a decomposed RMSNorm anchored at its ReduceMean. */
function matchDecomposedRms(rm: Node): Match<Norm> {
  if (rm.opType !== 'ReduceMean' || !isOnnx(rm)) return fail('not ReduceMean');
  const axes = reduceAxes(rm);
  if (!axes || axes.length !== 1) return fail('ReduceMean is not over one axis');
  if ((rm.attr('keepdims', 'int') ?? 1) !== 1) return fail('ReduceMean without keepdims');
  const sq = rm.input(0)?.producer();
  if (!sq || !isOnnx(sq)) return fail('ReduceMean input is not a square');
  let s: Value | undefined;
  if (sq.opType === 'Pow' && scalarOf(sq.input(1))?.value === 2) s = sq.input(0);
  else if (sq.opType === 'Mul' && sq.input(0) && sq.input(0) === sq.input(1)) s = sq.input(0);
  if (!s) return fail('ReduceMean input is not x² (Pow 2 or Mul x x)');
  const x = stripCasts(s);
  const rank = (rm.input(0)?.type ?? s.type ?? x.type)?.shape?.length;
  if (axes[0] !== -1 && (rank === undefined || axes[0] !== rank - 1)) return fail('ReduceMean is not over the last axis');
  const nodes: Node[] = [sq, rm];
  // LayerNorm: x is itself x₀ − mean(x₀) over the same axis.
  const centring = centredInput(x, axes[0]);
  if (centring) nodes.unshift(...centring.nodes);
  const addEps = only(rm.output(0), 'Add', (n) => !!scalarOf(otherInput(n, rm.output(0))));
  if (!addEps) return fail('no Add(ε) after ReduceMean');
  const epsC = scalarOf(otherInput(addEps, rm.output(0)))!;
  nodes.push(addEps);
  const sameX = (v: Value | undefined): boolean => !!v && stripCasts(v) === x;
  // 1/rms as Reciprocal(Sqrt), Div(1, Sqrt) or Pow(·, -0.5); or x / Sqrt(·) directly.
  const A = addEps.output(0);
  let inv: Node | undefined;
  let scaled: Node | undefined;
  const sqrt = only(A, 'Sqrt');
  if (sqrt) {
    nodes.push(sqrt);
    const S = sqrt.output(0);
    scaled = only(S, 'Div', (n) => n.input(1) === S && sameX(n.input(0)));
    inv = scaled ? undefined : (only(S, 'Reciprocal') ?? only(S, 'Div', (n) => n.input(1) === S && scalarOf(n.input(0))?.value === 1));
    if (!scaled && !inv) return fail('no Reciprocal or Div after Sqrt');
  } else {
    inv = only(A, 'Pow', (n) => n.input(0) === A && scalarOf(n.input(1))?.value === -0.5);
    if (!inv) return fail('no Sqrt or Pow(-0.5) after Add(ε)');
  }
  if (inv) {
    const r = inv.output(0);
    nodes.push(inv);
    scaled = only(r, 'Mul', (n) => sameX(otherInput(n, r)));
    if (!scaled) return fail('no Mul(x, 1/rms)');
  }
  if (!scaled) return fail('no x/rms');
  nodes.push(scaled);
  let out = scaled.output(0);
  // Optional Cast back to the model's dtype, then γ.
  const castBack = out.consumers().length === 1 ? only(out, 'Cast') : undefined;
  let tail = out;
  if (castBack) tail = castBack.output(0);
  const gMul =
    tail.consumers().length === 1
      ? only(tail, 'Mul', (n) => {
          const gv = otherInput(n, tail);
          const g = gv && constTensor(stripCasts(gv));
          return !!g && g.numel > 1 && g.dims[g.dims.length - 1] === g.numel;
        })
      : undefined;
  let gamma: Value | undefined;
  if (gMul) {
    if (castBack) nodes.push(castBack);
    // γ's own Casts belong to the pattern, so that replacing γ's uses inside `nodes` reaches them.
    for (let v = otherInput(gMul, tail)!, p = v.producer(); p && p.opType === 'Cast'; v = p.input(0)!, p = v.producer()) nodes.push(p);
    nodes.push(gMul);
    gamma = stripCasts(otherInput(gMul, tail)!);
    out = gMul.output(0);
  }
  const eps = cleanFloat(epsC.value, epsC.dtype);
  if (!centring) return { ok: true, value: { kind: 'rms-decomposed', rms: true, nodes, input: x, output: out, gamma, eps } };
  let beta: Value | undefined;
  const bAdd = out.consumers().length === 1 ? only(out, 'Add', (n) => isVector(otherInput(n, out))) : undefined;
  if (bAdd) {
    for (let v = otherInput(bAdd, out)!, p = v.producer(); p && p.opType === 'Cast'; v = p.input(0)!, p = v.producer()) nodes.push(p);
    nodes.push(bAdd);
    beta = stripCasts(otherInput(bAdd, out)!);
    out = bAdd.output(0);
  }
  return { ok: true, value: { kind: 'ln-decomposed', rms: false, nodes, input: centring.input, output: out, gamma, beta, eps } };
}

/** A constant vector over the last axis (γ or β). */
function isVector(v: Value | undefined): boolean {
  const t = v && constTensor(stripCasts(v));
  return !!t && t.numel > 1 && t.dims[t.dims.length - 1] === t.numel;
}

/** d = Sub(x, ReduceMean(x, axis)): x and the two nodes, or undefined. */
function centredInput(d: Value, axis: number): { input: Value; nodes: Node[] } | undefined {
  const sub = d.producer();
  if (!sub || sub.opType !== 'Sub' || !isOnnx(sub) || !sub.input(0) || !sub.input(1)) return undefined;
  const mean = sub.input(1)!.producer();
  if (!mean || mean.opType !== 'ReduceMean' || !isOnnx(mean) || (mean.attr('keepdims', 'int') ?? 1) !== 1) return undefined;
  const ax = reduceAxes(mean);
  if (!ax || ax.length !== 1 || ax[0] !== axis) return undefined;
  const x = stripCasts(sub.input(0)!);
  if (stripCasts(mean.input(0)!) !== x) return undefined;
  return { input: x, nodes: [mean, sub] };
}

function epsAttr(n: Node, dflt = 1e-5): number {
  const e = n.attr('epsilon', 'float');
  return e === undefined ? dflt : cleanFloat(e);
}

/** Match one of the fused normalisation ops. */
function matchFusedNorm(n: Node): Match<Norm> {
  const x = n.input(0);
  if (!x) return fail('no input');
  const axis = n.attr('axis', 'int') ?? -1;
  if (axis !== -1) {
    const rank = x.type?.shape?.length;
    if (rank === undefined || axis !== rank - 1) return fail('normalises an axis other than the last');
  }
  const base = { nodes: [n], input: x, eps: epsAttr(n) };
  if ((isOnnx(n) || isMs(n)) && n.opType === 'SimplifiedLayerNormalization') {
    return { ok: true, value: { ...base, kind: n.opType, rms: true, output: n.output(0), gamma: n.input(1) } };
  }
  if (isOnnx(n) && n.opType === 'RMSNormalization') {
    return { ok: true, value: { ...base, kind: n.opType, rms: true, output: n.output(0), gamma: n.input(1) } };
  }
  if (isOnnx(n) && n.opType === 'LayerNormalization') {
    return { ok: true, value: { ...base, kind: n.opType, rms: false, output: n.output(0), gamma: n.input(1), beta: n.input(2) } };
  }
  if (isMs(n) && (n.opType === 'SkipSimplifiedLayerNormalization' || n.opType === 'SkipLayerNormalization')) {
    const rms = n.opType === 'SkipSimplifiedLayerNormalization';
    // Inputs: input, skip, gamma, [beta], [bias]. A bias added before the sum is not a plain residual.
    if (n.input(rms ? 3 : 4)) return fail(`${n.opType} with a bias input`);
    const sum = n.outputs[3];
    return {
      ok: true,
      value: {
        ...base,
        kind: n.opType,
        rms,
        skip: n.input(1),
        residualOut: sum && sum.name !== '' ? sum : undefined,
        output: n.output(0),
        gamma: n.input(2),
        beta: rms ? undefined : n.input(3),
      },
    };
  }
  return fail(`${n.qualifiedOp} is not a normalisation op`);
}

/** All norms of a graph, in node order. */
export function findNorms(nodes: readonly Node[]): Norm[] {
  const out: Norm[] = [];
  for (const n of nodes) {
    const m = n.opType === 'ReduceMean' ? matchDecomposedRms(n) : matchFusedNorm(n);
    if (m.ok) out.push(m.value);
  }
  return out;
}

/** The residual-stream value a norm reads (for Skip kinds: the sum it computes). */
export function normStream(n: Norm): Value | undefined {
  return n.skip ? n.residualOut : n.input;
}
