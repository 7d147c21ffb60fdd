// Perplexity and session discovery on tiny bigram LMs built here (no shared data needed):
// logits[b, t] = E[ids[b, t]] · U, with E [V, D] and U [D, V]. The float64 oracle computes
// the same product and log-softmax directly.
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, describe, expect, it } from 'vitest';
import { UserError } from '../../src/errors.ts';
import { GraphBuilder } from '../../src/graph/builder.ts';
import { saveModel } from '../../src/graph/onnx.ts';
import { roundToHalf } from '../../src/graph/tensor.ts';
import { openModel } from '../../src/eval/ort-session.ts';
import { evaluatePerplexity } from '../../src/eval/perplexity.ts';
import { mulberry32 } from '../../src/calib/data.ts';

const V = 16;
const D = 8;
const rand = mulberry32(42);
const E = Float32Array.from({ length: V * D }, () => 2 * rand() - 1);
const U = Float32Array.from({ length: D * V }, () => 3 * rand() - 1.5);
const scratch = mkdtempSync(join(tmpdir(), 'twlac-tiny-lm-'));
afterAll(() => rmSync(scratch, { recursive: true, force: true }));

function tinyLm(name: string, opts: { ids?: 'int64' | 'int32'; logits?: 'float32' | 'float16'; extraInput?: boolean } = {}): string {
  const b = new GraphBuilder();
  const ids = b.input('input_ids', { dtype: opts.ids ?? 'int64', shape: ['batch', 'seq'] });
  if (opts.extraInput) b.input('token_type_ids', { dtype: 'int64', shape: ['batch', 'seq'] });
  const h = b.op('Gather', [b.f32('E', [V, D], E), ids], { attrs: { axis: 0 } });
  let logits = b.op('MatMul', [h, b.f32('U', [D, V], U)]);
  if (opts.logits === 'float16') logits = b.op('Cast', [logits], { attrs: { to: 10 } });
  logits.type = { dtype: opts.logits ?? 'float32', shape: ['batch', 'seq', V] };
  b.output(logits, 'logits');
  const path = join(scratch, `${name}.onnx`);
  saveModel(b.model(18), path, { externalData: false });
  return path;
}

function oraclePpl(ids: number[], W: number, round: (x: number) => number = (x) => x): number {
  const n = Math.floor((ids.length - 1) / W);
  let nll = 0;
  for (let i = 0; i < n * W; i++) {
    const z = Array.from({ length: V }, (_, v) => {
      let s = 0;
      for (let d = 0; d < D; d++) s += E[ids[i] * D + d] * U[d * V + v];
      return round(s);
    });
    const m = Math.max(...z);
    nll += m + Math.log(z.reduce((a, x) => a + Math.exp(x - m), 0)) - z[ids[i + 1]];
  }
  return Math.exp(nll / (n * W));
}

const ids = Array.from({ length: 5 * 8 + 6 }, () => Math.floor(rand() * V)); // 5 windows of 8, tail 6

describe('perplexity on a tiny bigram LM', () => {
  it('matches the float64 oracle for every batch size, partial last batch included', async () => {
    const m = await openModel(tinyLm('plain'));
    expect(m.kind).toBe('plain');
    expect(m.vocab).toBe(V);
    const want = oraclePpl(ids, 8);
    for (const batch of [1, 2, 3, 5, 9]) {
      const r = await evaluatePerplexity(m, ids, { windowSize: 8, batch });
      expect(r.windows).toBe(5);
      expect(r.ppl).toBeCloseTo(want, 4);
    }
    const progress: [number, number][] = [];
    await evaluatePerplexity(m, ids, { windowSize: 8, batch: 2, maxWindows: 3, onProgress: (d, t) => progress.push([d, t]) });
    expect(progress).toEqual([[0, 3], [2, 3], [3, 3]]);
  });

  it('reads int32 ids and float16 logits', async () => {
    const m = await openModel(tinyLm('i32-f16', { ids: 'int32', logits: 'float16' }));
    expect(m.inputIds.type).toBe('int32');
    const r = await evaluatePerplexity(m, ids, { windowSize: 8 });
    expect(r.ppl).toBeCloseTo(oraclePpl(ids, 8, roundToHalf), 8);
    expect(Math.abs(r.ppl - oraclePpl(ids, 8))).toBeGreaterThan(1e-3); // the fp16 rounding is really there
  });

  it('rejects a model with inputs it cannot feed, naming them', async () => {
    await expect(openModel(tinyLm('extra', { extraInput: true }))).rejects.toThrow(/unsupported model inputs: token_type_ids/);
    await expect(openModel(join(scratch, 'missing.onnx'))).rejects.toThrow(UserError);
  });
});
