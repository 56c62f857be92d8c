"""Encoding text with a Hugging Face tokenizer.json, in plain Python.

tools/lte uses the `tokenizers` library when it is importable (fast, the
reference); Debian 12 does not package it, so with python3-torch alone this
encoder is used instead. It follows sprig's C tokenizer (model/tokenizer.c),
which follows the library step by step: (1) split on added tokens that are
not normalized, (2) normalize each piece (Prepend, Replace of a string, NFC)
and split on normalized added tokens, (3) pre-tokenize (Split with a regex,
ByteLevel, Digits, Metaspace), (4) BPE each piece (lowest merge rank first,
then leftmost; ignore_merges, byte_fallback, unk and fuse_unk). Only encode
without special tokens is provided: what training text needs. Anything else
in the file is refused with its name.

The library's regexes are Oniguruma's; Python's `re` has no \\p{..}, so
\\p{L}, \\p{N} and \\s are rewritten as explicit character classes built
from unicodedata (Python's own \\s also matches U+001C..U+001F, which
Unicode's White_Space does not).
"""
import heapq
import json
import re
import sys
import unicodedata


class TokenizerError(ValueError):
    pass


# ---- regex translation ---------------------------------------------------------------------

WHITE_SPACE = "\t\n\x0b\x0c\r \x85\xa0\u1680\u2000-\u200a\u2028\u2029\u202f\u205f\u3000"
_classes = {}


def _category_class(prefix):
    """The body of a [...] class of every code point whose general category starts with prefix."""
    if prefix not in _classes:
        ranges, start, prev = [], None, None
        for cp in range(sys.maxunicode + 1):
            if unicodedata.category(chr(cp)).startswith(prefix):
                if start is None:
                    start = cp
                prev = cp
            elif start is not None:
                ranges.append((start, prev))
                start = None
        if start is not None:
            ranges.append((start, prev))
        _classes[prefix] = "".join(re.escape(chr(a)) if a == b else f"{re.escape(chr(a))}-{re.escape(chr(b))}"
                                   for a, b in ranges)
    return _classes[prefix]


def translate_regex(pattern):
    """An Oniguruma pattern as a Python `re` pattern: \\p{L}, \\p{N}, \\s, \\S become explicit classes."""
    out, i, in_class = [], 0, False
    while i < len(pattern):
        c = pattern[i]
        if c == "\\" and i + 1 < len(pattern):
            m = re.match(r"\\([pP])\{(\w+)\}", pattern[i:])
            if m:
                if m.group(1) == "P" or m.group(2) not in ("L", "N"):
                    raise TokenizerError(f"regex {pattern!r}: {m.group(0)} is not supported (only \\p{{L}}, \\p{{N}})")
                body = _category_class(m.group(2))
                out.append(body if in_class else f"[{body}]")
                i += len(m.group(0))
                continue
            if pattern[i + 1] in "sS":
                if pattern[i + 1] == "S" and in_class:
                    raise TokenizerError(f"regex {pattern!r}: \\S inside a class is not supported")
                neg = "^" if pattern[i + 1] == "S" else ""
                out.append(WHITE_SPACE if in_class else f"[{neg}{WHITE_SPACE}]")
                i += 2
                continue
            out.append(pattern[i:i + 2])
            i += 2
            continue
        if c == "[" and not in_class:
            in_class = True
            out.append(c)
            if pattern[i + 1:i + 2] == "^":  # a ']' right after '[' or '[^' is literal in both dialects
                out.append("^")
                i += 1
            if pattern[i + 1:i + 2] == "]":
                out.append("\\]")
                i += 1
        elif c == "[" and in_class:
            raise TokenizerError(f"regex {pattern!r}: nested classes are not supported")
        elif c == "]" and in_class:
            in_class = False
            out.append(c)
        else:
            out.append(c)
        i += 1
    return "".join(out)


# GPT-2's pattern, which ByteLevel runs when use_regex is true (contractions case-sensitive)
GPT2_PATTERN = r"'s|'t|'re|'ve|'m|'ll|'d| ?\p{L}+| ?\p{N}+| ?[^\s\p{L}\p{N}]+|\s+(?!\S)|\s+"


def bytes_to_unicode():
    """GPT-2's byte -> printable character table (ByteLevel)."""
    bs = list(range(ord("!"), ord("~") + 1)) + list(range(ord("\xa1"), ord("\xac") + 1)) + \
        list(range(ord("\xae"), ord("\xff") + 1))
    cs, n = bs[:], 0
    for b in range(256):
        if b not in bs:
            bs.append(b)
            cs.append(256 + n)
            n += 1
    return {b: chr(c) for b, c in zip(bs, cs)}


# ---- pipeline steps --------------------------------------------------------------------------

def _steps(obj, key):
    """A Sequence flattened into its steps (null: none)."""
    if obj is None:
        return []
    if obj.get("type") == "Sequence":
        return [s for sub in obj[key] for s in _steps(sub, key)]
    return [obj]


class Tokenizer:
    def __init__(self, spec, label="tokenizer.json"):
        self.label = label
        self._model(spec.get("model") or {})
        self.norms = [self._normalizer(s) for s in _steps(spec.get("normalizer"), "normalizers")]
        self.pres = [p for s in _steps(spec.get("pre_tokenizer"), "pretokenizers") for p in self._pre(s)]
        self._added(spec.get("added_tokens") or [])
        self.cache = {}

    @classmethod
    def from_file(cls, path):
        with open(path, encoding="utf-8") as f:
            return cls(json.load(f), path)

    def _refuse(self, what):
        raise TokenizerError(f"{self.label}: {what} is not supported here (pip install tokenizers)")

    # -- configuration
    def _model(self, m):
        if m.get("type") != "BPE":
            self._refuse(f"model type {m.get('type')!r}")
        if m.get("dropout") not in (None, 0, 0.0):
            self._refuse("BPE dropout")
        for k in ("continuing_subword_prefix", "end_of_word_suffix"):
            if m.get(k):
                self._refuse(f"BPE {k}")
        self.vocab = m["vocab"]
        self.merges = {}  # (left id, right id) -> (rank, merged id); a later duplicate wins, as in the library
        for rank, e in enumerate(m.get("merges") or []):
            a, b = e.split(" ") if isinstance(e, str) else e
            try:
                self.merges[(self.vocab[a], self.vocab[b])] = (rank, self.vocab[a + b])
            except KeyError:
                raise TokenizerError(f"{self.label}: merge {e!r} has a part not in the vocab") from None
        self.byte_fallback = bool(m.get("byte_fallback"))
        self.fuse_unk = bool(m.get("fuse_unk"))
        self.ignore_merges = bool(m.get("ignore_merges"))
        self.unk = m.get("unk_token")
        self.byte_ids = [self.vocab.get(f"<0x{b:02X}>") for b in range(256)]

    def _normalizer(self, s):
        t = s.get("type")
        if t == "Prepend":
            return lambda x, p=s["prepend"]: p + x if x else x
        if t == "Replace":
            pat = s.get("pattern") or {}
            if "String" not in pat or not pat["String"]:
                self._refuse("normalizer Replace with a Regex or empty pattern")
            return lambda x, a=pat["String"], b=s["content"]: x.replace(a, b)
        if t == "NFC":
            return lambda x: unicodedata.normalize("NFC", x)
        self._refuse(f"normalizer {t!r}")

    def _pre(self, s):
        """Each step as a function piece -> [pieces]; ByteLevel may be up to three."""
        t = s.get("type")
        if t == "Split":
            if s.get("behavior") != "Isolated" or s.get("invert"):
                self._refuse(f"Split behavior {s.get('behavior')!r} invert {s.get('invert')!r}")
            pat = s.get("pattern") or {}
            rx = translate_regex(pat["Regex"]) if "Regex" in pat else re.escape(pat["String"])
            return [self._split(re.compile(rx))]
        if t == "Digits":
            return [self._split(re.compile(translate_regex(r"\p{N}" if s.get("individual_digits") else r"\p{N}+")))]
        if t == "ByteLevel":
            steps = []
            if s.get("add_prefix_space"):  # every piece, not only the first, as the library does
                steps.append(lambda x: [x if x.startswith(" ") else " " + x])
            if s.get("use_regex", True):
                steps.append(self._split(re.compile(translate_regex(GPT2_PATTERN))))
            table = bytes_to_unicode()
            steps.append(lambda x: ["".join(table[b] for b in x.encode("utf-8"))])
            return steps
        if t == "Metaspace":
            if s.get("split", True):
                self._refuse("Metaspace with split=true")
            scheme = s.get("prepend_scheme") or ("always" if s.get("add_prefix_space", True) else "never")
            if scheme not in ("always", "never", "first"):
                self._refuse(f"Metaspace prepend_scheme {scheme!r}")
            return [self._metaspace(s["replacement"], scheme)]
        self._refuse(f"pre_tokenizer {t!r}")

    @staticmethod
    def _split(rx):
        def split(x):
            out, prev = [], 0
            for m in rx.finditer(x):
                if m.start() == m.end():
                    continue
                out += [x[prev:m.start()], m.group(0)]
                prev = m.end()
            return out + [x[prev:]]
        return split

    @staticmethod
    def _metaspace(repl, scheme):
        def meta(x, at_start):
            x = x.replace(" ", repl)
            if not x.startswith(repl) and (scheme == "always" or (scheme == "first" and at_start)):
                x = repl + x
            return [x]
        meta.wants_start = True
        return meta

    def _added(self, tokens):
        raw, norm = {}, {}
        for a in tokens:
            if not a.get("content"):
                continue
            for flag in ("lstrip", "rstrip", "single_word"):
                if a.get(flag):
                    self._refuse(f"added token {a['content']!r} with {flag}=true")
            special = bool(a.get("special"))
            if a.get("normalized", not special):
                norm[self._normalize(a["content"])] = a["id"]
            else:
                raw[a["content"]] = a["id"]
        self.added_raw, self.added_norm = self._added_re(raw), self._added_re(norm)

    @staticmethod
    def _added_re(table):
        if not table:
            return None
        # longest first: the alternation then takes the leftmost-longest match
        rx = re.compile("|".join(re.escape(c) for c in sorted(table, key=len, reverse=True)))
        return rx, table

    # -- encoding
    def _normalize(self, x):
        for n in self.norms:
            x = n(x)
        return x

    @staticmethod
    def _split_added(added, text, at_start):
        """[(text, at_start) or (id,)] of text split at added tokens; empty pieces dropped."""
        if added is None:
            return [(text, at_start)] if text else []
        rx, table = added
        out, prev = [], 0
        for m in rx.finditer(text):
            if m.start() > prev:
                out.append((text[prev:m.start()], at_start and prev == 0))
            out.append((table[m.group(0)],))
            prev = m.end()
        if prev < len(text):
            out.append((text[prev:], at_start and prev == 0))
        return out

    def encode(self, text):
        """The ids of text without special tokens (tokenizers' encode(text, add_special_tokens=False).ids)."""
        pieces = []
        for p in self._split_added(self.added_raw, text, True):
            pieces += [p] if len(p) == 1 else self._split_added(self.added_norm, self._normalize(p[0]), p[1])
        for step in self.pres:
            nxt = []
            for p in pieces:
                if len(p) == 1:
                    nxt.append(p)
                    continue
                parts = step(p[0], p[1]) if getattr(step, "wants_start", False) else step(p[0])
                off = 0  # a part is at the start of the input when its piece is and it starts the piece
                for part in parts:
                    if part:
                        nxt.append((part, p[1] and off == 0))
                    off += len(part)
            pieces = nxt
        ids = []
        for p in pieces:
            ids += [p[0]] if len(p) == 1 else self._word(p[0])
        return ids

    def _word(self, w):
        if w in self.cache:
            return self.cache[w]
        if self.ignore_merges and w in self.vocab:
            ids = [self.vocab[w]]
        else:
            ids = self._merge_all(self._symbols(w))
        if len(self.cache) < 100000:
            self.cache[w] = ids
        return ids

    def _symbols(self, w):
        """The word's characters as ids: vocab, byte fallback or unk (fused), as the library does it."""
        syms, unk = [], None  # unk: a pending unk symbol, added before the next known one
        for ch in w:
            i = self.vocab.get(ch)
            if i is not None:
                if unk is not None:
                    syms.append(unk)
                    unk = None
                syms.append(i)
                continue
            bs = ch.encode("utf-8")
            if self.byte_fallback and all(self.byte_ids[b] is not None for b in bs):
                syms += [self.byte_ids[b] for b in bs]  # no flush of a pending unk first: the library's order
            elif self.unk is not None:
                if self.unk not in self.vocab:
                    raise TokenizerError(f"{self.label}: the unk token {self.unk!r} is not in the vocab")
                if unk is not None and not self.fuse_unk:
                    syms.append(unk)
                unk = self.vocab[self.unk]
            # no unk token and no byte fallback: the library drops the character
        if unk is not None:
            syms.append(unk)
        return syms

    def _merge_all(self, syms):
        """The library's Word::merge_all: a heap of (rank, position), stale entries skipped."""
        n = len(syms)
        ids, nxt, prv, alive = list(syms), list(range(1, n + 1)), list(range(-1, n - 1)), [True] * n
        heap = []
        for i in range(n - 1):
            m = self.merges.get((ids[i], ids[i + 1]))
            if m:
                heap.append((m[0], i, m[1]))
        heapq.heapify(heap)
        while heap:
            rank, i, new = heapq.heappop(heap)
            j = nxt[i]
            if not alive[i] or j >= n:
                continue
            m = self.merges.get((ids[i], ids[j]))
            if not m or m[1] != new:
                continue  # stale: a neighbour changed since this entry was pushed
            ids[i], alive[j], nxt[i] = new, False, nxt[j]
            if nxt[j] < n:
                prv[nxt[j]] = i
            if prv[i] >= 0:
                m = self.merges.get((ids[prv[i]], new))
                if m:
                    heapq.heappush(heap, (m[0], prv[i], m[1]))
            if nxt[i] < n:
                m = self.merges.get((new, ids[nxt[i]]))
                if m:
                    heapq.heappush(heap, (m[0], i, m[1]))
        return [ids[i] for i in range(n) if alive[i]]
