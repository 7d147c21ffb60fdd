// ONNX ModelProto <-> graph IR.
//
// Loading: the protobuf is decoded with twlac's own schema (proto/onnx.proto); names are
// resolved to Values through a scope chain (a subgraph sees its outer graphs' values).
// Tensors in external data become lazy `external` Tensors: only the file's size is checked
// at load, the bytes are read when somebody asks for them.
//
// Saving: the ModelProto that is built in memory holds only small tensors. Every tensor of
// at least `sizeThreshold` bytes goes to one external data file, 64-byte aligned, copied
// tensor by tensor in fixed-size chunks, so peak memory stays near one chunk whatever the
// size of the weights.
//
// Round trips: fields twlac does not interpret come back from protobufjs as `$unknowns`
// (encoded fields) and are kept in `meta.get(UNKNOWN_FIELDS)` of the Graph, Node or Value
// they belong to (and in `Model.opaqueFunctions` for ModelProto), then written back as is.
import { closeSync, existsSync, fstatSync, openSync, readSync, renameSync, statSync, unlinkSync, writeFileSync, writeSync } from 'node:fs';
import { basename, dirname, isAbsolute, resolve } from 'node:path';
import { UserError } from '../errors.ts';
import { readRegularFile, resolvesInside, statRegularFile } from '../util/files.ts';
import { Graph, Model, Node, Value, type AttrValue, type Dim, type ValueType } from './ir.ts';
import { DTYPES, Tensor, numel, rawByteLength, type DType } from './tensor.ts';
import {
  ATTR,
  AttributeProto,
  DATA_LOCATION_EXTERNAL,
  ModelProto,
  TypeProto,
  decodeKeepingUnknowns,
  encode,
  type AttributeMsg,
  type GraphMsg,
  type Int64,
  type ModelMsg,
  type NodeMsg,
  type TensorMsg,
  type TypeMsg,
  type ValueInfoMsg,
} from './proto/schema.ts';

/** Meta key (Graph, Node, Value): encoded protobuf fields twlac does not interpret, written back on save. */
const UNKNOWN_FIELDS = 'onnx.unknownFields';
/** Meta key (Value): the encoded TypeProto of a value whose type a `ValueType` cannot express (sequences, maps, ...). */
const TYPE_PROTO = 'onnx.typeProto';

const ALIGN = 64;
const COPY_CHUNK = 8 << 20;
/** protobuf messages cannot exceed 2 GiB. */
const PROTOBUF_LIMIT = 2 ** 31 - 1;

const DTYPE_BY_CODE = new Map<number, DType>(Object.entries(DTYPES).map(([k, v]) => [v.code, k as DType]));

// ------------------------------------------------------------------ loading

export function loadModel(path: string): Model {
  // A regular file no larger than a protobuf can be: a FIFO, a device or /dev/zero is refused unread.
  const bytes = readRegularFile(path, 'ONNX model', PROTOBUF_LIMIT);
  return decodeModel(bytes, dirname(resolve(path)), path);
}

/** Decode a ModelProto; `baseDir` is the folder external data locations are relative to. */
export function decodeModel(bytes: Uint8Array, baseDir: string, source = '<bytes>'): Model {
  const notOnnx = (why: string) => new UserError(`not an ONNX model: ${source}: ${why}`);
  if (bytes.byteLength === 0) throw notOnnx('the file is empty');
  let msg: ModelMsg;
  try {
    msg = decodeKeepingUnknowns<ModelMsg>(ModelProto, bytes);
  } catch (e) {
    throw notOnnx(`truncated or corrupt protobuf (${(e as Error).message})`);
  }
  if (!msg.graph) throw notOnnx('it has no graph');
  if (!has(msg, 'ir_version')) throw notOnnx('ir_version is missing');
  if (!msg.opset_import?.length) throw notOnnx('it imports no operator set');

  const ctx = new LoadContext(resolve(baseDir), source);
  const model = new Model(decodeGraph(msg.graph, undefined, ctx));
  model.irVersion = int(msg.ir_version);
  model.producerName = msg.producer_name ?? '';
  model.producerVersion = msg.producer_version ?? '';
  model.domain = msg.domain ?? '';
  model.modelVersion = int(msg.model_version);
  model.docString = msg.doc_string ?? '';
  model.opsetImports = msg.opset_import.map((o) => ({ domain: o.domain ?? '', version: int(o.version) }));
  for (const p of msg.metadata_props ?? []) model.metadataProps.set(p.key ?? '', p.value ?? '');
  model.opaqueFunctions = msg.$unknowns ?? [];
  model.baseDir = ctx.baseDir;
  return model;
}

class LoadContext {
  private sizes = new Map<string, number>();
  constructor(
    readonly baseDir: string,
    readonly source: string,
  ) {}

  invalid(why: string): UserError {
    return new UserError(`invalid ONNX model ${this.source}: ${why}`);
  }

  /**
   * Size of an external data file (cached per path). The file must be a regular file inside
   * the model's folder once symbolic links are resolved, as onnx's checker and onnxruntime
   * require: a model must not make twlac read (and copy into out/) files from elsewhere.
   */
  fileSize(path: string, what: string): number {
    let size = this.sizes.get(path);
    if (size === undefined) {
      if (!existsSync(path)) throw new UserError(`external data for ${what} is missing: ${path}`);
      if (!resolvesInside(path, this.baseDir)) throw new UserError(`external data for ${what} resolves outside the model's folder ${this.baseDir}: ${path}`);
      size = statRegularFile(path, `external data for ${what}`).size;
      this.sizes.set(path, size);
    }
    return size;
  }
}

/** Names visible in a graph: its own values, then those of the graphs around it. */
class Scope {
  private readonly values = new Map<string, Value>();
  constructor(private readonly parent: Scope | undefined) {}

  define(v: Value, ctx: LoadContext): void {
    if (this.values.has(v.name)) throw ctx.invalid(`value '${v.name}' is defined twice`);
    this.values.set(v.name, v);
  }

  local(name: string): Value | undefined {
    return this.values.get(name);
  }

  lookup(name: string): Value | undefined {
    return this.values.get(name) ?? this.parent?.lookup(name);
  }
}

function decodeGraph(msg: GraphMsg, parent: Scope | undefined, ctx: LoadContext): Graph {
  const g = new Graph();
  g.name = msg.name ?? '';
  g.docString = msg.doc_string ?? '';
  if (msg.$unknowns) g.meta.set(UNKNOWN_FIELDS, msg.$unknowns);
  const scope = new Scope(parent);

  for (const t of msg.initializer ?? []) {
    const name = t.name ?? '';
    if (scope.local(name)) throw ctx.invalid(`initializer '${name}' is defined twice`);
    const v = g.addInitializer(name, decodeTensor(t, ctx, `initializer '${name}'`));
    scope.define(v, ctx);
  }
  for (const vi of msg.input ?? []) {
    const name = vi.name ?? '';
    // Before IR 4 initializers were also listed as inputs; such an input is the initializer's value.
    let v = scope.local(name);
    if (!v) {
      v = new Value(name);
      g.reserveName(name);
      scope.define(v, ctx);
    }
    applyValueInfo(v, vi);
    g.inputs.push(v);
  }

  const nodeMsgs = msg.node ?? [];
  // All outputs exist before any node is built, so that nodes listed out of order and
  // subgraphs that read values of later outer nodes resolve.
  const outputs = nodeMsgs.map((n) =>
    (n.output ?? []).map((name) => {
      const v = new Value(name);
      if (name !== '') scope.define(v, ctx);
      return v;
    }),
  );
  nodeMsgs.forEach((n, i) => g.addNode(decodeNode(n, outputs[i], scope, ctx)));
  checkAcyclic(g, ctx);

  for (const vi of msg.output ?? []) {
    const v = scope.lookup(vi.name ?? '');
    if (!v) throw ctx.invalid(`graph output '${vi.name}' is not produced by any node, input or initializer`);
    applyValueInfo(v, vi);
    g.outputs.push(v);
  }
  for (const vi of msg.value_info ?? []) {
    const name = vi.name ?? '';
    const type = vi.type ? decodeType(vi.type) : undefined;
    if (type) g.valueInfo.set(name, type);
    const v = scope.local(name);
    if (v && !g.inputs.includes(v) && !g.outputs.includes(v)) applyValueInfo(v, vi);
  }
  return g;
}

/** Nodes may be listed in any order, but their data flow must not loop (Kahn's algorithm over the graph's own nodes). */
function checkAcyclic(g: Graph, ctx: LoadContext): void {
  const nodes = g.nodes;
  const index = new Map(nodes.map((n, i) => [n, i]));
  const waiting = nodes.map((n) => n.inputs.filter((v) => v?.producer() && index.has(v.producer()!)).length);
  const ready = nodes.filter((_, i) => waiting[i] === 0);
  let done = 0;
  while (ready.length) {
    const n = ready.pop()!;
    done++;
    for (const o of n.outputs) {
      for (const c of o.consumers()) {
        const i = index.get(c);
        if (i === undefined) continue;
        // A consumer reading this value k times was counted k times.
        waiting[i] -= c.inputs.filter((v) => v === o).length;
        if (waiting[i] === 0) ready.push(c);
      }
    }
  }
  if (done < nodes.length) {
    const stuck = nodes.find((_, i) => waiting[i] > 0)!;
    throw ctx.invalid(`the graph has a cycle: node '${stuck.name}' (${stuck.opType}) depends on its own output`);
  }
}

function decodeNode(msg: NodeMsg, outputs: Value[], scope: Scope, ctx: LoadContext): Node {
  const what = `node '${msg.name ?? ''}' (${msg.op_type})`;
  const inputs = (msg.input ?? []).map((name) => {
    if (name === '') return undefined;
    const v = scope.lookup(name);
    if (!v) throw ctx.invalid(`${what} reads '${name}', which no node, input or initializer defines`);
    return v;
  });
  const node = new Node(msg.op_type ?? '', inputs, outputs, msg.domain ?? '', msg.name ?? '');
  for (const a of msg.attribute ?? []) node.setAttr(a.name ?? '', decodeAttribute(a, scope, ctx, what));
  if (msg.$unknowns) node.meta.set(UNKNOWN_FIELDS, msg.$unknowns);
  return node;
}

function decodeAttribute(a: AttributeMsg, scope: Scope, ctx: LoadContext, what: string): AttrValue {
  const opaque = (): AttrValue => ({ type: 'opaque', value: encode(AttributeProto, a) });
  if (a.$unknowns || a.ref_attr_name) return opaque();
  switch (a.type) {
    case ATTR.FLOAT:
      return { type: 'float', value: a.f ?? 0 };
    case ATTR.INT: {
      const v = exactInt(a.i ?? 0);
      return v === undefined ? opaque() : { type: 'int', value: v };
    }
    case ATTR.STRING: {
      const s = utf8(a.s ?? new Uint8Array());
      return s === undefined ? opaque() : { type: 'string', value: s };
    }
    case ATTR.TENSOR: {
      if (!a.t || !DTYPE_BY_CODE.has(a.t.data_type ?? 0) || a.t.data_type === DTYPES.string.code) return opaque();
      return { type: 'tensor', value: decodeTensor(a.t, ctx, `attribute '${a.name}' of ${what}`) };
    }
    case ATTR.GRAPH:
      return a.g ? { type: 'graph', value: decodeGraph(a.g, scope, ctx) } : opaque();
    case ATTR.FLOATS:
      return { type: 'floats', value: a.floats ?? [] };
    case ATTR.INTS: {
      const v = (a.ints ?? []).map(exactInt);
      return v.some((x) => x === undefined) ? opaque() : { type: 'ints', value: v as number[] };
    }
    case ATTR.STRINGS: {
      const v = (a.strings ?? []).map(utf8);
      return v.some((x) => x === undefined) ? opaque() : { type: 'strings', value: v as string[] };
    }
    default:
      return opaque();
  }
}

function applyValueInfo(v: Value, vi: ValueInfoMsg): void {
  if (vi.type) {
    const t = decodeType(vi.type);
    if (t) v.type = t;
    else v.meta.set(TYPE_PROTO, encode(TypeProto, vi.type));
  }
  if (vi.$unknowns) v.meta.set(UNKNOWN_FIELDS, vi.$unknowns);
}

/** A tensor type that `ValueType` can express exactly, or undefined. */
function decodeType(t: TypeMsg): ValueType | undefined {
  const tt = t.tensor_type;
  if (!tt || t.$unknowns || tt.$unknowns) return undefined;
  const dtype = DTYPE_BY_CODE.get(tt.elem_type ?? 0);
  if (!dtype) return undefined;
  if (!tt.shape) return { dtype };
  if (tt.shape.$unknowns) return undefined;
  const shape: Dim[] = [];
  for (const d of tt.shape.dim ?? []) {
    if (has(d, 'dim_value')) shape.push(int(d.dim_value));
    else if (has(d, 'dim_param')) shape.push(d.dim_param);
    else shape.push(undefined);
  }
  return { dtype, shape };
}

function decodeTensor(t: TensorMsg, ctx: LoadContext, what: string): Tensor {
  const code = t.data_type ?? 0;
  const dtype = DTYPE_BY_CODE.get(code);
  if (!dtype || dtype === 'string') throw new UserError(`${ctx.source}: ${what} has element type ${code}, which twlac does not support`);
  if (has(t, 'segment')) throw new UserError(`${ctx.source}: ${what} is stored in segments, which twlac does not support`);
  const dims = (t.dims ?? []).map((d) => {
    const n = exactInt(d);
    if (n === undefined || n < 0) throw ctx.invalid(`${what} has a bad dimension ${String(d)}`);
    return n;
  });
  const want = rawByteLength(dtype, numel(dims));
  if (t.data_location === DATA_LOCATION_EXTERNAL) return externalTensor(t, dtype, dims, want, ctx, what);
  // A copy: raw_data is a view into the model file's buffer at any byte offset; tensors get
  // their own aligned storage.
  const bytes = has(t, 'raw_data') ? new Uint8Array(t.raw_data) : typedFieldBytes(t, dtype, numel(dims), ctx, what);
  if (bytes.byteLength !== want) {
    throw ctx.invalid(`${what} has ${bytes.byteLength} bytes of data, its shape [${dims.join(',')}] ${dtype} needs ${want}`);
  }
  return Tensor.fromBytes(dtype, dims, bytes);
}

function externalTensor(t: TensorMsg, dtype: DType, dims: number[], want: number, ctx: LoadContext, what: string): Tensor {
  const kv = new Map((t.external_data ?? []).map((e) => [e.key ?? '', e.value ?? '']));
  const location = kv.get('location');
  if (!location) throw ctx.invalid(`${what} is in external data but names no location`);
  // onnx's rule: a location is a relative path below the model's folder.
  if (isAbsolute(location) || /^[A-Za-z]:|^[\\/]/.test(location)) throw ctx.invalid(`${what}: external data location '${location}' is absolute; it must be relative to the model's folder`);
  if (location.split(/[\\/]/).includes('..')) throw ctx.invalid(`${what}: external data location '${location}' leaves the model's folder ('..')`);
  const path = resolve(ctx.baseDir, location);
  const num = (key: string): number | undefined => {
    const s = kv.get(key);
    if (s === undefined) return undefined;
    if (!/^\d+$/.test(s) || !Number.isSafeInteger(Number(s))) throw ctx.invalid(`${what}: external data ${key} '${s}' is not a byte count`);
    return Number(s);
  };
  const offset = num('offset') ?? 0;
  const size = ctx.fileSize(path, what);
  // Without a length the data runs to the end of the file; a well-formed file then holds exactly the tensor.
  const length = num('length') ?? Math.min(want, Math.max(0, size - offset));
  if (offset + length > size || length < want) {
    throw new UserError(`external data for ${what} is too short: ${path} has ${size} bytes, the tensor needs bytes ${offset}..${offset + want}`);
  }
  if (length !== want) throw ctx.invalid(`${what}: external data length ${length} does not match its shape [${dims.join(',')}] ${dtype} (${want} bytes)`);
  return new Tensor(dtype, dims, { kind: 'external', path, offset, length });
}

/** Raw little-endian bytes from the typed `*_data` fields, by onnx.proto's rules for each element type. */
function typedFieldBytes(t: TensorMsg, dtype: DType, n: number, ctx: LoadContext, what: string): Uint8Array {
  const bad = (field: string) => ctx.invalid(`${what} is ${dtype} but stores its data in ${field}`);
  const nonEmpty = (['float_data', 'int32_data', 'int64_data', 'double_data', 'uint64_data', 'string_data'] as const).filter((f) => (t[f]?.length ?? 0) > 0);
  if (nonEmpty.length > 1) throw ctx.invalid(`${what} stores data in several fields: ${nonEmpty.join(', ')}`);
  const field = nonEmpty[0];
  switch (dtype) {
    case 'float32':
      if (field && field !== 'float_data') throw bad(field);
      return asBytes(Float32Array.from(t.float_data ?? []));
    case 'float64':
      if (field && field !== 'double_data') throw bad(field);
      return asBytes(Float64Array.from(t.double_data ?? []));
    case 'int64': {
      if (field && field !== 'int64_data') throw bad(field);
      return int64Bytes(t.int64_data ?? [], 8);
    }
    case 'uint64':
    case 'uint32':
      if (field && field !== 'uint64_data') throw bad(field);
      return int64Bytes(t.uint64_data ?? [], DTYPES[dtype].bits / 8);
    default: {
      if (field && field !== 'int32_data') throw bad(field);
      const vals = t.int32_data ?? [];
      const bits = DTYPES[dtype].bits;
      if (bits >= 8) {
        const width = bits / 8;
        const out = new Uint8Array(vals.length * width);
        const dv = new DataView(out.buffer);
        vals.forEach((x, i) => {
          if (width === 4) dv.setInt32(i * 4, x, true);
          else if (width === 2) dv.setUint16(i * 2, x & 0xffff, true);
          else out[i] = x & 0xff;
        });
        return out;
      }
      // Sub-byte types: each int32 holds one packed byte (8/bits elements, first element in
      // the low bits). Writers that put one element per entry are accepted too.
      const packedLen = rawByteLength(dtype, n);
      if (vals.length === packedLen) return Uint8Array.from(vals, (x) => x & 0xff);
      if (vals.length === n) {
        const out = new Uint8Array(packedLen);
        const mask = (1 << bits) - 1;
        vals.forEach((x, i) => (out[(i * bits) >> 3] |= (x & mask) << ((i * bits) & 7)));
        return out;
      }
      throw ctx.invalid(`${what} has ${vals.length} int32_data entries; ${n} ${dtype} elements need ${packedLen} (packed) or ${n}`);
    }
  }
}

function int64Bytes(vals: Int64[], width: number): Uint8Array {
  const out = new Uint8Array(vals.length * width);
  const dv = new DataView(out.buffer);
  vals.forEach((x, i) => {
    const big = typeof x === 'number' ? BigInt(x) : BigInt.asUintN(64, (BigInt(x.high >>> 0) << 32n) | BigInt(x.low >>> 0));
    if (width === 8) dv.setBigUint64(i * 8, BigInt.asUintN(64, big), true);
    else dv.setUint32(i * 4, Number(BigInt.asUintN(32, big)), true);
  });
  return out;
}

// ------------------------------------------------------------------ saving

export interface SaveOptions {
  /** Name of the external data file, relative to the model's folder (default `<model file name>.data`); false keeps every tensor inline. */
  externalData?: string | false;
  /** Tensors of at least this many bytes go to the external data file (default 1024). */
  sizeThreshold?: number;
}

/** Encode a model whose tensors all fit in one protobuf (every tensor is written inline). */
export function encodeModel(model: Model): Uint8Array {
  let inline = 0;
  const bytes = encode(
    ModelProto,
    modelMsg(model, (t, name) => {
      inline += t.byteLength;
      if (inline > PROTOBUF_LIMIT) throw new UserError(`model is too large for one protobuf (over 2 GiB of tensors); save it with external data`);
      return inlineTensorMsg(t, name);
    }),
  );
  return bytes;
}

/**
 * Write `model` to `path`, with every initializer (of the main graph and of subgraphs) of at
 * least `sizeThreshold` bytes in one external data file beside it; tensors in node
 * attributes stay inline. The data file is written before the model file. If the data file
 * is one the model reads from, it is written under a temporary name and renamed, and the
 * model's tensors are pointed at the new file. Returns the size of each file written, by
 * absolute path.
 */
export function saveModel(model: Model, path: string, opts: SaveOptions = {}): { files: Record<string, number> } {
  const modelPath = resolve(path);
  const dir = dirname(modelPath);
  const threshold = opts.sizeThreshold ?? 1024;
  const dataName = opts.externalData === false ? undefined : (opts.externalData ?? `${basename(modelPath)}.data`);
  if (dataName !== undefined && (dataName === '' || isAbsolute(dataName))) {
    throw new UserError(`external data file name must be relative to the model's folder: '${dataName}'`);
  }
  const dataPath = dataName === undefined ? undefined : resolve(dir, dataName);
  const sources = externalSources(model);
  if ([...sources].some((p) => sameFile(p, modelPath))) {
    throw new UserError(`cannot save the model to ${modelPath}: that file holds external data of the model being saved`);
  }

  // Lay out the data file: offsets are assigned while the ModelProto is built.
  const plan: PlannedTensor[] = [];
  const placed = new Map<Tensor, number>();
  let end = 0;
  let inline = 0;
  const place = (t: Tensor, name: string): TensorMsg => {
    if (dataName !== undefined && t.byteLength >= threshold) {
      let offset = placed.get(t);
      if (offset === undefined) {
        offset = Math.ceil(end / ALIGN) * ALIGN;
        placed.set(t, offset);
        plan.push({ tensor: t, name, offset });
        end = offset + t.byteLength;
      }
      return {
        name,
        dims: [...t.dims],
        data_type: DTYPES[t.dtype].code,
        data_location: DATA_LOCATION_EXTERNAL,
        external_data: [
          { key: 'location', value: dataName },
          { key: 'offset', value: String(offset) },
          { key: 'length', value: String(t.byteLength) },
        ],
      };
    }
    inline += t.byteLength;
    if (inline > PROTOBUF_LIMIT) throw new UserError(`model is too large for one protobuf (over 2 GiB of inline tensors); save it with external data`);
    return inlineTensorMsg(t, name);
  };
  const modelBytes = encode(ModelProto, modelMsg(model, place));

  const files: Record<string, number> = {};
  if (dataPath !== undefined && plan.length > 0) {
    // Never write onto a file that is still being read: write beside it and rename.
    const overwritesSource = [...sources].some((p) => sameFile(p, dataPath));
    const target = overwritesSource ? `${dataPath}.tmp-${process.pid}` : dataPath;
    try {
      files[dataPath] = writeDataFile(target, plan);
      if (overwritesSource) {
        const repoint = repointTensors(model, dataPath, placed);
        renameSync(target, dataPath);
        repoint();
      }
    } catch (e) {
      if (overwritesSource && existsSync(target)) unlinkSync(target);
      throw e;
    }
  }
  writeFileSync(modelPath, modelBytes);
  files[modelPath] = modelBytes.byteLength;
  return { files };
}

interface PlannedTensor {
  tensor: Tensor;
  name: string;
  offset: number;
}

/** Copy every planned tensor into `path`, in chunks. Returns the file's size. */
function writeDataFile(path: string, plan: PlannedTensor[]): number {
  const out = openSync(path, 'w');
  const readers = new Map<string, number>();
  const chunk = Buffer.alloc(Math.min(COPY_CHUNK, Math.max(...plan.map((p) => p.tensor.byteLength))));
  let pos = 0;
  try {
    for (const { tensor, name, offset } of plan) {
      if (offset > pos) writeAll(out, new Uint8Array(offset - pos));
      const src = tensor.source;
      if (src.kind === 'bytes') {
        writeAll(out, src.bytes);
      } else {
        let fd = readers.get(src.path);
        if (fd === undefined) {
          try {
            fd = openSync(src.path, 'r');
          } catch (e) {
            throw new UserError(`external data for tensor '${name}' cannot be read: ${src.path}: ${(e as NodeJS.ErrnoException).code}`);
          }
          readers.set(src.path, fd);
        }
        for (let done = 0; done < src.length; ) {
          const r = readSync(fd, chunk, 0, Math.min(chunk.length, src.length - done), src.offset + done);
          if (r <= 0) throw new UserError(`external data for tensor '${name}' is too short: ${src.path} ends before byte ${src.offset + src.length}`);
          writeAll(out, chunk.subarray(0, r));
          done += r;
        }
      }
      pos = offset + tensor.byteLength;
    }
    return fstatSync(out).size;
  } finally {
    closeSync(out);
    for (const fd of readers.values()) closeSync(fd);
  }
}

function writeAll(fd: number, bytes: Uint8Array): void {
  for (let done = 0; done < bytes.byteLength; ) done += writeSync(fd, bytes, done, bytes.byteLength - done);
}

/**
 * After a data file that tensors of `model` read from is replaced, point those tensors at
 * the new file (or at their bytes, for ones that were written inline). Bytes are read
 * before the rename, the repointing is done after it.
 */
function repointTensors(model: Model, dataPath: string, placed: Map<Tensor, number>): () => void {
  const updates: (() => void)[] = [];
  forEachTensor(model, (t) => {
    const s = t.source;
    if (s.kind !== 'external' || !sameFile(s.path, dataPath)) return;
    const offset = placed.get(t);
    if (offset !== undefined) updates.push(() => (t.source = { kind: 'external', path: dataPath, offset, length: t.byteLength }));
    else {
      const bytes = t.bytes();
      updates.push(() => (t.source = { kind: 'bytes', bytes }));
    }
  });
  return () => updates.forEach((u) => u());
}

function externalSources(model: Model): Set<string> {
  const paths = new Set<string>();
  forEachTensor(model, (t) => {
    if (t.source.kind === 'external') paths.add(t.source.path);
  });
  return paths;
}

function forEachTensor(model: Model, fn: (t: Tensor) => void): void {
  const visitGraph = (g: Graph): void => {
    for (const v of g.initializers.values()) if (v.constValue) fn(v.constValue);
    for (const n of g.nodes) {
      for (const a of n.attributes.values()) {
        if (a.type === 'tensor') fn(a.value);
        else if (a.type === 'graph') visitGraph(a.value);
      }
    }
  };
  visitGraph(model.graph);
}

function sameFile(a: string, b: string): boolean {
  try {
    const sa = statSync(a);
    const sb = statSync(b);
    return sa.dev === sb.dev && sa.ino === sb.ino;
  } catch {
    return false;
  }
}

type PlaceTensor = (t: Tensor, name: string) => TensorMsg;

function modelMsg(model: Model, place: PlaceTensor): ModelMsg {
  return {
    ir_version: model.irVersion,
    producer_name: model.producerName,
    producer_version: model.producerVersion,
    domain: model.domain || undefined,
    model_version: model.modelVersion || undefined,
    doc_string: model.docString || undefined,
    graph: graphMsg(model.graph, place),
    opset_import: model.opsetImports.map((o) => ({ domain: o.domain, version: o.version })),
    metadata_props: [...model.metadataProps].map(([key, value]) => ({ key, value })),
    $unknowns: model.opaqueFunctions.length ? model.opaqueFunctions : undefined,
  };
}

function graphMsg(g: Graph, place: PlaceTensor): GraphMsg {
  const ioValues = new Set([...g.inputs, ...g.outputs]);
  const valueInfo: ValueInfoMsg[] = [];
  for (const v of g.initializers.values()) {
    // The type of an initializer is its tensor's, whatever a pass left in Value.type.
    const t = v.constValue!;
    if (g.valueInfo.has(v.name) && !ioValues.has(v)) valueInfo.push(valueInfoMsg(v, { dtype: t.dtype, shape: [...t.dims] }));
  }
  for (const n of g.nodes) {
    for (const v of n.outputs) {
      if (v.name === '' || ioValues.has(v)) continue;
      // value_info is written for values that had it at load (or that a pass registered in
      // graph.valueInfo), with the type the Value holds now: a value a pass made afresh
      // under an old name, without a type, gets no stale entry.
      if ((g.valueInfo.has(v.name) && v.type) || v.meta.has(TYPE_PROTO)) valueInfo.push(valueInfoMsg(v, v.type));
    }
  }
  return {
    node: g.nodes.map((n) => nodeMsg(n, place)),
    name: g.name,
    initializer: [...g.initializers.values()].map((v) => place(v.constValue!, v.name)),
    doc_string: g.docString || undefined,
    input: g.inputs.map((v) => valueInfoMsg(v, v.type)),
    output: g.outputs.map((v) => valueInfoMsg(v, v.type)),
    value_info: valueInfo,
    $unknowns: unknownFields(g.meta),
  };
}

function nodeMsg(n: Node, place: PlaceTensor): NodeMsg {
  return {
    input: n.inputs.map((v) => v?.name ?? ''),
    output: n.outputs.map((v) => v.name),
    name: n.name || undefined,
    op_type: n.opType,
    domain: n.domain || undefined,
    attribute: [...n.attributes].map(([name, a]) => attributeMsg(name, a, place)),
    $unknowns: unknownFields(n.meta),
  };
}

function attributeMsg(name: string, a: AttrValue, place: PlaceTensor): AttributeMsg {
  const enc = new TextEncoder();
  switch (a.type) {
    case 'float':
      return { name, type: ATTR.FLOAT, f: a.value };
    case 'int':
      return { name, type: ATTR.INT, i: a.value };
    case 'string':
      return { name, type: ATTR.STRING, s: enc.encode(a.value) };
    case 'tensor':
      return { name, type: ATTR.TENSOR, t: inlineTensorMsg(a.value) };
    case 'graph':
      return { name, type: ATTR.GRAPH, g: graphMsg(a.value, place) };
    case 'floats':
      return { name, type: ATTR.FLOATS, floats: a.value };
    case 'ints':
      return { name, type: ATTR.INTS, ints: a.value };
    case 'strings':
      return { name, type: ATTR.STRINGS, strings: a.value.map((s) => enc.encode(s)) };
    case 'opaque':
      return { ...decodeKeepingUnknowns<AttributeMsg>(AttributeProto, a.value), name };
  }
}

function valueInfoMsg(v: Value, type: ValueType | undefined): ValueInfoMsg {
  const typeProto = v.meta.get(TYPE_PROTO);
  return {
    name: v.name,
    type: type ? typeMsg(type) : typeProto instanceof Uint8Array ? decodeKeepingUnknowns<TypeMsg>(TypeProto, typeProto) : undefined,
    $unknowns: unknownFields(v.meta),
  };
}

function typeMsg(t: ValueType): TypeMsg {
  return {
    tensor_type: {
      elem_type: DTYPES[t.dtype].code,
      shape: t.shape && { dim: t.shape.map((d) => (typeof d === 'number' ? { dim_value: d } : typeof d === 'string' ? { dim_param: d } : {})) },
    },
  };
}

function inlineTensorMsg(t: Tensor, name?: string): TensorMsg {
  return { name, dims: [...t.dims], data_type: DTYPES[t.dtype].code, raw_data: t.bytes() };
}

function unknownFields(meta: Map<string, unknown>): Uint8Array[] | undefined {
  const u = meta.get(UNKNOWN_FIELDS);
  return Array.isArray(u) && u.length ? (u as Uint8Array[]) : undefined;
}

// ------------------------------------------------------------------ helpers

function has<T extends object, K extends keyof T>(o: T, k: K): o is T & Required<Pick<T, K>> {
  return Object.prototype.hasOwnProperty.call(o, k) && o[k] !== undefined && o[k] !== null;
}

/** An int64 as a number; undefined when it is not exactly representable. */
function exactInt(x: Int64): number | undefined {
  const n = typeof x === 'number' ? x : x.toNumber();
  if (!Number.isSafeInteger(n)) return undefined;
  return n;
}

function int(x: Int64 | undefined): number {
  if (x === undefined) return 0;
  return typeof x === 'number' ? x : x.toNumber();
}

function utf8(b: Uint8Array): string | undefined {
  try {
    return new TextDecoder('utf-8', { fatal: true, ignoreBOM: true }).decode(b);
  } catch {
    return undefined;
  }
}

function asBytes(a: Float32Array | Float64Array): Uint8Array {
  return new Uint8Array(a.buffer, a.byteOffset, a.byteLength);
}
