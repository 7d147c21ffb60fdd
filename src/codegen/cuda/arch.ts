// CUDA architectures twlac generates for: the table decides compile flags, shared-memory
// budgets and kernel tile shapes. A new GPU is one new row (nvcc must know it).
export type CudaArch = 'sm_80' | 'sm_86' | 'sm_89' | 'sm_90a' | 'sm_100' | 'sm_120';

export interface CudaArchDecl {
  /** Compute capability × 10, as __CUDA_ARCH__ / 10 reports it. */
  cc: number;
  /** nvcc flag that builds machine code for exactly this target. */
  gencode: string;
  /** Largest dynamic shared memory one block may opt in to (bytes). */
  maxSmemPerBlock: number;
  /** Shared memory a decode GEMV block may use for staged activations, chosen so that at
   *  least two blocks fit on one SM. */
  gemvSmemBudget: number;
  /** Warps per decode GEMV block. */
  gemvWarps: number;
  /** Rows each warp of the decode GEMV keeps in flight, by token count M. */
  gemvRowsPerWarp(m: number): number;
  /** cp.async.bulk into shared memory with mbarrier completion (sm_90+): the streaming GEMV
   *  can then fetch a block's whole weight slice before its grid wait. */
  bulkCopy: boolean;
  /** Tensor-core int8 instruction the prefill GEMM would use. */
  int8Mma: 'mma.sync.m16n8k32.s8' | 'wgmma.m64nNk32.s8';
  /** Prefill GEMM tile (kernels/gemm-a8.ts): block tile bm×bn tokens×features, warps laid
   *  out warpsM×warpsN, cp.async stages of the activation and code tiles. */
  prefill: PrefillTile;
}

export interface PrefillTile {
  bm: number;
  bn: number;
  warpsM: number;
  warpsN: number;
  stages: number;
}

// 128×128 tiles, 8 warps of 64×32 each (4×4 m16n8 fragments); three stages where shared
// memory allows (67.5 KB), two on the 99 KB parts.
const PREFILL_BIG: PrefillTile = { bm: 128, bn: 128, warpsM: 2, warpsN: 4, stages: 3 };
const PREFILL_SMALL_SMEM: PrefillTile = { bm: 128, bn: 128, warpsM: 2, warpsN: 4, stages: 2 };

// Two rows a warp at M ≤ 8 (four rows are register-limited to low occupancy).
const rowsPerWarp = (m: number) => (m <= 8 ? 2 : 1);

export const CUDA_ARCHS = {
  sm_80: { cc: 80, gencode: '-gencode=arch=compute_80,code=sm_80', maxSmemPerBlock: 163 * 1024, gemvSmemBudget: 80 * 1024, gemvWarps: 8, gemvRowsPerWarp: rowsPerWarp, bulkCopy: false, int8Mma: 'mma.sync.m16n8k32.s8', prefill: PREFILL_BIG },
  sm_86: { cc: 86, gencode: '-gencode=arch=compute_86,code=sm_86', maxSmemPerBlock: 99 * 1024, gemvSmemBudget: 48 * 1024, gemvWarps: 8, gemvRowsPerWarp: rowsPerWarp, bulkCopy: false, int8Mma: 'mma.sync.m16n8k32.s8', prefill: PREFILL_SMALL_SMEM },
  sm_89: { cc: 89, gencode: '-gencode=arch=compute_89,code=sm_89', maxSmemPerBlock: 99 * 1024, gemvSmemBudget: 48 * 1024, gemvWarps: 8, gemvRowsPerWarp: rowsPerWarp, bulkCopy: false, int8Mma: 'mma.sync.m16n8k32.s8', prefill: PREFILL_SMALL_SMEM },
  sm_90a: { cc: 90, gencode: '-gencode=arch=compute_90a,code=sm_90a', maxSmemPerBlock: 227 * 1024, gemvSmemBudget: 110 * 1024, gemvWarps: 8, gemvRowsPerWarp: rowsPerWarp, bulkCopy: true, int8Mma: 'wgmma.m64nNk32.s8', prefill: PREFILL_BIG },
  sm_100: { cc: 100, gencode: '-gencode=arch=compute_100,code=sm_100', maxSmemPerBlock: 227 * 1024, gemvSmemBudget: 110 * 1024, gemvWarps: 8, gemvRowsPerWarp: rowsPerWarp, bulkCopy: true, int8Mma: 'mma.sync.m16n8k32.s8', prefill: PREFILL_BIG },
  sm_120: { cc: 120, gencode: '-gencode=arch=compute_120,code=sm_120', maxSmemPerBlock: 99 * 1024, gemvSmemBudget: 48 * 1024, gemvWarps: 8, gemvRowsPerWarp: rowsPerWarp, bulkCopy: true, int8Mma: 'mma.sync.m16n8k32.s8', prefill: PREFILL_SMALL_SMEM },
} satisfies Record<CudaArch, CudaArchDecl>;

const DEFAULT_ARCHS: readonly CudaArch[] = ['sm_90a', 'sm_80'];

export function parseArchs(spec: string | undefined): CudaArch[] {
  if (!spec) return [...DEFAULT_ARCHS];
  const out: CudaArch[] = [];
  for (const s of spec.split(',').map((x) => x.trim()).filter(Boolean)) {
    if (!(s in CUDA_ARCHS)) throw new Error(`unknown CUDA architecture '${s}' (known: ${Object.keys(CUDA_ARCHS).join(', ')})`);
    out.push(s as CudaArch);
  }
  if (!out.length) throw new Error('empty CUDA architecture list');
  return out;
}
