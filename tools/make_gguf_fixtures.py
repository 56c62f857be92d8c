#!/usr/bin/env python3
"""Fixtures for tests/test_gguf.c, from the `gguf` Python package (gguf-py,
llama.cpp's own reader/writer), the independent reference:

  tests/fixtures/gguf/<TYPE>.bin   random blocks of a GGUF tensor type
  tests/fixtures/gguf/<TYPE>.f32   gguf.quants.dequantize of them (fp32, little-endian)
  tests/fixtures/gguf/tiny.gguf    a 2-layer LLaMA written by gguf.GGUFWriter: metadata of
                                   every value type (arrays, an array of arrays), tensors in
                                   Q8_0, Q4_0, Q4_1, Q4_K, Q6_K, F16, BF16, F32, no output.weight
  tests/fixtures/gguf/tiny.json    what sprig must make of it: the config, and per HF tensor
                                   name its shape and an FNV-1a 64 hash of its fp32 values in
                                   HF layout (q/k rows un-permuted here by inverting
                                   convert_hf_to_gguf.py's permute numerically), plus samples
  tests/fixtures/gguf/spm*.gguf    SentencePiece-style ("llama") vocabularies, no merges: the
  tests/fixtures/gguf/spm.json     LLaMA-2 tokenizer fixture's tokens with scores and token
                                   types, and the ids transformers' GGUF converter gives on texts

`python3 tools/make_gguf_fixtures.py spm` writes only the spm files and the fuzz seed
tests/fuzz_corpus/tiny_spm.gguf (no random numbers).

Random blocks: every byte random except the fp16 scales, which are drawn as
finite fp16 values (random bits there would be NaN/inf now and then, whose
payloads numpy and C need not agree on). Run: python3 tools/make_gguf_fixtures.py
(pip install gguf numpy). Deterministic (seeded)."""
import json
import os
import sys

import numpy as np
import gguf
from gguf import GGMLQuantizationType as T
from gguf.quants import dequantize

OUT = os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "tests", "fixtures", "gguf")
rng = np.random.default_rng(20240612)

# byte offsets of the fp16 scale fields inside one block, per type
SCALES = {T.Q8_0: [0], T.Q4_0: [0], T.Q4_1: [0, 2], T.Q4_K: [0, 2], T.Q6_K: [208]}


def f16_bytes(n, scale):
    return (rng.standard_normal(n) * scale).astype(np.float16).view(np.uint8).reshape(n, 2)


def random_blocks(qtype, n_blocks):
    blck, size = gguf.GGML_QUANT_SIZES[qtype]
    if qtype == T.F32:
        v = (rng.standard_normal(n_blocks * 32) * 3).astype(np.float32)
        v[:4] = [0.0, -0.0, 1e-40, -3.4e38]  # zero, negative zero, a subnormal, near the largest
        return v.view(np.uint8)
    if qtype == T.F16:
        bits = rng.integers(0, 1 << 16, n_blocks * 32, dtype=np.uint16)
        bits = bits[(bits & 0x7C00) != 0x7C00]  # no inf/NaN
        return bits.view(np.uint8)
    if qtype == T.BF16:
        bits = rng.integers(0, 1 << 16, n_blocks * 32, dtype=np.uint16)
        bits = bits[(bits & 0x7F80) != 0x7F80]
        return bits.view(np.uint8)
    raw = rng.integers(0, 256, (n_blocks, size), dtype=np.uint8)
    for off in SCALES[qtype]:
        raw[:, off:off + 2] = f16_bytes(n_blocks, 0.05 if qtype != T.Q6_K else 0.002)
    return raw.reshape(-1)


def write_dequant_fixtures():
    for qtype, n_blocks in [(T.F32, 4), (T.F16, 4), (T.BF16, 4), (T.Q8_0, 16), (T.Q4_0, 16),
                            (T.Q4_1, 16), (T.Q4_K, 6), (T.Q6_K, 6)]:
        raw = random_blocks(qtype, n_blocks)
        ref = dequantize(raw, qtype).astype(np.float32).reshape(-1)
        raw.tofile(os.path.join(OUT, f"{qtype.name}.bin"))
        ref.astype("<f4").tofile(os.path.join(OUT, f"{qtype.name}.f32"))
        print(f"{qtype.name}: {raw.size} bytes -> {ref.size} floats")


def fnv1a64(values):
    h = 0xCBF29CE484222325
    for b in np.ascontiguousarray(values, dtype="<f4").view(np.uint8).tobytes():
        h = ((h ^ b) * 0x100000001B3) & 0xFFFFFFFFFFFFFFFF
    return f"{h:016x}"


def permute(w, n_head, n_head_kv):
    """convert_hf_to_gguf.py's LlamaModel.permute (HF rows -> GGUF rows), verbatim."""
    if n_head_kv is not None and n_head != n_head_kv:
        n_head = n_head_kv
    return (w.reshape(n_head, 2, w.shape[0] // n_head // 2, *w.shape[1:])
            .swapaxes(1, 2)
            .reshape(w.shape))


def unpermute(g, n_head, n_head_kv):
    """The HF matrix h with permute(h) == g: push row numbers through permute, scatter back."""
    idx = permute(np.arange(g.shape[0]).reshape(-1, 1), n_head, n_head_kv).reshape(-1)
    h = np.empty_like(g)
    h[idx] = g
    assert np.array_equal(permute(h, n_head, n_head_kv), g)
    return h


def add_tokenizer(w):
    """A byte-level BPE vocabulary (part of GPT-2's byte alphabet, then merges), as llama.cpp writes one."""
    tokens = ["<|endoftext|>", "<|im_start|>", "<|im_end|>"] + [chr(c) for c in range(ord("a"), ord("z") + 1)]
    tokens += ["Ġ", "Ġt", "he", "Ġthe", "in", "Ġa", "er", "on", "an", "re", "ĠĠ", "at", "en", "is", "ou", "ing",
               "Ġs", "or", "ed"]
    assert len(tokens) == 48, len(tokens)
    merges = ["Ġ t", "h e", "Ġt he", "i n", "Ġ a", "e r", "o n", "a n", "r e", "Ġ Ġ", "a t", "e n", "i s",
              "o u", "in g", "Ġ s", "o r", "e d"]
    w.add_tokenizer_model("gpt2")
    w.add_tokenizer_pre("smollm")
    w.add_token_list(tokens)
    w.add_token_types([3, 3, 3] + [1] * (len(tokens) - 3))
    w.add_token_merges(merges)
    w.add_bos_token_id(1)
    w.add_eos_token_id(2)



def write_tiny_model():
    d, f, n_layers, heads, kv_heads, vocab = 64, 256, 2, 4, 2, 48
    hd = d // heads
    w = gguf.GGUFWriter(os.path.join(OUT, "tiny.gguf"), "llama")
    w.add_block_count(n_layers)
    w.add_context_length(256)
    w.add_embedding_length(d)
    w.add_feed_forward_length(f)
    w.add_head_count(heads)
    w.add_head_count_kv(kv_heads)
    w.add_rope_freq_base(50000.0)
    w.add_layer_norm_rms_eps(1e-6)
    w.add_rope_dimension_count(hd)
    w.add_file_type(7)
    # every metadata value type, so the parser reads (and skips) each
    w.add_uint8("test.u8", 200)
    w.add_int8("test.i8", -5)
    w.add_uint16("test.u16", 60000)
    w.add_int16("test.i16", -30000)
    w.add_uint32("test.u32", 4000000000)
    w.add_int32("test.i32", -2000000000)
    w.add_float32("test.f32", 0.25)
    w.add_bool("test.bool", True)
    w.add_uint64("test.u64", 1 << 40)
    w.add_int64("test.i64", -(1 << 40))
    w.add_float64("test.f64", 1.0 / 3.0)
    w.add_array("test.arr_i32", [1, -2, 3])  # gguf-py writes Python ints as i32
    w.add_array("test.arr_arr", [[1, 2], [3]])
    w.add_string("test.str", "héllo")
    add_tokenizer(w)

    expect = {}

    def add(name, hf_name, shape_hf, qtype, perm_heads=None):
        rows = int(np.prod(shape_hf[:-1])) if len(shape_hf) > 1 else 1
        cols = shape_hf[-1]
        blck, size = gguf.GGML_QUANT_SIZES[qtype]
        n_blocks = rows * cols // blck
        raw = random_blocks(qtype, n_blocks)
        if qtype in (T.F32, T.F16, T.BF16):
            raw = raw[: rows * cols * size]
            if raw.size < rows * cols * size:  # inf/NaN filtering left too few: pad with zeros
                raw = np.concatenate([raw, np.zeros(rows * cols * size - raw.size, np.uint8)])
        vals = dequantize(raw, qtype).astype(np.float32).reshape(rows, cols)
        if perm_heads:
            vals = unpermute(vals, *perm_heads)
        # the writer takes the bytes shaped [rows, bytes per row] (numpy order) and derives
        # GGUF's ne = [cols, rows] from the type's block size
        nbytes_per_row = cols // blck * size
        w.add_tensor(name, raw.reshape(rows, nbytes_per_row) if len(shape_hf) > 1 else raw, raw_dtype=qtype)
        flat = vals.reshape(-1)
        picks = sorted(set([0, flat.size - 1] + list(rng.integers(0, flat.size, 6))))
        expect[hf_name] = {"shape": list(shape_hf), "fnv1a64": fnv1a64(flat),
                           "samples": [[int(i), float(flat[i])] for i in picks]}

    add("token_embd.weight", "model.embed_tokens.weight", [vocab, d], T.Q8_0)
    add("output_norm.weight", "model.norm.weight", [d], T.F32)
    kinds = [
        dict(q=T.Q4_0, k=T.Q4_1, v=T.Q8_0, o=T.F16, gate=T.BF16, up=T.Q8_0, down=T.Q4_K, an=T.F32, fn=T.F16),
        dict(q=T.Q8_0, k=T.F16, v=T.Q4_1, o=T.Q4_0, gate=T.Q4_1, up=T.F16, down=T.Q6_K, an=T.BF16, fn=T.F32),
    ]
    for L, k in enumerate(kinds):
        p = f"model.layers.{L}."
        add(f"blk.{L}.attn_norm.weight", p + "input_layernorm.weight", [d], k["an"])
        add(f"blk.{L}.attn_q.weight", p + "self_attn.q_proj.weight", [heads * hd, d], k["q"], (heads, heads))
        add(f"blk.{L}.attn_k.weight", p + "self_attn.k_proj.weight", [kv_heads * hd, d], k["k"], (heads, kv_heads))
        add(f"blk.{L}.attn_v.weight", p + "self_attn.v_proj.weight", [kv_heads * hd, d], k["v"])
        add(f"blk.{L}.attn_output.weight", p + "self_attn.o_proj.weight", [d, heads * hd], k["o"])
        add(f"blk.{L}.ffn_norm.weight", p + "post_attention_layernorm.weight", [d], k["fn"])
        add(f"blk.{L}.ffn_gate.weight", p + "mlp.gate_proj.weight", [f, d], k["gate"])
        add(f"blk.{L}.ffn_up.weight", p + "mlp.up_proj.weight", [f, d], k["up"])
        add(f"blk.{L}.ffn_down.weight", p + "mlp.down_proj.weight", [d, f], k["down"])
    w.write_header_to_file()
    w.write_kv_data_to_file()
    w.write_tensors_to_file()
    w.close()
    config = {"hidden_size": d, "intermediate_size": f, "num_hidden_layers": n_layers,
              "num_attention_heads": heads, "num_key_value_heads": kv_heads, "head_dim": hd,
              "rope_theta": 50000.0, "rms_norm_eps": 1e-6, "max_position_embeddings": 256,
              "vocab_size": vocab, "tie_word_embeddings": True, "bos_token_id": 1, "eos_token_id": 2}
    # the tokenizer, as transformers builds it from a file with the same tokenizer metadata
    # (transformers' reader cannot read tiny.gguf's array of arrays); text without digits,
    # where SmolLM's digit split and transformers' plain GPT-2 split agree
    from transformers import AutoTokenizer
    t = gguf.GGUFWriter(os.path.join(OUT, "tok.gguf"), "llama")
    add_tokenizer(t)
    t.write_header_to_file()
    t.write_kv_data_to_file()
    t.write_tensors_to_file()
    t.close()
    tok = AutoTokenizer.from_pretrained(OUT, gguf_file="tok.gguf")
    texts = ["the theater is on", "  erring at the inn", "<|im_start|>user seen<|im_end|>", "Ġquote's"]
    tok_cases = [{"text": t, "ids": tok(t, add_special_tokens=True)["input_ids"]} for t in texts]
    with open(os.path.join(OUT, "tiny.json"), "w") as fp:
        json.dump({"config": config, "tensors": expect, "tokenizer": tok_cases}, fp, indent=1, sort_keys=True)
        fp.write("\n")
    print("tiny.gguf:", os.path.getsize(os.path.join(OUT, "tiny.gguf")), "bytes")


def write_spm():
    """Two "llama" vocabularies (tokens, scores, token types, no merges, so they are rebuilt from
    the scores) made from tests/fixtures/tokenizers/llama2's tokens, and transformers' ids on texts.
    spm.gguf: SentencePiece's scores (0 for <unk>/<s>/</s> and the byte tokens, then falling with
    the id), add_bos_token absent (transformers then adds BOS). spm_ties.gguf: every score -1000, as
    llama.cpp writes a vocabulary taken from a tokenizer.json (the merge order then falls to the
    lengths of the two pieces and the token order), add_bos_token false, add_eos_token true,
    control, user-defined and three plain tokens appended, a padding token that is a plain token (it becomes
    special)."""
    from transformers import AutoTokenizer
    src = os.path.join(OUT, "..", "tokenizers", "llama2", "tokenizer.json")
    with open(src, encoding="utf-8") as fp:
        vocab = json.load(fp)["model"]["vocab"]
    base = sorted(vocab, key=vocab.get)
    assert [vocab[t] for t in base] == list(range(len(base))) and base[:3] == ["<unk>", "<s>", "</s>"]
    assert base[3:259] == [f"<0x{b:02X}>" for b in range(256)]

    def write(name, tokens, scores, types, **extra):
        w = gguf.GGUFWriter(os.path.join(OUT, name), "llama")
        w.add_tokenizer_model("llama")
        w.add_token_list(tokens)
        w.add_token_scores(scores)
        w.add_token_types(types)
        w.add_unk_token_id(0)
        w.add_bos_token_id(1)
        w.add_eos_token_id(2)
        for key, value in extra.items():
            getattr(w, "add_" + key)(value)
        w.write_header_to_file()
        w.write_kv_data_to_file()
        w.write_tensors_to_file()
        w.close()
        return AutoTokenizer.from_pretrained(OUT, gguf_file=name)

    types = [2, 3, 3] + [6] * 256 + [1] * (len(base) - 259)
    texts = ["Hello world", " Hello world", "Hello  world", "   three leading spaces", "line1\nline2\n\n",
             "tab\there", "don't stop the tokenizer", "def f(x):\n    return x**2\n", "the theory",
             "caf\u00e9 na\u00efve", "\u65e5\u672c\u8a9e\u306e\u30c6\u30ad\u30b9\u30c8 \U0001F642",
             "\x07bell \u16a0\u16c7", "<s>inside</s> <unk>x", "in <|im_start|>user<|im_end|> <think>there",
             "def tokenize(text):\n\treturn pieces, numbers; they've 1,000 weights \u00fcber \u00f6perat",
             "print the symbol line: sure, isn't that amusing?\t\ttabs and\ttabs", "qzjx", "a", " ", ""]
    # every plain token, a line each ("\u2581" as the space it stands for)
    texts.append("\n".join(t.replace("\u2581", " ") for t in base[259:]))

    def cases(tok):  # ids with the special tokens added, and their decoding (special tokens kept, skipped)
        ids = [tok(t)["input_ids"] for t in texts]
        return [{"text": t, "ids": i, "decoded": tok.decode(i), "decoded_skip": tok.decode(i, skip_special_tokens=True)}
                for t, i in zip(texts, ids)]

    out = {}
    tok = write("spm.gguf", base, [0.0] * 259 + [-float(i - 259) for i in range(259, len(base))], types)
    out["spm.gguf"] = cases(tok)
    # and "jx", "qz", "zjx": in "qzjx", after j+x the merges q+z and z+jx tie on the score and
    # len(left); len(right) puts z+jx first, though "qz" comes before "zjx" in the file
    extra = ["<|im_start|>", "<|im_end|>", "<think>", "jx", "qz", "zjx"]
    tokens = base + extra
    tok = write("spm_ties.gguf", tokens, [-1000.0] * len(tokens), types + [3, 3, 4, 1, 1, 1], add_bos_token=False,
                add_eos_token=True, pad_token_id=vocab["er"])
    out["spm_ties.gguf"] = cases(tok)
    with open(os.path.join(OUT, "spm.json"), "w", encoding="utf-8") as fp:
        json.dump(out, fp, ensure_ascii=False)
        fp.write("\n")
    for name in out:
        print(name, os.path.getsize(os.path.join(OUT, name)), "bytes")


def write_fuzz_seed():
    """tests/fuzz_corpus/tiny.gguf: a small seed for fuzz_parsers: the tokenizer and one small
    tensor of each type sprig dequantizes."""
    w = gguf.GGUFWriter(os.path.join(OUT, "..", "..", "fuzz_corpus", "tiny.gguf"), "llama")
    add_tokenizer(w)
    w.add_array("test.arr_arr", [[1, 2], [3]])
    for qtype in [T.F32, T.F16, T.BF16, T.Q8_0, T.Q4_0, T.Q4_1, T.Q4_K, T.Q6_K]:
        blck, size = gguf.GGML_QUANT_SIZES[qtype]
        n = 256 if blck == 256 else 32
        raw = random_blocks(qtype, max(1, n // blck))[: n // blck * size]
        w.add_tensor(f"t.{qtype.name}", raw.reshape(1, -1), raw_dtype=qtype)
    w.write_header_to_file()
    w.write_kv_data_to_file()
    w.write_tensors_to_file()
    w.close()


def write_spm_fuzz_seed():
    """tests/fuzz_corpus/tiny_spm.gguf: a few-token "llama" vocabulary (merges rebuilt from the scores)."""
    w = gguf.GGUFWriter(os.path.join(OUT, "..", "..", "fuzz_corpus", "tiny_spm.gguf"), "llama")
    tokens = ["<unk>", "<s>", "</s>", "<0x00>", "<0xE6>", "\u2581", "a", "b", "\u00e9", "ab", "\u2581ab", "b\u00e9", "<|x|>"]
    w.add_tokenizer_model("llama")
    w.add_token_list(tokens)
    w.add_token_scores([0.0] * 5 + [-1.0, -2.0, -2.0, -3.0, -0.5, -0.25, -0.5, 0.0])
    w.add_token_types([2, 3, 3, 6, 6, 1, 1, 1, 1, 1, 1, 1, 3])
    w.add_unk_token_id(0)
    w.add_bos_token_id(1)
    w.add_eos_token_id(2)
    w.add_add_eos_token(True)
    w.write_header_to_file()
    w.write_kv_data_to_file()
    w.write_tensors_to_file()
    w.close()


if __name__ == "__main__":
    os.makedirs(OUT, exist_ok=True)
    if sys.argv[1:] == ["spm"]:
        write_spm()
        write_spm_fuzz_seed()
        sys.exit(0)
    write_dequant_fixtures()
    write_tiny_model()
    write_spm()
    write_fuzz_seed()  # last: the fixtures above stay as they were
    write_spm_fuzz_seed()
    sys.exit(0)
