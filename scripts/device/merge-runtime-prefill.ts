// Writes the runtime prefill run (scripts/device/run-e2e.sh's e2e.log, with the 16-token
// comparison runs) to bench/results/cuda-<card>-prefill-e2e.json (or --out FILE) and copies
// the logs to bench/archive/cuda-<card>-logs/<date>-<commit>/.
// Usage: npx tsx scripts/device/merge-runtime-prefill.ts <e2e.log> [--e2e LATER.log ...] [--ort name=FILE ...] [--out FILE]
// (a later log's sections replace an earlier one's; each log is copied as e2e-prefill[-N].txt)
import { copyFileSync, mkdirSync, readFileSync, writeFileSync } from 'node:fs';
import { e2eSection, ortResults } from './e2e-log.ts';
import { logsDir, resultsPath } from './results-path.ts';
import { resultHeader } from '../../bench/result-header.ts';

const argv = process.argv.slice(2);
const logPath = argv[0];
if (!logPath) throw new Error('usage: merge-runtime-prefill.ts <e2e.log> [--e2e LATER.log ...] [--ort name=FILE ...]');
const opt = (flag: string) => argv.flatMap((a, i) => (a === flag ? [argv[i + 1]] : []));
const logPaths = [logPath, ...opt('--e2e')];
const log = logPaths.map((f) => readFileSync(f, 'utf8')).join('\n');
const ort = ortResults(opt('--ort'));
const section = (title: string) => e2eSection(log, title);
/** A section every run of the 7B models prints. */
const required = (title: string) => {
  const v = section(title);
  if (!v) throw new Error(`no '== ${title}' section with a JSON line in ${logPaths.join(', ')}`);
  return v;
};
// the 7B rows and torch come from the last log only, so that every ratio is from one run
const lastLog = readFileSync(logPaths[logPaths.length - 1], 'utf8');
const models = ['llama7b-tq1', 'llama7b-tq2', 'llama7b-tq2-a8', 'llama7b-tq1-a4', 'llama7b-tq2lat-a8', 'llama7b-tq1lat-a4'].filter((m) => lastLog.includes(`== ${m} decode`));
const torch = e2eSection(lastLog, 'torch fp16 baseline');
const prefill = models.map((m) => {
  const gemm = required(`${m} decode @2048`);
  const gemv = required(`${m} prefill in 16-token forwards (GEMV kernels), same run`);
  return {
    model: m,
    prefill2048Seconds: gemm.prefillSeconds,
    prefill2048SecondsIn16TokenForwards: gemv.prefillSeconds,
    speedup: +((gemv.prefillSeconds as number) / (gemm.prefillSeconds as number)).toFixed(3),
    decodeTokensPerSecond: gemm.tokensPerSecond,
    decodeVsTorchSameRun: torch ? +((gemm.tokensPerSecond as number) / (torch.tokensPerSecond as number)).toFixed(3) : null,
    prefillVsTorchSameRun: torch?.prefillSeconds ? +((torch.prefillSeconds as number) / (gemm.prefillSeconds as number)).toFixed(3) : null,
    gpuMemUsedBytes: gemm.gpuMemUsedBytes,
  };
});
const ppl = (d: string) => {
  const cuda = section(`${d} ppl 200 windows`);
  const cuda16 = section(`${d} ppl 200 windows in 16-token forwards`);
  const o = ort[`${d}-200`];
  const rel = (x: Record<string, number | string> | undefined) => (x && o ? +(((x.ppl as number) - o.ppl) / o.ppl).toExponential(2) : null);
  const all = section(`${d} ppl all`);
  const all16 = section(`${d} ppl all in 16-token forwards`);
  const oa = ort[`${d}-all`];
  const relAll = (x: Record<string, number | string> | undefined) => (x && oa ? +(((x.ppl as number) - oa.ppl) / oa.ppl).toExponential(2) : null);
  return {
    cuda200: cuda,
    cuda200In16TokenForwards: cuda16,
    ort200: o,
    relDiffVsOrt: rel(cuda),
    relDiffVsOrtIn16TokenForwards: rel(cuda16),
    ...(all ? { cudaAll: all, cudaAllIn16TokenForwards: all16, ortAll: oa, relDiffVsOrtAll: relAll(all), relDiffVsOrtAllIn16TokenForwards: relAll(all16) } : {}),
  };
};
const device = (log.match(/"device": "([^"]+)"/) ?? [])[1] ?? 'NVIDIA H100 80GB HBM3';
const header = resultHeader('prefill end to end (7B shape, 2048 tokens) against torch fp16', device, 'bash scripts/device/run-e2e.sh; npx tsx scripts/device/merge-runtime-prefill.ts <e2e.log> --ort …');
const out = {
  ...header,
  what: 'The CUDA runtime prefills up to 512 tokens a forward (TWLAC_MAX_CHUNK). Beyond 16 tokens, linears whose input is quantised to ≤ 8 bits run the int8 prefill GEMM (on sm_90a gemm-wgmma.ts, or for the lattice formats (_lat) the fold-free gemm-wgmma-rs.ts (weights in registers, 128-token tiles); fp32 output accumulated into the residual stream), fp16 sites the tensor-core skinny GEMM in 64-token slices (gemv-tc.ts), and attention runs the prefill kernel (from 2026-11-24: the tensor-core flash-attention forward of kernels/attn-prefill-tc.ts for head dims ≤ 128; before, 16 queries a block on CUDA cores, attnPrefillKernel in kernels/block.ts). A prefill that needs no logits computes the last token\'s only. TWLAC_PREFILL_CHUNK=16 restores 16-token forwards (GEMVs, tensor-core skinny GEMM, split attention) for the side-by-side comparison.',
  commands: {
    prepare: [
      'node bin/twlac.js compile ../shared/models/pydocs-llama-12m/model.onnx -o /tmp/fx-a8 --calib ../shared/data/pydocs/train.txt --format tq2_g128 --acts 8',
      'npx tsx scripts/device/gen-e2e.ts /tmp/cuda-fixture   (picks up /tmp/fx-tq2 and /tmp/fx-a8)',
      'node bin/twlac.js eval /tmp/fx-a8/model.onnx --text ../shared/data/pydocs/dev.txt --max-windows 200 --json   (ORT)',
    ],
    device: 'SKIP_FULL_PPL=1 DECODE_2048_ONLY=1 bash scripts/device/run-e2e.sh   (carry .device/e2e)',
    merge: 'npx tsx scripts/device/merge-runtime-prefill.ts <e2e.log> [--e2e <later e2e.log>] --ort fixture-a8-200=<ort json> --ort fixture-tq2-200=<ort json> [--ort fixture-a8-all=… --ort fixture-tq2-all=…]',
    fullPerplexity: 'all 2074 dev windows, on the GPU: for d in fixture-tq2 fixture-a8: twlac_cuda --weights DIR --ppl dev_ids.bin, then again with TWLAC_PREFILL_CHUNK=16 (log e2e-runtime-prefill-2.txt); ORT: node bin/twlac.js eval DIR/model.onnx --text ../shared/data/pydocs/dev.txt --json',
    logs: 'bench/archive/cuda-h100-logs/e2e-runtime-prefill*.txt (one file a run given; a later run replaces the sections it repeats)',
  },
  prefill7B: prefill,
  torchSameRun: torch,
  perplexity: Object.fromEntries(
    [['fixtureRtn', 'fixture'], ['fixtureA8', 'fixture-a8'], ['fixtureTq2', 'fixture-tq2'], ['fixtureLatA8', 'fixture-lat-a8']].filter(([, d]) => log.includes(`== ${d} ppl`)).map(([k, d]) => [k, ppl(d)]),
  ),
  logitsVsFloat64Reference: log.split('\n').filter((l) => /: logits max\|d\|/.test(l)),
  greedy: log.split('\n').filter((l) => /: greedy (identical|DIFFERS)/.test(l)),
  notes: [
    'Fourth run of 2026-11-24 (log e2e-runtime-prefill-lattice-4.txt): prefill attention on tensor cores (kernels/attn-prefill-tc.ts: flash-attention forward, mma.sync m16n8k16 fp16 with fp32 sums, 64 queries a block; the CUDA-core kernel was 41% of the 7B prefill under ncu). 7B prefill 2048 tokens: 0.132 → 0.073 s in the lattice format (torch fp16 0.069 s in the same run), 0.158 → 0.099 s at 4-bit sites, 0.526 → 0.468 s at fp16 activations. Accuracy: logits vs the float64 reference relL2 rand12m 8.1e-4, fixture (rtn) 3.5e-4, fixture-lat-a8 9.9e-3, all greedy-identical; fixture-lat-a8 perplexity over all windows 40.9544 as before; fixture (rtn) 227.7157 vs ORT 227.7107.',
    'Third run of 2026-11-24 (log e2e-runtime-prefill-lattice-3.txt): the activation kernels take a token\'s whole vector in one block from 128 tokens on (kernels/block.ts ACT_UNSLICED_T) instead of 6 slices that each re-read the vector for its statistics; ncu of the 7B prefill before it: attention 41%, the lattice GEMM 28.5%, the SwiGLU activation kernel 16%. Prefill 0.184 → 0.158 s at 8-bit sites, 0.159 → 0.132 s in the lattice formats, results bit-identical (perplexities unchanged).',
    'fixture-lat-a8 = the same compile with --format tq2_g128_lat: each row\'s scales and shifts rounded to its int8 lattice after the fit (formats/ternary.ts), so the prefill GEMM needs no per-group fold (gemm-wgmma-rs.ts).',
    'fixture-a8 = `twlac --format tq2_g128 --acts 8` compile of pydocs-llama-12m: every site quantised to 8 bits, so each 128-token forward of --ppl runs the prefill GEMM. Its logits differ from the float64 reference by relL2 ~1e-2 (argmax agreement 0.9 over 40 positions) because 8-bit rounding flips propagate, as with rand12m-a8; perplexity agrees with onnxruntime on the same model to 1e-4 relative.',
    'torch prefill = eager fp16 forward of the 2048 tokens (cuBLAS GEMMs, SDPA attention), logits of the last token only; prefillVsTorchSameRun > 1 means twlac is faster.',
  ],
};
writeFileSync(opt('--out')[0] ?? resultsPath(device, 'prefill-e2e'), JSON.stringify(out, null, 1) + '\n');
const logs = logsDir(device, header);
mkdirSync(logs, { recursive: true });
logPaths.forEach((f, i) => copyFileSync(f, `${logs}/e2e-prefill${i ? `-${i + 1}` : ''}.txt`));
console.log(prefill.map((p) => `${p.model}: prefill 2048 ${p.prefill2048Seconds} s vs ${p.prefill2048SecondsIn16TokenForwards} s (${p.speedup}x), decode ${p.decodeTokensPerSecond} tok/s`).join('\n'));
