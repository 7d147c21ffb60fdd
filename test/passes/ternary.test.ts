// The ternary pass's twla fit against its definition: block by block, H of block i measured by
// a full-graph onnxruntime capture of the model whose blocks < i are already quantised, then
// each linear fitted with quantizeLinear. The pass streams the calibration (calib/stream.ts)
// and fits a block's linears in worker threads (quant/fit-pool.ts); neither may change a bit
// of the result, and the thread count may not change a byte of weights.bin.
import { mkdtempSync, readFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, describe, expect, it } from 'vitest';
import { captureSites, hessian } from '../../src/calib/capture.ts';
import { compileToDir, createContext } from '../../src/compile.ts';
import { parseFormatId } from '../../src/formats/ternary.ts';
import { saveModel } from '../../src/graph/onnx.ts';
import { PassManager } from '../../src/graph/pass.ts';
import { weightRows } from '../../src/graph/recognize.ts';
import type { CompileContext } from '../../src/passes/context.ts';
import { foldNormsPass } from '../../src/passes/fold-norms.ts';
import { rotatePass } from '../../src/passes/rotate.ts';
import { OUTPUT_ERROR_BUDGET, ternaryPass } from '../../src/passes/ternary.ts';
import { setLinearWeight } from '../../src/passes/weights.ts';
import { FitPool } from '../../src/quant/fit-pool.ts';
import { quantizeLinear } from '../../src/quant/quantize-linear.ts';
import { makeTinyLlama } from '../fixtures/make-fixtures.ts';

const tmp = mkdtempSync(join(tmpdir(), 'twlac-ternary-'));
afterAll(() => rmSync(tmp, { recursive: true, force: true }));

const shape = { layers: 3, hidden: 64, heads: 4, kvHeads: 2, intermediate: 160, vocab: 96, seed: 7 };
const calib = Array.from({ length: 6 }, (_, i) => Int32Array.from({ length: 24 }, (_, t) => (i * 37 + t * 11 + ((i + 1) * t * t) % 13) % shape.vocab));

/** Fold norms and rotate (few KOTMS steps), as the pipeline does before the ternary pass. */
async function prepared(): Promise<{ m: ReturnType<typeof makeTinyLlama>; ctx: CompileContext }> {
  const m = makeTinyLlama(shape);
  const ctx = { ...createContext(m, { calib }), kotms: { iterations: 5 } } as CompileContext;
  await new PassManager<CompileContext>([foldNormsPass, rotatePass]).run(m, ctx);
  return { m, ctx };
}

describe('ternary pass (twla)', () => {
  it('equals full-graph capture + quantizeLinear block by block, with 2 fit threads', async () => {
    const a = await prepared();
    a.ctx.opts.threads = 2;
    await new PassManager<CompileContext>([ternaryPass]).run(a.m, a.ctx);

    // The oracle: the whole model captured for every block, fits in order, in this thread.
    const b = await prepared();
    const f = parseFormatId(b.ctx.opts.format);
    for (const block of b.ctx.structure.blocks) {
      const groups = b.ctx.sites.filter((s) => s.group.block === block.index);
      const stats = await captureSites(b.m, groups.map((s) => ({ id: s.id, value: s.group.linears[0].node.input(0)!, width: s.group.linears[0].inFeatures })), calib);
      for (const s of groups) {
        const H = hessian(stats.get(s.id)!);
        for (const l of s.group.linears) {
          const r = quantizeLinear(weightRows(l), l.outFeatures, l.inFeatures, H, {
            structure: 'kernel', group: f.group, shift: f.shift, packing: f.packing, lattice: f.lattice, gptq: true, xDomain: true, measure: { budget: OUTPUT_ERROR_BUDGET },
          });
          setLinearWeight(l, r.dequant);
          b.ctx.linears.get(l)!.ternary = r.weights;
        }
      }
    }
    const streamed = [...a.ctx.linears.values()];
    const oracle = [...b.ctx.linears.values()];
    expect(streamed.length).toBe(7 * shape.layers);
    streamed.forEach((st, i) => {
      const o = oracle[i].ternary!;
      expect(st.id).toBe(oracle[i].id);
      expect(Buffer.from(st.ternary!.codes).equals(Buffer.from(o.codes)), `${st.id} codes`).toBe(true);
      expect(Buffer.from(st.ternary!.scales.buffer).equals(Buffer.from(o.scales.buffer)), `${st.id} scales`).toBe(true);
      expect(Buffer.from(st.ternary!.shifts!.buffer).equals(Buffer.from(o.shifts!.buffer)), `${st.id} shifts`).toBe(true);
    });
  });

  it('writes the same weights.bin with 1 and 2 threads (KOTMS and fits)', async () => {
    const src = join(tmp, 'src.onnx');
    saveModel(makeTinyLlama(shape), src);
    const bins = [];
    for (const threads of [1, 2]) {
      await compileToDir(src, join(tmp, `out-${threads}`), { calib, threads });
      bins.push(readFileSync(join(tmp, `out-${threads}`, 'weights.bin')));
    }
    expect(bins[0].length).toBeGreaterThan(0);
    expect(bins[1].equals(bins[0])).toBe(true);
  });

  it('a pool of 2 threads runs its jobs in workers and returns them in order (largest first)', async () => {
    const pool = await FitPool.open(2);
    try {
      expect(pool.threads).toBe(2);
      const opts = { structure: 'kernel' as const, group: 32, gptq: false, xDomain: false };
      const ws = [32, 48, 16].map((rows, k) => ({ rows, w: Float32Array.from({ length: rows * 64 }, (_, i) => Math.sin(i * 0.37 + k)) }));
      const got = await pool.run(ws.map(({ rows, w }) => ({ fn: 'quantizeLinear' as const, args: [w, rows, 64, null, opts] as const, cost: rows })));
      ws.forEach(({ rows, w }, i) => expect(Buffer.from(got[i].weights!.codes).equals(Buffer.from(quantizeLinear(w, rows, 64, null, opts).weights!.codes))).toBe(true));
    } finally {
      await pool.close();
    }
  });
});
