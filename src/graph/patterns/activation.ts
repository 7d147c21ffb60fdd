// Pointwise activations found by what they compute, not by how an exporter spelled them.
// GELU alone has many spellings: com.microsoft::Gelu/FastGelu, ai.onnx Gelu (opset 20),
// 0.5·x·(1 + Erf(x/√2)) (torch's TorchScript exporter, in either operand order), and
// 0.5·x·(1 + Tanh(√(2/π)·(x + 0.044715·x³))) (GPT-2's NewGELU, written with Pow or Mul).
// So: collect the region of elementwise ops that starts at one value and whose other operands
// are scalar constants; its single value read from outside the region is the activation's
// output. Evaluate the region in float64 on sample points and name the function it matches:
//   gelu(x) = ½x(1 + erf(x/√2)),  gelu-tanh(x) = ½x(1 + tanh(√(2/π)(x + 0.044715x³))),  silu(x) = x·σ(x)
// The two GELUs differ by up to 1.3e-4·(1 + |x|) on [-6, 6], far above what float32 constants
// change (about 1e-7·(1 + |x|)); the match allows 2e-6·(1 + |x|).
import type { Node, Value } from '../ir.ts';
import { erf } from '../../util/erf.ts';
import { constTensor } from './linear.ts';

export type PointwiseKind = 'gelu' | 'gelu-tanh' | 'silu';

const gelu = (x: number) => 0.5 * x * (1 + erf(x / Math.SQRT2));
const geluTanh = (x: number) => 0.5 * x * (1 + Math.tanh(Math.sqrt(2 / Math.PI) * (x + 0.044715 * x ** 3)));
const silu = (x: number) => x / (1 + Math.exp(-x));

/** The functions a region is compared with, first match wins. */
export const POINTWISE: Record<PointwiseKind, (x: number) => number> = { gelu, 'gelu-tanh': geluTanh, silu };

type Unary = (a: number) => number;
type Binary = (a: number, b: number) => number;

const UNARY: Record<string, Unary> = {
  Erf: erf,
  Tanh: Math.tanh,
  Sqrt: Math.sqrt,
  Exp: Math.exp,
  Neg: (a) => -a,
  Reciprocal: (a) => 1 / a,
  Sigmoid: (a) => 1 / (1 + Math.exp(-a)),
  Cast: (a) => a,
  Identity: (a) => a,
};
const BINARY: Record<string, Binary> = {
  Add: (a, b) => a + b,
  Sub: (a, b) => a - b,
  Mul: (a, b) => a * b,
  Div: (a, b) => a / b,
  Pow: (a, b) => a ** b,
};

/** Fused activation ops (one input, the value itself). */
function fusedOf(n: Node): Unary | undefined {
  if (n.opType === 'FastGelu' && n.domain === 'com.microsoft' && !n.input(1)) return geluTanh;
  if (n.opType === 'Gelu' && (n.domain === 'com.microsoft' || n.domain === '')) return n.attr('approximate', 'string') === 'tanh' ? geluTanh : gelu;
  if (n.opType === 'QuickGelu' && n.domain === 'com.microsoft' && n.attr('alpha', 'float') === 1) return silu;
  return undefined;
}

const isElementwise = (n: Node): boolean =>
  (n.domain === '' && (n.opType in UNARY || n.opType in BINARY) && (n.opType !== 'Cast' || [1, 10, 11].includes(n.attr('to', 'int') ?? 0))) || !!fusedOf(n);

function scalar(v: Value | undefined): number | undefined {
  const t = constTensor(v);
  return t && t.numel === 1 ? t.toFloat32()[0] : undefined;
}

/**
 * The pointwise function applied to `x`: the region's output and the function's name, or
 * undefined when the region is not a single-output function of x alone or matches none.
 */
export function pointwiseActivation(x: Value): { kind: PointwiseKind; out: Value } | undefined {
  const inRegion = new Set<Value>([x]);
  const nodes: Node[] = [];
  for (let grew = true; grew && nodes.length < 40; ) {
    grew = false;
    for (const v of [...inRegion]) {
      for (const c of v.consumers()) {
        if (nodes.includes(c) || !isElementwise(c) || c.outputs.length !== 1) continue;
        const ok = c.inputs.every((i) => !i || inRegion.has(i) || scalar(i) !== undefined);
        if (!ok) continue;
        nodes.push(c);
        inRegion.add(c.output(0));
        grew = true;
      }
    }
  }
  if (!nodes.length) return undefined;
  const region = new Set(nodes);
  // The output: the one region value read outside the region.
  const leaving = [...inRegion].filter((v) => v !== x && v.consumers().some((c) => !region.has(c)));
  if (leaving.length !== 1 || x.consumers().some((c) => !region.has(c))) return undefined;
  const out = leaving[0];
  // Nodes in dependency order: a node runs once all its region inputs have values.
  const xs = Array.from({ length: 49 }, (_, i) => -6 + i * 0.25);
  const vals = new Map<Value, Float64Array>([[x, Float64Array.from(xs)]]);
  const todo = [...nodes];
  while (todo.length) {
    const i = todo.findIndex((n) => n.inputs.every((v) => !v || vals.has(v) || scalar(v) !== undefined));
    if (i < 0) return undefined;
    const n = todo.splice(i, 1)[0];
    const arg = (k: number): Float64Array => vals.get(n.input(k)!) ?? new Float64Array(xs.length).fill(scalar(n.input(k))!);
    const fused = fusedOf(n);
    const f: Unary | undefined = fused ?? UNARY[n.opType];
    vals.set(n.output(0), f ? arg(0).map(f) : arg(0).map((a, j) => BINARY[n.opType](a, arg(1)[j])));
  }
  const y = vals.get(out)!;
  for (const [kind, f] of Object.entries(POINTWISE) as [PointwiseKind, (x: number) => number][]) {
    if (xs.every((xv, j) => Math.abs(y[j] - f(xv)) <= 2e-6 * (1 + Math.abs(xv)))) return { kind, out };
  }
  return undefined;
}
