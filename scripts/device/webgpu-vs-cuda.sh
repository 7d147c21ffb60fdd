#!/usr/bin/env bash
# Device side (not a test): the 7B-shaped synthetic tq2_g128 A8 model decoding in the generated
# CUDA host program and in the WebGPU runtime on Dawn/Vulkan, in one device run, so that the
# WebGPU/CUDA ratio of bench/results/wgsl-h100.json (e2e) is measured side by side. Here, once:
#   npx tsx scripts/device/gen-e2e.ts --only llama7b-tq2-a8     (fills .device/e2e, ignored)
#   bash scripts/device/wgsl-h100.sh --prepare                   (fills .gl, .device-wgsl)
# Device run (carry .device, .gl, .device-wgsl): bash scripts/device/webgpu-vs-cuda.sh
# Writes $OUT/cuda-decode-<context>.json and $OUT/wgsl-decode.json (with BATCHES, also
# cuda-decode-<ctx>-b<B>.json; with TORCH, torch-decode-<ctx>[-b<B>].json, the baselines of
# decode-roofline.ts); then, here:
#   npx tsx scripts/device/merge-webgpu-cuda.ts DIR
set -uo pipefail
OUT=${OUT:-/tmp/out}; mkdir -p "$OUT"
E=.device/e2e/llama7b-tq2-a8
(cd $E/kernels/cuda && make ARCH=sm_90a >build.log 2>&1) || { echo "CUDA build failed"; grep -m5 error $E/kernels/cuda/build.log; }
B=$E/kernels/cuda/twlac_cuda_sm_90a
for c in 512 2048; do
  [ -x $B ] && $B --random 1 --bench-decode $c --steps 128 | tee "$OUT/cuda-decode-$c.json"
done
# BATCHES=4,8,16: batched decode at BATCH_CTX (default 512), B sequences a step
for n in ${BATCHES:+${BATCHES//,/ }}; do
  [ -x $B ] && $B --random 1 --bench-decode "${BATCH_CTX:-512}" --steps 64 --batch "$n" | tee "$OUT/cuda-decode-${BATCH_CTX:-512}-b$n.json"
done
# NO_WGSL=1: the CUDA (and torch) runs only
[ -n "${NO_WGSL:-}" ] || WGSL_SCRIPT=wgsl-decode bash scripts/device/wgsl-h100.sh --format tq2_g128 --act-bits 8 "$@"
# TORCH=CTXxB,...: the torch fp16 baseline at those contexts and batches (e.g. 512x1,2048x1,512x4),
# one process, after the GPU is free of the others
if [ -n "${TORCH:-}" ]; then
  timeout "${TORCH_TIMEOUT:-300}" python3 scripts/device/torch_decode.py --configs "$TORCH" 64 "$OUT" 2>&1 | grep -v Warning | tail -12
fi
