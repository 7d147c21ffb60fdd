// `--target wgsl`: the WGSL row of the target table (src/codegen/targets.ts).
import type { ArtifactManifest } from '../../artifact/manifest.ts';
import { emitWgsl } from './emit.ts';

export async function emitWgslTarget(dir: string, manifest: ArtifactManifest): Promise<Record<string, number>> {
  return emitWgsl(manifest, dir);
}
