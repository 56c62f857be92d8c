#!/usr/bin/env python3
"""tools/lte/tokenizer.py (the plain-Python tokenizer.json encoder tools/lte
uses where the `tokenizers` library is not installed, as with Debian's
python3-torch alone) against the library's own ids: every case of
tests/fixtures/tokenizers/*/cases.json (written by the library, see
tools/make_tokenizer_fixtures.py), encoded without special tokens.
Needs nothing beyond Python 3. tests/lte_parity_test.py compares the two on
longer text where the library is installed."""
import glob
import json
import os
import sys

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, ROOT)
from tools.lte.tokenizer import Tokenizer  # noqa: E402


def main():
    failed = total = 0
    for d in sorted(glob.glob(os.path.join(ROOT, "tests", "fixtures", "tokenizers", "*"))):
        tok = Tokenizer.from_file(os.path.join(d, "tokenizer.json"))
        with open(os.path.join(d, "cases.json"), encoding="utf-8") as f:
            cases = json.load(f)["cases"]
        bad = [c for c in cases if tok.encode(c["text"]) != c["ids"]]
        for c in bad[:3]:
            print(f"FAIL {os.path.basename(d)}: {c['text'][:60]!r}: {tok.encode(c['text'])[:16]} "
                  f"!= {c['ids'][:16]}")
        print(f"{'ok  ' if not bad else 'FAIL'} {os.path.basename(d)}: {len(cases) - len(bad)}/{len(cases)} "
              f"cases give the library's ids")
        failed += bool(bad)
        total += 1
    print(f"lte_tokenizer_test: {total} tokenizers, {failed} failed")
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
