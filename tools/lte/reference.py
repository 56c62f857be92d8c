"""The PyTorch LTE forward of a written sprig LTE folder, for checking sprig.

Reads the folder back on its own (llama.py for the LLaMA model, the router
and permutation tensors from model.safetensors), runs the hard LTE rule in
float64 (llama.py computes norms, RoPE and softmax in float64 too) and
writes expected.safetensors in the layout of tools/make_model_fixtures.py:

  tokens  I64 [T]       the input
  logits  F32 [T, V]    logits at every position (one forward pass)
  active  F32 [L, T, E] per routed layer: 1 where expert e is active for token t
  margin  F32 [L, T, E] G - tau: how far each decision is from flipping
"""
import json
import os

import torch

from . import llama
from .lte_mlp import install, set_mode
from .st import load_file, save_file


def load_lte_folder(folder, dtype=torch.float64):
    with open(os.path.join(folder, "config.json")) as f:
        lte = json.load(f)["lte"]
    model = llama.load(folder, torch.float32)
    n_layers = model.config.num_hidden_layers
    layers = lte.get("layers_with_router", list(range(n_layers)))
    perms, routers = {}, {}
    st = {}
    for path in llama.checkpoint_files(folder):
        st.update(load_file(path, [f"model.layers.{n}.mlp.{w}" for n in layers
                                   for w in ("expert_permutation", "router.weight")]))
    for n in layers:
        p = f"model.layers.{n}.mlp.expert_permutation"
        perms[n] = st[p].long() if p in st else torch.arange(model.config.intermediate_size)
        r = f"model.layers.{n}.mlp.router.weight"
        if r not in st:
            raise ValueError(f"{folder}: config.json lists layer {n} as routed but the checkpoint has no {r}")
        routers[n] = st[r]
    mlps = install(model, perms, lte["expert_size"], lte["threshold"])
    with torch.no_grad():
        for n, m in mlps.items():
            m.router.weight.copy_(routers[n])
    model = model.to(dtype).eval()
    set_mode(mlps, "hard")
    return model, mlps


@torch.no_grad()
def write_expected(folder, tokens, out):
    model, mlps = load_lte_folder(folder)
    for m in mlps.values():
        m.record, m.history = True, []
    ids = torch.tensor([tokens])
    logits = model(ids)[0].float()
    active = torch.stack([m.history[0] for m in mlps.values()]).float()  # [L, T, E]
    # the margins, recomputed from the same inputs: a hook on each router
    margin = []
    hooks = [m.router.register_forward_hook(lambda mod, i, o, m=m: margin.append((torch.sigmoid(o) - m.tau)[0]))
             for m in mlps.values()]
    model(ids)
    for h in hooks:
        h.remove()
    save_file({"tokens": torch.tensor(tokens, dtype=torch.int64), "logits": logits.contiguous(),
               "active": active.contiguous(), "margin": torch.stack(margin).float().contiguous()}, out)
    return logits, active
