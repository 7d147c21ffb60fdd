// weights.bin: the runtimes' tensor store. Tensors are appended at 64-byte-aligned
// offsets; the manifest's `tensors` map records offset, byte length, dtype and dims.
import { closeSync, openSync, readFileSync, writeSync } from 'node:fs';
import { join } from 'node:path';
import type { DType } from '../graph/tensor.ts';
import { UserError } from '../errors.ts';
import { MANIFEST_VERSION, type ArtifactManifest, type TensorEntry } from './manifest.ts';

export const WEIGHT_ALIGN = 64;

export class WeightsWriter {
  readonly entries: Record<string, TensorEntry> = {};
  private fd: number;
  private pos = 0;

  constructor(readonly path: string) {
    this.fd = openSync(path, 'w');
  }

  add(name: string, dtype: DType, dims: number[], bytes: Uint8Array): TensorEntry {
    if (this.entries[name]) throw new Error(`weights.bin: duplicate tensor ${name}`);
    const pad = (WEIGHT_ALIGN - (this.pos % WEIGHT_ALIGN)) % WEIGHT_ALIGN;
    if (pad) this.write(new Uint8Array(pad));
    const e: TensorEntry = { offset: this.pos, bytes: bytes.byteLength, dtype, dims };
    this.write(bytes);
    this.entries[name] = e;
    return e;
  }

  private write(b: Uint8Array): void {
    let done = 0;
    while (done < b.byteLength) done += writeSync(this.fd, b, done, b.byteLength - done, this.pos + done);
    this.pos += b.byteLength;
  }

  /** Total bytes written. */
  close(): number {
    closeSync(this.fd);
    return this.pos;
  }
}

/** Read an artifact directory (Node). Runtimes in the browser fetch the same two files. */
export function readArtifact(dir: string): { manifest: ArtifactManifest; weights: Uint8Array } {
  const manifest = JSON.parse(readFileSync(join(dir, 'manifest.json'), 'utf8')) as ArtifactManifest;
  if (manifest.kind !== 'twlac-artifact') throw new Error(`${dir}/manifest.json is not a twlac artifact manifest`);
  if (manifest.version !== MANIFEST_VERSION) {
    throw new UserError(`${dir}/manifest.json is version ${manifest.version}; this twlac reads version ${MANIFEST_VERSION} (recompile the model)`);
  }
  const weights = new Uint8Array(readFileSync(join(dir, manifest.weightsFile)));
  return { manifest, weights };
}


/** A view of one tensor's bytes inside weights.bin. */
export function tensorBytes(m: ArtifactManifest, weights: Uint8Array, name: string): Uint8Array {
  const e = m.tensors[name];
  if (!e) throw new Error(`artifact has no tensor ${name}`);
  return weights.subarray(e.offset, e.offset + e.bytes);
}
