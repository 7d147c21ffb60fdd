#!/bin/bash
# On the GPU machine: Nsight Compute on the prefill GEMM kernels named in $KERNELS (default:
# the wgmma kernel at 4096×4096, M=4096): speed of light, warp stalls, scheduler, and the
# per-instruction stall samples (SASS source page, CSV). Prepare with gen-gemm-bench.ts.
OUT=${OUT:-/tmp/out}; mkdir -p "$OUT"
KERNELS=${KERNELS:-gemm_wg_tq2_g128_n4096_k4096}
M=${M:-4096}
cd .device/gemm
nvcc -O3 -std=c++17 -gencode=arch=compute_90a,code=sm_90a -lineinfo -I. -o gemm_bench ../../scripts/device/gemm_bench.cu -lcublas 2>&1 | grep -i error
for k in $KERNELS; do
  timeout 240 ncu --clock-control none -k regex:$k --launch-count 1 --set full --import-source yes -o "/tmp/$k" ./gemm_bench . /tmp/g.json $k $M > "$OUT/ncu_run_$k.txt" 2>&1
  ncu -i "/tmp/$k.ncu-rep" --print-details all > "$OUT/ncu_$k.txt" 2>&1
  ncu -i "/tmp/$k.ncu-rep" --page source --csv --print-source sass > "$OUT/sass_$k.csv" 2>&1
  grep -E "Duration|Compute \(SM\) Throughput|Memory Throughput|Issue Slots Busy|No Eligible|Warp Cycles Per Issued|Stall|Shared Memory|Bank|Achieved Occupancy|Registers Per" "$OUT/ncu_$k.txt" | head -60
done
