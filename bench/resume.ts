// What --resume saves: the shared fixture compiled with the full TWLA method three times
// through bin/twlac.js, one after another: (1) uninterrupted; (2) killed with SIGKILL as soon
// as its checkpoint holds block k (1-based; the kill lands while block k+1 is being fitted);
// (3) that compile continued with --resume. Wall seconds of each, the checkpoint's size at the
// kill, and whether out/ of (3) is byte for byte that of (1).
//
//   npm run build && npm run bench:resume [-- --kill-after 3 --samples 16 --seq 128]
//                                         writes bench/results/resume.json
import { spawn } from 'node:child_process';
import { existsSync, mkdtempSync, readFileSync, readdirSync, rmSync, statSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { dirname, join, relative, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';
import { parseArgs } from 'node:util';
import { cpuDevice, resultHeader } from './result-header.ts';

const REPO = resolve(dirname(fileURLToPath(import.meta.url)), '..');
const MODEL = resolve(REPO, '../shared/models/pydocs-llama-12m/model.onnx');
const TRAIN = resolve(REPO, '../shared/data/pydocs/train.txt');
const BIN = join(REPO, 'bin/twlac.js');

const { values } = parseArgs({ options: { 'kill-after': { type: 'string', default: '3' }, samples: { type: 'string', default: '16' }, seq: { type: 'string', default: '128' } } });
const killAfter = Number(values['kill-after']);
const flags = ['--weights', 'twla', '--calib', TRAIN, '--calib-samples', values.samples!, '--seq', values.seq!, '--seed', '0'];

interface Run {
  seconds: number;
  code: number | null;
  signal: NodeJS.Signals | null;
  stderr: string;
}

/** Run twlac; with `killWhen`, SIGKILL it as soon as that path exists. */
function twlac(args: string[], killWhen?: string): Promise<Run> {
  const t0 = performance.now();
  const child = spawn(process.execPath, [BIN, ...args], { cwd: REPO, stdio: ['ignore', 'ignore', 'pipe'] });
  let stderr = '';
  child.stderr.setEncoding('utf8').on('data', (d: string) => (stderr += d));
  const poll = killWhen ? setInterval(() => existsSync(killWhen) && child.kill('SIGKILL'), 20) : undefined;
  return new Promise((res, rej) => {
    child.on('error', rej);
    child.on('close', (code, signal) => {
      clearInterval(poll);
      res({ seconds: (performance.now() - t0) / 1000, code, signal, stderr });
    });
  });
}

function files(dir: string): string[] {
  const walk = (d: string): string[] => readdirSync(d, { withFileTypes: true }).flatMap((e) => (e.isDirectory() ? walk(join(d, e.name)) : [relative(dir, join(d, e.name))]));
  return walk(dir).sort();
}

const bytesOf = (dir: string) => files(dir).reduce((a, f) => a + statSync(join(dir, f)).size, 0);
const passSeconds = (stderr: string) => /pass seconds: (.*)/.exec(stderr)?.[1];

function fail(what: string, r: Run): never {
  throw new Error(`${what}: exit ${r.code ?? r.signal}\n${r.stderr.slice(-2000)}`);
}

const tmp = mkdtempSync(join(tmpdir(), 'twlac-bench-resume-'));
try {
  const ref = await twlac([MODEL, ...flags, '-o', join(tmp, 'ref')]);
  if (ref.code !== 0) fail('uninterrupted compile', ref);
  const out = join(tmp, 'out');
  const ck = `${out}.twlac-resume`;
  const killed = await twlac([MODEL, ...flags, '-o', out, '-q'], join(ck, `block-${String(killAfter - 1).padStart(4, '0')}.bin`));
  if (killed.signal !== 'SIGKILL') fail(`the compile to kill after block ${killAfter} ended by itself`, killed);
  const checkpointBytes = bytesOf(ck);
  const blocksKept = readdirSync(ck).filter((e) => /^block-\d{4}\.bin$/.test(e)).length;
  const resumed = await twlac([MODEL, ...flags, '-o', out, '--resume']);
  if (resumed.code !== 0) fail('resumed compile', resumed);
  const names = files(join(tmp, 'ref'));
  const identical = names.join() === files(out).join() && names.every((f) => readFileSync(join(tmp, 'ref', f)).equals(readFileSync(join(out, f))));
  const result = {
    ...resultHeader('resume', cpuDevice()),
    model: 'pydocs-llama-12m (6 blocks, fp32)',
    flags: flags.map((f) => (f === TRAIN ? 'train.txt' : f)).join(' '),
    uninterrupted: { seconds: +ref.seconds.toFixed(1), passSeconds: passSeconds(ref.stderr) },
    killed: { afterBlock: killAfter, blocksKept, secondsToKill: +killed.seconds.toFixed(1), checkpointBytes },
    resumed: { seconds: +resumed.seconds.toFixed(1), passSeconds: passSeconds(resumed.stderr), line: /resuming: .*/.exec(resumed.stderr)?.[0].replace(tmp, '<tmp>') },
    secondsSavedByResume: +(ref.seconds - resumed.seconds).toFixed(1),
    identical,
  };
  writeFileSync(join(REPO, 'bench/results/resume.json'), `${JSON.stringify(result, null, 1)}\n`);
  console.log(JSON.stringify(result, null, 1));
  if (!identical) process.exitCode = 1;
} finally {
  rmSync(tmp, { recursive: true, force: true });
}
