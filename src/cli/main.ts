// The `twlac` command line: a thin layer over the library API (src/index.ts).
// Results go to stdout; progress and errors go to stderr. A UserError is printed as one
// line and exits 2; commander's own flag errors are one line too and exit 1.
import { Command, CommanderError, InvalidArgumentError, Option } from 'commander';
import { UserError } from '../errors.ts';
import { TWLAC_VERSION } from '../artifact/build.ts';

function intArg(name: string, min = 1) {
  return (v: string) => {
    const n = Number(v);
    if (!Number.isInteger(n) || n < min) throw new InvalidArgumentError(`${name} must be an integer >= ${min}`);
    return n;
  };
}

export function buildProgram(): Command {
  const program = new Command('twlac')
    .description('Compile ONNX decoder-only LLMs to ternary weights and low-bit activations (TWLA), with CUDA and WGSL kernels.')
    .version(TWLAC_VERSION)
    .exitOverride()
    // Commander's own errors (bad flag values, unknown options) as one line, like UserErrors.
    .configureOutput({
      writeErr: (s) => process.stderr.write(s),
      outputError: (s, write) => write(`twlac: ${s.trim()} (see twlac --help)\n`),
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
    .option('--calib-samples <n>', 'calibration segments', intArg('--calib-samples'), 128)
    .option('--seq <n>', 'calibration segment length in tokens', intArg('--seq', 8), 512)
    .option('--seed <n>', 'calibration sampling seed', intArg('--seed', 0), 0)
    .option('--no-rotate', 'ablation: skip the KOTMS rotation pass')
    .option('--no-fuse', 'keep every rotation online (do not fold the o_proj input rotation into v_proj)')
    .option('--no-gptq', 'ablation: no GPTQ error feedback')
    .option('--no-xdomain', 'ablation: no X-domain (manifold) refit stage')
    .option('--order2-cols <n>', 'largest number of order-2 salient columns searched per 128-column block (--structure twla; default 64, 0 = none)', intArg('--order2-cols', 0))
    .option('--refine', 'TernaryLLM refinement after PTQ: learnable per-group scales and shifts distilled block by block against the fp model (cosine loss, calibration data)')
    .option('--refine-steps <n>', 'refinement Adam steps per block', intArg('--refine-steps'))
    .option('--refine-e2e-steps <n>', 'refinement: end-to-end steps after the block-wise ones (default 0)', intArg('--refine-e2e-steps', 0))
    .addOption(new Option('--refine-trits <mode>', 'refinement trits: keep the PTQ trits, or re-decide them by straight-through rounding').choices(['keep', 'ste']))
    .option('--target <targets...>', 'kernel targets: cuda[:sm_90a,sm_80,...] and/or wgsl')
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
    .option('--tokenizer <file>', 'tokenizer.json (default: beside the model)')
    .option('--max-windows <n>', 'evaluate only the first N windows', intArg('--max-windows'))
    .option('--batch <n>', 'windows per onnxruntime call', intArg('--batch'), 4)
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
    .addOption(new Option('--backend <b>', 'execution backend').choices(['ort', 'webgpu', 'cuda']).default('ort'))
    .requiredOption('--prompt <text>', 'prompt text')
    .option('--max-tokens <n>', 'tokens to generate', intArg('--max-tokens'), 32)
    .option('--greedy', 'greedy decoding (the only mode so far)', true)
    .option('--tokenizer <file>', 'tokenizer.json (default: beside the model)')
    .action(async (model: string, opts) => {
      const { runCommand } = await import('./commands.ts');
      await runCommand(model, opts);
    });

  program
    .command('demo')
    .description('generate the small built-in demo model and compile it (no other files needed)')
    .option('-o, --out <dir>', 'output directory', 'twlac-demo')
    .option('-q, --quiet', 'no progress output')
    .action(async (opts: { out: string; quiet?: boolean }) => {
      const { demoCommand } = await import('./commands.ts');
      await demoCommand(opts);
    });

  return program;
}

/** Run the CLI; returns the exit code. */
export async function main(argv: string[]): Promise<number> {
  const program = buildProgram();
  try {
    await program.parseAsync(argv);
    return 0;
  } catch (e) {
    if (e instanceof CommanderError) return e.exitCode === 0 ? 0 : e.exitCode || 1;
    if (e instanceof UserError) {
      process.stderr.write(`twlac: error: ${e.message}\n`);
      return e.exitCode;
    }
    const err = e as Error;
    process.stderr.write(`twlac: internal error: ${err.message}\n`);
    if (process.env.TWLAC_DEBUG) process.stderr.write(`${err.stack}\n`);
    return 70;
  }
}
