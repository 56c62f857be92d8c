#!/usr/bin/env bash
# Bad input to the command-line tool (issue 11's audit repros): each case must
# end with the exit status given, one line on stderr where it is a usage error,
# never a signal (a crash), never a hang, and nothing of the user's lost.
# usage: cli_bad_input.sh SPRIG FIXTURES_DIR SPRIG_EMU
# (SPRIG_EMU: the tool on the CPU emulator, tests/sprig_emu_cli.c, for the
# commands that need a device before they read their input)
set -u
sprig=$1
models=$2/models
sprig_emu=$3
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
failures=0

# expect RC LINES CMD...: exit status RC (with LINES lines on stderr; "-" for any)
expect() {
    local want=$1 lines=$2
    shift 2
    timeout 60 "$@" >"$tmp/out" 2>"$tmp/err"
    local rc=$? n
    n=$(wc -l <"$tmp/err")
    if [ $rc -ne "$want" ] || { [ "$lines" != - ] && [ "$n" -ne "$lines" ]; }; then
        echo "FAIL: $* -> exit $rc (want $want), $n stderr lines (want $lines):" >&2
        head -5 "$tmp/err" >&2
        failures=$((failures + 1))
    else
        echo "ok: exit $rc: $*: $(head -1 "$tmp/err")"
    fi
}

m=$models/tiny-llama2
# numbers that are not numbers, or out of range: a one-line usage error
expect 2 1 "$sprig" run "$m" --prompt hi --max-tokens abc
expect 2 1 "$sprig" run "$m" --prompt hi --sparsity nan
expect 2 1 "$sprig" run "$m" --prompt hi --max-tokens 2147483647 --context 16
expect 2 1 "$sprig" run "$m" --prompt hi --temperature -1
expect 2 1 "$sprig" bench-e2e "$m" --backend cpu --tokens 2147483647
expect 2 1 "$sprig" bench-e2e "$m" --backend cpu --sparsity inf
expect 2 1 "$sprig" gen --shape 99999999999,8 --family dense_gemv
expect 2 1 "$sprig" gen --shape 4096,x --family dense_gemv
expect 2 1 "$sprig" synth "$tmp/s0" --layers 0
expect 2 1 "$sprig" synth "$tmp/s1" --layers abc
expect 2 1 "$sprig" synth "$tmp/s2" --lte-sparsity nan
# a request some families refuse: skipped with a note each, never a crash
expect 0 - "$sprig" compile --model llama2-7b --batch 9

# synth never writes over a folder that holds files, unless told to
mkdir -p "$tmp/model"
echo '{"mine": true}' >"$tmp/model/config.json"
expect 1 1 "$sprig" synth "$tmp/model" --config-only
if ! grep -q '"mine"' "$tmp/model/config.json"; then
    echo "FAIL: synth overwrote an existing config.json" >&2
    failures=$((failures + 1))
fi
expect 0 - "$sprig" synth "$tmp/model" --config-only --force
expect 0 - "$sprig" synth "$tmp/new" --config-only

# --template-dir: a missing folder is an error (not a silent fallback), and a
# template cannot read outside its folder, loop or allocate without end
expect 1 1 "$sprig" gen --family dense_gemv --model llama2-7b --template-dir "$tmp/no-such-folder"
mkdir -p "$tmp/t-escape" "$tmp/t-loop" "$tmp/t-alloc"
echo '{% include("templates/../../../../etc/hostname") %}' >"$tmp/t-escape/dense_gemv.cu.lua"
echo '{% while true do end %}' >"$tmp/t-loop/dense_gemv.cu.lua"
echo '{% local t = {} for i = 1, 1e9 do t[i] = string.rep("x", 100000) .. i end %}' >"$tmp/t-alloc/dense_gemv.cu.lua"
for t in escape loop alloc; do
    expect 1 1 "$sprig" gen --family dense_gemv --model llama2-7b --template-dir "$tmp/t-$t"
done
if [ -r /etc/hostname ] && grep -qF "$(cat /etc/hostname)" "$tmp/out" 2>/dev/null; then
    echo "FAIL: a template read /etc/hostname" >&2
    failures=$((failures + 1))
fi

# a FIFO where a file is looked for: an error naming it, not a hang
mkdir -p "$tmp/fifo"
cp "$m"/* "$tmp/fifo/"
mkfifo "$tmp/fifo/x_0.5.json"
expect 1 - "$sprig" run "$tmp/fifo" --tokens 1,2 --max-tokens 2

# a FIFO and a folder named *.json in the tuning-database folder: each skipped
# with a note naming it, and the bench runs (opening the FIFO used to wait for
# a writer for ever); bench needs a device, hence the emulator
mkdir -p "$tmp/db/other.json"
mkfifo "$tmp/db/fifo.json"
expect 0 - timeout 20 "$sprig_emu" bench --family dense_gemv --shape 64,64 --batch 1 --sparsity 0 --reps 1 \
    --read-gib 0.001 --db-dir "$tmp/db"
for f in fifo.json other.json; do
    if ! grep -qF "'$tmp/db/$f' is not a regular file" "$tmp/err"; then
        echo "FAIL: bench did not name $f in the database folder as skipped" >&2
        failures=$((failures + 1))
    fi
done

[ $failures -eq 0 ] && echo "cli_bad_input: all cases passed" || echo "cli_bad_input: $failures failed" >&2
exit $((failures > 0))
