// `twlac run` / `twlac eval` beyond greedy onnxruntime, as child processes of the built bin:
// - sampling flags: the same seed gives the same text, and sampling is what changes it;
// - `--backend cuda`: out/kernels/cuda/README.md; one-line refusals without kernels, without
//   a GPU, for an architecture that was not generated, and for sampling; the token-id
//   plumbing (text → ids → program → ids → text, and the perplexity ids file) through a
//   stand-in program on a stand-in nvidia-smi; and the make/nvcc build of the real program
//   (compile only: this machine has nvcc but no GPU).
import { spawnSync } from 'node:child_process';
import { chmodSync, cpSync, existsSync, mkdirSync, mkdtempSync, readFileSync, rmSync, statSync, utimesSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { delimiter, dirname, join, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { saveModel } from '../../src/graph/onnx.ts';
import { makeTinyLlama } from '../../src/graph/synthetic-llama.ts';
import { compileToDir } from '../../src/compile.ts';
import { byteTokenizerJson } from '../../src/demo.ts';
import { buildCudaProgram } from '../../src/runtime/cuda/host.ts';
import { UserError } from '../../src/errors.ts';

const REPO = resolve(dirname(fileURLToPath(import.meta.url)), '../..');
const tmp = mkdtempSync(join(tmpdir(), 'twlac-backends-'));
const f = (...p: string[]) => join(tmp, ...p);
afterAll(() => rmSync(tmp, { recursive: true, force: true }));

function twlac(args: string[], env: Record<string, string> = {}) {
  const r = spawnSync(process.execPath, [join(REPO, 'bin/twlac.js'), ...args], { cwd: tmp, encoding: 'utf8', env: { ...process.env, TWLAC_DEBUG: '', ...env } });
  return { code: r.status, stdout: r.stdout, stderr: r.stderr };
}

function expectOneLine(r: ReturnType<typeof twlac>, ...mentions: (string | RegExp)[]): void {
  expect(r.code, r.stderr).toBe(2);
  expect(r.stdout).toBe('');
  const lines = r.stderr.split('\n').filter(Boolean);
  expect(lines, r.stderr).toHaveLength(1);
  expect(lines[0]).toMatch(/^twlac: error: /);
  for (const m of mentions) expect(lines[0]).toMatch(m);
}

/** A folder holding an executable `nvidia-smi` script, to put first on PATH. */
function fakeNvidiaSmi(name: string, script: string): Record<string, string> {
  const dir = f(name);
  mkdirSync(dir, { recursive: true });
  writeFileSync(join(dir, 'nvidia-smi'), `#!/bin/sh\n${script}\n`);
  chmodSync(join(dir, 'nvidia-smi'), 0o755);
  return { PATH: `${dir}${delimiter}${process.env.PATH}` };
}

const TEXT = 'the cat sat on the mat; the dog sat on the log. '.repeat(40);

beforeAll(async () => {
  // headDim 64 (the CUDA RoPE kernel's block is kvHeads × headDim / 2 threads, a warp multiple).
  mkdirSync(f('src'));
  saveModel(makeTinyLlama({ layers: 1, hidden: 128, heads: 2, kvHeads: 2, intermediate: 256, vocab: 256, seed: 6 }), f('src', 'model.onnx'));
  writeFileSync(f('src', 'tokenizer.json'), JSON.stringify(byteTokenizerJson()));
  writeFileSync(f('text.txt'), TEXT);
  await compileToDir(f('src', 'model.onnx'), f('cuda'), { weights: 'rtn-ternary' }, undefined, { tokenizer: f('src', 'tokenizer.json'), targets: [{ name: 'cuda', options: ['sm_80', 'sm_90a'] }] });
  await compileToDir(f('src', 'model.onnx'), f('plain'), { weights: 'rtn-ternary' }, undefined, { tokenizer: f('src', 'tokenizer.json') });
}, 120_000);

describe('twlac run: sampling', () => {
  const run = (...extra: string[]) => twlac(['run', f('plain'), '--prompt', 'the ', '--max-tokens', '24', ...extra]);
  it('is deterministic for a seed, differs across seeds, and greedy stays the default', () => {
    const a = run('--temperature', '1.5', '--top-p', '0.95', '--seed', '1');
    expect(a.stderr).toBe('');
    expect(run('--temperature', '1.5', '--top-p', '0.95', '--seed', '1').stdout).toBe(a.stdout);
    expect(run('--temperature', '1.5', '--top-p', '0.95', '--seed', '2').stdout).not.toBe(a.stdout);
    expect(run().stdout).toBe(run('--greedy').stdout);
    expect(run('--temperature', '0', '--seed', '5').stdout).toBe(run().stdout);
  });
  it('refuses contradictory or incomplete sampling flags in one line', () => {
    expectOneLine(run('--greedy', '--temperature', '0.7'), '--greedy', '--temperature');
    expectOneLine(run('--top-k', '5'), /top-k/, /temperature above 0/);
  });
});

describe('--target cuda: README', () => {
  it('writes kernels/cuda/README.md with build and run lines for each architecture, listed in the manifest', () => {
    const readme = readFileSync(f('cuda', 'kernels', 'cuda', 'README.md'), 'utf8');
    expect(readme).toContain('make ARCH=sm_80');
    expect(readme).toContain('twlac_cuda_sm_80, twlac_cuda_sm_90a');
    expect(readme).toContain('./twlac_cuda_sm_80 --weights ../.. --prompt');
    expect(readme).toContain('twlac run . --backend cuda');
    const m = JSON.parse(readFileSync(f('cuda', 'manifest.json'), 'utf8')) as { files: Record<string, number> };
    expect(m.files['kernels/cuda/README.md']).toBe(Buffer.byteLength(readme));
  });
});

describe('--backend cuda: refusals', () => {
  const noGpu = () => fakeNvidiaSmi('smi-none', 'echo "NVIDIA-SMI has failed because it could not communicate with the NVIDIA driver." >&2; exit 9');
  it('without a GPU, for run and eval', () => {
    const env = noGpu();
    expectOneLine(twlac(['run', f('cuda'), '--backend', 'cuda', '--prompt', 'x'], env), /needs an NVIDIA GPU/);
    expectOneLine(twlac(['eval', f('cuda'), '--backend', 'cuda', '--text', f('text.txt')], env), /needs an NVIDIA GPU/);
  });
  it('without generated CUDA kernels', () => {
    expectOneLine(twlac(['run', f('plain'), '--backend', 'cuda', '--prompt', 'x']), /no CUDA program/, /--target cuda/);
  });
  it('on a GPU whose architecture was not generated', () => {
    const env = fakeNvidiaSmi('smi-86', 'echo 8.6');
    expectOneLine(twlac(['run', f('cuda'), '--backend', 'cuda', '--prompt', 'x'], env), /sm_80, sm_90a/, /8\.6/, /--target cuda:sm_86/);
  });
  it('with sampling flags (the program decodes greedily)', () => {
    expectOneLine(twlac(['run', f('cuda'), '--backend', 'cuda', '--prompt', 'x', '--temperature', '0.8']), /greedily/);
  });
});

describe('--backend cuda: token ids in and out (stand-in program and GPU)', () => {
  // The stand-in checks its arguments like the real one, then answers from its input:
  // --prompt: token i = (sum of prompt ids + 7i) mod 128; --ppl: ppl = the ids file's sum.
  const program = `#!/usr/bin/env node
const fs = require('node:fs');
const a = process.argv.slice(2);
const arg = (k) => (a.includes(k) ? a[a.indexOf(k) + 1] : undefined);
if (fs.realpathSync(arg('--weights')) !== fs.realpathSync(${JSON.stringify(f('fake'))})) { console.error('twlac: wrong --weights ' + arg('--weights')); process.exit(1); }
if (arg('--prompt')) {
  const s = arg('--prompt').split(',').map(Number).reduce((x, y) => x + y, 0);
  const n = Number(arg('--max-tokens'));
  console.log(Array.from({ length: n }, (_, i) => (s + 7 * i) % 128).join(' '));
} else if (arg('--ppl')) {
  const b = fs.readFileSync(arg('--ppl'));
  let sum = 0;
  for (let i = 0; i < b.length; i += 4) sum += b.readInt32LE(i);
  console.log(JSON.stringify({ ppl: sum, tokens: b.length / 4, windows: Number(arg('--windows') ?? -1), seconds: 0 }));
} else process.exit(3);
`;
  beforeAll(() => {
    cpSync(f('cuda'), f('fake'), { recursive: true });
    const bin = f('fake', 'kernels', 'cuda', 'twlac_cuda_sm_90a');
    writeFileSync(bin, program);
    chmodSync(bin, 0o755);
    const later = new Date(Date.now() + 60_000);
    utimesSync(bin, later, later); // newer than its sources: no rebuild
  });
  const gpu = () => fakeNvidiaSmi('smi-90', 'echo 9.0');

  it('run: prompt text → ids → program → ids → text', () => {
    const r = twlac(['run', f('fake'), '--backend', 'cuda', '--prompt', 'Hi!', '--max-tokens', '5'], gpu());
    expect(r.stderr).toBe('');
    const s = [...Buffer.from('Hi!')].reduce((x, y) => x + y, 0);
    expect(r.stdout).toBe(`${String.fromCharCode(...Array.from({ length: 5 }, (_, i) => (s + 7 * i) % 128))}\n`);
  });

  it('eval: the text\'s ids as little-endian int32, and --max-windows', () => {
    const r = twlac(['eval', f('fake'), '--backend', 'cuda', '--text', f('text.txt'), '--max-windows', '3', '--json', '-q'], gpu());
    expect(r.stderr).toBe('');
    const ids = [...Buffer.from(TEXT)];
    expect(JSON.parse(r.stdout)).toEqual({ ppl: ids.reduce((x, y) => x + y, 0), tokens: ids.length, windows: 3 });
  });
});

describe('--backend cuda: building the program', () => {
  const haveNvcc = spawnSync('nvcc', ['--version']).status === 0;
  it.skipIf(!haveNvcc)('make builds twlac_cuda_<arch> with nvcc once, and not again while it is newer than its sources', () => {
    cpSync(f('cuda'), f('build'), { recursive: true });
    const dir = f('build', 'kernels', 'cuda');
    const bin = buildCudaProgram(dir, 'sm_80');
    expect(bin).toBe(join(dir, 'twlac_cuda_sm_80'));
    expect(readFileSync(bin).subarray(0, 4).toString('latin1')).toBe('\x7fELF');
    const built = statSync(bin).mtimeMs;
    expect(buildCudaProgram(dir, 'sm_80')).toBe(bin);
    expect(statSync(bin).mtimeMs).toBe(built);
  }, 300_000);
  it('refuses in one line when the program must be built and there is no nvcc', () => {
    cpSync(f('cuda'), f('no-nvcc'), { recursive: true });
    const dir = f('no-nvcc', 'kernels', 'cuda');
    const saved = process.env.NVCC;
    process.env.NVCC = f('no-such-nvcc');
    try {
      expect(() => buildCudaProgram(dir, 'sm_80')).toThrow(UserError);
      expect(() => buildCudaProgram(dir, 'sm_80')).toThrow(/needs nvcc/);
      expect(existsSync(join(dir, 'twlac_cuda_sm_80'))).toBe(false);
    } finally {
      if (saved === undefined) delete process.env.NVCC;
      else process.env.NVCC = saved;
    }
  });
});
