// `--resume` (issue 19): a compile killed with SIGKILL in the middle of the ternary pass continues
// from its checkpoint (<out>.twlac-resume/): the rotations and the finished blocks are restored,
// not fitted again, and out/ is byte for byte that of an uninterrupted compile (CPU path); so is
// a --refine --acts mp:4 compile killed in the block-wise refinement, in its end-to-end stage and
// after the activation precision was chosen. A checkpoint made from other options or by another
// build of twlac, or found without --resume, is refused in one line and left as it was; --resume
// with no checkpoint compiles from the start. Real compiles of a tiny 4-block model through
// bin/twlac.js, as child processes.
import { spawn, type ChildProcess } from 'node:child_process';
import { existsSync, mkdirSync, mkdtempSync, readFileSync, readdirSync, rmSync, statSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { dirname, join, relative, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { makeTinyLlama } from '../../src/graph/synthetic-llama.ts';
import { saveModel } from '../../src/graph/onnx.ts';
import { byteTokenizerJson } from '../../src/demo.ts';
import { wordText } from './word-text.ts';
import { codeDigest } from '../../src/util/code-digest.ts';
import { TWLAC_VERSION } from '../../src/artifact/build.ts';

const REPO_ROOT = resolve(dirname(fileURLToPath(import.meta.url)), '../..');
const BIN = join(REPO_ROOT, 'bin/twlac.js');
const BLOCKS = 4;

const tmp = mkdtempSync(join(tmpdir(), 'twlac-resume-'));
afterAll(() => rmSync(tmp, { recursive: true, force: true }));
const f = (...p: string[]) => join(tmp, ...p);
/** The full method (KOTMS, GPTQ, X-domain refit) on little calibration: a block's fit takes about a second. */
const COMPILE = [f('src', 'model.onnx'), '--calib', f('calib.txt'), '--calib-samples', '4', '--seq', '64'];

beforeAll(() => {
  mkdirSync(f('src'));
  saveModel(makeTinyLlama({ layers: BLOCKS, hidden: 64, heads: 4, kvHeads: 2, intermediate: 192, seed: 4 }), f('src', 'model.onnx'));
  writeFileSync(f('src', 'tokenizer.json'), JSON.stringify(byteTokenizerJson()));
  saveModel(makeTinyLlama({ layers: 2, hidden: 64, seed: 5 }), f('small.onnx'));
  writeFileSync(f('calib.txt'), wordText(3000));
  writeFileSync(f('eval.txt'), wordText(600, 11));
});

interface Run {
  code: number | null;
  signal: NodeJS.Signals | null;
  stderr: string;
}

function start(args: string[]): { child: ChildProcess; done: Promise<Run> } {
  const child = spawn(process.execPath, [BIN, ...args], { cwd: REPO_ROOT, env: { ...process.env, TWLAC_DEBUG: '' }, stdio: ['ignore', 'ignore', 'pipe'] });
  let stderr = '';
  child.stderr!.setEncoding('utf8').on('data', (d: string) => (stderr += d));
  const done = new Promise<Run>((res, rej) => {
    child.on('error', rej);
    child.on('close', (code, signal) => res({ code, signal, stderr }));
  });
  return { child, done };
}

const twlac = (args: string[]) => start(args).done;

/** Start a compile to `out` and SIGKILL it as soon as its checkpoint holds entry `entry`; returns the checkpoint's entries then, and what the compile printed. */
async function killedAt(out: string, entry: string, args = COMPILE): Promise<{ entries: string[]; stderr: string }> {
  const ck = `${out}.twlac-resume`;
  const { child, done } = start([...args, '-o', out]);
  let exited = false;
  void done.then(() => (exited = true));
  while (!existsSync(join(ck, entry)) && !exited) await new Promise((r) => setTimeout(r, 20));
  child.kill('SIGKILL');
  const r = await done;
  expect(r.signal, `the compile ended before its checkpoint held ${entry}: ${r.stderr}`).toBe('SIGKILL');
  expect(existsSync(out)).toBe(false);
  return { entries: readdirSync(ck).sort(), stderr: r.stderr };
}

function files(dir: string): string[] {
  const out: string[] = [];
  const walk = (d: string) => {
    for (const e of readdirSync(d, { withFileTypes: true })) {
      if (e.isDirectory()) walk(join(d, e.name));
      else out.push(relative(dir, join(d, e.name)));
    }
  };
  walk(dir);
  return out.sort();
}

function expectSameFiles(a: string, b: string): void {
  const names = files(a);
  expect(files(b)).toEqual(names);
  for (const n of ['model.onnx', 'weights.bin', 'manifest.json', 'report.md']) expect(names).toContain(n);
  for (const n of names) {
    expect(statSync(join(b, n)).size, n).toBe(statSync(join(a, n)).size);
    expect(readFileSync(join(b, n)).equals(readFileSync(join(a, n))), `${n} differs`).toBe(true);
  }
}

describe('--resume', () => {
  it('continues a compile killed mid-block from its last finished block, and writes what an uninterrupted compile writes', async () => {
    const reference = twlac([...COMPILE, '-o', f('ref'), '-q']);
    const out = f('out');
    const ck = `${out}.twlac-resume`;
    const { entries } = await killedAt(out, 'block-0000.bin');
    const blocks = entries.filter((e) => /^block-\d{4}\.bin$/.test(e)).length;
    expect(blocks).toBeGreaterThanOrEqual(1);
    expect(blocks).toBeLessThan(BLOCKS);
    expect(entries).toContain('key.json');
    expect(entries.filter((e) => /^site-\d{4}\.bin$/.test(e))).toHaveLength(4 * BLOCKS);

    const r = await twlac([...COMPILE, '-o', out, '--resume']);
    expect(r.code, r.stderr).toBe(0);
    expect(r.stderr).toContain(`resuming: rotations restored, blocks 1-${blocks} of ${BLOCKS} restored (${ck})`);
    // The restored blocks are run forward, not fitted again; the next one is.
    for (let b = 1; b <= blocks; b++) expect(r.stderr).not.toContain(`block ${b}/${BLOCKS}: ternary fit`);
    expect(r.stderr).toContain(`block ${blocks + 1}/${BLOCKS}: ternary fit`);
    expect(existsSync(ck), 'the checkpoint is removed once the compile succeeded').toBe(false);

    const ref = await reference;
    expect(ref.code, ref.stderr).toBe(0);
    expect(existsSync(f('ref.twlac-resume'))).toBe(false);
    expectSameFiles(f('ref'), out);
  }, 600_000);

  it('continues a --refine --acts mp:4 compile killed in the block-wise refinement, in its end-to-end stage and after the activation precision, and writes what an uninterrupted compile writes', async () => {
    // Calibration pieces of the refinement's 128 tokens; --eval keeps the compile busy for a while
    // after the activation precision was kept, so that the kill lands before out/ is written.
    const REFINE = [
      ...[f('src', 'model.onnx'), '--calib', f('calib.txt'), '--calib-samples', '2', '--seq', '128'],
      ...['--refine', '--refine-steps', '6', '--refine-e2e-steps', '12', '--acts', 'mp:4', '--eval', f('eval.txt'), '--eval-windows', '2'],
    ];
    const reference = twlac([...REFINE, '-o', f('refine-ref'), '-q']);
    const out = f('refined');
    const ck = `${out}.twlac-resume`;

    const first = await killedAt(out, 'refine-block-0001.bin', REFINE);
    const refined = first.entries.filter((e) => /^refine-block-\d{4}\.bin$/.test(e)).length;
    expect(refined).toBeGreaterThanOrEqual(2);
    expect(refined).toBeLessThan(BLOCKS);
    expect(first.entries).not.toContain('refine-e2e.bin');

    // Resumed, it trains only the blocks after those kept; killed again once the end-to-end stage kept a step.
    const second = await killedAt(out, 'refine-e2e.bin', [...REFINE, '--resume']);
    expect(second.stderr).toContain(`resuming: rotations restored, blocks 1-${BLOCKS} of ${BLOCKS} restored, refinement of blocks 1-${refined} restored (${ck})`);
    for (let b = 0; b < refined; b++) expect(second.stderr).not.toContain(`block ${b}: refine`);
    expect(second.stderr).toContain(`block ${refined}: refine`);

    // Resumed in the middle of the end-to-end stage; killed again once the activation precision was kept.
    const third = await killedAt(out, 'act-precision.bin', [...REFINE, '--resume']);
    const at = /refinement of blocks 1-4 restored, end-to-end refinement restored at step (\d+) of 12 \(/.exec(third.stderr);
    expect(at, third.stderr).not.toBeNull();
    expect(Number(at![1])).toBeGreaterThanOrEqual(1);
    expect(Number(at![1])).toBeLessThan(12);
    expect(third.stderr).not.toContain(`block ${BLOCKS - 1}: refine`);

    // Resumed with everything up to the activation precision kept: none of it runs again.
    const last = await twlac([...REFINE, '-o', out, '--resume']);
    expect(last.code, last.stderr).toBe(0);
    expect(last.stderr).toContain(`refinement of blocks 1-4 restored, end-to-end refinement restored, activation precision restored (${ck})`);
    for (const step of ['refine end to end', 'clip search', 'ILA-AMP sensitivities']) expect(last.stderr).not.toContain(step);
    expect(existsSync(ck)).toBe(false);

    const ref = await reference;
    expect(ref.code, ref.stderr).toBe(0);
    expectSameFiles(f('refine-ref'), out);
  }, 600_000);

  it('refuses a checkpoint made with other options, and one found without --resume, in one line, keeping it', async () => {
    const out = f('other');
    const ck = `${out}.twlac-resume`;
    const { entries } = await killedAt(out, 'site-0000.bin');
    const keyBefore = readFileSync(join(ck, 'key.json'));

    const other = await twlac([...COMPILE, '--format', 'tq2_g128', '-o', out, '--resume']);
    expect(other.code).toBe(2);
    expect(other.stderr.trim().split('\n').at(-1)).toBe(
      `twlac: error: checkpoint ${ck} is from another compile (options differ: format): resume with the inputs and flags it was made with, or remove it to start over`,
    );
    // The same version of twlac from other code (another commit): its checkpoint is refused too.
    // The bin's key holds the digest of dist/, the tree it runs from.
    const key = JSON.parse(keyBefore.toString('utf8')) as { code: string };
    expect(key.code).toBe(codeDigest(join(REPO_ROOT, 'dist')));
    writeFileSync(join(ck, 'key.json'), JSON.stringify({ ...key, code: '0'.repeat(64) }));
    const build = await twlac([...COMPILE, '-o', out, '--resume']);
    expect(build.code).toBe(2);
    expect(build.stderr.trim().split('\n').at(-1)).toBe(
      `twlac: error: checkpoint ${ck} is from another compile (made by another build of twlac ${TWLAC_VERSION}: code 000000000000, this is ${key.code.slice(0, 12)}): resume with the inputs and flags it was made with, or remove it to start over`,
    );
    writeFileSync(join(ck, 'key.json'), keyBefore);
    const fresh = await twlac([...COMPILE, '-o', out, '-q']);
    expect(fresh.code).toBe(2);
    expect(fresh.stderr).toBe(`twlac: error: ${ck} holds the checkpoint of an interrupted compile: pass --resume to continue it, or remove the folder to start over\n`);
    const calib = await twlac([...COMPILE.slice(0, -4), '--calib-samples', '3', '--seq', '64', '-o', out, '-q', '--resume']);
    expect(calib.code).toBe(2);
    expect(calib.stderr).toMatch(/^twlac: error: checkpoint .* is from another compile \(the calibration data differs: .*\n$/);

    expect(existsSync(out)).toBe(false);
    expect(readdirSync(ck).sort()).toEqual(entries);
    expect(readFileSync(join(ck, 'key.json')).equals(keyBefore)).toBe(true);
  }, 600_000);

  it('with no checkpoint, compiles from the start and writes what a compile without --resume writes', async () => {
    const small = [f('small.onnx'), '--tokenizer', f('src', 'tokenizer.json'), '--calib', f('calib.txt'), '--calib-samples', '2', '--seq', '32', '--no-rotate'];
    const [plain, resumed] = await Promise.all([twlac([...small, '-o', f('plain'), '-q']), twlac([...small, '-o', f('resumed'), '--resume'])]);
    expect(plain.code, plain.stderr).toBe(0);
    expect(resumed.code, resumed.stderr).toBe(0);
    expect(resumed.stderr).toContain(`resuming: nothing finished in ${f('resumed.twlac-resume')}, compiling from the start`);
    expect(existsSync(f('resumed.twlac-resume'))).toBe(false);
    expectSameFiles(f('plain'), f('resumed'));
  }, 300_000);
});
