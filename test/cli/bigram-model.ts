// A model whose logits are known in closed form, for the CLI's eval and run oracles: the
// embeddings and lm_head carry a byte bigram of a text, and with the blocks silenced the
// output is that bigram exactly:
//   L[c, n] = log((count[c,n] + α·u[n]) / (count[c] + α)),  u = add-one unigram,
//   L̄ = L with each row's mean removed (softmax ignores it),
//   L̄ ≈ A·Vᵀ,  V = top r = hidden−1 eigenvectors of L̄ᵀL̄,  A = L̄·V  (best rank-r fit),
//   E[t] = k·[A_t, p_t],  p_t = √(C − |A_t|²),  C = maxₜ |A_t|²,  k = √(hidden / C),
// so every embedding row has RMS exactly 1, the final RMSNorm (γ = 1) leaves it as is, and
// lm_head = [V, 0] / k gives logits(t) = A_t·Vᵀ = rank-r L̄[t].
import { makeTinyLlama, type TinyLlamaOptions } from '../../src/graph/synthetic-llama.ts';
import type { Model } from '../../src/graph/ir.ts';
import { Tensor } from '../../src/graph/tensor.ts';

const BIGRAM_MODEL: TinyLlamaOptions = { layers: 2, hidden: 128, heads: 4, kvHeads: 2, intermediate: 256, vocab: 256, seed: 7 };

/** Row-centred bigram log-probabilities L̄ [vocab, vocab] (row = current byte, column = next). */
export function bigramLogits(bytes: Uint8Array, vocab = 256, alpha = 1): Float64Array {
  const count = new Float64Array(vocab * vocab);
  const uni = new Float64Array(vocab).fill(1);
  for (let i = 0; i + 1 < bytes.length; i++) count[bytes[i] * vocab + bytes[i + 1]]++;
  for (const b of bytes) uni[b]++;
  const uniSum = uni.reduce((a, b) => a + b, 0);
  const L = new Float64Array(vocab * vocab);
  for (let c = 0; c < vocab; c++) {
    let rowSum = 0;
    for (let n = 0; n < vocab; n++) rowSum += count[c * vocab + n];
    let mean = 0;
    for (let n = 0; n < vocab; n++) {
      const v = Math.log((count[c * vocab + n] + (alpha * uni[n]) / uniSum) / (rowSum + alpha));
      L[c * vocab + n] = v;
      mean += v / vocab;
    }
    for (let n = 0; n < vocab; n++) L[c * vocab + n] -= mean;
  }
  return L;
}

/**
 * Eigen-decomposition of a symmetric n×n matrix by cyclic Jacobi rotations. Returns the
 * eigenvalues in descending order and the eigenvectors as the columns of `vectors` (row-major).
 */
export function symmetricEigen(a: Float64Array, n: number, tol = 1e-12, maxSweeps = 50): { values: Float64Array; vectors: Float64Array } {
  const A = Float64Array.from(a);
  const V = new Float64Array(n * n);
  for (let i = 0; i < n; i++) V[i * n + i] = 1;
  let scale = 0;
  for (let i = 0; i < n * n; i++) scale += A[i] * A[i];
  for (let sweep = 0; sweep < maxSweeps; sweep++) {
    let off = 0;
    for (let p = 0; p < n; p++) for (let q = p + 1; q < n; q++) off += A[p * n + q] ** 2;
    if (off <= tol * tol * scale) break;
    for (let p = 0; p < n; p++) {
      for (let q = p + 1; q < n; q++) {
        const apq = A[p * n + q];
        if (Math.abs(apq) < 1e-300) continue;
        // Rotation angle zeroing A[p][q]: tan 2θ = 2apq / (aqq − app).
        const theta = (A[q * n + q] - A[p * n + p]) / (2 * apq);
        const t = Math.sign(theta || 1) / (Math.abs(theta) + Math.sqrt(theta * theta + 1));
        const c = 1 / Math.sqrt(t * t + 1);
        const s = t * c;
        for (let k = 0; k < n; k++) {
          const akp = A[k * n + p];
          const akq = A[k * n + q];
          A[k * n + p] = c * akp - s * akq;
          A[k * n + q] = s * akp + c * akq;
        }
        for (let k = 0; k < n; k++) {
          const apk = A[p * n + k];
          const aqk = A[q * n + k];
          A[p * n + k] = c * apk - s * aqk;
          A[q * n + k] = s * apk + c * aqk;
        }
        for (let k = 0; k < n; k++) {
          const vkp = V[k * n + p];
          const vkq = V[k * n + q];
          V[k * n + p] = c * vkp - s * vkq;
          V[k * n + q] = s * vkp + c * vkq;
        }
      }
    }
  }
  const order = Array.from({ length: n }, (_, i) => i).sort((i, j) => A[j * n + j] - A[i * n + i]);
  const values = Float64Array.from(order, (i) => A[i * n + i]);
  const vectors = new Float64Array(n * n);
  for (let k = 0; k < n; k++) for (let r = 0; r < n; r++) vectors[r * n + k] = V[r * n + order[k]];
  return { values, vectors };
}

/**
 * Embedding table E [vocab, hidden] and lm_head H [vocab, hidden] (row per output token) with
 * rms(E[t]) = 1 and H·E[t] = the best rank-(hidden−1) approximation of row t of `logits`.
 */
export function bigramEmbeddings(logits: Float64Array, vocab: number, hidden: number): { embed: Float32Array; head: Float32Array } {
  const r = Math.min(hidden - 1, vocab);
  const G = new Float64Array(vocab * vocab);
  for (let i = 0; i < vocab; i++) {
    for (let j = i; j < vocab; j++) {
      let s = 0;
      for (let c = 0; c < vocab; c++) s += logits[c * vocab + i] * logits[c * vocab + j];
      G[i * vocab + j] = G[j * vocab + i] = s;
    }
  }
  // Relative off-diagonal 1e-9: the eigenvalues past the text's ~100 distinct bytes are ~1e-9 of the largest.
  const { vectors } = symmetricEigen(G, vocab, 1e-9);
  const A = new Float64Array(vocab * r);
  for (let t = 0; t < vocab; t++) {
    for (let k = 0; k < r; k++) {
      let s = 0;
      for (let n = 0; n < vocab; n++) s += logits[t * vocab + n] * vectors[n * vocab + k];
      A[t * r + k] = s;
    }
  }
  const norms = Array.from({ length: vocab }, (_, t) => {
    let s = 0;
    for (let k = 0; k < r; k++) s += A[t * r + k] ** 2;
    return s;
  });
  const C = Math.max(...norms) * (1 + 1e-6) + 1e-12;
  const k = Math.sqrt(hidden / C);
  const embed = new Float32Array(vocab * hidden);
  const head = new Float32Array(vocab * hidden);
  for (let t = 0; t < vocab; t++) {
    for (let j = 0; j < r; j++) embed[t * hidden + j] = k * A[t * r + j];
    embed[t * hidden + r] = k * Math.sqrt(C - norms[t]);
    for (let j = 0; j < r; j++) head[t * hidden + j] = vectors[t * vocab + j] / k;
  }
  return { embed, head };
}

function setInitializer(model: Model, name: string, f: (old: Float32Array, dims: readonly number[]) => Float32Array): void {
  const v = model.graph.initializers.get(name);
  if (!v?.constValue) throw new Error(`demo model has no initializer ${name}`);
  const dims = v.constValue.dims;
  v.constValue = Tensor.fromFloat32(dims, f(v.constValue.toFloat32(), dims));
}

/** A LLaMA with a bigram of `corpus` in its embeddings and head, its blocks' output projections scaled by `blockScale` (0 silences them). */
export function makeBigramModel(corpus: Uint8Array, opts: TinyLlamaOptions, blockScale: number): Model {
  const o = { ...BIGRAM_MODEL, ...opts, norm: 'decomposed' as const, linear: 'matmul' as const, names: 'hf' as const, weightDtype: 'float32' as const };
  const vocab = o.vocab!;
  const hidden = o.hidden!;
  const model = makeTinyLlama(o);
  const { embed, head } = bigramEmbeddings(bigramLogits(corpus, vocab), vocab, hidden);
  setInitializer(model, 'model.embed_tokens.weight', () => embed);
  // MatMul style stores lm_head as [hidden, vocab] (x·Wᵀ with W = head [vocab, hidden]).
  setInitializer(model, 'lm_head.weight', () => {
    const t = new Float32Array(hidden * vocab);
    for (let v = 0; v < vocab; v++) for (let h = 0; h < hidden; h++) t[h * vocab + v] = head[v * hidden + h];
    return t;
  });
  setInitializer(model, 'model.norm.weight', (g) => g.fill(1));
  for (let l = 0; l < o.layers!; l++) {
    for (const w of ['self_attn.o_proj.weight', 'mlp.down_proj.weight']) {
      setInitializer(model, `model.layers.${l}.${w}`, (W) => W.map((x) => x * blockScale));
    }
  }
  return model;
}
