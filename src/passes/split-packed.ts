// Packed linears (Phi-3's qkv_proj and gate_up_proj, GPT-NeoX's query_key_value) are cut
// into one linear per part before recognition, so that every later pass and backend sees the
// LLaMA roles. A linear y = x·Wᵀ (+ b) whose output is only read by feature-axis cuts (one
// Split, or Slices with constant bounds on the last axis) becomes, for each part [a, b),
//   y[…, a:b] = x · W[a:b, :]ᵀ (+ b[a:b])
// with the part's rows copied bit for bit in the weight's own element type: the same function.
// GPT-NeoX packs per head: query_key_value's output is reshaped to [..., G, P] (G heads, P =
// 3·headDim, maybe transposed to [batch, G, seq, P]) and cut along P. A cut [a, b) of P then
// takes rows {g·P + a + t : g < G, t < b − a}, and becomes
//   reshape(x · W[rows, :]ᵀ (+ b[rows]), shape[:-1] ++ [b − a])  (then the same Transpose)
// where shape is the original Reshape's target: its −1 or 0 entries resolve as before. Only
// three equal cuts covering P (q, k, v) count as such a packing.
// GPT-2's c_attn written as a 2-D Gemm reshapes back to [batch, seq, 3·hidden] before its
// Split: a Reshape that keeps the feature axis is looked through.
// Falcon packs per kv group: query_key_value's output is reshaped to [..., G, R, D] (G kv
// groups, R = heads/G + 2 head slots of D features; multi-query: [..., R, D], G = 1) and cut
// along R by Slices and Gathers (q the first R − 2 slots, k and v one slot each; falcon-rw's
// [..., heads, 3, D] is the same with R = 3, one slot each). A cut [a, b) of R takes rows
// {g·R·D + a·D + t : g < G, t < (b − a)·D}, and becomes
//   reshape(x · W[rows, :]ᵀ (+ b[rows]), shape[:-2] ++ [b − a, D])   (a scalar Gather: ++ [D])
// Only cuts that tile R, two or more of them, count as such a packing.
import type { Model, Node, Value } from '../graph/ir.ts';
import { GraphBuilder } from '../graph/builder.ts';
import { biasVector, constTensor, findLinears, linearName, weightRows, type Linear } from '../graph/patterns/linear.ts';
import { floatToHalf, Tensor } from '../graph/tensor.ts';
import { shapeEntries } from '../graph/patterns/static-scalar.ts';

/** A consumer that takes features [start, end) of the linear's output as `out`. */
interface Part {
  start: number;
  end: number;
  out: Value;
}

function ints(v: Value | undefined): number[] | undefined {
  const t = constTensor(v);
  return t ? t.toNumbers() : undefined;
}

/** Is `axis` the last axis of a value of rank `rank` (unknown rank: only −1 counts)? */
const isLast = (axis: number, rank: number | undefined): boolean => axis === -1 || (rank !== undefined && axis === rank - 1);

/** The feature ranges a Split or Slice node takes from `y` (N features on its last axis), or undefined if it is something else. */
function partsOf(n: Node, y: Value, N: number, rank = y.type?.shape?.length): Part[] | undefined {
  if (n.domain !== '' || n.input(0) !== y) return undefined;
  if (n.opType === 'Split') {
    if (!isLast(n.attr('axis', 'int') ?? 0, rank)) return undefined;
    const k = n.outputs.length;
    const sizes = ints(n.input(1)) ?? n.attr('split', 'ints') ?? (N % k === 0 ? Array(k).fill(N / k) : undefined);
    if (!sizes || sizes.length !== k || sizes.reduce((a, b) => a + b, 0) !== N) return undefined;
    let at = 0;
    return sizes.map((s, i) => ({ start: at, end: (at += s), out: n.output(i) }));
  }
  if (n.opType === 'Slice') {
    const [starts, ends, axes, steps] = [ints(n.input(1)), ints(n.input(2)), n.input(3) ? ints(n.input(3)) : [0], n.input(4) ? ints(n.input(4)) : [1]];
    if (starts?.length !== 1 || ends?.length !== 1 || axes?.length !== 1 || steps?.[0] !== 1 || !isLast(axes[0], rank)) return undefined;
    const clamp = (i: number) => Math.min(N, Math.max(0, i < 0 ? i + N : i));
    const [start, end] = [clamp(starts[0]), clamp(ends[0])];
    return end > start ? [{ start, end, out: n.output(0) }] : undefined;
  }
  return undefined;
}

/** The weight rows [a, b) as a new constant [in, b − a] (x·W layout) in the stored element type, behind the same Cast. */
function partWeight(b: GraphBuilder, l: Linear, W: Float32Array, p: Part, name: string, before: Node): Value {
  const K = l.inFeatures;
  const n = p.end - p.start;
  const t = new Float32Array(K * n);
  for (let r = 0; r < n; r++) for (let k = 0; k < K; k++) t[k * n + r] = W[(p.start + r) * K + k];
  const dtype = l.weightDtype;
  const tensor =
    dtype === 'float16'
      ? Tensor.fromBytes('float16', [K, n], new Uint8Array(Uint16Array.from(t, floatToHalf).buffer))
      : Tensor.fromFloat32([K, n], t);
  let w = b.init(name, tensor);
  const cast = l.weightPath.find((x) => x.opType === 'Cast');
  if (cast) w = b.op('Cast', [w], { attrs: { to: cast.attr('to', 'int')! }, before });
  return w;
}

/** A Reshape of y whose target ends in [G, P] with G·P = N (per-head packing), and what follows it. */
interface HeadPacking {
  reshape: Node;
  /** The Reshape's target shape. */
  shape: Value;
  G: number;
  P: number;
  /** A Transpose after the Reshape that keeps the last axis last. */
  transpose?: Node;
  /** The value the cuts read, and its rank. */
  cut: Value;
  rank: number;
  /** Shape ops on y that only read its leading dimensions (to build the Reshape target): they can read x instead. */
  shapes: Node[];
}

/** A Reshape target's entries (NaN where not a constant) and so its rank (static-scalar.ts shapeEntries). */
function shapeTail(shape: Value): { tail: number[]; rank: number } | undefined {
  const e = shapeEntries(shape);
  return e && { tail: e, rank: e.length };
}

/** y's one reader, a Reshape, with its target; Shape ops of y allowed where they read only the leading dimensions (rank − 2 of them). */
function onlyReshape(y: Value): { reshape: Node; shape: Value; tail: number[]; rank: number; shapes: Node[] } | undefined {
  const shapes = y.consumers().filter((c) => c.opType === 'Shape' && c.domain === '');
  const users = y.consumers().filter((c) => !shapes.includes(c));
  if (users.length !== 1 || users[0].opType !== 'Reshape' || users[0].domain !== '' || users[0].input(0) !== y) return undefined;
  const reshape = users[0];
  const shape = reshape.input(1)!;
  const st = shapeTail(shape);
  if (!st || st.tail.length < 2) return undefined;
  // y has rank st.rank − 1; a Shape of it may be read only at its leading dimensions.
  const leading = (i: number) => i >= 0 && i < st.rank - 2;
  const onlyLeading = (s: Node) =>
    s.output(0).consumers().every((c) => c.opType === 'Gather' && c.input(0) === s.output(0) && (constTensor(c.input(1))?.toNumbers() ?? [-1]).every(leading));
  if (!shapes.every(onlyLeading) || shapes.some((s) => s.attributes.size > 0)) return undefined;
  return { reshape, shape, tail: st.tail, rank: st.rank, shapes };
}

function headPacking(y: Value, N: number): HeadPacking | undefined {
  const r = onlyReshape(y);
  if (!r) return undefined;
  const { reshape, shape, rank, shapes } = r;
  const P = r.tail.at(-1)!;
  const g = r.tail.at(-2)!;
  if (!(P > 0) || N % P !== 0 || (g !== -1 && g !== N / P)) return undefined;
  let cut = reshape.output(0);
  let transpose: Node | undefined;
  const next = cut.consumers();
  if (next.length === 1 && next[0].opType === 'Transpose' && next[0].domain === '') {
    const perm = next[0].attr('perm', 'ints');
    if (!perm || perm.length !== rank || perm[rank - 1] !== rank - 1) return undefined;
    transpose = next[0];
    cut = transpose.output(0);
  }
  return { reshape, shape, G: N / P, P, transpose, cut, rank, shapes };
}

/** Cut a per-head packed linear (GPT-NeoX query_key_value); false when its cuts are not understood. */
function splitHeadPacked(b: GraphBuilder, l: Linear, hp: HeadPacking): boolean {
  const users = hp.cut.consumers();
  if (!users.length) return false;
  const parts = users.map((u) => partsOf(u, hp.cut, hp.P, hp.rank));
  if (parts.some((p) => !p)) return false;
  // q, k and v: three equal parts covering P. (A per-head Reshape of q cut by partial RoPE's
  // Slices, [0, r) and [r, d), is not a packing.)
  const spans = (parts.flat() as Part[]).map((p) => [p.start, p.end]).sort((a, b) => a[0] - b[0]);
  const third = hp.P / 3;
  if (spans.length !== 3 || spans.some(([s, e], i) => s !== i * third || e !== (i + 1) * third)) return false;
  // x has y's leading dimensions.
  for (const s of hp.shapes) s.setInput(0, l.input);
  const W = weightRows(l);
  const bias = biasVector(l);
  const K = l.inFeatures;
  const base = linearName(l).replace(/\.weight$/, '');
  for (const [i, p] of (parts.flat() as Part[]).entries()) {
    const before = p.out.producer()!;
    const n = p.end - p.start;
    // Rows of the part, head by head, as a plain [rows, K] linear.
    const rows = new Float32Array(hp.G * n * K);
    const rowBias = bias && new Float32Array(hp.G * n);
    for (let g = 0; g < hp.G; g++) {
      for (let t = 0; t < n; t++) {
        const src = g * hp.P + p.start + t;
        rows.set(W.subarray(src * K, (src + 1) * K), (g * n + t) * K);
        if (rowBias) rowBias[g * n + t] = bias[src];
      }
    }
    const part = { ...l, outFeatures: hp.G * n } as Linear;
    const name = `${base}.part${i}_${p.start}_${p.end}`;
    let y = b.op('MatMul', [l.input, partWeight(b, part, rows, { start: 0, end: hp.G * n, out: p.out }, `${name}.weight`, before)], { before });
    if (rowBias) y = b.op('Add', [y, b.f32(`${name}.bias`, [hp.G * n], rowBias)], { before });
    y = reshapeTail(b, y, hp.shape, 1, [n], name, before);
    if (hp.transpose) y = b.op('Transpose', [y], { attrs: { perm: hp.transpose.attr('perm', 'ints')! }, before });
    b.graph.replaceAllUses(p.out, y);
  }
  return true;
}

/** Reshape(y, shape[:-drop] ++ tail): the original Reshape's target with its last `drop` entries replaced by the part's. */
function reshapeTail(b: GraphBuilder, y: Value, shape: Value, drop: number, tail: number[], name: string, before: Node): Value {
  const lead = b.op('Slice', [shape, b.i64(`${name}.s0`, [0]), b.i64(`${name}.s1`, [-drop])], { before });
  return b.op('Reshape', [y, b.op('Concat', [lead, b.i64(`${name}.width`, tail)], { attrs: { axis: 0 }, before })], { before });
}

/** A cut of the head-slot axis: slots [start, end) as `out`, which keeps the axis unless a scalar Gather took one slot. */
interface SlotCut extends Part {
  keepsAxis: boolean;
}

/** The slots a Slice or Gather node takes off axis rank − 2 of `v` (R slots), or undefined if it is something else. */
function slotCutOf(n: Node, v: Value, R: number, rank: number): SlotCut | undefined {
  if (n.domain !== '' || n.input(0) !== v) return undefined;
  const isSlotAxis = (a: number) => a === rank - 2 || a === -2;
  if (n.opType === 'Gather') {
    const idx = constTensor(n.input(1));
    if (!idx || idx.dims.length > 1 || !isSlotAxis(n.attr('axis', 'int') ?? 0)) return undefined;
    const slots = idx.toNumbers().map((i) => (i < 0 ? i + R : i));
    if (!slots.length || slots.some((s, i) => s !== slots[0] + i || s < 0 || s >= R)) return undefined;
    return { start: slots[0], end: slots[0] + slots.length, out: n.output(0), keepsAxis: idx.dims.length === 1 };
  }
  if (n.opType !== 'Slice') return undefined;
  const [starts, ends, axes, steps] = [ints(n.input(1)), ints(n.input(2)), n.input(3) ? ints(n.input(3)) : undefined, n.input(4) ? ints(n.input(4)) : [1]];
  if (starts?.length !== 1 || ends?.length !== 1 || axes?.length !== 1 || steps?.[0] !== 1 || !isSlotAxis(axes[0])) return undefined;
  const clamp = (i: number) => Math.min(R, Math.max(0, i < 0 ? i + R : i));
  const [start, end] = [clamp(starts[0]), clamp(ends[0])];
  return end > start ? { start, end, out: n.output(0), keepsAxis: true } : undefined;
}

/** Cut a per-group packed linear (Falcon's query_key_value); false when its cuts are not understood. */
function splitGroupPacked(b: GraphBuilder, l: Linear): boolean {
  const r = onlyReshape(l.output);
  if (!r || r.tail.length < 3) return false;
  const [R, D] = [r.tail.at(-2)!, r.tail.at(-1)!];
  if (!(R > 1 && D > 0) || l.outFeatures % (R * D) !== 0) return false;
  const G = l.outFeatures / (R * D);
  const v = r.reshape.output(0);
  const cuts = v.consumers().map((u) => slotCutOf(u, v, R, r.rank));
  if (cuts.length < 2 || cuts.some((c) => !c)) return false;
  const sorted = (cuts as SlotCut[]).slice().sort((x, y) => x.start - y.start);
  if (sorted.some((c, i) => c.start !== (i === 0 ? 0 : sorted[i - 1].end)) || sorted.at(-1)!.end !== R) return false;
  for (const s of r.shapes) s.setInput(0, l.input);
  const W = weightRows(l);
  const bias = biasVector(l);
  const K = l.inFeatures;
  const base = linearName(l).replace(/\.weight$/, '');
  for (const [i, c] of (cuts as SlotCut[]).entries()) {
    const before = c.out.producer()!;
    const n = (c.end - c.start) * D;
    const rows = new Float32Array(G * n * K);
    const rowBias = bias && new Float32Array(G * n);
    for (let g = 0; g < G; g++) {
      const src = g * R * D + c.start * D;
      rows.set(W.subarray(src * K, (src + n) * K), g * n * K);
      if (rowBias) rowBias.set(bias.subarray(src, src + n), g * n);
    }
    const part = { ...l, outFeatures: G * n } as Linear;
    const name = `${base}.part${i}_${c.start}_${c.end}`;
    let y = b.op('MatMul', [l.input, partWeight(b, part, rows, { start: 0, end: G * n, out: c.out }, `${name}.weight`, before)], { before });
    if (rowBias) y = b.op('Add', [y, b.f32(`${name}.bias`, [G * n], rowBias)], { before });
    b.graph.replaceAllUses(c.out, reshapeTail(b, y, r.shape, 2, c.keepsAxis ? [c.end - c.start, D] : [D], name, before));
  }
  return true;
}

/** y itself, or what a Reshape that keeps y's last axis (a 2-D Gemm's output back to 3-D) makes of it, with its rank when known. */
function featureView(y: Value, N: number): { y: Value; rank?: number } {
  const users = y.consumers();
  if (users.length !== 1 || users[0].opType !== 'Reshape' || users[0].domain !== '' || users[0].input(0) !== y) return { y, rank: y.type?.shape?.length };
  const st = shapeTail(users[0].input(1)!);
  return st && st.tail.at(-1) === N ? { y: users[0].output(0), rank: st.rank } : { y, rank: y.type?.shape?.length };
}

/** Split every packed linear; returns how many were split. */
export function splitPackedLinears(model: Model): number {
  const g = model.graph;
  const b = new GraphBuilder(g);
  let split = 0;
  for (const l of findLinears(g.nodes)) {
    if ((l.weightDtype !== 'float32' && l.weightDtype !== 'float16') || l.alpha !== 1 || l.beta !== 1) continue;
    if (l.bias && constTensor(l.bias)!.dtype !== 'float32') continue;
    if (g.isOutput(l.output)) continue;
    const hp = headPacking(l.output, l.outFeatures);
    if (hp && splitHeadPacked(b, l, hp)) {
      split++;
      continue;
    }
    if (splitGroupPacked(b, l)) {
      split++;
      continue;
    }
    if (hp) continue;
    const { y, rank } = featureView(l.output, l.outFeatures);
    const users = y.consumers();
    if (!users.length || g.isOutput(y)) continue;
    const parts = users.map((u) => partsOf(u, y, l.outFeatures, rank));
    if (parts.some((p) => !p)) continue;
    const W = weightRows(l);
    const bias = biasVector(l);
    const base = linearName(l).replace(/\.weight$/, '');
    const reshape = y === l.output ? undefined : y.producer()!.input(1)!;
    for (const [i, p] of parts.flat().entries()) {
      const before = p!.out.producer()!;
      const name = `${base}.part${i}_${p!.start}_${p!.end}`;
      let out = b.op('MatMul', [l.input, partWeight(b, l, W, p!, `${name}.weight`, before)], { before });
      if (bias) out = b.op('Add', [out, b.f32(`${name}.bias`, [p!.end - p!.start], bias.subarray(p!.start, p!.end))], { before });
      if (reshape) out = reshapeTail(b, out, reshape, 1, [p!.end - p!.start], name, before);
      g.replaceAllUses(p!.out, out);
    }
    split++;
  }
  if (split) g.removeDeadNodes();
  return split;
}
