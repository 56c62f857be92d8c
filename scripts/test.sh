#!/usr/bin/env bash
# Builds sprig and runs every test. GPU tests (label gpu) report "Skipped"
# where no GPU and driver are present; everything else must pass.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/build.sh
ctest --test-dir build --output-on-failure -j"$(nproc)"
