#!/usr/bin/env python3
"""Converts a SliceGPT-sliced LLaMA (.pt state dict + slicing JSON) into a folder sprig loads.

SliceGPT's experiments/run_slicegpt.py --save-dir DIR writes
  DIR/<model>_<sparsity>.pt    torch.save(model.state_dict())
  DIR/<model>_<sparsity>.json  the SlicingConfig (per-layer widths)
and, when it sliced a local model (--model-path), copies that model's
config.json and tokenizer files into DIR.

This script writes OUT/ with
  model.safetensors  the same tensors under the same names (model.embed_tokens.weight,
                     model.layers.N.self_attn.*_proj.weight, model.layers.N.attn_shortcut_Q,
                     model.layers.N.mlp.*_proj.weight, model.layers.N.mlp_shortcut_Q,
                     lm_head.weight), contiguous, in their own dtype unless --dtype
  config.json        the ORIGINAL model's config.json plus "slicegpt": <the SlicingConfig>
  tokenizer files    copied from beside the config (tokenizer.json, ...), when present

It checks every shape against the slicing JSON on the way (sprig checks them
again when it loads the folder) and refuses widths that are not multiples of 8:
re-slice with run_slicegpt.py --round-interval 8 (its default).

Usage:
  python3 tools/slicegpt_to_safetensors.py DIR/Llama-2-7b-hf_0.25.pt --out OUT \\
      [--json DIR/Llama-2-7b-hf_0.25.json] [--config BASE/config.json] [--dtype float16]
Needs: torch, safetensors (pip). sprig itself does not.
"""
import argparse
import json
import os
import re
import shutil
import sys

import torch
from safetensors.torch import save_file

ROUND = 8
TOKENIZER_FILES = ["tokenizer.json", "tokenizer_config.json", "special_tokens_map.json", "tokenizer.model",
                   "generation_config.json"]
# Buffers some transformers versions kept in the state dict; sprig recomputes them.
DROPPABLE = re.compile(r"(^|\.)rotary_emb\.inv_freq$")
LAYER_TENSORS = ["self_attn.q_proj.weight", "self_attn.k_proj.weight", "self_attn.v_proj.weight",
                 "self_attn.o_proj.weight", "attn_shortcut_Q", "mlp.gate_proj.weight", "mlp.up_proj.weight",
                 "mlp.down_proj.weight", "mlp_shortcut_Q"]
TABLES = ["attention_input_dimensions", "attention_output_dimensions", "mlp_input_dimensions",
          "mlp_output_dimensions"]


def fail(msg):
    sys.exit(f"slicegpt_to_safetensors: {msg}")


def widths(sc, D, L):
    """Per-layer widths from a SlicingConfig dict (string or int layer keys), const_dimension handled."""
    if sc.get("parallel_blocks"):
        fail("parallel_blocks is true (a Phi-2-style layout); sprig runs sequential LLaMA layers")
    for key, want in (("hidden_size", D), ("layers_num", L)):
        if sc.get(key) not in (None, 0, want):
            fail(f"the slicing JSON has {key} {sc[key]} but config.json implies {want}")
    tables = {t: {int(k): v for k, v in (sc.get(t) or {}).items()} for t in TABLES}
    emb = {int(k): v for k, v in (sc.get("embedding_dimensions") or {}).items()}
    head = sc.get("head_dimension")
    if not any(tables.values()) and not emb:
        c = sc.get("const_dimension")
        if c is None:
            fail("the slicing JSON has no per-layer widths and no const_dimension")
        tables = {t: {l: c for l in range(L)} for t in TABLES}
        tables["mlp_output_dimensions"][L - 1] = head = c if sc.get("do_slice_head") else D
        emb = {0: c}
    if head is None:
        head = D
    for t in TABLES:
        if sorted(tables[t]) != list(range(L)):
            fail(f"{t} must have one entry per layer 0..{L - 1}, has {sorted(tables[t])}")
    if list(emb) != [0]:
        fail(f"embedding_dimensions must be {{\"0\": width}}, is {emb}")
    every = [("embedding_dimensions[0]", emb[0]), ("head_dimension", head)]
    every += [(f"{t}[{l}]", tables[t][l]) for t in TABLES for l in range(L)]
    for what, w in every:
        if not 1 <= w <= D:
            fail(f"{what} = {w} is outside [1, {D}]")
        if w != D and w % ROUND:
            fail(f"{what} = {w} is not a multiple of {ROUND}, which sprig's kernels need; slice with "
                 f"run_slicegpt.py --round-interval {ROUND} (its default): {w} -> {w - w % ROUND}")
    return emb[0], tables, head


def expected_shapes(cfg, emb, tables, head):
    D, f, V, L = cfg["hidden_size"], cfg["intermediate_size"], cfg["vocab_size"], cfg["num_hidden_layers"]
    H = cfg["num_attention_heads"]
    KV = cfg.get("num_key_value_heads") or H
    hd = cfg.get("head_dim") or D // H
    want = {"model.embed_tokens.weight": (V, emb), "lm_head.weight": (V, head)}
    for l in range(L):
        ai, ao = tables["attention_input_dimensions"][l], tables["attention_output_dimensions"][l]
        mi, mo = tables["mlp_input_dimensions"][l], tables["mlp_output_dimensions"][l]
        shapes = [(H * hd, ai), (KV * hd, ai), (KV * hd, ai), (ao, H * hd), (ai, ao), (f, mi), (f, mi), (mo, f),
                  (mi, mo)]
        for name, shape in zip(LAYER_TENSORS, shapes):
            want[f"model.layers.{l}.{name}"] = shape
    return want


def load_state_dict(path):
    sd = torch.load(path, map_location="cpu", weights_only=True)
    if not isinstance(sd, dict) or not all(isinstance(v, torch.Tensor) for v in sd.values()):
        fail(f"{path} is not a state dict of tensors (run_slicegpt.py saves model.state_dict())")
    if any(k.startswith("base_model.") for k in sd):
        fail(f"{path} is a PEFT/LoRA state dict; merge the adapters into the sliced model first")
    return sd


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("pt", help="<model>_<sparsity>.pt written by run_slicegpt.py --save-dir")
    ap.add_argument("--out", required=True, help="output folder (created)")
    ap.add_argument("--json", help="the slicing JSON (default: the .pt path with .json)")
    ap.add_argument("--config", help="the ORIGINAL model's config.json (default: config.json beside the .pt)")
    ap.add_argument("--dtype", choices=["keep", "float16", "bfloat16", "float32"], default="keep")
    args = ap.parse_args()
    json_path = args.json or os.path.splitext(args.pt)[0] + ".json"
    config_path = args.config or os.path.join(os.path.dirname(os.path.abspath(args.pt)), "config.json")
    for p, what in ((args.pt, "state dict"), (json_path, "slicing JSON (--json)"), (config_path, "config.json (--config)")):
        if not os.path.isfile(p):
            fail(f"no {what} at {p}")
    with open(json_path) as fp:
        slicing = json.load(fp)
    with open(config_path) as fp:
        cfg = json.load(fp)
    if "LlamaForCausalLM" not in cfg.get("architectures", []):
        fail(f"{config_path} is not a LlamaForCausalLM config")
    D, L = cfg["hidden_size"], cfg["num_hidden_layers"]
    emb, tables, head = widths(slicing, D, L)
    want = expected_shapes(cfg, emb, tables, head)

    sd = load_state_dict(args.pt)
    out = {}
    for name, t in sd.items():
        if DROPPABLE.search(name):
            continue
        if name not in want:
            hint = " (SliceGPT folds norm scales into the next linears: was the model fused?)" \
                if name.endswith("norm.weight") else ""
            fail(f"unexpected tensor '{name}' {tuple(t.shape)}{hint}")
        if tuple(t.shape) != want[name]:
            fail(f"tensor '{name}' has shape {tuple(t.shape)} but the slicing JSON implies {want[name]}")
        if args.dtype != "keep":
            t = t.to(getattr(torch, args.dtype))
        out[name] = t.detach().contiguous().clone()  # own storage: safetensors refuses shared tensors
    missing = sorted(set(want) - set(out))
    if missing:
        fail(f"the state dict lacks {len(missing)} tensors, e.g. {missing[:3]}")
    dtypes = {str(t.dtype).replace("torch.", "") for t in out.values()}

    os.makedirs(args.out, exist_ok=True)
    save_file(out, os.path.join(args.out, "model.safetensors"), metadata={"format": "pt"})
    cfg = dict(cfg)
    cfg["slicegpt"] = slicing
    if len(dtypes) == 1:
        cfg["torch_dtype"] = dtypes.pop()
    with open(os.path.join(args.out, "config.json"), "w") as fp:
        json.dump(cfg, fp, indent=2)
    src = os.path.dirname(os.path.abspath(config_path))
    copied = [f for f in TOKENIZER_FILES if os.path.isfile(os.path.join(src, f))]
    for f in copied:
        if os.path.abspath(os.path.join(src, f)) != os.path.abspath(os.path.join(args.out, f)):
            shutil.copy(os.path.join(src, f), args.out)
    print(f"wrote {args.out}: {len(out)} tensors, residual width {emb} of {D}, head {head}"
          f"{', copied ' + ', '.join(copied) if copied else ''}")


if __name__ == "__main__":
    main()
