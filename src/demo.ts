// `twlac demo`: compile a small trained model that ships with twlac, and show what the compile kept.
//
// demo/model/: a LLaMA of 4 blocks, hidden 128, byte vocabulary (token id = UTF-8 byte, the
// tokenizer.json below), trained by scripts/train-demo-cpu.py on the first 98% of the Python
// documentation text (PSF licence, demo/model/DATA-LICENSE) and exported by torch.onnx.
// demo/data/ (scripts/make-demo-data.sh): calibration.txt, a slice of the text it trained on;
// heldout.txt, a slice of dev.txt, which neither the training nor the calibration saw.
// The demo compiles the model with the default pipeline (--weights twla) and small calibration
// settings, then prints the held-out perplexity of source and compiled (EVAL.md: windows of
// 256 tokens, the first DEMO_SETTINGS.evalWindows of them), greedy text of both on
// onnxruntime, the WebGPU runtime's greedy text on the compiled output, and where report.html is.
import { copyFileSync, existsSync, mkdirSync, readFileSync, readdirSync, statSync, writeFileSync } from 'node:fs';
import { dirname, join, relative, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';
import { type Progress, silentProgress } from './graph/pass.ts';
import { UserError } from './errors.ts';
import { compileToDir } from './compile.ts';
import { calibrationSegments } from './calib/data.ts';
import { loadTokenizer } from './eval/tokenizer.ts';
import { evaluatePerplexity } from './eval/perplexity.ts';
import { generate } from './eval/generate.ts';
import { withAtomicDir } from './util/atomic-dir.ts';
import { TWLAC_VERSION } from './artifact/build.ts';

/** Calibration and evaluation sizes that keep the demo around a minute on 2 cores. */
export const DEMO_SETTINGS = {
  calibSamples: 16,
  calibSeq: 256,
  evalWindows: 128,
  prompt: 'The ',
  maxTokens: 80,
};

/** The repository root (this file is src/demo.ts, or dist/demo.js in a package). */
export const REPO_ROOT = resolve(dirname(fileURLToPath(import.meta.url)), '..');

/** The files the demo reads, all shipped in the repository and the package. */
export function demoFiles(root = REPO_ROOT) {
  const d = join(root, 'demo');
  return {
    model: join(d, 'model', 'model.onnx'),
    tokenizer: join(d, 'model', 'tokenizer.json'),
    config: join(d, 'model', 'config.json'),
    trainReport: join(d, 'model', 'train-report.json'),
    calibration: join(d, 'data', 'calibration.txt'),
    heldOut: join(d, 'data', 'heldout.txt'),
  };
}

// ---------------------------------------------------------------------------------------
// Tokenizer: byte-level BPE with the 256 byte tokens, id = byte value, no merges.

/** GPT-2's byte → printable character map, which the ByteLevel pre-tokenizer and decoder use. */
export function bytesToUnicode(): string[] {
  const printable = (b: number) => (b >= 33 && b <= 126) || (b >= 161 && b <= 172) || (b >= 174 && b <= 255);
  const out: string[] = [];
  let shifted = 0;
  for (let b = 0; b < 256; b++) out.push(String.fromCodePoint(printable(b) ? b : 256 + shifted++));
  return out;
}

/** A Hugging Face tokenizer.json whose ids are the UTF-8 bytes of the text. */
export function byteTokenizerJson(): object {
  const vocab: Record<string, number> = {};
  bytesToUnicode().forEach((ch, b) => (vocab[ch] = b));
  const byteLevel = { type: 'ByteLevel', add_prefix_space: false, trim_offsets: true, use_regex: false };
  return {
    version: '1.0',
    truncation: null,
    padding: null,
    added_tokens: [],
    normalizer: null,
    pre_tokenizer: byteLevel,
    post_processor: null,
    decoder: byteLevel,
    model: {
      type: 'BPE',
      dropout: null,
      unk_token: null,
      continuing_subword_prefix: null,
      end_of_word_suffix: null,
      fuse_unk: false,
      byte_fallback: false,
      ignore_merges: false,
      vocab,
      merges: [],
    },
  };
}

// ---------------------------------------------------------------------------------------
// The demo.

/** What the demo model is, from its config.json and train-report.json. */
export interface DemoModelInfo {
  layers: number;
  hidden: number;
  vocab: number;
  params: number;
}

export function readDemoModelInfo(files = demoFiles()): DemoModelInfo {
  const c = JSON.parse(readFileSync(files.config, 'utf8')) as { num_hidden_layers: number; hidden_size: number; vocab_size: number };
  const r = JSON.parse(readFileSync(files.trainReport, 'utf8')) as { params: number };
  return { layers: c.num_hidden_layers, hidden: c.hidden_size, vocab: c.vocab_size, params: r.params };
}

/** The WebGPU runtime's greedy result, or why it did not run. */
export type WebgpuResult = { ids: number[]; text: string } | { unavailable: string };

export interface DemoSummary {
  outDir: string;
  sourceModel: string;
  compiledDir: string;
  model: DemoModelInfo;
  bitsPerWeight: number;
  onnxBitsPerWeight?: number;
  sourcePpl: number;
  compiledPpl: number;
  evalWindows: number;
  evalTokens: number;
  prompt: string;
  sourceIds: number[];
  sourceText: string;
  compiledIds: number[];
  compiledText: string;
  webgpu: WebgpuResult;
  seconds: number;
}

/**
 * Copy the shipped model to `<out>/source/` and compile it to `<out>/compiled/`; print a
 * summary on stdout. `<out>` is written atomically (a failed run leaves nothing); `force`
 * replaces an earlier demo output there.
 */
export async function runDemo(
  outDir: string,
  progress: Progress = silentProgress,
  out: (s: string) => void = (s) => process.stdout.write(s),
  opts: { force?: boolean } = {},
): Promise<DemoSummary> {
  const t0 = performance.now();
  const summary = await withAtomicDir(
    outDir,
    async (dir) => {
      const d = await demo(dir, progress, t0);
      writeDemoManifest(dir);
      return d;
    },
    { force: opts.force },
  );
  // Paths as the user will find them, once the folder is in place.
  const shown = { ...summary, outDir, sourceModel: join(outDir, 'source', 'model.onnx'), compiledDir: join(outDir, 'compiled') };
  out(formatSummary(shown));
  return shown;
}

/** `<out>/manifest.json`: marks the folder as a demo output and lists its files, so that `--force` knows what twlac wrote. */
function writeDemoManifest(dir: string): void {
  const files: Record<string, number> = {};
  const walk = (d: string) => {
    for (const e of readdirSync(d, { withFileTypes: true })) {
      const p = join(d, e.name);
      if (e.isDirectory()) walk(p);
      else files[relative(dir, p).split('\\').join('/')] = statSync(p).size;
    }
  };
  walk(dir);
  writeFileSync(join(dir, 'manifest.json'), JSON.stringify({ kind: 'twlac-demo', twlac: TWLAC_VERSION, files }, null, 1));
}

/** Greedy decoding on the WebGPU runtime; a missing adapter (or a refusal) is reported, not thrown. */
async function webgpuGreedy(compiledDir: string, prompt: Int32Array, maxTokens: number, decode: (ids: number[]) => string): Promise<WebgpuResult> {
  try {
    const { runWebgpuDecode } = await import('./runtime/webgpu/cli.ts');
    const ids = await runWebgpuDecode(compiledDir, prompt, maxTokens);
    return { ids, text: decode(ids) };
  } catch (e) {
    if (e instanceof UserError) return { unavailable: e.message };
    throw e;
  }
}

async function demo(outDir: string, progress: Progress, t0: number): Promise<DemoSummary> {
  const s = DEMO_SETTINGS;
  const files = demoFiles();
  for (const f of Object.values(files)) {
    if (!existsSync(f)) throw new UserError(`twlac demo: missing ${relative(REPO_ROOT, f)} (it ships with twlac; reinstall, or run scripts/make-demo-data.sh in a clone)`);
  }
  const model = readDemoModelInfo(files);

  const sourceDir = join(outDir, 'source');
  const sourceModel = join(sourceDir, 'model.onnx');
  const tokenizer = join(sourceDir, 'tokenizer.json');
  mkdirSync(sourceDir);
  copyFileSync(files.model, sourceModel);
  copyFileSync(files.tokenizer, tokenizer);

  const tok = loadTokenizer(tokenizer);
  progress.start('tokenizing demo/data (calibration: trained-on text; held out: never trained on)');
  const calibIds = tok.encode(readFileSync(files.calibration, 'utf8'));
  const evalIds = tok.encode(readFileSync(files.heldOut, 'utf8'));
  progress.done(`${calibIds.length} calibration, ${evalIds.length} held-out tokens`);
  const calib = calibrationSegments(calibIds, { samples: s.calibSamples, seq: s.calibSeq, seed: 0 });

  const compiledDir = join(outDir, 'compiled');
  const { manifest } = await compileToDir(sourceModel, compiledDir, { weights: 'twla', calib }, progress, { tokenizer });

  const ppl = async (path: string, label: string) => {
    progress.start(`perplexity (${label})`, s.evalWindows);
    let last = 0;
    const r = await evaluatePerplexity(path, evalIds, {
      maxWindows: s.evalWindows,
      onProgress: (done) => {
        progress.tick(done - last);
        last = done;
      },
    });
    progress.done(`ppl ${r.ppl.toFixed(3)}`);
    return r;
  };
  const src = await ppl(sourceModel, 'source');
  const cmp = await ppl(join(compiledDir, 'model.onnx'), 'compiled');

  progress.start('greedy generation (onnxruntime, then the WebGPU runtime)');
  const prompt = tok.encode(s.prompt);
  const sourceIds = Array.from(await generate(sourceModel, prompt, s.maxTokens));
  const compiledIds = Array.from(await generate(join(compiledDir, 'model.onnx'), prompt, s.maxTokens));
  const webgpu = await webgpuGreedy(compiledDir, prompt, s.maxTokens, (ids) => tok.decode(ids));
  progress.done();

  return {
    outDir,
    sourceModel,
    compiledDir,
    model,
    bitsPerWeight: manifest.bitsPerWeight,
    onnxBitsPerWeight: manifest.onnx?.bitsPerWeight,
    sourcePpl: src.ppl,
    compiledPpl: cmp.ppl,
    evalWindows: src.windows,
    evalTokens: src.tokens,
    prompt: s.prompt,
    sourceIds,
    sourceText: tok.decode(sourceIds),
    compiledIds,
    compiledText: tok.decode(compiledIds),
    webgpu,
    seconds: (performance.now() - t0) / 1000,
  };
}

/** How the WebGPU tokens compare with onnxruntime's on the same compiled model. */
function webgpuAgreement(ort: number[], gpu: number[]): string {
  const i = ort.findIndex((t, k) => gpu[k] !== t);
  if (i < 0 && gpu.length === ort.length) return `the same ${ort.length} tokens as onnxruntime`;
  return `differs from onnxruntime from token ${i < 0 ? ort.length : i}`;
}

export function formatSummary(d: DemoSummary): string {
  const q = (t: string) => JSON.stringify(t);
  const m = d.model;
  const gpu = 'unavailable' in d.webgpu ? [`    compiled, WebGPU:      not run: ${d.webgpu.unavailable}`] : [`    compiled, WebGPU:      ${q(d.webgpu.text)} (${webgpuAgreement(d.compiledIds, d.webgpu.ids)})`];
  return [
    `twlac demo: ${d.sourceModel} → ${d.compiledDir}/ in ${d.seconds.toFixed(1)}s`,
    `  model: LLaMA, ${m.layers} blocks, hidden ${m.hidden}, byte vocabulary ${m.vocab}, ${(m.params / 1e6).toFixed(2)} M parameters, trained on the Python documentation (scripts/train-demo-cpu.py)`,
    `  weights: ${d.bitsPerWeight.toFixed(3)} bits/weight in weights.bin` + (d.onnxBitsPerWeight !== undefined ? `, ${d.onnxBitsPerWeight.toFixed(3)} in model.onnx` : ''),
    `  held-out perplexity (demo/data/heldout.txt, never trained on: ${d.evalWindows} windows of 256 bytes; uniform would be ${m.vocab}): source ${d.sourcePpl.toFixed(3)}, compiled ${d.compiledPpl.toFixed(3)} (×${(d.compiledPpl / d.sourcePpl).toFixed(3)})`,
    `  greedy, ${d.compiledIds.length} tokens from ${q(d.prompt)}:`,
    `    source, onnxruntime:   ${q(d.sourceText)}`,
    `    compiled, onnxruntime: ${q(d.compiledText)}`,
    ...gpu,
    `  report: ${join(d.compiledDir, 'report.html')}`,
    `  try: twlac run ${d.compiledDir} --backend webgpu --prompt ${q(d.prompt)} --max-tokens 64`,
    '',
  ].join('\n');
}
