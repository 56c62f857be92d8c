#!/usr/bin/env python3
"""A llama GGUF (e.g. SmolLM2-135M-Instruct's Q4_1, scripts/fetch-smollm2.sh)
to a Hugging Face folder: config.json, model.safetensors (dequantized to F32
or F16), tokenizer.json and tokenizer_config.json (with the chat template).

transformers reads the GGUF itself (through gguf-py: dequantization and the
q/k un-permutation are its own), so the folder is what transformers would
compute from the file, independent of sprig's GGUF loader. Used to give
tools/lte a real model to train on.

usage: python3 tools/gguf_to_hf.py FILE.gguf OUT_DIR [--dtype f32|f16]
needs: torch, transformers, gguf (pip)
"""
import argparse
import json
import os

import torch
from safetensors.torch import save_file
from transformers import AutoModelForCausalLM, AutoTokenizer


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("gguf")
    ap.add_argument("out")
    ap.add_argument("--dtype", choices=["f32", "f16"], default="f32")
    args = ap.parse_args()
    folder, name = os.path.dirname(os.path.abspath(args.gguf)), os.path.basename(args.gguf)
    dtype = {"f32": torch.float32, "f16": torch.float16}[args.dtype]
    model = AutoModelForCausalLM.from_pretrained(folder, gguf_file=name, dtype=dtype)
    tok = AutoTokenizer.from_pretrained(folder, gguf_file=name)
    # save_pretrained refuses a model loaded from GGUF (it counts as quantized);
    # its weights are plain tensors by now, so write them and the config directly
    os.makedirs(args.out, exist_ok=True)
    sd = {k: v.detach().contiguous() for k, v in model.state_dict().items()}
    if model.config.tie_word_embeddings:
        sd.pop("lm_head.weight", None)
    save_file(sd, os.path.join(args.out, "model.safetensors"), metadata={"format": "pt"})
    conf = model.config.to_dict()
    conf.pop("quantization_config", None)
    conf["architectures"] = [type(model).__name__]
    with open(os.path.join(args.out, "config.json"), "w") as f:
        json.dump(conf, f, indent=2)
        f.write("\n")
    tok.save_pretrained(args.out)
    print(f"{args.out}: {type(model).__name__}, d={model.config.hidden_size}, f={model.config.intermediate_size}, "
          f"{model.config.num_hidden_layers} layers, {args.dtype}")


if __name__ == "__main__":
    main()
