/* Looking up tuned params across db files, with the explicit fallback chain
 * exact -> same GPU, nearest shape -> same architecture -> generic default
 * (see sp_db.h). An exact match is simply a nearest match at distance zero. */
#include <dirent.h>
#include <math.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "tuner_internal.h"
#include "sp_db.h"
#include "sp_error.h"

/* ---- sets ---------------------------------------------------------------------------- */

void sp_db_set_init(sp_db_set *set) { memset(set, 0, sizeof *set); }

void sp_db_set_free(sp_db_set *set) {
    if (!set) return;
    for (size_t i = 0; i < set->n; ++i)
        if (set->owned[i]) sp_db_close(set->dbs[i]);
    free(set->dbs);
    free(set->owned);
    free(set->notes);
    memset(set, 0, sizeof *set);
}

sprig_status sp_db_set_add(sp_db_set *set, sp_db *db, int owned) {
    if (!set || !db) return sp_fail(SPRIG_E_INVALID, "sp_db_set_add: NULL argument");
    if (set->n == set->cap) {
        size_t cap = set->cap ? 2 * set->cap : 8;
        sp_db **dbs = realloc(set->dbs, cap * sizeof *dbs);
        SP_CHECK_ALLOC(dbs);
        set->dbs = dbs;
        int *own = realloc(set->owned, cap * sizeof *own);
        SP_CHECK_ALLOC(own);
        set->owned = own;
        set->cap = cap;
    }
    set->dbs[set->n] = db;
    set->owned[set->n++] = owned;
    return SPRIG_OK;
}

void sp_notes_append(char **notes, const char *text) {
    size_t old = *notes ? strlen(*notes) : 0, add = strlen(text);
    char *grown = realloc(*notes, old + add + 2);
    if (!grown) return; /* notes are advisory */
    if (old) grown[old++] = '\n';
    memcpy(grown + old, text, add + 1);
    *notes = grown;
}

static int has_suffix(const char *s, const char *suffix) {
    size_t n = strlen(s), k = strlen(suffix);
    return n >= k && !strcmp(s + n - k, suffix);
}

static int cmp_name(const void *a, const void *b) { return strcmp(*(char *const *)a, *(char *const *)b); }

sprig_status sp_db_set_add_dir(sp_db_set *set, const char *dir) {
    if (!set || !dir) return sp_fail(SPRIG_E_INVALID, "sp_db_set_add_dir: NULL argument");
    DIR *dp = opendir(dir);
    if (!dp) return SPRIG_OK; /* no folder, no files */
    char **names = NULL;
    size_t n = 0, cap = 0;
    sprig_status st = SPRIG_OK;
    for (struct dirent *de; st == SPRIG_OK && (de = readdir(dp));) {
        if (de->d_name[0] == '.' || !has_suffix(de->d_name, ".json")) continue;
        if (n == cap) {
            char **grown = realloc(names, (cap = cap ? 2 * cap : 16) * sizeof *grown);
            if (!grown) st = sp_fail(SPRIG_E_NOMEM, "out of memory listing %s", dir);
            else names = grown;
        }
        if (st == SPRIG_OK && !(names[n++] = strdup(de->d_name))) st = sp_fail(SPRIG_E_NOMEM, "out of memory");
    }
    closedir(dp);
    if (st == SPRIG_OK && n) qsort(names, n, sizeof *names, cmp_name); /* names is NULL for an empty folder */
    for (size_t i = 0; i < n; ++i) {
        char path[4400];
        snprintf(path, sizeof path, "%s/%s", dir, names[i] ? names[i] : "");
        sp_db *db = NULL;
        if (st == SPRIG_OK && names[i]) {
            if (sp_db_load_file(&db, path, NULL) != SPRIG_OK) {
                char note[1200];
                snprintf(note, sizeof note, "skipped %s", sprig_last_error());
                sp_notes_append(&set->notes, note);
            } else if ((st = sp_db_set_add(set, db, 1)) != SPRIG_OK) {
                sp_db_close(db);
            }
        }
        free(names[i]);
    }
    free(names);
    return st;
}

/* ---- lookup ---------------------------------------------------------------------------- */

const char *sp_lookup_source_name(sp_lookup_source s) {
    switch (s) {
    case SP_LOOKUP_EXACT: return "exact";
    case SP_LOOKUP_SAME_GPU_NEAREST: return "same_gpu_nearest_shape";
    case SP_LOOKUP_SAME_ARCH: return "same_arch";
    case SP_LOOKUP_GENERIC_DEFAULT: return "generic_default";
    }
    return "unknown";
}

static int batch_index(int bucket) {
    int i = 0;
    for (int b = 1; b < bucket && i < 6; b = b == 1 ? 4 : 2 * b) ++i;
    return i;
}

static int sparsity_index(int bucket) { return bucket <= 0 ? 0 : bucket <= 50 ? 1 : bucket <= 75 ? 2 : 3; }

/* How far an entry is from the wanted key; compared lexicographically. */
typedef struct match {
    const sp_db *db;
    const sp_db_entry *e;
    double shape;       /* relative distance in (d, f) */
    int batch, sparsity;/* distance in bucket steps */
    int sms;            /* |SM count difference| (same-arch tie-break) */
} match;

static int better(const match *a, const match *b) {
    if (!b->e) return 1;
    if (a->shape != b->shape) return a->shape < b->shape;
    if (a->batch != b->batch) return a->batch < b->batch;
    if (a->sparsity != b->sparsity) return a->sparsity < b->sparsity;
    return a->sms < b->sms;
}

static int is_exact(const match *m) { return m->e && m->shape == 0 && m->batch == 0 && m->sparsity == 0; }

static int same_problem(const sp_db_key *a, const sp_db_key *b) {
    return !strcmp(a->family, b->family) && !strcmp(a->dtype, b->dtype) && a->g == b->g && !strcmp(a->fixed, b->fixed);
}

static int same_point(const sp_db_key *a, const sp_db_key *b) {
    return a->d == b->d && a->f == b->f && a->batch_bucket == b->batch_bucket && a->sparsity_bucket == b->sparsity_bucket;
}

typedef struct scan {
    const sp_db_key *want;
    const sp_gpu_id *gpu;
    sp_lookup_valid_fn valid;
    void *valid_ctx;
    int stale_exact;    /* entries for this very point tuned with another template */
    int stale;          /* other entries of this problem with another template hash */
    int rejected;       /* passed over by the validity callback */
} scan;

/* Best usable entry of db for the wanted key, folded into *best. */
static void scan_db(scan *sc, const sp_db *db, match *best) {
    const sp_db_key *w = sc->want;
    for (size_t i = 0; i < db->n; ++i) {
        const sp_db_entry *e = &db->entries[i];
        if (!same_problem(&e->key, w)) continue;
        if (e->key.template_hash != w->template_hash) {
            if (same_point(&e->key, w)) ++sc->stale_exact;
            else ++sc->stale;
            continue;
        }
        if (sc->valid && !sc->valid(sc->valid_ctx, w, e->winner)) {
            ++sc->rejected;
            continue;
        }
        double dd = (double)(e->key.d - w->d) / w->d, df = (double)(e->key.f - w->f) / w->f;
        match m = {db, e, sqrt(dd * dd + df * df), abs(batch_index(e->key.batch_bucket) - batch_index(w->batch_bucket)),
                   abs(sparsity_index(e->key.sparsity_bucket) - sparsity_index(w->sparsity_bucket)),
                   abs(db->gpu.sm_count - sc->gpu->sm_count)};
        if (better(&m, best)) *best = m;
    }
}

static void describe_gpu(const sp_gpu_id *g, char *buf, size_t cap) {
    snprintf(buf, cap, "'%s' (sm_%d%d, %d SMs)", g->name, g->cc_major, g->cc_minor, g->sm_count);
}

static void describe_point(const sp_db_key *k, char *buf, size_t cap) {
    snprintf(buf, cap, "%s %s g=%d%s%s d=%d f=%d batch<=%d sparsity~%d%%", k->family, k->dtype, k->g,
             k->fixed[0] ? " " : "", k->fixed, k->d, k->f, k->batch_bucket, k->sparsity_bucket);
}

/* Why entries were passed over, for the explanation ("" if none). */
static void describe_skips(const scan *sc, char *buf, size_t cap) {
    int at = 0;
    buf[0] = '\0';
    if (sc->stale_exact)
        at += snprintf(buf + at, cap - (size_t)at, "; %d entr%s for this exact point %s tuned for a different template "
                       "(hash not %016llx), so not used", sc->stale_exact, sc->stale_exact == 1 ? "y" : "ies",
                       sc->stale_exact == 1 ? "was" : "were", (unsigned long long)sc->want->template_hash);
    if (sc->stale && at < (int)cap)
        at += snprintf(buf + at, cap - (size_t)at, "; %d other entr%s tuned for a different template", sc->stale,
                       sc->stale == 1 ? "y" : "ies");
    if (sc->rejected && at < (int)cap)
        snprintf(buf + at, cap - (size_t)at, "; %d entr%s rejected as invalid for this request", sc->rejected,
                 sc->rejected == 1 ? "y" : "ies");
}

/* snprintf through a va_list: explanations are truncated on purpose when long. */
static void say(char *buf, size_t cap, const char *fmt, ...) __attribute__((format(printf, 3, 4)));
static void say(char *buf, size_t cap, const char *fmt, ...) {
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(buf, cap, fmt, ap);
    va_end(ap);
}

static void fill_from(sp_lookup_result *out, const match *m, sp_lookup_source src) {
    out->source = src;
    out->entry = m->e;
    out->db = m->db;
    snprintf(out->params, sizeof out->params, "%s", m->e->winner);
}

sprig_status sp_db_lookup(const sp_db_set *set, const sp_gpu_id *gpu, const sp_db_key *key,
                          sp_lookup_valid_fn valid, void *valid_ctx, sp_lookup_result *out) {
    if (!gpu || !key || !out) return sp_fail(SPRIG_E_INVALID, "sp_db_lookup: NULL argument");
    memset(out, 0, sizeof *out);
    char want[300], here[200], skips[400];
    describe_point(key, want, sizeof want);
    describe_gpu(gpu, here, sizeof here);

    scan sc = {key, gpu, valid, valid_ctx, 0, 0, 0};
    match best = {0};
    for (size_t i = 0; set && i < set->n; ++i)
        if (sp_gpu_id_equal(&set->dbs[i]->gpu, gpu)) scan_db(&sc, set->dbs[i], &best);
    describe_skips(&sc, skips, sizeof skips);
    if (is_exact(&best)) {
        fill_from(out, &best, SP_LOOKUP_EXACT);
        say(out->explain, sizeof out->explain, "exact: tuned on this GPU %s for %s (%s)", here, want, best.db->path);
        return SPRIG_OK;
    }
    if (best.e) {
        char got[300];
        describe_point(&best.e->key, got, sizeof got);
        fill_from(out, &best, SP_LOOKUP_SAME_GPU_NEAREST);
        say(out->explain, sizeof out->explain,
                 "same_gpu_nearest_shape: this GPU %s has no entry for %s%s; using the nearest, %s "
                 "(relative shape distance %.3f, %d batch and %d sparsity bucket steps away; %s)",
                 here, want, skips, got, best.shape, best.batch, best.sparsity, best.db->path);
        return SPRIG_OK;
    }
    scan arch = {key, gpu, valid, valid_ctx, 0, 0, 0};
    for (size_t i = 0; set && i < set->n; ++i) {
        const sp_gpu_id *g = &set->dbs[i]->gpu;
        if (!sp_gpu_id_equal(g, gpu) && g->cc_major == gpu->cc_major && g->cc_minor == gpu->cc_minor)
            scan_db(&arch, set->dbs[i], &best);
    }
    if (best.e) {
        char got[300], other[200];
        describe_point(&best.e->key, got, sizeof got);
        describe_gpu(&best.db->gpu, other, sizeof other);
        fill_from(out, &best, SP_LOOKUP_SAME_ARCH);
        say(out->explain, sizeof out->explain,
                 "same_arch: this GPU %s has no usable entry for %s%s; using %s tuned on %s, the same compute "
                 "capability, %s (%s)",
                 here, want, skips, is_exact(&best) ? "the exact point" : "the nearest point", other, got, best.db->path);
        return SPRIG_OK;
    }
    sc.stale_exact += arch.stale_exact;
    sc.stale += arch.stale;
    sc.rejected += arch.rejected;
    describe_skips(&sc, skips, sizeof skips);
    out->source = SP_LOOKUP_GENERIC_DEFAULT;
    snprintf(out->params, sizeof out->params, "%s", key->fixed);
    say(out->explain, sizeof out->explain,
             "generic_default: no tuned entry for %s on this GPU %s or another sm_%d%d GPU%s; using the family's "
             "defaults%s%s",
             want, here, gpu->cc_major, gpu->cc_minor, skips, key->fixed[0] ? " with " : "", key->fixed);
    return SPRIG_OK;
}
