// Build the static demo: `npx tsx demo/build.ts <outDir> [artifactDir]` writes index.html and
// twlac-demo.js (one ES module, bundled by esbuild) to outDir, and copies the artifact's
// manifest.json, weights.bin and tokenizer.json to outDir/model/ when given. Serve outDir
// over http(s) (WebGPU needs a secure context; localhost is one).
import { build, type Plugin } from 'esbuild';
import { copyFileSync, existsSync, mkdirSync } from 'node:fs';
import { dirname, join, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';

const here = dirname(fileURLToPath(import.meta.url));

/** Node built-ins reached through shared modules (file readers the page never calls). */
const nodeStubs: Plugin = {
  name: 'node-stubs',
  setup(b) {
    b.onResolve({ filter: /^node:/ }, (a) => ({ path: a.path, namespace: 'node-stub' }));
    b.onLoad({ filter: /.*/, namespace: 'node-stub' }, (a) => ({
      contents: `const fail = () => { throw new Error('${a.path} is not available in the browser'); };
        export default new Proxy({}, { get: () => fail });
        export const readSync = fail, openSync = fail, closeSync = fail, fstatSync = fail, readFileSync = fail,
          writeFileSync = fail, existsSync = fail, statSync = fail, join = fail, dirname = fail;`,
      loader: 'js',
    }));
  },
};

export async function buildDemo(outDir: string, artifactDir?: string): Promise<void> {
  mkdirSync(outDir, { recursive: true });
  await build({
    entryPoints: [join(here, 'main.ts')],
    bundle: true,
    format: 'esm',
    platform: 'browser',
    target: 'es2022',
    outfile: join(outDir, 'twlac-demo.js'),
    plugins: [nodeStubs],
    logLevel: 'warning',
  });
  copyFileSync(join(here, 'index.html'), join(outDir, 'index.html'));
  if (artifactDir) {
    const m = join(outDir, 'model');
    mkdirSync(m, { recursive: true });
    for (const f of ['manifest.json', 'weights.bin', 'tokenizer.json']) {
      if (!existsSync(join(artifactDir, f))) throw new Error(`${artifactDir}: no ${f}`);
      copyFileSync(join(artifactDir, f), join(m, f));
    }
  }
}

if (process.argv[1] && resolve(process.argv[1]) === fileURLToPath(import.meta.url)) {
  const [out, art] = process.argv.slice(2);
  if (!out) {
    console.error('usage: tsx demo/build.ts <outDir> [artifactDir]');
    process.exit(2);
  }
  await buildDemo(out, art);
  console.log(`demo written to ${out}`);
}
