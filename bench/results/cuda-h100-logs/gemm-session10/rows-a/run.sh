#!/bin/bash
# session 10: load-time lattice row constants (E, u) vs HEAD (in-kernel dp4a + unit scan)
OUT=${OUT:-/tmp/out}; mkdir -p $OUT
nvidia-smi --query-gpu=name,driver_version,clocks.sm,clocks.max.sm,power.limit --format=csv > $OUT/gpu.csv
cd .device/gemm
nvcc -O3 -std=c++17 -gencode=arch=compute_90a,code=sm_90a -I. -o gb_new ../../scripts/device/gemm_bench.cu -lcublas 2>&1 | grep -E "error" &
nvcc -O3 -std=c++17 -gencode=arch=compute_90a,code=sm_90a -I../gemm-old10 -o gb_old ../gemm-old10/gemm_bench.cu -lcublas 2>&1 | grep -E "error" &
wait
cd ../..
E=.device/e2e-s10; F=$E/fx
{ for v in base new; do B=$E/$v-fixture-lat-a8/twlac_cuda_sm_90a
  $B --weights $F --ids $(cat $F/ref_ids.txt) --logits-out /tmp/fx-$v.bin
  python3 - $F/ref_logits.bin /tmp/fx-$v.bin $v <<'PY'
import sys, numpy as np
r = np.fromfile(sys.argv[1], np.float32); c = np.fromfile(sys.argv[2], np.float32)
print(f"fixture-lat-a8 {sys.argv[3]}: logits vs float64 reference max|d| {np.abs(r-c).max():.4e} relL2 {np.linalg.norm(r-c)/np.linalg.norm(r):.3e}")
PY
  $B --weights $F --prompt $(cat $F/ref_prompt.txt) --max-tokens $(wc -w < $F/ref_greedy.txt) > /tmp/g.txt; cmp -s /tmp/g.txt $F/ref_greedy.txt && echo "$v greedy identical" || echo "$v greedy DIFFERS"
  $B --weights $F --ppl $F/dev_ids.bin --windows 200
done
python3 -c "
import numpy as np; a=np.fromfile('/tmp/fx-base.bin',np.float32); b=np.fromfile('/tmp/fx-new.bin',np.float32); print('fixture base vs new logits: max|d|', np.abs(a-b).max())"
} > $OUT/fixture.log 2>&1
IDS=$(python3 -c "import random; random.seed(5); print(','.join(str(random.randrange(32000)) for _ in range(2000)))")
{ for m in tq2lat-a8 tq1lat-a4; do
  for v in base new; do $E/$v-llama7b-$m/twlac_cuda_sm_90a --random 1 --ids $IDS --logits-out /tmp/l-$v.bin; done
  python3 - /tmp/l-base.bin /tmp/l-new.bin $m <<'PY'
import sys, numpy as np
a = np.fromfile(sys.argv[1], np.float32); b = np.fromfile(sys.argv[2], np.float32)
print(f"7B {sys.argv[3]} 2000 ids, base vs new: relL2 {np.linalg.norm(a-b)/np.linalg.norm(a):.3e} max|d| {np.abs(a-b).max():.3e} finite {np.isfinite(b).all()} n {a.size}")
PY
done; } > $OUT/logits7b.log 2>&1
for r in 1 2; do for m in tq2lat-a8 tq1lat-a4; do for v in base new; do
  echo "== $v-$m"; $E/$v-llama7b-$m/twlac_cuda_sm_90a --random 1 --bench-decode 2048 --steps 32
done; done; done > $OUT/e2e.log 2>&1
cd .device/gemm
for r in 1 2 3; do ./gb_old . /tmp/old$r.json "" > $OUT/old$r.log 2>&1; ./gb_new . /tmp/new$r.json "" > $OUT/new$r.log 2>&1; done
cd ../..
cat $OUT/fixture.log | grep -v "^{" ; cat $OUT/logits7b.log
grep -E "^==|tokensPerSecond" $OUT/e2e.log | sed -E 's/.*"tokensPerSecond": ([0-9.]+).*"prefillSeconds": ([0-9.]+).*/\1 tok\/s prefill \2/' | paste - -
grep failures $OUT/*.log
