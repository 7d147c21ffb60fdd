// GPTQ error feedback (Frantar et al. 2023) with a pluggable column-block quantizer.
//
// W [N, K] row-major, H [K, K]. U = upper Cholesky factor of (H + λI)⁻¹. Columns are
// quantized left to right; column j's scaled error e_j = (w_j − q_j) / U_jj is pushed onto
// the later columns of its block at once (w_c −= e_j U_jc) and onto the columns after the
// block lazily, one rank-B update per block (W_rest −= E_blk · U[blk, rest]).
//
// A quantizer sees each block twice: `begin` gets the block's current (error-updated)
// values and the H slice to fit its parameters; `column` then rounds each column after the
// in-block feedback has reached it. A quantizer that decides the whole block at once
// (e.g. the TWLA structure) simply returns its precomputed columns from `column`. An
// optional `end` may still change the block's quantized values (e.g. refit μ/α with the
// trits frozen); the errors pushed to later blocks are then recomputed from the block's
// start values: E = (W_blk,start − Q_blk) · U_blk⁻¹, which is exactly what the sequential
// loop computes for fixed Q.
//
// Working layout is transposed (Wt [K][N]) so that a column is contiguous.
import { dampedUpperCholeskyOfInverse, spdInverse, type DampedFactor } from './linalg.ts';

export interface BlockContext {
  /** First column of the block and its width. */
  c0: number;
  width: number;
  rows: number;
  /** H[c0:c0+B, c0:c0+B] (undamped), row-major B×B; null when no Hessian is known. */
  hBlock: Float64Array | null;
  /** diag(U) for the block's columns (BiLLM-style saliency uses it). */
  uDiag: Float64Array;
  /** The metric GPTQ actually charges the block with, ([H⁻¹]_blk)⁻¹ = (U_bbᵀU_bb)⁻¹, when
   *  requested by the quantizer (`wantsSchur`); B×B row-major. Without feedback it is the
   *  H slice itself (or null). */
  schur: Float64Array | null;
}

export interface ColumnBlockQuantizer {
  /** Fit the block: `w` holds the block's current values row-major [rows × width]. */
  begin(w: Float64Array, ctx: BlockContext): void;
  /** Quantize block column j: `col` holds its current values (length rows); write `q`. */
  column(j: number, col: Float64Array, q: Float64Array): void;
  /** Optional refinement once every column is quantized: `wStart` is the block at `begin`,
   *  `q` the quantized block (both row-major rows × width); may rewrite q in place.
   *  Returning true asks GPTQ to run the block's column loop again from its start state
   *  (the quantizer keeps its refitted parameters), after which `end` is called again. */
  end?(wStart: Float64Array, q: Float64Array, ctx: BlockContext): boolean | void;
  wantsSchur?: boolean;
}

/** Where the lazy batch update W_rest −= E_blk · U[blk, rest] runs instead of this loop's
 *  float64 code (src/gpu/ops.ts runs it on the GPU in fp32). */
export interface RestUpdate {
  /** Take the working matrix Wᵀ [cols × rows] and U [cols × cols] before the first block. */
  begin(wt: Float64Array, u: Float64Array, rows: number, cols: number): void;
  /** Push block [c0, c0+width)'s scaled errors `err` [width × rows] onto every later column,
   *  then write the updated columns [c0+width, c0+width+next) back into `wt`. */
  apply(c0: number, width: number, err: Float64Array, wt: Float64Array, next: number): void;
  end(): void;
}

export interface GptqOptions {
  blockSize?: number;
  percdamp?: number;
  onBlock?: (c0: number, cols: number) => void;
  restUpdate?: RestUpdate;
  /** dampedUpperCholeskyOfInverse(h, cols, percdamp), when the caller has it already (one
   *  factor serves every linear, and every row slice of one, that reads the same input). */
  factor?: DampedFactor;
}

export interface GptqResult {
  /** Quantized W, row-major [N×K]. */
  q: Float64Array;
  /** GPTQ's loss Σ e² (the scaled errors), a proxy of the output error added. */
  loss: number;
  damp: number;
}

export function gptq(
  w: Float64Array | Float32Array,
  rows: number,
  cols: number,
  h: Float64Array,
  quantizer: ColumnBlockQuantizer,
  opts: GptqOptions = {},
): GptqResult {
  const blockSize = opts.blockSize ?? 128;
  const N = rows, K = cols;
  if (opts.factor && opts.factor.u.length !== K * K) throw new Error(`GPTQ factor has ${opts.factor.u.length} values, expected ${K}×${K}`);
  const { u, damp } = opts.factor ?? dampedUpperCholeskyOfInverse(h, K, opts.percdamp ?? 0.01);
  const wt = new Float64Array(K * N);
  for (let n = 0; n < N; n++) for (let k = 0; k < K; k++) wt[k * N + n] = w[n * K + k];
  const q = new Float64Array(N * K);
  let loss = 0;
  const rest = opts.restUpdate;
  rest?.begin(wt, u, N, K);
  const col = new Float64Array(N);
  const qcol = new Float64Array(N);
  for (let c0 = 0; c0 < K; c0 += blockSize) {
    const B = Math.min(blockSize, K - c0);
    const c1 = c0 + B;
    const wStart = new Float64Array(N * B);
    for (let j = 0; j < B; j++) {
      const src = (c0 + j) * N;
      for (let n = 0; n < N; n++) wStart[n * B + j] = wt[src + n];
    }
    const hBlock = new Float64Array(B * B);
    for (let i = 0; i < B; i++) for (let j = 0; j < B; j++) hBlock[i * B + j] = h[(c0 + i) * K + c0 + j];
    const uDiag = new Float64Array(B);
    for (let j = 0; j < B; j++) uDiag[j] = u[(c0 + j) * K + c0 + j];
    let schur: Float64Array | null = null;
    if (quantizer.wantsSchur) {
      const hinv = new Float64Array(B * B); // [H⁻¹]_bb = U_bbᵀ U_bb
      for (let i = 0; i < B; i++)
        for (let j = 0; j <= i; j++) {
          let s = 0;
          for (let k = 0; k <= j; k++) s += u[(c0 + k) * K + c0 + i] * u[(c0 + k) * K + c0 + j];
          hinv[i * B + j] = s;
          hinv[j * B + i] = s;
        }
      schur = spdInverse(hinv, B);
    }
    const ctx: BlockContext = { c0, width: B, rows: N, hBlock, uDiag, schur };
    quantizer.begin(wStart, ctx);
    const qBlk = new Float64Array(N * B);
    const err = new Float64Array(B * N); // scaled errors, [B][N]
    for (let pass = 0; ; pass++) {
      if (pass > 0) {
        // rerun the block from its start state with the quantizer's updated parameters
        for (let j = 0; j < B; j++) {
          const dst = (c0 + j) * N;
          for (let n = 0; n < N; n++) wt[dst + n] = wStart[n * B + j];
        }
      }
      for (let j = 0; j < B; j++) {
        const cj = c0 + j;
        col.set(wt.subarray(cj * N, cj * N + N));
        quantizer.column(j, col, qcol);
        const d = u[cj * K + cj];
        const eo = j * N;
        for (let n = 0; n < N; n++) {
          qBlk[n * B + j] = qcol[n];
          err[eo + n] = (col[n] - qcol[n]) / d;
        }
        for (let c = cj + 1; c < c1; c++) {
          const f = u[cj * K + c];
          if (f === 0) continue;
          const dst = c * N;
          for (let n = 0; n < N; n++) wt[dst + n] -= err[eo + n] * f;
        }
      }
      if (!quantizer.end) break;
      if (quantizer.end(wStart, qBlk, ctx)) continue;
      // E = (W_start − Q) U_bb⁻¹, column by column: E_j = (D_j − Σ_{i<j} U_ij E_i) / U_jj
      for (let j = 0; j < B; j++) {
        const eo = j * N;
        for (let n = 0; n < N; n++) err[eo + n] = wStart[n * B + j] - qBlk[n * B + j];
        for (let i = 0; i < j; i++) {
          const f = u[(c0 + i) * K + c0 + j];
          if (f === 0) continue;
          const io = i * N;
          for (let n = 0; n < N; n++) err[eo + n] -= f * err[io + n];
        }
        const d = u[(c0 + j) * K + c0 + j];
        for (let n = 0; n < N; n++) err[eo + n] /= d;
      }
      break;
    }
    for (let n = 0; n < N; n++) for (let j = 0; j < B; j++) q[n * K + c0 + j] = qBlk[n * B + j];
    for (let i = 0; i < B * N; i++) loss += err[i] * err[i];
    // Lazy batch update of the columns after the block.
    if (rest) rest.apply(c0, B, err, wt, blockSize);
    else for (let c = c1; c < K; c++) {
      const dst = c * N;
      for (let j = 0; j < B; j++) {
        const f = u[(c0 + j) * K + c];
        if (f === 0) continue;
        const eo = j * N;
        for (let n = 0; n < N; n++) wt[dst + n] -= err[eo + n] * f;
      }
    }
    opts.onBlock?.(c0, B);
  }
  rest?.end();
  return { q, loss, damp };
}

/**
 * The same block quantizer without error feedback: each block is fitted and rounded on the
 * original W. `h` (optional) supplies the blocks' H slices for X-domain fits and diag(U)
 * for saliency; without it hBlock is null and uDiag is all ones.
 */
export function quantizeBlocksNoFeedback(
  w: Float64Array | Float32Array,
  rows: number,
  cols: number,
  h: Float64Array | null,
  quantizer: ColumnBlockQuantizer,
  blockSize = 128,
): Float64Array {
  const N = rows, K = cols;
  const q = new Float64Array(N * K);
  const col = new Float64Array(N), qcol = new Float64Array(N);
  const u = h ? dampedUpperCholeskyOfInverse(h, K).u : null;
  for (let c0 = 0; c0 < K; c0 += blockSize) {
    const B = Math.min(blockSize, K - c0);
    const blk = new Float64Array(N * B);
    for (let n = 0; n < N; n++) for (let j = 0; j < B; j++) blk[n * B + j] = w[n * K + c0 + j];
    let hBlock: Float64Array | null = null;
    if (h) {
      hBlock = new Float64Array(B * B);
      for (let i = 0; i < B; i++) for (let j = 0; j < B; j++) hBlock[i * B + j] = h[(c0 + i) * K + c0 + j];
    }
    const uDiag = new Float64Array(B).fill(1);
    if (u) for (let j = 0; j < B; j++) uDiag[j] = u[(c0 + j) * K + c0 + j];
    const ctx: BlockContext = { c0, width: B, rows: N, hBlock, uDiag, schur: hBlock };
    quantizer.begin(blk, ctx);
    const qBlk = new Float64Array(N * B);
    do {
      for (let j = 0; j < B; j++) {
        for (let n = 0; n < N; n++) col[n] = blk[n * B + j];
        quantizer.column(j, col, qcol);
        for (let n = 0; n < N; n++) qBlk[n * B + j] = qcol[n];
      }
    } while (quantizer.end?.(blk, qBlk, ctx));
    for (let n = 0; n < N; n++) for (let j = 0; j < B; j++) q[n * K + c0 + j] = qBlk[n * B + j];
  }
  return q;
}

/** Output error ‖(W − Ŵ) Xᵀ‖² expressed through H ∝ XᵀX: Σ_rows (w−ŵ) H (w−ŵ)ᵀ (over `rowIds`, default every row). */
export function outputError(w: ArrayLike<number>, wq: ArrayLike<number>, rows: number, cols: number, h: Float64Array, rowIds?: readonly number[]): number {
  const r = new Float64Array(cols);
  let total = 0;
  for (const n of rowIds ?? Array.from({ length: rows }, (_, i) => i)) {
    for (let k = 0; k < cols; k++) r[k] = w[n * cols + k] - wq[n * cols + k];
    for (let i = 0; i < cols; i++) {
      if (r[i] === 0) continue;
      let d = 0;
      const ro = i * cols;
      for (let k = 0; k < cols; k++) d += h[ro + k] * r[k];
      total += r[i] * d;
    }
  }
  return total;
}

/**
 * Relative output error ‖(W − Ŵ)Xᵀ‖² / ‖W Xᵀ‖² through H, on evenly spaced rows so that the
 * cost stays near `budget` multiply-adds (each row costs 2·cols²): exact for small linears, an
 * estimate on a row sample for large ones (a 4096-column linear: 8 rows at 2^28).
 */
export function relativeOutputError(
  w: ArrayLike<number>,
  wq: ArrayLike<number>,
  rows: number,
  cols: number,
  h: Float64Array,
  budget: number,
): { error: number; rows: number } {
  const n = Math.max(1, Math.min(rows, Math.floor(budget / (2 * cols * cols))));
  const ids = Array.from({ length: n }, (_, i) => Math.floor((i * rows) / n));
  const ref = outputError(w, new Float64Array(w.length), rows, cols, h, ids);
  return { error: ref > 0 ? outputError(w, wq, rows, cols, h, ids) / ref : 0, rows: n };
}
