// `twlac run <out> --backend webgpu`: the CLI's entry (it passes the artifact directory, or
// a file inside it such as out/model.onnx).
import { existsSync, statSync } from 'node:fs';
import { dirname } from 'node:path';
import { runWebgpu } from './node.ts';
import type { TokenChooser } from '../../eval/sampling.ts';

export async function runWebgpuDecode(model: string, prompt: ArrayLike<number>, maxTokens: number, choose?: TokenChooser): Promise<number[]> {
  const dir = existsSync(model) && statSync(model).isFile() ? dirname(model) : model;
  return runWebgpu(dir, Array.from(prompt), maxTokens, undefined, choose);
}
