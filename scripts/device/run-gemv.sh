#!/bin/bash
# On the GPU machine: build and run the GEMV check + benchmark; results to $OUT.
# Prepare here first: npx tsx scripts/device/gen-gemv-bench.ts  (writes .device/cuda/)
set -o pipefail
OUT=${OUT:-/tmp/out}; mkdir -p "$OUT"
nvidia-smi --query-gpu=name,driver_version,clocks.sm,clocks.max.sm,clocks.mem,memory.total --format=csv | tee "$OUT/gpu.csv"
nvcc --version | tail -2
export TWLAC_PDL=0 # isolated kernels: no overlap with the next launch
cd .device/cuda
time nvcc -O3 -std=c++17 -gencode=arch=compute_90a,code=sm_90a -I. -o gemv_bench ../../scripts/device/gemv_bench.cu -lcublas 2>&1 | grep -v "declared but never\|Remark\|^$" 
./gemv_bench . "$OUT/gemv.json" 2>&1 | tee "$OUT/gemv.log"
