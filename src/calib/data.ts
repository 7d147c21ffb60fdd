// Calibration segments: random contiguous runs of token ids from the calibration text
// (data/pydocs/train.txt, tokenized by src/eval/tokenizer.ts). Evaluation text must never
// come here; EVAL.md forbids using it for calibration or any search.
//
// Segment i starts at s_i = ⌊u_i · (N − seq + 1)⌋, u_i the i-th draw of mulberry32(seed),
// so s_i is uniform over the N − seq + 1 valid starts and the segment ids[s_i … s_i+seq−1]
// lies inside the text. Segments may overlap. The generator uses only 32-bit integer
// arithmetic (Math.imul), so the same ids and options give the same segments everywhere.
import { UserError } from '../errors.ts';
import { mulberry32 } from '../util/prng.ts';

export interface CalibrationOptions {
  /** Number of segments (default 128). */
  samples?: number;
  /** Tokens per segment (default 512). */
  seq?: number;
  /** PRNG seed (default 0). */
  seed?: number;
}

export function calibrationSegments(ids: Int32Array | number[], opts: CalibrationOptions = {}): Int32Array[] {
  const samples = opts.samples ?? 128;
  const seq = opts.seq ?? 512;
  const seed = opts.seed ?? 0;
  if (!Number.isInteger(samples) || samples < 1) throw new UserError(`calibration samples must be a positive integer, got ${samples}`);
  if (!Number.isInteger(seq) || seq < 1) throw new UserError(`calibration sequence length must be a positive integer, got ${seq}`);
  if (!Number.isInteger(seed)) throw new UserError(`calibration seed must be an integer, got ${seed}`);
  if (ids.length < seq) throw new UserError(`calibration text too short: ${ids.length} tokens, one segment needs ${seq}`);
  const src = ids instanceof Int32Array ? ids : Int32Array.from(ids);
  const rand = mulberry32(seed);
  const starts = ids.length - seq + 1;
  const out: Int32Array[] = [];
  for (let i = 0; i < samples; i++) {
    const s = Math.floor(rand() * starts);
    out.push(src.slice(s, s + seq));
  }
  return out;
}

export { mulberry32 };

/**
 * Calibration segments straight from text, without tokenizing all of it: segment i starts
 * at the first line start at or after a character offset drawn uniformly (mulberry32(seed))
 * from the text, and holds the first `seq` ids of the text from there (tokenized in pieces
 * of 8·seq characters until there are enough). For a text of N characters this tokenizes
 * about samples·seq·(chars per token) characters instead of N.
 */
export function calibrationSegmentsFromText(
  text: string,
  encode: (s: string) => Int32Array,
  opts: CalibrationOptions = {},
): Int32Array[] {
  const samples = opts.samples ?? 128;
  const seq = opts.seq ?? 512;
  const seed = opts.seed ?? 0;
  if (!Number.isInteger(samples) || samples < 1) throw new UserError(`calibration samples must be a positive integer, got ${samples}`);
  if (!Number.isInteger(seq) || seq < 1) throw new UserError(`calibration sequence length must be a positive integer, got ${seq}`);
  const rand = mulberry32(seed);
  const out: Int32Array[] = [];
  const piece = 8 * seq;
  for (let i = 0; i < samples; i++) {
    let start = Math.floor(rand() * text.length);
    const nl = text.indexOf('\n', start);
    start = nl < 0 ? 0 : nl + 1;
    const ids: number[] = [];
    // Read on from the start, wrapping to the text's beginning at most once and never past
    // the start again: a segment holds each character of the text at most once.
    const tooShort = () => new UserError(`calibration text too short: fewer than ${seq} tokens, the length of one calibration segment (--seq)`);
    for (let pos = start, wrapped = false; ids.length < seq; ) {
      if (pos >= text.length) {
        if (wrapped) throw tooShort();
        pos = 0;
        wrapped = true;
      }
      if (wrapped && pos >= start) throw tooShort();
      const end = wrapped ? Math.min(pos + piece, start) : pos + piece;
      for (const id of encode(text.slice(pos, end))) ids.push(id);
      pos = end;
    }
    out.push(Int32Array.from(ids.slice(0, seq)));
  }
  return out;
}
