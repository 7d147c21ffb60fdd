// One decoder block of the block program (src/runtime/reference.ts), forward and backward by
// hand, in float32, over one segment of S tokens at positions 0..S-1 (A16: no activation
// quantisation, the online Kronecker transforms included):
//   a1 = T_attn(rms(x)·γ₁); q,k,v = a1·Wᵀ;  att = softmax(rope(q)·rope(k)ᵀ/√d + causal)·v
//   h = x + o(T_o(att));  a3 = T_mlp(rms(h)·γ₂);  out = h + down(T_down(silu(gate(a3))·up(a3)))
// The backward accumulates ∂loss/∂W of the seven linears given ∂loss/∂out and returns ∂loss/∂x
// (which the end-to-end stage chains through the blocks). It is checked against central finite
// differences in test/block-grad.test.ts. The refinement's loss, 1 − cos(out, teacher) per
// token, is here too (TernaryLLM's outlier-friendly feature distillation: the cosine ignores
// the scale of outlier channels).
import type { BlockLinearRole } from '../artifact/build.ts';
import type { ModelConfig } from '../graph/model-config.ts';

/** The block's share of the model's shape. */
export type BlockDims = Pick<ModelConfig, 'hidden' | 'heads' | 'kvHeads' | 'headDim' | 'intermediate' | 'ropeTheta' | 'normEps'>;

/** x' = C·X·Bᵀ on the row-major [l, r] view of each token's vector. */
export interface KronT {
  l: number;
  r: number;
  C: Float64Array;
  B: Float64Array;
}

export interface BlockParams {
  attnNorm: Float32Array | null;
  mlpNorm: Float32Array | null;
  /** Row-major [rows = out, cols = in]. */
  W: Record<BlockLinearRole, Float32Array>;
  bias: Partial<Record<BlockLinearRole, Float32Array>>;
  T: { attn?: KronT; o?: KronT; mlp?: KronT; down?: KronT };
}

/** C[m,n] (+)= Σ_k A[m,k]·B[n,k] (A [M,K], B [N,K]): two rows of A against four rows of B, so
 *  each load serves two or four of the eight sums (about 2× the one-row loop on the fixture's shapes). */
function gemmNT(A: Float32Array, B: Float32Array, M: number, K: number, N: number, C: Float32Array, add: boolean): Float32Array {
  let m = 0;
  for (; m + 2 <= M; m += 2) {
    const a0 = m * K, a1 = a0 + K, c0 = m * N, c1 = c0 + N;
    let n = 0;
    for (; n + 4 <= N; n += 4) {
      const b0 = n * K, b1 = b0 + K, b2 = b1 + K, b3 = b2 + K;
      let s00 = 0, s01 = 0, s02 = 0, s03 = 0, s10 = 0, s11 = 0, s12 = 0, s13 = 0;
      for (let k = 0; k < K; k++) {
        const x0 = A[a0 + k], x1 = A[a1 + k];
        const w0 = B[b0 + k], w1 = B[b1 + k], w2 = B[b2 + k], w3 = B[b3 + k];
        s00 += x0 * w0; s01 += x0 * w1; s02 += x0 * w2; s03 += x0 * w3;
        s10 += x1 * w0; s11 += x1 * w1; s12 += x1 * w2; s13 += x1 * w3;
      }
      if (add) {
        C[c0 + n] += s00; C[c0 + n + 1] += s01; C[c0 + n + 2] += s02; C[c0 + n + 3] += s03;
        C[c1 + n] += s10; C[c1 + n + 1] += s11; C[c1 + n + 2] += s12; C[c1 + n + 3] += s13;
      } else {
        C[c0 + n] = s00; C[c0 + n + 1] = s01; C[c0 + n + 2] = s02; C[c0 + n + 3] = s03;
        C[c1 + n] = s10; C[c1 + n + 1] = s11; C[c1 + n + 2] = s12; C[c1 + n + 3] = s13;
      }
    }
    for (; n < N; n++) {
      let s0 = 0, s1 = 0;
      for (let k = 0; k < K; k++) {
        s0 += A[a0 + k] * B[n * K + k];
        s1 += A[a1 + k] * B[n * K + k];
      }
      C[c0 + n] = add ? C[c0 + n] + s0 : s0;
      C[c1 + n] = add ? C[c1 + n] + s1 : s1;
    }
  }
  for (; m < M; m++) {
    const a0 = m * K;
    for (let n = 0; n < N; n++) {
      let s = 0;
      for (let k = 0; k < K; k++) s += A[a0 + k] * B[n * K + k];
      C[m * N + n] = add ? C[m * N + n] + s : s;
    }
  }
  return C;
}

/** C[m,n] = Σ_k A[m,k]·B[n,k] (A [M,K], B [N,K]). */
export function mmABt(A: Float32Array, B: Float32Array, M: number, K: number, N: number, C: Float32Array = new Float32Array(M * N)): Float32Array {
  return gemmNT(A, B, M, K, N, C, false);
}

/** C[m,n] += Σ_k A[m,k]·B[k,n] (A [M,K], B [K,N]); B is transposed once so the sums run along rows. */
export function mmAB(A: Float32Array, B: Float32Array, M: number, K: number, N: number, C: Float32Array = new Float32Array(M * N)): Float32Array {
  return gemmNT(A, transpose(B, K, N), M, K, N, C, true);
}

export function transpose(A: Float32Array, M: number, N: number): Float32Array {
  const T = new Float32Array(M * N);
  for (let m = 0; m < M; m++) for (let n = 0; n < N; n++) T[n * M + m] = A[m * N + n];
  return T;
}

/** Y = X·Wᵀ + b for X [S, K], W [N, K]. */
function linear(X: Float32Array, W: Float32Array, b: Float32Array | undefined, S: number, K: number, N: number): Float32Array {
  const Y = mmABt(X, W, S, K, N);
  if (b) for (let s = 0; s < S; s++) for (let n = 0; n < N; n++) Y[s * N + n] += b[n];
  return Y;
}

/** Per token: y = C·X·Bᵀ (transposed: dX = Cᵀ·dY·B). */
function kron(X: Float32Array, S: number, t: KronT | undefined, transposed: boolean): Float32Array {
  if (!t) return X;
  const { l, r, C, B } = t;
  const n = l * r;
  const Y = new Float32Array(S * n);
  const tmp = new Float64Array(n);
  for (let s = 0; s < S; s++) {
    const x0 = s * n;
    tmp.fill(0);
    if (!transposed) {
      // tmp = X·Bᵀ, then Y = C·tmp
      for (let a = 0; a < l; a++) for (let j = 0; j < r; j++) {
        let v = 0;
        for (let b = 0; b < r; b++) v += X[x0 + a * r + b] * B[j * r + b];
        tmp[a * r + j] = v;
      }
      for (let i = 0; i < l; i++) for (let a = 0; a < l; a++) {
        const c = C[i * l + a];
        if (c !== 0) for (let j = 0; j < r; j++) Y[x0 + i * r + j] += c * tmp[a * r + j];
      }
    } else {
      // tmp = Cᵀ·X, then Y = tmp·B
      for (let i = 0; i < l; i++) for (let a = 0; a < l; a++) {
        const c = C[i * l + a];
        if (c !== 0) for (let j = 0; j < r; j++) tmp[a * r + j] += c * X[x0 + i * r + j];
      }
      for (let a = 0; a < l; a++) for (let b = 0; b < r; b++) {
        let v = 0;
        for (let j = 0; j < r; j++) v += tmp[a * r + j] * B[j * r + b];
        Y[x0 + a * r + b] = v;
      }
    }
  }
  return Y;
}

/** RMSNorm rows of X [S, H]; returns the normalised rows and each row's 1/rms. */
function rms(X: Float32Array, S: number, H: number, g: Float32Array | null, eps: number): { Y: Float32Array; inv: Float32Array } {
  const Y = new Float32Array(S * H);
  const inv = new Float32Array(S);
  for (let s = 0; s < S; s++) {
    let ss = 0;
    for (let i = 0; i < H; i++) ss += X[s * H + i] * X[s * H + i];
    const r = 1 / Math.sqrt(ss / H + eps);
    inv[s] = r;
    for (let i = 0; i < H; i++) Y[s * H + i] = X[s * H + i] * r * (g ? g[i] : 1);
  }
  return { Y, inv };
}

function rmsBackward(X: Float32Array, inv: Float32Array, g: Float32Array | null, dY: Float32Array, S: number, H: number): Float32Array {
  const dX = new Float32Array(S * H);
  for (let s = 0; s < S; s++) {
    const r = inv[s];
    let dot = 0;
    for (let i = 0; i < H; i++) dot += dY[s * H + i] * (g ? g[i] : 1) * X[s * H + i];
    const c = (r * r * r * dot) / H;
    for (let i = 0; i < H; i++) dX[s * H + i] = r * (g ? g[i] : 1) * dY[s * H + i] - c * X[s * H + i];
  }
  return dX;
}

/** Rotary embedding (HF rotate_half) on every head of X [S, heads·d], in place; sign −1 applies the inverse (the backward). */
function rope(X: Float32Array, S: number, heads: number, d: number, theta: number, sign: 1 | -1): void {
  const half = d / 2;
  for (let s = 0; s < S; s++) {
    for (let i = 0; i < half; i++) {
      const a = s * Math.pow(theta, (-2 * i) / d);
      const c = Math.cos(a);
      const sn = sign * Math.sin(a);
      for (let h = 0; h < heads; h++) {
        const o = s * heads * d + h * d;
        const x0 = X[o + i];
        const x1 = X[o + i + half];
        X[o + i] = x0 * c - x1 * sn;
        X[o + i + half] = x1 * c + x0 * sn;
      }
    }
  }
}

const sigmoid = (v: number) => 1 / (1 + Math.exp(-v));

export interface BlockCache {
  S: number;
  x: Float32Array;
  inv1: Float32Array;
  a1: Float32Array;
  q: Float32Array;
  k: Float32Array;
  v: Float32Array;
  /** Softmax probabilities [heads, S, S]. */
  P: Float32Array;
  a2: Float32Array;
  h: Float32Array;
  inv2: Float32Array;
  a3: Float32Array;
  g: Float32Array;
  u: Float32Array;
  a4: Float32Array;
}

/** The block on one segment x [S, hidden]; `cache` keeps what the backward needs. */
export function blockForward(p: BlockParams, dims: BlockDims, x: Float32Array, S: number): { out: Float32Array; cache: BlockCache } {
  const { hidden: H, heads, kvHeads, headDim: d, intermediate: I } = dims;
  const group = heads / kvHeads;
  const n1 = rms(x, S, H, p.attnNorm, dims.normEps);
  const a1 = kron(n1.Y, S, p.T.attn, false);
  const q = linear(a1, p.W.q, p.bias.q, S, H, heads * d);
  const k = linear(a1, p.W.k, p.bias.k, S, H, kvHeads * d);
  const v = linear(a1, p.W.v, p.bias.v, S, H, kvHeads * d);
  rope(q, S, heads, d, dims.ropeTheta, 1);
  rope(k, S, kvHeads, d, dims.ropeTheta, 1);
  const P = new Float32Array(heads * S * S);
  const att = new Float32Array(S * heads * d);
  const scale = 1 / Math.sqrt(d);
  for (let hd = 0; hd < heads; hd++) {
    const kh = Math.floor(hd / group);
    for (let s = 0; s < S; s++) {
      const row = hd * S * S + s * S;
      let max = -Infinity;
      for (let t = 0; t <= s; t++) {
        let dot = 0;
        for (let i = 0; i < d; i++) dot += q[s * heads * d + hd * d + i] * k[t * kvHeads * d + kh * d + i];
        P[row + t] = dot * scale;
        if (P[row + t] > max) max = P[row + t];
      }
      let sum = 0;
      for (let t = 0; t <= s; t++) sum += P[row + t] = Math.exp(P[row + t] - max);
      for (let t = 0; t <= s; t++) {
        const pr = (P[row + t] /= sum);
        for (let i = 0; i < d; i++) att[s * heads * d + hd * d + i] += pr * v[t * kvHeads * d + kh * d + i];
      }
    }
  }
  const a2 = kron(att, S, p.T.o, false);
  const o = linear(a2, p.W.o, p.bias.o, S, heads * d, H);
  const h = Float32Array.from(x, (xv, i) => xv + o[i]);
  const n2 = rms(h, S, H, p.mlpNorm, dims.normEps);
  const a3 = kron(n2.Y, S, p.T.mlp, false);
  const g = linear(a3, p.W.gate, p.bias.gate, S, H, I);
  const u = linear(a3, p.W.up, p.bias.up, S, H, I);
  const m = Float32Array.from(g, (gv, i) => gv * sigmoid(gv) * u[i]);
  const a4 = kron(m, S, p.T.down, false);
  const dn = linear(a4, p.W.down, p.bias.down, S, I, H);
  const out = Float32Array.from(h, (hv, i) => hv + dn[i]);
  return { out, cache: { S, x, inv1: n1.inv, a1, q, k, v, P, a2, h, inv2: n2.inv, a3, g, u, a4 } };
}

/** dW = dYᵀ·X for dY [S, N], X [S, K], added into acc [N, K]. */
function weightGrad(dY: Float32Array, X: Float32Array, S: number, N: number, K: number, acc: Float32Array): void {
  const g = mmABt(transpose(dY, S, N), transpose(X, S, K), N, S, K);
  for (let i = 0; i < acc.length; i++) acc[i] += g[i];
}

/** ∂loss/∂W of the seven linears, accumulated into `dW`, given ∂loss/∂out [S, hidden]; returns ∂loss/∂x. */
export function blockBackward(p: BlockParams, dims: BlockDims, c: BlockCache, dOut: Float32Array, dW: Record<BlockLinearRole, Float32Array>): Float32Array {
  const { hidden: H, heads, kvHeads, headDim: d, intermediate: I } = dims;
  const S = c.S;
  const group = heads / kvHeads;
  // MLP
  weightGrad(dOut, c.a4, S, H, I, dW.down);
  const dm = kron(mmAB(dOut, p.W.down, S, H, I), S, p.T.down, true);
  const dg = new Float32Array(S * I);
  const du = new Float32Array(S * I);
  for (let i = 0; i < S * I; i++) {
    const sg = sigmoid(c.g[i]);
    du[i] = dm[i] * c.g[i] * sg;
    dg[i] = dm[i] * c.u[i] * sg * (1 + c.g[i] * (1 - sg));
  }
  weightGrad(dg, c.a3, S, I, H, dW.gate);
  weightGrad(du, c.a3, S, I, H, dW.up);
  const da3 = mmAB(dg, p.W.gate, S, I, H);
  mmAB(du, p.W.up, S, I, H, da3);
  const dh = rmsBackward(c.h, c.inv2, p.mlpNorm, kron(da3, S, p.T.mlp, true), S, H);
  for (let i = 0; i < S * H; i++) dh[i] += dOut[i];
  // Attention
  weightGrad(dh, c.a2, S, H, heads * d, dW.o);
  const datt = kron(mmAB(dh, p.W.o, S, H, heads * d), S, p.T.o, true);
  const dq = new Float32Array(S * heads * d);
  const dk = new Float32Array(S * kvHeads * d);
  const dv = new Float32Array(S * kvHeads * d);
  const scale = 1 / Math.sqrt(d);
  const dP = new Float32Array(S);
  for (let hd = 0; hd < heads; hd++) {
    const kh = Math.floor(hd / group);
    for (let s = 0; s < S; s++) {
      const row = hd * S * S + s * S;
      const ao = s * heads * d + hd * d;
      let dot = 0;
      for (let t = 0; t <= s; t++) {
        const vo = t * kvHeads * d + kh * d;
        let e = 0;
        for (let i = 0; i < d; i++) {
          e += datt[ao + i] * c.v[vo + i];
          dv[vo + i] += c.P[row + t] * datt[ao + i];
        }
        dP[t] = e;
        dot += e * c.P[row + t];
      }
      for (let t = 0; t <= s; t++) {
        const ds = c.P[row + t] * (dP[t] - dot) * scale;
        if (ds === 0) continue;
        const ko = t * kvHeads * d + kh * d;
        for (let i = 0; i < d; i++) {
          dq[ao + i] += ds * c.k[ko + i];
          dk[ko + i] += ds * c.q[ao + i];
        }
      }
    }
  }
  rope(dq, S, heads, d, dims.ropeTheta, -1);
  rope(dk, S, kvHeads, d, dims.ropeTheta, -1);
  weightGrad(dq, c.a1, S, heads * d, H, dW.q);
  weightGrad(dk, c.a1, S, kvHeads * d, H, dW.k);
  weightGrad(dv, c.a1, S, kvHeads * d, H, dW.v);
  const da1 = mmAB(dq, p.W.q, S, heads * d, H);
  mmAB(dk, p.W.k, S, kvHeads * d, H, da1);
  mmAB(dv, p.W.v, S, kvHeads * d, H, da1);
  const dx = rmsBackward(c.x, c.inv1, p.attnNorm, kron(da1, S, p.T.attn, true), S, H);
  for (let i = 0; i < S * H; i++) dx[i] += dh[i];
  return dx;
}

/** Mean over tokens of 1 − cos(out_s, target_s), and its gradient with respect to `out`. */
export function cosineLoss(out: Float32Array, target: Float32Array, S: number, H: number, withGrad: boolean): { loss: number; dOut?: Float32Array } {
  let loss = 0;
  const dOut = withGrad ? new Float32Array(S * H) : undefined;
  for (let s = 0; s < S; s++) {
    let oo = 0, tt = 0, ot = 0;
    for (let i = 0; i < H; i++) {
      const o = out[s * H + i], t = target[s * H + i];
      oo += o * o;
      tt += t * t;
      ot += o * t;
    }
    const no = Math.sqrt(oo) || 1e-30, nt = Math.sqrt(tt) || 1e-30;
    const cos = ot / (no * nt);
    loss += 1 - cos;
    if (dOut) for (let i = 0; i < H; i++) dOut[s * H + i] = -(target[s * H + i] / (no * nt) - (cos * out[s * H + i]) / oo) / S;
  }
  return { loss: loss / S, dOut };
}

/** The model's output head on the last block's output x [S, hidden]: rms(x)·γ, then logits = ·headᵀ (+ bias). */
export interface HeadParams {
  norm: Float32Array | null;
  /** Row-major [vocab, hidden]. */
  W: Float32Array;
  bias?: Float32Array;
  vocab: number;
}

/** Log-softmax of the head's logits on x [S, hidden], row-major [S, vocab]. */
export function headLogProbs(head: HeadParams, x: Float32Array, S: number, H: number, eps: number): Float32Array {
  return headForward(head, x, S, H, eps).logp;
}

function headForward(head: HeadParams, x: Float32Array, S: number, H: number, eps: number): { logp: Float32Array; inv: Float32Array } {
  const V = head.vocab;
  const n = rms(x, S, H, head.norm, eps);
  const logp = linear(n.Y, head.W, head.bias, S, H, V);
  for (let s = 0; s < S; s++) {
    const row = logp.subarray(s * V, (s + 1) * V);
    let max = -Infinity;
    for (const v of row) if (v > max) max = v;
    let sum = 0;
    for (const v of row) sum += Math.exp(v - max);
    const lse = max + Math.log(sum);
    for (let v = 0; v < V; v++) row[v] -= lse;
  }
  return { logp, inv: n.inv };
}

/**
 * Logit distillation through the head: mean over tokens of KL(teacher ‖ student) between the
 * next-token distributions, the teacher's given as log-probabilities [S, vocab]; with `withGrad`
 * also ∂loss/∂x [S, hidden] (∂KL/∂logits = p_student − p_teacher, then back through the head
 * and the final RMSNorm).
 */
export function logitKlLoss(head: HeadParams, x: Float32Array, teacherLogp: Float32Array, S: number, H: number, eps: number, withGrad: boolean): { loss: number; dX?: Float32Array } {
  const V = head.vocab;
  const { logp, inv } = headForward(head, x, S, H, eps);
  let loss = 0;
  const dLogits = withGrad ? new Float32Array(S * V) : undefined;
  for (let i = 0; i < S * V; i++) {
    const pt = Math.exp(teacherLogp[i]);
    loss += pt * (teacherLogp[i] - logp[i]);
    if (dLogits) dLogits[i] = (Math.exp(logp[i]) - pt) / S;
  }
  if (!dLogits) return { loss: loss / S };
  return { loss: loss / S, dX: rmsBackward(x, inv, head.norm, mmAB(dLogits, head.W, S, V, H), S, H) };
}
