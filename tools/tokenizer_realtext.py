#!/usr/bin/env python3
"""Developer check (not CI): sprig's tokenizer against the Hugging Face
`tokenizers` library on megabytes of real text.

    python3 tools/tokenizer_realtext.py [--build build] [--text FILE]... [TOKENIZER_JSON...]

Needs `pip install tokenizers` and a build with the tok_compare tool
(cmake --build build --target tok_compare). Without --text it uses the King
James Bible (public domain, 4.4 MB of English prose) from Debian's
bible-kjv-text package (apt-get install bible-kjv bible-kjv-text), written
out by its `bible` program. Without tokenizer files it checks every fixture
under tests/fixtures/tokenizers. Each (tokenizer, text) pair is encoded as a
whole and line by line; the ids must be identical, and so must the whole
text's decode. Exit status 1 on any difference."""
import argparse
import glob
import os
import subprocess
import sys
import tempfile

from tokenizers import Tokenizer

ROOT = os.path.join(os.path.dirname(os.path.abspath(__file__)), "..")


def kjv_text(tmp):
    path = os.path.join(tmp, "kjv.txt")
    try:
        out = subprocess.run(["bible", "-f", "Gen1:1-Rev22:21"], capture_output=True, check=True,
                             timeout=120).stdout
    except (OSError, subprocess.CalledProcessError) as e:
        sys.exit(f"tokenizer_realtext: no text given and the `bible` program failed ({e}); "
                 "apt-get install bible-kjv bible-kjv-text, or pass --text FILE")
    with open(path, "wb") as f:
        f.write(out)
    return path


def write_ids(path, ids):
    with open(path, "wb") as f:
        f.write(b"".join(int(i).to_bytes(4, "little", signed=True) for i in ids))


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--build", default=os.path.join(ROOT, "build"))
    ap.add_argument("--text", action="append", default=[])
    ap.add_argument("tokenizers", nargs="*")
    args = ap.parse_args()
    tool = os.path.join(args.build, "tests", "tok_compare")
    if not os.access(tool, os.X_OK):
        sys.exit(f"tokenizer_realtext: {tool} not found (cmake --build {args.build} --target tok_compare)")
    toks = args.tokenizers or sorted(glob.glob(os.path.join(ROOT, "tests", "fixtures", "tokenizers",
                                                            "*", "tokenizer.json")))
    failed = 0
    with tempfile.TemporaryDirectory() as tmp:
        texts = args.text or [kjv_text(tmp)]
        for tok_path in toks:
            ref = Tokenizer.from_file(tok_path)
            for text_path in texts:
                # what sprig reads: the file's bytes, invalid UTF-8 replaced as sprig does
                text = open(text_path, "rb").read().decode("utf-8", errors="replace")
                for mode in ("whole", "lines"):
                    if mode == "whole":
                        ids = ref.encode(text, add_special_tokens=False).ids
                        with open(os.path.join(tmp, "exp.bin.txt"), "wb") as f:
                            f.write(ref.decode(ids, skip_special_tokens=False).encode("utf-8"))
                    else:
                        encs = ref.encode_batch(text.split("\n"), add_special_tokens=False)
                        ids = [i for e in encs for i in e.ids]
                    write_ids(os.path.join(tmp, "exp.bin"), ids)
                    rc = subprocess.run([tool, tok_path, text_path, mode,
                                         os.path.join(tmp, "exp.bin")]).returncode
                    failed += rc != 0
    print("tokenizer_realtext:", "all identical" if not failed else f"{failed} check(s) differ")
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
