/* The LLaMA-like architectures sprig runs, as one table: what each differs in
 * from LLaMA, read by the config parser, the weight loader and both backends.
 * Adding an architecture is an entry in model/arch.c plus its fixtures
 * (tools/make_model_fixtures.py) and nothing else, as long as it differs from
 * LLaMA only in what the fields below can say. */
#ifndef SP_ARCH_H
#define SP_ARCH_H

#pragma GCC visibility push(default) /* this layer's interface: exported to the layers above */

typedef enum sp_arch_kind {
    SP_ARCH_LLAMA = 0,  /* LLaMA-2/3/3.1, SmolLM, TinyLlama...: the zero value */
    SP_ARCH_MISTRAL,
    SP_ARCH_QWEN2,
    SP_ARCH_COUNT
} sp_arch_kind;

typedef struct sp_arch {
    sp_arch_kind kind;
    const char *hf_class;      /* config.json "architectures" entry, e.g. "MistralForCausalLM" */
    const char *name;          /* short name for messages and `sprig info`: "llama", "mistral", "qwen2" */
    int qkv_bias;              /* q_proj, k_proj and v_proj carry a bias (Qwen2); o_proj never does here */
    int sliding_window;        /* honours config.json "sliding_window": attention sees the last W positions */
} sp_arch;

/* The entry for a config.json "architectures" string, or NULL if sprig does not run it. */
const sp_arch *sp_arch_find(const char *hf_class);
/* The entry of a kind (always valid for kind < SP_ARCH_COUNT; LLaMA otherwise). */
const sp_arch *sp_arch_get(sp_arch_kind kind);
#pragma GCC visibility pop
#endif
