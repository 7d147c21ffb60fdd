#!/bin/bash
# session 9: prefill chunks up to 2048 tokens (t256sd beyond 256 tokens at N >= 8192 and beyond
# 1024 elsewhere) vs session 8's runtime (base: 512-token chunks, t256s/t128); fixture correctness;
# 7B logits of a 2048-token prefill in 512- vs 2048-token chunks
OUT=${OUT:-/tmp/out}; mkdir -p $OUT
E=.device/e2e-s9
F=$E/fixture-new; B=$F/twlac_cuda_sm_90a
{ $B --weights $F --ids $(cat $F/ref_ids.txt) --logits-out /tmp/fx.logits.bin
python3 - $F/ref_logits.bin /tmp/fx.logits.bin <<'PY'
import sys, numpy as np
r = np.fromfile(sys.argv[1], np.float32); c = np.fromfile(sys.argv[2], np.float32)
print(f"fixture-lat-a8 new: logits max|d| {np.abs(r-c).max():.4e} relL2 {np.linalg.norm(r-c)/np.linalg.norm(r):.3e}")
PY
$B --weights $F --prompt $(cat $F/ref_prompt.txt) --max-tokens $(wc -w < $F/ref_greedy.txt) > /tmp/g.txt; cmp -s /tmp/g.txt $F/ref_greedy.txt && echo "greedy identical" || echo "greedy DIFFERS"
$B --weights $F --ppl $F/dev_ids.bin --windows 200; } > $OUT/fixture-new.log 2>&1
IDS=$(python3 -c "import random; random.seed(5); print(','.join(str(random.randrange(32000)) for _ in range(2048)))")
{ for d in new-tq2lat-a8 new-tq1lat-a4; do
  for c in 512 2048; do TWLAC_PREFILL_CHUNK=$c $E/$d/twlac_cuda_sm_90a --random 1 --ids $IDS --logits-out /tmp/l$c.bin; done
  python3 - /tmp/l512.bin /tmp/l2048.bin $d <<'PY'
import sys, numpy as np
a = np.fromfile(sys.argv[1], np.float32).reshape(-1, 32000); b = np.fromfile(sys.argv[2], np.float32).reshape(-1, 32000)
print(f"{sys.argv[3]} 2048 ids, chunks 512 vs 2048: relL2 {np.linalg.norm(a-b)/np.linalg.norm(a):.3e} max|d| {np.abs(a-b).max():.3e} (max|logit| {np.abs(a).max():.2f}) argmax agree {np.mean(a.argmax(1)==b.argmax(1))*100:.2f}% finite {np.isfinite(b).all()}")
PY
done; } > $OUT/chunk-logits.log 2>&1
for r in 1 2; do for m in tq2lat-a8 tq1lat-a4; do
  echo "== base-$m"; $E/base-$m/twlac_cuda_sm_90a --random 1 --bench-decode 2048 --steps 32
  for c in 512 1024 2048; do echo "== new-$m chunk $c"; TWLAC_PREFILL_CHUNK=$c $E/new-$m/twlac_cuda_sm_90a --random 1 --bench-decode 2048 --steps 32; done
done; done > $OUT/e2e.log 2>&1
tail -4 $OUT/fixture-new.log; cat $OUT/chunk-logits.log
grep -E "^==|tokensPerSecond" $OUT/e2e.log | sed -E 's/.*"tokensPerSecond": ([0-9.]+).*"prefillSeconds": ([0-9.]+).*/\1 tok\/s prefill \2/' | paste - -
