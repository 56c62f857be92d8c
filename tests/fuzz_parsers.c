/* libFuzzer target for the model-file parsers. Each input is tried as
 *  1. a whole safetensors file (sp_st_parse on the bytes): on success every
 *     tensor's bytes are read (ASan checks they lie in the input) and the
 *     invariants the loader promises are asserted; if its "__metadata__" has a
 *     "config" string, that is parsed as config.json and the tensors are
 *     checked against it (sp_model_config_check_tensors), so one seed drives
 *     the whole loading path;
 *  2. a config.json text (sp_model_config_parse), asserting the validated
 *     fields are consistent;
 *  3. a tokenizer.json (sp_tok_open_json): on success a fixed text is encoded
 *     and decoded again, and every id it gives must be in the vocabulary;
 *  4. a SliceGPT slicing JSON for a fixed 2-layer, 112-wide config
 *     (sp_slice_parse): on success every width is a multiple of 8 within it.
 * A broken invariant traps, which libFuzzer reports as a crash with the input.
 * Built with clang -fsanitize=fuzzer,address,undefined (tests/CMakeLists.txt). */
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "sp_model_config.h"
#include "sp_safetensors.h"
#include "sp_slicegpt.h"
#include "sp_tokenizer.h"

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

static void fuzz_tokenizer(const uint8_t *data, size_t size) {
    sp_tokenizer *tok = NULL;
    if (sp_tok_open_json((const char *)data, size, "fuzz/tokenizer.json", &tok) != SPRIG_OK) {
        FUZZ_ASSERT(tok == NULL);
        return;
    }
    static const char text[] = "Hello, world! \xc3\xa9t\xc3\xa9 123\n  tabs\tand \xf0\x9f\x98\x80";
    int32_t *ids = NULL;
    size_t n = 0;
    if (sp_tok_encode(tok, text, sizeof text - 1, 1, &ids, &n) == SPRIG_OK) {
        for (size_t i = 0; i < n; ++i) FUZZ_ASSERT(ids[i] >= 0 && ids[i] < sp_tok_n_ids(tok));
        char *out = NULL;
        size_t len = 0;
        if (sp_tok_decode(tok, ids, n, 0, &out, &len) == SPRIG_OK) FUZZ_ASSERT(out && strlen(out) <= len);
        free(out);
    }
    free(ids);
    sp_tok_close(tok);
}

static void fuzz_slicing(const uint8_t *data, size_t size) {
    sp_model_config cfg;
    memset(&cfg, 0, sizeof cfg);
    cfg.hidden_size = 112, cfg.num_hidden_layers = 2;
    sp_slice_config sl;
    if (sp_slice_parse((const char *)data, size, "fuzz/slicing.json", &cfg, &sl) != SPRIG_OK) return;
    FUZZ_ASSERT(sl.enabled);
    for (int l = 0; l < cfg.num_hidden_layers; ++l) {
        const int w[4] = {sl.attn_in[l], sl.attn_out[l], sl.mlp_in[l], sl.mlp_out[l]};
        for (int i = 0; i < 4; ++i) FUZZ_ASSERT(w[i] > 0 && w[i] % 8 == 0 && w[i] <= cfg.hidden_size);
    }
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
    fuzz_tokenizer(data, size);
    fuzz_slicing(data, size);
    return 0;
}
