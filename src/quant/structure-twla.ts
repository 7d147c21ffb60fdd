// The TWLA reference's weight structure (ARB/BiLLM-style), reproduced to show that the
// fitting code reaches the reference accuracy. It is not a kernel format: it needs a
// per-weight mask and two planes on salient columns. Per block of B = 128 input columns:
//   - salient columns: the top k by Σ_rows w² / U_jj² (BiLLM's Hessian-weighted magnitude,
//     U the upper Cholesky factor of H⁻¹), k from a grid up to 64, fitted per row with the
//     order-2 model μ_s + α₀t₀ + α₁t₁;
//   - the other weights split by |w| at a block-wide threshold (a quantile searched on a
//     grid) into two groups, each with its own per-row (μ, α) order-1 fit;
//   - the block's (k, quantile) minimise the diag(H)-weighted squared error, searched
//     coordinate-wise (k at the median split, then the split at the best k);
//   - with `xDomain`, every row's 7 parameters are then refitted jointly with the trits
//     frozen under the block's H slice; all parameters are rounded to fp16.
// Inside GPTQ the block is decided at once at `begin` (as BiLLM does) and GPTQ pushes its
// error onto later blocks.
//
// Bits actually needed (see twlaStorageBits): trits at 1.6 bits (5 per byte), one mask
// bit per non-salient weight, the salient column set per block (k indices of 7 bits, or a
// 128-bit bitmap when that is smaller) plus k itself (8 bits), and fp16 parameters per row:
// 4 for the two groups, 3 more when k > 0.
import { halfToFloat, floatToHalf } from '../graph/tensor.ts';
import { gptq, quantizeBlocksNoFeedback, type BlockContext, type ColumnBlockQuantizer } from './gptq.ts';
import { fitOrder1, fitOrder2, xDomainRefitRow } from './ternary-fit.ts';

const toHalf = (v: number): number => halfToFloat(floatToHalf(v));

const TWLA_BLOCK = 128;
const TWLA_K_GRID = [0, 4, 8, 16, 32, 64];
const TWLA_SPLIT_GRID = [0.5, 0.6, 0.7, 0.8, 0.9];
const TRIT_BITS = 1.6;

export interface TwlaOptions {
  gptq: boolean;
  xDomain: boolean;
  /** Largest k searched (default 64); 0 disables order-2 columns. */
  maxSalient?: number;
  onProgress?: (done: number, total: number) => void;
}

export interface TwlaResult {
  dequant: Float64Array;
  /** Salient columns chosen per block. */
  salientPerBlock: number[];
  /** Split quantile chosen per block. */
  splitPerBlock: number[];
  storageBits: number;
  gptqLoss?: number;
}

/** Bits stored for a rows×cols matrix with `salient[b]` order-2 columns in block b. */
export function twlaStorageBits(rows: number, cols: number, salient: readonly number[], block = TWLA_BLOCK): number {
  const idxBits = Math.ceil(Math.log2(block));
  let bits = 0;
  for (let b = 0, c0 = 0; c0 < cols; b++, c0 += block) {
    const B = Math.min(block, cols - c0);
    const k = salient[b] ?? 0;
    bits += TRIT_BITS * rows * (B + k); // one plane everywhere, a second on salient columns
    bits += rows * (B - k); // group mask
    bits += Math.min(k * idxBits, B) + Math.ceil(Math.log2(block + 1)); // salient set + k
    bits += rows * 16 * (4 + (k > 0 ? 3 : 0)); // fp16 μ/α
  }
  return bits;
}

interface BlockFit {
  err: number;
  q: Float64Array; // [N×B]
  /** Per row: 7 params (μs, α0, α1, μA, αA, μB, αB) */
  params: Float64Array;
  /** Trits for the basis: t0/t1 on salient columns, t on the others. */
  t0: Int8Array;
  t1: Int8Array;
  /** Column role: 0 salient, 1 group A (small |w|), 2 group B; per weight [N×B]. */
  role: Uint8Array;
  /** (order-2 cache entries) sorted |w| of the non-salient weights. */
  mags?: Float64Array;
}

class TwlaQuantizer implements ColumnBlockQuantizer {
  readonly salient: number[] = [];
  readonly split: number[] = [];
  private q: Float64Array = new Float64Array(0);
  private B = 0;

  constructor(readonly kGrid: number[], readonly xDomain: boolean) {}

  begin(w: Float64Array, ctx: BlockContext): void {
    const { rows: N, width: B, hBlock } = ctx;
    this.B = B;
    const dw = new Float64Array(B).fill(1);
    if (hBlock) for (let j = 0; j < B; j++) dw[j] = hBlock[j * B + j];
    const score = new Float64Array(B);
    for (let j = 0; j < B; j++) {
      let s = 0;
      for (let n = 0; n < N; n++) s += w[n * B + j] ** 2;
      score[j] = s / ctx.uDiag[j] ** 2;
    }
    const order = Array.from({ length: B }, (_, j) => j).sort((a, b) => score[b] - score[a]);
    const ks = this.kGrid.filter((k) => k <= B / 2);
    const order2Cache = new Map<number, BlockFit>();
    const evalFit = (k: number, p: number) => this.fitBlock(w, N, B, order.slice(0, k), p, dw, order2Cache);
    let best = evalFit(ks[0], 0.5);
    let bestK = ks[0];
    for (const k of ks.slice(1)) {
      const f = evalFit(k, 0.5);
      if (f.err < best.err) { best = f; bestK = k; }
    }
    let bestP = 0.5;
    for (const p of TWLA_SPLIT_GRID) {
      if (p === 0.5) continue;
      const f = evalFit(bestK, p);
      if (f.err < best.err) { best = f; bestP = p; }
    }
    if (this.xDomain && hBlock) this.refit(w, best, N, B, hBlock);
    for (let i = 0; i < best.params.length; i++) best.params[i] = toHalf(best.params[i]);
    this.render(best, N, B);
    this.q = best.q;
    this.salient.push(bestK);
    this.split.push(bestP);
  }

  /** Fit the block for salient set `sal` and split quantile p; returns the weighted error. */
  private fitBlock(w: Float64Array, N: number, B: number, sal: number[], p: number, dw: Float64Array, cache: Map<number, BlockFit>): BlockFit {
    const k = sal.length;
    const isSal = new Uint8Array(B);
    for (const j of sal) isSal[j] = 1;
    // Block-wide split threshold: the p-quantile of |w| over non-salient weights.
    let mags = cache.get(k)?.mags;
    if (!mags) {
      mags = new Float64Array(N * (B - k));
      let c = 0;
      for (let n = 0; n < N; n++) for (let j = 0; j < B; j++) if (!isSal[j]) mags[c++] = Math.abs(w[n * B + j]);
      mags.sort();
    }
    const thr = mags.length ? mags[Math.min(mags.length - 1, Math.floor(p * mags.length))] : 0;
    const fit: BlockFit = {
      err: 0,
      q: new Float64Array(N * B),
      params: new Float64Array(N * 7),
      t0: new Int8Array(N * B),
      t1: new Int8Array(N * B),
      role: new Uint8Array(N * B),
    };
    const buf = new Float64Array(B), tb = new Int8Array(B), scratch = new Int8Array(B), fscr = new Float64Array(B);
    const idx = new Int32Array(B);
    // order-2 part depends on k only: cache it
    let o2 = cache.get(k);
    if (!o2) {
      o2 = { err: 0, q: new Float64Array(0), params: new Float64Array(N * 3), t0: new Int8Array(N * k), t1: new Int8Array(N * k), role: new Uint8Array(0), mags };
      for (let n = 0; n < N; n++) {
        for (let i = 0; i < k; i++) buf[i] = w[n * B + sal[i]];
        const f = fitOrder2(buf, 0, k, o2.t0, o2.t1, n * k, fscr);
        o2.params.set([f.mu, f.a0, f.a1], n * 3);
      }
      cache.set(k, o2);
    }
    for (let n = 0; n < N; n++) {
      const P = fit.params;
      P[n * 7] = o2.params[n * 3];
      P[n * 7 + 1] = o2.params[n * 3 + 1];
      P[n * 7 + 2] = o2.params[n * 3 + 2];
      for (let i = 0; i < k; i++) {
        const j = sal[i];
        fit.t0[n * B + j] = o2.t0[n * k + i];
        fit.t1[n * B + j] = o2.t1[n * k + i];
        fit.role[n * B + j] = 0;
      }
      for (let grp = 1; grp <= 2; grp++) {
        let m = 0;
        for (let j = 0; j < B; j++) {
          if (isSal[j]) continue;
          const a = Math.abs(w[n * B + j]);
          if ((grp === 1) === (a <= thr)) {
            idx[m] = j;
            buf[m++] = w[n * B + j];
          }
        }
        const f = fitOrder1(buf, 0, m, tb, 0, scratch);
        P[n * 7 + 1 + 2 * grp] = f.mu;
        P[n * 7 + 2 + 2 * grp] = f.alpha;
        for (let i = 0; i < m; i++) {
          fit.t0[n * B + idx[i]] = tb[i];
          fit.role[n * B + idx[i]] = grp;
        }
      }
    }
    this.render(fit, N, B);
    let err = 0;
    for (let n = 0; n < N; n++) for (let j = 0; j < B; j++) err += dw[j] * (w[n * B + j] - fit.q[n * B + j]) ** 2;
    fit.err = err;
    return fit;
  }

  /** q from params and trits. */
  private render(f: BlockFit, N: number, B: number): void {
    for (let n = 0; n < N; n++) {
      const P = f.params, o = n * 7;
      for (let j = 0; j < B; j++) {
        const i = n * B + j, r = f.role[i];
        f.q[i] = r === 0 ? P[o] + P[o + 1] * f.t0[i] + P[o + 2] * f.t1[i] : P[o + 1 + 2 * r] + P[o + 2 + 2 * r] * f.t0[i];
      }
    }
  }

  /** Joint X-domain LS of each row's 7 parameters, trits and roles frozen. */
  private refit(w: Float64Array, f: BlockFit, N: number, B: number, S: Float64Array): void {
    const m = 7;
    const basis = new Float64Array(m * B), sb = new Float64Array(m * B), p = new Float64Array(m);
    for (let n = 0; n < N; n++) {
      basis.fill(0);
      for (let j = 0; j < B; j++) {
        const i = n * B + j, r = f.role[i];
        if (r === 0) {
          basis[j] = 1;
          basis[B + j] = f.t0[i];
          basis[2 * B + j] = f.t1[i];
        } else {
          basis[(1 + 2 * r) * B + j] = 1;
          basis[(2 + 2 * r) * B + j] = f.t0[i];
        }
      }
      xDomainRefitRow(S, B, w, n * B, basis, m, p, f.params.subarray(n * 7, n * 7 + 7), sb);
      f.params.set(p, n * 7);
    }
  }

  column(j: number, _col: Float64Array, q: Float64Array): void {
    const B = this.B;
    for (let n = 0; n < q.length; n++) q[n] = this.q[n * B + j];
  }
}

/** Fit the TWLA reference structure to W [rows × cols]. */
export function quantizeTwlaStructure(w: Float32Array | Float64Array, rows: number, cols: number, h: Float64Array | null, opts: TwlaOptions): TwlaResult {
  const maxK = opts.maxSalient ?? 64;
  const grid = TWLA_K_GRID.filter((k) => k <= maxK);
  const qz = new TwlaQuantizer(grid, opts.xDomain && h !== null);
  const total = Math.ceil(cols / TWLA_BLOCK);
  let done = 0;
  let dequant: Float64Array;
  let gptqLoss: number | undefined;
  if (opts.gptq && h) {
    const r = gptq(w, rows, cols, h, qz, { blockSize: TWLA_BLOCK, onBlock: () => opts.onProgress?.(++done, total) });
    dequant = r.q;
    gptqLoss = r.loss;
  } else {
    dequant = quantizeBlocksNoFeedback(w, rows, cols, h, qz, TWLA_BLOCK);
  }
  return {
    dequant,
    salientPerBlock: qz.salient,
    splitPerBlock: qz.split,
    storageBits: twlaStorageBits(rows, cols, qz.salient),
    gptqLoss,
  };
}
