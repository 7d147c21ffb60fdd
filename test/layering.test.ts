// Dependencies point down: the library (src/ outside src/cli/) never imports the CLI, nothing in
// src/ imports test files, target emission lives in the library, and ModelConfig belongs to the
// graph layer. Read from the import statements of every source file.
import { readFileSync, readdirSync, statSync } from 'node:fs';
import { dirname, join, relative, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';
import { describe, expect, it } from 'vitest';

const SRC = resolve(dirname(fileURLToPath(import.meta.url)), '../src');
const walk = (d: string): string[] => readdirSync(d).flatMap((e) => (statSync(join(d, e)).isDirectory() ? walk(join(d, e)) : e.endsWith('.ts') ? [join(d, e)] : []));

/** Repository-relative targets of a file's relative imports (static and dynamic). */
function imports(file: string): string[] {
  const s = readFileSync(file, 'utf8');
  return [...s.matchAll(/(?:from|import\()\s*'(\.{1,2}\/[^']+)'/g)].map((m) => relative(resolve(SRC, '..'), resolve(dirname(file), m[1])));
}

const files = walk(SRC);

describe('layering', () => {
  it('the library does not import src/cli/', () => {
    const bad = files.filter((f) => !f.startsWith(join(SRC, 'cli'))).flatMap((f) => imports(f).filter((t) => t.startsWith('src/cli/')).map((t) => `${relative(SRC, f)} → ${t}`));
    expect(bad).toEqual([]);
  });
  it('nothing in src/ imports test/ or scripts/', () => {
    const bad = files.flatMap((f) => imports(f).filter((t) => !t.startsWith('src/')).map((t) => `${relative(SRC, f)} → ${t}`));
    expect(bad).toEqual([]);
  });
  it('compileToDir emits targets itself; ModelConfig is declared in src/graph/ and imported by the manifest', () => {
    expect(imports(join(SRC, 'compile.ts'))).toContain('src/codegen/targets.ts');
    const declared = files.filter((f) => /^export interface ModelConfig\b/m.test(readFileSync(f, 'utf8'))).map((f) => relative(SRC, f));
    expect(declared).toEqual(['graph/model-config.ts']);
    expect(imports(join(SRC, 'artifact', 'manifest.ts'))).toContain('src/graph/model-config.ts');
  });
});
