// Decoding with onnxruntime-node, greedy unless `opts.choose` samples (eval/sampling.ts). A plain model is re-run on the whole sequence at
// every step (its only interface); a KV-cache model is prefilled once on the prompt and
// then fed one token per step, its present.* outputs becoming the next step's past inputs.
// Greedy: the next token is argmax of the last position's logits (lowest id on ties, as
// numpy/torch argmax).
import { UserError } from '../errors.ts';
import { forward, openModel, type OpenOptions, type OrtModel } from './ort-session.ts';
import type * as ort from 'onnxruntime-node';
import type { TokenChooser } from './sampling.ts';

export interface GenerateOptions extends OpenOptions {
  /** Stop after emitting this id (it is included in the result). */
  eosId?: number;
  /** For a KV model: re-run the full sequence each step instead of using the cache (a check). */
  noCache?: boolean;
  onProgress?: (done: number, total: number) => void;
  /** Picks each next id from the last position's logits (default: argmax). */
  choose?: TokenChooser;
  /** Called with each new id as soon as it is chosen (for streaming output). */
  onToken?: (id: number) => void;
}

/** Returns the generated ids only (not the prompt): at most `maxTokens`, fewer if eosId came. */
export async function generate(
  model: string | OrtModel,
  promptIds: ArrayLike<number>,
  maxTokens: number,
  opts: GenerateOptions = {},
): Promise<Int32Array> {
  if (promptIds.length === 0) throw new UserError('the prompt is empty: generation needs at least one token');
  if (!Number.isInteger(maxTokens) || maxTokens < 0) throw new UserError(`max tokens must be a non-negative integer, got ${maxTokens}`);
  const m = typeof model === 'string' ? await openModel(model, opts) : model;
  try {
    return await decode(m, promptIds, maxTokens, opts);
  } finally {
    if (typeof model === 'string') await m.session.release();
  }
}

async function decode(m: OrtModel, promptIds: ArrayLike<number>, maxTokens: number, opts: GenerateOptions): Promise<Int32Array> {
  const seq = Array.from(promptIds);
  const out: number[] = [];
  const useCache = m.kind === 'kv' && !opts.noCache;
  let past: { tensors: Map<string, ort.Tensor>; length: number } | undefined;
  opts.onProgress?.(0, maxTokens);
  while (out.length < maxTokens) {
    // With a cache, only the tokens it has not yet seen go in: the prompt, then one a step.
    const fed = useCache && past ? seq.slice(past.length) : seq;
    const r = await forward(m, fed, 1, fed.length, useCache ? past : undefined);
    if (useCache) past = { tensors: r.presents, length: seq.length };
    const next = (opts.choose ?? argmax)(r.logits, (fed.length - 1) * r.vocab, r.vocab);
    seq.push(next);
    out.push(next);
    opts.onToken?.(next);
    opts.onProgress?.(out.length, maxTokens);
    if (next === opts.eosId) break;
  }
  return Int32Array.from(out);
}

export function argmax(a: Float32Array, offset: number, n: number): number {
  let best = 0;
  let bestV = a[offset];
  for (let j = 1; j < n; j++) {
    if (a[offset + j] > bestV) {
      bestV = a[offset + j];
      best = j;
    }
  }
  return best;
}
