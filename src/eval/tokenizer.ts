// Text ↔ token ids through a Hugging Face `tokenizer.json`, as the perplexity protocol in
// EVAL.md prescribes: the text is cut into chunks of 200,000 characters, each chunk is
// encoded on its own (no special tokens added), and the ids are concatenated.
//
// What a "character" is decides where the chunks end, and the published figures differ:
// - 'utf16' (default): JavaScript string units, `text.slice(i, i + 200000)`. This is how
//   EVAL.md's Node figures were made: on dev.txt, 531,168 ids and fp32 PPL 32.057.
// - 'codepoint': Unicode code points, as Python's `text[i:i+200000]` in make_fixture.py:
//   531,169 ids (report.json's count) and fp32 PPL 32.0617.
// dev.txt has 3 astral characters before its last chunk boundary, which moves that
// boundary by 3 units and the later windows by one token. The default follows EVAL.md so
// that every figure of the project is comparable with its table. A UTF-16 cut that would
// split a surrogate pair is moved one unit on (naive slicing would make two invalid halves).
import { existsSync, statSync } from 'node:fs';
import { dirname, join } from 'node:path';
import { Tokenizer } from '@huggingface/tokenizers';
import { UserError } from '../errors.ts';
import { MiB, readTextFile, resolvesInside } from '../util/files.ts';

const TOKENIZER_FILE = 'tokenizer.json';
const CHUNK_CHARS = 200_000;

export interface TextTokenizer {
  /** The file it was loaded from. */
  readonly path: string;
  /** Largest token id it can produce, plus one. */
  readonly vocabSize: number;
  /** Ids of one piece of text, no special tokens added. */
  encode(text: string): Int32Array;
  decode(ids: ArrayLike<number>): string;
  /** Id of a token string such as '<|endoftext|>', if the vocabulary has it. */
  tokenId(token: string): number | undefined;
}

/** tokenizer.json files larger than this are refused unread (the largest public ones are ~35 MB). */
const MAX_TOKENIZER_BYTES = 256 * MiB;
const MAX_TEXT_BYTES = 1024 * MiB;

/** A tokenizer.json read and checked (bounded size, JSON, the schema below), not yet loaded. */
export interface TokenizerFile {
  path: string;
  text: string;
  json: object;
  /** Largest token id it can produce, plus one. */
  vocabSize: number;
}

export function readTokenizerFile(path: string): TokenizerFile {
  if (!existsSync(path)) throw new UserError(`tokenizer file not found: ${path}`);
  const text = readTextFile(path, 'tokenizer file', MAX_TOKENIZER_BYTES);
  let json: unknown;
  try {
    json = JSON.parse(text);
  } catch (e) {
    throw new UserError(`tokenizer file ${path} is not valid JSON: ${(e as Error).message}`);
  }
  const vocabSize = checkTokenizerJson(json, path);
  return { path, text, json: json as object, vocabSize };
}

export function loadTokenizer(path: string): TextTokenizer {
  const { json, vocabSize } = readTokenizerFile(path);
  let tok: Tokenizer;
  try {
    tok = new Tokenizer(json, {});
  } catch (e) {
    throw new UserError(`tokenizer file ${path} could not be loaded: ${(e as Error).message}`);
  }
  const guard = <T>(what: string, f: () => T): T => {
    try {
      return f();
    } catch (e) {
      throw new UserError(`tokenizer ${path} failed to ${what}: ${(e as Error).message}`);
    }
  };
  return {
    path,
    vocabSize,
    encode: (text) => guard('encode text', () => Int32Array.from(tok.encode(text, { add_special_tokens: false }).ids)),
    decode: (ids) => guard('decode ids', () => tok.decode(Array.from(ids))),
    tokenId: (token) => tok.token_to_id(token),
  };
}

/**
 * The schema twlac relies on, checked before the library sees the file: a "model" object
 * whose vocabulary maps tokens to distinct ids (an array of [token, score] for Unigram),
 * and added tokens with integer ids. Returns the vocabulary size (largest id + 1).
 */
function checkTokenizerJson(json: unknown, path: string): number {
  const bad = (why: string) => new UserError(`tokenizer file ${path} is not a Hugging Face tokenizer.json: ${why}`);
  if (typeof json !== 'object' || json === null || Array.isArray(json)) throw bad('not a JSON object');
  const model = (json as { model?: unknown }).model;
  if (typeof model !== 'object' || model === null || Array.isArray(model)) throw bad('no "model" object');
  const m = model as { type?: unknown; vocab?: unknown };
  if (m.type !== undefined && typeof m.type !== 'string') throw bad('"model.type" is not a string');
  const ids: number[] = [];
  if (Array.isArray(m.vocab)) {
    // Unigram: the id is the position.
    m.vocab.forEach((e, i) => {
      if (!Array.isArray(e) || typeof e[0] !== 'string') throw bad(`"model.vocab" entry ${i} is not [token, score]`);
      ids.push(i);
    });
  } else if (typeof m.vocab === 'object' && m.vocab !== null) {
    for (const [t, id] of Object.entries(m.vocab)) {
      if (typeof id !== 'number' || !Number.isInteger(id) || id < 0 || id >= 1 << 24) throw bad(`"model.vocab" gives token ${JSON.stringify(t)} the id ${JSON.stringify(id)}`);
      ids.push(id);
    }
  } else {
    throw bad('no "model.vocab"');
  }
  const added = (json as { added_tokens?: unknown }).added_tokens;
  if (added !== undefined && added !== null) {
    if (!Array.isArray(added)) throw bad('"added_tokens" is not an array');
    added.forEach((a: unknown, i) => {
      const id = (a as { id?: unknown } | null)?.id;
      if (typeof id !== 'number' || !Number.isInteger(id) || id < 0 || id >= 1 << 24 || typeof (a as { content?: unknown }).content !== 'string') {
        throw bad(`"added_tokens" entry ${i} has no integer id and string content`);
      }
      ids.push(id);
    });
  }
  if (ids.length === 0) throw bad('the vocabulary is empty');
  return ids.reduce((a, b) => Math.max(a, b), 0) + 1;
}

/** Refuse a tokenizer whose ids reach past the model's vocabulary (they would index past its embedding). */
export function checkTokenizerFitsModel(tok: { path: string; vocabSize: number }, modelVocab: number): void {
  if (tok.vocabSize > modelVocab) {
    throw new UserError(`tokenizer ${tok.path} has ids up to ${tok.vocabSize - 1}, but the model's vocabulary has ${modelVocab} entries`);
  }
}

export type ChunkUnit = 'utf16' | 'codepoint';

export interface TokenizeOptions {
  /** Characters per chunk (default 200,000). */
  chunkChars?: number;
  /** What counts as a character (default 'utf16', as EVAL.md's Node figures). */
  chunkUnit?: ChunkUnit;
  onProgress?: (done: number, total: number) => void;
}

/** Token ids of a whole text: chunks of `chunkChars` characters, encoded separately, concatenated. */
export function tokenizeText(tokenizer: TextTokenizer, text: string, opts: TokenizeOptions = {}): Int32Array {
  const bounds = chunkBounds(text, opts.chunkChars ?? CHUNK_CHARS, opts.chunkUnit ?? 'utf16');
  const parts: Int32Array[] = [];
  let total = 0;
  for (let c = 0; c + 1 < bounds.length; c++) {
    const ids = tokenizer.encode(text.slice(bounds[c], bounds[c + 1]));
    parts.push(ids);
    total += ids.length;
    opts.onProgress?.(bounds[c + 1], text.length);
  }
  const out = new Int32Array(total);
  let at = 0;
  for (const p of parts) {
    out.set(p, at);
    at += p.length;
  }
  return out;
}

export function tokenizeFile(tokenizer: TextTokenizer, path: string, opts: TokenizeOptions = {}): Int32Array {
  if (!existsSync(path)) throw new UserError(`text file not found: ${path}`);
  return tokenizeText(tokenizer, readTextFile(path, 'text file', MAX_TEXT_BYTES), opts);
}

/**
 * UTF-16 offsets [0, b1, b2, …, text.length] that cut `text` into pieces of `chunkChars`
 * characters of the given unit (the last piece may be shorter).
 */
export function chunkBounds(text: string, chunkChars: number, unit: ChunkUnit): number[] {
  if (!(Number.isInteger(chunkChars) && chunkChars >= 1)) throw new Error(`chunkChars must be a positive integer, got ${chunkChars}`);
  const bounds = [0];
  if (unit === 'utf16') {
    for (let i = chunkChars; i < text.length; i += chunkChars) {
      const cut = isLowSurrogateAfterHigh(text, i) ? i + 1 : i;
      if (cut > bounds[bounds.length - 1] && cut < text.length) bounds.push(cut);
    }
  } else {
    let points = 0;
    for (let i = 0; i < text.length; ) {
      i += isHighSurrogateWithLow(text, i) ? 2 : 1;
      if (++points === chunkChars) {
        bounds.push(i);
        points = 0;
      }
    }
  }
  if (bounds[bounds.length - 1] !== text.length) bounds.push(text.length);
  return bounds;
}

function isHighSurrogateWithLow(text: string, i: number): boolean {
  const c = text.charCodeAt(i);
  return c >= 0xd800 && c <= 0xdbff && i + 1 < text.length && (text.charCodeAt(i + 1) & 0xfc00) === 0xdc00;
}

function isLowSurrogateAfterHigh(text: string, i: number): boolean {
  return i > 0 && isHighSurrogateWithLow(text, i - 1);
}

/**
 * The tokenizer.json that goes with a model: `model.onnx` → its folder; a folder (a source
 * model folder or a twlac `out/` folder) → that folder. Failing that, a twlac artifact's
 * `manifest.json` names its source model, whose folder is tried next. Throws a UserError
 * naming where it looked when there is none (`optional`: returns undefined instead), and
 * when the one found is a link out of its folder.
 */
export function findTokenizer(modelPathOrDir: string, optional: true): string | undefined;
export function findTokenizer(modelPathOrDir: string, optional?: false): string;
export function findTokenizer(modelPathOrDir: string, optional: boolean): string | undefined;
export function findTokenizer(modelPathOrDir: string, optional = false): string | undefined {
  const isDir = existsSync(modelPathOrDir) && statSync(modelPathOrDir).isDirectory();
  const dir = isDir ? modelPathOrDir : dirname(modelPathOrDir);
  const looked = [join(dir, TOKENIZER_FILE)];
  const source = manifestSourcePath(join(dir, 'manifest.json'));
  if (source !== undefined) looked.push(join(dirname(source), TOKENIZER_FILE));
  for (const candidate of looked) {
    if (!existsSync(candidate)) continue;
    // A tokenizer.json found beside a model is the model's own: a link out of its folder (to
    // a system file, say) would be read and copied into out/.
    if (!resolvesInside(candidate, dirname(candidate))) throw new UserError(`${candidate} resolves outside its folder; pass --tokenizer with the file itself`);
    return candidate;
  }
  if (optional) return undefined;
  throw new UserError(`no ${TOKENIZER_FILE} for ${modelPathOrDir} (looked for ${looked.join(', ')}); pass --tokenizer`);
}

function manifestSourcePath(manifestPath: string): string | undefined {
  if (!existsSync(manifestPath)) return undefined;
  try {
    const m = JSON.parse(readTextFile(manifestPath, 'manifest', 64 * MiB)) as { source?: { path?: unknown } };
    return typeof m.source?.path === 'string' ? m.source.path : undefined;
  } catch {
    return undefined; // an unreadable manifest is reported by whoever loads the artifact
  }
}
