/* SliceGPT's slicing JSON: parsing, validation, and finding it in a model
 * folder (see sp_slicegpt.h). The tensor shapes it implies are checked by
 * sp_model_config_check_tensors. */
#include <dirent.h>
#include <errno.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cjson/cJSON.h>

#include "sp_error.h"
#include "sp_file.h"
#include "sp_slicegpt.h"

#define SL_MAX_JSON_BYTES (16u << 20)

/* The per-layer width tables, in SlicingConfig's order. */
enum { SL_ATTN_IN, SL_ATTN_OUT, SL_MLP_IN, SL_MLP_OUT, SL_N_TABLES };
static const char *const kTableKeys[SL_N_TABLES] = {
    "attention_input_dimensions", "attention_output_dimensions", "mlp_input_dimensions",
    "mlp_output_dimensions"};
static const char *const kScalarKeys[] = {"hidden_size",     "layers_num",    "do_slice_head",
                                          "parallel_blocks", "embedding_dimensions",
                                          "head_dimension",  "const_dimension"};

static int *sl_table(sp_slice_config *s, int which) {
    int *const t[SL_N_TABLES] = {s->attn_in, s->attn_out, s->mlp_in, s->mlp_out};
    return t[which];
}

static const int *sl_ctable(const sp_slice_config *s, int which) {
    const int *const t[SL_N_TABLES] = {s->attn_in, s->attn_out, s->mlp_in, s->mlp_out};
    return t[which];
}

int sp_slice_width(int hidden, double sparsity, int round_interval) {
    int d = (int)((1.0 - sparsity) * hidden);
    return round_interval > 1 ? d - d % round_interval : d;
}

void sp_slice_const(const sp_model_config *cfg, int width, sp_slice_config *out) {
    memset(out, 0, sizeof *out);
    out->enabled = 1;
    out->embedding_dim = width;
    for (int l = 0; l < cfg->num_hidden_layers; ++l)
        out->attn_in[l] = out->attn_out[l] = out->mlp_in[l] = out->mlp_out[l] = width;
    out->lm_head_width = out->mlp_out[cfg->num_hidden_layers - 1] = cfg->hidden_size;
    out->norm_eps = SP_SLICE_NORM_EPS;
    snprintf(out->source, sizeof out->source, "SliceGPT constant width %d", width);
}

/* ---- reading values ---------------------------------------------------------------- */

/* An integral JSON number; *out untouched and 0 returned when absent/null. */
static sprig_status sl_int(const char *label, const char *what, const cJSON *item, int *out,
                           int *present) {
    *present = 0;
    if (!item || cJSON_IsNull(item)) return SPRIG_OK;
    double v = cJSON_IsNumber(item) ? item->valuedouble : NAN;
    if (!(v == floor(v) && fabs(v) < 1e9))
        return sp_fail(SPRIG_E_FORMAT, "%s: %s must be an integer", label, what);
    *out = (int)v;
    *present = 1;
    return SPRIG_OK;
}

static sprig_status sl_bool(const char *label, const cJSON *root, const char *key, int *out) {
    const cJSON *item = cJSON_GetObjectItemCaseSensitive(root, key);
    *out = 0;
    if (!item || cJSON_IsNull(item)) return SPRIG_OK;
    if (!cJSON_IsBool(item)) return sp_fail(SPRIG_E_FORMAT, "%s: \"%s\" must be true or false", label, key);
    *out = cJSON_IsTrue(item);
    return SPRIG_OK;
}

/* Layer index from a key such as "12": decimal digits only, below n. -1 otherwise. */
static int sl_layer_key(const char *key, int n) {
    if (!key[0] || strlen(key) > 7) return -1;
    int v = 0;
    for (const char *p = key; *p; ++p) {
        if (*p < '0' || *p > '9') return -1;
        v = v * 10 + (*p - '0');
    }
    return v < n ? v : -1;
}

/* A {"layer": width} object with exactly the keys 0..n-1. An empty or absent
 * object leaves *filled 0 (the const_dimension form). */
static sprig_status sl_read_table(const char *label, const cJSON *root, const char *key, int n,
                                  int *widths, int *filled) {
    const cJSON *obj = cJSON_GetObjectItemCaseSensitive(root, key);
    *filled = 0;
    if (!obj || cJSON_IsNull(obj) || (cJSON_IsObject(obj) && !obj->child)) return SPRIG_OK;
    if (!cJSON_IsObject(obj))
        return sp_fail(SPRIG_E_FORMAT, "%s: \"%s\" must be an object {\"layer index\": width}", label, key);
    unsigned char *seen = calloc((size_t)n, 1);
    SP_CHECK_ALLOC(seen);
    sprig_status s = SPRIG_OK;
    int count = 0;
    for (const cJSON *kv = obj->child; kv && s == SPRIG_OK; kv = kv->next) {
        int l = sl_layer_key(kv->string, n), present;
        char what[128];
        snprintf(what, sizeof what, "%s[\"%.20s\"]", key, kv->string);
        if (l < 0)
            s = sp_fail(SPRIG_E_FORMAT, "%s: key \"%.20s\" of \"%s\" is not a layer index in [0, %d)", label,
                        kv->string, key, n);
        else if (seen[l]++)
            s = sp_fail(SPRIG_E_FORMAT, "%s: layer %d appears twice in \"%s\"", label, l, key);
        else
            s = sl_int(label, what, kv, &widths[l], &present);
        if (s == SPRIG_OK && !present) s = sp_fail(SPRIG_E_FORMAT, "%s: %s is null", label, what);
        ++count;
    }
    for (int l = 0; s == SPRIG_OK && l < n; ++l)
        if (!seen[l])
            s = sp_fail(SPRIG_E_FORMAT, "%s: \"%s\" has no entry for layer %d (the model has %d layers)",
                        label, key, l, n);
    free(seen);
    *filled = s == SPRIG_OK && count > 0;
    return s;
}

/* ---- validation --------------------------------------------------------------------- */

/* In [1, D], and a multiple of 8 unless it is D itself (an unsliced width). */
static sprig_status sl_check_width(const char *label, const char *what, int w, int D) {
    if (w < 1 || w > D)
        return sp_fail(SPRIG_E_FORMAT, "%s: SliceGPT width %s = %d is outside [1, hidden_size %d]", label,
                       what, w, D);
    if (w != D && w % SP_SLICE_ROUND)
        return sp_fail(SPRIG_E_FORMAT,
                       "%s: SliceGPT width %s = %d is not a multiple of %d, which sprig's kernels need. "
                       "Slice with SliceGPT's round_interval %d (run_slicegpt.py --round-interval %d, its "
                       "default), which rounds int((1 - sparsity) * hidden_size) down: %d -> %d",
                       label, what, w, SP_SLICE_ROUND, SP_SLICE_ROUND, SP_SLICE_ROUND, w,
                       w - w % SP_SLICE_ROUND);
    return SPRIG_OK;
}

/* Every width in range, and the chain a sequential LLaMA layer needs: the
 * residual leaving one block is the residual entering the next. */
static sprig_status sl_validate(const char *label, const sp_model_config *cfg, const sp_slice_config *s) {
    const int D = cfg->hidden_size, L = cfg->num_hidden_layers;
    char what[96];
    SP_TRY(sl_check_width(label, "embedding_dimensions[\"0\"]", s->embedding_dim, D));
    for (int t = 0; t < SL_N_TABLES; ++t)
        for (int l = 0; l < L; ++l) {
            snprintf(what, sizeof what, "%s[\"%d\"]", kTableKeys[t], l);
            SP_TRY(sl_check_width(label, what, sl_ctable(s, t)[l], D));
        }
    SP_TRY(sl_check_width(label, "head_dimension", s->lm_head_width, D));
    if (s->embedding_dim != s->attn_in[0])
        return sp_fail(SPRIG_E_FORMAT, "%s: embedding_dimensions[\"0\"] = %d but attention_input_dimensions"
                       "[\"0\"] = %d (the embedding feeds layer 0)", label, s->embedding_dim, s->attn_in[0]);
    for (int l = 0; l < L; ++l) {
        if (s->attn_out[l] != s->mlp_in[l])
            return sp_fail(SPRIG_E_FORMAT, "%s: layer %d: attention_output_dimensions = %d but "
                           "mlp_input_dimensions = %d (the attention output feeds the MLP)", label, l,
                           s->attn_out[l], s->mlp_in[l]);
        if (l + 1 < L && s->mlp_out[l] != s->attn_in[l + 1])
            return sp_fail(SPRIG_E_FORMAT, "%s: mlp_output_dimensions[\"%d\"] = %d but attention_input_"
                           "dimensions[\"%d\"] = %d (layer %d's output feeds layer %d)", label, l,
                           s->mlp_out[l], l + 1, s->attn_in[l + 1], l, l + 1);
    }
    if (s->mlp_out[L - 1] != s->lm_head_width)
        return sp_fail(SPRIG_E_FORMAT, "%s: mlp_output_dimensions[\"%d\"] = %d but head_dimension = %d (the "
                       "last layer feeds lm_head)", label, L - 1, s->mlp_out[L - 1], s->lm_head_width);
    return SPRIG_OK;
}

/* ---- the SlicingConfig object --------------------------------------------------------- */

static sprig_status sl_known_keys(const char *label, const cJSON *root) {
    for (const cJSON *kv = root->child; kv; kv = kv->next) {
        int known = 0;
        for (int t = 0; t < SL_N_TABLES; ++t) known |= strcmp(kv->string, kTableKeys[t]) == 0;
        for (size_t i = 0; i < sizeof kScalarKeys / sizeof kScalarKeys[0]; ++i)
            known |= strcmp(kv->string, kScalarKeys[i]) == 0;
        if (!known)
            return sp_fail(SPRIG_E_FORMAT, "%s: unknown key \"%.60s\" (SliceGPT's SlicingConfig has "
                           "hidden_size, layers_num, do_slice_head, parallel_blocks, embedding_dimensions, "
                           "attention_/mlp_ input/output_dimensions, head_dimension, const_dimension)", label,
                           kv->string);
        for (const cJSON *b = kv->next; b; b = b->next)
            if (strcmp(kv->string, b->string) == 0)
                return sp_fail(SPRIG_E_FORMAT, "%s: key \"%.60s\" appears twice", label, kv->string);
    }
    return SPRIG_OK;
}

/* hidden_size / layers_num, when given (SlicingConfig defaults them to 0), must be the model's. */
static sprig_status sl_model_match(const char *label, const cJSON *root, const sp_model_config *cfg) {
    int v, present;
    SP_TRY(sl_int(label, "\"hidden_size\"", cJSON_GetObjectItemCaseSensitive(root, "hidden_size"), &v, &present));
    if (present && v != 0 && v != cfg->hidden_size)
        return sp_fail(SPRIG_E_FORMAT, "%s: hidden_size %d, but config.json has hidden_size %d (config.json must "
                       "be the ORIGINAL model's)", label, v, cfg->hidden_size);
    SP_TRY(sl_int(label, "\"layers_num\"", cJSON_GetObjectItemCaseSensitive(root, "layers_num"), &v, &present));
    if (present && v != 0 && v != cfg->num_hidden_layers)
        return sp_fail(SPRIG_E_FORMAT, "%s: layers_num %d, but config.json has num_hidden_layers %d", label, v,
                       cfg->num_hidden_layers);
    int parallel;
    SP_TRY(sl_bool(label, root, "parallel_blocks", &parallel));
    if (parallel)
        return sp_fail(SPRIG_E_FORMAT, "%s: parallel_blocks is true (attention and MLP side by side, as in "
                       "Phi-2); a LLaMA layer is sequential", label);
    return SPRIG_OK;
}

static sprig_status sl_embedding(const char *label, const cJSON *root, int *width, int *present) {
    const cJSON *obj = cJSON_GetObjectItemCaseSensitive(root, "embedding_dimensions");
    *present = 0;
    if (!obj || cJSON_IsNull(obj) || (cJSON_IsObject(obj) && !obj->child)) return SPRIG_OK;
    if (!cJSON_IsObject(obj) || cJSON_GetArraySize(obj) != 1 || strcmp(obj->child->string, "0") != 0)
        return sp_fail(SPRIG_E_FORMAT, "%s: \"embedding_dimensions\" must be {\"0\": width} (LLaMA has one "
                       "embedding)", label);
    SP_TRY(sl_int(label, "embedding_dimensions[\"0\"]", obj->child, width, present));
    if (!*present) return sp_fail(SPRIG_E_FORMAT, "%s: embedding_dimensions[\"0\"] is null", label);
    return SPRIG_OK;
}

static sprig_status sl_from_object(const char *label, const cJSON *root, const sp_model_config *cfg,
                                   sp_slice_config *out) {
    if (!cJSON_IsObject(root))
        return sp_fail(SPRIG_E_FORMAT, "%s: a SliceGPT slicing config must be a JSON object", label);
    SP_TRY(sl_known_keys(label, root));
    SP_TRY(sl_model_match(label, root, cfg));
    const int L = cfg->num_hidden_layers;
    int slice_head, head, has_head, konst, has_const, has_emb, filled[SL_N_TABLES], n_filled = 0;
    SP_TRY(sl_bool(label, root, "do_slice_head", &slice_head));
    SP_TRY(sl_int(label, "\"head_dimension\"", cJSON_GetObjectItemCaseSensitive(root, "head_dimension"), &head,
                  &has_head));
    SP_TRY(sl_int(label, "\"const_dimension\"", cJSON_GetObjectItemCaseSensitive(root, "const_dimension"),
                  &konst, &has_const));
    sp_slice_config s;
    memset(&s, 0, sizeof s);
    for (int t = 0; t < SL_N_TABLES; ++t) {
        SP_TRY(sl_read_table(label, root, kTableKeys[t], L, sl_table(&s, t), &filled[t]));
        n_filled += filled[t];
    }
    SP_TRY(sl_embedding(label, root, &s.embedding_dim, &has_emb));
    if (n_filled == 0 && !has_emb) {
        /* SliceGPT's fallback: one width everywhere (ConstSlicingScheduler). */
        if (!has_const)
            return sp_fail(SPRIG_E_FORMAT, "%s: no per-layer widths and no const_dimension", label);
        sp_slice_const(cfg, konst, &s);
        if (slice_head) s.lm_head_width = s.mlp_out[L - 1] = konst;
    } else {
        for (int t = 0; t < SL_N_TABLES; ++t)
            if (!filled[t]) return sp_fail(SPRIG_E_FORMAT, "%s: \"%s\" is missing or empty", label, kTableKeys[t]);
        if (!has_emb) return sp_fail(SPRIG_E_FORMAT, "%s: \"embedding_dimensions\" is missing or empty", label);
        if (!has_head && slice_head)
            return sp_fail(SPRIG_E_FORMAT, "%s: do_slice_head is true but head_dimension is missing", label);
        s.lm_head_width = has_head ? head : cfg->hidden_size;
    }
    s.enabled = 1;
    s.norm_eps = SP_SLICE_NORM_EPS;
    snprintf(s.source, sizeof s.source, "%s", label);
    SP_TRY(sl_validate(label, cfg, &s));
    *out = s;
    return SPRIG_OK;
}

sprig_status sp_slice_parse(const char *json, size_t len, const char *label, const sp_model_config *cfg,
                            sp_slice_config *out) {
    memset(out, 0, sizeof *out);
    if (!label) label = "SliceGPT slicing config";
    char *copy = malloc(len + 1);
    SP_CHECK_ALLOC(copy);
    if (len) memcpy(copy, json, len);
    copy[len] = '\0';
    cJSON *root = cJSON_ParseWithLength(copy, len + 1);
    free(copy);
    if (!root) return sp_fail(SPRIG_E_FORMAT, "%s: not valid JSON", label);
    sprig_status s = sl_from_object(label, root, cfg, out);
    cJSON_Delete(root);
    return s;
}

/* ---- finding it in a folder ------------------------------------------------------------ */

static sprig_status sl_load_file(const char *dir, const char *file, sp_model_config *cfg) {
    char path[4096];
    snprintf(path, sizeof path, "%s/%s", dir, file);
    char *text;
    size_t len;
    SP_TRY(sp_file_read(path, SL_MAX_JSON_BYTES, &text, &len, NULL));
    sprig_status s = sp_slice_parse(text, len, path, cfg, &cfg->slice);
    free(text);
    return s;
}

/* run_slicegpt.py names its JSON <model>_<sparsity>.json: a number in [0, 1) after the last '_'. */
static int sl_slicegpt_name(const char *name) {
    size_t n = strlen(name);
    if (n < 7 || strcmp(name + n - 5, ".json") != 0) return 0;
    const char *us = strrchr(name, '_');
    if (!us || us == name) return 0;
    char num[32];
    size_t k = (size_t)(name + n - 5 - (us + 1));
    if (k == 0 || k >= sizeof num) return 0;
    memcpy(num, us + 1, k);
    num[k] = '\0';
    char *end;
    double v = strtod(num, &end);
    return *end == '\0' && v >= 0 && v < 1 && (num[0] >= '0' && num[0] <= '9');
}

/* The one SliceGPT-named JSON in dir, or none (*found = 0). */
static sprig_status sl_find_file(const char *dir, char *found, size_t cap) {
    found[0] = '\0';
    DIR *d = opendir(dir);
    if (!d) return sp_fail(SPRIG_E_IO, "cannot list model folder '%s': %s", dir, strerror(errno));
    char other[256] = "";
    for (struct dirent *e; (e = readdir(d));) {
        if (!sl_slicegpt_name(e->d_name) || strlen(e->d_name) >= cap) continue;
        if (found[0]) {
            snprintf(other, sizeof other, "%s", e->d_name);
            break;
        }
        snprintf(found, cap, "%s", e->d_name);
    }
    closedir(d);
    if (other[0])
        return sp_fail(SPRIG_E_FORMAT, "model folder '%s' holds several SliceGPT slicing files ('%s', '%s', "
                       "...): name the right one in config.json as \"slicegpt\": \"<file>\"", dir, found, other);
    return SPRIG_OK;
}

/* config.json's "slicegpt" value (a copy), or NULL when the key is absent. */
static sprig_status sl_config_key(const char *dir, cJSON **out) {
    *out = NULL;
    char path[4096], *text;
    size_t len;
    snprintf(path, sizeof path, "%s/config.json", dir);
    SP_TRY(sp_file_read(path, SL_MAX_JSON_BYTES, &text, &len, NULL));
    cJSON *root = cJSON_ParseWithLength(text, len + 1);
    free(text);
    if (!root) return sp_fail(SPRIG_E_FORMAT, "%s: not valid JSON", path);
    cJSON *v = cJSON_DetachItemFromObjectCaseSensitive(root, "slicegpt");
    cJSON_Delete(root);
    if (v && cJSON_IsNull(v)) {
        cJSON_Delete(v);
        v = NULL;
    }
    *out = v;
    return SPRIG_OK;
}

sprig_status sp_slice_load(const char *dir, sp_model_config *cfg) {
    memset(&cfg->slice, 0, sizeof cfg->slice);
    cJSON *v;
    SP_TRY(sl_config_key(dir, &v));
    char label[4200];
    snprintf(label, sizeof label, "%s/config.json \"slicegpt\"", dir);
    sprig_status s = SPRIG_OK;
    if (v && cJSON_IsString(v)) {
        const char *f = v->valuestring;
        if (!f[0] || strchr(f, '/') || !strcmp(f, ".") || !strcmp(f, ".."))
            s = sp_fail(SPRIG_E_FORMAT, "%s: '%s' is not a plain file name in the model folder", label, f);
        else
            s = sl_load_file(dir, f, cfg);
    } else if (v) {
        s = sl_from_object(label, v, cfg, &cfg->slice);
    } else {
        char found[256];
        s = sl_find_file(dir, found, sizeof found);
        if (s == SPRIG_OK && found[0]) s = sl_load_file(dir, found, cfg);
    }
    cJSON_Delete(v);
    if (s != SPRIG_OK) memset(&cfg->slice, 0, sizeof cfg->slice);
    return s;
}

/* ---- writing ------------------------------------------------------------------------------ */

static int sl_add_table(cJSON *root, const char *key, const int *w, int n) {
    cJSON *obj = cJSON_AddObjectToObject(root, key);
    if (!obj) return 0;
    for (int l = 0; l < n; ++l) {
        char k[16];
        snprintf(k, sizeof k, "%d", l);
        if (!cJSON_AddNumberToObject(obj, k, w[l])) return 0;
    }
    return 1;
}

char *sp_slice_to_json(const sp_model_config *cfg, const sp_slice_config *s) {
    cJSON *root = cJSON_CreateObject();
    const int L = cfg->num_hidden_layers;
    int ok = root && cJSON_AddNumberToObject(root, "hidden_size", cfg->hidden_size) &&
             cJSON_AddNumberToObject(root, "layers_num", L) &&
             cJSON_AddBoolToObject(root, "do_slice_head", s->lm_head_width != cfg->hidden_size) &&
             cJSON_AddBoolToObject(root, "parallel_blocks", 0) &&
             sl_add_table(root, "embedding_dimensions", &s->embedding_dim, 1);
    for (int t = 0; ok && t < SL_N_TABLES; ++t)
        ok = sl_add_table(root, kTableKeys[t], sl_ctable(s, t), L);
    ok = ok && cJSON_AddNumberToObject(root, "head_dimension", s->lm_head_width) &&
         cJSON_AddNullToObject(root, "const_dimension");
    char *text = ok ? cJSON_PrintUnformatted(root) : NULL;
    cJSON_Delete(root);
    return text;
}
