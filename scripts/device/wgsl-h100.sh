#!/usr/bin/env bash
# Device side of the WGSL ternary GEMV benchmark on Dawn/Vulkan (scripts/device/wgsl-h100.ts).
# The device image has no Node and no Vulkan loader, so both travel:
#   here, once:   bash scripts/device/wgsl-h100.sh --prepare   (fills .gl/ and .device-wgsl/, both ignored)
#   device run:   bash scripts/device/wgsl-h100.sh             (carry .gl and .device-wgsl; writes $OUT)
#                 WGSL_SCRIPT=wgsl-decode bash scripts/device/wgsl-h100.sh   (the end-to-end decode)
set -euo pipefail
P=.device-wgsl
if [[ "${1:-}" == --prepare ]]; then
  grep -qx '/.device-wgsl/' .git/info/exclude 2>/dev/null || echo /.device-wgsl/ >>.git/info/exclude
  grep -qx '/.gl/' .git/info/exclude 2>/dev/null || echo /.gl/ >>.git/info/exclude
  mkdir -p .gl /tmp/amd64/partial "$P/node_modules/webgpu/dist/linux-x64"
  o='-oAPT::Architecture=amd64 -oAPT::Architectures=amd64 -oDir::State::Lists=/tmp/amd64'
  ls .gl/libvulkan1_*.deb >/dev/null 2>&1 || { apt-get $o update && (cd .gl && apt-get $o download libvulkan1 libegl1 libglvnd0 libopengl0 libgl1 libglx0 libgles2); }
  for s in wgsl-h100 wgsl-decode; do
    node_modules/.bin/esbuild scripts/device/$s.ts --bundle --platform=node --format=esm --target=node20 --external:webgpu --outfile=$P/$s.mjs
  done
  cp src/graph/proto/onnx.proto $P/ # read beside the bundle (the ONNX writer of ort-webgpu-gemv.ts)
  c=$(git rev-parse --short HEAD); [[ -z $(git status --porcelain --untracked-files=no) ]] || c="$c with uncommitted changes"
  echo "$c" >$P/commit
  cp node_modules/webgpu/index.js node_modules/webgpu/package.json $P/node_modules/webgpu/
  # onnxruntime-node (its WebGPU EP) for the side-by-side MatMulNBits figures: JS as is, the library xz'd
  O=$P/ort/node_modules; rm -rf $O; mkdir -p $O
  cp -r node_modules/onnxruntime-common $O/
  mkdir -p $O/onnxruntime-node && cp -r node_modules/onnxruntime-node/package.json node_modules/onnxruntime-node/dist $O/onnxruntime-node/
  mkdir -p $O/onnxruntime-node/bin/napi-v6/linux/x64
  cp node_modules/onnxruntime-node/bin/napi-v6/linux/x64/onnxruntime_binding.node $O/onnxruntime-node/bin/napi-v6/linux/x64/
  xz -T2 -9 -c node_modules/onnxruntime-node/bin/napi-v6/linux/x64/libonnxruntime.so.1 >$O/onnxruntime-node/bin/napi-v6/linux/x64/libonnxruntime.so.1.xz
  [[ -f $P/node.xz ]] || xz -T1 -9 -c "$(command -v node)" >$P/node.xz
  [[ -f $P/node_modules/webgpu/dist/linux-x64/dawn.node.xz ]] || xz -T1 -9 -c node_modules/webgpu/dist/linux-x64/dawn.node >$P/node_modules/webgpu/dist/linux-x64/dawn.node.xz
  du -sh .gl $P
  exit 0
fi
OUT=${OUT:-/tmp/wgsl-out}
mkdir -p "$OUT"
for f in .gl/*.deb; do dpkg -x "$f" /; done
ldconfig
unxz() { python3 -c 'import lzma,shutil,sys; shutil.copyfileobj(lzma.open(sys.argv[1]), open(sys.argv[2], "wb"))' "$1" "$2"; }
mkdir -p /tmp/wgsl/node_modules/webgpu/dist/linux-x64
unxz $P/node.xz /tmp/wgsl/node && chmod +x /tmp/wgsl/node
unxz $P/node_modules/webgpu/dist/linux-x64/dawn.node.xz /tmp/wgsl/node_modules/webgpu/dist/linux-x64/dawn.node
cp $P/node_modules/webgpu/index.js $P/node_modules/webgpu/package.json /tmp/wgsl/node_modules/webgpu/
cp $P/*.mjs $P/onnx.proto /tmp/wgsl/
if [[ -d $P/ort ]]; then
  cp -r $P/ort /tmp/wgsl/
  X=/tmp/wgsl/ort/node_modules/onnxruntime-node/bin/napi-v6/linux/x64/libonnxruntime.so.1
  unxz $X.xz $X && rm $X.xz
fi
export TWLAC_COMMIT="$(cat $P/commit)" TWLAC_WEBGPU_BACKEND=vulkan
icd=/usr/local/nvidia/share/vulkan/icd.d/nvidia_icd.json
ls /usr/share/vulkan/icd.d /etc/vulkan/icd.d /usr/local/nvidia/share/vulkan/icd.d 2>&1 || true
if [[ -f $icd ]]; then export VK_DRIVER_FILES=$icd; fi
echo "VK_DRIVER_FILES=${VK_DRIVER_FILES:-}; $(ldconfig -p | grep -c libvulkan) libvulkan entries; node $(/tmp/wgsl/node --version)"
nvidia-smi --query-gpu=name,driver_version,clocks.max.sm,clocks.max.memory,memory.total --format=csv | tee "$OUT/nvidia-smi.txt"
S=${WGSL_SCRIPT:-wgsl-h100}
cd /tmp/wgsl && timeout "${WGSL_TIMEOUT:-150}" ./node --max-old-space-size=16000 $S.mjs --out "$OUT/$S.json" "$@" 2>&1 | tee "$OUT/$S.log"
