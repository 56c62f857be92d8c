"""A LLaMA-family causal LM in plain torch, read from a Hugging Face folder.

tools/lte must run with Debian 12's python3-torch (1.13) alone, which has no
transformers, so this is transformers' LlamaForCausalLM (and the Mistral and
Qwen2 variants sprig runs, model/arch.c) written out: the same module and
parameter names (model.embed_tokens, model.layers[i].self_attn.q_proj, ...
.mlp.gate_proj, ... lm_head), so state-dict names are checkpoint names and
lte_mlp.py wraps `layer.mlp` as it would wrap transformers' module. Only
torch APIs present in 1.13 are used (no scaled_dot_product_attention).

Semantics are transformers' (eager attention): RMSNorm, rotate-half RoPE with
default, linear or llama3 frequencies, grouped-query attention, Mistral's
sliding window (kv > q - window), Qwen2's q/k/v biases, lm_head tied to the
embedding when tie_word_embeddings. Two deliberate differences, both only in
precision: RoPE tables are computed in float64 (transformers: float32), and
RMSNorm and softmax run in the model's dtype when it is float32 or float64
(transformers always upcasts to float32, which caps a float64 model at
float32 accuracy); float16/bfloat16 are upcast to float32 as transformers
does. tests/lte_parity_test.py checks the logits against transformers.

The forward pass takes input_ids [B, T] (positions 0..T-1, no padding, no KV
cache: training and reference blocks) and returns the logits [B, T, V].
Features this file does not implement are refused by Config with the reason.
"""
import json
import math
import os

import torch
import torch.nn.functional as F
from torch import nn

from . import st

ARCHS = {"LlamaForCausalLM": "llama", "MistralForCausalLM": "mistral", "Qwen2ForCausalLM": "qwen2"}
# tensors a checkpoint may hold beside the model's own: LTE routers and
# permutations (read by their own code), old checkpoints' RoPE buffers
EXTRA_SUFFIXES = (".mlp.router.weight", ".mlp.expert_permutation", "rotary_emb.inv_freq")


class ConfigError(ValueError):
    pass


class Config:
    """config.json, read with transformers' defaults; refuses what the model below does not implement."""

    def __init__(self, d, label="config.json"):
        self.label = label
        self.arch = self._arch(d)
        for key in ("hidden_size", "intermediate_size", "num_hidden_layers", "num_attention_heads", "vocab_size"):
            v = d.get(key)
            if not isinstance(v, int) or isinstance(v, bool) or v <= 0:
                raise ConfigError(f"{label}: \"{key}\" must be a positive integer, got {v!r}")
            setattr(self, key, v)
        self.num_key_value_heads = d.get("num_key_value_heads") or self.num_attention_heads
        self.head_dim = d.get("head_dim") or self.hidden_size // self.num_attention_heads
        if self.num_attention_heads % self.num_key_value_heads:
            raise ConfigError(f"{label}: num_attention_heads {self.num_attention_heads} is not a multiple of "
                              f"num_key_value_heads {self.num_key_value_heads}")
        self.rms_norm_eps = float(d.get("rms_norm_eps", 1e-6))
        self.tie_word_embeddings = bool(d.get("tie_word_embeddings", False))
        self.pad_token_id = d.get("pad_token_id")
        self.max_position_embeddings = d.get("max_position_embeddings", 2048)
        self.attention_dropout = float(d.get("attention_dropout", 0.0) or 0.0)
        act = d.get("hidden_act", "silu")
        if act != "silu":
            raise ConfigError(f"{label}: \"hidden_act\" {act!r} is not implemented (silu only)")
        if d.get("mlp_bias"):
            raise ConfigError(f"{label}: \"mlp_bias\": true is not implemented (tools.lte moves MLP weight "
                              "rows into expert order and has no place for biases)")
        # Qwen2's q/k/v biases are its architecture's; LLaMA's attention_bias puts one on all four
        self.qkv_bias = self.arch == "qwen2" or (self.arch == "llama" and bool(d.get("attention_bias", False)))
        self.o_bias = self.arch == "llama" and bool(d.get("attention_bias", False))
        self.sliding_window = self._sliding_window(d)
        self.rope_theta, self.rope = self._rope(d)

    def _arch(self, d):
        names = d.get("architectures") or []
        for a in names if isinstance(names, list) else []:
            if a in ARCHS:
                return ARCHS[a]
        if not names and d.get("model_type") in ARCHS.values():
            return d["model_type"]
        raise ConfigError(f"{self.label}: architecture {names or d.get('model_type')!r} is not implemented "
                          f"({', '.join(ARCHS)})")

    def _sliding_window(self, d):
        if self.arch == "mistral":
            w = d.get("sliding_window")
            if w is not None and (not isinstance(w, int) or w <= 0):
                raise ConfigError(f"{self.label}: \"sliding_window\" must be null or a positive integer, got {w!r}")
            return w
        if self.arch == "qwen2" and (d.get("use_sliding_window") or "sliding_attention" in (d.get("layer_types") or [])):
            raise ConfigError(f"{self.label}: Qwen2's per-layer sliding windows (use_sliding_window) are not "
                              "implemented")
        return None

    def _rope(self, d):
        """(theta, scaling dict or None), read as transformers and sprig read them: "rope_scaling" when a
        non-empty object, else "rope_parameters" (transformers >= 5, which also moves rope_theta inside)."""
        rs = d.get("rope_scaling") or d.get("rope_parameters") or None
        if rs is not None and not isinstance(rs, dict):
            raise ConfigError(f"{self.label}: rope scaling must be null or an object, got {rs!r}")
        theta = float((rs or {}).get("rope_theta", d.get("rope_theta", 10000.0)))
        partial = (rs or {}).get("partial_rotary_factor", d.get("partial_rotary_factor", 1.0))
        if partial != 1.0:
            raise ConfigError(f"{self.label}: partial_rotary_factor {partial} is not implemented")
        kind = (rs or {}).get("rope_type", (rs or {}).get("type", "default"))
        if kind in (None, "default"):
            return theta, None
        if kind not in ("linear", "llama3"):
            raise ConfigError(f"{self.label}: RoPE type {kind!r} is not implemented (default, linear, llama3)")
        rs = dict(rs, rope_type=kind)
        if kind == "llama3":
            rs.setdefault("original_max_position_embeddings", self.max_position_embeddings)
            if not rs["high_freq_factor"] > rs["low_freq_factor"]:
                raise ConfigError(f"{self.label}: llama3 high_freq_factor must exceed low_freq_factor")
        return theta, rs

    @classmethod
    def from_folder(cls, folder):
        path = os.path.join(folder, "config.json")
        with open(path) as f:
            return cls(json.load(f), path)


def rope_inv_freq(cfg):
    """[head_dim / 2] float64 inverse frequencies (transformers' rope init functions, in float64)."""
    dim = cfg.head_dim
    inv = 1.0 / (cfg.rope_theta ** (torch.arange(0, dim, 2, dtype=torch.float64) / dim))
    r = cfg.rope
    if r is None:
        return inv
    if r["rope_type"] == "linear":
        return inv / r["factor"]
    # llama3: long wavelengths divided by factor, short ones kept, smooth in between
    factor, lo, hi = r["factor"], r["low_freq_factor"], r["high_freq_factor"]
    old = r["original_max_position_embeddings"]
    wavelen = 2 * math.pi / inv
    scaled = torch.where(wavelen > old / lo, inv / factor, inv)
    smooth = (old / wavelen - lo) / (hi - lo)
    smoothed = (1 - smooth) * scaled / factor + smooth * scaled
    medium = ~(wavelen < old / hi) & ~(wavelen > old / lo)
    return torch.where(medium, smoothed, scaled)


def _compute_dtype(dtype):
    return torch.float32 if dtype in (torch.float16, torch.bfloat16) else dtype


class RMSNorm(nn.Module):
    def __init__(self, size, eps, **kw):
        super().__init__()
        self.weight = nn.Parameter(torch.ones(size, **kw))
        self.variance_epsilon = eps

    def forward(self, x):
        dtype = x.dtype
        x = x.to(_compute_dtype(dtype))
        x = x * torch.rsqrt(x.pow(2).mean(-1, keepdim=True) + self.variance_epsilon)
        return self.weight * x.to(dtype)


def rotate_half(x):
    h = x.shape[-1] // 2
    return torch.cat((-x[..., h:], x[..., :h]), dim=-1)


class Attention(nn.Module):
    def __init__(self, cfg, **kw):
        super().__init__()
        self.cfg, hd = cfg, cfg.head_dim
        self.q_proj = nn.Linear(cfg.hidden_size, cfg.num_attention_heads * hd, bias=cfg.qkv_bias, **kw)
        self.k_proj = nn.Linear(cfg.hidden_size, cfg.num_key_value_heads * hd, bias=cfg.qkv_bias, **kw)
        self.v_proj = nn.Linear(cfg.hidden_size, cfg.num_key_value_heads * hd, bias=cfg.qkv_bias, **kw)
        self.o_proj = nn.Linear(cfg.num_attention_heads * hd, cfg.hidden_size, bias=cfg.o_bias, **kw)

    def forward(self, x, cos, sin, allowed):
        b, t, _ = x.shape
        hd, rep = self.cfg.head_dim, self.cfg.num_attention_heads // self.cfg.num_key_value_heads
        q = self.q_proj(x).view(b, t, -1, hd).transpose(1, 2)  # [B, H, T, hd]
        k = self.k_proj(x).view(b, t, -1, hd).transpose(1, 2)  # [B, KV, T, hd]
        v = self.v_proj(x).view(b, t, -1, hd).transpose(1, 2)
        q, k = q * cos + rotate_half(q) * sin, k * cos + rotate_half(k) * sin
        if rep > 1:  # grouped-query attention: query head h reads kv head h // rep
            k = k[:, :, None].expand(b, k.shape[1], rep, t, hd).reshape(b, -1, t, hd)
            v = v[:, :, None].expand(b, v.shape[1], rep, t, hd).reshape(b, -1, t, hd)
        scores = torch.matmul(q, k.transpose(2, 3)) * hd ** -0.5
        scores = scores.masked_fill(~allowed, torch.finfo(scores.dtype).min)
        p = F.softmax(scores, dim=-1, dtype=_compute_dtype(q.dtype)).to(q.dtype)
        p = F.dropout(p, p=self.cfg.attention_dropout, training=self.training)
        out = torch.matmul(p, v).transpose(1, 2).reshape(b, t, -1)
        return self.o_proj(out)


class MLP(nn.Module):
    def __init__(self, cfg, **kw):
        super().__init__()
        self.gate_proj = nn.Linear(cfg.hidden_size, cfg.intermediate_size, bias=False, **kw)
        self.up_proj = nn.Linear(cfg.hidden_size, cfg.intermediate_size, bias=False, **kw)
        self.down_proj = nn.Linear(cfg.intermediate_size, cfg.hidden_size, bias=False, **kw)
        self.act_fn = F.silu

    def forward(self, x):
        return self.down_proj(self.act_fn(self.gate_proj(x)) * self.up_proj(x))


class DecoderLayer(nn.Module):
    def __init__(self, cfg, **kw):
        super().__init__()
        self.self_attn = Attention(cfg, **kw)
        self.mlp = MLP(cfg, **kw)
        self.input_layernorm = RMSNorm(cfg.hidden_size, cfg.rms_norm_eps, **kw)
        self.post_attention_layernorm = RMSNorm(cfg.hidden_size, cfg.rms_norm_eps, **kw)

    def forward(self, x, cos, sin, allowed):
        x = x + self.self_attn(self.input_layernorm(x), cos, sin, allowed)
        return x + self.mlp(self.post_attention_layernorm(x))


class Model(nn.Module):
    def __init__(self, cfg, **kw):
        super().__init__()
        self.embed_tokens = nn.Embedding(cfg.vocab_size, cfg.hidden_size, padding_idx=cfg.pad_token_id, **kw)
        self.layers = nn.ModuleList([DecoderLayer(cfg, **kw) for _ in range(cfg.num_hidden_layers)])
        self.norm = RMSNorm(cfg.hidden_size, cfg.rms_norm_eps, **kw)
        self.cfg = cfg
        # float64, and not a buffer: model.to(float16) would round a buffer's frequencies
        self.inv_freq = {torch.device("cpu"): rope_inv_freq(cfg)}  # by device

    def forward(self, input_ids):
        t, dev = input_ids.shape[1], input_ids.device
        x = self.embed_tokens(input_ids)
        pos = torch.arange(t, device=dev, dtype=torch.float64)
        if dev not in self.inv_freq:
            self.inv_freq[dev] = self.inv_freq[torch.device("cpu")].to(dev)
        ang = pos[:, None] * self.inv_freq[dev][None, :]
        ang = torch.cat((ang, ang), dim=-1)
        cos, sin = ang.cos().to(x.dtype), ang.sin().to(x.dtype)  # [T, hd], broadcast over batch and heads
        q = torch.arange(t, device=dev)[:, None]
        allowed = torch.arange(t, device=dev)[None, :] <= q  # causal: [T(query), T(key)]
        if self.cfg.sliding_window:
            allowed = allowed & (torch.arange(t, device=dev)[None, :] > q - self.cfg.sliding_window)
        for layer in self.layers:
            x = layer(x, cos, sin, allowed)
        return self.norm(x)


class LlamaForCausalLM(nn.Module):
    def __init__(self, cfg, dtype=torch.float32, device=None):
        super().__init__()
        kw = {"dtype": dtype, "device": device}
        self.config = cfg
        self.model = Model(cfg, **kw)
        self.lm_head = nn.Linear(cfg.hidden_size, cfg.vocab_size, bias=False, **kw)
        if cfg.tie_word_embeddings:
            self.lm_head.weight = self.model.embed_tokens.weight

    def forward(self, input_ids):
        """input_ids [B, T] -> logits [B, T, V]."""
        return self.lm_head(self.model(input_ids))


def checkpoint_files(folder):
    """model.safetensors, or the shards model.safetensors.index.json names."""
    single = os.path.join(folder, "model.safetensors")
    if os.path.exists(single):
        return [single]
    index = os.path.join(folder, "model.safetensors.index.json")
    if not os.path.exists(index):
        raise FileNotFoundError(f"{folder}: no model.safetensors or model.safetensors.index.json")
    with open(index) as f:
        shards = sorted(set(json.load(f)["weight_map"].values()))
    for s in shards:
        if os.path.basename(s) != s:  # a shard name is a file name in the folder, never a path
            raise ValueError(f"{index}: shard {s!r} is not a plain file name")
    return [os.path.join(folder, s) for s in shards]


def load(folder, dtype=torch.float32):
    """The model of a Hugging Face folder with its weights in `dtype`, on the CPU, in eval mode.

    Built on the meta device (no random init of weights about to be
    replaced), then each parameter set from the checkpoint. Every model
    tensor must be present; the only extra tensors allowed are lm_head.weight
    of a tied model (unused, as in transformers) and EXTRA_SUFFIXES."""
    cfg = Config.from_folder(folder)
    model = LlamaForCausalLM(cfg, dtype=dtype, device="meta")
    params = dict(model.named_parameters())  # a tied lm_head appears once, as the embedding
    found = {}
    for path in checkpoint_files(folder):
        for name, t in st.load_file(path).items():
            if name in params:
                found[name] = t
            elif not (name == "lm_head.weight" or name.endswith(EXTRA_SUFFIXES)):
                raise ValueError(f"{path}: tensor {name!r} is not part of a {cfg.arch} model")
    missing = sorted(set(params) - set(found))
    if missing:
        raise ValueError(f"{folder}: missing tensors {', '.join(missing[:5])}{' ...' if len(missing) > 5 else ''}")
    for name, p in params.items():
        if tuple(found[name].shape) != tuple(p.shape):
            raise ValueError(f"{folder}: {name} has shape {list(found[name].shape)}, the config says {list(p.shape)}")
        mod_name, _, attr = name.rpartition(".")
        setattr(model.get_submodule(mod_name), attr, nn.Parameter(found[name].to(dtype)))
    if cfg.tie_word_embeddings:
        model.lm_head.weight = model.model.embed_tokens.weight
    return model.eval()
