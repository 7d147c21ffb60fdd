// The CLI's other subcommands: inspect, eval, run, demo.
import { existsSync, statSync } from 'node:fs';
import { dirname, join } from 'node:path';
import { printable, UserError } from '../errors.ts';
import { loadModel } from '../graph/onnx.ts';
import { recognize } from '../graph/recognize.ts';
import { splitPackedLinears } from '../passes/split-packed.ts';
import { unfuseBiases } from '../passes/unfuse-bias.ts';
import { findTokenizer, loadTokenizer, tokenizeFile } from '../eval/tokenizer.ts';
import { DEFAULT_WINDOW, evaluatePerplexity } from '../eval/perplexity.ts';
import { generate } from '../eval/generate.ts';
import { tokenChooser, type SamplingOptions } from '../eval/sampling.ts';
import { makeProgress } from './progress.ts';

/** A twlac output directory or a model folder → its model.onnx; a file stays as is. */
function resolveModelFile(p: string): string {
  if (!existsSync(p)) throw new UserError(`not found: ${p}`);
  if (statSync(p).isDirectory()) {
    const f = join(p, 'model.onnx');
    if (!existsSync(f)) throw new UserError(`${p} has no model.onnx`);
    return f;
  }
  return p;
}

/**
 * resolveModelFile, then the model decoded before onnxruntime sees it: a special file, a
 * corrupt protobuf or external data outside the model's folder is refused by twlac's own
 * checks, in its words (weights stay on disk; only their files' sizes are read).
 */
function checkedModelFile(p: string): string {
  const f = resolveModelFile(p);
  loadModel(f);
  return f;
}

export async function inspectCommand(model: string, opts: { json?: boolean }): Promise<void> {
  const { formatInspectTable, inspectJSON } = await import('./inspect.ts');
  // As the compile sees it: biases taken out of onnxruntime's fused ops, packed linears (Phi-3, GPT-2's c_attn, GPT-NeoX's query_key_value) cut into their roles.
  const m = loadModel(resolveModelFile(model));
  unfuseBiases(m);
  splitPackedLinears(m);
  const s = recognize(m);
  // Names come from the model: escape what a terminal would act on (JSON escapes the C0 set itself).
  const text = opts.json ? JSON.stringify(inspectJSON(s)) : formatInspectTable(s).split('\n').map(printable).join('\n');
  process.stdout.write(`${text}\n`);
}

export async function evalCommand(
  model: string,
  opts: { text: string; tokenizer?: string; maxWindows?: number; batch: number; json?: boolean; quiet?: boolean; backend: 'ort' | 'cuda' },
): Promise<void> {
  // The CUDA program is looked for (GPU, architecture, build) before any tokenizing work.
  const cuda = opts.backend === 'cuda' ? await openCudaProgram(model) : undefined;
  const file = cuda ? '' : checkedModelFile(model);
  const tok = loadTokenizer(opts.tokenizer ?? findTokenizer(model));
  const progress = makeProgress({ quiet: opts.quiet });
  progress.start('tokenizing');
  const ids = tokenizeFile(tok, opts.text);
  progress.done(`${ids.length} tokens`);
  progress.start('perplexity');
  let last = 0;
  const r = cuda ? { ...cuda.perplexity(ids, opts.maxWindows), windowSize: DEFAULT_WINDOW } : await evaluatePerplexity(file, ids, {
    maxWindows: opts.maxWindows,
    batch: opts.batch,
    onProgress: (done, total) => {
      if (last === 0) progress.start('perplexity', total);
      progress.tick(done - last);
      last = done;
    },
  });
  progress.done(`ppl ${r.ppl.toFixed(3)}`);
  if (opts.json) process.stdout.write(`${JSON.stringify({ ppl: r.ppl, tokens: r.tokens, windows: r.windows })}\n`);
  else process.stdout.write(`perplexity ${r.ppl.toFixed(4)} over ${r.tokens} tokens (${r.windows} windows of ${r.windowSize})\n`);
}

type RunBackend = 'ort' | 'webgpu' | 'cuda';

/** The CUDA host program of a twlac output directory (or of the folder of its model.onnx). */
async function openCudaProgram(model: string) {
  const { CudaProgram } = await import('../runtime/cuda/host.ts');
  if (!existsSync(model)) throw new UserError(`not found: ${model}`);
  return CudaProgram.open(statSync(model).isDirectory() ? model : dirname(model));
}

/** Generators by backend: each returns the generated ids for prompt ids. */
const GENERATORS: Record<RunBackend, (model: string, prompt: Int32Array, maxTokens: number, sampling: SamplingOptions) => Promise<ArrayLike<number>>> = {
  ort: (model, prompt, n, sampling) => generate(checkedModelFile(model), prompt, n, { choose: tokenChooser(sampling) }),
  webgpu: async (model, prompt, n, sampling) => {
    const { runWebgpuDecode } = await import('../runtime/webgpu/cli.ts');
    return runWebgpuDecode(model, prompt, n, tokenChooser(sampling));
  },
  cuda: async (model, prompt, n, sampling) => {
    // The host program picks each token with an argmax on the GPU.
    if ((sampling.temperature ?? 0) > 0) throw new UserError('--backend cuda decodes greedily (argmax on the GPU): drop --temperature, --top-k and --top-p');
    return (await openCudaProgram(model)).generate(prompt, n);
  },
};

export interface RunFlags extends SamplingOptions {
  backend: RunBackend;
  prompt: string;
  maxTokens: number;
  tokenizer?: string;
  greedy?: boolean;
}

export async function runCommand(model: string, opts: RunFlags): Promise<void> {
  if (opts.greedy && (opts.temperature ?? 0) > 0) throw new UserError('--greedy and --temperature above 0 contradict each other');
  const sampling: SamplingOptions = { temperature: opts.temperature, topK: opts.topK, topP: opts.topP, seed: opts.seed };
  tokenChooser(sampling); // bad sampling options are refused before any model is loaded
  const tok = loadTokenizer(opts.tokenizer ?? findTokenizer(model));
  const prompt = tok.encode(opts.prompt);
  const ids = await GENERATORS[opts.backend](model, prompt, opts.maxTokens, sampling);
  process.stdout.write(`${tok.decode(ids)}\n`);
}

export async function demoCommand(opts: { out: string; quiet?: boolean; force?: boolean }): Promise<void> {
  const { runDemo } = await import('../demo.ts');
  await runDemo(opts.out, makeProgress({ quiet: opts.quiet }), undefined, { force: opts.force });
}
