// The demo model's pieces (src/demo.ts) against oracles: the byte tokenizer against UTF-8,
// the Jacobi eigensolver against A·v = λv, the rank-r bigram factorisation against
// Eckart–Young, and the generated ONNX model against a float64 bigram forward in onnxruntime.
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, describe, expect, it } from 'vitest';
import * as ort from 'onnxruntime-node';
import { BLOCK_OUTPUT_SCALE, bigramEmbeddings, bigramLogits, byteTokenizerJson, demoCorpora, makeDemoModel, symmetricEigen } from '../../src/demo.ts';
import { loadTokenizer } from '../../src/eval/tokenizer.ts';
import { loadModel, saveModel } from '../../src/graph/onnx.ts';
import { GraphBuilder } from '../../src/graph/builder.ts';
import { recognize } from '../../src/graph/recognize.ts';
import { Rng, makeTinyLlama } from '../fixtures/make-fixtures.ts';
import { wordText } from './word-text.ts';

const tmp = mkdtempSync(join(tmpdir(), 'twlac-demo-'));
afterAll(() => rmSync(tmp, { recursive: true, force: true }));

describe('byte tokenizer', () => {
  it('ids are the UTF-8 bytes, and decoding gives the text back', () => {
    const p = join(tmp, 'tokenizer.json');
    writeFileSync(p, JSON.stringify(byteTokenizerJson()));
    const tok = loadTokenizer(p);
    const s = 'def f(x):\n\treturn x ≤ 2 → θ 😀 \u0000\u00ff  end ';
    expect(Array.from(tok.encode(s))).toEqual(Array.from(Buffer.from(s, 'utf8')));
    expect(tok.decode(tok.encode(s))).toBe(s);
    expect(tok.decode([104, 105])).toBe('hi');
  });
});

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

describe('demo model', () => {
  it('with its blocks silenced, onnxruntime logits are the float64 bigram of the embeddings and head', async () => {
    const text = wordText(3000);
    const bytes = Buffer.from(text, 'utf8');
    const hidden = 64;
    const path = join(tmp, 'bigram.onnx');
    saveModel(makeDemoModel(bytes, { hidden, intermediate: 128 }, 0), path);
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

  it('the shipped demo model is recognised as a 2-block LLaMA and its output-projection scale is applied', () => {
    const { calibration } = demoCorpora();
    expect(calibration.files.some((f) => f.startsWith('src/'))).toBe(true);
    const small = Buffer.from(calibration.text.slice(0, 20_000), 'utf8');
    const m = makeDemoModel(small);
    const s = recognize(m);
    expect(s.config.layers).toBe(2);
    expect(s.config.hidden).toBe(128);
    expect(s.config.vocab).toBe(256);
    const o = m.graph.initializers.get('model.layers.0.self_attn.o_proj.weight')!.constValue!.toFloat32();
    const o0 = makeTinyLlama({ layers: 2, hidden: 128, heads: 4, kvHeads: 2, intermediate: 256, vocab: 256, seed: 7 })
      .graph.initializers.get('model.layers.0.self_attn.o_proj.weight')!.constValue!.toFloat32();
    expect(o[5]).toBeCloseTo(o0[5] * BLOCK_OUTPUT_SCALE, 7);
  });
});

describe('graph names after loading', () => {
  it('new nodes never reuse a loaded node name (duplicate names made the calibration model invalid)', () => {
    const b = new GraphBuilder();
    const x = b.input('x', { dtype: 'float32', shape: [2, 4] });
    b.output(b.op('Reshape', [x, b.i64('shape', [4, 2])]), 'y');
    const p = join(tmp, 'names.onnx');
    saveModel(b.model(18), p);
    const m = loadModel(p);
    expect(m.graph.nodes.map((n) => n.name)).toEqual(['Reshape']);
    const b2 = new GraphBuilder(m.graph);
    b2.op('Reshape', [m.graph.outputs[0], b2.i64('shape2', [8])]);
    const names = m.graph.nodes.map((n) => n.name);
    expect(new Set(names).size).toBe(names.length);
  });
});
