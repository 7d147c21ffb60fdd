// LLaMA-shaped ONNX exports of any size, for compiling at scale (npm run bench:scale, and the
// 7B compile on the GPU machine: scripts/device/compile-7b.sh). The graph is the fixtures'
// torch-dynamo-style LLaMA (src/graph/synthetic-llama.ts: decomposed RMSNorm, MatMul with
// [in, out] weights, RoPE, GQA, causal softmax attention) with fp16 linear weights behind a
// Cast, random weights, and a few large-magnitude activation channels (every norm's γ scaled
// on the same channels) so that rotation and clipping have work to do.
//
// Weights stream to disk: each tensor is appended to a scratch file as soon as it is drawn
// and the graph holds only its location; saveModel then copies them in chunks into
// model.onnx.data and the scratch file is deleted. Host memory stays at about one layer's
// weights (fp32 while drawn), whatever the model's size.
//
//   npx tsx bench/scripts/gen-llama.ts <size> <out-dir>    sizes: tiny, 12m, 125m, 1b, 7b
import { closeSync, mkdirSync, openSync, rmSync, writeSync } from 'node:fs';
import { join, resolve } from 'node:path';
import { pathToFileURL } from 'node:url';
import { saveModel } from '../../src/graph/onnx.ts';
import { Tensor } from '../../src/graph/tensor.ts';
import { makeTinyLlama, type TinyLlamaOptions } from '../../src/graph/synthetic-llama.ts';

export interface LlamaShape {
  layers: number;
  hidden: number;
  heads: number;
  kvHeads: number;
  intermediate: number;
  vocab: number;
}

/** The sizes of the scaling curve. 7b is LLaMA-2-7B; 1b is TinyLlama-1.1B's shape; 125m and
 *  12m are GPT-2-small-like and the pydocs fixture's shape; tiny and 12m have the pydocs
 *  tokenizer's vocabulary, so the shared tokenizer.json can calibrate them. */
export const LLAMA_SHAPES: Record<string, LlamaShape> = {
  tiny: { layers: 2, hidden: 128, heads: 2, kvHeads: 1, intermediate: 352, vocab: 4096 },
  '12m': { layers: 6, hidden: 384, heads: 6, kvHeads: 2, intermediate: 1024, vocab: 4096 },
  '125m': { layers: 12, hidden: 768, heads: 12, kvHeads: 12, intermediate: 2048, vocab: 32000 },
  '1b': { layers: 22, hidden: 2048, heads: 32, kvHeads: 4, intermediate: 5632, vocab: 32000 },
  '7b': { layers: 32, hidden: 4096, heads: 32, kvHeads: 32, intermediate: 11008, vocab: 32000 },
};

/** Outlier channels: 4 channels of every γ ×20, the magnitude LLaMA-2's massive activations
 *  reach relative to the typical channel after the norm (order 10–100). */
export const OUTLIERS = { count: 4, scale: 20 };

/** Parameters of a shape (embedding, 7 linears a layer, norms, untied head). */
export function parameterCount(s: LlamaShape): number {
  const d = s.hidden / s.heads;
  const layer = s.hidden * s.heads * d * 2 + s.hidden * s.kvHeads * d * 2 + 3 * s.hidden * s.intermediate + 2 * s.hidden;
  return s.layers * layer + 2 * s.vocab * s.hidden + s.hidden;
}

/** The dynamo-style options for a shape. */
export function llamaOptions(s: LlamaShape, seed = 1): TinyLlamaOptions {
  return { ...s, seed, weightDtype: 'float16', outliers: OUTLIERS, ropeTheta: 10000, normEps: 1e-5 };
}

/** Write `<dir>/model.onnx` (+ model.onnx.data) for a shape; returns the files' sizes. */
export function generateLlama(shape: LlamaShape, dir: string, seed = 1): Record<string, number> {
  mkdirSync(dir, { recursive: true });
  const scratch = resolve(dir, '.weights.scratch');
  let fd: number | undefined = openSync(scratch, 'w');
  let offset = 0;
  try {
    const store = (t: Tensor): Tensor => {
      if (t.byteLength < 1024) return t; // saveModel keeps small tensors inline
      const bytes = t.bytes();
      for (let done = 0; done < bytes.byteLength; ) done += writeSync(fd!, bytes, done, bytes.byteLength - done);
      const placed = new Tensor(t.dtype, t.dims, { kind: 'external', path: scratch, offset, length: bytes.byteLength });
      offset += bytes.byteLength;
      return placed;
    };
    const model = makeTinyLlama({ ...llamaOptions(shape, seed), store });
    closeSync(fd);
    fd = undefined;
    const { files } = saveModel(model, join(dir, 'model.onnx'));
    return Object.fromEntries(Object.entries(files).map(([f, n]) => [f.slice(resolve(dir).length + 1), n]));
  } finally {
    if (fd !== undefined) closeSync(fd);
    rmSync(scratch, { force: true });
  }
}

if (import.meta.url === pathToFileURL(process.argv[1] ?? '').href && /gen-llama\.m?[jt]s$/.test(process.argv[1])) {
  const [size, out] = process.argv.slice(2);
  const shape = LLAMA_SHAPES[size ?? ''];
  if (!shape || !out) {
    console.error(`usage: gen-llama.ts <${Object.keys(LLAMA_SHAPES).join('|')}> <out-dir>`);
    process.exit(2);
  }
  const t0 = performance.now();
  const files = generateLlama(shape, out);
  const rss = process.resourceUsage().maxRSS * 1024;
  console.log(
    `${size}: ${(parameterCount(shape) / 1e6).toFixed(1)} M parameters, ${Object.entries(files)
      .map(([f, n]) => `${f} ${(n / 1e6).toFixed(1)} MB`)
      .join(', ')}; ${((performance.now() - t0) / 1000).toFixed(1)} s, peak RSS ${(rss / 1e6).toFixed(0)} MB`,
  );
}
