// Transformer recognition on the three real exports and on builder-made models in other
// export styles. Roles are checked two ways: against the layout we know, and numerically:
// a float64 forward pass that uses only what recognition found (weights by role, γ, ε, heads,
// θ) must reproduce onnxruntime's logits — a swapped q/k, a missed bias or a wrong θ would not.
import { existsSync, mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { basename, dirname, join, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';
import * as ort from 'onnxruntime-node';
import { describe, expect, it } from 'vitest';
import { formatInspectTable, inspectJSON } from '../../src/cli/inspect.ts';
import { UserError } from '../../src/errors.ts';
import { GraphBuilder } from '../../src/graph/builder.ts';
import type { Model } from '../../src/graph/ir.ts';
import { encodeModel, loadModel, saveModel } from '../../src/graph/onnx.ts';
import { constTensor, recognize, structureToJSON, weightRows, type TransformerStructure } from '../../src/graph/recognize.ts';
import { findNorms } from '../../src/graph/patterns/norm.ts';
import { Tensor } from '../../src/graph/tensor.ts';
import { FAMILY_VARIANTS, FIXTURE_VARIANTS, makeTinyLlama, writeFixtures, type TinyLlamaOptions } from '../fixtures/make-fixtures.ts';
import { referenceLogits } from '../fixtures/reference-forward.ts';

const SHARED_MODELS = resolve(dirname(fileURLToPath(import.meta.url)), '../../../shared/models');
const REAL = {
  fp32: join(SHARED_MODELS, 'pydocs-llama-12m/model.onnx'),
  kv: join(SHARED_MODELS, 'pydocs-llama-12m-kv-fp16/model.onnx'),
  fused: join(SHARED_MODELS, 'pydocs-llama-12m-fused-fp16/model.onnx'),
};
const haveReal = Object.values(REAL).every((p) => existsSync(p));
if (!haveReal) console.warn(`skipping recognition of the real exports: ${SHARED_MODELS} not found`);

const loaded = new Map<string, Model>();
/** Each real export is parsed once per file (recognition does not mutate the graph). */
const load = (path: string): Model => loaded.get(path) ?? (loaded.set(path, loadModel(path)), loaded.get(path)!);

const PYDOCS_CONFIG = {
  arch: 'llama',
  vocab: 4096,
  hidden: 384,
  layers: 6,
  heads: 6,
  kvHeads: 2,
  headDim: 64,
  intermediate: 1024,
  ropeTheta: 10000,
  normEps: 1e-5,
  maxPositions: 512,
};
const BLOCK_ROLES = ['q', 'k', 'v', 'o', 'gate', 'up', 'down'];

/** Run a model on one sequence; KV-cache models get an empty past. Returns logits rows [seq][vocab]. */
async function ortLogits(model: Model | string, ids: number[], past: { kvHeads: number; headDim: number } = { kvHeads: 2, headDim: 64 }): Promise<Float32Array[]> {
  const session = typeof model === 'string' ? await ort.InferenceSession.create(model) : await ort.InferenceSession.create(encodeModel(model));
  const T = ids.length;
  const feeds: Record<string, ort.Tensor> = {};
  for (const name of session.inputNames) {
    if (name === 'input_ids') feeds[name] = new ort.Tensor('int64', BigInt64Array.from(ids, BigInt), [1, T]);
    else if (name === 'attention_mask') feeds[name] = new ort.Tensor('int64', new BigInt64Array(T).fill(1n), [1, T]);
    else if (name === 'position_ids') feeds[name] = new ort.Tensor('int64', BigInt64Array.from(ids, (_, i) => BigInt(i)), [1, T]);
    else if (name.startsWith('past_key_values')) feeds[name] = new ort.Tensor('float32', new Float32Array(0), [1, past.kvHeads, 0, past.headDim]);
    else throw new Error(`unexpected input ${name}`);
  }
  const out = await session.run(feeds, ['logits']);
  const data = out.logits.data as Float32Array;
  const V = data.length / T;
  await session.release();
  return Array.from({ length: T }, (_, t) => data.subarray(t * V, (t + 1) * V));
}

function maxAbsDiff(a: Float32Array[], b: Float64Array[]): number {
  let m = 0;
  a.forEach((row, t) => row.forEach((x, i) => (m = Math.max(m, Math.abs(x - b[t][i])))));
  return m;
}

function expectPydocsStructure(s: TransformerStructure, dtype: string, normKind: string): void {
  expect(s.config).toEqual(PYDOCS_CONFIG);
  expect(s.linears).toHaveLength(43);
  expect(s.linears.map((l) => l.role)).toEqual([...Array.from({ length: 6 }, () => BLOCK_ROLES).flat(), 'lm_head']);
  expect(s.linears.map((l) => l.block)).toEqual([...Array.from({ length: 6 }, (_, b) => Array(7).fill(b)).flat(), -1]);
  const b3 = s.blocks[3];
  const shapes = Object.fromEntries([b3.q, b3.k, b3.v, b3.o, b3.gate!, b3.up, b3.down].map((l) => [l.role!, [l.outFeatures, l.inFeatures]]));
  expect(shapes).toEqual({ q: [384, 384], k: [128, 384], v: [128, 384], o: [384, 384], gate: [1024, 384], up: [1024, 384], down: [384, 1024] });
  expect([s.lmHead.outFeatures, s.lmHead.inFeatures]).toEqual([4096, 384]);
  for (const l of s.linears) {
    expect(l.op).toBe('MatMul');
    expect(l.layout).toBe('in_out');
    expect(l.weightDtype).toBe(dtype);
    expect(l.bias).toBeUndefined();
  }
  expect(s.norms).toHaveLength(13);
  expect(s.norms.map((n) => n.role)).toEqual([...Array(6).fill(['attn', 'mlp']).flat(), 'final']);
  for (const n of s.norms) {
    expect(n.kind).toBe(normKind);
    expect(n.eps).toBe(1e-5);
    expect(n.gamma?.constValue?.dims).toEqual([384]);
  }
  // The γ of each norm is the one torch named for that position (names are only checked here, never used).
  expect(s.blocks.map((b) => b.attnNorm!.gamma!.name)).toEqual(Array.from({ length: 6 }, (_, i) => `m.model.layers.${i}.input_layernorm.weight`));
  expect(s.blocks.map((b) => b.mlpNorm!.gamma!.name)).toEqual(Array.from({ length: 6 }, (_, i) => `m.model.layers.${i}.post_attention_layernorm.weight`));
  expect(s.finalNorm!.gamma!.name).toBe('m.model.norm.weight');
  expect(s.embedding.table.name).toBe('m.model.embed_tokens.weight');
  expect(s.embedding.ids.name).toBe('input_ids');
  expect(s.tiedEmbeddings).toBe(false);
  // Input groups: q/k/v share the attention norm's output, gate/up the MLP norm's.
  expect(s.inputGroups).toHaveLength(6 * 4 + 1);
  for (const g of s.inputGroups) for (const l of g.linears) expect(l.input).toBe(g.value);
  expect(s.inputGroups.filter((g) => g.site === 'attn').every((g) => g.value === g.norm!.output && g.linears.length === 3)).toBe(true);
  expect(s.inputGroups.filter((g) => g.site === 'mlp').every((g) => g.value === g.norm!.output && g.linears.length === 2)).toBe(true);
  // The residual stream chains block to block.
  for (let i = 1; i < 6; i++) expect(s.blocks[i].residualIn).toBe(s.blocks[i - 1].residualOut);
  expect(s.notes).toEqual([]);
}

describe.skipIf(!haveReal)('real exports of pydocs-llama-12m', () => {
  const ids = [17, 300, 4095, 2, 999, 64];

  it('fp32 torch-dynamo export: 43 linears with roles, 13 decomposed RMSNorms, exact config, logits match onnxruntime', async () => {
    const s = recognize(load(REAL.fp32));
    expectPydocsStructure(s, 'float32', 'rms-decomposed');
    expect(s.configSources).toEqual({ headDim: 'graph', ropeTheta: 'graph', normEps: 'graph', maxPositions: 'config.json' });
    const diff = maxAbsDiff(await ortLogits(REAL.fp32, ids), referenceLogits(s, ids));
    expect(diff).toBeLessThan(2e-5); // measured 6e-6; a wrong ε (1e-3) gives 3e-2, swapped gate/up 1.7
  });

  it('θ and the head size come from the graph alone (config.json ignored)', () => {
    const s = recognize(load(REAL.fp32), { readConfigJson: false });
    expect(s.config).toEqual({ ...PYDOCS_CONFIG, maxPositions: 2048 });
    expect(s.configSources.maxPositions).toBe('default');
    expect(s.rope.rotaryDim).toBe(64);
    const k = recognize(load(REAL.kv), { readConfigJson: false });
    expect(k.config.ropeTheta).toBe(10000); // from fp16 inverse frequencies
  });

  it('KV-cache fp16 export: same structure, fp16 weights, logits with an empty past match onnxruntime', async () => {
    const s = recognize(load(REAL.kv));
    expectPydocsStructure(s, 'float16', 'rms-decomposed');
    const diff = maxAbsDiff(await ortLogits(REAL.kv, ids), referenceLogits(s, ids));
    expect(diff).toBeLessThan(2e-2); // onnxruntime computes in fp16 here: measured 3.9e-3
  });

  it('fused fp16 export: SimplifiedLayerNormalization norms, logits match onnxruntime', async () => {
    const s = recognize(load(REAL.fused));
    expectPydocsStructure(s, 'float16', 'SimplifiedLayerNormalization');
    // The fused graph lists k before q; roles come from the attention, not node order.
    const pos = new Map(s.model.graph.nodes.map((n, i) => [n, i]));
    expect(pos.get(s.blocks[0].k.node)!).toBeLessThan(pos.get(s.blocks[0].q.node)!);
    const diff = maxAbsDiff(await ortLogits(REAL.fused, ids), referenceLogits(s, ids));
    expect(diff).toBeLessThan(2e-2); // measured 2.8e-3
  });

  it('inspect prints every block and the config; JSON lists 43 linears', () => {
    const s = recognize(load(REAL.fp32));
    const table = formatInspectTable(s);
    expect(table.match(/^block \d+ {2}attn norm: rms-decomposed ε=0.00001/gm)).toHaveLength(6);
    expect(table).toMatch(/^ {2}k +128×384 +float32 +\[in,out\] +MatMul +- +val_99$/m);
    expect(table).toMatch(/^ {2}lm_head +4096×384 +float32/m);
    expect(table).toMatch(/rope θ +10000 /);
    const j = JSON.parse(JSON.stringify(inspectJSON(s))) as ReturnType<typeof structureToJSON>;
    expect(j.blocks.flatMap((b) => b.linears).length + 1).toBe(43);
    expect(j.config).toEqual(PYDOCS_CONFIG);
    expect(j.blocks[2].linears.map((l) => l.role)).toEqual(BLOCK_ROLES);
  });
});

describe('builder-made tiny LLaMAs in other export styles', () => {
  const ids = [3, 250, 17, 17, 99, 0, 128];
  const variants: Record<string, TinyLlamaOptions> = {
    ...FIXTURE_VARIANTS,
    simplified: { norm: 'simplified' },
    rmsnorm23: { norm: 'rmsnorm23' },
    'gemm-fp16': { linear: 'gemm', weightDtype: 'float16', layers: 3 },
    'tied-matmul-rope': { tiedEmbeddings: true, ropeFreqs: 'matmul', norm: 'simplified' },
    'rope-cache': { ropeFreqs: 'cache', linear: 'matmul-transposed' },
    'gqa-fused': { attention: 'gqa', norm: 'skip-simplified', weightDtype: 'float16' },
  };

  for (const [name, opts] of Object.entries(variants)) {
    it(`${name}: config, roles and onnxruntime logits`, async () => {
      const model = makeTinyLlama(opts);
      const s = recognize(model);
      const o = { layers: 2, hidden: 64, heads: 4, kvHeads: 2, intermediate: 128, vocab: 256, ropeTheta: 10000, normEps: 1e-5, ...opts };
      expect(s.config).toEqual({
        arch: 'llama',
        vocab: o.vocab,
        hidden: o.hidden,
        layers: o.layers,
        heads: o.heads,
        kvHeads: o.kvHeads,
        headDim: o.hidden / o.heads,
        intermediate: o.intermediate,
        ropeTheta: o.ropeTheta,
        normEps: o.normEps,
        maxPositions: opts.ropeFreqs === 'cache' || opts.attention === 'gqa' ? 128 : 2048,
      });
      expect(s.linears.map((l) => l.role)).toEqual([...Array.from({ length: o.layers }, () => BLOCK_ROLES).flat(), 'lm_head']);
      expect(s.norms).toHaveLength(2 * o.layers + 1);
      const diff = maxAbsDiff(await ortLogits(model, ids, { kvHeads: o.kvHeads, headDim: o.hidden / o.heads }), referenceLogits(s, ids));
      expect(diff).toBeLessThan(2e-5); // fp16 weights are widened exactly; a dropped bias gives 7e-2
    });
  }

  it('default: the torch-style LLaMA (decomposed RMSNorm, [in,out] MatMuls, Cos/Sin RoPE, GQA, SwiGLU, untied head)', () => {
    const m = makeTinyLlama();
    expect(m.graph.inputs.map((v) => [v.name, v.type])).toEqual([['input_ids', { dtype: 'int64', shape: ['batch', 'sequence'] }]]);
    expect(m.graph.outputs.map((v) => v.name)).toEqual(['logits']);
    const ops = new Set(m.graph.nodes.map((n) => n.opType));
    for (const op of ['Pow', 'ReduceMean', 'Sqrt', 'Reciprocal', 'Cos', 'Sin', 'Softmax', 'Sigmoid', 'LessOrEqual', 'Where', 'Expand']) expect(ops).toContain(op);
    const s = recognize(m);
    expect(s.tiedEmbeddings).toBe(false);
    expect(s.normKind).toBe('rms-decomposed');
    for (const l of s.linears) expect(l.layout).toBe('in_out');
    // hf naming: each weight's name states the role recognition gave it.
    for (const l of s.linears.slice(0, -1)) expect(l.weight.name).toBe(`model.layers.${l.block}.${['gate', 'up', 'down'].includes(l.role!) ? 'mlp' : 'self_attn'}.${l.role}_proj.weight`);
  });

  it('style changes keep the function: decomposed, Simplified, Skip-fused, RMSNormalization and Transpose/fp16 variants agree', async () => {
    const ids = [5, 6, 7, 8];
    const base = await ortLogits(makeTinyLlama(), ids);
    for (const opts of [{ norm: 'simplified' }, { norm: 'rmsnorm23' }, { linear: 'matmul-transposed' }, { norm: 'skip-simplified', names: 'anonymous' }] as TinyLlamaOptions[]) {
      const other = await ortLogits(makeTinyLlama(opts), ids);
      expect(maxAbsDiff(other, base.map((r) => Float64Array.from(r)))).toBeLessThan(1e-4);
    }
  });

  it('tied embeddings and RoPE angles from MatMul(positions, inv_freq)', () => {
    const s = recognize(makeTinyLlama({ tiedEmbeddings: true, ropeFreqs: 'matmul' }));
    expect(s.tiedEmbeddings).toBe(true);
    expect(s.lmHead.weight).toBe(s.embedding.table);
    expect([s.lmHead.layout, s.lmHead.inFeatures, s.lmHead.outFeatures]).toEqual(['out_in', 64, 256]);
    // The angle MatMul matches the linear pattern (1 → 8 features) but plays no role.
    expect(s.notes).toEqual(['1 linear(s) outside the recognised roles: inv_freq']);
  });

  it('RoPE from cos/sin caches: θ by phase unwrapping, maxPositions from the cache rows', () => {
    for (const ropeTheta of [10000, 500000, 1234.5]) {
      const s = recognize(makeTinyLlama({ ropeFreqs: 'cache', cachePositions: 96, ropeTheta }));
      expect([s.config.ropeTheta, s.config.maxPositions, s.configSources.maxPositions, s.rope.kind, s.rope.rotaryDim]).toEqual([ropeTheta, 96, 'graph', 'cache', 16]);
    }
  });

  it('com.microsoft::GroupQueryAttention: q/k/v by input slot, head counts from its attributes, θ from its caches', () => {
    const s = recognize(makeTinyLlama({ attention: 'gqa', heads: 8, kvHeads: 2, ropeTheta: 20000 }));
    const core = s.blocks[1].attention;
    expect(core.fused?.qualifiedOp).toBe('com.microsoft::GroupQueryAttention');
    expect([core.softmax, core.numHeads, core.kvNumHeads]).toEqual([undefined, 8, 2]);
    expect([s.config.heads, s.config.kvHeads, s.config.headDim, s.config.ropeTheta, s.rope.source?.name]).toEqual([8, 2, 8, 20000, 'cos_cache']);
  });

  it('head size with no head reshape and no head counts: config.json first, else the RoPE table (with a note)', () => {
    const m = makeTinyLlama({ attention: 'gqa', heads: 8, kvHeads: 2 });
    for (const n of m.graph.nodes.filter((x) => x.opType === 'GroupQueryAttention')) {
      n.attributes.delete('num_heads');
      n.attributes.delete('kv_num_heads');
    }
    const s = recognize(m);
    expect([s.config.headDim, s.configSources.headDim]).toEqual([8, 'graph']);
    expect(s.notes.join('\n')).toMatch(/head size 8 read from the RoPE frequencies/);
    // config.json beside the model names another head size (a partial-rotary model's table spans fewer dims): it wins
    const dir = mkdtempSync(join(tmpdir(), 'twlac-headdim-'));
    try {
      saveModel(m, join(dir, 'model.onnx'));
      writeFileSync(join(dir, 'config.json'), JSON.stringify({ head_dim: 16, num_attention_heads: 4 }));
      const c = recognize(loadModel(join(dir, 'model.onnx')));
      expect([c.config.headDim, c.config.heads, c.configSources.headDim, c.rope.rotaryDim]).toEqual([16, 4, 'config.json', 8]);
      expect(c.notes.join('\n')).not.toMatch(/read from the RoPE frequencies/);
    } finally {
      rmSync(dir, { recursive: true, force: true });
    }
  });

  it('scaled RoPE (llama3-style bent low frequencies) is refused', () => {
    const m = makeTinyLlama();
    const inv = m.graph.initializers.get('inv_freq')!;
    const v = inv.constValue!.toFloat32().map((x, i) => (i >= 4 ? x / 8 : x));
    inv.constValue = Tensor.fromFloat32([1, 8], v);
    expect(() => recognize(m)).toThrowError(new UserError('the RoPE frequencies (inv_freq) are not θ^(-2i/d): scaled RoPE is not supported'));
  });

  it('inspect table shows Gemm/bias/[out,in] linears, LayerNorm kinds, config sources and notes', () => {
    const s = recognize(makeTinyLlama({ ...FIXTURE_VARIANTS['gemm-layernorm'], layers: 1 }));
    const t = formatInspectTable(s);
    expect(t).toMatch(/^block 0 {2}attn norm: LayerNormalization ε=0\.00001 \+β {2}mlp norm: LayerNormalization ε=0\.00001 \+β {2}act: silu$/m);
    expect(t).toMatch(/^ {2}gate +128×64 +float32 +\[out,in\] +Gemm +bias +model\.layers\.0\.self_attn\.o_proj\.weight$/m);
    expect(t).toMatch(/^ {2}max positions +2048 \(default\) /m);
    expect(t).toMatch(/^notes\n {2}LayerNorm blocks/m);
    const j = JSON.parse(JSON.stringify(inspectJSON(s))) as ReturnType<typeof structureToJSON>;
    expect(j.blocks[0].linears.map((l) => [l.role, l.op, l.layout, l.bias !== null])).toEqual(BLOCK_ROLES.map((r) => [r, 'Gemm', 'out_in', true]));
    expect(j.inputGroups.map((g) => `${g.site}${g.block}:${g.linears.join(',')}`)).toEqual(['attn0:q,k,v', 'o0:o', 'mlp0:gate,up', 'down0:down', 'head-1:lm_head']);
  });

  it('an embedding scaled before block 0 (Gemma-style) is recognised with its scale; an unknown op there is refused', () => {
    const m = makeTinyLlama();
    const gather = m.graph.nodes.find((n) => n.opType === 'Gather')!;
    const x0 = gather.output(0);
    const uses = x0.uses();
    const scaled = new GraphBuilder(m.graph).op('Mul', [x0, m.graph.addInitializer('scale', Tensor.fromFloat32([], Float32Array.of(8)))], { before: uses[0].node });
    for (const u of uses) u.node.setInput(u.index, scaled);
    const s = recognize(m);
    expect(s.embedding.node).toBe(gather);
    expect(s.embedScale).toBe(8);
    expect(s.notes).toEqual(['the embedding is scaled by 8 before block 0']);
    scaled.producer()!.opType = 'Add';
    expect(() => recognize(m)).toThrow(/^the embedding output reaches block 0 through Add, which is not understood$/);
  });

  it('attention without a causal mask is refused (the runtimes are causal), and a sliding window is read off the mask', () => {
    const m = makeTinyLlama({ layers: 1 });
    const sm = m.graph.nodes.find((n) => n.opType === 'Softmax')!;
    const add = sm.input(0)!.producer()!;
    expect(add.opType).toBe('Add');
    sm.setInput(0, add.input(0)); // scores · scale straight into the Softmax
    expect(() => recognize(m)).toThrow(/no attention found \(Softmax .*: no mask between the Q·Kᵀ MatMul and the Softmax: non-causal attention is not supported\)/);
    expect(recognize(makeTinyLlama({ layers: 1, slidingWindow: 3 })).blocks[0].attention.window).toBe(3);
    expect(recognize(makeTinyLlama({ layers: 1 })).blocks[0].attention.window).toBeUndefined();
  });

  it('post-norms: Gemma-2 sandwich blocks keep their pre-norms, OLMo-2 blocks read the stream itself; soft-caps and full-width q/k norms are read', () => {
    const g2 = recognize(makeTinyLlama(FAMILY_VARIANTS.gemma2));
    for (const b of g2.blocks) {
      expect([b.attnNorm?.role, b.mlpNorm?.role, b.postNorm?.attn.role, b.postNorm?.mlp.role]).toEqual(['attn', 'mlp', 'attn-post', 'mlp-post']);
      expect(b.postNorm!.attn.gamma!.name).toBe(`model.layers.${b.index}.post_attention_layernorm.weight`);
      expect(b.postNorm!.mlp.gamma!.name).toBe(`model.layers.${b.index}.post_feedforward_layernorm.weight`);
      expect(b.mlpNorm!.gamma!.name).toBe(`model.layers.${b.index}.pre_feedforward_layernorm.weight`);
      expect(b.attention.softcap).toBe(2);
      expect(b.attention.scale).toBeCloseTo(0.2, 6);
    }
    expect(g2.blocks.map((b) => b.attention.window)).toEqual([5, undefined]);
    expect([g2.logitScale, g2.logitSoftcap]).toEqual([1, 3]);
    expect(g2.notes).toContain('norms before and after the attention and the MLP (Gemma-2/3 style)');
    const o2 = recognize(makeTinyLlama(FAMILY_VARIANTS.olmo2));
    for (const b of o2.blocks) {
      expect([b.attnNorm, b.mlpNorm]).toEqual([undefined, undefined]);
      expect(b.postNorm!.attn.gamma!.name).toBe(`model.layers.${b.index}.post_attention_layernorm.weight`);
      expect(b.qkNorm!.span).toBe('all');
      expect(b.qkNorm!.k.gamma!.length).toBe(2 * 16);
    }
    // the q/k/v and gate/up groups read the residual stream, without a norm
    expect(o2.inputGroups.filter((g) => g.site === 'attn' || g.site === 'mlp').every((g) => g.norm === undefined)).toBe(true);
    expect(o2.inputGroups.find((g) => g.site === 'attn' && g.block === 1)!.value).toBe(o2.blocks[0].residualOut);
    expect(o2.config.normEps).toBe(1e-6);
  });

  it('tanh GELU decomposed as TorchScript writes it is a GeGLU gate; a decomposition of another function is not', () => {
    const s = recognize(makeTinyLlama({ activation: 'gelu-tanh-decomposed' }));
    expect(s.blocks.map((b) => b.activation)).toEqual(['gelu-tanh', 'gelu-tanh']);
    const m = makeTinyLlama({ activation: 'gelu-tanh-decomposed' });
    m.graph.initializers.get('gelu_c')!.constValue = Tensor.fromFloat32([], Float32Array.of(0.05));
    expect(() => recognize(m)).toThrow(/^block 0: could not tell the gate projection from up/);
  });

  it('several RoPE frequency sets: each block gets the θ its query is rotated with (Gemma-3 local layers); a set no query reaches is ignored', () => {
    const withSecondSet = (theta: number) => {
      const m = makeTinyLlama();
      const inv = m.graph.initializers.get('inv_freq')!;
      const n = inv.constValue!.numel;
      const other = Float32Array.from({ length: n }, (_, i) => theta ** (-(2 * i) / (2 * n)));
      const b = new GraphBuilder(m.graph);
      const cos = m.graph.nodes.find((x) => x.opType === 'Cos')!;
      const angles = cos.input(0)!.producer()!; // Concat(freqs, freqs) of Mul(positions, inv_freq)
      const mul = angles.input(0)!.producer()!;
      b.op('Cos', [b.op('Mul', [mul.input(0)!, m.graph.addInitializer('inv_freq_global', Tensor.fromFloat32([1, n], other))])]);
      return m;
    };
    const dangling = recognize(withSecondSet(1e6));
    expect([dangling.config.ropeTheta, dangling.blocks.map((b) => b.ropeTheta)]).toEqual([10000, [undefined, undefined]]);
    expect(recognize(withSecondSet(10000)).config.ropeTheta).toBe(10000);
    // Gemma-3 shape: layers 0 and 1 local (θ 10⁴, the model-wide θ: most blocks use it), layer 2 global (θ 10⁶)
    const g3 = recognize(makeTinyLlama(FAMILY_VARIANTS.gemma3));
    expect([g3.config.ropeTheta, g3.blocks.map((b) => b.ropeTheta)]).toEqual([10000, [undefined, undefined, 1000000]]);
    // with config.json's rope_theta beside the model, its set is the model-wide one
    const dir = mkdtempSync(join(tmpdir(), 'twlac-gemma3-'));
    try {
      saveModel(makeTinyLlama(FAMILY_VARIANTS.gemma3), join(dir, 'model.onnx'));
      writeFileSync(join(dir, 'config.json'), JSON.stringify({ rope_theta: 1000000, rope_local_base_freq: 10000 }));
      const withCfg = recognize(loadModel(join(dir, 'model.onnx')));
      expect([withCfg.config.ropeTheta, withCfg.blocks.map((b) => b.ropeTheta)]).toEqual([1000000, [10000, 10000, undefined]]);
    } finally {
      rmSync(dir, { recursive: true, force: true });
    }
  });

  it('a mixture-of-experts MLP (router → Softmax → TopK beside the experts) is refused, naming the feature', () => {
    const m = makeTinyLlama();
    const s0 = recognize(m);
    const mlpIn = s0.blocks[1].mlpNorm!.output;
    const b = new GraphBuilder(m.graph);
    const router = b.op('MatMul', [mlpIn, m.graph.addInitializer('router', Tensor.fromFloat32([64, 4], new Float32Array(256).fill(0.1)))]);
    b.node('TopK', [b.op('Softmax', [router], { attrs: { axis: -1 } }), b.i64('top_k', [2])], { outputs: 2, attrs: { axis: -1 } });
    expect(() => recognize(m)).toThrow(/^block 1: mixture-of-experts MLP \(a router picks experts with TopK\) is not supported yet$/);
  });

  it('QK-norm (per-head RMSNorm on q and k) is crossed and noted', () => {
    const m = makeTinyLlama({ qkNorm: true });
    const s = recognize(m);
    expect(s.blocks.every((b) => b.attention.qkNorm)).toBe(true);
    expect(s.notes).toEqual(['q/k are normalised per head (QK-norm): not a LLaMA attention']);
    expect(s.linears.map((l) => l.role)).toEqual([...BLOCK_ROLES, ...BLOCK_ROLES, 'lm_head']);
    expect(recognize(makeTinyLlama()).blocks.some((b) => b.attention.qkNorm)).toBe(false);
  });

  it('a LayerNorm per head, each with its own γ (StableLM qk_layernorm: Split → norms → Concat), gathers the heads’ γ in head order', () => {
    const s = recognize(loadModel(join(import.meta.dirname, '../fixtures/torch-families/stablelm-qkln.onnx')));
    expect(s.notes).toContain('q/k are normalised per head, each head with its own γ by LayerNorms (QK-norm): not a LLaMA attention');
    for (const b of s.blocks) {
      const qk = b.qkNorm!;
      expect([qk.span, qk.kind, qk.q.norms.length, qk.k.norms.length]).toEqual(['head-own', 'layer', 4, 2]);
      // the fixture's per-head weights, concatenated in head order
      const want = (side: typeof qk.q) => side.norms.flatMap((n) => Array.from(constTensor(n.gamma)!.toFloat32()));
      expect(Array.from(qk.q.gamma!)).toEqual(want(qk.q));
      expect(Array.from(qk.k.gamma!)).toEqual(want(qk.k));
      expect(qk.q.norms.map((n) => n.gamma!.name)).toEqual([0, 1, 2, 3].map((h) => `layers.${b.index}.self_attn.q_layernorm.weights.${h}`));
    }
  });

  it('names are ignored: misleading tensor names do not change roles', () => {
    const s = recognize(makeTinyLlama(FIXTURE_VARIANTS['gemm-layernorm']));
    const b = s.blocks[1];
    expect(b.q.weight.name).toBe('model.layers.1.mlp.down_proj.weight');
    expect(b.down.weight.name).toBe('model.layers.1.self_attn.k_proj.weight');
    expect(b.attnNorm!.gamma!.name).toBe('model.layers.1.post_attention_layernorm.weight');
    expect([b.q.op, b.q.layout, b.q.bias !== undefined]).toEqual(['Gemm', 'out_in', true]);
    expect(s.notes).toContain('LayerNorm blocks (mean-subtracting, with β): not a LLaMA RMSNorm');
  });

  it('Skip norms: the residual sums are the Skip ops\' fourth outputs', () => {
    const s = recognize(makeTinyLlama(FIXTURE_VARIANTS['fused-skip']));
    expect(s.blocks[0].attnNorm!.kind).toBe('SimplifiedLayerNormalization');
    expect(s.blocks[1].attnNorm!.kind).toBe('SkipSimplifiedLayerNormalization');
    expect(s.blocks[0].mlpNorm!.kind).toBe('SkipSimplifiedLayerNormalization');
    expect(s.blocks[0].residualMid).toBe(s.blocks[0].mlpNorm!.nodes[0].outputs[3]);
    expect(s.blocks[1].residualIn).toBe(s.blocks[1].attnNorm!.residualOut);
    expect(s.blocks[0].attnAdd).toBeUndefined();
    for (const l of s.linears) expect([l.weightDtype, l.layout, l.weightPath.map((n) => n.opType)]).toEqual(['float16', 'out_in', ['Cast', 'Transpose']]);
  });

  it('blocks follow the residual stream, not the order nodes are listed in', () => {
    const m = makeTinyLlama({ layers: 3 });
    const g = m.graph;
    const nodes = [...g.nodes];
    const edges = nodes.map((n) => [...n.inputs]);
    for (const n of nodes) g.removeNode(n);
    nodes.forEach((n, i) => edges[i].forEach((v, j) => n.setInput(j, v)));
    for (const n of [...nodes].reverse()) g.addNode(n);
    expect(g.nodes[0].opType).not.toBe('Gather');
    const s = recognize(m);
    const ref = recognize(makeTinyLlama({ layers: 3 }));
    expect(s.linears.map((l) => l.weight.name)).toEqual(ref.linears.map((l) => l.weight.name));
  });

  it('KV-cache variant: recognised like the plain one; prefill + one cached step reproduce the full run', async () => {
    const m = makeTinyLlama({ kvCache: true, norm: 'skip-simplified' });
    const s = recognize(m);
    expect(s.config).toEqual(recognize(makeTinyLlama({ norm: 'skip-simplified' })).config);
    expect(m.graph.outputs.map((v) => v.name)).toEqual(['logits', 'present.0.key', 'present.0.value', 'present.1.key', 'present.1.value']);
    const ids = [5, 9, 200, 3, 77];
    expect(maxAbsDiff(await ortLogits(m, ids, { kvHeads: 2, headDim: 16 }), referenceLogits(s, ids))).toBeLessThan(2e-5);

    const session = await ort.InferenceSession.create(encodeModel(m));
    const step = async (tok: number[], start: number, past: ort.Tensor[] | undefined, positions = start) => {
      const f: Record<string, ort.Tensor> = {
        input_ids: new ort.Tensor('int64', BigInt64Array.from(tok, BigInt), [1, tok.length]),
        attention_mask: new ort.Tensor('int64', new BigInt64Array(start + tok.length).fill(1n), [1, start + tok.length]),
        position_ids: new ort.Tensor('int64', BigInt64Array.from(tok, (_, i) => BigInt(positions + i)), [1, tok.length]),
      };
      for (let i = 0; i < 4; i++) f[session.inputNames[3 + i]] = past?.[i] ?? new ort.Tensor('float32', new Float32Array(0), [1, 2, 0, 16]);
      return session.run(f);
    };
    const full = (await step(ids, 0, undefined)).logits.data as Float32Array;
    const first = await step(ids.slice(0, 3), 0, undefined);
    const past = session.outputNames.slice(1).map((n) => first[n]);
    expect(past[0].dims).toEqual([1, 2, 3, 16]);
    const rest = (await step(ids.slice(3), 3, past)).logits.data as Float32Array;
    const stitched = Float32Array.from([...(first.logits.data as Float32Array), ...rest]);
    expect(maxAbsDiff([stitched], [Float64Array.from(full)])).toBeLessThan(1e-5);
    // position_ids matter: the same step at the wrong positions gives other logits.
    const wrong = (await step(ids.slice(3), 3, past, 0)).logits.data as Float32Array;
    expect(maxAbsDiff([wrong], [Float64Array.from(rest)])).toBeGreaterThan(1e-3);
  });

  it('weightRows gives W as [out, in] whatever the stored layout', () => {
    const a = recognize(makeTinyLlama({ linear: 'matmul' }));
    const b = recognize(makeTinyLlama({ linear: 'matmul-transposed' }));
    const c = recognize(makeTinyLlama({ linear: 'gemm' }));
    for (const i of [1, 6, 14]) {
      expect(weightRows(b.linears[i])).toEqual(weightRows(a.linears[i]));
      expect(weightRows(c.linears[i])).toEqual(weightRows(a.linears[i]));
    }
    expect(a.linears[1].layout).toBe('in_out');
    expect(b.linears[1].layout).toBe('out_in');
  });
});

describe('norm patterns', () => {
  it('decomposed RMSNorm with fp32 upcast Casts, axes as an attribute, γ after the Cast back', () => {
    const b = new GraphBuilder();
    const x = b.input('x', { dtype: 'float16', shape: [1, 3, 8] });
    const x32 = b.op('Cast', [x], { attrs: { to: 1 } });
    const ms = b.op('ReduceMean', [b.op('Pow', [x32, b.f32('two', [], [2])])], { attrs: { axes: [-1], keepdims: 1 } });
    const r = b.op('Reciprocal', [b.op('Sqrt', [b.op('Add', [ms, b.f32('eps', [], [1e-6])])])]);
    const back = b.op('Cast', [b.op('Mul', [x32, r])], { attrs: { to: 10 } });
    const gamma = b.init('g', Tensor.fromBytes('float16', [8], new Uint8Array(16)));
    const y = b.op('Mul', [back, gamma]);
    b.output(y, 'y');
    const norms = findNorms(b.graph.nodes);
    expect(norms).toHaveLength(1);
    const n = norms[0];
    expect([n.kind, n.input, n.output, n.gamma, n.eps, n.nodes.length]).toEqual(['rms-decomposed', x, y, gamma, 1e-6, 8]);
  });

  for (const inverse of ['Div(1, Sqrt)', 'Pow(-0.5)'] as const) {
    it(`decomposed RMSNorm with 1/rms as ${inverse}, γ behind a Cast`, () => {
      const b = new GraphBuilder();
      const x = b.input('x', { dtype: 'float32', shape: [1, 3, 8] });
      const ms = b.op('ReduceMean', [b.op('Pow', [x, b.f32('two', [], [2])]), b.i64('ax', [2])], { attrs: { keepdims: 1 } });
      const A = b.op('Add', [ms, b.f32('eps', [], [1e-5])]);
      const r = inverse === 'Pow(-0.5)' ? b.op('Pow', [A, b.f32('mhalf', [], [-0.5])]) : b.op('Div', [b.f32('one', [], [1]), b.op('Sqrt', [A])]);
      const gamma = b.init('g', Tensor.fromBytes('float16', [8], new Uint8Array(16)));
      const y = b.op('Mul', [b.op('Mul', [r, x]), b.op('Cast', [gamma], { attrs: { to: 1 } })]);
      const norms = findNorms(b.graph.nodes);
      expect(norms.map((n) => [n.kind, n.input, n.output, n.gamma, n.eps])).toEqual([['rms-decomposed', x, y, gamma, 1e-5]]);
      // Every use of γ is inside the pattern (a γ fold rewrites exactly those uses).
      expect(gamma.uses().every((u) => norms[0].nodes.includes(u.node))).toBe(true);
    });
  }

  it('a norm without γ (folded) is still a norm; a ReduceMean over another axis is not', () => {
    const b = new GraphBuilder();
    const x = b.input('x', { dtype: 'float32', shape: [1, 3, 8] });
    const ms = b.op('ReduceMean', [b.op('Mul', [x, x]), b.i64('ax', [-1])], { attrs: { keepdims: 1 } });
    const y = b.op('Div', [x, b.op('Sqrt', [b.op('Add', [b.f32('eps', [], [1e-5]), ms])])]);
    b.op('ReduceMean', [b.op('Mul', [y, y]), b.i64('ax0', [0])], { attrs: { keepdims: 1 } });
    const norms = findNorms(b.graph.nodes);
    expect(norms.map((n) => [n.kind, n.input, n.output, n.gamma, n.eps])).toEqual([['rms-decomposed', x, y, undefined, 1e-5]]);
  });
});

describe('make-fixtures script', () => {
  it('writes every variant as an ONNX file that loads back and is recognised', () => {
    const dir = mkdtempSync(join(tmpdir(), 'twlac-fixtures-'));
    try {
      const files = writeFixtures(dir);
      expect(files.map((f) => basename(f))).toEqual(Object.keys(FIXTURE_VARIANTS).map((v) => `tiny-llama-${v}.onnx`));
      for (const f of files) expect(recognize(loadModel(f)).linears).toHaveLength(15);
    } finally {
      rmSync(dir, { recursive: true, force: true });
    }
  });
});

describe('unsupported graphs give one-line UserErrors', () => {
  it('a graph with no transformer', () => {
    const b = new GraphBuilder();
    const x = b.input('x', { dtype: 'float32', shape: [1, 8] });
    const h = b.op('Relu', [b.op('MatMul', [x, b.f32('w1', [8, 8], new Float32Array(64).fill(0.1))])]);
    b.output(b.op('MatMul', [h, b.f32('w2', [8, 4], new Float32Array(32).fill(0.1))]), 'y');
    expect(() => recognize(b.model())).toThrowError(new UserError('no transformer blocks recognised: found 0 RMSNorm/LayerNorm nodes feeding linears (0 norms, 2 linears in the graph)'));
  });

  it('an attention that cannot be matched is named in the error', () => {
    const m = makeTinyLlama({ layers: 3 });
    // Make block 1's value path come from two projections: v = v_proj(a) + k_proj(a).
    const s0 = recognize(makeTinyLlama({ layers: 3 }));
    const [vName, kName] = [s0.blocks[1].v.weight.name, s0.blocks[1].k.weight.name];
    const vNode = m.graph.nodes.find((n) => n.opType === 'MatMul' && n.input(1)?.name === vName)!;
    const kNode = m.graph.nodes.find((n) => n.opType === 'MatMul' && n.input(1)?.name === kName)!;
    const b = new GraphBuilder(m.graph);
    const sum = b.op('Add', [vNode.output(0), kNode.output(0)], { before: vNode.output(0).consumers()[0] });
    for (const u of vNode.output(0).uses()) if (u.node !== sum.producer()) u.node.setInput(u.index, sum);
    expect(() => recognize(m)).toThrowError(/^block 1: its attention norm does not read the residual stream written by block 0 \(an attention was not recognised: Softmax \S+: 2 linears produce the value\)$/);
  });

  it('a block whose MLP is missing is named', () => {
    const err = (opts: TinyLlamaOptions): unknown => {
      try {
        recognize(makeTinyLlama(opts));
      } catch (e) {
        return e;
      }
      return undefined;
    };
    const e1 = err({ layers: 3, dropMlpOfBlock: 1 });
    expect(e1).toBeInstanceOf(UserError);
    expect((e1 as Error).message).toBe('block 1: could not find the MLP: the post-attention stream goes straight to the next attention');
    const e2 = err({ layers: 2, dropMlpOfBlock: 1, norm: 'simplified' });
    expect((e2 as Error).message).toBe('block 1: could not find the MLP: the post-attention norm feeds one linear (lm_head.weight), not a gate/up pair, and no GELU or SiLU follows it as in an ungated MLP');
    expect((e2 as Error).message).not.toContain('\n');
  });

  it('a down projection whose weight is not a constant is named', () => {
    const m = makeTinyLlama({ layers: 4 });
    const down = m.graph.nodes.find((n) => n.opType === 'MatMul' && n.input(1)?.name === 'model.layers.3.mlp.down_proj.weight')!;
    down.setInput(1, new GraphBuilder(m.graph).input('runtime_weight', { dtype: 'float32', shape: [128, 64] }));
    expect(() => recognize(m)).toThrowError(new UserError('block 3: could not find the down projection'));
  });
});
