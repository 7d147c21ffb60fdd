// The fits of one block's linears, given each input site's H, as the ternary pass runs them:
//  1. with GPTQ on the kernel structure, each site's act-order permutation of H and GPTQ's
//     damped factor of it (O(cols³)) are made once (prepareKernelHessian), in shared memory,
//     for every linear reading the site (q, k and v; gate and up) instead of once a linear;
//  2. the linears are fitted in the pool's threads, a linear far costlier than a thread's share
//     of the block (the down projection) in row slices (rowSlices): the kernel structure's fit
//     is row-separable, so the slices join (mergeRowFits) into the bytes of one whole fit.
// Results come back in the order of the sites and their linears, the same whatever the
// number of threads. `share: false` fits every linear whole with its own factor (what the pass
// did before; bench/fit-block.ts measures both).
import { FitPool, sharedFloat64, type PoolJob } from './fit-pool.ts';
import type { RestUpdate } from './gptq.ts';
import { mergeRowFits, quantizeLinear, rowSlices, type QuantizeLinearOptions, type QuantizeLinearResult } from './quantize-linear.ts';
import type { PreparedHessian } from './structure-kernel.ts';

export interface BlockFitSite {
  /** H [cols × cols] of the site's input (null: no GPTQ, no X-domain stage); best in shared memory. */
  H: Float64Array | null;
  cols: number;
  /** Row-major weights [rows × cols] of the site's linears. */
  linears: { w: Float32Array; rows: number }[];
}

export interface BlockFitOptions {
  /** Multiply-adds each linear may spend measuring its output error (quantizeLinear `measure`); 0: not measured. */
  measureBudget: number;
  /** Share the factors and split large linears (default true). */
  share?: boolean;
  /** GPTQ's lazy update elsewhere (the GPU path); the fits then run in this thread. */
  restUpdate?: RestUpdate;
  /** A stage starts: 'factors' or 'fits', with its number of jobs. */
  onStage?: (stage: 'factors' | 'fits', jobs: number) => void;
  /** A job finished: for fits, the site and linear it belongs to. */
  onJob?: (site: number, linear: number) => void;
}

type Fit = Omit<QuantizeLinearOptions, 'measure' | 'prepared' | 'restUpdate' | 'onProgress'>;

export async function fitBlock(pool: FitPool | undefined, sites: BlockFitSite[], fit: Fit, o: BlockFitOptions): Promise<QuantizeLinearResult[][]> {
  const share = o.share ?? true;
  const kernelGptq = fit.structure === 'kernel' && fit.gptq;
  const group = fit.group ?? 128;
  const prepSites = share && kernelGptq ? sites.map((s, i) => ({ s, i })).filter(({ s }) => s.H !== null) : [];
  const prepJobs: PoolJob<'prepareKernelHessian'>[] = prepSites.map(({ s }) => ({
    fn: 'prepareKernelHessian',
    args: [s.H!, s.cols, group, fit.actOrder ?? true, sharedFloat64(s.cols * s.cols), sharedFloat64(s.cols * s.cols)],
    cost: s.cols ** 3,
  }));
  const prepared = new Map<number, PreparedHessian>();
  if (prepJobs.length) {
    o.onStage?.('factors', prepJobs.length);
    const tick = (j: number) => o.onJob?.(prepSites[j].i, -1);
    const made = await (pool ?? FitPool.inline()).run(prepJobs, tick);
    made.forEach((p, j) => prepared.set(prepSites[j].i, p));
  }
  // jobs: every linear whole, or in row slices when it is far larger than a thread's share
  const threads = o.restUpdate ? 1 : (pool?.threads ?? 1);
  const lins = sites.flatMap((s, si) => s.linears.map((l, li) => ({ s, si, li, l, cost: l.rows * s.cols ** 2 })));
  const perThread = lins.reduce((a, x) => a + x.cost, 0) / (2 * threads);
  const measure = (s: BlockFitSite) => (s.H && o.measureBudget > 0 ? { budget: o.measureBudget } : false);
  const jobs: PoolJob<'quantizeLinear'>[] = [];
  const owners: { si: number; li: number }[] = [];
  const plan = lins.map(({ s, si, li, l, cost }) => {
    const split = share && fit.structure === 'kernel' && threads > 1;
    const slices = split ? rowSlices(l.rows, Math.min(threads, Math.ceil(cost / perThread), Math.floor(l.rows / 16))) : [[0, l.rows] as [number, number]];
    const first = jobs.length;
    for (const [r0, r1] of slices) {
      const whole = slices.length === 1;
      jobs.push({
        fn: 'quantizeLinear',
        args: [whole ? l.w : l.w.slice(r0 * s.cols, r1 * s.cols), r1 - r0, s.cols, s.H, { ...fit, measure: whole ? measure(s) : false, prepared: prepared.get(si) }],
        // a fit costs about rows·cols² (GPTQ's updates and the refits under H)
        cost: (r1 - r0) * s.cols ** 2,
      });
      owners.push({ si, li });
    }
    return { s, si, li, l, first, n: slices.length };
  });
  o.onStage?.('fits', jobs.length);
  const tick = (j: number) => o.onJob?.(owners[j].si, owners[j].li);
  const parts =
    pool && !o.restUpdate
      ? await pool.run(jobs, tick)
      : jobs.map((job, j) => {
          const [w, rows, cols, h, opts] = job.args;
          const r = quantizeLinear(w, rows, cols, h, { ...opts, restUpdate: o.restUpdate });
          tick(j);
          return r;
        });
  const out: QuantizeLinearResult[][] = sites.map((s) => new Array(s.linears.length));
  for (const { s, si, li, l, first, n } of plan) {
    out[si][li] = n === 1 ? parts[first] : mergeRowFits(l.w, l.rows, s.cols, s.H, parts.slice(first, first + n), measure(s));
  }
  return out;
}
