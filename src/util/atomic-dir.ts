// Write an output directory atomically: everything goes into a hidden sibling, which is
// renamed into place only when the job succeeded. A failed run leaves nothing behind,
// and an existing output directory is only replaced by a complete new one.
//
// twlac never deletes what it did not write. Before any work the output place is checked:
// it may not be (or contain) the current folder or an input, and an existing folder is
// replaced only when it is empty, or when it is an earlier twlac output (its manifest.json
// lists every file in it) and the caller passed `force`.
//
// Interruption: a compile runs synchronously for minutes, so a JavaScript signal handler
// would not run until it ends. Instead a small detached janitor process holds the other end
// of a pipe; when this process ends for any reason (SIGINT, SIGTERM, SIGKILL, a crash) the
// pipe closes and the janitor removes the temporary folder and, if the swap was under way,
// puts the earlier output back.
import { spawn, type ChildProcess } from 'node:child_process';
import { existsSync, lstatSync, mkdirSync, readdirSync, realpathSync, renameSync, rmSync, statSync } from 'node:fs';
import { basename, dirname, join, relative, resolve } from 'node:path';
import type { Socket } from 'node:net';
import { UserError } from '../errors.ts';
import { errnoWords, isWithin, MiB, readTextFile } from '../util/files.ts';

export interface OutputOptions {
  /** Files the job reads: the output may not be, or contain, any of them. */
  inputs?: string[];
  /** Replace an earlier twlac output found at the place (recognised by its manifest.json). */
  force?: boolean;
}

/** `manifest.json` kinds twlac writes at the top of an output folder. */
const OUTPUT_KINDS = new Set(['twlac-artifact', 'twlac-demo']);

export async function withAtomicDir<T>(outDir: string, job: (tmpDir: string) => Promise<T>, opts: OutputOptions = {}): Promise<T> {
  const target = checkOutputPlace(outDir, opts);
  const parent = dirname(target);
  const tmp = join(parent, `.${basename(target)}.twlac-tmp-${process.pid}`);
  const old = join(parent, `.${basename(target)}.twlac-old-${process.pid}`);
  rmSync(tmp, { recursive: true, force: true });
  // The janitor first: from the moment the temporary folder exists, someone will remove it.
  const janitor = startJanitor(tmp, target, old);
  try {
    mkdirSync(tmp);
  } catch (e) {
    janitor?.stdin?.end();
    throw new UserError(`cannot write output ${outDir}: creating a folder in ${parent}: ${errnoWords(e)}`);
  }
  try {
    const r = await job(tmp);
    // Checked again: the place may have changed during a compile of minutes.
    checkOutputPlace(outDir, opts);
    if (existsSync(target)) {
      renameSync(target, old);
      renameSync(tmp, target);
      rmSync(old, { recursive: true, force: true });
    } else {
      renameSync(tmp, target);
    }
    return r;
  } catch (e) {
    rmSync(tmp, { recursive: true, force: true });
    throw e;
  } finally {
    janitor?.stdin?.end();
  }
}

/**
 * The absolute output path, once it is known to be safe to replace; a UserError otherwise.
 * Exported for callers that want the verdict before doing any work.
 */
export function checkOutputPlace(outDir: string, opts: OutputOptions = {}): string {
  if (outDir.trim() === '') throw new UserError('the output folder name is empty');
  const target = resolve(outDir);
  const real = (p: string) => {
    try {
      return realpathSync(p);
    } catch {
      return resolve(p);
    }
  };
  const parent = dirname(target);
  let pst;
  try {
    pst = statSync(parent);
  } catch (e) {
    const code = (e as NodeJS.ErrnoException).code;
    if (code === 'ENOENT') throw new UserError(`output parent folder ${parent} does not exist`);
    throw new UserError(`output ${outDir}: ${parent}: ${errnoWords(e)}`);
  }
  if (!pst.isDirectory()) throw new UserError(`output ${outDir} lies below ${parent}, which is not a folder`);
  // The place as it will be after the rename: parent resolved, name as given.
  const place = join(real(parent), basename(target));
  if (isWithin(real(process.cwd()), place)) throw new UserError(`output ${outDir} is, or contains, the current folder; choose a new folder for -o`);
  for (const input of opts.inputs ?? []) {
    if (isWithin(real(input), place)) throw new UserError(`output ${outDir} is, or contains, the input ${input}; choose a new folder for -o`);
  }
  if (!existsSync(target) && !isBrokenLink(target)) return target;
  const st = lstatSync(target);
  if (st.isSymbolicLink()) throw new UserError(`output ${outDir} is a symbolic link; name a folder`);
  if (!st.isDirectory()) throw new UserError(`output ${outDir} exists and is not a folder`);
  const entries = readdirSync(target);
  if (entries.length === 0) return target;
  const foreign = foreignFiles(target);
  if (foreign === undefined) throw new UserError(`output ${outDir} is a folder that holds files twlac did not write; choose a new folder for -o`);
  if (foreign.length) throw new UserError(`output ${outDir} holds an earlier twlac output and also ${foreign[0]}, which twlac did not write; move it or choose another -o`);
  if (!opts.force) throw new UserError(`output ${outDir} holds an earlier twlac output; pass --force to replace it`);
  return target;
}

function isBrokenLink(p: string): boolean {
  try {
    return lstatSync(p).isSymbolicLink();
  } catch {
    return false;
  }
}

/**
 * For a folder with a twlac manifest.json: the files in it that the manifest does not list
 * (relative paths; empty when twlac wrote everything). Undefined when the folder has no
 * twlac manifest.
 */
function foreignFiles(dir: string): string[] | undefined {
  const manifestPath = join(dir, 'manifest.json');
  let files: Record<string, unknown>;
  try {
    const m = JSON.parse(readTextFile(manifestPath, 'manifest', 64 * MiB)) as { kind?: unknown; files?: unknown };
    if (typeof m.kind !== 'string' || !OUTPUT_KINDS.has(m.kind) || typeof m.files !== 'object' || m.files === null) return undefined;
    files = m.files as Record<string, unknown>;
  } catch {
    return undefined;
  }
  const out: string[] = [];
  const walk = (d: string) => {
    for (const e of readdirSync(d, { withFileTypes: true })) {
      const p = join(d, e.name);
      const rel = relative(dir, p).split('\\').join('/');
      if (e.isDirectory()) walk(p);
      else if (rel !== 'manifest.json' && !(rel in files)) out.push(rel);
    }
  };
  walk(dir);
  return out;
}

// The janitor: removes the temporary folder once its parent's end of the pipe closes, and
// puts an earlier output back if this process died between the two renames of the swap.
const JANITOR = `
const fs = require('fs');
const [tmp, target, old] = process.argv.slice(1);
const clean = () => {
  try { fs.rmSync(tmp, { recursive: true, force: true }); } catch {}
  try {
    if (fs.existsSync(old)) {
      if (fs.existsSync(target)) fs.rmSync(old, { recursive: true, force: true });
      else fs.renameSync(old, target);
    }
  } catch {}
  process.exit(0);
};
process.on('SIGINT', () => {});
process.stdin.on('end', clean).on('error', clean).on('close', clean).resume();
`;

function startJanitor(tmp: string, target: string, old: string): ChildProcess | undefined {
  try {
    // A bare environment: nothing of this process's NODE_OPTIONS or loaders is needed, or wanted.
    const child = spawn(process.execPath, ['-e', JANITOR, tmp, target, old], { detached: true, stdio: ['pipe', 'ignore', 'ignore'], env: {} });
    child.on('error', () => {});
    child.unref();
    (child.stdin as Socket | null)?.unref();
    return child;
  } catch {
    return undefined; // without a janitor an interrupted run may leave its temporary folder
  }
}
