"""The LTE MLP: a LLaMA SwiGLU MLP whose neurons are expert-contiguous, with
a sigmoid router (no bias) in front (LTE §4.2, threshold-based sigmoid routing).

The weights are held in expert order (neuron i belongs to expert i // g):
the grouping's permutation is applied once at install time (exact, the MLP
computes the same function) and undone by the writer. Parameter names match
Hugging Face's (gate_proj, up_proj, down_proj) plus `router`, so the state
dict already carries sprig's tensor names.

Modes:
  dense  every neuron (the original model; for the baseline)
  soft   stage 1: each expert's neurons scaled by its router output G_e
  hard   stage 2 and inference: expert e kept (x1) when G_e > tau, else dropped
"""
import torch
from torch import nn


class LteMLP(nn.Module):
    def __init__(self, mlp, perm, expert_size, tau, router_init_std=0.02, seed=0):
        super().__init__()
        f, d = mlp.gate_proj.weight.shape
        self.g, self.tau, self.n_experts = expert_size, tau, f // expert_size
        self.act_fn = mlp.act_fn
        self.gate_proj, self.up_proj, self.down_proj = mlp.gate_proj, mlp.up_proj, mlp.down_proj
        with torch.no_grad():  # stored neuron perm[i] becomes neuron i
            self.gate_proj.weight.copy_(self.gate_proj.weight[perm])
            self.up_proj.weight.copy_(self.up_proj.weight[perm])
            self.down_proj.weight.copy_(self.down_proj.weight[:, perm])
        self.register_buffer("perm", perm.clone(), persistent=False)
        self.router = nn.Linear(d, self.n_experts, bias=False, dtype=self.gate_proj.weight.dtype,
                                device=self.gate_proj.weight.device)
        gen = torch.Generator().manual_seed(seed)
        with torch.no_grad():  # small: every G_e starts near 0.5, no expert favoured
            self.router.weight.copy_(torch.randn(self.router.weight.shape, generator=gen) * router_init_std)
        self.mode = "soft"
        self.scores = None      # soft mode: G [.., E] of the last forward, for the losses
        self.active = None      # hard mode: bool [.., E] of the last forward
        self.record = False     # keep the hard decisions of every forward (reference)
        self.history = []

    def gates(self, x):
        return torch.sigmoid(self.router(x))

    def forward(self, x):
        h = self.act_fn(self.gate_proj(x)) * self.up_proj(x)
        if self.mode == "dense":
            return self.down_proj(h)
        G = self.gates(x)
        if self.mode == "soft":
            self.scores = G
            w = G
        else:
            self.active = G > self.tau
            if self.record:
                self.history.append(self.active.detach().reshape(-1, self.n_experts).clone())
            w = self.active.to(h.dtype)
        return self.down_proj(h * w.repeat_interleave(self.g, dim=-1))


def install(model, perms, expert_size, tau, seed=0):
    """Replaces each layer's MLP by an LteMLP (perms: {layer: permutation}); returns them by layer."""
    out = {}
    for n, perm in perms.items():
        layer = model.model.layers[n]
        layer.mlp = LteMLP(layer.mlp, perm, expert_size, tau, seed=seed + n)
        out[n] = layer.mlp
    return out


def set_mode(lte_mlps, mode):
    for m in lte_mlps.values():
        m.mode = mode


def routers(lte_mlps):
    return [m.router.weight for m in lte_mlps.values()]
