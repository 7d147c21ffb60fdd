// Device benchmark (not a test): the WGSL ternary GEMV (decode, M = 1) on a real GPU through
// Dawn's Vulkan backend, as % of HBM bandwidth, its two shapes side by side on the same
// weights (src/codegen/wgsl/plan.ts GemvVariant): thread-per-row (ternaryLinearKernel, tm = 1)
// and workgroup-per-row (ternaryGemvWorkgroupKernel) with the shared-memory tree and, when the
// adapter offers them, with subgroups. Bundled with esbuild into one file (only
// `webgpu` external) and run on the device machine with a carried Node: see
// scripts/device/wgsl-h100.sh. Weights rotate over >= 400 MB of copies so the 50 MB L2 never
// holds them (as scripts/device/gemv_bench.cu does). Time per GEMV: GPU timestamps around
// one compute pass of `reps` dispatches when the adapter offers 'timestamp-query', and wall
// time of the same submit (onSubmittedWorkDone) always. Outputs of a few rows are checked
// against the format's reference decoder in float64.
//   node wgsl-h100.mjs [--out wgsl-h100.json] [--target-ms 25] [--shapes NxK,...] [--rot-mb 400] [--copy-mb 1024] [--ort DIR]
import { execSync } from 'node:child_process';
import { writeFileSync } from 'node:fs';
import { loadavg } from 'node:os';
import { rng } from '../../src/artifact/random.ts';
import { layoutEntries, NO_FEATURES, type WgslKernel } from '../../src/codegen/wgsl/fragments.ts';
import { a8PrologueUnsupported, gemvRowsUnsupported, packActBytes, ternaryGemvA8Kernel, ternaryGemvRowsKernel, ternaryGemvWorkgroupKernel, ternaryLayout, ternaryLinearKernel, type GemvA8Shape, type GemvRowsShape } from '../../src/codegen/wgsl/kernels.ts';
import { adapterKind, GEMV_BY_ADAPTER } from '../../src/codegen/wgsl/plan.ts';
import { CODE_PACKINGS, decodeTernary, groupsPerRow, storageBytes, ternaryFormat, type TernaryFormat, type TernaryWeights } from '../../src/formats/ternary.ts';
import { floatToHalf } from '../../src/graph/tensor.ts';
import { resultHeader } from '../../bench/result-header.ts';
import { ortGemv, type OrtGemvResult } from './ort-webgpu-gemv.ts';

const arg = (name: string, dflt: string) => {
  const i = process.argv.indexOf(`--${name}`);
  return i > 0 ? process.argv[i + 1] : dflt;
};
const OUT = arg('out', 'wgsl-h100.json');
const TARGET_MS = Number(arg('target-ms', '25'));
const HBM_GBPS = 3000; // the brief's nominal figure for H100 SXM HBM3 (3.35 TB/s spec sheet)
const ROT_BYTES = Number(arg('rot-mb', '400')) * 2 ** 20;
const TRIALS = 5;

const DEFAULT_SHAPES = '4096x4096,11008x4096,4096x11008,8192x8192,28672x8192,8192x28672';
const SHAPES = arg('shapes', DEFAULT_SHAPES).split(',').map((s) => s.split('x').map(Number) as [number, number]);
const FORMATS: TernaryFormat[] = [ternaryFormat('trit5', 128), ternaryFormat('bit2', 128)];
/** Rows-per-workgroup GEMV shapes (rows × threads a row) measured side by side. */
const ROWS_SHAPES: GemvRowsShape[] = [
  { rows: 8, threadsPerRow: 32 },
  { rows: 4, threadsPerRow: 64 },
  { rows: 2, threadsPerRow: 128 },
  { rows: 16, threadsPerRow: 16 },
  { rows: 4, threadsPerRow: 32 },
];
/** Integer-activation GEMV shapes (threads a row × rows a thread) measured side by side. */
const A8_SHAPES: GemvA8Shape[] = [
  { threadsPerRow: 32, rowsPerThread: 4 },
  { threadsPerRow: 32, rowsPerThread: 2 },
  { threadsPerRow: 32, rowsPerThread: 1 },
  { threadsPerRow: 16, rowsPerThread: 4 },
  { threadsPerRow: 64, rowsPerThread: 2 },
  { threadsPerRow: 8, rowsPerThread: 8 },
];
/** Variants to measure: a regular expression over the names (default all). */
const ONLY = new RegExp(arg('variants', '.'));
/** The quantiser of the prologue variants (a8x-*): 8 bits, no clipping. */
const PROLOGUE_QUANT = { bits: 8, clip: 1, pack: true };

const median = (a: number[]) => [...a].sort((x, y) => x - y)[Math.floor(a.length / 2)];
const rand = rng(11);

const { create, globals } = await import('webgpu');
Object.assign(globalThis, globals);
const gpu = create(['backend=vulkan', 'disable-dawn-features=timestamp_quantization']);
// The device dies with its Dawn instance when `gpu` is collected, and a module-level const
// that nothing reads later is not a root: pin it (as src/runtime/webgpu/node.ts does).
(globalThis as { dawnKeepAlive?: unknown }).dawnKeepAlive = gpu;
const adapter = await gpu.requestAdapter({ powerPreference: 'high-performance' });
if (!adapter) throw new Error('Dawn (vulkan) found no adapter');
const info = adapter.info;
const hasTs = adapter.features.has('timestamp-query');
const hasSg = adapter.features.has('subgroups');
const T_START = performance.now();
const l = adapter.limits;
const device = await adapter.requestDevice({
  requiredFeatures: [...(hasTs ? ['timestamp-query' as const] : []), ...(hasSg ? ['subgroups' as GPUFeatureName] : [])],
  requiredLimits: {
    maxStorageBufferBindingSize: l.maxStorageBufferBindingSize,
    maxBufferSize: l.maxBufferSize,
    maxComputeWorkgroupsPerDimension: l.maxComputeWorkgroupsPerDimension,
  },
});
const errors: string[] = [];
device.onuncapturederror = (e) => errors.push(String(e.error.message));
const kind = adapterKind(info);
console.log(`adapter: ${info.vendor} | ${info.architecture} | ${info.device} | ${info.description}; timestamp-query ${hasTs}; subgroups ${hasSg}; kind ${kind} -> ${GEMV_BY_ADAPTER[kind]}`);

const STORAGE = 0x80, COPY_DST = 0x08, COPY_SRC = 0x04, MAP_READ = 0x01, UNIFORM = 0x40, QUERY_RESOLVE = 0x200;

/** A timestamp pair and its readback, reused by every timed pass. */
const ts = hasTs
  ? {
      set: device.createQuerySet({ type: 'timestamp', count: 2 }),
      resolve: device.createBuffer({ size: 16, usage: QUERY_RESOLVE | COPY_SRC }),
      read: device.createBuffer({ size: 16, usage: MAP_READ | COPY_DST }),
    }
  : undefined;

/** Encode `body` into one compute pass (timestamped when possible), submit, wait: [gpu ms, wall ms]. */
async function timedPass(body: (pass: GPUComputePassEncoder) => void): Promise<[number | undefined, number]> {
  const enc = device.createCommandEncoder();
  const pass = enc.beginComputePass(ts ? { timestampWrites: { querySet: ts.set, beginningOfPassWriteIndex: 0, endOfPassWriteIndex: 1 } } : {});
  body(pass);
  pass.end();
  if (ts) {
    enc.resolveQuerySet(ts.set, 0, 2, ts.resolve, 0);
    enc.copyBufferToBuffer(ts.resolve, 0, ts.read, 0, 16);
  }
  const cmd = enc.finish();
  const t0 = performance.now();
  device.queue.submit([cmd]);
  await device.queue.onSubmittedWorkDone();
  const wall = performance.now() - t0;
  if (!ts) return [undefined, wall];
  await ts.read.mapAsync(MAP_READ);
  const [a, b] = new BigUint64Array(ts.read.getMappedRange().slice(0));
  ts.read.unmap();
  return [Number(b - a) / 1e6, wall];
}

/** Device-to-device copy rate of a large buffer, counting read + write bytes. */
async function copyRate(): Promise<{ bytes: number; reps: number; ms: number; GBps: number }> {
  const bytes = Math.min(Number(arg('copy-mb', '1024')) * 2 ** 20, Math.floor(l.maxBufferSize / 256) * 256);
  const a = device.createBuffer({ size: bytes, usage: COPY_SRC | COPY_DST });
  const b = device.createBuffer({ size: bytes, usage: COPY_SRC | COPY_DST });
  const reps = 20;
  const times: number[] = [];
  for (let t = 0; t < TRIALS + 1; t++) {
    const enc = device.createCommandEncoder();
    for (let i = 0; i < reps; i++) enc.copyBufferToBuffer(i % 2 ? b : a, 0, i % 2 ? a : b, 0, bytes);
    const cmd = enc.finish();
    const t0 = performance.now();
    device.queue.submit([cmd]);
    await device.queue.onSubmittedWorkDone();
    if (t > 0) times.push((performance.now() - t0) / reps);
  }
  a.destroy();
  b.destroy();
  const ms = median(times);
  return { bytes, reps, ms, GBps: (2 * bytes) / ms / 1e6 };
}

/** Read rate of a plain WGSL streaming kernel over a large buffer (vec4<u32> loads, grid-stride,
 *  one u32 written per thread): what a WGSL kernel can read at best on this adapter. */
async function readRate(): Promise<{ bytes: number; reps: number; ms: number; GBps: number } | undefined> {
  if (!ts) return undefined;
  const bytes = Math.min(Number(arg('copy-mb', '1024')) * 2 ** 20, Math.floor(l.maxStorageBufferBindingSize / 256) * 256);
  const threads = 4096 * 256;
  const src = device.createBuffer({ size: bytes, usage: STORAGE });
  const dst = device.createBuffer({ size: threads * 4, usage: STORAGE });
  const code = `@group(0) @binding(0) var<storage, read> a: array<vec4<u32>>;
@group(0) @binding(1) var<storage, read_write> o: array<u32>;
@compute @workgroup_size(256)
fn main(@builtin(global_invocation_id) gid: vec3u) {
  var acc = vec4<u32>(0u);
  for (var i = gid.x; i < ${bytes / 16}u; i += ${threads}u) { acc ^= a[i]; }
  o[gid.x] = acc.x ^ acc.y ^ acc.z ^ acc.w;
}`;
  const pipeline = await device.createComputePipelineAsync({ layout: 'auto', compute: { module: device.createShaderModule({ code }), entryPoint: 'main' } });
  const bind = device.createBindGroup({ layout: pipeline.getBindGroupLayout(0), entries: [src, dst].map((buffer, binding) => ({ binding, resource: { buffer } })) });
  const reps = 10;
  const times: number[] = [];
  for (let t = 0; t < TRIALS + 1; t++) {
    const [g] = await timedPass((pass) => {
      pass.setPipeline(pipeline);
      pass.setBindGroup(0, bind);
      for (let i = 0; i < reps; i++) pass.dispatchWorkgroups(4096);
    });
    if (t > 0) times.push(g! / reps);
  }
  src.destroy();
  dst.destroy();
  const ms = median(times);
  return { bytes, reps, ms, GBps: bytes / ms / 1e6 };
}

/** Random valid codes for a format: every byte drawn from the bytes its packing can produce. */
function randomWeights(f: TernaryFormat, rows: number, cols: number): TernaryWeights {
  const P = CODE_PACKINGS[f.packing];
  const G = f.group;
  const bpg = P.bytesPerGroup(G);
  const ng = groupsPerRow(f, cols);
  // Valid byte values at each byte position of a group, from the reference encoder itself.
  const tables = Array.from({ length: bpg }, (_, j) => {
    const n = Math.min(G - j * (f.packing === 'trit5' ? 5 : 4), f.packing === 'trit5' ? 5 : 4);
    const vals = new Set<number>();
    const grp = new Int8Array(G);
    const out = new Uint8Array(bpg);
    for (let c = 0; c < 3 ** n; c++) {
      grp.fill(0);
      for (let i = 0, v = c; i < n; i++, v = Math.floor(v / 3)) grp[j * (f.packing === 'trit5' ? 5 : 4) + i] = (v % 3) - 1;
      P.encodeGroup(grp, G, out, 0);
      vals.add(out[j]);
    }
    return Uint8Array.from(vals);
  });
  const codes = new Uint8Array(rows * ng * bpg);
  for (let i = 0; i < codes.length; i++) {
    const t = tables[i % bpg];
    codes[i] = t[Math.floor(rand() * t.length)];
  }
  const sc = 1 / Math.sqrt(cols * 0.6);
  const scales = Uint16Array.from({ length: rows * ng }, () => floatToHalf(sc * (0.5 + rand())));
  const shifts = f.shift ? Uint16Array.from({ length: rows * ng }, () => floatToHalf(sc * 0.1 * (rand() - 0.5))) : undefined;
  return { format: f, rows, cols, codes, scales, shifts };
}

/** The weights of `rows` only, as their own TernaryWeights (rows are contiguous in every field). */
function rowSlice(w: TernaryWeights, n: number): TernaryWeights {
  const ng = groupsPerRow(w.format, w.cols);
  const bpg = CODE_PACKINGS[w.format.packing].bytesPerGroup(w.format.group);
  return {
    ...w,
    rows: 1,
    codes: w.codes.subarray(n * ng * bpg, (n + 1) * ng * bpg),
    scales: w.scales.subarray(n * ng, (n + 1) * ng),
    shifts: w.shifts?.subarray(n * ng, (n + 1) * ng),
  };
}

interface Row {
  /** 'thread-per-row', 'workgroup-per-row' (shared-memory tree) or 'workgroup-per-row+sg' (subgroupAdd). */
  variant: string;
  format: string;
  N: number;
  K: number;
  weightBytes: number;
  /** weights + x read + y written */
  bytes: number;
  copies: number;
  reps: number;
  gpu_us?: number;
  wall_us: number;
  GBps: number;
  pctOfHbm: number;
  pctOfCopy: number;
  pctOfWgslRead?: number;
  /** thread-per-row time / this variant's time, same weights, same run */
  speedupOverThreadPerRow: number;
  spotRows: number;
  maxRelErr: number;
  ok: boolean;
}

const copy = await copyRate();
const read = await readRate();
if (read) console.log(`WGSL streaming read ${read.bytes >> 20} MiB: ${read.ms.toFixed(3)} ms -> ${read.GBps.toFixed(0)} GB/s`);
// A full collection here (node --expose-gc) reproduces what the large host arrays below
// trigger: it must not take the Dawn instance with it (see keepAlive above).
(globalThis as { gc?: () => void }).gc?.();
console.log(`copyBufferToBuffer ${copy.bytes >> 20} MiB: ${copy.ms.toFixed(3)} ms -> ${copy.GBps.toFixed(0)} GB/s (read+write)`);

const rows: Row[] = [];
let ortRows: OrtGemvResult[] = [];
let ortError: string | undefined;
let smi = '';
try {
  smi = execSync('nvidia-smi --query-gpu=name,driver_version,clocks.max.sm,clocks.max.memory,memory.total --format=csv,noheader', { encoding: 'utf8' }).trim();
} catch (e) {
  smi = `nvidia-smi failed: ${(e as Error).message.split('\n')[0]}`;
}
/** The summary: per format and shape, the fastest variant's µs and % of the adapter's
 *  WGSL streaming read, with onnxruntime's bits=2 and bits=4 µs on the same shape. */
function gemvSummary() {
  const keys = [...new Set(rows.map((r) => `${r.format}|${r.N}|${r.K}`))];
  return keys.map((key) => {
    const [format, N, K] = key.split('|');
    const best = rows.filter((r) => `${r.format}|${r.N}|${r.K}` === key && r.ok).sort((a, b) => (a.gpu_us ?? a.wall_us) - (b.gpu_us ?? b.wall_us))[0];
    const ortUs = (bits: number) => ortRows.find((o) => o.bits === bits && o.N === Number(N) && o.K === Number(K))?.us ?? null;
    return { format, N: Number(N), K: Number(K), variant: best?.variant, us: best ? (best.gpu_us ?? best.wall_us) : null, pctOfAdapterRead: best?.pctOfWgslRead ?? null, ortBits2Us: ortUs(2), ortBits4Us: ortUs(4) };
  });
}

/** Written after every row, so a run cut off at its limit still leaves its rows. */
function writeResult(complete: boolean): void {
  writeFileSync(
    OUT,
    JSON.stringify(
      {
        ...resultHeader('WGSL ternary GEMV (decode, M=1) on Dawn/Vulkan, % of HBM bandwidth', smi, 'bash scripts/device/wgsl-h100.sh'),
        nvidiaSmi: smi,
        adapter: { vendor: info.vendor, architecture: info.architecture, device: info.device, description: info.description },
        dawn: 'webgpu npm 0.6.2 (dawn.node), backend=vulkan, timestamp_quantization disabled',
        kernels: {
          'thread-per-row': 'ternaryLinearKernel(fmt, N, K, tm=1, bias=false, no subgroups): one thread per output row, WG=64',
          'workgroup-per-row': 'ternaryGemvWorkgroupKernel(fmt, N, K, bias=false, no subgroups): one 64-thread workgroup per row, coalesced u32 code words, shared-memory tree',
          'workgroup-per-row+sg': 'ternaryGemvWorkgroupKernel(fmt, N, K, bias=false, subgroups): as above, subgroupAdd then one partial per subgroup',
          'rows-RxT[+sg]': 'ternaryGemvRowsKernel(fmt, N, K, bias=false, [subgroups], {rows: R, threadsPerRow: T}): R rows a workgroup, T threads a row, 16-byte code words (bit2, groups of 64k codes), 2^23-mantissa decode',
        },
        adapterKind: kind,
        planChoice: GEMV_BY_ADAPTER[kind],
        subgroups: hasSg,
        timing: hasTs
          ? 'gpu_us: GPU timestamps around one compute pass of `reps` dispatches (weights rotating over `copies` buffers >= 400 MB), divided by reps, median of 5; wall_us: same submit timed to onSubmittedWorkDone'
          : 'no timestamp-query: wall time of one submit of `reps` dispatches to onSubmittedWorkDone, divided by reps, median of 5',
        hbmGBps: HBM_GBPS,
        copy,
      wgslRead: read,
        bytesCounted: 'codes + fp16 scales + fp16 shifts + x (f32; a8-*: bytes and (scale, zero)) + y (f32)',
        rows,
        ort: { rows: ortRows, error: ortError, note: 'onnxruntime-node WebGPU EP, MatMulNBits block 128 float32, µs a GEMV from the difference of two node chains (scripts/device/ort-webgpu-gemv.ts)' },
        gemv: gemvSummary(),
        validationErrors: errors,
        complete,
        load: loadavg(),
      },
      null,
      1,
    ),
  );
}

// Shapes outer (smallest first), so a run cut off at its limit still has both formats.
for (const [N, K] of SHAPES) {
  for (const f of FORMATS) {
    const w = randomWeights(f, N, K);
    const L = ternaryLayout(f, N, K);
    const packed = new Uint8Array(L.words * 4);
    packed.set(w.codes, 0);
    packed.set(new Uint8Array(w.scales.buffer, w.scales.byteOffset, w.scales.byteLength), L.scaleWord0 * 4);
    if (w.shifts) packed.set(new Uint8Array(w.shifts.buffer, w.shifts.byteOffset, w.shifts.byteLength), L.shiftWord0 * 4);
    // x̂ = (q − zero)·scale with 8-bit codes: the f32 kernels read x̂, the integer ones q and (scale, zero)
    const xq = Uint8Array.from({ length: K }, () => Math.floor(rand() * 256));
    const xp = Float32Array.of(2 / 255, 128);
    const x = Float32Array.from(xq, (q) => Math.fround((q - xp[1]) * xp[0]));
    const xqWords = packActBytes(xq, K);
    const all: [string, WgslKernel][] = [
      ['thread-per-row', ternaryLinearKernel(f, N, K, 1, false, NO_FEATURES)],
      ['workgroup-per-row', ternaryGemvWorkgroupKernel(f, N, K, false, NO_FEATURES)],
      ...(hasSg ? [['workgroup-per-row+sg', ternaryGemvWorkgroupKernel(f, N, K, false, { subgroups: true })] as [string, WgslKernel]] : []),
      // rows-per-workgroup (bit2, groups of 64k): the shapes the plan's rule chooses among
      ...(gemvRowsUnsupported(f, K)
        ? []
        : ROWS_SHAPES.flatMap((sh) =>
            (hasSg ? [NO_FEATURES, { subgroups: true }] : [NO_FEATURES]).map(
              (ft) => [`rows-${sh.rows}x${sh.threadsPerRow}${ft.subgroups ? '+sg' : ''}`, ternaryGemvRowsKernel(f, N, K, false, ft, sh)] as [string, WgslKernel],
            ),
          )),
      // integer activations (dot4U8Packed), bit2 groups of 64k: threads a row × rows a thread
      ...(gemvRowsUnsupported(f, K)
        ? []
        : A8_SHAPES.flatMap((sh) =>
            (hasSg ? [NO_FEATURES, { subgroups: true }] : [NO_FEATURES]).map(
              (ft) => [`a8-${sh.threadsPerRow}x${sh.rowsPerThread}${ft.subgroups ? '+sg' : ''}`, ternaryGemvA8Kernel(f, N, K, false, ft, sh)] as [string, WgslKernel],
            ),
          )),
      // the same with the input made in the prologue from f32 x (A8Prologue 'x'; x is exactly
      // 8-bit codes, so the check is unchanged): what a decode GEMV pays for a dispatch fewer
      ...(gemvRowsUnsupported(f, K)
        ? []
        : A8_SHAPES.filter((sh) => hasSg && !a8PrologueUnsupported(K, PROLOGUE_QUANT, sh.rowsPerThread)).map((sh) => [`a8x-${sh.threadsPerRow}x${sh.rowsPerThread}+sg`, ternaryGemvA8Kernel(f, N, K, false, { subgroups: true }, sh, false, { source: 'x', quant: PROLOGUE_QUANT })] as [string, WgslKernel])),
    ];
    const variants = all.filter(([name]) => name === 'thread-per-row' || ONLY.test(name));
    const wBytes = packed.byteLength;
    const copies = Math.max(2, Math.ceil(ROT_BYTES / wBytes));
    const W = Array.from({ length: copies }, () => device.createBuffer({ size: wBytes, usage: STORAGE | COPY_DST | COPY_SRC }));
    device.queue.writeBuffer(W[0], 0, packed);
    {
      const enc = device.createCommandEncoder();
      for (let i = 1; i < copies; i++) enc.copyBufferToBuffer(W[0], 0, W[i], 0, wBytes);
      device.queue.submit([enc.finish()]);
    }
    const X = device.createBuffer({ size: K * 4, usage: STORAGE | COPY_DST });
    device.queue.writeBuffer(X, 0, x);
    const XQ = device.createBuffer({ size: K, usage: STORAGE | COPY_DST });
    device.queue.writeBuffer(XQ, 0, xqWords);
    const XP = device.createBuffer({ size: 16, usage: STORAGE | COPY_DST });
    device.queue.writeBuffer(XP, 0, Float32Array.of(xp[0], xp[1], 0, 0));
    const Y = device.createBuffer({ size: N * 4, usage: STORAGE | COPY_SRC | COPY_DST });
    const R = device.createBuffer({ size: N * 4, usage: MAP_READ | COPY_DST });
    const step = device.createBuffer({ size: 16, usage: UNIFORM | COPY_DST });
    device.queue.writeBuffer(step, 0, new Uint32Array([0, 1, 0, 0]));
    const spot = [0, 1, N >> 1, N - 1, ...Array.from({ length: 4 }, () => Math.floor(rand() * N))];
    const want = spot.map((n) => {
      const ref = decodeTernary(rowSlice(w, n));
      let s = 0, mag = 0;
      for (let c = 0; c < K; c++) (s += ref[c] * x[c]), (mag += Math.abs(ref[c] * x[c]));
      return { s, mag };
    });
    const baseline: { ms?: number } = {};
    for (const [variant, k] of variants) {
      const bgl = device.createBindGroupLayout({ entries: layoutEntries(k) });
      const pipeline = await device.createComputePipelineAsync({
        layout: device.createPipelineLayout({ bindGroupLayouts: [bgl] }),
        compute: { module: device.createShaderModule({ code: k.source() }), entryPoint: 'main' },
      });
      const a8 = variant.startsWith('a8-');
      const binds = W.map((wb) => device.createBindGroup({ layout: bgl, entries: (a8 ? [wb, XQ, XP, Y, step] : [wb, X, Y, step]).map((buffer, binding) => ({ binding, resource: { buffer } })) }));
      if (variant.startsWith('a8x-') && (xp[1] !== 128 || Math.min(...xq) !== 0 || Math.max(...xq) !== 255)) console.log(`${variant}: x's codes do not span 0..255, so the prologue's codes differ from them`);
      const [dx, dy, dz] = k.dispatch(1);
      const dispatches = (reps: number) => (pass: GPUComputePassEncoder) => {
        pass.setPipeline(pipeline);
        for (let i = 0; i < reps; i++) {
          pass.setBindGroup(0, binds[i % copies]);
          pass.dispatchWorkgroups(dx, dy, dz);
        }
      };

      // Check: the last copy (made on the GPU) against the reference decoder on a few rows,
      // after clearing Y so a variant cannot pass on the previous one's output.
      device.queue.writeBuffer(Y, 0, new Float32Array(N).fill(Number.NaN));
      await timedPass((pass) => {
        pass.setPipeline(pipeline);
        pass.setBindGroup(0, binds[copies - 1]);
        pass.dispatchWorkgroups(dx, dy, dz);
      });
      {
        const enc = device.createCommandEncoder();
        enc.copyBufferToBuffer(Y, 0, R, 0, N * 4);
        device.queue.submit([enc.finish()]);
        await R.mapAsync(MAP_READ);
      }
      const y = new Float32Array(R.getMappedRange().slice(0));
      R.unmap();
      let maxRelErr = 0;
      spot.forEach((n, i) => {
        const e = Math.abs(y[n] - want[i].s) / want[i].mag;
        maxRelErr = Number.isNaN(e) ? Infinity : Math.max(maxRelErr, e);
      });

      // Calibrate reps so one pass takes about TARGET_MS, then median of TRIALS passes.
      const [, warm] = await timedPass(dispatches(copies));
      const reps = Math.max(copies, Math.min(20000, Math.round((TARGET_MS / warm) * copies)));
      const gpuT: number[] = [], wallT: number[] = [];
      for (let t = 0; t < TRIALS; t++) {
        const [g, wt] = await timedPass(dispatches(reps));
        if (g !== undefined) gpuT.push(g / reps);
        wallT.push(wt / reps);
      }
      const gpuMs = gpuT.length ? median(gpuT) : undefined;
      const wallMs = median(wallT);
      const ms = gpuMs ?? wallMs;
      baseline.ms ??= ms;
      const weightBytes = storageBytes(f, N, K);
      const bytes = weightBytes + (a8 ? K + 8 : K * 4) + N * 4;
      const GBps = bytes / ms / 1e6;
      const r: Row = {
        variant, format: f.id, N, K, weightBytes, bytes, copies, reps,
        gpu_us: gpuMs === undefined ? undefined : +(gpuMs * 1e3).toFixed(3),
        wall_us: +(wallMs * 1e3).toFixed(3),
        GBps: +GBps.toPrecision(4),
        pctOfHbm: +((100 * GBps) / HBM_GBPS).toFixed(2),
        pctOfCopy: +((100 * GBps) / copy.GBps).toFixed(2),
        pctOfWgslRead: read ? +((100 * GBps) / read.GBps).toFixed(2) : undefined,
        speedupOverThreadPerRow: +(baseline.ms / ms).toFixed(2),
        spotRows: spot.length,
        maxRelErr,
        ok: maxRelErr < 1e-4,
      };
      rows.push(r);
      console.log(
        `${variant} ${f.id} ${N}x${K}: gpu ${r.gpu_us ?? '-'} us, wall ${r.wall_us} us (${reps} reps over ${copies} copies) ${r.GBps} GB/s = ${r.pctOfHbm}% of ${HBM_GBPS} GB/s, ${r.pctOfWgslRead ?? '-'}% of WGSL read; x${r.speedupOverThreadPerRow} vs thread-per-row; spot maxRelErr ${maxRelErr.toExponential(2)} ${r.ok ? 'ok' : 'FAIL'} [t=${((performance.now() - T_START) / 1e3).toFixed(1)} s]`,
      );
      writeResult(false);
    }
    [...W, X, XQ, XP, Y, R, step].forEach((b) => b.destroy());
    writeResult(false);
  }
}

// onnxruntime's WebGPU EP on the same shapes, same process (--ort DIR: onnxruntime-node there)
const ORT_DIR = arg('ort', '');
if (ORT_DIR) {
  try {
    const ort = (await import(`${ORT_DIR}/onnxruntime-node/dist/index.js`)) as typeof import('onnxruntime-node');
    ortRows = await ortGemv(ort, SHAPES, { coldBytes: ROT_BYTES / 2, trials: 15, rand, log: (s) => console.log(s) });
  } catch (e) {
    ortError = `onnxruntime-node WebGPU EP could not run here: ${(e as Error).message.split('\n')[0]}`;
    console.log(ortError);
  }
}
writeResult(true);
console.log(`wrote ${OUT}; ${errors.length} device errors`);
process.exit(rows.every((r) => r.ok) && errors.length === 0 ? 0 : 1);
