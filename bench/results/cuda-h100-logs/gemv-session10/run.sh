#!/bin/bash
OUT=${OUT:-/tmp/out}; mkdir -p $OUT
nvidia-smi --query-gpu=name,driver_version,clocks.sm,clocks.max.sm,clocks.mem,memory.total,power.limit --format=csv > $OUT/gpu.csv
cd .device/cuda
nvcc -O3 -std=c++17 -gencode=arch=compute_90a,code=sm_90a -I. -o gemv_bench ../../scripts/device/gemv_bench.cu -lcublas 2>&1 | grep -E "error"
CHECKS_ONLY=1 ./gemv_bench . $OUT/c.json > $OUT/c.log 2>&1
./gemv_bench . $OUT/gemv.json sa8 > $OUT/gemv.log 2>&1
./gemv_bench . $OUT/gemv2.json sa8 > $OUT/gemv2.log 2>&1
grep -i "fail" $OUT/c.log | tail -3
