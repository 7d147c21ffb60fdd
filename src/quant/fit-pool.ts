// Fitting a block's linears in parallel. Given their Hessians, the linears of a block are
// independent fits (quantizeLinear is a pure function of W, H and the options), so a pool of
// worker threads fits them side by side and the results come back in the order asked for:
// the output is byte-identical whatever the number of threads. Each H is handed over in a
// SharedArrayBuffer (a 11008-wide H is ~1 GB of float64), each W is copied.
import { existsSync } from 'node:fs';
import { availableParallelism } from 'node:os';
import { fileURLToPath } from 'node:url';
import { Worker } from 'node:worker_threads';
import { UserError } from '../errors.ts';
import { quantizeLinear, type QuantizeLinearOptions, type QuantizeLinearResult } from './quantize-linear.ts';

export interface FitJob {
  w: Float32Array;
  rows: number;
  cols: number;
  h: Float64Array | null;
  /** Without callbacks (onProgress, restUpdate): the job may run in another thread. */
  opts: Omit<QuantizeLinearOptions, 'onProgress' | 'restUpdate'>;
}

/** Threads a pool uses by default: one per core the process may use. */
export function defaultFitThreads(): number {
  return availableParallelism();
}

/** A Float64Array in shared memory (what a pool's jobs should carry as H). */
export function sharedFloat64(n: number): Float64Array {
  return new Float64Array(new SharedArrayBuffer(n * 8));
}

type Reply = { id: number; result?: QuantizeLinearResult; error?: { name: string; message: string } };

export class FitPool {
  private constructor(private readonly workers: Worker[]) {}

  /** A pool of `threads` workers; with one thread (or no worker script beside this module, as in a bundle) the fits run inline. */
  static async open(threads: number): Promise<FitPool> {
    const ext = import.meta.url.endsWith('.ts') ? '.ts' : '.js';
    const script = new URL('./fit-worker.mjs', import.meta.url);
    const module = new URL(`./quantize-linear${ext}`, import.meta.url);
    if (threads <= 1 || !existsSync(fileURLToPath(script)) || !existsSync(fileURLToPath(module))) return new FitPool([]);
    const workers = await Promise.all(
      Array.from({ length: threads }, () =>
        new Promise<Worker>((resolve, reject) => {
          const w = new Worker(script, { workerData: { module: module.href } });
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

  get threads(): number {
    return Math.max(1, this.workers.length);
  }

  /** Fit every job; results in the jobs' order. `done(i)` is called as job i finishes. */
  async run(jobs: FitJob[], done: (i: number) => void = () => {}): Promise<QuantizeLinearResult[]> {
    const results: QuantizeLinearResult[] = new Array(jobs.length);
    if (this.workers.length === 0) {
      jobs.forEach((j, i) => {
        results[i] = quantizeLinear(j.w, j.rows, j.cols, j.h, j.opts);
        done(i);
      });
      return results;
    }
    // Largest first (a fit costs about rows·cols²), so that the last job to start is a small one.
    const queue = jobs.map((_, i) => i).sort((a, b) => jobs[b].rows * jobs[b].cols ** 2 - jobs[a].rows * jobs[a].cols ** 2 || a - b);
    await Promise.all(
      this.workers.map(async (worker) => {
        for (let i = queue.shift(); i !== undefined; i = queue.shift()) {
          const j = jobs[i];
          const reply = await new Promise<Reply>((resolve, reject) => {
            const fail = (e: Error) => reject(e);
            worker.once('error', fail);
            worker.once('message', (m: Reply) => {
              worker.off('error', fail);
              resolve(m);
            });
            worker.postMessage({ id: i, w: j.w, rows: j.rows, cols: j.cols, h: j.h, opts: j.opts });
          });
          if (reply.error) throw reply.error.name === 'UserError' ? new UserError(reply.error.message) : new Error(reply.error.message);
          results[i] = reply.result!;
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
