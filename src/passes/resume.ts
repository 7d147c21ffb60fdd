// What the long passes keep in a compile's checkpoint (util/checkpoint.ts), and how they get it back:
//   rotate         per input site, the fitted KOTMS result (shape, B, C), entry `site-<i>`;
//   ternary        per finished block, each of its linears' state (ternary weights, second plane,
//                  storage bits, stats) and its weight tensor as the graph then held it (the
//                  dequantised values in the initializer's own element type), entry `block-<i>`;
//   refine         per finished block of the block-wise stage, its learnt linears' state (α, γ,
//                  Adam's moments and step count, the trits under 'ste': quant/dlt.ts) and the
//                  block's losses, entry `refine-block-<i>`; the calibration streams are not kept
//                  (pieces × seq × hidden floats twice a block) but run again through the restored
//                  blocks, which gives the same floats. The end-to-end stage keeps every block's
//                  state and the step reached, as one generation of entries
//                  `refine-e2e-<g>-block-<i>` committed by the entry `refine-e2e` naming g, written
//                  last; the next save writes the other generation, so a kill mid-save leaves the
//                  last committed one whole (disk: two copies of the learnt state);
//   act-precision  the chosen bits and clip ratio per site and ILA-AMP's allocation, entry `act-precision`.
// Restoring goes through the code that applied a result the first time (the rotate pass
// re-applies the results in site order; the ternary pass runs the restored blocks forward to
// bring the calibration stream to the first unfinished block; the refinement continues its
// Adam steps from the kept state; the activation-precision pass inserts the kept quantisers), so
// the graph and the linears' states are those of an uninterrupted compile and out/ is
// byte-identical (CPU path).
import { createHash } from 'node:crypto';
import { realpathSync } from 'node:fs';
import type { Model } from '../graph/ir.ts';
import { constTensor, weightRows, type Linear } from '../graph/recognize.ts';
import { Tensor, type DType } from '../graph/tensor.ts';
import type { TernaryWeights } from '../formats/ternary.ts';
import type { KotmsResult } from '../quant/kotms.ts';
import type { DltOrder2State, DltState } from '../quant/dlt.ts';
import type { AmpAllocation } from '../quant/ila-amp.ts';
import type { BlockLinearRole } from '../artifact/build.ts';
import type { RefineBlockStats, RefineE2eStats } from './refine.ts';
import { type Checkpoint, type CheckpointKey, fileStamp } from '../util/checkpoint.ts';
import type { CompileContext, CompileOptions } from './context.ts';
import { linearId } from './context.ts';
import { setLinearWeightTensor } from './weights.ts';

interface LinearEntry {
  id: string;
  weight: { dtype: DType; dims: number[]; bytes: Uint8Array };
  ternary?: TernaryWeights;
  order2?: TernaryWeights;
  storageBits?: number;
  stats?: Record<string, number>;
}

const siteEntry = (i: number) => `site-${String(i).padStart(4, '0')}`;
const blockEntry = (i: number) => `block-${String(i).padStart(4, '0')}`;
const refineBlockEntry = (i: number) => `refine-block-${String(i).padStart(4, '0')}`;
const refineE2eBlockEntry = (generation: number, i: number) => `refine-e2e-${generation}-block-${String(i).padStart(4, '0')}`;
const REFINE_E2E = 'refine-e2e';
const ACT_PRECISION = 'act-precision';

/**
 * The key a checkpoint of compiling `modelPath` (loaded as `model`, before any pass) with `opts`
 * by `twlac` (its version and code digest) is made under: the model's files by path, size and
 * modification time, the calibration tokens' SHA-256, every option but the calibration (hashed)
 * and the thread count (which changes nothing).
 */
export function checkpointKey(twlac: { version: string; code: string }, modelPath: string, model: Model, opts: CompileOptions): CheckpointKey {
  const files = new Set([realpathSync(modelPath)]);
  for (const v of model.graph.initializers.values()) {
    const s = v.constValue?.source;
    if (s?.kind === 'external') files.add(realpathSync(s.path));
  }
  const h = createHash('sha256');
  for (const seg of opts.calib ?? []) h.update(new Uint8Array(seg.buffer, seg.byteOffset, seg.byteLength)).update('\n');
  const { calib: _calib, threads: _threads, ...options } = opts;
  return { twlac: twlac.version, code: twlac.code, model: [...files].map(fileStamp), calibration: h.digest('hex'), options: JSON.parse(JSON.stringify(options)) as Record<string, unknown> };
}

/** How many of `n` entries named by `entry` were written, counting from the first. */
function finished(ck: Checkpoint, entry: (i: number) => string, n: number): number {
  let k = 0;
  while (k < n && ck.has(entry(k))) k++;
  return k;
}

/** The progress line of a resumed compile: what its checkpoint restores. */
export function describeResume(ck: Checkpoint, ctx: CompileContext, rotates: boolean): string {
  const nb = ctx.structure.blocks.length;
  const sites = rotates ? finished(ck, siteEntry, ctx.sites.length) : 0;
  const blocks = finished(ck, blockEntry, nb);
  if (!sites && !blocks) return `resuming: nothing finished in ${ck.dir}, compiling from the start`;
  const parts = [
    ...(rotates ? [sites === ctx.sites.length ? 'rotations restored' : `rotations of sites 1-${sites} of ${ctx.sites.length} restored`] : []),
    blocks ? `blocks 1-${blocks} of ${nb} restored` : `no block finished`,
  ];
  const refined = ctx.opts.refine ? finished(ck, refineBlockEntry, nb) : 0;
  if (refined) parts.push(`refinement of blocks 1-${refined} restored`);
  const e2e = ctx.opts.refine ? ck.load<RefineE2eMark>(REFINE_E2E) : undefined;
  if (e2e) parts.push(e2e.stats ? 'end-to-end refinement restored' : `end-to-end refinement restored at step ${e2e.step} of ${ctx.opts.refine!.e2eSteps}`);
  if (ck.has(ACT_PRECISION)) parts.push('activation precision restored');
  return `resuming: ${parts.join(', ')} (${ck.dir})`;
}

export function saveSite(ck: Checkpoint, index: number, r: KotmsResult): void {
  ck.save(siteEntry(index), r);
}

/** The KOTMS results of the first sites that finished, in site order. */
export function restoreSites(ck: Checkpoint, count: number): KotmsResult[] {
  return Array.from({ length: finished(ck, siteEntry, count) }, (_, i) => ck.load<KotmsResult>(siteEntry(i))!);
}

/** Keep block `index`'s linears as the ternary pass left them. */
export function saveBlock(ck: Checkpoint, ctx: CompileContext, index: number, linears: Linear[]): void {
  const entries: LinearEntry[] = linears.map((l) => {
    const st = ctx.linears.get(l)!;
    const t = constTensor(l.weight)!;
    return {
      id: st.id,
      weight: { dtype: t.dtype, dims: [...t.dims], bytes: t.bytes().slice() },
      ...(st.ternary ? { ternary: st.ternary } : {}),
      ...(st.order2 ? { order2: st.order2 } : {}),
      ...(st.storageBits !== undefined ? { storageBits: st.storageBits } : {}),
      ...(st.stats ? { stats: st.stats } : {}),
    };
  });
  ck.save(blockEntry(index), entries);
}

/**
 * Put back the state of the blocks that finished, counting from block 0; returns how many.
 * `linearsOf(i)` are block i's linears as the ternary pass fits them.
 */
export function restoreBlocks(ck: Checkpoint, ctx: CompileContext, linearsOf: (block: number) => Linear[]): number {
  const n = finished(ck, blockEntry, ctx.structure.blocks.length);
  for (let b = 0; b < n; b++) {
    const entries = ck.load<LinearEntry[]>(blockEntry(b))!;
    const linears = linearsOf(b);
    if (entries.length !== linears.length) throw new Error(`checkpoint ${ck.dir}: block ${b} holds ${entries.length} linears, the model has ${linears.length}`);
    linears.forEach((l, i) => {
      const e = entries[i];
      const st = ctx.linears.get(l)!;
      if (e.id !== linearId(l)) throw new Error(`checkpoint ${ck.dir}: block ${b} holds ${e.id} where the model has ${linearId(l)}`);
      // The refinement's teacher: the weight the fit started from, which the graph holds until restored.
      if (ctx.opts.refine) st.fp = Float32Array.from(weightRows(l));
      setLinearWeightTensor(l, Tensor.fromBytes(e.weight.dtype, e.weight.dims, e.weight.bytes));
      st.ternary = e.ternary;
      st.order2 = e.order2;
      st.storageBits = e.storageBits;
      st.stats = e.stats;
    });
  }
  return n;
}

/** A refinement linear's state: one plane, or both planes of an order-2 linear (quant/dlt.ts). */
export type LearnableState = DltState | DltOrder2State;

/** A finished block of the refinement's block-wise stage. */
export interface RefineBlockEntry {
  states: Record<BlockLinearRole, LearnableState>;
  stats: RefineBlockStats;
}

export function saveRefineBlock(ck: Checkpoint, index: number, entry: RefineBlockEntry): void {
  ck.save(refineBlockEntry(index), entry);
}

/** The refinement's finished blocks, counting from block 0. */
export function restoreRefineBlocks(ck: Checkpoint, blocks: number): RefineBlockEntry[] {
  return Array.from({ length: finished(ck, refineBlockEntry, blocks) }, (_, i) => ck.load<RefineBlockEntry>(refineBlockEntry(i))!);
}

/** The commit entry of the end-to-end stage: which generation of block entries holds the state after `step` steps. */
interface RefineE2eMark {
  generation: number;
  step: number;
  /** The stage's loss before its first step (as stored), and the seconds it has run so far. */
  lossBefore: number;
  seconds: number;
  /** Present once the stage finished. */
  stats?: RefineE2eStats;
}

export interface RefineE2eEntry extends Omit<RefineE2eMark, 'generation'> {
  states: Record<BlockLinearRole, LearnableState>[];
}

/** Keep the end-to-end stage's state: every block's in the generation the commit entry does not name, then the commit entry. */
export function saveRefineE2e(ck: Checkpoint, entry: RefineE2eEntry): void {
  const { states, ...rest } = entry;
  const generation = 1 - (ck.load<RefineE2eMark>(REFINE_E2E)?.generation ?? 1);
  states.forEach((st, i) => ck.save(refineE2eBlockEntry(generation, i), st));
  ck.save(REFINE_E2E, { generation, ...rest } satisfies RefineE2eMark);
}

/** The end-to-end stage's last committed state, if any. */
export function restoreRefineE2e(ck: Checkpoint, blocks: number): RefineE2eEntry | undefined {
  const mark = ck.load<RefineE2eMark>(REFINE_E2E);
  if (!mark) return undefined;
  const { generation, ...rest } = mark;
  const states = Array.from({ length: blocks }, (_, i) => {
    const st = ck.load<Record<BlockLinearRole, LearnableState>>(refineE2eBlockEntry(generation, i));
    if (!st) throw new Error(`checkpoint ${ck.dir}: the end-to-end refinement's block ${i} of generation ${generation} is missing`);
    return st;
  });
  return { ...rest, states };
}

/** The activation-precision pass's choice: bits and clip ratio per site (in site order), and ILA-AMP's allocation under mixed precision. */
export interface ActPrecisionEntry {
  sites: { id: string; bits: number; clip: number }[];
  amp?: AmpAllocation;
}

export function saveActPrecision(ck: Checkpoint, entry: ActPrecisionEntry): void {
  ck.save(ACT_PRECISION, entry);
}

export function restoreActPrecision(ck: Checkpoint, ctx: CompileContext): ActPrecisionEntry | undefined {
  const e = ck.load<ActPrecisionEntry>(ACT_PRECISION);
  if (!e) return undefined;
  const ids = ctx.sites.map((s) => s.id);
  if (e.sites.map((s) => s.id).join() !== ids.join()) throw new Error(`checkpoint ${ck.dir}: the activation precision is for sites ${e.sites.map((s) => s.id).join(', ')}, the model has ${ids.join(', ')}`);
  return e;
}
