// The bigram model behind the CLI's eval and run oracles (test/cli/bigram-model.ts): the Jacobi
// eigensolver against A·v = λv, the rank-r bigram factorisation against Eckart–Young, and the
// generated ONNX model against a float64 bigram forward in onnxruntime.
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, describe, expect, it } from 'vitest';
import * as ort from 'onnxruntime-node';
import { saveModel } from '../../src/graph/onnx.ts';
import { Rng } from '../fixtures/make-fixtures.ts';
import { bigramEmbeddings, bigramLogits, makeBigramModel, symmetricEigen } from './bigram-model.ts';
import { wordText } from './word-text.ts';

const tmp = mkdtempSync(join(tmpdir(), 'twlac-bigram-'));
afterAll(() => rmSync(tmp, { recursive: true, force: true }));

describe('symmetricEigen', () => {
  it('A·v = λ·v with orthonormal vectors, values descending', () => {
    const n = 24;
    const rng = new Rng(5);
    const a = new Float64Array(n * n);
    for (let i = 0; i < n; i++) for (let j = 0; j <= i; j++) a[i * n + j] = a[j * n + i] = rng.normal();
    const { values, vectors } = symmetricEigen(a, n);
    for (let k = 0; k + 1 < n; k++) expect(values[k]).toBeGreaterThanOrEqual(values[k + 1]);
    for (let k = 0; k < n; k++) {
      for (let i = 0; i < n; i++) {
        let av = 0;
        for (let j = 0; j < n; j++) av += a[i * n + j] * vectors[j * n + k];
        expect(av).toBeCloseTo(values[k] * vectors[i * n + k], 9);
      }
      for (let m = 0; m < n; m++) {
        let d = 0;
        for (let i = 0; i < n; i++) d += vectors[i * n + k] * vectors[i * n + m];
        expect(d).toBeCloseTo(k === m ? 1 : 0, 10);
      }
    }
  });
});

describe('bigram embeddings', () => {
  it('rows of L̄ are centred log-probabilities of the smoothed bigram', () => {
    const bytes = Buffer.from('abcabcabd', 'utf8');
    const L = bigramLogits(bytes, 256, 1);
    // Row 'b' (98): c follows twice, d once; softmax(L̄[b]) = (count + u)/(3 + 1), u the add-one unigram.
    const row = Array.from(L.subarray(98 * 256, 99 * 256));
    expect(row.reduce((a, b) => a + b, 0)).toBeCloseTo(0, 9);
    const z = Math.log(row.reduce((a, v) => a + Math.exp(v), 0));
    const uniTotal = 256 + bytes.length;
    const p = (count: number, uniCount: number) => (count + (uniCount + 1) / uniTotal) / 4;
    expect(Math.exp(row[99] - z)).toBeCloseTo(p(2, 2), 12);
    expect(Math.exp(row[100] - z)).toBeCloseTo(p(1, 1), 12);
    expect(Math.exp(row[0] - z)).toBeCloseTo(p(0, 0), 12);
  });

  it('every embedding row has RMS 1 and head·E[t] is the best rank-(hidden−1) fit (Eckart–Young)', () => {
    const V = 40;
    const H = 12;
    const rng = new Rng(9);
    const L = new Float64Array(V * V).map(() => rng.normal());
    const { embed, head } = bigramEmbeddings(L, V, H);
    let err = 0;
    for (let t = 0; t < V; t++) {
      let ss = 0;
      for (let h = 0; h < H; h++) ss += embed[t * H + h] ** 2;
      expect(Math.sqrt(ss / H)).toBeCloseTo(1, 5);
      for (let n = 0; n < V; n++) {
        let s = 0;
        for (let h = 0; h < H; h++) s += head[n * H + h] * embed[t * H + h];
        err += (s - L[t * V + n]) ** 2;
      }
    }
    const G = new Float64Array(V * V);
    for (let i = 0; i < V; i++) for (let j = 0; j < V; j++) for (let c = 0; c < V; c++) G[i * V + j] += L[c * V + i] * L[c * V + j];
    const { values } = symmetricEigen(G, V);
    const best = values.slice(H - 1).reduce((a, b) => a + b, 0);
    expect(err / best).toBeCloseTo(1, 3);
  });
});

describe('bigram model', () => {
  it('with its blocks silenced, onnxruntime logits are the float64 bigram of the embeddings and head', async () => {
    const text = wordText(3000);
    const bytes = Buffer.from(text, 'utf8');
    const hidden = 64;
    const path = join(tmp, 'bigram.onnx');
    saveModel(makeBigramModel(bytes, { hidden, intermediate: 128 }, 0), path);
    const L = bigramLogits(bytes, 256);
    const { embed, head } = bigramEmbeddings(L, 256, hidden);
    const ids = Array.from(bytes.subarray(0, 40));
    const session = await ort.InferenceSession.create(path);
    const r = await session.run({ input_ids: new ort.Tensor('int64', BigInt64Array.from(ids, BigInt), [1, ids.length]) });
    const logits = r.logits.data as Float32Array;
    await session.release();
    let maxErr = 0;
    let maxBigramErr = 0;
    ids.forEach((t, p) => {
      let ss = 0;
      for (let h = 0; h < hidden; h++) ss += embed[t * hidden + h] ** 2;
      const inv = 1 / Math.sqrt(ss / hidden + 1e-5);
      // Row constants do not matter to softmax: compare centred rows.
      const want = new Float64Array(256);
      for (let n = 0; n < 256; n++) for (let h = 0; h < hidden; h++) want[n] += head[n * hidden + h] * embed[t * hidden + h] * inv;
      for (let n = 0; n < 256; n++) {
        maxErr = Math.max(maxErr, Math.abs(logits[p * 256 + n] - want[n]));
        maxBigramErr = Math.max(maxBigramErr, Math.abs(want[n] - L[t * 256 + n]));
      }
    });
    expect(maxErr).toBeLessThan(1e-3);
    // The text has ~20 distinct bytes, far below rank 63: the factorisation is the bigram itself.
    expect(maxBigramErr).toBeLessThan(1e-3);
  });
});
