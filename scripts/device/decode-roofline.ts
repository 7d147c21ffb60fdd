// The CUDA decode's fraction of the memory roofline (issue 21's summary), from a device run's
// cuda-decode-<context>.json (scripts/device/webgpu-vs-cuda.sh or run-e2e.sh) and the model's
// manifest: the bytes a decode token must read are every tensor the step reads whole (all but the
// embedding table, of which it reads one row), plus the fp16 KV cache up to the context
// (2 · layers · context · kvHeads · headDim · 2 bytes). The roofline is those bytes at 3.0 TB/s,
// what a streaming read reaches on the H100 (3,085 GB/s by a WGSL read kernel through Dawn,
// bench/results/wgsl-h100.json `wgslRead`; issue 21 takes the same figure). Writes
// bench/results/decode-roofline.json.
//   npx tsx scripts/device/decode-roofline.ts DIR --measured COMMIT [--manifest .device/e2e/llama7b-tq2-a8/manifest.json] [--copy-gbps 3000]
// (COMMIT: the commit of the payload the device ran)
import { existsSync, readFileSync, writeFileSync } from 'node:fs';
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
for (const context of [512, 2048]) {
  const f = join(dir, `cuda-decode-${context}.json`);
  if (!existsSync(f)) continue;
  const r = JSON.parse(readFileSync(f, 'utf8'));
  const bytes = stepBytes + kvBytes(context);
  const rooflineMs = bytes / (copyGBps * 1e6);
  // torch fp16 in the same device run (webgpu-vs-cuda.sh with TORCH=1), when it ran
  const tf = join(dir, `torch-decode-${context}.json`);
  const t = existsSync(tf) ? JSON.parse(readFileSync(tf, 'utf8')) : null;
  const baseline = t?.tokensPerSecond ? `torch ${t.torch} fp16, ${t.mode}, static cache` : null;
  summary.push({ context, batch: 1, tokensPerSecond: r.tokensPerSecond, msPerToken: r.msPerToken, bytesPerToken: bytes, rooflineMs: +rooflineMs.toFixed(4), rooflineFraction: +(rooflineMs / r.msPerToken).toFixed(3), baseline, baselineTokensPerSecond: baseline ? +t.tokensPerSecond.toFixed(1) : null, speedupOverBaseline: baseline ? +(r.tokensPerSecond / t.tokensPerSecond).toFixed(2) : null });
}
const out = {
  ...resultHeader('CUDA decode against the memory roofline, LLaMA-2-7B shape, synthetic tq2_g128 weights, 8-bit act sites', 'NVIDIA H100 80GB HBM3'),
  source: dir,
  measuredCommit: arg('measured', 'unknown'),
  copyGBps,
  note: `Bytes a token: every tensor but the embedding table (one row of it) = ${(stepBytes / 1e9).toFixed(3)} GB, plus the fp16 KV cache up to the context; the roofline is those bytes at ${copyGBps} GB/s. ${summary.some((r) => r.baseline) ? 'The baseline is torch fp16 decode (scripts/device/torch_decode.py) in the same device run.' : 'No baseline ran in this device run (baseline null); torch fp16 figures are in cuda-h100-decode-e2e.json, from other runs.'}`,
  summary,
};
writeFileSync('bench/results/decode-roofline.json', JSON.stringify(out, null, 1) + '\n');
console.log(JSON.stringify(summary, null, 1));
