// The prefill GEMM of each linear: the lattice formats' fold-free kernel where the arch has
// wgmma, else the kernel of the arch's int8 tensor-core instruction in the arch table
// (CUDA_ARCHS[arch].int8Mma).
import { CUDA_ARCHS, type CudaArchDecl } from '../arch.ts';
import type { CudaKernel } from '../kernel.ts';
import type { GemmShape } from './gemm.ts';
import { gemmA8Kernel, gemmA8Unsupported } from './gemm-a8.ts';
import { gemmWgmmaKernel, gemmWgmmaUnsupported } from './gemm-wgmma.ts';
import { GEMM_RS_RUNTIME, gemmRsRuntimeVariants, gemmWgmmaRsKernel, gemmWgmmaRsUnsupported } from './gemm-wgmma-rs.ts';

/** wgmma on sm_90a (kernels/gemm-wgmma.ts, faster than the mma.sync kernel there), mma.sync
 *  elsewhere and for shapes the wgmma kernel refuses. */
const PREFILL_GEMMS: Record<CudaArchDecl['int8Mma'], { unsupported(s: GemmShape): string | null; kernel(s: GemmShape): CudaKernel }> = {
  'mma.sync.m16n8k32.s8': { unsupported: gemmA8Unsupported, kernel: gemmA8Kernel },
  'wgmma.m64nNk32.s8': { unsupported: gemmWgmmaUnsupported, kernel: gemmWgmmaKernel },
};

/** Why no prefill GEMM takes this linear, or null. */
export function prefillGemmUnsupported(s: GemmShape): string | null {
  return gemmA8Unsupported(s);
}

export function prefillGemmKernel(s: GemmShape): CudaKernel {
  if (!gemmWgmmaRsUnsupported(s)) return gemmWgmmaRsKernel(s, GEMM_RS_RUNTIME);
  const chosen = PREFILL_GEMMS[CUDA_ARCHS[s.arch].int8Mma];
  return chosen.unsupported(s) ? gemmA8Kernel(s) : chosen.kernel(s);
}

/** The runtime's prefill GEMMs of a linear, each run for T > beyondT (first match): the
 *  lattice kernel's tile variants by N (gemmRsRuntimeVariants), else prefillGemmKernel. */
export function prefillGemmKernels(s: GemmShape): { kernel: CudaKernel; beyondT: number }[] {
  if (!gemmWgmmaRsUnsupported(s)) return gemmRsRuntimeVariants(s.n).map(({ variant, beyondT }) => ({ kernel: gemmWgmmaRsKernel(s, variant), beyondT }));
  return [{ kernel: prefillGemmKernel(s), beyondT: 0 }];
}
