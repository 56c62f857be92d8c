#!/usr/bin/env bash
# Builds sprig and runs every test. GPU tests (label gpu) report "Skipped"
# where no GPU and driver are present; everything else must pass. Then the CPU
# tests again under AddressSanitizer and UBSan (scripts/sanitize.sh; skip with
# SPRIG_NO_SANITIZE=1 for a quick local run).
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/build.sh
ctest --test-dir build --output-on-failure -j"$(nproc)"
[ "${SPRIG_NO_SANITIZE:-0}" = 1 ] || bash scripts/sanitize.sh
