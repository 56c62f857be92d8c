"""Writes the fuzz seeds in this folder (run from it: python3 make_seeds.py).
Needs torch and the safetensors package; the files it writes are committed, so
neither is needed to build or test. ref_python.safetensors is also read by
test_safetensors, which checks the values set here.
The other seeds are not written here: tokenizer_tiny.json is the tiny
model's tokenizer, tokenizer_gpt2_tiny.json and tokenizer_qwen2_tiny.json
hand-written tokenizers with a ten-token vocab in the GPT-2 style
(Digits + ByteLevel(use_regex, add_prefix_space)) and Qwen2's (NFC, Split +
ByteLevel), slicing_tiny.json a hand-written slicing JSON,
tuning_db_h100.json a file of sprig's own writer (sp_db_put and sp_db_save,
for the GPU fuzz_parsers.c expects); index_sharded.json and the *.params
(--param strings for dense_gemv) are written by hand; dense_gemv_sm90.cubin is
NVRTC's cubin of dense_gemv at its defaults
(sprig compile --family dense_gemv --shape 1024,2816 --arch sm_90 -o DIR)."""
import json
import torch
from safetensors.torch import save_file

# Known values, checked byte for byte by tests/test_safetensors.c.
save_file({
    "model.a": torch.arange(6, dtype=torch.float16).reshape(2, 3),
    "model.b": torch.tensor([1, -2, 0.5, 3], dtype=torch.bfloat16),
    "model.c": (torch.arange(8, dtype=torch.float32) / 4).reshape(2, 2, 2),
    "model.d": torch.tensor([4, 2, 0, 1, 3], dtype=torch.int64),
}, "ref_python.safetensors", metadata={"format": "pt"})

llama2 = {
    "architectures": ["LlamaForCausalLM"], "model_type": "llama", "hidden_act": "silu",
    "hidden_size": 8, "intermediate_size": 16, "num_hidden_layers": 2,
    "num_attention_heads": 2, "num_key_value_heads": 2, "rms_norm_eps": 1e-5,
    "max_position_embeddings": 64, "vocab_size": 32, "bos_token_id": 1, "eos_token_id": 2,
    "rope_theta": 10000.0, "rope_scaling": None, "tie_word_embeddings": False,
    "torch_dtype": "float16",
}
with open("config_llama2.json", "w") as f:
    json.dump(llama2, f, indent=2)

llama3 = dict(llama2, num_key_value_heads=1, head_dim=4, rope_theta=500000.0,
              eos_token_id=[2, 3], tie_word_embeddings=True, torch_dtype="bfloat16",
              rope_scaling={"rope_type": "llama3", "factor": 8.0, "low_freq_factor": 1.0,
                            "high_freq_factor": 4.0, "original_max_position_embeddings": 32},
              lte={"expert_size": 4, "threshold": 0.5, "layers_with_router": [0, 1]})
with open("config_llama3_lte.json", "w") as f:
    json.dump(llama3, f, indent=2)

# A whole tiny LTE model in one file, its config.json in __metadata__["config"]
# (fuzz_parsers checks the tensors against it): hidden 4, inter 8, 1 layer,
# 2 heads of dim 2, 1 kv head, vocab 4, experts of 4 neurons.
cfg = dict(llama2, hidden_size=4, intermediate_size=8, num_hidden_layers=1,
           num_key_value_heads=1, vocab_size=4, bos_token_id=0, eos_token_id=1,
           tie_word_embeddings=True, lte={"expert_size": 4, "threshold": 0.5})
g = torch.Generator().manual_seed(0)
def w(*shape):
    return torch.randn(*shape, generator=g).to(torch.float16)
p = "model.layers.0."
save_file({
    "model.embed_tokens.weight": w(4, 4),
    p + "input_layernorm.weight": w(4), p + "post_attention_layernorm.weight": w(4),
    p + "self_attn.q_proj.weight": w(4, 4), p + "self_attn.k_proj.weight": w(2, 4),
    p + "self_attn.v_proj.weight": w(2, 4), p + "self_attn.o_proj.weight": w(4, 4),
    p + "mlp.gate_proj.weight": w(8, 4), p + "mlp.up_proj.weight": w(8, 4),
    p + "mlp.down_proj.weight": w(4, 8), p + "mlp.router.weight": w(2, 4),
    p + "mlp.expert_permutation": torch.tensor([3, 1, 4, 0, 6, 2, 7, 5], dtype=torch.int32),
    "model.norm.weight": w(4),
}, "tiny_lte_model.safetensors", metadata={"config": json.dumps(cfg)})
