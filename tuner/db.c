/* The tuning database file: keys, JSON reading with validation, atomic
 * writing (see sp_db.h). Lookup over several files is in lookup.c. */
#include <errno.h>
#include <fcntl.h>
#include <math.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/file.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include <cjson/cJSON.h>

#include "tuner_internal.h"
#include "sp_db.h"
#include "sp_error.h"
#include "sp_file.h"

/* A tuning database of every key sprig knows is a few MB; far past that is not one. */
#define DB_MAX_FILE_BYTES ((size_t)256 << 20)

/* ---- keys ------------------------------------------------------------------------ */

int sp_gpu_id_equal(const sp_gpu_id *a, const sp_gpu_id *b) {
    return !strcmp(a->name, b->name) && a->cc_major == b->cc_major && a->cc_minor == b->cc_minor &&
           a->sm_count == b->sm_count;
}

int sp_batch_bucket(int batch) {
    static const int buckets[] = {1, 4, 8, 16, 32, 64};
    if (batch < 1) return 0;
    for (size_t i = 0; i < sizeof buckets / sizeof buckets[0]; ++i)
        if (batch <= buckets[i]) return buckets[i];
    return 0;
}

int sp_sparsity_bucket(double pct) {
    static const int buckets[] = {0, 50, 75, 90};
    if (!(pct >= 0 && pct <= 100)) return -1;
    int best = 0;
    for (size_t i = 1; i < sizeof buckets / sizeof buckets[0]; ++i)
        if (fabs(pct - buckets[i]) < fabs(pct - buckets[best])) best = (int)i;
    return buckets[best];
}

static int cmp_cstr(const void *a, const void *b) { return strcmp(*(char *const *)a, *(char *const *)b); }

/* "b=2, a=1" -> "a=1,b=2": the fixed params compare as a set. */
static sprig_status canonical_fixed(const char *in, char *out, size_t cap) {
    out[0] = '\0';
    if (!in || !*in) return SPRIG_OK;
    char buf[256], *items[32];
    if (strlen(in) >= sizeof buf) return sp_fail(SPRIG_E_INVALID, "fixed params '%s' are too long", in);
    snprintf(buf, sizeof buf, "%s", in);
    int n = 0;
    for (char *save = NULL, *tok = strtok_r(buf, ",", &save); tok; tok = strtok_r(NULL, ",", &save)) {
        while (*tok == ' ') ++tok;
        char *end = tok + strlen(tok);
        while (end > tok && end[-1] == ' ') *--end = '\0';
        if (!*tok) continue;
        if (n == 32) return sp_fail(SPRIG_E_INVALID, "too many fixed params in '%s'", in);
        items[n++] = tok;
    }
    qsort(items, (size_t)n, sizeof *items, cmp_cstr);
    size_t at = 0;
    for (int i = 0; i < n; ++i) {
        int w = snprintf(out + at, cap - at, "%s%s", i ? "," : "", items[i]);
        if (w < 0 || (size_t)w >= cap - at) return sp_fail(SPRIG_E_INVALID, "fixed params '%s' are too long", in);
        at += (size_t)w;
    }
    return SPRIG_OK;
}

sprig_status sp_db_key_make(sp_db_key *k, const char *family, uint64_t template_hash, int d, int f,
                            const char *dtype, int batch, double sparsity_percent, int g, const char *fixed) {
    memset(k, 0, sizeof *k);
    if (!family || !*family || strlen(family) >= sizeof k->family || strchr(family, '|'))
        return sp_fail(SPRIG_E_INVALID, "tuning key: bad family '%s'", family ? family : "(null)");
    if (!dtype || !*dtype || strlen(dtype) >= sizeof k->dtype || strchr(dtype, '|'))
        return sp_fail(SPRIG_E_INVALID, "tuning key: bad dtype '%s'", dtype ? dtype : "(null)");
    if (d <= 0 || f <= 0 || g <= 0) return sp_fail(SPRIG_E_INVALID, "tuning key: bad shape d=%d f=%d g=%d", d, f, g);
    k->batch_bucket = sp_batch_bucket(batch);
    if (!k->batch_bucket) return sp_fail(SPRIG_E_INVALID, "tuning key: batch=%d is outside 1..64", batch);
    k->sparsity_bucket = sp_sparsity_bucket(sparsity_percent);
    if (k->sparsity_bucket < 0)
        return sp_fail(SPRIG_E_INVALID, "tuning key: sparsity %g%% is outside 0..100", sparsity_percent);
    if (fixed && strchr(fixed, '|')) return sp_fail(SPRIG_E_INVALID, "tuning key: fixed params contain '|'");
    SP_TRY(canonical_fixed(fixed, k->fixed, sizeof k->fixed));
    snprintf(k->family, sizeof k->family, "%s", family);
    snprintf(k->dtype, sizeof k->dtype, "%s", dtype);
    k->template_hash = template_hash;
    k->d = d;
    k->f = f;
    k->g = g;
    return SPRIG_OK;
}

void sp_db_key_string(const sp_db_key *k, char *buf, size_t cap) {
    snprintf(buf, cap, "%s|%016llx|d=%d,f=%d|%s|b=%d|s=%d|g=%d%s%s", k->family, (unsigned long long)k->template_hash,
             k->d, k->f, k->dtype, k->batch_bucket, k->sparsity_bucket, k->g, k->fixed[0] ? "|" : "", k->fixed);
}

int sp_db_key_equal(const sp_db_key *a, const sp_db_key *b) {
    return !strcmp(a->family, b->family) && a->template_hash == b->template_hash && a->d == b->d && a->f == b->f &&
           !strcmp(a->dtype, b->dtype) && a->batch_bucket == b->batch_bucket &&
           a->sparsity_bucket == b->sparsity_bucket && a->g == b->g && !strcmp(a->fixed, b->fixed);
}

/* ---- paths ----------------------------------------------------------------------- */

sprig_status sp_db_dir(const char *override, char *buf, size_t cap) {
    const char *env;
    int n;
    if (override && *override) n = snprintf(buf, cap, "%s", override);
    else if ((env = getenv("SPRIG_DB_DIR")) && *env) n = snprintf(buf, cap, "%s", env);
    else if ((env = getenv("XDG_DATA_HOME")) && *env) n = snprintf(buf, cap, "%s/sprig/db", env);
    else if ((env = getenv("HOME")) && *env) n = snprintf(buf, cap, "%s/.local/share/sprig/db", env);
    else return sp_fail(SPRIG_E_INVALID, "no tuning database folder: set SPRIG_DB_DIR (HOME is not set)");
    if (n < 0 || (size_t)n >= cap) return sp_fail(SPRIG_E_INVALID, "tuning database folder path is too long");
    return SPRIG_OK;
}

void sp_db_file_name(const sp_gpu_id *gpu, char *buf, size_t cap) {
    char name[sizeof gpu->name];
    size_t i = 0;
    for (; gpu->name[i] && i + 1 < sizeof name; ++i) {
        char c = gpu->name[i];
        int keep = (c >= 'A' && c <= 'Z') || (c >= 'a' && c <= 'z') || (c >= '0' && c <= '9') || c == '.' ||
                   c == '_' || c == '-';
        name[i] = keep ? c : '_';
    }
    name[i] = '\0';
    snprintf(buf, cap, "%s-sm%d%d-%dsm.json", i ? name : "unknown", gpu->cc_major, gpu->cc_minor, gpu->sm_count);
}

static sprig_status mkdir_p(const char *dir) {
    char path[4096];
    if (snprintf(path, sizeof path, "%s", dir) >= (int)sizeof path)
        return sp_fail(SPRIG_E_IO, "path too long: %s", dir);
    for (char *p = path + 1;; ++p) {
        if (*p == '/' || *p == '\0') {
            char saved = *p;
            *p = '\0';
            if (mkdir(path, 0755) != 0 && errno != EEXIST)
                return sp_fail(SPRIG_E_IO, "cannot create folder %s: %s", path, strerror(errno));
            *p = saved;
            if (!saved) break;
        }
    }
    return SPRIG_OK;
}

/* ---- entries in memory ------------------------------------------------------------- */

static void entry_clear(sp_db_entry *e) {
    free(e->winner);
    for (size_t i = 0; i < e->n_trials; ++i) free(e->trials[i].params);
    free(e->trials);
    memset(e, 0, sizeof *e);
}

void sp_db_close(sp_db *db) {
    if (!db) return;
    for (size_t i = 0; i < db->n; ++i) entry_clear(&db->entries[i]);
    free(db->entries);
    free(db->path);
    free(db);
}

const sp_db_entry *sp_db_find(const sp_db *db, const sp_db_key *key) {
    for (size_t i = 0; db && i < db->n; ++i)
        if (sp_db_key_equal(&db->entries[i].key, key)) return &db->entries[i];
    return NULL;
}

/* A new empty slot at the end (zeroed). */
static sprig_status entry_append(sp_db *db, sp_db_entry **out) {
    if (db->n == db->cap) {
        size_t cap = db->cap ? 2 * db->cap : 16;
        sp_db_entry *grown = realloc(db->entries, cap * sizeof *grown);
        SP_CHECK_ALLOC(grown);
        db->entries = grown;
        db->cap = cap;
    }
    *out = &db->entries[db->n++];
    memset(*out, 0, sizeof **out);
    return SPRIG_OK;
}

static void utc_now(char *buf, size_t cap) {
    time_t t = time(NULL);
    struct tm tm;
    gmtime_r(&t, &tm);
    strftime(buf, cap, "%Y-%m-%dT%H:%M:%SZ", &tm);
}

static sprig_status copy_trials(sp_db_entry *e, const sp_search_result *r) {
    e->trials = calloc(r->n_trials ? r->n_trials : 1, sizeof *e->trials);
    SP_CHECK_ALLOC(e->trials);
    for (size_t i = 0; i < r->n_trials; ++i) {
        e->trials[i] = r->trials[i];
        e->trials[i].params = strdup(r->trials[i].params);
        SP_CHECK_ALLOC(e->trials[i].params);
        e->n_trials = i + 1;
    }
    return SPRIG_OK;
}

sprig_status sp_db_put(sp_db *db, const sp_db_key *key, const sp_search_result *r) {
    if (!db || !key || !r) return sp_fail(SPRIG_E_INVALID, "sp_db_put: NULL argument");
    if (r->winner < 0 || (size_t)r->winner >= r->n_trials || r->trials[r->winner].m.verdict != SP_VERDICT_OK)
        return sp_fail(SPRIG_E_INVALID, "sp_db_put: the search result has no verified winner");
    sp_db_entry fresh = {0};
    fresh.key = *key;
    const sp_trial *w = &r->trials[r->winner];
    fresh.winner = strdup(w->params);
    fresh.best = w->m;
    fresh.best.median_us = sp_trial_median_us(w);
    fresh.exhaustive = r->exhaustive;
    fresh.elapsed_s = r->elapsed_s;
    fresh.nvrtc_version = db->nvrtc_version;
    fresh.driver_version = db->driver_version;
    utc_now(fresh.timestamp, sizeof fresh.timestamp);
    sprig_status st = fresh.winner ? copy_trials(&fresh, r) : sp_fail(SPRIG_E_NOMEM, "out of memory");
    if (st != SPRIG_OK) {
        entry_clear(&fresh);
        return st;
    }
    sp_db_entry *slot = (sp_db_entry *)sp_db_find(db, key);
    if (slot) entry_clear(slot);
    else if ((st = entry_append(db, &slot)) != SPRIG_OK) {
        entry_clear(&fresh);
        return st;
    }
    *slot = fresh;
    return SPRIG_OK;
}

/* ---- JSON out ---------------------------------------------------------------------- */

static void add_measurement(cJSON *o, const sp_measurement *m) {
    cJSON_AddStringToObject(o, "status", sp_verdict_name(m->verdict));
    if (m->verdict == SP_VERDICT_OK) {
        cJSON_AddNumberToObject(o, "median_us", m->median_us);
        cJSON_AddNumberToObject(o, "min_us", m->min_us);
        cJSON_AddNumberToObject(o, "runs", m->runs);
    }
    if (isfinite(m->rel_err)) cJSON_AddNumberToObject(o, "rel_err", m->rel_err);
    if (m->sm_clock_mhz > 0) cJSON_AddNumberToObject(o, "sm_clock_mhz", m->sm_clock_mhz);
    if (m->mem_clock_mhz > 0) cJSON_AddNumberToObject(o, "mem_clock_mhz", m->mem_clock_mhz);
    if (m->note[0]) cJSON_AddStringToObject(o, "note", m->note);
}

static cJSON *entry_to_json(const sp_db_entry *e) {
    cJSON *o = cJSON_CreateObject();
    const sp_db_key *k = &e->key;
    char hash[17];
    snprintf(hash, sizeof hash, "%016llx", (unsigned long long)k->template_hash);
    cJSON_AddStringToObject(o, "family", k->family);
    cJSON_AddStringToObject(o, "template_hash", hash);
    cJSON_AddNumberToObject(o, "d", k->d);
    cJSON_AddNumberToObject(o, "f", k->f);
    cJSON_AddStringToObject(o, "dtype", k->dtype);
    cJSON_AddNumberToObject(o, "batch_bucket", k->batch_bucket);
    cJSON_AddNumberToObject(o, "sparsity_bucket", k->sparsity_bucket);
    cJSON_AddNumberToObject(o, "g", k->g);
    cJSON_AddStringToObject(o, "fixed", k->fixed);
    cJSON_AddStringToObject(o, "winner", e->winner);
    cJSON *best = cJSON_AddObjectToObject(o, "measurement");
    if (best) add_measurement(best, &e->best);
    cJSON_AddBoolToObject(o, "exhaustive", e->exhaustive);
    cJSON_AddNumberToObject(o, "search_s", e->elapsed_s);
    cJSON_AddNumberToObject(o, "nvrtc_version", e->nvrtc_version);
    cJSON_AddNumberToObject(o, "driver_version", e->driver_version);
    cJSON_AddStringToObject(o, "timestamp", e->timestamp);
    cJSON *list = cJSON_AddArrayToObject(o, "candidates");
    for (size_t i = 0; list && i < e->n_trials; ++i) {
        const sp_trial *t = &e->trials[i];
        cJSON *c = cJSON_CreateObject();
        if (!c) break;
        cJSON_AddStringToObject(c, "params", t->params);
        add_measurement(c, &t->m);
        if (t->confirmed) cJSON_AddNumberToObject(c, "confirmed_median_us", t->confirm_median_us);
        cJSON_AddItemToArray(list, c);
    }
    return o;
}

static int cmp_entry_key(const void *a, const void *b) {
    char x[512], y[512];
    sp_db_key_string(&(*(const sp_db_entry *const *)a)->key, x, sizeof x);
    sp_db_key_string(&(*(const sp_db_entry *const *)b)->key, y, sizeof y);
    return strcmp(x, y);
}

/* The whole file as text; entries sorted by key so output is deterministic. */
static char *db_to_text(const sp_db *db) {
    cJSON *root = cJSON_CreateObject();
    if (!root) return NULL;
    cJSON_AddStringToObject(root, "format", SP_DB_FORMAT);
    cJSON_AddNumberToObject(root, "version", SP_DB_VERSION);
    cJSON *gpu = cJSON_AddObjectToObject(root, "gpu");
    char cc[16];
    snprintf(cc, sizeof cc, "%d.%d", db->gpu.cc_major, db->gpu.cc_minor);
    if (gpu) {
        cJSON_AddStringToObject(gpu, "name", db->gpu.name);
        cJSON_AddStringToObject(gpu, "cc", cc);
        cJSON_AddNumberToObject(gpu, "sms", db->gpu.sm_count);
    }
    cJSON_AddNumberToObject(root, "nvrtc_version", db->nvrtc_version);
    cJSON_AddNumberToObject(root, "driver_version", db->driver_version);
    cJSON *entries = cJSON_AddObjectToObject(root, "entries");
    const sp_db_entry **order = malloc((db->n ? db->n : 1) * sizeof *order);
    char *text = NULL;
    if (entries && order) {
        for (size_t i = 0; i < db->n; ++i) order[i] = &db->entries[i];
        qsort(order, db->n, sizeof *order, cmp_entry_key);
        for (size_t i = 0; i < db->n; ++i) {
            char key[512];
            sp_db_key_string(&order[i]->key, key, sizeof key);
            cJSON *e = entry_to_json(order[i]);
            if (e) cJSON_AddItemToObject(entries, key, e);
        }
        text = cJSON_Print(root);
    }
    free(order);
    cJSON_Delete(root);
    return text;
}

static sprig_status load(const char *path, const sp_gpu_id *expect, sp_db **out, int *missing);

/* Entries of the file as it is now that db lacks (by key): another process's
 * work saved since db was loaded, moved into db. An unusable file merges
 * nothing (saving then replaces it only when forced, as ever). */
static sprig_status merge_from_disk(sp_db *db) {
    sp_db *disk = NULL;
    int missing = 0;
    const sprig_status st = load(db->path, &db->gpu, &disk, &missing);
    if (st != SPRIG_OK || !disk) {
        sp_db_close(disk);
        return st == SPRIG_E_FORMAT && db->force ? SPRIG_OK : st;
    }
    sprig_status s = SPRIG_OK;
    for (size_t i = 0; i < disk->n && s == SPRIG_OK; ++i) {
        if (sp_db_find(db, &disk->entries[i].key)) continue; /* ours is newer */
        sp_db_entry *e = NULL;
        s = entry_append(db, &e);
        if (s == SPRIG_OK) {
            *e = disk->entries[i];
            memset(&disk->entries[i], 0, sizeof disk->entries[i]); /* moved: disk no longer owns it */
        }
    }
    sp_db_close(disk);
    return s;
}

/* Saves under an exclusive lock on .<file>.lock (flock): two sprig tune runs on
 * one GPU keep each other's entries, each save merging what the other saved. */
sprig_status sp_db_save(sp_db *db) {
    if (!db || !db->path) return sp_fail(SPRIG_E_INVALID, "sp_db_save: no database");
    if (db->load_failed && !db->force)
        return sp_fail(SPRIG_E_FORMAT, "refusing to overwrite %s, which could not be loaded (%s); pass force to replace it",
                       db->path, db->load_error);
    char dir[4096];
    snprintf(dir, sizeof dir, "%s", db->path);
    char *slash = strrchr(dir, '/');
    if (slash && slash != dir) {
        *slash = '\0';
        SP_TRY(mkdir_p(dir));
    }
    if (db->load_failed) { /* forced: keep the unusable file for inspection */
        char aside[4200];
        snprintf(aside, sizeof aside, "%s.bad-%ld", db->path, (long)time(NULL));
        if (rename(db->path, aside) != 0 && errno != ENOENT)
            return sp_fail(SPRIG_E_IO, "cannot move the unusable %s aside: %s", db->path, strerror(errno));
        db->load_failed = 0;
    }
    char lock[4200]; /* beside the file, hidden: <dir>/.<file>.lock */
    const char *base = strrchr(db->path, '/');
    if (base) snprintf(lock, sizeof lock, "%.*s/.%s.lock", (int)(base - db->path), db->path, base + 1);
    else snprintf(lock, sizeof lock, ".%s.lock", db->path);
    const int fd = open(lock, O_CREAT | O_RDWR | O_CLOEXEC | O_NOFOLLOW, 0644);
    if (fd < 0) return sp_fail(SPRIG_E_IO, "cannot open the lock %s: %s", lock, strerror(errno));
    if (flock(fd, LOCK_EX) != 0) {
        const int e = errno;
        close(fd);
        return sp_fail(SPRIG_E_IO, "cannot lock %s: %s", lock, strerror(e));
    }
    sprig_status st = merge_from_disk(db);
    char *text = st == SPRIG_OK ? db_to_text(db) : NULL;
    if (st == SPRIG_OK && !text) st = sp_fail(SPRIG_E_NOMEM, "out of memory");
    if (st == SPRIG_OK) st = sp_file_write_atomic(db->path, text, strlen(text));
    free(text);
    close(fd); /* releases the lock */
    return st;
}

/* ---- JSON in --------------------------------------------------------------------------- */

/* Load errors carry the file name and the reason; `bad` formats them. */
typedef struct reader {
    const char *path;
    char *why;
    size_t cap;
} reader;

static sprig_status bad(reader *r, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
static sprig_status bad(reader *r, const char *fmt, ...) {
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(r->why, r->cap, fmt, ap);
    va_end(ap);
    return SPRIG_E_FORMAT;
}

static const char *get_str(const cJSON *o, const char *name) {
    const cJSON *v = cJSON_GetObjectItemCaseSensitive(o, name);
    return cJSON_IsString(v) ? v->valuestring : NULL;
}

static int get_num(const cJSON *o, const char *name, double *out) {
    const cJSON *v = cJSON_GetObjectItemCaseSensitive(o, name);
    if (!cJSON_IsNumber(v)) return 0;
    *out = v->valuedouble;
    return 1;
}

static int get_int(const cJSON *o, const char *name, int *out) {
    double v;
    if (!get_num(o, name, &v) || v != floor(v) || fabs(v) > 2e9) return 0;
    *out = (int)v;
    return 1;
}

static sprig_status read_measurement(reader *r, const cJSON *o, const char *where, sp_measurement *m) {
    memset(m, 0, sizeof *m);
    m->rel_err = NAN;
    if (!sp_verdict_parse(get_str(o, "status"), &m->verdict)) return bad(r, "%s: missing or unknown 'status'", where);
    if (m->verdict == SP_VERDICT_OK &&
        !(get_num(o, "median_us", &m->median_us) && get_num(o, "min_us", &m->min_us) && get_int(o, "runs", &m->runs)))
        return bad(r, "%s: a verified candidate needs median_us, min_us and runs", where);
    get_num(o, "rel_err", &m->rel_err);
    get_num(o, "sm_clock_mhz", &m->sm_clock_mhz);
    get_num(o, "mem_clock_mhz", &m->mem_clock_mhz);
    const char *note = get_str(o, "note");
    if (note) snprintf(m->note, sizeof m->note, "%s", note);
    return SPRIG_OK;
}

static sprig_status read_key(reader *r, const cJSON *o, const char *name, sp_db_key *k) {
    const char *family = get_str(o, "family"), *hash = get_str(o, "template_hash"), *dtype = get_str(o, "dtype");
    const char *fixed = get_str(o, "fixed");
    int d, f, bb, sb, g;
    if (!family || !hash || !dtype || !fixed || !get_int(o, "d", &d) || !get_int(o, "f", &f) ||
        !get_int(o, "batch_bucket", &bb) || !get_int(o, "sparsity_bucket", &sb) || !get_int(o, "g", &g))
        return bad(r, "entry '%s': missing or mistyped key fields (family, template_hash, d, f, dtype, "
                      "batch_bucket, sparsity_bucket, g, fixed)", name);
    char *end = NULL;
    errno = 0;
    unsigned long long h = strtoull(hash, &end, 16);
    if (errno || !end || *end || strlen(hash) != 16) return bad(r, "entry '%s': template_hash '%s' is not 16 hex digits", name, hash);
    if (sp_db_key_make(k, family, (uint64_t)h, d, f, dtype, bb, sb, g, fixed) != SPRIG_OK ||
        k->batch_bucket != bb || k->sparsity_bucket != sb)
        return bad(r, "entry '%s': invalid key fields", name);
    char canon[512];
    sp_db_key_string(k, canon, sizeof canon);
    if (strcmp(canon, name) != 0) return bad(r, "entry '%s' does not match its fields (expected '%s')", name, canon);
    return SPRIG_OK;
}

static sprig_status read_trials(reader *r, const cJSON *list, const char *name, sp_db_entry *e) {
    int n = cJSON_GetArraySize(list);
    e->trials = calloc((size_t)(n > 0 ? n : 1), sizeof *e->trials);
    SP_CHECK_ALLOC(e->trials);
    int i = 0;
    const cJSON *c;
    cJSON_ArrayForEach(c, list) {
        char where[600];
        snprintf(where, sizeof where, "entry '%s', candidate %d", name, i);
        sp_trial *t = &e->trials[i];
        const char *params = get_str(c, "params");
        if (!params) return bad(r, "%s: missing 'params'", where);
        t->params = strdup(params);
        SP_CHECK_ALLOC(t->params);
        t->index = -1;
        e->n_trials = (size_t)++i;
        SP_TRY(read_measurement(r, c, where, &t->m));
        t->confirmed = get_num(c, "confirmed_median_us", &t->confirm_median_us);
    }
    return SPRIG_OK;
}

/* The winner must be one of the recorded candidates, and a verified one. */
static sprig_status check_winner(reader *r, const sp_db_entry *e, const char *name) {
    for (size_t i = 0; i < e->n_trials; ++i)
        if (!strcmp(e->trials[i].params, e->winner)) {
            if (e->trials[i].m.verdict == SP_VERDICT_OK) return SPRIG_OK;
            return bad(r, "entry '%s': the winner %s is recorded as %s", name, e->winner,
                       sp_verdict_name(e->trials[i].m.verdict));
        }
    return bad(r, "entry '%s': the winner %s is not among its candidates", name, e->winner);
}

static sprig_status read_entry(reader *r, const cJSON *o, sp_db_entry *e) {
    const char *name = o->string;
    if (!cJSON_IsObject(o)) return bad(r, "entry '%s' is not an object", name);
    SP_TRY(read_key(r, o, name, &e->key));
    const char *winner = get_str(o, "winner"), *ts = get_str(o, "timestamp");
    const cJSON *m = cJSON_GetObjectItemCaseSensitive(o, "measurement");
    const cJSON *list = cJSON_GetObjectItemCaseSensitive(o, "candidates");
    if (!winner || !cJSON_IsObject(m) || !cJSON_IsArray(list))
        return bad(r, "entry '%s': missing 'winner', 'measurement' or 'candidates'", name);
    e->winner = strdup(winner);
    SP_CHECK_ALLOC(e->winner);
    char where[600];
    snprintf(where, sizeof where, "entry '%s', measurement", name);
    SP_TRY(read_measurement(r, m, where, &e->best));
    if (e->best.verdict != SP_VERDICT_OK) return bad(r, "entry '%s': the winner's measurement is not 'ok'", name);
    SP_TRY(read_trials(r, list, name, e));
    SP_TRY(check_winner(r, e, name));
    double elapsed = 0;
    get_num(o, "search_s", &elapsed);
    e->elapsed_s = elapsed;
    e->exhaustive = cJSON_IsTrue(cJSON_GetObjectItemCaseSensitive(o, "exhaustive"));
    get_int(o, "nvrtc_version", &e->nvrtc_version);
    get_int(o, "driver_version", &e->driver_version);
    snprintf(e->timestamp, sizeof e->timestamp, "%s", ts ? ts : "");
    return SPRIG_OK;
}

static sprig_status read_gpu(reader *r, const cJSON *root, sp_gpu_id *gpu) {
    const cJSON *g = cJSON_GetObjectItemCaseSensitive(root, "gpu");
    const char *name = get_str(g, "name"), *cc = get_str(g, "cc");
    int sms, used = 0;
    if (!cJSON_IsObject(g) || !name || !cc || !get_int(g, "sms", &sms))
        return bad(r, "the 'gpu' block is missing or lacks name, cc or sms");
    if (sscanf(cc, "%d.%d%n", &gpu->cc_major, &gpu->cc_minor, &used) != 2 || cc[used])
        return bad(r, "gpu.cc '%s' is not MAJOR.MINOR", cc);
    if (strlen(name) >= sizeof gpu->name) return bad(r, "gpu.name is too long");
    snprintf(gpu->name, sizeof gpu->name, "%s", name);
    gpu->sm_count = sms;
    return SPRIG_OK;
}

static sprig_status read_root(reader *r, const cJSON *root, sp_db *db) {
    if (!cJSON_IsObject(root)) return bad(r, "not a JSON object");
    const char *format = get_str(root, "format");
    if (!format || strcmp(format, SP_DB_FORMAT) != 0)
        return bad(r, "not a sprig tuning database (format '%s', expected '%s')", format ? format : "(none)", SP_DB_FORMAT);
    int version;
    if (!get_int(root, "version", &version)) return bad(r, "no format version");
    if (version != SP_DB_VERSION)
        return bad(r, "format version %d, but this sprig reads version %d", version, SP_DB_VERSION);
    SP_TRY(read_gpu(r, root, &db->gpu));
    get_int(root, "nvrtc_version", &db->nvrtc_version);
    get_int(root, "driver_version", &db->driver_version);
    const cJSON *entries = cJSON_GetObjectItemCaseSensitive(root, "entries");
    if (!cJSON_IsObject(entries)) return bad(r, "no 'entries' object");
    const cJSON *e;
    cJSON_ArrayForEach(e, entries) {
        sp_db_entry *slot;
        SP_TRY(entry_append(db, &slot));
        SP_TRY(read_entry(r, e, slot));
        for (size_t i = 0; i + 1 < db->n; ++i)
            if (sp_db_key_equal(&db->entries[i].key, &slot->key)) return bad(r, "entry '%s' appears twice", e->string);
    }
    return SPRIG_OK;
}

/* Parses text into db; on SPRIG_E_FORMAT, r->why says why. */
static sprig_status parse_db(reader *r, const char *text, size_t len, sp_db *db) {
    if (len == 0) return bad(r, "the file is empty");
    if (strlen(text) != len) return bad(r, "the file contains NUL bytes");
    const char *end = NULL;
    cJSON *root = cJSON_ParseWithOpts(text, &end, 1);
    if (!root) {
        size_t at = end ? (size_t)(end - text) : 0;
        return bad(r, "invalid or truncated JSON near byte %zu of %zu", at, len);
    }
    sprig_status st = read_root(r, root, db);
    cJSON_Delete(root);
    return st;
}

static void drop_entries(sp_db *db) {
    for (size_t i = 0; i < db->n; ++i) entry_clear(&db->entries[i]);
    db->n = 0;
}

/* A new empty db for path (not read yet); NULL when out of memory. */
static sp_db *db_new(const char *path) {
    sp_db *db = calloc(1, sizeof *db);
    if (db && !(db->path = strdup(path))) {
        free(db);
        db = NULL;
    }
    return db;
}

/* Parses text (path's contents, NUL at text[len]) into db: its GPU block
 * must be expect's (if given) and match the file name. SPRIG_E_FORMAT names
 * the file and the reason, leaves db without entries and sets load_failed
 * and load_error. */
static sprig_status load_text(sp_db *db, const char *text, size_t len, const sp_gpu_id *expect) {
    const char *path = db->path;
    char why[600] = "";
    reader r = {path, why, sizeof why};
    sprig_status st = parse_db(&r, text, len, db);
    if (st == SPRIG_OK) {
        char want[300];
        const char *base = strrchr(path, '/');
        base = base ? base + 1 : path;
        if (expect && !sp_gpu_id_equal(expect, &db->gpu))
            st = bad(&r, "foreign: it describes GPU '%s' (sm_%d%d, %d SMs), not this GPU '%s' (sm_%d%d, %d SMs)",
                     db->gpu.name, db->gpu.cc_major, db->gpu.cc_minor, db->gpu.sm_count, expect->name,
                     expect->cc_major, expect->cc_minor, expect->sm_count);
        else if (sp_db_file_name(&db->gpu, want, sizeof want), strcmp(want, base) != 0)
            st = bad(&r, "foreign: its GPU block ('%s', sm_%d%d, %d SMs) belongs in %s, not %s", db->gpu.name,
                     db->gpu.cc_major, db->gpu.cc_minor, db->gpu.sm_count, want, base);
    }
    if (st == SPRIG_E_FORMAT) {
        drop_entries(db); /* never use part of a bad file */
        st = sp_fail(SPRIG_E_FORMAT, "tuning database %s is unusable: %s", path, why);
        snprintf(db->load_error, sizeof db->load_error, "%s", why);
        db->load_failed = 1;
    }
    return st;
}

/* Loads path into a new db. Returns SPRIG_OK, or SPRIG_E_FORMAT / SPRIG_E_IO
 * (message names the file and reason); *missing set when there is no file. */
static sprig_status load(const char *path, const sp_gpu_id *expect, sp_db **out, int *missing) {
    *out = NULL;
    sp_db *db = db_new(path);
    SP_CHECK_ALLOC(db);
    size_t len = 0;
    char *text = NULL;
    sprig_status rs = sp_file_read(path, DB_MAX_FILE_BYTES, &text, &len, missing);
    if (rs != SPRIG_OK) {
        sprig_status st = *missing ? SPRIG_OK : sp_wrap(rs, "tuning database");
        if (st == SPRIG_OK && expect) db->gpu = *expect;
        if (st == SPRIG_OK) *out = db;
        else sp_db_close(db);
        return st;
    }
    sprig_status st = load_text(db, text, len, expect);
    free(text);
    if (st != SPRIG_OK && st != SPRIG_E_FORMAT) {
        sp_db_close(db);
        return st;
    }
    *out = db; /* unusable (SPRIG_E_FORMAT): the caller decides: close, or keep (forced) */
    return st;
}

sprig_status sp_db_parse(sp_db **out, const char *text, size_t len, const char *path, const sp_gpu_id *expect) {
    if (!out || (!text && len) || !path) return sp_fail(SPRIG_E_INVALID, "sp_db_parse: NULL argument");
    *out = NULL;
    if (len > DB_MAX_FILE_BYTES) return sp_fail(SPRIG_E_FORMAT, "%s: larger than %zu bytes", path, DB_MAX_FILE_BYTES);
    /* A copy ending in NUL, as a file read gives: the text need not have one. */
    char *copy = malloc(len + 1);
    sp_db *db = copy ? db_new(path) : NULL;
    if (!db) {
        free(copy);
        return sp_fail(SPRIG_E_NOMEM, "out of memory parsing %s", path);
    }
    if (len) memcpy(copy, text, len);
    copy[len] = '\0';
    sprig_status st = load_text(db, copy, len, expect);
    free(copy);
    if (st != SPRIG_OK) {
        sp_db_close(db);
        return st;
    }
    *out = db;
    return SPRIG_OK;
}

sprig_status sp_db_load_file(sp_db **out, const char *path, const sp_gpu_id *expect) {
    if (!out || !path) return sp_fail(SPRIG_E_INVALID, "sp_db_load_file: NULL argument");
    int missing = 0;
    sp_db *db = NULL;
    sprig_status st = load(path, expect, &db, &missing);
    if (st == SPRIG_OK && missing) st = sp_fail(SPRIG_E_IO, "tuning database %s does not exist", path);
    if (st != SPRIG_OK) {
        sp_db_close(db);
        *out = NULL;
        return st;
    }
    *out = db;
    return SPRIG_OK;
}

sprig_status sp_db_open(sp_db **out, const char *dir, const sp_gpu_id *gpu, int force) {
    if (!out || !gpu) return sp_fail(SPRIG_E_INVALID, "sp_db_open: NULL argument");
    *out = NULL;
    char folder[4096], name[300], path[4400];
    SP_TRY(sp_db_dir(dir, folder, sizeof folder));
    sp_db_file_name(gpu, name, sizeof name);
    snprintf(path, sizeof path, "%s/%s", folder, name);
    int missing = 0;
    sp_db *db = NULL;
    sprig_status st = load(path, gpu, &db, &missing);
    if (st == SPRIG_E_FORMAT && force) {
        db->gpu = *gpu;
        db->force = 1;
        *out = db;
        return SPRIG_OK;
    }
    if (st != SPRIG_OK) {
        sp_db_close(db);
        return st;
    }
    db->force = force;
    *out = db;
    return SPRIG_OK;
}
