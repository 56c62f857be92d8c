#!/usr/bin/env python3
"""The reference for the realmodel_gguf_open test: transformers' greedy tokens
on SmolLM2-135M-Instruct's Q4_1 GGUF (scripts/fetch-smollm2.sh fetches it).
transformers dequantizes the GGUF itself (through gguf-py) and un-permutes
q/k on its own, in float32: an implementation independent of sprig's.
Writes tests/fixtures/gguf/smollm2_greedy.json: the prompt (text, the ids
transformers' GGUF tokenizer gives it) and the 8 greedy tokens after it; and
one chat turn through the GGUF's own chat template (apply_chat_template).
Run: python3 tools/smollm2_gguf_reference.py PATH.gguf (pip install torch transformers gguf)."""
import json
import os
import sys

import torch
from transformers import AutoModelForCausalLM, AutoTokenizer

path = sys.argv[1]
folder, name = os.path.dirname(os.path.abspath(path)), os.path.basename(path)
tok = AutoTokenizer.from_pretrained(folder, gguf_file=name)
model = AutoModelForCausalLM.from_pretrained(folder, gguf_file=name, dtype=torch.float32)
model.eval()
out = {"model": name, "max_new_tokens": 8, "cases": []}
for text in ["The capital of France is", "def fibonacci(n):"]:
    ids = tok(text, add_special_tokens=False)["input_ids"]
    with torch.no_grad():
        gen = model.generate(torch.tensor([ids]), max_new_tokens=8, do_sample=False, num_beams=1,
                             attention_mask=torch.ones(1, len(ids), dtype=torch.long))
    new = gen[0, len(ids):].tolist()
    out["cases"].append({"text": text, "prompt": ids, "greedy": new, "decoded": tok.decode(new)})
    print(text, ids, new, repr(tok.decode(new)))
# one chat turn: the GGUF's own tokenizer.chat_template, rendered and tokenized by transformers
messages = [{"role": "user", "content": "What is the capital of France?"}]
ids = tok.apply_chat_template(messages, add_generation_prompt=True, tokenize=True, return_dict=False)
ids = list(ids["input_ids"] if isinstance(ids, dict) else ids)
with torch.no_grad():
    gen = model.generate(torch.tensor([ids]), max_new_tokens=8, do_sample=False, num_beams=1,
                         attention_mask=torch.ones(1, len(ids), dtype=torch.long))
new = gen[0, len(ids):].tolist()
out["chat"] = {"messages": messages, "prompt": ids, "greedy": new, "decoded": tok.decode(new)}
print(messages, ids, new, repr(tok.decode(new)))
dest = os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "tests", "fixtures", "gguf",
                    "smollm2_greedy.json")
with open(dest, "w") as fp:
    json.dump(out, fp, indent=1, ensure_ascii=False)
    fp.write("\n")
