// twlac/webgpu: the WebGPU runtime. `WebgpuModel` runs on any GPUDevice (browser or Node);
// the Node helpers create one through Dawn.
export { WebgpuModel, type WebgpuModelOptions } from './runtime.ts';
export { requestModelDevice } from './device.ts';
export { nodeDevice, loadWebgpuModel, runWebgpu, webgpuLogits, type NodeDevice } from './node.ts';
export { emitWgsl } from '../../codegen/wgsl/emit.ts';
export { checkWgslKernels, type WgslKernelCheck } from './kernel-check.ts';
