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

/** H = 2·gram/n from accumulated statistics. */
export function hessian(s: SiteStats): Float64Array {
  const h = new Float64Array(s.gram.length);
  const f = 2 / Math.max(1, s.tokens);
  for (let i = 0; i < h.length; i++) h[i] = s.gram[i] * f;
  return h;
}

/** A model whose outputs are, per site, the Gram matrix and/or the rows of that site. */
export function buildCaptureModel(model: Model, sites: CaptureSite[], withRows: boolean, withGram = true): Model {
  const { model: m, map } = cloneModel(model);
  const g = m.graph;
  const rw = new Rewriter(g);
  const outs: Value[] = [];
  for (const s of sites) {
    const v = map.get(s.value);
    if (!v) throw new Error(`capture site ${s.id}: value not in model`);
    let x = rw.b.op('Reshape', [v, rw.init(`twlac.cap.${s.id}.shape`, Tensor.fromInt64([2], [-1, s.width]))]);
    // Always widen to float32: values made by passes carry no type, and Cast to the same type is a no-op.
    x = rw.b.op('Cast', [x], { attrs: { to: 1 } });
    if (withGram) {
      const gram = rw.b.op('MatMul', [rw.b.op('Transpose', [x], { attrs: { perm: [1, 0] } }), x], { outputNames: [`twlac.gram.${s.id}`] });
      gram.type = { dtype: 'float32', shape: [s.width, s.width] };
      outs.push(gram);
    }
    if (withRows) {
      x.name = g.uniqueName(`twlac.rows.${s.id}`);
      x.type = { dtype: 'float32', shape: ['tokens', s.width] };
      outs.push(x);
    }
  }
  g.outputs = outs;
  g.removeDeadNodes();
  return m;
}

/** Run `model` over calibration segments and return per-site statistics. */
export async function captureSites(model: Model, sites: CaptureSite[], segments: Int32Array[], opts: CaptureOptions = {}): Promise<Map<string, SiteStats>> {
  const batch = opts.batch ?? 4;
  const sampleRows = opts.sampleRows ?? 0;
  const progress = opts.progress ?? silentProgress;
  const cap = buildCaptureModel(model, sites, sampleRows > 0 || opts.gram !== undefined, opts.gram === undefined);
  const accs = new Map(opts.gram ? sites.map((s) => [s.id, opts.gram!(s.width)]) : []);
  const dir = mkdtempSync(join(tmpdir(), 'twlac-calib-'));
  const stats = new Map<string, SiteStats>();
  for (const s of sites) stats.set(s.id, { gram: new Float64Array(s.width * s.width), tokens: 0, sampleRows: 0, samples: sampleRows ? new Float32Array(sampleRows * s.width) : undefined });
  try {
    const path = join(dir, 'calib.onnx');
    saveModel(cap, path);
    const session = await ort.InferenceSession.create(path, { executionProviders: ['cpu'], graphOptimizationLevel: 'all' });
    // The knobs in extraFeeds are the caller's; the capture model keeps no present.* outputs.
    const iface = describeInputs(path, session, { requirePresent: false, ignore: (n) => n in (opts.extraFeeds ?? {}) });
    const seq = segments[0].length;
    const totalTokens = segments.length * seq;
    // Keep every `stride`-th token row, so samples spread over the whole calibration set.
    const stride = sampleRows ? Math.max(1, Math.floor(totalTokens / sampleRows)) : 0;
    progress.start(opts.label ?? 'calibration', segments.length);
    let seen = 0;
    for (let i = 0; i < segments.length; i += batch) {
      const chunk = segments.slice(i, i + batch);
      const ids = new Int32Array(chunk.length * seq);
      chunk.forEach((c, j) => ids.set(c, j * seq));
      const feeds = { ...tokenFeeds(iface, ids, chunk.length, seq), ...(opts.extraFeeds ?? {}) };
      const out = await session.run(feeds);
      for (const s of sites) {
        const st = stats.get(s.id)!;
        const rowsOf = () => out[cap.graph.outputs.find((o) => o.name.startsWith(`twlac.rows.${s.id}`))!.name].data as Float32Array;
        const acc = accs.get(s.id);
        if (acc) acc.add(rowsOf(), chunk.length * seq);
        else {
          const gram = out[`twlac.gram.${s.id}`].data as Float32Array;
          for (let k = 0; k < gram.length; k++) st.gram[k] += gram[k];
        }
        st.tokens += chunk.length * seq;
        if (st.samples) {
          const rows = rowsOf();
          for (let t = 0; t < chunk.length * seq; t++) {
            const global = seen + t;
            if (global % stride !== 0 || st.sampleRows >= sampleRows) continue;
            st.samples.set(rows.subarray(t * s.width, (t + 1) * s.width), st.sampleRows * s.width);
            st.sampleRows++;
          }
        }
      }
      seen += chunk.length * seq;
      progress.tick(chunk.length);
    }
    await session.release();
    for (const [id, acc] of accs) stats.get(id)!.gram = acc.read();
    progress.done(`${totalTokens} tokens`);
  } finally {
    for (const acc of accs.values()) acc.release();
    rmSync(dir, { recursive: true, force: true });
  }
  return stats;
}
