// The GPU executor thread behind src/gpu/device.ts. WebGPU in Node is asynchronous (mapAsync,
// pipeline creation), while the compiler's fitting loops (GPTQ) are synchronous; so the Dawn
// device lives in this worker, and the main thread sends it a list of operations and blocks
// on a shared flag until the reply is posted (device.ts reads it with receiveMessageOnPort).
// It only executes: kernels, buffer ids and shapes are decided by the TypeScript side. Plain
// JavaScript because Node 20 workers load no TypeScript hooks.
import { workerData } from 'node:worker_threads';

const { port, flag } = workerData;
const done = new Int32Array(flag);
/** @type {GPUDevice | undefined} */
let device;
const buffers = new Map();
const pipelines = new Map();

const STORAGE = 0x80, COPY_SRC = 0x04, COPY_DST = 0x08, MAP_READ = 0x01, UNIFORM = 0x40;

async function open(op) {
  const { create, globals } = await import('webgpu');
  Object.assign(globalThis, globals);
  const gpu = create([`backend=${op.backend}`]);
  globalThis.__twlacGpu = gpu; // the device dies with its instance if this is collected
  const adapter = await gpu.requestAdapter({ powerPreference: 'high-performance' }).catch(() => null);
  if (!adapter) throw new Error(`no WebGPU adapter found (Dawn, ${op.backend})`);
  const l = adapter.limits;
  device = await adapter.requestDevice({
    requiredLimits: {
      maxStorageBufferBindingSize: l.maxStorageBufferBindingSize,
      maxBufferSize: l.maxBufferSize,
      maxComputeWorkgroupsPerDimension: l.maxComputeWorkgroupsPerDimension,
    },
  });
  const i = adapter.info;
  return {
    description: i.description || '',
    vendor: i.vendor || '',
    architecture: i.architecture || '',
    device: i.device || '',
    isFallbackAdapter: Boolean(i.isFallbackAdapter),
    maxBufferSize: l.maxBufferSize,
    maxStorageBufferBindingSize: l.maxStorageBufferBindingSize,
  };
}

function pipeline(op) {
  let p = pipelines.get(op.key);
  if (!p) {
    if (!op.code) throw new Error(`kernel ${op.key}: no source sent`);
    p = device.createComputePipeline({ layout: 'auto', compute: { module: device.createShaderModule({ code: op.code }), entryPoint: 'main' } });
    pipelines.set(op.key, p);
  }
  return p;
}

function dispatch(op) {
  const p = pipeline(op);
  const u = device.createBuffer({ size: Math.ceil(op.uniform.byteLength / 16) * 16, usage: UNIFORM | COPY_DST });
  device.queue.writeBuffer(u, 0, op.uniform);
  const entries = op.buffers.map((id, binding) => ({ binding, resource: { buffer: buffers.get(id) } }));
  entries.push({ binding: op.buffers.length, resource: { buffer: u } });
  const bind = device.createBindGroup({ layout: p.getBindGroupLayout(0), entries });
  const enc = device.createCommandEncoder();
  const pass = enc.beginComputePass();
  pass.setPipeline(p);
  pass.setBindGroup(0, bind);
  pass.dispatchWorkgroups(...op.groups);
  pass.end();
  device.queue.submit([enc.finish()]);
  u.destroy();
}

async function read(op) {
  const staging = device.createBuffer({ size: op.bytes, usage: MAP_READ | COPY_DST });
  const enc = device.createCommandEncoder();
  enc.copyBufferToBuffer(buffers.get(op.id), op.offset, staging, 0, op.bytes);
  device.queue.submit([enc.finish()]);
  await staging.mapAsync(0x01);
  const out = staging.getMappedRange().slice(0);
  staging.destroy();
  return out;
}

async function run(op) {
  switch (op.op) {
    case 'open':
      return open(op);
    case 'alloc':
      buffers.set(op.id, device.createBuffer({ size: op.bytes, usage: STORAGE | COPY_SRC | COPY_DST }));
      return undefined;
    case 'free':
      buffers.get(op.id)?.destroy();
      buffers.delete(op.id);
      return undefined;
    case 'write':
      device.queue.writeBuffer(buffers.get(op.id), op.offset, op.data);
      return undefined;
    case 'clear': {
      const enc = device.createCommandEncoder();
      enc.clearBuffer(buffers.get(op.id), op.offset, op.bytes);
      device.queue.submit([enc.finish()]);
      return undefined;
    }
    case 'dispatch':
      return dispatch(op);
    case 'read':
      return read(op);
    default:
      throw new Error(`unknown GPU operation ${op.op}`);
  }
}

port.on('message', async (ops) => {
  let reply;
  try {
    if (device) {
      device.pushErrorScope('out-of-memory');
      device.pushErrorScope('validation');
    }
    const results = [];
    for (const op of ops) results.push(await run(op));
    if (device && ops[0].op !== 'open') {
      const validation = await device.popErrorScope();
      const oom = await device.popErrorScope();
      const e = validation ?? oom;
      if (e) throw new Error(e.message);
    }
    reply = { results };
  } catch (e) {
    reply = { error: e instanceof Error ? e.message : String(e) };
  }
  port.postMessage(reply, (reply.results ?? []).filter((r) => r instanceof ArrayBuffer));
  Atomics.add(done, 0, 1);
  Atomics.notify(done, 0);
});
