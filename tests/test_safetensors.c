/* safetensors reader: good files load with the exact bytes written; every kind
 * of bad file gives its status and a message with the key facts.
 * argv[1] (optional): a folder holding ref_python.safetensors, written by the
 * reference Python implementation (see tests/fuzz_corpus/README). */
#include <fcntl.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "sp_safetensors.h"
#include "test_util.h"

static char tmpdir[256];

static const char *tmp_path(const char *name) {
    static char buf[512];
    snprintf(buf, sizeof buf, "%s/%s", tmpdir, name);
    return buf;
}

/* Writes an arbitrary (possibly lying) file: 8-byte length `hlen`, then
 * `header`, then `data`. */
static void write_raw(const char *path, uint64_t hlen, const char *header, const void *data,
                      size_t data_len) {
    FILE *f = fopen(path, "wb");
    if (!f) {
        perror(path);
        exit(1);
    }
    unsigned char len[8];
    for (int i = 0; i < 8; ++i) len[i] = (unsigned char)(hlen >> (8 * i));
    fwrite(len, 1, 8, f);
    fwrite(header, 1, strlen(header), f);
    if (data_len) fwrite(data, 1, data_len, f);
    fclose(f);
}

/* A truthful file: header length = strlen(header). */
static const char *write_st(const char *name, const char *header, const void *data, size_t n) {
    const char *p = tmp_path(name);
    write_raw(p, strlen(header), header, data, n);
    return p;
}

/* Opens `path`, expects status `want` and every needle in the message. */
static void expect_fail(const char *path, sprig_status want, const char *n1, const char *n2,
                        const char *n3) {
    sp_safetensors *st = NULL;
    sprig_status s = sp_st_open(path, &st);
    const char *m = sprig_last_error();
    CHECK_MSG(s == want, "%s: got %s, want %s (%s)", path, sprig_status_name(s),
              sprig_status_name(want), m);
    CHECK(st == NULL);
    if (s == SPRIG_OK) sp_st_close(st);
    if (getenv("SPRIG_TEST_VERBOSE")) printf("  %s: %s\n", sprig_status_name(s), m);
    const char *needles[3] = {n1, n2, n3};
    for (int i = 0; i < 3; ++i)
        if (needles[i]) CHECK_MSG(sp_contains(m, needles[i]), "message '%s' lacks '%s'", m, needles[i]);
}

static unsigned char blob[4096];

static void test_good(void) {
    const char *hdr =
        "{\"__metadata__\":{\"format\":\"pt\"},"
        "\"w\":{\"dtype\":\"F16\",\"shape\":[2,3],\"data_offsets\":[0,12]},"
        "\"b\":{\"dtype\":\"F32\",\"shape\":[4],\"data_offsets\":[12,28]},"
        "\"idx\":{\"dtype\":\"I64\",\"shape\":[3],\"data_offsets\":[28,52]},"
        "\"s\":{\"dtype\":\"BF16\",\"shape\":[],\"data_offsets\":[52,54]},"
        "\"empty\":{\"dtype\":\"I32\",\"shape\":[0,5],\"data_offsets\":[54,54]}}    ";
    const char *p = write_st("good.safetensors", hdr, blob, 60);  /* 6 spare bytes at the end */
    sp_safetensors *st = NULL;
    sprig_status s = sp_st_open(p, &st);
    CHECK_MSG(s == SPRIG_OK, "%s", sprig_last_error());
    if (s != SPRIG_OK) return;
    CHECK(sp_st_count(st) == 5);
    const unsigned char *data0 = (const unsigned char *)sp_st_find(st, "w")->data;
    const sp_tensor *w = sp_st_find(st, "w"), *b = sp_st_find(st, "b"), *idx = sp_st_find(st, "idx");
    const sp_tensor *sc = sp_st_find(st, "s"), *e = sp_st_find(st, "empty");
    CHECK(w && w->dtype == SP_DTYPE_F16 && w->ndim == 2 && w->shape[0] == 2 && w->shape[1] == 3 &&
          w->nbytes == 12);
    CHECK(b && b->dtype == SP_DTYPE_F32 && b->ndim == 1 && b->shape[0] == 4 && b->nbytes == 16);
    CHECK(idx && idx->dtype == SP_DTYPE_I64 && idx->nbytes == 24);
    CHECK(sc && sc->dtype == SP_DTYPE_BF16 && sc->ndim == 0 && sc->nbytes == 2);
    CHECK(e && e->ndim == 2 && e->shape[0] == 0 && e->nbytes == 0);
    /* The pointers hold the bytes written at their offsets. */
    CHECK(memcmp(w->data, blob, 12) == 0);
    CHECK((const unsigned char *)b->data == data0 + 12 && memcmp(b->data, blob + 12, 16) == 0);
    CHECK(memcmp(idx->data, blob + 28, 24) == 0 && memcmp(sc->data, blob + 52, 2) == 0);
    CHECK(sp_st_find(st, "nope") == NULL && sp_st_find(st, "__metadata__") == NULL);
    CHECK(sp_st_metadata(st, "format") && strcmp(sp_st_metadata(st, "format"), "pt") == 0);
    CHECK(sp_st_metadata(st, "missing") == NULL);
    /* Iteration is in name order. */
    for (size_t i = 1; i < sp_st_count(st); ++i)
        CHECK(strcmp(sp_st_tensor(st, i - 1)->name, sp_st_tensor(st, i)->name) < 0);
    CHECK(sp_st_tensor(st, 5) == NULL);
    sp_st_close(st);
}

static void test_memory_parse(void) {
    /* The same parser on a buffer: data pointers point into the caller's bytes. */
    const char *hdr = "{\"t\":{\"dtype\":\"F32\",\"shape\":[2],\"data_offsets\":[0,8]}}";
    size_t h = strlen(hdr);
    unsigned char buf[256] = {0};
    buf[0] = (unsigned char)h;
    memcpy(buf + 8, hdr, h);
    float v[2] = {1.5f, -2.0f};
    memcpy(buf + 8 + h, v, 8);
    sp_safetensors *st = NULL;
    CHECK(sp_st_parse(buf, 8 + h + 8, "mem", &st) == SPRIG_OK);
    const sp_tensor *t = sp_st_find(st, "t");
    CHECK(t && t->data == buf + 8 + h);
    float got[2] = {0};
    if (t) memcpy(got, t->data, 8);
    CHECK(got[0] == 1.5f && got[1] == -2.0f);
    sp_st_close(st);
    /* One byte short: the tensor runs past the end. */
    CHECK(sp_st_parse(buf, 8 + h + 7, "mem", &st) == SPRIG_E_FORMAT && st == NULL);
    CHECK(sp_contains(sprig_last_error(), "mem: tensor 't'"));
}

static void test_writer_roundtrip(void) {
    uint16_t a[6] = {1, 2, 3, 4, 5, 6};
    int32_t perm[3] = {2, 0, 1};
    sp_tensor ts[3] = {
        {.name = "layer.a", .dtype = SP_DTYPE_BF16, .ndim = 2, .shape = {2, 3}, .data = a},
        {.name = "perm", .dtype = SP_DTYPE_I32, .ndim = 1, .shape = {3}, .data = perm},
        {.name = "zeros", .dtype = SP_DTYPE_F32, .ndim = 1, .shape = {5}, .data = NULL},
    };
    const char *meta[] = {"format", "pt", NULL};
    const char *p = tmp_path("written.safetensors");
    CHECK_MSG(sp_st_write(p, ts, 3, meta, NULL, NULL) == SPRIG_OK, "%s", sprig_last_error());
    sp_safetensors *st = NULL;
    CHECK_MSG(sp_st_open(p, &st) == SPRIG_OK, "%s", sprig_last_error());
    if (!st) return;
    const sp_tensor *ta = sp_st_find(st, "layer.a"), *tp = sp_st_find(st, "perm");
    const sp_tensor *tz = sp_st_find(st, "zeros");
    CHECK(ta && ta->nbytes == 12 && memcmp(ta->data, a, 12) == 0);
    CHECK(tp && tp->dtype == SP_DTYPE_I32 && memcmp(tp->data, perm, 12) == 0);
    static const unsigned char z[20];
    CHECK(tz && tz->nbytes == 20 && memcmp(tz->data, z, 20) == 0);
    /* The header is padded so the data section starts 8-aligned in the file. */
    CHECK(ta && (uintptr_t)ta->data % 8 == 0);
    CHECK(sp_st_metadata(st, "format") && strcmp(sp_st_metadata(st, "format"), "pt") == 0);
    sp_st_close(st);
}

static void test_bad_files(void) {
    char missing[600];
    snprintf(missing, sizeof missing, "%s/no-such.safetensors", tmpdir);
    expect_fail(missing, SPRIG_E_IO, "no-such.safetensors", "No such file", NULL);
    expect_fail(tmpdir, SPRIG_E_IO, "not a regular file", NULL, NULL);

    const char *p = tmp_path("tiny.safetensors");
    FILE *f = fopen(p, "wb");
    fwrite("abcde", 1, 5, f);
    fclose(f);
    expect_fail(p, SPRIG_E_FORMAT, "tiny.safetensors", "5 bytes", "truncated");

    p = tmp_path("empty.safetensors");
    fclose(fopen(p, "wb"));
    expect_fail(p, SPRIG_E_FORMAT, "0 bytes", NULL, NULL);

    /* Header length larger than the file. */
    const char *hdr = "{\"t\":{\"dtype\":\"F16\",\"shape\":[2],\"data_offsets\":[0,4]}}";
    p = tmp_path("longhdr.safetensors");
    write_raw(p, 1000, hdr, blob, 4);
    expect_fail(p, SPRIG_E_FORMAT, "header length 1000", "exceeds", "truncated");

    /* Truncated: the data section stops inside the tensor. */
    p = write_st("trunc.safetensors",
                 "{\"a\":{\"dtype\":\"F32\",\"shape\":[2],\"data_offsets\":[0,8]},"
                 "\"b\":{\"dtype\":\"F32\",\"shape\":[4],\"data_offsets\":[8,24]}}",
                 blob, 20);
    expect_fail(p, SPRIG_E_FORMAT, "tensor 'b'", "[8, 24]", "truncated");

    p = write_st("notjson.safetensors", "{\"t\": dtype F16}", blob, 4);
    expect_fail(p, SPRIG_E_FORMAT, "notjson.safetensors", "not valid JSON", NULL);
    p = write_st("array.safetensors", "[1, 2, 3]", blob, 4);
    expect_fail(p, SPRIG_E_FORMAT, "not an object", NULL, NULL);
    p = write_st("trailing.safetensors", "{} xyz", blob, 4);
    expect_fail(p, SPRIG_E_FORMAT, "trailing bytes", NULL, NULL);
    static const unsigned char zeros[4];
    p = tmp_path("nul.safetensors");
    write_raw(p, 3, "{}", zeros, 4);  /* header length covers a NUL byte */
    expect_fail(p, SPRIG_E_FORMAT, "NUL", NULL, NULL);

    p = write_st("range.safetensors",
                 "{\"t\":{\"dtype\":\"F16\",\"shape\":[2],\"data_offsets\":[100,104]}}", blob, 8);
    expect_fail(p, SPRIG_E_FORMAT, "tensor 't'", "[100, 104]", "8 bytes");

    /* The message from the brief, verbatim in its essentials. */
    p = write_st("model.safetensors",
                 "{\"x\":{\"dtype\":\"F16\",\"shape\":[4096,4096],\"data_offsets\":[0,100]}}", blob,
                 100);
    expect_fail(p, SPRIG_E_FORMAT, "model.safetensors: tensor 'x' claims 4096x4096 F16",
                "33554432 bytes", "offsets span 100");

    p = write_st("backwards.safetensors",
                 "{\"t\":{\"dtype\":\"F16\",\"shape\":[0],\"data_offsets\":[8,4]}}", blob, 8);
    expect_fail(p, SPRIG_E_FORMAT, "tensor 't'", "end before begin", NULL);

    p = write_st("overlap.safetensors",
                 "{\"a\":{\"dtype\":\"F32\",\"shape\":[2],\"data_offsets\":[0,8]},"
                 "\"b\":{\"dtype\":\"F32\",\"shape\":[2],\"data_offsets\":[4,12]}}",
                 blob, 12);
    expect_fail(p, SPRIG_E_FORMAT, "'a' [0, 8)", "'b' [4, 12)", "overlap");
    /* Nested inside a larger tensor, listed first by name. */
    p = write_st("nested.safetensors",
                 "{\"big\":{\"dtype\":\"F32\",\"shape\":[8],\"data_offsets\":[0,32]},"
                 "\"a\":{\"dtype\":\"F32\",\"shape\":[1],\"data_offsets\":[8,12]},"
                 "\"z\":{\"dtype\":\"F32\",\"shape\":[1],\"data_offsets\":[16,20]}}",
                 blob, 32);
    expect_fail(p, SPRIG_E_FORMAT, "overlap", "'big'", NULL);

    p = write_st("dtype.safetensors", "{\"q\":{\"dtype\":\"Q4\",\"shape\":[2],\"data_offsets\":[0,1]}}",
                 blob, 4);
    expect_fail(p, SPRIG_E_FORMAT, "tensor 'q'", "unknown dtype 'Q4'", NULL);
    p = write_st("f64.safetensors", "{\"d\":{\"dtype\":\"F64\",\"shape\":[1],\"data_offsets\":[0,8]}}",
                 blob, 8);
    expect_fail(p, SPRIG_E_FORMAT, "tensor 'd'", "F64", "does not support");

    p = write_st("dup.safetensors",
                 "{\"a\":{\"dtype\":\"F32\",\"shape\":[1],\"data_offsets\":[0,4]},"
                 "\"a\":{\"dtype\":\"F32\",\"shape\":[1],\"data_offsets\":[4,8]}}",
                 blob, 8);
    expect_fail(p, SPRIG_E_FORMAT, "tensor 'a'", "twice", NULL);

    p = write_st("dupkey.safetensors",
                 "{\"a\":{\"dtype\":\"F32\",\"shape\":[1],\"data_offsets\":[0,4],\"shape\":[2]}}",
                 blob, 8);
    expect_fail(p, SPRIG_E_FORMAT, "tensor 'a'", "\"shape\" twice", NULL);

    p = write_st("ndim.safetensors",
                 "{\"t\":{\"dtype\":\"F32\",\"shape\":[1,1,1,1,1],\"data_offsets\":[0,4]}}", blob, 4);
    expect_fail(p, SPRIG_E_FORMAT, "5 dimensions", NULL, NULL);
    p = write_st("neg.safetensors", "{\"t\":{\"dtype\":\"F32\",\"shape\":[-1],\"data_offsets\":[0,4]}}",
                 blob, 4);
    expect_fail(p, SPRIG_E_FORMAT, "tensor 't'", "shape entry 0", NULL);
    p = write_st("frac.safetensors",
                 "{\"t\":{\"dtype\":\"F32\",\"shape\":[1.5],\"data_offsets\":[0,6]}}", blob, 8);
    expect_fail(p, SPRIG_E_FORMAT, "shape entry 0", NULL, NULL);
    /* 2^40 x 2^40 x 4 bytes does not fit in 64 bits. */
    p = write_st("ovf.safetensors",
                 "{\"t\":{\"dtype\":\"F32\",\"shape\":[1099511627776,1099511627776],"
                 "\"data_offsets\":[0,4]}}", blob, 4);
    expect_fail(p, SPRIG_E_FORMAT, "tensor 't'", "overflows", NULL);
    p = write_st("nooffs.safetensors", "{\"t\":{\"dtype\":\"F32\",\"shape\":[1]}}", blob, 4);
    expect_fail(p, SPRIG_E_FORMAT, "tensor 't'", "data_offsets", NULL);
    p = write_st("meta.safetensors", "{\"__metadata__\":{\"n\":3}}", blob, 0);
    expect_fail(p, SPRIG_E_FORMAT, "__metadata__", "'n'", NULL);
}

/* A sparse file larger than the header limit, with a header length over it. */
static void test_header_limit(void) {
    const char *p = tmp_path("huge.safetensors");
    uint64_t hlen = SP_ST_MAX_HEADER + 1;
    write_raw(p, hlen, "{", NULL, 0);
    int fd = open(p, O_WRONLY);
    CHECK(fd >= 0 && ftruncate(fd, (off_t)(hlen + 64)) == 0);
    if (fd >= 0) close(fd);
    expect_fail(p, SPRIG_E_FORMAT, "header length 100000001", "limit", NULL);
}

/* A file written by the safetensors Python package (not by sprig): values
 * known from the script in tests/fuzz_corpus/README. */
static void test_reference_file(const char *dir) {
    char p[600];
    snprintf(p, sizeof p, "%s/ref_python.safetensors", dir);
    sp_safetensors *st = NULL;
    CHECK_MSG(sp_st_open(p, &st) == SPRIG_OK, "%s", sprig_last_error());
    if (!st) return;
    const sp_tensor *a = sp_st_find(st, "model.a"), *b = sp_st_find(st, "model.b");
    const sp_tensor *c = sp_st_find(st, "model.c"), *d = sp_st_find(st, "model.d");
    CHECK(sp_st_count(st) == 4);
    CHECK(a && a->dtype == SP_DTYPE_F16 && a->ndim == 2 && a->shape[0] == 2 && a->shape[1] == 3);
    CHECK(b && b->dtype == SP_DTYPE_BF16 && b->ndim == 1 && b->shape[0] == 4);
    CHECK(c && c->dtype == SP_DTYPE_F32 && c->ndim == 3 && c->nbytes == 2 * 2 * 2 * 4);
    CHECK(d && d->dtype == SP_DTYPE_I64 && d->ndim == 1 && d->shape[0] == 5);
    if (a && b && c && d) {
        /* a = arange(6) in fp16: 0x0000, 0x3C00 (1.0), 0x4000 (2.0), ... */
        uint16_t ha[6];
        memcpy(ha, a->data, 12);
        CHECK(ha[0] == 0x0000 && ha[1] == 0x3C00 && ha[2] == 0x4000 && ha[5] == 0x4500);
        uint16_t hb[4];  /* b = [1, -2, 0.5, 3] in bf16 */
        memcpy(hb, b->data, 8);
        CHECK(hb[0] == 0x3F80 && hb[1] == 0xC000 && hb[2] == 0x3F00 && hb[3] == 0x4040);
        float fc[8];  /* c = arange(8) / 4 */
        memcpy(fc, c->data, 32);
        CHECK(fc[0] == 0.0f && fc[1] == 0.25f && fc[7] == 1.75f);
        int64_t id[5];  /* d = [4, 2, 0, 1, 3] */
        memcpy(id, d->data, 40);
        CHECK(id[0] == 4 && id[1] == 2 && id[2] == 0 && id[3] == 1 && id[4] == 3);
    }
    CHECK(sp_st_metadata(st, "format") && strcmp(sp_st_metadata(st, "format"), "pt") == 0);
    sp_st_close(st);
}

int main(int argc, char **argv) {
    snprintf(tmpdir, sizeof tmpdir, "/tmp/sprig_test_st_XXXXXX");
    if (!mkdtemp(tmpdir)) {
        perror("mkdtemp");
        return 1;
    }
    for (size_t i = 0; i < sizeof blob; ++i) blob[i] = (unsigned char)(i * 7 + 3);
    test_good();
    test_memory_parse();
    test_writer_roundtrip();
    test_bad_files();
    test_header_limit();
    if (argc > 1) test_reference_file(argv[1]);
    char cmd[400];
    snprintf(cmd, sizeof cmd, "rm -rf '%s'", tmpdir);
    if (system(cmd) != 0) fprintf(stderr, "could not remove %s\n", tmpdir);
    return sp_test_finish("test_safetensors", 0);
}
