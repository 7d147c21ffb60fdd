// Prepares the CUDA runtime's end-to-end runs under .device/e2e/ (ignored by git, carried
// to the GPU machine; scripts/device/run-e2e.sh builds and runs them):
//   fixture/   the rtn-ternary fixture artifact (`twlac model.onnx -o DIR --weights rtn-ternary`)
//              with its CUDA target, float64 reference logits (src/runtime/reference.ts) of a
//              prompt, its reference greedy continuation, and dev.txt as int32 token ids
//   rand12m/   a random ternary model of the fixture's config with online Kronecker
//              transforms at two sites (tq1_g128 with shifts), with the same references
//   llama7b-tq1/, llama7b-tq2/  LLaMA-2-7B-shaped synthetic manifests (weights made on the GPU)
//   rand12m-tq2/ the same config with bit2 weights (tq2_g128) at A16: streaming + grouped GEMVs
//   fixture-tq2/ a tq2_g128 compile of the fixture (--fixture-tq2 DIR, default /tmp/fx-tq2)
//   fixture-a8/ a tq2_g128 compile of the fixture with 8-bit activations everywhere
//              (`--format tq2_g128 --acts 8`; --fixture-a8 DIR, default /tmp/fx-a8): prefill
//              chunks beyond 16 tokens run the int8 prefill GEMM
//   rand12m-a8/  the same config with bit2 weights (tq2_g128) and 8-bit activations at every
//              site (clip 0.95), so the int8-activation GEMV runs end to end
//   llama7b-tq2-a8/ the 7B shape with 8-bit activation sites
//   llama7b-tq1-a4/ the 7B shape as twlac compiles by default (tq1_g128) with 4-bit sites
//   fixture-lat-a8/ fixture-a8 in the lattice format (`--format tq2_g128_lat --acts 8`;
//              --fixture-lat-a8 DIR, default /tmp/fx-lat-a8): the fold-free prefill GEMM
//   llama7b-tq2lat-a8/, llama7b-tq1lat-a4/ the 7B shapes above in the lattice formats
//   fixture-lat-a8-offlattice/ fixture-lat-a8's weights with one scale off its row's lattice
//   rand12m-qscale/ rand12m-tq2 with the block program's query scale 0.1 (not 1/√d)
//   rand12m-bias/ rand12m-tq2 with biases on q, k, v, o and lm_head
//   rand12m-window/, rand12m-partial/, rand12m-geglu/, rand12m-scales/ rand12m-tq2 with one more
//              block-program feature each
//   rand12m-qknorm/ rand12m-tq2 with per-head q/k RMSNorms
//   rand12m-order2/ rand12m-tq2 with v and down as order-2 linears (a second ternary plane)
//   rand12m-gelu/ rand12m-tq2 with the GELU(erf)-gated MLP
//   rand12m-gpt2-like/ rand12m-tq2 as GPT-2: LayerNorms with β, learned positions and no RoPE,
//              ungated GELU(tanh) MLPs (up → σ → down), biases on every linear
//   rand12m-neox-like/ rand12m-tq2 as GPT-NeoX: LayerNorms with β, the parallel residual (each
//              branch with its own norm), RoPE on 16 of 64 dims, ungated GELU(erf) MLPs
//   rand12m-gemma2-like/ rand12m-tq2 as Gemma-2/3: post-norms, attention and final-logit
//              soft-caps (small caps, so that tanh bends), a RoPE θ of their own on even layers
//   rand12m-olmo2-like/ rand12m-tq2 as OLMo-2: no pre-norms, post-norms, q/k RMSNorms over the
//              whole projection
//   rand12m-stablelm-qkln/ rand12m-tq2 as StableLM with qk_layernorm: LayerNorms with β,
//              per-head q/k LayerNorms each head with its own γ, RoPE on 16 of 64 dims
// Usage: npx tsx scripts/device/gen-e2e.ts [FIXTURE_ARTIFACT_DIR] [--only name,name]
import { copyFileSync, existsSync, mkdirSync, readFileSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { writeArtifact } from '../../src/artifact/build.ts';
import type { ModelConfig } from '../../src/graph/model-config.ts';
import { randomArtifactModel, randomTernaryLinear, rng } from '../../src/artifact/random.ts';
import { order2PlaneFormat } from '../../src/formats/order2.ts';
import { readArtifact } from '../../src/artifact/weights.ts';
import { CUDA_EMITTABLE, emitCuda } from '../../src/codegen/cuda/emit.ts';
import { syntheticManifest } from '../../src/codegen/cuda/synthetic.ts';
import { loadTokenizer, tokenizeFile } from '../../src/eval/tokenizer.ts';
import { ternaryFormat } from '../../src/formats/ternary.ts';
import { referenceGreedy, referenceLogits } from '../../src/runtime/reference.ts';

const root = '.device/e2e';
const fixtureDir = process.argv[2] && !process.argv[2].startsWith('--') ? process.argv[2] : '/tmp/cuda-fixture';
const only = process.argv.includes('--only') ? process.argv[process.argv.indexOf('--only') + 1].split(',') : null;
const want = (name: string) => !only || only.includes(name);
const archs = ['sm_90a'] as const;

function references(dir: string, ids: number[], prompt: number[], steps: number) {
  const art = readArtifact(dir);
  const logits = referenceLogits(art, ids);
  writeFileSync(join(dir, 'ref_logits.bin'), new Uint8Array(logits.buffer));
  writeFileSync(join(dir, 'ref_ids.txt'), ids.join(','));
  const greedy = referenceGreedy(art, prompt, steps);
  writeFileSync(join(dir, 'ref_prompt.txt'), prompt.join(','));
  writeFileSync(join(dir, 'ref_greedy.txt'), greedy.join(' ') + '\n');
  emitCuda(art.manifest, join(dir, 'kernels', 'cuda'), archs, CUDA_EMITTABLE);
}

mkdirSync(root, { recursive: true });
const tok = loadTokenizer('../shared/models/pydocs-llama-12m/tokenizer.json');
const prompt = Array.from(tok.encode('def read_file(path):\n    """Return the contents of a file."""\n'));

// Real fixture artifacts: the rtn-ternary tq1 one (staged GEMVs) and, when given with
// --fixture-tq2 DIR, a tq2_g128 one (streaming and grouped GEMVs).
const argDir = (flag: string, dflt: string) => (process.argv.includes(flag) ? process.argv[process.argv.indexOf(flag) + 1] : dflt);
let devIds: Int32Array | null = null;
for (const [name, src] of [['fixture', fixtureDir], ['fixture-tq2', argDir('--fixture-tq2', '/tmp/fx-tq2')], ['fixture-a8', argDir('--fixture-a8', '/tmp/fx-a8')], ['fixture-lat-a8', argDir('--fixture-lat-a8', '/tmp/fx-lat-a8')]] as const) {
  if (!want(name)) console.log(`${name}: skipped`);
  else if (existsSync(join(src, 'manifest.json'))) {
    const d = join(root, name);
    mkdirSync(d, { recursive: true });
    for (const f of ['manifest.json', 'weights.bin']) copyFileSync(join(src, f), join(d, f));
    devIds ??= tokenizeFile(tok, '../shared/data/pydocs/dev.txt');
    const dev = devIds;
    writeFileSync(join(d, 'dev_ids.bin'), new Uint8Array(dev.buffer, dev.byteOffset, dev.byteLength));
    references(d, Array.from(dev.subarray(0, 40)), prompt, 64);
    console.log(`${name}: ${dev.length} dev tokens, prompt of ${prompt.length}`);
  } else console.log(`no ${name} artifact at ${src}; skipped`);
}

// fixture-lat-a8-offlattice/: fixture-lat-a8 with one scale of blocks.2.up nudged by one fp16
// ulp, off its row's lattice; run-e2e.sh expects the host program to refuse it (exit 1, one line).
if (want('fixture-lat-a8-offlattice') && !existsSync(join(root, 'fixture-lat-a8', 'manifest.json'))) console.log('fixture-lat-a8-offlattice: needs .device/e2e/fixture-lat-a8 (generate it first, or in the same run); skipped');
else if (want('fixture-lat-a8-offlattice')) {
  const src = join(root, 'fixture-lat-a8');
  const d = join(root, 'fixture-lat-a8-offlattice');
  mkdirSync(d, { recursive: true });
  const manifest = JSON.parse(readFileSync(join(src, 'manifest.json'), 'utf8'));
  const w = readFileSync(join(src, 'weights.bin'));
  const t = manifest.tensors[manifest.blocks[2].up.scales];
  const row = 5; // first nonzero scale of row 5
  const groups = t.bytes / 2 / manifest.blocks[2].up.rows;
  let at = -1;
  for (let g = 0; g < groups && at < 0; g++) if (w.readUInt16LE(t.offset + 2 * (row * groups + g)) & 0x7fff) at = t.offset + 2 * (row * groups + g);
  if (at < 0) throw new Error('fixture-lat-a8: row 5 of blocks.2.up has no nonzero scale');
  w.writeUInt16LE(w.readUInt16LE(at) + 1, at);
  writeFileSync(join(d, 'weights.bin'), w);
  copyFileSync(join(src, 'manifest.json'), join(d, 'manifest.json'));
  console.log(`fixture-lat-a8-offlattice: scale at byte ${at} of blocks.2.up row ${row} nudged by one ulp`);
}

const fixtureConfig: ModelConfig = { arch: 'llama', vocab: 4096, hidden: 384, layers: 6, heads: 6, kvHeads: 2, headDim: 64, intermediate: 1024, ropeTheta: 10000, normEps: 1e-5, maxPositions: 512 };
if (want('rand12m')) {
  const d = join(root, 'rand12m');
  mkdirSync(d, { recursive: true });
  const c = fixtureConfig;
  const m = randomArtifactModel(c, ternaryFormat('trit5', 128, true), 7);
  const rand = rng(99);
  const nearIdentity = (n: number) => Float64Array.from({ length: n * n }, (_, i) => (i % (n + 1) === 0 ? 1 : 0) + 0.05 * (rand() * 2 - 1));
  m.blocks.forEach((b) => {
    b.acts.attn.transform = { l: 16, r: 24, C: nearIdentity(16), B: nearIdentity(24) };
    b.acts.down.transform = { l: 32, r: 32, C: nearIdentity(32), B: nearIdentity(32) };
  });
  writeArtifact(d, m);
  const ids = Array.from({ length: 40 }, (_, i) => (i * 977 + 13) % c.vocab);
  references(d, ids, prompt, 32);
  console.log('rand12m: written');
}
// rand12m-qscale/: rand12m-tq2 whose block program states a query scale of 0.1 instead of
// 1/√64 (Granite's attention_multiplier): the CUDA attention kernels generated for it (split
// decode, tensor-core prefill) against the float64 reference.
if (want('rand12m-qscale')) {
  const d = join(root, 'rand12m-qscale');
  mkdirSync(d, { recursive: true });
  const m = randomArtifactModel(fixtureConfig, ternaryFormat('bit2', 128, true), 9);
  m.blocks.forEach((b) => (b.attention.scale = 0.1));
  writeArtifact(d, m);
  const ids = Array.from({ length: 40 }, (_, i) => (i * 733 + 3) % fixtureConfig.vocab);
  references(d, ids, prompt, 32);
  console.log('rand12m-qscale: written');
}
// rand12m-qknorm/: rand12m-tq2 with per-head q/k RMSNorms (Qwen3) in every block.
if (want('rand12m-qknorm')) {
  const d = join(root, 'rand12m-qknorm');
  mkdirSync(d, { recursive: true });
  const m = randomArtifactModel(fixtureConfig, ternaryFormat('bit2', 128, true), 9);
  const rand = rng(6);
  const gamma = () => Float32Array.from({ length: fixtureConfig.headDim }, () => 0.8 + 0.4 * rand());
  for (const b of m.blocks) b.attention.qkNorm = { q: { gamma: gamma(), eps: 1e-6 }, k: { gamma: gamma(), eps: 1e-6 } };
  writeArtifact(d, m);
  const ids = Array.from({ length: 40 }, (_, i) => (i * 733 + 3) % fixtureConfig.vocab);
  references(d, ids, prompt, 32);
  console.log('rand12m-qknorm: written');
}
// rand12m-bias/: rand12m-tq2 with biases on q, k, v (Qwen2) and on o and lm_head: the CUDA
// bias adds after each linear against the float64 reference.
if (want('rand12m-bias')) {
  const d = join(root, 'rand12m-bias');
  mkdirSync(d, { recursive: true });
  const m = randomArtifactModel(fixtureConfig, ternaryFormat('bit2', 128, true), 9);
  const rand = rng(5);
  const bias = (n: number) => Float32Array.from({ length: n }, () => 0.1 * (rand() * 2 - 1));
  for (const b of m.blocks) for (const r of ['q', 'k', 'v', 'o'] as const) b.linears[r].bias = bias(b.linears[r].rows);
  m.lmHead.bias = bias(m.lmHead.rows);
  writeArtifact(d, m);
  const ids = Array.from({ length: 40 }, (_, i) => (i * 733 + 3) % fixtureConfig.vocab);
  references(d, ids, prompt, 32);
  console.log('rand12m-bias: written');
}
// rand12m-window/, rand12m-partial/, rand12m-geglu/, rand12m-gelu/, rand12m-scales/: rand12m-tq2
// with one block-program feature each (Mistral/Gemma-2 sliding windows of 16 keys on even
// blocks, the other blocks global; RoPE on 32 of the 64 head dims; the GELU(tanh)- and
// GELU(erf)-gated MLPs; Gemma's and Granite's embedding, residual and logit multipliers; v and
// down as order-2 linears); rand12m-gpt2-like/, rand12m-neox-like/, rand12m-gemma2-like/,
// rand12m-olmo2-like/, rand12m-stablelm-qkln/: a family's features together (see the list
// above); each against the float64 reference.
/** LayerNorm with random γ and β at every norm, and an ungated MLP of `activation` in every block (GPT-2, GPT-NeoX). */
function gptLike(m: ReturnType<typeof randomArtifactModel>, activation: 'gelu' | 'gelu-tanh', seed: number): void {
  const rand = rng(seed);
  const beta = () => Float32Array.from({ length: m.config.hidden }, () => 0.1 * (rand() * 2 - 1));
  m.program.norm = 'layer';
  m.finalNormBias = beta();
  for (const b of m.blocks) {
    b.attnNormBias = beta();
    b.mlpNormBias = beta();
    delete b.linears.gate;
    b.mlp = { activation, gated: false };
  }
}
/** Random γ around 1 of n features. */
function gammas(rand: () => number, n: number): Float32Array {
  return Float32Array.from({ length: n }, () => 0.8 + 0.4 * rand());
}
/** Post-norms (RMSNorm, own γ) of every block's attention and MLP outputs (Gemma-2/3, OLMo-2). */
function postNorms(m: ReturnType<typeof randomArtifactModel>, rand: () => number): void {
  for (const b of m.blocks) b.postNorm = { attn: { gamma: gammas(rand, m.config.hidden), eps: 1e-6 }, mlp: { gamma: gammas(rand, m.config.hidden), eps: 1e-6 } };
}
const variants: Record<string, (m: ReturnType<typeof randomArtifactModel>) => void> = {
  'rand12m-window': (m) => m.blocks.forEach((b, i) => (b.attention.window = i % 2 === 0 ? 16 : null)),
  'rand12m-partial': (m) => (m.program.rope.rotaryDim = 32),
  'rand12m-order2': (m) => {
    const rand = rng(11);
    for (const b of m.blocks) for (const r of ['v', 'down'] as const) {
      const l = b.linears[r];
      l.order2 = randomTernaryLinear(r, l.rows, l.cols, order2PlaneFormat(l.ternary!.format), rand).ternary;
    }
  },
  'rand12m-geglu': (m) => m.blocks.forEach((b) => (b.mlp.activation = 'gelu-tanh')),
  'rand12m-gelu': (m) => m.blocks.forEach((b) => (b.mlp.activation = 'gelu')),
  'rand12m-gpt2-like': (m) => {
    gptLike(m, 'gelu-tanh', 12);
    const rand = rng(13);
    const c = m.config;
    m.program.rope = { kind: 'none', theta: c.ropeTheta, rotaryDim: 0 };
    m.positionEmbed = Float32Array.from({ length: c.maxPositions * c.hidden }, () => 0.5 * (rand() * 2 - 1));
    const bias = (n: number) => Float32Array.from({ length: n }, () => 0.1 * (rand() * 2 - 1));
    for (const b of m.blocks) for (const l of Object.values(b.linears)) l.bias = bias(l.rows);
    m.lmHead.bias = bias(m.lmHead.rows);
  },
  'rand12m-neox-like': (m) => {
    gptLike(m, 'gelu', 14);
    m.program.residual = 'parallel';
    m.program.rope.rotaryDim = 16;
  },
  'rand12m-gemma2-like': (m) => {
    postNorms(m, rng(15));
    m.blocks.forEach((b, i) => {
      b.attention.softcap = 1;
      if (i % 2 === 0) b.attention.ropeTheta = 1000;
    });
    m.program.logitSoftcap = 2;
  },
  'rand12m-olmo2-like': (m) => {
    const rand = rng(16);
    postNorms(m, rand);
    const { heads, kvHeads, headDim } = m.config;
    for (const b of m.blocks) {
      b.preNorm = false;
      b.attention.qkNorm = { q: { gamma: gammas(rand, heads * headDim), eps: 1e-6 }, k: { gamma: gammas(rand, kvHeads * headDim), eps: 1e-6 }, span: 'all' };
    }
  },
  'rand12m-stablelm-qkln': (m) => {
    const rand = rng(17);
    const { hidden, heads, kvHeads, headDim } = m.config;
    const beta = () => Float32Array.from({ length: hidden }, () => 0.1 * (rand() * 2 - 1));
    m.program.norm = 'layer';
    m.program.rope.rotaryDim = 16;
    m.finalNormBias = beta();
    for (const b of m.blocks) {
      b.attnNormBias = beta();
      b.mlpNormBias = beta();
      b.attention.qkNorm = { q: { gamma: gammas(rand, heads * headDim), eps: 1e-5 }, k: { gamma: gammas(rand, kvHeads * headDim), eps: 1e-5 }, span: 'head-own', kind: 'layer' };
    }
  },
  'rand12m-scales': (m) => {
    m.program.embedScale = 2.5;
    m.program.logitScale = 0.4;
    m.blocks.forEach((b) => (b.residualScale = { attn: 0.7, mlp: 1.3 }));
  },
};
for (const [name, change] of Object.entries(variants)) {
  if (!want(name)) continue;
  const d = join(root, name);
  mkdirSync(d, { recursive: true });
  const m = randomArtifactModel(fixtureConfig, ternaryFormat('bit2', 128, true), 9);
  change(m);
  writeArtifact(d, m);
  const ids = Array.from({ length: 40 }, (_, i) => (i * 733 + 3) % fixtureConfig.vocab);
  references(d, ids, prompt, 32);
  console.log(`${name}: written`);
}
if (want('rand12m-tq2')) {
  const d = join(root, 'rand12m-tq2');
  mkdirSync(d, { recursive: true });
  writeArtifact(d, randomArtifactModel(fixtureConfig, ternaryFormat('bit2', 128, true), 9));
  const ids = Array.from({ length: 40 }, (_, i) => (i * 733 + 3) % fixtureConfig.vocab);
  references(d, ids, prompt, 32);
  console.log('rand12m-tq2: written');
}
if (want('rand12m-a8')) {
  const d = join(root, 'rand12m-a8');
  mkdirSync(d, { recursive: true });
  const m = randomArtifactModel(fixtureConfig, ternaryFormat('bit2', 128, true), 8, 8);
  m.blocks.forEach((b) => (b.acts.down.clip = 0.95));
  writeArtifact(d, m);
  const ids = Array.from({ length: 40 }, (_, i) => (i * 577 + 5) % fixtureConfig.vocab);
  references(d, ids, prompt, 32);
  console.log('rand12m-a8: written');
}

const llama7b: ModelConfig = { arch: 'llama', vocab: 32000, hidden: 4096, layers: 32, heads: 32, kvHeads: 32, headDim: 128, intermediate: 11008, ropeTheta: 10000, normEps: 1e-5, maxPositions: 2304 };
for (const [name, f, bits] of [['llama7b-tq1', ternaryFormat('trit5', 128, true), 16], ['llama7b-tq2', ternaryFormat('bit2', 128, true), 16], ['llama7b-tq2-a8', ternaryFormat('bit2', 128, true), 8], ['llama7b-tq1-a4', ternaryFormat('trit5', 128, true), 4], ['llama7b-tq2lat-a8', ternaryFormat('bit2', 128, true, true), 8], ['llama7b-tq1lat-a4', ternaryFormat('trit5', 128, true, true), 4]] as const) {
  if (!want(name)) continue;
  const d = join(root, name);
  mkdirSync(d, { recursive: true });
  const man = syntheticManifest(llama7b, f, bits);
  writeFileSync(join(d, 'manifest.json'), JSON.stringify(man));
  emitCuda(man, join(d, 'kernels', 'cuda'), archs, CUDA_EMITTABLE);
  console.log(`${name}: ${(man.files['weights.bin'] / 2 ** 30).toFixed(2)} GiB of weights to synthesise`);
}
