/* The tuner on the CPU with synthetic measurements: tuning spaces from a real
 * family (dense_gemv) and a synthetic grid, exhaustive and pruned search that
 * pick the fastest *verified* candidate (the fastest synthetic one is wrong),
 * confirmation re-runs, the time budget, and a killed tuning run that resumes
 * where it stopped. */
#include <dirent.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include <cjson/cJSON.h>

#include "sp_error.h"
#include "sp_tune.h"
#include "sprig.h"
#include "test_util.h"

/* ---- synthetic measurements --------------------------------------------------------------- */

/* Value of key in "k=v,..." as a number (NAN if absent or not a number). */
static double param(const char *params, const char *key) {
    size_t n = strlen(key);
    for (const char *p = params; p && *p;) {
        if (!strncmp(p, key, n) && p[n] == '=') return atof(p + n + 1);
        p = strchr(p, ',');
        if (p) ++p;
    }
    return NAN;
}

static double sq(double x) { return x * x; }

/* dense_gemv: separable and convex in each parameter's value index, minimal
 * at threads=128, rows_per_warp=2, vec=8, unroll=4 (then 10 us). */
static double gemv_us(const char *params) {
    double t = 10 + sq(log2(param(params, "threads")) - 7) + sq(param(params, "rows_per_warp") - 2) +
               sq(log2(param(params, "vec")) - 3) + sq(log2(param(params, "unroll")) - 2);
    return strstr(params, "op=down") ? t + 5 : t;
}

static int gemv_is_fastest(const char *params) {
    return param(params, "threads") == 128 && param(params, "rows_per_warp") == 2 && param(params, "vec") == 8 &&
           param(params, "unroll") == 4;
}

/* The synthetic grid a..f with values 0..4: minimal at TARGET. */
static const int TARGET[6] = {1, 3, 2, 0, 4, 2};
static double grid_us(const char *params) {
    char name[2] = "a";
    double t = 10;
    for (int i = 0; i < 6; ++i, ++name[0]) t += sq(param(params, name) - TARGET[i]);
    return t;
}

typedef struct fake {
    double (*time_us)(const char *params);
    int (*wrong)(const char *params);     /* candidates that fail verification */
    const char *flaky;                    /* verified the first time, wrong when re-timed */
    int flaky_calls;
    long calls;                           /* measure invocations */
    long abort_at;                        /* return an error at this call (0: never) */
    double sleep_s;                       /* per call, for budget tests */
    int all_wrong_down;                   /* every op=down candidate is wrong */
} fake;

static sprig_status fake_measure(void *ctx, const char *params, sp_measurement *m) {
    fake *f = ctx;
    ++f->calls;
    if (f->abort_at && f->calls >= f->abort_at) return sp_fail(SPRIG_E_CUDA, "synthetic failure: the run was killed");
    if (f->sleep_s > 0) {
        struct timespec ts = {0, (long)(f->sleep_s * 1e9)};
        nanosleep(&ts, NULL);
    }
    double t = f->time_us(params);
    int wrong = (f->wrong && f->wrong(params)) || (f->all_wrong_down && strstr(params, "op=down"));
    if (f->flaky && !strcmp(params, f->flaky) && f->flaky_calls++ > 0) wrong = 1;
    m->verdict = wrong ? SP_VERDICT_WRONG : SP_VERDICT_OK;
    m->rel_err = wrong ? 0.37 : 1e-4;
    m->median_us = t;
    m->min_us = t * 0.98;
    m->runs = 100;
    if (wrong) snprintf(m->note, sizeof m->note, "rel_err 0.37 > 1e-2");
    return SPRIG_OK;
}

static sprig_status fake_tune_measure(void *ctx, const sp_tune_key *key, const char *params, sp_measurement *m) {
    (void)key;
    return fake_measure(ctx, params, m);
}

/* ---- spaces ----------------------------------------------------------------------------------- */

static sp_space *gemv_space(sprig_gen *gen, int batch, const char *fixed) {
    sprig_request req = {"dense_gemv", 4096, 11008, "fp16", batch, 32, fixed};
    sp_space *s = NULL;
    sprig_status st = sp_space_build(gen, &req, &s);
    CHECK_MSG(st == SPRIG_OK && s, "%s", sprig_last_error());
    return s;
}

static void test_space(sprig_gen *gen) {
    sp_space *s = gemv_space(gen, 32, "op=up,vec=8");
    if (!s) return;
    /* threads 4 x rows_per_warp {1,2} (4*32 > 64 accumulators is rejected) x unroll 3 */
    CHECK_MSG(s->n == 24 && s->raw == 36 && s->n_dims == 3, "n=%zu raw=%zu dims=%d", s->n, s->raw, s->n_dims);
    for (size_t i = 0; i < s->n; ++i) {
        CHECK(param(s->params[i], "rows_per_warp") != 4);
        CHECK(sp_contains(s->params[i], "op=up") && sp_contains(s->params[i], "vec=8"));
    }
    CHECK(s->default_index >= 0 &&
          !strcmp(s->params[s->default_index], "op=up,accumulate=0,bias=0,norm=none,norm_dim=0,norm_weightless=0,norm_raw=0,threads=256,rows_per_warp=1,vec=8,unroll=2"));
    /* every candidate renders */
    sprig_request req = {"dense_gemv", 4096, 11008, "fp16", 32, 32, s->params[s->n - 1]};
    sprig_plan *plan = NULL;
    CHECK(sprig_gen_render(gen, &req, &plan) == SPRIG_OK);
    sprig_plan_free(plan);

    /* neighbours of threads=128,rows_per_warp=1,unroll=2: threads 64/256,
     * rows_per_warp 2 (4 is not valid here), unroll 1/4 */
    int c[3] = {1, 0, 1};
    long i = sp_space_find(s, c);
    CHECK(i >= 0 && !strcmp(s->params[i], "op=up,accumulate=0,bias=0,norm=none,norm_dim=0,norm_weightless=0,norm_raw=0,threads=128,rows_per_warp=1,vec=8,unroll=2"));
    size_t nb[8];
    size_t k = i >= 0 ? sp_space_neighbours(s, (size_t)i, nb, 8) : 0;
    CHECK_MSG(k == 5, "%zu neighbours", k);
    for (size_t j = 0; j < k && j < 8; ++j) {
        const int *o = sp_space_coords(s, nb[j]);
        int diff = abs(o[0] - c[0]) + abs(o[1] - c[1]) + abs(o[2] - c[2]);
        CHECK(diff == 1);
    }
    int out_of_space[3] = {1, 2, 1}; /* rows_per_warp=4 */
    CHECK(sp_space_find(s, out_of_space) == -1);

    /* seeded samples: reproducible, distinct */
    size_t a[10], b[10], d[10];
    CHECK(sp_space_sample(s, 7, 10, a) == 10 && sp_space_sample(s, 7, 10, b) == 10);
    CHECK(!memcmp(a, b, sizeof a));
    sp_space_sample(s, 8, 10, d);
    CHECK(memcmp(a, d, sizeof a) != 0);
    for (int x = 0; x < 10; ++x)
        for (int y = x + 1; y < 10; ++y) CHECK(a[x] != a[y]);
    size_t *all = malloc(100 * sizeof *all);
    CHECK(all && sp_space_sample(s, 7, 100, all) == 24); /* clamped to the space */
    free(all);
    sp_space_free(s);

    /* the defaults string; bad fixed params are the caller's error */
    sprig_request dreq = {"dense_gemv", 4096, 11008, "fp16", 1, 32, "op=down"};
    char *def = NULL;
    int valid = 0;
    CHECK(sp_space_defaults(gen, &dreq, &def, &valid) == SPRIG_OK && valid);
    CHECK(def && !strcmp(def, "op=down,accumulate=0,bias=0,norm=none,norm_dim=0,norm_weightless=0,norm_raw=0,threads=256,rows_per_warp=1,vec=8,unroll=2"));
    free(def);
    CHECK(sp_space_check(gen, &dreq, "rows_per_warp=4") == SPRIG_OK);
    dreq.batch = 32;
    CHECK(sp_space_check(gen, &dreq, "rows_per_warp=4") == SPRIG_E_INVALID);
    CHECK(sp_contains(sprig_last_error(), "exceeds 64 accumulators"));
    sprig_request bad = {"dense_gemv", 4096, 11008, "fp16", 1, 32, "op=sideways"};
    s = NULL;
    CHECK(sp_space_build(gen, &bad, &s) == SPRIG_E_INVALID && s == NULL);
    CHECK_MSG(sp_contains(sprig_last_error(), "op=sideways is out of range"), "%s", sprig_last_error());
    bad.params = "colour=red";
    CHECK(sp_space_build(gen, &bad, &s) == SPRIG_E_INVALID);
}

/* The fastest verified candidate of the whole space, by brute force. */
static double best_verified(const sp_space *s, const fake *f) {
    double best = INFINITY;
    for (size_t i = 0; i < s->n; ++i)
        if (!(f->wrong && f->wrong(s->params[i])) && f->time_us(s->params[i]) < best) best = f->time_us(s->params[i]);
    return best;
}

static void check_winner(const sp_search_result *r, const sp_space *s, const fake *f, const char *what) {
    CHECK_MSG(r->winner >= 0, "%s: no winner", what);
    if (r->winner < 0) return;
    const sp_trial *w = &r->trials[r->winner];
    CHECK_MSG(w->m.verdict == SP_VERDICT_OK && w->confirmed, "%s", what);
    CHECK_MSG(!f->wrong || !f->wrong(w->params), "%s: chose a wrong candidate %s", what, w->params);
    CHECK_MSG(sp_trial_median_us(w) == best_verified(s, f), "%s: winner %s at %g us, best verified %g us", what,
              w->params, sp_trial_median_us(w), best_verified(s, f));
}

static void test_search_gemv(sprig_gen *gen) {
    /* exhaustive: 36 candidates <= 64 */
    sp_space *s = gemv_space(gen, 1, "op=up,vec=8");
    if (!s) return;
    CHECK(s->n == 36);
    fake f = {.time_us = gemv_us, .wrong = gemv_is_fastest};
    sp_search_callbacks cb = {fake_measure, NULL, NULL, &f};
    sp_search_opts o;
    sp_search_opts_init(&o);
    sp_search_result r;
    CHECK_MSG(sp_search_run(s, &o, &cb, &r) == SPRIG_OK, "%s", sprig_last_error());
    CHECK(r.exhaustive && r.n_trials == 36 && r.n_wrong == 1 && r.n_ok == 35);
    CHECK(r.n_measure_calls == 36 + 3 && f.calls == 39);
    check_winner(&r, s, &f, "gemv exhaustive");
    /* the wrong (fastest) one is recorded as wrong */
    int seen_wrong = 0;
    for (size_t i = 0; i < r.n_trials; ++i)
        if (gemv_is_fastest(r.trials[i].params)) seen_wrong = r.trials[i].m.verdict == SP_VERDICT_WRONG;
    CHECK(seen_wrong);
    sp_search_result_free(&r);
    sp_space_free(s);

    /* pruned: 108 candidates > 64, random sample then hill climbing */
    s = gemv_space(gen, 1, "op=up");
    if (!s) return;
    CHECK(s->n == 108);
    f.calls = 0;
    sp_search_callbacks cbp = {fake_measure, NULL, NULL, &f};
    CHECK_MSG(sp_search_run(s, &o, &cbp, &r) == SPRIG_OK, "%s", sprig_last_error());
    CHECK(!r.exhaustive && r.n_trials < 108);
    CHECK(r.trials[0].index == s->default_index); /* the default goes first */
    check_winner(&r, s, &f, "gemv pruned");
    sp_search_result_free(&r);
    sp_space_free(s);
}

/* Grid validity: one corner combination is not a candidate. */
static int grid_valid(const int *c, void *ctx) {
    (void)ctx;
    return !(c[0] == 4 && c[1] == 4);
}

static int grid_is_fastest(const char *params) {
    char name[2] = "a";
    for (int i = 0; i < 6; ++i, ++name[0])
        if (param(params, name) != TARGET[i]) return 0;
    return 1;
}

static sp_space *grid_space(void) {
    static const char *const names[] = {"a", "b", "c", "d", "e", "f"};
    static const char *const vals[] = {"0", "1", "2", "3", "4"};
    const char *const *values[6] = {vals, vals, vals, vals, vals, vals};
    int n_values[6] = {5, 5, 5, 5, 5, 5};
    sp_space *s = NULL;
    CHECK(sp_space_grid(6, names, n_values, values, "kind=synthetic", grid_valid, NULL, &s) == SPRIG_OK);
    return s;
}

typedef struct prep_log {
    fake *f;
    size_t batches, items;
} prep_log;

static sprig_status count_prepare(void *ctx, const char *const *params, size_t n) {
    prep_log *p = ctx;
    ++p->batches;
    p->items += n;
    (void)params;
    return SPRIG_OK;
}

static sprig_status prep_measure(void *ctx, const char *params, sp_measurement *m) {
    return fake_measure(((prep_log *)ctx)->f, params, m);
}

static void progress_prep(void *ctx, size_t done, size_t total, double best_us) {
    prep_log *p = ctx;
    CHECK(done <= total);
    (void)p;
    (void)best_us;
}

static void test_search_grid(void) {
    sp_space *s = grid_space();
    if (!s) return;
    CHECK(s->n == 15625 - 625 && s->raw == 15625);
    CHECK(sp_contains(s->params[0], "kind=synthetic,a=0,b=0"));
    fake f = {.time_us = grid_us, .wrong = grid_is_fastest};
    prep_log pl = {&f, 0, 0};
    sp_search_callbacks cb = {prep_measure, count_prepare, progress_prep, &pl};
    sp_search_opts o;
    sp_search_opts_init(&o);
    o.seed = 42;
    sp_search_result r;
    CHECK_MSG(sp_search_run(s, &o, &cb, &r) == SPRIG_OK, "%s", sprig_last_error());
    CHECK_MSG(!r.exhaustive && r.n_trials < 400, "%zu trials", r.n_trials);
    check_winner(&r, s, &f, "grid pruned");
    CHECK(r.n_measure_calls == r.n_trials + 3);
    CHECK(pl.batches >= 2 && pl.items == r.n_trials); /* every measured candidate was prepared first */
    /* same seed, same search */
    sp_search_result r2;
    f.calls = 0;
    CHECK(sp_search_run(s, &o, &cb, &r2) == SPRIG_OK);
    CHECK(r2.n_trials == r.n_trials && r2.winner == r.winner);
    for (size_t i = 0; i < r.n_trials && i < r2.n_trials; ++i) CHECK(r.trials[i].index == r2.trials[i].index);
    sp_search_result_free(&r2);

    /* a flaky winner (verified once, wrong when re-timed) is never chosen */
    const sp_trial *w = &r.trials[r.winner];
    char *flaky = strdup(w->params);
    fake ff = {.time_us = grid_us, .wrong = grid_is_fastest, .flaky = flaky};
    sp_search_callbacks cbf = {fake_measure, NULL, NULL, &ff};
    sp_search_result rf;
    CHECK(sp_search_run(s, &o, &cbf, &rf) == SPRIG_OK);
    CHECK(rf.winner >= 0 && strcmp(rf.trials[rf.winner].params, flaky) != 0);
    for (size_t i = 0; i < rf.n_trials; ++i)
        if (!strcmp(rf.trials[i].params, flaky)) CHECK(rf.trials[i].m.verdict == SP_VERDICT_WRONG);
    CHECK(rf.n_measure_calls == rf.n_trials + 4); /* three confirmations plus the failed one */
    sp_search_result_free(&rf);
    free(flaky);
    sp_search_result_free(&r);

    sp_space_free(s);
}

static int grid_valid_none(const int *c, void *ctx) {
    (void)c;
    (void)ctx;
    return 0;
}

static double x_us(const char *params) { return 10 + param(params, "x"); }

static int always_wrong(const char *params) {
    (void)params;
    return 1;
}

static void test_search_failures(void) {
    static const char *const names[] = {"x"};
    static const char *const vals[] = {"1", "2", "3"};
    const char *const *values[] = {vals};
    int nv[] = {3};
    sp_space *small = NULL;
    CHECK(sp_space_grid(1, names, nv, values, NULL, NULL, NULL, &small) == SPRIG_OK && small && small->n == 3);
    if (!small) return;
    fake f = {.time_us = x_us, .wrong = always_wrong};
    sp_search_callbacks cb = {fake_measure, NULL, NULL, &f};
    sp_search_result r;
    CHECK(sp_search_run(small, NULL, &cb, &r) == SPRIG_E_VERIFY);
    CHECK_MSG(sp_contains(sprig_last_error(), "no candidate verified: 3 measured, 3 wrong"), "%s", sprig_last_error());
    CHECK(r.n_trials == 3 && r.winner == -1);
    sp_search_result_free(&r);

    /* a measure error aborts the search with that status */
    fake g = {.time_us = x_us, .abort_at = 2};
    sp_search_callbacks cbg = {fake_measure, NULL, NULL, &g};
    CHECK(sp_search_run(small, NULL, &cbg, &r) == SPRIG_E_CUDA);
    CHECK(sp_contains(sprig_last_error(), "measuring x=2"));
    sp_search_result_free(&r);
    sp_space_free(small);

    /* an empty space is SPRIG_E_INVALID */
    sp_space *empty = NULL;
    CHECK(sp_space_grid(1, names, nv, values, NULL, grid_valid_none, NULL, &empty) == SPRIG_OK && empty->n == 0);
    CHECK(sp_search_run(empty, NULL, &cb, &r) == SPRIG_E_INVALID);
    sp_search_result_free(&r);
    sp_space_free(empty);
}

static double now_s(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + 1e-9 * (double)ts.tv_nsec;
}

static void test_budget(void) {
    sp_space *s = grid_space();
    if (!s) return;
    fake f = {.time_us = grid_us, .wrong = grid_is_fastest, .sleep_s = 0.002};
    sp_search_callbacks cb = {fake_measure, NULL, NULL, &f};
    sp_search_opts o;
    sp_search_opts_init(&o);
    o.budget_s = 0.1;
    sp_search_result r;
    double t0 = now_s();
    sprig_status st = sp_search_run(s, &o, &cb, &r);
    double took = now_s() - t0;
    CHECK_MSG(st == SPRIG_OK, "%s", sprig_last_error());
    CHECK(r.budget_hit && r.winner >= 0 && r.trials[r.winner].m.verdict == SP_VERDICT_OK);
    /* The budget stops the search: at most budget / 2 ms trials (+1 in flight), and
     * it returns. Wall-clock bounds stay loose: a loaded CI machine sleeps long. */
    CHECK_MSG(took < 2.0, "took %.3f s for a 0.1 s budget", took);
    CHECK_MSG(r.n_trials >= 1 && r.n_trials <= 51, "%zu trials in 0.1 s at 2 ms each", r.n_trials);
    sp_search_result_free(&r);

    /* max_trials caps the search phase too */
    f.sleep_s = 0;
    o.budget_s = 0;
    o.max_trials = 20;
    CHECK(sp_search_run(s, &o, &cb, &r) == SPRIG_OK);
    CHECK(r.n_trials == 20 && r.budget_hit && r.n_measure_calls == 23);
    sp_search_result_free(&r);
    sp_space_free(s);
}

/* ---- sp_tune_run: resume after a killed run ------------------------------------------------ */

static const sp_tune_key KEYS[] = {
    {"dense_gemv", 4096, 11008, "fp16", 1, 32, 0, "op=up,vec=8"},
    {"dense_gemv", 4096, 11008, "fp16", 4, 32, 0, "op=up,vec=8"},
    {"dense_gemv", 4096, 11008, "fp16", 1, 32, 0, "op=down,vec=8"},
    {"dense_gemv", 4096, 11008, "fp16", 8, 32, 50, "op=up,vec=8"},
};
#define N_KEYS (sizeof KEYS / sizeof KEYS[0])

static const sp_gpu_id GPU = {"Synthetic GPU", 9, 0, 132};



/* Runs the keys into dir's db with the fake; returns the status. */
static sprig_status run_keys(sprig_gen *gen, const char *dir, fake *f, const sp_tune_key *keys, size_t n,
                             sp_tune_summary *sum) {
    sp_db *db = NULL;
    sprig_status st = sp_db_open(&db, dir, &GPU, 0);
    if (st != SPRIG_OK) return st;
    sp_tune_opts o;
    sp_tune_opts_init(&o);
    o.gen = gen;
    o.db = db;
    o.keys = keys;
    o.n_keys = n;
    o.measure = fake_tune_measure;
    o.ctx = f;
    st = sp_tune_run(&o, sum);
    sp_db_close(db);
    return st;
}

static void test_tune_resume(sprig_gen *gen, const char *root) {
    char full[4300], killed[4300];
    snprintf(full, sizeof full, "%s/full", root);
    snprintf(killed, sizeof killed, "%s/killed", root);

    /* Reference: an uninterrupted run, one key at a time, to learn how many
     * measurements each key takes (deterministic). */
    long per_key[N_KEYS], total = 0;
    for (size_t i = 0; i < N_KEYS; ++i) {
        fake f = {.time_us = gemv_us, .wrong = gemv_is_fastest};
        sp_tune_summary sum;
        CHECK_MSG(run_keys(gen, full, &f, &KEYS[i], 1, &sum) == SPRIG_OK, "%s", sprig_last_error());
        CHECK(sum.n == 1 && sum.rows[0].outcome == SP_TUNE_TUNED);
        CHECK(!gemv_is_fastest(sum.rows[0].winner) && sum.rows[0].wrong == 1);
        per_key[i] = f.calls;
        total += f.calls;
        sp_tune_summary_free(&sum);
    }
    CHECK(per_key[0] == 36 + 3);

    /* Killed in the middle of the third key. */
    fake k = {.time_us = gemv_us, .wrong = gemv_is_fastest, .abort_at = per_key[0] + per_key[1] + 5};
    sp_tune_summary sum;
    sprig_status st = run_keys(gen, killed, &k, KEYS, N_KEYS, &sum);
    CHECK(st == SPRIG_E_CUDA && sp_contains(sprig_last_error(), "killed"));
    CHECK(sum.n == N_KEYS && sum.rows[0].outcome == SP_TUNE_TUNED && sum.rows[1].outcome == SP_TUNE_TUNED);
    CHECK(sum.rows[2].outcome == SP_TUNE_ABORTED && sum.rows[3].outcome == SP_TUNE_NOT_RUN);
    sp_tune_summary_free(&sum);
    CHECK(sp_test_count_files(killed, ".tmp") == 0);
    sp_db *db = NULL;
    CHECK(sp_db_open(&db, killed, &GPU, 0) == SPRIG_OK && db && db->n == 2);
    sp_db_close(db);

    /* Resumed: the two finished keys are skipped, the rest measured. */
    fake r = {.time_us = gemv_us, .wrong = gemv_is_fastest};
    st = run_keys(gen, killed, &r, KEYS, N_KEYS, &sum);
    CHECK_MSG(st == SPRIG_OK, "%s", sprig_last_error());
    CHECK_MSG(r.calls == per_key[2] + per_key[3], "resumed run measured %ld times, expected %ld", r.calls,
              per_key[2] + per_key[3]);
    CHECK(sum.n_skipped == 2 && sum.n_tuned == 2 && sum.n_failed == 0);
    CHECK(sum.rows[0].outcome == SP_TUNE_SKIPPED && sum.rows[3].outcome == SP_TUNE_TUNED);
    CHECK(sp_contains(sum.rows[3].key, "|b=8|s=50|") && sp_contains(sum.rows[2].key, "op=down,vec=8"));
    /* the summary as JSON */
    char *json = sp_tune_summary_json(&sum);
    cJSON *arr = json ? cJSON_Parse(json) : NULL;
    CHECK(arr && cJSON_GetArraySize(arr) == (int)N_KEYS);
    cJSON *row0 = cJSON_GetArrayItem(arr, 0);
    CHECK(row0 && !strcmp(cJSON_GetStringValue(cJSON_GetObjectItem(row0, "outcome")), "skipped"));
    cJSON_Delete(arr);
    free(json);
    sp_tune_summary_free(&sum);

    /* Once more: nothing left to measure. */
    fake z = {.time_us = gemv_us, .wrong = gemv_is_fastest};
    CHECK(run_keys(gen, killed, &z, KEYS, N_KEYS, &sum) == SPRIG_OK && z.calls == 0 && sum.n_skipped == N_KEYS);
    sp_tune_summary_free(&sum);
    (void)total;

    /* Both databases agree on every winner. */
    sp_db *a = NULL, *b = NULL;
    CHECK(sp_db_open(&a, full, &GPU, 0) == SPRIG_OK && sp_db_open(&b, killed, &GPU, 0) == SPRIG_OK);
    if (a && b) {
        CHECK(a->n == N_KEYS && b->n == N_KEYS);
        for (size_t i = 0; i < a->n; ++i) {
            const sp_db_entry *e = sp_db_find(b, &a->entries[i].key);
            CHECK(e && !strcmp(e->winner, a->entries[i].winner));
        }
    }
    sp_db_close(a);
    sp_db_close(b);
    sp_test_remove_dir(full);
    sp_test_remove_dir(killed);
}

/* Keys that fail on their own do not stop the run; nothing is saved for them. */
static void test_tune_failures(sprig_gen *gen, const char *root) {
    char dir[4300];
    snprintf(dir, sizeof dir, "%s/failures", root);
    sp_tune_key keys[] = {
        {"dense_gemv", 4096, 11008, "fp16", 1, 32, 0, "op=down,vec=8"}, /* every candidate wrong */
        {"dense_gemv", 4096, 11000, "fp16", 1, 16, 0, "op=up"},         /* g does not divide f */
        {"dense_gemv", 4096, 11008, "fp16", 1, 32, 0, "op=up,vec=8"},   /* fine */
    };
    fake f = {.time_us = gemv_us, .wrong = gemv_is_fastest, .all_wrong_down = 1};
    sp_tune_summary sum;
    sprig_status st = run_keys(gen, dir, &f, keys, 3, &sum);
    CHECK(st == SPRIG_E_VERIFY);
    CHECK_MSG(sp_contains(sprig_last_error(), "2 of 3 tuning keys failed"), "%s", sprig_last_error());
    CHECK(sum.rows[0].outcome == SP_TUNE_NO_VERIFIED && sum.rows[0].wrong == 36);
    CHECK(sp_contains(sum.rows[0].message, "no candidate verified"));
    CHECK(sum.rows[1].outcome == SP_TUNE_INVALID && sp_contains(sum.rows[1].message, "g=16 does not divide f=11000"));
    CHECK(sum.rows[2].outcome == SP_TUNE_TUNED && sum.n_tuned == 1 && sum.n_failed == 2);
    sp_tune_summary_free(&sum);
    sp_db *db = NULL;
    CHECK(sp_db_open(&db, dir, &GPU, 0) == SPRIG_OK && db && db->n == 1);
    sp_db_close(db);

    /* A total budget that is already spent starts no key. */
    sp_db *db2 = NULL;
    CHECK(sp_db_open(&db2, dir, &GPU, 0) == SPRIG_OK);
    sp_tune_opts o;
    sp_tune_opts_init(&o);
    o.gen = gen;
    o.db = db2;
    o.keys = keys;
    o.n_keys = 3;
    o.measure = fake_tune_measure;
    o.ctx = &f;
    o.total_budget_s = 1e-9;
    f.calls = 0;
    CHECK(sp_tune_run(&o, &sum) == SPRIG_OK && sum.n_not_run == 3 && f.calls == 0);
    sp_tune_summary_free(&sum);
    sp_db_close(db2);

    /* An unusable db file is not tuned into and not overwritten. */
    char path[4700], name[300];
    sp_db_file_name(&GPU, name, sizeof name);
    snprintf(path, sizeof path, "%s/%s", dir, name);
    FILE *fp = fopen(path, "w");
    if (fp) {
        fputs("{\"format\": \"sprig-tuning-db\", \"version\": 1, \"gpu\": {", fp);
        fclose(fp);
    }
    f.calls = 0;
    CHECK(run_keys(gen, dir, &f, keys, 3, &sum) == SPRIG_E_FORMAT && f.calls == 0);
    CHECK_MSG(sp_contains(sprig_last_error(), name), "%s", sprig_last_error());
    /* forced open hands out an empty db; sp_tune_run still refuses it while force is off */
    sp_db *forced = NULL;
    CHECK(sp_db_open(&forced, dir, &GPU, 1) == SPRIG_OK && forced && forced->load_failed);
    if (forced) {
        forced->force = 0;
        o.db = forced;
        o.total_budget_s = 0;
        CHECK(sp_tune_run(&o, &sum) == SPRIG_E_FORMAT && f.calls == 0);
        CHECK(sp_contains(sprig_last_error(), "not tuning into it"));
        sp_tune_summary_free(&sum);
        sp_db_close(forced);
    }
    sp_test_remove_dir(dir);
}

int main(void) {
    sprig_gen *gen = NULL;
    CHECK(sprig_gen_open(&gen, NULL) == SPRIG_OK);
    if (!gen) return sp_test_finish("test_tune", 0);
    char root[] = "/tmp/sprig_test_tune_XXXXXX";
    if (!mkdtemp(root)) {
        perror("mkdtemp");
        return 1;
    }
    test_space(gen);
    test_search_gemv(gen);
    test_search_grid();
    test_search_failures();
    test_budget();
    test_tune_resume(gen, root);
    test_tune_failures(gen, root);
    sp_test_remove_dir(root);
    sprig_gen_close(gen);
    return sp_test_finish("test_tune", 0);
}
