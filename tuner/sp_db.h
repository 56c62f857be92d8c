/* The tuning database: one JSON file per GPU, named from the GPU
 * (`NVIDIA_H100_80GB_HBM3-sm90-132sm.json`), in a db directory.
 *
 * A file holds the format name and version, the GPU block {name, cc, sms},
 * the NVRTC and driver versions of its last writer, and one entry per tuning
 * key: the winner, its measurement, every measured candidate, and when and
 * with which NVRTC/driver it was measured. Saving is atomic (temp file, fsync,
 * rename, fsync of the folder), so a killed run loses at most the key it was
 * tuning; resuming skips the keys already present.
 *
 * A file that cannot be used (not JSON, truncated, another format version, or
 * a GPU block naming another GPU than the one it is opened for) is reported as
 * SPRIG_E_FORMAT naming the file and the reason, and its data is not used;
 * saving over it is refused unless the caller forces it (then the bad file is
 * first moved aside to `<file>.bad-<unix time>`). One writer per file. */
#ifndef SP_DB_H
#define SP_DB_H

#include <stddef.h>
#include <stdint.h>

#include "sp_search.h"
#include "sprig.h"

#pragma GCC visibility push(default) /* this layer's interface: exported to the layers above */

#define SP_DB_FORMAT "sprig-tuning-db"
#define SP_DB_VERSION 1

/* A GPU as the database knows it (from sp_device_props: name, cc, sm_count). */
typedef struct sp_gpu_id {
    char name[128];
    int cc_major, cc_minor;  /* 9, 0 for sm_90 */
    int sm_count;
} sp_gpu_id;

/* One tuning problem. Built with sp_db_key_make (which buckets and
 * canonicalises), compared field by field. */
typedef struct sp_db_key {
    char family[32];
    uint64_t template_hash;  /* sprig_plan.template_hash of the family's template */
    int d, f;
    char dtype[8];
    int batch_bucket;        /* 1, 4, 8, 16, 32, 64 */
    int sparsity_bucket;     /* 0, 50, 75, 90: percent of experts inactive */
    int g;
    char fixed[128];         /* the caller's fixed params, items sorted ("op=up"), or "" */
} sp_db_key;

/* 1 -> 1, 2-4 -> 4, 5-8 -> 8, 9-16 -> 16, 17-32 -> 32, 33-64 -> 64; 0 outside 1..64. */
int sp_batch_bucket(int batch);
/* The nearest of 0, 50, 75, 90 (ties go to the lower); -1 outside 0..100. */
int sp_sparsity_bucket(double percent_inactive);

sprig_status sp_db_key_make(sp_db_key *key, const char *family, uint64_t template_hash, int d, int f,
                            const char *dtype, int batch, double sparsity_percent, int g, const char *fixed);
/* "family|hash16|d=4096,f=11008|fp16|b=1|s=0|g=32" plus "|fixed" when fixed is not empty. */
void sp_db_key_string(const sp_db_key *key, char *buf, size_t cap);

typedef struct sp_db_entry {
    sp_db_key key;
    char *winner;            /* owned: the winning params */
    sp_measurement best;     /* the winner's measurement; median_us is its confirmed median */
    sp_trial *trials;        /* owned: every measured candidate */
    size_t n_trials;
    int exhaustive;          /* the whole space was measured */
    double elapsed_s;        /* the search's wall-clock time */
    int nvrtc_version, driver_version; /* when it was measured (1000*major + 10*minor) */
    char timestamp[32];      /* UTC, ISO 8601 */
} sp_db_entry;

typedef struct sp_db {
    char *path;              /* owned: the file */
    sp_gpu_id gpu;
    int nvrtc_version, driver_version; /* set by the caller; recorded in entries added */
    sp_db_entry *entries;    /* owned, [n] */
    size_t n, cap;
    int load_failed;         /* the file exists but was unusable (only with force) */
    int force;               /* saving may replace an unusable file */
    char load_error[640];    /* why it was unusable */
} sp_db;

/* The db folder: override if not NULL/empty, else $SPRIG_DB_DIR, else
 * $XDG_DATA_HOME/sprig/db, else ~/.local/share/sprig/db. */
sprig_status sp_db_dir(const char *override, char *buf, size_t cap);
/* The file name (no folder) for a GPU: its name with every character other
 * than [A-Za-z0-9._-] replaced by '_', then -sm<cc>-<sms>sm.json. */
void sp_db_file_name(const sp_gpu_id *gpu, char *buf, size_t cap);

/* Opens this GPU's file in dir (dir NULL: sp_db_dir(NULL)): loads it if it
 * exists, else starts empty (nothing is written before sp_db_save). An
 * unusable file is SPRIG_E_FORMAT and no db, unless force: then *out is an
 * empty db that may replace it (load_failed and load_error say why).
 * The caller owns *out (sp_db_close). */
sprig_status sp_db_open(sp_db **out, const char *dir, const sp_gpu_id *gpu, int force);
/* Loads one file read-only (for lookups). expect (may be NULL) is the GPU the
 * file must describe; either way its GPU block must match its file name. */
sprig_status sp_db_load_file(sp_db **out, const char *path, const sp_gpu_id *expect);
/* The same from text[0..len) (a file's contents, with or without a NUL after
 * them) instead of the file itself; path names it in messages and its base
 * name must match the GPU block, as a file's must. */
sprig_status sp_db_parse(sp_db **out, const char *text, size_t len, const char *path, const sp_gpu_id *expect);
void sp_db_close(sp_db *db); /* NULL is a no-op */

/* Writes the whole db atomically (entries sorted by key). Creates the folder.
 * Under an exclusive lock (.<file>.lock beside it), the entries the file holds
 * now that db lacks are merged in first: another process tuning the same GPU
 * keeps its work. */
sprig_status sp_db_save(sp_db *db);

const sp_db_entry *sp_db_find(const sp_db *db, const sp_db_key *key);
/* Records the search result for key (replacing an entry with the same key):
 * its winner and every trial, stamped with now and db's versions. The
 * result must have a winner. Copies; r stays the caller's. */
sprig_status sp_db_put(sp_db *db, const sp_db_key *key, const sp_search_result *r);

/* ---- lookup over several files ------------------------------------------------- */

/* The db files a lookup consults, in precedence order. */
typedef struct sp_db_set {
    sp_db **dbs;
    int *owned;              /* [n]: closed by sp_db_set_free */
    size_t n, cap;
    char *notes;             /* owned: files skipped and why ("" if none) */
} sp_db_set;

void sp_db_set_init(sp_db_set *set);
/* Adds db; the set owns it when owned is nonzero. */
sprig_status sp_db_set_add(sp_db_set *set, sp_db *db, int owned);
/* Loads every *.json in dir (sorted by name). Unusable files are skipped
 * and named in set->notes; a missing folder adds nothing. */
sprig_status sp_db_set_add_dir(sp_db_set *set, const char *dir);
void sp_db_set_free(sp_db_set *set);

typedef enum sp_lookup_source {
    SP_LOOKUP_EXACT = 0,          /* this GPU, this shape and buckets */
    SP_LOOKUP_SAME_GPU_NEAREST,   /* this GPU, nearest shape, then nearest buckets */
    SP_LOOKUP_SAME_ARCH,          /* another GPU of the same compute capability: exact or nearest */
    SP_LOOKUP_GENERIC_DEFAULT     /* nothing usable: the family's defaults */
} sp_lookup_source;

/* "exact", "same_gpu_nearest_shape", "same_arch", "generic_default". */
const char *sp_lookup_source_name(sp_lookup_source s);

/* Optional filter: nonzero when params (tuned for another shape or batch)
 * is valid for the wanted key; e.g. wraps sp_space_check. */
typedef int (*sp_lookup_valid_fn)(void *ctx, const sp_db_key *want, const char *params);

typedef struct sp_lookup_result {
    sp_lookup_source source;
    char params[512];         /* the params to use; generic_default: key->fixed ("" = defaults) */
    const sp_db_entry *entry; /* borrowed from the set; NULL for generic_default */
    const sp_db *db;          /* the file the entry came from */
    char explain[1536];       /* which source was used and why */
} sp_lookup_result;

/* Finds params for key on gpu. Only entries of the same family, dtype, g and
 * fixed params, tuned with the same template hash, are used; an entry for the
 * exact shape with another template hash is passed over and the explanation
 * says so. Nearest = smallest relative distance sqrt(((d'-d)/d)^2 + ((f'-f)/f)^2),
 * then nearest batch bucket, then nearest sparsity bucket (in bucket steps).
 * Always succeeds for valid arguments (falling back to generic_default). */
sprig_status sp_db_lookup(const sp_db_set *set, const sp_gpu_id *gpu, const sp_db_key *key,
                          sp_lookup_valid_fn valid, void *valid_ctx, sp_lookup_result *out);

#pragma GCC visibility pop
#endif
