// Assembles bench/results/cuda-h100-decode-e2e.json from the outputs of the device runs, so the
// committed numbers are exactly what the device printed (the raw logs are copied to
// bench/archive/cuda-h100-logs/<date>-<commit>/). Earlier runs kept in the file's `runs`
// (keyed <date>-<commit>) stay. Usage:
//   npx tsx bench/cuda-h100.ts --gemv DIR_WITH_gemv.json_gpu.csv --e2e E2E_LOG
//        [--full-ppl E2E_LOG_WITH_FULL_PPL] [--ort FILE=JSON ...]
// where the device runs are
//   bash scripts/device/run-gemv.sh                       (carry .device/cuda)
//   [SKIP_FULL_PPL=1] bash scripts/device/run-e2e.sh      (carry .device/e2e)
// and --ort names ONNX Runtime CPU perplexities of the same artifacts (`twlac eval --json`):
//   --ort fixture200=F --ort fixture-all=F --ort fixture-tq2-200=F --ort fixture-tq2-all=F
import { copyFileSync, existsSync, mkdirSync, readFileSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { e2eSection, ortResults } from '../scripts/device/e2e-log.ts';
import { logsDir, resultsPath } from '../scripts/device/results-path.ts';
import { resultHeader } from './result-header.ts';

const arg = (k: string) => (process.argv.includes(k) ? process.argv[process.argv.indexOf(k) + 1] : undefined);
const args = (k: string) => process.argv.flatMap((a, i) => (a === k ? [process.argv[i + 1]] : []));
const gemvDir = arg('--gemv');
const e2ePath = arg('--e2e');
if (!gemvDir || !e2ePath) throw new Error('usage: npx tsx bench/cuda-h100.ts --gemv DIR --e2e E2E_LOG [--full-ppl LOG] [--ort name=FILE ...]');
const gemv = JSON.parse(readFileSync(join(gemvDir, 'gemv.json'), 'utf8'));
const gpuCsv = [gemvDir, arg('--checks')].filter((d): d is string => !!d).map((d) => join(d, 'gpu.csv')).find((f) => existsSync(f));
const gpu = gpuCsv ? readFileSync(gpuCsv, 'utf8').trim().split('\n') : undefined;
// Several e2e logs may be given (--e2e A --e2e B): a later log's sections replace an earlier's.
const e2ePaths = args('--e2e');
const e2eLogs = e2ePaths.map((f) => readFileSync(f, 'utf8'));
const e2eLog = e2eLogs.join('\n');
const fullLog = arg('--full-ppl') ? readFileSync(arg('--full-ppl')!, 'utf8') : e2eLog;
// A later checks-only run (CHECKS_ONLY=1) may replace the checks of the timing run.
const checksRun = arg('--checks') ? JSON.parse(readFileSync(join(arg('--checks')!, 'gemv.json'), 'utf8')) : gemv;
const ort = ortResults(args('--ort'));
const section = e2eSection;
const lines = (log: string, re: RegExp) => log.split('\n').filter((l) => re.test(l));
/** Matching lines, the last one per model (the text before the first colon). */
const lastPerModel = (log: string, re: RegExp) => [...new Map(lines(log, re).map((l) => [l.split(':')[0], l])).values()];
const pct = (g: Record<string, number>) => {
  const { usWithPdl, ...rest } = g;
  const pdl = usWithPdl > 0 ? { usWithPdl, speedupWithPdl: +(g.cublasFp16Us / usWithPdl).toFixed(3) } : {};
  return { ...rest, pctOfCopy: +((100 * g.GBs) / gemv.copyGBs).toFixed(1), ...pdl };
};

// Streaming kernels: the default plan per shape (name without a tuning suffix) and the sweep.
const isSweep = (g: { kernel: string }) => /_r\d+w\d+k\d+u\d+$/.test(g.kernel);
const a16 = gemv.gemv.filter(Boolean).map(pct);
const a8 = gemv.gemvA8.filter(Boolean).map(pct);

const models = ['llama7b-tq1', 'llama7b-tq2', 'llama7b-tq2-a8', 'llama7b-tq1-a4'].filter((m) => e2eLog.includes(`== ${m} decode`));
const decode = Object.fromEntries(
  models.flatMap((m) => [
    [`${m}@2048`, section(e2eLog, `${m} decode @2048`)],
    [`${m}@64`, section(e2eLog, `${m} decode @64`)],
    [`${m}@2048 without PDL`, section(e2eLog, `${m} decode @2048 without programmatic dependent launch`)],
  ]),
);
const profiles = Object.fromEntries(models.map((m) => [m, section(e2eLog, `${m} profile of one step @2048 (events after every op, no graph)`)]));
// Ratios to torch only from the log that holds the torch run (same device run).
const torchLog = [...e2eLogs].reverse().find((l) => l.includes('== torch fp16 baseline\n')) ?? '';
const torch = section(torchLog, 'torch fp16 baseline') as { tokensPerSecond: number } | undefined;
const sameRunTps = (m: string) => (section(torchLog, `${m} decode @2048`) as { tokensPerSecond: number } | undefined)?.tokensPerSecond;

const prefillPath = resultsPath(gemv.device, 'prefill-gemm');
const outPath = resultsPath(gemv.device, 'decode-e2e');
const header = resultHeader('decode GEMV and decode end to end (7B shape), fixture logits and perplexity', gemv.device, 'bash scripts/device/run-gemv.sh; bash scripts/device/run-e2e.sh; npx tsx bench/cuda-h100.ts …');
const result = {
  ...header,
  nvidiaSmi: gpu,
  copyGBs: gemv.copyGBs,
  emptyKernelUs: gemv.emptyKernelUs,
  commands: {
    prepare: [
      'npx tsx scripts/device/gen-gemv-bench.ts',
      'node bin/twlac.js ../shared/models/pydocs-llama-12m/model.onnx -o /tmp/cuda-fixture --weights rtn-ternary',
      'node bin/twlac.js ../shared/models/pydocs-llama-12m/model.onnx -o /tmp/fx-tq2 --calib ../shared/data/pydocs/train.txt --format tq2_g128 --acts 16',
      'npx tsx scripts/device/gen-e2e.ts /tmp/cuda-fixture   (also picks up /tmp/fx-tq2)',
    ],
    device: ['bash scripts/device/run-gemv.sh   (carry .device/cuda)', '[SKIP_FULL_PPL=1] bash scripts/device/run-e2e.sh   (carry .device/e2e; builds with make, runs checks, perplexity, 7B decode, profile, torch baseline)'],
    ortPerplexity: 'node bin/twlac.js eval DIR/model.onnx --text ../shared/data/pydocs/dev.txt [--max-windows 200] --json',
    assemble: 'npx tsx bench/cuda-h100.ts --gemv <gemv run out> --e2e <e2e.log> --full-ppl <e2e.log with full ppl> --ort name=file ...',
  },
  gemvChecks: checksRun.checks.filter(Boolean),
  gemvA8Checks: checksRun.a8Checks.filter(Boolean),
  gemvNote:
    'M=1. CUDA graphs of back-to-back launches over rotating buffers (≥ 400 MB, no L2 reuse), median of 15 replays, programmatic dependent launch off (TWLAC_PDL=0: no overlap between launches; the streaming kernels of the runtime are also timed with it on, usWithPdl, as inside the model, where each launch overlaps the tail of the previous one); emptyKernelUs = the launch of an empty kernel in the same kind of graph; cuBLAS = cublasGemmEx fp16 in/out, fp32 compute, same shape, measured once per shape in the same run. GB/s counts codes+scales+shifts+x+y; %copy is against the measured device-to-device copy (read + write). gemv_s*/gemv_sa8* = streaming kernels (src/codegen/cuda/kernels/gemv-stream.ts, the runtime\'s decode path, default plan); gemv_tq*/gemv_a8_* = the staged kernels (still used for M = 16 prefill chunks).',
  gemv: a16.filter((g: { kernel: string }) => !isSweep(g)),
  gemvA8: a8.filter((g: { kernel: string }) => !isSweep(g)),
  gemvSweep: {
    note: 'Streaming-kernel tunings rows (r) × warps (w) × K-split warps (k) × chunks in flight (u), same run; the defaults (STREAM_DEFAULTS) come from this table and the one before it.',
    f16: a16.filter(isSweep).map((g: Record<string, number | string>) => ({ kernel: g.kernel, us: g.us, speedup: g.speedup, GBs: g.GBs })),
    u8: a8.filter(isSweep).map((g: Record<string, number | string>) => ({ kernel: g.kernel, us: g.us, speedup: g.speedup, GBs: g.GBs })),
  },
  endToEnd: {
    logitsVsFloat64Reference: lastPerModel(e2eLog, /: logits max\|d\|/),
    greedy: lastPerModel(e2eLog, /: greedy (identical|DIFFERS)/),
    perplexity: {
      fixtureRtnTq1: { cuda200: section(e2eLog, 'fixture ppl 200 windows'), ort200: ort.fixture200, cudaAll: section(fullLog, 'fixture ppl all'), ortAll: ort['fixture-all'] },
      fixtureTq2: { cuda200: section(e2eLog, 'fixture-tq2 ppl 200 windows'), ort200: ort['fixture-tq2-200'], cudaAll: section(fullLog, 'fixture-tq2 ppl all'), ortAll: ort['fixture-tq2-all'] },
    },
    note: 'reference = src/runtime/reference.ts (float64, the manifest semantics, weights through decodeTernary). fixture = rtn-ternary artifact of pydocs-llama-12m (tq1_g384_ns codes, transcoded to bit2 at load); fixture-tq2 = `twlac --format tq2_g128 --acts 16` compile of the fixture; rand12m = random tq1_g128 model of the fixture config with online Kronecker transforms at two sites; rand12m-tq2 = bit2 weights at A16; rand12m-a8 = bit2 weights with 8-bit activations at every site: its greedy text differs from the reference after 8 tokens as in every run, because rounding flips at 8 bits propagate in this random model (the reference itself moves by relL2 3.8e-2 under a 3e-4 relative perturbation of its activations); the int8 GEMVs alone match their float64 oracle to 1e-7 (gemvA8Checks). Perplexity runs go through prefill (16-token chunks: the tensor-core skinny GEMM) and the logits of every position. The second e2e log re-runs the tq1 fixture after a fix (24-byte code loads of the tensor-core kernel at G = 384 were misaligned in the first run).',
  },
  decode: {
    ...decode,
    torchFp16CudaGraphs: torch,
    speedupVsTorchSameRun: torch
      ? Object.fromEntries(models.filter((m) => sameRunTps(m)).map((m) => [m, { tokensPerSecond: sameRunTps(m), torchTokensPerSecond: torch.tokensPerSecond, ratio: +(sameRunTps(m)! / torch.tokensPerSecond).toFixed(2) }]))
      : undefined,
    profileOneStep: profiles,
    note: 'LLaMA-2-7B shape (32 layers, 4096 hidden, 11008 intermediate, 32 heads, vocab 32000), random ternary weights synthesised on the GPU (tq1 codes are transcoded to bit2 at load: deviceWeightsBytes), fp16 lm_head/embeddings, fp16 KV cache, 2048-token context (and 64), one decode step = one CUDA graph with programmatic dependent launch (and without, for comparison). llama7b-tq2-a8 has 8-bit activation sites (int8 GEMVs); llama7b-tq1-a4 is the default twlac format (tq1_g128, transcoded) with 4-bit sites (codes < 16 on the same int8 GEMVs). torch: HF LlamaForCausalLM fp16, StaticCache, torch.compile(mode="reduce-overhead"); speedupVsTorchSameRun uses the decode figures of the device run that also ran torch (the decode entries above are the latest run; the tq1 models were re-run after the staging change that stopped keeping their trit5 codes on the GPU: 5.4 → 4.1 GB); torch measured 119–141 tok/s across these runs. profileOneStep: one step without a graph, an event after every op (each op carries ~3–4 µs of launch overhead there), ms summed over the layers.',
  },
  prefill: existsSync(prefillPath) ? `see ${prefillPath}` : 'not measured in this run',
  notMeasured: [
    'no packed-int4 activation kernel: sites below 8 bits (A4, A6) use the int8 path with codes < 2^bits',
    'onnxruntime MatMulNBits CUDA (onnxruntime-gpu is not in the device image)',
  ],
};
const previousRuns = existsSync(outPath) ? JSON.parse(readFileSync(outPath, 'utf8')).runs : undefined;
writeFileSync(outPath, JSON.stringify({ ...result, runs: previousRuns }, null, 1) + '\n');
const logs = logsDir(gemv.device, header);
mkdirSync(logs, { recursive: true });
copyFileSync(join(gemvDir, 'gemv.log'), join(logs, 'gemv.txt'));
e2ePaths.forEach((f, i) => copyFileSync(f, join(logs, i ? `e2e-${i + 1}.txt` : 'e2e.txt')));
if (arg('--checks')) copyFileSync(join(arg('--checks')!, 'gemv.log'), join(logs, 'gemv-checks.txt'));
if (arg('--full-ppl')) copyFileSync(arg('--full-ppl')!, join(logs, 'e2e-full-ppl.txt'));
console.log(`wrote ${outPath} and`, logs);
