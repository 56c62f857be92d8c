#!/usr/bin/env bash
# The one prepared GPU check: everything a session lent a GPU measures first,
# in one call of the device tool (10 minutes of device time, build included),
# each step time-boxed and the whole run ending by GPU_CHECK_SECONDS (570). Results, the static
# model's predictions beside the measurements, go to $OUT in 8 files:
#
#   check.log          every step's log, then a summary table (measured vs predicted)
#   tests.txt          ctest -L gpu (the GPU tests)
#   sanitizer.txt      compute-sanitizer memcheck and racecheck, one case per family
#   bench-defaults.json  sprig bench --model llama2-7b at the defaults (no tuning) vs cuBLAS and the roof
#   tune.json          sprig tune --model llama2-7b as a user runs it (every batch and
#                      sparsity: 63 keys, estimated at 90 s; stopped at 120 s), which the
#                      issue asks to finish in 3 minutes of GPU time; the decode step's
#                      qkv, o_proj and lm_head GEMVs are tuned too (to the log, 40 s)
#   bench-tuned.json   sprig bench again with what the tune found
#   e2e.json           sprig bench-e2e on a 7B-shaped LTE folder (dense and LTE rows), with
#                      --profile: each row's kernels timed one by one beside their predictions
#   hf.json            tools/hf_decode_bench.py on the same folder, eager and with a static
#                      cache + torch.compile (skipped without torch)
#
# On the device tool (prepare once here: scripts/device-deps.sh; build/ is too
# large to carry, so the script builds the tool and the GPU tests there, ~1-2 min):
#   carry [".device-deps"], command ". .device-deps/env.sh && bash scripts/gpu-check.sh"
# then commit $OUT's files under bench/results/<date>_<gpu>/.
#
# --dry-run runs the same plumbing here without a GPU: the commands on the CPU
# emulator (build/tests/sprig_emu_cli) at a tiny shape and the tests' tiny
# model folders; its timings mean nothing. CI runs it (ctest gpu_check_dry_run).
#
# usage: scripts/gpu-check.sh [--dry-run] [--out DIR] [--build-dir DIR]
set -uo pipefail
cd "$(dirname "$0")/.."

DRY=0
OUTDIR=${OUT:-}
BUILD=build
while [ $# -gt 0 ]; do
    case $1 in
    --dry-run) DRY=1 ;;
    --out) OUTDIR=$2; shift ;;
    --build-dir) BUILD=$2; shift ;;
    -h | --help) sed -n '2,25p' "$0"; exit 0 ;;
    *) echo "gpu-check.sh: unknown option '$1' (--dry-run, --out DIR, --build-dir DIR)" >&2; exit 2 ;;
    esac
    shift
done
[ -n "$OUTDIR" ] || OUTDIR=bench/results/$(date -u +%Y-%m-%d)_check
mkdir -p "$OUTDIR"
OUTDIR=$(cd "$OUTDIR" && pwd)
LOG=$OUTDIR/check.log
: >"$LOG"
T0=$(date +%s)
DEADLINE=${GPU_CHECK_SECONDS:-570} # the whole run, inside one 600-second device call
log() { echo "== $(( $(date +%s) - T0 ))s $*" | tee -a "$LOG"; }
# the seconds a step may take: its own limit, cut to what is left before the deadline
budget() {
    local left=$((DEADLINE - ($(date +%s) - T0) - 10))
    [ "$1" -lt "$left" ] && echo "$1" || echo "$left"
}
# step_to FILE NAME SECONDS CMD...: runs CMD with a time limit, its stdout to FILE
# and its stderr to the log; FILE "-" sends stdout to the log too
step_to() {
    local file=$1 name=$2 limit
    limit=$(budget "$3")
    shift 3
    [ "$limit" -ge 10 ] || { log "$name: skipped, no time left"; return 0; }
    log "$name (at most ${limit}s)"
    if [ "$file" = - ]; then
        timeout --kill-after=5 "$limit" "$@" >>"$LOG" 2>&1
    else
        timeout --kill-after=5 "$limit" "$@" >"$file" 2>>"$LOG"
    fi
    local rc=$?
    [ $rc -eq 124 ] && log "$name: stopped at its time limit" || log "$name: exit $rc"
    return 0
}
# step NAME SECONDS CMD...: the same, all of CMD's output appended to the log
step() { step_to - "$@"; }

if [ $DRY = 1 ]; then
    SPRIG=$BUILD/tests/sprig_emu_cli
    SHAPE=(--shape 64,128 --g 16)
    BENCH=(--batch 1 --sparsity 0,50 --reps 1 --read-gib 0.001)
    TUNE=(--batch 1 --sparsity 0 --family dense_gemv --budget 5)
    MODEL_LTE=tests/fixtures/models/tiny-llama2-lte
    E2E=(--tokens 2 --warmup 0 --graph on --no-roof --profile)
    TUNE_S=120
    TUNE_MODEL=(--budget 2)
    TUNE_MODEL_S=90
    export SPRIG_DB_DIR=$OUTDIR/.db
else
    SPRIG=$BUILD/sprig
    SHAPE=(--model llama2-7b)
    BENCH=(--batch 1 --sparsity 0,50 --reps 20)
    TUNE=()   # the defaults: the full tune a user runs, timed
    MODEL_LTE=${MODELS:-/tmp/sprig-models}/llama2-7b-lte
    E2E=(--tokens 32 --warmup 4 --graph on --profile)
    TUNE_S=150
    TUNE_MODEL=(--budget 6)
    TUNE_MODEL_S=40
    export SPRIG_DB_DIR=$OUTDIR/.db   # a fresh database: "defaults" means no tuning
    export PATH="$PATH:/usr/local/cuda/bin"
fi
rm -rf "$SPRIG_DB_DIR"
mkdir -p "$SPRIG_DB_DIR"

log "gpu-check $([ $DRY = 1 ] && echo '--dry-run (CPU emulator; timings mean nothing)') in $OUTDIR"
{ nvidia-smi 2>/dev/null || echo "no nvidia-smi"; } >>"$LOG"

# 1. binaries: carried, else built here (Release; the tool and the GPU tests only)
GPU_TESTS="test_gpu_dense test_gpu_router test_gpu_gather test_gpu_fused test_gpu_gemm test_gpu_mlp_pipeline
           test_gpu_device test_gpu_model"
if [ ! -x "$SPRIG" ]; then
    step build 120 bash -c "cmake -S . -B '$BUILD' -DCMAKE_BUILD_TYPE=Release -DSPRIG_FUZZ=OFF >/dev/null &&
        cmake --build '$BUILD' -j\$(nproc) --target sprig_cli $(echo $GPU_TESTS)"
fi
[ -x "$SPRIG" ] || { log "no $SPRIG: cannot go on"; exit 1; }
"$SPRIG" info >>"$LOG" 2>&1

# 2. the GPU tests (they skip, exit 77, without a GPU)
# (the dry run lists them only: it may itself run under ctest, in the same build folder)
if [ $DRY = 1 ]; then
    step tests 30 bash -c "ctest --test-dir '$BUILD' -N -L gpu >'$OUTDIR/tests.txt' 2>&1"
else
    step tests 180 bash -c "ctest --test-dir '$BUILD' -L gpu --output-on-failure >'$OUTDIR/tests.txt' 2>&1"
fi

# 3. compute-sanitizer, one small case per family (sprig bench --family at a tiny shape)
sanitize() {
    if ! command -v compute-sanitizer >/dev/null 2>&1 || [ $DRY = 1 ]; then
        echo "compute-sanitizer: skipped ($([ $DRY = 1 ] && echo 'dry run' || echo 'not installed'))"
        return 0
    fi
    for fam in dense_gemv router gather_upgate gather_down fused_mlp gather_gemm swiglu rmsnorm attention_decode; do
        for tool in memcheck racecheck; do
            echo "--- $tool $fam"
            compute-sanitizer --tool $tool --error-exitcode 3 "$SPRIG" bench --shape 512,1024 --g 16 --family $fam \
                --batch 8 --sparsity 50 --reps 1 2>&1 | grep -E "ERROR SUMMARY|RACECHECK SUMMARY|Error|refused|not supported" | head -5
            echo "exit ${PIPESTATUS[0]}"
        done
    done
}
export -f sanitize
export SPRIG DRY
step sanitizer 40 bash -c "sanitize >'$OUTDIR/sanitizer.txt' 2>&1"

# 4. bench at the defaults, 5. a pruned tune, 6. bench with what it found
step bench-defaults 45 "$SPRIG" bench "${SHAPE[@]}" "${BENCH[@]}" --json "$OUTDIR/bench-defaults.json"
step_to "$OUTDIR/tune.json" tune "$TUNE_S" "$SPRIG" tune "${SHAPE[@]}" "${TUNE[@]}" --total-budget $((TUNE_S - 30)) \
    --json
step bench-tuned 45 "$SPRIG" bench "${SHAPE[@]}" "${BENCH[@]}" --json "$OUTDIR/bench-tuned.json"

# 7. end to end: a 7B-shaped LTE folder (written once), dense and LTE rows, predictions beside
if [ $DRY = 0 ] && [ ! -e "$MODEL_LTE/config.json" ]; then
    mkdir -p "$(dirname "$MODEL_LTE")"
    step synth 60 "$SPRIG" synth "$MODEL_LTE" --model llama2-7b --lte 32 --lte-sparsity 0.5
fi
# 6b. the decode step's other GEMVs (qkv, o_proj, lm_head: a third of a token's bytes),
# which the MLP tune above does not cover, so the rows below run tuned end to end
step tune-model "$TUNE_MODEL_S" "$SPRIG" tune --model-dir "$MODEL_LTE" --family dense_gemv --sparsity 0 "${TUNE_MODEL[@]}" \
    --total-budget $((TUNE_MODEL_S - 15))
step bench-e2e 150 "$SPRIG" bench-e2e "$MODEL_LTE" --backend cuda "${E2E[@]}" --json "$OUTDIR/e2e.json"

# 7b. programmatic dependent launch is the default on sm_90+ (the rows above, and every
# GPU test); the same decode rows and the model test without it (SPRIG_PDL=0), to the log:
# what it saves, and that both are right
E2E_ROWS=()
for a in "${E2E[@]}"; do [ "$a" = --profile ] || E2E_ROWS+=("$a"); done
step bench-e2e-nopdl 60 env SPRIG_PDL=0 "$SPRIG" bench-e2e "$MODEL_LTE" --backend cuda "${E2E_ROWS[@]}"
if [ $DRY = 0 ]; then
    step test-model-nopdl 60 env SPRIG_PDL=0 "$BUILD/tests/test_gpu_model" tests/fixtures/models
fi
# 7c. LTE's router as a kernel of its own (SPRIG_FUSED_ROUTER=0), the pipeline before it was
# folded into gather_upgate: the same rows, to the log, for the one against the other
step bench-e2e-router 45 env SPRIG_FUSED_ROUTER=0 "$SPRIG" bench-e2e "$MODEL_LTE" --backend cuda "${E2E_ROWS[@]}"

# 8. Hugging Face transformers on the same folder, same card (skipped without torch)
if [ $DRY = 0 ] && python3 -c "import torch, transformers" 2>/dev/null; then
    step hf 150 python3 tools/hf_decode_bench.py "$MODEL_LTE" --attn sdpa --tokens 16 --compile --json "$OUTDIR/hf.json"
else
    echo '{"skipped": "no torch/transformers here"}' >"$OUTDIR/hf.json"
    log "hf: skipped (no torch/transformers here)"
fi

# the summary: each measurement beside the static model's prediction
summary() {
    python3 - "$OUTDIR" <<'PY'
import json, os, sys
out = sys.argv[1]
def load(name):
    try:
        with open(os.path.join(out, name)) as f:
            return json.load(f)
    except (OSError, ValueError):
        return None
print(f"{'what':34} {'measured':>10} {'predicted':>10} {'meas/pred':>9} {'of roof':>8}")
for name in ("bench-defaults.json", "bench-tuned.json"):
    b = load(name)
    for r in (b or {}).get("rows", []):
        m, p, roof = r.get("ours_us"), r.get("predicted_us"), r.get("roof_us")
        what = f"{name.split('.')[0]} b={r['batch']} s={r['sparsity']:g}%"
        if m:
            print(f"{what:34} {m:10.2f} {p or 0:10.2f} {(m / p if p else 0):9.3f} {(roof / m if roof else 0):8.3f}  us")
e = load("e2e.json")
for r in (e or {}).get("rows", []):
    m, p, roof = r.get("ms_per_token"), r.get("predicted_ms"), r.get("roof_ms")
    print(f"{'e2e ' + r['mode']:34} {m:10.3f} {p or 0:10.3f} {(m / p if p else 0):9.3f} {(roof / m if roof else 0):8.3f}  ms/token")
for r in (load("hf.json") or {}).get("rows", []):
    what = "hf " + r["attn"] + (" static+compile" if r.get("compiled") else " eager")
    print(f"{what:34} {r['ms_per_token']:10.3f} {'-':>10} {'-':>9} {'-':>8}  ms/token")
PY
}
log "summary"
summary >>"$LOG" 2>&1 || log "summary: python3 failed"
rm -rf "$SPRIG_DB_DIR"
log "done: $(ls "$OUTDIR" | wc -l) files in $OUTDIR"
