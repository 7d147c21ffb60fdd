// What the compile pipeline's passes share: the recognised structure, the options, the
// calibration data, and per-linear / per-input-site state that passes annotate and the
// lowering and artifact writer read. (The IR's `meta` maps hold the same facts on values
// for tools that only see the graph; this typed state is what the passes use.)
import type { TernaryWeights } from '../formats/ternary.ts';
import type { Progress, PassContext } from '../graph/pass.ts';
import type { InputGroup, Linear, TransformerStructure } from '../graph/recognize.ts';
import type { KronFactors } from '../lower/kron-transform.ts';
import type { AmpAllocation } from '../quant/ila-amp.ts';
import type { DeviceChoice, GpuDevice } from '../gpu/device.ts';
import type { Order2PlaneMode, TritMode } from '../quant/dlt.ts';
import type { RefineBlockStats, RefineE2eStats } from './refine.ts';
import type { Checkpoint } from '../util/checkpoint.ts';

export type WeightsMethod = 'twla' | 'rtn-ternary';
export type Structure = 'kernel' | 'twla';

/** Activation precision: none (16), uniform b bits, or ILA-AMP mixed precision under a mean budget. */
export type ActSpec = { kind: 'none' } | { kind: 'uniform'; bits: number } | { kind: 'mp'; budget: number };

export interface CompileOptions {
  weights: WeightsMethod;
  structure: Structure;
  /** Ternary storage format id for the kernel structure (src/formats/ternary.ts). */
  format: string;
  acts: ActSpec;
  /** Calibration token segments (required by twla and by activation search). */
  calib?: Int32Array[];
  rotate: boolean;
  /** Fold rotations into neighbouring weights where exact (the o_proj input into v_proj). */
  fuse: boolean;
  gptq: boolean;
  xDomain: boolean;
  /** Largest number of order-2 (salient) columns per 128-column block, twla structure only (default 64). */
  order2Cols?: number;
  /** Block linears stored as order-2 linears (formats/order2.ts): a second ternary plane on
   *  every column, fitted to the first plane's error under H. Each entry names a role (every
   *  block's) or one linear (`blocks.<i>.<role>`). Kernel structure only. */
  order2?: string[];
  /** Where Gram accumulation and GPTQ's column updates run (src/gpu/device.ts; default cpu). */
  device?: DeviceChoice;
  /** Worker threads fitting a block's linears on the CPU path (default: one per core; 1: in the main thread). The output does not depend on it. */
  threads?: number;
  /** TernaryLLM refinement after the ternary pass (passes/refine.ts); absent: none. */
  refine?: RefineOptions;
}

export interface RefineOptions {
  /** Adam steps per block. */
  steps: number;
  /** Step size of α and γ, in units of the linear's mean |α|. */
  lr: number;
  /** Calibration pieces distilled on, of `seq` tokens each. */
  pieces: number;
  seq: number;
  /** Pieces per step. */
  batch: number;
  trits: TritMode;
  /** Step size of the latent trits (trits: 'ste'). */
  tritLr: number;
  /** Order-2 linears: learn the second plane's scales too, or keep its PTQ fit. */
  order2Plane: Order2PlaneMode;
  /** Steps of the end-to-end stage after the block-wise one (0: none), and its α/γ step size. */
  e2eSteps: number;
  e2eLr: number;
  /** Calibration pieces the end-to-end stage cycles through (the first `pieces` are the block-wise stage's). */
  e2ePieces: number;
  /** The end-to-end stage's loss: 1 − cos of the last block's output against the fp model's
   *  final hidden state, or KL of the fp model's next-token distribution to the student's. */
  e2eLoss: 'hidden' | 'logits';
  /** The end-to-end step size over the stage: constant, or cosine decay from e2eLr to 0 at e2eSteps. */
  e2eSchedule: 'constant' | 'cosine';
}

export interface LinearState {
  id: string;
  /** What the ternary pass decided for this linear. */
  ternary?: TernaryWeights;
  /** The second plane of an order-2 linear (formats/order2.ts); `ternary` is its first plane. */
  order2?: TernaryWeights;
  /** Honest storage bits of the chosen structure (twla structure: its own accounting). */
  storageBits?: number;
  stats?: Record<string, number>;
  /** The fp weight [out, in] the ternary pass started from, kept for the refinement's teacher. */
  fp?: Float32Array;
}

export interface SiteState {
  id: string;
  group: InputGroup;
  /** γ was folded into the consumers (the norm now has unit γ). */
  gammaFolded?: boolean;
  transform?: KronFactors;
  /** A per-head rotation folded into a producer (no online op). */
  fused?: { l: number; r: number; B: Float64Array; into: 'v' };
  act?: { bits: number; clip: number };
}

export interface CompileContext extends PassContext {
  progress: Progress;
  /** ILA-AMP's allocation, when mixed precision ran (bits per block, objective, mean bits). */
  amp?: AmpAllocation;
  /** The refinement's options and per-block losses, when it ran. */
  refine?: { options: RefineOptions; blocks: RefineBlockStats[]; e2e?: RefineE2eStats };
  opts: CompileOptions;
  /** The GPU the heavy linear algebra runs on, absent on the CPU path. */
  gpu?: GpuDevice;
  structure: TransformerStructure;
  linears: Map<Linear, LinearState>;
  sites: SiteState[];
  /** Called after these end-to-end refinement steps with the linears stored as they are at that step
   *  (their graph weights and `linears` states), so a benchmark can score several stage lengths in one
   *  run: the stage's steps do not depend on how many follow (constant step size). */
  refineProbe?: { e2eSteps: number[]; at(step: number): Promise<void> };
  /** Where the rotate and ternary passes keep what they finish, and find what an interrupted compile finished (passes/resume.ts); absent: nowhere. */
  checkpoint?: Checkpoint;
}

export function linearId(l: Linear): string {
  return l.block !== undefined && l.block >= 0 ? `blocks.${l.block}.${l.role}` : (l.role ?? l.node.name);
}

/** Whether `order2` (CompileOptions.order2) names linear l, by its role or its id. */
export function isOrder2Linear(order2: readonly string[] | undefined, l: Linear): boolean {
  return !!order2 && l.role !== 'lm_head' && (order2.includes(l.role ?? '') || order2.includes(linearId(l)));
}

export function siteId(g: InputGroup): string {
  return g.block >= 0 ? `blocks.${g.block}.${g.site}` : g.site;
}

/** Linears that get ternary weights: every recognised linear except the lm_head. */
export function quantizedLinears(s: TransformerStructure): Linear[] {
  return s.linears.filter((l) => l.role !== 'lm_head');
}
