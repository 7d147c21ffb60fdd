// `npm run build`: compile src/ to dist/ (tsconfig.build.json), then copy the non-TypeScript
// files the library reads at run time (onnx.proto, the CUDA host program, the GPU executor's
// worker script) beside their modules.
// Plain JavaScript so that it runs before anything is built.
import { execFileSync } from 'node:child_process';
import { cpSync, readdirSync, rmSync } from 'node:fs';
import { dirname, join, relative } from 'node:path';
import { fileURLToPath } from 'node:url';

const root = join(dirname(fileURLToPath(import.meta.url)), '..');
rmSync(join(root, 'dist'), { recursive: true, force: true });
execFileSync(join(root, 'node_modules', '.bin', 'tsc'), ['-p', join(root, 'tsconfig.build.json')], { stdio: 'inherit' });

const ASSETS = ['.proto', '.cu', '.mjs'];
const walk = (dir) =>
  readdirSync(dir, { withFileTypes: true }).flatMap((e) => (e.isDirectory() ? walk(join(dir, e.name)) : [join(dir, e.name)]));
for (const f of walk(join(root, 'src'))) {
  if (ASSETS.some((ext) => f.endsWith(ext))) cpSync(f, join(root, 'dist', relative(join(root, 'src'), f)));
}
