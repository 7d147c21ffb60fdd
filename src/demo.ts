// `twlac demo`: the main job on a model that a fresh clone can make by itself, no ../shared.
//
// 1. The model: a small torch-style LLaMA (decomposed RMSNorm, 2 blocks, hidden 128, byte
//    vocabulary of 256) from the fixture generator, with a byte-level BPE tokenizer.json whose
//    ids are the UTF-8 bytes themselves (no merges). Its blocks keep their seeded random
//    weights, scaled down so they perturb the residual stream rather than own it; the
//    embeddings and lm_head carry a byte bigram model of the calibration corpus, so the text
//    it writes is not uniform noise (it is a bigram model, not a trained transformer):
//      L[c, n] = log((count[c,n] + α·u[n]) / (count[c] + α)),  u = add-one unigram,
//      L̄ = L with each row's mean removed (softmax ignores it),
//      L̄ ≈ A·Vᵀ,  V = top r = hidden−1 eigenvectors of L̄ᵀL̄,  A = L̄·V  (best rank-r fit),
//      E[t] = k·[A_t, p_t],  p_t = √(C − |A_t|²),  C = maxₜ |A_t|²,  k = √(hidden / C),
//    so every embedding row has RMS exactly 1, the final RMSNorm (γ = 1) leaves it as is, and
//    lm_head = [V, 0] / k gives logits(t) = A_t·Vᵀ = rank-r L̄[t].
// 2. The compile: `--weights twla` with small calibration settings, on text every clone has:
//    README.md (if present) followed by src/**/*.ts (sorted paths); the bigram counts the whole
//    corpus, the 16 calibration segments of 256 tokens come from its first 60,000 characters.
//    Held-out evaluation text is a different set of files, test/**/*.ts (24 windows of 256
//    from its start), never used for the bigram or the calibration. The demo model therefore
//    changes when src/ does; for one checkout it is deterministic.
// 3. The summary: bits/weight, held-out perplexity of source and compiled, a greedy sample.
import { existsSync, mkdirSync, readFileSync, readdirSync, statSync, writeFileSync } from 'node:fs';
import { dirname, join, relative, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';
import { makeTinyLlama, type TinyLlamaOptions } from './graph/synthetic-llama.ts';
import type { Model } from './graph/ir.ts';
import { saveModel } from './graph/onnx.ts';
import { Tensor } from './graph/tensor.ts';
import { type Progress, silentProgress } from './graph/pass.ts';
import { UserError } from './errors.ts';
import { compileToDir } from './compile.ts';
import { calibrationSegments } from './calib/data.ts';
import { loadTokenizer, type TextTokenizer } from './eval/tokenizer.ts';
import { evaluatePerplexity } from './eval/perplexity.ts';
import { generate } from './eval/generate.ts';
import { withAtomicDir } from './util/atomic-dir.ts';
import { TWLAC_VERSION } from './artifact/build.ts';

/** The demo model's shape. The kernel format's group of 128 needs every in-features a multiple of 128. */
export const DEMO_MODEL: TinyLlamaOptions = { layers: 2, hidden: 128, heads: 4, kvHeads: 2, intermediate: 256, vocab: 256, seed: 7 };

/** Factor on the blocks' output projections (o_proj, down_proj): the blocks perturb, the bigram leads. */
export const BLOCK_OUTPUT_SCALE = 0.05;

/** Calibration and evaluation sizes that keep the demo well under a minute on 2 cores. */
export const DEMO_SETTINGS = {
  calibSamples: 16,
  calibSeq: 256,
  calibChars: 60_000,
  evalChars: 30_000,
  evalWindows: 24,
  prompt: 'export function ',
  maxTokens: 48,
};

/** The repository root (this file is src/demo.ts). */
export const REPO_ROOT = resolve(dirname(fileURLToPath(import.meta.url)), '..');

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
// Corpus: files every clone has.

function listFiles(dir: string, ext: string): string[] {
  const out: string[] = [];
  const walk = (d: string) => {
    for (const e of readdirSync(d, { withFileTypes: true }).sort((a, b) => (a.name < b.name ? -1 : a.name > b.name ? 1 : 0))) {
      const p = join(d, e.name);
      if (e.isDirectory()) walk(p);
      else if (e.isFile() && e.name.endsWith(ext)) out.push(p);
    }
  };
  if (existsSync(dir)) walk(dir);
  return out;
}

export interface DemoCorpus {
  /** Repository-relative paths, in order. */
  files: string[];
  text: string;
}

/** Calibration (and bigram) text: README.md then src/**\/*.ts; held-out text: test/**\/*.ts. */
export function demoCorpora(root = REPO_ROOT): { calibration: DemoCorpus; heldOut: DemoCorpus } {
  const read = (files: string[]): DemoCorpus => ({
    files: files.map((f) => relative(root, f)),
    text: files.map((f) => readFileSync(f, 'utf8')).join('\n'),
  });
  const readme = join(root, 'README.md');
  const calibration = read([...(existsSync(readme) ? [readme] : []), ...listFiles(join(root, 'src'), '.ts')]);
  const heldOut = read(listFiles(join(root, 'test'), '.ts'));
  if (calibration.text.length < 10_000 || heldOut.text.length < 10_000) {
    throw new UserError(`twlac demo needs the repository's own README.md, src/ and test/ beside ${root} (found too little text)`);
  }
  return { calibration, heldOut };
}

// ---------------------------------------------------------------------------------------
// Bigram → embeddings and lm_head.

/** Row-centred bigram log-probabilities L̄ [vocab, vocab] (row = current byte, column = next). */
export function bigramLogits(bytes: Uint8Array, vocab = 256, alpha = 1): Float64Array {
  const count = new Float64Array(vocab * vocab);
  const uni = new Float64Array(vocab).fill(1);
  for (let i = 0; i + 1 < bytes.length; i++) count[bytes[i] * vocab + bytes[i + 1]]++;
  for (const b of bytes) uni[b]++;
  const uniSum = uni.reduce((a, b) => a + b, 0);
  const L = new Float64Array(vocab * vocab);
  for (let c = 0; c < vocab; c++) {
    let rowSum = 0;
    for (let n = 0; n < vocab; n++) rowSum += count[c * vocab + n];
    let mean = 0;
    for (let n = 0; n < vocab; n++) {
      const v = Math.log((count[c * vocab + n] + (alpha * uni[n]) / uniSum) / (rowSum + alpha));
      L[c * vocab + n] = v;
      mean += v / vocab;
    }
    for (let n = 0; n < vocab; n++) L[c * vocab + n] -= mean;
  }
  return L;
}

/**
 * Eigen-decomposition of a symmetric n×n matrix by cyclic Jacobi rotations. Returns the
 * eigenvalues in descending order and the eigenvectors as the columns of `vectors` (row-major).
 */
export function symmetricEigen(a: Float64Array, n: number, tol = 1e-12, maxSweeps = 50): { values: Float64Array; vectors: Float64Array } {
  const A = Float64Array.from(a);
  const V = new Float64Array(n * n);
  for (let i = 0; i < n; i++) V[i * n + i] = 1;
  let scale = 0;
  for (let i = 0; i < n * n; i++) scale += A[i] * A[i];
  for (let sweep = 0; sweep < maxSweeps; sweep++) {
    let off = 0;
    for (let p = 0; p < n; p++) for (let q = p + 1; q < n; q++) off += A[p * n + q] ** 2;
    if (off <= tol * tol * scale) break;
    for (let p = 0; p < n; p++) {
      for (let q = p + 1; q < n; q++) {
        const apq = A[p * n + q];
        if (Math.abs(apq) < 1e-300) continue;
        // Rotation angle zeroing A[p][q]: tan 2θ = 2apq / (aqq − app).
        const theta = (A[q * n + q] - A[p * n + p]) / (2 * apq);
        const t = Math.sign(theta || 1) / (Math.abs(theta) + Math.sqrt(theta * theta + 1));
        const c = 1 / Math.sqrt(t * t + 1);
        const s = t * c;
        for (let k = 0; k < n; k++) {
          const akp = A[k * n + p];
          const akq = A[k * n + q];
          A[k * n + p] = c * akp - s * akq;
          A[k * n + q] = s * akp + c * akq;
        }
        for (let k = 0; k < n; k++) {
          const apk = A[p * n + k];
          const aqk = A[q * n + k];
          A[p * n + k] = c * apk - s * aqk;
          A[q * n + k] = s * apk + c * aqk;
        }
        for (let k = 0; k < n; k++) {
          const vkp = V[k * n + p];
          const vkq = V[k * n + q];
          V[k * n + p] = c * vkp - s * vkq;
          V[k * n + q] = s * vkp + c * vkq;
        }
      }
    }
  }
  const order = Array.from({ length: n }, (_, i) => i).sort((i, j) => A[j * n + j] - A[i * n + i]);
  const values = Float64Array.from(order, (i) => A[i * n + i]);
  const vectors = new Float64Array(n * n);
  for (let k = 0; k < n; k++) for (let r = 0; r < n; r++) vectors[r * n + k] = V[r * n + order[k]];
  return { values, vectors };
}

/**
 * Embedding table E [vocab, hidden] and lm_head H [vocab, hidden] (row per output token) with
 * rms(E[t]) = 1 and H·E[t] = the best rank-(hidden−1) approximation of row t of `logits`.
 */
export function bigramEmbeddings(logits: Float64Array, vocab: number, hidden: number): { embed: Float32Array; head: Float32Array } {
  const r = Math.min(hidden - 1, vocab);
  const G = new Float64Array(vocab * vocab);
  for (let i = 0; i < vocab; i++) {
    for (let j = i; j < vocab; j++) {
      let s = 0;
      for (let c = 0; c < vocab; c++) s += logits[c * vocab + i] * logits[c * vocab + j];
      G[i * vocab + j] = G[j * vocab + i] = s;
    }
  }
  // Relative off-diagonal 1e-9: the eigenvalues past the text's ~100 distinct bytes are ~1e-9 of the largest.
  const { vectors } = symmetricEigen(G, vocab, 1e-9);
  const A = new Float64Array(vocab * r);
  for (let t = 0; t < vocab; t++) {
    for (let k = 0; k < r; k++) {
      let s = 0;
      for (let n = 0; n < vocab; n++) s += logits[t * vocab + n] * vectors[n * vocab + k];
      A[t * r + k] = s;
    }
  }
  const norms = Array.from({ length: vocab }, (_, t) => {
    let s = 0;
    for (let k = 0; k < r; k++) s += A[t * r + k] ** 2;
    return s;
  });
  const C = Math.max(...norms) * (1 + 1e-6) + 1e-12;
  const k = Math.sqrt(hidden / C);
  const embed = new Float32Array(vocab * hidden);
  const head = new Float32Array(vocab * hidden);
  for (let t = 0; t < vocab; t++) {
    for (let j = 0; j < r; j++) embed[t * hidden + j] = k * A[t * r + j];
    embed[t * hidden + r] = k * Math.sqrt(C - norms[t]);
    for (let j = 0; j < r; j++) head[t * hidden + j] = vectors[t * vocab + j] / k;
  }
  return { embed, head };
}

function setInitializer(model: Model, name: string, f: (old: Float32Array, dims: readonly number[]) => Float32Array): void {
  const v = model.graph.initializers.get(name);
  if (!v?.constValue) throw new Error(`demo model has no initializer ${name}`);
  const dims = v.constValue.dims;
  v.constValue = Tensor.fromFloat32(dims, f(v.constValue.toFloat32(), dims));
}

/** The demo model: the fixture LLaMA with a bigram of `corpus` in its embeddings and head. */
export function makeDemoModel(corpus: Uint8Array, opts: TinyLlamaOptions = DEMO_MODEL, blockScale = BLOCK_OUTPUT_SCALE): Model {
  const o = { ...DEMO_MODEL, ...opts, norm: 'decomposed' as const, linear: 'matmul' as const, names: 'hf' as const, weightDtype: 'float32' as const };
  const vocab = o.vocab!;
  const hidden = o.hidden!;
  const model = makeTinyLlama(o);
  const { embed, head } = bigramEmbeddings(bigramLogits(corpus, vocab), vocab, hidden);
  setInitializer(model, 'model.embed_tokens.weight', () => embed);
  // MatMul style stores lm_head as [hidden, vocab] (x·Wᵀ with W = head [vocab, hidden]).
  setInitializer(model, 'lm_head.weight', () => {
    const t = new Float32Array(hidden * vocab);
    for (let v = 0; v < vocab; v++) for (let h = 0; h < hidden; h++) t[h * vocab + v] = head[v * hidden + h];
    return t;
  });
  setInitializer(model, 'model.norm.weight', (g) => g.fill(1));
  for (let l = 0; l < o.layers!; l++) {
    for (const w of ['self_attn.o_proj.weight', 'mlp.down_proj.weight']) {
      setInitializer(model, `model.layers.${l}.${w}`, (W) => W.map((x) => x * blockScale));
    }
  }
  return model;
}

// ---------------------------------------------------------------------------------------
// The demo.

export interface DemoSummary {
  outDir: string;
  sourceModel: string;
  compiledDir: string;
  bitsPerWeight: number;
  onnxBitsPerWeight?: number;
  sourcePpl: number;
  compiledPpl: number;
  evalTokens: number;
  prompt: string;
  sourceText: string;
  compiledText: string;
  seconds: number;
}

/**
 * Write `<out>/source/` (model.onnx, tokenizer.json) and compile it to `<out>/compiled/`; print
 * a summary on stdout. `<out>` is written atomically (a failed run leaves nothing); `force`
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

async function demo(outDir: string, progress: Progress, t0: number): Promise<DemoSummary> {
  const s = DEMO_SETTINGS;
  progress.start('reading the demo corpora (README.md + src/**/*.ts; held out: test/**/*.ts)');
  const { calibration, heldOut } = demoCorpora();
  progress.done(`${calibration.files.length} + ${heldOut.files.length} files`);

  const sourceDir = join(outDir, 'source');
  const sourceModel = join(sourceDir, 'model.onnx');
  progress.start('generating the demo model (byte bigram in embeddings and lm_head)');
  mkdirSync(sourceDir);
  saveModel(makeDemoModel(Buffer.from(calibration.text, 'utf8')), sourceModel);
  writeFileSync(join(sourceDir, 'tokenizer.json'), JSON.stringify(byteTokenizerJson()));
  progress.done();

  const tok: TextTokenizer = loadTokenizer(join(sourceDir, 'tokenizer.json'));
  progress.start('tokenizing');
  const calibIds = tok.encode(calibration.text.slice(0, s.calibChars));
  const evalIds = tok.encode(heldOut.text.slice(0, s.evalChars));
  progress.done(`${calibIds.length} calibration, ${evalIds.length} held-out tokens`);
  const calib = calibrationSegments(calibIds, { samples: s.calibSamples, seq: s.calibSeq, seed: 0 });

  const compiledDir = join(outDir, 'compiled');
  const { manifest } = await compileToDir(sourceModel, compiledDir, { weights: 'twla', calib }, progress, { tokenizer: join(sourceDir, 'tokenizer.json') });

  const ppl = async (model: string, label: string) => {
    progress.start(`perplexity (${label})`, s.evalWindows);
    let last = 0;
    const r = await evaluatePerplexity(model, evalIds, {
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
  progress.start('greedy generation');
  const prompt = tok.encode(s.prompt);
  const sourceText = tok.decode(await generate(sourceModel, prompt, s.maxTokens));
  const compiledText = tok.decode(await generate(join(compiledDir, 'model.onnx'), prompt, s.maxTokens));
  progress.done();

  const summary: DemoSummary = {
    outDir,
    sourceModel,
    compiledDir,
    bitsPerWeight: manifest.bitsPerWeight,
    onnxBitsPerWeight: manifest.onnx?.bitsPerWeight,
    sourcePpl: src.ppl,
    compiledPpl: cmp.ppl,
    evalTokens: src.tokens,
    prompt: s.prompt,
    sourceText,
    compiledText,
    seconds: (performance.now() - t0) / 1000,
  };
  return summary;
}

export function formatSummary(d: DemoSummary): string {
  const q = (t: string) => JSON.stringify(t);
  return [
    `twlac demo: ${d.sourceModel} → ${d.compiledDir}/ in ${d.seconds.toFixed(1)}s`,
    `  model: LLaMA, ${DEMO_MODEL.layers} blocks, hidden ${DEMO_MODEL.hidden}, byte vocabulary ${DEMO_MODEL.vocab}; random blocks, byte-bigram embeddings/lm_head: not a trained LM, so greedy text soon loops`,
    `  weights: ${d.bitsPerWeight.toFixed(3)} bits/weight in weights.bin` + (d.onnxBitsPerWeight !== undefined ? `, ${d.onnxBitsPerWeight.toFixed(3)} in model.onnx` : ''),
    `  held-out perplexity (test/**/*.ts, ${d.evalTokens} tokens; uniform would be ${DEMO_MODEL.vocab}): source ${d.sourcePpl.toFixed(3)}, compiled ${d.compiledPpl.toFixed(3)}`,
    `  greedy from ${q(d.prompt)}:`,
    `    source:   ${q(d.sourceText)}`,
    `    compiled: ${q(d.compiledText)}`,
    `  try: twlac run ${d.compiledDir} --prompt ${q(d.prompt)} --max-tokens 32`,
    '',
  ].join('\n');
}
