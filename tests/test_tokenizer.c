/* The tokenizer against the Hugging Face `tokenizers` library: every case in
 * tests/fixtures/tokenizers/<name>/cases.json (written by
 * tools/make_tokenizer_fixtures.py from the library's own output) must encode
 * to the same ids and decode to the same text; streaming decode must equal
 * whole decode. Then bad files and bad input: missing file, not JSON,
 * unsupported pieces, truncated and corrupted files (no crash, clear errors).
 *
 * Usage: test_tokenizer FIXTURE_DIR (tests/fixtures/tokenizers). */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include <cjson/cJSON.h>

#include "sp_tokenizer.h"
#include "test_util.h"

static int checks;

static char *read_file(const char *path, size_t *len) {
    FILE *f = fopen(path, "rb");
    if (!f) return NULL;
    fseek(f, 0, SEEK_END);
    long n = ftell(f);
    fseek(f, 0, SEEK_SET);
    char *buf = malloc((size_t)n + 1);
    if (buf && fread(buf, 1, (size_t)n, f) != (size_t)n) {
        free(buf);
        buf = NULL;
    }
    fclose(f);
    if (buf) buf[n] = '\0';
    if (len) *len = (size_t)n;
    return buf;
}

/* The case's input bytes: "bytes_hex" when present (invalid UTF-8), else "text". */
static char *case_bytes(const cJSON *c, size_t *len) {
    const cJSON *hex = cJSON_GetObjectItem(c, "bytes_hex");
    if (cJSON_IsString(hex)) {
        size_t n = strlen(hex->valuestring) / 2;
        char *out = malloc(n + 1);
        for (size_t i = 0; i < n; ++i) {
            unsigned v;
            sscanf(hex->valuestring + 2 * i, "%2x", &v);
            out[i] = (char)v;
        }
        *len = n;
        return out;
    }
    const char *t = cJSON_GetObjectItem(c, "text")->valuestring;
    *len = strlen(t);
    return strdup(t);
}

static int32_t *json_ids(const cJSON *arr, size_t *n) {
    *n = (size_t)cJSON_GetArraySize(arr);
    int32_t *ids = malloc((*n ? *n : 1) * sizeof *ids);
    for (size_t i = 0; i < *n; ++i) ids[i] = (int32_t)cJSON_GetArrayItem(arr, (int)i)->valuedouble;
    return ids;
}

/* Expected text: key_hex when the fixture has it (text holding NUL), else key. */
static char *expected_text(const cJSON *c, const char *key) {
    char hex_key[64];
    snprintf(hex_key, sizeof hex_key, "%s_hex", key);
    const cJSON *hex = cJSON_GetObjectItem(c, hex_key);
    if (!cJSON_IsString(hex)) return strdup(cJSON_GetObjectItem(c, key)->valuestring);
    size_t n = strlen(hex->valuestring) / 2;
    char *out = malloc(n + 1);
    for (size_t i = 0; i < n; ++i) {
        unsigned v;
        sscanf(hex->valuestring + 2 * i, "%2x", &v);
        out[i] = (char)v;
    }
    out[n] = '\0';
    return out;
}

static void print_ids(const char *what, const int32_t *ids, size_t n) {
    fprintf(stderr, "    %s:", what);
    for (size_t i = 0; i < n; ++i) fprintf(stderr, " %d", (int)ids[i]);
    fputc('\n', stderr);
}

/* Strict UTF-8 check written independently of the library's. */
static int valid_utf8(const unsigned char *s, size_t n) {
    for (size_t i = 0; i < n;) {
        unsigned c = s[i];
        size_t need;
        uint32_t cp, min;
        if (c < 0x80) {
            ++i;
            continue;
        }
        if ((c & 0xE0) == 0xC0) need = 1, cp = c & 0x1F, min = 0x80;
        else if ((c & 0xF0) == 0xE0) need = 2, cp = c & 0x0F, min = 0x800;
        else if ((c & 0xF8) == 0xF0) need = 3, cp = c & 0x07, min = 0x10000;
        else return 0;
        if (i + need >= n) return 0;
        for (size_t j = 1; j <= need; ++j) {
            if ((s[i + j] & 0xC0) != 0x80) return 0;
            cp = (cp << 6) | (s[i + j] & 0x3F);
        }
        if (cp < min || cp > 0x10FFFF || (cp >= 0xD800 && cp <= 0xDFFF)) return 0;
        i += need + 1;
    }
    return 1;
}

/* Encodes and compares with the expected ids. */
static void check_encode(const sp_tokenizer *tok, const char *name, int idx, const char *text, size_t len,
                         int add_special, const cJSON *expected) {
    size_t n_exp;
    int32_t *exp = json_ids(expected, &n_exp);
    int32_t *ids = NULL;
    size_t n = 0;
    sprig_status st = sp_tok_encode(tok, text, len, add_special, &ids, &n);
    ++checks;
    int same = st == SPRIG_OK && n == n_exp && (n == 0 || memcmp(ids, exp, n * sizeof *ids) == 0);
    CHECK_MSG(same, "%s case %d (add_special=%d) \"%s\": %s", name, idx, add_special, text,
              st == SPRIG_OK ? "ids differ" : sprig_last_error());
    if (!same && st == SPRIG_OK) {
        print_ids("expected", exp, n_exp);
        print_ids("got     ", ids, n);
    }
    free(ids);
    free(exp);
}

/* Decodes whole and streamed; both must equal the expected text, and every
 * streamed piece must be valid UTF-8 on its own. */
static void check_decode(const sp_tokenizer *tok, const char *name, const char *label, const int32_t *ids,
                         size_t n, int skip, const cJSON *c, const char *key) {
    char *expected = expected_text(c, key);
    size_t exp_len = strlen(expected);
    const cJSON *hex = NULL;
    char hex_key[64];
    snprintf(hex_key, sizeof hex_key, "%s_hex", key);
    if ((hex = cJSON_GetObjectItem(c, hex_key)) != NULL) exp_len = strlen(hex->valuestring) / 2;
    char *text = NULL;
    size_t len = 0;
    sprig_status st = sp_tok_decode(tok, ids, n, skip, &text, &len);
    ++checks;
    CHECK_MSG(st == SPRIG_OK && len == exp_len && memcmp(text, expected, len) == 0,
              "%s %s decode(skip=%d): expected \"%s\", got \"%s\"", name, label, skip, expected,
              text ? text : sprig_last_error());
    free(text);

    sp_tok_stream *s = NULL;
    CHECK(sp_tok_stream_open(tok, skip, &s) == SPRIG_OK);
    if (!s) {
        free(expected);
        return;
    }
    size_t cap = 64, used = 0;
    char *all = malloc(cap);
    int pieces_valid = 1;
    for (size_t i = 0; i <= n; ++i) {
        const char *piece;
        size_t plen;
        st = i < n ? sp_tok_stream_push(s, ids[i], &piece, &plen) : sp_tok_stream_finish(s, &piece, &plen);
        CHECK(st == SPRIG_OK);
        if (st != SPRIG_OK) break;
        if (!valid_utf8((const unsigned char *)piece, plen)) pieces_valid = 0;
        while (used + plen + 1 > cap) cap *= 2;
        all = realloc(all, cap);
        memcpy(all + used, piece, plen);
        used += plen;
    }
    sp_tok_stream_close(s);
    ++checks;
    CHECK_MSG(used == exp_len && memcmp(all, expected, used) == 0,
              "%s %s streamed decode(skip=%d) differs: expected \"%s\", got \"%.*s\"", name, label, skip,
              expected, (int)used, all);
    CHECK_MSG(pieces_valid, "%s %s: a streamed piece is not valid UTF-8", name, label);
    free(all);
    free(expected);
}

static void run_fixture(const char *dir, const char *name) {
    char path[1024];
    snprintf(path, sizeof path, "%s/%s/tokenizer.json", dir, name);
    sp_tokenizer *tok = NULL;
    sprig_status st = sp_tok_open(path, &tok);
    CHECK_MSG(st == SPRIG_OK, "opening %s: %s", path, sprig_last_error());
    if (!tok) return;
    snprintf(path, sizeof path, "%s/%s/cases.json", dir, name);
    char *json = read_file(path, NULL);
    CHECK_MSG(json != NULL, "cannot read %s", path);
    cJSON *doc = json ? cJSON_Parse(json) : NULL;
    free(json);
    CHECK_MSG(doc != NULL, "%s is not JSON", path);
    if (!doc) {
        sp_tok_close(tok);
        return;
    }
    CHECK(sp_tok_n_ids(tok) == (int32_t)cJSON_GetObjectItem(doc, "vocab_size")->valuedouble);
    const cJSON *sp;
    cJSON_ArrayForEach(sp, cJSON_GetObjectItem(doc, "special")) {
        CHECK_MSG(sp_tok_find(tok, sp->string) == (int32_t)sp->valuedouble, "%s: id of %s", name, sp->string);
        CHECK(sp_tok_is_special(tok, (int32_t)sp->valuedouble));
        CHECK(strcmp(sp_tok_text(tok, (int32_t)sp->valuedouble), sp->string) == 0);
    }

    int idx = 0;
    const cJSON *c;
    cJSON_ArrayForEach(c, cJSON_GetObjectItem(doc, "cases")) {
        size_t len;
        char *text = case_bytes(c, &len);
        check_encode(tok, name, idx, text, len, 0, cJSON_GetObjectItem(c, "ids"));
        check_encode(tok, name, idx, text, len, 1, cJSON_GetObjectItem(c, "ids_special"));
        size_t n;
        int32_t *ids = json_ids(cJSON_GetObjectItem(c, "ids"), &n);
        char label[32];
        snprintf(label, sizeof label, "case %d", idx);
        check_decode(tok, name, label, ids, n, 1, c, "decoded");
        free(ids);
        ids = json_ids(cJSON_GetObjectItem(c, "ids_special"), &n);
        check_decode(tok, name, label, ids, n, 0, c, "decoded_keep");
        free(ids);
        free(text);
        ++idx;
    }
    idx = 0;
    cJSON_ArrayForEach(c, cJSON_GetObjectItem(doc, "decode_cases")) {
        size_t n;
        int32_t *ids = json_ids(cJSON_GetObjectItem(c, "ids"), &n);
        char label[32];
        snprintf(label, sizeof label, "decode case %d", idx);
        check_decode(tok, name, label, ids, n, 1, c, "decoded");
        check_decode(tok, name, label, ids, n, 0, c, "decoded_keep");
        free(ids);
        ++idx;
    }
    printf("  %s: %d encode cases, %d decode cases\n", name, cJSON_GetArraySize(cJSON_GetObjectItem(doc, "cases")),
           idx);
    cJSON_Delete(doc);
    sp_tok_close(tok);
}

/* The lookups the runtime uses. */
static void check_api(const char *dir) {
    char path[1024];
    sp_tokenizer *l2 = NULL, *l3 = NULL;
    snprintf(path, sizeof path, "%s/llama2/tokenizer.json", dir);
    CHECK(sp_tok_open(path, &l2) == SPRIG_OK);
    snprintf(path, sizeof path, "%s/llama3/tokenizer.json", dir);
    CHECK(sp_tok_open(path, &l3) == SPRIG_OK);
    if (!l2 || !l3) {
        sp_tok_close(l2);
        sp_tok_close(l3);
        return;
    }
    CHECK(strcmp(sp_tok_kind(l2), "sentencepiece-bpe") == 0);
    CHECK(strcmp(sp_tok_kind(l3), "byte-level-bpe") == 0);
    CHECK(sp_tok_bos_id(l2) == 1 && sp_tok_eos_id(l2) == 2);
    /* LLaMA-3 layout: specials follow the model vocab, begin then end of text */
    CHECK(sp_tok_bos_id(l3) == sp_tok_find(l3, "<|begin_of_text|>") && sp_tok_bos_id(l3) >= 900);
    CHECK(sp_tok_eos_id(l3) == sp_tok_find(l3, "<|end_of_text|>") && sp_tok_eos_id(l3) == sp_tok_bos_id(l3) + 1);
    CHECK(sp_tok_find(l2, "<0x0A>") == 3 + 0x0A);
    CHECK(sp_tok_find(l2, "no such token") == -1);
    CHECK(sp_tok_text(l2, -1) == NULL && sp_tok_text(l2, sp_tok_n_ids(l2)) == NULL);
    CHECK(!sp_tok_is_special(l2, 3) && sp_tok_is_special(l2, 1));

    /* add_special puts BOS first; the stream strips the SentencePiece leading space once per text */
    int32_t *ids;
    size_t n;
    CHECK(sp_tok_encode(l2, "Hello", 5, 1, &ids, &n) == SPRIG_OK && n >= 2 && ids[0] == 1);
    if (ids) {
        sp_tok_stream *s;
        CHECK(sp_tok_stream_open(l2, 1, &s) == SPRIG_OK);
        const char *piece;
        size_t plen;
        char out[64] = "";
        for (int round = 0; round < 2; ++round) {
            out[0] = '\0';
            for (size_t i = 0; i < n; ++i) {
                CHECK(sp_tok_stream_push(s, ids[i], &piece, &plen) == SPRIG_OK);
                strncat(out, piece, plen);
            }
            CHECK(sp_tok_stream_finish(s, &piece, &plen) == SPRIG_OK && plen == 0);
            CHECK_MSG(strcmp(out, "Hello") == 0, "round %d: \"%s\"", round, out);
        }
        sp_tok_stream_close(s);
        free(ids);
    }
    /* byte-level: an emoji split over byte tokens is held back until complete */
    CHECK(sp_tok_encode(l3, "\xF0\x9F\x99\x82", 4, 0, &ids, &n) == SPRIG_OK && n > 1);
    if (ids) {
        sp_tok_stream *s;
        CHECK(sp_tok_stream_open(l3, 1, &s) == SPRIG_OK);
        const char *piece;
        size_t plen, total = 0;
        for (size_t i = 0; i < n; ++i) {
            CHECK(sp_tok_stream_push(s, ids[i], &piece, &plen) == SPRIG_OK);
            CHECK(i + 1 == n ? plen == 4 : plen == 0);
            total += plen;
        }
        CHECK(total == 4);
        sp_tok_stream_close(s);
        free(ids);
    }
    /* ids out of range are ignored, as by the reference */
    int32_t odd[] = {-5, 1, 1 << 30, 410};
    char *text;
    size_t len;
    CHECK(sp_tok_decode(l2, odd, 4, 1, &text, &len) == SPRIG_OK);
    CHECK(text && strcmp(text, sp_tok_text(l2, 410) + strlen("\xE2\x96\x81")) == 0);
    free(text);
    /* NUL bytes inside the text are text, not the end of it */
    CHECK(sp_tok_encode(l3, "a\0b", 3, 0, &ids, &n) == SPRIG_OK && n >= 2);
    free(ids);
    sp_tok_close(l2);
    sp_tok_close(l3);

    /* GPT-2 style and Qwen2: byte-level; <|endoftext|> ends text when nothing
     * else does; a template's first token is BOS */
    const char *bl_names[] = {"smollm2", "starcoder-prefix", "qwen2"};
    for (int k = 0; k < 3; ++k) {
        sp_tokenizer *t = NULL;
        snprintf(path, sizeof path, "%s/%s/tokenizer.json", dir, bl_names[k]);
        CHECK(sp_tok_open(path, &t) == SPRIG_OK);
        if (!t) continue;
        CHECK(strcmp(sp_tok_kind(t), "byte-level-bpe") == 0);
        CHECK_MSG(sp_tok_eos_id(t) >= 0 && sp_tok_eos_id(t) == sp_tok_find(t, "<|endoftext|>"), "%s: eos %d",
                  bl_names[k], (int)sp_tok_eos_id(t));
        CHECK_MSG(sp_tok_bos_id(t) == (k == 1 ? sp_tok_find(t, "<|endoftext|>") : -1), "%s: bos %d", bl_names[k],
                  (int)sp_tok_bos_id(t));
        sp_tok_close(t);
    }
}

static void expect_fail(const char *json, sprig_status want, const char *needle) {
    sp_tokenizer *tok = (sp_tokenizer *)1;
    sprig_status st = sp_tok_open_json(json, strlen(json), "test.json", &tok);
    ++checks;
    CHECK_MSG(st == want && tok == NULL && sp_contains(sprig_last_error(), needle),
              "expected %s containing \"%s\", got %s: %s", sprig_status_name(want), needle, sprig_status_name(st),
              sprig_last_error());
    if (st == SPRIG_OK) sp_tok_close(tok);
}

#define MODEL_OK "\"model\":{\"type\":\"BPE\",\"vocab\":{\"a\":0,\"b\":1,\"ab\":2},\"merges\":[\"a b\"]}"
#define DECODER_OK "\"decoder\":{\"type\":\"ByteLevel\"}"

static void check_bad_files(const char *dir) {
    sp_tokenizer *tok = (sp_tokenizer *)1;
    CHECK(sp_tok_open("/nonexistent/tokenizer.json", &tok) == SPRIG_E_IO && tok == NULL);
    CHECK(sp_contains(sprig_last_error(), "/nonexistent/tokenizer.json"));
    expect_fail("", SPRIG_E_FORMAT, "not valid JSON");
    expect_fail("{\"model\": {", SPRIG_E_FORMAT, "not valid JSON");
    expect_fail("[1, 2]", SPRIG_E_FORMAT, "not a tokenizer.json");
    expect_fail("{}", SPRIG_E_FORMAT, "\"model\" is missing");
    expect_fail("{\"model\":{\"type\":\"WordPiece\",\"vocab\":{}}}", SPRIG_E_FORMAT,
                "unsupported tokenizer: model type \"WordPiece\"");
    expect_fail("{\"model\":{\"type\":\"Unigram\"}}", SPRIG_E_FORMAT, "unsupported tokenizer");
    expect_fail("{\"model\":{\"type\":\"BPE\",\"vocab\":{\"a\":0},\"merges\":[\"a b\"]}," DECODER_OK "}",
                SPRIG_E_FORMAT, "is not in the vocab");
    expect_fail("{\"model\":{\"type\":\"BPE\",\"vocab\":{\"a\":-1}}," DECODER_OK "}", SPRIG_E_FORMAT, "no valid id");
    expect_fail("{\"model\":{\"type\":\"BPE\",\"vocab\":{\"a\":0,\"b\":0}}," DECODER_OK "}", SPRIG_E_FORMAT,
                "gives id 0 to both");
    expect_fail("{\"model\":{\"type\":\"BPE\",\"vocab\":{\"a\":0},\"merges\":[\"a b c\"]}," DECODER_OK "}",
                SPRIG_E_FORMAT, "neither");
    expect_fail("{\"model\":{\"type\":\"BPE\",\"dropout\":0.1,\"vocab\":{}}," DECODER_OK "}", SPRIG_E_FORMAT,
                "unsupported tokenizer: BPE dropout");
    expect_fail("{" MODEL_OK ",\"normalizer\":{\"type\":\"NFKC\"}," DECODER_OK "}", SPRIG_E_FORMAT,
                "unsupported tokenizer: normalizer \"NFKC\"");
    expect_fail("{" MODEL_OK ",\"pre_tokenizer\":{\"type\":\"Whitespace\"}," DECODER_OK "}", SPRIG_E_FORMAT,
                "unsupported tokenizer: pre_tokenizer \"Whitespace\"");
    expect_fail("{" MODEL_OK ",\"pre_tokenizer\":{\"type\":\"Split\",\"pattern\":{\"Regex\":\"(\"},"
                "\"behavior\":\"Isolated\",\"invert\":false}," DECODER_OK "}",
                SPRIG_E_FORMAT, "does not compile");
    expect_fail("{" MODEL_OK ",\"pre_tokenizer\":{\"type\":\"Split\",\"pattern\":{\"Regex\":\"a\"},"
                "\"behavior\":\"Removed\",\"invert\":false}," DECODER_OK "}",
                SPRIG_E_FORMAT, "Split behavior \"Removed\"");
    expect_fail("{" MODEL_OK ",\"pre_tokenizer\":{\"type\":\"ByteLevel\",\"add_prefix_space\":false,"
                "\"use_regex\":\"yes\"}," DECODER_OK "}",
                SPRIG_E_FORMAT, "use_regex must be booleans");
    /* Falcon's pre-tokenizer starts with Punctuation: still not supported */
    expect_fail("{" MODEL_OK ",\"pre_tokenizer\":{\"type\":\"Sequence\",\"pretokenizers\":["
                "{\"type\":\"Punctuation\",\"behavior\":\"Contiguous\"},"
                "{\"type\":\"ByteLevel\",\"add_prefix_space\":false,\"use_regex\":true}]}," DECODER_OK "}",
                SPRIG_E_FORMAT, "unsupported tokenizer: pre_tokenizer \"Punctuation\"");
    /* 16 steps at most, counting the 3 a GPT-2 ByteLevel becomes */
    {
        char big[2048] = "{" MODEL_OK ",\"pre_tokenizer\":{\"type\":\"Sequence\",\"pretokenizers\":[";
        for (int i = 0; i < 6; ++i)
            strcat(big, "{\"type\":\"ByteLevel\",\"add_prefix_space\":true,\"use_regex\":true},");
        strcat(big, "{\"type\":\"Digits\"}]}," DECODER_OK "}");
        expect_fail(big, SPRIG_E_FORMAT, "more than 16 steps");
    }
    expect_fail("{" MODEL_OK "}", SPRIG_E_FORMAT, "unsupported tokenizer: no decoder");
    expect_fail("{" MODEL_OK ",\"decoder\":{\"type\":\"WordPiece\"}}", SPRIG_E_FORMAT, "decoder step \"WordPiece\"");
    expect_fail("{" MODEL_OK ",\"decoder\":{\"type\":\"Sequence\",\"decoders\":[{\"type\":\"Strip\",\"content\":\" \","
                "\"start\":1,\"stop\":0}]}}",
                SPRIG_E_FORMAT, "decoder step \"Strip\"");
    expect_fail("{" MODEL_OK ",\"post_processor\":{\"type\":\"BertProcessing\"}," DECODER_OK "}", SPRIG_E_FORMAT,
                "unsupported tokenizer: post_processor \"BertProcessing\"");
    expect_fail("{" MODEL_OK ",\"added_tokens\":[{\"id\":3,\"content\":\"<m>\",\"lstrip\":true}]," DECODER_OK "}",
                SPRIG_E_FORMAT, "lstrip=true");

    /* The smallest accepted file works: "ab" merges. */
    const char *tiny = "{" MODEL_OK "," DECODER_OK "}";
    CHECK(sp_tok_open_json(tiny, strlen(tiny), "tiny", &tok) == SPRIG_OK);
    if (tok) {
        int32_t *ids;
        size_t n;
        CHECK(sp_tok_encode(tok, "abxa", 4, 1, &ids, &n) == SPRIG_OK);
        CHECK(n == 2 && ids[0] == 2 && ids[1] == 0); /* 'x' has no token, no unk, no byte fallback: dropped */
        free(ids);
        sp_tok_close(tok);
    }

    /* Truncated and corrupted real files: an error or a working tokenizer, never a crash. */
    char path[1024];
    snprintf(path, sizeof path, "%s/llama3/tokenizer.json", dir);
    size_t len;
    char *json = read_file(path, &len);
    CHECK(json != NULL);
    if (!json) return;
    int failures_ok = 1;
    for (size_t cut = 0; cut < len; cut += 211) {
        sprig_status st = sp_tok_open_json(json, cut, "truncated", &tok);
        if (st != SPRIG_E_FORMAT) failures_ok = 0;
        if (st == SPRIG_OK) sp_tok_close(tok);
    }
    CHECK_MSG(failures_ok, "a truncated tokenizer.json was not SPRIG_E_FORMAT");
    char *copy = malloc(len);
    unsigned seed = 12345;
    int opened = 0;
    for (int round = 0; round < 300; ++round) {
        memcpy(copy, json, len);
        /* one byte becomes a letter: often still JSON, so the loader's own checks are reached */
        seed = seed * 1103515245u + 12345u;
        size_t at = (seed >> 8) % len;
        seed = seed * 1103515245u + 12345u;
        copy[at] = (char)('a' + (seed >> 16) % 26);
        sprig_status st = sp_tok_open_json(copy, len, "corrupted", &tok);
        CHECK(st == SPRIG_OK || st == SPRIG_E_FORMAT);
        if (st == SPRIG_OK) {
            ++opened;
            int32_t *ids;
            size_t n;
            const char *probe = "Hello, world! 12345 caf\xC3\xA9 <|eot_id|>";
            CHECK(sp_tok_encode(tok, probe, strlen(probe), 1, &ids, &n) == SPRIG_OK);
            char *text;
            size_t tlen;
            CHECK(sp_tok_decode(tok, ids, n, 0, &text, &tlen) == SPRIG_OK);
            free(text);
            free(ids);
            sp_tok_close(tok);
        }
    }
    printf("  corrupted files: %d of 300 still opened (and encoded)\n", opened);
    free(copy);
    free(json);
}

/* Long mixed text: decode(encode(x)) == x, and encoding is not quadratic in
 * the length of a word (LLaMA-2 has no pre-tokenizer: the whole text is one). */
static void check_roundtrip(const char *dir) {
    static const char *snippets[] = {"Hello", " world", "  ", "\n", "\t", "caf\xC3\xA9", " 12345", "\xE6\x97\xA5\xE6\x9C\xAC",
                                     "\xF0\x9F\x99\x82", " don't", "\xE1\x9A\xA0", "x=f(y);", "\r\n", "   ", "\xC2\xA0"};
    const size_t n_snip = sizeof snippets / sizeof *snippets;
    size_t cap = 1 << 18, len = 0;
    char *text = malloc(cap);
    unsigned seed = 7;
    while (len + 16 < cap) {
        seed = seed * 1103515245u + 12345u;
        const char *sn = snippets[(seed >> 16) % n_snip];
        memcpy(text + len, sn, strlen(sn));
        len += strlen(sn);
    }
    /* (not starcoder-prefix: add_prefix_space adds a space the decoder keeps) */
    const char *names[] = {"llama2", "llama2-metaspace", "llama3", "smollm2", "qwen2"};
    for (int k = 0; k < 5; ++k) {
        char path[1024];
        snprintf(path, sizeof path, "%s/%s/tokenizer.json", dir, names[k]);
        sp_tokenizer *tok = NULL;
        CHECK(sp_tok_open(path, &tok) == SPRIG_OK);
        if (!tok) continue;
        clock_t t0 = clock();
        int32_t *ids = NULL;
        size_t n = 0;
        CHECK(sp_tok_encode(tok, text, len, 0, &ids, &n) == SPRIG_OK);
        double ms = 1000.0 * (double)(clock() - t0) / CLOCKS_PER_SEC;
        char *back = NULL;
        size_t back_len = 0;
        CHECK(sp_tok_decode(tok, ids, n, 1, &back, &back_len) == SPRIG_OK);
        ++checks;
        CHECK_MSG(back && back_len == len && memcmp(back, text, len) == 0, "%s: decode(encode(x)) != x", names[k]);
        CHECK_MSG(ms < 5000, "%s: encoding %zu bytes took %.0f ms", names[k], len, ms);
        printf("  %s: %zu bytes -> %zu tokens in %.1f ms, round trip ok\n", names[k], len, n, ms);
        free(ids);
        free(back);
        sp_tok_close(tok);
    }
    free(text);
}

int main(int argc, char **argv) {
    const char *dir = argc > 1 ? argv[1] : "tests/fixtures/tokenizers";
    const char *names[] = {"llama2", "llama2-metaspace", "llama2-normalized", "llama3",
                           "smollm2", "starcoder-prefix", "qwen2"};
    for (size_t i = 0; i < sizeof names / sizeof *names; ++i) run_fixture(dir, names[i]);
    check_api(dir);
    check_roundtrip(dir);
    check_bad_files(dir);
    return sp_test_finish("test_tokenizer", checks);
}
