/* The architecture table (see sp_arch.h). */
#include <string.h>

#include "model_internal.h"
#include "sp_arch.h"

static const sp_arch kArchs[SP_ARCH_COUNT] = {
    /* kind             hf_class              name       qkv_bias sliding_window */
    {SP_ARCH_LLAMA,   "LlamaForCausalLM",   "llama",   0,       0},
    {SP_ARCH_MISTRAL, "MistralForCausalLM", "mistral", 0,       1},
    {SP_ARCH_QWEN2,   "Qwen2ForCausalLM",   "qwen2",   1,       0 /* only with use_sliding_window, refused */},
};

const sp_arch *sp_arch_find(const char *hf_class) {
    for (int i = 0; hf_class && i < SP_ARCH_COUNT; ++i)
        if (strcmp(kArchs[i].hf_class, hf_class) == 0) return &kArchs[i];
    return NULL;
}

const sp_arch *sp_arch_get(sp_arch_kind kind) {
    return (unsigned)kind < SP_ARCH_COUNT ? &kArchs[kind] : &kArchs[SP_ARCH_LLAMA];
}

const char *sp_arch_supported_list(void) { return "LlamaForCausalLM, MistralForCausalLM, Qwen2ForCausalLM"; }
