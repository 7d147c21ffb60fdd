// What --resume saves: the shared fixture compiled with the full TWLA method three times
// through bin/twlac.js, one after another: (1) uninterrupted; (2) killed with SIGKILL as soon
// as its checkpoint holds block k (1-based; the kill lands while block k+1 is being fitted);
// (3) that compile continued with --resume. Wall seconds of each, the checkpoint's size at the
// kill, and whether out/ of (3) is byte for byte that of (1). With --refine, the compiles also
// refine (block-wise, then --refine-e2e-steps end to end) and choose ILA-AMP mp:4 activations,
// and the kill comes once the end-to-end stage kept step --kill-at-e2e-step.
//
//   npm run build && npm run bench:resume [-- --kill-after 3 --samples 16 --seq 128]
//                                         writes bench/results/resume.json
//   npm run build && npm run bench:resume -- --refine [--e2e-steps 16 --kill-at-e2e-step 8]
//                                         writes bench/results/resume-refine.json
import { spawn } from 'node:child_process';
import { existsSync, mkdtempSync, readFileSync, readdirSync, rmSync, statSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { dirname, join, relative, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';
import { parseArgs } from 'node:util';
import { deserialize } from 'node:v8';
import { cpuDevice, resultHeader } from './result-header.ts';

const REPO = resolve(dirname(fileURLToPath(import.meta.url)), '..');
const MODEL = resolve(REPO, '../shared/models/pydocs-llama-12m/model.onnx');
const TRAIN = resolve(REPO, '../shared/data/pydocs/train.txt');
const BIN = join(REPO, 'bin/twlac.js');

const { values } = parseArgs({
  options: {
    'kill-after': { type: 'string', default: '3' },
    samples: { type: 'string', default: '16' },
    seq: { type: 'string', default: '128' },
    refine: { type: 'boolean', default: false },
    'e2e-steps': { type: 'string', default: '16' },
    'kill-at-e2e-step': { type: 'string', default: '8' },
  },
});
const killAfter = Number(values['kill-after']);
const e2eSteps = Number(values['e2e-steps']);
const killAtE2eStep = Number(values['kill-at-e2e-step']);
const flags = [
  ...['--weights', 'twla', '--calib', TRAIN, '--calib-samples', values.samples!, '--seq', values.seq!, '--seed', '0'],
  ...(values.refine ? ['--refine', '--refine-e2e-steps', String(e2eSteps), '--acts', 'mp:4'] : []),
];

/** Whether the end-to-end refinement's commit entry (passes/resume.ts) names a step ≥ `step`; read with the compiler's own checkpoint reader. */
function e2eReached(ck: string, step: number): boolean {
  const mark = join(ck, 'refine-e2e.bin');
  if (!existsSync(mark)) return false;
  try {
    return (deserialize(readFileSync(mark)) as { step: number }).step >= step;
  } catch {
    return false;
  }
}

interface Run {
  seconds: number;
  code: number | null;
  signal: NodeJS.Signals | null;
  stderr: string;
}

/** Run twlac; with `killWhen`, SIGKILL it as soon as that holds. */
function twlac(args: string[], killWhen?: () => boolean): Promise<Run> {
  const t0 = performance.now();
  const child = spawn(process.execPath, [BIN, ...args], { cwd: REPO, stdio: ['ignore', 'ignore', 'pipe'] });
  let stderr = '';
  child.stderr.setEncoding('utf8').on('data', (d: string) => (stderr += d));
  const poll = killWhen ? setInterval(() => killWhen() && child.kill('SIGKILL'), 20) : undefined;
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
  const killAt = values.refine ? () => e2eReached(ck, killAtE2eStep) : () => existsSync(join(ck, `block-${String(killAfter - 1).padStart(4, '0')}.bin`));
  const killed = await twlac([MODEL, ...flags, '-o', out, '-q'], killAt);
  if (killed.signal !== 'SIGKILL') fail(`the compile to kill ${values.refine ? `at end-to-end step ${killAtE2eStep}` : `after block ${killAfter}`} ended by itself`, killed);
  const checkpointBytes = bytesOf(ck);
  const refineBytes = files(ck).filter((f) => f.startsWith('refine-')).reduce((a, f) => a + statSync(join(ck, f)).size, 0);
  const blocksKept = readdirSync(ck).filter((e) => /^block-\d{4}\.bin$/.test(e)).length;
  const resumed = await twlac([MODEL, ...flags, '-o', out, '--resume']);
  if (resumed.code !== 0) fail('resumed compile', resumed);
  const names = files(join(tmp, 'ref'));
  const identical = names.join() === files(out).join() && names.every((f) => readFileSync(join(tmp, 'ref', f)).equals(readFileSync(join(out, f))));
  const result = {
    ...resultHeader(values.refine ? 'resume-refine' : 'resume', cpuDevice()),
    model: 'pydocs-llama-12m (6 blocks, fp32)',
    flags: flags.map((f) => (f === TRAIN ? 'train.txt' : f)).join(' '),
    uninterrupted: { seconds: +ref.seconds.toFixed(1), passSeconds: passSeconds(ref.stderr) },
    killed: { ...(values.refine ? { atE2eStep: killAtE2eStep, of: e2eSteps } : { afterBlock: killAfter, blocksKept }), secondsToKill: +killed.seconds.toFixed(1), checkpointBytes, ...(values.refine ? { refineBytes } : {}) },
    resumed: { seconds: +resumed.seconds.toFixed(1), passSeconds: passSeconds(resumed.stderr), line: /resuming: .*/.exec(resumed.stderr)?.[0].replace(tmp, '<tmp>') },
    secondsSavedByResume: +(ref.seconds - resumed.seconds).toFixed(1),
    identical,
  };
  writeFileSync(join(REPO, `bench/results/${values.refine ? 'resume-refine' : 'resume'}.json`), `${JSON.stringify(result, null, 1)}\n`);
  console.log(JSON.stringify(result, null, 1));
  if (!identical) process.exitCode = 1;
} finally {
  rmSync(tmp, { recursive: true, force: true });
}
