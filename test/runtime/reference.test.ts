// The CPU reference runtime's pieces against independent float64 formulations.
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, describe, expect, it } from 'vitest';
import { writeArtifact } from '../../src/artifact/build.ts';
import { randomArtifactModel, rng } from '../../src/artifact/random.ts';
import { readArtifact } from '../../src/artifact/weights.ts';
import type { ModelConfig } from '../../src/graph/model-config.ts';
import { ternaryFormat, decodeTernary } from '../../src/formats/ternary.ts';
import { kronTransform, referenceGreedy, referenceLogits, ropeInPlace, ReferenceModel, linearWeight } from '../../src/runtime/reference.ts';

const dirs: string[] = [];
afterAll(() => dirs.forEach((d) => rmSync(d, { recursive: true, force: true })));

const tiny: ModelConfig = {
  arch: 'llama', vocab: 48, hidden: 32, layers: 2, heads: 4, kvHeads: 2, headDim: 8,
  intermediate: 40, ropeTheta: 10000, normEps: 1e-5, maxPositions: 64,
};

function artifact(c: ModelConfig, seed: number) {
  const dir = mkdtempSync(join(tmpdir(), 'twlac-ref-'));
  dirs.push(dir);
  writeArtifact(dir, randomArtifactModel(c, ternaryFormat('trit5', 16), seed));
  return readArtifact(dir);
}

describe('reference runtime', () => {
  it('kronTransform is (C ⊗ B) x', () => {
    const rand = rng(3);
    const l = 3, r = 4;
    const C = Float64Array.from({ length: l * l }, () => rand() - 0.5);
    const B = Float64Array.from({ length: r * r }, () => rand() - 0.5);
    const x = Float64Array.from({ length: l * r }, () => rand() - 0.5);
    const y = kronTransform(x, l, r, C, B);
    for (let i = 0; i < l * r; i++) {
      let s = 0;
      for (let k = 0; k < l * r; k++) s += C[Math.floor(i / r) * l + Math.floor(k / r)] * B[(i % r) * r + (k % r)] * x[k];
      expect(y[i]).toBeCloseTo(s, 12);
    }
  });

  it('rope rotates pairs (i, i+d/2) by pos·θ^(−2i/d)', () => {
    const d = 8, pos = 5, theta = 100;
    const x = Float64Array.from({ length: d }, (_, i) => i + 1);
    const y = x.slice();
    ropeInPlace(y, 0, d, pos, theta);
    for (let i = 0; i < d / 2; i++) {
      const a = pos * theta ** (-2 * i / d);
      // (x_i + j x_{i+d/2}) · e^{ja}
      expect(y[i]).toBeCloseTo(x[i] * Math.cos(a) - x[i + d / 2] * Math.sin(a), 12);
      expect(y[i + d / 2]).toBeCloseTo(x[i] * Math.sin(a) + x[i + d / 2] * Math.cos(a), 12);
    }
  });

  it('reads ternary linears through the reference decoder', () => {
    const a = artifact(tiny, 1);
    const q = a.manifest.blocks[0].q;
    const m = randomArtifactModel(tiny, ternaryFormat('trit5', 16), 1);
    expect(Array.from(linearWeight(a, q))).toEqual(Array.from(decodeTernary(m.blocks[0].linears.q.ternary!)));
  });

  it('is causal: logits of a prefix do not depend on later tokens', () => {
    const a = artifact(tiny, 2);
    const full = referenceLogits(a, [1, 7, 9, 30, 2]);
    const pre = referenceLogits(a, [1, 7, 9, 11]);
    expect(Array.from(full.subarray(0, 3 * tiny.vocab))).toEqual(Array.from(pre.subarray(0, 3 * tiny.vocab)));
    expect(full.subarray(3 * tiny.vocab, 4 * tiny.vocab)).not.toEqual(pre.subarray(3 * tiny.vocab, 4 * tiny.vocab));
  });

  it('GQA: a kv head shared by a query group equals that head duplicated (kvHeads = heads)', () => {
    // Same weights, once with kvHeads=2 and once with the K/V rows of each kv head repeated.
    const gqa = randomArtifactModel(tiny, ternaryFormat('bit2', 8, false), 4);
    const mha = randomArtifactModel({ ...tiny, kvHeads: tiny.heads }, ternaryFormat('bit2', 8, false), 4);
    const d = tiny.headDim, group = tiny.heads / tiny.kvHeads;
    for (let li = 0; li < tiny.layers; li++) {
      for (const r of ['k', 'v'] as const) {
        const src = gqa.blocks[li].linears[r].ternary!;
        const w = decodeTernary(src);
        const dense = new Float32Array(tiny.heads * d * tiny.hidden);
        for (let h = 0; h < tiny.heads; h++) {
          const kh = Math.floor(h / group);
          for (let i = 0; i < d; i++) for (let k = 0; k < tiny.hidden; k++) dense[(h * d + i) * tiny.hidden + k] = w[(kh * d + i) * tiny.hidden + k];
        }
        mha.blocks[li].linears[r] = { name: r, role: r, rows: tiny.heads * d, cols: tiny.hidden, dense, denseDtype: 'float32' };
        gqa.blocks[li].linears[r] = { name: r, role: r, rows: src.rows, cols: src.cols, dense: Float32Array.from(w), denseDtype: 'float32' };
      }
      for (const r of ['q', 'o', 'gate', 'up', 'down'] as const) mha.blocks[li].linears[r] = gqa.blocks[li].linears[r]!;
      mha.blocks[li].attnNorm = gqa.blocks[li].attnNorm;
      mha.blocks[li].mlpNorm = gqa.blocks[li].mlpNorm;
    }
    mha.embed = gqa.embed;
    mha.finalNorm = gqa.finalNorm;
    mha.lmHead = gqa.lmHead;
    const dirA = mkdtempSync(join(tmpdir(), 'twlac-ref-'));
    const dirB = mkdtempSync(join(tmpdir(), 'twlac-ref-'));
    dirs.push(dirA, dirB);
    writeArtifact(dirA, gqa);
    writeArtifact(dirB, mha);
    const ids = [3, 1, 4, 1, 5, 9];
    const la = referenceLogits(readArtifact(dirA), ids);
    const lb = referenceLogits(readArtifact(dirB), ids);
    for (let i = 0; i < la.length; i++) expect(la[i]).toBeCloseTo(lb[i], 5);
  });

  it('greedy decode with the cache equals argmax of full recomputation', () => {
    const a = artifact(tiny, 5);
    const prompt = [2, 3];
    const gen = referenceGreedy(a, prompt, 4);
    const ids = [...prompt];
    for (let i = 0; i < 4; i++) {
      const l = referenceLogits(a, ids).subarray((ids.length - 1) * tiny.vocab);
      let best = 0;
      for (let v = 1; v < tiny.vocab; v++) if (l[v] > l[best]) best = v;
      ids.push(best);
    }
    expect(gen).toEqual(ids.slice(prompt.length));
    const m = new ReferenceModel(a);
    m.step(1);
    expect(m.position).toBe(1);
  });
});
