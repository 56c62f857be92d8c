/* safetensors reader (see sp_safetensors.h). The whole file is mapped once;
 * the parser works on a memory buffer so tests and the fuzzer can feed it
 * bytes directly. Every check happens before a tensor is exposed. */
#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cjson/cJSON.h>

#include "model_internal.h"
#include "sp_error.h"
#include "sp_safetensors.h"

struct sp_safetensors {
    char *label;                 /* owned copy of the path / label */
    void *map;                   /* mmap base, NULL when parsing a caller's buffer */
    size_t map_size;
    cJSON *root;                 /* the parsed header; tensor names point into it */
    const cJSON *metadata;       /* "__metadata__" inside root, or NULL */
    size_t n;
    sp_tensor *tensors;          /* sorted by name */
};

/* ---- dtypes ------------------------------------------------------------------ */

static const struct {
    const char *name;
    size_t size;
} st_dtypes[SP_DTYPE_COUNT] = {
    [SP_DTYPE_F16] = {"F16", 2}, [SP_DTYPE_BF16] = {"BF16", 2}, [SP_DTYPE_F32] = {"F32", 4},
    [SP_DTYPE_I32] = {"I32", 4}, [SP_DTYPE_I64] = {"I64", 8},
};

/* Valid safetensors dtypes that sprig does not load: named so the message can
 * say "unsupported" rather than "unknown". */
static const char *const st_unsupported[] = {"BOOL", "U8",  "I8",  "U16", "I16", "U32", "U64",
                                             "F64",  "F8_E4M3", "F8_E5M2", "F8_E8M0", "F4",
                                             "F6_E2M3", "F6_E3M2", "C64", NULL};

const char *sp_dtype_name(sp_dtype t) {
    return (unsigned)t < SP_DTYPE_COUNT ? st_dtypes[t].name : "?";
}

size_t sp_dtype_size(sp_dtype t) { return (unsigned)t < SP_DTYPE_COUNT ? st_dtypes[t].size : 0; }

int sp_dtype_is_float(sp_dtype t) {
    return t == SP_DTYPE_F16 || t == SP_DTYPE_BF16 || t == SP_DTYPE_F32;
}

char *sp_shape_str(const int64_t *shape, int ndim, char *buf, size_t cap) {
    if (cap == 0) return buf;
    if (ndim == 0) {
        snprintf(buf, cap, "scalar");
        return buf;
    }
    size_t used = 0;
    buf[0] = '\0';
    for (int i = 0; i < ndim && used < cap; ++i) {
        int n = snprintf(buf + used, cap - used, "%s%" PRId64, i ? "x" : "", shape[i]);
        if (n < 0) break;
        used += (size_t)n;
    }
    return buf;
}

long long sp_tensor_int_at(const sp_tensor *t, size_t i) {
    const unsigned char *p = t->data;
    if (t->dtype == SP_DTYPE_I32) {
        int32_t v;
        memcpy(&v, p + i * 4, 4);
        return v;
    }
    if (t->dtype == SP_DTYPE_I64) {
        int64_t v;
        memcpy(&v, p + i * 8, 8);
        return v;
    }
    return 0;
}

/* ---- header parsing ----------------------------------------------------------- */

/* JSON numbers arrive as doubles; integers above 2^53 cannot be represented
 * exactly, so they are rejected rather than silently rounded. */
static int st_json_uint(const cJSON *item, uint64_t *out) {
    if (!cJSON_IsNumber(item)) return 0;
    double v = item->valuedouble;
    if (!(v >= 0.0 && v <= 9007199254740992.0)) return 0;
    uint64_t u = (uint64_t)v;
    if ((double)u != v) return 0;
    *out = u;
    return 1;
}

static sprig_status st_parse_dtype(const char *label, const char *tname, const cJSON *item,
                                   sp_dtype *out) {
    if (!cJSON_IsString(item))
        return sp_fail(SPRIG_E_FORMAT, "%s: tensor '%s' has no \"dtype\" string", label, tname);
    for (int i = 0; i < SP_DTYPE_COUNT; ++i)
        if (strcmp(item->valuestring, st_dtypes[i].name) == 0) {
            *out = (sp_dtype)i;
            return SPRIG_OK;
        }
    for (int i = 0; st_unsupported[i]; ++i)
        if (strcmp(item->valuestring, st_unsupported[i]) == 0)
            return sp_fail(SPRIG_E_FORMAT,
                           "%s: tensor '%s' has dtype %s, which sprig does not support "
                           "(supported: F16, BF16, F32, I32, I64)",
                           label, tname, item->valuestring);
    return sp_fail(SPRIG_E_FORMAT, "%s: tensor '%s' has unknown dtype '%.64s'", label, tname,
                   item->valuestring);
}

static sprig_status st_parse_shape(const char *label, const char *tname, const cJSON *item,
                                   sp_tensor *t) {
    if (!cJSON_IsArray(item))
        return sp_fail(SPRIG_E_FORMAT, "%s: tensor '%s' has no \"shape\" array", label, tname);
    int ndim = cJSON_GetArraySize(item);
    if (ndim > SP_MAX_DIMS)
        return sp_fail(SPRIG_E_FORMAT, "%s: tensor '%s' has %d dimensions (sprig allows at most %d)",
                       label, tname, ndim, SP_MAX_DIMS);
    t->ndim = 0;
    const cJSON *dim;
    cJSON_ArrayForEach(dim, item) {
        uint64_t v;
        if (!st_json_uint(dim, &v) || v > (uint64_t)INT64_MAX)
            return sp_fail(SPRIG_E_FORMAT,
                           "%s: tensor '%s' has shape entry %d that is not a non-negative integer",
                           label, tname, t->ndim);
        t->shape[t->ndim++] = (int64_t)v;
    }
    return SPRIG_OK;
}

/* product(shape) * element size, or 0 with an error if it overflows. */
static sprig_status st_shape_bytes(const char *label, const sp_tensor *t, uint64_t *out) {
    uint64_t n = sp_dtype_size(t->dtype);
    for (int i = 0; i < t->ndim; ++i)
        if (__builtin_mul_overflow(n, (uint64_t)t->shape[i], &n)) {
            char s[128];
            return sp_fail(SPRIG_E_FORMAT, "%s: tensor '%s' shape %s %s overflows 64-bit byte count",
                           label, t->name, sp_shape_str(t->shape, t->ndim, s, sizeof s),
                           sp_dtype_name(t->dtype));
        }
    *out = n;
    return SPRIG_OK;
}

static sprig_status st_parse_offsets(const char *label, const sp_tensor *t, const cJSON *item,
                                     uint64_t *begin, uint64_t *end) {
    if (!cJSON_IsArray(item) || cJSON_GetArraySize(item) != 2 ||
        !st_json_uint(cJSON_GetArrayItem(item, 0), begin) ||
        !st_json_uint(cJSON_GetArrayItem(item, 1), end))
        return sp_fail(SPRIG_E_FORMAT,
                       "%s: tensor '%s' needs \"data_offsets\": [begin, end] with non-negative "
                       "integers",
                       label, t->name);
    if (*end < *begin)
        return sp_fail(SPRIG_E_FORMAT, "%s: tensor '%s' has data_offsets [%" PRIu64 ", %" PRIu64
                       "] with end before begin", label, t->name, *begin, *end);
    return SPRIG_OK;
}

/* The first key that appears twice in obj, or NULL. cJSON keeps repeated
 * keys and answers lookups with the first; other readers take the last, so a
 * repeated key is ambiguous and refused. Quadratic, but objects here are tiny. */
static const char *st_repeated_key(const cJSON *obj) {
    for (const cJSON *a = obj->child; a; a = a->next)
        for (const cJSON *b = a->next; b; b = b->next)
            if (strcmp(a->string, b->string) == 0) return a->string;
    return NULL;
}

/* One header entry -> one validated tensor (data pointer into the buffer). */
static sprig_status st_parse_tensor(const char *label, const cJSON *entry, const unsigned char *data,
                                    uint64_t data_size, sp_tensor *t) {
    memset(t, 0, sizeof *t);
    t->name = entry->string;
    if (!cJSON_IsObject(entry))
        return sp_fail(SPRIG_E_FORMAT, "%s: header entry '%s' is not an object", label, t->name);
    const char *rep = st_repeated_key(entry);
    if (rep)
        return sp_fail(SPRIG_E_FORMAT, "%s: tensor '%s' has key \"%s\" twice", label, t->name, rep);
    SP_TRY(st_parse_dtype(label, t->name, cJSON_GetObjectItemCaseSensitive(entry, "dtype"),
                          &t->dtype));
    SP_TRY(st_parse_shape(label, t->name, cJSON_GetObjectItemCaseSensitive(entry, "shape"), t));
    uint64_t bytes = 0, begin = 0, end = 0;
    SP_TRY(st_shape_bytes(label, t, &bytes));
    SP_TRY(st_parse_offsets(label, t, cJSON_GetObjectItemCaseSensitive(entry, "data_offsets"),
                            &begin, &end));
    if (end > data_size)
        return sp_fail(SPRIG_E_FORMAT,
                       "%s: tensor '%s' has data_offsets [%" PRIu64 ", %" PRIu64
                       "] but the data section holds only %" PRIu64 " bytes (truncated file?)",
                       label, t->name, begin, end, data_size);
    if (end - begin != bytes) {
        char s[128];
        return sp_fail(SPRIG_E_FORMAT,
                       "%s: tensor '%s' claims %s %s = %" PRIu64 " bytes but its offsets span %" PRIu64,
                       label, t->name, sp_shape_str(t->shape, t->ndim, s, sizeof s),
                       sp_dtype_name(t->dtype), bytes, end - begin);
    }
    t->data = data + begin;
    t->nbytes = (size_t)bytes;
    return SPRIG_OK;
}

static sprig_status st_check_metadata(const char *label, const cJSON *meta) {
    if (!cJSON_IsObject(meta))
        return sp_fail(SPRIG_E_FORMAT, "%s: \"__metadata__\" is not an object", label);
    const cJSON *kv;
    cJSON_ArrayForEach(kv, meta) {
        if (!cJSON_IsString(kv))
            return sp_fail(SPRIG_E_FORMAT, "%s: \"__metadata__\" value '%s' is not a string", label,
                           kv->string);
    }
    return SPRIG_OK;
}

static int st_cmp_name(const void *a, const void *b) {
    return strcmp(((const sp_tensor *)a)->name, ((const sp_tensor *)b)->name);
}

static int st_cmp_begin(const void *a, const void *b) {
    const sp_tensor *x = *(const sp_tensor *const *)a, *y = *(const sp_tensor *const *)b;
    uintptr_t p = (uintptr_t)x->data, q = (uintptr_t)y->data;
    return p < q ? -1 : p > q;
}

/* Sorted by name, so duplicates (cJSON keeps repeated keys) are neighbours. */
static sprig_status st_check_duplicates(const sp_safetensors *st) {
    for (size_t i = 1; i < st->n; ++i)
        if (strcmp(st->tensors[i - 1].name, st->tensors[i].name) == 0)
            return sp_fail(SPRIG_E_FORMAT, "%s: tensor '%s' appears twice in the header", st->label,
                           st->tensors[i].name);
    return SPRIG_OK;
}

/* Sorts pointers by start and compares each with the furthest end seen so far.
 * Empty tensors occupy no bytes and cannot overlap anything. */
static sprig_status st_check_overlaps(const sp_safetensors *st, const unsigned char *data) {
    if (st->n < 2) return SPRIG_OK;
    const sp_tensor **order = malloc(st->n * sizeof *order);
    SP_CHECK_ALLOC(order);
    size_t m = 0;
    for (size_t i = 0; i < st->n; ++i)
        if (st->tensors[i].nbytes) order[m++] = &st->tensors[i];
    qsort(order, m, sizeof *order, st_cmp_begin);
    sprig_status s = SPRIG_OK;
    const sp_tensor *reach = NULL;   /* the tensor that ends furthest so far */
    for (size_t i = 0; i < m && s == SPRIG_OK; ++i) {
        const sp_tensor *t = order[i];
        const unsigned char *b = t->data;
        if (reach && b < (const unsigned char *)reach->data + reach->nbytes) {
            size_t rb = (size_t)((const unsigned char *)reach->data - data);
            size_t tb = (size_t)(b - data);
            s = sp_fail(SPRIG_E_FORMAT,
                        "%s: tensors '%s' [%zu, %zu) and '%s' [%zu, %zu) overlap", st->label,
                        reach->name, rb, rb + reach->nbytes, t->name, tb, tb + t->nbytes);
        }
        if (!reach || b + t->nbytes > (const unsigned char *)reach->data + reach->nbytes) reach = t;
    }
    free(order);
    return s;
}

/* Parses the JSON header, rejecting anything but whitespace after it (cJSON
 * itself would ignore trailing bytes). */
static sprig_status st_parse_json(sp_safetensors *st, const char *hdr, size_t hlen) {
    if (memchr(hdr, '\0', hlen))
        return sp_fail(SPRIG_E_FORMAT, "%s: header contains a NUL byte", st->label);
    /* A NUL-terminated copy: cJSON then cannot read past the header even if
     * it overruns its length argument (the mapping may end right after it). */
    char *copy = malloc(hlen + 1);
    SP_CHECK_ALLOC(copy);
    memcpy(copy, hdr, hlen);
    copy[hlen] = '\0';
    const char *end = NULL;
    st->root = cJSON_ParseWithLengthOpts(copy, hlen + 1, &end, 0);
    size_t at = end && end >= copy && end <= copy + hlen ? (size_t)(end - copy) : hlen;
    size_t trail = at;
    while (trail < hlen && strchr(" \t\r\n", copy[trail])) ++trail;
    free(copy);
    if (!st->root)
        return sp_fail(SPRIG_E_FORMAT, "%s: header (%zu bytes) is not valid JSON (error near byte %zu)",
                       st->label, hlen, at);
    if (trail < hlen)
        return sp_fail(SPRIG_E_FORMAT, "%s: header has trailing bytes after the JSON object at %zu",
                       st->label, trail);
    if (!cJSON_IsObject(st->root))
        return sp_fail(SPRIG_E_FORMAT, "%s: header is JSON but not an object", st->label);
    return SPRIG_OK;
}

static sprig_status st_parse_header(sp_safetensors *st, const unsigned char *buf, size_t size) {
    if (size < 8)
        return sp_fail(SPRIG_E_FORMAT,
                       "%s: file is %zu bytes, too short for the 8-byte header length (truncated?)",
                       st->label, size);
    uint64_t hlen = 0;
    for (int i = 7; i >= 0; --i) hlen = hlen << 8 | buf[i];
    if (hlen > size - 8)
        return sp_fail(SPRIG_E_FORMAT,
                       "%s: header length %" PRIu64 " exceeds the %zu bytes after the length field "
                       "(truncated file?)", st->label, hlen, size - 8);
    if (hlen > SP_ST_MAX_HEADER)
        return sp_fail(SPRIG_E_FORMAT, "%s: header length %" PRIu64 " exceeds the %" PRIu64
                       "-byte limit", st->label, hlen, SP_ST_MAX_HEADER);
    if (hlen < 2)
        return sp_fail(SPRIG_E_FORMAT, "%s: header length %" PRIu64 " is too small for a JSON object",
                       st->label, hlen);
    SP_TRY(st_parse_json(st, (const char *)buf + 8, (size_t)hlen));

    const unsigned char *data = buf + 8 + hlen;
    uint64_t data_size = size - 8 - hlen;
    int count = cJSON_GetArraySize(st->root);
    st->tensors = calloc(count ? (size_t)count : 1, sizeof *st->tensors);
    SP_CHECK_ALLOC(st->tensors);
    const cJSON *entry;
    cJSON_ArrayForEach(entry, st->root) {
        if (strcmp(entry->string, "__metadata__") == 0) {
            if (st->metadata)
                return sp_fail(SPRIG_E_FORMAT, "%s: \"__metadata__\" appears twice", st->label);
            SP_TRY(st_check_metadata(st->label, entry));
            st->metadata = entry;
            continue;
        }
        SP_TRY(st_parse_tensor(st->label, entry, data, data_size, &st->tensors[st->n]));
        st->n++;
    }
    qsort(st->tensors, st->n, sizeof *st->tensors, st_cmp_name);
    SP_TRY(st_check_duplicates(st));
    return st_check_overlaps(st, data);
}

/* ---- open / close ---------------------------------------------------------------- */

static sprig_status st_new(const char *label, sp_safetensors **out) {
    sp_safetensors *st = calloc(1, sizeof *st);
    SP_CHECK_ALLOC(st);
    st->label = strdup(label ? label : "<memory>");
    if (!st->label) {
        free(st);
        return sp_fail(SPRIG_E_NOMEM, "out of memory copying a file name");
    }
    *out = st;
    return SPRIG_OK;
}

sprig_status sp_st_parse(const void *buf, size_t size, const char *label, sp_safetensors **out) {
    *out = NULL;
    if (!buf && size) return sp_fail(SPRIG_E_INVALID, "sp_st_parse: NULL buffer of %zu bytes", size);
    sp_safetensors *st;
    SP_TRY(st_new(label, &st));
    sprig_status s = st_parse_header(st, buf, size);
    if (s != SPRIG_OK) {
        sp_st_close(st);
        return s;
    }
    *out = st;
    return SPRIG_OK;
}

sprig_status sp_st_open(const char *path, sp_safetensors **out) {
    *out = NULL;
    int fd = open(path, O_RDONLY | O_CLOEXEC);
    if (fd < 0) return sp_fail(SPRIG_E_IO, "cannot open '%s': %s", path, strerror(errno));
    struct stat sb;
    if (fstat(fd, &sb) != 0) {
        int e = errno;
        close(fd);
        return sp_fail(SPRIG_E_IO, "cannot stat '%s': %s", path, strerror(e));
    }
    if (!S_ISREG(sb.st_mode)) {
        close(fd);
        return sp_fail(SPRIG_E_IO, "'%s' is not a regular file", path);
    }
    size_t size = (size_t)sb.st_size;
    if (size < 8) {  /* mmap of 0 bytes fails; report the format problem instead */
        close(fd);
        return sp_fail(SPRIG_E_FORMAT,
                       "%s: file is %zu bytes, too short for the 8-byte header length (truncated?)",
                       path, size);
    }
    void *map = mmap(NULL, size, PROT_READ, MAP_PRIVATE, fd, 0);
    int e = errno;
    close(fd);  /* the mapping keeps the file alive */
    if (map == MAP_FAILED) return sp_fail(SPRIG_E_IO, "cannot map '%s': %s", path, strerror(e));

    sp_safetensors *st;
    sprig_status s = st_new(path, &st);
    if (s != SPRIG_OK) {
        munmap(map, size);
        return s;
    }
    st->map = map;
    st->map_size = size;
    s = st_parse_header(st, map, size);
    if (s != SPRIG_OK) {
        sp_st_close(st);
        return s;
    }
    *out = st;
    return SPRIG_OK;
}

void sp_st_close(sp_safetensors *st) {
    if (!st) return;
    if (st->map) munmap(st->map, st->map_size);
    cJSON_Delete(st->root);
    free(st->tensors);
    free(st->label);
    free(st);
}

/* ---- lookup ---------------------------------------------------------------------- */

const sp_tensor *sp_st_find(const sp_safetensors *st, const char *name) {
    if (!st || !name) return NULL;
    sp_tensor key = {.name = name};
    return bsearch(&key, st->tensors, st->n, sizeof *st->tensors, st_cmp_name);
}

size_t sp_st_count(const sp_safetensors *st) { return st ? st->n : 0; }

const sp_tensor *sp_st_tensor(const sp_safetensors *st, size_t i) {
    return st && i < st->n ? &st->tensors[i] : NULL;
}

const char *sp_st_metadata(const sp_safetensors *st, const char *key) {
    if (!st || !st->metadata || !key) return NULL;
    const cJSON *v = cJSON_GetObjectItemCaseSensitive(st->metadata, key);
    return cJSON_IsString(v) ? v->valuestring : NULL;
}

/* ---- writing ------------------------------------------------------------------------ */

static sprig_status st_tensor_bytes(const sp_tensor *t, uint64_t *out) {
    if (!t->name || !t->name[0] || strcmp(t->name, "__metadata__") == 0)
        return sp_fail(SPRIG_E_INVALID, "sp_st_write: tensor needs a name other than __metadata__");
    if ((unsigned)t->dtype >= SP_DTYPE_COUNT || t->ndim < 0 || t->ndim > SP_MAX_DIMS)
        return sp_fail(SPRIG_E_INVALID, "sp_st_write: tensor '%s' has a bad dtype or ndim", t->name);
    for (int i = 0; i < t->ndim; ++i)
        if (t->shape[i] < 0)
            return sp_fail(SPRIG_E_INVALID, "sp_st_write: tensor '%s' has a negative dimension",
                           t->name);
    return st_shape_bytes("sp_st_write", t, out);
}

/* The header JSON (unpadded), malloc'ed. */
static sprig_status st_build_header(const sp_tensor *ts, size_t n, const char *const *meta,
                                    char **out) {
    *out = NULL;
    cJSON *root = cJSON_CreateObject();
    SP_CHECK_ALLOC(root);
    sprig_status s = SPRIG_OK;
    if (meta && meta[0]) {
        cJSON *m = cJSON_AddObjectToObject(root, "__metadata__");
        for (size_t i = 0; m && meta[i] && meta[i + 1]; i += 2)
            if (!cJSON_AddStringToObject(m, meta[i], meta[i + 1])) m = NULL;
        if (!m) s = sp_fail(SPRIG_E_NOMEM, "out of memory building a safetensors header");
    }
    uint64_t offset = 0;
    for (size_t i = 0; i < n && s == SPRIG_OK; ++i) {
        uint64_t bytes;
        s = st_tensor_bytes(&ts[i], &bytes);
        if (s != SPRIG_OK) break;
        cJSON *e = cJSON_AddObjectToObject(root, ts[i].name);
        cJSON *shape = e ? cJSON_AddArrayToObject(e, "shape") : NULL;
        cJSON *offs = e ? cJSON_AddArrayToObject(e, "data_offsets") : NULL;
        int ok = e && shape && offs && cJSON_AddStringToObject(e, "dtype", sp_dtype_name(ts[i].dtype));
        for (int d = 0; ok && d < ts[i].ndim; ++d)
            ok = cJSON_AddItemToArray(shape, cJSON_CreateNumber((double)ts[i].shape[d]));
        ok = ok && cJSON_AddItemToArray(offs, cJSON_CreateNumber((double)offset)) &&
             cJSON_AddItemToArray(offs, cJSON_CreateNumber((double)(offset + bytes)));
        if (!ok) s = sp_fail(SPRIG_E_NOMEM, "out of memory building a safetensors header");
        offset += bytes;
    }
    if (s == SPRIG_OK && !(*out = cJSON_PrintUnformatted(root)))
        s = sp_fail(SPRIG_E_NOMEM, "out of memory printing a safetensors header");
    cJSON_Delete(root);
    return s;
}

static sprig_status st_write_data(FILE *f, const char *path, const sp_tensor *t, sp_st_fill_fn fill,
                                  void *ctx) {
    uint64_t bytes;
    SP_TRY(st_tensor_bytes(t, &bytes));
    if (t->data) {
        if (bytes && fwrite(t->data, 1, (size_t)bytes, f) != bytes)
            return sp_fail(SPRIG_E_IO, "cannot write '%s': %s", path, strerror(errno));
        return SPRIG_OK;
    }
    enum { CHUNK = 1 << 20 };
    unsigned char *buf = calloc(1, CHUNK);
    SP_CHECK_ALLOC(buf);
    sprig_status s = SPRIG_OK;
    for (uint64_t off = 0; off < bytes && s == SPRIG_OK; off += CHUNK) {
        size_t n = bytes - off < CHUNK ? (size_t)(bytes - off) : CHUNK;
        if (fill) s = fill(ctx, t, (size_t)off, buf, n);
        if (s == SPRIG_OK && fwrite(buf, 1, n, f) != n)
            s = sp_fail(SPRIG_E_IO, "cannot write '%s': %s", path, strerror(errno));
    }
    free(buf);
    return s;
}

sprig_status sp_st_write(const char *path, const sp_tensor *tensors, size_t n,
                         const char *const *metadata, sp_st_fill_fn fill, void *ctx) {
    char *hdr;
    SP_TRY(st_build_header(tensors, n, metadata, &hdr));
    size_t len = strlen(hdr), padded = (len + 7) & ~(size_t)7;
    FILE *f = fopen(path, "wb");
    if (!f) {
        free(hdr);
        return sp_fail(SPRIG_E_IO, "cannot create '%s': %s", path, strerror(errno));
    }
    unsigned char lenbuf[8];
    for (int i = 0; i < 8; ++i) lenbuf[i] = (unsigned char)((uint64_t)padded >> (8 * i));
    sprig_status s = SPRIG_OK;
    if (fwrite(lenbuf, 1, 8, f) != 8 || fwrite(hdr, 1, len, f) != len ||
        fwrite("        ", 1, padded - len, f) != padded - len)
        s = sp_fail(SPRIG_E_IO, "cannot write '%s': %s", path, strerror(errno));
    free(hdr);
    for (size_t i = 0; i < n && s == SPRIG_OK; ++i) s = st_write_data(f, path, &tensors[i], fill, ctx);
    if (fclose(f) != 0 && s == SPRIG_OK)
        s = sp_fail(SPRIG_E_IO, "cannot write '%s': %s", path, strerror(errno));
    return s;
}
