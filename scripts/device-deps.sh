#!/usr/bin/env bash
# Prepares .device-deps/ (git-ignored) for the device tool's GPU machine, which
# reaches no package registry: the shared folder's Debian packages and env.sh
# (Lua 5.4, cJSON, xxHash), plus PCRE2 and utf8proc (the tokenizer's regex and
# NFC libraries, which that folder lacks), downloaded here with apt-get. Then,
# in every device call:
#   carry [".device-deps"], command ". .device-deps/env.sh && bash scripts/gpu-session.sh ..."
set -euo pipefail
cd "$(dirname "$0")/.."
src=${1:-../shared/device}
[ -e "$src/env.sh" ] || { echo "device-deps.sh: no env.sh in '$src' (give the shared device folder)" >&2; exit 2; }
mkdir -p .device-deps
cp "$src"/env.sh "$src"/*.deb .device-deps/
grep -qx '/.device-deps/' .git/info/exclude 2>/dev/null || echo '/.device-deps/' >>.git/info/exclude
cd .device-deps
apt-get download libpcre2-dev libpcre2-8-0 libutf8proc-dev libutf8proc2 2>/dev/null ||
    { apt-get update >/dev/null && apt-get download libpcre2-dev libpcre2-8-0 libutf8proc-dev libutf8proc2; }
ls
