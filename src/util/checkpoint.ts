// A compile's checkpoint folder: what its long passes finished, kept beside the output
// (`<out>.twlac-resume/`) so that a compile killed after hours continues where it stopped.
//
// Every entry is written to a temporary file, flushed and renamed into place, so a kill
// mid-write leaves the entry absent, never torn; the folder itself appears, with its
// key.json, by one rename too. key.json records what the entries depend on (the source
// model's files, the calibration tokens, the options, twlac's version): a resume under
// another key is refused, naming the part that differs, and the folder is left alone.
// Entries are V8-serialised values (plain objects, typed arrays), read only by the twlac
// that wrote them (the version is in the key).
import { closeSync, existsSync, fsyncSync, mkdirSync, openSync, readFileSync, renameSync, rmSync, statSync, writeSync } from 'node:fs';
import { deserialize, serialize } from 'node:v8';
import { basename, join } from 'node:path';
import { UserError } from '../errors.ts';
import { errnoWords, MiB, readTextFile } from './files.ts';

/** A file the result depends on, by identity: a changed file has another size or modification time. */
export interface FileStamp {
  path: string;
  size: number;
  mtimeMs: number;
}

export interface CheckpointKey {
  /** twlac's version, and the SHA-256 of its code (util/code-digest.ts): the version alone does not change between commits. */
  twlac: string;
  code: string;
  /** The source model's files (model.onnx and its external data). */
  model: FileStamp[];
  /** SHA-256 of the calibration token segments (text, tokenizer, samples, length and seed in one). */
  calibration: string;
  /** Every option that changes the result (worker threads do not). */
  options: Record<string, unknown>;
}

/** The place of the checkpoint of a compile writing `outDir`. */
export function checkpointDirFor(outDir: string): string {
  return `${outDir.replace(/[\\/]+$/, '')}.twlac-resume`;
}

export function fileStamp(path: string): FileStamp {
  const st = statSync(path);
  return { path, size: st.size, mtimeMs: st.mtimeMs };
}

export class Checkpoint {
  private constructor(
    readonly dir: string,
    private readonly key: CheckpointKey,
    private exists: boolean,
  ) {}

  /**
   * The checkpoint at `dir` for a compile under `key`. With `resume`, a checkpoint there must
   * have been made under the same key; without it, none may be there (a UserError says to
   * pass --resume or remove it), so that hours of work are never dropped by a missing flag.
   */
  static open(dir: string, key: CheckpointKey, resume: boolean): Checkpoint {
    if (!existsSync(dir)) return new Checkpoint(dir, key, false);
    const found = readKey(dir);
    if (!resume) throw new UserError(`${dir} holds the checkpoint of an interrupted compile: pass --resume to continue it, or remove the folder to start over`);
    const why = keyDifference(found, key);
    if (why) throw new UserError(`checkpoint ${dir} is from another compile (${why}): resume with the inputs and flags it was made with, or remove it to start over`);
    return new Checkpoint(dir, key, true);
  }

  /** Whether entry `name` was written. */
  has(name: string): boolean {
    return this.exists && existsSync(this.path(name));
  }

  /** Entry `name`, or undefined when it was never written. */
  load<T>(name: string): T | undefined {
    if (!this.has(name)) return undefined;
    try {
      return deserialize(readFileSync(this.path(name))) as T;
    } catch (e) {
      throw new UserError(`checkpoint ${this.dir}: ${basename(this.path(name))} is unreadable (${(e as Error).message}); remove the folder to start over`);
    }
  }

  /** Write entry `name` (the folder is created on the first). */
  save(name: string, value: unknown): void {
    if (!this.exists) this.create();
    writeAtomically(this.path(name), serialize(value));
  }

  /** Remove the folder: the compile it served has succeeded. */
  remove(): void {
    if (this.exists) rmSync(this.dir, { recursive: true, force: true });
    this.exists = false;
  }

  private path(name: string): string {
    return join(this.dir, `${name}.bin`);
  }

  private create(): void {
    const tmp = `${this.dir}.tmp-${process.pid}`;
    rmSync(tmp, { recursive: true, force: true });
    try {
      mkdirSync(tmp);
    } catch (e) {
      throw new UserError(`cannot write checkpoint ${this.dir}: ${errnoWords(e)}`);
    }
    writeAtomically(join(tmp, 'key.json'), Buffer.from(JSON.stringify(this.key, null, 1)));
    renameSync(tmp, this.dir);
    this.exists = true;
  }
}

function readKey(dir: string): CheckpointKey {
  try {
    const k = JSON.parse(readTextFile(join(dir, 'key.json'), 'checkpoint key', MiB)) as CheckpointKey;
    if (typeof k.twlac === 'string' && Array.isArray(k.model) && typeof k.calibration === 'string' && typeof k.options === 'object') return k;
  } catch {
    // falls through to the refusal below
  }
  throw new UserError(`${dir} is not a twlac checkpoint (no valid key.json); move it away, twlac keeps a compile's checkpoint there`);
}

/** The parts of two keys that differ, in words; undefined when they are the same. */
function keyDifference(found: CheckpointKey, want: CheckpointKey): string | undefined {
  if (found.twlac !== want.twlac) return `made by twlac ${found.twlac}, this is ${want.twlac}`;
  if (found.code !== want.code) return `made by another build of twlac ${want.twlac}: code ${found.code?.slice(0, 12) ?? 'not recorded'}, this is ${want.code.slice(0, 12)}`;
  if (stable(found.model) !== stable(want.model)) return 'the source model differs: its path, size or modification time';
  if (found.calibration !== want.calibration) return 'the calibration data differs: its text, tokenizer, --calib-samples, --seq or --seed';
  const names = [...new Set([...Object.keys(found.options), ...Object.keys(want.options)])].sort();
  const differ = names.filter((n) => stable(found.options[n]) !== stable(want.options[n]));
  return differ.length ? `options differ: ${differ.join(', ')}` : undefined;
}

/** JSON with object keys sorted, so that equal values give equal text. */
function stable(v: unknown): string {
  return JSON.stringify(v, (_k, x: unknown) =>
    x && typeof x === 'object' && !Array.isArray(x) ? Object.fromEntries(Object.entries(x as Record<string, unknown>).sort(([a], [b]) => (a < b ? -1 : a > b ? 1 : 0))) : x,
  );
}

/** Write `bytes` to `path` by a flushed temporary file renamed over it: readers see the old state or the new, never a part. */
function writeAtomically(path: string, bytes: Uint8Array): void {
  const tmp = `${path}.tmp-${process.pid}`;
  const fd = openSync(tmp, 'w');
  try {
    for (let at = 0; at < bytes.byteLength; ) at += writeSync(fd, bytes, at, bytes.byteLength - at);
    fsyncSync(fd);
  } finally {
    closeSync(fd);
  }
  renameSync(tmp, path);
}
