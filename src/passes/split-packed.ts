// Packed linears (Phi-3's qkv_proj and gate_up_proj, GPT-NeoX's query_key_value) are cut
// into one linear per part before recognition, so that every later pass and backend sees the
// LLaMA roles. A linear y = x·Wᵀ (+ b) whose output is only read by feature-axis cuts (one
// Split, or Slices with constant bounds on the last axis) becomes, for each part [a, b),
//   y[…, a:b] = x · W[a:b, :]ᵀ (+ b[a:b])
// with the part's rows copied bit for bit in the weight's own element type: the same function.
import type { Model, Node, Value } from '../graph/ir.ts';
import { GraphBuilder } from '../graph/builder.ts';
import { biasVector, constTensor, findLinears, linearName, weightRows, type Linear } from '../graph/patterns/linear.ts';
import { floatToHalf, Tensor } from '../graph/tensor.ts';

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

/** The feature ranges a Split or Slice node takes from `y` (N features), or undefined if it is something else. */
function partsOf(n: Node, y: Value, N: number): Part[] | undefined {
  if (n.domain !== '' || n.input(0) !== y) return undefined;
  const rank = y.type?.shape?.length;
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

/** Split every packed linear; returns how many were split. */
export function splitPackedLinears(model: Model): number {
  const g = model.graph;
  const b = new GraphBuilder(g);
  let split = 0;
  for (const l of findLinears(g.nodes)) {
    if ((l.weightDtype !== 'float32' && l.weightDtype !== 'float16') || l.alpha !== 1 || l.beta !== 1) continue;
    if (l.bias && constTensor(l.bias)!.dtype !== 'float32') continue;
    const users = l.output.consumers();
    if (!users.length || g.isOutput(l.output)) continue;
    const parts = users.map((u) => partsOf(u, l.output, l.outFeatures));
    if (parts.some((p) => !p)) continue;
    const W = weightRows(l);
    const bias = biasVector(l);
    const base = linearName(l).replace(/\.weight$/, '');
    for (const [i, p] of parts.flat().entries()) {
      const before = p!.out.producer()!;
      let y = b.op('MatMul', [l.input, partWeight(b, l, W, p!, `${base}.part${i}_${p!.start}_${p!.end}.weight`, before)], { before });
      if (bias) y = b.op('Add', [y, b.f32(`${base}.part${i}_${p!.start}_${p!.end}.bias`, [p!.end - p!.start], bias.subarray(p!.start, p!.end))], { before });
      g.replaceAllUses(p!.out, y);
    }
    split++;
  }
  if (split) g.removeDeadNodes();
  return split;
}
