/* libFuzzer target for the model-file parsers. Each input is tried as
 *  1. a whole safetensors file (sp_st_parse on the bytes): on success every
 *     tensor's bytes are read (ASan checks they lie in the input) and the
 *     invariants the loader promises are asserted; if its "__metadata__" has a
 *     "config" string, that is parsed as config.json and the tensors are
 *     checked against it (sp_model_config_check_tensors), so one seed drives
 *     the whole loading path;
 *  2. a config.json text (sp_model_config_parse), asserting the validated
 *     fields are consistent.
 * A broken invariant traps, which libFuzzer reports as a crash with the input.
 * Built with clang -fsanitize=fuzzer,address,undefined (tests/CMakeLists.txt). */
#include <stddef.h>
#include <stdint.h>
#include <string.h>

#include "sp_model_config.h"
#include "sp_safetensors.h"

#define FUZZ_ASSERT(c)                 \
    do {                               \
        if (!(c)) __builtin_trap();    \
    } while (0)

static const sp_tensor *fuzz_lookup(const void *ctx, const char *name) {
    return sp_st_find(ctx, name);
}

static void fuzz_check_tensor(const sp_safetensors *st, const sp_tensor *t, const uint8_t *data,
                              size_t size) {
    uint64_t n = sp_dtype_size(t->dtype);
    FUZZ_ASSERT(n > 0 && t->ndim >= 0 && t->ndim <= SP_MAX_DIMS);
    for (int d = 0; d < t->ndim; ++d) {
        FUZZ_ASSERT(t->shape[d] >= 0);
        FUZZ_ASSERT(!__builtin_mul_overflow(n, (uint64_t)t->shape[d], &n));
    }
    FUZZ_ASSERT(n == t->nbytes);
    const uint8_t *p = t->data;
    FUZZ_ASSERT(p >= data && (size_t)(p - data) <= size && t->nbytes <= size - (size_t)(p - data));
    volatile uint8_t sum = 0;
    for (size_t i = 0; i < t->nbytes; ++i) sum ^= p[i];
    FUZZ_ASSERT(sp_st_find(st, t->name) == t);
}

/* No two non-empty tensors share a byte (quadratic; fuzz inputs are small). */
static void fuzz_check_disjoint(const sp_safetensors *st) {
    size_t n = sp_st_count(st);
    for (size_t i = 0; i < n; ++i)
        for (size_t j = i + 1; j < n; ++j) {
            const sp_tensor *a = sp_st_tensor(st, i), *b = sp_st_tensor(st, j);
            const uint8_t *pa = a->data, *pb = b->data;
            if (a->nbytes && b->nbytes) FUZZ_ASSERT(pa + a->nbytes <= pb || pb + b->nbytes <= pa);
        }
}

static void fuzz_check_config(const sp_model_config *c) {
    FUZZ_ASSERT(c->hidden_size > 0 && c->intermediate_size > 0 && c->vocab_size > 0);
    FUZZ_ASSERT(c->num_hidden_layers > 0 && c->num_hidden_layers <= SP_MAX_LAYERS);
    FUZZ_ASSERT(c->num_key_value_heads > 0 && c->num_attention_heads % c->num_key_value_heads == 0);
    FUZZ_ASSERT(c->head_dim > 0 && c->head_dim % 2 == 0);
    FUZZ_ASSERT(c->rms_norm_eps > 0 && c->rope_theta > 0);
    FUZZ_ASSERT(c->n_eos >= 0 && c->n_eos <= SP_MAX_EOS);
    for (int i = 0; i < c->n_eos; ++i)
        FUZZ_ASSERT(c->eos_token_ids[i] >= 0 && c->eos_token_ids[i] < c->vocab_size);
    FUZZ_ASSERT(c->bos_token_id >= -1 && c->bos_token_id < c->vocab_size);
    if (c->rope_scaling.kind == SP_ROPE_LLAMA3)
        FUZZ_ASSERT(c->rope_scaling.high_freq_factor > c->rope_scaling.low_freq_factor);
    if (c->lte.enabled) {
        FUZZ_ASSERT(c->lte.expert_size > 0 && c->intermediate_size % c->lte.expert_size == 0);
        FUZZ_ASSERT(c->lte.n_experts * c->lte.expert_size == c->intermediate_size);
        FUZZ_ASSERT(c->lte.threshold > 0 && c->lte.threshold < 1);
    }
    FUZZ_ASSERT(memchr(c->torch_dtype, '\0', sizeof c->torch_dtype) != NULL);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
    sp_safetensors *st = NULL;
    if (sp_st_parse(data, size, "fuzz.safetensors", &st) == SPRIG_OK) {
        for (size_t i = 0; i < sp_st_count(st); ++i)
            fuzz_check_tensor(st, sp_st_tensor(st, i), data, size);
        FUZZ_ASSERT(sp_st_tensor(st, sp_st_count(st)) == NULL);
        fuzz_check_disjoint(st);
        const char *cfg = sp_st_metadata(st, "config");
        sp_model_config c;
        if (cfg && sp_model_config_parse(cfg, strlen(cfg), "fuzz/config.json", &c) == SPRIG_OK) {
            fuzz_check_config(&c);
            (void)sp_model_config_check_tensors(&c, fuzz_lookup, st);
        }
        sp_st_close(st);
    } else {
        FUZZ_ASSERT(st == NULL && sprig_last_error()[0] != '\0');
    }
    sp_model_config c;
    if (sp_model_config_parse((const char *)data, size, "fuzz/config.json", &c) == SPRIG_OK)
        fuzz_check_config(&c);
    return 0;
}
