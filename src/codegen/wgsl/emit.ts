// `twlac ... --target wgsl`: write the WGSL of every kernel the artifact's plan uses to
// out/kernels/wgsl/, one file per distinct kernel, plus index.json mapping each file to
// its cache key, bindings and workgroup size (what a host needs to dispatch it).
import { mkdirSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import type { ArtifactManifest } from '../../artifact/manifest.ts';
import { distinctKernels, planModel, type PlanOptions } from './plan.ts';

export interface EmittedKernel {
  file: string;
  cacheKey: string;
  bindings: { name: string; elem: string; access: string }[];
  step: boolean;
  workgroupSize: number;
}

/** Returns the files written (relative to outDir) and their sizes. The plan options pick the
 *  adapter kind (and with it the GEMV shape) exactly as the runtime's do. */
export function emitWgsl(manifest: ArtifactManifest, outDir: string, opts: PlanOptions = {}): Record<string, number> {
  const dir = join(outDir, 'kernels', 'wgsl');
  mkdirSync(dir, { recursive: true });
  const files: Record<string, number> = {};
  const index: EmittedKernel[] = [];
  const perName = new Map<string, number>();
  for (const k of distinctKernels(planModel(manifest, opts))) {
    const n = perName.get(k.name) ?? 0;
    perName.set(k.name, n + 1);
    const file = `${k.name}_${n}.wgsl`;
    const src = k.source();
    writeFileSync(join(dir, file), src);
    files[`kernels/wgsl/${file}`] = Buffer.byteLength(src);
    index.push({ file, cacheKey: k.cacheKey, bindings: k.bindings.map((b) => ({ ...b })), step: k.usesStep, workgroupSize: k.workgroupSize });
  }
  const idx = JSON.stringify(index, null, 1);
  writeFileSync(join(dir, 'index.json'), idx);
  files['kernels/wgsl/index.json'] = Buffer.byteLength(idx);
  return files;
}
