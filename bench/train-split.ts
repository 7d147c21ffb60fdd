// The selection split the settings benchmarks share (bench/refine-select.ts,
// bench/order2-select.ts): calibration from the first 90 % of the fixture's train.txt, held-out
// perplexity on its last 10 %, so no setting is chosen on dev.txt.
import { readFileSync } from 'node:fs';
import { join, resolve } from 'node:path';
import { calibrationSegmentsFromText } from '../src/calib/data.ts';
import { loadTokenizer, tokenizeText } from '../src/eval/tokenizer.ts';
import { loadModel } from '../src/graph/onnx.ts';

export const SHARED = resolve(import.meta.dirname, '..', '../shared');

export function trainSplit() {
  const tok = loadTokenizer(join(SHARED, 'models/pydocs-llama-12m/tokenizer.json'));
  const train = readFileSync(join(SHARED, 'data/pydocs/train.txt'), 'utf8');
  const cut = Math.floor(train.length * 0.9);
  return {
    calib: calibrationSegmentsFromText(train.slice(0, cut), tok.encode, { samples: 128, seq: 512, seed: 0 }),
    heldOut: tokenizeText(tok, train.slice(cut)),
    model: loadModel(join(SHARED, 'models/pydocs-llama-12m/model.onnx')),
  };
}
