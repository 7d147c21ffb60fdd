// RoPE frequencies, read from the graph: inv[i] = θ^(-2i/d), i < d/2, stated either as
//   an inverse-frequency constant upstream of Cos/Sin (torch: MatMul(inv_freq, positions)), or
//   precomputed cos/sin caches [P, d/2 or d] gathered by position (legacy exporters, fused ops),
//   where row p holds cos(p·inv) and sin(p·inv), so inv = unwrap(atan2(sin, cos) at row P-1)/(P-1).
// θ comes from a least-squares fit of ln inv[i] = -(2i/d)·ln θ over the entries the stored
// precision resolves, snapped to the round number it was written as.
import type { Model, Node, Value } from '../ir.ts';
import type { DType } from '../tensor.ts';
import { constTensor } from './linear.ts';

export interface RopeFrequencies {
  /** The constant the frequencies were read from (inv_freq, or the cos cache). */
  source: Value;
  /** Every constant stating the same set (per-layer copies), `source` first. */
  sources: Value[];
  kind: 'inv-freq' | 'cache';
  /** inv[i] for i < rotaryDim/2. */
  inv: Float64Array;
  /** Absolute uncertainty of each inv[i] from the stored precision. */
  sigma: Float64Array;
  /** Cache rows: the longest position the graph can encode. */
  positions?: number;
}

const FLOATS = new Set<DType>(['float32', 'float16', 'float64', 'bfloat16']);
const QUANTUM: Partial<Record<DType, number>> = { float32: 6e-8, float64: 1e-16, float16: 5e-4, bfloat16: 4e-3 };

/** Inverse-frequency constants upstream of every Cos, one entry per distinct set. */
function fromInvFreq(model: Model): RopeFrequencies[] {
  const found = model.graph.nodes.filter((n) => n.opType === 'Cos' && n.domain === '').map(invFreqOf).filter((f) => f !== undefined);
  return distinctSets(found);
}

/** One entry per distinct frequency set (per-layer copies of one set are one set), each with every constant that states it. */
function distinctSets(found: RopeFrequencies[]): RopeFrequencies[] {
  const out: RopeFrequencies[] = [];
  for (const f of found) {
    const same = out.find((g) => sameFrequencies(f, g));
    if (same) same.sources.push(f.source);
    else out.push({ ...f, sources: [f.source] });
  }
  return out;
}

function sameFrequencies(a: RopeFrequencies, b: RopeFrequencies): boolean {
  return a.inv.length === b.inv.length && a.inv.every((x, i) => Math.abs(x - b.inv[i]) <= 4 * Math.max(a.sigma[i], b.sigma[i]) + 1e-12);
}

/** An inverse-frequency constant upstream of a Cos: positive, decreasing, starting at 1. */
function invFreqOf(cos: Node): RopeFrequencies | undefined {
  const seen = new Set<Value>();
  const queue = [cos.input(0)!];
  while (queue.length && seen.size < 60) {
    const w = queue.shift()!;
    if (seen.has(w)) continue;
    seen.add(w);
    const t = constTensor(w);
    if (t) {
      if (t.numel < 2 || !FLOATS.has(t.dtype)) continue;
      const vals = t.toFloat32();
      const decreasing = vals.every((x, i) => x > 0 && (i === 0 || x < vals[i - 1]));
      if (!decreasing || Math.abs(vals[0] - 1) > 1e-3) continue;
      const q = QUANTUM[t.dtype] ?? 1e-3;
      return { source: w, sources: [w], kind: 'inv-freq', inv: Float64Array.from(vals), sigma: Float64Array.from(vals, (x) => x * q * 2) };
    }
    const p = w.producer();
    if (p && p.opType !== 'Shape') for (const i of p.inputs) if (i) queue.push(i);
  }
  return undefined;
}

/** 2-D float constants a few data-movement steps behind `v`. */
function constBehind(v: Value | undefined, depth = 3): Value | undefined {
  for (let d = 0; v && d <= depth; d++) {
    const t = constTensor(v);
    if (t) return t.dims.length === 2 && FLOATS.has(t.dtype) ? v : undefined;
    const p: Node | undefined = v.producer();
    if (!p || !['Slice', 'Cast', 'Reshape', 'Squeeze', 'Unsqueeze', 'Identity'].includes(p.opType)) return undefined;
    v = p.input(0);
  }
  return undefined;
}

/** cos/sin caches: tables consumed by Gather (other than the embedding) or by rotary/attention ops. */
function fromCaches(model: Model, embedding: Node | undefined): RopeFrequencies[] {
  const tables: Value[] = [];
  for (const n of model.graph.nodes) {
    if (n === embedding) continue;
    let v: Value | undefined;
    if (n.opType === 'Gather') tables.push(...[constBehind(n.input(0))].filter((x): x is Value => !!x));
    else if (n.opType === 'GroupQueryAttention') for (const i of [7, 8]) (v = constBehind(n.input(i))) && tables.push(v);
    else if (n.opType === 'RotaryEmbedding') for (const i of [2, 3]) (v = constBehind(n.input(i))) && tables.push(v);
  }
  const rows = new Map<Value, Float32Array>();
  const data = (v: Value): Float32Array => rows.get(v) ?? (rows.set(v, constTensor(v)!.toFloat32()), rows.get(v)!);
  const isRow0 = (v: Value, want: number): boolean => {
    const t = constTensor(v)!;
    if (t.dims[0] < 2 || t.dims[1] > 4096) return false;
    const a = data(v);
    for (let i = 0; i < t.dims[1]; i++) if (Math.abs(a[i] - want) > 1e-3) return false;
    return true;
  };
  const coss = [...new Set(tables)].filter((v) => isRow0(v, 1));
  return distinctSets(coss.map((cosT) => cacheFrequencies(cosT, tables, data, isRow0)).filter((f) => f !== undefined));
}

/** The frequencies of one cos cache and the sin cache of its shape. */
function cacheFrequencies(cosT: Value, tables: Value[], data: (v: Value) => Float32Array, isRow0: (v: Value, want: number) => boolean): RopeFrequencies | undefined {
  const [P, h] = constTensor(cosT)!.dims;
  const sinT = [...new Set(tables)].find((v) => v !== cosT && constTensor(v)!.dims.join() === `${P},${h}` && isRow0(v, 0));
  if (!sinT) return undefined;
  const c = data(cosT);
  const s = data(sinT);
  // The HF layout repeats the d/2 frequencies twice along a row.
  const half = h % 2 === 0 && c.subarray(h, h + h / 2).every((x, i) => Math.abs(x - c[h + h / 2 + i]) < 1e-6) ? h / 2 : h;
  const q = QUANTUM[constTensor(cosT)!.dtype] ?? 1e-3;
  const last = P - 1;
  const inv = new Float64Array(half);
  const sigma = new Float64Array(half);
  for (let i = 0; i < half; i++) {
    const rough = Math.atan2(s[h + i], c[h + i]);
    const phase = Math.atan2(s[last * h + i], c[last * h + i]);
    const turns = Math.round((rough * last - phase) / (2 * Math.PI));
    inv[i] = (phase + 2 * Math.PI * turns) / last;
    // The exporter rounded the angle p·inv itself, so the error grows with the angle.
    sigma[i] = (2 * q * (1 + last * Math.abs(inv[i]))) / last;
  }
  return { source: cosT, sources: [cosT], kind: 'cache', inv, sigma, positions: P };
}

/**
 * The distinct RoPE frequency sets of the graph: one for most models, one per kind of layer
 * where layers differ (Gemma-3's local and global θ; recognition tells which block uses which).
 */
export function findRopeFrequencySets(model: Model, embedding: Node | undefined): RopeFrequencies[] {
  const inv = fromInvFreq(model);
  return inv.length ? inv : fromCaches(model, embedding);
}

/**
 * θ from inv[i] = θ^(-2i/d): weighted least squares on logs over entries resolved to 1e-3,
 * then the round number within the fit's precision (or config.json's value when it agrees).
 * `consistent` is false when the frequencies are not a geometric series (scaled RoPE).
 */
export function fitRopeTheta(f: RopeFrequencies, fromConfig: number | undefined): { theta: number; consistent: boolean } {
  const d = 2 * f.inv.length;
  let sxy = 0;
  let sxx = 0;
  const used: number[] = [];
  for (let i = 1; i < f.inv.length; i++) {
    const rel = f.sigma[i] / f.inv[i];
    if (!(f.inv[i] > 0) || rel > 1e-3) continue;
    const xi = (2 * i) / d;
    const w = 1 / Math.max(rel, 1e-9) ** 2;
    sxy += w * xi * -Math.log(f.inv[i]);
    sxx += w * xi * xi;
    used.push(i);
  }
  if (used.length === 0) return { theta: NaN, consistent: false };
  const lnTheta = sxy / sxx;
  // Scaled RoPE (e.g. llama3's) bends the low frequencies by factors, far beyond rounding.
  const consistent = used.every((i) => Math.abs(Math.log(f.inv[i]) + ((2 * i) / d) * lnTheta) <= (20 * f.sigma[i]) / f.inv[i] + 1e-4);
  const est = Math.exp(lnTheta);
  // Relative precision of θ: the best-resolved entry pins ln θ to about rel·d/(2i).
  const tol = 2 * Math.min(1e-2, Math.max(1e-6, Math.min(...used.map((i) => (f.sigma[i] / f.inv[i]) * (d / (2 * i))))));
  if (fromConfig !== undefined && Math.abs(fromConfig - est) / est < tol) return { theta: fromConfig, consistent };
  for (let p = 1; p <= 8; p++) {
    const y = Number(est.toPrecision(p));
    if (Math.abs(y - est) / est < tol) return { theta: y, consistent };
  }
  return { theta: Number(est.toPrecision(8)), consistent };
}
