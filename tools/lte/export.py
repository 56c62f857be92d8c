"""Writes the trained model as a sprig LTE folder (model/sp_model_config.h):

  config.json        the source config unchanged, plus
                     "lte": {"expert_size": g, "threshold": tau, "layers_with_router": [...]}
  model.safetensors  every weight (F32 or F16), the MLP back in the source's
                     neuron order, plus per routed layer N
                       model.layers.N.mlp.router.weight       [E, d] F32 (rows in expert order)
                       model.layers.N.mlp.expert_permutation  [f] I32: stored neuron p[i] is neuron i
  tokenizer files    copied as they are
  lte_report.json    how it was made: grouping sizes, eta, sparsity, perplexities

Routers stay F32 whatever --dtype says: a decision G > tau that flips on a
rounded router weight would be a different model.
"""
import json
import os
import shutil

import torch
from .st import save_file

COPIED = ["tokenizer.json", "tokenizer_config.json", "special_tokens_map.json", "generation_config.json",
          "chat_template.jinja"]
DTYPES = {"f32": torch.float32, "f16": torch.float16}


def stored_order(name, w, perm):
    """The expert-order MLP weight back in the source's order: stored[p[i]] = trained[i]."""
    out = torch.empty_like(w)
    if name.endswith("down_proj.weight"):
        out[:, perm] = w
    else:
        out[perm] = w
    return out


def tensors(model, lte_mlps, dtype, tied):
    sd = {}
    for name, w in model.state_dict().items():
        w = w.detach().cpu()
        if tied and name == "lm_head.weight":
            continue  # tied: sprig (and transformers, and llama.py) take the embedding
        parts = name.split(".")
        if name.endswith("mlp.router.weight"):
            sd[name] = w.float().contiguous()
            continue
        if len(parts) > 4 and parts[3] == "mlp" and int(parts[2]) in lte_mlps:
            w = stored_order(name, w, lte_mlps[int(parts[2])].perm.cpu())
        sd[name] = w.to(DTYPES[dtype]).contiguous()
    for n, m in lte_mlps.items():
        sd[f"model.layers.{n}.mlp.expert_permutation"] = m.perm.cpu().to(torch.int32).contiguous()
    return sd


def write_folder(src, out, model, lte_mlps, expert_size, tau, dtype, report):
    os.makedirs(out, exist_ok=True)
    with open(os.path.join(src, "config.json")) as f:
        conf = json.load(f)
    conf["lte"] = {"expert_size": expert_size, "threshold": tau, "layers_with_router": sorted(lte_mlps)}
    tied = bool(conf.get("tie_word_embeddings", False))
    save_file(tensors(model, lte_mlps, dtype, tied), os.path.join(out, "model.safetensors"),
              metadata={"format": "pt"})
    with open(os.path.join(out, "config.json"), "w") as f:
        json.dump(conf, f, indent=2)
        f.write("\n")
    for name in COPIED:
        if os.path.exists(os.path.join(src, name)):
            shutil.copy(os.path.join(src, name), out)
    with open(os.path.join(out, "lte_report.json"), "w") as f:
        json.dump(report, f, indent=1)
        f.write("\n")
