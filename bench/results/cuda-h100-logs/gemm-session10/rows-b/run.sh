#!/bin/bash
# session 10 final: full prefill GEMM run (all kernel kinds, runtime variants), A/B rounds of the
# lattice GEMM (HEAD vs load-time row constants), 7B prefill/decode beside torch fp16
OUT=${OUT:-/tmp/out}; mkdir -p $OUT/full $OUT/ab
nvidia-smi --query-gpu=name,driver_version,clocks.sm,clocks.max.sm,clocks.mem,memory.total,power.limit --format=csv | tee $OUT/full/gpu.csv
cd .device/gemm
nvcc -O3 -std=c++17 -gencode=arch=compute_90a,code=sm_90a -I. -o gemm_bench ../../scripts/device/gemm_bench.cu -lcublas 2>&1 | grep -E "error" &
nvcc -O3 -std=c++17 -gencode=arch=compute_90a,code=sm_90a -I../gemm-new10 -o gb_new ../../scripts/device/gemm_bench.cu -lcublas 2>&1 | grep -E "error" &
nvcc -O3 -std=c++17 -gencode=arch=compute_90a,code=sm_90a -I../gemm-old10 -o gb_old ../gemm-old10/gemm_bench.cu -lcublas 2>&1 | grep -E "error" &
wait
./gemm_bench . $OUT/full/gemm.json "" > $OUT/full/gemm.log 2>&1
for r in 4 5; do ./gb_old . /tmp/old$r.json "" > $OUT/ab/old$r.log 2>&1; ./gb_new . /tmp/new$r.json "" > $OUT/ab/new$r.log 2>&1; done
cd ../..
E=.device/e2e-s10
timeout 300 python3 scripts/device/torch_decode.py 2048 64 $OUT/torch_decode.json > $OUT/torch.log 2>&1
for r in 1 2; do for m in tq2lat-a8 tq1lat-a4; do echo "== new-$m"; $E/new-llama7b-$m/twlac_cuda_sm_90a --random 1 --bench-decode 2048 --steps 64; done; done > $OUT/e2e.log 2>&1
tar czf $OUT/ab.tgz -C $OUT ab && rm -rf $OUT/ab
tail -1 $OUT/torch.log; grep -E "^==|tokensPerSecond" $OUT/e2e.log | sed -E 's/.*"tokensPerSecond": ([0-9.]+).*"prefillSeconds": ([0-9.]+).*"gpuMemUsedBytes": ([0-9]+).*/\1 tok\/s prefill \2 mem \3/' | paste - -
grep failures $OUT/full/gemm.log
