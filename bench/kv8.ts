// 8-bit KV cache, accuracy: what storing K and V as int8 (symmetric, one scale per token and
// KV head, the layout a CUDA/WGSL cache would keep next to the fp16 one) does to dev perplexity
// under EVAL.md, on the fp32 fixture and on a compiled artifact. The model's K (before its
// transpose to the scores) and V (into the probabilities · V product) pass through
//   s = max(|x|) over the head dim / 127,  x' = clip(round(x / s), −127, 127) · s
// inserted into the ONNX graph, and onnxruntime evaluates it as it evaluates the model.
// Writes bench/results/kv8.json.
//   npm run bench:kv8 -- [--compiled DIR]... [--windows N]
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { dirname, join, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';
import type { Model, Node, Value } from '../src/graph/ir.ts';
import { loadModel, saveModel } from '../src/graph/onnx.ts';
import { Rewriter } from '../src/graph/rewriter.ts';
import { Tensor } from '../src/graph/tensor.ts';
import { openModel } from '../src/eval/ort-session.ts';
import { evaluatePerplexity } from '../src/eval/perplexity.ts';
import { loadTokenizer, tokenizeFile } from '../src/eval/tokenizer.ts';
import { cpuDevice, resultHeader } from './result-header.ts';

const root = resolve(dirname(fileURLToPath(import.meta.url)), '..');
const shared = resolve(root, '../shared');
const args = process.argv.slice(2);
const compiled = args.flatMap((a, i) => (a === '--compiled' ? [args[i + 1]] : []));
const windows = args.includes('--windows') ? Number(args[args.indexOf('--windows') + 1]) : undefined;

/** The dynamic MatMul a value flows into through data-movement ops, and the path's last value. */
const MOVE = new Set(['Cast', 'Identity', 'Reshape', 'Expand', 'Unsqueeze', 'Squeeze']);
function producerThrough(v: Value, ops: Set<string>): Value {
  let x = v;
  for (let p = x.producer(); p && (ops.has(p.opType) || scalesByConstant(p)); p = x.producer()) x = p.input(0)!;
  return x;
}

/** Mul or Div of a value by a constant (a folded attention scale): per-token quantisation commutes with it. */
function scalesByConstant(n: Node): boolean {
  return (n.opType === 'Mul' || n.opType === 'Div') && !n.input(0)!.constValue && !!n.input(1)!.constValue;
}

/** K and V of every Softmax attention: the value before K's transpose (…, T, d) and V (…, T, d). */
function kvValues(m: Model): Value[] {
  const out = new Set<Value>();
  for (const sm of m.graph.nodes.filter((n) => n.opType === 'Softmax')) {
    // scores: walk back from the softmax input to the first MatMul with two dynamic inputs
    let scores: Node | undefined;
    const seen = new Set<Node>();
    const stack = [sm.input(0)!.producer()];
    while (stack.length && !scores) {
      const n = stack.pop();
      if (!n || seen.has(n)) continue;
      seen.add(n);
      if (n.opType === 'MatMul' && !n.input(1)!.constValue) scores = n;
      else for (const i of n.inputs) if (i && !i.constValue) stack.push(i.producer());
    }
    let pv: Node | undefined = sm.output(0)!.consumers()[0];
    while (pv && pv.opType !== 'MatMul') pv = pv.output(0)?.consumers()[0];
    if (!scores || !pv) throw new Error(`softmax ${sm.name}: no scores or probabilities·V MatMul`);
    // K: through the data moves (GQA repeat) to its transpose, whose input has d last
    const kt = producerThrough(scores.input(1)!, MOVE);
    const tr = kt.producer();
    if (tr?.opType !== 'Transpose') throw new Error(`softmax ${sm.name}: K reaches the scores without a Transpose (${tr?.opType})`);
    out.add(tr.input(0)!);
    out.add(producerThrough(pv.input(1)!, MOVE));
  }
  return [...out];
}

/** Insert the int8 fake quantiser on each of `vals` (all its readers read the quantised value). */
function quantiseKv(m: Model): number {
  const vals = kvValues(m);
  const rw = new Rewriter(m.graph);
  const axes = rw.init('kv8.axes', Tensor.fromInt64([1], [-1]));
  const c127 = rw.init('kv8.127', Tensor.fromFloat32([], Float32Array.of(127)));
  const cm127 = rw.init('kv8.-127', Tensor.fromFloat32([], Float32Array.of(-127)));
  const tiny = rw.init('kv8.tiny', Tensor.fromFloat32([], Float32Array.of(1e-30)));
  for (const v of vals) {
    const readers = v.uses();
    const first = m.graph.nodes.find((n) => readers.some((u) => u.node === n))!;
    const op = (t: string, ins: Value[], attrs = {}) => rw.opBefore(first, t, ins, attrs);
    const x = op('Cast', [v], { to: 1 });
    const s = op('Max', [op('Div', [op('ReduceMax', [op('Abs', [x]), axes], { keepdims: 1 }), c127]), tiny]);
    const q = op('Clip', [op('Round', [op('Div', [x, s])]), cm127, c127]);
    const y = op('CastLike', [op('Mul', [q, s]), v]);
    for (const u of readers) u.node.setInput(u.index, y);
  }
  return vals.length;
}

const ids = tokenizeFile(loadTokenizer(join(shared, 'models/pydocs-llama-12m/tokenizer.json')), join(shared, 'data/pydocs/dev.txt'));
const models: [string, string][] = [['fp32 fixture', join(shared, 'models/pydocs-llama-12m/model.onnx')], ...compiled.map((d) => [`compiled ${d}`, join(d, 'model.onnx')] as [string, string])];
const rows: { model: string; path: string; kvTensors: number; basePpl: number; int8KvPpl: number; ratio: number; windows: number }[] = [];
const tmp = mkdtempSync(join(tmpdir(), 'twlac-kv8-'));
try {
  for (const [name, path] of models) {
    const ppl = async (p: string) => {
      const s = await openModel(p);
      try {
        return await evaluatePerplexity(s, ids, windows ? { maxWindows: windows } : {});
      } finally {
        await s.session.release();
      }
    };
    const base = await ppl(path);
    const m = loadModel(path);
    const n = quantiseKv(m);
    const q = join(tmp, `${rows.length}.onnx`);
    saveModel(m, q);
    const kv8 = await ppl(q);
    rows.push({ model: name, path, kvTensors: n, basePpl: +base.ppl.toFixed(3), int8KvPpl: +kv8.ppl.toFixed(3), ratio: +(kv8.ppl / base.ppl).toFixed(4), windows: base.windows });
    console.log(JSON.stringify(rows[rows.length - 1]));
  }
} finally {
  rmSync(tmp, { recursive: true, force: true });
}
writeFileSync(
  join(root, 'bench/results/kv8.json'),
  JSON.stringify({ ...resultHeader('int8 KV cache (per token and KV head, symmetric): dev perplexity under EVAL.md, onnxruntime CPU', cpuDevice()), note: 'K before its transpose and V fake-quantised in the ONNX graph; basePpl: K and V as the model computes them (fp32 here; the CUDA and WGSL runtimes keep an fp16 cache)', rows }, null, 1) + '\n',
);
