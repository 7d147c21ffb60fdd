// The CUDA decode's fraction of the memory roofline (issue 21's summary), from a device run's
// cuda-decode-<context>.json (scripts/device/webgpu-vs-cuda.sh or run-e2e.sh) and the model's
// manifest: the bytes a decode token must read are every tensor the step reads whole (all but the
// embedding table, of which it reads one row), plus the fp16 KV cache up to the context
// (2 · layers · context · kvHeads · headDim · 2 bytes) of each sequence of a batch. The roofline is those bytes at 3.0 TB/s,
// what a streaming read reaches on the H100 (3,085 GB/s by a WGSL read kernel through Dawn,
// bench/results/wgsl-h100.json `wgslRead`; issue 21 takes the same figure). Writes
// bench/results/decode-roofline.json.
//   npx tsx scripts/device/decode-roofline.ts DIR --measured COMMIT [--manifest .device/e2e/llama7b-tq2-a8/manifest.json] [--copy-gbps 3000]
// (COMMIT: the commit of the payload the device ran)
import { existsSync, readdirSync, readFileSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { resultHeader } from '../../bench/result-header.ts';

const arg = (name: string, dflt: string) => {
  const i = process.argv.indexOf(`--${name}`);
  return i > 0 ? process.argv[i + 1] : dflt;
};
const dir = process.argv[2];
if (!dir || dir.startsWith('--')) throw new Error('usage: npx tsx scripts/device/decode-roofline.ts DIR [--manifest FILE] [--copy-gbps 3000]');
const manifest = JSON.parse(readFileSync(arg('manifest', '.device/e2e/llama7b-tq2-a8/manifest.json'), 'utf8'));
const copyGBps = Number(arg('copy-gbps', '3000'));
const c = manifest.config;
const tensors = Object.entries(manifest.tensors as Record<string, { bytes: number }>);
const embedRow = (c.hidden * (manifest.tensors[manifest.embed].bytes / (c.vocab * c.hidden))) | 0;
const stepBytes = tensors.reduce((a, [name, t]) => a + (name === manifest.embed ? embedRow : t.bytes), 0);
const kvBytes = (context: number) => 2 * c.layers * context * c.kvHeads * c.headDim * 2;
const summary = [];
const baselineOf = (file: string) => {
  const t = existsSync(file) ? JSON.parse(readFileSync(file, 'utf8')) : null;
  return t?.tokensPerSecond ? { name: `torch ${t.torch} fp16, ${t.mode}, static cache, batch ${t.batch ?? 1}`, tokensPerSecond: t.tokensPerSecond as number } : null;
};
// batch 1 at both contexts, then the batched runs (cuda-decode-<ctx>-b<B>.json): a step reads
// the weights once and each sequence's own KV cache
const runs = readdirSync(dir)
  .map((f) => /^cuda-decode-(\d+)(?:-b(\d+))?\.json$/.exec(f))
  .filter((m): m is RegExpExecArray => m !== null)
  .map((m) => ({ file: m[0], context: Number(m[1]), batch: Number(m[2] ?? 1) }))
  .sort((a, b) => a.batch - b.batch || a.context - b.context);
for (const { file, context, batch } of runs) {
  const r = JSON.parse(readFileSync(join(dir, file), 'utf8'));
  const bytes = stepBytes + batch * kvBytes(context);
  const rooflineMs = bytes / (copyGBps * 1e6);
  const msPerStep = r.msPerStep ?? r.msPerToken;
  // torch fp16 in the same device run (webgpu-vs-cuda.sh with TORCH), when it ran
  const t = baselineOf(join(dir, batch === 1 ? `torch-decode-${context}.json` : `torch-decode-${context}-b${batch}.json`));
  summary.push({
    context,
    batch,
    tokensPerSecond: r.tokensPerSecond,
    msPerStep,
    bytesPerStep: bytes,
    rooflineMs: +rooflineMs.toFixed(4),
    rooflineFraction: +(rooflineMs / msPerStep).toFixed(3),
    baseline: t?.name ?? null,
    baselineTokensPerSecond: t ? +t.tokensPerSecond.toFixed(1) : null,
    speedupOverBaseline: t ? +(r.tokensPerSecond / t.tokensPerSecond).toFixed(2) : null,
    ...(r.greedyCheck ? { greedyCheck: r.greedyCheck } : {}),
  });
}
const out = {
  ...resultHeader('CUDA decode against the memory roofline, LLaMA-2-7B shape, synthetic tq2_g128 weights, 8-bit act sites', 'NVIDIA H100 80GB HBM3'),
  source: dir,
  measuredCommit: arg('measured', 'unknown'),
  copyGBps,
  note: `Bytes a token: every tensor but the embedding table (one row of it) = ${(stepBytes / 1e9).toFixed(3)} GB, plus the fp16 KV cache up to the context of each sequence of the batch; the roofline is those bytes at ${copyGBps} GB/s. ${summary.some((r) => r.baseline) ? 'The baseline is torch fp16 decode (scripts/device/torch_decode.py) in the same device run.' : 'No baseline ran in this device run (baseline null); torch fp16 figures are in cuda-h100-decode-e2e.json, from other runs.'}`,
  summary,
};
writeFileSync('bench/results/decode-roofline.json', JSON.stringify(out, null, 1) + '\n');
console.log(JSON.stringify(summary, null, 1));
