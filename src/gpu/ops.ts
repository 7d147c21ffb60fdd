// The compile's heavy linear algebra on a GpuDevice, all through the one GEMM kernel
// (gemm-kernel.ts): Gram accumulation H += XᵀX over calibration chunks, a matmul for
// calibration forwards, and GPTQ's lazy batch update of the columns after each block.
// Everything is fp32 on the device; the host keeps float64 (src/quant/gptq.ts, capture.ts).
import type { GramAccumulator } from '../calib/capture.ts';
import type { RestUpdate } from '../quant/gptq.ts';
import type { GpuDevice, GpuOp } from './device.ts';
import { gemmKernel, type GemmUniform, type GemmVariant } from './gemm-kernel.ts';

const kernels = new Map<string, ReturnType<typeof gemmKernel>>();

/** The dispatch of C = β·C + α·op(A)·op(B) on buffers (a, b, c); see gemm-kernel.ts. */
export function gemmOp(v: GemmVariant, bufs: [number, number, number], u: Partial<GemmUniform> & Pick<GemmUniform, 'm' | 'n' | 'k' | 'lda' | 'ldb' | 'ldc'>): GpuOp {
  const key = `${v.transA}${v.transB}${v.upper}`;
  let k = kernels.get(key);
  if (!k) kernels.set(key, (k = gemmKernel(v)));
  const full: GemmUniform = { offA: 0, offB: 0, offC: 0, alpha: 1, beta: 0, pad: 0, ...u };
  return { op: 'dispatch', key: k.cacheKey, code: k.source(), buffers: bufs, uniform: k.uniform(full), groups: k.dispatch(full.m, full.n) };
}

/**
 * Σ x xᵀ over token rows, accumulated on the device in fp32 (one upper-triangle GEMM per
 * chunk); `read` returns the full symmetric matrix in float64.
 */
export class GpuGram implements GramAccumulator {
  private readonly acc: number;
  private rows = 0;
  private staging = 0;
  private stagingRows = 0;
  tokens = 0;
  constructor(
    private readonly dev: GpuDevice,
    readonly width: number,
  ) {
    this.acc = dev.alloc(width * width * 4);
    dev.run([{ op: 'clear', id: this.acc, offset: 0, bytes: Math.ceil((width * width * 4) / 16) * 16 }]);
  }

  /** Add rows [tokens × width] (row-major). */
  add(x: Float32Array, tokens: number): void {
    const w = this.width;
    if (x.length < tokens * w) throw new Error(`GpuGram.add: ${x.length} values for ${tokens}×${w}`);
    if (tokens > this.stagingRows) {
      if (this.staging) this.dev.free(this.staging);
      this.staging = this.dev.alloc(tokens * w * 4);
      this.stagingRows = tokens;
    }
    this.dev.run([
      { op: 'write', id: this.staging, offset: 0, data: x.subarray(0, tokens * w) },
      gemmOp({ transA: true, transB: false, upper: true }, [this.staging, this.staging, this.acc], { m: w, n: w, k: tokens, lda: w, ldb: w, ldc: w, beta: 1 }),
    ]);
    this.tokens += tokens;
    this.rows++;
  }

  /** The accumulated Gram matrix, symmetric, float64. */
  read(): Float64Array {
    const w = this.width;
    const g32 = this.dev.readF32(this.acc, 0, w * w);
    const g = new Float64Array(w * w);
    for (let i = 0; i < w; i++) {
      for (let j = i; j < w; j++) {
        const v = g32[i * w + j];
        g[i * w + j] = v;
        g[j * w + i] = v;
      }
    }
    return g;
  }

  release(): void {
    this.dev.free(...[this.acc, this.staging].filter((id) => id !== 0));
  }
}

/** Y = X·Wᵀ (W [n × k], `transB`) or X·W (W [k × n]); X [m × k]; all row-major fp32. */
export function gpuMatmul(dev: GpuDevice, x: Float32Array, w: Float32Array, m: number, k: number, n: number, transB: boolean): Float32Array {
  const [a, b, c] = [dev.alloc(m * k * 4), dev.alloc(k * n * 4), dev.alloc(m * n * 4)];
  try {
    dev.run([
      { op: 'write', id: a, offset: 0, data: x },
      { op: 'write', id: b, offset: 0, data: w },
      gemmOp({ transA: false, transB, upper: false }, [a, b, c], { m, n, k, lda: k, ldb: transB ? k : n, ldc: n }),
    ]);
    return dev.readF32(c, 0, m * n);
  } finally {
    dev.free(a, b, c);
  }
}

/**
 * GPTQ's lazy batch update on the device: the working matrix Wᵀ [K × N] and U [K × K] live in
 * fp32 buffers; after each block the columns after it get Wᵀ[c1:] −= U[blk, c1:]ᵀ · E in one
 * GEMM, and only the next block's columns come back to the host.
 */
export class GpuRestUpdate implements RestUpdate {
  private wt = 0;
  private u = 0;
  private err = 0;
  private rows = 0;
  private cols = 0;
  constructor(private readonly dev: GpuDevice) {}

  begin(wt: Float64Array, u: Float64Array, rows: number, cols: number): void {
    this.release();
    this.rows = rows;
    this.cols = cols;
    this.wt = this.dev.alloc(rows * cols * 4);
    this.u = this.dev.alloc(cols * cols * 4);
    this.dev.run([
      { op: 'write', id: this.wt, offset: 0, data: Float32Array.from(wt) },
      { op: 'write', id: this.u, offset: 0, data: Float32Array.from(u) },
    ]);
  }

  apply(c0: number, width: number, err: Float64Array, wt: Float64Array, next: number): void {
    const N = this.rows, K = this.cols, c1 = c0 + width;
    if (c1 >= K) return;
    if (!this.err) this.err = this.dev.alloc(err.length * 4);
    const [col] = this.dev.run([
      { op: 'write', id: this.err, offset: 0, data: Float32Array.from(err.subarray(0, width * N)) },
      // A(m, j) = U[c0 + j, c1 + m]: transposed access, stride K, from U[c0, c1]
      gemmOp({ transA: true, transB: false, upper: false }, [this.u, this.err, this.wt], {
        m: K - c1, n: N, k: width, lda: K, ldb: N, ldc: N, offA: c0 * K + c1, offC: c1 * N, alpha: -1, beta: 1,
      }),
      { op: 'read', id: this.wt, offset: c1 * N * 4, bytes: Math.min(next, K - c1) * N * 4 },
    ]).slice(2);
    wt.set(new Float32Array(col as ArrayBuffer), c1 * N);
  }

  end(): void {
    this.release();
  }

  private release(): void {
    const ids = [this.wt, this.u, this.err].filter((id) => id !== 0);
    if (ids.length) this.dev.free(...ids);
    this.wt = this.u = this.err = 0;
  }
}
