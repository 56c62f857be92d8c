#!/usr/bin/env bash
# sprig perplexity against transformers (tests/fixtures/perplexity/expected.json,
# written by tools/perplexity_reference.py with the same windows): for each
# dense fixture model the same token and scored counts, and perplexity within
# 0.5%. Then the sparse modes report their sparsity (LTE routes, --sparsity
# reaches about its target, --dense reports none) and bad input is refused.
# usage: cli_perplexity.sh SPRIG SOURCE_DIR
set -u
SPRIG=$1
SRC=$2
FX=$SRC/tests/fixtures
TEXT=$FX/perplexity/text.txt
fails=0
fail() { echo "FAIL: $*"; fails=$((fails + 1)); }
num() { sed -n "s/.*\"$1\":\([-0-9.eE+]*\).*/\1/p"; }  # a number field of one JSON line

# expected.json: one object per model, one field per line
expected=$(tr -d ' \n' <"$FX/perplexity/expected.json" | sed 's/},{/}\n{/g; s/^\[//; s/\]$//')
n=0
while IFS= read -r e; do
  [ -n "$e" ] || continue
  model=$(echo "$e" | sed -n 's/.*"model":"\([^"]*\)".*/\1/p')
  ctx=$(echo "$e" | num context); stride=$(echo "$e" | num stride)
  out=$("$SPRIG" perplexity "$FX/models/$model" --text "$TEXT" --context "$ctx" --stride "$stride" --json 2>&1) ||
    { fail "$model: exit $?: $out"; continue; }
  for f in tokens scored; do
    [ "$(echo "$out" | num $f)" = "$(echo "$e" | num $f)" ] || fail "$model: $f $(echo "$out" | num $f), transformers $(echo "$e" | num $f)"
  done
  got=$(echo "$out" | num perplexity); want=$(echo "$e" | num perplexity)
  awk -v g="$got" -v w="$want" 'BEGIN { d = (g - w) / w; if (d < 0) d = -d; exit !(g > 0 && d <= 0.005) }' ||
    fail "$model: perplexity $got, transformers $want (more than 0.5% apart)"
  echo "$model: sprig $got, transformers $want"
  n=$((n + 1))
done <<<"$expected"
[ "$n" -ge 4 ] || fail "only $n models compared"

# LTE routes (sparsity > 0) unless --dense; thresholds reach about their target
lte=$("$SPRIG" perplexity "$FX/models/tiny-llama2-lte" --text "$TEXT" --context 32 --json) || fail "lte run: $lte"
dense=$("$SPRIG" perplexity "$FX/models/tiny-llama2-lte" --text "$TEXT" --context 32 --dense --json) || fail "dense run"
thr=$("$SPRIG" perplexity "$FX/models/tiny-llama2" --text "$TEXT" --context 32 --sparsity 0.5 --json) || fail "threshold run"
awk -v s="$(echo "$lte" | num mlp_sparsity)" 'BEGIN { exit !(s > 0.05) }' || fail "LTE sparsity: $lte"
awk -v s="$(echo "$dense" | num mlp_sparsity)" 'BEGIN { exit !(s == 0) }' || fail "--dense sparsity: $dense"
awk -v s="$(echo "$thr" | num mlp_sparsity)" 'BEGIN { exit !(s > 0.35 && s < 0.65) }' || fail "--sparsity 0.5 measured: $thr"
# the default stride is half the context: more windows than with stride = context
w1=$(echo "$dense" | num windows)
w2=$("$SPRIG" perplexity "$FX/models/tiny-llama2-lte" --text "$TEXT" --context 32 --stride 32 --dense --json | num windows)
[ "$w1" -gt "$w2" ] 2>/dev/null || fail "windows: default stride $w1, stride=context $w2"

# bad input: one line, non-zero exit
expect_fail() {
  local what=$1 needle=$2; shift 2
  local err
  err=$("$SPRIG" perplexity "$@" 2>&1 >/dev/null) && { fail "$what: exit 0"; return; }
  echo "$err" | grep -q -- "$needle" || fail "$what: no '$needle' in: $err"
}
expect_fail "no text" "--text FILE is required" "$FX/models/tiny-llama2"
expect_fail "missing text" "nope.txt" "$FX/models/tiny-llama2" --text "$FX/nope.txt"
expect_fail "context over the model" "at most the model" "$FX/models/tiny-llama2" --text "$TEXT" --context 100000
expect_fail "stride over the context" "at most the context" "$FX/models/tiny-llama2" --text "$TEXT" --context 16 --stride 17
expect_fail "dense and sparsity" "exclude each other" "$FX/models/tiny-llama2" --text "$TEXT" --dense --sparsity 0.5
expect_fail "bad number" "--context" "$FX/models/tiny-llama2" --text "$TEXT" --context abc
: >"${TMPDIR:-/tmp}/sprig_ppl_empty.txt"
expect_fail "empty text" "at least 2" "$FX/models/tiny-llama3" --text "${TMPDIR:-/tmp}/sprig_ppl_empty.txt"
rm -f "${TMPDIR:-/tmp}/sprig_ppl_empty.txt"

[ "$fails" -eq 0 ] && echo "cli_perplexity: ok" || { echo "cli_perplexity: $fails failures"; exit 1; }
