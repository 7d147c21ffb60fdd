// Perplexity against bits per weight for `twlac MODEL -o OUT --eval TEXT`: the source model,
// a round-to-nearest ternary compile of it (per-row absmean, no calibration: the baseline
// TWLA has to beat) and this compile, all three run by onnxruntime on the same windows of
// held-out text under EVAL.md's protocol (evaluatePerplexity). Bits per weight come from
// bytes: the source linears' initializers, and each compile's weights.bin.
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import type { Progress } from '../graph/pass.ts';
import { loadModel } from '../graph/onnx.ts';
import { constTensor, recognize } from '../graph/recognize.ts';
import type { PplVsBits } from '../artifact/manifest.ts';
import { evaluatePerplexity } from './perplexity.ts';

export interface EvalRequest {
  /** Held-out text's token ids (never used for calibration or any search). */
  ids: Int32Array;
  /** What the text is, for the report (e.g. its file name). */
  text: string;
  /** Evaluate only the first windows (default: all). */
  maxWindows?: number;
}

/** Bits per weight of the source's quantisable linears (every recognised linear but the lm_head), from their initializers' bytes. */
export function sourceBitsPerWeight(modelPath: string): number {
  const s = recognize(loadModel(modelPath));
  let bits = 0;
  let n = 0;
  for (const l of s.linears) {
    if (l.role === 'lm_head') continue;
    const t = constTensor(l.weight);
    if (!t) continue;
    bits += t.byteLength * 8;
    n += l.outFeatures * l.inFeatures;
  }
  return n ? bits / n : 0;
}

/**
 * Evaluate the source, an RTN-ternary compile (made by `compileRtn` into a temporary folder,
 * removed afterwards) and this compile (`compiled`: its model.onnx and weights.bin bits).
 */
export async function pplVsBits(
  req: EvalRequest,
  source: string,
  compiled: { onnx: string; bitsPerWeight: number },
  compileRtn: (outDir: string) => Promise<{ bitsPerWeight: number }>,
  progress: Progress,
): Promise<PplVsBits> {
  const t0 = performance.now();
  const ppl = async (model: string, label: string) => {
    let last = 0;
    const r = await evaluatePerplexity(model, req.ids, {
      maxWindows: req.maxWindows,
      onProgress: (done, total) => {
        if (done === 0) progress.start(`perplexity (${label})`, total);
        progress.tick(done - last);
        last = done;
      },
    });
    progress.done(`ppl ${r.ppl.toFixed(3)}`);
    return r;
  };
  const src = await ppl(source, 'source');
  const tmp = mkdtempSync(join(tmpdir(), 'twlac-rtn-'));
  let rtn: { ppl: number; bitsPerWeight: number };
  try {
    progress.start('RTN-ternary compile (the baseline)');
    const { bitsPerWeight } = await compileRtn(join(tmp, 'rtn'));
    progress.done();
    rtn = { ppl: (await ppl(join(tmp, 'rtn', 'model.onnx'), 'rtn-ternary')).ppl, bitsPerWeight };
  } finally {
    rmSync(tmp, { recursive: true, force: true });
  }
  const out = await ppl(compiled.onnx, 'this compile');
  return {
    text: req.text,
    windows: src.windows,
    windowSize: src.windowSize,
    tokens: src.tokens,
    seconds: (performance.now() - t0) / 1000,
    points: [
      { model: 'source', bitsPerWeight: sourceBitsPerWeight(source), ppl: src.ppl },
      { model: 'rtn-ternary', ...rtn },
      { model: 'compiled', bitsPerWeight: compiled.bitsPerWeight, ppl: out.ppl },
    ],
  };
}
