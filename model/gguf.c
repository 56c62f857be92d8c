/* GGUF reader (see sp_gguf.h). The file is mapped once; the parser works on a
 * memory buffer so tests and the fuzzer can feed it bytes. Every read goes
 * through a cursor that checks the bytes remaining first, and every count is
 * checked against what its smallest possible encoding would occupy before
 * anything is allocated for it, so a hostile count cannot make us allocate
 * more than a small multiple of the file size. */
#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>

#include "sp_error.h"
#include "sp_gguf.h"

#define GG_MAX_DIMS 4
#define GG_DEFAULT_ALIGN 32
#define GG_MAX_ARRAY_DEPTH 4   /* arrays of arrays nest at most this deep: bounds the recursion */

struct sp_gguf {
    char *label;
    void *map;             /* mmap base, NULL when parsing a caller's buffer */
    size_t map_size;
    uint32_t version;
    size_t alignment;
    size_t n_kv;
    sp_gguf_kv *kv;
    size_t n_tensors;
    sp_gguf_tensor *tensors;
    size_t *by_name;       /* tensor indices sorted by name */
};

/* ---- the type tables ---------------------------------------------------------------- */

static const struct {
    const char *name;
    size_t blck, bytes;
} gg_types[] = {
    [0] = {"F32", 1, 4},       [1] = {"F16", 1, 2},        [2] = {"Q4_0", 32, 18},
    [3] = {"Q4_1", 32, 20},    [6] = {"Q5_0", 32, 22},     [7] = {"Q5_1", 32, 24},
    [8] = {"Q8_0", 32, 34},    [9] = {"Q8_1", 32, 40},     [10] = {"Q2_K", 256, 84},
    [11] = {"Q3_K", 256, 110}, [12] = {"Q4_K", 256, 144},  [13] = {"Q5_K", 256, 176},
    [14] = {"Q6_K", 256, 210}, [15] = {"Q8_K", 256, 292},  [16] = {"IQ2_XXS", 256, 66},
    [17] = {"IQ2_XS", 256, 74}, [18] = {"IQ3_XXS", 256, 98}, [19] = {"IQ1_S", 256, 50},
    [20] = {"IQ4_NL", 32, 18}, [21] = {"IQ3_S", 256, 110}, [22] = {"IQ2_S", 256, 82},
    [23] = {"IQ4_XS", 256, 136}, [24] = {"I8", 1, 1},      [25] = {"I16", 1, 2},
    [26] = {"I32", 1, 4},      [27] = {"I64", 1, 8},       [28] = {"F64", 1, 8},
    [29] = {"IQ1_M", 256, 56}, [30] = {"BF16", 1, 2},      [34] = {"TQ1_0", 256, 54},
    [35] = {"TQ2_0", 256, 66}, [39] = {"MXFP4", 32, 17},
};
#define GG_N_TYPES (sizeof gg_types / sizeof gg_types[0])

const char *sp_ggml_type_name(uint32_t t) {
    return t < GG_N_TYPES && gg_types[t].name ? gg_types[t].name : "unknown";
}
size_t sp_ggml_block_elems(uint32_t t) { return t < GG_N_TYPES ? gg_types[t].blck : 0; }
size_t sp_ggml_block_bytes(uint32_t t) { return t < GG_N_TYPES ? gg_types[t].bytes : 0; }

static const char *const gg_vtype_names[SP_GGUF_VTYPE_COUNT] = {
    "u8", "i8", "u16", "i16", "u32", "i32", "f32", "bool", "string", "array", "u64", "i64", "f64"};
static const size_t gg_vtype_size[SP_GGUF_VTYPE_COUNT] = {1, 1, 2, 2, 4, 4, 4, 1, 8 /* min: the length */,
                                                          12 /* min: type + count */, 8, 8, 8};

const char *sp_gguf_vtype_name(uint32_t v) { return v < SP_GGUF_VTYPE_COUNT ? gg_vtype_names[v] : "unknown"; }

/* ---- the cursor ------------------------------------------------------------------------ */

typedef struct gg_cur {
    const unsigned char *p;
    size_t size, pos;
    const char *label;
} gg_cur;

static size_t gg_left(const gg_cur *c) { return c->size - c->pos; }

static sprig_status gg_need(gg_cur *c, uint64_t n, const char *what) {
    if (n > gg_left(c))
        return sp_fail(SPRIG_E_FORMAT, "%s: truncated: %s needs %" PRIu64 " bytes at offset %zu, %zu remain",
                       c->label, what, n, c->pos, gg_left(c));
    return SPRIG_OK;
}

static uint64_t gg_le(const unsigned char *p, int n) {
    uint64_t v = 0;
    for (int i = n - 1; i >= 0; --i) v = v << 8 | p[i];
    return v;
}

static sprig_status gg_u32(gg_cur *c, const char *what, uint32_t *out) {
    SP_TRY(gg_need(c, 4, what));
    *out = (uint32_t)gg_le(c->p + c->pos, 4);
    c->pos += 4;
    return SPRIG_OK;
}

static sprig_status gg_u64(gg_cur *c, const char *what, uint64_t *out) {
    SP_TRY(gg_need(c, 8, what));
    *out = gg_le(c->p + c->pos, 8);
    c->pos += 8;
    return SPRIG_OK;
}

static sprig_status gg_string(gg_cur *c, const char *what, sp_gguf_str *out) {
    uint64_t len;
    SP_TRY(gg_u64(c, what, &len));
    SP_TRY(gg_need(c, len, what));
    out->s = (const char *)c->p + c->pos;
    out->len = len;
    c->pos += (size_t)len;
    return SPRIG_OK;
}

/* A key or tensor name: owned, NUL-terminated, no NUL inside, not empty. */
static sprig_status gg_name(gg_cur *c, const char *what, char **out) {
    sp_gguf_str s;
    SP_TRY(gg_string(c, what, &s));
    if (s.len == 0) return sp_fail(SPRIG_E_FORMAT, "%s: %s is empty (offset %zu)", c->label, what, c->pos);
    if (memchr(s.s, '\0', (size_t)s.len))
        return sp_fail(SPRIG_E_FORMAT, "%s: %s '%.*s' contains a NUL byte", c->label, what,
                       (int)strnlen(s.s, 64), s.s);
    *out = malloc((size_t)s.len + 1);
    SP_CHECK_ALLOC(*out);
    memcpy(*out, s.s, (size_t)s.len);
    (*out)[s.len] = '\0';
    return SPRIG_OK;
}

/* ---- metadata values -------------------------------------------------------------------- */

static sprig_status gg_vtype(gg_cur *c, const char *key, const char *what, sp_gguf_vtype *out) {
    uint32_t t;
    SP_TRY(gg_u32(c, what, &t));
    if (t >= SP_GGUF_VTYPE_COUNT)
        return sp_fail(SPRIG_E_FORMAT, "%s: metadata '%s' has unknown value type %" PRIu32, c->label, key, t);
    *out = (sp_gguf_vtype)t;
    return SPRIG_OK;
}

/* Skips one array element (or a whole nested array), checking it. */
static sprig_status gg_skip_value(gg_cur *c, const char *key, sp_gguf_vtype t, int depth);

static sprig_status gg_skip_array(gg_cur *c, const char *key, int depth) {
    if (depth >= GG_MAX_ARRAY_DEPTH)
        return sp_fail(SPRIG_E_FORMAT, "%s: metadata '%s' nests arrays deeper than %d", c->label, key,
                       GG_MAX_ARRAY_DEPTH);
    sp_gguf_vtype et;
    uint64_t n;
    SP_TRY(gg_vtype(c, key, "an array's element type", &et));
    SP_TRY(gg_u64(c, "an array's length", &n));
    if (n > gg_left(c) / gg_vtype_size[et])
        return sp_fail(SPRIG_E_FORMAT, "%s: metadata '%s' claims %" PRIu64 " %s elements, more than the "
                       "%zu bytes left can hold", c->label, key, n, gg_vtype_names[et], gg_left(c));
    if (et != SP_GGUF_STRING && et != SP_GGUF_ARRAY) {
        c->pos += (size_t)n * gg_vtype_size[et];
        return SPRIG_OK;
    }
    for (uint64_t i = 0; i < n; ++i) SP_TRY(gg_skip_value(c, key, et, depth + 1));
    return SPRIG_OK;
}

static sprig_status gg_skip_value(gg_cur *c, const char *key, sp_gguf_vtype t, int depth) {
    if (t == SP_GGUF_STRING) {
        sp_gguf_str s;
        return gg_string(c, "a string", &s);
    }
    if (t == SP_GGUF_ARRAY) return gg_skip_array(c, key, depth);
    SP_TRY(gg_need(c, gg_vtype_size[t], key));
    c->pos += gg_vtype_size[t];
    return SPRIG_OK;
}

static double gg_f32(uint64_t bits) {
    uint32_t b = (uint32_t)bits;
    float f;
    memcpy(&f, &b, 4);
    return f;
}

static double gg_f64(uint64_t bits) {
    double d;
    memcpy(&d, &bits, 8);
    return d;
}

/* A scalar at p of type t into kv's u / i / f. */
static void gg_scalar(const unsigned char *p, sp_gguf_vtype t, sp_gguf_kv *kv) {
    const int n = (int)gg_vtype_size[t];
    const uint64_t raw = gg_le(p, n);
    switch (t) {
    case SP_GGUF_I8: kv->i = (int8_t)raw; break;
    case SP_GGUF_I16: kv->i = (int16_t)raw; break;
    case SP_GGUF_I32: kv->i = (int32_t)raw; break;
    case SP_GGUF_I64: kv->i = (int64_t)raw; break;
    case SP_GGUF_F32: kv->f = gg_f32(raw); break;
    case SP_GGUF_F64: kv->f = gg_f64(raw); break;
    default: kv->u = raw; break;
    }
}

static sprig_status gg_read_kv(gg_cur *c, sp_gguf_kv *kv) {
    SP_TRY(gg_name(c, "a metadata key", (char **)&kv->key));
    SP_TRY(gg_vtype(c, kv->key, "a metadata value type", &kv->type));
    const sp_gguf_vtype t = kv->type;
    if (t == SP_GGUF_STRING) return gg_string(c, kv->key, &kv->str);
    if (t != SP_GGUF_ARRAY) {
        SP_TRY(gg_need(c, gg_vtype_size[t], kv->key));
        gg_scalar(c->p + c->pos, t, kv);
        if (t == SP_GGUF_BOOL && kv->u > 1)
            return sp_fail(SPRIG_E_FORMAT, "%s: metadata '%s' is a bool of value %" PRIu64, c->label, kv->key, kv->u);
        c->pos += gg_vtype_size[t];
        return SPRIG_OK;
    }
    SP_TRY(gg_vtype(c, kv->key, "an array's element type", &kv->arr_type));
    SP_TRY(gg_u64(c, "an array's length", &kv->n));
    const sp_gguf_vtype et = kv->arr_type;
    if (kv->n > gg_left(c) / gg_vtype_size[et])
        return sp_fail(SPRIG_E_FORMAT, "%s: metadata '%s' claims %" PRIu64 " %s elements, more than the "
                       "%zu bytes left can hold", c->label, kv->key, kv->n, gg_vtype_names[et], gg_left(c));
    kv->arr_data = c->p + c->pos;
    if (et == SP_GGUF_STRING) {
        /* bounded: each element takes at least 8 bytes of the file */
        kv->arr_str = malloc((size_t)(kv->n ? kv->n : 1) * sizeof *kv->arr_str);
        SP_CHECK_ALLOC(kv->arr_str);
        for (uint64_t i = 0; i < kv->n; ++i) SP_TRY(gg_string(c, kv->key, &kv->arr_str[i]));
        return SPRIG_OK;
    }
    if (et == SP_GGUF_ARRAY) {
        for (uint64_t i = 0; i < kv->n; ++i) SP_TRY(gg_skip_array(c, kv->key, 1));
        return SPRIG_OK;
    }
    if (et == SP_GGUF_BOOL)
        for (uint64_t i = 0; i < kv->n; ++i)
            if (c->p[c->pos + i] > 1)
                return sp_fail(SPRIG_E_FORMAT, "%s: metadata '%s' element %" PRIu64 " is a bool of value %u",
                               c->label, kv->key, i, c->p[c->pos + i]);
    c->pos += (size_t)kv->n * gg_vtype_size[et];
    return SPRIG_OK;
}

int64_t sp_gguf_arr_int(const sp_gguf_kv *kv, uint64_t i) {
    sp_gguf_kv tmp = {0};
    const size_t n = gg_vtype_size[kv->arr_type];
    gg_scalar((const unsigned char *)kv->arr_data + i * n, kv->arr_type, &tmp);
    switch (kv->arr_type) {
    case SP_GGUF_I8: case SP_GGUF_I16: case SP_GGUF_I32: case SP_GGUF_I64: return tmp.i;
    case SP_GGUF_F32: case SP_GGUF_F64: return (int64_t)tmp.f;
    default: return (int64_t)tmp.u;
    }
}

double sp_gguf_arr_double(const sp_gguf_kv *kv, uint64_t i) {
    sp_gguf_kv tmp = {0};
    const size_t n = gg_vtype_size[kv->arr_type];
    gg_scalar((const unsigned char *)kv->arr_data + i * n, kv->arr_type, &tmp);
    switch (kv->arr_type) {
    case SP_GGUF_F32: case SP_GGUF_F64: return tmp.f;
    case SP_GGUF_I8: case SP_GGUF_I16: case SP_GGUF_I32: case SP_GGUF_I64: return (double)tmp.i;
    default: return (double)tmp.u;
    }
}

/* ---- tensor infos -------------------------------------------------------------------------- */

static sprig_status gg_read_tensor(gg_cur *c, sp_gguf_tensor *t) {
    SP_TRY(gg_name(c, "a tensor name", (char **)&t->name));
    uint32_t nd;
    SP_TRY(gg_u32(c, "a tensor's dimension count", &nd));
    if (nd < 1 || nd > GG_MAX_DIMS)
        return sp_fail(SPRIG_E_FORMAT, "%s: tensor '%s' has %" PRIu32 " dimensions (1 to %d allowed)", c->label,
                       t->name, nd, GG_MAX_DIMS);
    t->n_dims = (int)nd;
    uint64_t elems = 1;
    for (int d = 0; d < GG_MAX_DIMS; ++d) {
        uint64_t v = 1;
        if (d < t->n_dims) SP_TRY(gg_u64(c, "a tensor dimension", &v));
        /* ggml counts in int64; a zero-sized dimension makes an empty tensor no model needs */
        if (v == 0 || v > (uint64_t)INT64_MAX || elems > (uint64_t)INT64_MAX / v)
            return sp_fail(SPRIG_E_FORMAT, "%s: tensor '%s' has dimension %d of %" PRIu64
                           " (zero, or the element count overflows)", c->label, t->name, d, v);
        t->ne[d] = (int64_t)v;
        elems *= v;
    }
    t->n_elems = (int64_t)elems;
    SP_TRY(gg_u32(c, "a tensor type", &t->type));
    const size_t blck = sp_ggml_block_elems(t->type), bb = sp_ggml_block_bytes(t->type);
    if (!blck)
        return sp_fail(SPRIG_E_FORMAT, "%s: tensor '%s' has unknown ggml type %" PRIu32, c->label, t->name, t->type);
    if ((uint64_t)t->ne[0] % blck)
        return sp_fail(SPRIG_E_FORMAT, "%s: tensor '%s' (%s) has rows of %" PRId64 " elements, not a multiple "
                       "of its block of %zu", c->label, t->name, sp_ggml_type_name(t->type), t->ne[0], blck);
    const uint64_t blocks = elems / blck;
    if (blocks > SIZE_MAX / bb)
        return sp_fail(SPRIG_E_FORMAT, "%s: tensor '%s' is too large (%" PRIu64 " blocks)", c->label, t->name, blocks);
    t->nbytes = (size_t)(blocks * bb);
    return gg_u64(c, "a tensor offset", &t->offset);
}

/* qsort has no context argument in C11: the tensors being sorted, per thread,
 * so parses on several threads do not interfere. */
static __thread const sp_gguf_tensor *gg_sort_base;
static int gg_cmp_offset(const void *a, const void *b) {
    const sp_gguf_tensor *x = &gg_sort_base[*(const size_t *)a], *y = &gg_sort_base[*(const size_t *)b];
    return x->offset < y->offset ? -1 : x->offset > y->offset;
}

static int gg_cmp_name_idx(const void *a, const void *b) {
    return strcmp(gg_sort_base[*(const size_t *)a].name, gg_sort_base[*(const size_t *)b].name);
}

static sprig_status gg_check_tensors(sp_gguf *g, const unsigned char *data, size_t data_size) {
    const size_t n = g->n_tensors;
    size_t *order = malloc((n ? n : 1) * sizeof *order);
    SP_CHECK_ALLOC(order);
    for (size_t i = 0; i < n; ++i) order[i] = i;
    sprig_status s = SPRIG_OK;
    /* Sorted by offset, each tensor must end before the next begins, inside the data. */
    gg_sort_base = g->tensors;
    qsort(order, n, sizeof *order, gg_cmp_offset);
    uint64_t end_prev = 0;
    const char *prev = NULL;
    for (size_t k = 0; k < n && s == SPRIG_OK; ++k) {
        sp_gguf_tensor *t = &g->tensors[order[k]];
        if (t->offset % g->alignment)
            s = sp_fail(SPRIG_E_FORMAT, "%s: tensor '%s' starts at data offset %" PRIu64 ", not a multiple of "
                        "the alignment %zu", g->label, t->name, t->offset, g->alignment);
        else if (t->offset > data_size || t->nbytes > data_size - t->offset)
            s = sp_fail(SPRIG_E_FORMAT, "%s: tensor '%s' (%s, %zu bytes at data offset %" PRIu64 ") runs past the "
                        "end of the file (data section of %zu bytes)", g->label, t->name,
                        sp_ggml_type_name(t->type), t->nbytes, t->offset, data_size);
        else if (prev && t->offset < end_prev)
            s = sp_fail(SPRIG_E_FORMAT, "%s: tensors '%s' and '%s' overlap", g->label, prev, t->name);
        else {
            t->data = data + t->offset;
            end_prev = t->offset + t->nbytes;
            prev = t->name;
        }
    }
    if (s == SPRIG_OK) {
        memcpy(g->by_name, order, n * sizeof *order);
        qsort(g->by_name, n, sizeof *order, gg_cmp_name_idx);
        for (size_t k = 1; k < n && s == SPRIG_OK; ++k)
            if (strcmp(g->tensors[g->by_name[k - 1]].name, g->tensors[g->by_name[k]].name) == 0)
                s = sp_fail(SPRIG_E_FORMAT, "%s: tensor '%s' appears twice", g->label, g->tensors[g->by_name[k]].name);
    }
    gg_sort_base = NULL;
    free(order);
    return s;
}

/* ---- the whole file ---------------------------------------------------------------------------- */

static sprig_status gg_alignment(sp_gguf *g) {
    g->alignment = GG_DEFAULT_ALIGN;
    const sp_gguf_kv *a = sp_gguf_find_kv(g, "general.alignment");
    if (!a) return SPRIG_OK;
    if (a->type != SP_GGUF_U32)
        return sp_fail(SPRIG_E_FORMAT, "%s: general.alignment is a %s, not a u32", g->label, gg_vtype_names[a->type]);
    if (a->u == 0 || (a->u & (a->u - 1)))
        return sp_fail(SPRIG_E_FORMAT, "%s: general.alignment %" PRIu64 " is not a power of two", g->label, a->u);
    g->alignment = (size_t)a->u;
    return SPRIG_OK;
}

static int gg_cmp_key(const void *a, const void *b) {
    return strcmp(*(const char *const *)a, *(const char *const *)b);
}

static sprig_status gg_unique_keys(const sp_gguf *g) {
    const char **keys = malloc((g->n_kv ? g->n_kv : 1) * sizeof *keys);
    SP_CHECK_ALLOC(keys);
    for (size_t i = 0; i < g->n_kv; ++i) keys[i] = g->kv[i].key;
    qsort(keys, g->n_kv, sizeof *keys, gg_cmp_key);
    sprig_status s = SPRIG_OK;
    for (size_t i = 1; i < g->n_kv && s == SPRIG_OK; ++i)
        if (strcmp(keys[i - 1], keys[i]) == 0)
            s = sp_fail(SPRIG_E_FORMAT, "%s: metadata key '%s' appears twice", g->label, keys[i]);
    free(keys);
    return s;
}

static sprig_status gg_parse(sp_gguf *g, const unsigned char *buf, size_t size) {
    gg_cur c = {buf, size, 0, g->label};
    if (size < 4 || memcmp(buf, "GGUF", 4) != 0)
        return sp_fail(SPRIG_E_FORMAT, "%s: not a GGUF file (no 'GGUF' magic)", g->label);
    c.pos = 4;
    SP_TRY(gg_u32(&c, "the version", &g->version));
    if (g->version != 2 && g->version != 3)
        return sp_fail(SPRIG_E_FORMAT, "%s: GGUF version %" PRIu32 " (sprig reads versions 2 and 3)", g->label,
                       g->version);
    uint64_t n_tensors, n_kv;
    SP_TRY(gg_u64(&c, "the tensor count", &n_tensors));
    SP_TRY(gg_u64(&c, "the metadata count", &n_kv));
    /* smallest encodings: a kv is 8 (key length) + 1 (key) + 4 (type) + 1 bytes;
     * a tensor info 8 + 1 + 4 + 8 + 4 + 8 bytes */
    if (n_kv > gg_left(&c) / 14)
        return sp_fail(SPRIG_E_FORMAT, "%s: claims %" PRIu64 " metadata entries, more than the rest of the file "
                       "(%zu bytes) can hold: truncated or corrupt", g->label, n_kv, gg_left(&c));
    if (n_tensors > gg_left(&c) / 33)
        return sp_fail(SPRIG_E_FORMAT, "%s: claims %" PRIu64 " tensors, more than the rest of the file (%zu bytes) "
                       "can hold: truncated or corrupt", g->label, n_tensors, gg_left(&c));
    g->kv = calloc(n_kv ? (size_t)n_kv : 1, sizeof *g->kv);
    g->tensors = calloc(n_tensors ? (size_t)n_tensors : 1, sizeof *g->tensors);
    g->by_name = calloc(n_tensors ? (size_t)n_tensors : 1, sizeof *g->by_name);
    SP_CHECK_ALLOC(g->kv);
    SP_CHECK_ALLOC(g->tensors);
    SP_CHECK_ALLOC(g->by_name);
    for (uint64_t i = 0; i < n_kv; ++i) {
        g->n_kv = (size_t)i + 1;  /* counted first, so close frees a half-read entry */
        SP_TRY(gg_read_kv(&c, &g->kv[i]));
    }
    SP_TRY(gg_unique_keys(g));
    SP_TRY(gg_alignment(g));
    for (uint64_t i = 0; i < n_tensors; ++i) {
        g->n_tensors = (size_t)i + 1;
        SP_TRY(gg_read_tensor(&c, &g->tensors[i]));
    }
    /* the data section starts at the next multiple of the alignment (the file may end there when empty) */
    size_t start = c.pos;
    size_t pad = (g->alignment - start % g->alignment) % g->alignment;
    if (pad > size - start) {
        if (n_tensors)
            return sp_fail(SPRIG_E_FORMAT, "%s: truncated: the data section (at offset %zu) is missing", g->label,
                           start + pad);
        pad = size - start;
    }
    start += pad;
    return gg_check_tensors(g, buf + start, size - start);
}

sprig_status sp_gguf_parse(const void *buf, size_t size, const char *label, sp_gguf **out) {
    *out = NULL;
    sp_gguf *g = calloc(1, sizeof *g);
    SP_CHECK_ALLOC(g);
    g->label = strdup(label ? label : "(buffer)");
    sprig_status s = g->label ? gg_parse(g, buf, size) : sp_fail(SPRIG_E_NOMEM, "out of memory");
    if (s != SPRIG_OK) {
        sp_gguf_close(g);
        return s;
    }
    *out = g;
    return SPRIG_OK;
}

sprig_status sp_gguf_open(const char *path, sp_gguf **out) {
    *out = NULL;
    int fd = open(path, O_RDONLY | O_NONBLOCK | O_CLOEXEC);
    if (fd < 0) return sp_fail(SPRIG_E_IO, "cannot open '%s': %s", path, strerror(errno));
    struct stat sb;
    if (fstat(fd, &sb) != 0 || !S_ISREG(sb.st_mode)) {
        close(fd);
        return sp_fail(SPRIG_E_IO, "'%s' is not a regular file", path);
    }
    const size_t size = (size_t)sb.st_size;
    void *map = size ? mmap(NULL, size, PROT_READ, MAP_PRIVATE, fd, 0) : NULL;
    close(fd);
    if (size && map == MAP_FAILED) return sp_fail(SPRIG_E_IO, "cannot map '%s': %s", path, strerror(errno));
    sprig_status s = sp_gguf_parse(size ? map : "", size, path, out);
    if (s != SPRIG_OK) {
        if (size) munmap(map, size);
        return s;
    }
    (*out)->map = size ? map : NULL;
    (*out)->map_size = size;
    return SPRIG_OK;
}

void sp_gguf_close(sp_gguf *g) {
    if (!g) return;
    for (size_t i = 0; i < g->n_kv; ++i) {
        free((char *)g->kv[i].key);
        free(g->kv[i].arr_str);
    }
    for (size_t i = 0; i < g->n_tensors; ++i) free((char *)g->tensors[i].name);
    free(g->kv);
    free(g->tensors);
    free(g->by_name);
    if (g->map) munmap(g->map, g->map_size);
    free(g->label);
    free(g);
}

/* ---- lookups ------------------------------------------------------------------------------------ */

const char *sp_gguf_label(const sp_gguf *g) { return g->label; }
uint32_t sp_gguf_version(const sp_gguf *g) { return g->version; }
size_t sp_gguf_alignment(const sp_gguf *g) { return g->alignment; }
size_t sp_gguf_n_kv(const sp_gguf *g) { return g->n_kv; }
const sp_gguf_kv *sp_gguf_kv_at(const sp_gguf *g, size_t i) { return i < g->n_kv ? &g->kv[i] : NULL; }
size_t sp_gguf_n_tensors(const sp_gguf *g) { return g->n_tensors; }
const sp_gguf_tensor *sp_gguf_tensor_at(const sp_gguf *g, size_t i) {
    return i < g->n_tensors ? &g->tensors[i] : NULL;
}

const sp_gguf_kv *sp_gguf_find_kv(const sp_gguf *g, const char *key) {
    /* metadata is small (tens of keys): a scan is enough */
    for (size_t i = 0; i < g->n_kv; ++i)
        if (g->kv[i].key && strcmp(g->kv[i].key, key) == 0) return &g->kv[i];
    return NULL;
}

const sp_gguf_tensor *sp_gguf_find_tensor(const sp_gguf *g, const char *name) {
    size_t lo = 0, hi = g->n_tensors;
    while (lo < hi) {
        size_t mid = lo + (hi - lo) / 2;
        int c = strcmp(g->tensors[g->by_name[mid]].name, name);
        if (c == 0) return &g->tensors[g->by_name[mid]];
        if (c < 0) lo = mid + 1;
        else hi = mid;
    }
    return NULL;
}

static int gg_is_int(sp_gguf_vtype t) {
    return t <= SP_GGUF_I32 || t == SP_GGUF_U64 || t == SP_GGUF_I64;
}
static int gg_is_signed(sp_gguf_vtype t) {
    return t == SP_GGUF_I8 || t == SP_GGUF_I16 || t == SP_GGUF_I32 || t == SP_GGUF_I64;
}

sprig_status sp_gguf_get_int(const sp_gguf *g, const char *key, int required, int64_t lo, int64_t hi,
                             int64_t *out) {
    const sp_gguf_kv *kv = sp_gguf_find_kv(g, key);
    if (!kv) return required ? sp_fail(SPRIG_E_FORMAT, "%s: metadata '%s' is missing", g->label, key) : SPRIG_OK;
    if (!gg_is_int(kv->type))
        return sp_fail(SPRIG_E_FORMAT, "%s: metadata '%s' is a %s, not an integer", g->label, key,
                       gg_vtype_names[kv->type]);
    if (gg_is_signed(kv->type) ? (kv->i < lo || kv->i > hi) : (kv->u > (uint64_t)INT64_MAX ||
                                                               (int64_t)kv->u < lo || (int64_t)kv->u > hi)) {
        if (gg_is_signed(kv->type))
            return sp_fail(SPRIG_E_FORMAT, "%s: metadata '%s' is %" PRId64 ", outside %" PRId64 "..%" PRId64,
                           g->label, key, kv->i, lo, hi);
        return sp_fail(SPRIG_E_FORMAT, "%s: metadata '%s' is %" PRIu64 ", outside %" PRId64 "..%" PRId64, g->label,
                       key, kv->u, lo, hi);
    }
    *out = gg_is_signed(kv->type) ? kv->i : (int64_t)kv->u;
    return SPRIG_OK;
}

sprig_status sp_gguf_get_double(const sp_gguf *g, const char *key, int required, double *out) {
    const sp_gguf_kv *kv = sp_gguf_find_kv(g, key);
    if (!kv) return required ? sp_fail(SPRIG_E_FORMAT, "%s: metadata '%s' is missing", g->label, key) : SPRIG_OK;
    if (kv->type == SP_GGUF_F32 || kv->type == SP_GGUF_F64) *out = kv->f;
    else if (gg_is_int(kv->type)) *out = gg_is_signed(kv->type) ? (double)kv->i : (double)kv->u;
    else
        return sp_fail(SPRIG_E_FORMAT, "%s: metadata '%s' is a %s, not a number", g->label, key,
                       gg_vtype_names[kv->type]);
    return SPRIG_OK;
}

sprig_status sp_gguf_get_str(const sp_gguf *g, const char *key, int required, char *buf, size_t cap) {
    const sp_gguf_kv *kv = sp_gguf_find_kv(g, key);
    if (!kv) return required ? sp_fail(SPRIG_E_FORMAT, "%s: metadata '%s' is missing", g->label, key) : SPRIG_OK;
    if (kv->type != SP_GGUF_STRING)
        return sp_fail(SPRIG_E_FORMAT, "%s: metadata '%s' is a %s, not a string", g->label, key,
                       gg_vtype_names[kv->type]);
    if (kv->str.len >= cap || memchr(kv->str.s, '\0', (size_t)kv->str.len))
        return sp_fail(SPRIG_E_FORMAT, "%s: metadata '%s' is longer than %zu bytes or holds a NUL", g->label, key,
                       cap - 1);
    memcpy(buf, kv->str.s, (size_t)kv->str.len);
    buf[kv->str.len] = '\0';
    return SPRIG_OK;
}
