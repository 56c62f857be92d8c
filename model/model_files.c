/* Opening a model folder (see sp_model_files.h): config.json, one or more
 * safetensors files, and one sorted name -> tensor table across them. */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cjson/cJSON.h>

#include "model_internal.h"
#include "sp_error.h"
#include "sp_file.h"
#include "sp_gguf.h"
#include "sp_model_files.h"
#include "sp_slicegpt.h"

#define MF_INDEX "model.safetensors.index.json"
#define MF_SINGLE "model.safetensors"
#define MF_MAX_INDEX_BYTES (64u << 20)

typedef struct mf_entry {
    const char *name;      /* the tensor's own name, owned by its shard */
    const sp_tensor *t;
} mf_entry;

struct sp_model_files {
    char *dir;
    sp_model_config config;
    size_t n_shards;
    sp_safetensors **shards;
    size_t n;
    mf_entry *entries;     /* sorted by name */
    sp_gguf_model *gguf;   /* a GGUF file instead of a folder, else NULL */
};

/* ---- helpers ----------------------------------------------------------------------- */

/* "dir/file", malloc'ed; NULL when out of memory. */
static char *mf_path(const char *dir, const char *file) {
    size_t a = strlen(dir), b = strlen(file);
    char *p = malloc(a + b + 2);
    if (!p) return NULL;
    memcpy(p, dir, a);
    p[a] = '/';
    memcpy(p + a + 1, file, b + 1);
    return p;
}

static int mf_exists(const char *path) { return access(path, F_OK) == 0; }

static int mf_cmp_entry(const void *a, const void *b) {
    return strcmp(((const mf_entry *)a)->name, ((const mf_entry *)b)->name);
}

/* ---- single file ---------------------------------------------------------------------- */

static sprig_status mf_open_single(sp_model_files *mf, const char *path) {
    mf->shards = calloc(1, sizeof *mf->shards);
    SP_CHECK_ALLOC(mf->shards);
    SP_TRY(sp_st_open(path, &mf->shards[0]));
    mf->n_shards = 1;
    size_t n = sp_st_count(mf->shards[0]);
    mf->entries = calloc(n ? n : 1, sizeof *mf->entries);
    SP_CHECK_ALLOC(mf->entries);
    for (size_t i = 0; i < n; ++i) {
        const sp_tensor *t = sp_st_tensor(mf->shards[0], i);
        mf->entries[mf->n++] = (mf_entry){t->name, t};
    }
    return SPRIG_OK;  /* already sorted and unique: sp_st keeps name order */
}

/* ---- the index ------------------------------------------------------------------------ */

/* Shard names are plain file names in the folder: no paths, so an index
 * cannot point the loader outside the model folder. */
static sprig_status mf_check_shard_name(const char *path, const cJSON *v, const char *tensor) {
    if (!cJSON_IsString(v) || !v->valuestring[0])
        return sp_fail(SPRIG_E_FORMAT, "%s: weight_map entry for '%s' is not a file name", path, tensor);
    const char *s = v->valuestring;
    if (strchr(s, '/') || strcmp(s, ".") == 0 || strcmp(s, "..") == 0)
        return sp_fail(SPRIG_E_FORMAT, "%s: shard '%s' for '%s' is not a plain file name "
                       "in the model folder", path, s, tensor);
    return SPRIG_OK;
}

/* Index of shard file `name` in names[0..n), or n. */
static size_t mf_find_name(char *const *names, size_t n, const char *name) {
    size_t i = 0;
    while (i < n && strcmp(names[i], name) != 0) ++i;
    return i;
}

static int mf_cmp_str(const void *a, const void *b) { return strcmp(*(char *const *)a, *(char *const *)b); }

/* A tensor the weight map lists twice: two shards would claim it. */
static sprig_status mf_check_unique(const sp_mf_index *ix, const char *path) {
    char **sorted = malloc(ix->n * sizeof *sorted);
    SP_CHECK_ALLOC(sorted);
    memcpy(sorted, ix->tensors, ix->n * sizeof *sorted);
    qsort(sorted, ix->n, sizeof *sorted, mf_cmp_str);
    sprig_status s = SPRIG_OK;
    for (size_t i = 1; i < ix->n && s == SPRIG_OK; ++i)
        if (strcmp(sorted[i - 1], sorted[i]) == 0)
            s = sp_fail(SPRIG_E_FORMAT, "%s: tensor '%s' is listed twice", path, sorted[i]);
    free(sorted);
    return s;
}

/* Copies map's entries into ix (sized for count), checking each shard name. */
static sprig_status mf_index_fill(sp_mf_index *ix, const cJSON *map, size_t count, const char *path) {
    ix->tensors = calloc(count, sizeof *ix->tensors);
    ix->shard_of = calloc(count, sizeof *ix->shard_of);
    ix->shards = calloc(count, sizeof *ix->shards);
    SP_CHECK_ALLOC(ix->tensors);
    SP_CHECK_ALLOC(ix->shard_of);
    SP_CHECK_ALLOC(ix->shards);
    const cJSON *kv;
    cJSON_ArrayForEach(kv, map) {
        SP_TRY(mf_check_shard_name(path, kv, kv->string));
        size_t j = mf_find_name(ix->shards, ix->n_shards, kv->valuestring);
        if (j == ix->n_shards) {
            ix->shards[j] = strdup(kv->valuestring);
            SP_CHECK_ALLOC(ix->shards[j]);
            ix->n_shards++;
        }
        ix->tensors[ix->n] = strdup(kv->string);
        SP_CHECK_ALLOC(ix->tensors[ix->n]);
        ix->shard_of[ix->n++] = j;
    }
    return mf_check_unique(ix, path);
}

sprig_status sp_mf_index_parse(const char *text, size_t len, const char *path, sp_mf_index *out) {
    memset(out, 0, sizeof *out);
    /* cJSON reads up to a NUL; the text need not end in one. */
    char *copy = malloc(len + 1);
    SP_CHECK_ALLOC(copy);
    if (len) memcpy(copy, text, len);
    copy[len] = '\0';
    cJSON *root = cJSON_ParseWithLength(copy, len + 1);
    free(copy);
    if (!root) return sp_fail(SPRIG_E_FORMAT, "%s: not valid JSON", path);
    const cJSON *map = cJSON_GetObjectItemCaseSensitive(root, "weight_map");
    int count = cJSON_IsObject(map) ? cJSON_GetArraySize(map) : 0;
    sprig_status s = count > 0 ? mf_index_fill(out, map, (size_t)count, path)
                               : sp_fail(SPRIG_E_FORMAT, "%s: no \"weight_map\" object with tensor -> shard "
                                         "entries", path);
    cJSON_Delete(root);
    if (s != SPRIG_OK) sp_mf_index_free(out);
    return s;
}

void sp_mf_index_free(sp_mf_index *ix) {
    for (size_t i = 0; ix->tensors && i < ix->n; ++i) free(ix->tensors[i]);
    for (size_t i = 0; ix->shards && i < ix->n_shards; ++i) free(ix->shards[i]);
    free(ix->tensors);
    free(ix->shard_of);
    free(ix->shards);
    memset(ix, 0, sizeof *ix);
}

/* ---- sharded -------------------------------------------------------------------------- */

/* Opens each shard of ix once and resolves every weight_map entry to its tensor. */
static sprig_status mf_open_shards(sp_model_files *mf, const sp_mf_index *ix) {
    mf->shards = calloc(ix->n_shards, sizeof *mf->shards);
    mf->entries = calloc(ix->n, sizeof *mf->entries);
    SP_CHECK_ALLOC(mf->shards);
    SP_CHECK_ALLOC(mf->entries);
    for (size_t i = 0; i < ix->n_shards; ++i) {
        char *path = mf_path(mf->dir, ix->shards[i]);
        SP_CHECK_ALLOC(path);
        sprig_status s = sp_st_open(path, &mf->shards[i]);
        free(path);
        if (s != SPRIG_OK)
            return sp_wrap(s, "%s/" MF_INDEX " names shard '%s'", mf->dir, ix->shards[i]);
        mf->n_shards = i + 1;
    }
    for (size_t i = 0; i < ix->n; ++i) {
        const sp_tensor *t = sp_st_find(mf->shards[ix->shard_of[i]], ix->tensors[i]);
        if (!t)
            return sp_fail(SPRIG_E_FORMAT, "%s/" MF_INDEX " maps tensor '%s' to shard '%s', which does "
                           "not contain it", mf->dir, ix->tensors[i], ix->shards[ix->shard_of[i]]);
        mf->entries[mf->n++] = (mf_entry){t->name, t};
    }
    /* unique: the index lists each name once, and a shard holds one tensor per name */
    qsort(mf->entries, mf->n, sizeof *mf->entries, mf_cmp_entry);
    return SPRIG_OK;
}

static sprig_status mf_open_sharded(sp_model_files *mf, const char *index_path) {
    char *text = NULL;
    size_t len = 0;
    SP_TRY(sp_file_read(index_path, MF_MAX_INDEX_BYTES, &text, &len, NULL));
    sp_mf_index ix;
    sprig_status s = sp_mf_index_parse(text, len, index_path, &ix);
    free(text);
    if (s == SPRIG_OK) s = mf_open_shards(mf, &ix);
    /* Tensor names now point into the shards; the index can go. */
    sp_mf_index_free(&ix);
    return s;
}

/* ---- entry points ----------------------------------------------------------------------- */

static sprig_status mf_open_weights(sp_model_files *mf) {
    char *single = mf_path(mf->dir, MF_SINGLE), *index = mf_path(mf->dir, MF_INDEX);
    sprig_status s;
    if (!single || !index)
        s = sp_fail(SPRIG_E_NOMEM, "out of memory building paths under '%s'", mf->dir);
    else if (mf_exists(single))  /* transformers also prefers the single file */
        s = mf_open_single(mf, single);
    else if (mf_exists(index))
        s = mf_open_sharded(mf, index);
    else
        s = sp_fail(SPRIG_E_IO, "model folder '%s' has neither " MF_SINGLE " nor " MF_INDEX, mf->dir);
    free(single);
    free(index);
    return s;
}

/* sp_tensor_lookup_fn adapter over sp_model_files_find (ctx is the sp_model_files). */
static const sp_tensor *sp_model_files_lookup(const void *ctx, const char *name) {
    return sp_model_files_find(ctx, name);
}

static sprig_status mf_open(sp_model_files *mf) {
    struct stat sb;
    if (stat(mf->dir, &sb) != 0)
        return sp_fail(SPRIG_E_IO, "cannot open model folder '%s': %s", mf->dir, strerror(errno));
    if (!S_ISDIR(sb.st_mode))
        return sp_fail(SPRIG_E_IO, "model folder '%s' is not a folder", mf->dir);
    char *cfg = mf_path(mf->dir, "config.json");
    SP_CHECK_ALLOC(cfg);
    sprig_status s = mf_exists(cfg) ? sp_model_config_load(cfg, &mf->config)
                                    : sp_fail(SPRIG_E_IO, "model folder '%s' has no config.json (%s)",
                                              mf->dir, cfg);
    free(cfg);
    SP_TRY(s);
    SP_TRY(sp_slice_load(mf->dir, &mf->config));  /* SliceGPT widths, if the folder is sliced */
    SP_TRY(mf_open_weights(mf));
    s = sp_model_config_check_tensors(&mf->config, sp_model_files_lookup, mf);
    return s == SPRIG_OK ? s : sp_wrap(s, "model folder '%s'", mf->dir);
}

/* A GGUF file: its metadata is the config, its tensors (renamed, dequantized) the weights. */
static sprig_status mf_open_gguf(sp_model_files *mf) {
    SP_TRY(sp_gguf_model_open(mf->dir, &mf->config, &mf->gguf));
    const size_t n = sp_gguf_model_count(mf->gguf);
    mf->entries = calloc(n ? n : 1, sizeof *mf->entries);
    SP_CHECK_ALLOC(mf->entries);
    for (size_t i = 0; i < n; ++i) {  /* already sorted by name */
        const sp_tensor *t = sp_gguf_model_tensor(mf->gguf, i);
        mf->entries[mf->n++] = (mf_entry){t->name, t};
    }
    sprig_status s = sp_model_config_check_tensors(&mf->config, sp_model_files_lookup, mf);
    return s == SPRIG_OK ? s : sp_wrap(s, "GGUF file '%s'", mf->dir);
}

sprig_status sp_model_files_open(const char *dir, sp_model_files **out) {
    *out = NULL;
    if (!dir || !dir[0]) return sp_fail(SPRIG_E_INVALID, "sp_model_files_open: empty folder name");
    sp_model_files *mf = calloc(1, sizeof *mf);
    SP_CHECK_ALLOC(mf);
    mf->dir = strdup(dir);
    sprig_status s = !mf->dir ? sp_fail(SPRIG_E_NOMEM, "out of memory")
                     : sp_gguf_is_file(dir) ? mf_open_gguf(mf) : mf_open(mf);
    if (s != SPRIG_OK) {
        sp_model_files_close(mf);
        return s;
    }
    *out = mf;
    return SPRIG_OK;
}

void sp_model_files_close(sp_model_files *mf) {
    if (!mf) return;
    for (size_t i = 0; i < mf->n_shards; ++i) sp_st_close(mf->shards[i]);
    free(mf->shards);
    free(mf->entries);
    sp_gguf_model_close(mf->gguf);
    free(mf->dir);
    free(mf);
}

const sp_model_config *sp_model_files_config(const sp_model_files *mf) { return &mf->config; }

const sp_tensor *sp_model_files_find(const sp_model_files *mf, const char *name) {
    if (!mf || !name) return NULL;
    mf_entry key = {name, NULL};
    const mf_entry *e = bsearch(&key, mf->entries, mf->n, sizeof *mf->entries, mf_cmp_entry);
    return e ? e->t : NULL;
}

sprig_status sp_model_files_get(const sp_model_files *mf, const char *name, const sp_tensor **out) {
    *out = sp_model_files_find(mf, name);
    if (!*out)
        return sp_fail(SPRIG_E_FORMAT, "model folder '%s' has no tensor '%s'", mf ? mf->dir : "?",
                       name ? name : "(null)");
    return SPRIG_OK;
}

size_t sp_model_files_count(const sp_model_files *mf) { return mf ? mf->n : 0; }

size_t sp_model_files_n_shards(const sp_model_files *mf) { return mf ? mf->n_shards : 0; }

