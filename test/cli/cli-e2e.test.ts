// The `twlac` command line end to end, as a child process (`node bin/twlac.js ...`):
// - bad input: exit code non-zero, stderr exactly one `twlac: error:` line naming the problem,
//   nothing on stdout, and no `-o` directory (nor its hidden temporary sibling) afterwards;
// - inspect / eval / run: their stdout contracts, with eval and run checked against a float64
//   bigram oracle (test/cli/bigram-model.ts: with its blocks silenced the model computes
//   exactly the bigram held in its embeddings and lm_head). `twlac demo`: test/cli/demo.test.ts.
import { spawn } from 'node:child_process';
import { copyFileSync, existsSync, mkdirSync, mkdtempSync, readFileSync, readdirSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { dirname, join, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { GPT_FAMILY_VARIANTS, makeTinyLlama } from '../fixtures/make-fixtures.ts';
import { saveModel } from '../../src/graph/onnx.ts';
import { GraphBuilder } from '../../src/graph/builder.ts';
import { Tensor } from '../../src/graph/tensor.ts';
import { byteTokenizerJson } from '../../src/demo.ts';
import { bigramEmbeddings, bigramLogits, makeBigramModel } from './bigram-model.ts';
import { loadTokenizer } from '../../src/eval/tokenizer.ts';
import { wordText } from './word-text.ts';

const REPO_ROOT = resolve(dirname(fileURLToPath(import.meta.url)), '../..');
const BIN = join(REPO_ROOT, 'bin/twlac.js');

interface Run {
  code: number | null;
  stdout: string;
  stderr: string;
}

function twlac(args: string[]): Promise<Run> {
  return new Promise((res, rej) => {
    const child = spawn(process.execPath, [BIN, ...args], { cwd: REPO_ROOT, env: { ...process.env, TWLAC_DEBUG: '' }, stdio: ['ignore', 'pipe', 'pipe'] });
    let stdout = '';
    let stderr = '';
    child.stdout.setEncoding('utf8').on('data', (d: string) => (stdout += d));
    child.stderr.setEncoding('utf8').on('data', (d: string) => (stderr += d));
    child.on('error', rej);
    child.on('close', (code) => res({ code, stdout, stderr }));
  });
}

const tmp = mkdtempSync(join(tmpdir(), 'twlac-cli-'));
afterAll(() => rmSync(tmp, { recursive: true, force: true }));
const f = (...p: string[]) => join(tmp, ...p);

const HIDDEN = 64;
/** Text the bigram model is built from (ASCII, few distinct bytes). */
const BIGRAM_TEXT = wordText(4000);

beforeAll(() => {
  const tokJson = JSON.stringify(byteTokenizerJson());
  // A well-formed tiny model (random weights) with external data and a tokenizer beside it.
  mkdirSync(f('good'));
  saveModel(makeTinyLlama({ hidden: HIDDEN, seed: 4 }), f('good', 'model.onnx'));
  writeFileSync(f('good', 'tokenizer.json'), tokJson);
  const onnx = readFileSync(f('good', 'model.onnx'));
  const data = readFileSync(f('good', 'model.onnx.data'));

  writeFileSync(f('calib.txt'), wordText(500));
  writeFileSync(f('calib-copy.txt'), wordText(500));
  writeFileSync(f('short.txt'), 'a few words, not 257 tokens');
  writeFileSync(f('not-onnx.onnx'), 'def main():\n    print("this is Python, not ONNX")\n');
  writeFileSync(f('empty.onnx'), '');
  mkdirSync(f('truncated'));
  writeFileSync(f('truncated', 'model.onnx'), onnx.subarray(0, Math.floor(onnx.length / 2)));
  writeFileSync(f('truncated', 'model.onnx.data'), data);
  mkdirSync(f('no-data'));
  copyFileSync(f('good', 'model.onnx'), f('no-data', 'model.onnx'));
  mkdirSync(f('short-data'));
  copyFileSync(f('good', 'model.onnx'), f('short-data', 'model.onnx'));
  writeFileSync(f('short-data', 'model.onnx.data'), data.subarray(0, data.length - 64));
  saveModel(makeTinyLlama({ hidden: HIDDEN, dropMlpOfBlock: 0 }), f('no-mlp.onnx'));
  // Heads of 64: a head size the CUDA attention kernels take.
  saveModel(makeTinyLlama({ hidden: HIDDEN, heads: 1, kvHeads: 1, slidingWindow: 4 }), f('sliding.onnx'));
  saveModel(makeTinyLlama({ ...GPT_FAMILY_VARIANTS.gpt2, hidden: 128, heads: 2, kvHeads: 2 }), f('gpt2.onnx'));
  const b = new GraphBuilder();
  const x = b.input('x', { dtype: 'float32', shape: [1, 8] });
  b.output(b.op('Relu', [b.op('MatMul', [x, b.f32('w', [8, 8], new Float32Array(64).fill(0.5))])]), 'y');
  saveModel(b.model(18), f('relu.onnx'));
  const nan = makeTinyLlama({ hidden: HIDDEN, seed: 4 });
  const up = nan.graph.initializers.get('model.layers.1.mlp.up_proj.weight')!;
  const w = up.constValue!.toFloat32().slice();
  w[7] = Number.NaN;
  up.constValue = Tensor.fromFloat32(up.constValue!.dims, w);
  saveModel(nan, f('nan.onnx'));

  // The bigram model, its blocks silenced (output projections × 0).
  mkdirSync(f('bigram'));
  saveModel(makeBigramModel(Buffer.from(BIGRAM_TEXT, 'utf8'), { hidden: HIDDEN, intermediate: 128 }, 0), f('bigram', 'model.onnx'));
  writeFileSync(f('bigram', 'tokenizer.json'), tokJson);
  writeFileSync(f('held-out.txt'), wordText(600, 11));
});

/** Logits of the bigram model for current byte t, in float64 (final RMSNorm ε = 1e-5, γ = 1). */
function bigramOracle(): (t: number) => Float64Array {
  const { embed, head } = bigramEmbeddings(bigramLogits(Buffer.from(BIGRAM_TEXT, 'utf8'), 256), 256, HIDDEN);
  return (t) => {
    let ss = 0;
    for (let h = 0; h < HIDDEN; h++) ss += embed[t * HIDDEN + h] ** 2;
    const inv = 1 / Math.sqrt(ss / HIDDEN + 1e-5);
    const z = new Float64Array(256);
    for (let n = 0; n < 256; n++) for (let h = 0; h < HIDDEN; h++) z[n] += head[n * HIDDEN + h] * embed[t * HIDDEN + h] * inv;
    return z;
  };
}

function expectOneLineError(r: Run, out: string, ...mentions: (string | RegExp)[]): void {
  expect(r.code, r.stderr).not.toBe(0);
  expect(r.stdout).toBe('');
  const lines = r.stderr.split('\n').filter((l) => l !== '');
  expect(lines, r.stderr).toHaveLength(1);
  expect(lines[0]).toMatch(/^twlac: error: /);
  for (const m of mentions) expect(lines[0]).toMatch(m);
  expect(existsSync(out), `${out} left behind`).toBe(false);
  expect(readdirSync(dirname(out)).filter((n) => n.includes('twlac-tmp'))).toEqual([]);
}

describe('bad input: one line on stderr, non-zero exit, no output directory', () => {
  const cases: [string, () => string[], (string | RegExp)[]][] = [
    ['a file that is not ONNX', () => [f('not-onnx.onnx')], [/not an ONNX model/, 'not-onnx.onnx']],
    ['an empty file', () => [f('empty.onnx')], [/not an ONNX model/, /empty/]],
    ['a truncated model.onnx (its data file intact)', () => [f('truncated', 'model.onnx')], [/not an ONNX model/, /truncated|corrupt/, 'truncated/model.onnx']],
    ['a missing external data file', () => [f('no-data', 'model.onnx')], [/external data/, /missing/, 'model.onnx.data']],
    ['a short external data file', () => [f('short-data', 'model.onnx')], [/external data/, /too short/, 'model.onnx.data']],
    ['a block without an MLP', () => [f('no-mlp.onnx')], [/block 0/, /MLP/]],
    ['a graph with no transformer at all', () => [f('relu.onnx')], [/(transformer|embedding|Gather|recogn)/i]],
    ['a weight containing NaN', () => [f('nan.onnx')], [/non-finite/, 'model.layers.1.mlp.up_proj.weight']],
    ['a model file that does not exist', () => [f('nowhere.onnx')], [/not found/, 'nowhere.onnx']],
    ['--weights nope', () => [f('good', 'model.onnx'), '--weights', 'nope'], ['--weights', 'nope']],
    ['--acts 3', () => [f('good', 'model.onnx'), '--weights', 'rtn-ternary', '--acts', '3'], ['--acts', "'3'"]],
    ['--format xyz', () => [f('good', 'model.onnx'), '--format', 'xyz'], ['--format', 'xyz']],
    ['--weights twla without --calib', () => [f('good', 'model.onnx'), '--weights', 'twla'], ['--calib']],
    ['--calib-samples 0', () => [f('good', 'model.onnx'), '--calib-samples', '0'], ['--calib-samples']],
    ['--threads 0', () => [f('good', 'model.onnx'), '--weights', 'rtn-ternary', '--threads', '0'], ['--threads']],
    ['--refine-steps without --refine', () => [f('good', 'model.onnx'), '--weights', 'rtn-ternary', '--refine-steps', '3'], ['--refine-steps', '--refine']],
    ['--refine-e2e-lr without --refine', () => [f('good', 'model.onnx'), '--weights', 'rtn-ternary', '--refine-e2e-lr', '0.003'], ['--refine-e2e-lr', '--refine']],
    ['--refine-e2e-schedule without --refine', () => [f('good', 'model.onnx'), '--weights', 'rtn-ternary', '--refine-e2e-schedule', 'cosine'], ['--refine-e2e-schedule', '--refine']],
    ['--refine-e2e-schedule linear', () => [f('good', 'model.onnx'), '--refine', '--refine-e2e-schedule', 'linear'], ['--refine-e2e-schedule', 'linear']],
    ['--refine-e2e-pieces 0', () => [f('good', 'model.onnx'), '--refine', '--refine-e2e-pieces', '0'], ['--refine-e2e-pieces', 'integer from 1']],
    ['--refine with rtn-ternary weights', () => [f('good', 'model.onnx'), '--weights', 'rtn-ternary', '--refine'], ['--refine', 'twla']],
    ['--order2 x (no such linear)', () => [f('good', 'model.onnx'), '--order2', 'v,x'], ['--order2', "'x'"]],
    ['--order2 with rtn-ternary weights', () => [f('good', 'model.onnx'), '--weights', 'rtn-ternary', '--order2', 'v'], ['--order2', 'twla']],
    ['--target metal (no such backend)', () => [f('good', 'model.onnx'), '--target', 'metal'], ['--target', 'metal']],
    ['--target cuda on heads of 16 (the attention kernels take 64, 128 or 256)', () => [f('good', 'model.onnx'), '--target', 'cuda:sm_90a'], [/^twlac: error: CUDA target: attention: head dim 16 is not 64, 128 or 256$/]],
    ['--target cuda:sm_1 (unknown architecture)', () => [f('good', 'model.onnx'), '--target', 'cuda:sm_1'], ['sm_1', /architecture/]],
    ['--eval on the calibration text', () => [f('good', 'model.onnx'), '--calib', f('calib.txt'), '--eval', f('calib.txt')], ['--eval', /held-out/]],
    ['--eval on a copy of the calibration text', () => [f('good', 'model.onnx'), '--calib', f('calib.txt'), '--eval', f('calib-copy.txt')], ['calib-copy.txt', /held-out/]],
    ['--eval on a missing file', () => [f('good', 'model.onnx'), '--eval', f('nowhere.txt')], [/not found/, 'nowhere.txt']],
    ['--eval on a text shorter than one window', () => [f('good', 'model.onnx'), '--eval', f('short.txt')], ['short.txt', /too short/]],
  ];
  const rtn = (args: string[]) => (args.includes('--weights') || args.includes('--format') || args.includes('--calib-samples') ? [] : ['--weights', 'rtn-ternary']);
  cases.forEach(([what, args, mentions], i) => {
    it(what, async () => {
      const out = f(`out-bad-${i}`);
      const a = args();
      const r = await twlac([...a, ...rtn(a), '-o', out, '-q']);
      expectOneLineError(r, out, ...mentions);
    });
  });

  it('the same command on the well-formed model succeeds (the control for the cases above)', async () => {
    const out = f('out-good');
    const r = await twlac([f('good', 'model.onnx'), '--weights', 'rtn-ternary', '-o', out, '-q']);
    expect(r.code, r.stderr).toBe(0);
    expect(r.stdout).toBe('');
    expect(r.stderr).toBe('');
    for (const file of ['model.onnx', 'weights.bin', 'manifest.json', 'report.md', 'report.html', 'tokenizer.json']) expect(existsSync(join(out, file)), file).toBe(true);
  });

  it.each([
    ['a sliding-window model', 'sliding.onnx', /attn_partial_h1_kv1_d64_w4\b/],
    ['a GPT-2 model (LayerNorm, learned positions, GELU MLP)', 'gpt2.onnx', /launch_act_layer_norm_d128\(/],
  ])('--target cuda:sm_90a on %s writes the CUDA host program', async (_what, file, feature) => {
    const out = f(`out-cuda-${file}`);
    const r = await twlac([f(file), '--weights', 'rtn-ternary', '--target', 'cuda:sm_90a', '-o', out, '-q']);
    expect(r.code, r.stderr).toBe(0);
    expect(r.stderr).toBe('');
    const header = readFileSync(join(out, 'kernels', 'cuda', 'sm_90a', 'twlac_model.cuh'), 'utf8');
    expect(header).toMatch(feature);
    expect(existsSync(join(out, 'kernels', 'cuda', 'twlac_cuda_main.cu'))).toBe(true);
  });

  it('a failed run leaves an existing output directory untouched', async () => {
    const out = f('out-existing');
    mkdirSync(out);
    writeFileSync(join(out, 'keep.txt'), 'previous results');
    const r = await twlac([f('nan.onnx'), '--weights', 'rtn-ternary', '-o', out, '-q']);
    expect(r.code).not.toBe(0);
    expect(readdirSync(out)).toEqual(['keep.txt']);
    expect(readdirSync(tmp).filter((n) => n.includes('twlac-tmp'))).toEqual([]);
  });
});

describe('inspect, eval, run', () => {
  it('inspect prints the structure table, and --json parses to the same structure', async () => {
    const table = await twlac(['inspect', f('good', 'model.onnx')]);
    expect(table.code, table.stderr).toBe(0);
    expect(table.stdout).toMatch(/embedding\s+model\.embed_tokens\.weight\s+256×64/);
    for (const role of ['q', 'k', 'v', 'o', 'gate', 'up', 'down']) expect(table.stdout).toMatch(new RegExp(`^\\s+${role}\\s+\\d+×\\d+`, 'm'));
    expect(table.stdout).toMatch(/^block 1\b/m);
    expect(table.stdout).toMatch(/lm_head\s+256×64/);
    const json = await twlac(['inspect', '--json', f('good', 'model.onnx')]);
    expect(json.code, json.stderr).toBe(0);
    expect(json.stdout.trim().split('\n')).toHaveLength(1);
    const s = JSON.parse(json.stdout) as { config: { layers: number; hidden: number; vocab: number; heads: number; kvHeads: number; intermediate: number } };
    expect(s.config).toMatchObject({ layers: 2, hidden: HIDDEN, vocab: 256, heads: 4, kvHeads: 2, intermediate: 128 });
  });

  it('eval --json prints one JSON line whose perplexity matches the float64 bigram oracle', async () => {
    const r = await twlac(['eval', f('bigram'), '--text', f('held-out.txt'), '--max-windows', '3', '--json', '-q']);
    expect(r.code, r.stderr).toBe(0);
    const lines = r.stdout.split('\n').filter((l) => l !== '');
    expect(lines).toHaveLength(1);
    const got = JSON.parse(lines[0]) as { ppl: number; tokens: number; windows: number };
    expect(Object.keys(got).sort()).toEqual(['ppl', 'tokens', 'windows']);
    expect(got.windows).toBe(3);
    expect(got.tokens).toBe(3 * 256);
    const ids = Buffer.from(readFileSync(f('held-out.txt'), 'utf8'), 'utf8');
    const logits = bigramOracle();
    let nll = 0;
    for (let i = 0; i < 3 * 256; i++) {
      const z = logits(ids[i]);
      const m = Math.max(...z);
      nll += m + Math.log(z.reduce((a, v) => a + Math.exp(v - m), 0)) - z[ids[i + 1]];
    }
    expect(got.ppl / Math.exp(nll / (3 * 256))).toBeCloseTo(1, 4);
  });

  it('run --backend ort prints only the generated text, the greedy bigram chain, the same twice', async () => {
    const prompt = 'the model ';
    const args = ['run', f('bigram'), '--backend', 'ort', '--prompt', prompt, '--max-tokens', '24', '--greedy'];
    const [a, b] = [await twlac(args), await twlac(args)];
    expect(a.code, a.stderr).toBe(0);
    expect(a.stderr).toBe('');
    expect(b.stdout).toBe(a.stdout);
    const logits = bigramOracle();
    const ids: number[] = [];
    let cur = Buffer.from(prompt)[prompt.length - 1];
    for (let i = 0; i < 24; i++) {
      const z = logits(cur);
      cur = z.indexOf(Math.max(...z));
      ids.push(cur);
    }
    const text = loadTokenizer(f('bigram', 'tokenizer.json')).decode(ids);
    expect(text.length).toBeGreaterThan(0);
    expect(a.stdout).toBe(`${text}\n`);
  });
});
