// `twlac kernels --target wgsl`: the WGSL kernels of ternary linears of given shapes, without
// a model: for each N×K the decode GEMV (one token) and the prefill GEMM (PREFILL_TILE tokens)
// that the model plan takes for a GPU adapter (plan.ts, linearKernelsOf), each with a check
// case from the format's reference decoder (check-case.ts). The harness is
// `checkWgslKernels` in twlac/webgpu (runtime/webgpu/kernel-check.ts).
//
// A case file holds, little-endian: W as the kernel reads it (codes, then the fp16 scales at
// word scaleWord0, then the shifts at word shiftWord0: wgsl/kernels.ts ternaryLayout), x as
// float32 [T][K], and the expected y as float64 [T][N].
import { writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { bitsPerWeight, groupsPerRow, transcodeCodes, type TernaryFormat } from '../../formats/ternary.ts';
import { halfToFloat } from '../../graph/tensor.ts';
import { rng } from '../../artifact/random.ts';
import type { LinearEntry } from '../../artifact/manifest.ts';
import { ternaryCheckCase } from '../check-case.ts';
import type { Binding } from './fragments.ts';
import { NO_FEATURES } from './fragments.ts';
import { ternaryLayout } from './kernels.ts';
import { GEMV_BY_ADAPTER, PREFILL_TILE, linearKernelsOf } from './plan.ts';

export interface WgslStandaloneKernel {
  name: string;
  /** decode (one token) or prefill (a tile of tokens). */
  kind: 'gemv' | 'gemm';
  file: string;
  n: number;
  k: number;
  /** Tokens of the check case; `dispatch` is for this many. */
  t: number;
  bindings: readonly Binding[];
  usesStep: boolean;
  workgroupSize: number;
  dispatch: [number, number, number];
  /** Words of W. */
  wWords: number;
  case: string;
}

export function emitWgslKernels(format: TernaryFormat, shapes: readonly [number, number][], dir: string, seed = 1): WgslStandaloneKernel[] {
  const rand = rng(seed);
  const out: WgslStandaloneKernel[] = [];
  shapes.forEach(([n, k], i) => {
    const entry: LinearEntry = { name: `linear_${i}`, role: 'q', rows: n, cols: k, format: format.id, bitsPerWeight: bitsPerWeight(format, n, k) };
    const kernels = linearKernelsOf(entry, NO_FEATURES, GEMV_BY_ADAPTER.gpu);
    // the kernels may read the codes in another packing (trit5 transcoded to bit2, as the runtime uploads them)
    const kf = kernels.codes ?? format;
    const L = ternaryLayout(kf, n, k);
    for (const [kind, kernel, t] of [['gemv', kernels.gemv, 1], ['gemm', kernels.gemm, PREFILL_TILE]] as const) {
      const c = ternaryCheckCase(format, n, k, t, rand);
      const w = new Uint8Array(L.words * 4);
      w.set(kf === format ? c.weights.codes : transcodeCodes(c.weights.codes, format, kf, n * groupsPerRow(format, k)), 0);
      w.set(new Uint8Array(c.weights.scales.buffer), L.scaleWord0 * 4);
      if (c.weights.shifts) w.set(new Uint8Array(c.weights.shifts.buffer), L.shiftWord0 * 4);
      const x = Float32Array.from(c.xHalf, halfToFloat);
      const base = `${kind}_${i}`;
      writeFileSync(join(dir, `${base}.bin`), Buffer.concat([w, new Uint8Array(x.buffer), new Uint8Array(c.y.buffer)]));
      writeFileSync(join(dir, `${base}.wgsl`), kernel.source());
      out.push({
        name: kernel.name,
        kind,
        file: `${base}.wgsl`,
        n,
        k,
        t,
        bindings: kernel.bindings,
        usesStep: kernel.usesStep,
        workgroupSize: kernel.workgroupSize,
        dispatch: kernel.dispatch(t),
        wWords: L.words,
        case: `${base}.bin`,
      });
    }
  });
  return out;
}
