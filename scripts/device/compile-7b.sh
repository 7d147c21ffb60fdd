#!/usr/bin/env bash
# The 7B-shaped compile on the GPU machine (issue 19): generate a LLaMA-2-7B-shaped ONNX export
# there (13.5 GB of fp16 external data; never carried), then compile it with the default
# pipeline on the GPU path, logging every progress line with a timestamp. The device image
# has no Node and no Vulkan loader, so they travel, as in scripts/device/wgsl-h100.sh:
#   here, once:  bash scripts/device/compile-7b.sh --prepare
#                (fills .gl/ and .device-compile/, both in .gitignore; about 50 MB to carry)
#   device run:  bash scripts/device/compile-7b.sh [7b|1b|125m|12m]   (carry .gl and .device-compile)
# Generating 7b takes about 6 min of one core (50 ns a weight here), so on a machine held warm
# run it once with GEN_ONLY=1, then again to compile (the model stays in /tmp/llama-7b).
# Writes $OUT/gen.log, $OUT/compile.log (timestamped), $OUT/nvidia-smi.txt, $OUT/vulkan.txt and
# $OUT/manifest.json if the compile finishes within COMPILE_TIMEOUT seconds (default 540: one
# device command may run 10 minutes). With SCALE=1 it runs `bench:scale --device both` for
# the size instead of the CLI compile and writes $OUT/scale.json. DEVICE=cpu|gpu|auto (default gpu)
# and EXTRA_FLAGS (e.g. --no-rotate, to reach the GPU-path fit within one command) go to twlac.
set -euo pipefail
P=.device-compile
if [[ "${1:-}" == --prepare ]]; then
  mkdir -p .gl /tmp/amd64/partial $P/node_modules/webgpu/dist/linux-x64 $P/data
  o='-oAPT::Architecture=amd64 -oAPT::Architectures=amd64 -oDir::State::Lists=/tmp/amd64'
  ls .gl/libvulkan1_*.deb >/dev/null 2>&1 || { apt-get $o update && (cd .gl && apt-get $o download libvulkan1 libegl1 libglvnd0 libopengl0 libgl1 libglx0 libgles2); }
  ext='--external:webgpu --external:onnxruntime-node --bundle --platform=node --format=esm --target=node20'
  banner='--banner:js=import{createRequire as __cr}from"node:module";const require=__cr(import.meta.url);'
  node_modules/.bin/esbuild scripts/device/twlac-bundle.ts $ext "$banner" --outfile=$P/twlac.mjs --log-level=warning
  node_modules/.bin/esbuild bench/scripts/gen-llama.ts $ext "$banner" --outfile=$P/gen-llama.mjs --log-level=warning
  node_modules/.bin/esbuild bench/scale.ts $ext "$banner" --outfile=$P/scale.mjs --log-level=warning
  # the fit pool's worker and the functions it runs (src/quant/fit-pool.ts finds them beside the bundle)
  node_modules/.bin/esbuild src/quant/fit-functions.ts $ext "$banner" --outfile=$P/fit-functions.mjs --log-level=warning
  # files the bundled code reads beside itself (import.meta.url): the GPU executor, the fit worker, the ONNX schema, the CUDA host program
  mkdir -p $P/runtime && cp src/gpu/executor-worker.mjs src/quant/fit-worker.mjs src/graph/proto/onnx.proto $P/ && cp src/codegen/cuda/runtime/main.cu $P/runtime/
  cp node_modules/webgpu/index.js node_modules/webgpu/package.json $P/node_modules/webgpu/
  for m in onnxruntime-node onnxruntime-common; do mkdir -p $P/node_modules/$m && cp -r node_modules/$m/package.json node_modules/$m/dist $P/node_modules/$m/; done
  ort=node_modules/onnxruntime-node/bin/napi-v6/linux/x64
  mkdir -p $P/$ort && cp $ort/onnxruntime_binding.node $P/$ort/
  [[ -f $P/$ort/libonnxruntime.so.1.xz ]] || xz -T1 -9 -c $ort/libonnxruntime.so.1 >$P/$ort/libonnxruntime.so.1.xz
  [[ -f $P/node.xz ]] || xz -T1 -9 -c "$(command -v node)" >$P/node.xz
  [[ -f $P/node_modules/webgpu/dist/linux-x64/dawn.node.xz ]] || xz -T1 -9 -c node_modules/webgpu/dist/linux-x64/dawn.node >$P/node_modules/webgpu/dist/linux-x64/dawn.node.xz
  cp ../shared/models/pydocs-llama-12m/tokenizer.json $P/data/
  [[ -f $P/data/train.txt.xz ]] || xz -T1 -9 -c ../shared/data/pydocs/train.txt >$P/data/train.txt.xz
  du -sh .gl $P
  exit 0
fi
SIZE=${1:-7b}
OUT=${OUT:-/tmp/compile-out}
W=/tmp/twlac-device
mkdir -p "$OUT" $W
for f in .gl/*.deb; do dpkg -x "$f" /; done
ldconfig
unxz() { python3 -c 'import lzma,shutil,sys; shutil.copyfileobj(lzma.open(sys.argv[1]), open(sys.argv[2], "wb"))' "$1" "$2"; }
cp -r $P/. $W/
for f in $(cd $W && find . -name '*.xz'); do unxz "$W/$f" "$W/${f%.xz}" && rm "$W/$f"; done
chmod +x $W/node
icd=/usr/local/nvidia/share/vulkan/icd.d/nvidia_icd.json
if [[ -f $icd ]]; then export VK_DRIVER_FILES=$icd VK_ICD_FILENAMES=$icd; fi
{ echo "VK_DRIVER_FILES=${VK_DRIVER_FILES:-}; $(ldconfig -p | grep -c libvulkan) libvulkan entries"; ls /usr/share/vulkan/icd.d /etc/vulkan/icd.d /usr/local/nvidia/share/vulkan/icd.d 2>&1 || true; } | tee "$OUT/vulkan.txt"
nvidia-smi --query-gpu=name,driver_version,memory.total --format=csv | tee "$OUT/nvidia-smi.txt"
nproc | sed 's/^/host cores: /' | tee -a "$OUT/nvidia-smi.txt"
stamp() { while IFS= read -r line; do printf '%s %s\n' "$(date +%s.%N | cut -c1-14)" "$line"; done; }
cd $W
if [[ -n "${SCALE:-}" ]]; then
  ./node scale.mjs --sizes "$SIZE" --device both --calib-samples "${CALIB_SAMPLES:-32}" --seq "${SEQ:-256}" --out "$OUT/scale.json" 2>&1 | stamp | tee "$OUT/scale.log"
  exit 0
fi
M=/tmp/llama-$SIZE
[[ -f $M/model.onnx ]] || ./node gen-llama.mjs "$SIZE" $M 2>&1 | stamp | tee "$OUT/gen.log"
cp data/tokenizer.json $M/
df -h /tmp | tail -1 | tee -a "$OUT/gen.log"
[[ -n "${GEN_ONLY:-}" ]] && exit 0
# GPU utilisation every 5 s while the compile runs
nvidia-smi --query-gpu=timestamp,utilization.gpu,memory.used --format=csv -l 5 >"$OUT/gpu-util.csv" 2>&1 &
smi=$!
set +e
/usr/bin/time -v timeout "${COMPILE_TIMEOUT:-540}" ./node twlac.mjs $M/model.onnx -o /tmp/out-$SIZE --calib data/train.txt --acts mp:4 --target cuda --device "${DEVICE:-gpu}" ${EXTRA_FLAGS:-} \
  2>&1 | stamp | tee "$OUT/compile.log"
kill $smi
[[ -f /tmp/out-$SIZE/manifest.json ]] && cp /tmp/out-$SIZE/manifest.json /tmp/out-$SIZE/report.md "$OUT/"
exit 0
