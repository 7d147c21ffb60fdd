// Merge a scripts/device/webgpu-vs-cuda.sh run into bench/results: wgsl-decode.json (the WebGPU
// decode as the device wrote it, with the CUDA runs of the same device run beside it) and the
// `e2e` array of wgsl-h100.json ({context, tokensPerSecond, cudaTokensPerSecond,
// dispatchesPerToken}: the runtime's default configuration at each context where the run has it,
// else the fastest variant). Optionally --gemv FILE
// replaces wgsl-h100.json's GEMV part with that run's (a wgsl-h100.sh output).
//   npx tsx scripts/device/merge-webgpu-cuda.ts DIR [--gemv DIR2/wgsl-h100.json]
import { existsSync, readFileSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';

const dir = process.argv[2];
if (!dir) throw new Error('usage: npx tsx scripts/device/merge-webgpu-cuda.ts DIR [--gemv FILE]');
const gi = process.argv.indexOf('--gemv');
const read = (f: string) => JSON.parse(readFileSync(f, 'utf8'));
const decode = read(join(dir, 'wgsl-decode.json'));
const cuda: { context: number; tokensPerSecond: number; msPerToken: number }[] = [];
for (const c of [512, 2048]) {
  const f = join(dir, `cuda-decode-${c}.json`);
  if (existsSync(f)) cuda.push(read(f));
}
decode.cuda = { note: 'the generated CUDA host program on the same shape and format (llama7b-tq2-a8: tq2_g128, 8-bit act sites, --random 1 weights), same device run (scripts/device/webgpu-vs-cuda.sh)', runs: cuda };
writeFileSync('bench/results/wgsl-decode.json', JSON.stringify(decode, null, 1) + '\n');

const out = read('bench/results/wgsl-h100.json');
if (gi > 0) {
  const g = read(process.argv[gi + 1]);
  for (const k of Object.keys(g)) out[k] = g[k];
}
const summary: { gemv: string; group?: boolean; prologue?: boolean; kv?: string; ropeInAttention?: boolean; prologueShape?: string; loop?: string; context: number; tokensPerSecond: number; dispatchesPerToken: number; gpuMsPerToken?: number }[] = decode.summary;
// The runtime's defaults (stacked, prologues, fp16 KV, RoPE in the decode attention, the plan's
// prologue shapes, greedy on the device) where the run measured them: the configuration a user
// gets, rather than the fastest of several noisy ones; else the fastest.
const isDefault = (s: (typeof summary)[number]) => s.gemv === 'rows-a8' && s.group !== false && s.prologue !== false && (s.kv ?? 'f16') === 'f16' && s.ropeInAttention !== false && (s.prologueShape ?? 'plan') === 'plan' && s.loop === 'device';
out.e2e = [...new Set(summary.map((s) => s.context))].map((context) => {
  const here = summary.filter((s) => s.context === context);
  const best = here.find(isDefault) ?? here.sort((a, b) => b.tokensPerSecond - a.tokensPerSecond)[0];
  const c = cuda.find((r) => r.context === context);
  return {
    context,
    gemv: best.gemv,
    stacked: best.group ?? false,
    ...(best.prologue === undefined ? {} : { prologue: best.prologue }),
    ...(best.kv === undefined ? {} : { kv: best.kv }),
    ...(best.ropeInAttention === undefined ? {} : { ropeInAttention: best.ropeInAttention }),
    ...(best.prologueShape === undefined ? {} : { prologueShape: best.prologueShape }),
    loop: best.loop ?? "host",
    tokensPerSecond: best.tokensPerSecond,
    cudaTokensPerSecond: c?.tokensPerSecond ?? null,
    ratioToCuda: c ? +(best.tokensPerSecond / c.tokensPerSecond).toFixed(3) : null,
    dispatchesPerToken: best.dispatchesPerToken,
    gpuMsPerToken: best.gpuMsPerToken ?? null,
  };
});
out.e2eNote = `WebGPU decode of the 7B-shaped synthetic tq2_g128 model with 8-bit act sites (bench/results/wgsl-decode.json, ${decode.date}, ${decode.commit}) and the CUDA host program on the same shape in the same device run (scripts/device/webgpu-vs-cuda.sh). gpuMsPerToken: the sum of every dispatch's GPU time, each timed in a pass of its own (WebgpuModel.profileStep).`;
writeFileSync('bench/results/wgsl-h100.json', JSON.stringify(out, null, 1) + '\n');
console.log(JSON.stringify(out.e2e, null, 1));
