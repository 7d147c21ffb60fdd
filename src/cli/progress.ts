// Progress on stderr: a redrawn single line on a TTY, plain periodic lines otherwise,
// nothing with --quiet. stdout stays reserved for results (generated text, JSON).
// A compile announces its passes up front ("passes: 1 check-weights · 2 fold-norms …"), each
// line carries the running pass ("[4/5 ternary]"), a step with a known size shows its ETA,
// and a pass that works block by block reports after each block how long the pass still needs.
import type { Progress } from '../graph/pass.ts';
import { silentProgress } from '../graph/pass.ts';

/** 42 → "42s", 190 → "3m10s", 3725 → "1h02m". */
export function formatDuration(seconds: number): string {
  const s = Math.max(0, Math.round(seconds));
  if (s < 60) return `${s}s`;
  if (s < 3600) return `${Math.floor(s / 60)}m${String(s % 60).padStart(2, '0')}s`;
  return `${Math.floor(s / 3600)}h${String(Math.floor((s % 3600) / 60)).padStart(2, '0')}m`;
}

/** Time left for `done` of `total` parts after `elapsed` seconds, at the rate so far. */
export function eta(elapsed: number, done: number, total: number): number | undefined {
  return done > 0 && total > done ? (elapsed * (total - done)) / done : undefined;
}

export function makeProgress(opts: { quiet?: boolean; stream?: NodeJS.WritableStream & { isTTY?: boolean }; now?: () => number } = {}): Progress {
  if (opts.quiet) return silentProgress;
  const out = opts.stream ?? process.stderr;
  const now = opts.now ?? (() => performance.now());
  const tty = !!out.isTTY;
  let label = '';
  let total = 0;
  let done = 0;
  let t0 = 0;
  let lastPrint = 0;
  let passes: readonly string[] = [];
  let pass = '';
  let passT0 = 0;
  const secs = () => (now() - t0) / 1000;
  const prefix = () => (pass ? `[${pass}] ` : '');
  const line = (detail?: string) => {
    const frac = total ? ` ${done}/${total}` : '';
    const pct = total ? ` ${Math.floor((100 * done) / total)}%` : '';
    const left = eta(secs(), done, total);
    return `${prefix()}${label}${frac}${pct} ${secs().toFixed(1)}s${left !== undefined ? `, ETA ${formatDuration(left)}` : ''}${detail ? ` ${detail}` : ''}`;
  };
  const write = (l: string) => out.write(tty ? `\r\x1b[2K${l}\n` : `${l}\n`);
  return {
    start(l, t = 0) {
      label = l;
      total = t;
      done = 0;
      t0 = now();
      lastPrint = 0;
      if (!tty) out.write(`${prefix()}${label}...\n`);
    },
    tick(n = 1, detail) {
      done += n;
      const at = now();
      if (tty) {
        if (at - lastPrint > 100 || done === total) {
          out.write(`\r\x1b[2K${line(detail)}`);
          lastPrint = at;
        }
      } else if (at - lastPrint > 5000) {
        out.write(`  ${line(detail)}\n`);
        lastPrint = at;
      }
    },
    done(summary) {
      write(`${prefix()}${label}: done in ${secs().toFixed(1)}s${summary ? ` (${summary})` : ''}`);
    },
    log(l) {
      write(l);
    },
    plan(names) {
      passes = names;
      write(`passes: ${names.map((n, i) => `${i + 1} ${n}`).join(' · ')}`);
    },
    phase(index, name) {
      pass = index ? `${index}/${passes.length || index} ${name}` : '';
    },
    units(unitsDone, unitsTotal) {
      if (unitsDone === 0) {
        passT0 = now();
        return;
      }
      const elapsed = (now() - passT0) / 1000;
      const left = eta(elapsed, unitsDone, unitsTotal);
      write(`${prefix()}${unitsDone}/${unitsTotal} blocks in ${formatDuration(elapsed)}${left !== undefined ? `; about ${formatDuration(left)} left in this pass` : ''}`);
    },
  };
}
