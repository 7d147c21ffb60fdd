// Progress of a long compile: the passes announced up front, each line naming the running pass
// ("[4/5 ternary]"), an ETA for a step of known size, and after each block of the ternary pass
// the time the pass still needs. Checked on a fake clock and stream, and on a real compile.
import { describe, expect, it } from 'vitest';
import { eta, formatDuration, makeProgress } from '../../src/cli/progress.ts';
import { compile } from '../../src/compile.ts';
import { calibrationSegments } from '../../src/calib/data.ts';
import type { Progress } from '../../src/graph/pass.ts';
import { makeTinyLlama } from '../../src/graph/synthetic-llama.ts';
import { mulberry32 } from '../../src/util/prng.ts';

function fakeStream() {
  const lines: string[] = [];
  let buf = '';
  const stream = {
    isTTY: false,
    write(s: string) {
      buf += s;
      const parts = buf.split('\n');
      buf = parts.pop()!;
      lines.push(...parts);
      return true;
    },
  } as unknown as NodeJS.WritableStream & { isTTY?: boolean };
  return { lines, stream };
}

describe('progress', () => {
  it('formats durations and ETAs at the rate so far', () => {
    expect([42, 190, 3725].map(formatDuration)).toEqual(['42s', '3m10s', '1h02m']);
    expect(eta(30, 1, 4)).toBe(90);
    expect(eta(30, 0, 4)).toBeUndefined();
    expect(eta(30, 4, 4)).toBeUndefined();
  });

  it('announces the passes, prefixes lines with the running pass, and gives step and pass ETAs', () => {
    let t = 0;
    const { lines, stream } = fakeStream();
    const p = makeProgress({ stream, now: () => t });
    p.plan!(['check-weights', 'fold-norms', 'ternary']);
    p.phase!(3, 'ternary');
    p.units!(0, 4);
    p.start('block 1/4: ternary fit', 10);
    t = 10_000;
    p.tick(5);
    t = 30_000;
    p.done();
    p.units!(1, 4);
    p.phase!(0, '');
    p.start('writing model.onnx');
    expect(lines).toEqual([
      'passes: 1 check-weights · 2 fold-norms · 3 ternary',
      '[3/3 ternary] block 1/4: ternary fit...',
      '  [3/3 ternary] block 1/4: ternary fit 5/10 50% 10.0s, ETA 10s',
      '[3/3 ternary] block 1/4: ternary fit: done in 30.0s',
      '[3/3 ternary] 1/4 blocks in 30s; about 1m30s left in this pass',
      'writing model.onnx...',
    ]);
  });

  it('a compile reports its plan, every pass, and each of its blocks to the progress', async () => {
    const events: string[] = [];
    const rec: Progress = {
      start() {},
      tick() {},
      done() {},
      log() {},
      plan: (names) => events.push(`plan ${names.join(',')}`),
      phase: (i, name) => events.push(`phase ${i} ${name}`),
      units: (d, n) => events.push(`units ${d}/${n}`),
    };
    const m = makeTinyLlama({ layers: 3, hidden: 64, heads: 4, kvHeads: 2, intermediate: 128, vocab: 96, seed: 2 });
    const rand = mulberry32(3);
    const ids = Int32Array.from({ length: 600 }, () => Math.floor(rand() * 96));
    await compile(m, { weights: 'twla', format: 'tq2_g128', rotate: false, calib: calibrationSegments(ids, { samples: 4, seq: 32 }) }, rec);
    expect(events).toEqual([
      'plan check-model,check-weights,fold-norms,ternary,storage-precision,lower-ort',
      'phase 1 check-model',
      'phase 2 check-weights',
      'phase 3 fold-norms',
      'phase 4 ternary',
      'units 0/3',
      'units 1/3',
      'units 2/3',
      'units 3/3',
      'phase 5 storage-precision',
      'phase 6 lower-ort',
      'phase 0 ',
    ]);
  });
});
