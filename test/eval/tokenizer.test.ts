import { mkdtempSync, readFileSync, rmSync, writeFileSync, mkdirSync, copyFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, describe, expect, it } from 'vitest';
import { UserError } from '../../src/errors.ts';
import { codePointChunks, findTokenizer, loadTokenizer, tokenizeFile, tokenizeText } from '../../src/eval/tokenizer.ts';
import { DEV, REPORT, TOKENIZER, haveShared } from './shared.ts';

const scratch = mkdtempSync(join(tmpdir(), 'twlac-tok-'));
afterAll(() => rmSync(scratch, { recursive: true, force: true }));

describe('codePointChunks', () => {
  it('cuts at code points, never inside a surrogate pair', () => {
    const text = 'ab😀cd𝄞e'; // 😀 and 𝄞 are two UTF-16 units each
    const b = codePointChunks(text, 3);
    const pieces = b.slice(1).map((end, i) => text.slice(b[i], end));
    // Oracle: Python-style slicing of the code-point array.
    const cps = Array.from(text);
    const expected = [];
    for (let i = 0; i < cps.length; i += 3) expected.push(cps.slice(i, i + 3).join(''));
    expect(pieces).toEqual(expected);
    expect(pieces).toEqual(['ab😀', 'cd𝄞', 'e']);
  });

  it('gives one piece for short text and none extra for an exact multiple', () => {
    expect(codePointChunks('abc', 10)).toEqual([0, 3]);
    expect(codePointChunks('abcdef', 3)).toEqual([0, 3, 6]);
    expect(codePointChunks('', 3)).toEqual([0]);
  });
});

describe.skipIf(!haveShared)('tokenizer on the fixture', () => {
  const tok = haveShared ? loadTokenizer(TOKENIZER) : undefined!;

  it('concatenates the ids of code-point chunks encoded separately', () => {
    const text = 'def f(x):\n    return x  # 😀 comment\n'.repeat(7);
    const cps = Array.from(text);
    const expected: number[] = [];
    for (let i = 0; i < cps.length; i += 50) expected.push(...tok.encode(cps.slice(i, i + 50).join('')));
    const got = tokenizeText(tok, text, { chunkChars: 50 });
    expect(Array.from(got)).toEqual(expected);
    // chunking matters: a single encode of the whole text differs at the cut points
    expect(Array.from(tok.encode(text))).not.toEqual(expected);
  });

  it('round-trips text through byte-level BPE', () => {
    const text = 'Return the *path* of `os.getcwd()`, or None — ünïcode 😀.\n';
    expect(tok.decode(tok.encode(text))).toBe(text);
  });

  it('gives the Python reference token count on dev.txt', () => {
    // report.json was written by make_fixture.py with the Rust tokenizer and Python slicing.
    const report = JSON.parse(readFileSync(REPORT, 'utf8')) as { tokens: { dev: number } };
    expect(tokenizeFile(tok, DEV).length).toBe(report.tokens.dev);
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
