// A random ternary transformer in artifact form, for kernel and runtime tests and for
// speed benchmarks where accuracy does not matter. Deterministic given the seed.
import { mulberry32 } from '../util/prng.ts';
import { encodeTernary, groupsPerRow, snapRowToLattice, type TernaryFormat } from '../formats/ternary.ts';
import type { ModelConfig } from '../graph/model-config.ts';
import { llamaBlockProgram, llamaProgram } from '../program/block-program.ts';
import { ACT_SITES, BLOCK_LINEARS, type ArtifactBlock, type ArtifactLinear, type ArtifactModel, type BlockLinearRole } from './build.ts';

/** The project's seeded PRNG (src/util/prng.ts). */
export const rng = mulberry32;

export function linearShape(c: ModelConfig, role: BlockLinearRole): [rows: number, cols: number] {
  const qd = c.heads * c.headDim;
  const kvd = c.kvHeads * c.headDim;
  switch (role) {
    case 'q': return [qd, c.hidden];
    case 'k': case 'v': return [kvd, c.hidden];
    case 'o': return [c.hidden, qd];
    case 'gate': case 'up': return [c.intermediate, c.hidden];
    case 'down': return [c.hidden, c.intermediate];
  }
}

export function randomTernaryLinear(role: BlockLinearRole | 'lm_head', rows: number, cols: number, f: TernaryFormat, rand: () => number): ArtifactLinear {
  const t = new Int8Array(rows * cols);
  for (let i = 0; i < t.length; i++) {
    const u = rand();
    t[i] = u < 0.3 ? -1 : u < 0.7 ? 0 : 1;
  }
  const ng = groupsPerRow(f, cols);
  const s = 1 / Math.sqrt(cols * 0.6);
  const scale = Float32Array.from({ length: rows * ng }, () => s * (0.5 + rand()));
  const shift = Float32Array.from({ length: rows * ng }, () => s * 0.1 * (rand() - 0.5));
  if (f.lattice) for (let n = 0; n < rows; n++) snapRowToLattice(scale, f.shift ? shift : undefined, n, ng);
  return { name: `${role}`, role: role as ArtifactLinear['role'], rows, cols, ternary: encodeTernary(f, rows, cols, t, scale, f.shift ? shift : undefined) };
}

export function randomArtifactModel(c: ModelConfig, f: TernaryFormat, seed = 0, actBits = 16): ArtifactModel {
  const rand = rng(seed);
  const dense = (n: number, s: number) => Float32Array.from({ length: n }, () => s * (rand() * 2 - 1));
  const ones = (n: number) => Float32Array.from({ length: n }, () => 0.8 + 0.4 * rand());
  const blocks: ArtifactBlock[] = [];
  for (let i = 0; i < c.layers; i++) {
    const linears = Object.fromEntries(
      BLOCK_LINEARS.map((r) => {
        const [rows, cols] = linearShape(c, r);
        const l = randomTernaryLinear(r, rows, cols, f, rand);
        l.name = `blocks.${i}.${r}`;
        return [r, l];
      }),
    ) as ArtifactBlock['linears'];
    const acts = Object.fromEntries(ACT_SITES.map((s) => [s, { bits: actBits, clip: 1 }])) as ArtifactBlock['acts'];
    blocks.push({ ...llamaBlockProgram(c.headDim), attnNorm: ones(c.hidden), mlpNorm: ones(c.hidden), linears, acts });
  }
  return {
    config: c,
    program: llamaProgram(c),
    source: { path: `random:seed=${seed}`, inputs: ['input_ids'], outputs: ['logits'] },
    method: { weights: 'random', format: f.id },
    embed: dense(c.vocab * c.hidden, 1),
    finalNorm: ones(c.hidden),
    lmHead: { name: 'lm_head', role: 'lm_head', rows: c.vocab, cols: c.hidden, dense: dense(c.vocab * c.hidden, 1 / Math.sqrt(c.hidden)) },
    blocks,
  };
}
