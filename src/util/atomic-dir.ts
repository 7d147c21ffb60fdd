// Write an output directory atomically: everything goes into a hidden sibling, which is
// renamed into place only when the job succeeded. A failed run leaves nothing behind,
// and an existing output directory is only replaced by a complete new one.
import { existsSync, mkdirSync, renameSync, rmSync, statSync } from 'node:fs';
import { basename, dirname, join, resolve } from 'node:path';
import { UserError } from '../errors.ts';

export async function withAtomicDir<T>(outDir: string, job: (tmpDir: string) => Promise<T>): Promise<T> {
  const target = resolve(outDir);
  if (existsSync(target) && !statSync(target).isDirectory()) throw new UserError(`output ${outDir} exists and is not a directory`);
  const parent = dirname(target);
  if (!existsSync(parent)) throw new UserError(`output parent directory ${parent} does not exist`);
  const tmp = join(parent, `.${basename(target)}.twlac-tmp-${process.pid}`);
  rmSync(tmp, { recursive: true, force: true });
  mkdirSync(tmp);
  const cleanup = () => rmSync(tmp, { recursive: true, force: true });
  const onSignal = () => {
    cleanup();
    process.exit(130);
  };
  process.once('SIGINT', onSignal);
  process.once('SIGTERM', onSignal);
  try {
    const r = await job(tmp);
    if (existsSync(target)) {
      const old = join(parent, `.${basename(target)}.twlac-old-${process.pid}`);
      renameSync(target, old);
      renameSync(tmp, target);
      rmSync(old, { recursive: true, force: true });
    } else {
      renameSync(tmp, target);
    }
    return r;
  } catch (e) {
    cleanup();
    throw e;
  } finally {
    process.off('SIGINT', onSignal);
    process.off('SIGTERM', onSignal);
  }
}
