// The page of the TF.js WebGPU test (bundled by esbuild): loads a GraphModel over http with
// tfjs's own loader on the WebGPU backend, after twlac/tfjs has registered its op, and runs
// one forward pass. The test calls window.runTwlacTfjs through puppeteer.
import * as tf from '@tensorflow/tfjs-core';
import '@tensorflow/tfjs-backend-webgpu';
import { loadGraphModel } from '@tensorflow/tfjs-converter';
import { registerTwlacOps } from '../../src/runtime/tfjs/index.ts';

registerTwlacOps();

async function runTwlacTfjs(url: string, ids: number[]): Promise<{ backend: string; shape: number[]; logits: number[] }> {
  if (!(await tf.setBackend('webgpu'))) throw new Error('the webgpu backend did not initialise');
  await tf.ready();
  const model = await loadGraphModel(url);
  const y = model.execute({ input_ids: tf.tensor2d(ids, [1, ids.length], 'int32') }, 'logits') as tf.Tensor;
  const logits = Array.from(await y.data());
  const out = { backend: tf.getBackend(), shape: y.shape, logits };
  y.dispose();
  model.dispose();
  return out;
}

(window as unknown as { runTwlacTfjs: typeof runTwlacTfjs }).runTwlacTfjs = runTwlacTfjs;
document.body.dataset.state = 'ready';
