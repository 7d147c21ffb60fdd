// Fits in parallel: the linears of a block given their Hessians (quantizeLinear, whole or by
// row slices), the input sites' GPTQ factors (prepareKernelHessian) and rotations (optimiseKotms). Each is a pure function of its arguments, so a pool of
// worker threads runs them side by side and the results come back in the order asked for:
// the output is byte-identical whatever the number of threads. A Hessian is handed over in a
// SharedArrayBuffer (a 11008-wide H is ~1 GB of float64); other arguments are copied.
import { existsSync } from 'node:fs';
import { availableParallelism } from 'node:os';
import { fileURLToPath } from 'node:url';
import { Worker } from 'node:worker_threads';
import { UserError } from '../errors.ts';
import { optimiseKotms } from './kotms.ts';
import { quantizeLinear } from './quantize-linear.ts';
import { prepareKernelHessian } from './structure-kernel.ts';

/** What the pool runs, by name (the workers import them from fit-functions beside this module). */
const FUNCTIONS = { quantizeLinear, optimiseKotms, prepareKernelHessian };
type PoolFn = keyof typeof FUNCTIONS;

export interface PoolJob<F extends PoolFn> {
  fn: F;
  /** Plain data only (no callbacks such as onProgress or restUpdate): the job may run in another thread. */
  args: Parameters<(typeof FUNCTIONS)[F]>;
  /** Relative cost: the largest jobs are handed out first. */
  cost: number;
}

/** Threads a pool uses by default: one per core the process may use. */
export function defaultFitThreads(): number {
  return availableParallelism();
}

/** A Float64Array in shared memory (what a pool's jobs should carry as H). */
export function sharedFloat64(n: number): Float64Array {
  return new Float64Array(new SharedArrayBuffer(n * 8));
}

type Reply = { id: number; result?: unknown; error?: { name: string; message: string } };

export class FitPool {
  private constructor(private readonly workers: Worker[]) {}

  /** A pool of `threads` workers; with one thread (or no worker script and fit-functions module beside this one) the jobs run inline. */
  static async open(threads: number): Promise<FitPool> {
    // beside this module: fit-functions.ts (src/ under tsx), .js (dist/) or .mjs (a bundle, which
    // ships fit-worker.mjs and a bundled fit-functions.mjs beside itself)
    const script = new URL('./fit-worker.mjs', import.meta.url);
    const fnModule = ['.ts', '.js', '.mjs'].map((e) => new URL(`./fit-functions${e}`, import.meta.url)).find((u) => existsSync(fileURLToPath(u)));
    if (threads <= 1 || !fnModule || !existsSync(fileURLToPath(script))) return new FitPool([]);
    const hrefs = Object.fromEntries(Object.keys(FUNCTIONS).map((fn) => [fn, fnModule.href]));
    const workers = await Promise.all(
      Array.from({ length: threads }, () =>
        new Promise<Worker>((resolve, reject) => {
          const w = new Worker(script, { workerData: { modules: hrefs } });
          w.once('error', reject);
          w.once('message', () => {
            w.off('error', reject);
            resolve(w);
          });
        }),
      ),
    );
    return new FitPool(workers);
  }

  /** A pool that runs its jobs inline, in this thread. */
  static inline(): FitPool {
    return new FitPool([]);
  }

  get threads(): number {
    return Math.max(1, this.workers.length);
  }

  /** Run every job; results in the jobs' order. `done(i)` is called as job i finishes. */
  async run<F extends PoolFn>(jobs: PoolJob<F>[], done: (i: number) => void = () => {}): Promise<ReturnType<(typeof FUNCTIONS)[F]>[]> {
    type R = ReturnType<(typeof FUNCTIONS)[F]>;
    const results: R[] = new Array(jobs.length);
    if (this.workers.length === 0) {
      jobs.forEach((j, i) => {
        results[i] = (FUNCTIONS[j.fn] as (...a: unknown[]) => R)(...j.args);
        done(i);
      });
      return results;
    }
    const queue = jobs.map((_, i) => i).sort((a, b) => jobs[b].cost - jobs[a].cost || a - b);
    await Promise.all(
      this.workers.map(async (worker) => {
        for (let i = queue.shift(); i !== undefined; i = queue.shift()) {
          const reply = await new Promise<Reply>((resolve, reject) => {
            const fail = (e: Error) => reject(e);
            worker.once('error', fail);
            worker.once('message', (m: Reply) => {
              worker.off('error', fail);
              resolve(m);
            });
            worker.postMessage({ id: i, fn: jobs[i].fn, args: jobs[i].args });
          });
          if (reply.error) throw reply.error.name === 'UserError' ? new UserError(reply.error.message) : new Error(reply.error.message);
          results[i] = reply.result as R;
          done(i);
        }
      }),
    );
    return results;
  }

  async close(): Promise<void> {
    await Promise.all(this.workers.map((w) => w.terminate()));
  }
}
