// The page of the TF.js WebGPU test (bundled by esbuild): loads a GraphModel over http with
// tfjs's own loader on the WebGPU backend, after twlac/tfjs has registered its op, and runs
// it once. The test calls window.runTwlacTfjs through puppeteer and collects GPU errors.
import * as tf from '@tensorflow/tfjs-core';
import '@tensorflow/tfjs-backend-webgpu';
import { loadGraphModel } from '@tensorflow/tfjs-converter';
import { registerTwlacOps } from '../../src/runtime/tfjs/index.ts';

registerTwlacOps();

export interface PageInput {
  data: number[];
  shape: number[];
  dtype: 'float32' | 'int32';
}

async function runTwlacTfjs(url: string, inputs: Record<string, PageInput>, output?: string): Promise<{ backend: string; shape: number[]; values: number[] }> {
  if (!(await tf.setBackend('webgpu'))) throw new Error('the webgpu backend did not initialise');
  await tf.ready();
  const dev = (tf.backend() as unknown as { device: GPUDevice }).device;
  dev.addEventListener('uncapturederror', (e) => console.error(`GPU error: ${(e as GPUUncapturedErrorEvent).error.message}`));
  const model = await loadGraphModel(url);
  const feeds = Object.fromEntries(Object.entries(inputs).map(([k, v]) => [k, tf.tensor(v.data, v.shape, v.dtype)]));
  const y = (output ? model.execute(feeds, output) : model.execute(feeds)) as tf.Tensor;
  const out = { backend: tf.getBackend(), shape: y.shape, values: Array.from(await y.data()) };
  y.dispose();
  Object.values(feeds).forEach((t) => t.dispose());
  model.dispose();
  return out;
}

(window as unknown as { runTwlacTfjs: typeof runTwlacTfjs }).runTwlacTfjs = runTwlacTfjs;
document.body.dataset.state = 'ready';
