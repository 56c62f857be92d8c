"""Training and held-out text: public-domain prose, tokenized into blocks.

The default corpus is the King James Bible from Debian's bible-kjv-text
package (public domain), written out by its `bible` program. The split is
deterministic and interleaved (every `holdout_every`-th run of verses is
held out), so both parts cover the whole book rather than train on Genesis
and test on Revelation.
"""
import re
import subprocess

import torch

VERSE_REF = re.compile(r"^\S+\d+:\d+\s+")  # "Ge1:1 " in front of each verse


def kjv_lines():
    """The Bible's verses, one a line, references stripped."""
    try:
        out = subprocess.run(["bible", "-f", "Gen1:1-Rev22:21"], capture_output=True, check=True,
                             text=True, errors="replace").stdout
    except (OSError, subprocess.CalledProcessError) as e:
        raise SystemExit(f"lte: the `bible` program failed ({e}); apt-get install bible-kjv "
                         "bible-kjv-text, or pass --text FILE")
    lines = [VERSE_REF.sub("", ln).strip() for ln in out.splitlines()]
    return [ln for ln in lines if ln]


def file_lines(path):
    with open(path, encoding="utf-8", errors="replace") as f:
        return [ln.strip() for ln in f if ln.strip()]


def split_lines(lines, run=50, holdout_every=10):
    """(train, held_out): runs of `run` lines, every holdout_every-th run held out."""
    train, held = [], []
    for i in range(0, len(lines), run):
        (held if (i // run) % holdout_every == holdout_every - 1 else train).extend(lines[i:i + run])
    return train, held


def load_tokenizer(model_dir):
    """encode(text) -> ids without special tokens, from the folder's tokenizer.json: the
    `tokenizers` library when importable (fast), else tokenizer.py (Debian has no package of it)."""
    path = f"{model_dir}/tokenizer.json"
    try:
        from tokenizers import Tokenizer
    except ImportError:
        from .tokenizer import Tokenizer as PlainTokenizer
        return PlainTokenizer.from_file(path).encode
    tok = Tokenizer.from_file(path)
    return lambda s: tok.encode(s, add_special_tokens=False).ids


def tokenize(encode, lines, max_tokens=None):
    """One long id stream (lines joined by spaces, no special tokens), cut at max_tokens."""
    ids, chunk = [], 200  # encode in chunks of lines: fast and bounded in memory
    for i in range(0, len(lines), chunk):
        ids.extend(encode(" ".join(lines[i:i + chunk])))
        if max_tokens and len(ids) >= max_tokens:
            break
    return torch.tensor(ids[:max_tokens] if max_tokens else ids, dtype=torch.long)


def blocks(ids, seq_len):
    """[n, seq_len] non-overlapping blocks of the stream (the tail dropped)."""
    n = len(ids) // seq_len
    if n == 0:
        raise SystemExit(f"lte: only {len(ids)} tokens of text, fewer than one block of {seq_len}")
    return ids[:n * seq_len].view(n, seq_len)


class Batches:
    """Endless deterministic batches of training blocks (a seeded shuffle per epoch)."""

    def __init__(self, data, batch_size, seed=0):
        self.data, self.bs = data, batch_size
        self.gen = torch.Generator().manual_seed(seed)
        self.order, self.pos = torch.randperm(len(data), generator=self.gen), 0

    def next(self):
        if self.pos + self.bs > len(self.order):
            self.order, self.pos = torch.randperm(len(self.data), generator=self.gen), 0
        idx = self.order[self.pos:self.pos + self.bs]
        self.pos += self.bs
        return self.data[idx]
