// `twlac kernels`: standalone kernels with no model. Checked here:
// - the CLI writes the kernels, a harness, manifest.json and check cases whose expected output
//   is W·x from the format's reference decoder (recomputed from the case bytes);
// - CUDA: the kernel is the one the model runtime takes at one token, and the harness
//   compiles with nvcc (no GPU here, so it is not run);
// - WGSL: the harness (twlac/webgpu's checkWgslKernels) passes every kernel on Dawn, and fails
//   a case whose weights were altered;
// - bad requests: one line, non-zero exit, no output folder.
import { spawnSync } from 'node:child_process';
import { existsSync, mkdirSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { dirname, join, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';
import { afterAll, describe, expect, it } from 'vitest';
import { CODE_PACKINGS, decodeTernary, groupsPerRow, parseFormatId } from '../../src/formats/ternary.ts';
import { halfToFloat } from '../../src/graph/tensor.ts';
import { decodeKernel } from '../../src/codegen/cuda/standalone.ts';
import { checkWgslKernels } from '../../src/runtime/webgpu/kernel-check.ts';
import { testDevice } from './wgsl-harness.ts';

const REPO = resolve(dirname(fileURLToPath(import.meta.url)), '../..');
const tmp = mkdtempSync(join(tmpdir(), 'twlac-kernels-'));
const f = (...p: string[]) => join(tmp, ...p);
afterAll(() => rmSync(tmp, { recursive: true, force: true }));

function twlac(args: string[]) {
  const r = spawnSync(process.execPath, [join(REPO, 'bin/twlac.js'), 'kernels', ...args], { cwd: tmp, encoding: 'utf8', env: { ...process.env, TWLAC_DEBUG: '' } });
  return { code: r.status, stdout: r.stdout, stderr: r.stderr };
}

interface Manifest {
  kind: string;
  target: string;
  format: string;
  harness: { build?: string; run: string };
  kernels: { name: string; kind: string; n: number; k: number; t: number; case: string; file?: string }[];
}
const manifest = (dir: string) => JSON.parse(readFileSync(join(dir, 'manifest.json'), 'utf8')) as Manifest;

/** y = W·x recomputed from a CUDA case file's own bytes with the reference decoder. */
function expectCaseConsistent(path: string, format: string, n: number, k: number, t: number): void {
  const fmt = parseFormatId(format);
  const b = readFileSync(path);
  const ng = groupsPerRow(fmt, k);
  const codeBytes = n * ng * CODE_PACKINGS[fmt.packing].bytesPerGroup(fmt.group);
  const sc = n * ng * 2;
  const sh = fmt.shift ? sc : 0;
  const u16 = (off: number, len: number) => new Uint16Array(b.buffer.slice(b.byteOffset + off, b.byteOffset + off + len));
  const w = decodeTernary({ format: fmt, rows: n, cols: k, codes: new Uint8Array(b.subarray(0, codeBytes)), scales: u16(codeBytes, sc), shifts: fmt.shift ? u16(codeBytes + sc, sh) : undefined });
  const x = u16(codeBytes + sc + sh, t * k * 2);
  const y = new Float64Array(b.buffer.slice(b.byteOffset + codeBytes + sc + sh + t * k * 2));
  expect(y.length).toBe(t * n);
  for (let m = 0; m < t; m++) {
    for (let r = 0; r < n; r++) {
      let s = 0;
      for (let c = 0; c < k; c++) s += w[r * k + c] * halfToFloat(x[m * k + c]);
      expect(y[m * n + r]).toBe(s);
    }
  }
  expect(Math.max(...y.map(Math.abs))).toBeGreaterThan(0);
}

describe('twlac kernels --target cuda', () => {
  it('writes the runtime decode kernels, cases from the reference decoder, a harness and a manifest', () => {
    const r = twlac(['--target', 'cuda:sm_90a', '--format', 'tq2_g128', '--shapes', '256x512,300x1000', '-o', f('cuda')]);
    expect(r.code, r.stderr).toBe(0);
    expect(r.stdout).toBe('');
    const m = manifest(f('cuda'));
    expect(m).toMatchObject({ kind: 'twlac-kernels', target: 'cuda:sm_90a', format: 'tq2_g128', harness: { build: 'make', run: './twlac_kernels_harness' } });
    const fmt = parseFormatId('tq2_g128');
    expect(m.kernels.map((k) => [k.name, k.kind])).toEqual(
      [[256, 512], [300, 1000]].map(([n, k]) => {
        const d = decodeKernel({ format: fmt, n, k, m: 1, arch: 'sm_90a' });
        return [d.kernel.name, d.kind];
      }),
    );
    expect(m.kernels.map((k) => k.kind)).toEqual(['stream', 'staged']); // K = 1000 is not a multiple of 16
    const header = readFileSync(f('cuda', 'twlac_kernels.cuh'), 'utf8');
    for (const k of m.kernels) {
      expect(header).toContain(`static void launch_${k.name}(`);
      expect(header).toContain(`{"${k.name}", "${k.case}", 1, ${k.n}, ${k.k}, 1, 128, 1, launch_${k.name}}`);
      expectCaseConsistent(f('cuda', k.case), 'tq2_g128', k.n, k.k, k.t);
    }
  });

  it('takes the staged GEMV where the streaming one does not apply (trit5 codes)', () => {
    const r = twlac(['--target', 'cuda:sm_80', '--format', 'tq1_g128_lat', '--shapes', '128x384', '-o', f('cuda-tq1')]);
    expect(r.code, r.stderr).toBe(0);
    expect(manifest(f('cuda-tq1')).kernels.map((k) => k.kind)).toEqual(['staged']);
    expectCaseConsistent(f('cuda-tq1', 'case_0.bin'), 'tq1_g128_lat', 128, 384, 1);
  });

  const haveNvcc = spawnSync('nvcc', ['--version']).status === 0;
  it.skipIf(!haveNvcc)('the harness compiles with nvcc (make)', () => {
    const r = spawnSync('make', [], { cwd: f('cuda'), encoding: 'utf8' });
    expect(r.status, r.stderr).toBe(0);
    expect(readFileSync(f('cuda', 'twlac_kernels_harness')).subarray(0, 4).toString('latin1')).toBe('\x7fELF');
  }, 300_000);
});

const { skip } = await testDevice();

describe.skipIf(!!skip)('twlac kernels --target wgsl', () => {
  it('writes gemv and gemm kernels per shape that pass their checks on WebGPU; an altered case fails', async () => {
    const r = twlac(['--target', 'wgsl', '--format', 'tq1_g128', '--shapes', '256x512,100x300', '-o', f('wgsl')]);
    expect(r.code, r.stderr).toBe(0);
    const m = manifest(f('wgsl'));
    expect(m.harness.run).toBe('node harness.mjs');
    expect(m.kernels.map((k) => `${k.kind} ${k.n}x${k.k} t${k.t}`)).toEqual(['gemv 256x512 t1', 'gemm 256x512 t8', 'gemv 100x300 t1', 'gemm 100x300 t8']);
    const res = await checkWgslKernels(f('wgsl'));
    expect(res.failures).toBe(0);
    for (const k of res.kernels) expect(k.relL2).toBeLessThan(1e-4);
    // One code byte changed: the harness must notice.
    const bin = readFileSync(f('wgsl', 'gemv_1.bin'));
    bin[5] ^= 0x55;
    writeFileSync(f('wgsl', 'gemv_1.bin'), bin);
    const bad = await checkWgslKernels(f('wgsl'));
    expect(bad.kernels.map((k) => k.ok)).toEqual([true, true, false, true]);
  });

  it('harness.mjs runs from a folder where twlac resolves', () => {
    // Inside the repository, `twlac/webgpu` resolves to this package (its own exports).
    const dir = join(REPO, 'tmp', `kernels-harness-${process.pid}`);
    mkdirSync(dir, { recursive: true });
    try {
      const r = twlac(['--target', 'wgsl', '--format', 'tq2_g128', '--shapes', '64x256', '-o', join(dir, 'k')]);
      expect(r.code, r.stderr).toBe(0);
      const h = spawnSync(process.execPath, [join(dir, 'k', 'harness.mjs')], { encoding: 'utf8' });
      expect(h.status, h.stderr).toBe(0);
      expect(JSON.parse(h.stdout)).toMatchObject({ failures: 0 });
    } finally {
      rmSync(dir, { recursive: true, force: true });
    }
  });
});

describe('twlac kernels: bad requests', () => {
  const cases: [string, string[], RegExp][] = [
    ['no such target', ['--target', 'metal', '--shapes', '64x64'], /unknown --target 'metal'/],
    ['two CUDA architectures', ['--target', 'cuda:sm_80,sm_90a', '--shapes', '64x64'], /one architecture/],
    ['an unknown architecture', ['--target', 'cuda:sm_1', '--shapes', '64x64'], /sm_1/],
    ['a shape that is not NxK', ['--target', 'wgsl', '--shapes', '64x64,12'], /shape '12'/],
    ['an unknown format', ['--target', 'wgsl', '--format', 'q4_0', '--shapes', '64x64'], /--format/],
  ];
  cases.forEach(([what, args, msg], i) => {
    it(what, () => {
      const out = f(`bad-${i}`);
      const r = twlac([...args, '-o', out]);
      expect(r.code).not.toBe(0);
      expect(r.stdout).toBe('');
      const lines = r.stderr.split('\n').filter(Boolean);
      expect(lines, r.stderr).toHaveLength(1);
      expect(lines[0]).toMatch(/^twlac: error: /);
      expect(lines[0]).toMatch(msg);
      expect(existsSync(out)).toBe(false);
    });
  });
});

