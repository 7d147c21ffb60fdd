// How far a runtime's logits are from onnxruntime's, for the runtime tests.
import { expect } from 'vitest';

/** max |a − b| / (1 + max |b|) */
export function relErr(a: ArrayLike<number>, b: ArrayLike<number>): number {
  expect(a.length).toBe(b.length);
  let d = 0, m = 0;
  for (let i = 0; i < a.length; i++) {
    d = Math.max(d, Math.abs(a[i] - b[i]));
    m = Math.max(m, Math.abs(b[i]));
  }
  return d / (1 + m);
}
