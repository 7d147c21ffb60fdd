#!/bin/bash
# On the GPU machine: correctness only, for the int8-activation GEMV: the GEMV check cases
# (CHECKS_ONLY) and the rand12m-a8 model end to end against the float64 reference.
OUT=${OUT:-/tmp/out}; mkdir -p "$OUT"
E=.device/e2e/rand12m-a8
(cd $E/kernels/cuda && make ARCH=sm_90a > /tmp/a8build.log 2>&1) &
(cd .device/cuda && nvcc -O3 -std=c++17 -gencode=arch=compute_90a,code=sm_90a -I. -o gemv_bench ../../scripts/device/gemv_bench.cu -lcublas 2>&1 | grep -i error)
wait
(cd .device/cuda && CHECKS_ONLY=1 ./gemv_bench . "$OUT/gemv_checks.json") 2>&1 | grep -E "check|failures" | tee "$OUT/a8.log"
B=$E/kernels/cuda/twlac_cuda_sm_90a
$B --weights $E --ids $(cat $E/ref_ids.txt) --logits-out /tmp/a8.logits.bin
python3 - "$E/ref_logits.bin" /tmp/a8.logits.bin <<'PY' | tee -a "$OUT/a8.log"
import sys, numpy as np
r = np.fromfile(sys.argv[1], np.float32); c = np.fromfile(sys.argv[2], np.float32)
d = np.abs(r - c); print(f"rand12m-a8: logits max|d| {d.max():.4e}  max|ref| {np.abs(r).max():.3f}  relL2 {np.linalg.norm(r-c)/np.linalg.norm(r):.3e}  argmax agree {np.mean(r.reshape(-1,4096).argmax(1)==c.reshape(-1,4096).argmax(1)):.3f}")
PY
$B --weights $E --prompt $(cat $E/ref_prompt.txt) --max-tokens $(wc -w < $E/ref_greedy.txt) > /tmp/a8.greedy.txt
if cmp -s /tmp/a8.greedy.txt $E/ref_greedy.txt; then echo "rand12m-a8: greedy identical to the reference"; else echo "rand12m-a8: greedy DIFFERS"; cat /tmp/a8.greedy.txt $E/ref_greedy.txt; fi | tee -a "$OUT/a8.log"
