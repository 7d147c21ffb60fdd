// The `twlac` command line: a thin layer over the library API (src/index.ts).
// Results go to stdout; progress and errors go to stderr. A UserError is printed as one
// line and exits 2; commander's own flag errors are one line too and exit 1.
import { Command, CommanderError, InvalidArgumentError, Option } from 'commander';
import { printable, UserError } from '../errors.ts';
import { ERRNO_WORDS } from '../util/files.ts';
import { BLOCK_LINEARS, TWLAC_VERSION } from '../artifact/build.ts';

/** An integer flag in [min, max]: every count a user gives is bounded before it sizes any work or memory. */
/** `--order2 v,blocks.0.o`: block linear roles or linear ids, each once. */
function parseLinears(spec: string): string[] {
  const names = spec.split(',').map((r) => r.trim());
  const role = new RegExp(`^(blocks\\.\\d+\\.)?(${BLOCK_LINEARS.join('|')})$`);
  for (const r of names) if (!role.test(r)) throw new InvalidArgumentError(`'${r}' is neither a block linear role (${BLOCK_LINEARS.join(', ')}) nor a linear id blocks.<i>.<role>`);
  return [...new Set(names)];
}

function intArg(name: string, min: number, max: number) {
  return (v: string) => {
    const n = /^\s*[+-]?\d+\s*$/.test(v) ? Number(v) : NaN;
    if (!Number.isSafeInteger(n) || n < min || n > max) throw new InvalidArgumentError(`${name} must be an integer from ${min} to ${max}`);
    return n;
  };
}

function floatArg(name: string, min: number) {
  return (v: string) => {
    const n = Number(v);
    if (v.trim() === '' || !Number.isFinite(n) || n < min) throw new InvalidArgumentError(`${name} must be a number >= ${min}`);
    return n;
  };
}

function buildProgram(): Command {
  const program = new Command('twlac')
    .description('Compile ONNX decoder-only LLMs to ternary weights and low-bit activations (TWLA), with CUDA and WGSL kernels.')
    .version(TWLAC_VERSION)
    .exitOverride()
    // Commander's own errors (bad flag values, unknown options) as one line, like UserErrors.
    .configureOutput({
      writeErr: (s) => process.stderr.write(s),
      outputError: (s, write) => write(`twlac: ${printable(s.trim().replace(/\s*\n\s*/g, ' '))} (see twlac --help)\n`),
    });

  program
    .command('compile', { isDefault: true })
    .description('quantize MODEL and write an ONNX model, kernels, manifest and report to -o DIR')
    .argument('<model>', 'ONNX model file (decoder-only transformer)')
    .requiredOption('-o, --out <dir>', 'output directory (written atomically)')
    .addOption(new Option('--weights <method>', 'weight quantization method').choices(['twla', 'rtn-ternary']).default('twla'))
    .addOption(new Option('--structure <s>', 'ternary structure for --weights twla: kernel (fast, <= 2 bits) or twla (the reference structure)').choices(['kernel', 'twla']).default('kernel'))
    .option('--format <id>', 'storage format for the kernel structure, e.g. tq1_g128 (trit5 codes, group 128, scale+shift); _ns: no shift; _lat: scales and shifts on a per-row lattice (same bytes; the fold-free CUDA prefill GEMM)', 'tq1_g128_lat')
    .option('--acts <spec>', 'activation precision: 16 | 8 | 4 | mp:4 | mp:6 (mixed precision, mean bits)', '16')
    .option('--calib <text>', 'calibration text file (required by --weights twla and mixed precision)')
    .option('--tokenizer <file>', 'tokenizer.json (default: beside the model)')
    .option('--calib-samples <n>', 'calibration segments', intArg('--calib-samples', 1, 4096), 128)
    .option('--seq <n>', 'calibration segment length in tokens', intArg('--seq', 8, 32768), 512)
    .option('--seed <n>', 'calibration sampling seed', intArg('--seed', 0, 2 ** 32 - 1), 0)
    .option('--no-rotate', 'ablation: skip the KOTMS rotation pass')
    .option('--no-fuse', 'keep every rotation online (do not fold the o_proj input rotation into v_proj)')
    .option('--no-gptq', 'ablation: no GPTQ error feedback')
    .option('--no-xdomain', 'ablation: no X-domain (manifold) refit stage')
    .option('--order2-cols <n>', 'largest number of order-2 salient columns searched per 128-column block (--structure twla; default 64, 0 = none)', intArg('--order2-cols', 0, 128))
    .option('--order2 <linears>', 'store these block linears with a second ternary plane on every column: roles or ids, comma-separated, e.g. k,v or v,blocks.0.o (+1.75 bits on those weights; CUDA refuses them)', parseLinears)
    .option('--target <targets...>', 'targets: cuda[:sm_90a,sm_80,...], wgsl (kernels) and/or tfjs (a TF.js GraphModel in out/tfjs/)')
    .option('--eval <text>', 'held-out text (never the calibration text): perplexity of the source, an RTN-ternary compile and this compile, in report.md and report.html')
    .option('--eval-windows <n>', 'with --eval: evaluate only the first N 256-token windows', intArg('--eval-windows', 1, 10_000_000))
    .option('--timings', 'record seconds per pass in the manifest and reports (out/ then differs from run to run; without it the same inputs give the same bytes)')
    .option('--force', 'replace an earlier twlac output at -o (recognised by its manifest.json; nothing else is ever deleted)')
    .option('--resume', 'continue an interrupted compile to -o from its checkpoint <out>.twlac-resume/ (kept until the compile succeeds): what it finished (rotations, ternary and refined blocks, end-to-end refinement steps, the activation precision) is not computed again, and out/ is what an uninterrupted compile writes')
    .option('--threads <n>', 'worker threads fitting a block\'s linears and KOTMS sites on the CPU (default: one per core; the output does not depend on it)', intArg('--threads', 1, 256))
    .addOption(new Option('--device <d>', 'where Gram matrices (and, with --threads 1, GPTQ column updates) run: auto (a real GPU adapter if present, else cpu), gpu (WebGPU, even a software adapter), cpu').choices(['auto', 'gpu', 'cpu']).default('auto'))
    .option('--refine', 'TernaryLLM refinement after PTQ: learnable per-group scales and shifts distilled block by block against the fp model (cosine loss, calibration data)')
    .option('--refine-steps <n>', 'refinement Adam steps per block', intArg('--refine-steps', 1, 100_000))
    .option('--refine-e2e-steps <n>', 'refinement: end-to-end steps after the block-wise ones (default 0; up to 384 measured on the fixture)', intArg('--refine-e2e-steps', 0, 100_000))
    .option('--refine-e2e-lr <x>', 'refinement: the end-to-end stage\'s Adam step size, in units of each linear\'s mean group scale (default 1e-3)', floatArg('--refine-e2e-lr', 0))
    .option('--refine-e2e-pieces <n>', 'refinement: 128-token calibration pieces the end-to-end stage cycles through (default 128)', intArg('--refine-e2e-pieces', 1, 1_000_000))
    .addOption(new Option('--refine-e2e-loss <loss>', 'refinement: the end-to-end stage matches the fp model\'s next-token distribution (KL through the head; the default) or its final hidden state (1 − cos)').choices(['hidden', 'logits']))
    .addOption(new Option('--refine-e2e-schedule <s>', 'refinement: the end-to-end stage\'s step size, constant or decayed to 0 along a cosine (default constant)').choices(['constant', 'cosine']))
    .addOption(new Option('--refine-order2-plane <mode>', 'refinement of --order2 linears: learn the second plane\'s scales too, or keep its PTQ fit').choices(['learn', 'fixed']))
    .addOption(new Option('--refine-trits <mode>', 'refinement trits: keep the PTQ trits, or re-decide them by straight-through rounding').choices(['keep', 'ste']))
    .option('-q, --quiet', 'no progress output')
    .action(async (model: string, opts) => {
      const { compileCommand } = await import('./compile-command.ts');
      await compileCommand(model, opts);
    });

  program
    .command('inspect')
    .description('print the transformer structure twlac recognises in MODEL')
    .argument('<model>', 'ONNX model file')
    .option('--json', 'print JSON instead of a table')
    .action(async (model: string, opts: { json?: boolean }) => {
      const { inspectCommand } = await import('./commands.ts');
      await inspectCommand(model, opts);
    });

  program
    .command('eval')
    .description('perplexity of MODEL on a text file (EVAL.md protocol: 256-token windows)')
    .argument('<model>', 'ONNX model file, or a twlac output directory')
    .requiredOption('--text <file>', 'evaluation text')
    .addOption(new Option('--backend <b>', 'ort: onnxruntime on model.onnx; cuda: the generated CUDA program (built with make if needed; needs an NVIDIA GPU)').choices(['ort', 'cuda']).default('ort'))
    .option('--tokenizer <file>', 'tokenizer.json (default: beside the model)')
    .option('--max-windows <n>', 'evaluate only the first N windows', intArg('--max-windows', 1, 10_000_000))
    .option('--batch <n>', 'windows per onnxruntime call', intArg('--batch', 1, 256), 4)
    .option('--json', 'print one JSON line {"ppl","tokens","windows"}')
    .option('-q, --quiet', 'no progress output')
    .action(async (model: string, opts) => {
      const { evalCommand } = await import('./commands.ts');
      await evalCommand(model, opts);
    });

  program
    .command('run')
    .description('generate text from a twlac output directory (or any source model); prints only the generated text')
    .argument('<model>', 'twlac output directory or ONNX model file')
    .addOption(new Option('--backend <b>', 'ort: onnxruntime; webgpu: Dawn; cuda: the generated CUDA program (built with make if needed; needs an NVIDIA GPU, greedy only)').choices(['ort', 'webgpu', 'cuda']).default('ort'))
    .requiredOption('--prompt <text>', 'prompt text')
    .option('--max-tokens <n>', 'tokens to generate', intArg('--max-tokens', 1, 65536), 32)
    .option('--greedy', 'greedy decoding: the default, the same as --temperature 0')
    .option('--temperature <t>', 'sample from softmax(logits / t); 0 = greedy', floatArg('--temperature', 0), 0)
    .option('--top-k <k>', 'sample among the k most likely tokens', intArg('--top-k', 1, 1_000_000))
    .option('--top-p <p>', 'sample among the most likely tokens whose probabilities reach p (0 < p <= 1)', floatArg('--top-p', 0))
    .option('--seed <n>', 'sampling seed (the same seed gives the same text)', intArg('--seed', 0, 2 ** 32 - 1), 0)
    .option('--tokenizer <file>', 'tokenizer.json (default: beside the model)')
    .action(async (model: string, opts) => {
      const { runCommand } = await import('./commands.ts');
      await runCommand(model, opts);
    });

  program
    .command('kernels')
    .description('generate standalone ternary linear kernels for N×K shapes, with check cases, a harness and manifest.json (no model)')
    .requiredOption('--target <target>', 'cuda:<arch> (one of sm_80, sm_86, sm_89, sm_90a, sm_100, sm_120) or wgsl')
    .option('--format <id>', 'ternary storage format, e.g. tq2_g128 or tq1_g128_lat', 'tq2_g128')
    .requiredOption('--shapes <list>', 'NxK shapes (out x in features), comma-separated, e.g. 4096x4096,11008x4096')
    .requiredOption('-o, --out <dir>', 'output directory (written atomically)')
    .action(async (opts: { target: string; format: string; shapes: string; out: string }) => {
      const { emitKernelPack, parseShapes } = await import('../codegen/kernel-pack.ts');
      const m = await emitKernelPack({ target: opts.target, format: opts.format, shapes: parseShapes(opts.shapes) }, opts.out);
      process.stderr.write(`wrote ${opts.out}: ${m.kernels.length} kernels, check cases and a harness (${m.harness.build ? `${m.harness.build}, then ` : ''}${m.harness.run})\n`);
    });

  program
    .command('demo')
    .description('compile the small trained model shipped in demo/model/ and compare it with the source (no other files needed)')
    .option('-o, --out <dir>', 'output directory', 'twlac-demo')
    .option('--force', 'replace an earlier demo output at -o')
    .option('-q, --quiet', 'no progress output')
    .action(async (opts: { out: string; quiet?: boolean; force?: boolean }) => {
      const { demoCommand } = await import('./commands.ts');
      await demoCommand(opts);
    });

  return program;
}

/** Exit codes (docs/errors.md): 1 usage, 2 refused input, 70 internal error, 74 the file system refused. */
export const EXIT = { usage: 1, input: 2, internal: 70, io: 74 } as const;

/** Run the CLI; returns the exit code. */
export async function main(argv: string[]): Promise<number> {
  const program = buildProgram();
  // Bare `twlac`: the help, not the default command's missing-argument error.
  if (argv.length <= 2) {
    process.stdout.write(program.helpInformation());
    return 0;
  }
  const fail = (line: string) => process.stderr.write(`twlac: ${printable(line)}\n`);
  try {
    await program.parseAsync(argv);
    return 0;
  } catch (e) {
    if (e instanceof CommanderError) return e.exitCode === 0 ? 0 : e.exitCode || EXIT.usage;
    if (e instanceof UserError) {
      fail(`error: ${e.message}`);
      return e.exitCode;
    }
    // The file system said no (permissions, a full disk, a path that is not a folder): the
    // environment's doing, not a bug, so one line without a stack.
    const err = e as NodeJS.ErrnoException;
    if (typeof err.code === 'string' && err.code in ERRNO_WORDS) {
      fail(`error: ${err.path ? `${err.path}: ` : ''}${ERRNO_WORDS[err.code]} (${err.syscall ?? 'file system'})`);
      return EXIT.io;
    }
    fail(`internal error: ${err.message}`);
    if (process.env.TWLAC_DEBUG) process.stderr.write(`${err.stack}\n`);
    return EXIT.internal;
  }
}
