// Shared C++ prelude of every generated CUDA file: includes, the error-check macro, and the
// per-packing helpers the host programs use (random code bytes on the device, a host-side
// trit decoder for spot checks), all taken from the packing table.
import { code, ident, join, type Code } from '../common/fragments.ts';
import type { CodePacking } from '../../formats/ternary.ts';
import { CUDA_PACKINGS } from './packing.ts';

export const PACKING_IDS: Record<CodePacking, number> = { trit5: 0, bit2: 1 };

export function cudaPrelude(): Code {
  return code`#pragma once
#include <cuda_fp16.h>
#include <cuda_runtime.h>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#define TWLAC_CUDA(x) do { cudaError_t e_ = (x); if (e_ != cudaSuccess) { fprintf(stderr, "CUDA error %s at %s:%d\\n", cudaGetErrorString(e_), __FILE__, __LINE__); exit(1); } } while (0)
static const unsigned twlac_pow3[5] = {1u, 3u, 9u, 27u, 81u};
// Programmatic dependent launch (sm_90+): a kernel may start while its predecessor finishes;
// it reads nothing the predecessor writes before TWLAC_GRID_WAIT() (kernel.ts places it), and
// lets its own successor launch once it is past that point. TWLAC_PDL=0 turns it off.
#if defined(__CUDA_ARCH__) && __CUDA_ARCH__ >= 900
#define TWLAC_GRID_WAIT() asm volatile("griddepcontrol.wait;" ::: "memory")
#define TWLAC_GRID_TRIGGER() asm volatile("griddepcontrol.launch_dependents;" ::: "memory")
#else
#define TWLAC_GRID_WAIT() do {} while (0)
#define TWLAC_GRID_TRIGGER() do {} while (0)
#endif
// SMs of the current device, read once (launchers that size their grids by waves)
static inline int twlac_sm_count() {
  static int sms = 0;
  if (!sms) {
    int dev = 0;
    TWLAC_CUDA(cudaGetDevice(&dev));
    TWLAC_CUDA(cudaDeviceGetAttribute(&sms, cudaDevAttrMultiProcessorCount, dev));
  }
  return sms;
}
static int twlac_pdl_force = -1; // benchmarks: 1 / 0 overrides TWLAC_PDL
static inline bool twlac_pdl_enabled() {
  if (twlac_pdl_force >= 0) return twlac_pdl_force == 1;
  static int on = -1;
  if (on < 0) {
    const char* e = getenv("TWLAC_PDL");
    int dev = 0, major = 0;
    TWLAC_CUDA(cudaGetDevice(&dev));
    TWLAC_CUDA(cudaDeviceGetAttribute(&major, cudaDevAttrComputeCapabilityMajor, dev));
    on = major >= 9 && !(e && e[0] == '0') ? 1 : 0;
  }
  return on == 1;
}
`;
}

/** Device and host helpers for each packing, named by packing. */
export function packingHelpers(): Code {
  const parts = (Object.keys(CUDA_PACKINGS) as CodePacking[]).map((p) => {
    const d = CUDA_PACKINGS[p];
    return code`__device__ __forceinline__ uint8_t twlac_random_byte_${ident(p)}(uint32_t h) { return ${d.randomByte(code`h`)}; }
static inline int twlac_host_trit_${ident(p)}(const uint8_t* g, int k) { return ${d.hostTrit(code`g`, code`k`)}; }`;
  });
  return join(parts);
}
