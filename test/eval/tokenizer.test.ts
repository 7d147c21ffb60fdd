import { mkdtempSync, readFileSync, rmSync, writeFileSync, mkdirSync, copyFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, describe, expect, it } from 'vitest';
import { UserError } from '../../src/errors.ts';
import { chunkBounds, findTokenizer, loadTokenizer, tokenizeFile, tokenizeText } from '../../src/eval/tokenizer.ts';
import { DEV, REPORT, TOKENIZER, haveShared } from './shared.ts';

const scratch = mkdtempSync(join(tmpdir(), 'twlac-tok-'));
afterAll(() => rmSync(scratch, { recursive: true, force: true }));

const piecesOf = (text: string, b: number[]) => b.slice(1).map((end, i) => text.slice(b[i], end));

describe('chunkBounds', () => {
  const text = 'ab😀cd𝄞e'; // 😀 and 𝄞 are two UTF-16 units each

  it("'codepoint' cuts like Python slicing, never inside a surrogate pair", () => {
    // Oracle: slicing of the code-point array.
    const cps = Array.from(text);
    const expected = [];
    for (let i = 0; i < cps.length; i += 3) expected.push(cps.slice(i, i + 3).join(''));
    expect(piecesOf(text, chunkBounds(text, 3, 'codepoint'))).toEqual(expected);
    expect(expected).toEqual(['ab😀', 'cd𝄞', 'e']);
  });

  it("'utf16' cuts like String.slice, moving a cut that would split a pair one unit on", () => {
    const plain = 'abcdefgh';
    expect(piecesOf(plain, chunkBounds(plain, 3, 'utf16'))).toEqual(['abc', 'def', 'gh']);
    // units: a b \uD83D \uDE00 c d \uD834 \uDD1E e; a cut at 3 or 7 would split a pair.
    expect(chunkBounds(text, 3, 'utf16')).toEqual([0, 4, 6, 9]);
    expect(chunkBounds(text, 7, 'utf16')).toEqual([0, 8, 9]);
    expect(piecesOf(text, chunkBounds(text, 4, 'utf16'))).toEqual(['ab😀', 'cd𝄞', 'e']);
  });

  it('gives one piece for short text and none extra for an exact multiple', () => {
    for (const unit of ['utf16', 'codepoint'] as const) {
      expect(chunkBounds('abc', 10, unit)).toEqual([0, 3]);
      expect(chunkBounds('abcdef', 3, unit)).toEqual([0, 3, 6]);
      expect(chunkBounds('', 3, unit)).toEqual([0]);
    }
  });
});

describe.skipIf(!haveShared)('tokenizer on the fixture', () => {
  const tok = haveShared ? loadTokenizer(TOKENIZER) : undefined!;

  it('concatenates the ids of chunks encoded separately, in either unit', () => {
    const text = 'def f(x):\n    return x  # 😀 comment\n'.repeat(7);
    const cps = Array.from(text);
    const byPoints: number[] = [];
    for (let i = 0; i < cps.length; i += 50) byPoints.push(...tok.encode(cps.slice(i, i + 50).join('')));
    expect(Array.from(tokenizeText(tok, text, { chunkChars: 50, chunkUnit: 'codepoint' }))).toEqual(byPoints);
    const byUnits: number[] = [];
    for (let i = 0; i < text.length; i += 50) byUnits.push(...tok.encode(text.slice(i, i + 50)));
    expect(chunkBounds(text, 50, 'utf16').length).toBe(Math.ceil(text.length / 50) + 1); // no pair straddles a cut here
    expect(Array.from(tokenizeText(tok, text, { chunkChars: 50 }))).toEqual(byUnits);
    // chunking matters: a single encode of the whole text differs at the cut points
    expect(Array.from(tok.encode(text))).not.toEqual(byPoints);
  });

  it('round-trips text through byte-level BPE', () => {
    const text = 'Return the *path* of `os.getcwd()`, or None — ünïcode 😀.\n';
    expect(tok.decode(tok.encode(text))).toBe(text);
  });

  it('gives the Python token count on dev.txt with code points, the Node count by default', () => {
    // report.json was written by make_fixture.py with the Rust tokenizer and Python slicing.
    const report = JSON.parse(readFileSync(REPORT, 'utf8')) as { tokens: { dev: number } };
    expect(tokenizeFile(tok, DEV, { chunkUnit: 'codepoint' }).length).toBe(report.tokens.dev);
    // EVAL.md's Node figures: naive String.slice chunks (no pair straddles a cut in dev.txt).
    const text = readFileSync(DEV, 'utf8');
    let naive = 0;
    for (let i = 0; i < text.length; i += 200_000) naive += tok.encode(text.slice(i, i + 200_000)).length;
    expect(naive).toBe(report.tokens.dev - 1);
    expect(tokenizeFile(tok, DEV).length).toBe(naive);
  });

  it('finds tokenizer.json beside a model, in a folder, and via an artifact manifest', () => {
    const modelDir = join(scratch, 'src-model');
    mkdirSync(modelDir);
    copyFileSync(TOKENIZER, join(modelDir, 'tokenizer.json'));
    writeFileSync(join(modelDir, 'model.onnx'), '');
    expect(findTokenizer(join(modelDir, 'model.onnx'))).toBe(join(modelDir, 'tokenizer.json'));
    expect(findTokenizer(modelDir)).toBe(join(modelDir, 'tokenizer.json'));
    const out = join(scratch, 'out');
    mkdirSync(out);
    writeFileSync(join(out, 'manifest.json'), JSON.stringify({ source: { path: join(modelDir, 'model.onnx') } }));
    expect(findTokenizer(join(out, 'model.onnx'))).toBe(join(modelDir, 'tokenizer.json'));
  });
});

describe('tokenizer errors', () => {
  it('names a missing or invalid tokenizer file in a UserError', () => {
    expect(() => loadTokenizer(join(scratch, 'nope.json'))).toThrow(UserError);
    expect(() => loadTokenizer(join(scratch, 'nope.json'))).toThrow(/tokenizer file not found: .*nope\.json/);
    const bad = join(scratch, 'bad.json');
    writeFileSync(bad, '{ not json');
    expect(() => loadTokenizer(bad)).toThrow(/not valid JSON/);
    const other = join(scratch, 'other.json');
    writeFileSync(other, '{"vocab": {}}');
    expect(() => loadTokenizer(other)).toThrow(/not a Hugging Face tokenizer\.json/);
    const empty = join(scratch, 'empty-dir');
    mkdirSync(empty);
    expect(() => findTokenizer(empty)).toThrow(UserError);
  });
});
