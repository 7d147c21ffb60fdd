// Node entry of the WebGPU runtime: a GPUDevice from Dawn (the `webgpu` package) and the
// functions the CLI calls. Backend: Vulkan when a driver is installed (VK_ICD_FILENAMES, a
// system ICD, or else Chromium's SwiftShader ICD), otherwise Mesa over OpenGL in
// compatibility mode. TWLAC_WEBGPU_BACKEND=vulkan|opengl pins one.
import { existsSync, readdirSync } from 'node:fs';
import { readArtifact } from '../../artifact/weights.ts';
import { UserError } from '../../errors.ts';
import { requestModelDevice } from './device.ts';
import { WebgpuModel, type WebgpuModelOptions } from './runtime.ts';
import type { TokenChooser } from '../../eval/sampling.ts';

/** Where Debian's chromium ships SwiftShader's Vulkan ICD. */
const SWIFTSHADER_ICD = ['/usr/lib/chromium/vk_swiftshader_icd.json', '/usr/lib/chromium-browser/vk_swiftshader_icd.json'];

export interface NodeDevice {
  device: GPUDevice;
  /** Adapter description, e.g. "SwiftShader driver 5.0.0" or "Mesa ... llvmpipe". */
  adapter: string;
  backend: 'vulkan' | 'opengl';
}

let cached: Promise<NodeDevice> | undefined;
const keepAlive: GPU[] = [];

/** One device per process (Dawn instances are heavy); throws UserError when no adapter exists. */
export function nodeDevice(): Promise<NodeDevice> {
  cached ??= openNodeDevice();
  return cached;
}

/** Vulkan ICD manifests of installed drivers (a real GPU's, or lavapipe's). */
function systemVulkanIcds(): boolean {
  const dirs = ['/usr/share/vulkan/icd.d', '/etc/vulkan/icd.d', '/usr/local/share/vulkan/icd.d'];
  return dirs.some((d) => existsSync(d) && readdirSync(d).some((f) => f.endsWith('.json') && !f.includes('lvp')));
}

/** The Dawn backend to create, with the process environment it needs (the Vulkan ICD to
 *  load, EGL's platform) set before any Dawn instance exists, in this thread or a worker. */
export function chooseWebgpuBackend(): NodeDevice['backend'] {
  let backend = process.env.TWLAC_WEBGPU_BACKEND as NodeDevice['backend'] | undefined;
  if (backend && backend !== 'vulkan' && backend !== 'opengl') throw new UserError(`TWLAC_WEBGPU_BACKEND=${backend}: expected vulkan or opengl`);
  const swiftshader = SWIFTSHADER_ICD.find((p) => existsSync(p));
  if (!backend) backend = process.env.VK_ICD_FILENAMES || systemVulkanIcds() || swiftshader ? 'vulkan' : 'opengl';
  if (backend === 'vulkan' && !process.env.VK_ICD_FILENAMES && !systemVulkanIcds() && swiftshader) process.env.VK_ICD_FILENAMES = swiftshader;
  if (backend === 'opengl') process.env.EGL_PLATFORM ??= 'surfaceless';
  return backend;
}

// A Dawn instance that finds no adapter leaves the process unable to map buffers later
// (Dawn aborts on a mutex), so the backend is chosen before the first instance is made.
async function openNodeDevice(): Promise<NodeDevice> {
  const { create, globals } = await import('webgpu');
  Object.assign(globalThis, globals);
  const backend = chooseWebgpuBackend();
  // unquantised timestamps for WebgpuModel.profileStep (Dawn rounds them by default, as browsers must)
  const gpu = create([`backend=${backend}`, 'disable-dawn-features=timestamp_quantization']);
  // The device dies with its Dawn instance when `gpu` is garbage-collected: keep it alive.
  keepAlive.push(gpu);
  const adapter = await gpu.requestAdapter(backend === 'opengl' ? { featureLevel: 'compatibility' } : {}).catch(() => null);
  if (!adapter) {
    throw new UserError(
      `no WebGPU adapter found (Dawn, ${backend}): install a GPU driver or a software one (scripts/install-webgpu-deps.sh installs SwiftShader and Mesa)`,
    );
  }
  const device = await requestModelDevice(adapter);
  return { device, adapter: adapter.info.description || adapter.info.vendor || backend, backend };
}

/** Load an artifact directory onto the Node WebGPU device. */
export async function loadWebgpuModel(dir: string, opts: WebgpuModelOptions = {}): Promise<WebgpuModel> {
  if (!existsSync(`${dir}/manifest.json`)) throw new UserError(`${dir}: no manifest.json (compile a model with twlac first)`);
  const { device } = await nodeDevice();
  return WebgpuModel.create(device, readArtifact(dir), opts);
}

/** Decode: the `maxTokens` ids generated after `promptIds`, greedy unless `choose` samples. */
export async function runWebgpu(dir: string, promptIds: readonly number[], maxTokens: number, onToken?: (id: number) => void, choose?: TokenChooser): Promise<number[]> {
  const model = await loadWebgpuModel(dir, { context: promptIds.length + maxTokens });
  try {
    return await model.greedy(promptIds, maxTokens, onToken, choose);
  } finally {
    model.destroy();
  }
}

/** Logits [ids.length, vocab] of a token sequence from position 0. */
export async function webgpuLogits(dir: string, ids: readonly number[]): Promise<Float32Array> {
  const model = await loadWebgpuModel(dir, { capacity: Math.min(256, Math.max(1, ids.length)), context: Math.max(1, ids.length) });
  try {
    return await model.logitsOf(ids);
  } finally {
    model.destroy();
  }
}
