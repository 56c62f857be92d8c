/* GGUF: dequantizers bit-exact against gguf-py, the parser on a file gguf-py
 * wrote, the LLaMA mapping (names, shapes, q/k un-permutation, tied embeddings)
 * against hashes computed in Python, the tokenizer from the metadata (byte-level and
 * SentencePiece-style "llama" vocabularies) against transformers' GGUF converter, and
 * corrupt files refused with one line.
 * Fixtures: tools/make_gguf_fixtures.py. argv[1]: tests/fixtures/gguf. */
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cjson/cJSON.h>

#include "sp_error.h"
#include "sp_file.h"
#include "sp_gguf.h"
#include "sp_model.h"
#include "sp_model_files.h"
#include "test_util.h"

static int checks;
static const char *dir;

static char *slurp(const char *name, size_t *len) {
    char path[4096], *buf = NULL;
    snprintf(path, sizeof path, "%s/%s", dir, name);
    if (sp_file_read(path, 64u << 20, &buf, len, NULL) != SPRIG_OK) {
        fprintf(stderr, "cannot read %s: %s\n", path, sprig_last_error());
        exit(1);
    }
    return buf;
}

/* ---- dequantization ------------------------------------------------------------------ */

static void test_dequant(const char *type_name, uint32_t type) {
    char name[64];
    size_t nraw, nref;
    snprintf(name, sizeof name, "%s.bin", type_name);
    char *raw = slurp(name, &nraw);
    snprintf(name, sizeof name, "%s.f32", type_name);
    char *ref = slurp(name, &nref);
    const size_t n = nref / 4;
    CHECK(n > 0 && nraw / sp_ggml_block_bytes(type) * sp_ggml_block_elems(type) == n);
    float *got = malloc(n * sizeof *got);
    ++checks;
    CHECK(sp_gguf_dequantize(type, raw, n, got) == SPRIG_OK);
    size_t diff = 0, first = n;
    for (size_t i = 0; i < n; ++i)
        if (memcmp(&got[i], ref + 4 * i, 4) != 0) {  /* bits, so -0.0 vs 0.0 counts */
            if (first == n) first = i;
            ++diff;
        }
    if (diff) {
        float r;
        memcpy(&r, ref + 4 * first, 4);
        fprintf(stderr, "%s: %zu of %zu values differ; first at %zu: %.9g vs gguf-py %.9g\n", type_name, diff, n,
                first, got[first], r);
    } else {
        printf("%s: %zu values bit-identical to gguf-py\n", type_name, n);
    }
    CHECK_MSG(diff == 0, "%s dequantization", type_name);
    free(got);
    free(raw);
    free(ref);
}

/* ---- the parser on tiny.gguf ---------------------------------------------------------------- */

static void test_parse(void) {
    size_t len;
    char *buf = slurp("tiny.gguf", &len);
    sp_gguf *g = NULL;
    ++checks;
    CHECK(sp_gguf_parse(buf, len, "tiny.gguf", &g) == SPRIG_OK);
    if (!g) {
        fprintf(stderr, "%s\n", sprig_last_error());
        free(buf);
        return;
    }
    CHECK(sp_gguf_version(g) == 3 && sp_gguf_alignment(g) == 32);
    int64_t i;
    double f;
    char s[64];
    CHECK(sp_gguf_get_int(g, "test.u8", 1, 0, 1000, &i) == SPRIG_OK && i == 200);
    CHECK(sp_gguf_get_int(g, "test.i8", 1, -1000, 1000, &i) == SPRIG_OK && i == -5);
    CHECK(sp_gguf_get_int(g, "test.u16", 1, 0, 100000, &i) == SPRIG_OK && i == 60000);
    CHECK(sp_gguf_get_int(g, "test.i16", 1, -100000, 0, &i) == SPRIG_OK && i == -30000);
    CHECK(sp_gguf_get_int(g, "test.u32", 1, 0, INT64_MAX, &i) == SPRIG_OK && i == 4000000000LL);
    CHECK(sp_gguf_get_int(g, "test.i32", 1, INT64_MIN, 0, &i) == SPRIG_OK && i == -2000000000LL);
    CHECK(sp_gguf_get_int(g, "test.u64", 1, 0, INT64_MAX, &i) == SPRIG_OK && i == (1LL << 40));
    CHECK(sp_gguf_get_int(g, "test.i64", 1, INT64_MIN, 0, &i) == SPRIG_OK && i == -(1LL << 40));
    CHECK(sp_gguf_get_int(g, "test.u8", 1, 0, 100, &i) == SPRIG_E_FORMAT && sp_contains(sprig_last_error(), "test.u8"));
    CHECK(sp_gguf_get_double(g, "test.f32", 1, &f) == SPRIG_OK && f == 0.25);
    CHECK(sp_gguf_get_double(g, "test.f64", 1, &f) == SPRIG_OK && f == 1.0 / 3.0);
    CHECK(sp_gguf_get_str(g, "test.str", 1, s, sizeof s) == SPRIG_OK && strcmp(s, "h\xc3\xa9llo") == 0);
    CHECK(sp_gguf_get_str(g, "test.u8", 1, s, sizeof s) == SPRIG_E_FORMAT);
    CHECK(sp_gguf_get_str(g, "no.such.key", 1, s, sizeof s) == SPRIG_E_FORMAT &&
          sp_contains(sprig_last_error(), "no.such.key"));
    const sp_gguf_kv *kv = sp_gguf_find_kv(g, "test.bool");
    CHECK(kv && kv->type == SP_GGUF_BOOL && kv->u == 1);
    kv = sp_gguf_find_kv(g, "test.arr_i32");
    CHECK(kv && kv->type == SP_GGUF_ARRAY && kv->arr_type == SP_GGUF_I32 && kv->n == 3 &&
          sp_gguf_arr_int(kv, 1) == -2 && sp_gguf_arr_int(kv, 2) == 3);
    kv = sp_gguf_find_kv(g, "test.arr_arr");
    CHECK(kv && kv->arr_type == SP_GGUF_ARRAY && kv->n == 2);
    kv = sp_gguf_find_kv(g, "tokenizer.ggml.tokens");
    CHECK(kv && kv->arr_type == SP_GGUF_STRING && kv->n == 48 && kv->arr_str[3].len == 1 &&
          kv->arr_str[3].s[0] == 'a' && kv->arr_str[0].len == 13 && memcmp(kv->arr_str[0].s, "<|endoftext|>", 13) == 0);
    CHECK(sp_gguf_n_tensors(g) == 20);
    const sp_gguf_tensor *t = sp_gguf_find_tensor(g, "blk.1.ffn_down.weight");
    CHECK(t && t->type == SP_GGML_Q6_K && t->n_dims == 2 && t->ne[0] == 256 && t->ne[1] == 64 && t->nbytes == 64 * 210);
    CHECK(sp_gguf_find_tensor(g, "output.weight") == NULL);
    sp_gguf_close(g);
    free(buf);
}

/* ---- the model mapping ---------------------------------------------------------------------------- */

static uint64_t fnv1a64_f32(const sp_tensor *t) {
    uint64_t h = 0xCBF29CE484222325ULL;
    const int64_t cols = t->shape[t->ndim - 1];
    int64_t rows = 1;
    for (int d = 0; d < t->ndim - 1; ++d) rows *= t->shape[d];
    float *row = malloc(sizeof(float) * (size_t)cols);
    for (int64_t r = 0; r < rows; ++r) {
        sp_tensor_row(t, r, row);
        const unsigned char *b = (const unsigned char *)row;
        for (size_t k = 0; k < sizeof(float) * (size_t)cols; ++k) h = (h ^ b[k]) * 0x100000001B3ULL;
    }
    free(row);
    return h;
}

static void test_model(void) {
    char path[4096];
    snprintf(path, sizeof path, "%s/tiny.gguf", dir);
    size_t jlen;
    char *json = slurp("tiny.json", &jlen);
    cJSON *root = cJSON_Parse(json);
    free(json);
    CHECK(root != NULL);
    if (!root) return;
    sp_model *m = NULL;
    ++checks;
    sprig_status s = sp_model_open(path, &m);
    CHECK_MSG(s == SPRIG_OK, "%s", sprig_last_error());
    if (s != SPRIG_OK) {
        cJSON_Delete(root);
        return;
    }
    const sp_model_config *c = m->cfg;
    const cJSON *cj = cJSON_GetObjectItem(root, "config");
#define CFG_INT(field, key) CHECK_MSG(c->field == cJSON_GetObjectItem(cj, key)->valueint, "%s: %d", key, (int)c->field)
    CFG_INT(hidden_size, "hidden_size");
    CFG_INT(intermediate_size, "intermediate_size");
    CFG_INT(num_hidden_layers, "num_hidden_layers");
    CFG_INT(num_attention_heads, "num_attention_heads");
    CFG_INT(num_key_value_heads, "num_key_value_heads");
    CFG_INT(head_dim, "head_dim");
    CFG_INT(max_position_embeddings, "max_position_embeddings");
    CFG_INT(vocab_size, "vocab_size");
    CFG_INT(bos_token_id, "bos_token_id");
    CHECK(c->n_eos == 1 && c->eos_token_ids[0] == cJSON_GetObjectItem(cj, "eos_token_id")->valueint);
    CHECK(c->tie_word_embeddings == 1 && m->lm_head == m->embed);
    CHECK(c->rope_theta == cJSON_GetObjectItem(cj, "rope_theta")->valuedouble);
    /* the file holds eps as f32: compare at that precision */
    CHECK((float)c->rms_norm_eps == (float)cJSON_GetObjectItem(cj, "rms_norm_eps")->valuedouble);
    const cJSON *tensors = cJSON_GetObjectItem(root, "tensors"), *e;
    int n = 0;
    cJSON_ArrayForEach(e, tensors) {
        ++n;
        const sp_tensor *t = sp_model_files_find(m->files, e->string);
        CHECK_MSG(t != NULL, "missing %s", e->string);
        if (!t) continue;
        const cJSON *shape = cJSON_GetObjectItem(e, "shape");
        CHECK_MSG(t->ndim == cJSON_GetArraySize(shape), "%s ndim", e->string);
        for (int d = 0; d < t->ndim && d < cJSON_GetArraySize(shape); ++d)
            CHECK_MSG(t->shape[d] == cJSON_GetArrayItem(shape, d)->valueint, "%s shape[%d]", e->string, d);
        char hex[17];
        snprintf(hex, sizeof hex, "%016" PRIx64, fnv1a64_f32(t));
        CHECK_MSG(strcmp(hex, cJSON_GetObjectItem(e, "fnv1a64")->valuestring) == 0, "%s: values differ from gguf-py "
                  "(hash %s, want %s)", e->string, hex, cJSON_GetObjectItem(e, "fnv1a64")->valuestring);
        const int64_t cols = t->shape[t->ndim - 1];
        float *row = malloc(sizeof(float) * (size_t)cols);
        const cJSON *smp;
        cJSON_ArrayForEach(smp, cJSON_GetObjectItem(e, "samples")) {
            const int64_t idx = (int64_t)cJSON_GetArrayItem(smp, 0)->valuedouble;
            sp_tensor_row(t, idx / cols, row);
            CHECK_MSG(row[idx % cols] == (float)cJSON_GetArrayItem(smp, 1)->valuedouble, "%s[%" PRId64 "]: %.9g vs %.9g",
                      e->string, idx, row[idx % cols], cJSON_GetArrayItem(smp, 1)->valuedouble);
        }
        free(row);
    }
    CHECK(n == 20 && sp_model_files_count(m->files) == 20);
    sp_model_close(m);
    cJSON_Delete(root);
}

/* ---- the tokenizer from metadata ------------------------------------------------------------ */

static void test_tokenizer(void) {
    size_t jlen;
    char *json = slurp("tiny.json", &jlen);
    cJSON *root = cJSON_Parse(json);
    free(json);
    char path[4096];
    snprintf(path, sizeof path, "%s/tok.gguf", dir);
    sp_tokenizer *tok = NULL;
    ++checks;
    sprig_status s = sp_gguf_tokenizer(path, &tok);
    CHECK_MSG(s == SPRIG_OK, "%s", sprig_last_error());
    const cJSON *c;
    const cJSON *cases = root ? cJSON_GetObjectItem(root, "tokenizer") : NULL;
    CHECK(cJSON_GetArraySize(cases) == 4);
    cJSON_ArrayForEach(c, cases) {
        if (!tok) break;
        const char *text = cJSON_GetObjectItem(c, "text")->valuestring;
        const cJSON *want = cJSON_GetObjectItem(c, "ids");
        int32_t *ids = NULL;
        size_t n = 0;
        ++checks;
        CHECK(sp_tok_encode(tok, text, strlen(text), 1, &ids, &n) == SPRIG_OK);
        int same = (int)n == cJSON_GetArraySize(want);
        for (size_t i = 0; same && i < n; ++i) same = ids[i] == cJSON_GetArrayItem(want, (int)i)->valueint;
        CHECK_MSG(same, "'%s': %zu ids, not transformers' %d (first %d)", text, n, cJSON_GetArraySize(want),
                  n ? ids[0] : -1);
        free(ids);
    }
    if (tok) {
        CHECK(sp_tok_is_special(tok, 2) && sp_tok_find(tok, "<|im_end|>") == 2);
        sp_tok_close(tok);
    }
    /* the model file has the same tokenizer metadata */
    snprintf(path, sizeof path, "%s/tiny.gguf", dir);
    CHECK(sp_gguf_tokenizer(path, &tok) == SPRIG_OK);
    sp_tok_close(tok);
    cJSON_Delete(root);
}

/* ---- "llama" (SentencePiece-style) vocabularies: merges rebuilt from the scores ------------- */

/* Every file of spm.json (tools/make_gguf_fixtures.py): the ids transformers' GGUF converter
 * gives on each text and its decoding of them, special tokens kept and skipped. One text is
 * every plain token of the vocabulary, a line each, so nearly every rebuilt merge is used. */
static void test_tokenizer_spm(void) {
    size_t jlen;
    char *json = slurp("spm.json", &jlen);
    cJSON *root = cJSON_Parse(json);
    free(json);
    CHECK(cJSON_GetArraySize(root) == 2);
    const cJSON *file;
    cJSON_ArrayForEach(file, root) {
        char path[4096];
        snprintf(path, sizeof path, "%s/%s", dir, file->string);
        sp_tokenizer *tok = NULL;
        ++checks;
        sprig_status s = sp_gguf_tokenizer(path, &tok);
        CHECK_MSG(s == SPRIG_OK, "%s: %s", file->string, sprig_last_error());
        if (!tok) continue;
        CHECK(strcmp(sp_tok_kind(tok), "sentencepiece-bpe") == 0);
        CHECK(sp_tok_is_special(tok, 0) && sp_tok_is_special(tok, 1) && sp_tok_is_special(tok, 2));
        int n_cases = 0, n_same = 0;
        const cJSON *c;
        cJSON_ArrayForEach(c, file) {
            const char *text = cJSON_GetObjectItem(c, "text")->valuestring;
            const cJSON *want = cJSON_GetObjectItem(c, "ids");
            int32_t *ids = NULL;
            size_t n = 0;
            ++checks;
            ++n_cases;
            CHECK(sp_tok_encode(tok, text, strlen(text), 1, &ids, &n) == SPRIG_OK);
            int same = (int)n == cJSON_GetArraySize(want);
            size_t at = 0;
            for (; same && at < n; ++at) same = ids[at] == cJSON_GetArrayItem(want, (int)at)->valueint;
            n_same += same;
            CHECK_MSG(same, "%s '%s': %zu ids, transformers %d; first difference at %zu", file->string, text, n,
                      cJSON_GetArraySize(want), at ? at - 1 : 0);
            for (int skip = 0; skip < 2; ++skip) {
                const char *w = cJSON_GetObjectItem(c, skip ? "decoded_skip" : "decoded")->valuestring;
                char *got = NULL;
                size_t glen = 0;
                CHECK(sp_tok_decode(tok, ids, n, skip, &got, &glen) == SPRIG_OK);
                CHECK_MSG(got && glen == strlen(w) && memcmp(got, w, glen) == 0, "%s '%s': decoded%s '%s', "
                          "transformers '%s'", file->string, text, skip ? " (skip special)" : "", got ? got : "", w);
                free(got);
            }
            free(ids);
        }
        CHECK_MSG(n_cases == 21, "%s: %d texts", file->string, n_cases);
        printf("%s: %d of %d texts tokenized as transformers does\n", file->string, n_same, n_cases);
        sp_tok_close(tok);
    }
    cJSON_Delete(root);
}

/* ---- corrupt files ------------------------------------------------------------------------------ */

static void put_u64(unsigned char *p, uint64_t v) {
    for (int i = 0; i < 8; ++i) p[i] = (unsigned char)(v >> (8 * i));
}
static void put_u32(unsigned char *p, uint32_t v) {
    for (int i = 0; i < 4; ++i) p[i] = (unsigned char)(v >> (8 * i));
}

/* Expects parsing buf to fail with SPRIG_E_FORMAT, one line mentioning want. */
static void expect_bad(const unsigned char *buf, size_t len, const char *what, const char *want) {
    sp_gguf *g = NULL;
    ++checks;
    sprig_status s = sp_gguf_parse(buf, len, "bad.gguf", &g);
    const char *msg = sprig_last_error();
    CHECK_MSG(s == SPRIG_E_FORMAT && g == NULL, "%s: accepted (status %d)", what, (int)s);
    CHECK_MSG(sp_contains(msg, "bad.gguf") && sp_contains(msg, want) && !strchr(msg, '\n'),
              "%s: message '%s' (want '%s')", what, msg, want);
    sp_gguf_close(g);
}

/* Finds the file offset of string s (length-prefixed) in buf: its length field. */
static size_t find_str(const unsigned char *buf, size_t len, const char *s) {
    const size_t n = strlen(s);
    for (size_t i = 8; i + n <= len; ++i)
        if (memcmp(buf + i, s, n) == 0 && buf[i - 8] == n && !buf[i - 7]) return i - 8;
    return 0;
}

static void test_corrupt(void) {
    size_t len;
    unsigned char *orig = (unsigned char *)slurp("tiny.gguf", &len);
    unsigned char *b = malloc(len);
    /* truncated at many places: always an error, never a crash */
    for (size_t cut = 0; cut < len; cut += (cut < 4096 ? 7 : 4093)) {
        sp_gguf *g = NULL;
        CHECK_MSG(sp_gguf_parse(orig, cut, "bad.gguf", &g) == SPRIG_E_FORMAT, "truncated to %zu accepted", cut);
        CHECK(!strchr(sprig_last_error(), '\n'));
        sp_gguf_close(g);
    }
    ++checks;
    expect_bad(orig, 100, "truncated header", "truncated");
    memcpy(b, orig, len);
    memcpy(b, "GGUG", 4);
    expect_bad(b, len, "bad magic", "not a GGUF file");
    memcpy(b, orig, len);
    put_u32(b + 4, 1);
    expect_bad(b, len, "version 1", "version 1");
    memcpy(b, orig, len);
    put_u64(b + 8, UINT64_MAX / 2);
    expect_bad(b, len, "huge tensor count", "tensors");
    memcpy(b, orig, len);
    put_u64(b + 16, 1ULL << 40);
    expect_bad(b, len, "huge kv count", "metadata entries");
    /* a string length past the end */
    memcpy(b, orig, len);
    size_t at = find_str(orig, len, "general.architecture");
    CHECK(at > 0);
    put_u64(b + at, UINT64_MAX - 3);
    expect_bad(b, len, "huge string length", "truncated");
    /* an unknown value type */
    memcpy(b, orig, len);
    at = find_str(orig, len, "test.u8");
    put_u32(b + at + 8 + 7, 13);
    expect_bad(b, len, "unknown value type", "unknown value type 13");
    /* an array claiming more elements than the file holds */
    memcpy(b, orig, len);
    at = find_str(orig, len, "test.arr_i32");
    put_u64(b + at + 8 + 12 + 4 + 4, 1ULL << 62);
    expect_bad(b, len, "huge array", "test.arr_i32");
    /* a tensor: type, dims, offset */
    at = find_str(orig, len, "blk.1.ffn_down.weight");
    CHECK(at > 0);
    const size_t dims = at + 8 + 21 + 4, type = dims + 16, off = type + 4;
    memcpy(b, orig, len);
    put_u32(b + type, 31);
    expect_bad(b, len, "unknown tensor type", "unknown ggml type 31");
    memcpy(b, orig, len);
    put_u64(b + off, (uint64_t)1 << 50);
    expect_bad(b, len, "offset past the end", "blk.1.ffn_down.weight");
    memcpy(b, orig, len);
    put_u64(b + off, 3);
    expect_bad(b, len, "misaligned offset", "alignment");
    memcpy(b, orig, len);
    put_u64(b + off, 0);
    expect_bad(b, len, "overlapping tensors", "overlap");
    memcpy(b, orig, len);
    put_u64(b + dims, 100);
    expect_bad(b, len, "row not whole blocks", "not a multiple");
    memcpy(b, orig, len);
    put_u64(b + dims + 8, 1ULL << 60);
    expect_bad(b, len, "huge dimension", "blk.1.ffn_down.weight");
    memcpy(b, orig, len);
    put_u32(b + at + 8 + 21, 9);
    expect_bad(b, len, "too many dims", "dimensions");
    /* a valid file whose tensor type sprig cannot dequantize: the model loader names it */
    memcpy(b, orig, len);
    put_u32(b + type, 13 /* Q5_K: 176 bytes per 256 */);
    sp_gguf *g = NULL;
    if (sp_gguf_parse(b, len, "q5k.gguf", &g) == SPRIG_OK) {
        /* the file would still parse if the sizes fitted; they do not here (overlap): either way an error */
        sp_gguf_close(g);
    }
    char path[] = "/tmp/sprig_test_gguf_XXXXXX";
    int fd = mkstemp(path);
    CHECK(fd >= 0);
    if (fd >= 0) {
        /* Q4_K -> Q5_K would change sizes; F16 (attn_o of layer 0) -> I16 keeps them */
        memcpy(b, orig, len);
        size_t o = find_str(orig, len, "blk.0.attn_output.weight");
        put_u32(b + o + 8 + 24 + 4 + 16, 25 /* I16 */);
        FILE *fp = fdopen(fd, "wb");
        fwrite(b, 1, len, fp);
        fclose(fp);
        char gpath[64];
        snprintf(gpath, sizeof gpath, "%s.gguf", path);
        rename(path, gpath);
        sp_model *m = NULL;
        ++checks;
        CHECK(sp_model_open(gpath, &m) == SPRIG_E_FORMAT);
        CHECK_MSG(sp_contains(sprig_last_error(), "blk.0.attn_output.weight") &&
                  sp_contains(sprig_last_error(), "I16"), "%s", sprig_last_error());
        /* not llama */
        memcpy(b, orig, len);
        o = find_str(orig, len, "general.architecture");
        memcpy(b + o + 8 + 20 + 4 + 8, "llamb", 5);
        fp = fopen(gpath, "wb");
        fwrite(b, 1, len, fp);
        fclose(fp);
        CHECK(sp_model_open(gpath, &m) == SPRIG_E_FORMAT);
        CHECK_MSG(sp_contains(sprig_last_error(), "'llamb'"), "%s", sprig_last_error());
        /* a truncated .gguf is a GGUF error, not "not a folder" */
        fp = fopen(gpath, "wb");
        fwrite(orig, 1, 200, fp);
        fclose(fp);
        CHECK(sp_model_open(gpath, &m) == SPRIG_E_FORMAT);
        CHECK_MSG(sp_contains(sprig_last_error(), "truncated"), "%s", sprig_last_error());
        remove(gpath);
    }
    free(b);
    free(orig);
}

int main(int argc, char **argv) {
    if (argc < 2) {
        fprintf(stderr, "usage: test_gguf FIXTURE_DIR\n");
        return 2;
    }
    dir = argv[1];
    test_dequant("F32", SP_GGML_F32);
    test_dequant("F16", SP_GGML_F16);
    test_dequant("BF16", SP_GGML_BF16);
    test_dequant("Q8_0", SP_GGML_Q8_0);
    test_dequant("Q4_0", SP_GGML_Q4_0);
    test_dequant("Q4_1", SP_GGML_Q4_1);
    test_dequant("Q4_K", SP_GGML_Q4_K);
    test_dequant("Q6_K", SP_GGML_Q6_K);
    float dummy[256];
    CHECK(sp_gguf_dequantize(13, dummy, 256, dummy) == SPRIG_E_FORMAT && sp_contains(sprig_last_error(), "Q5_K"));
    test_parse();
    test_model();
    test_tokenizer();
    test_tokenizer_spm();
    test_corrupt();
    return sp_test_finish("test_gguf", checks);
}
