// A TensorFlow GraphDef as TF.js's model.json holds it (the JSON form of graph.proto that
// tfjs-converter's GraphModel reads), built node by node, plus the weights its Const nodes
// name. A node's inputs are tensor references: `name` (output 0) or `name:i`.

/** One AttrValue of a NodeDef, in the JSON form tfjs-converter parses. */
export type TfAttr =
  | { type: TfDtype }
  | { i: string }
  | { f: number }
  | { b: boolean }
  | { s: string }
  | { list: { i: string[] } }
  | { shape: { dim?: { size: string }[]; unknownRank?: boolean } };

export interface TfNodeDef {
  name: string;
  op: string;
  input: string[];
  attr: Record<string, TfAttr>;
}

/** TF.js tensor dtypes this emitter writes; everything ONNX holds maps to one of them. */
export type TfjsDtype = 'float32' | 'int32' | 'bool';
export type TfDtype = 'DT_FLOAT' | 'DT_INT32' | 'DT_BOOL';
export const TF_DTYPE: Record<TfjsDtype, TfDtype> = { float32: 'DT_FLOAT', int32: 'DT_INT32', bool: 'DT_BOOL' };

/** A weight of the manifest: `bytes` are exactly what goes into the shard. */
export interface TfWeight {
  name: string;
  shape: number[];
  dtype: TfjsDtype;
  bytes: Uint8Array;
  /** Stored as fp16 in the shard; tfjs widens it to float32 when it loads the model. */
  quantization?: { dtype: 'float16' };
}

export const attr = {
  type: (d: TfjsDtype): TfAttr => ({ type: TF_DTYPE[d] }),
  int: (n: number): TfAttr => ({ i: String(n) }),
  ints: (ns: readonly number[]): TfAttr => ({ list: { i: ns.map(String) } }),
  bool: (b: boolean): TfAttr => ({ b }),
  /** Strings are base64 in GraphDef JSON. */
  str: (s: string): TfAttr => ({ s: btoa(s) }),
  /** Dims; null for an unknown dim (-1 in TF). */
  shape: (dims: readonly (number | null)[]): TfAttr => ({ shape: { dim: dims.map((d) => ({ size: String(d ?? -1) })) } }),
};

export class TfGraph {
  readonly nodes: TfNodeDef[] = [];
  readonly weights: TfWeight[] = [];
  private readonly used = new Set<string>();

  /** Claim a name (graph inputs and outputs keep their ONNX names). */
  reserve(name: string): string {
    if (this.used.has(name)) throw new Error(`TF graph: name ${name} is taken`);
    this.used.add(name);
    return name;
  }

  /** A node name derived from `base`: TF's name charset, unique in the graph. */
  uniqueName(base: string): string {
    const clean = base.replace(/[^A-Za-z0-9_.\-/]/g, '_').replace(/^[^A-Za-z0-9.]+/, '') || 'node';
    let name = clean;
    for (let i = 1; this.used.has(name); i++) name = `${clean}_${i}`;
    this.used.add(name);
    return name;
  }

  /** Add a node; returns its name, which is also the reference to its output 0. */
  op(op: string, input: string[], attrs: Record<string, TfAttr> = {}, base = op): string {
    const name = this.uniqueName(base);
    this.nodes.push({ name, op, input, attr: attrs });
    return name;
  }

  /** A Const node whose value is the weight of the same name. */
  constant(base: string, w: Omit<TfWeight, 'name'>): string {
    const name = this.op('Const', [], { dtype: attr.type(w.dtype) }, base);
    this.weights.push({ name, ...w });
    return name;
  }

  /** An int32 Const; values outside int32 (ONNX's INT64_MAX "to the end") are clamped. */
  int32(base: string, values: readonly number[], shape: number[] = [values.length]): string {
    return this.constant(base, { dtype: 'int32', shape, bytes: new Uint8Array(clampInt32(values).buffer) });
  }
}

export function clampInt32(values: ArrayLike<number>): Int32Array {
  return Int32Array.from(values, (x) => Math.max(-(2 ** 31), Math.min(2 ** 31 - 1, x)));
}

/** TF.js's own shard size (tensorflowjs_converter's default). */
const SHARD_BYTES = 4 * 1024 * 1024;

/** model.json and its weight shards: the weights concatenated in manifest order, cut into shards. */
/** A model input or output of the signature: the TF tensor (`node:0`), and for inputs its dtype and dims (null = any). */
export interface SignatureEntry {
  name: string;
  dtype?: TfDtype;
  dims?: (number | null)[];
}

export function graphModelFiles(
  g: TfGraph,
  signature: { inputs: Record<string, SignatureEntry>; outputs: Record<string, SignatureEntry> },
  meta: { generatedBy: string; convertedBy: string },
): { modelJson: string; shards: { file: string; bytes: Uint8Array }[] } {
  const total = g.weights.reduce((a, w) => a + w.bytes.byteLength, 0);
  const all = new Uint8Array(total);
  let off = 0;
  for (const w of g.weights) {
    all.set(w.bytes, off);
    off += w.bytes.byteLength;
  }
  const n = Math.max(1, Math.ceil(total / SHARD_BYTES));
  const shards = Array.from({ length: n }, (_, i) => ({ file: `group1-shard${i + 1}of${n}.bin`, bytes: all.subarray(i * SHARD_BYTES, Math.min(total, (i + 1) * SHARD_BYTES)) }));
  const model = {
    format: 'graph-model',
    generatedBy: meta.generatedBy,
    convertedBy: meta.convertedBy,
    signature: {
      inputs: Object.fromEntries(
        Object.entries(signature.inputs).map(([k, v]) => [k, { name: v.name, dtype: v.dtype, tensorShape: { dim: (v.dims ?? []).map((d) => ({ size: String(d ?? -1) })) } }]),
      ),
      outputs: signature.outputs,
    },
    modelTopology: { node: g.nodes, library: {}, versions: { producer: 1 } },
    weightsManifest: [
      {
        paths: shards.map((s) => s.file),
        weights: g.weights.map((w) => ({ name: w.name, shape: w.shape, dtype: w.dtype, ...(w.quantization ? { quantization: w.quantization } : {}) })),
      },
    ],
  };
  return { modelJson: JSON.stringify(model), shards };
}
