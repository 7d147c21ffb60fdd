// Clip-ratio search for the activation quantiser, run inside onnxruntime: for one input
// site with calibration rows X [T, in] and the linears W [out, in] that read it, evaluate
// every ratio ρ of the grid at once (broadcast over a leading [R] axis):
//   err(ρ) = Σ_t ‖W (Q_b,ρ(x_t) − x_t)‖² / T
// with Q the exact quantiser of src/quant/act-quant.ts (the same emitted ops), and return
// the grid minimum. Coarse to fine: every 10th ratio of the grid, then the 21 ratios within
// ±10 steps of the coarse best (31 of 101 evaluated, in two ORT calls); the error is smooth
// and unimodal at the coarse scale on every site measured (test/calib/clip-search.test.ts
// checks the result against the exhaustive float64 search).
import * as ort from 'onnxruntime-node';
import { GraphBuilder } from '../graph/builder.ts';
import { encodeModel } from '../graph/onnx.ts';
import { CLIP_GRID, emitActQuantWith } from '../quant/act-quant.ts';

export interface ClipChoice {
  clip: number;
  /** Output error per token at the chosen ratio and at ρ = 1. */
  mse: number;
  mseNoClip: number;
}

function searchModel(): Uint8Array {
  const b = new GraphBuilder();
  const x = b.input('x', { dtype: 'float32', shape: [1, 'T', 'in'] });
  const wt = b.input('wt', { dtype: 'float32', shape: ['in', 'out'] });
  const levels = b.input('levels', { dtype: 'float32', shape: [] });
  const rho = b.input('rho', { dtype: 'float32', shape: ['R', 1, 1] });
  const xq = emitActQuantWith(b, x, levels, rho, { prefix: 'q' });
  const e = b.op('Sub', [xq, x]);
  const f = b.op('MatMul', [e, wt]);
  const err = b.op('ReduceSumSquare', [f, b.i64('axes', [1, 2])], { attrs: { keepdims: 0 } });
  b.output(err, 'err');
  return encodeModel(b.model(18));
}

export class ClipSearcher {
  private constructor(
    private readonly session: ort.InferenceSession,
    readonly grid: readonly number[],
  ) {}

  static async create(grid: readonly number[] = CLIP_GRID): Promise<ClipSearcher> {
    const s = await ort.InferenceSession.create(searchModel(), { executionProviders: ['cpu'], graphOptimizationLevel: 'all' });
    return new ClipSearcher(s, grid);
  }

  /** X [tokens, inDim]; linears' weights row-major [out, inDim]. */
  async search(X: Float32Array, tokens: number, inDim: number, linears: readonly { weight: Float32Array | Float64Array; outDim: number }[], bits: number): Promise<ClipChoice> {
    const out = linears.reduce((a, l) => a + l.outDim, 0);
    const wt = new Float32Array(inDim * out);
    let o0 = 0;
    for (const l of linears) {
      for (let o = 0; o < l.outDim; o++) for (let k = 0; k < inDim; k++) wt[k * out + o0 + o] = l.weight[o * inDim + k];
      o0 += l.outDim;
    }
    const feeds = {
      x: new ort.Tensor('float32', X.subarray(0, tokens * inDim), [1, tokens, inDim]),
      wt: new ort.Tensor('float32', wt, [inDim, out]),
      levels: new ort.Tensor('float32', Float32Array.of(2 ** bits - 1), []),
    };
    const errors = new Map<number, number>();
    const evaluate = async (idx: number[]) => {
      const todo = idx.filter((i) => !errors.has(i));
      if (!todo.length) return;
      const rho = new ort.Tensor('float32', Float32Array.from(todo, (i) => this.grid[i]), [todo.length, 1, 1]);
      const err = (await this.session.run({ ...feeds, rho })).err.data as Float32Array;
      todo.forEach((i, j) => errors.set(i, err[j]));
    };
    const n = this.grid.length;
    const argmin = () => [...errors].reduce((a, b) => (b[1] < a[1] || (b[1] === a[1] && b[0] < a[0]) ? b : a))[0];
    await evaluate([...Array.from({ length: Math.ceil(n / 10) }, (_, k) => k * 10).filter((i) => i < n), n - 1]);
    const c = argmin();
    await evaluate(Array.from({ length: 21 }, (_, k) => c - 10 + k).filter((i) => i >= 0 && i < n));
    const best = argmin();
    const one = this.grid.indexOf(1);
    if (one >= 0) await evaluate([one]);
    return { clip: this.grid[best], mse: errors.get(best)! / tokens, mseNoClip: one >= 0 ? errors.get(one)! / tokens : NaN };
  }

  async release(): Promise<void> {
    await this.session.release();
  }
}
