#!/usr/bin/env bash
# sprig chat and sprig run --chat on the tiny LLaMA-3 model (CPU backend), given
# the LLaMA-3-Instruct template as its folder's chat_template.jinja:
#   - two turns piped into `sprig chat`: the second turn reuses the whole first
#     prompt from the KV cache and prefills only the rest, and its tokens equal
#     `sprig run --chat --messages` on the whole conversation (a fresh prefill);
#   - /reset starts over (same answer as the first turn), /quit stops, EOF ends
#     cleanly, a turn over the context is refused and the session goes on;
#   - a folder without a template is refused naming what was looked for.
# usage: cli_chat.sh SPRIG SOURCE_DIR
set -u
SPRIG=$1
SRC=$2
T=$(mktemp -d)
trap 'rm -rf "$T"' EXIT
fails=0
fail() { echo "FAIL: $*"; fails=$((fails + 1)); }
field() { sed -n "s/.*\"$1\":\([0-9]*\).*/\1/p"; }    # a number field of one JSON line
tokens() { sed -n 's/.*"tokens":\(\[[0-9,]*\]\).*/\1/p'; }

M=$T/model
mkdir "$M"
for f in config.json model.safetensors tokenizer.json; do ln -s "$SRC/tests/fixtures/models/tiny-llama3/$f" "$M/$f"; done
cp "$SRC/tests/fixtures/chat/llama3-instruct.jinja" "$M/chat_template.jinja"

# two turns
printf 'Hi\nTell me more\n' | "$SPRIG" chat "$M" --json --max-tokens 6 >"$T/chat.out" 2>"$T/chat.err" || fail "sprig chat exited $?: $(cat "$T/chat.err")"
[ "$(wc -l <"$T/chat.out")" -eq 2 ] || fail "expected 2 JSON lines, got: $(cat "$T/chat.out")"
l1=$(sed -n 1p "$T/chat.out"); l2=$(sed -n 2p "$T/chat.out")
p1=$(echo "$l1" | field prompt_tokens); r1=$(echo "$l1" | field reused)
p2=$(echo "$l2" | field prompt_tokens); r2=$(echo "$l2" | field reused); f2=$(echo "$l2" | field prefilled)
[ "$r1" = 0 ] || fail "turn 1 reused $r1 tokens of an empty cache"
[ -n "$p1" ] && [ "$p1" -gt 10 ] || fail "turn 1 prompt_tokens '$p1'"
[ -n "$r2" ] && [ "$r2" -ge "$p1" ] || fail "turn 2 reused $r2 tokens, less than turn 1's whole prompt ($p1)"
[ -n "$f2" ] && [ "$((r2 + f2))" -eq "$p2" ] && [ "$f2" -lt "$((p2 - p1 + 1))" ] ||
  fail "turn 2 prefilled $f2 of $p2 tokens (reused $r2): more than the new ones"

# the same conversation rendered whole by sprig run --chat
text1=$(echo "$l1" | sed -n 's/.*"text":\(".*"\)}$/\1/p')
printf '[{"role":"user","content":"Hi"},{"role":"assistant","content":%s},{"role":"user","content":"Tell me more"}]' \
  "$text1" >"$T/conv.json"
"$SPRIG" run "$M" --chat --messages "$T/conv.json" --json --max-tokens 6 >"$T/run.out" 2>"$T/run.err" ||
  fail "sprig run --chat --messages exited $?: $(cat "$T/run.err")"
[ "$(field prompt_tokens <"$T/run.out")" = "$p2" ] || fail "run --chat rendered $(field prompt_tokens <"$T/run.out") tokens, chat $p2"
[ -n "$(echo "$l2" | tokens)" ] && [ "$(tokens <"$T/run.out")" = "$(echo "$l2" | tokens)" ] ||
  fail "turn 2 tokens $(echo "$l2" | tokens) differ from run --chat's $(tokens <"$T/run.out")"
# one turn: run --chat --prompt is chat's first turn
"$SPRIG" run "$M" --chat --prompt Hi --json --max-tokens 6 >"$T/run1.out" 2>&1
[ "$(tokens <"$T/run1.out")" = "$(echo "$l1" | tokens)" ] || fail "run --chat --prompt Hi differs from chat's first turn"

# /reset, /quit, EOF
printf 'Hi\n/reset\nHi\n/quit\nnever read\n' | "$SPRIG" chat "$M" --json --max-tokens 6 >"$T/reset.out" 2>&1 || fail "reset session exited $?"
[ "$(grep -c turn "$T/reset.out")" -eq 2 ] || fail "after /reset and /quit expected 2 turns: $(cat "$T/reset.out")"
[ "$(sed -n 2p "$T/reset.out" | field reused)" = 0 ] || fail "the turn after /reset reused the cache"
[ "$(sed -n 2p "$T/reset.out" | tokens)" = "$(echo "$l1" | tokens)" ] || fail "the turn after /reset differs from a first turn"

# a turn over the context: refused, the session goes on
long=$(printf 'word %.0s' $(seq 1 80))
printf '%s\nHi\n' "$long" | "$SPRIG" chat "$M" --json --context 60 --max-tokens 4 >"$T/full.out" 2>"$T/full.err" || fail "context-full session exited $?"
grep -q "context holds 60" "$T/full.err" || fail "no refusal naming the context: $(cat "$T/full.err")"
[ "$(grep -c turn "$T/full.out")" -eq 1 ] || fail "the turn after a refused one did not run: $(cat "$T/full.out")"

# no template
N=$T/notemplate
mkdir "$N"
for f in config.json model.safetensors tokenizer.json; do ln -s "$SRC/tests/fixtures/models/tiny-llama3/$f" "$N/$f"; done
"$SPRIG" run "$N" --chat --prompt Hi >"$T/nt.out" 2>&1 && fail "run --chat without a template succeeded"
grep -q "no chat template" "$T/nt.out" && [ "$(wc -l <"$T/nt.out")" -eq 1 ] || fail "unclear refusal: $(cat "$T/nt.out")"
echo "" | "$SPRIG" chat "$N" >/dev/null 2>&1 && fail "chat without a template succeeded"
# but --chat-template gives one
"$SPRIG" run "$N" --chat --chat-template "$M/chat_template.jinja" --prompt Hi --json --max-tokens 6 >"$T/ct.out" 2>&1
[ "$(tokens <"$T/ct.out")" = "$(echo "$l1" | tokens)" ] || fail "--chat-template: $(cat "$T/ct.out")"

[ $fails -eq 0 ] && echo "cli_chat: ok" || echo "cli_chat: $fails failure(s)"
exit $((fails > 0))
