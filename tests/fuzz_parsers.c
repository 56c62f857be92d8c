/* libFuzzer target for sprig's parsers of files and strings from outside.
 * Each input is tried as every one of these formats in turn, so one corpus
 * serves them all (a seed of one format mutates into the others' too):
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
 *     (sp_slice_parse): on success every width is a multiple of 8 within it;
 *  5. a tuning database file for a fixed GPU (sp_db_parse): on success every
 *     entry's key is valid and canonical (remaking it from its fields gives
 *     it again), no two keys are equal, the winner is a verified candidate,
 *     and sp_db_lookup of each key answers with that entry, exactly;
 *  6. a model.safetensors.index.json (sp_mf_index_parse): on success every
 *     shard is a plain file name (no '/', not "." or ".."), named once, used,
 *     and no tensor is listed twice;
 *  7. a kernel parameter string as `--param` gives it ("threads=64,vec=4")
 *     for dense_gemv at 4096x11008 (sp_space_defaults: parsed, checked and
 *     completed with the defaults in the generator's Lua): on success the
 *     canonical string it gives parses to itself again, and sp_space_check
 *     agrees on whether the combination is valid;
 *  8. a GGUF file (sp_gguf_parse): on success every tensor lies inside the
 *     input at an aligned offset and is found by its name, small ones
 *     dequantize, and the tokenizer built from the metadata opens or fails
 *     with a message (an encoded text's ids are in its vocabulary);
 *  9. a cubin (sprig_cubin_kernel_info for sprig_dense_gemv, what sprig reads
 *     when NVRTC's log is empty): on success the registers are -1 or 0..255
 *     and the stack and shared memory are not negative.
 * A broken invariant traps, which libFuzzer reports as a crash with the input.
 * Built with clang -fsanitize=fuzzer,address,undefined (tests/CMakeLists.txt). */
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include <lua.h>

#include "gen_internal.h" /* the generator's Lua state, to collect its garbage */
#include "model_internal.h"
#include "sp_db.h"
#include "sp_gguf.h"
#include "sp_model_config.h"
#include "sp_safetensors.h"
#include "sp_slicegpt.h"
#include "sp_space.h"
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

/* The GPU the fuzzed database files describe (the seed's), and their path:
 * a file's GPU block must match its name, so the name follows the GPU. */
static const sp_gpu_id fuzz_db_gpu = {"NVIDIA H100 80GB HBM3", 9, 0, 132};

static void fuzz_check_db_entry(const sp_db *db, const sp_db_entry *e) {
    const sp_db_key *k = &e->key;
    FUZZ_ASSERT(k->family[0] && memchr(k->family, '\0', sizeof k->family) && !strchr(k->family, '|'));
    FUZZ_ASSERT(k->dtype[0] && memchr(k->dtype, '\0', sizeof k->dtype) && !strchr(k->dtype, '|'));
    FUZZ_ASSERT(k->d > 0 && k->f > 0 && k->g > 0);
    /* canonical: remade from its own fields, the key is the same */
    sp_db_key again;
    FUZZ_ASSERT(sp_db_key_make(&again, k->family, k->template_hash, k->d, k->f, k->dtype, k->batch_bucket,
                               k->sparsity_bucket, k->g, k->fixed) == SPRIG_OK);
    FUZZ_ASSERT(!memcmp(&again, k, sizeof again));
    FUZZ_ASSERT(sp_db_find(db, k) == e);
    FUZZ_ASSERT(e->winner && e->best.verdict == SP_VERDICT_OK && e->n_trials >= 1);
    int winner_found = 0;
    for (size_t t = 0; t < e->n_trials; ++t) {
        const sp_trial *tr = &e->trials[t];
        FUZZ_ASSERT(tr->params && (unsigned)tr->m.verdict <= SP_VERDICT_LAUNCH_FAILED);
        FUZZ_ASSERT(memchr(tr->m.note, '\0', sizeof tr->m.note) != NULL);
        winner_found |= !strcmp(tr->params, e->winner) && tr->m.verdict == SP_VERDICT_OK;
    }
    FUZZ_ASSERT(winner_found);
    FUZZ_ASSERT(memchr(e->timestamp, '\0', sizeof e->timestamp) != NULL);
}

/* Each entry's own key, looked up in a set of just this file, is that entry:
 * the lookup the runtime and bench do on these files. */
static void fuzz_check_db_lookup(sp_db *db) {
    sp_db_set set;
    sp_db_set_init(&set);
    FUZZ_ASSERT(sp_db_set_add(&set, db, 0) == SPRIG_OK);
    for (size_t i = 0; i < db->n; ++i) {
        sp_lookup_result r;
        FUZZ_ASSERT(sp_db_lookup(&set, &db->gpu, &db->entries[i].key, NULL, NULL, &r) == SPRIG_OK);
        FUZZ_ASSERT(r.source == SP_LOOKUP_EXACT && r.entry == &db->entries[i] && r.db == db);
        FUZZ_ASSERT(!strncmp(r.params, db->entries[i].winner, sizeof r.params - 1));
    }
    sp_db_set_free(&set);
}

static void fuzz_db(const uint8_t *data, size_t size) {
    char path[300] = "fuzz/";
    sp_db_file_name(&fuzz_db_gpu, path + 5, sizeof path - 5);
    sp_db *db = NULL;
    if (sp_db_parse(&db, (const char *)data, size, path, &fuzz_db_gpu) != SPRIG_OK) {
        FUZZ_ASSERT(db == NULL && strstr(sprig_last_error(), path));
        return;
    }
    FUZZ_ASSERT(!db->load_failed && !memcmp(&db->gpu, &fuzz_db_gpu, sizeof db->gpu) && db->n <= db->cap);
    for (size_t i = 0; i < db->n; ++i) {
        fuzz_check_db_entry(db, &db->entries[i]);
        for (size_t j = i + 1; j < db->n; ++j)
            FUZZ_ASSERT(memcmp(&db->entries[i].key, &db->entries[j].key, sizeof(sp_db_key)) != 0);
    }
    fuzz_check_db_lookup(db);
    sp_db_close(db);
}

/* GGUF: on success every tensor lies inside the input at an aligned offset, is
 * found by its name, and (when small) dequantizes; the tokenizer built from
 * the metadata either opens or fails with a message. */
static void fuzz_gguf(const uint8_t *data, size_t size) {
    sp_gguf *g = NULL;
    if (sp_gguf_parse(data, size, "fuzz.gguf", &g) != SPRIG_OK) {
        FUZZ_ASSERT(g == NULL && sprig_last_error()[0] != '\0');
        return;
    }
    const size_t align = sp_gguf_alignment(g);
    FUZZ_ASSERT(align && !(align & (align - 1)));
    for (size_t i = 0; i < sp_gguf_n_kv(g); ++i) FUZZ_ASSERT(sp_gguf_find_kv(g, sp_gguf_kv_at(g, i)->key));
    for (size_t i = 0; i < sp_gguf_n_tensors(g); ++i) {
        const sp_gguf_tensor *t = sp_gguf_tensor_at(g, i);
        const uint8_t *p = t->data;
        FUZZ_ASSERT(p >= data && p <= data + size && t->nbytes <= (size_t)(data + size - p));
        FUZZ_ASSERT(t->offset % align == 0 && sp_gguf_find_tensor(g, t->name) == t);
        if (sp_gguf_can_dequantize(t->type) && t->n_elems <= 4096) {
            float *out = malloc(sizeof(float) * (size_t)t->n_elems + 1);
            FUZZ_ASSERT(sp_gguf_dequantize(t->type, t->data, (size_t)t->n_elems, out) == SPRIG_OK);
            free(out);
        }
    }
    sp_tokenizer *tok = NULL;
    if (sp_gguf_tokenizer_from(g, &tok) == SPRIG_OK) {
        int32_t *ids = NULL;
        size_t n = 0;
        if (sp_tok_encode(tok, "the <|im_end|> 12", 17, 1, &ids, &n) == SPRIG_OK)
            for (size_t i = 0; i < n; ++i) FUZZ_ASSERT(ids[i] >= 0 && ids[i] < sp_tok_n_ids(tok));
        free(ids);
        sp_tok_close(tok);
    } else {
        FUZZ_ASSERT(tok == NULL && sprig_last_error()[0] != '\0');
    }
    sp_gguf_close(g);
}

static void fuzz_index(const uint8_t *data, size_t size) {
    sp_mf_index ix;
    if (sp_mf_index_parse((const char *)data, size, "fuzz/model.safetensors.index.json", &ix) != SPRIG_OK) {
        FUZZ_ASSERT(ix.n == 0 && ix.n_shards == 0 && !ix.tensors && !ix.shards);
        return;
    }
    FUZZ_ASSERT(ix.n >= 1 && ix.n_shards >= 1 && ix.n_shards <= ix.n);
    for (size_t j = 0; j < ix.n_shards; ++j) {
        const char *s = ix.shards[j];
        FUZZ_ASSERT(s[0] && !strchr(s, '/') && strcmp(s, ".") != 0 && strcmp(s, "..") != 0);
        for (size_t k = j + 1; k < ix.n_shards; ++k) FUZZ_ASSERT(strcmp(s, ix.shards[k]) != 0);
    }
    size_t mentioned = 0; /* shards are numbered in order of first mention, every one used */
    for (size_t i = 0; i < ix.n; ++i) {
        FUZZ_ASSERT(ix.shard_of[i] < ix.n_shards && ix.shard_of[i] <= mentioned);
        if (ix.shard_of[i] == mentioned) ++mentioned;
        for (size_t k = i + 1; k < ix.n; ++k) FUZZ_ASSERT(strcmp(ix.tensors[i], ix.tensors[k]) != 0);
    }
    FUZZ_ASSERT(mentioned == ix.n_shards);
    sp_mf_index_free(&ix);
}

/* One generator for the whole run: opening it (a Lua state with every
 * family loaded) costs far more than one input. */
static sprig_gen *fuzz_gen(void) {
    static sprig_gen *gen;
    if (!gen) FUZZ_ASSERT(sprig_gen_open(&gen, NULL) == SPRIG_OK);
    return gen;
}

static void fuzz_params(const uint8_t *data, size_t size) {
    char text[512];
    /* the CLI hands a C string on; a NUL cannot come from a command line */
    if (size >= sizeof text || memchr(data, '\0', size)) return;
    memcpy(text, data, size);
    text[size] = '\0';
    sprig_gen *gen = fuzz_gen();
    sprig_request req = {"dense_gemv", 4096, 11008, "fp16", 1, 1, text};
    char *canon = NULL, *again = NULL;
    int valid = 0, valid_again = 0;
    if (sp_space_defaults(gen, &req, &canon, &valid) == SPRIG_OK) {
        req.params = canon;
        FUZZ_ASSERT(sp_space_defaults(gen, &req, &again, &valid_again) == SPRIG_OK);
        FUZZ_ASSERT(!strcmp(again, canon) && valid_again == valid);
        FUZZ_ASSERT((sp_space_check(gen, &req, canon) == SPRIG_OK) == (valid != 0));
        free(again);
        free(canon);
    } else {
        FUZZ_ASSERT(canon == NULL && sprig_last_error()[0] != '\0');
    }
    /* Free the calls' garbage now: libFuzzer scans the whole heap for leaks
     * after every input that mallocs more than it frees, which Lua's lazy
     * collector would make nearly every input do (15x slower). */
    lua_gc(gen->L, LUA_GCCOLLECT, 0);
}

static void fuzz_cubin(const uint8_t *data, size_t size) {
    sprig_resources r;
    int found = sprig_cubin_kernel_info(data, size, "sprig_dense_gemv", &r);
    FUZZ_ASSERT(found >= -1 && found <= 1);
    if (found == 1)
        FUZZ_ASSERT(r.registers >= -1 && r.registers <= 255 && r.stack_bytes >= -1 && r.static_smem_bytes >= 0);
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
    fuzz_db(data, size);
    fuzz_index(data, size);
    fuzz_gguf(data, size);
    fuzz_params(data, size);
    fuzz_cubin(data, size);
    return 0;
}
