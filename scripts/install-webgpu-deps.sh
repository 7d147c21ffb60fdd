#!/bin/sh
# Software WebGPU for the tests (Debian): Dawn (the `webgpu` npm package) runs on
#  - SwiftShader's Vulkan ICD, shipped by the `chromium` package (also the browser the
#    demo test drives through puppeteer-core), with the system Vulkan loader `libvulkan1`;
#  - Mesa llvmpipe over OpenGL (EGL surfaceless, WebGPU compatibility mode) as a fallback.
# src/runtime/webgpu/node.ts finds /usr/lib/chromium/vk_swiftshader_icd.json by itself.
set -eu
SUDO=""
if [ "$(id -u)" != 0 ]; then SUDO="sudo"; fi
export DEBIAN_FRONTEND=noninteractive
$SUDO apt-get update -qq
$SUDO apt-get install -y -qq --no-install-recommends chromium libvulkan1 libegl1 libegl-mesa0 libgl1-mesa-dri fonts-dejavu-core >/dev/null
test -f /usr/lib/chromium/vk_swiftshader_icd.json || { echo "install-webgpu-deps: chromium has no SwiftShader ICD at /usr/lib/chromium" >&2; exit 1; }
echo "install-webgpu-deps: chromium $(chromium --version 2>/dev/null | awk '{print $2}'), SwiftShader ICD and Mesa installed"
