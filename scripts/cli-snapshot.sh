#!/usr/bin/env bash
# Records what the sprig CLI prints for a fixed set of commands (no GPU
# needed): stdout, stderr and the exit code of each, one file per command,
# with times and other run-dependent numbers masked. Two snapshots of two
# builds compared with `diff -r` show whether a change altered the CLI's
# behaviour:
#   bash scripts/cli-snapshot.sh ./build/sprig /tmp/before    # on the old build
#   bash scripts/cli-snapshot.sh ./build/sprig /tmp/after     # on the new one
#   diff -r /tmp/before /tmp/after
set -uo pipefail
cd "$(dirname "$0")/.."
[ $# -eq 2 ] || { sed -n '2,10p' "$0"; exit 2; }
sprig=$(realpath "$1")
out=$2
rm -rf "$out" && mkdir -p "$out"
fx=tests/fixtures
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
export SPRIG_CACHE_DIR=$tmp/cache SPRIG_DB_DIR=$tmp/db

# Masks what legitimately differs between runs: timings, rates, temp paths.
mask() {
    sed -E -e "s#$tmp#TMP#g" \
        -e 's/"(compile_ms|prompt_seconds|decode_seconds|tokens_per_second|ms|seconds)":([[:space:]]*)[0-9.e+-]+/"\1":\2N/g' \
        -e 's/[0-9]+(\.[0-9]+)? (ms|s|us|tokens\/s)\b/N \2/g' -e 's/(cache_hit"?:? ?)(true|false|[01])/\1X/g'
}

n=0
all_numbers=0
snap() { # NAME ARGS...: runs sprig ARGS
    local name=$1
    shift
    n=$((n + 1))
    local f
    f=$(printf '%s/%03d_%s' "$out" "$n" "$name")
    { "$sprig" "$@" 2>"$f.err"; echo "exit $?" >"$f.rc"; } | mask >"$f.out"
    # timing tables: every decimal number
    [ $all_numbers = 0 ] || sed -i -E 's/[0-9]+\.[0-9]+/N/g' "$f.out"
    mask <"$f.err" >"$f.err.m" && mv "$f.err.m" "$f.err"
}

snap top-noargs
snap top-help --help
snap top-version --version
for c in gen compile info families models synth bench-e2e run tune bench; do snap "help-$c" "$c" --help; done
snap families families
snap models models
for fam in dense_gemv router gather_upgate gather_down fused_mlp rmsnorm attention_decode; do
    snap "gen-$fam" gen --family "$fam" --model llama2-7b
    snap "gen-json-$fam" gen --family "$fam" --model llama2-7b --json
done
snap gen-gemm gen --family gather_gemm --model llama2-7b --batch 16 --param stage=down
snap gen-bf16 gen --family gather_down --shape 3272,11008 --dtype bf16 --param layout=n --g 16
snap gen-bad-family gen --family nope --model llama2-7b
snap gen-bad-shape gen --family dense_gemv --shape 3276,11008
snap gen-bad-param gen --family dense_gemv --model llama2-7b --param threads=7
snap gen-unknown-param gen --family dense_gemv --model llama2-7b --param nope=1
snap compile-json compile --family dense_gemv --model llama2-7b --arch sm_90 --json
snap compile-table compile --family router --model llama2-7b --arch sm_80
snap compile-bad-arch compile --family router --model llama2-7b --arch sm_11
snap info info
snap tune-list tune --model llama2-7b --list
snap tune-list-json tune --model llama2-7b --list --json --batch 1,8 --sparsity 0,50
snap tune-dir-list tune --model-dir $fx/sliced/tiny-sliced-25-lte --list
snap tune-dir-json tune --model-dir $fx/models/tiny-llama2-lte --list --json
snap tune-nogpu tune --model llama2-7b --family router --batch 1 --sparsity 50
snap bench-nogpu bench --model llama2-7b
snap run-json run $fx/models/tiny-llama2 --tokens 47,580,153,246,323,851,279,743,220,185,654,279 --max-tokens 8 --json
snap run-text run $fx/models/tiny-llama3 --prompt "Hello world" --max-tokens 6
snap run-lte run $fx/models/tiny-llama2-lte --tokens 1,2,3,4 --max-tokens 5 --json
snap run-thr run $fx/models/tiny-llama2 --tokens 1,2,3,4,5,6 --max-tokens 5 --sparsity 0.5 --json
snap run-sliced run $fx/sliced/tiny-sliced-25-lte --tokens 1,2,3,4 --max-tokens 5 --json
snap run-cuda run $fx/models/tiny-llama2 --tokens 1,2,3 --backend cuda
snap run-missing run /nonexistent --tokens 1
snap run-noargs run
all_numbers=1 snap e2e-cpu bench-e2e $fx/models/tiny-llama2-lte $fx/sliced/tiny-sliced-25-lte --backend cpu --tokens 2 --warmup 1
snap e2e-cuda bench-e2e $fx/models/tiny-llama2-lte
snap synth synth "$tmp/synth" --lte 16 --slice 0.25
(cd "$tmp/synth" && ls -l --time-style=+ . | awk '{print $5, $NF}' && sha256sum ./*) >"$out/synth-files.txt" 2>&1
snap synth-run run "$tmp/synth" --tokens 1,2,3 --max-tokens 4 --json
echo "$n commands recorded in $out"
