// Scalars an exporter computes from shapes: GPT-2 as TorchScript exports it divides the scores
// by torch.full([], v.size(-1) ** 0.5), i.e.
//   Add(ConstantOfShape([]), Pow(Cast(Squeeze(Slice(Shape(v), −1, ∞))), 0.5))
// and v's head size is stated only by the Reshape that split v into heads (the graph carries
// no value types). This evaluates such a scalar when every dimension it reads is static:
// a constant, a dimension of a value's declared type, or one a Reshape / Transpose states.
import type { Value } from '../ir.ts';
import { constTensor } from './linear.ts';

/** Dimension `axis` (negative counts from the end) of v, when the graph states it as a number. */
export function staticDim(v: Value, axis: number, depth = 8): number | undefined {
  const shape = v.type?.shape;
  if (shape) {
    const d = shape[axis < 0 ? shape.length + axis : axis];
    if (typeof d === 'number') return d;
  }
  const p = v.producer();
  if (!p || depth === 0 || p.domain !== '') return undefined;
  switch (p.opType) {
    case 'Cast':
    case 'Identity':
    case 'Softmax':
      return staticDim(p.input(0)!, axis, depth - 1);
    case 'Transpose': {
      const perm = p.attr('perm', 'ints');
      if (!perm) return undefined;
      const a = axis < 0 ? perm.length + axis : axis;
      return a >= 0 && a < perm.length ? staticDim(p.input(0)!, perm[a], depth - 1) : undefined;
    }
    case 'Reshape': {
      const entries = shapeEntries(p.input(1)!);
      if (!entries) return undefined;
      const e = entries[axis < 0 ? entries.length + axis : axis];
      return e !== undefined && e > 0 ? e : undefined;
    }
    default:
      return undefined;
  }
}

/** A Reshape target's entries: a constant, or a Concat of constants and one-element pieces (Unsqueezed scalars, unknown: NaN). */
export function shapeEntries(s: Value): number[] | undefined {
  const t = constTensor(s);
  if (t) return t.toNumbers();
  const cat = s.producer();
  if (cat?.opType !== 'Concat' || cat.domain !== '') return undefined;
  const out: number[] = [];
  for (const i of cat.inputs) {
    if (!i) return undefined;
    const c = constTensor(i);
    if (c) out.push(...c.toNumbers());
    else if (i.producer()?.opType === 'Unsqueeze') out.push(NaN);
    else return undefined;
  }
  return out;
}

const ARITH: Record<string, (a: number, b: number) => number> = {
  Add: (a, b) => a + b,
  Sub: (a, b) => a - b,
  Mul: (a, b) => a * b,
  Div: (a, b) => a / b,
  Pow: (a, b) => a ** b,
};

/** The value of a one-element v computed from constants and static dimensions, else undefined. */
export function staticScalar(v: Value | undefined, depth = 12): number | undefined {
  if (!v) return undefined;
  const t = constTensor(v);
  if (t) return t.numel === 1 ? t.toFloat32()[0] : undefined;
  const p = v.producer();
  if (!p || depth === 0 || p.domain !== '') return undefined;
  const arg = (i: number) => staticScalar(p.input(i), depth - 1);
  switch (p.opType) {
    case 'Cast':
    case 'Identity':
    case 'Squeeze':
    case 'Unsqueeze':
      return arg(0);
    case 'Sqrt': {
      const a = arg(0);
      return a === undefined ? undefined : Math.sqrt(a);
    }
    case 'ConstantOfShape': {
      const dims = constTensor(p.input(0));
      if (!dims || dims.toNumbers().some((d) => d !== 1)) return undefined;
      const value = p.attributes.get('value');
      return value?.type === 'tensor' ? value.value.toFloat32()[0] : 0;
    }
    case 'Slice': {
      // One entry of a Shape: Slice(Shape(x), [i], [i + 1 or past the end]).
      const src = p.input(0)?.producer();
      const [s, e] = [constTensor(p.input(1))?.toNumbers(), constTensor(p.input(2))?.toNumbers()];
      if (src?.opType !== 'Shape' || !s || !e || s.length !== 1 || e.length !== 1) return undefined;
      if (!(e[0] === s[0] + 1 || (s[0] === -1 && e[0] > 1e9))) return undefined;
      return staticDim(src.input(0)!, s[0]);
    }
    case 'Gather': {
      const src = p.input(0)?.producer();
      const i = constTensor(p.input(1));
      if (src?.opType !== 'Shape' || !i || i.numel !== 1) return undefined;
      return staticDim(src.input(0)!, i.toNumbers()[0]);
    }
    default: {
      const f = ARITH[p.opType];
      if (!f) return undefined;
      const [a, b] = [arg(0), arg(1)];
      return a === undefined || b === undefined ? undefined : f(a, b);
    }
  }
}
