import { readFileSync } from 'node:fs';
import * as ort from 'onnxruntime-node';
import { beforeAll, describe, expect, it } from 'vitest';
import { UserError } from '../../src/errors.ts';
import { openModel, type OrtModel } from '../../src/eval/ort-session.ts';
import { evaluatePerplexity, tokenNll, windowCount } from '../../src/eval/perplexity.ts';
import { chunkBounds, loadTokenizer } from '../../src/eval/tokenizer.ts';
import { DEV, MODELS, REPORT, TOKENIZER, haveShared } from './shared.ts';

const W = 256;

describe('window arithmetic', () => {
  it('counts windows that have all W targets, one id past each window', () => {
    expect(windowCount(2 * W + 1, W)).toBe(2);
    expect(windowCount(2 * W, W)).toBe(1); // the second window would lack its last target
    expect(windowCount(W + 1, W)).toBe(1);
    expect(windowCount(W, W)).toBe(0);
    expect(windowCount(0, W)).toBe(0);
    expect(windowCount(531169, W)).toBe(2074);
  });
});

describe('tokenNll', () => {
  it('matches a float64 log-softmax, including logits that overflow a naive exp', () => {
    const rows = [
      [0.5, -1.25, 3, 2.5],
      [1000, 0, -1000, 999],
      [-800, -801, -802, -803],
    ];
    for (const row of rows) {
      const z = Float32Array.from(row);
      for (let t = 0; t < row.length; t++) {
        // Oracle: log-sum-exp folded pairwise, logaddexp(a, b) = max + log1p(exp(−|a − b|)).
        let lse = -Infinity;
        for (const v of z) lse = Math.max(lse, v) + Math.log1p(Math.exp(-Math.abs(lse - v)));
        expect(tokenNll(z, 0, z.length, t)).toBeCloseTo(lse - z[t], 9);
      }
    }
    expect(() => tokenNll(new Float32Array(4), 0, 4, 4)).toThrow(UserError);
  });
});

// Oracle: ORT at batch 1 with feeds built here by hand, float64 log-softmax written out
// separately (log Σ exp(z − z_target)), summed per window.
async function oracleWindowNll(session: ort.InferenceSession, ids: Int32Array, w: number): Promise<number> {
  const x = new BigInt64Array(W);
  for (let t = 0; t < W; t++) x[t] = BigInt(ids[w * W + t]);
  const feeds: Record<string, ort.Tensor> = { input_ids: new ort.Tensor('int64', x, [1, W]) };
  for (const m of session.inputMetadata) {
    if (m.name === 'attention_mask') feeds[m.name] = new ort.Tensor('int64', new BigInt64Array(W).fill(1n), [1, W]);
    if (m.name === 'position_ids') feeds[m.name] = new ort.Tensor('int64', BigInt64Array.from({ length: W }, (_, i) => BigInt(i)), [1, W]);
    if (m.name.startsWith('past_key_values.')) feeds[m.name] = new ort.Tensor('float32', new Float32Array(0), [1, 2, 0, 64]);
  }
  const logits = (await session.run(feeds)).logits.data as Float32Array;
  const V = logits.length / W;
  let nll = 0;
  for (let t = 0; t < W; t++) {
    const zt = logits[t * V + ids[w * W + t + 1]];
    let s = 0;
    for (let j = 0; j < V; j++) s += Math.exp(logits[t * V + j] - zt);
    nll += Math.log(s);
  }
  return nll;
}

describe.skipIf(!haveShared)('perplexity on the fixture', () => {
  let ids: Int32Array;
  const models: Partial<Record<keyof typeof MODELS, OrtModel>> = {};
  beforeAll(async () => {
    // The first 200,000-character chunk is encoded on its own by the protocol, so its ids
    // are exactly the prefix of the full dev ids (≈ 63 k tokens, more than 200 windows).
    const text = readFileSync(DEV, 'utf8');
    const tok = loadTokenizer(TOKENIZER);
    ids = tok.encode(text.slice(0, chunkBounds(text, 200_000, 'utf16')[1]));
    for (const k of Object.keys(MODELS) as (keyof typeof MODELS)[]) models[k] = await openModel(MODELS[k]);
  });

  for (const k of ['fp32', 'kv', 'fused'] as const) {
    it(`${k}: first 3 windows at batch 2 match the batch-1 float64 oracle`, async () => {
      const r = await evaluatePerplexity(models[k]!, ids, { maxWindows: 3, batch: 2 });
      expect(r.windows).toBe(3);
      expect(r.tokens).toBe(3 * W);
      const session = await ort.InferenceSession.create(MODELS[k]);
      for (let w = 0; w < 3; w++) expect(r.windowNll[w]).toBeCloseTo(await oracleWindowNll(session, ids, w), 2);
      let sum = 0;
      for (let w = 0; w < 3; w++) sum += r.windowNll[w];
      expect(r.nll).toBeCloseTo(sum / (3 * W), 12);
      expect(r.ppl).toBeCloseTo(Math.exp(r.nll), 10);
    });
  }

  it('fp16 exports agree with fp32 to within fp16 rounding', async () => {
    const ref = await evaluatePerplexity(models.fp32!, ids, { maxWindows: 2 });
    for (const k of ['kv', 'fused'] as const) {
      const r = await evaluatePerplexity(models[k]!, ids, { maxWindows: 2 });
      expect(Math.abs(r.nll - ref.nll)).toBeLessThan(2e-3);
    }
  });

  it('uses the id after each window as its last target', async () => {
    // Two windows need 2W+1 ids; changing id 2W changes the second window's NLL only.
    const a = ids.slice(0, 2 * W + 1);
    const b = a.slice();
    b[2 * W] = (b[2 * W] + 1) % 4096;
    const ra = await evaluatePerplexity(models.fp32!, a, {});
    const rb = await evaluatePerplexity(models.fp32!, b, {});
    expect(ra.windows).toBe(2);
    expect(rb.windowNll[0]).toBe(ra.windowNll[0]);
    expect(rb.windowNll[1]).not.toBeCloseTo(ra.windowNll[1], 3);
    expect((await evaluatePerplexity(models.fp32!, a.slice(0, 2 * W), {})).windows).toBe(1);
  });

  it('fp32: first 200 windows give EVAL.md\'s 36.69, first 199 the Python ORT figure', async () => {
    const r = await evaluatePerplexity(models.fp32!, ids, { maxWindows: 200 });
    expect(r.windows).toBe(200);
    expect(r.ppl).toBeCloseTo(36.69, 2);
    // make_fixture.py's loop (numpy, Rust tokenizer) covers 199 windows: the same windows here.
    const report = JSON.parse(readFileSync(REPORT, 'utf8')) as { ort_dev_ppl_first_200_windows: number };
    let sum = 0;
    for (let w = 0; w < 199; w++) sum += r.windowNll[w];
    expect(Math.exp(sum / (199 * W)) / report.ort_dev_ppl_first_200_windows).toBeCloseTo(1, 5);
  }, 300_000); // ≈ 12 s on 2 idle cores; allow for a machine shared with other test runs

  it('rejects text too short for one window and a missing model', async () => {
    await expect(evaluatePerplexity(models.fp32!, ids.slice(0, W), {})).rejects.toThrow(/text too short: 256 tokens/);
    await expect(evaluatePerplexity('/nonexistent/model.onnx', ids, {})).rejects.toThrow(UserError);
  });
});
