#!/usr/bin/env python3
"""Writes the tokenizer fixtures under tests/fixtures/tokenizers/.

Real LLaMA tokenizer files cannot be downloaded where sprig is tested, so this
script *trains* small tokenizers with the Hugging Face `tokenizers` library
(`pip install tokenizers`), configured the way the LLaMA families are:

  llama2/            SentencePiece-style BPE: byte_fallback, <unk> <s> </s>,
                     256 <0xXX> byte tokens at ids 3..258, the normalizer
                     Sequence[Prepend("▁"), Replace(" ", "▁")], the decoder
                     Sequence[Replace("▁", " "), ByteFallback, Fuse, Strip(" ", 1, 0)],
                     TemplateProcessing adding <s>. Merges stored as pairs.
  llama2-metaspace/  the same model, as newer converters write it: no
                     normalizer, pre_tokenizer Metaspace(prepend_scheme="first",
                     split=false).
  llama2-normalized/ the llama2 files with the added tokens marked
                     normalized=true (some LLaMA-2 conversions do this): they
                     are then matched after the normalizer, as "▁<s>".
  llama3/            byte-level BPE: pre_tokenizer Sequence[Split(LLaMA-3 regex,
                     Isolated), ByteLevel(add_prefix_space=false, use_regex=false)],
                     ignore_merges, <|begin_of_text|> ... added after the model
                     vocab, decoder ByteLevel, post_processor
                     Sequence[ByteLevel, TemplateProcessing]. Merges stored as
                     legacy "a b" strings.

For each, `tokenizer.json` (re-loaded through the library before use) and
`cases.json`: expected ids (with and without special tokens) and decodings
(skip_special_tokens true and false) for tricky strings, including invalid
UTF-8 (given as hex; expected output is that of bytes.decode(errors="replace")),
and decodings of id sequences chosen at random (fixed seed).

The C test (tests/test_tokenizer.c) reads these files; it does not need Python.
Run from the repository root:  python3 tools/make_tokenizer_fixtures.py
"""
import json
import os
import random
import sys

import tokenizers
from lte.tokenizer import bytes_to_unicode  # GPT-2's ByteLevel alphabet, one copy (tools/ is on sys.path)
from tokenizers import (AddedToken, Regex, Tokenizer, decoders, models, normalizers,
                        pre_tokenizers, processors, trainers)

OUT = os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "tests", "fixtures",
                   "tokenizers")

# Qwen2 / Qwen2.5's Split pattern (transformers' Qwen2TokenizerFast): digits one by one.
QWEN2_PATTERN = (r"(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}|"
                 r" ?[^\s\p{L}\p{N}]+[\r\n]*|\s*[\r\n]+|\s+(?!\S)|\s+")

LLAMA3_PATTERN = (r"(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}{1,3}|"
                  r" ?[^\s\p{L}\p{N}]+[\r\n]*|\s*[\r\n]+|\s+(?!\S)|\s+")

# Training text: small but varied, so merges cover words, digits, code and
# whitespace runs, while rare characters (runes, math letters, most emoji) stay
# outside the vocabulary and exercise byte fallback / byte-level pieces.
TRAIN_TEXT = """\
The quick brown fox jumps over the lazy dog. The dog was not amused, and the fox ran away.
It's a truth universally acknowledged that a single model in possession of good weights must be in want of a tokenizer.
We'll see what they've done; I'd say you're right, but I'm not sure. Don't worry: it isn't broken.
Numbers: 0 1 2 3 4 5 6 7 8 9 10 42 100 1000 2024 12345 3.14159 2.71828 1,000,000 -7 +8 99%
In the beginning the tokenizer splits text into pieces, and the pieces become tokens.
Tokens are numbers; numbers are what the model reads, and what the model writes back.
Café, naïve, façade, résumé, coöperate, jalapeño, Zürich, Ångström, señor, garçon.
Le café est très bon. Où est la bibliothèque? Ça va très bien, merci beaucoup.
Der schnelle braune Fuchs springt über den faulen Hund. Grüße aus München!
El rápido zorro marrón salta sobre el perro perezoso. ¿Dónde está la estación?
Быстрая коричневая лиса прыгает через ленивую собаку. Привет, как дела?
Η γρήγορη καφέ αλεπού πηδάει πάνω από τον τεμπέλη σκύλο.
日本語のテキストです。東京は大きな都市です。今日はいい天気ですね。
中文文本测试。我们今天学习分词器。北京是中国的首都。
한국어 텍스트입니다. 서울은 큰 도시입니다.
Emoji: 😀 😂 🎉 👍 ❤️ 🚀 — and some symbols: © ® ™ € £ ¥ → ← ★
def tokenize(text):
    pieces = []
    for i, ch in enumerate(text):
        if ch.isspace():
            continue
        pieces.append((i, ch))
    return pieces

int main(void) {
    for (int i = 0; i < 10; ++i) {
        printf("%d\\n", i * i);
    }
    return 0;
}
if (x != y && a <= b) { return {"key": [1, 2, 3], 'other': None}; }
    indented    with    runs    of    spaces
\t\ttabs\tand\ttabs
line one
line two

line four after a blank line
"""

# Strings the C implementation must tokenize exactly like the library.
CASES = [
    "",
    " ",
    "  ",
    "a",
    "Hello world",
    " Hello world",
    "Hello  world",
    "   three leading spaces",
    "trailing spaces   ",
    "end with one space ",
    "line1\nline2",
    "\n",
    "\n\n\n",
    "  \n  \n",
    "tab\there",
    "\t\t",
    "windows\r\nline\r\n",
    "don't",
    "DON'T WE'LL I'd they've you're He'S",
    "12345",
    "3.14159 and 1,000,000 and 1234567890",
    "x = foo(bar, 42); // comment",
    "def f(x):\n    return x**2\n",
    "café naïve façade résumé",
    "Привет, мир!",
    "Ελληνικά",
    "日本語のテキスト",
    "中文测试",
    "한국어",
    "🙂",
    "👍🏽 family: 👨‍👩‍👧",
    "emoji🎉in🎉text",
    "Ω≈ç√∫ ∀x∈ℝ",
    "mixed 中文 and English 123",
    "ᚠᛇᚻ runes are not in the training text",
    "𝔘𝔫𝔦𝔠𝔬𝔡𝔢 math letters",
    "\u00a0nbsp and\u3000ideographic space",
    "zero\u200bwidth",
    "NEL\u0085LS\u2028PS\u2029end",
    "mongolian\u180evowel separator",
    # U+180E is \s to PCRE2 but not to Oniguruma (the reference's regex engine):
    # these two split differently unless sprig spells \s out as Oniguruma does.
    "#/,uC\u03a9  \u180e\u0663",
    "o~@6\u180e's",
    "it'\u017f \u212a K",
    "ſtraße 'S 'ſ",
    "<s>special</s> tokens <unk>",
    "x <s> y</s>z <s>",
    "text<|begin_of_text|>more<|eot_id|>",
    "<|start_header_id|>user<|end_header_id|>\n\nHi!<|eot_id|>",
    "<0x41> looks like a byte token",
    "▁ already has a meta space",
    "a" * 60,
    "aaaa bbbb aaaa",
    "    indented    with    runs",
    "\u0301 lone combining accent",
]

# More for the GPT-2-style and Qwen2 fixtures: what their regexes and NFC
# treat specially (GPT-2's contractions are case-sensitive, Qwen2's are not;
# Qwen2 splits digits one by one; NFC composes e + U+0301, Hangul jamo,
# the Angstrom sign; chat markup with the SmolLM2 / Qwen special tokens).
BYTELEVEL_CASES = [
    "it's they're we've I'm you'll he'd isn't",
    "IT'S THEY'RE WE'VE I'M YOU'LL HE'D",
    "'s at the start and 'd'",
    "rock 'n' roll ''quoted''",
    "a  b   c    d",
    "ends with spaces  \n  next",
    "a \n\n\tb\t\n",
    "\r\n\r\n\r\n",
    " \t \t",
    "1 12 123 1234 12345678901234567890",
    "x1y22z333 v2.0.1 -42",
    "\u0661\u0662\u0663 Arabic-Indic digits, \u00bd \u00b2 \u2163 other numbers",
    "cafe\u0301 vs caf\u00e9",
    "e\u0301e\u0301e\u0301",
    "\u1100\u1161\u11a8 jamo, \uac01 syllable",
    "\u212b angstrom sign, A\u030a, \u00c5",
    "\u0071\u0307\u0323 q dot above dot below",
    "\ufb01 ligature and \u2460 circled",
    "\u0915\u094d\u0937 Devanagari, \u0e01\u0e33 Thai",
    "x\u0301 mark after a letter",
    "\U0001F468\u200d\U0001F469\u200d\U0001F467 \U0001F44D\U0001F3FD flags \U0001F1EB\U0001F1F7",
    "<|im_start|>system\nYou are a helpful AI assistant named SmolLM.<|im_end|>\n"
    "<|im_start|>user\nWhat's 2+2?<|im_end|>\n<|im_start|>assistant\n",
    "<|endoftext|><|endoftext|>text<|endoftext|>",
    "a<|im_end|>b <|im_start|> c",
    "<|im_start|",
    "<tool_call>{\"name\": \"f\"}</tool_call>",
    "<repo_name>sprig<file_sep>main.c",
    "caf\u00e9! and cafe\u0301! (an added token, normalized)",
]

# Invalid UTF-8: the C tokenizer replaces each maximal invalid subsequence with
# U+FFFD, which is what bytes.decode("utf-8", errors="replace") does.
BAD_UTF8 = [
    b"abc\xffdef",
    b"\xe4\xbd",
    b"ok\xf0\x9f\x98",
    b"\xc0\x80 overlong",
    b"\xed\xa0\x80 surrogate",
    b"\x80\x80\x80 continuation",
    b"\xf4\x90\x80\x80 above max",
]


def llama2_base(train_lines):
    """Trains the LLaMA-2-like model; returns (vocab, merges)."""
    tok = Tokenizer(models.BPE(unk_token="<unk>", byte_fallback=True, fuse_unk=True))
    tok.normalizer = normalizers.Sequence(
        [normalizers.Prepend("▁"), normalizers.Replace(" ", "▁")])
    # Training only: words end before each ▁, as SentencePiece pieces do.
    tok.pre_tokenizer = pre_tokenizers.Split("▁", behavior="merged_with_next")
    # Only the 150 most frequent characters get a token (the rest fall back to
    # bytes). Chosen here, ties by code point, because the trainer's own
    # limit_alphabet breaks ties in hash order and would vary run to run.
    counts = {}
    for line in train_lines:
        for ch in "▁" + line.replace(" ", "▁"):
            counts[ch] = counts.get(ch, 0) + 1
    alphabet = sorted(counts, key=lambda ch: (-counts[ch], ord(ch)))[:150]
    trainer = trainers.BpeTrainer(vocab_size=640, special_tokens=["<unk>", "<s>", "</s>"],
                                  initial_alphabet=alphabet, limit_alphabet=len(alphabet),
                                  show_progress=False)
    tok.train_from_iterator(train_lines, trainer)
    data = json.loads(tok.to_str())
    learned = sorted(data["model"]["vocab"].items(), key=lambda kv: kv[1])
    merges = [tuple(m.split(" ")) if isinstance(m, str) else tuple(m)
              for m in data["model"]["merges"]]
    vocab = {"<unk>": 0, "<s>": 1, "</s>": 2}
    for b in range(256):
        vocab["<0x%02X>" % b] = len(vocab)
    for token, _ in learned:
        if token in ("<unk>", "<s>", "</s>"):
            continue
        assert token not in vocab, token
        vocab[token] = len(vocab)
    return vocab, merges


def llama2_decoder():
    return decoders.Sequence([decoders.Replace("▁", " "), decoders.ByteFallback(),
                              decoders.Fuse(), decoders.Strip(" ", 1, 0)])


def llama2_finish(tok, normalized=False):
    tok.decoder = llama2_decoder()
    tok.post_processor = processors.TemplateProcessing(
        single="<s>:0 $A:0", pair="<s>:0 $A:0 <s>:1 $B:1", special_tokens=[("<s>", 1)])
    tok.add_special_tokens([AddedToken(t, special=True, normalized=normalized)
                            for t in ("<unk>", "<s>", "</s>")])
    return tok


def build_llama2(vocab, merges, normalized=False):
    tok = Tokenizer(models.BPE(vocab=vocab, merges=merges, unk_token="<unk>",
                               byte_fallback=True, fuse_unk=True))
    tok.normalizer = normalizers.Sequence(
        [normalizers.Prepend("▁"), normalizers.Replace(" ", "▁")])
    return llama2_finish(tok, normalized)


def build_llama2_metaspace(vocab, merges):
    tok = Tokenizer(models.BPE(vocab=vocab, merges=merges, unk_token="<unk>",
                               byte_fallback=True, fuse_unk=True))
    tok.pre_tokenizer = pre_tokenizers.Metaspace(replacement="▁", prepend_scheme="first",
                                                 split=False)
    return llama2_finish(tok)


LLAMA3_SPECIALS = ["<|begin_of_text|>", "<|end_of_text|>", "<|reserved_special_token_0|>",
                   "<|reserved_special_token_1|>", "<|finetune_right_pad_id|>",
                   "<|reserved_special_token_2|>", "<|start_header_id|>", "<|end_header_id|>",
                   "<|eom_id|>", "<|eot_id|>", "<|python_tag|>"]


def build_llama3(train_lines):
    split = pre_tokenizers.Split(Regex(LLAMA3_PATTERN), behavior="isolated", invert=False)
    byte_level = pre_tokenizers.ByteLevel(add_prefix_space=False, trim_offsets=True,
                                          use_regex=False)
    tok = Tokenizer(models.BPE(ignore_merges=True))
    tok.pre_tokenizer = pre_tokenizers.Sequence([split, byte_level])
    trainer = trainers.BpeTrainer(vocab_size=900, initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
                                  show_progress=False)
    tok.train_from_iterator(train_lines, trainer)
    data = json.loads(tok.to_str())
    vocab = data["model"]["vocab"]
    merges = [tuple(m.split(" ")) if isinstance(m, str) else tuple(m)
              for m in data["model"]["merges"]]
    # Whole words no merge sequence builds (LLaMA-3's vocabulary, converted from
    # tiktoken, has such entries): found only because of ignore_merges.
    for word in ("Ġtraining", "Ġlooks"):
        assert word not in vocab
        vocab[word] = len(vocab)
    tok = Tokenizer(models.BPE(vocab=vocab, merges=merges, ignore_merges=True))
    tok.pre_tokenizer = pre_tokenizers.Sequence([split, byte_level])
    tok.decoder = decoders.ByteLevel()
    tok.add_special_tokens([AddedToken(t, special=True, normalized=False)
                            for t in LLAMA3_SPECIALS])
    bos = tok.token_to_id("<|begin_of_text|>")
    tok.post_processor = processors.Sequence([
        processors.ByteLevel(trim_offsets=False),
        processors.TemplateProcessing(single="<|begin_of_text|>:0 $A:0",
                                      pair="<|begin_of_text|>:0 $A:0 <|begin_of_text|>:1 $B:1",
                                      special_tokens=[("<|begin_of_text|>", bos)])])
    return tok


SMOLLM2_SPECIALS = ["<|endoftext|>", "<|im_start|>", "<|im_end|>", "<repo_name>", "<reponame>",
                    "<file_sep>", "<filename>", "<gh_stars>", "<issue_start>", "<issue_comment>",
                    "<issue_closed>", "<jupyter_start>", "<jupyter_text>", "<jupyter_code>",
                    "<jupyter_output>", "<jupyter_script>", "<empty_output>"]


def gpt2_base(train_lines):
    """Trains the SmolLM2-like model (its specials first, ids 0..16, as in
    SmolLM2); returns (vocab, merges)."""
    tok = Tokenizer(models.BPE())
    tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False, use_regex=True)
    trainer = trainers.BpeTrainer(vocab_size=900, special_tokens=SMOLLM2_SPECIALS,
                                  initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
                                  show_progress=False)
    tok.train_from_iterator(train_lines, trainer)
    data = json.loads(tok.to_str())
    merges = [tuple(m.split(" ")) if isinstance(m, str) else tuple(m)
              for m in data["model"]["merges"]]
    vocab = data["model"]["vocab"]
    # GPT-2's contractions are case-sensitive, so "'S" is never one piece and
    # training cannot learn it; with these tokens a case-insensitive pattern
    # would give other ids for "IT'S", "HE'D".
    for left, right in (("'", "S"), ("'", "D")):
        assert left + right not in vocab and left in vocab and right in vocab, (left, right)
        vocab[left + right] = len(vocab)
        merges.append((left, right))
    return vocab, merges


def build_smollm2(vocab, merges):
    """SmolLM2 / GPT-2: ByteLevel(use_regex=true) alone, no normalizer, a
    ByteLevel post-processor (adds nothing), specials never added by encode."""
    tok = Tokenizer(models.BPE(vocab=vocab, merges=merges))
    tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False, trim_offsets=True,
                                                 use_regex=True)
    tok.decoder = decoders.ByteLevel()
    tok.post_processor = processors.ByteLevel(trim_offsets=False)
    tok.add_special_tokens([AddedToken(t, special=True, normalized=False)
                            for t in SMOLLM2_SPECIALS])
    return tok


def build_starcoder_prefix(vocab, merges):
    """StarCoder's Sequence[Digits(individual_digits), ByteLevel(use_regex)],
    here with add_prefix_space=true (the space goes before every piece, also
    between added tokens), a template adding <|endoftext|> first, and a
    non-special added token."""
    tok = Tokenizer(models.BPE(vocab=vocab, merges=merges))
    tok.pre_tokenizer = pre_tokenizers.Sequence([
        pre_tokenizers.Digits(individual_digits=True),
        pre_tokenizers.ByteLevel(add_prefix_space=True, trim_offsets=False, use_regex=True)])
    tok.decoder = decoders.ByteLevel()
    tok.add_special_tokens([AddedToken(t, special=True, normalized=False)
                            for t in SMOLLM2_SPECIALS[:3]])
    tok.add_tokens([AddedToken("<tool_call>", special=False, normalized=False)])
    eot = tok.token_to_id("<|endoftext|>")
    tok.post_processor = processors.TemplateProcessing(
        single="<|endoftext|>:0 $A:0", pair="<|endoftext|>:0 $A:0 <|endoftext|>:1 $B:1",
        special_tokens=[("<|endoftext|>", eot)])
    return tok


def build_qwen2(train_lines):
    """Qwen2 / Qwen2.5: NFC, Split(Qwen pattern) + ByteLevel(use_regex=false),
    specials after the model vocab, non-special added tokens (one normalized,
    written decomposed, so it is matched in its NFC form)."""
    norm = normalizers.NFC()
    split = pre_tokenizers.Split(Regex(QWEN2_PATTERN), behavior="isolated", invert=False)
    byte_level = pre_tokenizers.ByteLevel(add_prefix_space=False, trim_offsets=False,
                                          use_regex=False)
    tok = Tokenizer(models.BPE())
    tok.normalizer = norm
    tok.pre_tokenizer = pre_tokenizers.Sequence([split, byte_level])
    trainer = trainers.BpeTrainer(vocab_size=900, initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
                                  show_progress=False)
    tok.train_from_iterator(train_lines, trainer)
    data = json.loads(tok.to_str())
    merges = [tuple(m.split(" ")) if isinstance(m, str) else tuple(m)
              for m in data["model"]["merges"]]
    tok = Tokenizer(models.BPE(vocab=data["model"]["vocab"], merges=merges))
    tok.normalizer = norm
    tok.pre_tokenizer = pre_tokenizers.Sequence([split, byte_level])
    tok.decoder = decoders.ByteLevel()
    tok.post_processor = processors.ByteLevel(trim_offsets=False)
    tok.add_special_tokens([AddedToken(t, special=True, normalized=False)
                            for t in ("<|endoftext|>", "<|im_start|>", "<|im_end|>")])
    tok.add_tokens([AddedToken("<tool_call>", special=False, normalized=False),
                    AddedToken("</tool_call>", special=False, normalized=False),
                    AddedToken("cafe\u0301!", special=False, normalized=True)])
    return tok


def save(tok, name, legacy_merges=False):
    """Saves tokenizer.json (compact) and returns the tokenizer re-loaded from it."""
    folder = os.path.join(OUT, name)
    os.makedirs(folder, exist_ok=True)
    data = json.loads(tok.to_str())
    if legacy_merges:
        data["model"]["merges"] = [" ".join(m) if isinstance(m, list) else m
                                   for m in data["model"]["merges"]]
    path = os.path.join(folder, "tokenizer.json")
    with open(path, "w", encoding="utf-8") as f:
        json.dump(data, f, ensure_ascii=False, separators=(",", ":"))
        f.write("\n")
    return Tokenizer.from_file(path)


def decode_skipping(tok, ids):
    """decode(ids, skip_special_tokens=True) as intended: special tokens dropped.

    tokenizers 0.23 changed id_to_token for added tokens with normalized=true to
    return the normalized form ("▁<s>"), and its skip test then looks that form
    up among the special contents ("<s>") and misses: such tokens are no longer
    skipped. sprig skips special tokens by id, which is what the flag means and
    what earlier versions did; for every other tokenizer the two agree, and
    that is asserted here."""
    specials = {i for i, t in tok.get_added_tokens_decoder().items() if t.special}
    intended = tok.decode([i for i in ids if i not in specials], skip_special_tokens=False)
    library = tok.decode(ids, skip_special_tokens=True)
    normalized_specials = any(t.special and t.normalized
                              for t in tok.get_added_tokens_decoder().values())
    if not normalized_specials:
        assert intended == library, (ids, intended, library)
    return intended


def put_text(case, key, text):
    """cJSON strings end at NUL, so text holding one is also given as hex."""
    case[key] = text
    if "\0" in text:
        case[key + "_hex"] = text.encode("utf-8").hex()


def write_cases(tok, name, rng, extra=()):
    cases = []
    for text in CASES + list(extra):
        cases.append({"text": text})
    for raw in BAD_UTF8:
        cases.append({"bytes_hex": raw.hex(), "text": raw.decode("utf-8", errors="replace")})
    for c in cases:
        text = c["text"]
        ids = tok.encode(text, add_special_tokens=False).ids
        c["ids"] = ids
        c["ids_special"] = tok.encode(text, add_special_tokens=True).ids
        put_text(c, "decoded", decode_skipping(tok, ids))
        put_text(c, "decoded_keep", tok.decode(c["ids_special"], skip_special_tokens=False))
    n = tok.get_vocab_size(with_added_tokens=True)
    decode_cases = []
    for length in [1, 1, 2, 2, 3, 3, 4, 5, 6, 8, 10, 12, 16, 20, 24, 30]:
        ids = [rng.randrange(n) for _ in range(length)]
        decode_cases.append(ids)
    # Hand-picked: byte tokens forming valid and invalid UTF-8, specials in between.
    vocab = tok.get_vocab(with_added_tokens=True)
    if "<0xE4>" in vocab:
        b = lambda x: vocab["<0x%02X>" % x]
        decode_cases += [[b(0xE4), b(0xBD), b(0xA0)], [b(0xE4), b(0xBD)],
                         [b(0xE4), b(0xBD), b(0xA0), b(0xFF)], [b(0x20), b(0x41)],
                         [1, b(0xE4), 2, b(0xBD)], [vocab["▁"], b(0xC3), b(0xA9)]]
    else:
        bl = bytes_to_unicode()
        b = lambda x: vocab[bl[x]]
        sp = sorted(i for i, t in tok.get_added_tokens_decoder().items() if t.special)
        decode_cases += [[b(0xE4), b(0xBD), b(0xA0)], [b(0xE4), b(0xBD)],
                         [b(0xE4), b(0xBD), b(0xA0), b(0xFF)], [b(0xF0), b(0x9F), b(0x98)],
                         [vocab.get("<|begin_of_text|>", sp[0]), b(0xE4),
                          vocab.get("<|eot_id|>", sp[-1]), b(0xBD)]]
    out_dec = []
    for ids in decode_cases:
        c = {"ids": ids}
        put_text(c, "decoded", decode_skipping(tok, ids))
        put_text(c, "decoded_keep", tok.decode(ids, skip_special_tokens=False))
        out_dec.append(c)
    special = {t.content: i for i, t in sorted(tok.get_added_tokens_decoder().items())
               if t.special}
    doc = {"generator": "tools/make_tokenizer_fixtures.py",
           "tokenizers_version": tokenizers.__version__,
           "vocab_size": n, "special": special, "cases": cases, "decode_cases": out_dec}
    with open(os.path.join(OUT, name, "cases.json"), "w", encoding="utf-8") as f:
        json.dump(doc, f, ensure_ascii=False, indent=0)
        f.write("\n")
    print(f"{name}: vocab {n}, {len(cases)} encode cases, {len(out_dec)} decode cases")




def main():
    lines = TRAIN_TEXT.splitlines(keepends=True)
    train = lines * 3
    rng = random.Random(1234)
    vocab, merges = llama2_base(train)
    write_cases(save(build_llama2(vocab, merges), "llama2"), "llama2", rng)
    write_cases(save(build_llama2_metaspace(vocab, merges), "llama2-metaspace"),
                "llama2-metaspace", rng)
    write_cases(save(build_llama2(vocab, merges, normalized=True), "llama2-normalized"),
                "llama2-normalized", rng)
    write_cases(save(build_llama3(train), "llama3", legacy_merges=True), "llama3", rng)
    vocab, merges = gpt2_base(train)
    write_cases(save(build_smollm2(vocab, merges), "smollm2"), "smollm2", rng, BYTELEVEL_CASES)
    write_cases(save(build_starcoder_prefix(vocab, merges), "starcoder-prefix"),
                "starcoder-prefix", rng, BYTELEVEL_CASES)
    write_cases(save(build_qwen2(train), "qwen2"), "qwen2", rng, BYTELEVEL_CASES)
    return 0


if __name__ == "__main__":
    sys.exit(main())
