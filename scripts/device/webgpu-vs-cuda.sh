#!/usr/bin/env bash
# Device side (not a test): the 7B-shaped synthetic tq2_g128 A8 model decoding in the generated
# CUDA host program and in the WebGPU runtime on Dawn/Vulkan, in one device run, so that the
# WebGPU/CUDA ratio of bench/results/wgsl-h100.json (e2e) is measured side by side. Here, once:
#   npx tsx scripts/device/gen-e2e.ts --only llama7b-tq2-a8     (fills .device/e2e, ignored)
#   bash scripts/device/wgsl-h100.sh --prepare                   (fills .gl, .device-wgsl)
# Device run (carry .device, .gl, .device-wgsl): bash scripts/device/webgpu-vs-cuda.sh
# Writes $OUT/cuda-decode-<context>.json and $OUT/wgsl-decode.json (and with TORCH=1
# $OUT/torch-decode-<context>.json, the baseline of decode-roofline.ts); then, here:
#   npx tsx scripts/device/merge-webgpu-cuda.ts DIR
set -uo pipefail
OUT=${OUT:-/tmp/out}; mkdir -p "$OUT"
E=.device/e2e/llama7b-tq2-a8
(cd $E/kernels/cuda && make ARCH=sm_90a >build.log 2>&1) || { echo "CUDA build failed"; grep -m5 error $E/kernels/cuda/build.log; }
B=$E/kernels/cuda/twlac_cuda_sm_90a
for c in 512 2048; do
  [ -x $B ] && $B --random 1 --bench-decode $c --steps 128 | tee "$OUT/cuda-decode-$c.json"
done
WGSL_SCRIPT=wgsl-decode bash scripts/device/wgsl-h100.sh --format tq2_g128 --act-bits 8 "$@"
# TORCH=1: the torch fp16 baseline at both contexts, after the GPU is free of the others
if [ -n "${TORCH:-}" ]; then
  for c in 512 2048; do timeout "${TORCH_TIMEOUT:-150}" python3 scripts/device/torch_decode.py $c 64 "$OUT/torch-decode-$c.json" 2>&1 | tail -2; done
fi
