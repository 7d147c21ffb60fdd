// Passes are plain data with a contract: `run` returns the (possibly new) model and
// whether it changed anything; `requires`/`ensures` are checked around it. The
// PassManager names the failing pass in every error.
import type { Model } from './ir.ts';
import { UserError } from '../errors.ts';

export interface PassResult {
  model: Model;
  modified: boolean;
}

export interface PassContext {
  /** Progress reporting for long passes (no-op when quiet). */
  progress: Progress;
  /** Anything the pipeline wants to hand to passes (calibration data, options). */
  readonly [key: string]: unknown;
}

export interface Pass<C extends PassContext = PassContext> {
  name: string;
  run(model: Model, ctx: C): PassResult | Promise<PassResult>;
  /** Checked before `run`; return a reason string to refuse. */
  requires?(model: Model, ctx: C): string | undefined;
  /** Checked after `run`; return a reason string to fail. */
  ensures?(model: Model, ctx: C): string | undefined;
}

export function definePass<C extends PassContext = PassContext>(p: Pass<C>): Pass<C> {
  return p;
}

export interface Progress {
  /** Start a named step of `total` units. */
  start(label: string, total?: number): void;
  tick(n?: number, detail?: string): void;
  done(summary?: string): void;
  log(line: string): void;
  /** The passes about to run, in order, announced once before the first. */
  plan?(passes: readonly string[]): void;
  /** Pass `index` (1-based) of the plan starts; index 0 after the last one finished. */
  phase?(index: number, name: string): void;
  /** `done` of the running pass's `total` equal parts (blocks) are finished: an ETA for the pass. */
  units?(done: number, total: number): void;
}

export const silentProgress: Progress = { start() {}, tick() {}, done() {}, log() {} };

export class PassError extends Error {
  constructor(
    readonly pass: string,
    readonly reason: string,
  ) {
    super(`pass ${pass}: ${reason}`);
  }
}

export interface PassTiming {
  pass: string;
  seconds: number;
  modified: boolean;
}

export class PassManager<C extends PassContext = PassContext> {
  readonly timings: PassTiming[] = [];
  constructor(readonly passes: Pass<C>[]) {}

  async run(model: Model, ctx: C): Promise<PassResult> {
    let modified = false;
    ctx.progress.plan?.(this.passes.map((p) => p.name));
    for (const [i, p] of this.passes.entries()) {
      ctx.progress.phase?.(i + 1, p.name);
      const pre = p.requires?.(model, ctx);
      // A refused precondition is about what the caller asked for (options, inputs).
      if (pre) throw new UserError(`pass ${p.name}: ${pre}`);
      const t0 = performance.now();
      let r: PassResult;
      try {
        r = await p.run(model, ctx);
      } catch (e) {
        if (e instanceof PassError) throw e;
        if (e instanceof UserError) throw new UserError(`pass ${p.name}: ${e.message}`, e.exitCode);
        throw new PassError(p.name, (e as Error).message);
      }
      this.timings.push({ pass: p.name, seconds: (performance.now() - t0) / 1000, modified: r.modified });
      model = r.model;
      modified ||= r.modified;
      const post = p.ensures?.(model, ctx);
      if (post) throw new PassError(p.name, `postcondition failed: ${post}`);
    }
    ctx.progress.phase?.(0, '');
    return { model, modified };
  }
}
