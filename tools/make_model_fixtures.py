#!/usr/bin/env python3
"""Writes tiny LLaMA model folders and the logits Hugging Face computes for them.

The CPU backend of sprig is checked against an implementation nobody here
wrote: transformers' LlamaForCausalLM. This script builds tiny random models
(LLaMA-2 style; LLaMA-3 style with GQA and llama3 rope scaling; LTE
variants with sprig's router extension; Mistral with a sliding window shorter
than the sequence; Qwen2 with its q/k/v biases and tied embeddings, through
transformers' own Mistral/Qwen2 classes), saves each as a Hugging Face folder
(config.json, model.safetensors, tokenizer.json) under tests/fixtures/models/,
and stores what the reference computes in expected.safetensors:

  tokens  I64 [T]       the input sequence
  logits  F32 [T, V]    logits at every position (one forward pass)
  greedy  I64 [N]       N greedy tokens generated after `tokens`
  active  F32 [L, T, E] LTE models only: 1 where expert e is active for token t

LTE models are run with the LTE rule applied in PyTorch: per token, expert e
is active when sigmoid(x . W_r[e]) > tau; only the neurons of active experts
contribute (the expert permutation maps stored neurons to experts).

Usage: python3 tools/make_model_fixtures.py [--out tests/fixtures/models] [--only NAME ...]
Needs: torch, transformers, safetensors (pip). The C tests do not.
"""
import argparse
import json
import os
import shutil

import torch
from safetensors.torch import save_file
from transformers import (LlamaConfig, LlamaForCausalLM, MistralConfig, MistralForCausalLM, Qwen2Config,
                          Qwen2ForCausalLM)

# Each architecture's config and model classes, and what its fixtures set
# beyond the shared sizes (model/arch.c holds sprig's side of the same table).
ARCHS = {
    "llama": (LlamaConfig, LlamaForCausalLM, dict(attention_bias=False, mlp_bias=False)),
    "mistral": (MistralConfig, MistralForCausalLM, {}),
    "qwen2": (Qwen2Config, Qwen2ForCausalLM, dict(use_sliding_window=False)),
}

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(HERE)
TOKENIZERS = os.path.join(ROOT, "tests", "fixtures", "tokenizers")


def tokenizer_vocab(name):
    with open(os.path.join(TOKENIZERS, name, "tokenizer.json")) as f:
        tok = json.load(f)
    ids = list(tok["model"]["vocab"].values()) + [t["id"] for t in tok.get("added_tokens", [])]
    return max(ids) + 1


SPECS = {
    "tiny-llama2": dict(
        tokenizer="llama2", hidden_size=64, intermediate_size=192, num_hidden_layers=2,
        num_attention_heads=4, num_key_value_heads=4, rope_theta=10000.0, tie_word_embeddings=False,
        rope_scaling=None, max_position_embeddings=128, bos_token_id=1, eos_token_id=2),
    "tiny-llama3": dict(
        tokenizer="llama3", hidden_size=64, intermediate_size=224, num_hidden_layers=2,
        num_attention_heads=4, num_key_value_heads=2, rope_theta=500000.0, tie_word_embeddings=False,
        rope_scaling={"rope_type": "llama3", "factor": 8.0, "low_freq_factor": 1.0,
                      "high_freq_factor": 4.0, "original_max_position_embeddings": 16},
        max_position_embeddings=128, bos_token_id=None, eos_token_id=None),
    "tiny-llama2-tied": dict(
        tokenizer="llama2", hidden_size=48, intermediate_size=128, num_hidden_layers=1,
        num_attention_heads=2, num_key_value_heads=1, rope_theta=10000.0, tie_word_embeddings=True,
        rope_scaling=None, max_position_embeddings=64, bos_token_id=1, eos_token_id=2),
    # A window of 5 over 12 prompt tokens and 8 generated: most positions see only part of the cache.
    "tiny-mistral": dict(
        arch="mistral", tokenizer="llama2", hidden_size=64, intermediate_size=160, num_hidden_layers=2,
        num_attention_heads=4, num_key_value_heads=2, rope_theta=10000.0, tie_word_embeddings=False,
        sliding_window=5, max_position_embeddings=64, bos_token_id=1, eos_token_id=2),
    # q/k/v biases (drawn away from 0 below), tied embeddings, GQA 4/2.
    "tiny-qwen2": dict(
        arch="qwen2", tokenizer="llama3", hidden_size=64, intermediate_size=176, num_hidden_layers=2,
        num_attention_heads=4, num_key_value_heads=2, rope_theta=1000000.0, tie_word_embeddings=True,
        max_position_embeddings=64, bos_token_id=None, eos_token_id=None),
}
# LTE variants: (base, expert size g, tau, layers with a router, permute?)
LTE = {
    "tiny-llama2-lte": ("tiny-llama2", 16, 0.5, [0, 1], True),
    "tiny-llama3-lte": ("tiny-llama3", 32, 0.5, [1], False),
}


def build(spec, seed):
    torch.manual_seed(seed)
    vocab = tokenizer_vocab(spec["tokenizer"])
    kw = {k: v for k, v in spec.items() if k not in ("tokenizer", "arch")}
    if kw["bos_token_id"] is None:
        kw["bos_token_id"] = vocab - 2
        kw["eos_token_id"] = vocab - 1
    config_class, model_class, extra = ARCHS[spec.get("arch", "llama")]
    cfg = config_class(vocab_size=vocab, rms_norm_eps=1e-5, hidden_act="silu", initializer_range=0.15,
                       torch_dtype="float32", **extra, **kw)
    cfg._attn_implementation = "eager"
    model = model_class(cfg).eval()
    with torch.no_grad():  # norms away from 1 and biases away from 0, so that they matter
        for name, p in model.named_parameters():
            if name.endswith("norm.weight"):
                p.copy_(1.0 + 0.3 * torch.randn_like(p))
            if name.endswith(".bias"):
                p.copy_(0.5 * torch.randn_like(p))
    return model, cfg


class LteMlp(torch.nn.Module):
    """The LTE rule over a LlamaMLP: h_i kept only where its expert is active."""

    def __init__(self, mlp, router, perm, g, tau, record):
        super().__init__()
        self.mlp, self.router, self.g, self.tau, self.record = mlp, router, g, tau, record
        self.perm = perm  # stored neuron perm[i] is neuron i (expert i // g)

    def forward(self, x):
        active = torch.sigmoid(x @ self.router.T) > self.tau  # [..., E]
        self.record.append(active.float().reshape(-1, active.shape[-1]))
        per_neuron = active.repeat_interleave(self.g, dim=-1)  # [..., f] in expert order
        mask = torch.empty_like(per_neuron)
        mask[..., self.perm] = per_neuron  # back to stored order
        h = torch.nn.functional.silu(self.mlp.gate_proj(x)) * self.mlp.up_proj(x) * mask
        return self.mlp.down_proj(h)


def add_lte(model, cfg, g, tau, layers, permute, seed):
    torch.manual_seed(seed + 100)
    f, d = cfg.intermediate_size, cfg.hidden_size
    extra, records = {}, []
    for n in layers:
        E = f // g
        router = torch.randn(E, d) * 0.3
        perm = torch.randperm(f) if permute else torch.arange(f)
        rec = []
        records.append(rec)
        layer = model.model.layers[n]
        layer.mlp = LteMlp(layer.mlp, router, perm, g, tau, rec)
        extra[f"model.layers.{n}.mlp.router.weight"] = router.contiguous()
        if permute:
            extra[f"model.layers.{n}.mlp.expert_permutation"] = perm.to(torch.int32).contiguous()
    return extra, records


def state_dict_of(model):
    sd = {}
    for k, v in model.state_dict().items():
        k = k.replace(".mlp.mlp.", ".mlp.")
        if k.endswith("mlp.perm") or k.endswith("router"):
            continue
        sd[k] = v.contiguous()
    if model.config.tie_word_embeddings:
        sd.pop("lm_head.weight", None)
    return sd


def write(out, name, spec_name, model, cfg, extra, lte, tokens, records_fn):
    folder = os.path.join(out, name)
    os.makedirs(folder, exist_ok=True)
    sd = state_dict_of(model)
    sd.update(extra)
    save_file(sd, os.path.join(folder, "model.safetensors"))
    conf = cfg.to_dict()
    conf["architectures"] = [type(model).__name__]
    conf["torch_dtype"] = "float32"
    for k in ["_attn_implementation_autoset", "transformers_version", "dtype"]:
        conf.pop(k, None)
    if lte:
        conf["lte"] = lte
    rp = conf.get("rope_parameters")
    if rp is not None and not lte:
        # Published checkpoints (and transformers 4.x) spell RoPE as rope_theta +
        # rope_scaling; transformers 5 writes rope_parameters. Plain models get the
        # former, LTE models keep the latter, so the loader is tested on both.
        conf.pop("rope_parameters")
        conf["rope_theta"] = rp.pop("rope_theta")
        conf["rope_scaling"] = rp if rp.get("rope_type", "default") != "default" else None
    with open(os.path.join(folder, "config.json"), "w") as f:
        json.dump(conf, f, indent=2, sort_keys=True)
    shutil.copy(os.path.join(TOKENIZERS, SPECS[spec_name]["tokenizer"], "tokenizer.json"), folder)
    with torch.no_grad():
        logits = model(torch.tensor([tokens])).logits[0].float()
        active = records_fn()
        seq = list(tokens)
        greedy = []
        for _ in range(8):  # greedy decoding, full recompute each step (no cache to get wrong)
            nxt = int(model(torch.tensor([seq])).logits[0, -1].argmax())
            greedy.append(nxt)
            seq.append(nxt)
    expected = {"tokens": torch.tensor(tokens, dtype=torch.int64), "logits": logits.contiguous(),
                "greedy": torch.tensor(greedy, dtype=torch.int64)}
    if active is not None:
        expected["active"] = active.contiguous()
    save_file(expected, os.path.join(folder, "expected.safetensors"))
    print(f"{name}: vocab {cfg.vocab_size}, {len(tokens)} tokens, greedy {greedy}")


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--out", default=os.path.join(ROOT, "tests", "fixtures", "models"))
    ap.add_argument("--only", nargs="*", help="write only these fixtures (default: all)")
    args = ap.parse_args()
    torch.set_num_threads(1)
    for i, (name, spec) in enumerate(SPECS.items()):
        if args.only and name not in args.only:
            continue
        model, cfg = build(spec, seed=1000 + i)
        gen = torch.Generator().manual_seed(7 + i)
        tokens = torch.randint(0, cfg.vocab_size, (12,), generator=gen).tolist()
        write(args.out, name, name, model, cfg, {}, None, tokens, lambda: None)
    for j, (name, (base, g, tau, layers, permute)) in enumerate(LTE.items()):
        if args.only and name not in args.only:
            continue
        spec = SPECS[base]
        model, cfg = build(spec, seed=1000 + list(SPECS).index(base))
        extra, records = add_lte(model, cfg, g, tau, layers, permute, seed=2000 + j)
        gen = torch.Generator().manual_seed(70 + j)
        tokens = torch.randint(0, cfg.vocab_size, (12,), generator=gen).tolist()
        lte = {"expert_size": g, "threshold": tau, "layers_with_router": layers}

        def first_pass_active(records=records):
            # the first forward pass (over `tokens`) recorded one [T, E] per router layer
            return torch.stack([r[0] for r in records])

        write(args.out, name, base, model, cfg, extra, lte, tokens, first_pass_active)


if __name__ == "__main__":
    main()
