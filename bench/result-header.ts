// The header every curated result under bench/results/ starts with: what was measured, on
// what, by which command, at which commit and date. A run from a tree with uncommitted
// changes says so in its commit field.
import { execSync } from 'node:child_process';
import { cpus } from 'node:os';

export interface ResultHeader {
  benchmark: string;
  date: string;
  commit: string;
  device: string;
  command: string;
}

export function resultHeader(benchmark: string, device: string, command = `npx tsx ${process.argv.slice(1).map((a) => a.replace(/^.*\/(bench|scripts)\//, '$1/')).join(' ')}`): ResultHeader {
  const git = (args: string) => {
    try {
      return execSync(`git ${args}`, { encoding: 'utf8', stdio: ['ignore', 'pipe', 'ignore'] }).trim();
    } catch {
      return '';
    }
  };
  // TWLAC_COMMIT: set by device scripts that run a bundle outside the repository
  const fromGit = git('rev-parse --short HEAD');
  const commit = fromGit || process.env.TWLAC_COMMIT || 'unknown';
  const dirty = fromGit !== '' && git('status --porcelain --untracked-files=no') !== '';
  return { benchmark, date: new Date().toISOString().slice(0, 10), commit: dirty ? `${commit} with uncommitted changes` : commit, device, command };
}

/** The machine a CPU benchmark ran on, in words. */
export function cpuDevice(): string {
  return `${cpus().length} × ${cpus()[0]?.model ?? 'CPU'} (Node ${process.version})`;
}
