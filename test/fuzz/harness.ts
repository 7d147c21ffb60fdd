// Runs fuzz cases and judges each run. A case passes when:
// - the exit code is documented (0, 1 usage, 2 refused input, 74 file system; 130/143 for
//   the signal cases) and not 70 (internal error), and a 'refuse' case did not exit 0;
// - a refusal printed exactly one line, starting `twlac: `, with no stack trace and no raw
//   control bytes, and nothing on stdout;
// - no temporary folder is left, a refused run left no output (or an earlier one untouched),
//   and no input file changed;
// - an accepted compile wrote a complete output that onnxruntime loads, whose logits are
//   finite wherever the source model's are;
// - it ended within the time limit (a hang is a failure), and, through the real binary,
//   within the memory bound.
// Cases run in this process through the CLI's `main` where they can (fast), and through
// bin/twlac.js where they need a working folder, special files, signals or a memory figure.
import { spawn } from 'node:child_process';
import { createHash } from 'node:crypto';
import { existsSync, lstatSync, mkdirSync, readdirSync, readFileSync, readlinkSync, rmSync, statSync } from 'node:fs';
import os from 'node:os';
import { join, dirname, resolve } from 'node:path';
import * as ort from 'onnxruntime-node';
import { main } from '../../src/cli/main.ts';
import { BIN, type FuzzCase } from './cases.ts';

export interface Outcome {
  id: string;
  category: FuzzCase['category'];
  via: 'in-process' | 'cli';
  code: number | null;
  /** 'refused' (non-zero exit) or 'accepted' (exit 0). */
  verdict: 'refused' | 'accepted';
  /** What was wrong; empty when the case passed. */
  failures: string[];
  stderr: string;
  ms: number;
  maxRssKiB?: number;
}

const DOCUMENTED_EXITS = new Set([0, 1, 2, 74]);
/** A refusal must not use more memory than this (through the real binary). */
export const REFUSAL_RSS_LIMIT_KIB = 1024 * 1024;

/** Hash of every file under `dir` except `skip` (paths → sha256), symbolic links by target. */
function snapshot(dir: string, skip: Set<string>): Map<string, string> {
  const out = new Map<string, string>();
  const walk = (d: string) => {
    for (const e of readdirSync(d, { withFileTypes: true })) {
      const p = join(d, e.name);
      if (skip.has(p) || e.name.includes('.twlac-')) continue;
      if (e.isSymbolicLink()) out.set(p, `link:${readlinkSafe(p)}`);
      else if (e.isDirectory()) walk(p);
      else if (e.isFile()) {
        const st = statSync(p);
        // Sparse giants are compared by size and time; reading them would take the run's memory.
        out.set(p, st.size > 64 << 20 ? `size:${st.size}:${st.mtimeMs}` : createHash('sha256').update(readFileSync(p)).digest('hex'));
      } else out.set(p, 'special');
    }
  };
  walk(dir);
  return out;
}

function readlinkSafe(p: string): string {
  try {
    return lstatSync(p).isSymbolicLink() ? readlinkSync(p) : '';
  } catch {
    return '';
  }
}

/** Leftover temporary folders (.NAME.twlac-tmp-PID / -old-PID) beside `out`. */
function leftovers(out: string): string[] {
  const parent = dirname(out);
  if (!existsSync(parent)) return [];
  try {
    return readdirSync(parent).filter((n) => /\.twlac-(tmp|old)-\d+$/.test(n));
  } catch {
    return [];
  }
}

interface RunResult {
  code: number | null;
  stdout: string;
  stderr: string;
  timedOut: boolean;
  maxRssKiB?: number;
}

async function runInProcess(args: string[], timeoutMs: number): Promise<RunResult> {
  let stdout = '';
  let stderr = '';
  const outWrite = process.stdout.write.bind(process.stdout);
  const errWrite = process.stderr.write.bind(process.stderr);
  process.stdout.write = ((s: string | Uint8Array) => ((stdout += String(s)), true)) as typeof process.stdout.write;
  process.stderr.write = ((s: string | Uint8Array) => ((stderr += String(s)), true)) as typeof process.stderr.write;
  let timer: NodeJS.Timeout | undefined;
  try {
    const timeout = new Promise<'timeout'>((res) => (timer = setTimeout(() => res('timeout'), timeoutMs)));
    const r = await Promise.race([main(['node', 'twlac', ...args]), timeout]);
    return r === 'timeout' ? { code: null, stdout, stderr, timedOut: true } : { code: r, stdout, stderr, timedOut: false };
  } finally {
    clearTimeout(timer);
    process.stdout.write = outWrite;
    process.stderr.write = errWrite;
  }
}

const TIME = existsSync('/usr/bin/time') ? '/usr/bin/time' : undefined;

function runCli(
  args: string[],
  opts: { cwd?: string; signal?: NodeJS.Signals; out: string; timeoutMs: number },
): Promise<RunResult> {
  return new Promise((res, rej) => {
    const rssFile = join(dirname(opts.out), `.rss-${process.pid}-${Math.random().toString(36).slice(2)}`);
    // Memory is measured by /usr/bin/time, except for signal cases (the signal must reach twlac itself).
    const cmd = TIME && !opts.signal ? [TIME, '-q', '-f', '%M', '-o', rssFile, process.execPath, BIN, ...args] : [process.execPath, BIN, ...args];
    const child = spawn(cmd[0], cmd.slice(1), { cwd: opts.cwd ?? dirname(opts.out), env: { ...process.env, TWLAC_DEBUG: '' }, stdio: ['ignore', 'pipe', 'pipe'] });
    let stdout = '';
    let stderr = '';
    let timedOut = false;
    child.stdout.setEncoding('utf8').on('data', (d: string) => (stdout += d));
    child.stderr.setEncoding('utf8').on('data', (d: string) => (stderr += d));
    const timer = setTimeout(() => {
      timedOut = true;
      child.kill('SIGKILL');
    }, opts.timeoutMs);
    // Without /usr/bin/time (or with a signal to deliver), the peak is sampled from /proc.
    let sampledKiB = 0;
    const sampler = cmd[0] === TIME ? undefined : setInterval(() => {
      try {
        const m = /VmHWM:\s+(\d+)/.exec(readFileSync(`/proc/${child.pid}/status`, 'utf8'));
        if (m) sampledKiB = Math.max(sampledKiB, Number(m[1]));
      } catch {
        // exited, or no /proc
      }
    }, 10);
    let poll: NodeJS.Timeout | undefined;
    if (opts.signal) {
      // Interrupt once the compile is under way (its temporary folder exists).
      poll = setInterval(() => {
        if (leftovers(opts.out).some((n) => n.includes('twlac-tmp'))) {
          clearInterval(poll);
          child.kill(opts.signal);
        }
      }, 20);
    }
    child.on('error', rej);
    child.on('close', (code, sig) => {
      clearTimeout(timer);
      clearInterval(poll);
      clearInterval(sampler);
      let maxRssKiB: number | undefined = sampledKiB || undefined;
      if (existsSync(rssFile)) {
        const m = /(\d+)\s*$/.exec(readFileSync(rssFile, 'utf8'));
        maxRssKiB = m ? Number(m[1]) : undefined;
        rmSync(rssFile, { force: true });
      }
      // A process ended by signal s exits 128 + s in a shell's terms.
      const bySignal = sig ? 128 + (os.constants.signals[sig] ?? 0) : null;
      res({ code: code ?? bySignal, stdout, stderr, timedOut, maxRssKiB });
    });
  });
}

/** Logits of a few tokens through onnxruntime: undefined when the model does not load or run. */
async function probeLogits(modelPath: string): Promise<{ finite: boolean } | { error: string }> {
  try {
    const s = await ort.InferenceSession.create(modelPath, { graphOptimizationLevel: 'disabled', intraOpNumThreads: 1, logSeverityLevel: 4 });
    const name = s.inputNames.find((n) => /ids/.test(n)) ?? s.inputNames[0];
    const out = await s.run({ [name]: new ort.Tensor('int64', BigInt64Array.from([1n, 2n, 3n, 4n]), [1, 4]) });
    const logits = out[s.outputNames[0]].data as Float32Array;
    await s.release();
    return { finite: logits.every((x) => Number.isFinite(x)) };
  } catch (e) {
    return { error: (e as Error).message.split('\n')[0].slice(0, 200) };
  }
}

export async function runCase(c: FuzzCase, root: string, timeoutMs = 60_000): Promise<Outcome> {
  const dir = join(root, c.id.replace(/[^A-Za-z0-9_.-]+/g, '_'));
  rmSync(dir, { recursive: true, force: true });
  mkdirSync(dir, { recursive: true });
  const setup = c.setup(dir);
  const out = resolve(dir, setup.out ?? 'out');
  const args = setup.bare || setup.args.includes('-o') ? setup.args : [...setup.args, '-o', out, '-q'];
  const outExisted = existsSync(out);
  const outBefore = outExisted && statSync(out).isDirectory() ? snapshot(out, new Set()) : undefined;
  const before = snapshot(dir, new Set([out]));
  const via = c.cli ? 'cli' : 'in-process';
  const t0 = performance.now();
  const r: RunResult = c.cli ? await runCli(args, { cwd: setup.cwd, signal: setup.signal, out, timeoutMs }) : await runInProcess(args, timeoutMs);
  const ms = performance.now() - t0;
  // After a signal the janitor process removes the temporary folder; give it a moment.
  for (let i = 0; setup.signal && i < 100 && leftovers(out).length; i++) await new Promise((res) => setTimeout(res, 30));
  const failures: string[] = [];
  const verdict = r.code === 0 ? 'accepted' : 'refused';
  if (r.timedOut) failures.push(`no result within ${timeoutMs / 1000} s (hang)`);
  else {
    const allowed = setup.exits ?? [...DOCUMENTED_EXITS];
    if (r.code === 70) failures.push('internal error (exit 70)');
    else if (r.code !== 0 && !allowed.includes(r.code ?? -1)) failures.push(`exit code ${r.code} is not one of ${allowed.join(', ')}`);
    if (c.expect === 'refuse' && r.code === 0) failures.push('accepted an input it must refuse');
    if (c.expect === 'accept' && r.code !== 0) failures.push(`refused a valid input: ${r.stderr.trim()}`);
  }
  const lines = r.stderr.split('\n').filter((l) => l !== '');
  if (r.code !== 0 && !setup.signal && !r.timedOut) {
    if (lines.length !== 1) failures.push(`stderr has ${lines.length} lines, not one`);
    if (lines.length && !lines[0].startsWith('twlac: ')) failures.push('the error line does not start with "twlac: "');
    if (r.stdout !== '') failures.push('a refusal printed on stdout');
    if (c.mentions && lines.length && !c.mentions.test(lines[0])) failures.push(`the error line does not match ${c.mentions}`);
  }
  if (/\n\s+at .+:\d+:\d+\)?$/m.test(r.stderr)) failures.push('stack trace on stderr');
  // eslint-disable-next-line no-control-regex
  if (/[\u0000-\u0008\u000b-\u001f\u007f]/.test(r.stderr)) failures.push('raw control bytes on stderr');
  if (leftovers(out).length) failures.push(`temporary folder left: ${leftovers(out).join(', ')}`);
  if (r.code !== 0) {
    if (!outExisted && existsSync(out)) failures.push('a refused run left an output folder');
    if (outBefore) {
      const now = existsSync(out) ? snapshot(out, new Set()) : new Map();
      if (JSON.stringify([...now]) !== JSON.stringify([...outBefore])) failures.push('a refused run changed the earlier output');
    }
  }
  const after = snapshot(dir, new Set([out]));
  for (const [p, h] of before) if (after.get(p) !== h) failures.push(`input changed: ${p.slice(dir.length + 1)}`);
  for (const p of after.keys()) if (!before.has(p) && !p.startsWith(out) && !/\.rss-/.test(p)) failures.push(`file appeared: ${p.slice(dir.length + 1)}`);
  if (r.code !== 0 && r.maxRssKiB !== undefined && r.maxRssKiB > REFUSAL_RSS_LIMIT_KIB) failures.push(`a refusal used ${Math.round(r.maxRssKiB / 1024)} MiB`);
  const compiles = !['inspect', 'eval', 'run'].includes(args[0]);
  if (r.code === 0 && compiles && existsSync(join(out, 'model.onnx'))) {
    for (const f of ['manifest.json', 'weights.bin', 'report.md']) if (!existsSync(join(out, f))) failures.push(`accepted but ${f} is missing`);
    // The output must run and compute finite logits wherever the source model does.
    const got = await probeLogits(join(out, 'model.onnx'));
    if ('error' in got || !got.finite) {
      const modelArg = setup.args.find((a) => a.endsWith('.onnx'));
      const src = modelArg ? await probeLogits(modelArg) : undefined;
      const sourceFine = src !== undefined && 'finite' in src && src.finite;
      if ('error' in got && sourceFine) failures.push(`onnxruntime cannot run the output: ${got.error}`);
      else if (!('error' in got) && sourceFine) failures.push('the output computes NaN/Inf where the source does not');
    }
  } else if (r.code === 0 && compiles) failures.push('exit 0 without an output model');
  if (failures.length === 0) rmSync(dir, { recursive: true, force: true });
  return { id: c.id, category: c.category, via, code: r.code, verdict, failures, stderr: r.stderr.trim().slice(0, 400), ms, ...(r.maxRssKiB ? { maxRssKiB: r.maxRssKiB } : {}) };
}

export interface Summary {
  cases: number;
  failures: number;
  byCategory: Record<string, { cases: number; refused: number; accepted: number; failures: number }>;
  byExit: Record<string, number>;
  viaCli: number;
  maxRefusalRssMiB?: number;
}

export function summarise(outcomes: Outcome[]): Summary {
  const byCategory: Summary['byCategory'] = {};
  const byExit: Record<string, number> = {};
  let maxRss = 0;
  for (const o of outcomes) {
    const c = (byCategory[o.category] ??= { cases: 0, refused: 0, accepted: 0, failures: 0 });
    c.cases++;
    c[o.verdict]++;
    if (o.failures.length) c.failures++;
    byExit[String(o.code)] = (byExit[String(o.code)] ?? 0) + 1;
    if (o.verdict === 'refused' && o.maxRssKiB) maxRss = Math.max(maxRss, o.maxRssKiB);
  }
  return {
    cases: outcomes.length,
    failures: outcomes.filter((o) => o.failures.length).length,
    byCategory,
    byExit,
    viaCli: outcomes.filter((o) => o.via === 'cli').length,
    ...(maxRss ? { maxRefusalRssMiB: Math.round(maxRss / 1024) } : {}),
  };
}
