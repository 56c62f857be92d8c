/* The tokenizer of a GGUF file, from its tokenizer.ggml.* metadata: written
 * out as the tokenizer.json that Hugging Face's converters would write for
 * the same vocabulary, then read by the ordinary tokenizer.json loader, so
 * there is one tokenizer implementation (sp_gguf.h). */
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cjson/cJSON.h>

#include "sp_error.h"
#include "sp_gguf.h"

/* llama.cpp's pre-tokenizer names (tokenizer.ggml.pre) for LLaMA-3's split
 * regex, and the regex itself (as in LLaMA-3's tokenizer.json). */
static const char *const gt_llama3_pres[] = {"llama3", "llama-v3", "llama-bpe", "falcon3", "smaug-bpe", "dbrx",
                                             "pixtral", NULL};
static const char gt_llama3_split[] =
    "(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\\r\\n\\p{L}\\p{N}]?\\p{L}+|\\p{N}{1,3}| ?[^\\s\\p{L}\\p{N}]+[\\r\\n]*|"
    "\\s*[\\r\\n]+|\\s+(?!\\S)|\\s+";
static const char gt_qwen2_split[] =
    "(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\\r\\n\\p{L}\\p{N}]?\\p{L}+|\\p{N}| ?[^\\s\\p{L}\\p{N}]+[\\r\\n]*|"
    "\\s*[\\r\\n]+|\\s+(?!\\S)|\\s+";

static int gt_in(const char *s, const char *const *list) {
    for (; *list; ++list)
        if (strcmp(s, *list) == 0) return 1;
    return 0;
}

static cJSON *gt_byte_level(int use_regex) {
    cJSON *b = cJSON_CreateObject();
    cJSON_AddStringToObject(b, "type", "ByteLevel");
    cJSON_AddBoolToObject(b, "add_prefix_space", 0);
    cJSON_AddBoolToObject(b, "trim_offsets", 1);
    cJSON_AddBoolToObject(b, "use_regex", use_regex);
    return b;
}

static cJSON *gt_split(const char *regex) {
    cJSON *s = cJSON_CreateObject(), *pat = cJSON_AddObjectToObject(s, "pattern");
    cJSON_AddStringToObject(s, "type", "Split");
    cJSON_AddStringToObject(pat, "Regex", regex);
    cJSON_AddStringToObject(s, "behavior", "Isolated");
    cJSON_AddBoolToObject(s, "invert", 0);
    return s;
}

static cJSON *gt_sequence(const char *key, cJSON *a, cJSON *b) {
    cJSON *s = cJSON_CreateObject(), *list = cJSON_AddArrayToObject(s, key);
    cJSON_AddStringToObject(s, "type", "Sequence");
    cJSON_AddItemToArray(list, a);
    cJSON_AddItemToArray(list, b);
    return s;
}

/* The pre-tokenizer (and normalizer) tokenizer.ggml.pre names, as the model's
 * own tokenizer.json has them: "smollm" is GPT-2's regex after single digits
 * (SmolLM's Digits + ByteLevel; llama.cpp splits so too), the LLaMA-3 family
 * and Qwen2 a Split regex before a regex-free ByteLevel. */
static sprig_status gt_pre(const char *label, const char *pre, cJSON *root, int *ignore_merges) {
    if (!pre[0] || strcmp(pre, "default") == 0 || strcmp(pre, "gpt2") == 0 || strcmp(pre, "gpt-2") == 0) {
        cJSON_AddItemToObject(root, "pre_tokenizer", gt_byte_level(1));
    } else if (strcmp(pre, "smollm") == 0) {
        cJSON *digits = cJSON_CreateObject();
        cJSON_AddStringToObject(digits, "type", "Digits");
        cJSON_AddBoolToObject(digits, "individual_digits", 1);
        cJSON_AddItemToObject(root, "pre_tokenizer", gt_sequence("pretokenizers", digits, gt_byte_level(1)));
    } else if (gt_in(pre, gt_llama3_pres)) {
        cJSON_AddItemToObject(root, "pre_tokenizer", gt_sequence("pretokenizers", gt_split(gt_llama3_split),
                                                                 gt_byte_level(0)));
        *ignore_merges = 1;  /* LLaMA-3's tokenizer.json sets it */
    } else if (strcmp(pre, "qwen2") == 0) {
        cJSON *nfc = cJSON_CreateObject();
        cJSON_AddStringToObject(nfc, "type", "NFC");
        cJSON_AddItemToObject(root, "normalizer", nfc);
        cJSON_AddItemToObject(root, "pre_tokenizer", gt_sequence("pretokenizers", gt_split(gt_qwen2_split),
                                                                 gt_byte_level(0)));
    } else {
        return sp_fail(SPRIG_E_FORMAT, "%s: tokenizer.ggml.pre '%s' is not a pre-tokenizer sprig knows (default, "
                       "gpt2, smollm, llama-bpe and the LLaMA-3 family, qwen2)", label, pre);
    }
    return SPRIG_OK;
}

/* A GGUF string as a NUL-terminated copy (cJSON needs one); NULL if it holds a NUL. */
static char *gt_cstr(const sp_gguf_str *s) {
    if (memchr(s->s, '\0', (size_t)s->len)) return NULL;
    char *c = malloc((size_t)s->len + 1);
    if (!c) return NULL;
    memcpy(c, s->s, (size_t)s->len);
    c[s->len] = '\0';
    return c;
}

static const sp_gguf_kv *gt_array(const sp_gguf *g, const char *key, int required, int str) {
    const sp_gguf_kv *kv = sp_gguf_find_kv(g, key);
    if (!kv) {
        if (required) sp_fail(SPRIG_E_FORMAT, "%s: metadata '%s' is missing", sp_gguf_label(g), key);
        return NULL;
    }
    const int ok = kv->type == SP_GGUF_ARRAY &&
                   (str ? kv->arr_type == SP_GGUF_STRING
                        : kv->arr_type != SP_GGUF_STRING && kv->arr_type != SP_GGUF_ARRAY);
    if (!ok) sp_fail(SPRIG_E_FORMAT, "%s: metadata '%s' is not an array of %s", sp_gguf_label(g), key,
                     str ? "strings" : "numbers");
    return ok ? kv : NULL;
}

static sprig_status gt_build(const sp_gguf *g, cJSON *root) {
    const char *L = sp_gguf_label(g);
    char model[32] = "", pre[64] = "";
    SP_TRY(sp_gguf_get_str(g, "tokenizer.ggml.model", 1, model, sizeof model));
    SP_TRY(sp_gguf_get_str(g, "tokenizer.ggml.pre", 0, pre, sizeof pre));
    if (strcmp(model, "gpt2") != 0)
        return sp_fail(SPRIG_E_FORMAT, "%s: tokenizer.ggml.model '%s' is not supported from GGUF (sprig builds "
                       "'gpt2', byte-level BPE; a 'llama' SentencePiece vocabulary needs its merges rebuilt from "
                       "the scores, not done yet)", L, model);
    const sp_gguf_kv *tokens = gt_array(g, "tokenizer.ggml.tokens", 1, 1);
    if (!tokens) return SPRIG_E_FORMAT;
    const sp_gguf_kv *merges = gt_array(g, "tokenizer.ggml.merges", 1, 1);
    if (!merges) return SPRIG_E_FORMAT;
    const sp_gguf_kv *types = sp_gguf_find_kv(g, "tokenizer.ggml.token_type");
    if (types && !(types = gt_array(g, "tokenizer.ggml.token_type", 0, 0))) return SPRIG_E_FORMAT;
    if (types && types->n != tokens->n)
        return sp_fail(SPRIG_E_FORMAT, "%s: tokenizer.ggml.token_type has %" PRIu64 " entries for %" PRIu64
                       " tokens", L, types->n, tokens->n);
    int ignore_merges = 0;
    cJSON_AddStringToObject(root, "version", "1.0");
    cJSON_AddNullToObject(root, "truncation");
    cJSON_AddNullToObject(root, "padding");
    cJSON *added = cJSON_AddArrayToObject(root, "added_tokens");
    SP_TRY(gt_pre(L, pre, root, &ignore_merges));
    if (!cJSON_GetObjectItem(root, "normalizer")) cJSON_AddNullToObject(root, "normalizer");
    /* add_bos_token (default false for byte-level vocabularies, as llama.cpp): a template with BOS */
    int64_t add_bos = 0, bos = -1;
    const sp_gguf_kv *ab = sp_gguf_find_kv(g, "tokenizer.ggml.add_bos_token");
    if (ab && ab->type == SP_GGUF_BOOL) add_bos = (int64_t)ab->u;
    SP_TRY(sp_gguf_get_int(g, "tokenizer.ggml.bos_token_id", 0, 0, (int64_t)tokens->n - 1, &bos));
    if (add_bos && bos >= 0) {
        char *bos_text = gt_cstr(&tokens->arr_str[bos]);
        if (!bos_text) return sp_fail(SPRIG_E_FORMAT, "%s: the BOS token holds a NUL byte", L);
        cJSON *pp = cJSON_AddObjectToObject(root, "post_processor");
        cJSON_AddStringToObject(pp, "type", "TemplateProcessing");
        cJSON *single = cJSON_AddArrayToObject(pp, "single"), *pair = cJSON_AddArrayToObject(pp, "pair");
        const char *seqs[2] = {"A", "B"};
        for (int k = 0; k < 3; ++k) {
            cJSON *list = k == 0 ? single : pair;
            cJSON *it = cJSON_CreateObject();
            if (k < 2) {  /* BOS first, in both */
                cJSON *sp = cJSON_AddObjectToObject(it, "SpecialToken");
                cJSON_AddStringToObject(sp, "id", bos_text);
                cJSON_AddNumberToObject(sp, "type_id", 0);
                cJSON_AddItemToArray(list, it);
                it = cJSON_CreateObject();
            }
            cJSON *seq = cJSON_AddObjectToObject(it, "Sequence");
            cJSON_AddStringToObject(seq, "id", seqs[k == 2]);
            cJSON_AddNumberToObject(seq, "type_id", k == 2);
            cJSON_AddItemToArray(k == 2 ? pair : list, it);
        }
        cJSON *st = cJSON_AddObjectToObject(pp, "special_tokens"), *one = cJSON_AddObjectToObject(st, bos_text);
        cJSON_AddStringToObject(one, "id", bos_text);
        cJSON *ids = cJSON_AddArrayToObject(one, "ids"), *toks = cJSON_AddArrayToObject(one, "tokens");
        cJSON_AddItemToArray(ids, cJSON_CreateNumber((double)bos));
        cJSON_AddItemToArray(toks, cJSON_CreateString(bos_text));
        free(bos_text);
    } else {
        cJSON_AddNullToObject(root, "post_processor");
    }
    cJSON *dec = gt_byte_level(1);
    cJSON_ReplaceItemInObject(dec, "add_prefix_space", cJSON_CreateBool(1));
    cJSON_AddItemToObject(root, "decoder", dec);
    cJSON *m = cJSON_AddObjectToObject(root, "model");
    cJSON_AddStringToObject(m, "type", "BPE");
    cJSON_AddNullToObject(m, "dropout");
    cJSON_AddNullToObject(m, "unk_token");
    cJSON_AddNullToObject(m, "continuing_subword_prefix");
    cJSON_AddNullToObject(m, "end_of_word_suffix");
    cJSON_AddBoolToObject(m, "fuse_unk", 0);
    cJSON_AddBoolToObject(m, "byte_fallback", 0);
    cJSON_AddBoolToObject(m, "ignore_merges", ignore_merges);
    cJSON *vocab = cJSON_AddObjectToObject(m, "vocab"), *ml = cJSON_AddArrayToObject(m, "merges");
    for (uint64_t i = 0; i < tokens->n; ++i) {
        char *t = gt_cstr(&tokens->arr_str[i]);
        if (!t) return sp_fail(SPRIG_E_FORMAT, "%s: token %" PRIu64 " holds a NUL byte", L, i);
        cJSON_AddItemToObject(vocab, t, cJSON_CreateNumber((double)i));
        /* token_type 3 = CONTROL (special, e.g. <|im_end|>), 4 = USER_DEFINED (added, not special):
         * matched whole in the text before BPE, as llama.cpp and transformers do */
        const int64_t ty = types ? sp_gguf_arr_int(types, i) : 1;
        if (ty == 3 || ty == 4) {
            cJSON *a = cJSON_CreateObject();
            cJSON_AddNumberToObject(a, "id", (double)i);
            cJSON_AddStringToObject(a, "content", t);
            cJSON_AddBoolToObject(a, "single_word", 0);
            cJSON_AddBoolToObject(a, "lstrip", 0);
            cJSON_AddBoolToObject(a, "rstrip", 0);
            cJSON_AddBoolToObject(a, "normalized", 0);
            cJSON_AddBoolToObject(a, "special", ty == 3);
            cJSON_AddItemToArray(added, a);
        }
        free(t);
    }
    for (uint64_t i = 0; i < merges->n; ++i) {
        char *t = gt_cstr(&merges->arr_str[i]);
        if (!t) return sp_fail(SPRIG_E_FORMAT, "%s: merge %" PRIu64 " holds a NUL byte", L, i);
        cJSON_AddItemToArray(ml, cJSON_CreateString(t));  /* "a b", the form tokenizer.json also accepts */
        free(t);
    }
    return SPRIG_OK;
}

sprig_status sp_gguf_tokenizer_json(const sp_gguf *g, char **json) {
    *json = NULL;
    cJSON *root = cJSON_CreateObject();
    SP_CHECK_ALLOC(root);
    sprig_status s = gt_build(g, root);
    if (s == SPRIG_OK) {
        *json = cJSON_PrintUnformatted(root);
        if (!*json) s = sp_fail(SPRIG_E_NOMEM, "out of memory writing %s's tokenizer as JSON", sp_gguf_label(g));
    }
    cJSON_Delete(root);
    return s;
}

sprig_status sp_gguf_tokenizer_from(const sp_gguf *g, sp_tokenizer **out) {
    *out = NULL;
    char *json = NULL;
    SP_TRY(sp_gguf_tokenizer_json(g, &json));
    sprig_status s = sp_tok_open_json(json, strlen(json), sp_gguf_label(g), out);
    free(json);
    return s;
}

sprig_status sp_gguf_tokenizer(const char *path, sp_tokenizer **out) {
    *out = NULL;
    sp_gguf *g = NULL;
    SP_TRY(sp_gguf_open(path, &g));
    sprig_status s = sp_gguf_tokenizer_from(g, out);
    sp_gguf_close(g);
    return s;
}
