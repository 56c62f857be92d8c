/* Hugging Face tokenizer.json for LLaMA-family models (see sp_tokenizer.h).
 *
 * Encoding follows the reference library's pipeline step by step, because
 * each step changes results: (1) split the text on added tokens that are not
 * normalized, (2) normalize each remaining piece and split it on normalized
 * added tokens, (3) pre-tokenize (regex split, byte-level mapping, metaspace),
 * (4) BPE each piece (tokenizer_bpe.c), (5) post-process (BOS). Decoding runs
 * the decoder chain as a stream so `sprig run` can print while generating. */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define PCRE2_CODE_UNIT_WIDTH 8
#include <pcre2.h>

#include "sp_error.h"
#include "sp_file.h"
#include "tokenizer_internal.h"
#include "sp_tokenizer.h"

/* ---- configuration ------------------------------------------------------------- */

typedef struct tk_added {
    const char *content; /* arena */
    size_t len;
    const char *pattern; /* what is matched: content, or its normalized form */
    size_t plen;
    int32_t id;
    int normalized, special;
} tk_added;

typedef enum { TK_NORM_PREPEND, TK_NORM_REPLACE, TK_NORM_NFC } tk_norm_kind;

/* Prepend(a), Replace(a -> b) of a literal string (also used for the
 * decoder's Replace), or NFC (no strings). */
typedef struct tk_norm {
    tk_norm_kind kind;
    const char *a, *b;
    size_t alen, blen;
} tk_norm;

/* TK_PRE_PREFIX_SPACE: the first part of ByteLevel(add_prefix_space=true), a
 * space before each piece that does not start with one. */
typedef enum { TK_PRE_SPLIT, TK_PRE_BYTELEVEL, TK_PRE_METASPACE, TK_PRE_PREFIX_SPACE } tk_pre_kind;
typedef enum { TK_PREPEND_ALWAYS, TK_PREPEND_FIRST, TK_PREPEND_NEVER } tk_prepend;

typedef struct tk_pre {
    tk_pre_kind kind;
    pcre2_code *re;       /* Split */
    const char *repl;     /* Metaspace replacement character (UTF-8) */
    size_t repl_len;
    tk_prepend scheme;    /* Metaspace */
} tk_pre;

typedef enum { TK_DEC_SP, TK_DEC_BYTELEVEL } tk_dec_kind;

/* What one id means to the encoder's caller and to the decoder. */
typedef struct tk_info {
    const char *text;  /* token text (added content or model vocab); NULL: unused id */
    uint32_t len;
    const char *src;   /* what the decoder receives: text, or for a normalized added
                          token its normalized form (tokenizers >= 0.23 does this) */
    uint32_t src_len;
    const char *piece; /* the decoder's output for this token alone, before fusing */
    uint32_t piece_len;
    int16_t byte;      /* SentencePiece decoder: value of a <0xAB> token, else -1 */
    uint8_t special;
} tk_info;

#define TK_MAX_STEPS 16
/* A tokenizer.json is tens of MB at most (large vocabularies with merges). */
#define TK_MAX_FILE_BYTES ((size_t)1 << 30)

struct sp_tokenizer {
    char *label;
    sp_tk_arena arena;
    sp_tk_bpe bpe;

    tk_added *added;
    size_t n_added;
    sp_tk_strmap added_map;               /* content -> index into added */
    int32_t *bucket[2];                /* added indices by first pattern byte, per class */
    uint32_t bucket_off[2][257];       /* class 0: not normalized, 1: normalized */

    tk_norm norms[TK_MAX_STEPS];
    size_t n_norms;
    tk_pre pres[TK_MAX_STEPS];
    size_t n_pres;

    int32_t *prefix, *suffix;          /* template ids around the sequence */
    size_t n_prefix, n_suffix;

    tk_dec_kind dec;
    tk_norm dec_replace[TK_MAX_STEPS]; /* SentencePiece decoder: Replace steps */
    size_t n_dec_replace;
    int dec_byte_fallback;
    char strip_content[5];
    size_t strip_clen;
    int strip_start;

    int32_t n_ids;
    tk_info *info;
    int32_t bos, eos;
    uint32_t byte_cp[256];             /* ByteLevel pre-tokenizer: byte -> character */
};

/* ---- GPT-2 byte <-> character table ---------------------------------------------- */

/* Printable bytes stand for themselves; the others map, in order, to U+0100... */
static void tk_byte_table(uint32_t byte_cp[256], int16_t cp_byte[324]) {
    int n = 0;
    for (int cp = 0; cp < 324; ++cp) cp_byte[cp] = -1;
    for (int b = 0; b < 256; ++b) {
        int printable = (b >= 33 && b <= 126) || (b >= 161 && b <= 172) || (b >= 174);
        byte_cp[b] = printable ? (uint32_t)b : (uint32_t)(256 + n++);
        cp_byte[byte_cp[b]] = (int16_t)b;
    }
}

/* ---- JSON helpers ------------------------------------------------------------------ */

static sprig_status tk_unsupported(const sp_tokenizer *t, const char *fmt, const char *arg) {
    char what[160];
    snprintf(what, sizeof what, fmt, arg);
    return sp_fail(SPRIG_E_FORMAT, "%s: unsupported tokenizer: %s", t->label, what);
}

static const char *tk_type(const cJSON *obj) {
    const cJSON *ty = cJSON_GetObjectItemCaseSensitive(obj, "type");
    return cJSON_IsString(ty) ? ty->valuestring : NULL;
}

static const char *tk_str(const cJSON *obj, const char *name) {
    const cJSON *it = cJSON_GetObjectItemCaseSensitive(obj, name);
    return cJSON_IsString(it) ? it->valuestring : NULL;
}

/* Boolean member: absent/null -> def, not a boolean -> -1. */
static int tk_flag(const cJSON *obj, const char *name, int def) {
    const cJSON *it = cJSON_GetObjectItemCaseSensitive(obj, name);
    if (!it || cJSON_IsNull(it)) return def;
    return cJSON_IsBool(it) ? cJSON_IsTrue(it) : -1;
}

static const char *tk_dup(sp_tokenizer *t, const char *s, size_t len) {
    return sp_tk_arena_strdup(&t->arena, s, len);
}

/* Flattens nested Sequence objects (key names the list) into steps. */
static sprig_status tk_flatten(sp_tokenizer *t, const cJSON *obj, const char *list_key, const char *what,
                               const cJSON **steps, size_t *n) {
    const char *ty = tk_type(obj);
    if (!ty) return sp_fail(SPRIG_E_FORMAT, "%s: %s without a \"type\"", t->label, what);
    if (strcmp(ty, "Sequence") != 0) {
        if (*n == TK_MAX_STEPS) return tk_unsupported(t, "%s with more than 16 steps", what);
        steps[(*n)++] = obj;
        return SPRIG_OK;
    }
    const cJSON *list = cJSON_GetObjectItemCaseSensitive(obj, list_key);
    if (!cJSON_IsArray(list))
        return sp_fail(SPRIG_E_FORMAT, "%s: %s Sequence without a \"%s\" list", t->label, what, list_key);
    const cJSON *e;
    cJSON_ArrayForEach(e, list) SP_TRY(tk_flatten(t, e, list_key, what, steps, n));
    return SPRIG_OK;
}

/* A Replace's {"String": s} pattern; {"Regex": ...} is not supported. */
static sprig_status tk_replace_step(sp_tokenizer *t, const cJSON *step, const char *what, tk_norm *out) {
    const cJSON *pat = cJSON_GetObjectItemCaseSensitive(step, "pattern");
    const char *s = cJSON_IsObject(pat) ? tk_str(pat, "String") : NULL;
    const char *content = tk_str(step, "content");
    if (!s) {
        if (cJSON_IsObject(pat) && tk_str(pat, "Regex")) return tk_unsupported(t, "%s Replace with a Regex pattern", what);
        return sp_fail(SPRIG_E_FORMAT, "%s: %s Replace without a String pattern", t->label, what);
    }
    if (!content) return sp_fail(SPRIG_E_FORMAT, "%s: %s Replace without \"content\"", t->label, what);
    if (!*s) return tk_unsupported(t, "%s Replace of the empty string", what);
    out->kind = TK_NORM_REPLACE;
    out->alen = strlen(s);
    out->blen = strlen(content);
    out->a = tk_dup(t, s, out->alen);
    out->b = tk_dup(t, content, out->blen);
    SP_CHECK_ALLOC(out->a);
    SP_CHECK_ALLOC(out->b);
    return SPRIG_OK;
}

/* ---- normalizer ----------------------------------------------------------------------- */

static sprig_status tk_load_normalizer(sp_tokenizer *t, const cJSON *root) {
    const cJSON *nz = cJSON_GetObjectItemCaseSensitive(root, "normalizer");
    if (!nz || cJSON_IsNull(nz)) return SPRIG_OK;
    const cJSON *steps[TK_MAX_STEPS];
    size_t n = 0;
    SP_TRY(tk_flatten(t, nz, "normalizers", "normalizer", steps, &n));
    for (size_t i = 0; i < n; ++i) {
        const char *ty = tk_type(steps[i]);
        tk_norm *st = &t->norms[t->n_norms++];
        if (strcmp(ty, "Prepend") == 0) {
            const char *p = tk_str(steps[i], "prepend");
            if (!p) return sp_fail(SPRIG_E_FORMAT, "%s: Prepend normalizer without \"prepend\"", t->label);
            st->kind = TK_NORM_PREPEND;
            st->alen = strlen(p);
            st->a = tk_dup(t, p, st->alen);
            SP_CHECK_ALLOC(st->a);
        } else if (strcmp(ty, "Replace") == 0) {
            SP_TRY(tk_replace_step(t, steps[i], "normalizer", st));
        } else if (strcmp(ty, "NFC") == 0) {
            st->kind = TK_NORM_NFC;
        } else {
            return tk_unsupported(t, "normalizer \"%.60s\"", ty);
        }
    }
    return SPRIG_OK;
}

/* Replaces every non-overlapping occurrence of a (left to right) by b. */
static sprig_status tk_replace_all(const char *s, size_t n, const tk_norm *r, sp_tk_buf *out) {
    size_t i = 0, run = 0;
    while (i + r->alen <= n) {
        if (memcmp(s + i, r->a, r->alen) == 0) {
            SP_TRY(sp_tk_buf_append(out, s + run, i - run));
            SP_TRY(sp_tk_buf_append(out, r->b, r->blen));
            i += r->alen;
            run = i;
        } else {
            ++i;
        }
    }
    return sp_tk_buf_append(out, s + run, n - run);
}

/* Runs the normalizer on s into *out (out->len reset first). */
static sprig_status tk_normalize(const sp_tokenizer *t, const char *s, size_t n, sp_tk_buf *out, sp_tk_buf *tmp) {
    out->len = 0;
    SP_TRY(sp_tk_buf_append(out, s, n));
    for (size_t k = 0; k < t->n_norms; ++k) {
        const tk_norm *st = &t->norms[k];
        tmp->len = 0;
        if (st->kind == TK_NORM_PREPEND) {
            if (out->len == 0) continue; /* the reference prepends only to non-empty text */
            SP_TRY(sp_tk_buf_append(tmp, st->a, st->alen));
            SP_TRY(sp_tk_buf_append(tmp, out->data, out->len));
        } else if (st->kind == TK_NORM_NFC) {
            SP_TRY(sp_tk_nfc(out->data, out->len, tmp));
        } else {
            SP_TRY(tk_replace_all(out->data, out->len, st, tmp));
        }
        sp_tk_buf swap = *out;
        *out = *tmp;
        *tmp = swap;
    }
    return SPRIG_OK;
}

/* ---- pre-tokenizer ---------------------------------------------------------------------- */

/* The reference runs patterns with Oniguruma, whose Unicode \s is
 * [\t\n\v\f\r\x85] + Space_Separator + U+2028 + U+2029; PCRE2's (UCP) \s adds
 * U+180E (MONGOLIAN VOWEL SEPARATOR, a format character since Unicode 6.3).
 * So \s is spelled out as Oniguruma's set, inside and outside classes, and \S
 * outside classes as its complement. (\S inside a class is left to PCRE2.) */
#define TK_ONIG_SPACE "\\t\\n\\x0B\\f\\r\\x{85}\\p{Zs}\\x{2028}\\x{2029}"

static sprig_status tk_onig_spaces(const char *pat, sp_tk_buf *out) {
    int in_class = 0;
    for (size_t i = 0; pat[i];) {
        char c = pat[i];
        if (c == '\\' && pat[i + 1]) {
            char d = pat[i + 1];
            if (d == 's') SP_TRY(in_class ? sp_tk_buf_append(out, TK_ONIG_SPACE, strlen(TK_ONIG_SPACE))
                                          : sp_tk_buf_append(out, "[" TK_ONIG_SPACE "]", strlen(TK_ONIG_SPACE) + 2));
            else if (d == 'S' && !in_class) SP_TRY(sp_tk_buf_append(out, "[^" TK_ONIG_SPACE "]", strlen(TK_ONIG_SPACE) + 3));
            else SP_TRY(sp_tk_buf_append(out, pat + i, 2));
            i += 2;
            continue;
        }
        size_t take = 1;
        if (!in_class && c == '[') {
            in_class = 1;
            if (pat[i + take] == '^') ++take;
            if (pat[i + take] == ']') ++take; /* a leading ] is a literal */
        } else if (in_class && c == '[' && pat[i + 1] == ':') {
            const char *end = strstr(pat + i + 2, ":]");
            if (end) take = (size_t)(end + 2 - (pat + i)); /* [:alpha:] */
        } else if (in_class && c == ']') {
            in_class = 0;
        }
        SP_TRY(sp_tk_buf_append(out, pat + i, take));
        i += take;
    }
    return sp_tk_buf_append(out, "", 0);
}

static sprig_status tk_compile(sp_tokenizer *t, const char *pattern, int literal, pcre2_code **out) {
    int err;
    PCRE2_SIZE off;
    uint32_t opts = PCRE2_UTF | (literal ? PCRE2_LITERAL : PCRE2_UCP);
    sp_tk_buf rewritten = {0};
    if (!literal) {
        sprig_status st = tk_onig_spaces(pattern, &rewritten);
        if (st != SPRIG_OK) {
            sp_tk_buf_free(&rewritten);
            return st;
        }
    }
    pcre2_code *re = pcre2_compile((PCRE2_SPTR)(literal ? pattern : rewritten.data), PCRE2_ZERO_TERMINATED, opts,
                                   &err, &off, NULL);
    sp_tk_buf_free(&rewritten);
    if (!re) {
        PCRE2_UCHAR msg[160];
        pcre2_get_error_message(err, msg, sizeof msg);
        return sp_fail(SPRIG_E_FORMAT, "%s: Split regex does not compile at offset %zu: %s", t->label,
                       (size_t)off, (const char *)msg);
    }
    pcre2_jit_compile(re, PCRE2_JIT_COMPLETE); /* optional: the interpreter runs if JIT is unavailable */
    *out = re;
    return SPRIG_OK;
}

static sprig_status tk_load_split(sp_tokenizer *t, const cJSON *step, tk_pre *pre) {
    const cJSON *pat = cJSON_GetObjectItemCaseSensitive(step, "pattern");
    const char *rx = cJSON_IsObject(pat) ? tk_str(pat, "Regex") : NULL;
    const char *lit = cJSON_IsObject(pat) ? tk_str(pat, "String") : NULL;
    if (!rx && !lit) return sp_fail(SPRIG_E_FORMAT, "%s: Split pre_tokenizer without a Regex or String pattern", t->label);
    const char *behavior = tk_str(step, "behavior");
    if (!behavior || strcmp(behavior, "Isolated") != 0)
        return tk_unsupported(t, "Split behavior \"%.40s\" (only Isolated)", behavior ? behavior : "(none)");
    if (tk_flag(step, "invert", 0) != 0) return tk_unsupported(t, "%s", "Split with invert=true");
    pre->kind = TK_PRE_SPLIT;
    return tk_compile(t, rx ? rx : lit, rx == NULL, &pre->re);
}

static sprig_status tk_load_metaspace(sp_tokenizer *t, const cJSON *step, tk_pre *pre) {
    const char *repl = tk_str(step, "replacement");
    size_t adv;
    if (!repl || !*repl || sp_tk_utf8_next((const unsigned char *)repl, strlen(repl), &adv) < 0 || repl[adv])
        return sp_fail(SPRIG_E_FORMAT, "%s: Metaspace \"replacement\" must be one character", t->label);
    const char *scheme = tk_str(step, "prepend_scheme");
    if (scheme) {
        if (strcmp(scheme, "always") == 0) pre->scheme = TK_PREPEND_ALWAYS;
        else if (strcmp(scheme, "first") == 0) pre->scheme = TK_PREPEND_FIRST;
        else if (strcmp(scheme, "never") == 0) pre->scheme = TK_PREPEND_NEVER;
        else return tk_unsupported(t, "Metaspace prepend_scheme \"%.40s\"", scheme);
    } else {
        /* older files: add_prefix_space true/false means always/never */
        int aps = tk_flag(step, "add_prefix_space", 1);
        if (aps < 0) return sp_fail(SPRIG_E_FORMAT, "%s: Metaspace add_prefix_space is not a boolean", t->label);
        pre->scheme = aps ? TK_PREPEND_ALWAYS : TK_PREPEND_NEVER;
    }
    if (tk_flag(step, "split", 1) != 0) return tk_unsupported(t, "%s", "Metaspace with split=true");
    pre->kind = TK_PRE_METASPACE;
    pre->repl_len = adv;
    pre->repl = tk_dup(t, repl, adv);
    SP_CHECK_ALLOC(pre->repl);
    return SPRIG_OK;
}

/* GPT-2's pattern, which the reference's ByteLevel pre-tokenizer runs when
 * use_regex is true (tokenizers/src/pre_tokenizers/byte_level.rs).
 * Contractions are case-sensitive here, unlike in LLaMA-3's and Qwen2's. */
static const char tk_gpt2_pattern[] =
    "'s|'t|'re|'ve|'m|'ll|'d| ?\\p{L}+| ?\\p{N}+| ?[^\\s\\p{L}\\p{N}]+|\\s+(?!\\S)|\\s+";

/* ByteLevel does, on each piece: prepend a space (add_prefix_space) unless
 * the piece starts with one, split it with GPT-2's pattern (use_regex),
 * map bytes to characters. Each of these acts on every piece on its own, so
 * running them as three steps over all pieces gives the same result; it
 * becomes up to three steps here, the split an ordinary Split(Isolated). */
static sprig_status tk_load_bytelevel(sp_tokenizer *t, const cJSON *step) {
    int prefix = tk_flag(step, "add_prefix_space", 0), regex = tk_flag(step, "use_regex", 1);
    if (prefix < 0 || regex < 0)
        return sp_fail(SPRIG_E_FORMAT, "%s: ByteLevel pre_tokenizer: add_prefix_space and use_regex must be booleans",
                       t->label);
    if (t->n_pres + (size_t)prefix + (size_t)regex + 1 > TK_MAX_STEPS)
        return tk_unsupported(t, "%s", "pre_tokenizer with more than 16 steps");
    if (prefix) t->pres[t->n_pres++].kind = TK_PRE_PREFIX_SPACE;
    if (regex) {
        tk_pre *split = &t->pres[t->n_pres++];
        split->kind = TK_PRE_SPLIT;
        SP_TRY(tk_compile(t, tk_gpt2_pattern, 0, &split->re));
    }
    t->pres[t->n_pres++].kind = TK_PRE_BYTELEVEL;
    return SPRIG_OK;
}

/* Digits: numeric characters (Rust's char::is_numeric, Unicode N*) split off
 * one by one (individual_digits) or in runs, behaviour Isolated. */
static sprig_status tk_load_digits(sp_tokenizer *t, const cJSON *step) {
    int individual = tk_flag(step, "individual_digits", 0);
    if (individual < 0)
        return sp_fail(SPRIG_E_FORMAT, "%s: Digits pre_tokenizer: individual_digits must be a boolean", t->label);
    if (t->n_pres == TK_MAX_STEPS) return tk_unsupported(t, "%s", "pre_tokenizer with more than 16 steps");
    tk_pre *split = &t->pres[t->n_pres++];
    split->kind = TK_PRE_SPLIT;
    return tk_compile(t, individual ? "\\p{N}" : "\\p{N}+", 0, &split->re);
}

static sprig_status tk_load_pretokenizer(sp_tokenizer *t, const cJSON *root) {
    const cJSON *pt = cJSON_GetObjectItemCaseSensitive(root, "pre_tokenizer");
    if (!pt || cJSON_IsNull(pt)) return SPRIG_OK;
    const cJSON *steps[TK_MAX_STEPS];
    size_t n = 0;
    SP_TRY(tk_flatten(t, pt, "pretokenizers", "pre_tokenizer", steps, &n));
    for (size_t i = 0; i < n; ++i) {
        const char *ty = tk_type(steps[i]);
        if (strcmp(ty, "ByteLevel") == 0) {
            SP_TRY(tk_load_bytelevel(t, steps[i]));
            continue;
        }
        if (strcmp(ty, "Digits") == 0) {
            SP_TRY(tk_load_digits(t, steps[i]));
            continue;
        }
        if (t->n_pres == TK_MAX_STEPS) return tk_unsupported(t, "%s", "pre_tokenizer with more than 16 steps");
        tk_pre *pre = &t->pres[t->n_pres++];
        if (strcmp(ty, "Split") == 0) {
            SP_TRY(tk_load_split(t, steps[i], pre));
        } else if (strcmp(ty, "Metaspace") == 0) {
            SP_TRY(tk_load_metaspace(t, steps[i], pre));
        } else {
            return tk_unsupported(t, "pre_tokenizer \"%.60s\"", ty);
        }
    }
    return SPRIG_OK;
}

/* ---- post-processor ------------------------------------------------------------------------ */

static sprig_status tk_template_ids(sp_tokenizer *t, const cJSON *specials, const char *name, int32_t **ids,
                                    size_t *n) {
    const cJSON *sp = cJSON_IsObject(specials) ? cJSON_GetObjectItemCaseSensitive(specials, name) : NULL;
    const cJSON *list = sp ? cJSON_GetObjectItemCaseSensitive(sp, "ids") : NULL;
    if (!cJSON_IsArray(list))
        return sp_fail(SPRIG_E_FORMAT, "%s: TemplateProcessing names special token \"%s\" but gives no ids for it",
                       t->label, name);
    const cJSON *e;
    cJSON_ArrayForEach(e, list) {
        double v = cJSON_IsNumber(e) ? e->valuedouble : -1;
        if (!(v >= 0 && v < SP_TOK_MAX_ID) || (double)(int32_t)v != v)
            return sp_fail(SPRIG_E_FORMAT, "%s: TemplateProcessing id for \"%s\" is not a valid id", t->label, name);
        int32_t *grown = realloc(*ids, (*n + 1) * sizeof **ids);
        SP_CHECK_ALLOC(grown);
        *ids = grown;
        grown[(*n)++] = (int32_t)v;
    }
    return SPRIG_OK;
}

static sprig_status tk_load_template(sp_tokenizer *t, const cJSON *step) {
    if (t->n_prefix || t->n_suffix || t->prefix || t->suffix)
        return tk_unsupported(t, "%s", "two TemplateProcessing post-processors");
    const cJSON *single = cJSON_GetObjectItemCaseSensitive(step, "single");
    const cJSON *specials = cJSON_GetObjectItemCaseSensitive(step, "special_tokens");
    if (!cJSON_IsArray(single)) return sp_fail(SPRIG_E_FORMAT, "%s: TemplateProcessing without a \"single\" list", t->label);
    int seen_a = 0;
    const cJSON *e;
    cJSON_ArrayForEach(e, single) {
        const cJSON *tokobj = cJSON_GetObjectItemCaseSensitive(e, "SpecialToken");
        const cJSON *seqobj = cJSON_GetObjectItemCaseSensitive(e, "Sequence");
        if (cJSON_IsObject(seqobj)) {
            const char *id = tk_str(seqobj, "id");
            if (!id || strcmp(id, "A") != 0 || seen_a)
                return tk_unsupported(t, "%s", "TemplateProcessing single template other than specials around $A");
            seen_a = 1;
        } else if (cJSON_IsObject(tokobj) && tk_str(tokobj, "id")) {
            if (seen_a) SP_TRY(tk_template_ids(t, specials, tk_str(tokobj, "id"), &t->suffix, &t->n_suffix));
            else SP_TRY(tk_template_ids(t, specials, tk_str(tokobj, "id"), &t->prefix, &t->n_prefix));
        } else {
            return sp_fail(SPRIG_E_FORMAT, "%s: TemplateProcessing item is neither SpecialToken nor Sequence", t->label);
        }
    }
    if (!seen_a) return sp_fail(SPRIG_E_FORMAT, "%s: TemplateProcessing single template has no $A", t->label);
    return SPRIG_OK;
}

static sprig_status tk_load_postprocessor(sp_tokenizer *t, const cJSON *root) {
    const cJSON *pp = cJSON_GetObjectItemCaseSensitive(root, "post_processor");
    if (!pp || cJSON_IsNull(pp)) return SPRIG_OK;
    const cJSON *steps[TK_MAX_STEPS];
    size_t n = 0;
    SP_TRY(tk_flatten(t, pp, "processors", "post_processor", steps, &n));
    for (size_t i = 0; i < n; ++i) {
        const char *ty = tk_type(steps[i]);
        if (strcmp(ty, "TemplateProcessing") == 0) SP_TRY(tk_load_template(t, steps[i]));
        else if (strcmp(ty, "ByteLevel") != 0) /* ByteLevel only adjusts offsets, never ids */
            return tk_unsupported(t, "post_processor \"%.60s\"", ty);
    }
    return SPRIG_OK;
}

/* ---- decoder ---------------------------------------------------------------------------------- */

static sprig_status tk_load_strip(sp_tokenizer *t, const cJSON *step) {
    const char *content = tk_str(step, "content");
    const cJSON *start = cJSON_GetObjectItemCaseSensitive(step, "start");
    const cJSON *stop = cJSON_GetObjectItemCaseSensitive(step, "stop");
    size_t adv;
    if (!content || !*content || sp_tk_utf8_next((const unsigned char *)content, strlen(content), &adv) < 0 ||
        content[adv] || !cJSON_IsNumber(start) || start->valuedouble < 0 || start->valuedouble > 1e6)
        return sp_fail(SPRIG_E_FORMAT, "%s: Strip decoder needs one \"content\" character and a \"start\" count",
                       t->label);
    if (cJSON_IsNumber(stop) && stop->valuedouble != 0)
        return tk_unsupported(t, "%s", "Strip decoder with stop > 0 (cannot stream)");
    memcpy(t->strip_content, content, adv);
    t->strip_clen = adv;
    t->strip_start = (int)start->valuedouble;
    return SPRIG_OK;
}

/* Accepted: ByteLevel alone, or the SentencePiece chain
 * Replace* -> ByteFallback? -> Fuse? -> Strip(start, stop 0)? (Strip only after Fuse,
 * since without Fuse the reference strips every token). */
static sprig_status tk_load_decoder(sp_tokenizer *t, const cJSON *root) {
    const cJSON *dec = cJSON_GetObjectItemCaseSensitive(root, "decoder");
    if (!dec || cJSON_IsNull(dec)) return tk_unsupported(t, "%s", "no decoder");
    const cJSON *steps[TK_MAX_STEPS];
    size_t n = 0;
    SP_TRY(tk_flatten(t, dec, "decoders", "decoder", steps, &n));
    if (n == 1 && strcmp(tk_type(steps[0]), "ByteLevel") == 0) {
        t->dec = TK_DEC_BYTELEVEL;
        return SPRIG_OK;
    }
    t->dec = TK_DEC_SP;
    int phase = 0; /* 0: Replace / ByteFallback, 1: after ByteFallback, 2: after Fuse, 3: after Strip */
    for (size_t i = 0; i < n; ++i) {
        const char *ty = tk_type(steps[i]);
        if (strcmp(ty, "Replace") == 0 && phase == 0) {
            SP_TRY(tk_replace_step(t, steps[i], "decoder", &t->dec_replace[t->n_dec_replace++]));
        } else if (strcmp(ty, "ByteFallback") == 0 && phase == 0) {
            t->dec_byte_fallback = 1;
            phase = 1;
        } else if (strcmp(ty, "Fuse") == 0 && phase <= 1) {
            phase = 2;
        } else if (strcmp(ty, "Strip") == 0 && phase == 2) {
            SP_TRY(tk_load_strip(t, steps[i]));
            phase = 3;
        } else {
            return tk_unsupported(t, "decoder step \"%.60s\" at this place in the chain", ty);
        }
    }
    return SPRIG_OK;
}

/* The reference's ByteFallback test: 6 bytes "<0x" HH ">", HH parsed by
 * Rust's u8::from_str_radix(_, 16) (which also takes a leading '+'). */
static int tk_byte_token(const char *s, size_t n) {
    if (n != 6 || memcmp(s, "<0x", 3) != 0 || s[5] != '>') return -1;
    int v = 0, digits = 0;
    for (int i = 3; i < 5; ++i) {
        char c = s[i];
        if (i == 3 && c == '+') continue;
        int d = c >= '0' && c <= '9' ? c - '0' : c >= 'a' && c <= 'f' ? c - 'a' + 10 : c >= 'A' && c <= 'F' ? c - 'A' + 10 : -1;
        if (d < 0) return -1;
        v = v * 16 + d;
        ++digits;
    }
    return digits ? v : -1;
}

/* Per id: what the decoder makes of the token on its own. */
static sprig_status tk_build_pieces(sp_tokenizer *t) {
    uint32_t byte_cp[256];
    int16_t cp_byte[324];
    tk_byte_table(byte_cp, cp_byte);
    sp_tk_buf a = {0}, b = {0};
    sprig_status st = SPRIG_OK;
    for (int32_t id = 0; id < t->n_ids && st == SPRIG_OK; ++id) {
        tk_info *in = &t->info[id];
        in->byte = -1;
        if (!in->text) continue;
        a.len = 0;
        if (t->dec == TK_DEC_BYTELEVEL) {
            /* every character must be in the byte alphabet, else the raw text is used */
            const unsigned char *u = (const unsigned char *)in->src;
            int all = 1;
            for (size_t i = 0; i < in->src_len && all && st == SPRIG_OK;) {
                size_t adv;
                int32_t cp = sp_tk_utf8_next(u + i, in->src_len - i, &adv);
                if (cp < 0 || cp >= 324 || cp_byte[cp] < 0) all = 0;
                else {
                    char byte = (char)cp_byte[cp];
                    st = sp_tk_buf_append(&a, &byte, 1);
                }
                i += adv;
            }
            if (!all) {
                a.len = 0;
                st = sp_tk_buf_append(&a, in->src, in->src_len);
            }
        } else {
            st = sp_tk_buf_append(&a, in->src, in->src_len);
            for (size_t k = 0; k < t->n_dec_replace && st == SPRIG_OK; ++k) {
                b.len = 0;
                st = tk_replace_all(a.data, a.len, &t->dec_replace[k], &b);
                sp_tk_buf swap = a;
                a = b;
                b = swap;
            }
            if (st == SPRIG_OK && t->dec_byte_fallback) in->byte = (int16_t)tk_byte_token(a.data, a.len);
        }
        if (st != SPRIG_OK) break;
        in->piece = tk_dup(t, a.data ? a.data : "", a.len);
        in->piece_len = (uint32_t)a.len;
        if (!in->piece) st = sp_fail(SPRIG_E_NOMEM, "out of memory building the decoder table");
    }
    sp_tk_buf_free(&a);
    sp_tk_buf_free(&b);
    return st;
}

/* ---- added tokens ------------------------------------------------------------------------------- */

/* The reference (AddedVocabulary::add_tokens) ignores the "id" field: a token
 * already in the vocab keeps that id, any other gets the next id after the
 * model vocab. Duplicated contents update the earlier entry. */
static sprig_status tk_load_added(sp_tokenizer *t, const cJSON *root) {
    const cJSON *list = cJSON_GetObjectItemCaseSensitive(root, "added_tokens");
    if (!list || cJSON_IsNull(list)) return SPRIG_OK;
    if (!cJSON_IsArray(list)) return sp_fail(SPRIG_E_FORMAT, "%s: \"added_tokens\" is not a list", t->label);
    size_t cap = (size_t)cJSON_GetArraySize(list);
    t->added = calloc(cap ? cap : 1, sizeof *t->added);
    SP_CHECK_ALLOC(t->added);
    SP_TRY(sp_tk_strmap_init(&t->added_map, cap));
    int64_t next_id = (int64_t)t->bpe.vocab_count;
    sp_tk_buf norm = {0}, tmp = {0};
    const cJSON *e;
    sprig_status st = SPRIG_OK;
    cJSON_ArrayForEach(e, list) {
        const char *content = tk_str(e, "content");
        if (!content) {
            st = sp_fail(SPRIG_E_FORMAT, "%s: an added token has no \"content\"", t->label);
            break;
        }
        size_t len = strlen(content);
        if (len == 0) continue; /* ignored by the reference */
        if (!sp_tk_utf8_valid(content, len)) {
            st = sp_fail(SPRIG_E_FORMAT, "%s: added token content is not valid UTF-8", t->label);
            break;
        }
        int special = tk_flag(e, "special", 0);
        int normalized = tk_flag(e, "normalized", !special);
        const char *bad = tk_flag(e, "lstrip", 0) ? "lstrip" : tk_flag(e, "rstrip", 0) ? "rstrip"
                        : tk_flag(e, "single_word", 0) ? "single_word" : NULL;
        if (special < 0 || normalized < 0) {
            st = sp_fail(SPRIG_E_FORMAT, "%s: added token \"%s\": special/normalized must be booleans", t->label, content);
            break;
        }
        if (bad) {
            char what[120];
            snprintf(what, sizeof what, "added token \"%.60s\" with %s=true", content, bad);
            st = tk_unsupported(t, "%s", what);
            break;
        }
        int32_t idx = sp_tk_strmap_get(&t->added_map, content, len);
        tk_added *a;
        if (idx >= 0) {
            a = &t->added[idx];
        } else {
            a = &t->added[t->n_added];
            a->content = tk_dup(t, content, len);
            if (!a->content) {
                st = sp_fail(SPRIG_E_NOMEM, "out of memory reading added tokens");
                break;
            }
            a->len = len;
            int32_t id = sp_tk_strmap_get(&t->bpe.vocab, content, len);
            if (id < 0) {
                if (next_id >= SP_TOK_MAX_ID) {
                    st = sp_fail(SPRIG_E_FORMAT, "%s: too many added tokens", t->label);
                    break;
                }
                id = (int32_t)next_id++;
            }
            a->id = id;
            if ((st = sp_tk_strmap_put(&t->added_map, a->content, len, (int32_t)t->n_added)) != SPRIG_OK) break;
            ++t->n_added;
        }
        a->special = special;
        a->normalized = normalized;
        a->pattern = a->content;
        a->plen = a->len;
        if (normalized && t->n_norms) {
            if ((st = tk_normalize(t, a->content, a->len, &norm, &tmp)) != SPRIG_OK) break;
            a->pattern = tk_dup(t, norm.data, norm.len);
            a->plen = norm.len;
            if (!a->pattern) {
                st = sp_fail(SPRIG_E_NOMEM, "out of memory reading added tokens");
                break;
            }
        }
    }
    sp_tk_buf_free(&norm);
    sp_tk_buf_free(&tmp);
    return st;
}

/* Buckets added tokens by class and first byte, for the leftmost-longest scan. */
static sprig_status tk_index_added(sp_tokenizer *t) {
    for (int cls = 0; cls < 2; ++cls) {
        uint32_t count[257] = {0};
        for (size_t i = 0; i < t->n_added; ++i)
            if (t->added[i].normalized == cls && t->added[i].plen) ++count[(unsigned char)t->added[i].pattern[0] + 1];
        for (int b = 0; b < 256; ++b) count[b + 1] += count[b];
        memcpy(t->bucket_off[cls], count, sizeof count);
        t->bucket[cls] = malloc((count[256] ? count[256] : 1) * sizeof(int32_t));
        SP_CHECK_ALLOC(t->bucket[cls]);
        uint32_t fill[256];
        memcpy(fill, count, sizeof fill);
        for (size_t i = 0; i < t->n_added; ++i)
            if (t->added[i].normalized == cls && t->added[i].plen)
                t->bucket[cls][fill[(unsigned char)t->added[i].pattern[0]]++] = (int32_t)i;
    }
    return SPRIG_OK;
}

/* The longest added token of class cls starting at s[i]; its index or -1. */
static int32_t tk_added_at(const sp_tokenizer *t, int cls, const char *s, size_t n, size_t i) {
    unsigned b = (unsigned char)s[i];
    int32_t best = -1;
    size_t best_len = 0;
    for (uint32_t k = t->bucket_off[cls][b]; k < t->bucket_off[cls][b + 1]; ++k) {
        const tk_added *a = &t->added[t->bucket[cls][k]];
        if (a->plen > best_len && a->plen <= n - i && memcmp(s + i, a->pattern, a->plen) == 0) {
            best = t->bucket[cls][k];
            best_len = a->plen;
        }
    }
    return best;
}

/* ---- open / close ----------------------------------------------------------------------------------- */

static sprig_status tk_build_ids(sp_tokenizer *t) {
    int32_t n = t->bpe.id_end;
    for (size_t i = 0; i < t->n_added; ++i)
        if (t->added[i].id + 1 > n) n = t->added[i].id + 1;
    t->n_ids = n;
    t->info = calloc(n ? (size_t)n : 1, sizeof *t->info);
    SP_CHECK_ALLOC(t->info);
    for (int32_t id = 0; id < t->bpe.id_end; ++id) {
        if (!t->bpe.id_text[id]) continue;
        if (!sp_tk_utf8_valid(t->bpe.id_text[id], t->bpe.id_len[id]))
            return sp_fail(SPRIG_E_FORMAT, "%s: vocab entry %d is not valid UTF-8", t->label, (int)id);
        t->info[id].text = t->info[id].src = t->bpe.id_text[id];
        t->info[id].len = t->info[id].src_len = t->bpe.id_len[id];
    }
    for (size_t i = 0; i < t->n_added; ++i) { /* added tokens take precedence, as in the reference */
        tk_info *in = &t->info[t->added[i].id];
        in->text = t->added[i].content;
        in->len = (uint32_t)t->added[i].len;
        in->special = (uint8_t)t->added[i].special;
        in->src = t->added[i].pattern;
        in->src_len = (uint32_t)t->added[i].plen;
    }
    for (size_t i = 0; i < t->n_prefix; ++i)
        if (t->prefix[i] >= n) return sp_fail(SPRIG_E_FORMAT, "%s: template token id %d is not in the vocab", t->label, (int)t->prefix[i]);
    for (size_t i = 0; i < t->n_suffix; ++i)
        if (t->suffix[i] >= n) return sp_fail(SPRIG_E_FORMAT, "%s: template token id %d is not in the vocab", t->label, (int)t->suffix[i]);
    return SPRIG_OK;
}

static int32_t tk_added_id(const sp_tokenizer *t, const char *name) {
    int32_t idx = sp_tk_strmap_get(&t->added_map, name, strlen(name));
    return idx >= 0 ? t->added[idx].id : -1;
}

static sprig_status tk_load(sp_tokenizer *t, const char *json, size_t len) {
    const char *end = NULL;
    cJSON *root = cJSON_ParseWithLengthOpts(json, len, &end, 0);
    if (!root) {
        size_t at = end && end >= json ? (size_t)(end - json) : 0;
        return sp_fail(SPRIG_E_FORMAT, "%s: not valid JSON (error near byte %zu)", t->label, at);
    }
    sprig_status st = SPRIG_OK;
    if (!cJSON_IsObject(root))
        st = sp_fail(SPRIG_E_FORMAT, "%s: not a tokenizer.json (the top level is not an object)", t->label);
    /* order matters: added tokens need the model vocab and the normalizer */
    if (st == SPRIG_OK) st = sp_tk_bpe_load(&t->bpe, cJSON_GetObjectItemCaseSensitive(root, "model"), &t->arena, t->label);
    if (st == SPRIG_OK) st = tk_load_normalizer(t, root);
    if (st == SPRIG_OK) st = tk_load_pretokenizer(t, root);
    if (st == SPRIG_OK) st = tk_load_postprocessor(t, root);
    if (st == SPRIG_OK) st = tk_load_decoder(t, root);
    if (st == SPRIG_OK) st = tk_load_added(t, root);
    if (st == SPRIG_OK) st = tk_index_added(t);
    if (st == SPRIG_OK) st = tk_build_ids(t);
    if (st == SPRIG_OK) st = tk_build_pieces(t);
    cJSON_Delete(root);
    if (st != SPRIG_OK) return st;
    int16_t cp_byte[324];
    tk_byte_table(t->byte_cp, cp_byte);
    t->bos = t->n_prefix ? t->prefix[0] : tk_added_id(t, "<s>");
    if (t->bos < 0) t->bos = tk_added_id(t, "<|begin_of_text|>");
    t->eos = tk_added_id(t, "</s>");
    if (t->eos < 0) t->eos = tk_added_id(t, "<|end_of_text|>");
    if (t->eos < 0) t->eos = tk_added_id(t, "<|endoftext|>"); /* GPT-2, SmolLM, Qwen2 */
    return SPRIG_OK;
}

sprig_status sp_tok_open_json(const char *json, size_t len, const char *label, sp_tokenizer **out) {
    *out = NULL;
    sp_tokenizer *t = calloc(1, sizeof *t);
    SP_CHECK_ALLOC(t);
    t->bpe.unk_id = -1;
    t->label = strdup(label ? label : "tokenizer.json");
    if (!t->label) {
        free(t);
        return sp_fail(SPRIG_E_NOMEM, "out of memory opening a tokenizer");
    }
    sprig_status st = tk_load(t, json, len);
    if (st != SPRIG_OK) {
        sp_tok_close(t);
        return st;
    }
    *out = t;
    return SPRIG_OK;
}

sprig_status sp_tok_open(const char *path, sp_tokenizer **out) {
    *out = NULL;
    char *text = NULL;
    size_t len = 0;
    sprig_status st = sp_file_read(path, TK_MAX_FILE_BYTES, &text, &len, NULL);
    if (st != SPRIG_OK) return sp_wrap(st, "tokenizer");
    st = sp_tok_open_json(text, len, path, out);
    free(text);
    return st;
}

void sp_tok_close(sp_tokenizer *t) {
    if (!t) return;
    for (size_t i = 0; i < t->n_pres; ++i) pcre2_code_free(t->pres[i].re);
    sp_tk_bpe_free(&t->bpe);
    sp_tk_strmap_free(&t->added_map);
    free(t->added);
    free(t->bucket[0]);
    free(t->bucket[1]);
    free(t->prefix);
    free(t->suffix);
    free(t->info);
    sp_tk_arena_free(&t->arena);
    free(t->label);
    free(t);
}

/* ---- lookups ------------------------------------------------------------------------------------------ */

int32_t sp_tok_n_ids(const sp_tokenizer *t) { return t->n_ids; }

const char *sp_tok_kind(const sp_tokenizer *t) {
    return t->dec == TK_DEC_BYTELEVEL ? "byte-level-bpe" : "sentencepiece-bpe";
}

int32_t sp_tok_bos_id(const sp_tokenizer *t) { return t->bos; }
int32_t sp_tok_eos_id(const sp_tokenizer *t) { return t->eos; }

int32_t sp_tok_find(const sp_tokenizer *t, const char *text) {
    int32_t id = tk_added_id(t, text);
    return id >= 0 ? id : sp_tk_strmap_get(&t->bpe.vocab, text, strlen(text));
}

const char *sp_tok_text(const sp_tokenizer *t, int32_t id) {
    return id >= 0 && id < t->n_ids ? t->info[id].text : NULL;
}

int sp_tok_is_special(const sp_tokenizer *t, int32_t id) {
    return id >= 0 && id < t->n_ids && t->info[id].special;
}

/* ---- encoding ------------------------------------------------------------------------------------------ */

/* A list of pieces: text (off/len into `text`) or an added token (id >= 0).
 * at_start: the piece begins at the start of the input (Metaspace "first"). */
typedef struct tk_piece {
    size_t off, len;
    int32_t id;
    int at_start;
} tk_piece;

typedef struct tk_list {
    tk_piece *v;
    size_t n, cap;
    sp_tk_buf text;
} tk_list;

static sprig_status tk_push(tk_list *l, tk_piece p) {
    if (l->n == l->cap) {
        size_t cap = l->cap ? l->cap * 2 : 32;
        tk_piece *v = realloc(l->v, cap * sizeof *v);
        SP_CHECK_ALLOC(v);
        l->v = v;
        l->cap = cap;
    }
    l->v[l->n++] = p;
    return SPRIG_OK;
}

/* Empty text pieces are dropped, as the reference's split() drops them. */
static sprig_status tk_push_text(tk_list *l, const char *s, size_t len, int at_start) {
    if (len == 0) return SPRIG_OK;
    size_t off = l->text.len;
    SP_TRY(sp_tk_buf_append(&l->text, s, len));
    return tk_push(l, (tk_piece){off, len, -1, at_start});
}

static sprig_status tk_push_token(tk_list *l, int32_t id) { return tk_push(l, (tk_piece){0, 0, id, 0}); }

static void tk_list_reset(tk_list *l) {
    l->n = 0;
    l->text.len = 0;
}

static void tk_list_free(tk_list *l) {
    free(l->v);
    sp_tk_buf_free(&l->text);
}

/* Splits s on added tokens of class cls (leftmost-longest, non-overlapping). */
static sprig_status tk_split_added(const sp_tokenizer *t, int cls, const char *s, size_t n, int at_start, tk_list *out) {
    if (t->bucket_off[cls][256] == 0) return tk_push_text(out, s, n, at_start);
    size_t run = 0;
    for (size_t i = 0; i < n;) {
        int32_t k = tk_added_at(t, cls, s, n, i);
        if (k < 0) {
            ++i;
            continue;
        }
        SP_TRY(tk_push_text(out, s + run, i - run, at_start && run == 0));
        SP_TRY(tk_push_token(out, t->added[k].id));
        i += t->added[k].plen;
        run = i;
    }
    return tk_push_text(out, s + run, n - run, at_start && run == 0);
}

/* Steps 1 and 2: added tokens and the normalizer. */
static sprig_status tk_stage_added(const sp_tokenizer *t, const char *text, size_t n, tk_list *a, tk_list *b,
                                   sp_tk_buf *norm, sp_tk_buf *tmp) {
    tk_list_reset(a);
    SP_TRY(tk_split_added(t, 0, text, n, 1, a));
    tk_list_reset(b);
    for (size_t i = 0; i < a->n; ++i) {
        const tk_piece *p = &a->v[i];
        if (p->id >= 0) {
            SP_TRY(tk_push_token(b, p->id));
            continue;
        }
        SP_TRY(tk_normalize(t, a->text.data + p->off, p->len, norm, tmp));
        SP_TRY(tk_split_added(t, 1, norm->data, norm->len, p->at_start, b));
    }
    return SPRIG_OK;
}

/* Split(Regex, Isolated): matches and the gaps between them become pieces.
 * Iterates like the onig crate's find_iter, which the reference uses: an empty
 * match right where the previous match ended is skipped by one character. */
static sprig_status tk_pre_split(const tk_pre *pre, const char *s, size_t n, int at_start, pcre2_match_data *md,
                                 tk_list *out) {
    size_t search = 0, prev = 0, last_end = 0;
    int have_last = 0;
    while (search <= n) {
        int rc = pcre2_match(pre->re, (PCRE2_SPTR)s, n, search, PCRE2_NO_UTF_CHECK, md, NULL);
        if (rc == PCRE2_ERROR_JIT_STACKLIMIT)
            rc = pcre2_match(pre->re, (PCRE2_SPTR)s, n, search, PCRE2_NO_UTF_CHECK | PCRE2_NO_JIT, md, NULL);
        if (rc == PCRE2_ERROR_NOMATCH) break;
        if (rc < 0) {
            PCRE2_UCHAR msg[160];
            pcre2_get_error_message(rc, msg, sizeof msg);
            return sp_fail(SPRIG_E_INVALID, "pre-tokenizer regex failed on the input: %s", (const char *)msg);
        }
        PCRE2_SIZE *ov = pcre2_get_ovector_pointer(md);
        size_t ms = ov[0], me = ov[1];
        if (ms == me && have_last && last_end == me) {
            size_t adv = 1;
            if (search < n) sp_tk_utf8_next((const unsigned char *)s + search, n - search, &adv);
            search += adv;
            continue;
        }
        search = me;
        last_end = me;
        have_last = 1;
        SP_TRY(tk_push_text(out, s + prev, ms - prev, at_start && prev == 0));
        SP_TRY(tk_push_text(out, s + ms, me - ms, at_start && ms == 0));
        prev = me;
    }
    return tk_push_text(out, s + prev, n - prev, at_start && prev == 0);
}

static sprig_status tk_pre_bytelevel(const uint32_t byte_cp[256], const char *s, size_t n, int at_start, sp_tk_buf *tmp,
                                     tk_list *out) {
    tmp->len = 0;
    for (size_t i = 0; i < n; ++i) {
        char enc[4];
        SP_TRY(sp_tk_buf_append(tmp, enc, sp_tk_utf8_put(byte_cp[(unsigned char)s[i]], enc)));
    }
    return tk_push_text(out, tmp->data, tmp->len, at_start);
}

static sprig_status tk_pre_metaspace(const tk_pre *pre, const char *s, size_t n, int at_start, sp_tk_buf *tmp,
                                     tk_list *out) {
    tmp->len = 0;
    tk_norm r = {TK_NORM_REPLACE, " ", pre->repl, 1, pre->repl_len};
    SP_TRY(tk_replace_all(s, n, &r, tmp));
    int starts = tmp->len >= pre->repl_len && memcmp(tmp->data, pre->repl, pre->repl_len) == 0;
    int prepend = !starts && (pre->scheme == TK_PREPEND_ALWAYS || (pre->scheme == TK_PREPEND_FIRST && at_start));
    size_t off = out->text.len;
    if (prepend) SP_TRY(sp_tk_buf_append(&out->text, pre->repl, pre->repl_len));
    SP_TRY(sp_tk_buf_append(&out->text, tmp->data, tmp->len));
    size_t len = out->text.len - off;
    return len ? tk_push(out, (tk_piece){off, len, -1, at_start}) : SPRIG_OK;
}

/* ByteLevel(add_prefix_space=true): the reference prepends to every piece,
 * not only the first (each stretch between added tokens gets its space). */
static sprig_status tk_pre_prefix_space(const char *s, size_t n, int at_start, tk_list *out) {
    if (s[0] == ' ') return tk_push_text(out, s, n, at_start); /* pieces are never empty */
    size_t off = out->text.len;
    SP_TRY(sp_tk_buf_append(&out->text, " ", 1));
    SP_TRY(sp_tk_buf_append(&out->text, s, n));
    return tk_push(out, (tk_piece){off, n + 1, -1, at_start});
}

/* Step 3: runs one pre-tokenizer step over every text piece of a into b. */
static sprig_status tk_stage_pre(const sp_tokenizer *t, const tk_pre *pre, tk_list *a, tk_list *b,
                                 pcre2_match_data **md, sp_tk_buf *tmp) {
    tk_list_reset(b);
    if (pre->kind == TK_PRE_SPLIT) {
        if (*md) pcre2_match_data_free(*md);
        *md = pcre2_match_data_create_from_pattern(pre->re, NULL);
        SP_CHECK_ALLOC(*md);
    }
    for (size_t i = 0; i < a->n; ++i) {
        const tk_piece *p = &a->v[i];
        if (p->id >= 0) {
            SP_TRY(tk_push_token(b, p->id));
            continue;
        }
        const char *s = a->text.data + p->off;
        if (pre->kind == TK_PRE_SPLIT) {
            SP_TRY(tk_pre_split(pre, s, p->len, p->at_start, *md, b));
        } else if (pre->kind == TK_PRE_BYTELEVEL) {
            SP_TRY(tk_pre_bytelevel(t->byte_cp, s, p->len, p->at_start, tmp, b));
        } else if (pre->kind == TK_PRE_PREFIX_SPACE) {
            SP_TRY(tk_pre_prefix_space(s, p->len, p->at_start, b));
        } else {
            SP_TRY(tk_pre_metaspace(pre, s, p->len, p->at_start, tmp, b));
        }
    }
    return SPRIG_OK;
}

typedef struct tk_work {
    tk_list a, b;
    sp_tk_buf clean, norm, tmp;
    pcre2_match_data *md;
    sp_tk_bpe_scratch scratch;
    sp_tk_ids ids;
} tk_work;

static sprig_status tk_encode(const sp_tokenizer *t, const char *text, size_t len, int add_special, tk_work *w) {
    /* invalid UTF-8 becomes U+FFFD, so everything below sees valid text */
    if (!sp_tk_utf8_valid(text, len)) {
        SP_TRY(sp_tk_utf8_lossy(text, len, &w->clean));
        text = w->clean.data;
        len = w->clean.len;
    }
    SP_TRY(tk_stage_added(t, text, len, &w->a, &w->b, &w->norm, &w->tmp));
    tk_list *cur = &w->b, *next = &w->a;
    for (size_t k = 0; k < t->n_pres; ++k) {
        SP_TRY(tk_stage_pre(t, &t->pres[k], cur, next, &w->md, &w->tmp));
        tk_list *swap = cur;
        cur = next;
        next = swap;
    }
    if (add_special)
        for (size_t i = 0; i < t->n_prefix; ++i) SP_TRY(sp_tk_ids_push(&w->ids, t->prefix[i]));
    for (size_t i = 0; i < cur->n; ++i) {
        const tk_piece *p = &cur->v[i];
        if (p->id >= 0) SP_TRY(sp_tk_ids_push(&w->ids, p->id));
        else SP_TRY(sp_tk_bpe_encode_word(&t->bpe, cur->text.data + p->off, p->len, &w->scratch, &w->ids));
    }
    if (add_special)
        for (size_t i = 0; i < t->n_suffix; ++i) SP_TRY(sp_tk_ids_push(&w->ids, t->suffix[i]));
    return SPRIG_OK;
}

sprig_status sp_tok_encode(const sp_tokenizer *t, const char *text, size_t len, int add_special, int32_t **ids,
                           size_t *n_ids) {
    *ids = NULL;
    *n_ids = 0;
    if (!text && len) return sp_fail(SPRIG_E_INVALID, "sp_tok_encode: text is NULL");
    tk_work w = {0};
    sprig_status st = tk_encode(t, text ? text : "", len, add_special, &w);
    tk_list_free(&w.a);
    tk_list_free(&w.b);
    sp_tk_buf_free(&w.clean);
    sp_tk_buf_free(&w.norm);
    sp_tk_buf_free(&w.tmp);
    if (w.md) pcre2_match_data_free(w.md);
    sp_tk_bpe_scratch_free(&w.scratch);
    if (st != SPRIG_OK) {
        free(w.ids.v);
        return st;
    }
    if (!w.ids.v) { /* an empty result is still a valid allocation the caller frees */
        w.ids.v = malloc(sizeof(int32_t));
        SP_CHECK_ALLOC(w.ids.v);
    }
    *ids = w.ids.v;
    *n_ids = w.ids.n;
    return SPRIG_OK;
}

/* ---- decoding ------------------------------------------------------------------------------------------- */

struct sp_tok_stream {
    const sp_tokenizer *tok;
    int skip_special;
    sp_tk_buf pending; /* byte-level: an incomplete character; SentencePiece: a run of byte tokens */
    sp_tk_buf out;
    int strip_left; /* leading Strip characters still to remove */
};

sprig_status sp_tok_stream_open(const sp_tokenizer *tok, int skip_special, sp_tok_stream **out) {
    *out = calloc(1, sizeof **out);
    SP_CHECK_ALLOC(*out);
    (*out)->tok = tok;
    (*out)->skip_special = skip_special;
    (*out)->strip_left = tok->strip_start;
    return SPRIG_OK;
}

void sp_tok_stream_close(sp_tok_stream *s) {
    if (!s) return;
    sp_tk_buf_free(&s->pending);
    sp_tk_buf_free(&s->out);
    free(s);
}

/* Appends fused text, removing the Strip decoder's leading characters. */
static sprig_status tk_emit(sp_tok_stream *s, const char *p, size_t n) {
    const sp_tokenizer *t = s->tok;
    while (s->strip_left > 0 && n >= t->strip_clen && t->strip_clen && memcmp(p, t->strip_content, t->strip_clen) == 0) {
        p += t->strip_clen;
        n -= t->strip_clen;
        --s->strip_left;
    }
    if (n) s->strip_left = 0;
    return sp_tk_buf_append(&s->out, p, n);
}

/* ByteFallback: a run of byte tokens is its bytes if they are valid UTF-8,
 * else one U+FFFD per byte. */
static sprig_status tk_flush_bytes(sp_tok_stream *s) {
    if (!s->pending.len) return SPRIG_OK;
    sprig_status st = SPRIG_OK;
    if (sp_tk_utf8_valid(s->pending.data, s->pending.len)) st = tk_emit(s, s->pending.data, s->pending.len);
    else
        for (size_t i = 0; i < s->pending.len && st == SPRIG_OK; ++i) st = tk_emit(s, "\xEF\xBF\xBD", 3);
    s->pending.len = 0;
    return st;
}

/* Byte-level: emits every complete character of pending (U+FFFD for each
 * maximal invalid subpart), keeping an incomplete tail unless final. */
static sprig_status tk_drain_utf8(sp_tok_stream *s, int final) {
    const unsigned char *u = (const unsigned char *)s->pending.data;
    size_t n = s->pending.len, i = 0;
    while (i < n) {
        size_t adv;
        int32_t cp = sp_tk_utf8_next(u + i, n - i, &adv);
        if (cp == SP_TK_UTF8_TRUNCATED && !final) break;
        if (cp >= 0) SP_TRY(sp_tk_buf_append(&s->out, u + i, adv));
        else SP_TRY(sp_tk_buf_append(&s->out, "\xEF\xBF\xBD", 3));
        i += adv;
    }
    if (n > i) memmove(s->pending.data, s->pending.data + i, n - i); /* data is NULL while nothing is pending */
    s->pending.len = n - i;
    return SPRIG_OK;
}

sprig_status sp_tok_stream_push(sp_tok_stream *s, int32_t id, const char **text, size_t *len) {
    const sp_tokenizer *t = s->tok;
    s->out.len = 0;
    SP_TRY(sp_tk_buf_append(&s->out, "", 0));
    *text = s->out.data;
    *len = 0;
    if (id < 0 || id >= t->n_ids || !t->info[id].text) return SPRIG_OK; /* the reference skips unknown ids */
    const tk_info *in = &t->info[id];
    if (s->skip_special && in->special) return SPRIG_OK;
    if (t->dec == TK_DEC_BYTELEVEL) {
        SP_TRY(sp_tk_buf_append(&s->pending, in->piece, in->piece_len));
        SP_TRY(tk_drain_utf8(s, 0));
    } else if (in->byte >= 0) {
        char b = (char)in->byte;
        SP_TRY(sp_tk_buf_append(&s->pending, &b, 1));
    } else {
        SP_TRY(tk_flush_bytes(s));
        SP_TRY(tk_emit(s, in->piece, in->piece_len));
    }
    *text = s->out.data;
    *len = s->out.len;
    return SPRIG_OK;
}

sprig_status sp_tok_stream_finish(sp_tok_stream *s, const char **text, size_t *len) {
    s->out.len = 0;
    SP_TRY(sp_tk_buf_append(&s->out, "", 0));
    if (s->tok->dec == TK_DEC_BYTELEVEL) SP_TRY(tk_drain_utf8(s, 1));
    else SP_TRY(tk_flush_bytes(s));
    s->strip_left = s->tok->strip_start; /* the next text is stripped again */
    *text = s->out.data;
    *len = s->out.len;
    return SPRIG_OK;
}

sprig_status sp_tok_decode(const sp_tokenizer *t, const int32_t *ids, size_t n, int skip_special, char **text,
                           size_t *len) {
    *text = NULL;
    *len = 0;
    sp_tok_stream *s;
    SP_TRY(sp_tok_stream_open(t, skip_special, &s));
    sp_tk_buf all = {0};
    sprig_status st = sp_tk_buf_append(&all, "", 0);
    const char *piece;
    size_t plen;
    for (size_t i = 0; i < n && st == SPRIG_OK; ++i) {
        st = sp_tok_stream_push(s, ids[i], &piece, &plen);
        if (st == SPRIG_OK) st = sp_tk_buf_append(&all, piece, plen);
    }
    if (st == SPRIG_OK) st = sp_tok_stream_finish(s, &piece, &plen);
    if (st == SPRIG_OK) st = sp_tk_buf_append(&all, piece, plen);
    sp_tok_stream_close(s);
    if (st != SPRIG_OK) {
        sp_tk_buf_free(&all);
        return st;
    }
    *text = all.data;
    *len = all.len;
    return SPRIG_OK;
}
