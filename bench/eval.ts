// Perplexity evaluation benchmark on the shared fixture:
//   1. windows per ORT run: ms/window at each batch size, rounds interleaved so that load
//      from other processes hits every size alike;
//   2. full dev.txt perplexity of the three exports (fp32 plain, KV fp16, fused fp16), timed.
// Writes bench/results/eval.json.
//
//   npx tsx bench/eval.ts [--sweep-windows 24] [--rounds 2] [--batches 1,2,4,8] [--no-sweep] [--no-full]
//                         [--threads N] [--spin] [--unit utf16|codepoint]
import { mkdirSync, writeFileSync } from 'node:fs';
import { dirname, join, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';
import { cpus, loadavg } from 'node:os';
import { openModel } from '../src/eval/ort-session.ts';
import { evaluatePerplexity } from '../src/eval/perplexity.ts';
import { loadTokenizer, tokenizeFile, type ChunkUnit } from '../src/eval/tokenizer.ts';
import { cpuDevice, resultHeader } from './result-header.ts';

const root = resolve(dirname(fileURLToPath(import.meta.url)), '..');
const shared = resolve(root, '../shared');
const models = {
  fp32: join(shared, 'models/pydocs-llama-12m/model.onnx'),
  'kv-fp16': join(shared, 'models/pydocs-llama-12m-kv-fp16/model.onnx'),
  'fused-fp16': join(shared, 'models/pydocs-llama-12m-fused-fp16/model.onnx'),
};

const args = process.argv.slice(2);
const arg = (name: string, dflt: string) => {
  const i = args.indexOf(name);
  return i >= 0 ? args[i + 1] : dflt;
};
const sweepWindows = Number(arg('--sweep-windows', '24'));
const rounds = Number(arg('--rounds', '2'));
const batches = arg('--batches', '1,2,4,8').split(',').map(Number);
const threads = args.includes('--threads') ? Number(arg('--threads', '0')) : undefined;
const full = !args.includes('--no-full');
const spin = args.includes('--spin');
const sweepOn = !args.includes('--no-sweep');
const unit = arg('--unit', 'utf16') as ChunkUnit;

const t0 = performance.now();
const ids = tokenizeFile(loadTokenizer(join(shared, 'models/pydocs-llama-12m/tokenizer.json')), join(shared, 'data/pydocs/dev.txt'), { chunkUnit: unit });
const tokenizeSeconds = (performance.now() - t0) / 1000;
console.log(`dev.txt: ${ids.length} tokens (${unit} chunks) in ${tokenizeSeconds.toFixed(1)} s; ${cpus().length} CPUs`);

const sweep: Record<string, number[]> = {};
if (sweepOn) {
  const fp32 = await openModel(models.fp32, { threads, spin });
  await evaluatePerplexity(fp32, ids, { maxWindows: 2, batch: 1 }); // warm-up
  for (let r = 0; r < rounds; r++) {
    for (const batch of batches) {
      const t = performance.now();
      await evaluatePerplexity(fp32, ids, { maxWindows: sweepWindows, batch });
      (sweep[batch] ??= []).push((performance.now() - t) / sweepWindows);
    }
  }
  const best = (xs: number[]) => Math.min(...xs);
  for (const b of batches) console.log(`batch ${b}: ${best(sweep[b]).toFixed(1)} ms/window (best of ${rounds}; all: ${sweep[b].map((x) => x.toFixed(1)).join(', ')})`);
  const base = best(sweep[batches[0]]);
  console.log(`ratio to batch ${batches[0]}: ${batches.map((b) => `${b}: ${(best(sweep[b]) / base).toFixed(2)}`).join(', ')}`);
  await fp32.session.release();
}

const fullResults: Record<string, { ppl: number; windows: number; tokens: number; seconds: number }> = {};
if (full) {
  for (const [name, path] of Object.entries(models)) {
    const m = await openModel(path, { threads, spin });
    const t = performance.now();
    let last = 0;
    const r = await evaluatePerplexity(m, ids, {
      onProgress: (d, n) => {
        if (d - last >= 250 || d === n) {
          last = d;
          process.stderr.write(`  ${name}: ${d}/${n} windows, ${((performance.now() - t) / 1000).toFixed(0)} s\n`);
        }
      },
    });
    const seconds = (performance.now() - t) / 1000;
    fullResults[name] = { ppl: r.ppl, windows: r.windows, tokens: r.tokens, seconds };
    console.log(`${name}: dev PPL ${r.ppl.toFixed(4)} over ${r.windows} windows (${r.tokens} targets) in ${seconds.toFixed(0)} s`);
  }
}

const out = join(root, `bench/results/eval${full ? '' : '-sweep'}.json`);
mkdirSync(dirname(out), { recursive: true });
writeFileSync(
  out,
  JSON.stringify(
    { ...resultHeader('perplexity evaluation speed (onnxruntime-node CPU, ms per 256-token window by batch)', cpuDevice(), `npm run bench:eval -- ${process.argv.slice(2).join(' ')}`), loadavg: loadavg(), cpus: cpus().length, chunkUnit: unit, threads: threads ?? 'ort default', spin, devTokens: ids.length, tokenizeSeconds, sweepWindows, msPerWindowByBatch: sweep, full: fullResults },
    null,
    1,
  ) + '\n',
);
console.log(`wrote ${out}`);
