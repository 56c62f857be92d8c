#!/usr/bin/env python3
"""The perplexity transformers computes for a model folder over a text, in the
windows `sprig perplexity` uses (the Hugging Face recipe, "Perplexity of
fixed-length models"): windows of `context` tokens every `stride` tokens,
each scoring the tokens past the previous window's end, the first token of
the text (BOS) never scored.

Writes tests/fixtures/perplexity/expected.json, which the `cli_perplexity`
test compares `sprig perplexity --json` against (within 0.5%); with --gguf,
tests/fixtures/perplexity/smollm2.json for the realmodel test on the real
SmolLM2-135M-Instruct GGUF (scripts/fetch-smollm2.sh), its first
--max-tokens tokens of the text.

Usage: python3 tools/perplexity_reference.py [--models tiny-llama3 ...]
       python3 tools/perplexity_reference.py --gguf PATH.gguf --max-tokens 96
Needs: torch, transformers, tokenizers (pip); gguf and accelerate for --gguf.
The C tests do not.
"""
import argparse
import json
import math
import os

import torch
from tokenizers import Tokenizer
from transformers import AutoModelForCausalLM

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(HERE)
FIXTURES = os.path.join(ROOT, "tests", "fixtures")


def perplexity(model, ids, context, stride):
    nll, scored, prev_end = 0.0, 0, 0
    for begin in range(0, len(ids), stride):
        end = min(begin + context, len(ids))
        trg_len = end - prev_end
        window = torch.tensor([ids[begin:end]])
        labels = window.clone()
        labels[:, :-trg_len] = -100
        with torch.no_grad():
            loss = model(window, labels=labels).loss  # mean over the shifted, unmasked labels
        n = int((labels[:, 1:] != -100).sum())
        nll += float(loss) * n
        scored += n
        prev_end = end
        if end == len(ids):
            break
    return nll, scored


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--models", nargs="*", default=["tiny-llama2", "tiny-llama3", "tiny-mistral", "tiny-qwen2"])
    ap.add_argument("--text", default=os.path.join(FIXTURES, "perplexity", "text.txt"))
    ap.add_argument("--context", type=int, default=32)
    ap.add_argument("--stride", type=int, default=16)
    ap.add_argument("--gguf", help="a GGUF file instead of the fixture models")
    ap.add_argument("--max-tokens", type=int, default=0, help="score only the first N tokens (0: all)")
    args = ap.parse_args()
    torch.set_num_threads(1)
    with open(args.text, encoding="utf-8") as f:
        text = f.read()
    out = []
    if args.gguf:
        from transformers import AutoTokenizer
        folder, name = os.path.dirname(os.path.abspath(args.gguf)), os.path.basename(args.gguf)
        ids = AutoTokenizer.from_pretrained(folder, gguf_file=name)(text)["input_ids"]
        ids = ids[:args.max_tokens] if args.max_tokens else ids
        model = AutoModelForCausalLM.from_pretrained(folder, gguf_file=name, dtype=torch.float32).eval()
        nll, scored = perplexity(model, ids, args.context, args.stride)
        out.append({"model": name, "context": args.context, "stride": args.stride, "max_tokens": args.max_tokens,
                    "tokens": len(ids), "scored": scored, "perplexity": math.exp(nll / scored)})
        print(out[-1])
        with open(os.path.join(FIXTURES, "perplexity", "smollm2.json"), "w") as f:
            json.dump(out, f, indent=1)
            f.write("\n")
        return
    for name in args.models:
        folder = os.path.join(FIXTURES, "models", name)
        ids = Tokenizer.from_file(os.path.join(folder, "tokenizer.json")).encode(text).ids
        model = AutoModelForCausalLM.from_pretrained(folder, torch_dtype=torch.float32,
                                                     attn_implementation="eager").eval()
        nll, scored = perplexity(model, ids, args.context, args.stride)
        out.append({"model": name, "context": args.context, "stride": args.stride, "tokens": len(ids),
                    "scored": scored, "perplexity": math.exp(nll / scored)})
        print(out[-1])
    with open(os.path.join(FIXTURES, "perplexity", "expected.json"), "w") as f:
        json.dump(out, f, indent=1)
        f.write("\n")


if __name__ == "__main__":
    main()
