// Choosing the next token from a row of logits: greedy (argmax, lowest id on ties) or
// sampling with temperature T, then top-k, then top-p (nucleus), from a seeded PRNG so that
// a seed always gives the same text:
//   p_i ∝ exp((l_i − max l) / T) over the k largest logits (ties: lower id first),
//   then the shortest prefix of them, by descending p, whose mass reaches top-p, renormalised.
import { UserError } from '../errors.ts';
import { mulberry32 } from '../util/prng.ts';
import { argmax } from '../runtime/reference.ts';

export interface SamplingOptions {
  /** 0 (the default): greedy. Above 0: sample from softmax(logits / temperature). */
  temperature?: number;
  /** Keep only the k most likely tokens (sampling only). */
  topK?: number;
  /** Keep the most likely tokens whose probabilities sum to at least p, in (0, 1] (sampling only). */
  topP?: number;
  /** PRNG seed (default 0). */
  seed?: number;
}

/** Picks an id from `logits[offset … offset + vocab)`. */
export type TokenChooser = (logits: Float32Array, offset: number, vocab: number) => number;

/** The chooser for a set of options (greedy when temperature is 0 or absent); checks them first. */
export function tokenChooser(o: SamplingOptions = {}): TokenChooser {
  const T = o.temperature ?? 0;
  if (!(T >= 0) || !Number.isFinite(T)) throw new UserError(`temperature must be a finite number >= 0, got ${o.temperature}`);
  if (o.topK !== undefined && !(Number.isInteger(o.topK) && o.topK >= 1)) throw new UserError(`top-k must be an integer >= 1, got ${o.topK}`);
  if (o.topP !== undefined && !(o.topP > 0 && o.topP <= 1)) throw new UserError(`top-p must be in (0, 1], got ${o.topP}`);
  if (T === 0) {
    if (o.topK !== undefined || o.topP !== undefined) throw new UserError('top-k and top-p apply to sampling: give a temperature above 0');
    return argmax;
  }
  const uniform = mulberry32(o.seed ?? 0);
  return (logits, offset, vocab) => {
    const ids = Array.from({ length: vocab }, (_, j) => j);
    ids.sort((a, b) => logits[offset + b] - logits[offset + a] || a - b);
    const kept = ids.slice(0, Math.min(vocab, o.topK ?? vocab));
    const top = logits[offset + kept[0]];
    const p = kept.map((j) => Math.exp((logits[offset + j] - top) / T));
    const total = p.reduce((a, b) => a + b, 0);
    let n = kept.length;
    if (o.topP !== undefined) {
      let mass = 0;
      for (n = 0; n < kept.length && mass < o.topP * total; n++) mass += p[n];
    }
    const mass = p.slice(0, n).reduce((a, b) => a + b, 0);
    let u = uniform() * mass;
    for (let i = 0; i < n - 1; i++) {
      u -= p[i];
      if (u < 0) return kept[i];
    }
    return kept[n - 1];
  };
}
