// `twlac demo` and what it ships (demo/model/, demo/data/), against oracles: the shipped model's
// onnxruntime logits against a float64 forward of its recognised structure, the demo data
// against scripts/make-demo-data.sh run on ../shared, and the demo's printed figures against
// evaluatePerplexity, onnxruntime's greedy decoding and the WebGPU runtime on the same output.
import { execFileSync, spawn } from 'node:child_process';
import { existsSync, mkdtempSync, readFileSync, readdirSync, rmSync, statSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import * as ort from 'onnxruntime-node';
import { DEMO_SETTINGS, REPO_ROOT, byteTokenizerJson, demoFiles } from '../../src/demo.ts';
import { loadTokenizer } from '../../src/eval/tokenizer.ts';
import { evaluatePerplexity } from '../../src/eval/perplexity.ts';
import { generate } from '../../src/eval/generate.ts';
import { loadModel, saveModel } from '../../src/graph/onnx.ts';
import { GraphBuilder } from '../../src/graph/builder.ts';
import { recognize } from '../../src/graph/recognize.ts';
import { parseFormatId, CODE_PACKINGS } from '../../src/formats/ternary.ts';
import type { ArtifactManifest } from '../../src/artifact/manifest.ts';
import { referenceLogits } from '../fixtures/reference-forward.ts';
import { testDevice } from '../codegen/wgsl-harness.ts';

const tmp = mkdtempSync(join(tmpdir(), 'twlac-demo-'));
afterAll(() => rmSync(tmp, { recursive: true, force: true }));
const files = demoFiles();
const PYDOCS = join(REPO_ROOT, '../shared/data/pydocs');

describe('byte tokenizer', () => {
  it('the shipped tokenizer.json is the byte tokenizer: ids are the UTF-8 bytes, and decoding gives the text back', () => {
    expect(JSON.parse(readFileSync(files.tokenizer, 'utf8'))).toEqual(byteTokenizerJson());
    const tok = loadTokenizer(files.tokenizer);
    const s = 'def f(x):\n\treturn x ≤ 2 → θ 😀 \u0000\u00ff  end ';
    expect(Array.from(tok.encode(s))).toEqual(Array.from(Buffer.from(s, 'utf8')));
    expect(tok.decode(tok.encode(s))).toBe(s);
    expect(tok.decode([104, 105])).toBe('hi');
  });
});

describe('the shipped demo model', () => {
  it('is recognised as the 4-block LLaMA of its config.json, and its onnxruntime logits equal a float64 forward', async () => {
    const config = JSON.parse(readFileSync(files.config, 'utf8'));
    const s = recognize(loadModel(files.model));
    expect(s.config).toMatchObject({
      arch: 'llama',
      layers: 4,
      hidden: config.hidden_size,
      heads: config.num_attention_heads,
      kvHeads: config.num_key_value_heads,
      intermediate: config.intermediate_size,
      vocab: 256,
      ropeTheta: config.rope_theta,
    });
    let params = 0;
    for (const v of s.model.graph.initializers.values()) if (v.constValue && v.constValue.dims.length === 2) params += v.constValue.dims[0] * v.constValue.dims[1];
    expect(params).toBeGreaterThan(0.8e6);
    const ids = Array.from(Buffer.from('The json module can encode ', 'utf8'));
    const session = await ort.InferenceSession.create(files.model);
    const r = await session.run({ input_ids: new ort.Tensor('int64', BigInt64Array.from(ids, BigInt), [1, ids.length]) });
    const logits = r.logits.data as Float32Array;
    await session.release();
    const want = referenceLogits(s, ids);
    let diff = 0;
    let scale = 0;
    want.forEach((row, t) => row.forEach((x, i) => {
      diff = Math.max(diff, Math.abs(logits[t * 256 + i] - x));
      scale = Math.max(scale, Math.abs(x));
    }));
    expect(diff / (1 + scale)).toBeLessThan(1e-5);
  });

  it('everything under demo/ fits in 5 MB', () => {
    let bytes = 0;
    const walk = (d: string) => {
      for (const e of readdirSync(d, { withFileTypes: true })) e.isDirectory() ? walk(join(d, e.name)) : (bytes += statSync(join(d, e.name)).size);
    };
    walk(join(REPO_ROOT, 'demo'));
    expect(bytes).toBeLessThanOrEqual(5 * 1024 * 1024);
  });

  it.skipIf(!existsSync(join(PYDOCS, 'dev.txt')))('demo/data is what scripts/make-demo-data.sh cuts from ../shared: calibration inside the trained 98% of train.txt, held-out from dev.txt', () => {
    const d = mkdtempSync(join(tmp, 'data-'));
    execFileSync('sh', [join(REPO_ROOT, 'scripts/make-demo-data.sh'), PYDOCS], { cwd: d });
    for (const f of ['data/calibration.txt', 'data/heldout.txt', 'model/DATA-LICENSE']) {
      expect(readFileSync(join(d, 'demo', f)).equals(readFileSync(join(REPO_ROOT, 'demo', f))), f).toBe(true);
    }
    const calib = readFileSync(files.calibration);
    expect(calib.length).toBeGreaterThan(100_000);
    expect(calib.length).toBeLessThan(0.98 * statSync(join(PYDOCS, 'train.txt')).size);
    expect(readFileSync(join(PYDOCS, 'train.txt')).subarray(0, calib.length).equals(calib)).toBe(true);
    const held = readFileSync(files.heldOut);
    expect(held.length).toBeGreaterThan(30_000);
    expect(readFileSync(join(PYDOCS, 'dev.txt')).subarray(0, held.length).equals(held)).toBe(true);
  });
});

describe('twlac demo', () => {
  const out = join(tmp, 'demo');
  let stdout = '';
  const demo = async () => {
    const child = spawn(process.execPath, [join(REPO_ROOT, 'bin/twlac.js'), 'demo', '-o', out, '--quiet'], { cwd: REPO_ROOT, env: { ...process.env, TWLAC_DEBUG: '' }, stdio: ['ignore', 'pipe', 'pipe'] });
    const r = { stdout: '', stderr: '', code: null as number | null };
    child.stdout.on('data', (d) => (r.stdout += d));
    child.stderr.on('data', (d) => (r.stderr += d));
    r.code = await new Promise<number | null>((res) => child.on('close', res));
    return r;
  };
  beforeAll(async () => {
    const r = await demo();
    expect(r.code, r.stderr).toBe(0);
    expect(r.stderr).toBe('');
    stdout = r.stdout;
  }, 400_000); // ~30 s of CPU; a shared, loaded machine stretches the wall time

  it('refuses to replace its earlier output without --force: one error line, nothing printed, nothing changed', async () => {
    const before = statSync(join(out, 'compiled/weights.bin')).mtimeMs;
    const r = await demo();
    expect(r.code).not.toBe(0);
    expect(r.stdout).toBe('');
    expect(r.stderr).toMatch(/^twlac: error: [^\n]*--force[^\n]*\n$/);
    expect(statSync(join(out, 'compiled/weights.bin')).mtimeMs).toBe(before);
  });

  const tokenizer = () => loadTokenizer(join(out, 'source', 'tokenizer.json'));

  it('writes the source and compiled model; bits/weight in the manifest match the bytes of weights.bin', () => {
    for (const file of ['source/model.onnx', 'source/tokenizer.json', 'compiled/model.onnx', 'compiled/weights.bin', 'compiled/manifest.json', 'compiled/report.html', 'compiled/tokenizer.json']) {
      expect(existsSync(join(out, file)), file).toBe(true);
    }
    expect(readFileSync(join(out, 'source/model.onnx')).equals(readFileSync(files.model))).toBe(true);
    const m = JSON.parse(readFileSync(join(out, 'compiled/manifest.json'), 'utf8')) as ArtifactManifest;
    expect(m.method.weights).toBe('twla');
    const binBytes = statSync(join(out, 'compiled/weights.bin')).size;
    for (const [file, n] of Object.entries(m.files)) expect(statSync(join(out, 'compiled', file)).size, file).toBe(n);
    // Σ bytes of every quantised linear's tensors (all inside weights.bin) ·8 / Σ weights.
    let bits = 0;
    let weights = 0;
    for (const blk of m.blocks) {
      for (const role of ['q', 'k', 'v', 'o', 'gate', 'up', 'down'] as const) {
        const l = blk[role]!;
        let bytes = 0;
        for (const t of [l.codes, l.scales, l.shifts]) {
          if (!t) continue;
          const e = m.tensors[t];
          expect(e.offset + e.bytes).toBeLessThanOrEqual(binBytes);
          bytes += e.bytes;
        }
        // The format declaration's own count: N rows × ⌈K/G⌉ groups × (code bytes + fp16 scale [+ fp16 shift]).
        const fmt = parseFormatId(l.format);
        const groups = l.rows * Math.ceil(l.cols / fmt.group);
        expect(bytes).toBe(groups * (CODE_PACKINGS[fmt.packing].bytesPerGroup(fmt.group) + 2 + (fmt.shift ? 2 : 0)));
        expect(l.bitsPerWeight).toBeCloseTo((bytes * 8) / (l.rows * l.cols), 9);
        bits += bytes * 8;
        weights += l.rows * l.cols;
      }
    }
    expect(m.bitsPerWeight).toBeCloseTo(bits / weights, 9);
    expect(m.bitsPerWeight).toBeLessThanOrEqual(2);
    expect(stdout).toContain(`${m.bitsPerWeight.toFixed(3)} bits/weight`);
    expect(stdout).toContain(`report: ${join(out, 'compiled', 'report.html')}`);
  });

  it('the printed perplexities are evaluatePerplexity on the held-out windows; compiled stays within 1.25× of source', async () => {
    const ids = tokenizer().encode(readFileSync(files.heldOut, 'utf8'));
    const opts = { maxWindows: DEMO_SETTINGS.evalWindows };
    const src = await evaluatePerplexity(join(out, 'source/model.onnx'), ids, opts);
    const cmp = await evaluatePerplexity(join(out, 'compiled/model.onnx'), ids, opts);
    expect(src.windows).toBe(DEMO_SETTINGS.evalWindows);
    expect(stdout).toContain(`${src.windows} windows of 256 bytes`);
    expect(stdout).toContain(`source ${src.ppl.toFixed(3)}, compiled ${cmp.ppl.toFixed(3)}`);
    // A trained byte model: far below uniform (256).
    expect(src.ppl).toBeLessThan(12); // measured 9.18
    expect(cmp.ppl / src.ppl).toBeLessThan(1.25); // measured 9.183 → 9.301 (×1.013) on 2026-12-06
  });

  it('the printed greedy texts are onnxruntime greedy decoding of source and compiled', async () => {
    const tok = tokenizer();
    const prompt = tok.encode(DEMO_SETTINGS.prompt);
    const src = tok.decode(await generate(join(out, 'source/model.onnx'), prompt, DEMO_SETTINGS.maxTokens));
    const cmp = tok.decode(await generate(join(out, 'compiled/model.onnx'), prompt, DEMO_SETTINGS.maxTokens));
    expect(stdout).toContain(`source, onnxruntime:   ${JSON.stringify(src)}`);
    expect(stdout).toContain(`compiled, onnxruntime: ${JSON.stringify(cmp)}`);
    // Text, not noise: mostly letters and spaces.
    expect((src.match(/[A-Za-z ]/g) ?? []).length).toBeGreaterThan(0.7 * src.length);
  });

  it('the WebGPU runtime decodes the same greedy tokens as onnxruntime on the compiled model, and the demo says so', async (ctx) => {
    const { skip } = await testDevice();
    if (skip) {
      expect(stdout).toMatch(/compiled, WebGPU: {6}not run: /);
      ctx.skip();
    }
    const tok = tokenizer();
    const prompt = tok.encode(DEMO_SETTINGS.prompt);
    const want = Array.from(await generate(join(out, 'compiled/model.onnx'), prompt, DEMO_SETTINGS.maxTokens));
    const { runWebgpuDecode } = await import('../../src/runtime/webgpu/cli.ts');
    expect(await runWebgpuDecode(join(out, 'compiled'), prompt, DEMO_SETTINGS.maxTokens)).toEqual(want);
    expect(stdout).toContain(`compiled, WebGPU:      ${JSON.stringify(tok.decode(want))} (the same ${want.length} tokens as onnxruntime)`);
  });
});

describe('graph names after loading', () => {
  it('new nodes never reuse a loaded node name (duplicate names made the calibration model invalid)', () => {
    const b = new GraphBuilder();
    const x = b.input('x', { dtype: 'float32', shape: [2, 4] });
    b.output(b.op('Reshape', [x, b.i64('shape', [4, 2])]), 'y');
    const p = join(tmp, 'names.onnx');
    saveModel(b.model(18), p);
    const m = loadModel(p);
    expect(m.graph.nodes.map((n) => n.name)).toEqual(['Reshape']);
    const b2 = new GraphBuilder(m.graph);
    b2.op('Reshape', [m.graph.outputs[0], b2.i64('shape2', [8])]);
    const names = m.graph.nodes.map((n) => n.name);
    expect(new Set(names).size).toBe(names.length);
  });
});
