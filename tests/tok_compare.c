/* Developer check, not a CTest: encodes a text file with sprig's tokenizer and
 * compares the ids, and decode(ids), with what the Hugging Face `tokenizers`
 * library wrote for the same text (tools/tokenizer_realtext.py drives it).
 *
 * Usage: tok_compare TOKENIZER_JSON TEXT_FILE whole|lines EXPECTED_IDS
 *   whole: the file is one encode call; lines: each line (split at '\n', the
 *   '\n' dropped) is its own call and the ids are concatenated.
 *   EXPECTED_IDS: little-endian int32 ids, then in whole mode the library's
 *   decode of them (skip_special_tokens=False) in a file named EXPECTED_IDS.txt.
 * Prints one summary line; exit 0 when everything agrees, 1 when not. */
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "sp_file.h"
#include "sp_tokenizer.h"

/* The whole file (NUL-terminated), or NULL; through core's checked reader. */
static char *slurp(const char *path, size_t *len) {
    char *buf = NULL;
    return sp_file_read(path, (size_t)1 << 31, &buf, len, NULL) == SPRIG_OK ? buf : NULL;
}

typedef struct {
    int32_t *v;
    size_t n, cap;
} ids_t;

static int append(ids_t *a, const int32_t *ids, size_t n) {
    if (a->n + n > a->cap) {
        size_t cap = a->cap ? a->cap : 1024;
        while (cap < a->n + n) cap *= 2;
        int32_t *v = realloc(a->v, cap * sizeof *v);
        if (!v) return 0;
        a->v = v;
        a->cap = cap;
    }
    if (n) memcpy(a->v + a->n, ids, n * sizeof *ids);
    a->n += n;
    return 1;
}

static int encode(const sp_tokenizer *tok, const char *s, size_t len, ids_t *out) {
    int32_t *ids;
    size_t n;
    if (sp_tok_encode(tok, s, len, 0, &ids, &n) != SPRIG_OK) {
        fprintf(stderr, "encode failed: %s\n", sprig_last_error());
        return 0;
    }
    int ok = append(out, ids, n);
    free(ids);
    return ok;
}

int main(int argc, char **argv) {
    if (argc != 5 || (strcmp(argv[3], "whole") != 0 && strcmp(argv[3], "lines") != 0)) {
        fprintf(stderr, "usage: tok_compare TOKENIZER_JSON TEXT_FILE whole|lines EXPECTED_IDS\n");
        return 2;
    }
    sp_tokenizer *tok;
    if (sp_tok_open(argv[1], &tok) != SPRIG_OK) {
        fprintf(stderr, "%s\n", sprig_last_error());
        return 2;
    }
    size_t len, exp_bytes;
    char *text = slurp(argv[2], &len);
    char *exp_raw = slurp(argv[4], &exp_bytes);
    if (!text || !exp_raw) {
        fprintf(stderr, "cannot read %s or %s\n", argv[2], argv[4]);
        return 2;
    }
    size_t n_exp = exp_bytes / 4;
    int32_t *exp = malloc((n_exp ? n_exp : 1) * sizeof *exp);
    for (size_t i = 0; i < n_exp; ++i) {
        const unsigned char *b = (const unsigned char *)exp_raw + 4 * i;
        exp[i] = (int32_t)((uint32_t)b[0] | (uint32_t)b[1] << 8 | (uint32_t)b[2] << 16 | (uint32_t)b[3] << 24);
    }
    ids_t got = {0};
    clock_t t0 = clock();
    int whole = strcmp(argv[3], "whole") == 0;
    if (whole) {
        if (!encode(tok, text, len, &got)) return 2;
    } else {
        for (size_t i = 0; i <= len;) {
            const char *nl = memchr(text + i, '\n', len - i);
            size_t end = nl ? (size_t)(nl - text) : len;
            if (!encode(tok, text + i, end - i, &got)) return 2;
            i = end + 1;
        }
    }
    double secs = (double)(clock() - t0) / CLOCKS_PER_SEC;
    size_t same = 0;
    while (same < got.n && same < n_exp && got.v[same] == exp[same]) ++same;
    int ids_ok = same == got.n && same == n_exp;
    int dec_ok = 1;
    if (whole) {
        char path[4096], *dec;
        size_t dlen, elen;
        snprintf(path, sizeof path, "%s.txt", argv[4]);
        char *exp_dec = slurp(path, &elen);
        if (!exp_dec || sp_tok_decode(tok, got.v, got.n, 0, &dec, &dlen) != SPRIG_OK) return 2;
        dec_ok = dlen == elen && memcmp(dec, exp_dec, dlen) == 0;
        free(dec);
        free(exp_dec);
    }
    printf("%s %s: %zu bytes, %zu ids (reference %zu), %s, decode %s, %.2f s\n", argv[1], argv[3], len, got.n,
           n_exp, ids_ok ? "ids identical" : "IDS DIFFER", whole ? (dec_ok ? "identical" : "DIFFERS") : "not checked",
           secs);
    if (!ids_ok) {
        fprintf(stderr, "first difference at id %zu:", same);
        for (size_t i = same; i < same + 8 && i < got.n; ++i) fprintf(stderr, " %d", (int)got.v[i]);
        fprintf(stderr, " (sprig) vs");
        for (size_t i = same; i < same + 8 && i < n_exp; ++i) fprintf(stderr, " %d", (int)exp[i]);
        fprintf(stderr, " (reference)\n");
    }
    free(got.v);
    free(exp);
    free(exp_raw);
    free(text);
    sp_tok_close(tok);
    return ids_ok && dec_ok ? 0 : 1;
}
