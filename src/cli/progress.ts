// Progress on stderr: a redrawn single line on a TTY, plain periodic lines otherwise,
// nothing with --quiet. stdout stays reserved for results (generated text, JSON).
import type { Progress } from '../graph/pass.ts';
import { silentProgress } from '../graph/pass.ts';

export function makeProgress(opts: { quiet?: boolean; stream?: NodeJS.WriteStream } = {}): Progress {
  if (opts.quiet) return silentProgress;
  const out = opts.stream ?? process.stderr;
  const tty = !!out.isTTY;
  let label = '';
  let total = 0;
  let done = 0;
  let t0 = 0;
  let lastPrint = 0;
  const secs = () => ((performance.now() - t0) / 1000).toFixed(1);
  const line = (detail?: string) => {
    const frac = total ? ` ${done}/${total}` : '';
    const pct = total ? ` ${Math.floor((100 * done) / total)}%` : '';
    return `${label}${frac}${pct} ${secs()}s${detail ? ` ${detail}` : ''}`;
  };
  return {
    start(l, t = 0) {
      label = l;
      total = t;
      done = 0;
      t0 = performance.now();
      lastPrint = 0;
      if (!tty) out.write(`${label}...\n`);
    },
    tick(n = 1, detail) {
      done += n;
      const now = performance.now();
      if (tty) {
        if (now - lastPrint > 100 || done === total) {
          out.write(`\r\x1b[2K${line(detail)}`);
          lastPrint = now;
        }
      } else if (now - lastPrint > 5000) {
        out.write(`  ${line(detail)}\n`);
        lastPrint = now;
      }
    },
    done(summary) {
      const msg = `${label}: done in ${secs()}s${summary ? ` (${summary})` : ''}`;
      out.write(tty ? `\r\x1b[2K${msg}\n` : `${msg}\n`);
    },
    log(l) {
      out.write(tty ? `\r\x1b[2K${l}\n` : `${l}\n`);
    },
  };
}
