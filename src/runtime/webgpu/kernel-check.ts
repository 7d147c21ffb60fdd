// The harness of `twlac kernels --target wgsl`: runs every kernel of a kernel folder on the
// Node WebGPU device (Dawn) against its check case (expected output from the format's
// reference decoder, in float64), and times it. Case layout: codegen/wgsl/standalone.ts.
import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import { UserError } from '../../errors.ts';
import type { WgslStandaloneKernel } from '../../codegen/wgsl/standalone.ts';
import { nodeDevice } from './node.ts';

export interface WgslKernelCheck {
  kernel: string;
  kind: string;
  n: number;
  k: number;
  t: number;
  relL2: number;
  relMax: number;
  ok: boolean;
  /** Median wall time of one dispatch over batches of back-to-back dispatches (µs). */
  us: number;
}

/** fp32 activations and accumulation against float64: the decode order differs, nothing else. */
const TOLERANCE = { relL2: 1e-4, relMax: 1e-3 };

export async function checkWgslKernels(dir: string): Promise<{ adapter: string; kernels: WgslKernelCheck[]; failures: number }> {
  const manifest = JSON.parse(readFileSync(join(dir, 'manifest.json'), 'utf8')) as { kind?: string; kernels: WgslStandaloneKernel[] };
  if (manifest.kind !== 'twlac-kernels' || !manifest.kernels.every((k) => k.file?.endsWith('.wgsl'))) throw new UserError(`${dir} is not a WGSL kernel folder of twlac kernels`);
  const { device, adapter } = await nodeDevice();
  const results: WgslKernelCheck[] = [];
  for (const k of manifest.kernels) {
    const bytes = readFileSync(join(dir, k.case));
    const wBytes = k.wWords * 4;
    const xBytes = k.t * k.k * 4;
    const y = new Float64Array(bytes.buffer.slice(bytes.byteOffset + wBytes + xBytes, bytes.byteOffset + bytes.byteLength));
    const storage = (data: Uint8Array | number, writable = false) => {
      const size = typeof data === 'number' ? data : data.byteLength;
      const b = device.createBuffer({ size: Math.max(16, Math.ceil(size / 4) * 4), usage: GPUBufferUsage.STORAGE | GPUBufferUsage.COPY_DST | (writable ? GPUBufferUsage.COPY_SRC : 0) });
      if (typeof data !== 'number') device.queue.writeBuffer(b, 0, data);
      return b;
    };
    const inputs: Record<string, GPUBuffer> = { W: storage(bytes.subarray(0, wBytes)), X: storage(bytes.subarray(wBytes, wBytes + xBytes)) };
    const out = storage(k.t * k.n * 4, true);
    const buffers = k.bindings.map((b) => (b.access === 'read_write' ? out : inputs[b.name]));
    if (buffers.some((b) => !b)) throw new UserError(`${k.file}: bindings ${k.bindings.map((b) => b.name).join(', ')} are not W, X, Y`);
    if (k.usesStep) {
      const step = device.createBuffer({ size: 16, usage: GPUBufferUsage.UNIFORM | GPUBufferUsage.COPY_DST });
      device.queue.writeBuffer(step, 0, new Uint32Array([0, k.t, 0, 0]));
      buffers.push(step);
    }
    const layout = device.createBindGroupLayout({
      entries: buffers.map((_, binding) => ({
        binding,
        visibility: GPUShaderStage.COMPUTE,
        buffer: { type: binding === k.bindings.length ? 'uniform' : k.bindings[binding].access === 'read' ? 'read-only-storage' : 'storage' },
      })),
    });
    const pipeline = await device.createComputePipelineAsync({
      layout: device.createPipelineLayout({ bindGroupLayouts: [layout] }),
      compute: { module: device.createShaderModule({ code: readFileSync(join(dir, k.file), 'utf8') }), entryPoint: 'main' },
    });
    const bind = device.createBindGroup({ layout, entries: buffers.map((buffer, binding) => ({ binding, resource: { buffer } })) });
    const run = async (times: number) => {
      const enc = device.createCommandEncoder();
      const pass = enc.beginComputePass();
      pass.setPipeline(pipeline);
      pass.setBindGroup(0, bind);
      for (let i = 0; i < times; i++) pass.dispatchWorkgroups(...k.dispatch);
      pass.end();
      device.queue.submit([enc.finish()]);
      await device.queue.onSubmittedWorkDone();
    };
    await run(1);
    const read = device.createBuffer({ size: k.t * k.n * 4, usage: GPUBufferUsage.MAP_READ | GPUBufferUsage.COPY_DST });
    const enc = device.createCommandEncoder();
    enc.copyBufferToBuffer(out, 0, read, 0, k.t * k.n * 4);
    device.queue.submit([enc.finish()]);
    await read.mapAsync(GPUMapMode.READ);
    const got = new Float32Array(read.getMappedRange().slice(0));
    read.unmap();
    let num = 0;
    let den = 0;
    let maxd = 0;
    let maxr = 0;
    let finite = true;
    for (let i = 0; i < y.length; i++) {
      finite &&= Number.isFinite(got[i]);
      const d = got[i] - y[i];
      num += d * d;
      den += y[i] * y[i];
      maxd = Math.max(maxd, Math.abs(d));
      maxr = Math.max(maxr, Math.abs(y[i]));
    }
    const relL2 = Math.sqrt(num / den);
    const relMax = maxd / maxr;
    const times: number[] = [];
    for (let r = 0; r < 5; r++) {
      const t0 = performance.now();
      await run(10);
      times.push(((performance.now() - t0) * 1000) / 10);
    }
    times.sort((a, b) => a - b);
    results.push({ kernel: k.name, kind: k.kind, n: k.n, k: k.k, t: k.t, relL2, relMax, ok: finite && relL2 < TOLERANCE.relL2 && relMax < TOLERANCE.relMax, us: times[2] });
    for (const b of [...buffers, read]) b.destroy();
  }
  return { adapter, kernels: results, failures: results.filter((r) => !r.ok).length };
}
