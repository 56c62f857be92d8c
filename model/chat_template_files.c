/* Finding a model folder's chat template (sp_chat_template.h). */
#include <cjson/cJSON.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "sp_chat_template.h"
#include "sp_gguf.h"
#include "sp_error.h"
#include "sp_file.h"

enum { CT_MAX_BYTES = 16 << 20 }; /* tokenizer_config.json may embed a large added_tokens_decoder */

/* A special token as tokenizer_config.json writes it: "text" or
 * {"content": "text", ...} (an AddedToken); NULL for null or absent. */
static char *token_text(const cJSON *cfg, const char *key) {
    const cJSON *v = cJSON_GetObjectItemCaseSensitive(cfg, key);
    if (cJSON_IsObject(v)) v = cJSON_GetObjectItemCaseSensitive(v, "content");
    return cJSON_IsString(v) ? strdup(v->valuestring) : NULL;
}

/* "chat_template": a string, or [{"name": ..., "template": ...}] where the
 * one named "default" is what apply_chat_template uses without a name. */
static sprig_status template_of(const cJSON *cfg, const char *path, char **out) {
    const cJSON *t = cJSON_GetObjectItemCaseSensitive(cfg, "chat_template");
    if (cJSON_IsString(t)) {
        *out = strdup(t->valuestring);
        SP_CHECK_ALLOC(*out);
        return SPRIG_OK;
    }
    if (cJSON_IsArray(t)) {
        const cJSON *e;
        cJSON_ArrayForEach(e, t) {
            const cJSON *name = cJSON_GetObjectItemCaseSensitive(e, "name");
            const cJSON *text = cJSON_GetObjectItemCaseSensitive(e, "template");
            if (cJSON_IsString(name) && !strcmp(name->valuestring, "default") && cJSON_IsString(text)) {
                *out = strdup(text->valuestring);
                SP_CHECK_ALLOC(*out);
                return SPRIG_OK;
            }
        }
        return sp_fail(SPRIG_E_FORMAT, "%s: \"chat_template\" lists templates but none named \"default\"", path);
    }
    if (t && !cJSON_IsNull(t))
        return sp_fail(SPRIG_E_FORMAT, "%s: \"chat_template\" is neither a string nor a list of {name, template}", path);
    return SPRIG_OK; /* none here */
}

/* Reads tokenizer_config.json if present: its tokens and (if *text is still
 * NULL) its template. */
static sprig_status read_config(const char *dir, sp_chat_source *s) {
    char path[4096];
    snprintf(path, sizeof path, "%s/tokenizer_config.json", dir);
    char *json = NULL;
    size_t len = 0;
    int missing = 0;
    sprig_status st = sp_file_read(path, CT_MAX_BYTES, &json, &len, &missing);
    if (st != SPRIG_OK) return missing ? SPRIG_OK : st;
    cJSON *cfg = cJSON_ParseWithLength(json, len);
    free(json);
    if (!cJSON_IsObject(cfg)) {
        cJSON_Delete(cfg);
        return sp_fail(SPRIG_E_FORMAT, "%s: not a JSON object", path);
    }
    s->bos_token = token_text(cfg, "bos_token");
    s->eos_token = token_text(cfg, "eos_token");
    if (!s->text) {
        st = template_of(cfg, path, &s->text);
        if (st == SPRIG_OK && s->text) s->origin = strdup(path);
    }
    cJSON_Delete(cfg);
    return st;
}

/* A copy of the string s[0..n) with a NUL after it, or NULL. */
static char *dup_n(const char *s, uint64_t n) {
    char *d = n < (uint64_t)CT_MAX_BYTES ? malloc((size_t)n + 1) : NULL;
    if (d) memcpy(d, s, (size_t)n), d[n] = 0;
    return d;
}

/* The text of token `key`'s id (tokenizer.ggml.bos_token_id, ...) in the GGUF's
 * vocabulary, or NULL when the file does not name one. */
static char *gguf_token_text(const sp_gguf *g, const char *key) {
    const sp_gguf_kv *id = sp_gguf_find_kv(g, key), *tokens = sp_gguf_find_kv(g, "tokenizer.ggml.tokens");
    if (!id || !tokens || tokens->type != SP_GGUF_ARRAY || tokens->arr_type != SP_GGUF_STRING) return NULL;
    const uint64_t i = id->type == SP_GGUF_I32 || id->type == SP_GGUF_I64 || id->type == SP_GGUF_I8 ||
                               id->type == SP_GGUF_I16 ? (uint64_t)id->i : id->u;
    return i < tokens->n ? dup_n(tokens->arr_str[i].s, tokens->arr_str[i].len) : NULL;
}

/* A GGUF file's template: tokenizer.chat_template, BOS and EOS from its vocabulary. */
static sprig_status gguf_source(const char *path, sp_chat_source *out) {
    sp_gguf *g = NULL;
    SP_TRY(sp_gguf_open(path, &g));
    const sp_gguf_kv *t = sp_gguf_find_kv(g, "tokenizer.chat_template");
    sprig_status st = SPRIG_OK;
    if (!t || t->type != SP_GGUF_STRING)
        st = sp_fail(SPRIG_E_IO, "%s has no chat template (no string tokenizer.chat_template in its metadata); "
                     "give one with --chat-template FILE", path);
    else if (memchr(t->str.s, 0, (size_t)t->str.len))
        st = sp_fail(SPRIG_E_FORMAT, "%s: tokenizer.chat_template holds a NUL byte", path);
    if (st == SPRIG_OK) {
        out->text = dup_n(t->str.s, t->str.len);
        out->origin = malloc(strlen(path) + 32);
        if (out->origin) snprintf(out->origin, strlen(path) + 32, "%s:tokenizer.chat_template", path);
        out->bos_token = gguf_token_text(g, "tokenizer.ggml.bos_token_id");
        out->eos_token = gguf_token_text(g, "tokenizer.ggml.eos_token_id");
        if (!out->text || !out->origin) st = sp_fail(SPRIG_E_NOMEM, "out of memory reading %s's chat template", path);
    }
    sp_gguf_close(g);
    if (st != SPRIG_OK) sp_chat_source_free(out);
    return st;
}

sprig_status sp_chat_source_load(const char *dir, sp_chat_source *out) {
    memset(out, 0, sizeof *out);
    if (sp_gguf_is_file(dir)) return gguf_source(dir, out);
    char path[4096];
    snprintf(path, sizeof path, "%s/chat_template.jinja", dir);
    size_t len = 0;
    int missing = 0;
    sprig_status st = sp_file_read(path, CT_MAX_BYTES, &out->text, &len, &missing);
    if (st != SPRIG_OK && !missing) return st;
    if (st == SPRIG_OK) {
        /* a template is text: an embedded NUL would cut it short unseen */
        if (memchr(out->text, 0, len)) {
            sp_chat_source_free(out);
            return sp_fail(SPRIG_E_FORMAT, "%s: holds a NUL byte", path);
        }
        out->origin = strdup(path);
    }
    st = read_config(dir, out);
    if (st != SPRIG_OK) {
        sp_chat_source_free(out);
        return st;
    }
    if (!out->text)
        return sp_fail(SPRIG_E_IO,
                       "%s has no chat template (looked for chat_template.jinja and \"chat_template\" in "
                       "tokenizer_config.json); give one with --chat-template FILE",
                       dir);
    if (!out->origin) {
        sp_chat_source_free(out);
        return sp_fail(SPRIG_E_NOMEM, "out of memory");
    }
    return SPRIG_OK;
}

void sp_chat_source_free(sp_chat_source *s) {
    if (!s) return;
    free(s->text);
    free(s->bos_token);
    free(s->eos_token);
    free(s->origin);
    memset(s, 0, sizeof *s);
}
