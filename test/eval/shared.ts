// Where the shared fixture lives (../shared relative to the repo root), and whether it is there.
import { existsSync } from 'node:fs';
import { dirname, join, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';

export const REPO_ROOT = resolve(dirname(fileURLToPath(import.meta.url)), '../..');
export const SHARED = resolve(REPO_ROOT, '../shared');
export const MODELS = {
  fp32: join(SHARED, 'models/pydocs-llama-12m/model.onnx'),
  kv: join(SHARED, 'models/pydocs-llama-12m-kv-fp16/model.onnx'),
  fused: join(SHARED, 'models/pydocs-llama-12m-fused-fp16/model.onnx'),
};
export const TOKENIZER = join(SHARED, 'models/pydocs-llama-12m/tokenizer.json');
export const REPORT = join(SHARED, 'models/pydocs-llama-12m/report.json');
export const DEV = join(SHARED, 'data/pydocs/dev.txt');
export const TRAIN = join(SHARED, 'data/pydocs/train.txt');

export const haveShared = [...Object.values(MODELS), TOKENIZER, REPORT, DEV].every((p) => existsSync(p));
if (!haveShared) console.warn(`skipping fixture tests: shared data not found under ${SHARED}`);
