// `--target wgsl` as the CLI's target table calls it.
import type { ArtifactManifest } from '../../artifact/manifest.ts';
import { emitWgsl } from './emit.ts';

export async function emitWgslTarget(dir: string, manifest: ArtifactManifest): Promise<Record<string, number>> {
  return emitWgsl(manifest, dir);
}
