// Seeded ASCII text from a small word list: few distinct bytes, so a bigram model of it
// (test/cli/bigram-model.ts) is exact at rank hidden − 1 (the oracle the CLI tests compare against).
import { Rng } from '../fixtures/make-fixtures.ts';

export function wordText(n: number, seed = 3): string {
  const words = ['the', 'model', 'weights', 'are', 'ternary', 'and', 'runs', 'on', 'onnx', 'runtime', 'with', 'low', 'bit', 'activations'];
  const rng = new Rng(seed);
  const out: string[] = [];
  for (let i = 0; i < n; i++) out.push(words[Math.floor(rng.uniform() * words.length)] + (rng.uniform() < 0.1 ? '.\n' : ' '));
  return out.join('');
}
