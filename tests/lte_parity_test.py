#!/usr/bin/env python3
"""tools/lte's plain-torch stand-ins against the libraries they replace.

tools/lte runs with torch alone (Debian 12's python3-torch has no
transformers, safetensors or tokenizers), so it carries its own LLaMA model
(llama.py), safetensors reader/writer (st.py) and tokenizer.json encoder
(tokenizer.py). Where those libraries are installed this checks, on every
tiny fixture:

  - llama.py's logits equal transformers' *ForCausalLM (eager) in float64 on
    random token ids, two ways: transformers as shipped (it computes RMSNorm,
    RoPE and softmax in float32 even in a float64 model, so ~1e-7 is all
    that can agree: rel err <= 1e-6), and transformers with those float32
    casts raised to float64 (its `torch` module name swapped for one whose
    float32 is float64; the code run is still transformers'): rel err <= 1e-12;
  - a sharded copy (model.safetensors.index.json) loads to the same logits;
  - configs llama.py does not implement are refused;
  - st.py and the safetensors package read each other's files, every dtype;
  - tokenizer.py gives the tokenizers library's ids on this repo's docs.

Exit 77 (skipped) when transformers, safetensors or tokenizers is missing.
"""
import glob
import importlib
import json
import os
import shutil
import sys
import tempfile

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, ROOT)
try:
    import safetensors.torch
    import tokenizers
    import torch
    import transformers
except ImportError as e:
    print(f"lte_parity_test: {e.name} not importable: skipped")
    sys.exit(77)

from tools.lte import llama, st  # noqa: E402
from tools.lte.tokenizer import Tokenizer  # noqa: E402

MODELS = sorted(glob.glob(os.path.join(ROOT, "tests", "fixtures", "models", "*")))
SHIPPED, RAISED = 1e-6, 1e-12
checks = []


def check(ok, msg):
    checks.append((bool(ok), msg))


def rel(a, b):
    return ((a - b).norm() / b.norm()).item()


class Float64Torch:
    """torch, except that float32 (and torch.float) mean float64."""
    float32 = torch.float64
    float = torch.float64

    def __getattr__(self, name):
        return getattr(torch, name)


def transformers_model(folder):
    m = transformers.AutoModelForCausalLM.from_pretrained(folder, dtype=torch.float64, attn_implementation="eager")
    return m.eval()


def logits_check(folder, ids):
    name = os.path.basename(folder)
    ours = llama.load(folder, torch.float64)
    with torch.no_grad():
        got = ours(ids)
        shipped = rel(got, transformers_model(folder)(ids).logits)
        modules = ["transformers.modeling_rope_utils"] + [f"transformers.models.{a}.modeling_{a}"
                                                          for a in ("llama", "mistral", "qwen2")]
        saved = {m: importlib.import_module(m).torch for m in modules}
        try:
            for m in modules:
                importlib.import_module(m).torch = Float64Torch()
            raised = rel(got, transformers_model(folder)(ids).logits)
        finally:
            for m, t in saved.items():
                importlib.import_module(m).torch = t
    check(shipped <= SHIPPED and raised <= RAISED,
          f"{name} ({ours.config.arch}): logits rel err vs transformers {shipped:.2g} as shipped (<= {SHIPPED}), "
          f"{raised:.2g} with its float32 casts raised to float64 (<= {RAISED})")
    return got


def sharded_check(folder, ids, expected, tmp):
    """The fixture split into two shards with an index: the same model."""
    out = os.path.join(tmp, os.path.basename(folder) + "-sharded")
    os.makedirs(out)
    shutil.copy(os.path.join(folder, "config.json"), out)
    sd = st.load_file(os.path.join(folder, "model.safetensors"))
    names = sorted(sd)
    shards = {"model-00001-of-00002.safetensors": names[::2], "model-00002-of-00002.safetensors": names[1::2]}
    for shard, part in shards.items():
        st.save_file({n: sd[n] for n in part}, os.path.join(out, shard))
    with open(os.path.join(out, "model.safetensors.index.json"), "w") as f:
        json.dump({"weight_map": {n: s for s, part in shards.items() for n in part}}, f)
    with torch.no_grad():
        got = llama.load(out, torch.float64)(ids)
    check(torch.equal(got, expected), f"{os.path.basename(folder)}: a two-shard copy gives the same logits")


def refusal_checks():
    with open(os.path.join(ROOT, "tests", "fixtures", "models", "tiny-llama2", "config.json")) as f:
        base = json.load(f)
    qwen = dict(base, architectures=["Qwen2ForCausalLM"])
    cases = [("mlp_bias", dict(base, mlp_bias=True)), ("hidden_act", dict(base, hidden_act="gelu")),
             ("yarn", dict(base, rope_scaling={"rope_type": "yarn", "factor": 2.0})),
             ("partial_rotary_factor", dict(base, partial_rotary_factor=0.5)),
             ("use_sliding_window", dict(qwen, use_sliding_window=True, sliding_window=4)),
             ("GPTNeoX", dict(base, architectures=["GPTNeoXForCausalLM"]))]
    for what, conf in cases:
        try:
            llama.Config(conf)
            check(False, f"llama.Config accepts an unimplemented {what}")
        except llama.ConfigError as e:
            check(what.lower() in str(e).lower() or "not implemented" in str(e), f"refused: {e}")


def safetensors_checks(tmp):
    g = torch.Generator().manual_seed(0)
    ts = {"f64": torch.randn(3, 5, generator=g, dtype=torch.float64), "f32": torch.randn(7, generator=g),
          "f16": torch.randn(2, 3, generator=g).half(), "bf16": torch.randn(5, generator=g).bfloat16(),
          "i64": torch.arange(-3, 3).view(2, 3), "i32": torch.arange(7, dtype=torch.int32),
          "i16": torch.arange(3, dtype=torch.int16), "i8": torch.arange(-2, 2, dtype=torch.int8),
          "u8": torch.arange(4, dtype=torch.uint8), "bool": torch.tensor([True, False, True]),
          "empty": torch.empty(0, 4), "scalar": torch.tensor(2.5)}
    ours, theirs = os.path.join(tmp, "ours.safetensors"), os.path.join(tmp, "theirs.safetensors")
    st.save_file(ts, ours, {"format": "pt"})
    safetensors.torch.save_file(ts, theirs, metadata={"format": "pt"})
    same = lambda a, b: set(a) == set(b) and all(a[k].dtype == b[k].dtype and torch.equal(a[k], b[k]) for k in a)
    check(same(ts, safetensors.torch.load_file(ours)), "st.save_file's file read by the safetensors package")
    check(same(ts, st.load_file(theirs)), "the safetensors package's file read by st.load_file")
    with open(ours, "rb") as f:
        meta = st.read_header(f, ours)[1]
    check(meta == {"format": "pt"}, f"metadata written and read back ({meta})")


def tokenizer_checks():
    text = []
    for f in sorted(glob.glob(os.path.join(ROOT, "docs", "*.md"))) + [os.path.join(ROOT, "README.md")]:
        with open(f, encoding="utf-8") as fh:
            text += [ln.strip() for ln in fh if ln.strip()]
    chunks = [" ".join(text[i:i + 200]) for i in range(0, len(text), 200)] + text[:500]
    paths = sorted(glob.glob(os.path.join(ROOT, "tests", "fixtures", "tokenizers", "*", "tokenizer.json")) +
                   [os.path.join(m, "tokenizer.json") for m in MODELS])
    for p in paths:
        ours, ref = Tokenizer.from_file(p), tokenizers.Tokenizer.from_file(p)
        differ = sum(ours.encode(c) != ref.encode(c, add_special_tokens=False).ids for c in chunks)
        check(differ == 0, f"{os.path.relpath(p, ROOT)}: tokenizer.py == tokenizers on {len(chunks)} pieces "
              f"({sum(map(len, chunks))} chars), {differ} differ")


def main():
    transformers.utils.logging.set_verbosity_error()
    transformers.utils.logging.disable_progress_bar()
    with tempfile.TemporaryDirectory(prefix="sprig-lte-parity-") as tmp:
        for folder in MODELS:
            conf = llama.Config.from_folder(folder)
            # longer than tiny-mistral's window (5), within every fixture's max_position_embeddings
            ids = torch.randint(0, conf.vocab_size, (2, 40), generator=torch.Generator().manual_seed(1))
            got = logits_check(folder, ids)
            sharded_check(folder, ids, got, tmp)
        refusal_checks()
        safetensors_checks(tmp)
    tokenizer_checks()
    for ok, msg in checks:
        print(("ok   " if ok else "FAIL ") + msg)
    failed = sum(not ok for ok, _ in checks)
    print(f"lte_parity_test: {len(checks)} checks, {failed} failed (torch {torch.__version__}, "
          f"transformers {transformers.__version__})")
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
