// Where a device run's results go. Curated results, one file a benchmark:
// bench/results/cuda-<card>-<benchmark>.json, the card read from the device name (h100, h200;
// gpu for others), so that a run on another card never overwrites the H100 files. Raw logs:
// bench/archive/cuda-<card>-logs/<date>-<commit>/, beside the results they back.
export type CudaBenchmark = 'decode-e2e' | 'decode-gemv' | 'prefill-gemm' | 'prefill-e2e';

const card = (device: string) => String(device).match(/H\d00/)?.[0]?.toLowerCase() ?? 'gpu';

export function resultsPath(device: string, benchmark: CudaBenchmark): string {
  return `bench/results/cuda-${card(device)}-${benchmark}.json`;
}

export function logsDir(device: string, header: { date: string; commit: string }): string {
  return `bench/archive/cuda-${card(device)}-logs/${header.date}-${header.commit.split(' ')[0]}`;
}
