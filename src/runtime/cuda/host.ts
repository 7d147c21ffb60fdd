// Running the generated CUDA host program (out/kernels/cuda, `--target cuda`) from Node:
// find the GPU's architecture with nvidia-smi, build the program for it with make if it is
// missing or older than its sources, then run it with token ids in and out (`--prompt`
// greedy decode, `--ppl` perplexity over 256-token windows). Each missing piece (no
// kernels, no GPU, an architecture that was not generated, no nvcc) is refused with one line.
import { spawnSync } from 'node:child_process';
import { existsSync, mkdtempSync, readFileSync, rmSync, statSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { UserError } from '../../errors.ts';
import { CUDA_ARCHS, type CudaArch } from '../../codegen/cuda/arch.ts';

/** The CUDA target folder of a twlac output directory. */
function cudaTargetDir(outDir: string): string {
  const dir = join(outDir, 'kernels', 'cuda');
  if (!existsSync(join(dir, 'Makefile'))) throw new UserError(`${outDir} has no CUDA program (kernels/cuda/Makefile): compile with --target cuda`);
  return dir;
}

/** Architectures the Makefile of a CUDA target folder builds (its `ARCHS :=` line). */
function emittedArchs(dir: string): CudaArch[] {
  const make = readFileSync(join(dir, 'Makefile'), 'utf8');
  const line = /^ARCHS := (.*)$/m.exec(make);
  return (line?.[1].split(/\s+/).filter((a) => a in CUDA_ARCHS) ?? []) as CudaArch[];
}

/** Compute capability × 10 of GPU 0, from nvidia-smi; refuses when there is no usable NVIDIA GPU. */
function gpuComputeCapability(): number {
  const r = spawnSync('nvidia-smi', ['--query-gpu=compute_cap', '--format=csv,noheader'], { encoding: 'utf8' });
  const first = r.status === 0 ? r.stdout.trim().split('\n')[0] : '';
  if (!/^\d+\.\d+$/.test(first ?? '')) throw new UserError('--backend cuda needs an NVIDIA GPU and its driver: nvidia-smi reports none on this machine');
  const [major, minor] = first.split('.').map(Number);
  return major * 10 + minor;
}

/** The generated architecture that runs on a GPU of compute capability `cc` (exact match). */
function archFor(cc: number, archs: readonly CudaArch[]): CudaArch {
  const a = archs.find((x) => CUDA_ARCHS[x].cc === cc);
  if (!a) throw new UserError(`the CUDA program was generated for ${archs.join(', ')}; this GPU is compute capability ${Math.floor(cc / 10)}.${cc % 10}: compile again with --target cuda:sm_${cc}${cc >= 90 && cc < 100 ? 'a' : ''}`);
  return a;
}

/** The host program for `arch`, built with make (nvcc) unless it is newer than its sources. */
export function buildCudaProgram(dir: string, arch: CudaArch): string {
  const bin = join(dir, `twlac_cuda_${arch}`);
  const sources = ['Makefile', 'twlac_cuda_main.cu', join(arch, 'twlac_model.cuh')].map((f) => join(dir, f)).filter((f) => existsSync(f));
  const newest = Math.max(...sources.map((f) => statSync(f).mtimeMs));
  if (existsSync(bin) && statSync(bin).mtimeMs >= newest) return bin;
  const nvcc = process.env.NVCC ?? 'nvcc';
  if (spawnSync(nvcc, ['--version'], { stdio: 'ignore' }).status !== 0) throw new UserError(`building the CUDA program in ${dir} needs nvcc (the CUDA toolkit) on PATH`);
  const r = spawnSync('make', [`ARCH=${arch}`], { cwd: dir, encoding: 'utf8' });
  writeFileSync(join(dir, 'build.log'), `${r.stdout ?? ''}${r.stderr ?? ''}`);
  if (r.status !== 0 || !existsSync(bin)) throw new UserError(`make ARCH=${arch} failed in ${dir} (see ${join(dir, 'build.log')})`);
  return bin;
}

/** The host program of a twlac output directory on this machine's GPU, built if needed. */
export class CudaProgram {
  private constructor(
    readonly outDir: string,
    readonly bin: string,
  ) {}

  static open(outDir: string): CudaProgram {
    const dir = cudaTargetDir(outDir);
    const arch = archFor(gpuComputeCapability(), emittedArchs(dir));
    return new CudaProgram(outDir, buildCudaProgram(dir, arch));
  }

  private run(args: string[]): string {
    const r = spawnSync(this.bin, ['--weights', this.outDir, ...args], { encoding: 'utf8', maxBuffer: 1 << 26 });
    if (r.status !== 0) {
      const why = (r.stderr ?? '').trim().split('\n').filter(Boolean).pop() ?? `exit ${r.status ?? r.signal}`;
      throw new UserError(`CUDA program ${this.bin}: ${why}`);
    }
    return r.stdout;
  }

  /** Greedy decode on the GPU: the `maxTokens` ids after `prompt`. */
  generate(prompt: ArrayLike<number>, maxTokens: number): number[] {
    const out = this.run(['--prompt', Array.from(prompt).join(','), '--max-tokens', String(maxTokens)]);
    const ids = out.trim().split(/\s+/).filter(Boolean).map(Number);
    if (ids.length !== maxTokens || ids.some((x) => !Number.isInteger(x))) throw new UserError(`CUDA program ${this.bin}: expected ${maxTokens} token ids, got '${out.trim().slice(0, 80)}'`);
    return ids;
  }

  /** Perplexity over consecutive 256-token windows of `ids` (at most `windows` of them). */
  perplexity(ids: Int32Array, windows?: number): { ppl: number; tokens: number; windows: number } {
    const tmp = mkdtempSync(join(tmpdir(), 'twlac-cuda-'));
    try {
      const file = join(tmp, 'ids.bin');
      const le = Buffer.alloc(ids.length * 4);
      ids.forEach((id, i) => le.writeInt32LE(id, i * 4));
      writeFileSync(file, le);
      const out = this.run(['--ppl', file, ...(windows ? ['--windows', String(windows)] : [])]);
      const r = JSON.parse(out.trim().split('\n').pop() ?? '') as { ppl: number; tokens: number; windows: number };
      return { ppl: r.ppl, tokens: r.tokens, windows: r.windows };
    } finally {
      rmSync(tmp, { recursive: true, force: true });
    }
  }
}
