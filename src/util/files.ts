// Reading files a user (or a hostile model) names, without surprises:
// - only regular files are opened: a FIFO would block forever, a device such as /dev/zero
//   would read without end, a folder would fail deep inside a library;
// - the size is checked against a bound before anything is read or allocated;
// - files a model refers to (external data, tokenizer.json, config.json beside it) must stay
//   inside the model's folder once symbolic links are resolved.
// Every refusal is a UserError naming the file and the reason.
import { closeSync, constants, fstatSync, openSync, readSync, realpathSync, statSync, type Stats } from 'node:fs';
import { isAbsolute, relative, sep } from 'node:path';
import { UserError } from '../errors.ts';

export const MiB = 1 << 20;

/** What a path is, in words, for refusals ("a FIFO", "a folder", ...). */
function kindOf(st: Stats): string {
  if (st.isDirectory()) return 'a folder';
  if (st.isFIFO()) return 'a FIFO';
  if (st.isCharacterDevice() || st.isBlockDevice()) return 'a device';
  if (st.isSocket()) return 'a socket';
  return 'not a regular file';
}

/** The Stats of a regular file (symbolic links followed); a UserError for anything else. */
export function statRegularFile(path: string, what: string): Stats {
  let st: Stats;
  try {
    st = statSync(path);
  } catch (e) {
    throw new UserError(`cannot read ${what} ${path}: ${errnoWords(e)}`);
  }
  if (!st.isFile()) throw new UserError(`cannot read ${what} ${path}: it is ${kindOf(st)}`);
  return st;
}

/**
 * The bytes of a regular file of at most `maxBytes` bytes. The file is opened without
 * blocking and checked again once open, so that a path swapped for a FIFO between the check
 * and the open cannot hang the process.
 */
export function readRegularFile(path: string, what: string, maxBytes: number): Buffer {
  const st = statRegularFile(path, what);
  if (st.size > maxBytes) throw new UserError(`${what} ${path} is ${st.size} bytes, more than the ${maxBytes} twlac accepts`);
  let fd: number;
  try {
    fd = openSync(path, constants.O_RDONLY | constants.O_NONBLOCK);
  } catch (e) {
    throw new UserError(`cannot read ${what} ${path}: ${errnoWords(e)}`);
  }
  try {
    const now = fstatSync(fd);
    if (!now.isFile()) throw new UserError(`cannot read ${what} ${path}: it is ${kindOf(now)}`);
    if (now.size > maxBytes) throw new UserError(`${what} ${path} is ${now.size} bytes, more than the ${maxBytes} twlac accepts`);
    const out = Buffer.alloc(now.size);
    let done = 0;
    while (done < out.length) {
      const r = readSync(fd, out, done, out.length - done, done);
      if (r <= 0) break;
      done += r;
    }
    return done === out.length ? out : out.subarray(0, done);
  } finally {
    closeSync(fd);
  }
}

/** A regular file's text (UTF-8), at most `maxBytes` bytes. */
export function readTextFile(path: string, what: string, maxBytes: number): string {
  return readRegularFile(path, what, maxBytes).toString('utf8');
}

/** True when `path` (symbolic links resolved) lies inside `folder` (links resolved too). */
export function resolvesInside(path: string, folder: string): boolean {
  let real: string;
  let root: string;
  try {
    real = realpathSync(path);
    root = realpathSync(folder);
  } catch {
    return false;
  }
  return isWithin(real, root);
}

/** `child` equals `parent` or lies below it (both absolute, already resolved). */
export function isWithin(child: string, parent: string): boolean {
  const r = relative(parent, child);
  return r === '' || (!isAbsolute(r) && r !== '..' && !r.startsWith(`..${sep}`));
}

/** An errno error in words ("no such file", "permission denied", ...). */
export function errnoWords(e: unknown): string {
  const code = (e as NodeJS.ErrnoException).code ?? '';
  return ERRNO_WORDS[code] ?? (e as Error).message;
}

export const ERRNO_WORDS: Record<string, string> = {
  ENOENT: 'no such file or folder',
  EISDIR: 'it is a folder',
  ENOTDIR: 'a component of the path is not a folder',
  EACCES: 'permission denied',
  EPERM: 'operation not permitted',
  EROFS: 'read-only file system',
  ENOSPC: 'no space left on the device',
  EDQUOT: 'disk quota exceeded',
  ELOOP: 'too many levels of symbolic links',
  ENAMETOOLONG: 'file name too long',
  EEXIST: 'it already exists',
  ENOTEMPTY: 'the folder is not empty',
  EXDEV: 'it is on another file system',
  EBUSY: 'the resource is busy',
  EMFILE: 'too many open files',
  EIO: 'input/output error',
};
