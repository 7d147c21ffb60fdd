// Which build of twlac is running, as a SHA-256 of its own code: the tree this module was loaded
// from (src/ when run from the sources, dist/ when installed from npm or built), every file that
// runs (TypeScript and JavaScript modules, the ONNX schema, CUDA sources) by relative path and
// content. The package version does not change between commits; this does, with any edit, so a
// compile's checkpoint (util/checkpoint.ts) is never reused by code that could continue it
// differently. Computed once per process (about 150 files, a few milliseconds).
import { createHash } from 'node:crypto';
import { readdirSync, readFileSync } from 'node:fs';
import { basename, dirname, join, relative, sep } from 'node:path';
import { fileURLToPath } from 'node:url';

/** Files whose bytes decide what twlac does; declarations and source maps do not. */
const isCode = (name: string) => /\.(ts|js|mjs|cjs|proto|cu)$/.test(name) && !/\.d\.ts$/.test(name);

/** SHA-256 (hex) of the code files under `root`, each by its relative path (with `/`) and its bytes, in path order. */
export function codeDigest(root: string): string {
  const walk = (d: string): string[] =>
    readdirSync(d, { withFileTypes: true }).flatMap((e) => (e.isDirectory() ? walk(join(d, e.name)) : isCode(e.name) ? [join(d, e.name)] : []));
  const files = walk(root)
    .map((f) => ({ f, rel: relative(root, f).split(sep).join('/') }))
    .sort((a, b) => (a.rel < b.rel ? -1 : a.rel > b.rel ? 1 : 0));
  const h = createHash('sha256');
  for (const { f, rel } of files) {
    const bytes = readFileSync(f);
    h.update(`${rel}\0${bytes.length}\0`).update(bytes);
  }
  return h.digest('hex');
}

let running: string | undefined;

/** The digest of the running twlac: its src/ or dist/ tree, or, when bundled into one file, that file. */
export function runningCodeDigest(): string {
  if (running) return running;
  const here = fileURLToPath(import.meta.url);
  const inTree = basename(dirname(here)) === 'util';
  running = inTree ? codeDigest(dirname(dirname(here))) : createHash('sha256').update(readFileSync(here)).digest('hex');
  return running;
}
