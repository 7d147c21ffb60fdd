// The project's one seeded PRNG (mulberry32): 32-bit state, uniform floats in [0, 1) with
// 32 random bits each, integer arithmetic only (Math.imul), so a seed gives the same stream
// everywhere. Calibration sampling, KOTMS starts, fixtures and random models all use it.
export function mulberry32(seed: number): () => number {
  let a = seed >>> 0;
  return () => {
    a = (a + 0x6d2b79f5) >>> 0;
    let t = a;
    t = Math.imul(t ^ (t >>> 15), t | 1);
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
  };
}
