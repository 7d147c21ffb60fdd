// Calibration statistics from onnxruntime runs. For each capture site (a linear's input
// value) the calibration model computes, inside ORT, the Gram matrix Σ_tokens x xᵀ of that
// batch (MatMul(xᵀ, x) on the [tokens, width] view), so the heavy O(tokens·width²) work runs
// in ORT's GEMM rather than in JS. Graph outputs other than the sites are dropped, and with
// them every node the sites do not need (later blocks, the lm_head).
//
//   H = 2 XᵀX / n   (the proxy Hessian of METHOD.md), accumulated in float64.
// With a `gram` accumulator (the GPU path, src/gpu/ops.ts) the model returns the sites' rows
// instead and the accumulator sums XᵀX on the device.
// Optionally a uniform sample of token rows is kept per site (for clip searches).
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import * as ort from 'onnxruntime-node';
import { cloneModel } from '../graph/clone.ts';
import type { Model, Value } from '../graph/ir.ts';
import { Rewriter } from '../graph/rewriter.ts';
import { saveModel } from '../graph/onnx.ts';
import { Tensor } from '../graph/tensor.ts';
import type { Progress } from '../graph/pass.ts';
import { silentProgress } from '../graph/pass.ts';
import { describeInputs, tokenFeeds } from '../eval/ort-session.ts';

export interface CaptureSite {
  id: string;
  /** The activation value (in the model passed to `captureSites`). */
  value: Value;
  width: number;
}

export interface SiteStats {
  /** Σ x xᵀ over all captured tokens, [width, width], float64. */
  gram: Float64Array;
  tokens: number;
  /** Sampled token rows [sampleRows, width] (when asked for). */
  samples?: Float32Array;
  sampleRows: number;
}

export interface CaptureOptions {
  /** Segments per ORT run. */
  batch?: number;
  /** Token rows to keep per site (0: none). */
  sampleRows?: number;
  progress?: Progress;
  label?: string;
  /** Extra constant feeds (e.g. activation-precision knobs that are graph inputs). */
  extraFeeds?: Record<string, ort.Tensor>;
  /** Accumulate each site's Gram matrix here instead of inside onnxruntime. */
  gram?: (width: number) => GramAccumulator;
}

/** Σ x xᵀ over the token rows it is given. */
export interface GramAccumulator {
  add(rows: Float32Array, tokens: number): void;
  /** The full symmetric sum, float64. */
  read(): Float64Array;
  release(): void;
}

/** H = 2·gram/n from accumulated statistics (into `h` when given). */
export function hessian(s: SiteStats, h: Float64Array = new Float64Array(s.gram.length)): Float64Array {
  const f = 2 / Math.max(1, s.tokens);
  for (let i = 0; i < h.length; i++) h[i] = s.gram[i] * f;
  return h;
}

/** Names of the outputs that return one site's statistics from a capture model. */
export interface CaptureOutputs {
  gram?: string;
  rows?: string;
}

/**
 * Append to `rw`'s graph the outputs of one site read at `x`: its Gram matrix (MatMul(xᵀ, x)
 * on the [tokens, width] view) and/or its rows, widened to float32.
 */
export function addCaptureOutputs(rw: Rewriter, site: { id: string; width: number }, v: Value, withRows: boolean, withGram: boolean): { outputs: Value[]; names: CaptureOutputs } {
  const g = rw.graph;
  let x = rw.b.op('Reshape', [v, rw.init(`twlac.cap.${site.id}.shape`, Tensor.fromInt64([2], [-1, site.width]))]);
  // Always widen to float32: values made by passes carry no type, and Cast to the same type is a no-op.
  x = rw.b.op('Cast', [x], { attrs: { to: 1 } });
  const outputs: Value[] = [];
  const names: CaptureOutputs = {};
  if (withGram) {
    const gram = rw.b.op('MatMul', [rw.b.op('Transpose', [x], { attrs: { perm: [1, 0] } }), x], { outputNames: [`twlac.gram.${site.id}`] });
    gram.type = { dtype: 'float32', shape: [site.width, site.width] };
    outputs.push(gram);
    names.gram = gram.name;
  }
  if (withRows) {
    x.name = g.uniqueName(`twlac.rows.${site.id}`);
    x.type = { dtype: 'float32', shape: ['tokens', site.width] };
    outputs.push(x);
    names.rows = x.name;
  }
  return { outputs, names };
}

/** A model whose outputs are, per site, the Gram matrix and/or the rows of that site. */
export function buildCaptureModel(model: Model, sites: CaptureSite[], withRows: boolean, withGram = true): { model: Model; outputs: Map<string, CaptureOutputs> } {
  const { model: m, map } = cloneModel(model);
  const g = m.graph;
  const rw = new Rewriter(g);
  const outs: Value[] = [];
  const names = new Map<string, CaptureOutputs>();
  for (const s of sites) {
    const v = map.get(s.value);
    if (!v) throw new Error(`capture site ${s.id}: value not in model`);
    const c = addCaptureOutputs(rw, s, v, withRows, withGram);
    outs.push(...c.outputs);
    names.set(s.id, c.names);
  }
  g.outputs = outs;
  g.removeDeadNodes();
  return { model: m, outputs: names };
}

/**
 * Per-site statistics summed over the batches of one calibration pass, in batch order (so
 * that the same batches give the same float64 sums, whichever model computed them): the
 * Gram matrix (from onnxruntime, or from a `gram` accumulator fed the rows) and a uniform
 * sample of token rows (every stride-th token of the whole pass).
 */
export class SiteStatsCollector {
  readonly stats = new Map<string, SiteStats>();
  private readonly accs: Map<string, GramAccumulator>;
  private readonly stride: number;
  private seen = 0;

  constructor(
    private readonly sites: readonly { id: string; width: number }[],
    totalTokens: number,
    private readonly sampleRows: number,
    gram?: (width: number) => GramAccumulator,
  ) {
    this.accs = new Map(gram ? sites.map((s) => [s.id, gram(s.width)]) : []);
    // Keep every `stride`-th token row, so samples spread over the whole calibration set.
    this.stride = sampleRows ? Math.max(1, Math.floor(totalTokens / sampleRows)) : 0;
    for (const s of sites) this.stats.set(s.id, { gram: new Float64Array(s.width * s.width), tokens: 0, sampleRows: 0, samples: sampleRows ? new Float32Array(sampleRows * s.width) : undefined });
  }

  /** Whether the capture model must return rows (samples, or a device-side Gram). */
  get needsRows(): boolean {
    return this.sampleRows > 0 || this.accs.size > 0;
  }

  get needsGram(): boolean {
    return this.accs.size === 0;
  }

  /** One batch of `tokens` rows: the run's outputs, by the names of `outputs`. */
  add(out: Record<string, { data: unknown }>, outputs: Map<string, CaptureOutputs>, tokens: number): void {
    for (const s of this.sites) {
      const st = this.stats.get(s.id)!;
      const names = outputs.get(s.id)!;
      const rows = () => out[names.rows!].data as Float32Array;
      const acc = this.accs.get(s.id);
      if (acc) acc.add(rows(), tokens);
      else {
        const gram = out[names.gram!].data as Float32Array;
        for (let k = 0; k < gram.length; k++) st.gram[k] += gram[k];
      }
      st.tokens += tokens;
      if (st.samples) {
        const r = rows();
        for (let t = 0; t < tokens; t++) {
          const global = this.seen + t;
          if (global % this.stride !== 0 || st.sampleRows >= this.sampleRows) continue;
          st.samples.set(r.subarray(t * s.width, (t + 1) * s.width), st.sampleRows * s.width);
          st.sampleRows++;
        }
      }
    }
    this.seen += tokens;
  }

  /** The statistics, with device-side Grams read back. */
  finish(): Map<string, SiteStats> {
    for (const [id, acc] of this.accs) this.stats.get(id)!.gram = acc.read();
    return this.stats;
  }

  release(): void {
    for (const acc of this.accs.values()) acc.release();
  }
}

/** Run `model` over calibration segments and return per-site statistics. */
export async function captureSites(model: Model, sites: CaptureSite[], segments: Int32Array[], opts: CaptureOptions = {}): Promise<Map<string, SiteStats>> {
  const batch = opts.batch ?? 4;
  const progress = opts.progress ?? silentProgress;
  const seq = segments[0].length;
  const totalTokens = segments.length * seq;
  const collector = new SiteStatsCollector(sites, totalTokens, opts.sampleRows ?? 0, opts.gram);
  const cap = buildCaptureModel(model, sites, collector.needsRows, collector.needsGram);
  const dir = mkdtempSync(join(tmpdir(), 'twlac-calib-'));
  try {
    const path = join(dir, 'calib.onnx');
    saveModel(cap.model, path);
    const session = await ort.InferenceSession.create(path, { executionProviders: ['cpu'], graphOptimizationLevel: 'all' });
    // The knobs in extraFeeds are the caller's; the capture model keeps no present.* outputs.
    const iface = describeInputs(path, session, { requirePresent: false, ignore: (n) => n in (opts.extraFeeds ?? {}) });
    progress.start(opts.label ?? 'calibration', segments.length);
    for (let i = 0; i < segments.length; i += batch) {
      const chunk = segments.slice(i, i + batch);
      const ids = new Int32Array(chunk.length * seq);
      chunk.forEach((c, j) => ids.set(c, j * seq));
      const feeds = { ...tokenFeeds(iface, ids, chunk.length, seq), ...(opts.extraFeeds ?? {}) };
      collector.add(await session.run(feeds), cap.outputs, chunk.length * seq);
      progress.tick(chunk.length);
    }
    await session.release();
    progress.done(`${totalTokens} tokens`);
    return collector.finish();
  } finally {
    collector.release();
    rmSync(dir, { recursive: true, force: true });
  }
}
