#!/usr/bin/env bash
# The measurements a session with a GPU makes, in stages that each fit one
# call of the device tool (10 minutes); run them in order, or `all`:
#
#   build     configure and build (Release) into ./build
#   test      every test, the `gpu`-labelled ones included
#   tune      sprig tune --model llama2-7b (batch 1, 8, 32; sparsity 0-90%)
#             into $RESULTS/db, resuming where an earlier call stopped
#   bench     sprig bench --model llama2-7b against cuBLAS and the read roof,
#             then tools/torch_mlp_bench.py (PyTorch's dense and gather paths)
#   synth     two 7B-shaped synthetic folders: LTE, and SliceGPT 25% + LTE
#   tune-e2e  sprig tune --model-dir on both (every kernel their decode looks up)
#   e2e       bench-e2e on both in one run: dense, LTE, sliced, sliced + LTE
#             rows, with and without the CUDA graph
#   hf        transformers (eager and sdpa) on the LTE folder (dense model)
#
# Results go to $RESULTS (default bench/results/<date>_<gpu>), which on the
# device tool should lie under $OUT so that they come back. Prepare the
# dependencies once here (scripts/device-deps.sh), carry ".device-deps", run:
#   . .device-deps/env.sh && RESULTS=$OUT/r bash scripts/gpu-session.sh build test
# The synthetic models (about 25 GB) go to $MODELS (default /tmp/sprig-models).
set -euo pipefail
cd "$(dirname "$0")/.."
export PATH="$PATH:/usr/local/cuda/bin"

gpu_name() {
    nvidia-smi --query-gpu=name --format=csv,noheader 2>/dev/null | head -1 | tr -c 'A-Za-z0-9.\n-' '_' || echo unknown
}
RESULTS=${RESULTS:-bench/results/$(date -u +%Y-%m-%d)_$(gpu_name)}
MODELS=${MODELS:-/tmp/sprig-models}
export SPRIG_DB_DIR=${SPRIG_DB_DIR:-$RESULTS/db}
log() { mkdir -p "$RESULTS" && echo "== $(date -u +%H:%M:%S) $*" | tee -a "$RESULTS/session.log"; }

stage_build() {
    log "build"
    cmake -S . -B build -DCMAKE_BUILD_TYPE=Release >/dev/null
    cmake --build build -j"$(nproc)" 2>&1 | tail -3
}

stage_test() {
    log "test"
    nvidia-smi | tee "$RESULTS/nvidia-smi.txt" >/dev/null || true
    # every test; the gpu ones are the point here
    ctest --test-dir build --output-on-failure -j4 2>&1 | tee "$RESULTS/ctest.txt" | tail -25
}

stage_tune() {
    log "tune into $SPRIG_DB_DIR"
    # no new key after 8 minutes: a later call resumes (finished keys are skipped)
    ./build/sprig tune --model llama2-7b --total-budget 480 --json >"$RESULTS/tune-llama2-7b.json" \
        2>"$RESULTS/tune-llama2-7b.log" || log "tune: some keys not tuned yet (run the stage again)"
    tail -5 "$RESULTS/tune-llama2-7b.log"
}

stage_bench() {
    log "bench"
    ./build/sprig bench --model llama2-7b --out-dir "$RESULTS" 2>&1 | tee "$RESULTS/bench-llama2-7b.txt" | tail -40
    log "bench: PyTorch baselines (cuBLAS 3-call, index_select gather, prepacked) on the same card"
    python3 tools/torch_mlp_bench.py --d 4096 --f 11008 --g 32 --sparsity 0 50 75 90 \
        --json "$RESULTS/torch-mlp-llama2-7b.json" 2>&1 | tee "$RESULTS/torch-mlp-llama2-7b.txt"
}

synth() { # DIR ARGS...: writes the folder once
    local dir=$1
    shift
    [ -e "$dir/config.json" ] || ./build/sprig synth "$dir" --model llama2-7b "$@"
}

stage_synth() {
    log "synth: 7B-shaped models in $MODELS"
    mkdir -p "$MODELS"
    synth "$MODELS/llama2-7b-lte" --lte 32 --lte-sparsity 0.5
    synth "$MODELS/llama2-7b-sliced25-lte" --slice 0.25 --lte 32 --lte-sparsity 0.5
}

stage_tune_e2e() {
    log "tune-e2e: every kernel the two folders' decode steps look up (batch 1, sparsity 0 and 50)"
    for m in llama2-7b-lte llama2-7b-sliced25-lte; do
        ./build/sprig tune --model-dir "$MODELS/$m" --sparsity 0,50 --total-budget 240 --json \
            >"$RESULTS/tune-$m.json" 2>"$RESULTS/tune-$m.log" || log "tune-e2e: $m not finished (run again)"
        tail -3 "$RESULTS/tune-$m.log"
    done
}

stage_e2e() {
    log "e2e: bench-e2e (rows: dense, LTE, sliced, sliced + LTE; graph on and off)"
    ./build/sprig bench-e2e "$MODELS/llama2-7b-lte" "$MODELS/llama2-7b-sliced25-lte" --graph both --tokens 64 \
        --json "$RESULTS/e2e-llama2-7b.json" 2>&1 | tee "$RESULTS/e2e-llama2-7b.txt"
}

stage_hf() {
    log "hf: Hugging Face transformers on the same (dense) folder, same card, same session"
    python3 tools/hf_decode_bench.py "$MODELS/llama2-7b-lte" --attn eager sdpa --tokens 32 \
        --json "$RESULTS/hf-llama2-7b.json" 2>&1 | grep -v -i warn | tee "$RESULTS/hf-llama2-7b.txt"
}

[ $# -gt 0 ] || { sed -n '2,21p' "$0"; exit 2; }
for stage in "$@"; do
    case $stage in
    build | test | tune | bench | synth | e2e | hf) "stage_$stage" ;;
    tune-e2e) stage_tune_e2e ;;
    all) stage_build && stage_test && stage_tune && stage_bench && stage_synth && stage_tune_e2e && stage_e2e &&
        stage_hf ;;
    *) echo "gpu-session.sh: unknown stage '$stage' (build test tune bench synth tune-e2e e2e hf all)" >&2
        exit 2 ;;
    esac
done
