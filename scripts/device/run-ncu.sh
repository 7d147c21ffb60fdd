#!/bin/bash
# On the GPU machine: Nsight Compute on GEMV kernels of the benchmark (prepared by
# gen-gemv-bench.ts): speed of light, warp stalls, occupancy. Kernel names as arguments
# (exact names), by default two staged kernels.
OUT=${OUT:-/tmp/out}; mkdir -p "$OUT"
cd .device/cuda
nvcc -O3 -std=c++17 -gencode=arch=compute_90a,code=sm_90a -lineinfo -I. -o gemv_bench ../../scripts/device/gemv_bench.cu -lcublas 2>&1 | grep -i error
for k in ${@:-gemv_tq2_g128_n4096_k4096_m1_sm_90a gemv_tq2_g128_n28672_k8192_m1_sm_90a}; do
  timeout 200 ncu --clock-control none -k regex:^$k\$ --launch-skip 3 --launch-count 1 --section SpeedOfLight --section WarpStateStats --section Occupancy --section MemoryWorkloadAnalysis --section SchedulerStats ./gemv_bench . /tmp/g.json $k > "$OUT/ncu_$k.txt" 2>&1
  grep -E "Duration|Memory Throughput|DRAM Throughput|Compute \(SM\)|Achieved Occupancy|Theoretical Occupancy|Stall|Issued Warp|No Eligible|Warp Cycles Per Issued|Registers Per|Block Limit|L1/TEX Hit|L2 Hit|Mem Busy|Max Bandwidth" "$OUT/ncu_$k.txt" | head -40
done
