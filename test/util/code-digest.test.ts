// The code digest a compile's checkpoint is keyed by (src/util/code-digest.ts): it changes with
// any edit, addition or rename of a file that runs, not with declarations, source maps or other
// files, and the running twlac's is the digest of the tree it was loaded from (src/ here).
import { mkdirSync, mkdtempSync, renameSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { dirname, join, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';
import { afterAll, describe, expect, it } from 'vitest';
import { codeDigest, runningCodeDigest } from '../../src/util/code-digest.ts';

const tmp = mkdtempSync(join(tmpdir(), 'twlac-code-digest-'));
afterAll(() => rmSync(tmp, { recursive: true, force: true }));

describe('codeDigest', () => {
  it('follows the files that run, by path and content, and nothing else', () => {
    const root = join(tmp, 'dist');
    mkdirSync(join(root, 'passes'), { recursive: true });
    const put = (rel: string, text: string) => writeFileSync(join(root, rel), text);
    put('index.js', 'export * from "./passes/refine.js";\n');
    put('passes/refine.js', 'export const steps = 30;\n');
    put('passes/refine.d.ts', 'export declare const steps = 30;\n');
    put('passes/refine.js.map', '{"version":3}');
    put('README.md', 'notes');
    const d0 = codeDigest(root);
    expect(d0).toMatch(/^[0-9a-f]{64}$/);

    put('passes/refine.d.ts', 'export declare const steps: number;\n');
    put('passes/refine.js.map', '{"version":3,"sources":[]}');
    put('README.md', 'other notes');
    expect(codeDigest(root), 'declarations, maps and notes do not run').toBe(d0);

    put('passes/refine.js', 'export const steps = 31;\n');
    const d1 = codeDigest(root);
    expect(d1).not.toBe(d0);
    put('passes/refine.js', 'export const steps = 30;\n');
    expect(codeDigest(root)).toBe(d0);

    put('passes/worker.mjs', '');
    const d2 = codeDigest(root);
    expect(d2).not.toBe(d0);
    renameSync(join(root, 'passes/worker.mjs'), join(root, 'worker.mjs'));
    expect(codeDigest(root), 'a moved file is another build').not.toBe(d2);
  });

  it('of the running twlac is that of the tree it was loaded from', () => {
    const src = resolve(dirname(fileURLToPath(import.meta.url)), '../../src');
    expect(runningCodeDigest()).toBe(codeDigest(src));
  });
});
