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
#include "tokenizer_internal.h"

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

/* root's "model": a BPE object as transformers writes it, its vocab and
 * merges left for the caller to fill. */
static cJSON *gt_bpe_model(cJSON *root, int fuse_unk, int byte_fallback, int ignore_merges) {
    cJSON *m = cJSON_AddObjectToObject(root, "model");
    cJSON_AddStringToObject(m, "type", "BPE");
    cJSON_AddNullToObject(m, "dropout");
    cJSON_AddNullToObject(m, "unk_token");
    cJSON_AddNullToObject(m, "continuing_subword_prefix");
    cJSON_AddNullToObject(m, "end_of_word_suffix");
    cJSON_AddBoolToObject(m, "fuse_unk", fuse_unk);
    cJSON_AddBoolToObject(m, "byte_fallback", byte_fallback);
    cJSON_AddBoolToObject(m, "ignore_merges", ignore_merges);
    return m;
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

/* A boolean metadata flag; absent or not a bool leaves *out as it is. */
static sprig_status gt_flag(const sp_gguf *g, const char *key, int *out) {
    const sp_gguf_kv *kv = sp_gguf_find_kv(g, key);
    if (kv && kv->type == SP_GGUF_BOOL) *out = kv->u != 0;
    return SPRIG_OK;
}

/* The text of the token whose id is at key (-1 id when absent), NUL-terminated
 * and malloc'ed in *text (NULL when absent). */
static sprig_status gt_special(const sp_gguf *g, const sp_gguf_kv *tokens, const char *key, int64_t *id,
                               char **text) {
    *id = -1;
    *text = NULL;
    SP_TRY(sp_gguf_get_int(g, key, 0, 0, (int64_t)tokens->n - 1, id));
    if (*id < 0) return SPRIG_OK;
    *text = gt_cstr(&tokens->arr_str[*id]);
    if (!*text) return sp_fail(SPRIG_E_FORMAT, "%s: the token %s names holds a NUL byte", sp_gguf_label(g), key);
    return SPRIG_OK;
}

static void gt_template_item(cJSON *list, const char *kind, const char *id, int type_id) {
    cJSON *it = cJSON_CreateObject(), *o = cJSON_AddObjectToObject(it, kind);
    cJSON_AddStringToObject(o, "id", id);
    cJSON_AddNumberToObject(o, "type_id", type_id);
    cJSON_AddItemToArray(list, it);
}

/* The post-processor transformers' update_post_processor writes: single
 * "[BOS:0] $A:0 [EOS:0]", pair "single [BOS:1] $B:1 [EOS:1]", for the
 * tokens named by bos_token_id / eos_token_id (a flag whose token is absent
 * is dropped, as there); null when neither is added. */
static sprig_status gt_template(const sp_gguf *g, const sp_gguf_kv *tokens, cJSON *root, int add_bos, int add_eos) {
    int64_t bos, eos;
    char *bos_text = NULL, *eos_text = NULL;
    sprig_status s = gt_special(g, tokens, "tokenizer.ggml.bos_token_id", &bos, &bos_text);
    if (s == SPRIG_OK) s = gt_special(g, tokens, "tokenizer.ggml.eos_token_id", &eos, &eos_text);
    add_bos = add_bos && bos_text;
    add_eos = add_eos && eos_text;
    if (s != SPRIG_OK || (!add_bos && !add_eos)) {
        if (s == SPRIG_OK) cJSON_AddNullToObject(root, "post_processor");
        free(bos_text);
        free(eos_text);
        return s;
    }
    cJSON *pp = cJSON_AddObjectToObject(root, "post_processor");
    cJSON_AddStringToObject(pp, "type", "TemplateProcessing");
    cJSON *single = cJSON_AddArrayToObject(pp, "single"), *pair = cJSON_AddArrayToObject(pp, "pair");
    for (int k = 0; k < 3; ++k) { /* single; pair's first half; pair's second half */
        cJSON *list = k == 0 ? single : pair;
        const int type_id = k == 2;
        if (add_bos) gt_template_item(list, "SpecialToken", bos_text, type_id);
        gt_template_item(list, "Sequence", k == 2 ? "B" : "A", type_id);
        if (add_eos) gt_template_item(list, "SpecialToken", eos_text, type_id);
    }
    cJSON *st = cJSON_AddObjectToObject(pp, "special_tokens");
    for (int k = 0; k < 2; ++k) {
        const char *text = k ? eos_text : bos_text;
        if (!(k ? add_eos : add_bos) || cJSON_GetObjectItemCaseSensitive(st, text)) continue;
        cJSON *one = cJSON_AddObjectToObject(st, text);
        cJSON_AddStringToObject(one, "id", text);
        cJSON *ids = cJSON_AddArrayToObject(one, "ids"), *toks = cJSON_AddArrayToObject(one, "tokens");
        cJSON_AddItemToArray(ids, cJSON_CreateNumber((double)(k ? eos : bos)));
        cJSON_AddItemToArray(toks, cJSON_CreateString(text));
    }
    free(bos_text);
    free(eos_text);
    return SPRIG_OK;
}

static void gt_added(cJSON *added, int64_t id, const char *text, int special) {
    cJSON *a = cJSON_CreateObject();
    cJSON_AddNumberToObject(a, "id", (double)id);
    cJSON_AddStringToObject(a, "content", text);
    cJSON_AddBoolToObject(a, "single_word", 0);
    cJSON_AddBoolToObject(a, "lstrip", 0);
    cJSON_AddBoolToObject(a, "rstrip", 0);
    cJSON_AddBoolToObject(a, "normalized", 0);
    cJSON_AddBoolToObject(a, "special", special);
    cJSON_AddItemToArray(added, a);
}

/* ---- "llama": SentencePiece-style BPE ------------------------------------------------ */

/* One candidate merge: token l + token r, ranked by the merged token's score. */
typedef struct gt_merge {
    double score;
    int32_t l, r;        /* ids (the last token of each spelling, as a dict keeps) */
    uint32_t len_l, len_r; /* in code points, as Python's len */
    uint32_t seq;        /* position before the sort: ties keep it (Python's sort is stable) */
} gt_merge;

/* sorted(key=(score, len(l), len(r)), reverse=True): descending keys, ties in order */
static int gt_merge_rank_cmp(const void *pa, const void *pb) {
    const gt_merge *a = pa, *b = pb;
    if (a->score != b->score) return a->score > b->score ? -1 : 1;
    if (a->len_l != b->len_l) return a->len_l > b->len_l ? -1 : 1;
    if (a->len_r != b->len_r) return a->len_r > b->len_r ? -1 : 1;
    return (a->seq > b->seq) - (a->seq < b->seq);
}

static uint32_t gt_n_chars(const char *s, size_t n) {
    uint32_t c = 0;
    for (size_t i = 0; i < n; ++i) c += ((unsigned char)s[i] & 0xC0) != 0x80;
    return c;
}

/* transformers' generate_merges(vocab, vocab_scores) for a GGUF without merges:
 * every token (in file order, each spelling once, with the score of its last
 * occurrence) cut at every character boundary into two tokens of the vocab,
 * all the cuts then sorted by (score, len(left), len(right)) descending,
 * stably. (transformers first orders the cuts of one token by the ids of the
 * pieces; that cannot show after the sort, as two cuts of one token differ in
 * len(left).) Appended to ml as ["left", "right"] (a piece may hold a space). */
static sprig_status gt_generate_merges(const sp_gguf *g, const sp_gguf_kv *tokens, const sp_gguf_kv *scores,
                                       cJSON *ml) {
    const char *L = sp_gguf_label(g);
    const uint64_t n = tokens->n;
    sp_tk_strmap last = {0}, first = {0};
    gt_merge *m = NULL;
    size_t nm = 0, cap = 0;
    sprig_status s = sp_tk_strmap_init(&last, (size_t)n);
    if (s == SPRIG_OK) s = sp_tk_strmap_init(&first, (size_t)n);
    for (uint64_t i = 0; s == SPRIG_OK && i < n; ++i)
        s = sp_tk_strmap_put(&last, tokens->arr_str[i].s, (size_t)tokens->arr_str[i].len, (int32_t)i);
    for (uint64_t i = n; s == SPRIG_OK && i-- > 0;)
        s = sp_tk_strmap_put(&first, tokens->arr_str[i].s, (size_t)tokens->arr_str[i].len, (int32_t)i);
    for (uint64_t i = 0; s == SPRIG_OK && i < n; ++i) {
        const char *t = tokens->arr_str[i].s;
        const size_t len = (size_t)tokens->arr_str[i].len;
        if (sp_tk_strmap_get(&first, t, len) != (int32_t)i) continue; /* a repeated spelling */
        const double score = sp_gguf_arr_double(scores, (uint64_t)sp_tk_strmap_get(&last, t, len));
        for (size_t cut = 1; cut < len; ++cut) {
            if (((unsigned char)t[cut] & 0xC0) == 0x80) continue; /* inside a character */
            const int32_t l = sp_tk_strmap_get(&last, t, cut), r = sp_tk_strmap_get(&last, t + cut, len - cut);
            if (l < 0 || r < 0) continue;
            if (nm == cap) {
                cap = cap ? cap * 2 : 4096;
                gt_merge *bigger = realloc(m, cap * sizeof *m);
                if (!bigger) {
                    s = sp_fail(SPRIG_E_NOMEM, "out of memory rebuilding %s's merges", L);
                    break;
                }
                m = bigger;
            }
            m[nm++] = (gt_merge){score, l, r, gt_n_chars(t, cut), gt_n_chars(t + cut, len - cut), 0};
        }
    }
    if (s == SPRIG_OK) {
        for (size_t k = 0; k < nm; ++k) m[k].seq = (uint32_t)k;
        if (nm > 1) qsort(m, nm, sizeof *m, gt_merge_rank_cmp);
    }
    for (size_t k = 0; s == SPRIG_OK && k < nm; ++k) {
        char *a = gt_cstr(&tokens->arr_str[m[k].l]), *b = gt_cstr(&tokens->arr_str[m[k].r]);
        cJSON *pair = cJSON_CreateArray();
        if (!a || !b || !pair)
            s = a && b ? sp_fail(SPRIG_E_NOMEM, "out of memory rebuilding %s's merges", L)
                       : sp_fail(SPRIG_E_FORMAT, "%s: a token holds a NUL byte", L);
        else {
            cJSON_AddItemToArray(pair, cJSON_CreateString(a));
            cJSON_AddItemToArray(pair, cJSON_CreateString(b));
            cJSON_AddItemToArray(ml, pair);
            pair = NULL;
        }
        cJSON_Delete(pair);
        free(a);
        free(b);
    }
    free(m);
    sp_tk_strmap_free(&last);
    sp_tk_strmap_free(&first);
    return s;
}

/* What transformers (5.x, integrations/gguf: sentencepiece_tokenizer ->
 * LlamaTokenizer, then add_gguf_special_tokens) makes of a "llama" vocabulary:
 * BPE with byte_fallback and fuse_unk, no unk_token; merges from the file or,
 * as usual, rebuilt from the scores; the pre-tokenizer Metaspace("▁",
 * prepend_scheme "first", split false) and the decoder Replace("▁", " "),
 * ByteFallback, Fuse, Strip(1 leading space) (tokenizer.ggml.add_space_prefix
 * is not read there, so not here); add_bos_token (default true) and
 * add_eos_token (default false) in the post-processor; control tokens
 * (token_type 3) and the unk/bos/eos/padding tokens as special added tokens,
 * user-defined ones (4) as plain added tokens. */
static sprig_status gt_build_spm(const sp_gguf *g, const sp_gguf_kv *tokens, const sp_gguf_kv *types, cJSON *root,
                                 cJSON *added) {
    const char *L = sp_gguf_label(g);
    const sp_gguf_kv *merges = sp_gguf_find_kv(g, "tokenizer.ggml.merges"), *scores = NULL;
    if (merges && !(merges = gt_array(g, "tokenizer.ggml.merges", 0, 1))) return SPRIG_E_FORMAT;
    if (!merges) {
        if (!(scores = gt_array(g, "tokenizer.ggml.scores", 1, 0))) return SPRIG_E_FORMAT;
        if (scores->n != tokens->n)
            return sp_fail(SPRIG_E_FORMAT, "%s: tokenizer.ggml.scores has %" PRIu64 " entries for %" PRIu64
                           " tokens", L, scores->n, tokens->n);
    }
    cJSON_AddNullToObject(root, "normalizer");
    cJSON *pre = cJSON_AddObjectToObject(root, "pre_tokenizer");
    cJSON_AddStringToObject(pre, "type", "Metaspace");
    cJSON_AddStringToObject(pre, "replacement", "\xe2\x96\x81");
    cJSON_AddStringToObject(pre, "prepend_scheme", "first");
    cJSON_AddBoolToObject(pre, "split", 0);
    int add_bos = 1, add_eos = 0; /* transformers' default for a "llama" vocabulary that does not say */
    SP_TRY(gt_flag(g, "tokenizer.ggml.add_bos_token", &add_bos));
    SP_TRY(gt_flag(g, "tokenizer.ggml.add_eos_token", &add_eos));
    SP_TRY(gt_template(g, tokens, root, add_bos, add_eos));
    cJSON *dec = cJSON_AddObjectToObject(root, "decoder"), *steps = cJSON_AddArrayToObject(dec, "decoders");
    cJSON_AddStringToObject(dec, "type", "Sequence");
    cJSON *step = cJSON_CreateObject();
    cJSON_AddStringToObject(step, "type", "Replace");
    cJSON_AddStringToObject(cJSON_AddObjectToObject(step, "pattern"), "String", "\xe2\x96\x81");
    cJSON_AddStringToObject(step, "content", " ");
    cJSON_AddItemToArray(steps, step);
    const char *plain[2] = {"ByteFallback", "Fuse"};
    for (int k = 0; k < 2; ++k) {
        step = cJSON_CreateObject();
        cJSON_AddStringToObject(step, "type", plain[k]);
        cJSON_AddItemToArray(steps, step);
    }
    step = cJSON_CreateObject();
    cJSON_AddStringToObject(step, "type", "Strip");
    cJSON_AddStringToObject(step, "content", " ");
    cJSON_AddNumberToObject(step, "start", 1);
    cJSON_AddNumberToObject(step, "stop", 0);
    cJSON_AddItemToArray(steps, step);
    cJSON *m = gt_bpe_model(root, 1, 1, 0); /* SentencePiece-style: unknown bytes as <0xXX> */
    cJSON *vocab = cJSON_AddObjectToObject(m, "vocab"), *ml = cJSON_AddArrayToObject(m, "merges");
    /* the special tokens transformers' tokenizer class registers (unk/bos/eos/pad) */
    int64_t named[4] = {-1, -1, -1, -1};
    const char *keys[4] = {"tokenizer.ggml.unknown_token_id", "tokenizer.ggml.bos_token_id",
                           "tokenizer.ggml.eos_token_id", "tokenizer.ggml.padding_token_id"};
    for (int k = 0; k < 4; ++k) SP_TRY(sp_gguf_get_int(g, keys[k], 0, 0, (int64_t)tokens->n - 1, &named[k]));
    for (uint64_t i = 0; i < tokens->n; ++i) {
        char *t = gt_cstr(&tokens->arr_str[i]);
        if (!t) return sp_fail(SPRIG_E_FORMAT, "%s: token %" PRIu64 " holds a NUL byte", L, i);
        cJSON_AddItemToObject(vocab, t, cJSON_CreateNumber((double)i));
        const int64_t ty = types ? sp_gguf_arr_int(types, i) : 1;
        int special = ty == 3;
        for (int k = 0; k < 4; ++k) special |= named[k] == (int64_t)i;
        if (special || ty == 4) gt_added(added, (int64_t)i, t, special);
        free(t);
    }
    if (!merges) return gt_generate_merges(g, tokens, scores, ml);
    for (uint64_t i = 0; i < merges->n; ++i) {
        char *t = gt_cstr(&merges->arr_str[i]);
        if (!t) return sp_fail(SPRIG_E_FORMAT, "%s: merge %" PRIu64 " holds a NUL byte", L, i);
        cJSON_AddItemToArray(ml, cJSON_CreateString(t));
        free(t);
    }
    return SPRIG_OK;
}

static sprig_status gt_build(const sp_gguf *g, cJSON *root) {
    const char *L = sp_gguf_label(g);
    char model[32] = "", pre[64] = "";
    SP_TRY(sp_gguf_get_str(g, "tokenizer.ggml.model", 1, model, sizeof model));
    SP_TRY(sp_gguf_get_str(g, "tokenizer.ggml.pre", 0, pre, sizeof pre));
    if (strcmp(model, "gpt2") != 0 && strcmp(model, "llama") != 0)
        return sp_fail(SPRIG_E_FORMAT, "%s: tokenizer.ggml.model '%s' is not supported from GGUF (sprig builds "
                       "'gpt2', byte-level BPE, and 'llama', SentencePiece-style BPE)", L, model);
    const sp_gguf_kv *tokens = gt_array(g, "tokenizer.ggml.tokens", 1, 1);
    if (!tokens) return SPRIG_E_FORMAT;
    if (tokens->n > INT32_MAX)
        return sp_fail(SPRIG_E_FORMAT, "%s: %" PRIu64 " tokens is too many", L, tokens->n);
    const sp_gguf_kv *types = sp_gguf_find_kv(g, "tokenizer.ggml.token_type");
    if (types && !(types = gt_array(g, "tokenizer.ggml.token_type", 0, 0))) return SPRIG_E_FORMAT;
    if (types && types->n != tokens->n)
        return sp_fail(SPRIG_E_FORMAT, "%s: tokenizer.ggml.token_type has %" PRIu64 " entries for %" PRIu64
                       " tokens", L, types->n, tokens->n);
    cJSON_AddStringToObject(root, "version", "1.0");
    cJSON_AddNullToObject(root, "truncation");
    cJSON_AddNullToObject(root, "padding");
    cJSON *added = cJSON_AddArrayToObject(root, "added_tokens");
    if (strcmp(model, "llama") == 0) return gt_build_spm(g, tokens, types, root, added);
    const sp_gguf_kv *merges = gt_array(g, "tokenizer.ggml.merges", 1, 1);
    if (!merges) return SPRIG_E_FORMAT;
    int ignore_merges = 0;
    SP_TRY(gt_pre(L, pre, root, &ignore_merges));
    if (!cJSON_GetObjectItem(root, "normalizer")) cJSON_AddNullToObject(root, "normalizer");
    /* add_bos_token (default false for byte-level vocabularies, as llama.cpp): a template with BOS */
    int add_bos = 0, add_eos = 0;
    SP_TRY(gt_flag(g, "tokenizer.ggml.add_bos_token", &add_bos));
    SP_TRY(gt_template(g, tokens, root, add_bos, add_eos)); /* add_eos_token not read here: unchanged */
    cJSON *dec = gt_byte_level(1);
    cJSON_ReplaceItemInObject(dec, "add_prefix_space", cJSON_CreateBool(1));
    cJSON_AddItemToObject(root, "decoder", dec);
    cJSON *m = gt_bpe_model(root, 0, 0, ignore_merges);
    cJSON *vocab = cJSON_AddObjectToObject(m, "vocab"), *ml = cJSON_AddArrayToObject(m, "merges");
    for (uint64_t i = 0; i < tokens->n; ++i) {
        char *t = gt_cstr(&tokens->arr_str[i]);
        if (!t) return sp_fail(SPRIG_E_FORMAT, "%s: token %" PRIu64 " holds a NUL byte", L, i);
        cJSON_AddItemToObject(vocab, t, cJSON_CreateNumber((double)i));
        /* token_type 3 = CONTROL (special, e.g. <|im_end|>), 4 = USER_DEFINED (added, not special):
         * matched whole in the text before BPE, as llama.cpp and transformers do */
        const int64_t ty = types ? sp_gguf_arr_int(types, i) : 1;
        if (ty == 3 || ty == 4) gt_added(added, (int64_t)i, t, ty == 3);
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
