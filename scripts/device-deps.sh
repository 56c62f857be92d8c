#!/usr/bin/env bash
# Prepares .device-deps/ (git-ignored) for the device tool's GPU machine, which
# reaches no package registry: the shared folder's Debian packages and env.sh
# (Lua 5.4, cJSON, xxHash), plus PCRE2 and utf8proc (the tokenizer's regex and
# NFC libraries, which that folder lacks), downloaded here with apt-get, and
# pkgconf with a line in env.sh that puts it on PATH only where the machine has
# no pkg-config of its own (CMake's pkg_check_modules needs one). Then,
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
pkgs="libpcre2-dev libpcre2-8-0 libutf8proc-dev libutf8proc2 pkgconf pkgconf-bin libpkgconf3"
apt-get download $pkgs 2>/dev/null || { apt-get update >/dev/null && apt-get download $pkgs; }
cat >>env.sh <<'SH'
# (added by scripts/device-deps.sh) the carried pkgconf, only where the machine has no pkg-config
command -v pkg-config >/dev/null 2>&1 || export PATH=$PATH:$DEVICE_DEPS/usr/bin
SH
ls
