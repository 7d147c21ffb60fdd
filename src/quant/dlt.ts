// Dual Learnable Ternarization (TernaryLLM, METHOD.md) of one linear stored in a ternary
// format: W[n,k] = α[n,g]·t[n,k] + γ[n,g] with α, γ learnable per (row, group), starting
// from the PTQ result. The trits are either kept, or re-decided through a straight-through
// estimator: t = clamp(round(u), −1, 1) with a latent u initialised at the PTQ trit and
// ∂loss/∂u := ∂loss/∂t = α·∂loss/∂W.
//   ∂loss/∂α[n,g] = Σ_{k∈g} ∂loss/∂W[n,k]·t[n,k],   ∂loss/∂γ[n,g] = Σ_{k∈g} ∂loss/∂W[n,k]
// Updates are Adam steps in units of the linear's mean |α| (so one learning rate fits every
// linear). `encode` puts the result back into the format: lattice formats snap each row's
// scales and shifts to the row's power-of-two lattice first (formats/ternary.ts). `state` and
// `restore` carry everything a step reads (α, γ, the trits and latents, Adam's moments and step
// count), so that a refinement continued from a compile's checkpoint takes the same steps.
import { decodeTrits, encodeTernary, groupsPerRow, snapRowToLattice, type TernaryWeights } from '../formats/ternary.ts';
import { halfToFloat } from '../graph/tensor.ts';

export type TritMode = 'keep' | 'ste';

const B1 = 0.9;
const B2 = 0.999;

class Adam {
  private readonly m: Float64Array;
  private readonly v: Float64Array;
  constructor(n: number) {
    this.m = new Float64Array(n);
    this.v = new Float64Array(n);
  }
  /** In place: x −= step·m̂/(√v̂ + ε) for gradient g at Adam step t (1-based). */
  update(x: Float64Array | Float32Array, g: ArrayLike<number>, step: number, t: number): void {
    const c1 = 1 - B1 ** t;
    const c2 = 1 - B2 ** t;
    for (let i = 0; i < x.length; i++) {
      this.m[i] = B1 * this.m[i] + (1 - B1) * g[i];
      this.v[i] = B2 * this.v[i] + (1 - B2) * g[i] * g[i];
      const v = Math.sqrt(this.v[i] / c2);
      if (v > 0) x[i] -= (step * (this.m[i] / c1)) / (v + 1e-12 * v + 1e-30);
    }
  }
  state(): AdamState {
    return { m: this.m.slice(), v: this.v.slice() };
  }
  restore(s: AdamState): void {
    setExactly(this.m, s.m);
    setExactly(this.v, s.v);
  }
}

interface AdamState {
  m: Float64Array;
  v: Float64Array;
}

/** What a DltLinear's next step depends on besides its PTQ start (copies). */
export interface DltState {
  steps: number;
  alpha: Float64Array;
  gamma?: Float64Array;
  adamAlpha: AdamState;
  adamGamma?: AdamState;
  /** Trits and their latents: only under 'ste' (kept trits never change). */
  ste?: { t: Int8Array; latent: Float32Array; adam: AdamState };
}

/** `to.set(from)` for arrays of one length; another length is a checkpoint of another linear. */
function setExactly<T extends Float64Array | Float32Array | Int8Array>(to: T, from: T | undefined): void {
  if (!from || from.length !== to.length) throw new Error(`refinement state of ${from?.length ?? 'no'} values where the linear has ${to.length}`);
  to.set(from);
}

export class DltLinear {
  readonly rows: number;
  readonly cols: number;
  readonly G: number;
  readonly ng: number;
  readonly alpha: Float64Array;
  readonly gamma: Float64Array | undefined;
  /** Current trits, row-major [rows·cols]. */
  readonly t: Int8Array;
  private readonly latent: Float32Array | undefined;
  /** Mean |α| of the PTQ result: the unit of the α and γ steps. */
  private readonly unit: number;
  private readonly optA: Adam;
  private readonly optG: Adam | undefined;
  private readonly optU: Adam | undefined;
  private steps = 0;

  constructor(readonly init: TernaryWeights, readonly trits: TritMode) {
    this.rows = init.rows;
    this.cols = init.cols;
    this.G = init.format.group;
    this.ng = groupsPerRow(init.format, init.cols);
    this.alpha = Float64Array.from(init.scales, halfToFloat);
    this.gamma = init.shifts ? Float64Array.from(init.shifts, halfToFloat) : undefined;
    this.t = decodeTrits(init);
    this.latent = trits === 'ste' ? Float32Array.from(this.t) : undefined;
    let s = 0;
    for (const a of this.alpha) s += Math.abs(a);
    this.unit = s / this.alpha.length || 1;
    this.optA = new Adam(this.alpha.length);
    this.optG = this.gamma && new Adam(this.gamma.length);
    this.optU = this.latent && new Adam(this.latent.length);
  }

  /** The dequantised weight, row-major [rows, cols], float32. */
  weight(): Float32Array {
    const { rows, cols, G, ng, alpha, gamma, t } = this;
    const W = new Float32Array(rows * cols);
    for (let n = 0; n < rows; n++) {
      for (let k = 0; k < cols; k++) {
        const gi = n * ng + Math.floor(k / G);
        W[n * cols + k] = alpha[gi] * t[n * cols + k] + (gamma ? gamma[gi] : 0);
      }
    }
    return W;
  }

  /** ∂loss/∂α and ∂loss/∂γ [rows·groups] from ∂loss/∂W [rows, cols] (the header's sums). */
  grads(dW: ArrayLike<number>): { dA: Float64Array; dG: Float64Array } {
    const { rows, cols, G, ng, t } = this;
    const dA = new Float64Array(rows * ng);
    const dG = new Float64Array(rows * ng);
    for (let n = 0; n < rows; n++) {
      for (let k = 0; k < cols; k++) {
        const gi = n * ng + Math.floor(k / G);
        dA[gi] += dW[n * cols + k] * t[n * cols + k];
        dG[gi] += dW[n * cols + k];
      }
    }
    return { dA, dG };
  }

  /** One Adam step from ∂loss/∂W [rows, cols]; lr in units of mean |α| (α, γ) and of one trit (latent). */
  step(dW: Float32Array, lr: number, tritLr: number): void {
    const { rows, cols, G, ng, t } = this;
    const { dA, dG } = this.grads(dW);
    this.steps++;
    if (this.latent) {
      const dU = new Float32Array(rows * cols);
      for (let n = 0; n < rows; n++) for (let k = 0; k < cols; k++) dU[n * cols + k] = dW[n * cols + k] * this.alpha[n * ng + Math.floor(k / G)];
      this.optU!.update(this.latent, dU, tritLr, this.steps);
      for (let i = 0; i < t.length; i++) t[i] = Math.max(-1, Math.min(1, Math.round(this.latent[i])));
    }
    this.optA.update(this.alpha, dA, lr * this.unit, this.steps);
    if (this.gamma) this.optG!.update(this.gamma, dG, lr * this.unit, this.steps);
  }

  state(): DltState {
    return {
      steps: this.steps,
      alpha: this.alpha.slice(),
      ...(this.gamma ? { gamma: this.gamma.slice(), adamGamma: this.optG!.state() } : {}),
      adamAlpha: this.optA.state(),
      ...(this.latent ? { ste: { t: this.t.slice(), latent: this.latent.slice(), adam: this.optU!.state() } } : {}),
    };
  }

  /** Continue from `s`, the state() of a DltLinear made from the same PTQ result and trit mode. */
  restore(s: DltState): void {
    this.steps = s.steps;
    setExactly(this.alpha, s.alpha);
    this.optA.restore(s.adamAlpha);
    if (this.gamma) {
      setExactly(this.gamma, s.gamma);
      this.optG!.restore(s.adamGamma!);
    }
    if (this.latent) {
      if (!s.ste) throw new Error('refinement state without the latent trits of --refine-trits ste');
      setExactly(this.t, s.ste.t);
      setExactly(this.latent, s.ste.latent);
      this.optU!.restore(s.ste.adam);
    }
  }

  /** Trits that differ from the PTQ result. */
  flipped(): number {
    const t0 = decodeTrits(this.init);
    let n = 0;
    for (let i = 0; i < t0.length; i++) if (t0[i] !== this.t[i]) n++;
    return n;
  }

  /** The refined linear in its format (lattice rows snapped; fp16 rounding by the encoder). */
  encode(): TernaryWeights {
    const f = this.init.format;
    const scale = Float64Array.from(this.alpha);
    const shift = this.gamma && Float64Array.from(this.gamma);
    if (f.lattice) for (let n = 0; n < this.rows; n++) snapRowToLattice(scale, shift, n, this.ng);
    return encodeTernary(f, this.rows, this.cols, this.t, scale, shift);
  }
}

/** Whether the refinement learns the second plane's scales of an order-2 linear or keeps its PTQ fit. */
export type Order2PlaneMode = 'learn' | 'fixed';

/**
 * An order-2 linear (formats/order2.ts) under the refinement: W = (α₀·t₀ + γ₀) + α₁·t₁, each
 * plane a DltLinear over the same ∂loss/∂W (W is the sum of the planes, so each plane's
 * gradient is the sum's). The second plane has no shift; with `plane: 'fixed'` its α₁ stay at
 * the PTQ fit and only the first plane learns.
 */
export class DltOrder2Linear {
  readonly base: DltLinear;
  readonly plane: DltLinear;

  constructor(base: TernaryWeights, plane: TernaryWeights, trits: TritMode, readonly planeMode: Order2PlaneMode) {
    this.base = new DltLinear(base, trits);
    this.plane = new DltLinear(plane, trits);
  }

  weight(): Float32Array {
    const w = this.base.weight();
    const p = this.plane.weight();
    for (let i = 0; i < w.length; i++) w[i] += p[i];
    return w;
  }

  step(dW: Float32Array, lr: number, tritLr: number): void {
    this.base.step(dW, lr, tritLr);
    if (this.planeMode === 'learn') this.plane.step(dW, lr, tritLr);
  }

  flipped(): number {
    return this.base.flipped() + this.plane.flipped();
  }

  state(): DltOrder2State {
    return { base: this.base.state(), plane: this.plane.state() };
  }

  restore(s: DltOrder2State): void {
    this.base.restore(s.base);
    this.plane.restore(s.plane);
  }
}

export interface DltOrder2State {
  base: DltState;
  plane: DltState;
}
