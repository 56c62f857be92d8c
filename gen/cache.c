/* The on-disk compile cache (see sp_cache.h for the contract).
 *
 * Entry layout, integers little-endian:
 *   header  magic "SPRIGBIN" | u32 format | u32 header bytes | u64 payload bytes
 *           | u64 XXH64(payload)
 *   payload key hex[32] | arch[16] | u32 is_ptx | u32 n_kernels
 *           | n_kernels x (name[64] | 5 x i32 resources)
 *           | u64 log bytes | u64 image bytes | log | image
 * Any disagreement (size, magic, format, checksum, key) makes the entry
 * corrupt: it is deleted and the caller recompiles. */
#include <errno.h>
#include <fcntl.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include <xxhash.h>

#include "cache_internal.h"
#include "sp_cache.h"
#include "sp_error.h"
#include "sp_file.h"

#define SC_MAGIC "SPRIGBIN"
#define SC_FORMAT 1u
#define SC_HEADER_BYTES 32u
#define SC_KERNEL_BYTES (64u + 5u * 4u)
#define SC_MAX_ENTRY ((size_t)512 << 20) /* larger than any cubin we make: treat as garbage */

/* ---- folder and key ---------------------------------------------------- */

int sp_cache_dir(const char *opt_dir, char *out, size_t cap) {
    const char *env;
    int n;
    if (opt_dir) {
        if (!*opt_dir) return 0;
        n = snprintf(out, cap, "%s", opt_dir);
    } else if ((env = getenv("SPRIG_CACHE_DIR")) != NULL) {
        if (!*env) return 0;
        n = snprintf(out, cap, "%s", env);
    } else if ((env = getenv("XDG_CACHE_HOME")) != NULL && *env) {
        n = snprintf(out, cap, "%s/sprig", env);
    } else if ((env = getenv("HOME")) != NULL && *env) {
        n = snprintf(out, cap, "%s/.cache/sprig", env);
    } else {
        return 0;
    }
    return n > 0 && (size_t)n < cap;
}

static void sc_update_field(XXH3_state_t *st, const void *data, size_t len) {
    uint64_t n = len;
    XXH3_128bits_update(st, &n, sizeof n);
    XXH3_128bits_update(st, data, len);
}

void sp_cache_key(const char *source, size_t source_len, const char *const *opts, int n_opts,
                  const char *arch, int nvrtc_major, int nvrtc_minor, char hex[SP_CACHE_KEY_HEX]) {
    XXH3_state_t *st = XXH3_createState();
    XXH128_hash_t h = {0, 0};
    if (st) {
        XXH3_128bits_reset(st);
        sc_update_field(st, "sprig-cache-1", 13);
        sc_update_field(st, source, source_len);
        for (int i = 0; i < n_opts; ++i) sc_update_field(st, opts[i], strlen(opts[i]));
        sc_update_field(st, arch, strlen(arch));
        int32_t ver[2] = {nvrtc_major, nvrtc_minor};
        sc_update_field(st, ver, sizeof ver);
        h = XXH3_128bits_digest(st);
        XXH3_freeState(st);
    }
    snprintf(hex, SP_CACHE_KEY_HEX, "%016llx%016llx", (unsigned long long)h.high64,
             (unsigned long long)h.low64);
}

/* ---- little-endian packing ---------------------------------------------- */

typedef struct sc_buf {
    unsigned char *p;
    size_t len, cap;
} sc_buf;

static void sc_put(sc_buf *b, const void *data, size_t n) {
    memcpy(b->p + b->len, data, n);
    b->len += n;
}

static void sc_put_u32(sc_buf *b, uint32_t v) {
    unsigned char c[4] = {(unsigned char)v, (unsigned char)(v >> 8), (unsigned char)(v >> 16),
                          (unsigned char)(v >> 24)};
    sc_put(b, c, 4);
}

static void sc_put_u64(sc_buf *b, uint64_t v) {
    sc_put_u32(b, (uint32_t)v);
    sc_put_u32(b, (uint32_t)(v >> 32));
}

/* A reader that refuses to run past the end: every get checks the bound. */
typedef struct sc_reader {
    const unsigned char *p;
    size_t len, at;
    int bad;
} sc_reader;

static const unsigned char *sc_get(sc_reader *r, size_t n) {
    if (r->bad || n > r->len - r->at) {
        r->bad = 1;
        return NULL;
    }
    const unsigned char *at = r->p + r->at;
    r->at += n;
    return at;
}

static uint32_t sc_get_u32(sc_reader *r) {
    const unsigned char *c = sc_get(r, 4);
    if (!c) return 0;
    return (uint32_t)c[0] | (uint32_t)c[1] << 8 | (uint32_t)c[2] << 16 | (uint32_t)c[3] << 24;
}

static uint64_t sc_get_u64(sc_reader *r) {
    uint64_t lo = sc_get_u32(r);
    return lo | (uint64_t)sc_get_u32(r) << 32;
}

/* ---- load ---------------------------------------------------------------- */

static void sc_entry_path(char *out, size_t cap, const char *dir, const char *hex) {
    snprintf(out, cap, "%s/%s.sprigbin", dir, hex);
}

/* Copies a fixed-width, NUL-padded field into a C string of cap bytes. */
static int sc_get_text(sc_reader *r, size_t width, char *out, size_t cap) {
    const unsigned char *c = sc_get(r, width);
    if (!c || memchr(c, '\0', width) == NULL || cap < width) return -1;
    memcpy(out, c, width);
    out[cap - 1] = '\0';
    return 0;
}

static char *sc_get_blob(sc_reader *r, uint64_t n) {
    const unsigned char *c = sc_get(r, (size_t)n);
    if (!c) return NULL;
    char *copy = malloc((size_t)n + 1);
    if (!copy) return NULL;
    memcpy(copy, c, (size_t)n);
    copy[n] = '\0';
    return copy;
}

/* Parses a verified payload into bin; 0 on success. */
static int sc_parse_payload(sc_reader *r, const char *hex, sprig_binary *bin) {
    const unsigned char *key = sc_get(r, 32);
    if (!key || memcmp(key, hex, 32) != 0) return -1;
    if (sc_get_text(r, 16, bin->arch, sizeof bin->arch) != 0) return -1;
    bin->is_ptx = (int)sc_get_u32(r);
    uint32_t nk = sc_get_u32(r);
    if (r->bad || nk > SPRIG_MAX_KERNELS) return -1;
    bin->n_kernels = (int)nk;
    for (uint32_t k = 0; k < nk; ++k) {
        if (sc_get_text(r, 64, bin->kernel_names[k], sizeof bin->kernel_names[k]) != 0) return -1;
        sprig_resources *res = &bin->res[k];
        res->registers = (int32_t)sc_get_u32(r);
        res->spill_store_bytes = (int32_t)sc_get_u32(r);
        res->spill_load_bytes = (int32_t)sc_get_u32(r);
        res->stack_bytes = (int32_t)sc_get_u32(r);
        res->static_smem_bytes = (int32_t)sc_get_u32(r);
    }
    uint64_t log_len = sc_get_u64(r), image_len = sc_get_u64(r);
    if (r->bad || log_len > r->len - r->at || image_len != r->len - r->at - log_len || image_len == 0)
        return -1;
    bin->log = sc_get_blob(r, log_len);
    bin->image = sc_get_blob(r, image_len);
    if (!bin->log || !bin->image) return -1;
    bin->image_size = (size_t)image_len;
    return 0;
}

int sp_cache_load(const char *dir, const char *hex, sprig_binary *bin) {
    char path[4200];
    sc_entry_path(path, sizeof path, dir, hex);
    size_t len = 0;
    int missing = 0;
    char *text = NULL;
    if (sp_file_read(path, SC_MAX_ENTRY, &text, &len, &missing) != SPRIG_OK) {
        if (!missing) unlink(path); /* unreadable or oversized: make room for a good one */
        return 0;
    }
    const unsigned char *data = (const unsigned char *)text;
    int ok = 0;
    sc_reader hr = {data, len, 0, 0};
    const unsigned char *magic = sc_get(&hr, 8);
    uint32_t format = sc_get_u32(&hr), header = sc_get_u32(&hr);
    uint64_t payload = sc_get_u64(&hr), sum = sc_get_u64(&hr);
    if (!hr.bad && memcmp(magic, SC_MAGIC, 8) == 0 && format == SC_FORMAT && header == SC_HEADER_BYTES &&
        payload == len - SC_HEADER_BYTES && XXH64(data + SC_HEADER_BYTES, (size_t)payload, 0) == sum) {
        sc_reader pr = {data + SC_HEADER_BYTES, (size_t)payload, 0, 0};
        ok = sc_parse_payload(&pr, hex, bin) == 0;
    }
    free(text);
    if (!ok) {
        free(bin->log);
        free(bin->image);
        bin->log = NULL;
        bin->image = NULL;
        bin->image_size = 0;
        bin->n_kernels = 0;
        unlink(path);
    }
    return ok;
}

/* ---- store --------------------------------------------------------------- */

static unsigned char *sc_serialize(const char *hex, const sprig_binary *bin, size_t *out_len) {
    size_t log_len = bin->log ? strlen(bin->log) : 0;
    size_t payload = 32 + 16 + 8 + (size_t)bin->n_kernels * SC_KERNEL_BYTES + 16 + log_len + bin->image_size;
    sc_buf b = {malloc(SC_HEADER_BYTES + payload), 0, SC_HEADER_BYTES + payload};
    if (!b.p) return NULL;
    b.len = SC_HEADER_BYTES; /* header last: it holds the payload's checksum */
    sc_put(&b, hex, 32);
    char field[64];
    memset(field, 0, sizeof field);
    snprintf(field, 16, "%s", bin->arch);
    sc_put(&b, field, 16);
    sc_put_u32(&b, (uint32_t)bin->is_ptx);
    sc_put_u32(&b, (uint32_t)bin->n_kernels);
    for (int k = 0; k < bin->n_kernels; ++k) {
        memset(field, 0, sizeof field);
        snprintf(field, sizeof field, "%s", bin->kernel_names[k]);
        sc_put(&b, field, 64);
        const sprig_resources *res = &bin->res[k];
        sc_put_u32(&b, (uint32_t)res->registers);
        sc_put_u32(&b, (uint32_t)res->spill_store_bytes);
        sc_put_u32(&b, (uint32_t)res->spill_load_bytes);
        sc_put_u32(&b, (uint32_t)res->stack_bytes);
        sc_put_u32(&b, (uint32_t)res->static_smem_bytes);
    }
    sc_put_u64(&b, log_len);
    sc_put_u64(&b, bin->image_size);
    sc_put(&b, bin->log ? bin->log : "", log_len);
    sc_put(&b, bin->image, bin->image_size);
    sc_buf h = {b.p, 0, SC_HEADER_BYTES};
    sc_put(&h, SC_MAGIC, 8);
    sc_put_u32(&h, SC_FORMAT);
    sc_put_u32(&h, SC_HEADER_BYTES);
    sc_put_u64(&h, payload);
    sc_put_u64(&h, XXH64(b.p + SC_HEADER_BYTES, payload, 0));
    *out_len = b.len;
    return b.p;
}

int sp_cache_store(const char *dir, const char *hex, const sprig_binary *bin) {
    if (!bin->image || bin->image_size == 0 || bin->n_kernels > SPRIG_MAX_KERNELS) return 0;
    if (sp_mkdir_p(dir) != 0) return 0;
    size_t len = 0;
    unsigned char *data = sc_serialize(hex, bin, &len);
    if (!data) return 0;
    /* A unique temp name per writer (threads, processes), renamed into place. */
    char path[4200];
    sc_entry_path(path, sizeof path, dir, hex);
    const int stored = sp_file_write_atomic(path, data, len) == SPRIG_OK;
    free(data);
    return stored;
}
