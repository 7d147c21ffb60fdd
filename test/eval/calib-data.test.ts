import { describe, expect, it } from 'vitest';
import { calibrationSegments, mulberry32 } from '../../src/calib/data.ts';
import { UserError } from '../../src/errors.ts';

// ids[i] = i, so a segment's first id is its start and contiguity is checkable.
const ramp = (n: number) => Int32Array.from({ length: n }, (_, i) => i);

describe('calibrationSegments', () => {
  it('is deterministic in the seed and changes with it', () => {
    const ids = ramp(10_000);
    const a = calibrationSegments(ids, { samples: 16, seq: 64, seed: 7 });
    const b = calibrationSegments(Array.from(ids), { samples: 16, seq: 64, seed: 7 });
    const c = calibrationSegments(ids, { samples: 16, seq: 64, seed: 8 });
    expect(a.map((s) => s[0])).toEqual(b.map((s) => s[0]));
    expect(a.map((s) => s[0])).not.toEqual(c.map((s) => s[0]));
  });

  it('returns contiguous in-bounds segments of seq ids, with the defaults 128 × 512', () => {
    const n = 3000;
    const segs = calibrationSegments(ramp(n));
    expect(segs.length).toBe(128);
    for (const s of segs) {
      expect(s.length).toBe(512);
      expect(s[0]).toBeGreaterThanOrEqual(0);
      expect(s[511]).toBeLessThanOrEqual(n - 1);
      expect(s.every((v, i) => v === s[0] + i)).toBe(true);
    }
  });

  it('draws every valid start, the last included, about equally often', () => {
    // N − seq + 1 = 4 starts; 4000 draws → 1000 each, binomial sd ≈ 27.
    const counts = [0, 0, 0, 0];
    for (const s of calibrationSegments(ramp(13), { samples: 4000, seq: 10, seed: 3 })) counts[s[0]]++;
    for (const c of counts) expect(Math.abs(c - 1000)).toBeLessThan(150);
    expect(calibrationSegments(ramp(10), { samples: 3, seq: 10 }).every((s) => s[0] === 0)).toBe(true);
  });

  it('rejects text shorter than one segment and bad options', () => {
    expect(() => calibrationSegments(ramp(100), { seq: 512 })).toThrow(UserError);
    expect(() => calibrationSegments(ramp(100), { seq: 10, samples: 0 })).toThrow(UserError);
  });
});

describe('mulberry32', () => {
  it('gives floats in [0, 1) with a mean near 1/2, reproducibly', () => {
    const r = mulberry32(0);
    const xs = Array.from({ length: 10_000 }, () => r());
    expect(xs.every((x) => x >= 0 && x < 1)).toBe(true);
    expect(Math.abs(xs.reduce((a, b) => a + b, 0) / xs.length - 0.5)).toBeLessThan(0.01);
    const r2 = mulberry32(0);
    expect(Array.from({ length: 5 }, () => r2())).toEqual(xs.slice(0, 5));
  });
});
