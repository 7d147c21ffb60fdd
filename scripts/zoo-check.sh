#!/bin/bash
# Compile every export of the architecture zoo (scripts/device/make-zoo.py writes zoo.tar.gz) with
# per-row ternary weights and compare 24 greedy tokens of onnxruntime and the WebGPU runtime on
# the same out/model.onnx, after a 51-token prompt (longer than the zoo's 16-token windows).
#   bash scripts/zoo-check.sh ZOO_DIR OUT_DIR     (ZOO_DIR holds <family-export>/model.onnx and tokenizer.json)
set -u
Z=${1:?zoo folder}; O=${2:?output folder}; mkdir -p "$O"
P=$(printf 'def read_file(path):\n    """Return the contents of the file."""\n')
for d in "$Z"/*/; do
  n=$(basename "$d"); [[ -f $d/model.onnx ]] || continue
  out=$O/$n; rm -rf "$out"
  msg=$(timeout 300 node bin/twlac.js "$d/model.onnx" -o "$out" --tokenizer "$Z/tokenizer.json" --weights rtn-ternary 2>&1 | tail -1)
  if [[ ! -f $out/manifest.json ]]; then echo "$n: refused: $msg"; continue; fi
  feats=$(node -e "console.log(JSON.parse(require('fs').readFileSync('$out/manifest.json','utf8')).features.join(','))")
  timeout 300 node bin/twlac.js run "$out" --backend ort --prompt "$P" --max-tokens 24 --greedy >"$out.ort.txt" 2>"$out.ort.err"; a=$?
  timeout 300 node bin/twlac.js run "$out" --backend webgpu --prompt "$P" --max-tokens 24 --greedy >"$out.wg.txt" 2>"$out.wg.err"; b=$?
  if [[ $a -ne 0 || $b -ne 0 ]]; then echo "$n: run failed (ort exit $a, webgpu exit $b): $(tail -1 "$out.wg.err")"; continue; fi
  if cmp -s "$out.ort.txt" "$out.wg.txt"; then echo "$n: greedy identical, ORT and WebGPU [$feats]"; else echo "$n: greedy DIFFERS [$feats]"; fi
done
