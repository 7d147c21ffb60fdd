// The project speaks of dates and commits, never of its own work periods (a numbered period, or
// "this" one): README, docs, sources, tests, benchmarks, results and their archive, and the
// names of files and folders under them. onnxruntime's inference sessions are another word and
// pass. (This file spells the word in pieces so that a grep of the tree finds no period in it.)
import { readdirSync, readFileSync, statSync } from 'node:fs';
import { join, relative, resolve } from 'node:path';
import { describe, expect, it } from 'vitest';

const ROOT = resolve(import.meta.dirname, '../..');
const ROOTS = ['README.md', 'docs', 'src', 'test', 'bench', 'scripts'];
const W = ['ses', 'sion'].join('');
const PERIOD = new RegExp(`\\b${W}s?[ _-]?#?\\d+|\\b(this|that|same|next|previous|each|last) ${W}s?\\b|\\b${W}s \\d+\\s*[-–]\\s*\\d+`, 'i');
const BINARY = /\.(gz|bin|png|onnx|data)$/;

function* files(p: string): Generator<string> {
  const st = statSync(p, { throwIfNoEntry: false });
  if (!st) return;
  if (st.isFile()) yield p;
  else if (st.isDirectory()) for (const e of readdirSync(p)) if (e !== 'node_modules') yield* files(join(p, e));
}

describe('no work periods in the product', () => {
  const all = ROOTS.flatMap((r) => [...files(join(ROOT, r))]);

  it('the checker sees the tree and catches what it must', () => {
    expect(all.length).toBeGreaterThan(100);
    for (const bad of [`in ${W} 9`, `${W}-5 experiments`, `"${W}10": {`, `this ${W}`, `${W}s 7-10`.replace(/^s/, 'S')]) expect(bad).toMatch(PERIOD);
    for (const fine of [`await ${W}.run(feeds)`, `one onnxruntime ${W} whose quantisers`, `Inference${W.replace(/^s/, 'S')}.create`]) expect(fine).not.toMatch(PERIOD);
  });

  it('no file or folder name, and no line of text, names one', () => {
    const hits: string[] = [];
    for (const f of all) {
      const rel = relative(ROOT, f);
      if (PERIOD.test(rel)) hits.push(`${rel} (name)`);
      if (BINARY.test(f)) continue;
      readFileSync(f, 'utf8')
        .split('\n')
        .forEach((line, i) => PERIOD.test(line) && hits.push(`${rel}:${i + 1}: ${line.trim().slice(0, 120)}`));
    }
    expect(hits).toEqual([]);
  });
});
