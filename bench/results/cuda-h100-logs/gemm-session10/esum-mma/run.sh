#!/bin/bash
OUT=${OUT:-/tmp/out}; mkdir -p $OUT
nvidia-smi --query-gpu=name,driver_version,clocks.sm,clocks.max.sm,power.limit --format=csv > $OUT/gpu.csv
python3 .device/sass10/stats.py .device/sass10/gb.cubin gemm_wgr_t256sd_tq2_g128_lat_n4096_k11008_sm_90a gemm_wgr_t256sde_tq2_g128_lat_n4096_k11008_sm_90a gemm_wgr_t128_tq2_g128_lat_n4096_k11008_sm_90a gemm_wgr_t128de_tq2_g128_lat_n4096_k11008_sm_90a > $OUT/sass.txt 2>&1
cd .device/gemm
nvcc -O3 -std=c++17 -gencode=arch=compute_90a,code=sm_90a -I. -o gb_new ../../scripts/device/gemm_bench.cu -lcublas 2>&1 | grep -E "error" &
nvcc -O3 -std=c++17 -gencode=arch=compute_90a,code=sm_90a -I../gemm-noe -o gb_noe ../../scripts/device/gemm_bench.cu -lcublas 2>&1 | grep -E "error" &
wait
for r in 1 2; do ./gb_new . /tmp/new$r.json "" > $OUT/new$r.log 2>&1; ./gb_noe . /tmp/noe$r.json "" > $OUT/noe$r.log 2>&1; done
grep failures $OUT/*.log
