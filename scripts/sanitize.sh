#!/usr/bin/env bash
# Builds sprig with AddressSanitizer and UndefinedBehaviorSanitizer into
# build-asan/ and runs the CPU tests there (label cpu: the emulator's kernels,
# the parsers, the CLI, gpu-check.sh's dry run). Any leak, invalid access or
# undefined behaviour fails the run (-fno-sanitize-recover, LeakSanitizer on).
# The realmodel tests (a 135M-parameter model on the CPU) and the family tests'
# reruns under the random schedule and at sm_80 (they check the kernels, which
# the plain run already does, not the host code) run in the plain build only:
# under AddressSanitizer they would take most of CI's time.
# scripts/test.sh runs it after the plain build's tests.
set -euo pipefail
cd "$(dirname "$0")/.."
dir=${1:-build-asan}
cmake -S . -B "$dir" -DSPRIG_SANITIZE=address,undefined >/dev/null
cmake --build "$dir" -j"$(nproc)" 2>&1 | tail -1
export ASAN_OPTIONS=detect_leaks=1:abort_on_error=0:strict_string_checks=1
export UBSAN_OPTIONS=print_stacktrace=1
ctest --test-dir "$dir" -L cpu -LE realmodel -E "_random_schedule$|_sm80$" --output-on-failure -j"$(nproc)" --timeout 900
