// Streaming block-by-block calibration. The model is cut into one stage per block: stage i
// holds the nodes that block i's output needs and no earlier stage holds (stage 0 also holds
// the embedding); what does not depend on the token values (RoPE tables, masks) every stage
// recomputes. For every calibration batch the stream keeps the values that cross from stages
// ≤ i into later ones (the residual stream entering block i+1), in their own dtype, so
//
//   capture(i)  runs only stage i on the kept values and returns block i's statistics;
//   advance()   runs stage i again, with the weights as they are now (block i quantised),
//               and keeps its outputs as the input of stage i+1 (a pass that changes no
//               weight asks capture(i) to advance in the same run).
//
// So block i's Hessians are those a full-graph capture of the model whose blocks < i are
// quantised measures (bit for bit on fp32 exports; see blockEnd for fp16), with 2 block forwards per block instead of i+1 (O(depth) over the
// model instead of O(depth²)), and each ORT session holds one block's weights instead of the
// whole model's. Memory: the kept values are segments × seq × hidden in the stream's dtype
// (fp32: 1 GiB for 128 × 512 tokens of a 4096-wide model, fp16 half that; twice that where a
// Skip norm keeps both addends).
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import * as ort from 'onnxruntime-node';
import { describeInputMetadata, tokenFeeds, type InputInterface } from '../eval/ort-session.ts';
import { extractModel, readsOf, type Cut } from '../graph/extract.ts';
import { Node, Value, type Model, type ValueType } from '../graph/ir.ts';
import { saveModel } from '../graph/onnx.ts';
import { silentProgress, type Progress } from '../graph/pass.ts';
import type { Block, TransformerStructure } from '../graph/recognize.ts';
import { Rewriter } from '../graph/rewriter.ts';
import type { DType } from '../graph/tensor.ts';
import { addCaptureOutputs, SiteStatsCollector, type CaptureOutputs, type CaptureSite, type GramAccumulator, type SiteStats } from './capture.ts';

export interface StreamOptions {
  /** Segments per ORT run (default 4, as captureSites). */
  batch?: number;
}

export interface StreamCaptureOptions {
  sampleRows?: number;
  progress?: Progress;
  label?: string;
  gram?: (width: number) => GramAccumulator;
  /** Also advance the stream in the same run (the block's weights will not change before the stream moves on). */
  advance?: boolean;
}

/** What the stream needs of the recognised structure. */
export type StreamStructure = Pick<TransformerStructure, 'blocks' | 'embedding'>;

export interface Stage {
  nodes: Node[];
  /** Values of earlier stages this stage reads (kept by the stream). */
  kept: Value[];
  /** Graph inputs this stage reads (fed from the token ids). */
  fed: Value[];
  /** Values this stage computes that later stages read. */
  passes: Value[];
}

/**
 * The values that end block `b`: the stream it writes (or, under a Skip norm that adds it
 * without exposing the sum, both addends). An fp32 stream crosses the cut unchanged; an fp16
 * one is held in fp16 as the graph declares it, where onnxruntime may carry it in fp32 inside
 * the whole model (its fp16 fallbacks run in fp32 and drop the casts between them), so on
 * fp16 exports the statistics agree to fp16 rounding (~1e-4 relative), not to the bit.
 */
export function blockEnd(b: Block): Value[] {
  return b.residualOut ? [b.residualOut] : [b.residualMid, b.mlpDelta];
}

/**
 * Values that depend on the token ids' values (not merely on their shape): the embedding's
 * ids and everything computed from them, except through Shape and Size.
 */
function tokenDependent(model: Model, ids: Value): Set<Value> {
  const dep = new Set<Value>([ids]);
  for (const n of model.graph.nodes) {
    if (n.opType === 'Shape' || n.opType === 'Size') continue;
    if (readsOf(n).some((v) => dep.has(v))) for (const o of n.outputs) dep.add(o);
  }
  return dep;
}

/**
 * Stage i: the producers of `ends[i]` (block i's end; a caller may add a last stage, e.g. the
 * logits) not claimed by an earlier stage, in graph order. Nodes that do not depend on the
 * token values `ids` (RoPE tables, masks, position ids) are recomputed by every stage that
 * reads them instead of being kept: onnxruntime then sees each block's graph as it sees it
 * in the whole model and fuses it alike, so the stage computes what the whole model
 * computes, bit for bit.
 */
export function cutStages(model: Model, ends: Value[][], ids: Value): Stage[] {
  const dep = tokenDependent(model, ids);
  const isTable = (n: Node) => !n.outputs.some((o) => dep.has(o));
  const stageOf = new Map<Node, number>();
  const order = new Map(model.graph.nodes.map((n, k) => [n, k]));
  const nodes = ends.map((end, i) => {
    const own = new Set<Node>();
    const stack = end.map((v) => v.producer()!);
    while (stack.length) {
      const n = stack.pop()!;
      if (own.has(n) || (stageOf.has(n) && !isTable(n))) continue;
      if (!stageOf.has(n)) stageOf.set(n, i);
      own.add(n);
      for (const v of readsOf(n)) {
        const p = v.producer();
        if (p) stack.push(p);
      }
    }
    return [...own].sort((a, c) => order.get(a)! - order.get(c)!);
  });
  const inputs = new Set(model.graph.inputs);
  const stages: Stage[] = nodes.map((own) => {
    const kept = new Set<Value>();
    const fed = new Set<Value>();
    const mine = new Set(own);
    for (const n of own) {
      for (const v of readsOf(n)) {
        const p = v.producer();
        if (p && !mine.has(p)) kept.add(v);
        else if (!p && inputs.has(v)) fed.add(v);
      }
    }
    return { nodes: own, kept: [...kept], fed: [...fed], passes: [] };
  });
  for (const [j, s] of stages.entries()) {
    for (const v of s.kept) {
      const from = stageOf.get(v.producer()!)!;
      const passes = stages[from].passes;
      if (!passes.includes(v)) passes.push(v);
      if (from >= j) throw new Error(`calibration stream: stage ${j} reads ${v.name} from stage ${from}`);
    }
  }
  return stages;
}

const ORT_DTYPES: Partial<Record<string, DType>> = { float32: 'float32', float16: 'float16', int64: 'int64', int32: 'int32', bool: 'bool', uint8: 'uint8', int8: 'int8', float64: 'float64' };

function typeOf(v: Value, t: ort.Tensor): ValueType {
  const dtype = ORT_DTYPES[t.type];
  if (!dtype) throw new Error(`calibration stream: ${v.name} is a ${t.type} tensor`);
  // Batch and sequence sizes may differ between runs: every dimension symbolic.
  return { dtype, shape: t.dims.map((_, k) => `${v.name}_d${k}`) };
}

export class CalibrationStream {
  private readonly stages: Stage[];
  private readonly iface: InputInterface;
  /** Per batch, the values stages ≥ next read from earlier ones. */
  private kept: Map<Value, ort.Tensor>[];
  /** The stage whose input `kept` holds. */
  private next = 0;
  private readonly batch: number;
  private readonly seq: number;

  constructor(
    private readonly model: Model,
    structure: StreamStructure,
    private readonly segments: Int32Array[],
    opts: StreamOptions = {},
  ) {
    this.stages = cutStages(model, structure.blocks.map(blockEnd), structure.embedding.ids);
    this.batch = opts.batch ?? 4;
    this.seq = segments[0].length;
    this.kept = Array.from({ length: Math.ceil(segments.length / this.batch) }, () => new Map());
    const g = model.graph;
    const meta = g.inputs.map((v) => ({ name: v.name, isTensor: true as const, type: (v.type?.dtype ?? 'float32') as ort.Tensor.Type, shape: (v.type?.shape ?? []).map((d) => d ?? 'unk') }));
    // A calibration pass returns no present.* outputs, so none is required for a cache input.
    this.iface = describeInputMetadata('the model', meta, [], { requirePresent: false });
  }

  /** Block `block`'s statistics at `sites` (values of that block), from the kept stream. */
  async capture(block: number, sites: CaptureSite[], opts: StreamCaptureOptions = {}): Promise<Map<string, SiteStats>> {
    if (block !== this.next) throw new Error(`calibration stream: block ${block} asked for, the stream stands at block ${this.next}`);
    const stage = this.stages[block];
    const total = this.segments.length * this.seq;
    const collector = new SiteStatsCollector(sites, total, opts.sampleRows ?? 0, opts.gram);
    const progress = opts.progress ?? silentProgress;
    try {
      // A site is computed by the stage, or read from the stream (a Skip norm's output whose
      // node the previous stage holds, since it also writes that block's residual sum).
      const reach = new Set([...stage.nodes.flatMap((n) => n.outputs), ...stage.kept]);
      for (const s of sites) if (!reach.has(s.value)) throw new Error(`calibration stream: site ${s.id} is not computed in block ${block}'s stage`);
      progress.start(opts.label ?? `block ${block}: calibration`, this.segments.length);
      const keep = opts.advance ? this.keeper() : undefined;
      await this.runStage(stage, keep ? stage.passes : [], (cut) => {
        const names = new Map<string, CaptureOutputs>();
        const rw = new Rewriter(cut.model.graph);
        const outs: Value[] = [];
        for (const s of sites) {
          const c = addCaptureOutputs(rw, s, cut.map.get(s.value)!, collector.needsRows, collector.needsGram);
          outs.push(...c.outputs);
          names.set(s.id, c.names);
        }
        cut.model.graph.outputs = [...cut.model.graph.outputs, ...outs];
        cut.model.graph.removeDeadNodes();
        return (out, k, tokens) => {
          collector.add(out, names, tokens);
          keep?.add(out, k);
          progress.tick(tokens / this.seq);
        };
      });
      keep?.finish();
      progress.done(`${total} tokens`);
      return collector.finish();
    } finally {
      collector.release();
    }
  }

  /** Run the stage the stream stands at with the model's weights as they are now, and stand at the next. */
  async advance(opts: { progress?: Progress; label?: string } = {}): Promise<void> {
    const stage = this.stages[this.next];
    if (!stage) throw new Error('calibration stream: past the last block');
    const progress = opts.progress ?? silentProgress;
    progress.start(opts.label ?? `block ${this.next}: advance`, this.segments.length);
    const keep = this.keeper();
    // After the last block nothing reads the stream: there is nothing to run.
    if (stage.passes.length) {
      await this.runStage(stage, stage.passes, () => (out, k, tokens) => {
        keep.add(out, k);
        progress.tick(tokens / this.seq);
      });
    }
    keep.finish();
    progress.done();
  }

  /** Collects the current stage's outputs batch by batch; `finish` makes them the stream and moves it to the next stage. */
  private keeper(): { add(out: ort.InferenceSession.OnnxValueMapType, k: number): void; finish(): void } {
    const stage = this.stages[this.next];
    const later = new Set(this.stages.slice(this.next + 1).flatMap((s) => s.kept));
    const next: Map<Value, ort.Tensor>[] = this.kept.map(() => new Map());
    return {
      add: (out, k) => {
        for (const v of stage.passes) next[k].set(v, out[v.name]);
      },
      finish: () => {
        this.kept.forEach((m, k) => {
          for (const [v, t] of m) if (later.has(v)) next[k].set(v, t);
        });
        this.kept = next;
        this.next++;
      },
    };
  }

  /** Bytes the kept values hold now. */
  keptBytes(): number {
    let n = 0;
    for (const m of this.kept) for (const t of m.values()) n += (t.data as ArrayBufferView).byteLength;
    return n;
  }

  /**
   * Cut `stage` out of the model (its weights as they are now) with `passes` as its outputs,
   * let `outputs` change the cut's outputs and return the handler of each batch's results.
   */
  private async runStage(
    stage: Stage,
    passes: Value[],
    outputs: (cut: Cut) => (out: ort.InferenceSession.OnnxValueMapType, batchIndex: number, tokens: number) => void,
  ): Promise<void> {
    let handle: ReturnType<typeof outputs> | undefined;
    const session = await openStage(this.model, stage, this.kept[0], passes, (cut) => {
      handle = outputs(cut);
    });
    try {
      for (let k = 0; k * this.batch < this.segments.length; k++) {
        const tokens = batchTokenFeeds(this.iface, this.segments, this.batch, k);
        const feeds: Record<string, ort.Tensor> = {};
        for (const v of stage.fed) feeds[v.name] = tokens[v.name];
        for (const v of stage.kept) feeds[v.name] = this.kept[k].get(v)!;
        handle!(await session.run(feeds), k, Math.min(this.batch, this.segments.length - k * this.batch) * this.seq);
      }
    } finally {
      await session.release();
    }
  }
}

/** Token feeds of batch `k` of `segments` taken `batch` at a time. */
export function batchTokenFeeds(iface: InputInterface, segments: Int32Array[], batch: number, k: number): Record<string, ort.Tensor> {
  const chunk = segments.slice(k * batch, (k + 1) * batch);
  const seq = segments[0].length;
  const ids = new Int32Array(chunk.length * seq);
  chunk.forEach((c, j) => ids.set(c, j * seq));
  return tokenFeeds(iface, ids, chunk.length, seq);
}

/**
 * `stage` cut out of the model (its weights as they are now) with `outputs` as its outputs,
 * its kept inputs typed after the tensors of one batch (`kept`), `edit` given the cut before
 * it is saved; open in onnxruntime. Only this stage's weights are in the session.
 */
export async function openStage(
  model: Model,
  stage: Stage,
  kept: Map<Value, ort.Tensor>,
  outputs: Value[],
  edit?: (cut: Cut) => void,
): Promise<ort.InferenceSession> {
  const inputs = [...stage.fed.map((value) => ({ value })), ...stage.kept.map((value) => ({ value, type: typeOf(value, kept.get(value)!) }))];
  const cut = extractModel(model, stage.nodes, inputs, outputs);
  edit?.(cut);
  const dir = mkdtempSync(join(tmpdir(), 'twlac-stage-'));
  try {
    const path = join(dir, 'stage.onnx');
    saveModel(cut.model, path);
    return await ort.InferenceSession.create(path, { executionProviders: ['cpu'], graphOptimizationLevel: 'all' });
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
}

/**
 * Carry fp16 values between stages as fp32: each of `inputs` (declared fp32 by its kept
 * tensor) is cast to fp16 for the stage's nodes, each of `outputs` is cast to fp32 under its
 * own name. Inside a whole model onnxruntime's CPU runs fp16 ops in fp32 and drops the casts
 * between them, so the stream between blocks never rounds to fp16; with these casts it drops
 * the cut's too (a Cast to fp32 after an op run in fp32 and a Cast to fp16 before one both
 * vanish), and the stages compute what the whole model computes.
 */
export function carryHalfAsFloat(cut: Cut, inputs: Value[], outputs: Value[]): void {
  const g = cut.model.graph;
  const cast = (x: Value, to: number, out: Value) => g.addNode(new Node('Cast', [x], [out], '', `${out.name}.cast`).setAttr('to', { type: 'int', value: to }));
  for (const v of inputs) {
    const c = cut.map.get(v)!;
    const half = new Value(`${v.name}.half`, { dtype: 'float16', shape: c.type?.shape ? [...c.type.shape] : undefined });
    for (const u of c.uses()) u.node.setInput(u.index, half);
    cast(c, 10, half);
  }
  for (const v of outputs) {
    const c = cut.map.get(v)!;
    const wide = new Value(v.name, { dtype: 'float32', shape: c.type?.shape ? [...c.type.shape] : undefined });
    c.name = `${v.name}.half`;
    cast(c, 1, wide);
    g.outputs = g.outputs.map((o) => (o === c ? wide : o));
  }
  g.topologicalSort();
}

