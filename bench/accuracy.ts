// Accuracy benchmark: dev perplexity against honest bits per weight, for twlac's structures,
// formats and ablations, with the RTN baseline and the source model measured in the same run.
//   npm run bench:accuracy -- [--windows N] [--only name,name] [--samples 128] [--keep DIR] [--out FILE] [--render-only]
// Every figure follows ../shared/EVAL.md (dev.txt, 256-token windows); calibration draws
// from train.txt only. Results are merged into bench/results/accuracy.json by config name,
// so a partial run keeps what it finished.
import { existsSync, mkdirSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join, resolve } from 'node:path';
import { compileToDir, type CompileOptions } from '../src/compile.ts';
import { calibrationSegmentsFromText } from '../src/calib/data.ts';
import { evaluatePerplexity } from '../src/eval/perplexity.ts';
import { cpuDevice, resultHeader } from './result-header.ts';
import { loadTokenizer, tokenizeFile } from '../src/eval/tokenizer.ts';
import { makeProgress } from '../src/cli/progress.ts';
import { DEFAULT_REFINE } from '../src/passes/refine.ts';

const root = resolve(import.meta.dirname, '..');
const shared = resolve(root, '../shared');
const model = join(shared, 'models/pydocs-llama-12m/model.onnx');
const arg = (name: string, dflt?: string) => {
  const i = process.argv.indexOf(`--${name}`);
  return i >= 0 ? process.argv[i + 1] : dflt;
};
const windows = arg('windows') ? Number(arg('windows')) : undefined;
const samples = Number(arg('samples', '128'));
const only = arg('only')?.split(',');
/** Keep the compiled output directories here (for later full-dev evaluations). */
const keep = arg('keep');

interface Config {
  name: string;
  what: string;
  opts?: Partial<CompileOptions>;
}

const A16 = { acts: { kind: 'none' } } as const;
/** The kernel-g128-* rows (and their ablations) are tq1_g128 without the lattice, as measured
 *  before tq1_g128_lat became the default (2026-12-05); kernel-lat-g128-* are the default's. */
const G128 = { format: 'tq1_g128' } as const;
const MP4 = { acts: { kind: 'mp', budget: 4 } } as const;
/** The refinement's settings, chosen on a split of train.txt (bench/refine-select.ts, bench/results/refine-select.json). */
const REFINE = { refine: { ...DEFAULT_REFINE } };
const CONFIGS: Config[] = [
  { name: 'fp32', what: 'source model, no quantisation' },
  { name: 'rtn-ternary', what: 'per-row absmean RTN ternary (BitNet style), A16', opts: { weights: 'rtn-ternary', ...A16 } },
  { name: 'kernel-g128-A16', what: 'twla kernel structure tq1_g128, A16', opts: { ...G128, ...A16 } },
  { name: 'kernel-g128-A4mp', what: 'twla kernel structure tq1_g128, ILA-AMP mean 4 bits', opts: { ...G128, ...MP4 } },
  { name: 'twla-A16', what: 'reference structure (salient order-2 + magnitude groups), A16', opts: { structure: 'twla', ...A16 } },
  { name: 'twla-A4mp', what: 'reference structure, ILA-AMP mean 4 bits', opts: { structure: 'twla', ...MP4 } },
  { name: 'twla-A16-noorder2', what: 'ablation: reference structure without order-2 salient columns', opts: { structure: 'twla', order2Cols: 0, ...A16 } },
  { name: 'kernel-g128-A16-norotate', what: 'ablation: no KOTMS rotation', opts: { ...G128, rotate: false, ...A16 } },
  { name: 'kernel-g128-A4mp-norotate', what: 'ablation at A4: no KOTMS rotation, ILA-AMP mean 4 bits', opts: { ...G128, rotate: false, ...MP4 } },
  { name: 'kernel-g128-A16-nofuse', what: 'every rotation online, as the reference (no folding of the o_proj rotation into v_proj)', opts: { ...G128, fuse: false, ...A16 } },
  { name: 'kernel-g128-A16-nogptq', what: 'ablation: no GPTQ error feedback', opts: { ...G128, gptq: false, ...A16 } },
  { name: 'kernel-g128-A16-noxdomain', what: 'ablation: no X-domain stage', opts: { ...G128, xDomain: false, ...A16 } },
  { name: 'kernel-g128-A4uniform', what: 'ablation: no mixed precision (uniform 4-bit activations)', opts: { ...G128, acts: { kind: 'uniform', bits: 4 } } },
  { name: 'kernel-g64-ns-A16', what: 'tq1_g64_ns (scale only, group 64), A16', opts: { format: 'tq1_g64_ns', ...A16 } },
  { name: 'kernel-g256-A16', what: 'tq1_g256 (group 256), A16', opts: { format: 'tq1_g256', ...A16 } },
  { name: 'kernel-tq2-g128-A16', what: 'tq2_g128 (2-bit codes), A16', opts: { format: 'tq2_g128', ...A16 } },
  { name: 'kernel-lat-g128-A16', what: 'tq1_g128_lat (scales and shifts on a per-row lattice: the fold-free CUDA prefill GEMM), A16', opts: { format: 'tq1_g128_lat', ...A16 } },
  { name: 'kernel-lat-g128-A4mp', what: 'tq1_g128_lat, ILA-AMP mean 4 bits', opts: { format: 'tq1_g128_lat', ...MP4 } },
  { name: 'kernel-lat-g128-A16-refine', what: 'tq1_g128_lat + TernaryLLM refinement (--refine), A16', opts: { format: 'tq1_g128_lat', ...REFINE, ...A16 } },
  { name: 'kernel-lat-g128-A4mp-refine', what: 'tq1_g128_lat + TernaryLLM refinement (--refine), ILA-AMP mean 4 bits', opts: { format: 'tq1_g128_lat', ...REFINE, ...MP4 } },
  // --order2: placements of the extra bits measured on a train.txt split (bench/order2-select.ts).
  { name: 'kernel-lat-g128-A16-o2kv', what: 'tq1_g128_lat with k_proj and v_proj as order-2 linears (--order2 k,v), A16', opts: { format: 'tq1_g128_lat', order2: ['k', 'v'], ...A16 } },
  { name: 'kernel-lat-g128-A4mp-o2kv', what: 'tq1_g128_lat, --order2 k,v, ILA-AMP mean 4 bits', opts: { format: 'tq1_g128_lat', order2: ['k', 'v'], ...MP4 } },
  { name: 'kernel-lat-g128-A16-o2vo01', what: 'tq1_g128_lat with every v_proj and the o_proj of blocks 0 and 1 as order-2 linears (--order2 v,blocks.0.o,blocks.1.o), A16', opts: { format: 'tq1_g128_lat', order2: ['v', 'blocks.0.o', 'blocks.1.o'], ...A16 } },
  { name: 'kernel-lat-g128-A4mp-o2vo01', what: 'tq1_g128_lat, --order2 v,blocks.0.o,blocks.1.o, ILA-AMP mean 4 bits', opts: { format: 'tq1_g128_lat', order2: ['v', 'blocks.0.o', 'blocks.1.o'], ...MP4 } },
  { name: 'kernel-lat-g128-A16-o2vo01-refine', what: 'tq1_g128_lat, --order2 v,blocks.0.o,blocks.1.o --refine (both planes learnt), A16', opts: { format: 'tq1_g128_lat', order2: ['v', 'blocks.0.o', 'blocks.1.o'], ...REFINE, ...A16 } },
  { name: 'kernel-lat-g128-A4mp-o2vo01-refine', what: 'tq1_g128_lat, --order2 v,blocks.0.o,blocks.1.o --refine, ILA-AMP mean 4 bits', opts: { format: 'tq1_g128_lat', order2: ['v', 'blocks.0.o', 'blocks.1.o'], ...REFINE, ...MP4 } },
  { name: 'kernel-lat-g128-A16-o2vo01-refine-e2e384', what: 'the same + --refine-e2e-steps 384 (logit distillation end to end over 128 calibration pieces), A16', opts: { format: 'tq1_g128_lat', order2: ['v', 'blocks.0.o', 'blocks.1.o'], refine: { ...DEFAULT_REFINE, e2eSteps: 384 }, ...A16 } },
  { name: 'kernel-lat-g128-A4mp-o2vo01-refine-e2e384', what: 'the same + --refine-e2e-steps 384, ILA-AMP mean 4 bits', opts: { format: 'tq1_g128_lat', order2: ['v', 'blocks.0.o', 'blocks.1.o'], refine: { ...DEFAULT_REFINE, e2eSteps: 384 }, ...MP4 } },
  { name: 'kernel-g128-A16-refine', what: 'tq1_g128 (no lattice) + refinement, A16: the lattice snap measured against plain fp16', opts: { ...G128, ...REFINE, ...A16 } },
];

/** onnxruntime's own MatMulNBits quantizers (onnxruntime 1.30, Python), measured on this fixture as
 *  perplexity ratios to fp32 over the first 400 dev windows (issue 20). They are not re-run here:
 *  the quantizers are Python only. Plotted as ratio × the fp32 full-dev PPL; bits per weight are
 *  those of the MatMulNBits layout for a float32 model: b-bit codes + an fp32 scale and a packed
 *  b-bit zero point per group of g (b + 32/g + b/g). */
const ORT_QUANTIZERS = [
  { name: 'ORT RTN W4 g128', bits: 4 + 32 / 128 + 4 / 128, ratio: 1.03 },
  { name: 'ORT HQQ W4 g128', bits: 4 + 32 / 128 + 4 / 128, ratio: 1.02 },
  { name: 'ORT RTN W2 g128', bits: 2 + 32 / 128 + 2 / 128, ratio: 2.69 },
  { name: 'ORT HQQ W2 g128', bits: 2 + 32 / 128 + 2 / 128, ratio: 2.57 },
  { name: 'ORT HQQ W2 g64', bits: 2 + 32 / 64 + 2 / 64, ratio: 2.02 },
];
const FP32_FULL_DEV = 32.06;

const outFile = resolve(arg('out', join(root, 'bench/results/accuracy.json'))!);
const previous = existsSync(outFile) ? JSON.parse(readFileSync(outFile, 'utf8')) : {};
const results: Record<string, unknown> = previous.results ?? {};
/** Full-dev evaluations of kept outputs (`twlac eval DIR --text dev.txt --json`), recorded by hand into the JSON. */
const fullDev: Record<string, { bits: string; ppl: number; command: string }> = previous.fullDev ?? {};
const save = () =>
  writeFileSync(
    outFile,
    JSON.stringify(
      {
        ...resultHeader('fixture dev perplexity against bits per weight, per compile configuration', cpuDevice(), `npm run bench:accuracy -- ${process.argv.slice(2).join(' ')}`),
        protocol: '../shared/EVAL.md: dev.txt, 256-token windows; calibration from train.txt only',
        model: 'pydocs-llama-12m (fp32 torch export)',
        reference: { note: 'the reference implementation on the H100 (issue 4): ~4 honest bits/weight', 'W1.58A16': 36.0, 'W1.58A4-MP': 37.47, W4g128RTN: 32.76, W2g128RTN: 78.89 },
        results,
        fullDev,
      },
      null,
      1,
    ),
  );

/** Markdown tables of dev PPL against honest bits/weight, from the JSON results (docs/performance.md carries them). */
function renderCurve(): void {
  type R = { what: string; ppl: number; windows: number; bitsPerWeight: { weightsBin?: number; onnx?: number; counted?: number } };
  const rows = Object.entries(results as Record<string, R>).map(([name, r]) => ({
    name,
    what: r.what,
    ppl: r.ppl,
    windows: r.windows,
    bits: r.bitsPerWeight.counted ?? r.bitsPerWeight.weightsBin ?? 32,
    onnx: r.bitsPerWeight.onnx,
  }));
  const refs = [
    { name: 'reference TWLA W1.58A16 (H100 run, issue 4)', bits: 4, ppl: 36.0 },
    { name: 'reference TWLA W1.58A4-MP', bits: 4, ppl: 37.47 },
    { name: 'W4 g128 RTN (EVAL.md)', bits: 4.25, ppl: 32.76 },
    { name: 'W2 g128 RTN (EVAL.md)', bits: 2.25, ppl: 78.89 },
  ];
  const md = [
    '# Dev perplexity against honest bits per weight',
    '',
    'Fixture pydocs-llama-12m, EVAL.md protocol on dev.txt (windows as listed; the first N windows when N < 2074), calibration from train.txt only. Bits per weight: from the bytes of weights.bin (kernel and RTN structures), counted field by field for the reference structure (stored dense). Reference points are full-dev figures from EVAL.md and issue 4.',
    '',
    '| config | what | bits/weight | bits/weight in model.onnx | dev PPL | windows |',
    '|---|---|---|---|---|---|',
    ...rows.sort((a, b) => a.bits - b.bits).map((r) => `| ${r.name} | ${r.what} | ${r.bits.toFixed(3)} | ${r.onnx?.toFixed(3) ?? '-'} | ${r.ppl.toFixed(2)} | ${r.windows} |`),
    ...refs.map((r) => `| ${r.name} | published/measured elsewhere | ~${r.bits} | - | ${r.ppl} | 2074 |`),
    '',
    '## onnxruntime\'s own quantizers (external reference, not re-run here)',
    '',
    'onnxruntime 1.30 MatMulNBits quantizers on this fixture, as measured for issue 20: perplexity ratio to fp32 over the first 400 dev windows (its GPTQ path crashes on this model). They are Python only, so this benchmark does not re-run them; the plot places them at ratio × the fp32 full-dev PPL (32.06). Bits per weight: the MatMulNBits layout of a float32 model, b-bit codes + fp32 scale + packed b-bit zero point per group of g.',
    '',
    '| quantizer | bits/weight (layout) | ratio to fp32 (issue 20) | ratio × 32.06 |',
    '|---|---|---|---|',
    ...ORT_QUANTIZERS.map((q) => `| ${q.name} | ${q.bits.toFixed(3)} | ${q.ratio} | ${(q.ratio * FP32_FULL_DEV).toFixed(2)} |`),
    '',
    '![PPL vs bits](accuracy.svg)',
    '',
    ...(Object.keys(fullDev).length
      ? [
          '## Full dev set (all 2074 windows)',
          '',
          '| config | bits/weight | dev PPL | command |',
          '|---|---|---|---|',
          ...Object.entries(fullDev).map(([k, v]) => `| ${k} | ${v.bits} | ${v.ppl.toFixed(2)} | \`${v.command}\` |`),
          '',
        ]
      : []),
  ].join('\n');
  writeFileSync(join(root, 'bench/results/accuracy.md'), md);
  // Blue: first-N-window figures of this run; green: full-dev figures; red: reference points (full dev).
  const full = Object.entries(fullDev)
    .map(([name, v]) => ({ name: `${name} (full dev)`, bits: parseFloat(v.bits), ppl: v.ppl, color: '#2a2' }))
    .filter((p) => p.bits < 32);
  const pts = [
    ...rows.filter((r) => r.bits < 32).map((r) => ({ name: `${r.name} (${r.windows} w)`, bits: r.bits, ppl: r.ppl, color: '#36c' })),
    ...full,
    ...refs.map((r) => ({ ...r, color: '#c33' })),
    ...ORT_QUANTIZERS.map((q) => ({ name: `${q.name} (issue 20 ratio)`, bits: q.bits, ppl: q.ratio * FP32_FULL_DEV, color: '#e80' })),
  ];
  const W = 760, H = 480, x = (b: number) => 60 + ((b - 1.5) / 3.5) * (W - 90), y = (p: number) => H - 40 - ((Math.log(p) - Math.log(25)) / (Math.log(260) - Math.log(25))) * (H - 70);
  const svg = [
    `<svg xmlns="http://www.w3.org/2000/svg" width="${W}" height="${H}" font-family="sans-serif" font-size="10">`,
    `<rect width="${W}" height="${H}" fill="white"/>`,
    `<line x1="60" y1="${H - 40}" x2="${W - 20}" y2="${H - 40}" stroke="black"/><line x1="60" y1="20" x2="60" y2="${H - 40}" stroke="black"/>`,
    ...[1.5, 2, 2.5, 3, 3.5, 4, 4.5].map((b) => `<text x="${x(b)}" y="${H - 25}" text-anchor="middle">${b}</text>`),
    ...[30, 40, 60, 100, 200].map((p) => `<text x="55" y="${y(p) + 3}" text-anchor="end">${p}</text><line x1="60" x2="${W - 20}" y1="${y(p)}" y2="${y(p)}" stroke="#eee"/>`),
    `<text x="${W / 2}" y="${H - 8}" text-anchor="middle">honest bits per weight</text><text x="14" y="${H / 2}" transform="rotate(-90 14 ${H / 2})" text-anchor="middle">dev PPL (log)</text>`,
    ...pts.map((p) => `<circle cx="${x(p.bits)}" cy="${y(p.ppl)}" r="4" fill="${p.color}"/><text x="${x(p.bits) + 6}" y="${y(p.ppl) - 4}">${p.name}</text>`),
    `<text x="${W - 250}" y="30" fill="#36c">blue: first N dev windows (this run)</text><text x="${W - 250}" y="44" fill="#2a2">green: full dev set</text><text x="${W - 250}" y="58" fill="#c33">red: reference points (full dev)</text><text x="${W - 250}" y="72" fill="#e80">orange: onnxruntime quantizers (issue 20 ratios x fp32)</text>`,
    '</svg>',
  ].join('\n');
  writeFileSync(join(root, 'bench/results/accuracy.svg'), svg);
}

if (process.argv.includes('--render-only')) {
  renderCurve();
  process.exit(0);
}
const progress = makeProgress();
const tok = loadTokenizer(join(shared, 'models/pydocs-llama-12m/tokenizer.json'));
const devIds = tokenizeFile(tok, join(shared, 'data/pydocs/dev.txt'));
const calib = calibrationSegmentsFromText(readFileSync(join(shared, 'data/pydocs/train.txt'), 'utf8'), tok.encode, { samples, seq: 512, seed: 0 });
const work = keep ? resolve(keep) : join(tmpdir(), `twlac-acc-${process.pid}`);
mkdirSync(work, { recursive: true });
try {
  const chosen = only ? only.map((n) => CONFIGS.find((c) => c.name === n) ?? (() => { throw new Error(`unknown config ${n}`); })()) : CONFIGS;
  for (const c of chosen) {
    progress.log(`== ${c.name}: ${c.what}`);
    const t0 = performance.now();
    let path = model;
    let bits: Record<string, number | undefined> = { weightsBin: 32, onnx: 32 };
    let timings: unknown;
    if (c.opts) {
      const dir = join(work, c.name);
      // --force: a --keep folder holds this config's output from an earlier run.
      const r = await compileToDir(model, dir, { ...c.opts, calib: c.opts.weights === 'rtn-ternary' && c.opts.acts?.kind === 'none' ? undefined : calib }, progress, { force: true });
      path = join(dir, 'model.onnx');
      bits = { weightsBin: r.manifest.bitsPerWeight, onnx: r.manifest.onnx?.bitsPerWeight, counted: r.manifest.countedBitsPerWeight };
      timings = r.timings;
    }
    const compileSeconds = (performance.now() - t0) / 1000;
    progress.start('perplexity');
    const p = await evaluatePerplexity(path, devIds, { maxWindows: windows });
    progress.done(`ppl ${p.ppl.toFixed(3)}`);
    results[c.name] = { what: c.what, ppl: p.ppl, windows: p.windows, tokens: p.tokens, bitsPerWeight: bits, calibration: c.opts ? `${samples}x512` : null, compileSeconds, timings, date: new Date().toISOString() };
    save();
    renderCurve();
    progress.log(`${c.name}: ppl ${p.ppl.toFixed(3)} at ${bits.weightsBin?.toFixed(3)} bits/weight (weights.bin), compile ${compileSeconds.toFixed(0)} s`);
    if (!keep) rmSync(join(work, c.name), { recursive: true, force: true });
  }
} finally {
  if (!keep) rmSync(work, { recursive: true, force: true });
}
