// Reading scripts/device/run-e2e.sh logs and the ORT perplexity files beside them (shared by
// bench/cuda-h100.ts and scripts/device/merge-runtime-prefill.ts).
import { readFileSync } from 'node:fs';

/** The JSON object printed after the last `== title` line of an e2e log. */
export function e2eSection(log: string, title: string): Record<string, number | string> | undefined {
  const i = log.lastIndexOf(`== ${title}\n`);
  if (i < 0) return undefined;
  const line = log.slice(i).split('\n').find((l) => l.startsWith('{'));
  return line ? JSON.parse(line) : undefined;
}

/** `--ort name=FILE` arguments: name → the first JSON line of FILE (`twlac eval --json`). */
export function ortResults(specs: readonly string[]): Record<string, { ppl: number; tokens: number; windows: number }> {
  return Object.fromEntries(
    specs.map((s) => {
      const [name, file] = s.split('=');
      const line = readFileSync(file, 'utf8').split('\n').find((l) => l.startsWith('{'));
      if (!line) throw new Error(`${file}: no JSON line (expected the output of twlac eval --json)`);
      return [name, JSON.parse(line)];
    }),
  );
}
