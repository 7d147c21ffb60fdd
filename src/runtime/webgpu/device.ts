// Device requests shared by Node and the browser: ask for the optional features the
// kernels can use and for the adapter's own buffer limits (the defaults are smaller).
export async function requestModelDevice(adapter: GPUAdapter): Promise<GPUDevice> {
  // timestamp-query: WebgpuModel.profileStep's GPU time per dispatch
  const requiredFeatures = (['subgroups', 'timestamp-query'] as GPUFeatureName[]).filter((f) => adapter.features.has(f));
  const l = adapter.limits;
  return adapter.requestDevice({
    requiredFeatures,
    requiredLimits: {
      maxStorageBuffersPerShaderStage: l.maxStorageBuffersPerShaderStage,
      maxStorageBufferBindingSize: l.maxStorageBufferBindingSize,
      maxBufferSize: l.maxBufferSize,
      maxComputeWorkgroupsPerDimension: l.maxComputeWorkgroupsPerDimension,
    },
  });
}
