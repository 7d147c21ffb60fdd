#!/bin/bash
# On the GPU machine: build and run the CUDA runtime end to end (prepared by gen-e2e.ts) and
# the PyTorch decode baseline. Everything goes to $OUT/e2e.log and $OUT/*.json.
OUT=${OUT:-/tmp/out}; mkdir -p "$OUT"
E=.device/e2e
log() { echo "== $*"; }
( for d in fixture fixture-tq2 fixture-a8 fixture-lat-a8 rand12m rand12m-tq2 rand12m-a8 rand12m-qscale rand12m-bias rand12m-qknorm rand12m-window rand12m-partial rand12m-geglu rand12m-scales rand12m-order2 rand12m-gelu rand12m-gpt2-like rand12m-neox-like rand12m-gemma2-like rand12m-olmo2-like rand12m-stablelm-qkln llama7b-tq1 llama7b-tq2 llama7b-tq2-a8 llama7b-tq1-a4 llama7b-tq2lat-a8 llama7b-tq1lat-a4; do [ -d $E/$d ] || continue; (cd $E/$d/kernels/cuda && make ARCH=sm_90a >build.log 2>&1 || { echo "build $d failed"; grep -m5 error build.log; }) & done; wait )
for d in rand12m rand12m-tq2 rand12m-a8 rand12m-qscale rand12m-bias rand12m-qknorm rand12m-window rand12m-partial rand12m-geglu rand12m-scales rand12m-order2 rand12m-gelu rand12m-gpt2-like rand12m-neox-like rand12m-gemma2-like rand12m-olmo2-like rand12m-stablelm-qkln fixture fixture-tq2 fixture-a8 fixture-lat-a8; do
  B=$E/$d/kernels/cuda/twlac_cuda_sm_90a
  [ -x $B ] || continue
  log "$d logits"; $B --weights $E/$d --ids $(cat $E/$d/ref_ids.txt) --logits-out /tmp/$d.logits.bin
  python3 - "$E/$d/ref_logits.bin" /tmp/$d.logits.bin "$d" <<'PY'
import sys, numpy as np
r = np.fromfile(sys.argv[1], np.float32); c = np.fromfile(sys.argv[2], np.float32)
d = np.abs(r - c); print(f"{sys.argv[3]}: logits max|d| {d.max():.4e}  max|ref| {np.abs(r).max():.3f}  relL2 {np.linalg.norm(r-c)/np.linalg.norm(r):.3e}  argmax agree {np.mean(r.reshape(-1,4096).argmax(1)==c.reshape(-1,4096).argmax(1)):.3f}")
PY
  log "$d greedy"; $B --weights $E/$d --prompt $(cat $E/$d/ref_prompt.txt) --max-tokens $(wc -w < $E/$d/ref_greedy.txt) > /tmp/$d.greedy.txt
  if cmp -s /tmp/$d.greedy.txt $E/$d/ref_greedy.txt; then echo "$d: greedy identical to the reference"; else echo "$d: greedy DIFFERS"; cat /tmp/$d.greedy.txt $E/$d/ref_greedy.txt; fi
done
if [ -d $E/fixture-lat-a8-offlattice ] && [ -x $E/fixture-lat-a8/kernels/cuda/twlac_cuda_sm_90a ]; then
  log "fixture-lat-a8 with one scale off its lattice (must be refused)"
  $E/fixture-lat-a8/kernels/cuda/twlac_cuda_sm_90a --weights $E/fixture-lat-a8-offlattice --ids $(cat $E/fixture-lat-a8/ref_ids.txt) --logits-out /tmp/off.bin > /tmp/off.out 2>&1
  rc=$?; cat /tmp/off.out; [ $rc -ne 0 ] && grep -q "lattice unit" /tmp/off.out && echo "offlattice: refused (exit $rc)" || echo "offlattice: NOT REFUSED (exit $rc)"
fi
for d in fixture fixture-tq2 fixture-a8 fixture-lat-a8; do
  B=$E/$d/kernels/cuda/twlac_cuda_sm_90a
  [ -x $B ] && { log "$d ppl 200 windows"; $B --weights $E/$d --ppl $E/$d/dev_ids.bin --windows 200 | tee $OUT/${d}_ppl200.json;
                 log "$d ppl 200 windows in 16-token forwards"; TWLAC_PREFILL_CHUNK=16 $B --weights $E/$d --ppl $E/$d/dev_ids.bin --windows 200 | tee $OUT/${d}_ppl200_chunk16.json;
                 [ -z "$SKIP_FULL_PPL" ] && { log "$d ppl all"; $B --weights $E/$d --ppl $E/$d/dev_ids.bin | tee $OUT/${d}_ppl.json; }; }
done
for d in llama7b-tq1 llama7b-tq2 llama7b-tq2-a8 llama7b-tq1-a4 llama7b-tq2lat-a8 llama7b-tq1lat-a4; do
  B=$E/$d/kernels/cuda/twlac_cuda_sm_90a
  [ -x $B ] && { log "$d decode @2048"; $B --random 1 --bench-decode 2048 --steps 128 | tee $OUT/$d.json;
                 log "$d prefill in 16-token forwards (GEMV kernels), same run"; TWLAC_PREFILL_CHUNK=16 $B --random 1 --bench-decode 2048 --steps 16 | tee $OUT/$d-chunk16.json;
                 [ -n "$DECODE_2048_ONLY" ] && continue
                 log "$d decode @64"; $B --random 1 --bench-decode 64 --steps 128 | tee $OUT/$d-ctx64.json;
                 log "$d decode @2048 without programmatic dependent launch"; TWLAC_PDL=0 $B --random 1 --bench-decode 2048 --steps 128 | tee $OUT/$d-nopdl.json;
                 log "$d profile of one step @2048 (events after every op, no graph)"; $B --random 1 --profile-decode 2048 | tee $OUT/$d-profile.json; }
done
[ -n "$SKIP_TORCH" ] || log "torch fp16 baseline"; [ -n "$SKIP_TORCH" ] || timeout 300 python3 scripts/device/torch_decode.py 2048 64 $OUT/torch_decode.json 2>&1 | tail -3
