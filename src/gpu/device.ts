// The compiler's compute device: `--device auto|gpu|cpu`.
//   cpu   the float64 JavaScript path (byte-identical to a build without this module);
//   gpu   WebGPU through Dawn, whatever adapter exists (a software one is used, and said so);
//   auto  a real GPU adapter when there is one, never a software rasteriser (SwiftShader,
//         llvmpipe, lavapipe): on a machine with only those, the CPU path.
// The Dawn device runs in a worker (executor-worker.mjs); `GpuDevice.run` posts operations
// and blocks until they finish, so synchronous fitting loops can call the GPU.
import { existsSync } from 'node:fs';
import { fileURLToPath } from 'node:url';
import { MessageChannel, receiveMessageOnPort, Worker, type MessagePort } from 'node:worker_threads';
import { UserError } from '../errors.ts';
import { chooseWebgpuBackend } from '../runtime/webgpu/node.ts';

export type DeviceChoice = 'auto' | 'gpu' | 'cpu';
export const DEVICE_CHOICES: readonly DeviceChoice[] = ['auto', 'gpu', 'cpu'];

export interface AdapterInfo {
  description: string;
  vendor: string;
  architecture: string;
  device: string;
  isFallbackAdapter: boolean;
  maxBufferSize: number;
  maxStorageBufferBindingSize: number;
}

/** Software adapters: Dawn's fallback flag, or a known CPU rasteriser by name. */
export function isSoftwareAdapter(a: AdapterInfo): boolean {
  return a.isFallbackAdapter || /swiftshader|llvmpipe|lavapipe|softpipe|software/i.test(`${a.description} ${a.architecture} ${a.device} ${a.vendor}`);
}

export function describeAdapter(a: AdapterInfo): string {
  return a.description || [a.vendor, a.architecture, a.device].filter(Boolean).join(' ') || 'unknown adapter';
}

/** One operation for the executor (see executor-worker.mjs). */
export type GpuOp =
  | { op: 'alloc'; id: number; bytes: number }
  | { op: 'free'; id: number }
  | { op: 'write'; id: number; offset: number; data: Float32Array }
  | { op: 'clear'; id: number; offset: number; bytes: number }
  | { op: 'dispatch'; key: string; code?: string; buffers: number[]; uniform: Uint32Array; groups: [number, number, number] }
  | { op: 'read'; id: number; offset: number; bytes: number };

/** How long one request may take before the executor is presumed dead. */
const REQUEST_TIMEOUT_MS = 30 * 60_000;
/** Opening the adapter takes seconds; a worker that never answers (it failed to start) must not hang the compile. */
const OPEN_TIMEOUT_MS = 60_000;

export class GpuDevice {
  private nextId = 1;
  private sent = new Set<string>();
  private constructor(
    private readonly worker: Worker,
    private readonly port: MessagePort,
    private readonly done: Int32Array,
    readonly info: AdapterInfo,
  ) {}

  /** Start the executor and open the adapter (blocks until it is ready). */
  static open(): GpuDevice {
    // The main thread blocks while the worker answers, so a worker that cannot even start would
    // hang it: check that its script is there first (a build that left it out), and bound the wait.
    const script = new URL('./executor-worker.mjs', import.meta.url);
    if (!existsSync(fileURLToPath(script))) throw new Error(`the GPU executor's script ${fileURLToPath(script)} is missing`);
    const backend = chooseWebgpuBackend(); // sets the ICD variables the worker's Dawn reads
    const flag = new SharedArrayBuffer(4);
    const { port1, port2 } = new MessageChannel();
    const worker = new Worker(script, { workerData: { port: port2, flag }, transferList: [port2] });
    worker.unref();
    const done = new Int32Array(flag);
    try {
      const ready = request(port1, done, [{ op: 'open', backend }], OPEN_TIMEOUT_MS);
      return new GpuDevice(worker, port1, done, ready[0] as AdapterInfo);
    } catch (e) {
      void worker.terminate();
      throw e;
    }
  }

  get software(): boolean {
    return isSoftwareAdapter(this.info);
  }

  /** Run operations in order; returns one result per operation (ArrayBuffer for reads). */
  run(ops: GpuOp[]): unknown[] {
    const transfer: GpuOp[] = ops.map((o) => {
      if (o.op !== 'dispatch') return o;
      // Send each kernel's source once; the executor caches its pipeline by key.
      if (this.sent.has(o.key)) return { ...o, code: undefined };
      this.sent.add(o.key);
      return o;
    });
    return request(this.port, this.done, transfer);
  }

  alloc(bytes: number): number {
    const id = this.nextId++;
    this.run([{ op: 'alloc', id, bytes: Math.max(16, Math.ceil(bytes / 16) * 16) }]);
    return id;
  }

  free(...ids: number[]): void {
    this.run(ids.map((id) => ({ op: 'free' as const, id })));
  }

  readF32(id: number, offset: number, count: number): Float32Array {
    return new Float32Array(this.run([{ op: 'read', id, offset, bytes: count * 4 }])[0] as ArrayBuffer);
  }

  close(): void {
    void this.worker.terminate();
  }
}

function request(port: MessagePort, done: Int32Array, ops: unknown[], timeoutMs = REQUEST_TIMEOUT_MS): unknown[] {
  const before = Atomics.load(done, 0);
  port.postMessage(ops);
  if (Atomics.wait(done, 0, before, timeoutMs) === 'timed-out') throw new Error(`GPU executor did not answer in ${timeoutMs / 1000} s`);
  const msg = receiveMessageOnPort(port)?.message as { results?: unknown[]; error?: string } | undefined;
  if (!msg) throw new Error('GPU executor answered nothing');
  if (msg.error !== undefined) throw new Error(`GPU: ${msg.error}`);
  return msg.results!;
}

export interface SelectedDevice {
  /** The GPU, or null for the CPU path. */
  gpu: GpuDevice | null;
  /** One line saying what was chosen and why. */
  note: string;
}

/** Resolve `--device`. `gpu` without any adapter is the user's error; `auto` falls back. */
export function selectDevice(choice: DeviceChoice): SelectedDevice {
  if (choice === 'cpu') return { gpu: null, note: 'device: cpu' };
  let gpu: GpuDevice;
  try {
    gpu = GpuDevice.open();
  } catch (e) {
    if (choice === 'gpu') throw new UserError(`--device gpu: ${(e as Error).message}`);
    return { gpu: null, note: `device: cpu (auto: ${(e as Error).message})` };
  }
  const name = describeAdapter(gpu.info);
  if (!gpu.software) return { gpu, note: `device: gpu (${name})` };
  if (choice === 'gpu') return { gpu, note: `device: gpu on a software adapter (${name}): results as on a GPU, speed far below the CPU path` };
  gpu.close();
  return { gpu: null, note: `device: cpu (auto: only a software adapter, ${name})` };
}
