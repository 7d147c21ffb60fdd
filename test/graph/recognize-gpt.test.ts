// Recognition of the GPT-2 / GPT-NeoX / Phi-2 block features: GELU found by what a region of
// elementwise ops computes (every exporter spelling, and not a near miss), erf in float64,
// scalars computed from static shapes, decomposed LayerNorm with β, parallel residual blocks
// (two norms, or one shared), learned absolute positions without RoPE.
import { describe, expect, it } from 'vitest';
import { GraphBuilder } from '../../src/graph/builder.ts';
import type { Value } from '../../src/graph/ir.ts';
import { pointwiseActivation } from '../../src/graph/patterns/activation.ts';
import { findNorms } from '../../src/graph/patterns/norm.ts';
import { staticScalar } from '../../src/graph/patterns/static-scalar.ts';
import { recognize, structureToJSON } from '../../src/graph/recognize.ts';
import { formatInspectTable } from '../../src/cli/inspect.ts';
import { checkModel } from '../../src/passes/check-model.ts';
import { compile } from '../../src/compile.ts';
import { DEFAULT_REFINE } from '../../src/passes/refine.ts';
import { splitPackedLinears } from '../../src/passes/split-packed.ts';
import { erf } from '../../src/util/erf.ts';
import { GPT_FAMILY_VARIANTS, makeTinyLlama } from '../fixtures/make-fixtures.ts';

/** x → f(b, x) → a consumer outside the region; returns x and the value f made. */
function region(f: (b: GraphBuilder, x: Value, c: (v: number) => Value) => Value): { x: Value; y: Value } {
  const b = new GraphBuilder();
  const x = b.input('x', { dtype: 'float32', shape: [4] });
  let n = 0;
  const y = f(b, x, (v) => b.f32(`c${n++}`, [], [v]));
  b.output(b.op('MatMul', [y, b.f32('w', [4, 4], new Float32Array(16))]), 'out');
  return { x, y };
}

describe('pointwiseActivation names GELU however it is spelled', () => {
  const cases: [string, 'gelu' | 'gelu-tanh' | 'silu', (b: GraphBuilder, x: Value, c: (v: number) => Value) => Value][] = [
    ['TorchScript aten::gelu: x·½·(1 + erf(x/√2))', 'gelu', (b, x, c) => b.op('Mul', [b.op('Mul', [x, b.op('Add', [b.op('Erf', [b.op('Div', [x, c(Math.SQRT2)])]), c(1)])]), c(0.5)])],
    ['erf form, constants first and Mul by 1/√2', 'gelu', (b, x, c) => b.op('Mul', [c(0.5), b.op('Mul', [b.op('Add', [c(1), b.op('Erf', [b.op('Mul', [c(Math.SQRT1_2), x])])]), x])])],
    ['GPT-2 NewGELU with Pow(x, 3)', 'gelu-tanh', (b, x, c) => {
      const inner = b.op('Mul', [c(Math.sqrt(2 / Math.PI)), b.op('Add', [x, b.op('Mul', [c(0.044715), b.op('Pow', [x, c(3)])])])]);
      return b.op('Mul', [b.op('Mul', [c(0.5), x]), b.op('Add', [c(1), b.op('Tanh', [inner])])]);
    }],
    ['tanh GELU with x·x·x', 'gelu-tanh', (b, x, c) => {
      const cube = b.op('Mul', [b.op('Mul', [x, x]), x]);
      const t = b.op('Tanh', [b.op('Mul', [b.op('Add', [x, b.op('Mul', [cube, c(0.044715)])]), c(Math.sqrt(2 / Math.PI))])]);
      return b.op('Mul', [b.op('Mul', [x, c(0.5)]), b.op('Add', [t, c(1)])]);
    }],
    ['ai.onnx Gelu (opset 20), approximate="tanh"', 'gelu-tanh', (b, x) => b.op('Gelu', [x], { attrs: { approximate: 'tanh' } })],
    ['com.microsoft::Gelu', 'gelu', (b, x) => b.op('Gelu', [x], { domain: 'com.microsoft' })],
    ['x·sigmoid(x)', 'silu', (b, x) => b.op('Mul', [x, b.op('Sigmoid', [x])])],
  ];
  for (const [what, kind, f] of cases) {
    it(what, () => {
      const { x, y } = region(f);
      expect(pointwiseActivation(x)).toEqual({ kind, out: y });
    });
  }

  it('refuses a near miss (0.045 for 0.044715), a non-scalar operand, and a value read outside the region', () => {
    const near = region((b, x, c) => b.op('Mul', [b.op('Mul', [c(0.5), x]), b.op('Add', [c(1), b.op('Tanh', [b.op('Mul', [c(Math.sqrt(2 / Math.PI)), b.op('Add', [x, b.op('Mul', [c(0.045), b.op('Pow', [x, c(3)])])])])])])]));
    expect(pointwiseActivation(near.x)).toBeUndefined();
    const vec = region((b, x) => b.op('Mul', [x, b.op('Sigmoid', [b.op('Add', [x, b.f32('bias', [4], [0, 0, 0, 0])])])]));
    expect(pointwiseActivation(vec.x)).toBeUndefined();
    const leak = region((b, x, c) => {
      const half = b.op('Mul', [x, c(0.5)]);
      b.output(b.op('Neg', [b.op('Mul', [half, b.f32('w2', [4], [1, 2, 3, 4])])]), 'leak');
      return b.op('Mul', [half, b.op('Add', [b.op('Erf', [b.op('Div', [x, c(Math.SQRT2)])]), c(1)])]);
    });
    expect(pointwiseActivation(leak.x)).toBeUndefined();
  });
});

describe('erf', () => {
  it('matches reference values to 1e-14 (series and continued fraction sides)', () => {
    // erf(x) from the standard tables (16 significant digits).
    const table: [number, number][] = [[0.1, 0.1124629160182849], [0.5, 0.5204998778130465], [1, 0.8427007929497149], [2, 0.9953222650189527], [2.5, 0.9995930479825550], [3, 0.9999779095030014], [-1.5, -0.9661051464753108]];
    for (const [x, y] of table) expect(Math.abs(erf(x) - y)).toBeLessThan(1e-14);
  });
});

describe('staticScalar', () => {
  it("evaluates GPT-2's 1/√(v.size(−1)) from the Reshape that split v into heads", () => {
    const b = new GraphBuilder();
    const v = b.input('v', { dtype: 'float32', shape: ['b', 's', 64] });
    const seq = b.op('Unsqueeze', [b.op('Gather', [b.op('Shape', [v]), b.i64('one', [1], [])]), b.i64('zero', [0])]);
    const heads = b.op('Transpose', [b.op('Reshape', [v, b.op('Concat', [b.i64('b0', [1]), seq, b.i64('h', [4]), b.i64('d', [16])], { attrs: { axis: 0 } })])], { attrs: { perm: [0, 2, 1, 3] } });
    const dim = b.op('Cast', [b.op('Squeeze', [b.op('Slice', [b.op('Shape', [heads]), b.i64('m1', [-1]), b.i64('big', [2 ** 53])]), b.i64('z', [0])])], { attrs: { to: 1 } });
    const scale = b.op('Add', [b.op('ConstantOfShape', [b.i64('none', [], [0])], { attrs: { value: { type: 'tensor', value: (b.f32('zf', [1], [0]).constValue!) } } }), b.op('Pow', [dim, b.f32('half', [], [0.5])])]);
    expect(staticScalar(scale)).toBe(4);
    expect(staticScalar(b.op('Gather', [b.op('Shape', [heads]), b.i64('two', [2], [])]))).toBeUndefined(); // the sequence length is not static
  });
});

describe('recognition of GPT-style blocks', () => {
  it('decomposed LayerNorm: one norm with γ and β, mean subtraction included', () => {
    const m = makeTinyLlama(GPT_FAMILY_VARIANTS.gpt2);
    const norms = findNorms(m.graph.nodes);
    expect(norms).toHaveLength(5);
    for (const n of norms) {
      expect([n.kind, n.rms, !!n.gamma, !!n.beta]).toEqual(['ln-decomposed', false, true, true]);
      expect(n.nodes.map((x) => x.opType).slice(0, 2)).toEqual(['ReduceMean', 'Sub']);
    }
  });

  it('GPT-2: learned positions, no RoPE, ungated tanh-GELU MLP, tied lm_head; inspect JSON says so', () => {
    const m = makeTinyLlama(GPT_FAMILY_VARIANTS.gpt2);
    splitPackedLinears(m);
    const s = recognize(m, { readConfigJson: false });
    expect(s.positionEmbedding?.table.name).toBe('model.wpe.weight');
    expect(s.config.maxPositions).toBe(128);
    expect(s.rope.rotaryDim).toBe(0);
    expect(s.tiedEmbeddings).toBe(true);
    expect(s.blocks.map((b) => [!!b.gate, b.activation, b.parallel])).toEqual([[false, 'gelu-tanh', false], [false, 'gelu-tanh', false]]);
    const j = structureToJSON(s);
    expect(j.notes).toEqual(expect.arrayContaining(['learned absolute position embeddings, no RoPE', 'ungated gelu-tanh MLP down(σ(up(m))): not a LLaMA SwiGLU']));
    expect(j.blocks[0].linears.map((l) => l.role)).toEqual(['q', 'k', 'v', 'o', 'up', 'down']);
    const table = formatInspectTable(s);
    expect(table).toMatch(/^positions {2}model\.wpe\.weight {2}128×64 {2}\(learned, added to the embedding\)$/m);
    expect(table).toMatch(/rope θ +none /);
  });

  it('GPT-NeoX: parallel residual with its own MLP norm; Phi-2: one norm shared by attention and MLP', () => {
    const neox = makeTinyLlama(GPT_FAMILY_VARIANTS.neox);
    splitPackedLinears(neox);
    const n = recognize(neox);
    expect(n.blocks.every((b) => b.parallel && b.mlpNorm !== b.attnNorm && b.activation === 'gelu')).toBe(true);
    expect(n.norms).toHaveLength(5);
    const phi = recognize(makeTinyLlama(GPT_FAMILY_VARIANTS.phi2));
    expect(phi.blocks.every((b) => b.parallel && b.mlpNorm === b.attnNorm && b.activation === 'gelu-tanh')).toBe(true);
    expect(phi.norms).toHaveLength(3);
    expect(phi.inputGroups.filter((g) => g.site === 'mlp').every((g) => g.norm === phi.blocks[g.block].attnNorm)).toBe(true);
    expect(phi.notes).toContain('parallel residual: attention and MLP read the block input through one shared norm');
    // twlac inspect shows the layout per block
    expect(formatInspectTable(phi)).toMatch(/^block 0 {2}attn norm: LayerNormalization ε=0\.00001 \+β {2}mlp norm: the attn norm \(shared\) {2}act: gelu-tanh \(ungated\) {2}residual: parallel$/m);
    expect(formatInspectTable(n)).toMatch(/^block 1 {2}attn norm: LayerNormalization .* {2}mlp norm: LayerNormalization .* {2}act: gelu \(ungated\) {2}residual: parallel$/m);
  });

  it('calibration segments longer than the learned position table are refused in one line (ORT would index past wpe)', () => {
    const s = recognize(makeTinyLlama({ ...GPT_FAMILY_VARIANTS['gpt2-dynamo'], cachePositions: 16 }), { readConfigJson: false });
    expect(() => checkModel(s, [new Int32Array(16)])).not.toThrow();
    expect(() => checkModel(s, [new Int32Array(17)])).toThrow(/^calibration segments of 17 tokens are longer than the 16 positions the model's position tables hold; use shorter segments$/);
  });

  it('--refine (whose block gradient is LLaMA-only) refuses a GPT-style model in one line', async () => {
    const calib = [Int32Array.from({ length: 40 }, (_, i) => (i * 37) % 256)];
    await expect(compile(makeTinyLlama(GPT_FAMILY_VARIANTS.phi2), { calib, refine: { ...DEFAULT_REFINE, seq: 32 } })).rejects.toThrow(/^pass refine: --refine supports LLaMA-style blocks only .*GPT-2 \/ GPT-NeoX \/ Phi-2 style$/);
  });

  it('refuses a model that mixes RMSNorm and LayerNorm blocks', () => {
    const m = makeTinyLlama({ norm: 'layernorm', seed: 5 });
    const ln = m.graph.nodes.find((x) => x.opType === 'LayerNormalization')!;
    ln.opType = 'SimplifiedLayerNormalization';
    ln.setInput(2, undefined);
    expect(() => recognize(m)).toThrow(/mixes RMSNorm and LayerNorm/);
  });
});
