/* sp_tune_run: keys in, database entries out, one key at a time, saved
 * after each so a killed run resumes where it stopped (see sp_tune.h). */
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include <cjson/cJSON.h>

#include "sp_error.h"
#include "sp_tune.h"
#include "tuner_internal.h"

void sp_tune_opts_init(sp_tune_opts *o) {
    memset(o, 0, sizeof *o);
    sp_search_opts_init(&o->search);
    o->prune_within = 1.3;
    o->max_kept = SP_TUNE_MAX_KEPT;
}

const char *sp_tune_outcome_name(sp_tune_outcome o) {
    static const char *const names[] = {"tuned", "skipped", "no_verified", "invalid", "aborted", "not_run"};
    return (unsigned)o < sizeof names / sizeof names[0] ? names[o] : "unknown";
}

void sp_tune_summary_free(sp_tune_summary *s) {
    if (!s) return;
    free(s->rows);
    memset(s, 0, sizeof *s);
}

static double now_s(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + 1e-9 * (double)ts.tv_nsec;
}

/* The search's callbacks carry no key; this adapter adds it. */
typedef struct adapter {
    const sp_tune_opts *o;
    const sp_tune_key *key;
    size_t index;
} adapter;

static sprig_status adapt_measure(void *ctx, const char *params, sp_measurement *out) {
    adapter *a = ctx;
    return a->o->measure(a->o->ctx, a->key, params, out);
}

static sprig_status adapt_prepare(void *ctx, const char *const *params, size_t n) {
    adapter *a = ctx;
    return a->o->prepare(a->o->ctx, a->key, params, n);
}

static void adapt_progress(void *ctx, size_t done, size_t total, double best_us) {
    adapter *a = ctx;
    a->o->progress(a->o->ctx, a->index, a->o->n_keys, a->key, done, total, best_us);
}

static sprig_request request_of(const sp_tune_key *k, const char *params) {
    sprig_request r = {k->family, k->d, k->f, k->dtype, k->batch, k->g, params};
    return r;
}

static void row_fail(sp_tune_row *row, sp_tune_outcome outcome, const char *why) {
    row->outcome = outcome;
    snprintf(row->message, sizeof row->message, "%s", why);
}

/* Builds the key's space and its db key (the template hash as every lookup
 * computes it: sp_space_template_hash). */
static sprig_status prepare_key(const sp_tune_opts *o, const sp_tune_key *k, sp_space **space, sp_db_key *dbk) {
    sprig_request req = request_of(k, k->fixed ? k->fixed : "");
    SP_TRY(sp_space_build(o->gen, &req, space));
    if ((*space)->n == 0)
        return sp_fail(SPRIG_E_INVALID, "the tuning space is empty: the family rejects every combination for this key");
    uint64_t hash = 0;
    SP_TRY(sp_space_template_hash(o->gen, &req, *space, &hash));
    return sp_db_key_make(dbk, k->family, hash, k->d, k->f, k->dtype, k->batch, k->sparsity, k->g, k->fixed);
}

/* The static model's filter over key's space: distinct kernels, ranked. */
static sprig_status rank_key(sprig_gen *gen, const sp_tune_key *k, const sp_space *space, const sp_gpu_profile *gpu,
                             double prune_within, size_t max_keep, sp_analyze_rank *out) {
    sprig_request req = request_of(k, k->fixed ? k->fixed : "");
    sp_analyze_opts ao = {gpu, 1.0 - k->sparsity / 100.0, 512, NULL, ""};
    return sp_analyze_rank_space(gen, &req, space, &ao, prune_within, max_keep, out);
}

sprig_status sp_tune_key_rank(sprig_gen *gen, const sp_tune_key *key, const sp_gpu_profile *gpu, double prune_within,
                              size_t max_keep, sp_analyze_rank *out) {
    memset(out, 0, sizeof *out);
    sprig_request req = request_of(key, key->fixed ? key->fixed : "");
    sp_space *space = NULL;
    SP_TRY(sp_space_build(gen, &req, &space));
    sprig_status s = rank_key(gen, key, space, gpu, prune_within, max_keep, out);
    sp_space_free(space);
    return s;
}

/* Narrows space to what the filter keeps, best predicted first (o->model_gpu). */
static sprig_status narrow_space(const sp_tune_opts *o, const sp_tune_key *k, sp_space *space, sp_tune_row *row) {
    sp_analyze_rank rank;
    SP_TRY(rank_key(o->gen, k, space, o->model_gpu, o->prune_within, o->max_kept, &rank));
    sprig_status s = sp_space_keep(space, rank.keep, rank.n_keep);
    row->within = rank.n_within, row->kept = rank.n_keep;
    sp_analyze_rank_free(&rank);
    return s;
}

static void fill_tuned(sp_tune_row *row, const sp_search_result *r, size_t space_size) {
    row->outcome = SP_TUNE_TUNED;
    const sp_trial *w = &r->trials[r->winner];
    snprintf(row->winner, sizeof row->winner, "%s", w->params);
    row->median_us = sp_trial_median_us(w);
    row->space_size = space_size;
    row->tried = r->n_trials;
    row->wrong = r->n_wrong;
    row->failed = r->n_failed;
    row->exhaustive = r->exhaustive;
    row->elapsed_s = r->elapsed_s;
}

static void fill_skipped(sp_tune_row *row, const sp_db_entry *e, size_t space_size) {
    row->outcome = SP_TUNE_SKIPPED;
    snprintf(row->winner, sizeof row->winner, "%s", e->winner);
    row->median_us = e->best.median_us;
    row->space_size = space_size;
    row->tried = e->n_trials;
    for (size_t i = 0; i < e->n_trials; ++i) {
        if (e->trials[i].m.verdict == SP_VERDICT_WRONG) ++row->wrong;
        else if (e->trials[i].m.verdict != SP_VERDICT_OK) ++row->failed;
    }
    row->exhaustive = e->exhaustive;
    snprintf(row->message, sizeof row->message, "already tuned (%s)", e->timestamp);
}

/* Tunes one key into its row. Returns non-OK only for errors that must stop
 * the run (measuring broke, the db could not be saved). */
static sprig_status tune_key(const sp_tune_opts *o, size_t index, sp_tune_row *row) {
    const sp_tune_key *k = &o->keys[index];
    snprintf(row->key, sizeof row->key, "%s d=%d f=%d %s batch=%d g=%d sparsity=%g%s%s",
             k->family ? k->family : "?", k->d, k->f, k->dtype ? k->dtype : "?", k->batch, k->g, k->sparsity,
             k->fixed && *k->fixed ? " " : "", k->fixed ? k->fixed : "");
    sp_space *space = NULL;
    sp_db_key dbk;
    if (prepare_key(o, k, &space, &dbk) != SPRIG_OK) {
        row->space_size = space ? space->n : 0;
        row_fail(row, SP_TUNE_INVALID, sprig_last_error());
        sp_space_free(space);
        return SPRIG_OK;
    }
    sp_db_key_string(&dbk, row->key, sizeof row->key);
    const sp_db_entry *have = o->retune ? NULL : sp_db_find(o->db, &dbk);
    if (have) {
        fill_skipped(row, have, space->n);
        sp_space_free(space);
        return SPRIG_OK;
    }
    const size_t space_size = space->n;
    sp_search_opts so = o->search;
    if (o->model_gpu) {
        if (narrow_space(o, k, space, row) != SPRIG_OK) {
            row->space_size = space_size;
            row_fail(row, SP_TUNE_INVALID, sprig_last_error());
            sp_space_free(space);
            return SPRIG_OK;
        }
        so.ordered = o->prune_within > 0;
    }
    adapter a = {o, k, index};
    sp_search_callbacks cb = {adapt_measure, o->prepare ? adapt_prepare : NULL, o->progress ? adapt_progress : NULL, &a};
    sp_search_result r;
    sprig_status st = sp_search_run(space, &so, &cb, &r);
    row->space_size = space_size;
    row->tried = r.n_trials;
    row->wrong = r.n_wrong;
    row->failed = r.n_failed;
    row->elapsed_s = r.elapsed_s;
    if (st == SPRIG_OK) {
        fill_tuned(row, &r, space_size);
        st = sp_db_put(o->db, &dbk, &r);
        if (st == SPRIG_OK) st = sp_db_save(o->db);
        if (st != SPRIG_OK) row_fail(row, SP_TUNE_ABORTED, sprig_last_error());
    } else if (st == SPRIG_E_VERIFY || st == SPRIG_E_INVALID) {
        row_fail(row, st == SPRIG_E_VERIFY ? SP_TUNE_NO_VERIFIED : SP_TUNE_INVALID, sprig_last_error());
        st = SPRIG_OK;
    } else {
        row_fail(row, SP_TUNE_ABORTED, sprig_last_error());
    }
    sp_search_result_free(&r);
    sp_space_free(space);
    return st;
}

static void count_row(sp_tune_summary *s, const sp_tune_row *row) {
    switch (row->outcome) {
    case SP_TUNE_TUNED: ++s->n_tuned; break;
    case SP_TUNE_SKIPPED: ++s->n_skipped; break;
    case SP_TUNE_NOT_RUN: ++s->n_not_run; break;
    default: ++s->n_failed; break;
    }
}

/* After the loop: a summary status naming the first failed key. */
static sprig_status final_status(const sp_tune_summary *s) {
    for (size_t i = 0; i < s->n; ++i) {
        const sp_tune_row *row = &s->rows[i];
        if (row->outcome == SP_TUNE_NO_VERIFIED || row->outcome == SP_TUNE_INVALID)
            return sp_fail(row->outcome == SP_TUNE_NO_VERIFIED ? SPRIG_E_VERIFY : SPRIG_E_INVALID,
                           "%zu of %zu tuning keys failed; first %s: %s", s->n_failed, s->n, row->key, row->message);
    }
    return SPRIG_OK;
}

sprig_status sp_tune_run(const sp_tune_opts *o, sp_tune_summary *out) {
    if (!out) return sp_fail(SPRIG_E_INVALID, "sp_tune_run: out is NULL");
    memset(out, 0, sizeof *out);
    if (!o || !o->gen || !o->db || !o->measure || (o->n_keys && !o->keys))
        return sp_fail(SPRIG_E_INVALID, "sp_tune_run: gen, db, keys and measure are required");
    if (o->db->load_failed && !o->db->force)
        return sp_fail(SPRIG_E_FORMAT, "tuning database %s could not be loaded (%s); not tuning into it",
                       o->db->path, o->db->load_error);
    out->rows = calloc(o->n_keys ? o->n_keys : 1, sizeof *out->rows);
    SP_CHECK_ALLOC(out->rows);
    out->n = o->n_keys;
    double t0 = now_s();
    sprig_status st = SPRIG_OK;
    size_t i = 0;
    for (; i < o->n_keys && st == SPRIG_OK; ++i) {
        if (o->total_budget_s > 0 && now_s() - t0 >= o->total_budget_s) break;
        st = tune_key(o, i, &out->rows[i]);
        count_row(out, &out->rows[i]);
    }
    for (; i < o->n_keys; ++i) {
        sp_tune_row *row = &out->rows[i];
        const sp_tune_key *k = &o->keys[i];
        snprintf(row->key, sizeof row->key, "%s d=%d f=%d %s batch=%d", k->family ? k->family : "?", k->d, k->f,
                 k->dtype ? k->dtype : "?", k->batch);
        row_fail(row, SP_TUNE_NOT_RUN, st != SPRIG_OK ? "the run stopped at an earlier key" : "the total time budget ran out");
        count_row(out, row);
    }
    return st != SPRIG_OK ? st : final_status(out);
}

/* ---- output ------------------------------------------------------------------------ */

char *sp_tune_summary_json(const sp_tune_summary *s) {
    cJSON *arr = cJSON_CreateArray();
    if (!arr) return NULL;
    for (size_t i = 0; s && i < s->n; ++i) {
        const sp_tune_row *r = &s->rows[i];
        cJSON *o = cJSON_CreateObject();
        if (!o) break;
        cJSON_AddStringToObject(o, "key", r->key);
        cJSON_AddStringToObject(o, "outcome", sp_tune_outcome_name(r->outcome));
        if (r->winner[0]) {
            cJSON_AddStringToObject(o, "winner", r->winner);
            cJSON_AddNumberToObject(o, "median_us", r->median_us);
        }
        cJSON_AddNumberToObject(o, "space", (double)r->space_size);
        if (r->kept) {
            cJSON_AddNumberToObject(o, "within", (double)r->within);
            cJSON_AddNumberToObject(o, "kept", (double)r->kept);
        }
        cJSON_AddNumberToObject(o, "tried", (double)r->tried);
        cJSON_AddNumberToObject(o, "wrong", (double)r->wrong);
        cJSON_AddNumberToObject(o, "failed", (double)r->failed);
        cJSON_AddBoolToObject(o, "exhaustive", r->exhaustive);
        cJSON_AddNumberToObject(o, "elapsed_s", r->elapsed_s);
        if (r->message[0]) cJSON_AddStringToObject(o, "message", r->message);
        cJSON_AddItemToArray(arr, o);
    }
    char *text = cJSON_Print(arr);
    cJSON_Delete(arr);
    return text;
}

void sp_tune_summary_print(const sp_tune_summary *s, FILE *to) {
    fprintf(to, "%-11s %10s %6s %6s %6s %6s %6s  %-s\n", "outcome", "median_us", "space", "kept", "tried", "wrong",
            "failed", "key / winner");
    for (size_t i = 0; s && i < s->n; ++i) {
        const sp_tune_row *r = &s->rows[i];
        char kept[24] = "-";
        if (r->kept) snprintf(kept, sizeof kept, "%zu", r->kept);
        if (r->winner[0])
            fprintf(to, "%-11s %10.2f %6zu %6s %6zu %6zu %6zu  %s\n%66s-> %s\n", sp_tune_outcome_name(r->outcome),
                    r->median_us, r->space_size, kept, r->tried, r->wrong, r->failed, r->key, "", r->winner);
        else
            fprintf(to, "%-11s %10s %6zu %6s %6zu %6zu %6zu  %s\n%66s%s\n", sp_tune_outcome_name(r->outcome), "-",
                    r->space_size, kept, r->tried, r->wrong, r->failed, r->key, "", r->message);
    }
    fprintf(to, "%zu tuned, %zu already in the database, %zu failed, %zu not run\n", s ? s->n_tuned : 0,
            s ? s->n_skipped : 0, s ? s->n_failed : 0, s ? s->n_not_run : 0);
}
