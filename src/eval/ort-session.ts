// One onnxruntime-node session over a decoder-only LM, with its interface discovered from
// the session's input/output metadata rather than assumed. Two interfaces are recognised,
// by the conventions that exporters (torch dynamo, Optimum, onnxruntime-genai) follow:
//
//   plain:    input_ids [batch, seq]                       → logits [batch, seq, vocab]
//   KV cache: input_ids, attention_mask [batch, past+seq], position_ids [batch, seq],
//             past_key_values.{i}.key|value [batch, kvHeads, past, headDim]
//                                                         → logits, present.{i}.key|value
//
// A twlac output keeps its source's interface (it may add com.microsoft ops such as
// MatMulNBits, which the CPU provider runs). The token-id inputs may be int64 or int32; the
// cache may be float32 or float16 (logits in float16 are widened to float32 on return).
import { existsSync } from 'node:fs';
import * as ort from 'onnxruntime-node';
import { UserError } from '../errors.ts';
import { halfToFloat } from '../graph/tensor.ts';

export interface CacheSlot {
  /** Input name, e.g. past_key_values.0.key. */
  past: string;
  /** The output that carries it forward, e.g. present.0.key. */
  present: string;
  kvHeads: number;
  headDim: number;
  type: 'float32' | 'float16';
}

export interface OrtModel extends InputInterface {
  readonly path: string;
  readonly session: ort.InferenceSession;
  readonly kind: 'plain' | 'kv';
  readonly logits: string;
  /** From the logits output's last dimension when it is static, else learnt from the first run. */
  vocab: number | undefined;
}

export interface OpenOptions {
  /** ORT intra-op threads; default: onnxruntime's own choice (one per physical core). */
  threads?: number;
  /**
   * Let idle ORT worker threads spin (onnxruntime's default). Off by default here: on a
   * small shared machine spinning threads take cores from every other process.
   */
  spin?: boolean;
}

export async function openModel(path: string, opts: OpenOptions = {}): Promise<OrtModel> {
  if (!existsSync(path)) throw new UserError(`model file not found: ${path}`);
  let session: ort.InferenceSession;
  try {
    session = await ort.InferenceSession.create(path, {
      executionProviders: ['cpu'],
      graphOptimizationLevel: 'all',
      // onnxruntime's own log lines would add to twlac's one-line errors; failures are reported by twlac.
      logSeverityLevel: 4,
      ...(opts.threads ? { intraOpNumThreads: opts.threads } : {}),
      extra: { session: { intra_op: { allow_spinning: opts.spin ? '1' : '0' }, inter_op: { allow_spinning: opts.spin ? '1' : '0' } } },
    });
  } catch (e) {
    throw new UserError(`onnxruntime could not load ${path}: ${firstLine((e as Error).message)}`);
  }
  return describeSession(path, session);
}

/** The token-side interface of a session: what `tokenFeeds` needs to feed it. */
/**
 * Refuse a model onnxruntime cannot load (graph checks, type inference, kernel lookup; no
 * optimisation, one thread). The compiler runs this on what it wrote before putting it in
 * place, so that a damaged source cannot "compile" into an output nobody can run.
 */
export async function checkOrtLoads(path: string, what: string): Promise<void> {
  let session: ort.InferenceSession;
  try {
    session = await ort.InferenceSession.create(path, {
      executionProviders: ['cpu'],
      graphOptimizationLevel: 'disabled',
      intraOpNumThreads: 1,
      interOpNumThreads: 1,
      // Its own log lines would break the one-line error contract; the failure is reported below.
      logSeverityLevel: 4,
    });
  } catch (e) {
    throw new UserError(`onnxruntime cannot load ${what}: ${firstLine((e as Error).message).replace(/^.*?failed:\s*/, '')}`);
  }
  await session.release();
}

export interface InputInterface {
  readonly inputIds: { name: string; type: 'int64' | 'int32' };
  readonly attentionMask?: { name: string; type: 'int64' | 'int32' };
  readonly positionIds?: { name: string; type: 'int64' | 'int32' };
  /** Empty for a plain model. */
  readonly cache: CacheSlot[];
}

export interface DescribeInputsOptions {
  /** Inputs the caller feeds itself (e.g. a search's knobs); they are not refused. */
  ignore?: (name: string) => boolean;
  /** Require a present.* output for every cache input (default true; calibration models drop them). */
  requirePresent?: boolean;
}

/** Recognises the inputs of an open session; refuses any input it would not know how to feed. */
export function describeInputs(path: string, session: ort.InferenceSession, opts: DescribeInputsOptions = {}): InputInterface {
  return describeInputMetadata(path, session.inputMetadata, session.outputNames, opts);
}

/** `describeInputs` from the inputs' metadata and the output names (of a session, or of a graph not loaded into one). */
export function describeInputMetadata(
  path: string,
  inputMetadata: readonly ort.InferenceSession.ValueMetadata[],
  outputNames: readonly string[],
  opts: DescribeInputsOptions = {},
): InputInterface {
  const inputs = new Map(inputMetadata.filter((m) => !opts.ignore?.(m.name)).map((m) => [m.name, m]));
  const outputs = new Set(outputNames);
  const bad = (what: string) => new UserError(`${path}: ${what}`);

  const intInput = (name: string) => {
    const m = inputs.get(name);
    if (!m) return undefined;
    if (!m.isTensor || (m.type !== 'int64' && m.type !== 'int32')) {
      throw bad(`input ${name} must be an int64 or int32 tensor, got ${m.isTensor ? m.type : 'a non-tensor'}`);
    }
    inputs.delete(name);
    return { name, type: m.type as 'int64' | 'int32' };
  };
  const inputIds = intInput('input_ids');
  if (!inputIds) throw bad(`no input_ids input (inputs: ${inputMetadata.map((m) => m.name).join(', ')})`);
  const attentionMask = intInput('attention_mask');
  const positionIds = intInput('position_ids');

  const cache: CacheSlot[] = [];
  for (const [name, m] of [...inputs]) {
    const hit = /^past_key_values\.(\d+)\.(key|value)$/.exec(name) ?? /^past\.(\d+)\.(key|value)$/.exec(name);
    if (!hit) continue;
    const present = `present.${hit[1]}.${hit[2]}`;
    if ((opts.requirePresent ?? true) && !outputs.has(present)) throw bad(`cache input ${name} has no matching output ${present}`);
    if (!m.isTensor || (m.type !== 'float32' && m.type !== 'float16')) throw bad(`cache input ${name} must be float32 or float16`);
    const shape = m.shape;
    if (shape.length !== 4 || typeof shape[1] !== 'number' || typeof shape[3] !== 'number') {
      throw bad(`cache input ${name} must have shape [batch, kvHeads, past, headDim] with static kvHeads and headDim, got [${shape.join(', ')}]`);
    }
    cache.push({ past: name, present, kvHeads: shape[1], headDim: shape[3], type: m.type });
    inputs.delete(name);
  }
  if (inputs.size > 0) throw bad(`unsupported model inputs: ${[...inputs.keys()].join(', ')}`);
  if (cache.length > 0 && !attentionMask) throw bad('a KV-cache model needs an attention_mask input');
  return { inputIds, attentionMask, positionIds, cache };
}

/** Recognises the interface of an open session (exported for tests of odd interfaces). */
function describeSession(path: string, session: ort.InferenceSession): OrtModel {
  const outputs = new Map(session.outputMetadata.map((m) => [m.name, m]));
  const bad = (what: string) => new UserError(`${path}: ${what}`);
  const { inputIds, attentionMask, positionIds, cache } = describeInputs(path, session);
  const logitsName = outputs.has('logits') ? 'logits' : session.outputNames[0];
  const lm = outputs.get(logitsName);
  if (!lm || !lm.isTensor || (lm.type !== 'float32' && lm.type !== 'float16') || lm.shape.length !== 3) {
    throw bad(`output ${logitsName} is not float logits [batch, seq, vocab]`);
  }
  const lastDim = lm.shape[2];
  return {
    path,
    session,
    kind: cache.length > 0 ? 'kv' : 'plain',
    inputIds,
    attentionMask,
    positionIds,
    cache,
    logits: logitsName,
    vocab: typeof lastDim === 'number' ? lastDim : undefined,
  };
}

export interface ForwardResult {
  /** [batch, seq, vocab], float32. */
  logits: Float32Array;
  vocab: number;
  /** present.* outputs by their matching past input name (KV models only). */
  presents: Map<string, ort.Tensor>;
}

/**
 * One ORT run on `batch` rows of `seq` token ids (row-major in `ids`). For a KV model,
 * `past` holds the cache of `pastLen` earlier positions (shared by all rows, same length);
 * without it the cache is empty. Positions count on from `pastLen`, the mask is all ones.
 */
export async function forward(
  model: OrtModel,
  ids: ArrayLike<number>,
  batch: number,
  seq: number,
  past?: { tensors: Map<string, ort.Tensor>; length: number },
): Promise<ForwardResult> {
  if (ids.length !== batch * seq) throw new Error(`forward: ${ids.length} ids for batch ${batch} × seq ${seq}`);
  if (model.vocab !== undefined) {
    for (let i = 0; i < ids.length; i++) {
      if (!(ids[i] >= 0 && ids[i] < model.vocab)) throw new UserError(`token id ${ids[i]} is outside ${model.path}'s vocabulary of ${model.vocab}: is the tokenizer the model's own?`);
    }
  }
  const feeds = tokenFeeds(model, ids, batch, seq, past);
  const fetches = [model.logits, ...model.cache.map((s) => s.present)];
  let out: ort.InferenceSession.OnnxValueMapType;
  try {
    out = await model.session.run(feeds, fetches);
  } catch (e) {
    throw new UserError(`onnxruntime failed to run ${model.path}: ${firstLine((e as Error).message)}`);
  }
  const lt = out[model.logits];
  const vocab = lt.dims[2];
  if (lt.dims.length !== 3 || lt.dims[0] !== batch || lt.dims[1] !== seq) {
    throw new Error(`${model.path}: logits came back as [${lt.dims.join(', ')}], expected [${batch}, ${seq}, vocab]`);
  }
  model.vocab ??= vocab;
  const presents = new Map<string, ort.Tensor>();
  for (const slot of model.cache) presents.set(slot.past, out[slot.present]);
  return { logits: toFloat32(lt), vocab, presents };
}

/**
 * Logits of equal-length token windows, batched into one ORT run: returns
 * [windows.length, seq, vocab] as one Float32Array. For calibration and evaluation alike.
 */
export async function windowLogits(model: OrtModel, windows: ArrayLike<number>[]): Promise<{ logits: Float32Array; vocab: number }> {
  if (windows.length === 0) throw new Error('windowLogits: no windows');
  const seq = windows[0].length;
  const ids = new Int32Array(windows.length * seq);
  windows.forEach((w, i) => {
    if (w.length !== seq) throw new Error(`windowLogits: window ${i} has ${w.length} ids, window 0 has ${seq}`);
    ids.set(w, i * seq);
  });
  const r = await forward(model, ids, windows.length, seq);
  return { logits: r.logits, vocab: r.vocab };
}

/**
 * Feeds for `batch` rows of `seq` token ids: input_ids, an all-ones attention mask over
 * past + seq, positions counting on from the past length, and the past cache (empty when
 * none is given). Used by every session twlac runs, with logits or without.
 */
export function tokenFeeds(
  iface: InputInterface,
  ids: ArrayLike<number>,
  batch: number,
  seq: number,
  past?: { tensors: Map<string, ort.Tensor>; length: number },
): Record<string, ort.Tensor> {
  const feeds: Record<string, ort.Tensor> = {};
  feeds[iface.inputIds.name] = intTensor(iface.inputIds.type, ids, [batch, seq]);
  const pastLen = past?.length ?? 0;
  if (iface.attentionMask) {
    const total = pastLen + seq;
    feeds[iface.attentionMask.name] = intTensor(iface.attentionMask.type, new Array<number>(batch * total).fill(1), [batch, total]);
  }
  if (iface.positionIds) {
    const pos = new Array<number>(batch * seq);
    for (let b = 0; b < batch; b++) for (let t = 0; t < seq; t++) pos[b * seq + t] = pastLen + t;
    feeds[iface.positionIds.name] = intTensor(iface.positionIds.type, pos, [batch, seq]);
  }
  for (const slot of iface.cache) {
    const given = past?.tensors.get(slot.past);
    if (given) feeds[slot.past] = given;
    else {
      if (pastLen !== 0) throw new Error(`tokenFeeds: no past tensor for ${slot.past}`);
      const dims = [batch, slot.kvHeads, 0, slot.headDim];
      feeds[slot.past] = slot.type === 'float16' ? new ort.Tensor('float16', new Uint16Array(0), dims) : new ort.Tensor('float32', new Float32Array(0), dims);
    }
  }
  return feeds;
}

function intTensor(type: 'int64' | 'int32', values: ArrayLike<number>, dims: number[]): ort.Tensor {
  if (type === 'int32') return new ort.Tensor('int32', Int32Array.from(values), dims);
  const data = new BigInt64Array(values.length);
  for (let i = 0; i < values.length; i++) data[i] = BigInt(values[i]);
  return new ort.Tensor('int64', data, dims);
}

function toFloat32(t: ort.Tensor): Float32Array {
  if (t.type === 'float32') return t.data as Float32Array;
  if (t.type === 'float16') {
    // Uint16Array of raw bits, or a Float16Array where the runtime has one: same bytes.
    const src = t.data as unknown as { buffer: ArrayBuffer; byteOffset: number; length: number };
    const bits = src instanceof Uint16Array ? src : new Uint16Array(src.buffer, src.byteOffset, src.length);
    const out = new Float32Array(bits.length);
    for (let i = 0; i < bits.length; i++) out[i] = halfToFloat(bits[i]);
    return out;
  }
  throw new Error(`logits of type ${t.type} are not supported`);
}

function firstLine(s: string): string {
  return s.split('\n')[0];
}
