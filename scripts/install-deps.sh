#!/usr/bin/env bash
# Installs what sprig builds against, from Debian's packages. The CUDA toolkit
# (nvcc, NVRTC, cuBLAS) is expected at /usr/local/cuda or on PATH already.
set -euo pipefail
pkgs=(cmake make gcc g++ pkg-config liblua5.4-dev libcjson-dev libxxhash-dev libpcre2-dev clang libclang-rt-14-dev)
missing=()
for p in "${pkgs[@]}"; do dpkg -s "$p" >/dev/null 2>&1 || missing+=("$p"); done
if ((${#missing[@]})); then
  SUDO=""; [ "$(id -u)" -eq 0 ] || SUDO=sudo
  $SUDO apt-get update -qq
  DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq "${missing[@]}"
fi
if ! command -v nvcc >/dev/null 2>&1 && [ ! -x /usr/local/cuda/bin/nvcc ]; then
  echo "install-deps: the CUDA toolkit (NVRTC, cuBLAS) was not found; install CUDA 12 or 13 first" >&2
  exit 1
fi
