// Kernels without a model (`twlac kernels`): for a target, a storage format and N×K shapes,
// the ternary linear kernels the model runtimes would run, a check case for each from the
// format's reference decoder, a harness, and manifest.json describing them. Each target is
// one row of the table below; the folder is written atomically.
import { writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { UserError } from '../errors.ts';
import { parseFormatId } from '../formats/ternary.ts';
import { TWLAC_VERSION } from '../artifact/build.ts';
import { withAtomicDir } from '../util/atomic-dir.ts';
import { parseArchs } from './cuda/arch.ts';
import { emitCudaKernels } from './cuda/standalone.ts';
import { emitWgslKernels } from './wgsl/standalone.ts';

export interface KernelPackSpec {
  /** `cuda:sm_XX` (one architecture) or `wgsl`. */
  target: string;
  /** Ternary storage format id, e.g. tq2_g128. */
  format: string;
  /** [N (out features), K (in features)] per linear. */
  shapes: [number, number][];
}

export interface KernelPackManifest {
  kind: 'twlac-kernels';
  twlac: string;
  target: string;
  format: string;
  harness: { build?: string; run: string };
  kernels: object[];
}

/** `4096x4096,11008x4096` → [[4096, 4096], [11008, 4096]]. */
export function parseShapes(spec: string): [number, number][] {
  const shapes = spec.split(',').map((s) => s.trim()).filter(Boolean).map((s) => {
    const m = /^(\d+)x(\d+)$/.exec(s);
    const n = Number(m?.[1]);
    const k = Number(m?.[2]);
    if (!m || n < 1 || k < 1 || n * k > 2 ** 31) throw new UserError(`shape '${s}' is not NxK (out features x in features, e.g. 4096x11008)`);
    return [n, k] as [number, number];
  });
  if (!shapes.length) throw new UserError('no shapes given (e.g. --shapes 4096x4096,11008x4096)');
  return shapes;
}

// The WGSL harness is twlac's own checker (twlac/webgpu), so it runs where twlac is installed.
const WGSL_HARNESS = `// Checks every kernel of this folder against its case on WebGPU (Node, Dawn) and times it.
// Run it where the twlac package is installed: node harness.mjs
import { fileURLToPath } from 'node:url';
import { checkWgslKernels } from 'twlac/webgpu';

const r = await checkWgslKernels(fileURLToPath(new URL('.', import.meta.url)));
console.log(JSON.stringify(r, null, 1));
process.exit(r.failures ? 1 : 0);
`;

/** A kernel generator's refusal of a shape or format is about the request: one line. */
function generated<T>(emit: () => T): T {
  try {
    return emit();
  } catch (e) {
    if (e instanceof UserError) throw e;
    throw new UserError(`cannot generate these kernels: ${(e as Error).message}`);
  }
}

const TARGETS: Record<'cuda' | 'wgsl', (options: string, spec: KernelPackSpec, dir: string) => Pick<KernelPackManifest, 'harness' | 'kernels'>> = {
  cuda: (options, spec, dir) => {
    let archs;
    try {
      archs = parseArchs(options);
    } catch (e) {
      throw new UserError(`--target cuda:${options}: ${(e as Error).message}`);
    }
    if (archs.length !== 1 || !options) throw new UserError(`--target cuda:<arch> takes one architecture, e.g. cuda:sm_90a (got '${options}')`);
    const kernels = generated(() => emitCudaKernels(archs[0], parseFormatId(spec.format), spec.shapes, dir));
    return { harness: { build: 'make', run: './twlac_kernels_harness' }, kernels };
  },
  wgsl: (options, spec, dir) => {
    if (options) throw new UserError(`--target wgsl takes no options, got 'wgsl:${options}'`);
    const kernels = generated(() => emitWgslKernels(parseFormatId(spec.format), spec.shapes, dir));
    writeFileSync(join(dir, 'harness.mjs'), WGSL_HARNESS);
    return { harness: { run: 'node harness.mjs' }, kernels };
  },
};

/** Writes the kernel folder `outDir` atomically and returns its manifest. */
export async function emitKernelPack(spec: KernelPackSpec, outDir: string): Promise<KernelPackManifest> {
  const [name, options = ''] = spec.target.split(':', 2);
  if (name !== 'cuda' && name !== 'wgsl') throw new UserError(`unknown --target '${spec.target}' (expected cuda:sm_XX or wgsl)`);
  try {
    parseFormatId(spec.format);
  } catch (e) {
    throw new UserError(`--format: ${(e as Error).message}`);
  }
  return withAtomicDir(outDir, async (dir) => {
    const manifest: KernelPackManifest = { kind: 'twlac-kernels', twlac: TWLAC_VERSION, target: spec.target, format: spec.format, ...TARGETS[name](options, spec, dir) };
    writeFileSync(join(dir, 'manifest.json'), JSON.stringify(manifest, null, 1));
    return manifest;
  });
}
