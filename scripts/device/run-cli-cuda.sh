#!/bin/bash
# On the GPU machine (H100, sm_90a), from the repository root after `npm ci` (which builds
# dist/), with ../shared beside it: the CLI's CUDA paths end to end.
#  1. `twlac kernels` for the LLaMA-2-7B decode shapes: build the harness, check and time.
#  2. The fixture compiled with --target cuda:sm_90a: `twlac run/eval --backend cuda` (the
#     program is built by twlac itself) next to --backend ort on the same out/model.onnx.
# Everything goes to $OUT/cli-cuda.log and $OUT/*.json.
set -u
OUT=${OUT:-/tmp/out}; mkdir -p "$OUT"
T="node bin/twlac.js"
M=../shared/models/pydocs-llama-12m
D=../shared/data/pydocs
W=$(mktemp -d)
exec > >(tee "$OUT/cli-cuda.log") 2>&1
echo "== kernels"
$T kernels --target cuda:sm_90a --format tq2_g128 --shapes 4096x4096,11008x4096,4096x11008 -o "$W/k-tq2"
$T kernels --target cuda:sm_90a --format tq1_g128_lat --shapes 4096x4096,11008x4096,4096x11008 -o "$W/k-tq1lat"
for k in k-tq2 k-tq1lat; do (cd "$W/$k" && make >build.log 2>&1 && ./twlac_kernels_harness | tee "$OUT/$k.json") || echo "$k: FAILED (see $W/$k/build.log)"; done
echo "== fixture with --target cuda:sm_90a"
$T $M/model.onnx -o "$W/fx" --calib $D/train.txt --calib-samples 32 --seq 256 --target cuda:sm_90a -q || exit 1
for b in ort cuda; do
  echo "-- run --backend $b"; $T run "$W/fx" --backend $b --prompt "def main(" --max-tokens 48 | tee "$OUT/run-$b.txt"
  echo "-- eval --backend $b"; $T eval "$W/fx" --backend $b --text $D/dev.txt --max-windows 50 --json -q | tee "$OUT/eval-$b.json"
done
cmp -s "$OUT/run-ort.txt" "$OUT/run-cuda.txt" && echo "greedy text identical" || echo "greedy text differs (compare the two files)"
echo "== refusals on this machine"
$T run "$W/fx" --backend cuda --prompt x --temperature 0.7; echo "exit $?"
