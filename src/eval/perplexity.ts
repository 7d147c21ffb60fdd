// Perplexity by the protocol of EVAL.md, on any model openModel recognises.
//
// With N token ids and window size W, window w reads ids[wW … wW+W−1] and predicts
// ids[wW+1 … wW+W]: the target of its last position is the first id after the window, so
// every window has W targets and needs W+1 ids. The windows are therefore
// n = ⌊(N − 1) / W⌋ non-overlapping windows from the start; whatever is left is the tail,
// dropped. (The fixture's own training script counts windows the same way.)
//
//   NLL(position) = logsumexp(z) − z[target] = m + log Σ exp(z_j − m) − z[target],  m = max z
//   PPL = exp( Σ NLL / (n·W) )
//
// The logits come from ORT in float32; the log-softmax and all sums are in float64.
// KV-cache models are run with an empty cache (the whole window is a prefill).
import { UserError } from '../errors.ts';
import { openModel, windowLogits, type OpenOptions, type OrtModel } from './ort-session.ts';

export const DEFAULT_WINDOW = 256;
/**
 * Windows per ORT run. bench/eval.ts on the shared 2-core machine (best of 3, ms/window):
 * batch 1: 158, 2: 114, 4: 145, 8: 157; an earlier quieter run 1: 97, 2: 76, 4: 90, 8: 110.
 * Noisy (other processes), but 2 was fastest or near it each time; larger batches lose.
 */
const DEFAULT_BATCH = 2;

export interface PerplexityOptions extends OpenOptions {
  windowSize?: number;
  /** Evaluate only the first `maxWindows` windows. */
  maxWindows?: number;
  /** Windows per ORT run. */
  batch?: number;
  onProgress?: (done: number, total: number) => void;
}

export interface PerplexityResult {
  ppl: number;
  /** Mean next-token NLL in nats. */
  nll: number;
  /** Predicted positions: windows × windowSize. */
  tokens: number;
  windows: number;
  windowSize: number;
  /** Summed NLL of each window's windowSize targets (nats), for per-window figures. */
  windowNll: Float64Array;
}

/** Number of full windows of `windowSize` inputs plus one target after each in `n` ids. */
export function windowCount(n: number, windowSize: number): number {
  return Math.max(0, Math.floor((n - 1) / windowSize));
}

export async function evaluatePerplexity(
  model: string | OrtModel,
  ids: Int32Array | number[],
  opts: PerplexityOptions = {},
): Promise<PerplexityResult> {
  const W = opts.windowSize ?? DEFAULT_WINDOW;
  const batch = opts.batch ?? DEFAULT_BATCH;
  if (!Number.isInteger(W) || W < 1) throw new UserError(`window size must be a positive integer, got ${W}`);
  if (!Number.isInteger(batch) || batch < 1) throw new UserError(`batch must be a positive integer, got ${batch}`);
  let n = windowCount(ids.length, W);
  if (opts.maxWindows !== undefined) {
    if (!Number.isInteger(opts.maxWindows) || opts.maxWindows < 1) throw new UserError(`max windows must be a positive integer, got ${opts.maxWindows}`);
    n = Math.min(n, opts.maxWindows);
  }
  if (n === 0) throw new UserError(`text too short: ${ids.length} tokens, a window of ${W} needs ${W + 1}`);
  const m = typeof model === 'string' ? await openModel(model, opts) : model;
  try {
    return await windowedNll(m, ids, n, W, batch, opts.onProgress);
  } finally {
    if (typeof model === 'string') await m.session.release();
  }
}

async function windowedNll(
  m: OrtModel,
  ids: Int32Array | number[],
  n: number,
  W: number,
  batch: number,
  onProgress: ((done: number, total: number) => void) | undefined,
): Promise<PerplexityResult> {
  const windowNll = new Float64Array(n);
  onProgress?.(0, n);
  for (let w0 = 0; w0 < n; w0 += batch) {
    const wn = Math.min(batch, n - w0);
    const windows: ArrayLike<number>[] = [];
    for (let w = w0; w < w0 + wn; w++) windows.push(ids.slice(w * W, w * W + W));
    const { logits, vocab } = await windowLogits(m, windows);
    for (let w = 0; w < wn; w++) {
      const base = (w0 + w) * W;
      let s = 0;
      for (let t = 0; t < W; t++) s += tokenNll(logits, (w * W + t) * vocab, vocab, ids[base + t + 1]);
      windowNll[w0 + w] = s;
    }
    onProgress?.(w0 + wn, n);
  }
  let sum = 0;
  for (const s of windowNll) sum += s;
  const nll = sum / (n * W);
  return { ppl: Math.exp(nll), nll, tokens: n * W, windows: n, windowSize: W, windowNll };
}

/** −log softmax(z)[target] for the row z = logits[offset … offset+vocab−1], in float64. */
export function tokenNll(logits: Float32Array, offset: number, vocab: number, target: number): number {
  if (!(target >= 0 && target < vocab)) throw new UserError(`token id ${target} is outside the model's vocabulary of ${vocab}`);
  let max = -Infinity;
  for (let j = 0; j < vocab; j++) if (logits[offset + j] > max) max = logits[offset + j];
  let s = 0;
  for (let j = 0; j < vocab; j++) s += Math.exp(logits[offset + j] - max);
  return max + Math.log(s) - logits[offset + target];
}
