/* config.json parsing and the config-vs-tensors check (see sp_model_config.h).
 * Strict on purpose: a model that sprig would run wrongly (biases, another
 * activation, an unknown RoPE scaling) is refused with the key that says so. */
#include <errno.h>
#include <inttypes.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cjson/cJSON.h>

#include "model_internal.h"
#include "sp_error.h"
#include "sp_file.h"
#include "sp_model_config.h"

#define MC_MAX_CONFIG_BYTES (16u << 20)

/* Refuses an object with a repeated key: cJSON would answer with the first
 * occurrence while Python's json (and so transformers) takes the last. */
static sprig_status mc_unique_keys(const char *label, const char *what, const cJSON *obj) {
    for (const cJSON *a = obj->child; a; a = a->next)
        for (const cJSON *b = a->next; b; b = b->next)
            if (strcmp(a->string, b->string) == 0)
                return sp_fail(SPRIG_E_FORMAT, "%s: key \"%.60s\" appears twice in %s", label,
                               a->string, what);
    return SPRIG_OK;
}

/* ---- typed field readers -------------------------------------------------------- */

/* Short JSON rendering of a value for messages ("\"abc\"", "1.5", "{...}"). */
static const char *mc_show(const cJSON *item, char *buf, size_t cap) {
    char *s = cJSON_PrintUnformatted(item);
    if (!s) {
        snprintf(buf, cap, "?");
        return buf;
    }
    if (strlen(s) + 1 > cap && cap > 4)
        snprintf(buf, cap, "%.*s...", (int)(cap - 4), s);
    else
        snprintf(buf, cap, "%s", s);
    free(s);
    return buf;
}

static int mc_absent(const cJSON *item) { return item == NULL || cJSON_IsNull(item); }

/* An integral JSON number in [lo, hi]. Absent/null: the default, or an error if required. */
static sprig_status mc_int(const char *label, const cJSON *obj, const char *key, int required,
                           long long def, long long lo, long long hi, int *out) {
    const cJSON *item = cJSON_GetObjectItemCaseSensitive(obj, key);
    if (mc_absent(item)) {
        if (required) return sp_fail(SPRIG_E_FORMAT, "%s: missing \"%s\"", label, key);
        *out = (int)def;
        return SPRIG_OK;
    }
    char b[48];
    double v = cJSON_IsNumber(item) ? item->valuedouble : NAN;
    if (!(v == floor(v) && fabs(v) < 9.0e15))
        return sp_fail(SPRIG_E_FORMAT, "%s: \"%s\" must be an integer, got %s", label, key,
                       mc_show(item, b, sizeof b));
    if (v < (double)lo || v > (double)hi)
        return sp_fail(SPRIG_E_FORMAT, "%s: \"%s\" = %.0f is out of range [%lld, %lld]", label, key, v,
                       lo, hi);
    *out = (int)v;
    return SPRIG_OK;
}

/* A finite JSON number. Absent/null: the default, or an error if required. */
static sprig_status mc_double(const char *label, const cJSON *obj, const char *key, int required,
                              double def, double *out) {
    const cJSON *item = cJSON_GetObjectItemCaseSensitive(obj, key);
    if (mc_absent(item)) {
        if (required) return sp_fail(SPRIG_E_FORMAT, "%s: missing \"%s\"", label, key);
        *out = def;
        return SPRIG_OK;
    }
    char b[48];
    if (!cJSON_IsNumber(item) || !isfinite(item->valuedouble))
        return sp_fail(SPRIG_E_FORMAT, "%s: \"%s\" must be a number, got %s", label, key,
                       mc_show(item, b, sizeof b));
    *out = item->valuedouble;
    return SPRIG_OK;
}

static sprig_status mc_bool(const char *label, const cJSON *obj, const char *key, int def, int *out) {
    const cJSON *item = cJSON_GetObjectItemCaseSensitive(obj, key);
    if (mc_absent(item)) {
        *out = def;
        return SPRIG_OK;
    }
    char b[48];
    if (!cJSON_IsBool(item))
        return sp_fail(SPRIG_E_FORMAT, "%s: \"%s\" must be true or false, got %s", label, key,
                       mc_show(item, b, sizeof b));
    *out = cJSON_IsTrue(item);
    return SPRIG_OK;
}

/* ---- sections ------------------------------------------------------------------- */

/* The first entry of "architectures" that sprig runs (model/sp_arch.h). */
static sprig_status mc_architecture(const char *label, const cJSON *root, sp_model_config *c) {
    const cJSON *arch = cJSON_GetObjectItemCaseSensitive(root, "architectures");
    if (!cJSON_IsArray(arch) || cJSON_GetArraySize(arch) == 0)
        return sp_fail(SPRIG_E_FORMAT, "%s: no \"architectures\" list (sprig runs %s)", label,
                       sp_arch_supported_list());
    const cJSON *a;
    cJSON_ArrayForEach(a, arch) {
        const sp_arch *known = cJSON_IsString(a) ? sp_arch_find(a->valuestring) : NULL;
        if (known) {
            c->arch = known->kind;
            return SPRIG_OK;
        }
    }
    char b[64];
    const cJSON *first = cJSON_GetArrayItem(arch, 0);
    if (cJSON_IsString(first))
        snprintf(b, sizeof b, "%.60s", first->valuestring);
    else
        mc_show(first, b, sizeof b);
    return sp_fail(SPRIG_E_FORMAT, "%s: unknown architecture '%s' (sprig runs %s)", label, b,
                   sp_arch_supported_list());
}

/* Features the configs can switch on that sprig's forward pass does not
 * implement (Qwen2's q/k/v biases are its architecture's, not a switch). */
static sprig_status mc_unsupported_features(const char *label, const cJSON *root, const sp_arch *arch) {
    const cJSON *act = cJSON_GetObjectItemCaseSensitive(root, "hidden_act");
    char b[48];
    if (!mc_absent(act) && !(cJSON_IsString(act) && strcmp(act->valuestring, "silu") == 0))
        return sp_fail(SPRIG_E_FORMAT, "%s: \"hidden_act\" %s is not supported (sprig runs silu)",
                       label, mc_show(act, b, sizeof b));
    static const char *const biases[] = {"attention_bias", "mlp_bias"};
    for (int i = 0; i < 2; ++i) {
        int on;
        SP_TRY(mc_bool(label, root, biases[i], 0, &on));
        if (on)
            return sp_fail(SPRIG_E_FORMAT, "%s: \"%s\": true is not supported (sprig runs %s layers %s)", label,
                           biases[i], arch->name, arch->qkv_bias ? "with q/k/v biases only" : "without biases");
    }
    int sliding = 0;
    SP_TRY(mc_bool(label, root, "use_sliding_window", 0, &sliding));
    if (sliding && !arch->sliding_window)
        return sp_fail(SPRIG_E_FORMAT, "%s: \"use_sliding_window\": true is not supported for %s (its "
                       "per-layer windows are not implemented)", label, arch->hf_class);
    return SPRIG_OK;
}

/* Mistral's "sliding_window": a positive window, or null/absent for none. */
static sprig_status mc_sliding_window(const char *label, const cJSON *root, sp_model_config *c) {
    if (!sp_arch_get(c->arch)->sliding_window) return SPRIG_OK;
    const cJSON *w = cJSON_GetObjectItemCaseSensitive(root, "sliding_window");
    if (mc_absent(w)) return SPRIG_OK;
    return mc_int(label, root, "sliding_window", 1, 0, 1, 1 << 24, &c->sliding_window);
}

static sprig_status mc_sizes(const char *label, const cJSON *root, sp_model_config *c) {
    SP_TRY(mc_int(label, root, "hidden_size", 1, 0, 1, 1 << 20, &c->hidden_size));
    SP_TRY(mc_int(label, root, "intermediate_size", 1, 0, 1, 1 << 22, &c->intermediate_size));
    SP_TRY(mc_int(label, root, "num_hidden_layers", 1, 0, 1, SP_MAX_LAYERS, &c->num_hidden_layers));
    SP_TRY(mc_int(label, root, "num_attention_heads", 1, 0, 1, 4096, &c->num_attention_heads));
    SP_TRY(mc_int(label, root, "num_key_value_heads", 0, c->num_attention_heads, 1, 4096,
                  &c->num_key_value_heads));
    SP_TRY(mc_int(label, root, "max_position_embeddings", 1, 0, 1, 1 << 24,
                  &c->max_position_embeddings));
    SP_TRY(mc_int(label, root, "vocab_size", 1, 0, 1, 1 << 24, &c->vocab_size));

    int heads = c->num_attention_heads;
    if (c->num_attention_heads % c->num_key_value_heads)
        return sp_fail(SPRIG_E_FORMAT,
                       "%s: num_attention_heads %d is not divisible by num_key_value_heads %d", label,
                       heads, c->num_key_value_heads);
    /* transformers' LlamaConfig refuses this even when head_dim is given. */
    if (c->hidden_size % heads)
        return sp_fail(SPRIG_E_FORMAT, "%s: hidden_size %d is not divisible by num_attention_heads %d",
                       label, c->hidden_size, heads);
    SP_TRY(mc_int(label, root, "head_dim", 0, c->hidden_size / heads, 1, 1 << 16, &c->head_dim));
    if (c->head_dim % 2)  /* RoPE rotates pairs of dimensions */
        return sp_fail(SPRIG_E_FORMAT, "%s: head_dim %d is odd (RoPE needs an even head_dim)", label,
                       c->head_dim);
    if ((long long)heads * c->head_dim > (1 << 22))
        return sp_fail(SPRIG_E_FORMAT, "%s: num_attention_heads %d x head_dim %d is implausibly large",
                       label, heads, c->head_dim);

    SP_TRY(mc_double(label, root, "rms_norm_eps", 1, 0, &c->rms_norm_eps));
    if (!(c->rms_norm_eps > 0))
        return sp_fail(SPRIG_E_FORMAT, "%s: rms_norm_eps %g must be positive", label, c->rms_norm_eps);
    return mc_bool(label, root, "tie_word_embeddings", 0, &c->tie_word_embeddings);
}

static sprig_status mc_token_id(const char *label, const char *key, const cJSON *item, int vocab,
                                int *out) {
    char b[48];
    double v = cJSON_IsNumber(item) ? item->valuedouble : NAN;
    if (!(v == floor(v) && v >= 0 && v < vocab))
        return sp_fail(SPRIG_E_FORMAT, "%s: \"%s\" entry %s is not a token id in [0, vocab_size %d)",
                       label, key, mc_show(item, b, sizeof b), vocab);
    *out = (int)v;
    return SPRIG_OK;
}

static sprig_status mc_tokens(const char *label, const cJSON *root, sp_model_config *c) {
    const cJSON *bos = cJSON_GetObjectItemCaseSensitive(root, "bos_token_id");
    c->bos_token_id = -1;
    if (!mc_absent(bos)) SP_TRY(mc_token_id(label, "bos_token_id", bos, c->vocab_size, &c->bos_token_id));

    const cJSON *eos = cJSON_GetObjectItemCaseSensitive(root, "eos_token_id");
    c->n_eos = 0;
    if (mc_absent(eos)) return SPRIG_OK;
    if (!cJSON_IsArray(eos)) return mc_token_id(label, "eos_token_id", eos, c->vocab_size, &c->eos_token_ids[c->n_eos++]);
    const cJSON *e;
    cJSON_ArrayForEach(e, eos) {
        if (c->n_eos == SP_MAX_EOS)
            return sp_fail(SPRIG_E_FORMAT, "%s: \"eos_token_id\" lists more than %d ids", label,
                           SP_MAX_EOS);
        SP_TRY(mc_token_id(label, "eos_token_id", e, c->vocab_size, &c->eos_token_ids[c->n_eos++]));
    }
    return SPRIG_OK;
}

static void mc_dtype(const cJSON *root, sp_model_config *c) {
    /* transformers >= 4.56 writes "dtype"; older versions "torch_dtype". */
    const cJSON *d = cJSON_GetObjectItemCaseSensitive(root, "torch_dtype");
    if (mc_absent(d)) d = cJSON_GetObjectItemCaseSensitive(root, "dtype");
    c->torch_dtype[0] = '\0';
    if (cJSON_IsString(d) && strlen(d->valuestring) < sizeof c->torch_dtype)
        strcpy(c->torch_dtype, d->valuestring);
}

/* The RoPE settings, read as transformers reads them: "rope_scaling" (older
 * files) if it is a non-empty object, else "rope_parameters" (transformers
 * >= 5, which also moves rope_theta inside); rope_theta from that object,
 * else the top level, else 10000; a missing rope_type means "default"; llama3's
 * original_max_position_embeddings defaults to max_position_embeddings. */
static sprig_status mc_rope(const char *label, const cJSON *root, sp_model_config *c) {
    sp_rope_scaling *r = &c->rope_scaling;
    memset(r, 0, sizeof *r);
    char b[64];
    const cJSON *rs = cJSON_GetObjectItemCaseSensitive(root, "rope_scaling");
    const char *key = "rope_scaling";
    if (mc_absent(rs) || (cJSON_IsObject(rs) && !rs->child)) {
        rs = cJSON_GetObjectItemCaseSensitive(root, "rope_parameters");
        key = "rope_parameters";
    }
    if (!mc_absent(rs) && !cJSON_IsObject(rs))
        return sp_fail(SPRIG_E_FORMAT, "%s: \"%s\" must be null or an object, got %s", label, key,
                       mc_show(rs, b, sizeof b));
    if (mc_absent(rs)) rs = NULL;
    if (rs) SP_TRY(mc_unique_keys(label, key, rs));

    const cJSON *theta_from = rs && cJSON_GetObjectItemCaseSensitive(rs, "rope_theta") ? rs : root;
    SP_TRY(mc_double(label, theta_from, "rope_theta", 0, 10000.0, &c->rope_theta));
    if (!(c->rope_theta > 0))
        return sp_fail(SPRIG_E_FORMAT, "%s: rope_theta %g must be positive", label, c->rope_theta);
    /* Only some layouts rotate part of each head; LLaMA rotates all of it. */
    double partial = 1.0;
    SP_TRY(mc_double(label, rs && cJSON_GetObjectItemCaseSensitive(rs, "partial_rotary_factor") ? rs : root,
                     "partial_rotary_factor", 0, 1.0, &partial));
    if (partial != 1.0)
        return sp_fail(SPRIG_E_FORMAT, "%s: partial_rotary_factor %g is not supported (sprig rotates "
                       "whole heads)", label, partial);
    if (!rs) return SPRIG_OK;

    const cJSON *type = cJSON_GetObjectItemCaseSensitive(rs, "rope_type");
    if (mc_absent(type)) type = cJSON_GetObjectItemCaseSensitive(rs, "type");
    if (mc_absent(type) || (cJSON_IsString(type) && strcmp(type->valuestring, "default") == 0))
        return SPRIG_OK;
    if (!cJSON_IsString(type))
        return sp_fail(SPRIG_E_FORMAT, "%s: %s \"rope_type\" must be a string, got %s", label, key,
                       mc_show(type, b, sizeof b));
    if (strcmp(type->valuestring, "llama3") != 0)
        return sp_fail(SPRIG_E_FORMAT, "%s: %s type '%.60s' is not supported (sprig supports llama3)",
                       label, key, type->valuestring);
    r->kind = SP_ROPE_LLAMA3;
    char where[96];
    snprintf(where, sizeof where, "%s: %s", label, key);
    SP_TRY(mc_double(where, rs, "factor", 1, 0, &r->factor));
    SP_TRY(mc_double(where, rs, "low_freq_factor", 1, 0, &r->low_freq_factor));
    SP_TRY(mc_double(where, rs, "high_freq_factor", 1, 0, &r->high_freq_factor));
    SP_TRY(mc_int(where, rs, "original_max_position_embeddings", 0, c->max_position_embeddings, 1,
                  1 << 24, &r->original_max_position_embeddings));
    if (!(r->factor > 0 && r->low_freq_factor > 0))
        return sp_fail(SPRIG_E_FORMAT, "%s: %s factor %g and low_freq_factor %g must be positive", label,
                       key, r->factor, r->low_freq_factor);
    /* The llama3 rule interpolates over (high - low); equal factors divide by zero. */
    if (!(r->high_freq_factor > r->low_freq_factor))
        return sp_fail(SPRIG_E_FORMAT, "%s: %s high_freq_factor %g must exceed low_freq_factor %g", label,
                       key, r->high_freq_factor, r->low_freq_factor);
    return SPRIG_OK;
}

static sprig_status mc_lte_layers(const char *label, const cJSON *list, sp_model_config *c) {
    sp_lte_config *l = &c->lte;
    if (mc_absent(list)) {
        memset(l->has_router, 1, (size_t)c->num_hidden_layers);
        return SPRIG_OK;
    }
    if (!cJSON_IsArray(list))
        return sp_fail(SPRIG_E_FORMAT, "%s: lte \"layers_with_router\" must be a list of layer indices",
                       label);
    const cJSON *e;
    cJSON_ArrayForEach(e, list) {
        char b[48];
        double v = cJSON_IsNumber(e) ? e->valuedouble : NAN;
        if (!(v == floor(v) && v >= 0 && v < c->num_hidden_layers))
            return sp_fail(SPRIG_E_FORMAT, "%s: lte \"layers_with_router\" entry %s is not a layer in "
                           "[0, num_hidden_layers %d)", label, mc_show(e, b, sizeof b),
                           c->num_hidden_layers);
        if (l->has_router[(int)v])
            return sp_fail(SPRIG_E_FORMAT, "%s: lte \"layers_with_router\" lists layer %d twice", label,
                           (int)v);
        l->has_router[(int)v] = 1;
    }
    return SPRIG_OK;
}

static sprig_status mc_lte(const char *label, const cJSON *root, sp_model_config *c) {
    sp_lte_config *l = &c->lte;
    memset(l, 0, sizeof *l);
    const cJSON *lte = cJSON_GetObjectItemCaseSensitive(root, "lte");
    if (mc_absent(lte)) return SPRIG_OK;
    if (!cJSON_IsObject(lte)) return sp_fail(SPRIG_E_FORMAT, "%s: \"lte\" must be an object", label);
    SP_TRY(mc_unique_keys(label, "\"lte\"", lte));
    const cJSON *kv;
    cJSON_ArrayForEach(kv, lte) {
        if (strcmp(kv->string, "expert_size") && strcmp(kv->string, "threshold") &&
            strcmp(kv->string, "layers_with_router"))
            return sp_fail(SPRIG_E_FORMAT, "%s: unknown key \"lte.%.60s\" (known: expert_size, "
                           "threshold, layers_with_router)", label, kv->string);
    }
    l->enabled = 1;
    char key[96];
    snprintf(key, sizeof key, "%s: lte", label);
    SP_TRY(mc_int(key, lte, "expert_size", 1, 0, 1, c->intermediate_size, &l->expert_size));
    if (c->intermediate_size % l->expert_size)
        return sp_fail(SPRIG_E_FORMAT, "%s: lte expert_size %d does not divide intermediate_size %d",
                       label, l->expert_size, c->intermediate_size);
    l->n_experts = c->intermediate_size / l->expert_size;
    SP_TRY(mc_double(key, lte, "threshold", 1, 0, &l->threshold));
    if (!(l->threshold > 0 && l->threshold < 1))
        return sp_fail(SPRIG_E_FORMAT, "%s: lte threshold %g must lie strictly between 0 and 1 "
                       "(it is compared with a sigmoid)", label, l->threshold);
    return mc_lte_layers(label, cJSON_GetObjectItemCaseSensitive(lte, "layers_with_router"), c);
}

/* ---- entry points --------------------------------------------------------------- */

sprig_status sp_model_config_parse(const char *json, size_t len, const char *label,
                                   sp_model_config *out) {
    memset(out, 0, sizeof *out);
    if (!label) label = "config.json";
    /* NUL-terminated copy: cJSON never reads past it, and the caller's text
     * need not be terminated. */
    char *copy = malloc(len + 1);
    SP_CHECK_ALLOC(copy);
    if (len) memcpy(copy, json, len);
    copy[len] = '\0';
    const char *end = NULL;
    cJSON *root = cJSON_ParseWithLengthOpts(copy, len + 1, &end, 0);
    size_t at = end && end >= copy && end <= copy + len ? (size_t)(end - copy) : len;
    free(copy);
    if (!root)
        return sp_fail(SPRIG_E_FORMAT, "%s: not valid JSON (error near byte %zu)", label, at);
    sp_model_config c;
    memset(&c, 0, sizeof c);
    sprig_status s = SPRIG_OK;
    if (!cJSON_IsObject(root)) s = sp_fail(SPRIG_E_FORMAT, "%s: top level is not a JSON object", label);
    if (s == SPRIG_OK) s = mc_unique_keys(label, "the top-level object", root);
    if (s == SPRIG_OK) s = mc_architecture(label, root, &c);
    if (s == SPRIG_OK) s = mc_unsupported_features(label, root, sp_arch_get(c.arch));
    if (s == SPRIG_OK) s = mc_sliding_window(label, root, &c);
    if (s == SPRIG_OK) s = mc_sizes(label, root, &c);
    if (s == SPRIG_OK) s = mc_tokens(label, root, &c);
    if (s == SPRIG_OK) s = mc_rope(label, root, &c);
    if (s == SPRIG_OK) s = mc_lte(label, root, &c);
    if (s == SPRIG_OK) mc_dtype(root, &c);
    cJSON_Delete(root);
    if (s == SPRIG_OK) *out = c;
    return s;
}

sprig_status sp_model_config_load(const char *path, sp_model_config *out) {
    memset(out, 0, sizeof *out);
    char *buf = NULL;
    size_t n = 0;
    sprig_status s = sp_file_read(path, MC_MAX_CONFIG_BYTES, &buf, &n, NULL);
    if (s == SPRIG_E_FORMAT) return sp_wrap(s, "not a config.json");
    if (s != SPRIG_OK) return s;
    s = sp_model_config_parse(buf, n, path, out);
    free(buf);
    return s;
}

/* ---- tensors vs config ------------------------------------------------------------ */

typedef struct mc_check {
    sp_tensor_lookup_fn lookup;
    const void *ctx;
} mc_check;

/* Looks `name` up and compares it with the expected 1-D or 2-D shape. why
 * spells the shape in config terms for the message. */
static sprig_status mc_expect(const mc_check *k, const char *name, int ndim, int64_t d0, int64_t d1,
                              const char *why, int optional, const sp_tensor **out) {
    int64_t want[2] = {d0, d1};
    char ws[64], fs[64];
    sp_shape_str(want, ndim, ws, sizeof ws);
    const sp_tensor *t = k->lookup(k->ctx, name);
    if (out) *out = t;
    if (!t) {
        if (optional) return SPRIG_OK;
        return sp_fail(SPRIG_E_FORMAT, "missing tensor '%s' (config.json implies %s = %s)", name, why,
                       ws);
    }
    int same = t->ndim == ndim && t->shape[0] == d0 && (ndim < 2 || t->shape[1] == d1);
    if (!same)
        return sp_fail(SPRIG_E_FORMAT, "tensor '%s' has shape %s but config.json implies %s = %s", name,
                       sp_shape_str(t->shape, t->ndim, fs, sizeof fs), why, ws);
    return SPRIG_OK;
}

static sprig_status mc_expect_weight(const mc_check *k, const char *name, int ndim, int64_t d0,
                                     int64_t d1, const char *why, int optional) {
    const sp_tensor *t;
    SP_TRY(mc_expect(k, name, ndim, d0, d1, why, optional, &t));
    if (t && !sp_dtype_is_float(t->dtype))
        return sp_fail(SPRIG_E_FORMAT, "tensor '%s' has dtype %s; weights must be F16, BF16 or F32",
                       name, sp_dtype_name(t->dtype));
    return SPRIG_OK;
}

static sprig_status mc_check_permutation(const sp_tensor *t, int64_t n) {
    if (t->dtype != SP_DTYPE_I32 && t->dtype != SP_DTYPE_I64)
        return sp_fail(SPRIG_E_FORMAT, "tensor '%s' has dtype %s; an expert permutation must be I32 "
                       "or I64", t->name, sp_dtype_name(t->dtype));
    unsigned char *seen = calloc((size_t)n, 1);
    SP_CHECK_ALLOC(seen);
    sprig_status s = SPRIG_OK;
    for (int64_t i = 0; i < n && s == SPRIG_OK; ++i) {
        long long v = sp_tensor_int_at(t, (size_t)i);
        if (v < 0 || v >= n)
            s = sp_fail(SPRIG_E_FORMAT, "tensor '%s' is not a permutation: entry %" PRId64 " = %lld "
                        "lies outside [0, %" PRId64 ")", t->name, i, v, n);
        else if (seen[v]++)
            s = sp_fail(SPRIG_E_FORMAT, "tensor '%s' is not a permutation: value %lld appears more "
                        "than once (again at entry %" PRId64 ")", t->name, v, i);
    }
    free(seen);
    return s;
}

/* A tensor the folder must not have: SliceGPT folds the norm scales into the
 * linears after them, so a norm weight in a sliced model would be applied twice
 * (or mean a folder sprig would run wrongly). */
static sprig_status mc_expect_absent(const mc_check *k, const char *name, const char *why) {
    if (k->lookup(k->ctx, name))
        return sp_fail(SPRIG_E_FORMAT, "tensor '%s' is present, but %s", name, why);
    return SPRIG_OK;
}

#define MC_SLICE_NORMS "a SliceGPT model's norms are weightless (their scales are folded into the next linears)"

/* A SliceGPT layer: per-layer widths from cfg->slice, shortcut matrices, no norm weights. */
static sprig_status mc_check_sliced_layer(const mc_check *k, const sp_model_config *c, int L) {
    const sp_slice_config *s = &c->slice;
    const int64_t f = c->intermediate_size, ai = s->attn_in[L], ao = s->attn_out[L];
    const int64_t mi = s->mlp_in[L], mo = s->mlp_out[L];
    const int64_t q = (int64_t)c->num_attention_heads * c->head_dim;
    const int64_t kv = (int64_t)c->num_key_value_heads * c->head_dim;
    char n[128], why[256], AI[64], AO[64], MI[64], MO[64];
    snprintf(AI, sizeof AI, "attention_input_dimensions[\"%d\"]", L);
    snprintf(AO, sizeof AO, "attention_output_dimensions[\"%d\"]", L);
    snprintf(MI, sizeof MI, "mlp_input_dimensions[\"%d\"]", L);
    snprintf(MO, sizeof MO, "mlp_output_dimensions[\"%d\"]", L);
#define MC_SW(suffix, a, b, ...)                                               \
    do {                                                                      \
        snprintf(n, sizeof n, "model.layers.%d.%s", L, suffix);               \
        snprintf(why, sizeof why, __VA_ARGS__);                               \
        SP_TRY(mc_expect_weight(k, n, 2, a, b, why, 0));                      \
    } while (0)
    MC_SW("self_attn.q_proj.weight", q, ai, "[num_attention_heads*head_dim, slicegpt %s]", AI);
    MC_SW("self_attn.k_proj.weight", kv, ai, "[num_key_value_heads*head_dim, slicegpt %s]", AI);
    MC_SW("self_attn.v_proj.weight", kv, ai, "[num_key_value_heads*head_dim, slicegpt %s]", AI);
    MC_SW("self_attn.o_proj.weight", ao, q, "[slicegpt %s, num_attention_heads*head_dim]", AO);
    MC_SW("attn_shortcut_Q", ai, ao, "[slicegpt %s, %s]", AI, AO);
    MC_SW("mlp.gate_proj.weight", f, mi, "[intermediate_size, slicegpt %s]", MI);
    MC_SW("mlp.up_proj.weight", f, mi, "[intermediate_size, slicegpt %s]", MI);
    MC_SW("mlp.down_proj.weight", mo, f, "[slicegpt %s, intermediate_size]", MO);
    MC_SW("mlp_shortcut_Q", mi, mo, "[slicegpt %s, %s]", MI, MO);
    if (c->lte.enabled && c->lte.has_router[L])
        MC_SW("mlp.router.weight", c->lte.n_experts, mi, "[intermediate_size/lte.expert_size, slicegpt %s]", MI);
#undef MC_SW
    static const char *const norms[] = {"input_layernorm.weight", "post_attention_layernorm.weight"};
    for (int i = 0; i < 2; ++i) {
        snprintf(n, sizeof n, "model.layers.%d.%s", L, norms[i]);
        SP_TRY(mc_expect_absent(k, n, MC_SLICE_NORMS));
    }
    return SPRIG_OK;
}

static sprig_status mc_check_permutation_of(const mc_check *k, const sp_model_config *c, int L);

static sprig_status mc_check_layer(const mc_check *k, const sp_model_config *c, int L) {
    if (c->slice.enabled) {
        SP_TRY(mc_check_sliced_layer(k, c, L));
        return c->lte.enabled && c->lte.has_router[L] ? mc_check_permutation_of(k, c, L) : SPRIG_OK;
    }
    const int64_t h = c->hidden_size, f = c->intermediate_size;
    const int64_t q = (int64_t)c->num_attention_heads * c->head_dim;
    const int64_t kv = (int64_t)c->num_key_value_heads * c->head_dim;
    char n[128];
#define MC_W(suffix, nd, a, b, why)                                         \
    do {                                                                   \
        snprintf(n, sizeof n, "model.layers.%d.%s", L, suffix);            \
        SP_TRY(mc_expect_weight(k, n, nd, a, b, why, 0));                  \
    } while (0)
    MC_W("input_layernorm.weight", 1, h, 0, "[hidden_size]");
    MC_W("post_attention_layernorm.weight", 1, h, 0, "[hidden_size]");
    MC_W("self_attn.q_proj.weight", 2, q, h, "[num_attention_heads*head_dim, hidden_size]");
    MC_W("self_attn.k_proj.weight", 2, kv, h, "[num_key_value_heads*head_dim, hidden_size]");
    MC_W("self_attn.v_proj.weight", 2, kv, h, "[num_key_value_heads*head_dim, hidden_size]");
    MC_W("self_attn.o_proj.weight", 2, h, q, "[hidden_size, num_attention_heads*head_dim]");
    MC_W("mlp.gate_proj.weight", 2, f, h, "[intermediate_size, hidden_size]");
    MC_W("mlp.up_proj.weight", 2, f, h, "[intermediate_size, hidden_size]");
    MC_W("mlp.down_proj.weight", 2, h, f, "[hidden_size, intermediate_size]");
    if (sp_arch_get(c->arch)->qkv_bias) {
        MC_W("self_attn.q_proj.bias", 1, q, 0, "[num_attention_heads*head_dim]");
        MC_W("self_attn.k_proj.bias", 1, kv, 0, "[num_key_value_heads*head_dim]");
        MC_W("self_attn.v_proj.bias", 1, kv, 0, "[num_key_value_heads*head_dim]");
    }
#undef MC_W
    if (!c->lte.enabled || !c->lte.has_router[L]) return SPRIG_OK;
    snprintf(n, sizeof n, "model.layers.%d.mlp.router.weight", L);
    SP_TRY(mc_expect_weight(k, n, 2, c->lte.n_experts, h,
                            "[intermediate_size/lte.expert_size, hidden_size]", 0));
    return mc_check_permutation_of(k, c, L);
}

static sprig_status mc_check_permutation_of(const mc_check *k, const sp_model_config *c, int L) {
    const int64_t f = c->intermediate_size;
    char n[128];
    snprintf(n, sizeof n, "model.layers.%d.mlp.expert_permutation", L);
    const sp_tensor *perm;
    SP_TRY(mc_expect(k, n, 1, f, 0, "[intermediate_size]", 1, &perm));
    return perm ? mc_check_permutation(perm, f) : SPRIG_OK;
}

/* A SliceGPT model: sliced embedding, per-layer widths, no final norm weight,
 * an untied lm_head of width head_dimension (SliceGPT clones it even for a
 * tied model). */
static sprig_status mc_check_sliced(const mc_check *k, const sp_model_config *cfg) {
    const sp_slice_config *s = &cfg->slice;
    const int64_t v = cfg->vocab_size;
    SP_TRY(mc_expect_weight(k, "model.embed_tokens.weight", 2, v, s->embedding_dim,
                            "[vocab_size, slicegpt embedding_dimensions[\"0\"]]", 0));
    for (int L = 0; L < cfg->num_hidden_layers; ++L) SP_TRY(mc_check_layer(k, cfg, L));
    SP_TRY(mc_expect_absent(k, "model.norm.weight", MC_SLICE_NORMS));
    return mc_expect_weight(k, "lm_head.weight", 2, v, s->lm_head_width, "[vocab_size, slicegpt head_dimension]", 0);
}

sprig_status sp_model_config_check_tensors(const sp_model_config *cfg, sp_tensor_lookup_fn lookup,
                                           const void *ctx) {
    if (!cfg || !lookup) return sp_fail(SPRIG_E_INVALID, "sp_model_config_check_tensors: NULL argument");
    mc_check k = {lookup, ctx};
    if (cfg->slice.enabled && sp_arch_get(cfg->arch)->qkv_bias)
        return sp_fail(SPRIG_E_FORMAT, "a SliceGPT-sliced %s model: sliced q/k/v biases are not supported",
                       sp_arch_get(cfg->arch)->hf_class);
    if (cfg->slice.enabled) return mc_check_sliced(&k, cfg);
    if (lookup(ctx, "model.layers.0.attn_shortcut_Q"))
        return sp_fail(SPRIG_E_FORMAT, "tensor 'model.layers.0.attn_shortcut_Q' is present: this is a SliceGPT "
                       "model, but no slicing config was found (put SliceGPT's <model>_<sparsity>.json in the "
                       "folder or add \"slicegpt\" to config.json; see README, SliceGPT models)");
    const int64_t h = cfg->hidden_size, v = cfg->vocab_size;
    SP_TRY(mc_expect_weight(&k, "model.embed_tokens.weight", 2, v, h, "[vocab_size, hidden_size]", 0));
    for (int L = 0; L < cfg->num_hidden_layers; ++L) SP_TRY(mc_check_layer(&k, cfg, L));
    SP_TRY(mc_expect_weight(&k, "model.norm.weight", 1, h, 0, "[hidden_size]", 0));
    /* Tied models usually omit lm_head; if one is stored anyway it must still fit. */
    return mc_expect_weight(&k, "lm_head.weight", 2, v, h, "[vocab_size, hidden_size]",
                            cfg->tie_word_embeddings);
}
