// How far a runtime's logits are from onnxruntime's, for the runtime tests.
import { expect } from 'vitest';
import { generate } from '../../src/eval/generate.ts';
import { forward, openModel } from '../../src/eval/ort-session.ts';

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

/** Stock onnxruntime on a model: the prompt's logits and its greedy continuation of `steps` tokens (the oracle of the runtime tests). */
export async function ortLogitsAndGreedy(path: string, prompt: readonly number[], steps: number): Promise<{ logits: Float32Array; greedy: number[] }> {
  const ort = await openModel(path);
  try {
    const { logits } = await forward(ort, prompt, 1, prompt.length);
    return { logits, greedy: Array.from(await generate(ort, prompt, steps)) };
  } finally {
    await ort.session.release();
  }
}
