// The compiled ONNX graph (out/model.onnx, after lower-ort) → a TF GraphDef, node by node
// through the table in ops.ts. Each ternary linear (com.microsoft::MatMulNBits) becomes the
// custom op TwlacTernaryMatMul (src/runtime/tfjs/op.ts) over the format's own packed bytes,
// which the caller supplies (they are the bytes of weights.bin, not MatMulNBits' 2-bit
// re-packing). Any op, attribute form or type without a translation is refused here, at
// compile time, in one line that names the op and the target.
import { UserError } from '../../errors.ts';
import type { Model, Node, Value } from '../../graph/ir.ts';
import { Tensor as TensorClass, type DType, type Tensor } from '../../graph/tensor.ts';
import type { TernaryWeights } from '../../formats/ternary.ts';
import { TERNARY_MATMUL_OP } from '../../runtime/tfjs/op.ts';
import { attr, clampInt32, TF_DTYPE, TfGraph, type SignatureEntry } from './graphdef.ts';
import { ONNX_TO_TF, onnxTypeOfCode, tfjsDtype, type OpContext } from './ops.ts';

export interface TfTranslation {
  graph: TfGraph;
  /** The model's inputs and outputs by their ONNX names. */
  inputs: Record<string, SignatureEntry>;
  outputs: Record<string, SignatureEntry>;
}

const refuse = (what: string): never => {
  throw new UserError(`--target tfjs: ${what}`);
};

/** Largest integer constant that is written once per use (see `ref`). */
const SMALL_INT_CONST = 64;

const BOOL_OPS = new Set(['Equal', 'Less', 'LessOrEqual', 'Greater', 'GreaterOrEqual', 'And', 'Or', 'Not', 'IsNaN']);

/** Element type of an ONNX value: declared, constant, or from its producer. */
function dtypeOf(v: Value, memo = new Map<Value, DType | undefined>()): DType | undefined {
  if (memo.has(v)) return memo.get(v);
  let d = v.type?.dtype ?? v.constValue?.dtype;
  const p = v.producer();
  if (!d && p) {
    if (p.opType === 'Shape' || p.opType === 'Size') d = 'int64';
    else if (p.opType === 'Cast') d = onnxTypeOfCode(p.attr('to', 'int') ?? 0);
    else if (BOOL_OPS.has(p.opType)) d = 'bool';
    else if (p.opType === 'Where') d = p.input(1) && dtypeOf(p.input(1)!, memo);
    else if (p.input(0)) d = dtypeOf(p.input(0)!, memo);
  }
  memo.set(v, d);
  return d;
}

/** A constant tensor as a TF.js weight: int64 clamped into int32, float16 kept as fp16 bytes. */
function weightOf(t: Tensor, what: string) {
  const shape = [...t.dims];
  const d = tfjsDtype(t.dtype) ?? refuse(`${what} has type ${t.dtype}, which TF.js cannot hold`);
  if (t.dtype === 'float16') return { dtype: d, shape, bytes: t.bytes().slice(), quantization: { dtype: 'float16' as const } };
  if (t.dtype === 'float32' || t.dtype === 'bool') return { dtype: d, shape, bytes: t.bytes().slice() };
  if (d === 'float32') return { dtype: d, shape, bytes: new Uint8Array(t.toFloat32().buffer) };
  return { dtype: d, shape, bytes: new Uint8Array(clampInt32(t.toNumbers()).buffer) };
}

/** The packed ternary weights of a MatMulNBits node and the names of their tensors in
 *  weights.bin (the shard weights take the same names), or undefined when twlac did not write it. */
export type TernaryLookup = (node: Node) => { weights: TernaryWeights; names: { codes: string; scales: string; shifts?: string } } | undefined;

export function translateToTf(model: Model, ternaryOf: TernaryLookup): TfTranslation {
  const opset = model.opset('') ?? 0;
  if (opset < 13) refuse(`ONNX opset ${opset} is older than 13 (axes as inputs, Softmax over one axis), which this target translates`);
  const graph = model.graph;
  graph.topologicalSort();
  const g = new TfGraph();
  const refs = new Map<Value, string>();
  const memo = new Map<Value, DType | undefined>();

  const inputs: TfTranslation['inputs'] = {};
  for (const v of graph.inputs) {
    if (v.isConstant) continue;
    const d = (v.type && tfjsDtype(v.type.dtype)) || refuse(`model input ${v.name} has type ${v.type?.dtype ?? 'unknown'}`);
    const dims = (v.type!.shape ?? []).map((x) => (typeof x === 'number' ? x : null));
    const name = g.reserve(v.name.replace(/[^A-Za-z0-9_.\-/]/g, '_'));
    g.nodes.push({ name, op: 'Placeholder', input: [], attr: { dtype: attr.type(d), shape: attr.shape(dims) } });
    refs.set(v, name);
    inputs[v.name] = { name: `${name}:0`, dtype: TF_DTYPE[d], dims };
  }
  const outputNames = graph.outputs.map((v) => g.reserve(v.name.replace(/[^A-Za-z0-9_.\-/]/g, '_')));

  const ref = (v: Value): string => {
    const r = refs.get(v);
    if (r) return r;
    const t = v.constValue;
    if (!t) throw new Error(`TF graph: ${v.name} is used before it is computed`);
    const c = g.constant(v.name, weightOf(t, `initializer ${v.name}`));
    // Small integer constants (axes, shapes, bounds) get a Const node per use. tfjs reads
    // such inputs of shape ops on the CPU; a Const shared with a GPU op would have been
    // uploaded by then, and tfjs's WebGPU backend drops the CPU copy on upload, so the read
    // would become a synchronous GPU readback.
    if (!(/int/.test(t.dtype) && t.numel <= SMALL_INT_CONST)) refs.set(v, c);
    return c;
  };

  // Constant nodes become constants (so that axes, shapes and bounds they feed are known
  // at compile time, as initializers are).
  for (const node of graph.nodes) if (node.opType === 'Constant' && !node.domain) node.output().constValue = constantNodeValue(node);

  for (const node of graph.nodes) {
    if (node.opType === 'Constant' && !node.domain) continue;
    const op = node.qualifiedOp;
    const translate = ONNX_TO_TF[op] ?? refuse(`ONNX op ${op} (node ${node.name || node.output().name}) has no TF.js translation`);
    const ctx: OpContext = {
      g,
      node,
      input: (i) => ref(node.input(i) ?? ctx.refuse(`has no input ${i}`)),
      has: (i) => node.input(i) !== undefined && node.input(i)!.name !== '',
      rank: (i) => node.input(i)?.type?.shape?.length ?? node.input(i)?.constValue?.dims.length,
      ints: (i) => {
        const t = node.input(i)?.constValue;
        return t && /int/.test(t.dtype) ? t.toNumbers() : undefined;
      },
      dtype: (v) => dtypeOf(v, memo),
      refuse: (why) => refuse(`ONNX op ${op} (node ${node.name || node.output().name}) ${why}`),
      ternaryMatMul: () => ternaryMatMul(ctx, ternaryOf(node)),
    };
    const outs = translate(ctx);
    outs.forEach((r, i) => refs.set(node.output(i), r));
  }

  const outputs: TfTranslation['outputs'] = {};
  graph.outputs.forEach((v, i) => {
    g.nodes.push({ name: outputNames[i], op: 'Identity', input: [ref(v)], attr: {} });
    outputs[v.name] = { name: `${outputNames[i]}:0` };
  });
  return { graph: g, inputs, outputs };
}

/** The tensor of an ONNX Constant node (value, or one of the value_* scalar/list forms). */
function constantNodeValue(node: Node): Tensor {
  const t = node.attr('value', 'tensor');
  if (t) return t;
  const f = node.attr('value_float', 'float');
  if (f !== undefined) return TensorClass.fromFloat32([], Float32Array.of(f));
  const fs = node.attr('value_floats', 'floats');
  if (fs) return TensorClass.fromFloat32([fs.length], Float32Array.from(fs));
  const i = node.attr('value_int', 'int');
  if (i !== undefined) return TensorClass.fromInt64([], [i]);
  const is = node.attr('value_ints', 'ints');
  if (is) return TensorClass.fromInt64([is.length], is);
  return refuse(`ONNX op Constant (node ${node.name}) holds a value form this target does not read`);
}

/** MatMulNBits → TwlacTernaryMatMul(x, codes, scales[, shifts]) over the format's packed bytes. */
function ternaryMatMul(c: OpContext, found: ReturnType<TernaryLookup>): string {
  const n = c.node;
  if (!found) c.refuse('has no ternary linear in manifest.json (only twlac-compiled linears translate)');
  const { weights: w, names } = found;
  if (c.has(4) || c.has(5)) c.refuse('has g_idx or bias inputs');
  if (n.attr('K', 'int') !== w.cols || n.attr('N', 'int') !== w.rows) c.refuse(`is ${n.attr('N', 'int')}x${n.attr('K', 'int')} but its manifest linear is ${w.rows}x${w.cols}`);
  const words = new Uint8Array(Math.ceil(w.codes.byteLength / 4) * 4);
  words.set(w.codes);
  const fp16 = (a: Uint16Array, name: string) =>
    c.g.constant(name, { dtype: 'float32', shape: [a.length], bytes: new Uint8Array(a.buffer, a.byteOffset, a.byteLength).slice(), quantization: { dtype: 'float16' } });
  const inputs = [c.input(0), c.g.constant(names.codes, { dtype: 'int32', shape: [words.byteLength / 4], bytes: words }), fp16(w.scales, names.scales)];
  if (w.shifts) inputs.push(fp16(w.shifts, names.shifts ?? c.refuse('has shifts without a tensor name')));
  return c.g.op(TERNARY_MATMUL_OP, inputs, { format: attr.str(w.format.id), rows: attr.int(w.rows), cols: attr.int(w.cols) }, n.output().name);
}
