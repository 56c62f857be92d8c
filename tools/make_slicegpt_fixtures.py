#!/usr/bin/env python3
"""Writes tiny SliceGPT-sliced LLaMA folders and the logits a PyTorch sliced forward pass computes.

sprig's CPU backend runs SliceGPT models (microsoft/TransformerCompression)
without the slicegpt package. This script is the yardstick it is checked
against; it shares no code with the C side. It

1. builds a tiny random LLaMA (transformers' LlamaForCausalLM, norms away
   from 1 so folding them matters), untied;
2. transforms its weights the way SliceGPT does for LLaMA
   (layernorm_fusion.fuse_modules, then rotate.rotate_and_slice_sequential
   with a ConstSlicingScheduler and round_interval 8):
     - embeddings centred per row (fuse_modules does this for every model;
       for RMSNorm models it is not function-preserving, but it is what
       SliceGPT stores);
     - each RMSNorm scale folded into the linears that read the norm
       (q/k/v, gate/up, lm_head); the norms become weightless
       x * rsqrt(sum(x^2) / D + 1e-5) with D the ORIGINAL hidden size;
     - one orthogonal Q per residual point (after the embedding, after each
       attention block, after each MLP block). SliceGPT takes Q from PCA of
       calibration activations (times a random orthogonal block with
       --final-orientation random); here Q is random orthogonal: slicing
       correctness is about applying Q and deleting dimensions exactly as
       SliceGPT does, not about which Q;
     - W_in <- W_in @ Q and keep the first d columns (q/k/v, gate/up, the
       embedding), W_out <- Q^T @ W_out and keep the first d rows (o, down),
       shortcut matrices attn_shortcut_Q = Q_in^T[:d_in] @ Q_mid[:, :d_out]
       and mlp_shortcut_Q = Q_mid^T[:d_in] @ Q_out[:, :d_out], stored
       [in, out]; the last layer's MLP output and lm_head keep width D;
3. rounds the weights to float16 (as SliceGPT saves LLaMA) and runs an
   independent float64 sliced forward pass:
     h = x @ attn_shortcut_Q + attn(rmsn(x)),  y = h @ mlp_shortcut_Q + mlp(rmsn(h)).

Checks done here before anything is written (the script fails otherwise):
  - this file's own forward pass, run unsliced (norm weights, no shortcuts),
    reproduces transformers' logits;
  - slicing at 0% (Q orthogonal, no deletion, no centring) reproduces those
    logits to float64 precision: the rotation and folding are right.

Folders under tests/fixtures/sliced/ (no tokenizer; the C test feeds ids):

  tiny-sliced-20     d = 88 of 112; the SliceGPT JSON as SliceGPT names it
                     (tiny-llama_0.2.json, found by the loader on its own)
  tiny-sliced-25     d = 80; JSON inline under "slicegpt" in config.json;
                     also the training-free threshold reference
  tiny-sliced-30     d = 72; "slicegpt": "tiny-llama_0.3.json" (a file name)
  tiny-sliced-25-lte d = 80 plus LTE routers over the sliced MLP input
                     (router [E, mlp_input_dimension]) and expert permutations

expected.safetensors, the layout of tests/fixtures/models:
  tokens  I64 [T]; logits F32 [T, V]; greedy I64 [N] (greedy continuation,
  full recompute each step); active F32 [L, T, E] (LTE: 1 where an expert
  is active); thr_sparsity F32 [1] and thr_logits F32 [T, V] (tiny-sliced-25:
  per-layer thresholds on |silu(gate)| at that quantile of the values seen
  over `tokens` run dense, as sp_cpu_calibrate sets them, then the logits
  over `tokens` with those thresholds).

Usage: python3 tools/make_slicegpt_fixtures.py [--out tests/fixtures/sliced]
Needs: torch, transformers, safetensors (pip). The C tests do not.
"""
import argparse
import json
import math
import os
import shutil

import torch
from safetensors.torch import save_file
from transformers import LlamaConfig, LlamaForCausalLM

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(HERE)

SPEC = dict(hidden_size=112, intermediate_size=128, num_hidden_layers=2, num_attention_heads=4,
            num_key_value_heads=2, vocab_size=160, max_position_embeddings=64, rope_theta=10000.0,
            rms_norm_eps=1e-5, bos_token_id=1, eos_token_id=2)
ROUND_INTERVAL = 8     # run_slicegpt.py's default --round-interval
RMSN_EPS = 1e-5        # slicegpt/modules.py RMSN: eps fixed at 1e-5, divisor = original hidden size
MODEL_NAME = "tiny-llama"
T_TOKENS, N_GREEDY = 12, 8
F64 = torch.float64

# name -> (sparsity, how the slicing JSON is given, LTE (g, tau) or None, threshold quantile or None)
FOLDERS = {
    "tiny-sliced-20": (0.20, "file", None, None),
    "tiny-sliced-25": (0.25, "inline", None, 0.5),
    "tiny-sliced-30": (0.30, "named", None, None),
    "tiny-sliced-25-lte": (0.25, "inline", (16, 0.5), None),
}


def sliced_width(D, sparsity):
    """run_slicegpt.py: int((1 - sparsity) * hidden_size), rounded down to round_interval."""
    d = int((1 - sparsity) * D)
    return d - d % ROUND_INTERVAL


def build_hf(seed):
    torch.manual_seed(seed)
    cfg = LlamaConfig(attention_bias=False, mlp_bias=False, hidden_act="silu", initializer_range=0.15,
                      tie_word_embeddings=False, rope_scaling=None, **SPEC)
    cfg._attn_implementation = "eager"
    model = LlamaForCausalLM(cfg).eval()
    with torch.no_grad():
        for name, p in model.named_parameters():
            if name.endswith("norm.weight"):
                p.copy_(1.0 + 0.3 * torch.randn_like(p))
    return model, cfg


def plain_weights(model):
    return {k: v.detach().to(F64).clone() for k, v in model.state_dict().items() if "rotary" not in k}


# ---- SliceGPT's transformation ------------------------------------------------------------


def fuse(w, L, center):
    """layernorm_fusion.fuse_modules for LLaMA: fold each norm scale into the linears after it."""
    w = {k: v.clone() for k, v in w.items()}
    if center:
        E = w["model.embed_tokens.weight"]
        w["model.embed_tokens.weight"] = E - E.mean(dim=-1, keepdim=True)
    for l in range(L):
        p = f"model.layers.{l}."
        a = w.pop(p + "input_layernorm.weight")
        m = w.pop(p + "post_attention_layernorm.weight")
        for n in ("self_attn.q_proj", "self_attn.k_proj", "self_attn.v_proj"):
            w[p + n + ".weight"] = w[p + n + ".weight"] * a
        for n in ("mlp.gate_proj", "mlp.up_proj"):
            w[p + n + ".weight"] = w[p + n + ".weight"] * m
    w["lm_head.weight"] = w["lm_head.weight"] * w.pop("model.norm.weight")
    return w


def random_orthogonal(n, gen):
    q, r = torch.linalg.qr(torch.randn(n, n, generator=gen, dtype=F64))
    return q * torch.sign(torch.diagonal(r))


def rotate_and_slice(w, L, D, dims, gen):
    """rotate.rotate_and_slice_sequential, with one orthogonal Q per residual point.
    dims: the SlicingConfig dict (string layer keys, as SliceGPT's JSON has them)."""
    w = dict(w)
    Q = random_orthogonal(D, gen)
    emb = dims["embedding_dimensions"]["0"]
    w["model.embed_tokens.weight"] = (w["model.embed_tokens.weight"] @ Q)[:, :emb]
    for l in range(L):
        p, i = f"model.layers.{l}.", str(l)
        ai, ao = dims["attention_input_dimensions"][i], dims["attention_output_dimensions"][i]
        mi, mo = dims["mlp_input_dimensions"][i], dims["mlp_output_dimensions"][i]
        attn_sc = Q.T.clone()
        for n in ("q_proj", "k_proj", "v_proj"):
            w[p + f"self_attn.{n}.weight"] = (w[p + f"self_attn.{n}.weight"] @ Q)[:, :ai]
        attn_sc = attn_sc[:ai, :]
        Q = random_orthogonal(D, gen)
        attn_sc = attn_sc @ Q[:, :ao]
        w[p + "self_attn.o_proj.weight"] = (Q.T @ w[p + "self_attn.o_proj.weight"])[:ao, :]
        mlp_sc = Q.T.clone()[:mi, :]
        for n in ("gate_proj", "up_proj"):
            w[p + f"mlp.{n}.weight"] = (w[p + f"mlp.{n}.weight"] @ Q)[:, :mi]
        Q = random_orthogonal(D, gen)
        mlp_sc = mlp_sc @ Q
        w[p + "mlp.down_proj.weight"] = (Q.T @ w[p + "mlp.down_proj.weight"])[:mo, :]
        w[p + "attn_shortcut_Q"] = attn_sc
        w[p + "mlp_shortcut_Q"] = mlp_sc[:, :mo]
    w["lm_head.weight"] = w["lm_head.weight"] @ Q  # do_slice_head = False: full width
    return w


def slicing_config(L, D, d):
    """SlicingConfig.to_dict() of a ConstSlicingScheduler(d) run, as json.dumps writes it."""
    per = {str(l): d for l in range(L)}
    mlp_out = dict(per)
    mlp_out[str(L - 1)] = D  # the last MLP output feeds the unsliced head
    return {"hidden_size": D, "layers_num": L, "do_slice_head": False, "parallel_blocks": False,
            "embedding_dimensions": {"0": d}, "attention_input_dimensions": dict(per),
            "attention_output_dimensions": dict(per), "mlp_input_dimensions": dict(per),
            "mlp_output_dimensions": mlp_out, "head_dimension": D, "const_dimension": None}


# ---- the reference forward pass (float64, whole sequence, causal) --------------------------


def rmsn(x, divisor, eps, weight=None):
    y = x * torch.rsqrt(x.pow(2).sum(-1, keepdim=True) / divisor + eps)
    return y if weight is None else y * weight


def rope(x, pos, theta):
    """transformers' rotate_half convention; inv_freq and angles in float32 as it computes them."""
    hd = x.shape[-1]
    inv_freq = 1.0 / (theta ** (torch.arange(0, hd, 2, dtype=torch.int64).float() / hd))
    ang = (pos.float()[:, None] * inv_freq[None, :]).to(F64)
    cos, sin = torch.cat([ang, ang], -1).cos()[:, None, :], torch.cat([ang, ang], -1).sin()[:, None, :]
    x1, x2 = x[..., : hd // 2], x[..., hd // 2:]
    return x * cos + torch.cat([-x2, x1], -1) * sin


def silu32(g):
    """|silu(g)| as the C backend computes it: g rounded to float, silu in float."""
    g = g.float()
    return (g / (1 + torch.exp(-g))).abs()


class Mlp:
    """Which neurons a layer's MLP uses. dense: all; lte: router rule; threshold: |silu(gate)| > t."""

    def __init__(self, kind="dense", lte=None, thresholds=None):
        self.kind, self.lte, self.thresholds = kind, lte, thresholds
        self.active, self.seen = {}, {}

    def mask(self, l, n, g):
        if self.kind == "lte" and l in self.lte["routers"]:
            act = torch.sigmoid(n @ self.lte["routers"][l].T) > self.lte["tau"]  # [T, E]
            self.active.setdefault(l, act.to(torch.float32))
            per = act.repeat_interleave(self.lte["g"], dim=-1)
            mask = torch.empty_like(per)
            mask[:, self.lte["perms"][l]] = per  # position i is stored neuron perm[i]
            return mask.to(F64)
        if self.kind == "threshold":
            return (silu32(g) > self.thresholds[l]).to(F64)
        self.seen.setdefault(l, silu32(g))
        return torch.ones_like(g)


def forward(w, cfg, tokens, mlp, sliced):
    """Logits [T, V]. sliced: weightless norms over D and shortcut matrices; else plain LLaMA."""
    D, L = cfg["hidden_size"], cfg["num_hidden_layers"]
    H, KV = cfg["num_attention_heads"], cfg["num_key_value_heads"]
    hd = D // H
    T = len(tokens)
    pos = torch.arange(T)
    causal = torch.full((T, T), float("-inf"), dtype=F64).triu(1)
    x = w["model.embed_tokens.weight"][torch.tensor(tokens)]
    for l in range(L):
        p = f"model.layers.{l}."
        if sliced:
            n = rmsn(x, D, RMSN_EPS)
        else:
            n = rmsn(x, x.shape[-1], cfg["rms_norm_eps"], w[p + "input_layernorm.weight"])
        q = (n @ w[p + "self_attn.q_proj.weight"].T).view(T, H, hd)
        k = (n @ w[p + "self_attn.k_proj.weight"].T).view(T, KV, hd)
        v = (n @ w[p + "self_attn.v_proj.weight"].T).view(T, KV, hd)
        q, k = rope(q, pos, cfg["rope_theta"]), rope(k, pos, cfg["rope_theta"])
        k, v = k.repeat_interleave(H // KV, dim=1), v.repeat_interleave(H // KV, dim=1)
        s = torch.einsum("thd,shd->hts", q, k) / math.sqrt(hd) + causal
        a = torch.einsum("hts,shd->thd", torch.softmax(s, -1), v).reshape(T, H * hd)
        a = a @ w[p + "self_attn.o_proj.weight"].T
        h = (x @ w[p + "attn_shortcut_Q"] if sliced else x) + a
        if sliced:
            n = rmsn(h, D, RMSN_EPS)
        else:
            n = rmsn(h, h.shape[-1], cfg["rms_norm_eps"], w[p + "post_attention_layernorm.weight"])
        g = n @ w[p + "mlp.gate_proj.weight"].T
        u = n @ w[p + "mlp.up_proj.weight"].T
        act = torch.nn.functional.silu(g) * u * mlp.mask(l, n, g)
        y = act @ w[p + "mlp.down_proj.weight"].T
        x = (h @ w[p + "mlp_shortcut_Q"] if sliced else h) + y
    if sliced:
        x = rmsn(x, D, RMSN_EPS)
    else:
        x = rmsn(x, x.shape[-1], cfg["rms_norm_eps"], w["model.norm.weight"])
    return x @ w["lm_head.weight"].T


def greedy(w, cfg, tokens, make_mlp, sliced):
    seq, out, margins = list(tokens), [], []
    for _ in range(N_GREEDY):
        logits = forward(w, cfg, seq, make_mlp(), sliced)[-1]
        top = logits.topk(2).values
        margins.append(float(top[0] - top[1]) / float(logits.abs().max()))
        out.append(int(logits.argmax()))
        seq.append(out[-1])
    return out, min(margins)


def calibrate(w, cfg, tokens, sparsity):
    """sp_cpu_calibrate: per layer, sort |silu(gate)| over all tokens and neurons (dense run);
    the threshold is the value at index floor(sparsity * n) - 1; neurons above it are kept."""
    mlp = Mlp()
    forward(w, cfg, tokens, mlp, True)
    thresholds, gaps = {}, []
    for l, vals in mlp.seen.items():
        v = vals.flatten().sort().values
        at = int(sparsity * v.numel())
        thresholds[l] = float(v[at - 1]) if at > 0 else -1.0
        gaps.append(float(v[at] - v[at - 1]) / float(v[-1]))
    return thresholds, min(gaps)


# ---- checks and output ----------------------------------------------------------------------


def rel_err(a, b):
    return float((a - b).norm() / b.norm())


def check_equivalence(model, cfg, w, tokens):
    """Own forward vs transformers, then 0% slicing (rotation + folding only) vs own forward."""
    with torch.no_grad():
        hf = model.double()(torch.tensor([tokens])).logits[0]
    model.float()
    plain = forward(w, cfg, tokens, Mlp(), False)
    e1 = rel_err(plain, hf)
    D, L = cfg["hidden_size"], cfg["num_hidden_layers"]
    gen = torch.Generator().manual_seed(99)
    rotated = rotate_and_slice(fuse(w, L, center=False), L, D, slicing_config(L, D, D), gen)
    e2 = rel_err(forward(rotated, cfg, tokens, Mlp(), True), plain)
    print(f"own forward vs transformers: rel err {e1:.2e}; 0% slicing vs unsliced: rel err {e2:.2e}")
    assert e1 < 1e-6, f"own forward disagrees with transformers ({e1})"
    assert e2 < 1e-12, f"0% slicing is not function-preserving ({e2})"


def config_json(cfg):
    keys = ["hidden_size", "intermediate_size", "num_hidden_layers", "num_attention_heads",
            "num_key_value_heads", "vocab_size", "max_position_embeddings", "rope_theta",
            "rms_norm_eps", "bos_token_id", "eos_token_id"]
    out = {"architectures": ["LlamaForCausalLM"], "model_type": "llama", "hidden_act": "silu",
           "attention_bias": False, "mlp_bias": False, "rope_scaling": None,
           "tie_word_embeddings": False, "torch_dtype": "float16"}
    out.update({k: cfg[k] for k in keys})
    return out


def write_folder(out, name, cfg, w16, dims, how, lte, expected, sparsity):
    folder = os.path.join(out, name)
    shutil.rmtree(folder, ignore_errors=True)
    os.makedirs(folder)
    conf = config_json(cfg)
    json_name = f"{MODEL_NAME}_{sparsity}.json"  # run_slicegpt.py: <model>_<sparsity>.json
    if how == "inline":
        conf["slicegpt"] = dims
    elif how == "named":
        conf["slicegpt"] = json_name
    if how != "inline":
        with open(os.path.join(folder, json_name), "w") as f:
            f.write(json.dumps(dims))  # SlicingConfig.to_json_string(): json.dumps, one line
    if lte:
        conf["lte"] = lte
    with open(os.path.join(folder, "config.json"), "w") as f:
        json.dump(conf, f, indent=2)
    save_file({k: v.contiguous() for k, v in w16.items()}, os.path.join(folder, "model.safetensors"),
              metadata={"format": "pt"})
    save_file({k: v.contiguous() for k, v in expected.items()}, os.path.join(folder, "expected.safetensors"))


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--out", default=os.path.join(ROOT, "tests", "fixtures", "sliced"))
    args = ap.parse_args()
    torch.set_num_threads(1)
    model, hf_cfg = build_hf(seed=3000)
    cfg = dict(SPEC)
    w = plain_weights(model)
    D, L, f = cfg["hidden_size"], cfg["num_hidden_layers"], cfg["intermediate_size"]
    tokens = torch.randint(0, cfg["vocab_size"], (T_TOKENS,), generator=torch.Generator().manual_seed(5)).tolist()
    check_equivalence(model, cfg, w, tokens)
    fused = fuse(w, L, center=True)
    for j, (name, (sparsity, how, lte_spec, thr)) in enumerate(FOLDERS.items()):
        d = sliced_width(D, sparsity)
        dims = slicing_config(L, D, d)
        sliced = rotate_and_slice(fused, L, D, dims, torch.Generator().manual_seed(4000 + j))
        extra, lte, lte_json = {}, None, None
        if lte_spec:
            g, tau = lte_spec
            gen = torch.Generator().manual_seed(5000 + j)
            E = f // g
            lte = {"g": g, "tau": tau, "routers": {}, "perms": {}}
            for l in range(L):
                mi = dims["mlp_input_dimensions"][str(l)]
                lte["routers"][l] = torch.randn(E, mi, generator=gen, dtype=F64) * 0.3
                lte["perms"][l] = torch.randperm(f, generator=gen)
                sliced[f"model.layers.{l}.mlp.router.weight"] = lte["routers"][l]
                extra[f"model.layers.{l}.mlp.expert_permutation"] = lte["perms"][l].to(torch.int32)
            lte_json = {"expert_size": g, "threshold": tau}
        w16 = {k: v.to(torch.float16) for k, v in sliced.items()}
        ref = {k: v.to(F64) for k, v in w16.items()}  # the reference runs on the stored values
        if lte:
            lte["routers"] = {l: ref[f"model.layers.{l}.mlp.router.weight"] for l in range(L)}
        make_mlp = (lambda: Mlp("lte", lte)) if lte else (lambda: Mlp())
        mlp = make_mlp()
        logits = forward(ref, cfg, tokens, mlp, True)
        gen_tokens, margin = greedy(ref, cfg, tokens, make_mlp, True)
        assert margin > 1e-4, f"{name}: greedy top-2 margin {margin:.2e} too small to compare"
        expected = {"tokens": torch.tensor(tokens, dtype=torch.int64), "logits": logits.float(),
                    "greedy": torch.tensor(gen_tokens, dtype=torch.int64)}
        note = ""
        if lte:
            expected["active"] = torch.stack([mlp.active[l] for l in range(L)])
            note = f", experts active {float(expected['active'].mean()):.2f}"
        if thr:
            thresholds, gap = calibrate(ref, cfg, tokens, thr)
            assert gap > 2e-6, f"{name}: values too close at the threshold ({gap:.2e})"
            expected["thr_sparsity"] = torch.tensor([thr], dtype=torch.float32)
            expected["thr_logits"] = forward(ref, cfg, tokens, Mlp("threshold", thresholds=thresholds), True).float()
            note += f", threshold logits at {thr:.0%} sparsity"
        w16.update(extra)
        write_folder(args.out, name, cfg, w16, dims, how, lte_json, expected, sparsity)
        print(f"{name}: d {d} of {D} ({how} JSON), greedy {gen_tokens}, margin {margin:.1e}{note}")


if __name__ == "__main__":
    main()
