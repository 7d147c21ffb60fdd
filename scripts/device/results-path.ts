// Where a device run's merged results go: bench/results/cuda-<card>-<kind>.json, the card read
// from the device name (h100, h200; gpu for others), so that a run on another card never
// overwrites the H100 files.
export function resultsPath(device: string, kind: string): string {
  const card = String(device).match(/H\d00/)?.[0]?.toLowerCase() ?? 'gpu';
  return `bench/results/cuda-${card}-${kind}.json`;
}
