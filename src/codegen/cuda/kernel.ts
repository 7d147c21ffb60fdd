// A CUDA kernel is data: name, cache key, typed parameters, launch shape and source. The one
// helper below emits the signature, the host launcher and the shared-memory opt-in from the
// parameter list, so no kernel writes them by hand.
import { Code, cacheKey, code, comment, ident, join } from '../common/fragments.ts';

export type CType =
  | 'const __half*'
  | '__half*'
  | 'const float*'
  | 'float*'
  | 'const uint8_t*'
  | 'uint8_t*'
  | 'const int*'
  | 'const int2*'
  | 'int2*'
  | 'int'
  | 'float'
  | 'uint32_t'
  | 'unsigned long long';

export interface CudaParam {
  name: string;
  type: CType;
}

export interface CudaKernel {
  name: string;
  cacheKey: string;
  params: readonly CudaParam[];
  /** Threads per block. */
  block: number;
  /** C++ expressions for the grid, over the kernel's parameters. */
  grid: readonly [Code, Code, Code];
  /** Dynamic shared memory in bytes. */
  smemBytes: number;
  /** Device source: helpers and the `__global__` definition. */
  source(): string;
  /** Host launcher `launch_<name>(params..., stream)`; raises the shared-memory limit on first use. */
  launcher(): string;
}

export interface KernelSpec {
  name: string;
  /** Everything the source depends on besides the name (shapes, format, arch). */
  params: Record<string, string | number | boolean>;
  args: readonly CudaParam[];
  block: number;
  grid: readonly [Code, Code, Code];
  smemBytes?: number;
  /** Persistent kernels: cap grid.x at the blocks that fit on the device at once. */
  gridLimitByOccupancy?: boolean;
  /** Device helpers placed before the kernel; names must carry the kernel's name. */
  prelude?: Code;
  /** Programmatic dependent launch: 'start' waits for the predecessor before the body (the
   *  default); 'manual' means the body calls TWLAC_GRID_WAIT() and TWLAC_GRID_TRIGGER() itself,
   *  after work that reads only immutable data (weights). */
  pdl?: 'start' | 'manual';
  body: Code;
}

export function cudaFloat(x: number): Code {
  if (!Number.isFinite(x)) throw new Error(`CUDA float literal: ${x} is not finite`);
  return new Code(`${x.toExponential(9)}f`);
}

function ctype(t: CType): Code {
  return new Code(t);
}

export function defineKernel(spec: KernelSpec): CudaKernel {
  const name = ident(spec.name);
  const seen = new Set<string>();
  for (const a of spec.args) {
    ident(a.name);
    if (seen.has(a.name)) throw new Error(`${spec.name}: duplicate parameter ${a.name}`);
    seen.add(a.name);
  }
  if (!Number.isInteger(spec.block) || spec.block < 32 || spec.block > 1024 || spec.block % 32) {
    throw new Error(`${spec.name}: block of ${spec.block} threads is not a multiple of 32 in [32, 1024]`);
  }
  const smem = spec.smemBytes ?? 0;
  const key = cacheKey(spec.name, spec.params);
  const sig = join(
    spec.args.map((a) => code`${ctype(a.type)}${a.type.endsWith('*') ? code` __restrict__ ` : code` `}${ident(a.name)}`),
    ', ',
  );
  const plainSig = join(spec.args.map((a) => code`${ctype(a.type)} ${ident(a.name)}`), ', ');
  const argNames = join(spec.args.map((a) => ident(a.name)), ', ');
  const [gx, gy, gz] = spec.grid;
  return {
    name: spec.name,
    cacheKey: key,
    params: spec.args,
    block: spec.block,
    grid: spec.grid,
    smemBytes: smem,
    source: () =>
      join([
        comment(`twlac kernel ${key}`),
        spec.prelude ?? code``,
        code`extern "C" __global__ void __launch_bounds__(${spec.block}) ${name}(${sig}) {`,
        spec.pdl === 'manual' ? code`` : code`  TWLAC_GRID_WAIT();
  TWLAC_GRID_TRIGGER();`,
        spec.body,
        code`}`,
        code``,
      ]).text,
    launcher: () =>
      join([
        code`static void launch_${name}(${plainSig}, cudaStream_t stream) {`,
        smem > 48 * 1024
          ? code`  static bool raised = false;
  if (!raised) { TWLAC_CUDA(cudaFuncSetAttribute(${name}, cudaFuncAttributeMaxDynamicSharedMemorySize, ${smem})); raised = true; }`
          : code``,
        spec.gridLimitByOccupancy
          ? code`  static int resident = 0;
  if (!resident) {
    int occ = 0;
    TWLAC_CUDA(cudaOccupancyMaxActiveBlocksPerMultiprocessor(&occ, ${name}, ${spec.block}, ${smem}));
    resident = occ > 0 ? occ * twlac_sm_count() : 1;
  }
  dim3 grid((unsigned)min((int)(${gx}), resident), (unsigned)(${gy}), (unsigned)(${gz}));`
          : code`  dim3 grid((unsigned)(${gx}), (unsigned)(${gy}), (unsigned)(${gz}));`,
        code`  if (twlac_pdl_enabled()) {
    cudaLaunchConfig_t cfg = {};
    cfg.gridDim = grid;
    cfg.blockDim = dim3(${spec.block});
    cfg.dynamicSmemBytes = ${smem};
    cfg.stream = stream;
    cudaLaunchAttribute attr[1];
    attr[0].id = cudaLaunchAttributeProgrammaticStreamSerialization;
    attr[0].val.programmaticStreamSerializationAllowed = 1;
    cfg.attrs = attr;
    cfg.numAttrs = 1;
    TWLAC_CUDA(cudaLaunchKernelEx(&cfg, ${name}, ${argNames}));
  } else {
    ${name}<<<grid, ${spec.block}, ${smem}, stream>>>(${argNames});
  }
  TWLAC_CUDA(cudaGetLastError());
}`,
        code``,
      ]).text,
  };
}
