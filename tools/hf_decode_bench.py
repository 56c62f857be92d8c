#!/usr/bin/env python3
"""Hugging Face transformers' decode speed on a model folder, measured the way
`sprig bench-e2e` measures sprig's: greedy decoding at batch 1 with the KV
cache, warm-up steps first, then the mean milliseconds per token over the
timed steps (CUDA synchronised before each clock read).

Run it on the same GPU in the same session as `sprig bench-e2e`, on the same
folder (e.g. one written by `sprig synth --model llama2-7b --lte 32`: the LTE
routers and config fields are ignored by transformers, so this is the dense
model), to compare side by side:

    python3 tools/hf_decode_bench.py /tmp/l7 --attn eager sdpa --json hf.json

--compile adds, per attention implementation, transformers at its fastest for
decoding: a static KV cache and torch.compile(mode="reduce-overhead") (CUDA
graphs on a GPU), compiled during the warm-up steps (so give it a few).

A SliceGPT-sliced folder is refused: transformers has no sliced LLaMA.
"""
import argparse
import json
import sys
import time
import warnings


def parse_args():
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("model", help="a Hugging Face LLaMA folder")
    p.add_argument("--attn", nargs="+", default=["eager"], choices=["eager", "sdpa"],
                   help="attention implementations to time (default eager)")
    p.add_argument("--dtype", default="fp16", choices=["fp16", "bf16", "fp32"])
    p.add_argument("--device", default="cuda", help="cuda or cpu (default cuda)")
    p.add_argument("--tokens", type=int, default=32, help="timed decode steps (default 32)")
    p.add_argument("--warmup", type=int, default=4, help="untimed steps first (default 4)")
    p.add_argument("--compile", action="store_true",
                   help="also time each with a static cache and torch.compile(mode='reduce-overhead')")
    p.add_argument("--json", help="also write the results as JSON")
    return p.parse_args()


def time_decode(model, torch, device, warmup, tokens):
    """Greedy steps from token 1 with the cache; ms per timed step, and the tokens."""
    sync = torch.cuda.synchronize if device.startswith("cuda") else (lambda: None)
    ids = torch.tensor([[1]], device=device)
    past, t0, seq = None, 0.0, []
    with torch.inference_mode():
        for step in range(warmup + tokens):
            if step == warmup:
                sync()
                t0 = time.perf_counter()
            out = model(input_ids=ids, past_key_values=past, use_cache=True)
            past = out.past_key_values
            ids = out.logits[:, -1:].argmax(-1)
            seq.append(int(ids))
        sync()
    return (time.perf_counter() - t0) * 1e3 / tokens, seq


def time_decode_compiled(model, torch, device, warmup, tokens):
    """time_decode with a static cache and the forward compiled (CUDA graphs on a GPU)."""
    from transformers import StaticCache

    sync = torch.cuda.synchronize if device.startswith("cuda") else (lambda: None)
    cache = StaticCache(config=model.config, max_cache_len=warmup + tokens + 1)
    forward = torch.compile(model.forward, mode="reduce-overhead", fullgraph=True)
    ids = torch.tensor([[1]], device=device)
    t0, seq = 0.0, []
    with torch.inference_mode():
        for step in range(warmup + tokens):
            if step == warmup:
                sync()
                t0 = time.perf_counter()
            pos = torch.tensor([step], device=device)
            out = forward(input_ids=ids, past_key_values=cache, cache_position=pos, use_cache=True)
            ids = out.logits[:, -1:].argmax(-1).clone()
            seq.append(int(ids))
        sync()
    return (time.perf_counter() - t0) * 1e3 / tokens, seq


def main():
    a = parse_args()
    if a.tokens < 1 or a.warmup < 0:
        sys.exit("hf_decode_bench: --tokens >= 1 and --warmup >= 0")
    with open(f"{a.model}/config.json") as f:
        cfg = json.load(f)
    if "slicegpt" in cfg:
        sys.exit("hf_decode_bench: a SliceGPT-sliced folder: transformers has no sliced LLaMA to run it with")
    import torch
    from transformers import LlamaForCausalLM

    dtype = {"fp16": torch.float16, "bf16": torch.bfloat16, "fp32": torch.float32}[a.dtype]
    rows = []
    for attn in a.attn:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")  # the LTE tensors sprig adds are unused weights to transformers
            model = LlamaForCausalLM.from_pretrained(a.model, dtype=dtype, attn_implementation=attn)
        model.to(a.device).eval()
        ms, eager_tokens = time_decode(model, torch, a.device, a.warmup, a.tokens)
        rows.append({"attn": attn, "ms_per_token": ms})
        print(f"transformers {attn:5s} {a.dtype}: {ms:9.3f} ms/token", flush=True)
        if a.compile:
            ms, tokens = time_decode_compiled(model, torch, a.device, a.warmup, a.tokens)
            # greedy tokens as a check that the compiled model decodes the same (fp16 near-ties may differ)
            same = tokens == eager_tokens
            rows.append({"attn": attn, "compiled": True, "static_cache": True, "ms_per_token": ms,
                         "same_tokens_as_uncompiled": same})
            print(f"transformers {attn:5s} {a.dtype} static cache + torch.compile: {ms:9.3f} ms/token"
                  f"{'' if same else ' (greedy tokens differ from the uncompiled run)'}", flush=True)
        del model
        if a.device.startswith("cuda"):
            torch.cuda.empty_cache()
    import transformers

    device = torch.cuda.get_device_name() if a.device.startswith("cuda") else "CPU"
    print(f"({device}, torch {torch.__version__}, transformers {transformers.__version__}; "
          f"{a.tokens} timed tokens after {a.warmup} warm-up)")
    if a.json:
        with open(a.json, "w") as f:
            json.dump({"model": a.model, "device": device, "dtype": a.dtype, "tokens": a.tokens,
                       "warmup": a.warmup, "torch": torch.__version__,
                       "transformers": transformers.__version__, "rows": rows}, f, indent=1)


if __name__ == "__main__":
    main()
