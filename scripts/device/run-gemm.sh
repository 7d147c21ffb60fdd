#!/bin/bash
# On the GPU machine: build and run the int8 prefill GEMM check + benchmark; results to $OUT.
# Prepare here first: npx tsx scripts/device/gen-gemm-bench.ts  (writes .device/gemm/)
# FILTER=<substring>: benchmark only the kernels whose name contains it (checks all run)
set -o pipefail
OUT=${OUT:-/tmp/out}; mkdir -p "$OUT"
nvidia-smi --query-gpu=name,driver_version,clocks.sm,clocks.max.sm,clocks.mem,memory.total --format=csv | tee "$OUT/gpu.csv"
cd .device/gemm
time nvcc -O3 -std=c++17 -gencode=arch=compute_90a,code=sm_90a -I. -Xptxas -v -o gemm_bench ../../scripts/device/gemm_bench.cu -lcublas 2>&1 | grep -E "error|registers|spill" | sort | uniq -c
./gemm_bench . "$OUT/gemm.json" "${FILTER:-}" 2>&1 | tee "$OUT/gemm.log"
