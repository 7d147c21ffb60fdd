// The published package, as a user gets it: `npm pack`, installed into an empty folder with no
// network (`npm ci --offline` against a lockfile made from this repository's, so every
// dependency comes from the npm cache that installing this repository filled), then used from
// there: the `twlac` bin without tsx, a small compile, the library from an .mjs consumer, and
// the declarations from a type-checked .ts consumer.
import { execFileSync, spawnSync } from 'node:child_process';
import { existsSync, mkdirSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { dirname, join, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { saveModel } from '../../src/graph/onnx.ts';
import { makeTinyLlama } from '../../src/graph/synthetic-llama.ts';
import { compileToDir } from '../../src/compile.ts';

const REPO = resolve(dirname(fileURLToPath(import.meta.url)), '../..');
const pkg = JSON.parse(readFileSync(join(REPO, 'package.json'), 'utf8')) as { name: string; version: string; license: string; dependencies: Record<string, string>; bin: Record<string, string>; engines: Record<string, string> };
const tmp = mkdtempSync(join(tmpdir(), 'twlac-pack-'));
const consumer = join(tmp, 'consumer');
const tarball = `${pkg.name}-${pkg.version}.tgz`;
// onnxruntime-node's install script downloads CUDA binaries unless told not to; a user with a
// GPU may want them, this test does not.
const env = { ...process.env, ONNXRUNTIME_NODE_INSTALL: 'skip', npm_config_audit: 'false', npm_config_fund: 'false' };
let packed: string[] = [];

function run(cmd: string, args: string[]): { code: number | null; stdout: string; stderr: string } {
  const r = spawnSync(cmd, args, { cwd: consumer, env, encoding: 'utf8' });
  return { code: r.status, stdout: r.stdout, stderr: r.stderr };
}

/** A consumer lockfile: this package from the tarball, its dependency tree as this repository locks it. */
function consumerLock(): object {
  const lock = JSON.parse(readFileSync(join(REPO, 'package-lock.json'), 'utf8')) as { packages: Record<string, { dev?: boolean }> };
  const packages: Record<string, unknown> = {
    '': { name: 'consumer', dependencies: { [pkg.name]: `file:../${tarball}` } },
    [`node_modules/${pkg.name}`]: { version: pkg.version, resolved: `file:../${tarball}`, license: pkg.license, dependencies: pkg.dependencies, bin: pkg.bin, engines: pkg.engines },
  };
  for (const [path, entry] of Object.entries(lock.packages)) if (path && !entry.dev) packages[path] = entry;
  return { name: 'consumer', lockfileVersion: 3, requires: true, packages };
}

beforeAll(() => {
  // dist/ is fresh (test/build-dist.ts); --ignore-scripts keeps `prepare` from rebuilding it under other tests.
  const out = execFileSync('npm', ['pack', '--ignore-scripts', '--json', '--pack-destination', tmp], { cwd: REPO, env, encoding: 'utf8' });
  packed = (JSON.parse(out) as { files: { path: string }[] }[])[0].files.map((f) => f.path);
  mkdirSync(consumer);
  writeFileSync(join(consumer, 'package.json'), JSON.stringify({ name: 'consumer', private: true, type: 'module', dependencies: { [pkg.name]: `file:../${tarball}` } }));
  writeFileSync(join(consumer, 'package-lock.json'), JSON.stringify(consumerLock()));
  const r = run('npm', ['ci', '--offline']);
  if (r.code !== 0) throw new Error(`npm ci --offline of the tarball failed:\n${r.stderr}`);
  saveModel(makeTinyLlama({ layers: 1, hidden: 64, heads: 4, kvHeads: 2, intermediate: 128, vocab: 96, seed: 5 }), join(consumer, 'tiny.onnx'));
}, 300_000);
afterAll(() => rmSync(tmp, { recursive: true, force: true }));

describe('npm package', () => {
  it('packs the build, the sources its maps point at, the bin, the licence and the demo model and data; no tests, bench data or device logs', () => {
    for (const f of ['demo/model/model.onnx', 'demo/model/tokenizer.json', 'demo/model/DATA-LICENSE', 'demo/data/heldout.txt', 'bin/twlac.js', 'dist/index.js', 'dist/index.d.ts', 'dist/index.js.map', 'dist/passes/index.d.ts', 'dist/runtime/webgpu/index.js', 'dist/graph/proto/onnx.proto', 'dist/codegen/cuda/runtime/main.cu', 'dist/codegen/cuda/runtime/kernels_harness.cu', 'dist/gpu/executor-worker.mjs', 'dist/quant/fit-worker.mjs', 'src/index.ts', 'LICENSE', 'README.md']) {
      expect(packed).toContain(f);
    }
    expect(packed.filter((f) => /^(test|bench|scripts|examples|docs)\/|^demo\/(?!model\/|data\/)|\.log$|\.test\.|\.tgz$/.test(f))).toEqual([]);
    expect(readFileSync(join(REPO, 'LICENSE'), 'utf8')).toMatch(/Apache License\s+Version 2\.0, January 2004[\s\S]*END OF TERMS AND CONDITIONS/);
  });

  it('npx twlac inside the repository prints nothing but its output (no npm config warnings)', () => {
    const r = spawnSync('npx', ['--offline', 'twlac', '--version'], { cwd: REPO, env, encoding: 'utf8' });
    expect(r.stderr).toBe('');
    expect(r.stdout.trim()).toBe(pkg.version);
  });

  it('runs `npx twlac --version` and `npx twlac` (help) without tsx', () => {
    expect(existsSync(join(consumer, 'node_modules', 'tsx'))).toBe(false);
    const v = run('npx', ['--offline', 'twlac', '--version']);
    expect(v.stderr).toBe('');
    expect(v.stdout.trim()).toBe(pkg.version);
    const h = run('npx', ['--offline', 'twlac']);
    expect(h.code).toBe(0);
    expect(h.stdout).toMatch(/^Usage: twlac/);
  });

  it('compiles a model with the installed bin to the same weights as the source tree', async () => {
    const r = run('npx', ['--offline', 'twlac', 'tiny.onnx', '-o', 'out', '--weights', 'rtn-ternary', '--target', 'wgsl', '--quiet']);
    expect(r.stderr).toBe('');
    expect(r.code).toBe(0);
    const ref = join(tmp, 'ref');
    await compileToDir(join(consumer, 'tiny.onnx'), ref, { weights: 'rtn-ternary' });
    expect(readFileSync(join(consumer, 'out', 'weights.bin')).equals(readFileSync(join(ref, 'weights.bin')))).toBe(true);
    const m = JSON.parse(readFileSync(join(consumer, 'out', 'manifest.json'), 'utf8')) as { files: Record<string, number> };
    expect(Object.keys(m.files).some((f) => f.startsWith('kernels/wgsl/'))).toBe(true);
  });

  it('imports twlac, twlac/passes and twlac/webgpu from an .mjs consumer and runs a pass list', () => {
    writeFileSync(
      join(consumer, 'use.mjs'),
      `import { loadModel, encodeModel } from 'twlac';
import { PassManager, createContext, foldNormsPass, rotatePass } from 'twlac/passes';
import { WebgpuModel } from 'twlac/webgpu';
const model = loadModel('tiny.onnx');
const pm = new PassManager([foldNormsPass, rotatePass]);
const r = await pm.run(model, createContext(model));
console.log(JSON.stringify({ passes: pm.timings.map((t) => t.pass), modified: r.modified, bytes: encodeModel(r.model).byteLength > 0, webgpu: typeof WebgpuModel }));
`,
    );
    const r = run('node', ['use.mjs']);
    expect(r.stderr).toBe('');
    expect(JSON.parse(r.stdout)).toEqual({ passes: ['fold-norms', 'rotate'], modified: true, bytes: true, webgpu: 'function' });
  });

  it('type-checks a .ts consumer against the packaged declarations, and rejects a wrong option', () => {
    const tsc = join(REPO, 'node_modules', '.bin', 'tsc');
    const src = (weights: string) => `import { compile, type CompileOptions } from 'twlac';
import { PassManager, createContext, definePass, foldNormsPass, rotatePass, type CompileContext } from 'twlac/passes';
import { WebgpuModel } from 'twlac/webgpu';
const mine = definePass<CompileContext>({ name: 'mine', run: (model, ctx) => ({ model, modified: ctx.sites.length < 0 }) });
export const pm = new PassManager<CompileContext>([foldNormsPass, mine, rotatePass]);
export const opts: Partial<CompileOptions> = { weights: '${weights}' };
export { compile, createContext, WebgpuModel };
`;
    writeFileSync(
      join(consumer, 'tsconfig.json'),
      JSON.stringify({
        compilerOptions: { target: 'ES2022', module: 'NodeNext', moduleResolution: 'NodeNext', strict: true, noEmit: true, skipLibCheck: false, lib: ['ES2022', 'DOM'], types: ['node'], typeRoots: [join(REPO, 'node_modules', '@types')] },
        files: ['use.ts'],
      }),
    );
    writeFileSync(join(consumer, 'use.ts'), src('rtn-ternary'));
    const ok = run(tsc, ['-p', '.']);
    expect(ok.stdout + ok.stderr).toBe('');
    expect(ok.code).toBe(0);
    writeFileSync(join(consumer, 'use.ts'), src('int4'));
    const bad = run(tsc, ['-p', '.']);
    expect(bad.code).not.toBe(0);
    expect(bad.stdout).toMatch(/use\.ts\(6,\d+\): error TS2322: Type '"int4"' is not assignable to type 'WeightsMethod/);
  });
});
