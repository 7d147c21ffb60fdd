// Targets that a compile writes beside its model: `cuda[:sm_90a,sm_80]` and `wgsl` kernels, and
// `tfjs` (a TF.js GraphModel in out/tfjs/) — compileToDir's `targets`, the CLI's `--target`.
// Each backend is one row of the table below.
import { UserError } from '../errors.ts';
import type { ArtifactManifest } from '../artifact/manifest.ts';
import type { ModelConfig } from '../graph/model-config.ts';
import type { Progress } from '../graph/pass.ts';
import { parseArchs } from './cuda/arch.ts';

export interface TargetSpec {
  name: 'cuda' | 'wgsl' | 'tfjs';
  options: string[];
}

type Emitter = (dir: string, manifest: ArtifactManifest, options: string[]) => Promise<Record<string, number>>;

const BACKENDS: Record<TargetSpec['name'], Emitter> = {
  cuda: async (dir, manifest, options) => {
    const { emitCudaTarget } = await import('./cuda/target.ts');
    return emitCudaTarget(dir, manifest, options);
  },
  wgsl: async (dir, manifest) => {
    const { emitWgslTarget } = await import('./wgsl/target.ts');
    return emitWgslTarget(dir, manifest);
  },
  tfjs: async (dir, manifest) => {
    const { emitTfjsTarget } = await import('./tfjs/target.ts');
    return emitTfjsTarget(dir, manifest);
  },
};

export function parseTargets(specs: string[]): TargetSpec[] {
  return specs.flatMap((s) => s.split(/\s+/)).filter(Boolean).map((s) => {
    const [name, opts] = s.split(':', 2);
    if (name !== 'cuda' && name !== 'wgsl' && name !== 'tfjs') throw new UserError(`unknown --target '${s}' (expected cuda[:sm_90a,...], wgsl or tfjs)`);
    if (name !== 'cuda' && opts) throw new UserError(`--target ${name} takes no options, got '${s}'`);
    const options = opts ? opts.split(',').filter(Boolean) : [];
    // Check architecture names before any compile work is done.
    if (name === 'cuda') {
      try {
        parseArchs(options.join(','));
      } catch (e) {
        throw new UserError(`--target ${s}: ${(e as Error).message}`);
      }
    }
    return { name, options };
  });
}

/**
 * Refuse, before any compile work, a model shape that a requested target's kernels cannot take
 * (the program's features are checked when the targets are written, after the passes).
 */
export async function checkTargetShapes(config: ModelConfig, targets: readonly TargetSpec[]): Promise<void> {
  if (targets.some((t) => t.name === 'cuda')) {
    const { checkCudaShape } = await import('./cuda/emit.ts');
    checkCudaShape(config);
  }
}

export async function emitTargets(dir: string, manifest: ArtifactManifest, targets: TargetSpec[], progress: Progress): Promise<Record<string, number>> {
  const files: Record<string, number> = {};
  for (const t of targets) {
    progress.start(t.name === 'tfjs' ? 'emitting the TF.js graph model' : `emitting ${t.name} kernels`);
    Object.assign(files, await BACKENDS[t.name](dir, manifest, t.options));
    progress.done();
  }
  return files;
}
