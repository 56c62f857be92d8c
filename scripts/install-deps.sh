#!/usr/bin/env bash
# Installs what sprig builds against, from Debian's packages. The CUDA toolkit
# (nvcc, NVRTC, cuBLAS) is expected at /usr/local/cuda or on PATH already.
set -euo pipefail
pkgs=(cmake make gcc g++ pkg-config liblua5.4-dev libcjson-dev libxxhash-dev libpcre2-dev libutf8proc-dev clang libclang-rt-14-dev)
# tools/lte and its test (lte_train) need torch alone: Debian's 1.13 (about 230
# packages, 830 MB, under 2 minutes) instead of PyPI's CUDA wheels. Its BLAS is
# whichever libblas.so.3 is installed; with the reference BLAS the test takes
# 4x longer (160 s), so OpenBLAS (OpenMP build: it follows torch's thread count).
pkgs+=(python3-torch libopenblas0-openmp)
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

# NVIDIA's disassembler, for sprig analyze's SASS checks (docs/perf-model.md).
# The toolkit here ships without it; PyPI's nvidia-cuda-nvdisasm wheel carries
# the same binary. It goes into sprig's data folder, where sprig looks for it.
tools="${XDG_DATA_HOME:-$HOME/.local/share}/sprig/tools"
if ! command -v nvdisasm >/dev/null 2>&1 && [ ! -x /usr/local/cuda/bin/nvdisasm ] && [ ! -x "$tools/nvdisasm" ]; then
  wheels=$(mktemp -d)
  trap 'rm -rf "$wheels"' EXIT
  if ! python3 -m pip download -q --no-deps --only-binary=:all: -d "$wheels" 'nvidia-cuda-nvdisasm>=13,<14'; then
    echo "install-deps: could not download nvidia-cuda-nvdisasm from PyPI (sprig analyze needs it for its SASS checks)" >&2
    exit 1
  fi
  mkdir -p "$tools"
  python3 - "$wheels" "$tools" <<'PY'
import glob, os, sys, zipfile
wheel = glob.glob(os.path.join(sys.argv[1], "*.whl"))[0]
with zipfile.ZipFile(wheel) as z:
    name = next(n for n in z.namelist() if n.endswith("/bin/nvdisasm"))
    out = os.path.join(sys.argv[2], "nvdisasm")
    with z.open(name) as src, open(out + ".part", "wb") as dst:
        dst.write(src.read())
    os.chmod(out + ".part", 0o755)
    os.replace(out + ".part", out)
PY
  echo "install-deps: nvdisasm installed in $tools"
fi
