// Token choice: greedy is argmax; sampling draws from softmax(l / T) restricted by top-k and
// top-p. Oracle: the float64 distribution computed here, against the frequencies of many
// draws (a 5-sigma bound per token), and the same seed giving the same draws.
import { describe, expect, it } from 'vitest';
import { tokenChooser } from '../../src/eval/sampling.ts';

const logits = Float32Array.from([1.0, 2.5, -0.5, 2.5, 0.25, 1.75, -3, 0.9]);

/** softmax(l / T) over the ids `keep` (others 0), float64. */
function oracle(T: number, keep: number[]): number[] {
  const m = Math.max(...keep.map((i) => logits[i]));
  const e = logits.map((l, i) => (keep.includes(i) ? Math.exp((l - m) / T) : 0));
  const s = e.reduce((a, b) => a + b, 0);
  return Array.from(e, (x) => x / s);
}

function frequencies(choose: ReturnType<typeof tokenChooser>, draws: number): number[] {
  const n = new Array(logits.length).fill(0);
  for (let i = 0; i < draws; i++) n[choose(logits, 0, logits.length)]++;
  return n.map((c) => c / draws);
}

function expectDistribution(freq: number[], p: number[], draws: number): void {
  for (let i = 0; i < p.length; i++) {
    if (p[i] === 0) expect(freq[i], `id ${i}`).toBe(0);
    else expect(Math.abs(freq[i] - p[i]), `id ${i}: ${freq[i]} vs ${p[i]}`).toBeLessThanOrEqual(5 * Math.sqrt((p[i] * (1 - p[i])) / draws) + 1e-12);
  }
}

const all = [0, 1, 2, 3, 4, 5, 6, 7];
const draws = 40_000;

describe('token choice', () => {
  it('greedy (temperature 0 or none) is argmax, lowest id on ties, at any offset', () => {
    const row = new Float32Array(3 + logits.length);
    row.set(logits, 3);
    expect(tokenChooser()(row, 3, logits.length)).toBe(1);
    expect(tokenChooser({ temperature: 0 })(logits, 0, logits.length)).toBe(1);
  });

  it('temperature T samples softmax(l / T)', () => {
    for (const T of [0.5, 1, 2]) expectDistribution(frequencies(tokenChooser({ temperature: T, seed: 1 }), draws), oracle(T, all), draws);
  });

  it('top-k keeps the k largest logits (ties by lower id) and renormalises', () => {
    // k = 3: ids 1 and 3 (2.5, tied) and 5 (1.75).
    expectDistribution(frequencies(tokenChooser({ temperature: 1, topK: 3, seed: 2 }), draws), oracle(1, [1, 3, 5]), draws);
    expectDistribution(frequencies(tokenChooser({ temperature: 1, topK: 1, seed: 2 }), 200), oracle(1, [1]), 200);
  });

  it('top-p keeps the shortest most-likely prefix whose mass reaches p', () => {
    const p = oracle(1, all);
    const order = all.slice().sort((a, b) => p[b] - p[a] || a - b);
    let mass = 0;
    const keep: number[] = [];
    for (const i of order) {
      if (mass >= 0.8) break;
      keep.push(i);
      mass += p[i];
    }
    expect(keep.length).toBeGreaterThan(1);
    expect(keep.length).toBeLessThan(8);
    expectDistribution(frequencies(tokenChooser({ temperature: 1, topP: 0.8, seed: 3 }), draws), oracle(1, keep), draws);
  });

  it('the same seed gives the same draws; another seed other draws', () => {
    const seq = (seed: number) => {
      const c = tokenChooser({ temperature: 1.5, topP: 0.95, seed });
      return Array.from({ length: 64 }, () => c(logits, 0, logits.length));
    };
    expect(seq(7)).toEqual(seq(7));
    expect(seq(7)).not.toEqual(seq(8));
  });

  it('refuses bad options with a message naming them', () => {
    expect(() => tokenChooser({ temperature: -1 })).toThrow(/temperature/);
    expect(() => tokenChooser({ temperature: 1, topK: 0 })).toThrow(/top-k/);
    expect(() => tokenChooser({ temperature: 1, topP: 1.5 })).toThrow(/top-p/);
    expect(() => tokenChooser({ topK: 5 })).toThrow(/temperature above 0/);
  });
});
