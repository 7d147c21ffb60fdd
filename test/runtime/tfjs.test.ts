// The TF.js target (`--target tfjs`) and its runtime (twlac/tfjs):
// - the custom op TwlacTernaryMatMul against the format's reference decoder, through a
//   one-node GraphModel, on the CPU kernel and on the dequantise path;
// - compiled models loaded with loadGraphModel on tfjs's CPU backend, logits against stock
//   onnxruntime on the same out/model.onnx, at two sequence lengths;
// - the ternary bytes in the shards are weights.bin's;
// - an op without a translation is refused at compile time;
// - the same models in headless Chromium on tfjs's WebGPU backend.
import '@tensorflow/tfjs-backend-cpu';
import * as tf from '@tensorflow/tfjs-core';
import { loadGraphModel } from '@tensorflow/tfjs-converter';
import { build } from 'esbuild';
import { execFileSync, spawnSync } from 'node:child_process';
import { cpSync, existsSync, mkdirSync, mkdtempSync, readFileSync, rmSync, statSync, writeFileSync } from 'node:fs';
import type { AddressInfo } from 'node:net';
import { tmpdir } from 'node:os';
import { extname, join, normalize, resolve } from 'node:path';
import puppeteer from 'puppeteer-core';
import type { Server } from 'node:http';
import { serveDir } from './serve-dir.ts';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { rng } from '../../src/artifact/random.ts';
import type { ArtifactManifest } from '../../src/artifact/manifest.ts';
import { readArtifact, tensorBytes } from '../../src/artifact/weights.ts';
import { parseTargets } from '../../src/codegen/targets.ts';
import { attr, graphModelFiles, TfGraph } from '../../src/codegen/tfjs/graphdef.ts';
import { compileToDir, type CompileOptions } from '../../src/compile.ts';
import { forward, openModel } from '../../src/eval/ort-session.ts';
import { decodeTernary, encodeTernary, parseFormatId, type TernaryWeights } from '../../src/formats/ternary.ts';
import { silentProgress } from '../../src/graph/pass.ts';
import { loadModel, saveModel } from '../../src/graph/onnx.ts';
import { halfToFloat } from '../../src/util/half.ts';
import { dequantize, registerTwlacOps, TERNARY_MATMUL_OP } from '../../src/runtime/tfjs/index.ts';
import { graphModelFromDir } from '../../src/runtime/tfjs/node.ts';
import { makeTinyLlama, type TinyLlamaOptions } from '../fixtures/make-fixtures.ts';
import type { PageInput } from './tfjs-page.ts';

const CHROMIUM = '/usr/bin/chromium';
const FIXTURE = resolve('../shared/models/pydocs-llama-12m/model.onnx');

registerTwlacOps();
await tf.setBackend('cpu');

const dirs: string[] = [];
afterAll(() => dirs.forEach((d) => rmSync(d, { recursive: true, force: true })));
const tmp = () => {
  const d = mkdtempSync(join(tmpdir(), 'twlac-tfjs-'));
  dirs.push(d);
  return d;
};

/** ‖a − b‖₂ / ‖b‖₂ */
function relL2(a: ArrayLike<number>, b: ArrayLike<number>): number {
  expect(a.length).toBe(b.length);
  let d = 0, n = 0;
  for (let i = 0; i < a.length; i++) {
    d += (a[i] - b[i]) ** 2;
    n += b[i] ** 2;
  }
  return Math.sqrt(d / n);
}

function randomTernary(id: string, rows: number, cols: number, seed: number): TernaryWeights {
  const f = parseFormatId(id);
  const r = rng(seed);
  const ng = Math.ceil(cols / f.group);
  const t = Int8Array.from({ length: rows * cols }, () => Math.floor(r() * 3) - 1);
  const scale = Float32Array.from({ length: rows * ng }, () => 0.01 + r() * 0.1);
  const shift = f.shift ? Float32Array.from({ length: rows * ng }, () => (r() - 0.5) * 0.05) : undefined;
  return encodeTernary(f, rows, cols, t, scale, shift);
}

/** model.json and shards of one TwlacTernaryMatMul node, built by the emitter's own graph writer. */
function oneOpFiles(w: TernaryWeights) {
  const g = new TfGraph();
  g.nodes.push({ name: g.reserve('x'), op: 'Placeholder', input: [], attr: { dtype: attr.type('float32'), shape: attr.shape([null, null, w.cols]) } });
  const words = new Uint8Array(Math.ceil(w.codes.byteLength / 4) * 4);
  words.set(w.codes);
  const half = (a: Uint16Array) => ({ dtype: 'float32' as const, shape: [a.length], bytes: new Uint8Array(a.buffer.slice(0)), quantization: { dtype: 'float16' as const } });
  const ins = ['x', g.constant('codes', { dtype: 'int32', shape: [words.byteLength / 4], bytes: words }), g.constant('scales', half(w.scales))];
  if (w.shifts) ins.push(g.constant('shifts', half(w.shifts)));
  g.nodes.push({ name: g.reserve('y'), op: TERNARY_MATMUL_OP, input: ins, attr: { format: attr.str(w.format.id), rows: attr.int(w.rows), cols: attr.int(w.cols) } });
  return graphModelFiles(g, { inputs: {}, outputs: {} }, { generatedBy: 'test', convertedBy: 'test' });
}

async function oneOpModel(w: TernaryWeights) {
  const { modelJson, shards } = oneOpFiles(w);
  const j = JSON.parse(modelJson);
  const data = Buffer.concat(shards.map((s) => s.bytes));
  return loadGraphModel(tf.io.fromMemory({ modelTopology: j.modelTopology, weightSpecs: j.weightsManifest[0].weights, weightData: data.buffer.slice(data.byteOffset, data.byteOffset + data.byteLength) }));
}

/** y = x · Wᵀ in float64 with W from the reference decoder. */
function referenceMatMul(w: TernaryWeights, x: Float32Array, m: number): Float64Array {
  const W = decodeTernary(w);
  const y = new Float64Array(m * w.rows);
  for (let i = 0; i < m; i++) for (let n = 0; n < w.rows; n++) {
    let s = 0;
    for (let k = 0; k < w.cols; k++) s += W[n * w.cols + k] * x[i * w.cols + k];
    y[i * w.rows + n] = s;
  }
  return y;
}

// trit5 and bit2, with and without shifts, a partial last group (cols not a multiple of G),
// and code bytes that do not fill the last int32 word.
const OP_CASES: [string, number, number][] = [
  ['tq1_g16', 24, 80],
  ['tq1_g64_ns', 7, 200],
  ['tq2_g8', 9, 44],
  ['tq2_g32_ns', 16, 70],
];

describe('TwlacTernaryMatMul against the reference decoder', () => {
  it.each(OP_CASES)('%s %ix%i: the CPU kernel on packed codes, x of shape [2, 3, cols]', async (id, rows, cols) => {
    const w = randomTernary(id, rows, cols, rows * 31 + cols);
    const r = rng(cols);
    const x = Float32Array.from({ length: 6 * cols }, () => r() * 2 - 1);
    const model = await oneOpModel(w);
    const y = model.execute({ x: tf.tensor3d(x, [2, 3, cols]) }) as tf.Tensor;
    expect(y.shape).toEqual([2, 3, rows]);
    expect(relL2(y.dataSync(), referenceMatMul(w, x, 6))).toBeLessThan(1e-6);
  });

  it('the dequantise path (a backend without the kernel) gives the same result; dequantize() is the reference decoder on the shard layout', async () => {
    // A CPU backend under another name, with every CPU kernel but ours.
    tf.registerBackend('cpu-no-twlac', () => tf.findBackendFactory('cpu')!() as tf.KernelBackend);
    for (const k of tf.getKernelsForBackend('cpu')) if (k.kernelName !== TERNARY_MATMUL_OP) tf.registerKernel({ ...k, backendName: 'cpu-no-twlac' });
    const w = randomTernary('tq1_g16', 24, 80, 5);
    const x = Float32Array.from({ length: 3 * 80 }, (_, i) => Math.sin(i));
    const model = await oneOpModel(w);
    await tf.setBackend('cpu-no-twlac');
    try {
      expect(tf.getBackend()).toBe('cpu-no-twlac');
      const y = model.execute({ x: tf.tensor3d(x, [1, 3, 80]) }) as tf.Tensor;
      expect(relL2(y.dataSync(), referenceMatMul(w, x, 3))).toBeLessThan(1e-6);
    } finally {
      await tf.setBackend('cpu');
    }
    const words = new Int32Array(Math.ceil(w.codes.byteLength / 4));
    new Uint8Array(words.buffer).set(w.codes);
    const dense = dequantize(w.format, w.rows, w.cols, words, Float32Array.from(w.scales, halfToFloat), Float32Array.from(w.shifts!, halfToFloat));
    expect(dense).toEqual(Float32Array.from(decodeTernary(w)));
  });
});

/** Compile through the library with the tfjs target dispatched as the CLI does. */
async function compileTiny(opts: TinyLlamaOptions, co: Partial<CompileOptions>): Promise<string> {
  const dir = tmp();
  saveModel(makeTinyLlama(opts), join(dir, 'model.onnx'));
  const targets = parseTargets(['tfjs']);
  await compileToDir(join(dir, 'model.onnx'), join(dir, 'out'), co, silentProgress, { targets });
  return join(dir, 'out');
}

/** Calibration segments of random ids (the check is TF.js against ORT on the same graph, not accuracy). */
function calib(vocab: number): Int32Array[] {
  const r = rng(5);
  return Array.from({ length: 8 }, () => Int32Array.from({ length: 32 }, () => Math.floor(r() * vocab)));
}

/** TF.js logits (CPU backend, model loaded from out/tfjs/) and ORT logits (out/model.onnx) for `ids`. */
async function bothLogits(out: string, ids: number[]): Promise<{ got: Float32Array; want: Float32Array; shape: number[] }> {
  const model = await loadGraphModel(graphModelFromDir(join(out, 'tfjs')));
  const ort = await openModel(join(out, 'model.onnx'));
  try {
    const feeds: Record<string, tf.Tensor> = { input_ids: tf.tensor2d(ids, [1, ids.length], 'int32') };
    if (ort.attentionMask) feeds[ort.attentionMask.name] = tf.ones([1, ids.length], 'int32');
    if (ort.positionIds) feeds[ort.positionIds.name] = tf.tensor2d([ids.map((_, i) => i)], [1, ids.length], 'int32');
    for (const c of ort.cache) feeds[c.past] = tf.zeros([1, c.kvHeads, 0, c.headDim]);
    const y = model.execute(feeds, 'logits') as tf.Tensor;
    return { got: y.dataSync() as Float32Array, want: (await forward(ort, ids, 1, ids.length)).logits, shape: y.shape };
  } finally {
    model.dispose();
    await ort.session.release();
  }
}

/** Every TwlacTernaryMatMul's codes/scales/shifts in the shards are the bytes of weights.bin; returns how many linears were checked. */
function checkPackedBytes(out: string): number {
  const j = JSON.parse(readFileSync(join(out, 'tfjs', 'model.json'), 'utf8'));
  const shards = Buffer.concat((j.weightsManifest[0].paths as string[]).map((p) => readFileSync(join(out, 'tfjs', p))));
  const offsets = new Map<string, [number, number]>();
  let off = 0;
  for (const w of j.weightsManifest[0].weights as { name: string; shape: number[]; dtype: string; quantization?: { dtype: string } }[]) {
    const n = w.shape.reduce((a, b) => a * b, 1) * (w.quantization ? 2 : w.dtype === 'bool' ? 1 : 4);
    offsets.set(w.name, [off, n]);
    off += n;
  }
  expect(off).toBe(shards.byteLength);
  const { manifest, weights } = readArtifact(out);
  const all = [...manifest.blocks.flatMap((b) => [b.q, b.k, b.v, b.o, b.gate!, b.up, b.down]), manifest.lmHead].filter((e) => e.codes);
  const ops = (j.modelTopology.node as { op: string; input: string[] }[]).filter((n) => n.op === TERNARY_MATMUL_OP);
  expect(ops).toHaveLength(all.length);
  for (const n of ops) {
    const e = all.find((x) => x.codes === n.input[1])!;
    expect(n.input.slice(1)).toEqual([e.codes, e.scales, ...(e.shifts ? [e.shifts] : [])]);
    for (const t of n.input.slice(1)) {
      const [o, len] = offsets.get(t)!;
      const want = tensorBytes(manifest, weights, t);
      expect(len - want.byteLength).toBeGreaterThanOrEqual(0);
      expect(len - want.byteLength).toBeLessThan(4); // the codes' last int32 word is zero-padded
      expect(Buffer.compare(shards.subarray(o, o + want.byteLength), want)).toBe(0);
    }
  }
  return ops.length;
}

const fixtureSkip = existsSync(FIXTURE) ? undefined : `fixture missing: ${FIXTURE}`;
if (fixtureSkip) console.warn(`TF.js fixture test skipped: ${fixtureSkip}`);

/** Each compile once, shared by the CPU and WebGPU tests. */
function once<T>(f: () => Promise<T>): () => Promise<T> {
  let p: Promise<T> | undefined;
  return () => (p ??= f());
}

const fixtureOut = once(async () => {
  const out = join(tmp(), 'out');
  execFileSync(process.execPath, ['bin/twlac.js', FIXTURE, '-o', out, '--weights', 'rtn-ternary', '--target', 'tfjs', '--quiet'], { stdio: 'pipe' });
  return out;
});
const ampOut = once(() => compileTiny({ seed: 7 }, { weights: 'twla', acts: { kind: 'mp', budget: 4 }, calib: calib(256), gptq: false }));
const bit2Out = once(() =>
  compileTiny({ norm: 'decomposed-div', linear: 'matmul-bias', kvHeads: 1, seed: 3 }, { weights: 'twla', format: 'tq2_g32', acts: { kind: 'uniform', bits: 8 }, calib: calib(256), gptq: false }),
);
const AMP_IDS = [5, 100, 7, 200, 31, 9, 12, 40, 3, 3, 17];
const BIT2_IDS = [1, 2, 3, 250, 128, 64];

describe('loadGraphModel on the CPU backend against onnxruntime on out/model.onnx', () => {
  it.skipIf(!!fixtureSkip)('pydocs-llama-12m, rtn-ternary (MatMulNBits over trit5 codes) through the CLI: logits at 5 and 12 tokens, packed bytes, bits', async () => {
    const out = await fixtureOut();
    const manifest = JSON.parse(readFileSync(join(out, 'manifest.json'), 'utf8')) as ArtifactManifest;
    expect(Object.keys(manifest.files)).toContain('tfjs/model.json');
    const ops = loadModel(join(out, 'model.onnx')).graph.nodes.filter((n) => n.opType === 'MatMulNBits').length;
    expect(ops).toBe(manifest.config.layers * 7);
    expect(checkPackedBytes(out)).toBe(ops);
    for (const ids of [[464, 33, 1024, 7, 99], [12, 2000, 5, 301, 77, 8, 4095, 3, 150, 150, 61, 900]]) {
      const { got, want, shape } = await bothLogits(out, ids);
      expect(shape).toEqual([1, ids.length, manifest.config.vocab]);
      const e = relL2(got, want);
      console.log(`tfjs cpu vs ORT, pydocs-llama-12m rtn-ternary, ${ids.length} tokens: relL2 ${e.toExponential(2)}`);
      expect(e).toBeLessThan(1e-5);
    }
  }, 180_000);

  it('tiny LLaMA, twla tq1_g128_lat (shifts) with ILA-AMP activation quantisers (mp:4) and online rotations', async () => {
    const out = await ampOut();
    const g = loadModel(join(out, 'model.onnx')).graph;
    // Activation quantisation sites are in the graph (Round/Clip per site), and so are the
    // MatMulNBits linears.
    expect(g.nodes.filter((n) => n.opType === 'Round').length).toBeGreaterThanOrEqual(8);
    expect(g.nodes.filter((n) => n.opType === 'MatMulNBits').length).toBe(14);
    const sites = readArtifact(out).manifest.blocks.flatMap((b) => Object.values(b.acts));
    expect(sites.filter((a) => a.transform && a.bits < 16).length).toBeGreaterThan(0);
    expect(checkPackedBytes(out)).toBe(14);
    const { got, want } = await bothLogits(out, AMP_IDS);
    const e = relL2(got, want);
    console.log(`tfjs cpu vs ORT, tiny twla tq1_g128_lat mp:4: relL2 ${e.toExponential(2)}`);
    // A 4-bit code can round the other way when the two runtimes' f32 sums differ in their
    // last bit; bound the error far below that quantisation noise.
    expect(e).toBeLessThan(1e-4);
  }, 120_000);

  it('tiny LLaMA with biases, twla tq2_g32 (bit2 codes, shifts), 8-bit activations', async () => {
    const out = await bit2Out();
    expect(checkPackedBytes(out)).toBe(14);
    const { got, want } = await bothLogits(out, BIT2_IDS);
    const e = relL2(got, want);
    console.log(`tfjs cpu vs ORT, tiny twla tq2_g32 A8 with biases: relL2 ${e.toExponential(2)}`);
    expect(e).toBeLessThan(1e-4);
  }, 120_000);

  it('tiny LLaMA with order-2 v linears (--order2 v): both planes run as TF.js ternary matmuls, logits match ORT', async () => {
    const out = await compileTiny({ seed: 9 }, { weights: 'twla', order2: ['v'], calib: calib(256) });
    const j = JSON.parse(readFileSync(join(out, 'tfjs', 'model.json'), 'utf8'));
    const ops = (j.modelTopology.node as { op: string; input: string[] }[]).filter((n) => n.op === TERNARY_MATMUL_OP);
    const m = readArtifact(out).manifest;
    expect(ops.map((n) => n.input[1]).sort()).toEqual(m.blocks.flatMap((b) => [b.q, b.k, b.v, b.o, b.gate, b.up, b.down].flatMap((e) => (e ? [e.codes!, ...(e.order2 ? [e.order2.codes] : [])] : []))).sort());
    const { got, want } = await bothLogits(out, BIT2_IDS);
    expect(relL2(got, want)).toBeLessThan(1e-5);
  }, 120_000);

  it('export styles: fused SkipSimplifiedLayerNormalization with fp16 weights, and a KV-cache model fed an empty cache', async () => {
    for (const [label, opts] of [
      ['fused-skip', { norm: 'skip-simplified', linear: 'matmul-transposed', weightDtype: 'float16', names: 'anonymous' }],
      ['kv-cache', { kvCache: true, ropeFreqs: 'cache', seed: 4 }],
    ] as [string, TinyLlamaOptions][]) {
      const out = await compileTiny(opts, { weights: 'rtn-ternary' });
      const { got, want } = await bothLogits(out, [9, 8, 7, 6, 5, 4, 3]);
      const e = relL2(got, want);
      console.log(`tfjs cpu vs ORT, tiny ${label} rtn-ternary: relL2 ${e.toExponential(2)}`);
      expect(e).toBeLessThan(1e-5);
    }
  }, 120_000);

  it('an op without a translation is refused at compile time: one line naming the op and the target, no output', () => {
    const dir = tmp();
    saveModel(makeTinyLlama({ attention: 'gqa', ropeFreqs: 'cache' }), join(dir, 'model.onnx'));
    const r = spawnSync(process.execPath, ['bin/twlac.js', join(dir, 'model.onnx'), '-o', join(dir, 'out'), '--weights', 'rtn-ternary', '--target', 'tfjs'], { encoding: 'utf8', env: { ...process.env, TWLAC_DEBUG: '' } });
    expect(r.status).not.toBe(0);
    const lines = r.stderr.trim().split('\n').filter((l) => l.startsWith('twlac: error:'));
    expect(lines).toEqual(['twlac: error: --target tfjs: ONNX op com.microsoft::GroupQueryAttention (node GroupQueryAttention) has no TF.js translation']);
    expect(existsSync(join(dir, 'out'))).toBe(false);
  }, 60_000);
});

const chromiumSkip = existsSync(CHROMIUM) ? undefined : `no browser at ${CHROMIUM} (scripts/install-webgpu-deps.sh installs it)`;

describe.skipIf(!!chromiumSkip && !process.env.CI)('headless Chromium, tfjs WebGPU backend, the model loaded over http by tf.loadGraphModel', () => {
  let site = '';
  let server: Server;
  let port = 0;
  beforeAll(async () => {
    site = tmp();
    // Bundled for the browser with no Node stubs: twlac/tfjs must not reach node:* modules.
    await build({ entryPoints: [resolve('test/runtime/tfjs-page.ts')], bundle: true, format: 'esm', platform: 'browser', target: 'es2022', outfile: join(site, 'page.js'), logLevel: 'warning' });
    writeFileSync(join(site, 'index.html'), '<!doctype html><html><body><script type="module" src="page.js"></script></body></html>');
    server = serveDir(site);
    port = await new Promise<number>((r) => server.listen(0, '127.0.0.1', () => r((server.address() as AddressInfo).port)));
  }, 120_000);
  afterAll(() => server?.close());

  it('the custom op against the reference decoder, then logits of the three quantised models against onnxruntime; the backend is webgpu, no GPU errors', async () => {
    // Bounds on relL2 against ORT. The first op where WebGPU departs from the CPU backend is
    // Cos/Sin of the RoPE angles (WGSL allows an absolute error of 2^-11 there; SwiftShader's
    // is ~1e-4): ~1e-5 in the logits of an A16 model, and enough to move a few per-token A8
    // codes by one step in a quantised one. A wrong weight layout, shift or scale is O(1).
    const cases: [string, () => Promise<string>, number[], number][] = [
      ['tiny twla tq1_g128_lat mp:4', ampOut, AMP_IDS, 2e-2],
      ['tiny twla tq2_g32 A8 with biases', bit2Out, BIT2_IDS, 2e-2],
      ...(fixtureSkip ? [] : ([['pydocs-llama-12m rtn-ternary', fixtureOut, [464, 33, 1024, 7, 99, 12, 2000], 1e-3]] as [string, () => Promise<string>, number[], number][])),
    ];
    const browser = await puppeteer.launch({
      executablePath: CHROMIUM,
      headless: true,
      userDataDir: tmp(),
      args: ['--no-sandbox', '--enable-unsafe-webgpu', '--disable-background-networking', '--disable-component-update', '--disable-sync', '--no-first-run'],
    });
    try {
      const page = await browser.newPage();
      const errors: string[] = [];
      page.on('pageerror', (e) => errors.push(String(e)));
      page.on('console', (m) => {
        if (m.type() === 'error' && !m.text().includes('Failed to load resource')) errors.push(m.text());
        if (m.text().includes('synchronously reading')) errors.push(m.text());
      });
      await page.goto(`http://127.0.0.1:${port}/index.html`);
      await page.waitForFunction(() => document.body.dataset.state === 'ready', { timeout: 60_000 });
      type Run = { backend: string; shape: number[]; values: number[] };
      const run = (url: string, inputs: Record<string, PageInput>, output?: string) =>
        page.evaluate((u, i, o) => (window as unknown as { runTwlacTfjs(u: string, i: unknown, o?: string): Promise<Run> }).runTwlacTfjs(u, i, o), url, inputs, output);

      for (const [i, [id, rows, cols]] of OP_CASES.entries()) {
        const w = randomTernary(id, rows, cols, rows * 31 + cols);
        const { modelJson, shards } = oneOpFiles(w);
        mkdirSync(join(site, `op${i}`));
        writeFileSync(join(site, `op${i}`, 'model.json'), modelJson);
        for (const s of shards) writeFileSync(join(site, `op${i}`, s.file), s.bytes);
        const x = Float32Array.from({ length: 6 * cols }, (_, k) => Math.cos(k * 0.37));
        const r = await run(`/op${i}/model.json`, { x: { data: Array.from(x), shape: [2, 3, cols], dtype: 'float32' } });
        expect(r.backend).toBe('webgpu');
        expect(r.shape).toEqual([2, 3, rows]);
        const e = relL2(r.values, referenceMatMul(w, x, 6));
        console.log(`TwlacTernaryMatMul on webgpu vs the reference decoder, ${id} ${rows}x${cols}: relL2 ${e.toExponential(2)}`);
        expect(e).toBeLessThan(1e-6);
      }

      for (const [i, [label, out, ids, bound]] of cases.entries()) {
        cpSync(join(await out(), 'tfjs'), join(site, `m${i}`), { recursive: true });
        const r = await run(`/m${i}/model.json`, { input_ids: { data: ids, shape: [1, ids.length], dtype: 'int32' } }, 'logits');
        expect(r.backend).toBe('webgpu');
        const { want } = await bothLogits(await out(), ids);
        expect(r.shape).toEqual([1, ids.length, want.length / ids.length]);
        const e = relL2(r.values, want);
        console.log(`tfjs webgpu (headless Chromium) vs ORT, ${label}: relL2 ${e.toExponential(2)}`);
        expect(e).toBeLessThan(bound);
      }
      expect(errors).toEqual([]);
    } finally {
      await browser.close();
    }
  }, 300_000);
});

