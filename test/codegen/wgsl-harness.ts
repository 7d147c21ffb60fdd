// Test support: the Node WebGPU device (or a skip reason) and a one-kernel runner.
import { layoutEntries, type WgslKernel } from '../../src/codegen/wgsl/fragments.ts';
import { nodeDevice, type NodeDevice } from '../../src/runtime/webgpu/node.ts';

/** The software adapter, or why there is none. On CI (CI or TWLAC_REQUIRE_WEBGPU set) a
 *  missing adapter is an error, not a skip. */
export async function testDevice(): Promise<{ dev?: NodeDevice; skip?: string }> {
  try {
    return { dev: await nodeDevice() };
  } catch (e) {
    if (process.env.CI || process.env.TWLAC_REQUIRE_WEBGPU) throw e;
    const why = `WebGPU tests skipped: ${(e as Error).message}`;
    console.warn(why);
    return { skip: why };
  }
}

export type HostArray = Float32Array | Uint32Array | Uint8Array;

/**
 * Run one kernel for `ntok` tokens with buffers in binding order; returns the final contents
 * of every read_write binding, as f32, by name.
 */
export async function runKernel(
  device: GPUDevice,
  k: WgslKernel,
  data: HostArray[],
  ntok: number,
  step: { pos0?: number; row0?: number } = {},
): Promise<Record<string, Float32Array>> {
  if (data.length !== k.bindings.length) throw new Error(`${k.name}: ${k.bindings.length} bindings, ${data.length} arrays`);
  device.pushErrorScope('validation');
  const bufs = data.map((a) => {
    const size = Math.max(16, Math.ceil(a.byteLength / 16) * 16);
    const b = device.createBuffer({ size, usage: 0x80 | 0x08 | 0x04 });
    const padded = new Uint8Array(size);
    padded.set(new Uint8Array(a.buffer, a.byteOffset, a.byteLength));
    device.queue.writeBuffer(b, 0, padded);
    return b;
  });
  const stepBuf = device.createBuffer({ size: 16, usage: 0x40 | 0x08 });
  device.queue.writeBuffer(stepBuf, 0, new Uint32Array([step.pos0 ?? 0, ntok, step.row0 ?? 0, 0]));
  const module = device.createShaderModule({ code: k.source() });
  const bgl = device.createBindGroupLayout({ entries: layoutEntries(k) });
  const layout = device.createPipelineLayout({ bindGroupLayouts: [bgl] });
  const pipeline = await device.createComputePipelineAsync({ layout, compute: { module, entryPoint: 'main' } });
  const all = k.usesStep ? [...bufs, stepBuf] : bufs;
  const bind = device.createBindGroup({ layout: bgl, entries: all.map((buffer, binding) => ({ binding, resource: { buffer } })) });
  const enc = device.createCommandEncoder();
  const pass = enc.beginComputePass();
  pass.setPipeline(pipeline);
  pass.setBindGroup(0, bind);
  pass.dispatchWorkgroups(...k.dispatch(ntok, step.pos0 ?? 0));
  pass.end();
  const outs = k.bindings.map((b, i) => ({ b, i })).filter(({ b }) => b.access === 'read_write');
  const reads = outs.map(({ i }) => {
    const r = device.createBuffer({ size: bufs[i].size, usage: 0x01 | 0x08 });
    enc.copyBufferToBuffer(bufs[i], 0, r, 0, bufs[i].size);
    return r;
  });
  device.queue.submit([enc.finish()]);
  const err = await device.popErrorScope();
  if (err) throw new Error(`${k.name}: ${err.message}`);
  const res: Record<string, Float32Array> = {};
  for (let j = 0; j < outs.length; j++) {
    await reads[j].mapAsync(1);
    res[outs[j].b.name] = new Float32Array(reads[j].getMappedRange().slice(0), 0, data[outs[j].i].byteLength / 4);
    reads[j].unmap();
    reads[j].destroy();
  }
  bufs.forEach((b) => b.destroy());
  stepBuf.destroy();
  return res;
}
