// Which transforms for post-norm blocks? Gemma-2's and OLMo-2's post-norm γ sits between
// o_proj/down_proj and the residual add, so a rotation of the residual stream cannot be folded
// through it (R·diag(γ)·rms(y) is not a per-channel scaling of rms(R·y)); it would need an explicit
// hidden×hidden transform after every post-norm. twlac's transforms are input-side instead: one
// online Kronecker transform per linear input (W′ = W·Kᵀ, x′ = K·x), exact whatever surrounds
// the linear, with the o_proj input's per-head part folded into v_proj. This bench measures that
// choice against no rotation (and against leaving o_proj's transform online) on small trained
// Gemma-2- and OLMo-2-shaped models (scripts/families/train-postnorm.py): perplexity (EVAL.md
// protocol, windows of 256 bytes) on held-out dev.txt, calibration from train.txt only.
// Models: SECONDS_EACH=600 /usr/bin/python3 scripts/families/train-postnorm.py ../shared/data/pydocs/train.txt MODELS_DIR
// Usage: npm run bench:postnorm -- MODELS_DIR [--windows 40] [--json bench/results/postnorm-transforms.json]
import { mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { execSync } from 'node:child_process';
import { tmpdir } from 'node:os';
import { join, resolve } from 'node:path';
import { calibrationSegments } from '../src/calib/data.ts';
import { compileToDir, type CompileOptions } from '../src/compile.ts';
import { evaluatePerplexity } from '../src/eval/perplexity.ts';

const args = process.argv.slice(2);
const modelsDir = args[0];
const flag = (name: string, dflt: string) => (args.includes(name) ? args[args.indexOf(name) + 1] : dflt);
const windows = Number(flag('--windows', '40'));
const jsonOut = args.includes('--json') ? flag('--json', '') : undefined;
const shared = resolve(import.meta.dirname, '../../shared');
// byte vocabulary: token id = byte
const bytes = (file: string, n: number) => Int32Array.from(readFileSync(file).subarray(0, n));
const train = bytes(`${shared}/data/pydocs/train.txt`, 400_000);
const dev = bytes(`${shared}/data/pydocs/dev.txt`, windows * 256 + 1);
const calib = calibrationSegments(train, { samples: 16, seq: 256, seed: 0 });

const CHOICES: Record<string, Partial<CompileOptions>> = {
  'online transforms at every linear input, o_proj part folded into v_proj (default)': {},
  'online transforms at every linear input, none folded': { fuse: false },
  'no rotation (pre-norm γ folded only)': { rotate: false },
};
const ACTS: Record<string, CompileOptions['acts']> = { 'W1.58A16': { kind: 'none' }, 'W1.58A4 (mp:4)': { kind: 'mp', budget: 4 } };

const tmp = mkdtempSync(join(tmpdir(), 'twlac-postnorm-'));
const records: { model: string; choice: string; acts: string; ppl: number }[] = [];
try {
  for (const name of ['gemma2', 'olmo2']) {
    const src = join(modelsDir, name, 'model.onnx');
    const source = (await evaluatePerplexity(src, dev, { maxWindows: windows })).ppl;
    records.push({ model: name, choice: 'source (fp32)', acts: '-', ppl: source });
    console.log(name, 'source', source.toFixed(3));
    for (const [acts, spec] of Object.entries(ACTS)) {
      for (const [choice, opts] of Object.entries(CHOICES)) {
        const out = join(tmp, `${name}-${records.length}`);
        await compileToDir(src, out, { calib, acts: spec, ...opts });
        const ppl = (await evaluatePerplexity(join(out, 'model.onnx'), dev, { maxWindows: windows })).ppl;
        records.push({ model: name, choice, acts, ppl });
        console.log(name, acts, choice, ppl.toFixed(3));
      }
    }
  }
} finally {
  rmSync(tmp, { recursive: true, force: true });
}
if (jsonOut) {
  const commit = execSync('git rev-parse --short HEAD', { cwd: import.meta.dirname }).toString().trim();
  const training = JSON.parse(readFileSync(join(modelsDir, 'train-report.json'), 'utf8'));
  writeFileSync(jsonOut, JSON.stringify({ date: new Date().toISOString().slice(0, 10), commit, windows, windowSize: 256, evalText: 'data/pydocs/dev.txt (bytes)', calib: 'data/pydocs/train.txt (16 × 256 bytes)', training, records }, null, 1));
}
