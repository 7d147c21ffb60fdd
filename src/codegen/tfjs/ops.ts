// ONNX ops → TF GraphDef ops that tfjs-converter's executor runs, one table row per ONNX op.
// A row sees the node through OpContext and returns a TF tensor reference for each output.
// TF.js has no int64 or float16: int64 values become int32 (constants clamped to the int32
// range, which only moves INT64_MAX/MIN "to the end" markers of Slice) and float16 math runs
// in float32. Shape subgraphs (Shape → Gather/Slice → Concat → Reshape/Expand) translate as
// they are: tfjs evaluates them at run time, so the model takes any sequence length.
import type { Node, Value } from '../../graph/ir.ts';
import type { DType } from '../../graph/tensor.ts';
import { attr, type TfGraph, type TfjsDtype } from './graphdef.ts';

export interface OpContext {
  g: TfGraph;
  node: Node;
  /** TF reference of input i (refuses when absent). */
  input(i: number): string;
  has(i: number): boolean;
  /** Rank of input i when the graph states its shape. */
  rank(i: number): number | undefined;
  /** The values of input i when it is a constant integer tensor. */
  ints(i: number): number[] | undefined;
  /** Element type of an ONNX value (from its type, its constant or its producer). */
  dtype(v: Value): DType | undefined;
  /** A compile-time refusal naming the op, the node and the reason. */
  refuse(why: string): never;
  /** The custom op a MatMulNBits becomes (the caller knows the manifest). */
  ternaryMatMul(): string;
}

type Translate = (c: OpContext) => string[];

/** TF.js dtype an ONNX element type is carried in, or undefined for those it cannot hold. */
export function tfjsDtype(d: DType): TfjsDtype | undefined {
  switch (d) {
    case 'float32':
    case 'float16':
    case 'float64':
    case 'bfloat16':
      return 'float32';
    case 'int64':
    case 'int32':
    case 'int16':
    case 'int8':
    case 'uint8':
    case 'uint16':
      return 'int32';
    case 'bool':
      return 'bool';
    default:
      return undefined;
  }
}

/** ONNX TensorProto element-type codes of Cast's `to`, for the types TF.js can hold. */
const ONNX_TYPE_CODES: Record<number, DType> = { 1: 'float32', 2: 'uint8', 3: 'int8', 5: 'int16', 6: 'int32', 7: 'int64', 9: 'bool', 10: 'float16', 11: 'float64', 16: 'bfloat16' };

export function onnxTypeOfCode(code: number): DType | undefined {
  return ONNX_TYPE_CODES[code];
}

const int = (c: OpContext, name: string, def: number) => c.node.attr(name, 'int') ?? def;

const unary = (op: string): Translate => (c) => [c.g.op(op, [c.input(0)], {}, c.node.output().name)];
const binary = (op: string): Translate => (c) => [c.g.op(op, [c.input(0), c.input(1)], {}, c.node.output().name)];
/** ONNX variadic Max/Min/Sum as a chain of binary TF ops. */
const variadic = (op: string): Translate => (c) => {
  let acc = c.input(0);
  for (let i = 1; i < c.node.inputs.length; i++) acc = c.g.op(op, [acc, c.input(i)], {}, c.node.output().name);
  return [acc];
};

/** Axes of a node: the input (newer opsets) or the attribute (older), if constant. */
function axesOf(c: OpContext, inputIndex: number): number[] | undefined {
  if (c.has(inputIndex)) return c.ints(inputIndex) ?? c.refuse('needs constant axes');
  return c.node.attr('axes', 'ints');
}

/** Reductions keep ONNX's keepdims default of 1; reducing over every axis needs the rank, which a graph does not always state. */
const reduce = (op: string): Translate => (c) => {
  const axes = axesOf(c, 1)?.length ? axesOf(c, 1)! : c.refuse('reduces over all axes, which this target does not translate');
  const keep = int(c, 'keepdims', 1) === 1;
  return [c.g.op(op, [c.input(0), c.g.int32(`${c.node.output().name}/axes`, axes)], { keep_dims: attr.bool(keep) }, c.node.output().name)];
};

/**
 * ONNX Slice (starts, ends, axes, steps) → StridedSlice over full begin/end/stride vectors.
 * Axes must be constant; starts/ends may be computed. Non-negative axes fill positions
 * 0..max(axis) with the other positions masked; negative axes are written after an
 * ellipsis, so the input's rank need not be known. StridedSlice clamps out-of-range
 * bounds as ONNX does.
 */
const slice: Translate = (c) => {
  const name = c.node.output().name;
  const starts = c.ints(1);
  const nAxes = starts?.length ?? c.ints(2)?.length ?? c.refuse('needs constant starts or ends (to know how many axes)');
  const axes = c.has(3) ? (c.ints(3) ?? c.refuse('needs constant axes')) : Array.from({ length: nAxes }, (_, i) => i);
  const steps = c.has(4) ? (c.ints(4) ?? c.refuse('needs constant steps')) : axes.map(() => 1);
  const neg = axes.every((a) => a < 0);
  if (!neg && !axes.every((a) => a >= 0)) c.refuse('mixes negative and non-negative axes');
  // Position of each sliced axis in the begin/end vectors, and the vector length.
  const len = neg ? 1 - Math.min(...axes) : Math.max(...axes) + 1;
  const pos = axes.map((a) => (neg ? len + a : a));
  const sliced = new Set(pos);
  let mask = 0;
  for (let p = 0; p < len; p++) if (!sliced.has(p)) mask |= 1 << p;
  // The begin/end vectors: constant where the ONNX input is, else gathered from it.
  const vector = (i: number, what: string): string => {
    const cv = c.ints(i);
    if (cv) {
      const v = new Array<number>(len).fill(0);
      pos.forEach((p, j) => (v[p] = cv[j]));
      return c.g.int32(`${name}/${what}`, v);
    }
    // Scatter the computed values into place: order[p] = index into [values..., 0].
    const order = Array.from({ length: len }, (_, p) => (pos.includes(p) ? pos.indexOf(p) : axes.length));
    const padded = c.g.op('ConcatV2', [c.g.op('Cast', [c.input(i)], { DstT: attr.type('int32') }, `${name}/${what}_i32`), c.g.int32(`${name}/zero`, [0]), c.g.int32(`${name}/axis0`, [0], [])], { N: attr.int(2) }, `${name}/${what}_pad`);
    return c.g.op('GatherV2', [padded, c.g.int32(`${name}/${what}_order`, order), c.g.int32(`${name}/axis0`, [0], [])], {}, `${name}/${what}`);
  };
  const stride = new Array<number>(len).fill(1);
  pos.forEach((p, j) => (stride[p] = steps[j]));
  const ellipsis = neg ? 1 : 0;
  const withEllipsis = (ref: string, what: string) => (neg ? c.g.op('ConcatV2', [c.g.int32(`${name}/e`, [0]), ref, c.g.int32(`${name}/axis0`, [0], [])], { N: attr.int(2) }, `${name}/${what}_e`) : ref);
  const shift = neg ? 1 : 0;
  return [
    c.g.op(
      'StridedSlice',
      [c.input(0), withEllipsis(vector(1, 'begin'), 'begin'), withEllipsis(vector(2, 'end'), 'end'), c.g.int32(`${name}/strides`, neg ? [1, ...stride] : stride)],
      { begin_mask: attr.int(mask << shift), end_mask: attr.int(mask << shift), ellipsis_mask: attr.int(ellipsis), new_axis_mask: attr.int(0), shrink_axis_mask: attr.int(0) },
      name,
    ),
  ];
};

/** Unsqueeze as ExpandDims per axis: ascending for non-negative axes, descending (from the end) for negative ones; both land every new axis where ONNX puts it. */
const unsqueeze: Translate = (c) => {
  const axes = axesOf(c, 1) ?? c.refuse('has no axes');
  const neg = axes.every((a) => a < 0);
  if (!neg && !axes.every((a) => a >= 0)) c.refuse('mixes negative and non-negative axes');
  const order = [...axes].sort((a, b) => (neg ? b - a : a - b));
  let x = c.input(0);
  for (const a of order) x = c.g.op('ExpandDims', [x, c.g.int32(`${c.node.output().name}/axis`, [a], [])], {}, c.node.output().name);
  return [x];
};

const squeeze: Translate = (c) => {
  const axes = axesOf(c, 1);
  return [c.g.op('Squeeze', [c.input(0)], axes?.length ? { axis: attr.ints(axes) } : {}, c.node.output().name)];
};

/** ONNX Shape(start, end) → TF Shape, then a slice of the shape vector. */
const shape: Translate = (c) => {
  const name = c.node.output().name;
  const s = c.g.op('Shape', [c.input(0)], { out_type: attr.type('int32') }, name);
  const start = c.node.attr('start', 'int');
  const end = c.node.attr('end', 'int');
  if (start === undefined && end === undefined) return [s];
  const b = start ?? 0;
  const e = end ?? 0;
  return [
    c.g.op('StridedSlice', [s, c.g.int32(`${name}/begin`, [b]), c.g.int32(`${name}/end`, [e]), c.g.int32(`${name}/strides`, [1])], { begin_mask: attr.int(0), end_mask: attr.int(end === undefined ? 1 : 0), ellipsis_mask: attr.int(0), new_axis_mask: attr.int(0), shrink_axis_mask: attr.int(0) }, `${name}/slice`),
  ];
};

/** Gather: TF GatherV2 has no negative indices, so constant negative ones are refused. */
const gather: Translate = (c) => {
  const idx = c.ints(1);
  if (idx?.some((i) => i < 0)) c.refuse('has negative constant indices');
  const axis = int(c, 'axis', 0);
  return [c.g.op('GatherV2', [c.input(0), c.input(1), c.g.int32(`${c.node.output().name}/axis`, [axis], [])], { batch_dims: attr.int(0) }, c.node.output().name)];
};

const concat: Translate = (c) => {
  const n = c.node.inputs.length;
  const ins = Array.from({ length: n }, (_, i) => c.input(i));
  return [c.g.op('ConcatV2', [...ins, c.g.int32(`${c.node.output().name}/axis`, [int(c, 'axis', 0)], [])], { N: attr.int(n) }, c.node.output().name)];
};

/** Reshape. A 0 in a constant shape (allowzero = 0) copies the input's dim there, which TF
 *  lacks: those entries are sliced from the input's shape. A computed shape is passed as it
 *  is (it holds real dims; a 0 there means an empty tensor in both). */
const reshape: Translate = (c) => {
  const name = c.node.output().name;
  const s = c.ints(1);
  if (int(c, 'allowzero', 0) === 1 || !s?.includes(0)) return [c.g.op('Reshape', [c.input(0), c.input(1)], {}, name)];
  const inShape = c.g.op('Shape', [c.input(0)], { out_type: attr.type('int32') }, `${name}/in_shape`);
  const parts = s.map((d, p) =>
    d !== 0
      ? c.g.int32(`${name}/dim${p}`, [d])
      : c.g.op('StridedSlice', [inShape, c.g.int32(`${name}/b${p}`, [p]), c.g.int32(`${name}/e${p}`, [p + 1]), c.g.int32(`${name}/s${p}`, [1])], {}, `${name}/copy${p}`),
  );
  const shape = c.g.op('ConcatV2', [...parts, c.g.int32(`${name}/axis`, [0], [])], { N: attr.int(parts.length) }, `${name}/shape`);
  return [c.g.op('Reshape', [c.input(0), shape], {}, name)];
};

/** x / sqrt(mean(x², last axis) + ε) · γ: ONNX RMSNormalization and onnxruntime's
 *  SimplifiedLayerNormalization, over the last axis only. */
function rmsNorm(c: OpContext, x: string, gamma: string): string {
  const name = c.node.output().name;
  if (int(c, 'axis', -1) !== -1 && int(c, 'axis', -1) !== (c.rank(0) ?? 0) - 1) c.refuse('normalises over more than the last axis');
  const eps = c.node.attr('epsilon', 'float') ?? 1e-5;
  const ms = c.g.op('Mean', [c.g.op('Square', [x], {}, `${name}/sq`), c.g.int32(`${name}/axis`, [-1])], { keep_dims: attr.bool(true) }, `${name}/ms`);
  const eps32 = c.g.constant(`${name}/eps`, { dtype: 'float32', shape: [], bytes: new Uint8Array(Float32Array.of(eps).buffer) });
  const inv = c.g.op('Rsqrt', [c.g.op('AddV2', [ms, eps32], {}, `${name}/ms_eps`)], {}, `${name}/inv`);
  return c.g.op('Mul', [c.g.op('Mul', [x, inv], {}, `${name}/normed`), gamma], {}, name);
}

/** Outputs beyond the first (mean, inverse std) are not computed; refuse when something reads them. */
function onlyOutputs(c: OpContext, used: number[]): void {
  c.node.outputs.forEach((v, i) => {
    if (!used.includes(i) && v.uses().length > 0) c.refuse(`output ${i} is used, which this target does not compute`);
  });
}

const simplifiedLayerNorm: Translate = (c) => {
  onlyOutputs(c, [0]);
  return [rmsNorm(c, c.input(0), c.input(1))];
};

/** com.microsoft::SkipSimplifiedLayerNormalization: s = input + skip (+ bias); outputs rmsNorm(s)·γ and, as output 3, s. */
const skipSimplifiedLayerNorm: Translate = (c) => {
  onlyOutputs(c, [0, 3]);
  const name = c.node.output().name;
  let sum = c.g.op('AddV2', [c.input(0), c.input(1)], {}, `${name}/skip_sum`);
  if (c.has(3)) sum = c.g.op('AddV2', [sum, c.input(3)], {}, `${name}/skip_sum_bias`);
  const y = rmsNorm(c, sum, c.input(2));
  return c.node.outputs.map((_, i) => (i === 3 ? sum : y));
};

const transpose: Translate = (c) => {
  const perm = c.node.attr('perm', 'ints') ?? c.refuse('has no perm (the default needs the rank)');
  return [c.g.op('Transpose', [c.input(0), c.g.int32(`${c.node.output().name}/perm`, perm)], {}, c.node.output().name)];
};

const softmax: Translate = (c) => {
  if (int(c, 'axis', -1) !== -1) c.refuse('is not over the last axis (axis = -1)');
  return [c.g.op('Softmax', [c.input(0)], {}, c.node.output().name)];
};

const cast: Translate = (c) => {
  const to = onnxTypeOfCode(int(c, 'to', 0));
  const d = (to && tfjsDtype(to)) || c.refuse(`casts to ONNX type ${int(c, 'to', 0)}, which TF.js cannot hold`);
  return [c.g.op('Cast', [c.input(0)], { DstT: attr.type(d) }, c.node.output().name)];
};

/** Expand broadcasts both ways (a 1 in the shape keeps the input's dim), TF's BroadcastTo one
 *  way: add a zero tensor of the target shape instead, which broadcasts both ways. (Not
 *  BroadcastArgs + BroadcastTo: tfjs's WebGPU backend computes BroadcastArgs on the GPU, and
 *  BroadcastTo then reads the shape back synchronously.) */
const expand: Translate = (c) => {
  const name = c.node.output().name;
  const d = c.dtype(c.node.input(0)!);
  const t = (d && tfjsDtype(d)) || c.refuse(`expands a tensor of type ${d ?? 'unknown'}`);
  const zero = c.g.constant(`${name}/zero`, { dtype: t, shape: [], bytes: t === 'bool' ? new Uint8Array(1) : new Uint8Array(4) });
  const zeros = c.g.op('Fill', [c.input(1), zero], { T: attr.type(t) }, `${name}/zeros`);
  return [c.g.op(t === 'bool' ? 'LogicalOr' : 'AddV2', [c.input(0), zeros], {}, name)];
};

const range: Translate = (c) => {
  const d = c.dtype(c.node.input(0)!);
  const known = d ? tfjsDtype(d) : undefined;
  const t = known && known !== 'bool' ? known : c.refuse(`has inputs of type ${d ?? 'unknown'}`);
  return [c.g.op('Range', [c.input(0), c.input(1), c.input(2)], { Tidx: attr.type(t) }, c.node.output().name)];
};

/** CumSum: tfjs's Cumsum takes no negative axis, so a negative one is resolved with the input's rank. */
const cumsum: Translate = (c) => {
  const name = c.node.output().name;
  let axis = c.input(1);
  const a = c.ints(1)?.[0];
  if (a !== undefined && a < 0) axis = c.g.int32(`${name}/axis`, [a + (c.rank(0) ?? c.refuse('has a negative axis on an input of unknown rank'))], []);
  return [c.g.op('Cumsum', [c.input(0), axis], { exclusive: attr.bool(int(c, 'exclusive', 0) === 1), reverse: attr.bool(int(c, 'reverse', 0) === 1) }, name)];
};

const gatherNd: Translate = (c) => {
  if (int(c, 'batch_dims', 0) !== 0) c.refuse('has batch_dims ≠ 0');
  return [c.g.op('GatherNd', [c.input(0), c.input(1)], {}, c.node.output().name)];
};

/** Clip with optional bounds, as Maximum/Minimum (TF's ClipByValue wants both). */
const clip: Translate = (c) => {
  let x = c.input(0);
  if (c.has(1)) x = c.g.op('Maximum', [x, c.input(1)], {}, c.node.output().name);
  if (c.has(2)) x = c.g.op('Minimum', [x, c.input(2)], {}, c.node.output().name);
  return [x];
};

/** ConstantOfShape: Fill(shape, value), value a one-element tensor attribute (default float 0). */
const constantOfShape: Translate = (c) => {
  const name = c.node.output().name;
  const v = c.node.attr('value', 'tensor');
  const d = v ? tfjsDtype(v.dtype) : 'float32';
  if (!d) return c.refuse(`fills with type ${v!.dtype}`);
  const x = v ? v.toNumbers()[0] : 0;
  const bytes = d === 'float32' ? new Uint8Array(Float32Array.of(x).buffer) : d === 'int32' ? new Uint8Array(Int32Array.of(x).buffer) : Uint8Array.of(x ? 1 : 0);
  return [c.g.op('Fill', [c.input(0), c.g.constant(`${name}/value`, { dtype: d, shape: [], bytes })], { T: attr.type(d) }, name)];
};

const matmul: Translate = (c) => [c.g.op('BatchMatMulV2', [c.input(0), c.input(1)], { adj_x: attr.bool(false), adj_y: attr.bool(false) }, c.node.output().name)];

export const ONNX_TO_TF: Record<string, Translate> = {
  Add: binary('AddV2'),
  Sub: binary('Sub'),
  Mul: binary('Mul'),
  Div: binary('Div'),
  Pow: binary('Pow'),
  Equal: binary('Equal'),
  Less: binary('Less'),
  LessOrEqual: binary('LessEqual'),
  Greater: binary('Greater'),
  GreaterOrEqual: binary('GreaterEqual'),
  And: binary('LogicalAnd'),
  Or: binary('LogicalOr'),
  Max: variadic('Maximum'),
  Min: variadic('Minimum'),
  Sum: variadic('AddV2'),
  Not: unary('LogicalNot'),
  Neg: unary('Neg'),
  Abs: unary('Abs'),
  Sqrt: unary('Sqrt'),
  Reciprocal: unary('Reciprocal'),
  Exp: unary('Exp'),
  Log: unary('Log'),
  Cos: unary('Cos'),
  Sin: unary('Sin'),
  Tanh: unary('Tanh'),
  Sigmoid: unary('Sigmoid'),
  Erf: unary('Erf'),
  Relu: unary('Relu'),
  Floor: unary('Floor'),
  Ceil: unary('Ceil'),
  // Both round half to even.
  Round: unary('Round'),
  IsNaN: unary('IsNan'),
  Identity: unary('Identity'),
  Where: (c) => [c.g.op('SelectV2', [c.input(0), c.input(1), c.input(2)], {}, c.node.output().name)],
  Cast: cast,
  Clip: clip,
  MatMul: matmul,
  Softmax: softmax,
  ReduceMean: reduce('Mean'),
  ReduceSum: reduce('Sum'),
  ReduceMax: reduce('Max'),
  ReduceMin: reduce('Min'),
  Shape: shape,
  Gather: gather,
  GatherND: gatherNd,
  Concat: concat,
  Slice: slice,
  Squeeze: squeeze,
  Unsqueeze: unsqueeze,
  Reshape: reshape,
  Transpose: transpose,
  Expand: expand,
  Range: range,
  ConstantOfShape: constantOfShape,
  CumSum: cumsum,
  SimplifiedLayerNormalization: simplifiedLayerNorm,
  RMSNormalization: simplifiedLayerNorm,
  'com.microsoft::SkipSimplifiedLayerNormalization': skipSimplifiedLayerNorm,
  'com.microsoft::MatMulNBits': (c) => [c.ternaryMatMul()],
};

