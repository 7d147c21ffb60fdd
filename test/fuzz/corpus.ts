// The well-formed inputs every fuzz case starts from, written once per run: a tiny LLaMA
// (test/fixtures/make-fixtures.ts) with its weights in external data and a copy with every
// tensor inline, in two export styles, with a byte-level tokenizer.json, a config.json that
// agrees with the model, and calibration text. Each case copies what it needs and damages it.
import { copyFileSync, mkdirSync, readdirSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { makeTinyLlama, type TinyLlamaOptions } from '../fixtures/make-fixtures.ts';
import { saveModel } from '../../src/graph/onnx.ts';
import { byteTokenizerJson } from '../../src/demo.ts';
import { wordText } from '../cli/word-text.ts';

/** Export styles the semantic cases draw from: the torch-style decomposed norms, and onnxruntime's fused norms (ε as an attribute). */
export const STYLES: Record<string, TinyLlamaOptions> = {
  torch: { seed: 4 },
  fused: { seed: 5, norm: 'simplified', linear: 'matmul-transposed' },
};
export type Style = keyof typeof STYLES;

export interface Corpus {
  root: string;
  /** `<root>/<style>-ext/`: model.onnx + model.onnx.data + tokenizer.json + config.json. */
  extDir(style: Style): string;
  /** `<root>/<style>-inline/`: one model.onnx holding every tensor, tokenizer.json, config.json. */
  inlineDir(style: Style): string;
  tokenizerJson: string;
  configJson: Record<string, unknown>;
  calibPath: string;
  /** A bigger model (a compile that lasts long enough to be interrupted). */
  slowDir: string;
}

export function buildCorpus(root: string): Corpus {
  mkdirSync(root, { recursive: true });
  const tokenizerJson = JSON.stringify(byteTokenizerJson());
  const configJson = { model_type: 'llama', vocab_size: 256, hidden_size: 64, num_attention_heads: 4, num_key_value_heads: 2, max_position_embeddings: 128, rope_theta: 10000, rms_norm_eps: 1e-5 };
  const extras = (dir: string) => {
    writeFileSync(join(dir, 'tokenizer.json'), tokenizerJson);
    writeFileSync(join(dir, 'config.json'), JSON.stringify(configJson));
  };
  for (const [style, opts] of Object.entries(STYLES)) {
    for (const kind of ['ext', 'inline'] as const) {
      const dir = join(root, `${style}-${kind}`);
      mkdirSync(dir, { recursive: true });
      saveModel(makeTinyLlama(opts), join(dir, 'model.onnx'), kind === 'inline' ? { externalData: false } : {});
      extras(dir);
    }
  }
  const slowDir = join(root, 'slow');
  mkdirSync(slowDir, { recursive: true });
  saveModel(makeTinyLlama({ seed: 6, hidden: 512, intermediate: 1536, heads: 8, kvHeads: 4, layers: 6 }), join(slowDir, 'model.onnx'));
  writeFileSync(join(slowDir, 'tokenizer.json'), tokenizerJson);
  const calibPath = join(root, 'calib.txt');
  writeFileSync(calibPath, wordText(3000, 5));
  return {
    root,
    extDir: (s) => join(root, `${s}-ext`),
    inlineDir: (s) => join(root, `${s}-inline`),
    tokenizerJson,
    configJson,
    calibPath,
    slowDir,
  };
}

/** Copy every file of `from` into `to` (created). */
export function copyDir(from: string, to: string): void {
  mkdirSync(to, { recursive: true });
  for (const f of readdirSync(from)) copyFileSync(join(from, f), join(to, f));
}
