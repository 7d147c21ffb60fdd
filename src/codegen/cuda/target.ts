// The CUDA row of the target table (src/codegen/targets.ts): `--target cuda[:sm_90a,sm_80]`.
import { join } from 'node:path';
import type { ArtifactManifest } from '../../artifact/manifest.ts';
import { UserError } from '../../errors.ts';
import { parseArchs } from './arch.ts';
import { emitCuda } from './emit.ts';

export async function emitCudaTarget(dir: string, manifest: ArtifactManifest, options: string[]): Promise<Record<string, number>> {
  let archs;
  try {
    archs = parseArchs(options.join(','));
  } catch (e) {
    throw new UserError((e as Error).message);
  }
  const files = emitCuda(manifest, join(dir, 'kernels', 'cuda'), archs);
  return Object.fromEntries(Object.entries(files).map(([rel, n]) => [`kernels/cuda/${rel}`, n]));
}
