// ILA-AMP: inter-layer activation mixed precision (METHOD §3), the search half. The
// calibration half (running the model in onnxruntime on calibration text only) measures
// the costs listed by `measurementPlan`; this file turns them into a bit-width per block.
//
// Costs, over transformer blocks i = 0..n−1 and activation bit-widths b ∈ {2, 4, 6, 8}:
//   Δ₁[i][b]          = NLL(block i at b, every other block at 8) − NLL(all at 8)
//   Δ₂[i][b′][b]      = NLL(block i−1 at b′, block i at b, the rest at 8) − NLL(all at 8)
//   K[i][b′][b]       = Δ₂[i][b′][b] − Δ₁[i−1][b′] − Δ₁[i][b]       (the interaction, i ≥ 1)
// Search:   minimise  Σ_i Δ₁[i][b_i] + β Σ_{i≥1} K[i][b_{i−1}][b_i]   (β = 0.5)
//           subject to  Σ_i b_i ≤ budget·n  (mean bits ≤ budget; A4 means budget 4).
// Dynamic programme over blocks with state (b_i, Σ_{j≤i} b_j): O(n · |bits|² · Σb) time,
// exact (the chain structure of the objective is what makes it exact).
//
// What must be measured (`measurementPlan`): at 8 bits nothing changes, so Δ₁[i][8] = 0 and
// K = 0 whenever either bit is 8 (Δ₂ then equals the other block's Δ₁). That leaves
//   singles: n · 3 runs (b ∈ {2, 4, 6})      pairs: (n − 1) · 9 runs (b′, b ∈ {2, 4, 6})
// plus one baseline run: 1 + 3n + 9(n − 1); 64 for the 6-block fixture, 376 for 32 blocks.
// Pruning (`pairBits`): measure pairs only where both bits are in a smaller set, e.g.
// {2, 4} (4 runs a pair instead of 9: 1 + 3n + 4(n − 1), 39 for 6 blocks, 221 for 32),
// and take K = 0 for the pairs not measured. The trade-off: interactions are largest
// where both neighbours are coarse (errors compound through the residual stream), and a
// 6-bit block adds little error of its own, so its interaction term is second order; the
// search then treats 6-bit neighbours as independent, which can misjudge a 6/6 or 4/6
// chain by the size of that missing interaction.
import { UserError } from '../errors.ts';

export const AMP_BITS: readonly number[] = [2, 4, 6, 8];
const AMP_BETA = 0.5;

/**
 * Costs indexed by position in `bits`: single[i][k] = Δ₁[i][bits[k]];
 * pair[i][kp][k] = K[i][bits[kp]][bits[k]] for the pair (i−1, i), i ≥ 1 (pair[0] is unused).
 */
export interface AmpCosts {
  bits: readonly number[];
  single: number[][];
  pair: number[][][];
}

export interface AmpAllocation {
  /** Bits per block. */
  bits: number[];
  /** Σ Δ₁ + β Σ K of the allocation. */
  cost: number;
  meanBits: number;
}

/** Σ_i Δ₁[i][b_i] + β Σ_{i≥1} K[i][b_{i−1}][b_i] for an allocation given as bits per block. */
export function ampObjective(costs: AmpCosts, blockBits: readonly number[], beta = AMP_BETA): number {
  const ks = blockBits.map((b) => {
    const k = costs.bits.indexOf(b);
    if (k < 0) throw new UserError(`ILA-AMP: ${b} bits is not one of ${costs.bits.join(', ')}`);
    return k;
  });
  let c = 0;
  for (let i = 0; i < ks.length; i++) {
    c += costs.single[i][ks[i]];
    if (i > 0) c += beta * costs.pair[i][ks[i - 1]][ks[i]];
  }
  return c;
}

/** The allocation of least cost with mean bits ≤ `budget` (exact dynamic programme). */
export function allocateBits(costs: AmpCosts, budget: number, beta = AMP_BETA): AmpAllocation {
  const n = costs.single.length;
  const bits = costs.bits;
  const m = bits.length;
  if (n === 0) throw new UserError('ILA-AMP: no blocks to allocate bits to');
  if (!bits.every((b) => Number.isInteger(b) && b > 0)) throw new UserError(`ILA-AMP: bit-widths must be positive integers, got ${bits.join(', ')}`);
  const maxSum = Math.floor(budget * n + 1e-9);
  if (maxSum < n * Math.min(...bits)) {
    throw new UserError(`ILA-AMP: a mean of ${budget} bits is below the smallest bit-width ${Math.min(...bits)}`);
  }
  // best[k][s]: least cost of blocks 0..i with block i at bits[k] and Σ bits = s.
  const S = maxSum + 1;
  let best: Float64Array[] = bits.map(() => new Float64Array(S).fill(Infinity));
  const from: Int8Array[][] = []; // from[i][k][s] = k of block i−1
  for (let k = 0; k < m; k++) if (bits[k] <= maxSum) best[k][bits[k]] = costs.single[0][k];
  from.push(bits.map(() => new Int8Array(S).fill(-1)));
  for (let i = 1; i < n; i++) {
    const next = bits.map(() => new Float64Array(S).fill(Infinity));
    const arg = bits.map(() => new Int8Array(S).fill(-1));
    for (let k = 0; k < m; k++) {
      const b = bits[k];
      for (let s = b; s < S; s++) {
        let v = Infinity;
        let a = -1;
        for (let kp = 0; kp < m; kp++) {
          const prev = best[kp][s - b];
          if (prev === Infinity) continue;
          const c = prev + beta * costs.pair[i][kp][k];
          if (c < v) {
            v = c;
            a = kp;
          }
        }
        if (a >= 0) {
          next[k][s] = v + costs.single[i][k];
          arg[k][s] = a;
        }
      }
    }
    best = next;
    from.push(arg);
  }
  let bestCost = Infinity;
  let bk = -1;
  let bs = -1;
  for (let k = 0; k < m; k++) {
    for (let s = 0; s < S; s++) {
      if (best[k][s] < bestCost) {
        bestCost = best[k][s];
        bk = k;
        bs = s;
      }
    }
  }
  const out = new Array<number>(n);
  for (let i = n - 1; i >= 0; i--) {
    out[i] = bits[bk];
    const kp = from[i][bk][bs];
    bs -= bits[bk];
    bk = kp;
  }
  return { bits: out, cost: bestCost, meanBits: out.reduce((a, b) => a + b, 0) / n };
}

export interface AmpMeasurement {
  /** Bits of every block (the NLL run to make). */
  config: number[];
  kind: 'baseline' | 'single' | 'pair';
  /** The block (single) or the second block of the pair (i−1, i). */
  block: number;
  bits: number[];
}

export interface MeasurementPlanOptions {
  /** Bit-widths searched (default 2, 4, 6, 8; the largest is the reference). */
  bits?: readonly number[];
  /** Bit-widths for which pairs are measured (default all but the largest); K = 0 elsewhere. */
  pairBits?: readonly number[];
}

/** The calibration NLL runs ILA-AMP needs: baseline, singles, then neighbour pairs. */
export function measurementPlan(blocks: number, opts: MeasurementPlanOptions = {}): AmpMeasurement[] {
  const bits = opts.bits ?? AMP_BITS;
  const ref = Math.max(...bits);
  const low = bits.filter((b) => b !== ref);
  const pairBits = (opts.pairBits ?? low).filter((b) => b !== ref);
  const base = () => new Array<number>(blocks).fill(ref);
  const plan: AmpMeasurement[] = [{ config: base(), kind: 'baseline', block: -1, bits: [] }];
  for (let i = 0; i < blocks; i++) {
    for (const b of low) {
      const config = base();
      config[i] = b;
      plan.push({ config, kind: 'single', block: i, bits: [b] });
    }
  }
  for (let i = 1; i < blocks; i++) {
    for (const bp of pairBits) {
      for (const b of pairBits) {
        const config = base();
        config[i - 1] = bp;
        config[i] = b;
        plan.push({ config, kind: 'pair', block: i, bits: [bp, b] });
      }
    }
  }
  return plan;
}

/**
 * Costs from measured NLLs (same order as `measurementPlan`, or any order: matched by
 * kind/block/bits). Unmeasured singles at the reference width are 0; unmeasured pairs have K = 0.
 */
export function costsFromMeasurements(
  blocks: number,
  measured: readonly { m: AmpMeasurement; nll: number }[],
  bits: readonly number[] = AMP_BITS,
): AmpCosts {
  const baseline = measured.find((x) => x.m.kind === 'baseline');
  if (!baseline) throw new UserError('ILA-AMP: the baseline NLL (all blocks at the reference width) is missing');
  const ref = Math.max(...bits);
  const idx = (b: number) => {
    const k = bits.indexOf(b);
    if (k < 0) throw new UserError(`ILA-AMP: measured ${b} bits, not one of ${bits.join(', ')}`);
    return k;
  };
  const single = Array.from({ length: blocks }, () => bits.map(() => NaN));
  for (let i = 0; i < blocks; i++) single[i][idx(ref)] = 0;
  for (const { m, nll } of measured) if (m.kind === 'single') single[m.block][idx(m.bits[0])] = nll - baseline.nll;
  for (let i = 0; i < blocks; i++) {
    for (let k = 0; k < bits.length; k++) {
      if (Number.isNaN(single[i][k])) throw new UserError(`ILA-AMP: no measurement of block ${i} at ${bits[k]} bits`);
    }
  }
  const pair = Array.from({ length: blocks }, () => bits.map(() => bits.map(() => 0)));
  for (const { m, nll } of measured) {
    if (m.kind !== 'pair') continue;
    const [kp, k] = [idx(m.bits[0]), idx(m.bits[1])];
    pair[m.block][kp][k] = nll - baseline.nll - single[m.block - 1][kp] - single[m.block][k];
  }
  return { bits, single, pair };
}
