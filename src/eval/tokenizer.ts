// Text ↔ token ids through a Hugging Face `tokenizer.json`, as the perplexity protocol in
// EVAL.md prescribes: the text is cut into chunks of 200,000 characters, each chunk is
// encoded on its own (no special tokens added), and the ids are concatenated.
//
// "Characters" are Unicode code points, as in the Python reference (`text[i:i+200000]`),
// not UTF-16 code units: a chunk boundary must never split a surrogate pair. On the
// fixture's dev.txt (3 astral characters) code-point chunks give 531,169 ids, exactly the
// Python figure; UTF-16 chunks would give 531,168.
import { existsSync, readFileSync, statSync } from 'node:fs';
import { dirname, join } from 'node:path';
import { Tokenizer } from '@huggingface/tokenizers';
import { UserError } from '../errors.ts';

export const TOKENIZER_FILE = 'tokenizer.json';
export const CHUNK_CHARS = 200_000;

export interface TextTokenizer {
  /** The file it was loaded from. */
  readonly path: string;
  /** Ids of one piece of text, no special tokens added. */
  encode(text: string): Int32Array;
  decode(ids: ArrayLike<number>): string;
  /** Id of a token string such as '<|endoftext|>', if the vocabulary has it. */
  tokenId(token: string): number | undefined;
}

export function loadTokenizer(path: string): TextTokenizer {
  if (!existsSync(path) || !statSync(path).isFile()) throw new UserError(`tokenizer file not found: ${path}`);
  let json: unknown;
  try {
    json = JSON.parse(readFileSync(path, 'utf8'));
  } catch (e) {
    throw new UserError(`tokenizer file ${path} is not valid JSON: ${(e as Error).message}`);
  }
  if (typeof json !== 'object' || json === null || !('model' in json)) {
    throw new UserError(`tokenizer file ${path} is not a Hugging Face tokenizer.json (no "model" field)`);
  }
  let tok: Tokenizer;
  try {
    tok = new Tokenizer(json, {});
  } catch (e) {
    throw new UserError(`tokenizer file ${path} could not be loaded: ${(e as Error).message}`);
  }
  return {
    path,
    encode: (text) => Int32Array.from(tok.encode(text, { add_special_tokens: false }).ids),
    decode: (ids) => tok.decode(Array.from(ids)),
    tokenId: (token) => tok.token_to_id(token),
  };
}

/** Token ids of a whole text: code-point chunks of `chunkChars`, encoded separately, concatenated. */
export function tokenizeText(
  tokenizer: TextTokenizer,
  text: string,
  opts: { chunkChars?: number; onProgress?: (done: number, total: number) => void } = {},
): Int32Array {
  const chunkChars = opts.chunkChars ?? CHUNK_CHARS;
  const parts: Int32Array[] = [];
  let total = 0;
  const bounds = codePointChunks(text, chunkChars);
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

export function tokenizeFile(
  tokenizer: TextTokenizer,
  path: string,
  opts: { chunkChars?: number; onProgress?: (done: number, total: number) => void } = {},
): Int32Array {
  if (!existsSync(path) || !statSync(path).isFile()) throw new UserError(`text file not found: ${path}`);
  return tokenizeText(tokenizer, readFileSync(path, 'utf8'), opts);
}

/**
 * UTF-16 offsets [0, b1, b2, …, text.length] that cut `text` into pieces of `chunkChars`
 * code points (the last piece may be shorter).
 */
export function codePointChunks(text: string, chunkChars: number): number[] {
  if (!(chunkChars >= 1)) throw new Error(`chunkChars must be ≥ 1, got ${chunkChars}`);
  const bounds = [0];
  let points = 0;
  for (let i = 0; i < text.length; ) {
    const c = text.charCodeAt(i);
    const pair = c >= 0xd800 && c <= 0xdbff && i + 1 < text.length && (text.charCodeAt(i + 1) & 0xfc00) === 0xdc00;
    i += pair ? 2 : 1;
    if (++points === chunkChars) {
      bounds.push(i);
      points = 0;
    }
  }
  if (bounds[bounds.length - 1] !== text.length) bounds.push(text.length);
  return bounds;
}

/**
 * The tokenizer.json that goes with a model: `model.onnx` → its folder; a folder (a source
 * model folder or a twlac `out/` folder) → that folder. Failing that, a twlac artifact's
 * `manifest.json` names its source model, whose folder is tried next. Throws a UserError
 * naming where it looked when there is none.
 */
export function findTokenizer(modelPathOrDir: string): string {
  const isDir = existsSync(modelPathOrDir) && statSync(modelPathOrDir).isDirectory();
  const dir = isDir ? modelPathOrDir : dirname(modelPathOrDir);
  const looked = [join(dir, TOKENIZER_FILE)];
  const source = manifestSourcePath(join(dir, 'manifest.json'));
  if (source !== undefined) looked.push(join(dirname(source), TOKENIZER_FILE));
  for (const candidate of looked) if (existsSync(candidate)) return candidate;
  throw new UserError(`no ${TOKENIZER_FILE} for ${modelPathOrDir} (looked for ${looked.join(', ')}); pass --tokenizer`);
}

function manifestSourcePath(manifestPath: string): string | undefined {
  if (!existsSync(manifestPath)) return undefined;
  try {
    const m = JSON.parse(readFileSync(manifestPath, 'utf8')) as { source?: { path?: unknown } };
    return typeof m.source?.path === 'string' ? m.source.path : undefined;
  } catch {
    return undefined; // an unreadable manifest is reported by whoever loads the artifact
  }
}
